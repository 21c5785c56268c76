//! A BERT encoder (HF `BertModel`: all-MiniLM-L6-v2 and its kin) imported from `config.json` +
//! `model.safetensors` into an [`ir::Graph`] of ops the FP32 executor runs, followed by sentence-transformers'
//! mean pooling and L2 normalisation as graph ops.
//!
//! Graph inputs: `input_ids` and `attention_mask`, i64 `[batch, sequence]` (see [`crate::text::Tokenizer`]);
//! token type ids are all 0 (single sentences), so row 0 of the token-type table is added as a constant.
//! Outputs: [`TOKEN_EMBEDDINGS`] `[batch, sequence, hidden]` (the last hidden state) and
//! [`SENTENCE_EMBEDDING`] `[batch, hidden]` (masked mean over the sequence, divided by its L2 norm).
//! `sequence` must not exceed `max_position_embeddings`.
//!
//! Every linear layer is a `MatMul` with a constant `[in, out]` weight (the checkpoint's `[out, in]`,
//! transposed at import, stored as `<module>.weight_t`) then an `Add` of the bias, so the quantizer sees one
//! MatMul layer per HF `Linear`, named after it (`encoder.layer.0.attention.self.query`, ...). Attention is
//! `Reshape`/`Transpose` into heads, `MatMul` QK^T, `Mul` by 1/sqrt(head size), `Add` of the mask bias
//! (`(mask - 1) * 10000`: exp underflows to exactly 0 in f32 as with HF's `finfo.min`, but the value stays
//! finite for calibration observers), `Softmax`, `MatMul` with V. GELU is the exact erf form,
//! `x * 0.5 * (1 + erf(x / sqrt 2))`, as HF computes it. [`mean_pool_normalize`] is the same pooling as a
//! plain function, for outputs computed elsewhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, ArrayView2, ArrayView3, Axis, IxDyn};
use serde::Deserialize;

use super::ModelError;
use super::safetensors::read_safetensors;
use crate::exec::Fp32Executor;
use crate::ir::{CastTo, Dim, Graph, Node, Op, ReduceOp, Tensor, UnaryOp, ValueInfo};
use crate::text::TokenBatch;

pub const INPUT_IDS: &str = "input_ids";
pub const ATTENTION_MASK: &str = "attention_mask";
pub const TOKEN_EMBEDDINGS: &str = "token_embeddings";
pub const SENTENCE_EMBEDDING: &str = "sentence_embedding";

/// Added to attention scores at padded keys.
const MASK_BIAS: f32 = -10000.0;

/// The `config.json` fields a BERT encoder needs.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_position")]
    pub position_embedding_type: String,
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default, rename = "_name_or_path")]
    pub name_or_path: Option<String>,
}

