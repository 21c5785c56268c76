//! QDQ ONNX export of a quantized model: the format ONNX Runtime's static quantizer writes, with our weights,
//! scales and zero points, so that another runtime runs the model we measured.
//!
//! Per quantized Conv / Gemm / MatMul:
//! - weights: an int8 initializer in the graph's layout (Conv `[c_out, c_in, kh, kw]`, Gemm `[n, k]` with
//!   `transB = 1` and `alpha = 1`, MatMul `[k, n]`) feeding `DequantizeLinear` with the layer's scales and zero
//!   points (per tensor: scalars; per channel: `axis` 0, or 1 for MatMul). Weights of fewer than 8 bits are
//!   written as int8 values within their narrower range (ONNX has no int2..int7); log weights as their exact int8
//!   decoding;
//! - static activations: the layer's input goes through `QuantizeLinear` / `DequantizeLinear` with our calibrated
//!   u8 scale and zero point (once per value: a value that stays u8 between layers in our executor keeps one
//!   pair), the output through a pair with the output parameters; a fused ReLU is a `Relu` before the output's
//!   `QuantizeLinear`; the bias is int32 in accumulator units (our `bias_q`) with scale `s_in * s_w`, through
//!   `DequantizeLinear`;
//! - MaxPool / Relu / Flatten / Reshape on values that are u8 in our executor are followed by a pair with the
//!   same parameters (the runtime keeps them in u8); other nodes run in float on dequantized values, as ours do;
//! - an elementwise chain our executor runs as a u8 table (see [`crate::quant::lut`]) is written as its float
//!   nodes, followed, when its output stays u8 in our executor, by a pair with the output's parameters;
//! - dynamic strategies (affine, float scales): `DynamicQuantizeLinear` -> `DequantizeLinear` before the layer
//!   (the same u8 parameters as ours, from the whole tensor's range), float bias;
//! - weight-only strategies: only the weights go through `DequantizeLinear`; float bias.
//!
//! Grouped and depthwise convolutions keep their `group` and their `[c_out, c_in / group, kh, kw]` weights,
//! dequantized per channel (axis 0) or per tensor, as ONNX Runtime's QDQ Conv takes them.
//!
//! Refused with an error: per-group (block) weight scales (blocked QDQ needs opset 21 and our groups span a convolution's
//! `(c, ky, kx)` rows), 16-bit float models, dynamic symmetric or power-of-two activation scales (no single
//! ONNX op computes them). The opset is at least 13 (per-axis `DequantizeLinear`); a model imported at an older
//! opset is written in opset 13's forms by [`super::export`] (e.g. an opset-11 Softmax as Flatten, Softmax and
//! Reshape).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use prost::Message;
use strategies::pow2::ScaleConstraint;
use strategies::{ActParams, Granularity, Scheme};

use super::export::{GraphNode, export_mixed};
use super::proto::{AttributeProto, AttributeType, DataType, ModelProto, NodeProto, TensorProto};
use crate::ir::{self, GemmAttrs, Op};
use crate::quant::QuantizedModel;
use crate::quant::lut::LutChain;
use crate::quant::model::{LayerMode, LinearShape, QLinear, StepRef};
use crate::quant::strategy::{FloatFormat, Strategy};

/// The opset of exported QDQ models (at least): per-axis `QuantizeLinear` / `DequantizeLinear`.
pub const QDQ_MIN_OPSET: i64 = 13;

#[derive(Debug, thiserror::Error)]
pub enum QdqError {
    #[error("QDQ export of strategy `{strategy}`: {reason}")]
    Unsupported { strategy: String, reason: String },
    #[error("QDQ export, layer `{layer}`: {source}")]
    Layer {
        layer: String,
        source: Box<crate::quant::QuantError>,
    },
    #[error("{}: cannot write model file: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A node of the exported graph: an IR op (written by [`export_model`]) or a QDQ node.
enum Item {
    Ir(ir::Node),
    Proto(NodeProto),
}

struct Builder {
    strategy: String,
    items: Vec<Item>,
    initializers: Vec<TensorProto>,
    /// Values that are u8 in our executor, with their parameters: in the exported graph, their name is the
    /// `DequantizeLinear` output.
    quantized: HashMap<String, ActParams>,
    /// The strategy's activation scheme and scale constraint (dynamic layers).
    act_scheme: Scheme,
    act_scale: ScaleConstraint,
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Int as i32,
        i,
        ..AttributeProto::default()
    }
}

