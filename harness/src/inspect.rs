//! `harness inspect MODEL`: what a model holds and what each quantization strategy would do with it.
//! `MODEL` is an ONNX file, a BERT folder (`config.json` + `model.safetensors`, imported by
//! [`crate::models::load_bert`]: one MatMul layer per HF `Linear`), or `minilm` for the all-MiniLM-L6-v2 copy
//! that `scripts/fetch_minilm.sh` fetches (see [`crate::models::bert::find_minilm_dir`]).
//!
//! Prints the ops (counts), the parameter count, every Conv / Gemm / MatMul with its shape and, per strategy
//! family, whether it becomes a quantized layer or stays in FP32 and why (the rules of [`crate::quant`], asked
//! through [`float_reason`], the same function the builder asks), and where static mode puts its Q / DQ
//! boundaries: which values stay u8 between layers and where activations are quantized or dequantized.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use strategies::Granularity;

use crate::Error;
use crate::exec::format_dims;
use crate::ir::{Graph, Node, Op, Tensor};
use crate::quant::lut::lut_chain;
use crate::quant::model::{float_reason, static_layer};
use crate::quant::{ActMode, Strategy};

/// Arguments of `harness inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The model: an ONNX file, a BERT folder (config.json + model.safetensors), or `minilm` (the
    /// all-MiniLM-L6-v2 copy `scripts/fetch_minilm.sh` fetches, or $HARNESS_MINILM_DIR).
    pub model: PathBuf,
    /// Show the decisions of this one strategy (named as result rows name it, e.g.
    /// w8-static-channel-sym-minmax) instead of every family.
    #[arg(long)]
    pub strategy: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One Conv / Gemm / MatMul and what each strategy family does with it.
#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    pub name: String,
    pub op: &'static str,
    /// e.g. `3x3 s2 g16 16->16 depthwise` or `[1, 200] x [200, 2]`.
    pub shape: String,
    /// Weight matrix as the quantized layer holds it: `k` rows (one group's inputs), `n` columns.
    pub k: usize,
    pub n: usize,
    pub parameters: usize,
    /// Per weight granularity (`tensor`, `channel`, `group32`, `fp16`): `None` quantized, else why it stays FP32.
    /// Static, dynamic and weight-only activations quantize the same layers.
    pub float_reason: BTreeMap<String, Option<String>>,
}

/// A Q / DQ boundary of static mode.
#[derive(Clone, Debug, Serialize)]
pub struct Boundary {
    /// `Q` (f32 -> u8) or `DQ` (u8 -> f32).
    pub kind: &'static str,
    pub value: String,
    /// The node that needs the conversion (`graph output` for a graph output).
    pub before: String,
}

/// An elementwise chain static mode runs as a 256-entry table on its u8 input (see [`crate::quant::lut`]).
#[derive(Clone, Debug, Serialize)]
pub struct LutReport {
    /// The u8 value the table reads.
    pub input: String,
    /// The value it writes.
    pub output: String,
    /// The chain's nodes, in order.
    pub nodes: Vec<String>,
    /// `u8` (every consumer is a static quantized layer) or `f32`.
    pub output_type: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub opset: i64,
    pub nodes: usize,
    pub parameters: usize,
    pub ops: BTreeMap<&'static str, usize>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub layers: Vec<LayerReport>,
    /// The strategy the boundaries are for.
    pub boundaries_for: String,
    /// Static mode's boundaries; empty for dynamic and weight-only strategies (every quantized layer quantizes
    /// its f32 input itself and returns f32).
    pub boundaries: Vec<Boundary>,
    /// Values that stay u8 from one op to the next in static mode.
    pub u8_values: Vec<String>,
    /// Static mode's elementwise chains run as u8 tables.
    pub lut_chains: Vec<LutReport>,
}