fn two() -> usize {
    2
}
fn default_eps() -> f32 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let config: BertConfig =
            serde_json::from_slice(&bytes).map_err(|e| ModelError::Format {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        config.validate().map_err(|message| ModelError::Format {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    /// Checks what the graph builder relies on.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.model_type
            && t != "bert"
        {
            return Err(format!(
                "model_type \"{t}\" is not supported (only \"bert\" is)"
            ));
        }
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act \"{}\" is not supported (only \"gelu\", the erf form, is)",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type \"{}\" is not supported (only \"absolute\" is)",
                self.position_embedding_type
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.type_vocab_size == 0 {
            return Err("type_vocab_size is 0".into());
        }
        Ok(())
    }

    pub fn head_size(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// An imported BERT encoder.
#[derive(Clone, Debug)]
pub struct BertModel {
    pub config: BertConfig,
    pub graph: Graph,
}

/// Imports `dir/config.json` + `dir/model.safetensors`.
pub fn load_bert(dir: &Path) -> Result<BertModel, ModelError> {
    let config = BertConfig::from_file(&dir.join("config.json"))?;
    let weights = read_safetensors(&dir.join("model.safetensors"))?;
    let name = config
        .name_or_path
        .clone()
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "bert".into());
    let graph = build_bert_graph(&config, &weights, &name)?;
    Ok(BertModel { config, graph })
}

/// The folder holding all-MiniLM-L6-v2 (`config.json`, `model.safetensors`, `tokenizer.json`, `vocab.txt`):
/// `$HARNESS_MINILM_DIR`, else `$HOME/.cache/harness/minilm` (where `scripts/fetch_minilm.sh` puts it), when
/// the model files are there.
pub fn find_minilm_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("HARNESS_MINILM_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/harness/minilm"),
    };
    ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .all(|f| dir.join(f).is_file())
        .then_some(dir)
}

/// Runs the graph on one batch and returns its [`SENTENCE_EMBEDDING`] output, `[batch, hidden]`.
pub fn embed(exec: &Fp32Executor, batch: &TokenBatch) -> Result<Array2<f32>, ModelError> {
    let outputs = exec.run_tensors(&batch.to_inputs())?;
    let missing = || ModelError::Weight {
        name: SENTENCE_EMBEDDING.into(),
        message: "the graph has no f32 [batch, hidden] output of that name".into(),
    };
    let (_, t) = outputs
        .into_iter()
        .find(|(n, _)| n == SENTENCE_EMBEDDING)
        .ok_or_else(missing)?;
    match t {
        Tensor::F32(a) => a.into_dimensionality().map_err(|_| missing()),
        Tensor::I64(_) => Err(missing()),
    }
}

/// sentence-transformers' pooling on computed token embeddings: the mean over the tokens whose mask is
/// non-zero (the count clamped to at least 1e-9), divided by its L2 norm (clamped to at least 1e-12).
pub fn mean_pool_normalize(tokens: ArrayView3<f32>, mask: ArrayView2<i64>) -> Array2<f32> {
    let (b, s, h) = tokens.dim();
    assert_eq!(mask.dim(), (b, s), "mask shape must be [batch, sequence]");
    let mut out = Array2::zeros((b, h));
    for (i, mut row) in out.axis_iter_mut(Axis(0)).enumerate() {
        let mut count = 0f32;
        for t in 0..s {
            if mask[[i, t]] != 0 {
                count += mask[[i, t]] as f32;
                row.scaled_add(mask[[i, t]] as f32, &tokens.slice(ndarray::s![i, t, ..]));
            }
        }
        row /= count.max(1e-9);
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row /= norm;
    }
    out
}

/// Builds the graph from `config` and the checkpoint's tensors (names as HF writes them, optionally under a
/// `bert.` prefix); see the module docs.
pub fn build_bert_graph(
    config: &BertConfig,
    weights: &BTreeMap<String, Tensor>,
    name: &str,
) -> Result<Graph, ModelError> {
    config.validate().map_err(|message| ModelError::Weight {
        name: "config".into(),
        message,
    })?;
    let prefix = if weights.contains_key("embeddings.word_embeddings.weight") {
        ""
    } else {
        "bert."
    };
    let mut b = Builder {
        weights,
        prefix,
        nodes: Vec::new(),
        initializers: BTreeMap::new(),
    };
    let h = config.hidden_size;
    let heads = config.num_attention_heads;
    let dh = config.head_size();

    // Shared constants.
    let zero_1d = b.constant("const.zero_1d", Tensor::I64(vec1_i64(&[0])));
    let one = b.constant("const.one", scalar(1.0));
    let half = b.constant("const.half", scalar(0.5));
    let sqrt2 = b.constant("const.sqrt2", scalar(std::f32::consts::SQRT_2));
    let mask_bias = b.constant("const.mask_bias", scalar(-MASK_BIAS));
    let scale = b.constant("const.attention_scale", scalar(1.0 / (dh as f32).sqrt()));
    let split_heads = b.constant(
        "const.split_heads_shape",
        Tensor::I64(vec1_i64(&[0, 0, heads as i64, dh as i64])),
    );
    let merge_heads = b.constant(
        "const.merge_heads_shape",
        Tensor::I64(vec1_i64(&[0, 0, h as i64])),
    );

    // Embeddings.
    let word = b.weight("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
    let pos = b.weight(
        "embeddings.position_embeddings.weight",
        &[config.max_position_embeddings, h],
    )?;
    let types = b.weight_f32(
        "embeddings.token_type_embeddings.weight",
        &[config.type_vocab_size, h],
    )?;
    let type0 = b.constant(
        "embeddings.token_type_embeddings.row0",
        Tensor::F32(types.index_axis(Axis(0), 0).to_owned().into_dyn()),
    );
    let x = b.node(
        "embeddings.word",
        Op::Gather { axis: 0 },
        &[&word, INPUT_IDS],
    );
    let seq = b.node(
        "embeddings.sequence_length",
        Op::Shape {
            start: 1,
            end: Some(2),
        },
        &[INPUT_IDS],
    );
    let positions = b.node(
        "embeddings.positions",
        Op::Slice,
        &[&pos, &zero_1d, &seq, &zero_1d],
    );
    let x = b.node("embeddings.add_positions", Op::Add, &[&x, &positions]);
    let x = b.node("embeddings.add_token_type", Op::Add, &[&x, &type0]);
    let mut x = b.layer_norm("embeddings.LayerNorm", &x, h, config.layer_norm_eps, None)?;

    // Attention mask as an additive bias [batch, 1, 1, sequence].
    let mask_f = b.node("mask.f32", Op::Cast { to: CastTo::F32 }, &[ATTENTION_MASK]);
    let m = b.node(
        "mask.minus_one",
        Op::Binary(crate::ir::BinaryOp::Sub),
        &[&mask_f, &one],
    );
    let m = b.node("mask.bias", mul(), &[&m, &mask_bias]);
    let bias4 = b.node("mask.bias_4d", Op::Unsqueeze { axes: vec![1, 2] }, &[&m]);

    for l in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        let last = l + 1 == config.num_hidden_layers;
        let heads_of = |b: &mut Builder, which: &str, perm: [usize; 4]| {
            let module = format!("{p}.attention.self.{which}");
            let y = b.linear(&module, &x, h, h)?;
            let y = b.node(
                &format!("{module}.split_heads"),
                Op::Reshape { allowzero: false },
                &[&y, &split_heads],
            );
            Ok::<_, ModelError>(b.node(
                &format!("{module}.transpose"),
                Op::Transpose {
                    perm: Some(perm.to_vec()),
                },
                &[&y],
            ))
        };
        let q = heads_of(&mut b, "query", [0, 2, 1, 3])?;
        let k = heads_of(&mut b, "key", [0, 2, 3, 1])?;
        let v = heads_of(&mut b, "value", [0, 2, 1, 3])?;
        let a = format!("{p}.attention.self");
        let s = b.node(&format!("{a}.scores"), Op::MatMul, &[&q, &k]);
        let s = b.node(&format!("{a}.scaled_scores"), mul(), &[&s, &scale]);
        let s = b.node(&format!("{a}.masked_scores"), Op::Add, &[&s, &bias4]);
        let probs = b.node(
            &format!("{a}.probs"),
            Op::Softmax {
                axis: -1,
                legacy: false,
            },
            &[&s],
        );
        let c = b.node(&format!("{a}.context"), Op::MatMul, &[&probs, &v]);
        let c = b.node(
            &format!("{a}.context.transpose"),
            Op::Transpose {
                perm: Some(vec![0, 2, 1, 3]),
            },
            &[&c],
        );
        let c = b.node(
            &format!("{a}.context.merge_heads"),
            Op::Reshape { allowzero: false },
            &[&c, &merge_heads],
        );
        let o = b.linear(&format!("{p}.attention.output.dense"), &c, h, h)?;
        let o = b.node(
            &format!("{p}.attention.output.residual"),
            Op::Add,
            &[&o, &x],
        );
        let attn = b.layer_norm(
            &format!("{p}.attention.output.LayerNorm"),
            &o,
            h,
            config.layer_norm_eps,
            None,
        )?;

        let inter = format!("{p}.intermediate.dense");
        let i = b.linear(&inter, &attn, h, config.intermediate_size)?;
        let t = b.node(&format!("{inter}.gelu.div"), div(), &[&i, &sqrt2]);
        let t = b.node(&format!("{inter}.gelu.erf"), Op::Unary(UnaryOp::Erf), &[&t]);
        let t = b.node(&format!("{inter}.gelu.add_one"), Op::Add, &[&t, &one]);
        let xh = b.node(&format!("{inter}.gelu.half_x"), mul(), &[&i, &half]);
        let g = b.node(&format!("{inter}.gelu"), mul(), &[&xh, &t]);

        let o = b.linear(
            &format!("{p}.output.dense"),
            &g,
            config.intermediate_size,
            h,
        )?;
        let o = b.node(&format!("{p}.output.residual"), Op::Add, &[&o, &attn]);
        x = b.layer_norm(
            &format!("{p}.output.LayerNorm"),
            &o,
            h,
            config.layer_norm_eps,
            last.then_some(TOKEN_EMBEDDINGS),
        )?;
    }
    if config.num_hidden_layers == 0 {
        x = b.node(TOKEN_EMBEDDINGS, Op::Identity, &[&x]);
    }

    // Mean pooling over real tokens, then L2 normalisation.
    let m3 = b.node(
        "pooling.mask_3d",
        Op::Unsqueeze { axes: vec![2] },
        &[&mask_f],
    );
    let masked = b.node("pooling.masked", mul(), &[&x, &m3]);
    let sum = b.node(
        "pooling.sum",
        Op::Reduce {
            op: ReduceOp::Sum,
            axes: Some(vec![1]),
            keepdims: false,
        },
        &[&masked],
    );
    let count = b.node(
        "pooling.count",
        Op::Reduce {
            op: ReduceOp::Sum,
            axes: Some(vec![1]),
            keepdims: true,
        },
        &[&mask_f],
    );
    let count = b.node(
        "pooling.count_clamped",
        Op::Unary(UnaryOp::Clip {
            min: 1e-9,
            max: f32::INFINITY,
        }),
        &[&count],
    );
    let mean = b.node("pooling.mean", div(), &[&sum, &count]);
    let norm = b.node(
        "normalize.norm",
        Op::Reduce {
            op: ReduceOp::L2,
            axes: Some(vec![1]),
            keepdims: true,
        },
        &[&mean],
    );
    let norm = b.node(
        "normalize.norm_clamped",
        Op::Unary(UnaryOp::Clip {
            min: 1e-12,
            max: f32::INFINITY,
        }),
        &[&norm],
    );
    b.node(SENTENCE_EMBEDDING, div(), &[&mean, &norm]);

    let batch_seq = || {
        vec![
            Dim::Symbolic("batch".into()),
            Dim::Symbolic("sequence".into()),
        ]
    };
    Ok(Graph {
        name: name.to_owned(),
        opset: 17,
        inputs: vec![
            ValueInfo {
                name: INPUT_IDS.into(),
                shape: batch_seq(),
            },
            ValueInfo {
                name: ATTENTION_MASK.into(),
                shape: batch_seq(),
            },
        ],
        outputs: vec![
            ValueInfo {
                name: TOKEN_EMBEDDINGS.into(),
                shape: vec![
                    Dim::Symbolic("batch".into()),
                    Dim::Symbolic("sequence".into()),
                    Dim::Fixed(h),
                ],
            },
            ValueInfo {
                name: SENTENCE_EMBEDDING.into(),
                shape: vec![Dim::Symbolic("batch".into()), Dim::Fixed(h)],
            },
        ],
        initializers: b.initializers,
        nodes: b.nodes,
    })
}

fn mul() -> Op {
    Op::Binary(crate::ir::BinaryOp::Mul)
}

fn div() -> Op {
    Op::Binary(crate::ir::BinaryOp::Div)
}

fn scalar(v: f32) -> Tensor {
    Tensor::F32(ArrayD::from_elem(IxDyn(&[]), v))
}

fn vec1_i64(v: &[i64]) -> ArrayD<i64> {
    ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).expect("1-D")
}