fn raw_tensor(name: &str, data_type: DataType, dims: &[usize], raw_data: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        name: name.to_owned(),
        raw_data,
        ..TensorProto::default()
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Builder {
    fn unsupported(&self, reason: impl Into<String>) -> QdqError {
        QdqError::Unsupported {
            strategy: self.strategy.clone(),
            reason: reason.into(),
        }
    }

    fn proto(
        &mut self,
        op_type: &str,
        name: String,
        inputs: &[&str],
        outputs: &[&str],
        axis: Option<i64>,
    ) {
        self.items.push(Item::Proto(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name,
            op_type: op_type.to_owned(),
            domain: String::new(),
            attribute: axis.map(|a| attr_int("axis", a)).into_iter().collect(),
            doc_string: String::new(),
        }));
    }

    fn ir(&mut self, name: String, op: Op, inputs: Vec<String>, output: String) {
        self.items.push(Item::Ir(ir::Node {
            name,
            op,
            inputs,
            outputs: vec![output],
        }));
    }

    /// `QuantizeLinear(from) -> <to>__q -> DequantizeLinear -> to`, with u8 parameters `p` (scalar initializers
    /// `<to>.scale`, `<to>.zero_point`).
    fn qdq(&mut self, from: &str, to: &str, p: ActParams) {
        let (scale, zp) = (format!("{to}.scale"), format!("{to}.zero_point"));
        self.initializers.push(raw_tensor(
            &scale,
            DataType::Float,
            &[],
            p.scale.to_le_bytes().to_vec(),
        ));
        self.initializers.push(raw_tensor(
            &zp,
            DataType::Uint8,
            &[],
            vec![p.zero_point.clamp(0, 255) as u8],
        ));
        let q = format!("{to}__q");
        self.proto(
            "QuantizeLinear",
            format!("{to}.quantize"),
            &[from, &scale, &zp],
            &[&q],
            None,
        );
        self.proto(
            "DequantizeLinear",
            format!("{to}.dequantize"),
            &[&q, &scale, &zp],
            &[to],
            None,
        );
    }

    fn node(&mut self, node: &ir::Node) {
        let input = node.inputs.first().map(String::as_str).unwrap_or("");
        let keeps_u8 = matches!(
            node.op,
            Op::Relu | Op::MaxPool(_) | Op::Flatten { .. } | Op::Reshape { .. }
        );
        match self.quantized.get(input).copied().filter(|_| keeps_u8) {
            Some(p) => {
                let out = node.outputs[0].clone();
                let float = format!("{out}__f");
                self.ir(
                    node.name.clone(),
                    node.op.clone(),
                    node.inputs.clone(),
                    float.clone(),
                );
                self.qdq(&float, &out, p);
                self.quantized.insert(out, p);
            }
            None => self.items.push(Item::Ir(node.clone())),
        }
    }

    /// An elementwise chain our executor runs as a table on u8 codes: its original float nodes on the
    /// dequantized input, then, when its output is u8 in our executor, a pair with the output's parameters
    /// (what ONNX Runtime computes in float between the two pairs is what our table holds).
    fn lut(&mut self, c: &LutChain) {
        let Some(p) = c.output_params else {
            self.items.extend(c.nodes.iter().cloned().map(Item::Ir));
            return;
        };
        let float = format!("{}__f", c.output);
        for node in &c.nodes {
            let mut node = node.clone();
            if node.outputs[0] == c.output {
                node.outputs[0] = float.clone();
            }
            self.items.push(Item::Ir(node));
        }
        self.qdq(&float, &c.output, p);
        self.quantized.insert(c.output.clone(), p);
    }

    fn linear(&mut self, l: &QLinear) -> Result<(), QdqError> {
        let layer_err = |source| QdqError::Layer {
            layer: l.name.clone(),
            source: Box::new(source),
        };
        let mode = l.layer_mode();
        let per_group = match l.params.granularity {
            Granularity::PerGroup(g) => Some(g),
            _ => None,
        };
        if per_group.is_some() || matches!(mode, LayerMode::StaticGrouped { .. }) {
            return Err(self.unsupported(format!(
                "layer `{}` has per-group (block) weight scales ({}{}), which per-tensor or per-axis DequantizeLinear cannot express; QDQ export takes per-tensor or per-channel weights (grouped and depthwise convolutions included)",
                l.name,
                l.params.granularity.name(),
                per_group.map_or(String::new(), |g| format!(
                    ", one scale per {g} rows of the reduction axis"
                )),
            )));
        }
        let name = &l.name;
        let (k, n) = (l.k, l.n);
        // Weights in the graph's row order, then in the ONNX op's layout.
        let (op, w_dims, axis): (Op, Vec<usize>, i64) = match l.shape() {
            LinearShape::Conv(a) | LinearShape::ConvNhwc(a) => {
                let taps = a.kernel_shape[0] * a.kernel_shape[1];
                (
                    Op::Conv(a.clone()),
                    vec![n, k / taps, a.kernel_shape[0], a.kernel_shape[1]],
                    0,
                )
            }
            LinearShape::Dense if l.op == "MatMul" => (Op::MatMul, vec![k, n], 1),
            LinearShape::Dense => (
                Op::Gemm(GemmAttrs {
                    alpha: 1.0,
                    beta: 1.0,
                    trans_a: false,
                    trans_b: true,
                }),
                vec![n, k],
                0,
            ),
        };
        let layout = |w: Array2<u8>| -> Vec<u8> {
            // `w` is [k, n]: MatMul keeps it, Conv and Gemm take its transpose.
            if matches!(op, Op::MatMul) {
                w.iter().copied().collect()
            } else {
                w.t().iter().copied().collect()
            }
        };
        let mut inputs: Vec<String> = Vec::new();
        // The activation the layer reads.
        let x = l.input().to_string();
        let x_in = match &mode {
            LayerMode::Static { input, .. } if self.quantized.get(&x) != Some(input) => {
                let to = format!("{name}.input_dq");
                self.qdq(&x, &to, *input);
                to
            }
            LayerMode::Dynamic => {
                if self.act_scheme != Scheme::Affine || self.act_scale != ScaleConstraint::Float {
                    return Err(self.unsupported(
                        "dynamic activations export as DynamicQuantizeLinear, which computes affine u8 parameters with float scales; this strategy's are symmetric or power-of-two",
                    ));
                }
                let (q, s, z, dq) = (
                    format!("{name}.input_q"),
                    format!("{name}.input_scale"),
                    format!("{name}.input_zero_point"),
                    format!("{name}.input_dq"),
                );
                self.proto(
                    "DynamicQuantizeLinear",
                    format!("{name}.input_quantize"),
                    &[&x],
                    &[&q, &s, &z],
                    None,
                );
                self.proto(
                    "DequantizeLinear",
                    format!("{name}.input_dequantize"),
                    &[&q, &s, &z],
                    &[&dq],
                    None,
                );
                dq
            }
            _ => x,
        };
        inputs.push(x_in);
        // The weights.
        match &mode {
            LayerMode::Float(FloatFormat::Fp32) => {
                let w = l.float_weights().expect("float layer");
                let w = l.graph_rows(w);
                let data: Vec<f32> = if matches!(op, Op::MatMul) {
                    w.iter().copied().collect()
                } else {
                    w.t().iter().copied().collect()
                };
                let wname = format!("{name}.weight");
                self.initializers.push(raw_tensor(
                    &wname,
                    DataType::Float,
                    &w_dims,
                    f32_bytes(&data),
                ));
                inputs.push(wname);
            }
            LayerMode::Float(f) => {
                return Err(self.unsupported(format!(
                    "layer `{name}` has {} weights; QDQ export writes integer weights",
                    f.name()
                )));
            }
            _ => {
                let w = l.int8_weights().map_err(layer_err)?;
                let w = l.graph_rows(w).mapv(|v| v as u8);
                let (wq, ws, wz, wdq) = (
                    format!("{name}.weight_quantized"),
                    format!("{name}.weight_scale"),
                    format!("{name}.weight_zero_point"),
                    format!("{name}.weight_dq"),
                );
                self.initializers
                    .push(raw_tensor(&wq, DataType::Int8, &w_dims, layout(w)));
                let per_channel = l.params.scales.len() > 1;
                let pdims: Vec<usize> = if per_channel { vec![n] } else { Vec::new() };
                self.initializers.push(raw_tensor(
                    &ws,
                    DataType::Float,
                    &pdims,
                    f32_bytes(&l.params.scales),
                ));
                self.initializers.push(raw_tensor(
                    &wz,
                    DataType::Int8,
                    &pdims,
                    l.params
                        .zero_points
                        .iter()
                        .map(|&z| z as i8 as u8)
                        .collect(),
                ));
                self.proto(
                    "DequantizeLinear",
                    format!("{name}.weight_dequantize"),
                    &[&wq, &ws, &wz],
                    &[&wdq],
                    per_channel.then_some(axis),
                );
                inputs.push(wdq);
            }
        }
        // The bias: int32 in accumulator units for static layers, else f32.
        let bias = match &mode {
            LayerMode::Static {
                input,
                bias_q: Some(b),
                ..
            } => {
                let (bq, bs, bdq) = (
                    format!("{name}.bias_quantized"),
                    format!("{name}.bias_scale"),
                    format!("{name}.bias_dq"),
                );
                let scales: Vec<f32> = (0..n)
                    .map(|j| {
                        input.scale * l.params.scales[if l.params.scales.len() > 1 { j } else { 0 }]
                    })
                    .collect();
                self.initializers.push(raw_tensor(
                    &bq,
                    DataType::Int32,
                    &[n],
                    b.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ));
                self.initializers
                    .push(raw_tensor(&bs, DataType::Float, &[n], f32_bytes(&scales)));
                self.proto(
                    "DequantizeLinear",
                    format!("{name}.bias_dequantize"),
                    &[&bq, &bs],
                    &[&bdq],
                    Some(0),
                );
                Some(bdq)
            }
            LayerMode::Static { bias_q: None, .. } => None,
            _ => l.bias.as_ref().map(|b| {
                let bname = format!("{name}.bias");
                self.initializers
                    .push(raw_tensor(&bname, DataType::Float, &[n], f32_bytes(b)));
                bname
            }),
        };
        // The op, then the fused Relu, then the output's QDQ pair (static).
        let out = l.output().to_string();
        let static_out = match &mode {
            LayerMode::Static { output, .. } => Some(*output),
            _ => None,
        };
        let last = if static_out.is_some() {
            format!("{out}__f")
        } else {
            out.clone()
        };
        let before_relu = if l.relu() {
            format!("{out}__pre")
        } else {
            last.clone()
        };
        match (&op, bias) {
            (Op::MatMul, Some(b)) => {
                let mm = format!("{name}.matmul");
                self.ir(name.clone(), op.clone(), inputs, mm.clone());
                self.ir(
                    format!("{name}.bias_add"),
                    Op::Add,
                    vec![mm, b],
                    before_relu.clone(),
                );
            }
            (_, b) => {
                inputs.extend(b);
                self.ir(name.clone(), op.clone(), inputs, before_relu.clone());
            }
        }
        if l.relu() {
            self.ir(
                format!("{name}.relu"),
                Op::Relu,
                vec![before_relu],
                last.clone(),
            );
        }
        if let Some(p) = static_out {
            self.qdq(&last, &out, p);
            self.quantized.insert(out, p);
        }
        Ok(())
    }
}