/// The granularities `inspect` reports on, with the column names it uses.
fn families() -> [(&'static str, Granularity, bool); 4] {
    [
        ("tensor", Granularity::PerTensor, false),
        ("channel", Granularity::PerChannel, false),
        ("group32", Granularity::PerGroup(32), false),
        ("fp16/bf16", Granularity::PerTensor, true),
    ]
}

fn shape_of(graph: &Graph, node: &Node) -> (String, usize, usize) {
    let w = node
        .inputs
        .get(1)
        .and_then(|v| graph.initializers.get(v))
        .map(Tensor::shape)
        .map(<[usize]>::to_vec);
    match (&node.op, w) {
        (Op::Conv(a), Some(w)) if w.len() == 4 => {
            let (c_out, cg) = (w[0], w[1]);
            let c_in = cg * a.group;
            let mut s = format!(
                "{}x{} s{} {c_in}->{c_out}",
                a.kernel_shape[0], a.kernel_shape[1], a.strides[0]
            );
            if a.group > 1 {
                s += &format!(" g{}", a.group);
                if cg == 1 {
                    s += " depthwise";
                }
            }
            (s, cg * w[2] * w[3], c_out)
        }
        (Op::Gemm(a), Some(w)) if w.len() == 2 => {
            let (k, n) = if a.trans_b {
                (w[1], w[0])
            } else {
                (w[0], w[1])
            };
            (format!("[.., {k}] x [{k}, {n}]"), k, n)
        }
        (Op::MatMul, Some(w)) if w.len() == 2 => {
            (format!("[.., {}] x [{}, {}]", w[0], w[0], w[1]), w[0], w[1])
        }
        (_, Some(w)) => (format!("weights {w:?}"), 0, 0),
        (_, None) => ("weights computed at run time".into(), 0, 0),
    }
}

/// The report of `graph`; `strategy` picks the boundaries shown (default: static per-channel int8).
pub fn inspect(graph: &Graph, strategy: Option<Strategy>) -> Report {
    let mut ops = BTreeMap::new();
    for n in &graph.nodes {
        *ops.entry(n.op.op_type()).or_insert(0) += 1;
    }
    let linear = |n: &Node| matches!(n.op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul);
    let layers = graph
        .nodes
        .iter()
        .filter(|n| linear(n))
        .map(|node| {
            let (shape, k, n) = shape_of(graph, node);
            let float_reason = match strategy {
                Some(Strategy::Linear(s)) => [(
                    s.granularity.name().to_string(),
                    float_reason(graph, node, s.granularity, false),
                )]
                .into(),
                Some(Strategy::Float(f)) => [(
                    f.name().to_string(),
                    float_reason(graph, node, Granularity::PerTensor, true),
                )]
                .into(),
                Some(Strategy::Fp32) => [(
                    "fp32".to_string(),
                    Some("the FP32 strategy quantizes nothing".to_string()),
                )]
                .into(),
                None => families()
                    .into_iter()
                    .map(|(name, g, float)| (name.to_string(), float_reason(graph, node, g, float)))
                    .collect(),
            };
            let parameters = node
                .inputs
                .iter()
                .skip(1)
                .filter_map(|v| graph.initializers.get(v))
                .filter_map(Tensor::as_f32)
                .map(|a| a.len())
                .sum();
            LayerReport {
                name: node.name.clone(),
                op: node.op.op_type(),
                shape,
                k,
                n,
                parameters,
                float_reason,
            }
        })
        .collect();
    let (granularity, boundaries_for) = match strategy {
        Some(Strategy::Linear(s)) if s.act == ActMode::Static => {
            (Some(s.granularity), Strategy::Linear(s).name())
        }
        Some(s) => (None, s.name()),
        None => (
            Some(Granularity::PerChannel),
            "static int8, per-channel weights".into(),
        ),
    };
    let (boundaries, u8_values, lut_chains) = match granularity {
        Some(g) => static_boundaries(graph, g),
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    Report {
        model: graph.name.clone(),
        opset: graph.opset,
        nodes: graph.nodes.len(),
        parameters: graph.parameter_count(),
        ops,
        inputs: graph
            .inputs
            .iter()
            .map(|v| format!("{} {}", v.name, format_dims(&v.shape)))
            .collect(),
        outputs: graph
            .outputs
            .iter()
            .map(|v| format!("{} {}", v.name, format_dims(&v.shape)))
            .collect(),
        layers,
        boundaries_for,
        boundaries,
        u8_values,
        lut_chains,
    }
}

/// Static mode's Q / DQ boundaries, following the builder's rules: a quantized layer's output is u8 (a Relu
/// that is its only consumer fused in); Relu, MaxPool, Flatten and Reshape keep a u8 input u8; a quantized
/// layer quantizes an f32 input (Q); an elementwise chain on a u8 value runs as a table ([`lut_chain`], the
/// builder's own test), its output u8 when every consumer is a quantized layer; every other op dequantizes its
/// u8 inputs (DQ), as does a graph output.
fn static_boundaries(
    graph: &Graph,
    granularity: Granularity,
) -> (Vec<Boundary>, Vec<String>, Vec<LutReport>) {
    let mut consumers: HashMap<&str, usize> = HashMap::new();
    for n in &graph.nodes {
        for i in &n.inputs {
            *consumers.entry(i.as_str()).or_insert(0) += 1;
        }
    }
    let outputs: HashSet<&str> = graph.outputs.iter().map(|o| o.name.as_str()).collect();
    let mut u8s: HashSet<String> = HashSet::new();
    let mut order = Vec::new();
    let mut boundaries = Vec::new();
    let mut skip_relu: Option<&str> = None;
    let mut luts = Vec::new();
    let mut skip_to = 0;
    for (i, node) in graph.nodes.iter().enumerate() {
        if skip_relu == Some(node.name.as_str()) {
            skip_relu = None;
            continue;
        }
        if i < skip_to {
            continue;
        }
        let quantized = matches!(node.op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul)
            && float_reason(graph, node, granularity, false).is_none();
        let input = node.inputs.first().cloned().unwrap_or_default();
        if quantized {
            if !u8s.contains(&input) {
                boundaries.push(Boundary {
                    kind: "Q",
                    value: input,
                    before: node.name.clone(),
                });
            }
            let mut out = node.outputs[0].clone();
            if let Some(next) = graph.nodes.get(i + 1)
                && next.op == Op::Relu
                && next.inputs[0] == out
                && consumers.get(out.as_str()) == Some(&1)
                && !outputs.contains(out.as_str())
            {
                skip_relu = Some(&next.name);
                out = next.outputs[0].clone();
            }
            order.push(out.clone());
            u8s.insert(out);
            continue;
        }
        if let Some(span) = lut_chain(
            graph,
            i,
            |v| u8s.contains(v),
            |n| static_layer(graph, n, granularity, None),
        ) {
            luts.push(LutReport {
                input: span.input.clone(),
                output: span.output.clone(),
                nodes: graph.nodes[span.start..span.end]
                    .iter()
                    .map(|n| n.name.clone())
                    .collect(),
                output_type: if span.u8_output { "u8" } else { "f32" },
            });
            if span.u8_output {
                order.push(span.output.clone());
                u8s.insert(span.output);
            }
            skip_to = span.end;
            continue;
        }
        let keeps = matches!(
            node.op,
            Op::Relu | Op::MaxPool(_) | Op::Flatten { .. } | Op::Reshape { .. }
        );
        if keeps && u8s.contains(&input) {
            order.push(node.outputs[0].clone());
            u8s.insert(node.outputs[0].clone());
            continue;
        }
        for v in &node.inputs {
            if u8s.contains(v) {
                boundaries.push(Boundary {
                    kind: "DQ",
                    value: v.clone(),
                    before: node.name.clone(),
                });
            }
        }
    }
    for o in &graph.outputs {
        if u8s.contains(&o.name) {
            boundaries.push(Boundary {
                kind: "DQ",
                value: o.name.clone(),
                before: "graph output".into(),
            });
        }
    }
    (boundaries, order, luts)
}

/// The report as text.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    s += &format!(
        "model: {} (opset {}, {} nodes)\n",
        r.model, r.opset, r.nodes
    );
    s += &format!("inputs: {}\n", r.inputs.join(", "));
    s += &format!("outputs: {}\n", r.outputs.join(", "));
    s += &format!("parameters: {}\n", r.parameters);
    s += "\nops:\n";
    for (op, n) in &r.ops {
        s += &format!("  {op:<20} {n}\n");
    }
    let columns: Vec<String> = r
        .layers
        .first()
        .map(|l| l.float_reason.keys().cloned().collect())
        .unwrap_or_default();
    let quantized = |l: &LayerReport, c: &str| l.float_reason.get(c).is_some_and(Option::is_none);
    s += &format!(
        "\nlayers (Conv / Gemm / MatMul): {}\n",
        columns
            .iter()
            .map(|c| {
                let q = r.layers.iter().filter(|l| quantized(l, c)).count();
                format!("{c}: {q} of {} quantized", r.layers.len())
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    s += "  static, dynamic and weight-only activations quantize the same layers; int = quantized, fp32 = kept in float\n";
    let mut header = vec!["layer", "op", "shape", "k x n", "params"];
    header.extend(columns.iter().map(String::as_str));
    header.push("why fp32");
    let rows: Vec<Vec<String>> = r
        .layers
        .iter()
        .map(|l| {
            let mut row = vec![
                l.name.clone(),
                l.op.to_string(),
                l.shape.clone(),
                format!("{}x{}", l.k, l.n),
                l.parameters.to_string(),
            ];
            let mut reasons = Vec::new();
            for c in &columns {
                match l.float_reason.get(c) {
                    Some(None) => row.push("int".into()),
                    Some(Some(why)) => {
                        row.push("fp32".into());
                        if !reasons.contains(why) {
                            reasons.push(why.clone());
                        }
                    }
                    None => row.push("-".into()),
                }
            }
            row.push(reasons.join("; "));
            row
        })
        .collect();
    s += &crate::table::render(&header, &rows);
    if r.boundaries.is_empty() && r.u8_values.is_empty() {
        s += &format!(
            "\nQ/DQ boundaries ({}): none between layers; each quantized layer quantizes its f32 input and returns f32\n",
            r.boundaries_for
        );
        return s;
    }
    let q = r.boundaries.iter().filter(|b| b.kind == "Q").count();
    s += &format!(
        "\nQ/DQ boundaries ({}): {} values stay u8 between ops, {q} Q (f32 -> u8), {} DQ (u8 -> f32)\n",
        r.boundaries_for,
        r.u8_values.len(),
        r.boundaries.len() - q
    );
    for b in &r.boundaries {
        s += &format!("  {:<3} {} -> {}\n", b.kind, b.value, b.before);
    }
    if !r.lut_chains.is_empty() {
        let u8_out = r
            .lut_chains
            .iter()
            .filter(|c| c.output_type == "u8")
            .count();
        s += &format!(
            "  elementwise chains run as u8 tables: {} ({u8_out} with u8 output, {} with f32 output)\n",
            r.lut_chains.len(),
            r.lut_chains.len() - u8_out
        );
        for c in &r.lut_chains {
            s += &format!(
                "  LUT {} -> {} ({} out): {}\n",
                c.input,
                c.output,
                c.output_type,
                c.nodes.join(", ")
            );
        }
    }
    s += &format!("  u8 values: {}\n", r.u8_values.join(", "));
    s
}

/// The word that names the all-MiniLM-L6-v2 copy instead of a path (as a suite's bert `path` does).
const MINILM: &str = "minilm";

/// The graph of `model`: `minilm`, a BERT folder, or an ONNX file. Every failure is an input error naming
/// the model.
pub fn load_graph(model: &Path) -> Result<Graph, Error> {
    let fail = |message: String| Error::Model {
        model: model.display().to_string(),
        message,
    };
    let bert = |dir: &Path| {
        crate::models::load_bert(dir)
            .map(|m| m.graph)
            .map_err(|e| fail(e.to_string()))
    };
    if model.as_os_str() == MINILM {
        let dir = crate::models::bert::find_minilm_dir().ok_or_else(|| {
            fail(
                "all-MiniLM-L6-v2 is not installed: run `bash scripts/fetch_minilm.sh` (or set \
                 HARNESS_MINILM_DIR to a folder with config.json, model.safetensors and tokenizer.json)"
                    .into(),
            )
        })?;
        return bert(&dir);
    }
    if model.is_dir() {
        for file in ["config.json", "model.safetensors"] {
            if !model.join(file).is_file() {
                return Err(fail(format!(
                    "a folder must be a BERT model (config.json + model.safetensors): {file} not found"
                )));
            }
        }
        return bert(model);
    }
    crate::onnx::load_model(model).map_err(|e| Error::Import {
        model: model.display().to_string(),
        source: Box::new(e),
    })
}

/// `harness inspect`.
pub fn command(args: &InspectArgs) -> Result<(), Error> {
    let graph = load_graph(&args.model)?;
    let strategy = args
        .strategy
        .as_deref()
        .map(|s| s.parse::<Strategy>())
        .transpose()
        .map_err(|e| Error::Usage(e.to_string()))?;
    let report = inspect(&graph, strategy);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| Error::Run(e.to_string()))?
        );
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}