struct Builder<'w> {
    weights: &'w BTreeMap<String, Tensor>,
    prefix: &'static str,
    nodes: Vec<Node>,
    initializers: BTreeMap<String, Tensor>,
}

impl Builder<'_> {
    /// Adds a node whose output value has the node's name; returns that name.
    fn node(&mut self, name: &str, op: Op, inputs: &[&str]) -> String {
        self.nodes.push(Node {
            name: name.to_owned(),
            op,
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            outputs: vec![name.to_owned()],
        });
        name.to_owned()
    }

    fn constant(&mut self, name: &str, t: Tensor) -> String {
        self.initializers.insert(name.to_owned(), t);
        name.to_owned()
    }

    /// A checkpoint tensor, checked to be f32 of `shape`.
    fn weight_f32(&self, key: &str, shape: &[usize]) -> Result<ArrayD<f32>, ModelError> {
        let full = format!("{}{key}", self.prefix);
        let t = self.weights.get(&full).ok_or_else(|| ModelError::Weight {
            name: full.clone(),
            message: "not in the checkpoint".into(),
        })?;
        match t {
            Tensor::F32(a) if a.shape() == shape => Ok(a.clone()),
            _ => Err(ModelError::Weight {
                name: full,
                message: format!("expected f32 {shape:?}, got {} {:?}", t.dtype(), t.shape()),
            }),
        }
    }

    /// A checkpoint tensor as an initializer of the same name.
    fn weight(&mut self, key: &str, shape: &[usize]) -> Result<String, ModelError> {
        let a = self.weight_f32(key, shape)?;
        Ok(self.constant(key, Tensor::F32(a)))
    }

    /// HF `Linear` `module`: MatMul by the transposed `[in, out]` weight, then Add of the bias.
    fn linear(
        &mut self,
        module: &str,
        x: &str,
        n_in: usize,
        n_out: usize,
    ) -> Result<String, ModelError> {
        let w = self.weight_f32(&format!("{module}.weight"), &[n_out, n_in])?;
        let w_t = w.reversed_axes().as_standard_layout().into_owned();
        let w_t = self.constant(&format!("{module}.weight_t"), Tensor::F32(w_t));
        let bias = self.weight(&format!("{module}.bias"), &[n_out])?;
        let y = self.node(module, Op::MatMul, &[x, &w_t]);
        Ok(self.node(&format!("{module}.add_bias"), Op::Add, &[&y, &bias]))
    }

    /// LayerNorm `module` over the last axis; `output` renames its value (a graph output).
    fn layer_norm(
        &mut self,
        module: &str,
        x: &str,
        h: usize,
        epsilon: f32,
        output: Option<&str>,
    ) -> Result<String, ModelError> {
        let w = self.weight(&format!("{module}.weight"), &[h])?;
        let bias = self.weight(&format!("{module}.bias"), &[h])?;
        let out = output.unwrap_or(module).to_owned();
        self.nodes.push(Node {
            name: module.to_owned(),
            op: Op::LayerNormalization { axis: -1, epsilon },
            inputs: vec![x.to_owned(), w, bias],
            outputs: vec![out.clone()],
        });
        Ok(out)
    }
}