/// The QDQ ONNX model of `model` (see the module docs for the format and what is refused).
pub fn export_qdq(model: &QuantizedModel) -> Result<ModelProto, QdqError> {
    let strategy = model.strategy();
    let (act_scheme, act_scale) = match strategy {
        Strategy::Linear(l) => (l.scheme, l.scale),
        Strategy::Float(_) | Strategy::Fp32 => {
            return Err(QdqError::Unsupported {
                strategy: strategy.name(),
                reason: "a float model has no quantized weights; export the FP32 graph with `onnx::save_model`".into(),
            });
        }
    };
    let mut b = Builder {
        strategy: strategy.name(),
        items: Vec::new(),
        initializers: Vec::new(),
        quantized: HashMap::new(),
        act_scheme,
        act_scale,
    };
    for step in model.step_refs() {
        match step {
            StepRef::Node(node) => b.node(node),
            StepRef::FlattenNhwc { input, output } => b.node(&ir::Node {
                name: format!("{output}.flatten"),
                op: Op::Flatten { axis: 1 },
                inputs: vec![input.to_string()],
                outputs: vec![output.to_string()],
            }),
            StepRef::Linear(l) => b.linear(l)?,
            StepRef::Lut(c) => b.lut(c),
        }
    }
    let signature = model.signature();
    let opset = signature.opset.max(QDQ_MIN_OPSET);
    let graph = ir::Graph {
        name: signature.name.clone(),
        opset,
        inputs: signature.inputs.clone(),
        outputs: signature.outputs.clone(),
        initializers: model
            .constants
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        nodes: Vec::new(),
    };
    let nodes: Vec<GraphNode<'_>> = b
        .items
        .iter()
        .map(|i| match i {
            Item::Ir(n) => GraphNode::Ir(n),
            Item::Proto(p) => GraphNode::Proto(p),
        })
        .collect();
    let mut proto =
        export_mixed(&graph, &nodes, &HashMap::new()).map_err(|e| QdqError::Unsupported {
            strategy: model.strategy().name(),
            reason: e.to_string(),
        })?;
    let g = proto.graph.as_mut().expect("export writes a graph");
    g.initializer.extend(b.initializers);
    proto.doc_string = format!(
        "QDQ export of strategy {} by {} {}",
        strategy.name(),
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION")
    );
    Ok(proto)
}

/// Writes the QDQ model of `model` to `path`; returns its size in bytes.
pub fn save_qdq(model: &QuantizedModel, path: &Path) -> Result<u64, QdqError> {
    let bytes = export_qdq(model)?.encode_to_vec();
    std::fs::write(path, &bytes).map_err(|source| QdqError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(bytes.len() as u64)
}
