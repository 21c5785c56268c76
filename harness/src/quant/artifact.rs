//! The loadable quantized model (`.qhq`): what `harness quantize` writes and `harness infer` runs, without
//! the FP32 weights and without calibrating again.
//!
//! # Format
//!
//! A QHQM container of version 2 (see [`super::serialize`]): magic `QHQM`, version 2, the strategy name, then
//! records, each `name, dtype, rank, dims (u32), payload length (u64), payload`:
//! - `__plan__` (u8): UTF-8 TOML, the executor's step list: every quantized layer (name, op, input and output
//!   values, layout, convolution attributes, weight width and code kind, scheme, granularity, activation mode,
//!   fused Relu) and every other step (an index into `__graph__`, an in-place NHWC flatten, or an elementwise
//!   chain run as a u8 table: its nodes in `__graph__` and the u8 parameters of its input and, when it stays
//!   u8, its output; the table is computed again at load);
//! - `__graph__` (u8): an ONNX `ModelProto` holding the graph's name, opset, inputs and outputs (with their
//!   shapes) and the nodes that stay unquantized, in order; values they read from quantized layers or
//!   constants are declared as extra inputs (listed in the plan, so the loader knows the real ones);
//! - then exactly the records of the size container (`serialize_quantized`, whose length is the `size_bytes`
//!   of a result row): per layer `<layer>.weight_q<bits>` (the stored weights, packed at the layer's code width),
//!   `.weight_scale`, `.weight_zero_point`, `.input_/.output_scale` and `_zero_point` for static layers, `.bias_q`
//!   (i32, accumulator units) or `.bias` (f32); then the float constants the unquantized nodes read.
//!
//! Loading unpacks the stored weights and packs them again for this machine's kernels; requantization
//! parameters are recomputed from the stored ones the way the builder computed them, so a loaded model gives
//! the same outputs bit for bit as the model it was saved from (on the same kernels).
//!
//! This module also parses strategy names ([`Strategy`]'s `FromStr`: the names result rows print) and holds the
//! `harness quantize` and `harness infer` commands.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use kernels::KernelSet;
use ndarray::{ArrayD, IxDyn};
use prost::Message;
use serde::{Deserialize, Serialize};
use strategies::calib::CalibrationMethod;
use strategies::pow2::ScaleConstraint;
use strategies::{ActParams, Granularity, QParams, Scheme};

use super::QuantError;
use super::model::{
    LayerMode, LayerParts, LinearShape, QuantizedModel, Signature, StepParts, StepRef,
};
use super::serialize::{self, DType, Record, VERSION_LOADABLE, Writer};
use super::strategy::{
    ActMode, Calibration, FloatFormat, LinearStrategy, Quantizer, Refinement, Strategy, WeightRange,
};
use crate::ir::{ConvAttrs, Graph, Node, Tensor, ValueInfo};

const PLAN: &str = "__plan__";
const GRAPH: &str = "__graph__";
const FORMAT: &str = "qhq-artifact-1";

/// Why an artifact could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a loadable quantized model: {reason}", .path.display())]
    Format { path: PathBuf, reason: String },
    #[error("{}: {source}", .path.display())]
    Quant {
        path: PathBuf,
        source: Box<QuantError>,
    },
    #[error("cannot save: {0}")]
    Save(String),
}

// ---------------------------------------------------------------------------------------------------------
// Strategy names.

/// A strategy name that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "strategy name `{name}`: {reason} (expected fp32, fp16, bf16 or w<bits>-<static|dynamic|weightonly>-<tensor|channel|group<g>>-<sym|affine>[-<calibration>][-log][-pow2][-wmse][-<biascorr|gptq|adaround|qat>], e.g. w8-static-channel-sym-minmax)"
)]
pub struct StrategyNameError {
    pub name: String,
    pub reason: String,
}

impl FromStr for Strategy {
    type Err = StrategyNameError;

    /// Parses the names [`Strategy::name`] prints (calibration names also in their token form, e.g.
    /// `percentile:99.99`). A mixed-precision suffix (`-mix.<map>`) names the map the per-layer widths came
    /// from; the map itself is not in the name (a saved model's layers carry their own widths).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| StrategyNameError {
            name: name.to_string(),
            reason,
        };
        match name {
            "fp32" => return Ok(Strategy::Fp32),
            "fp16" => return Ok(Strategy::Float(FloatFormat::Fp16)),
            "bf16" => return Ok(Strategy::Float(FloatFormat::Bf16)),
            _ => {}
        }
        let (name, mixed) = match name.split_once("-mix.") {
            Some((_, "")) => return Err(bad("empty mixed-precision map name".into())),
            Some((base, map)) => (base, Some(map)),
            None => (name, None),
        };
        if let Some(map) = mixed {
            let mut s = name.parse::<Strategy>()?;
            if let Strategy::Linear(l) = &mut s {
                l.mixed = Some(crate::quant::strategy::MixedId {
                    // Not an index into a suite: a loaded model's map is its layers' own widths.
                    index: u16::MAX,
                    name: Box::leak(map.to_string().into_boxed_str()),
                });
                return Ok(s);
            }
            return Err(bad(
                "only integer strategies take a mixed-precision map".into()
            ));
        }
        let mut tokens = name.split('-');
        let mut next = |what: &str| {
            tokens
                .next()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| bad(format!("missing {what}")))
        };
        let bits = next("the weight width")?;
        let weight_bits: u32 = bits
            .strip_prefix('w')
            .and_then(|b| b.parse().ok())
            .filter(|b| (2..=8).contains(b))
            .ok_or_else(|| bad(format!("`{bits}` is not a weight width w2..w8")))?;
        let act = match next("the activation mode")? {
            "static" => ActMode::Static,
            "dynamic" => ActMode::Dynamic,
            "weightonly" => ActMode::WeightOnly,
            other => {
                return Err(bad(format!(
                    "`{other}` is not an activation mode (static, dynamic, weightonly)"
                )));
            }
        };
        let granularity: Granularity = next("the granularity")?
            .parse()
            .map_err(|e: strategies::SchemeError| bad(e.to_string()))?;
        let scheme: Scheme = next("the scheme")?
            .parse()
            .map_err(|e: strategies::SchemeError| bad(e.to_string()))?;
        let calibration = if act == ActMode::Static {
            let token = next("the calibration method (static strategies name one, e.g. minmax)")?;
            let method = CalibrationMethod::parse(token).map_err(|e| bad(e.to_string()))?;
            Some(Calibration::from_method(method))
        } else {
            None
        };
        let mut s = LinearStrategy::uniform(weight_bits, act, granularity, scheme, calibration);
        // The optional parts, in the order names print them.
        let mut stage = 0;
        for token in tokens {
            let at = match token {
                "log" => 1,
                "pow2" => 2,
                "wmse" => 3,
                "biascorr" | "gptq" | "adaround" | "qat" | "cle" => 4,
                other if stage == 0 && act != ActMode::Static => {
                    return Err(bad(format!(
                        "`{other}`: only static strategies name a calibration method"
                    )));
                }
                other => return Err(bad(format!("unknown or misplaced part `{other}`"))),
            };
            if at <= stage {
                return Err(bad(format!("`{token}` is repeated or out of order")));
            }
            stage = at;
            match token {
                "log" => s.quantizer = Quantizer::Log,
                "pow2" => s.scale = ScaleConstraint::PowerOfTwo,
                "wmse" => s.weight_range = WeightRange::Mse,
                "biascorr" => s.refinement = Refinement::BiasCorrection,
                "gptq" => s.refinement = Refinement::Gptq,
                "adaround" => s.refinement = Refinement::AdaRound,
                "cle" => s.refinement = Refinement::Cle,
                _ => s.refinement = Refinement::Qat,
            }
        }
        Ok(Strategy::Linear(s))
    }
}

// ---------------------------------------------------------------------------------------------------------
// The plan.

#[derive(Serialize, Deserialize, Debug)]
struct Plan {
    format: String,
    strategy: String,
    /// The real graph inputs, in order (the embedded graph also declares the values it reads from elsewhere).
    inputs: Vec<String>,
    /// The real graph outputs, in order (the embedded graph also lists every node's output).
    outputs: Vec<String>,
    /// Names of the constant records.
    constants: Vec<String>,
    steps: Vec<StepPlan>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StepPlan {
    /// The embedded graph's node that writes this value.
    Node {
        output: String,
    },
    FlattenNhwc {
        input: String,
        output: String,
    },
    Linear(Box<LayerPlan>),
    /// An elementwise chain run as a table: the embedded graph's nodes that write `nodes`, in order, and the
    /// u8 parameters the table was built for (scales as f64, exactly the f32 values); no output parameters
    /// when the output is f32. The table is computed again at load, the way the builder computed it.
    Lut {
        input: String,
        output: String,
        nodes: Vec<String>,
        input_scale: f64,
        input_zero_point: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_scale: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_zero_point: Option<i32>,
    },
}

#[derive(Serialize, Deserialize, Debug)]
struct LayerPlan {
    name: String,
    op: String,
    input: String,
    output: String,
    /// `conv` (rows `(c, ky, kx)`, NCHW), `conv_nhwc` (rows `(ky, kx, c)`) or `dense`.
    layout: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conv: Option<ConvPlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nhwc_channels: Option<usize>,
    k: usize,
    n: usize,
    /// Width of the stored weights (the code width for log weights; 16 / 32 for float weights).
    code_bits: u32,
    log: bool,
    /// Bit width of the int8 weights' parameters.
    bits: u32,
    scheme: String,
    granularity: String,
    /// `static`, `static_grouped`, `dynamic`, `weightonly`, `fp16`, `bf16` or `fp32`.
    mode: String,
    relu: bool,
}

#[derive(Serialize, Deserialize, Debug)]
struct ConvPlan {
    kernel_shape: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
    group: usize,
}

fn mode_name(mode: &LayerMode) -> &'static str {
    match mode {
        LayerMode::Static { .. } => "static",
        LayerMode::StaticGrouped { .. } => "static_grouped",
        LayerMode::Dynamic => "dynamic",
        LayerMode::WeightOnly => "weightonly",
        LayerMode::Float(f) => f.name(),
    }
}

fn op_name(op: &str) -> Option<&'static str> {
    ["Conv", "Gemm", "MatMul"].into_iter().find(|o| *o == op)
}

// ---------------------------------------------------------------------------------------------------------
// Saving.

impl QuantizedModel {
    /// The artifact's bytes (format in the module docs).
    pub fn to_artifact_bytes(&self) -> Result<Vec<u8>, ArtifactError> {
        let signature = self.signature();
        let strategy = self.strategy();
        let mut steps = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        for step in self.step_refs() {
            steps.push(match step {
                StepRef::Node(node) => {
                    nodes.push(node.clone());
                    StepPlan::Node {
                        output: node.outputs[0].clone(),
                    }
                }
                StepRef::FlattenNhwc { input, output } => StepPlan::FlattenNhwc {
                    input: input.to_string(),
                    output: output.to_string(),
                },
                StepRef::Lut(c) => {
                    nodes.extend(c.nodes.iter().cloned());
                    StepPlan::Lut {
                        input: c.input.clone(),
                        output: c.output.clone(),
                        nodes: c.nodes.iter().map(|n| n.outputs[0].clone()).collect(),
                        input_scale: f64::from(c.input_params.scale),
                        input_zero_point: c.input_params.zero_point,
                        output_scale: c.output_params.map(|p| f64::from(p.scale)),
                        output_zero_point: c.output_params.map(|p| p.zero_point),
                    }
                }
                StepRef::Linear(l) => {
                    let (layout, conv) = match l.shape() {
                        LinearShape::Conv(a) => ("conv", Some(conv_plan(a))),
                        LinearShape::ConvNhwc(a) => ("conv_nhwc", Some(conv_plan(a))),
                        LinearShape::Dense => ("dense", None),
                    };
                    StepPlan::Linear(Box::new(LayerPlan {
                        name: l.name.clone(),
                        op: l.op.to_string(),
                        input: l.input().to_string(),
                        output: l.output().to_string(),
                        layout: layout.to_string(),
                        conv,
                        nhwc_channels: l.nhwc_channels,
                        k: l.k,
                        n: l.n,
                        code_bits: l.code_bits,
                        log: l.log,
                        bits: l.params.bits,
                        scheme: l.params.scheme.name().to_string(),
                        granularity: l.params.granularity.name().to_string(),
                        mode: mode_name(&l.layer_mode()).to_string(),
                        relu: l.relu(),
                    }))
                }
            });
        }
        // The embedded graph: the unquantized nodes; what they read from elsewhere is declared as an input.
        let mut defined: BTreeSet<&str> =
            signature.inputs.iter().map(|v| v.name.as_str()).collect();
        let mut extra: Vec<ValueInfo> = Vec::new();
        let mut read = |name: &str, defined: &BTreeSet<&str>| {
            if !name.is_empty() && !defined.contains(name) && !extra.iter().any(|v| v.name == name)
            {
                extra.push(ValueInfo {
                    name: name.to_string(),
                    shape: Vec::new(),
                });
            }
        };
        for node in &nodes {
            for input in &node.inputs {
                read(input, &defined);
            }
            defined.extend(node.outputs.iter().map(String::as_str));
        }
        for output in &signature.outputs {
            read(&output.name, &defined);
        }
        // Every node's output is a graph output too, so that the importer's dead-node pass keeps them all.
        let mut outputs = signature.outputs.clone();
        for node in &nodes {
            for o in &node.outputs {
                if !outputs.iter().any(|v| &v.name == o) {
                    outputs.push(ValueInfo {
                        name: o.clone(),
                        shape: Vec::new(),
                    });
                }
            }
        }
        let graph = Graph {
            name: signature.name.clone(),
            opset: signature.opset,
            inputs: signature.inputs.iter().cloned().chain(extra).collect(),
            outputs,
            initializers: Default::default(),
            nodes,
        };
        let mut constants: Vec<String> = self.constants.keys().cloned().collect();
        constants.sort();
        let plan = Plan {
            format: FORMAT.to_string(),
            strategy: strategy.name(),
            inputs: signature.inputs.iter().map(|v| v.name.clone()).collect(),
            outputs: signature.outputs.iter().map(|v| v.name.clone()).collect(),
            constants,
            steps,
        };
        let plan = toml::to_string(&plan).map_err(|e| ArtifactError::Save(e.to_string()))?;
        let graph =
            crate::onnx::encode_model(&graph).map_err(|e| ArtifactError::Save(e.to_string()))?;
        let mut w = Writer::versioned(&strategy.name(), VERSION_LOADABLE);
        w.record(PLAN, DType::U8, &[plan.len()], plan.bytes());
        w.record(GRAPH, DType::U8, &[graph.len()], graph);
        serialize::write_quantized(&mut w, self);
        Ok(w.into_bytes())
    }

    /// Writes the artifact to `path`; returns its size in bytes.
    pub fn save(&self, path: &Path) -> Result<u64, ArtifactError> {
        let bytes = self.to_artifact_bytes()?;
        std::fs::write(path, &bytes).map_err(|source| ArtifactError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(bytes.len() as u64)
    }

    /// Loads an artifact written by [`Self::save`], for the kernels the dispatcher picks on this machine
    /// (`QH_ISA` applies).
    pub fn load(path: &Path) -> Result<Self, ArtifactError> {
        let kernels = kernels::select(None).map_err(|e| ArtifactError::Format {
            path: path.to_owned(),
            reason: format!("no kernels: {e}"),
        })?;
        Self::load_with(path, kernels)
    }

    /// [`Self::load`] with the given kernels.
    pub fn load_with(path: &Path, kernels: KernelSet) -> Result<Self, ArtifactError> {
        let bytes = std::fs::read(path).map_err(|source| ArtifactError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_artifact_bytes(&bytes, path, kernels)
    }

    /// Rebuilds the model from an artifact's bytes; `source` names them in errors.
    pub fn from_artifact_bytes(
        bytes: &[u8],
        origin: &Path,
        kernels: KernelSet,
    ) -> Result<Self, ArtifactError> {
        let format = |reason: String| ArtifactError::Format {
            path: origin.to_owned(),
            reason,
        };
        let c = serialize::read_container(bytes).map_err(format)?;
        let record = |name: &str| {
            c.records
                .get(name)
                .ok_or_else(|| format(format!("record `{name}` is missing")))
        };
        let text = String::from_utf8(record(PLAN)?.u8s(PLAN).map_err(format)?)
            .map_err(|_| format("the plan is not UTF-8".into()))?;
        let plan: Plan = toml::from_str(&text).map_err(|e| format(format!("the plan: {e}")))?;
        if plan.format != FORMAT {
            return Err(format(format!(
                "plan format `{}`; this harness reads `{FORMAT}`",
                plan.format
            )));
        }
        if plan.strategy != c.strategy {
            return Err(format(format!(
                "the header names strategy `{}`, the plan `{}`",
                c.strategy, plan.strategy
            )));
        }
        let strategy: Strategy = plan
            .strategy
            .parse()
            .map_err(|e: StrategyNameError| format(e.to_string()))?;
        let graph_bytes = record(GRAPH)?.u8s(GRAPH).map_err(format)?;
        let proto = crate::onnx::proto::ModelProto::decode(graph_bytes.as_slice())
            .map_err(|e| format(format!("the embedded graph: {e}")))?;
        let graph = crate::onnx::import_model(&proto, origin)
            .map_err(|e| format(format!("the embedded graph: {e}")))?;
        let find = |names: &[String], values: &[ValueInfo], what: &str| {
            names
                .iter()
                .map(|name| {
                    values
                        .iter()
                        .find(|v| &v.name == name)
                        .cloned()
                        .ok_or_else(|| {
                            format(format!("{what} `{name}` is not in the embedded graph"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let signature = Signature {
            name: graph.name.clone(),
            opset: graph.opset,
            inputs: find(&plan.inputs, &graph.inputs, "input")?,
            outputs: find(&plan.outputs, &graph.outputs, "output")?,
        };
        let mut constants = HashMap::new();
        for name in &plan.constants {
            let t = record(name)?.tensor(name).map_err(format)?;
            constants.insert(name.clone(), t);
        }
        let node_writing = |output: &str| {
            graph
                .nodes
                .iter()
                .find(|n| n.outputs.first().map(String::as_str) == Some(output))
                .cloned()
                .ok_or_else(|| {
                    format(format!(
                        "no node of the embedded graph writes `{output}`, which a step names"
                    ))
                })
        };
        let mut steps = Vec::with_capacity(plan.steps.len());
        for step in plan.steps {
            steps.push(match step {
                StepPlan::Node { output } => StepParts::Node(node_writing(&output)?),
                StepPlan::Lut {
                    input,
                    output,
                    nodes,
                    input_scale,
                    input_zero_point,
                    output_scale,
                    output_zero_point,
                } => {
                    let nodes = nodes
                        .iter()
                        .map(|o| node_writing(o))
                        .collect::<Result<Vec<_>, _>>()?;
                    if nodes.last().map(|n| &n.outputs[0]) != Some(&output) {
                        return Err(format(format!(
                            "the elementwise chain writing `{output}` does not end with the node that writes it"
                        )));
                    }
                    let output_params = match (output_scale, output_zero_point) {
                        (Some(scale), Some(zero_point)) => Some(ActParams {
                            scale: scale as f32,
                            zero_point,
                        }),
                        (None, None) => None,
                        _ => {
                            return Err(format(format!(
                                "the elementwise chain writing `{output}` has half of its output parameters"
                            )));
                        }
                    };
                    StepParts::Lut {
                        nodes,
                        input,
                        input_params: ActParams {
                            scale: input_scale as f32,
                            zero_point: input_zero_point,
                        },
                        output_params,
                    }
                }
                StepPlan::FlattenNhwc { input, output } => StepParts::FlattenNhwc { input, output },
                StepPlan::Linear(l) => {
                    StepParts::Linear(Box::new(layer_parts(*l, &c.records).map_err(format)?))
                }
            });
        }
        QuantizedModel::from_parts(strategy, signature, steps, constants, kernels).map_err(|e| {
            ArtifactError::Quant {
                path: origin.to_owned(),
                source: Box::new(e),
            }
        })
    }
}

fn conv_plan(a: &ConvAttrs) -> ConvPlan {
    ConvPlan {
        kernel_shape: a.kernel_shape,
        strides: a.strides,
        pads: a.pads,
        dilations: a.dilations,
        group: a.group,
    }
}

/// One layer of the plan with its records.
fn layer_parts(
    l: LayerPlan,
    records: &std::collections::BTreeMap<String, Record>,
) -> Result<LayerParts, String> {
    let name = l.name.clone();
    let record = |suffix: &str| -> Result<(String, &Record), String> {
        let key = format!("{name}.{suffix}");
        match records.get(&key) {
            Some(r) => Ok((key, r)),
            None => Err(format!("layer `{name}`: record `{key}` is missing")),
        }
    };
    let optional = |suffix: &str| {
        let key = format!("{name}.{suffix}");
        records.get(&key).map(|r| (key, r))
    };
    let op = op_name(&l.op).ok_or_else(|| format!("layer `{name}`: unknown op `{}`", l.op))?;
    let conv = |c: Option<ConvPlan>| {
        c.map(|c| ConvAttrs {
            kernel_shape: c.kernel_shape,
            strides: c.strides,
            pads: c.pads,
            dilations: c.dilations,
            group: c.group,
        })
        .ok_or_else(|| format!("layer `{name}`: a convolution without its attributes"))
    };
    let shape = match l.layout.as_str() {
        "conv" => LinearShape::Conv(conv(l.conv)?),
        "conv_nhwc" => LinearShape::ConvNhwc(conv(l.conv)?),
        "dense" => LinearShape::Dense,
        other => return Err(format!("layer `{name}`: unknown layout `{other}`")),
    };
    let scheme: Scheme = l
        .scheme
        .parse()
        .map_err(|e: strategies::SchemeError| format!("layer `{name}`: {e}"))?;
    let granularity: Granularity = l
        .granularity
        .parse()
        .map_err(|e: strategies::SchemeError| format!("layer `{name}`: {e}"))?;
    let (key, w) = record(&format!("weight_q{}", l.bits))?;
    if w.dtype != DType::Packed || w.dims != [l.k, l.n] {
        return Err(format!(
            "record `{key}` is {:?} {:?}; expected packed [{}, {}]",
            w.dtype, w.dims, l.k, l.n
        ));
    }
    let (key, scales) = record("weight_scale")?;
    let scales = scales.f32s(&key)?;
    let (key, zps) = record("weight_zero_point")?;
    let zero_points = zps.i8s(&key)?.into_iter().map(i32::from).collect();
    let act = |which: &str| -> Result<ActParams, String> {
        let (key, s) = record(&format!("{which}_scale"))?;
        let scale = *s
            .f32s(&key)?
            .first()
            .ok_or(format!("record `{key}` is empty"))?;
        let (key, z) = record(&format!("{which}_zero_point"))?;
        let zero_point = *z
            .u8s(&key)?
            .first()
            .ok_or(format!("record `{key}` is empty"))?;
        Ok(ActParams {
            scale,
            zero_point: i32::from(zero_point),
        })
    };
    let bias = match optional("bias") {
        Some((key, r)) => Some(r.f32s(&key)?),
        None => None,
    };
    let mode = match l.mode.as_str() {
        "static" => LayerMode::Static {
            input: act("input")?,
            output: act("output")?,
            bias_q: match optional("bias_q") {
                Some((key, r)) => Some(r.i32s(&key)?),
                None => None,
            },
        },
        "static_grouped" => LayerMode::StaticGrouped {
            input: act("input")?,
            output: act("output")?,
        },
        "dynamic" => LayerMode::Dynamic,
        "weightonly" => LayerMode::WeightOnly,
        "fp16" => LayerMode::Float(FloatFormat::Fp16),
        "bf16" => LayerMode::Float(FloatFormat::Bf16),
        "fp32" => LayerMode::Float(FloatFormat::Fp32),
        other => return Err(format!("layer `{name}`: unknown mode `{other}`")),
    };
    Ok(LayerParts {
        op,
        input: l.input,
        output: l.output,
        shape,
        k: l.k,
        n: l.n,
        stored: w.payload.clone(),
        code_bits: l.code_bits,
        log: l.log,
        nhwc_channels: l.nhwc_channels,
        params: QParams {
            scales,
            zero_points,
            bits: l.bits,
            scheme,
            granularity,
        },
        bias,
        relu: l.relu,
        mode,
        name: l.name,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Commands.

/// Options of `harness quantize`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_long_help = "\
Examples:
  harness export-split --out split        # calibration_f32.npy of the quickstart suite's MNIST split
  harness quantize suites/data/ccexam_mnist_cnn/ccexam_mnist_cnn.onnx \\
      --strategy w8-static-channel-sym-minmax --calib split/mnist-5k/calibration_f32.npy \\
      --out cnn.qhq --qdq cnn_qdq.onnx
  harness infer cnn.qhq --input input=split/mnist-5k/evaluation_f32.npy --out logits/")]
pub struct QuantizeArgs {
    /// The FP32 ONNX model.
    pub model: PathBuf,
    /// The strategy, named as result rows name it (e.g. w8-static-channel-sym-minmax, w4-weightonly-group32-sym,
    /// w8-static-channel-sym-p99.99-gptq, bf16).
    #[arg(long)]
    pub strategy: String,
    /// Calibration samples: `.npy` files of normalised inputs `[N, ...]` for the model's input (for instance
    /// `calibration_f32.npy` from `harness export-split`). Static strategies and refinements need them.
    #[arg(long, num_args = 1..)]
    pub calib: Vec<PathBuf>,
    /// The model input the calibration samples feed (default: the model's only input).
    #[arg(long)]
    pub input: Option<String>,
    /// Samples per calibration batch.
    #[arg(long, default_value_t = 256)]
    pub calib_batch: usize,
    /// Seed of the refinements that sample (AdaRound).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Write the loadable quantized model (`.qhq`) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the QDQ ONNX model (ONNX Runtime's static format, our scales and zero points) here.
    #[arg(long)]
    pub qdq: Option<PathBuf>,
}

/// Options of `harness infer`.
#[derive(clap::Args, Debug, Clone)]
pub struct InferArgs {
    /// An ONNX model (run in FP32) or a `.qhq` quantized model from `harness quantize`.
    pub model: PathBuf,
    /// `NAME=FILE.npy` for each model input (just `FILE.npy` when the model has one input). f32, or u8 / i32 / i64
    /// converted to f32.
    #[arg(long = "input", required = true)]
    pub inputs: Vec<String>,
    /// Folder that receives `<output>.npy` for every graph output.
    #[arg(long)]
    pub out: PathBuf,
}

fn usage(message: impl Into<String>) -> crate::Error {
    crate::Error::Usage(message.into())
}

fn read_input(path: &Path) -> Result<ArrayD<f32>, crate::Error> {
    let (shape, data) = crate::data::read_npy_f32(path)
        .map_err(|e| usage(format!("input file {}: {e}", path.display())))?;
    ArrayD::from_shape_vec(IxDyn(&shape), data)
        .map_err(|e| usage(format!("input file {}: {e}", path.display())))
}

/// `harness quantize`: quantizes an ONNX model with one strategy, calibrated on `.npy` samples, and writes the
/// loadable artifact and / or the QDQ ONNX model.
pub fn quantize_command(args: &QuantizeArgs) -> Result<(), crate::Error> {
    use crate::exec::reference::Fp32Executor;
    let model_name = args.model.display().to_string();
    if args.out.is_none() && args.qdq.is_none() {
        return Err(usage(
            "nothing to write: give --out FILE.qhq and / or --qdq FILE.onnx",
        ));
    }
    if args.calib_batch == 0 {
        return Err(usage("--calib-batch must be at least 1"));
    }
    let strategy: Strategy = args
        .strategy
        .parse()
        .map_err(|e: StrategyNameError| usage(e.to_string()))?;
    let mut graph =
        crate::onnx::load_model(&args.model).map_err(|source| crate::Error::Import {
            model: model_name.clone(),
            source: Box::new(source),
        })?;
    // Cross-layer equalization rewrites the FP32 weights before anything is calibrated on them.
    if matches!(strategy, Strategy::Linear(l) if l.refinement == Refinement::Cle) {
        crate::ir::equalize::equalize_graph(&mut graph)
            .map_err(|e| usage(format!("model `{model_name}`: {e}")))?;
    }
    let graph = graph;
    let input = match (&args.input, graph.inputs.as_slice()) {
        (Some(name), inputs) if inputs.iter().any(|i| &i.name == name) => name.clone(),
        (None, [only]) => only.name.clone(),
        (_, inputs) => {
            let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(usage(format!(
                "model `{model_name}` has inputs [{}]; name the one the calibration samples feed with --input",
                names.join(", ")
            )));
        }
    };
    let kernels = kernels::select(None).map_err(|e| crate::Error::Run(e.to_string()))?;
    let quant_err = |source: QuantError| crate::Error::Quant {
        model: model_name.clone(),
        strategy: strategy.name(),
        source: Box::new(source),
    };
    let model = match strategy {
        Strategy::Fp32 => {
            return Err(usage(
                "strategy fp32 quantizes nothing: the ONNX file is the FP32 model",
            ));
        }
        Strategy::Float(f) => QuantizedModel::build_float(&graph, f, kernels).map_err(quant_err)?,
        Strategy::Linear(l) => {
            if l.mixed.is_some() {
                return Err(usage(
                    "mixed-precision maps are defined in a suite's [[space.mixed]]; run the suite, or `harness search --save-model`",
                ));
            }
            if l.refinement == Refinement::Qat {
                return Err(usage(
                    "qat fine-tunes on labelled data; run it from a suite (`harness run`) instead",
                ));
            }
            let needs_calib = l.act == ActMode::Static
                || !matches!(l.refinement, Refinement::None | Refinement::Cle);
            if needs_calib && args.calib.is_empty() {
                return Err(usage(format!(
                    "strategy `{strategy}` needs calibration samples: give --calib FILE.npy (e.g. calibration_f32.npy from `harness export-split`)"
                )));
            }
            // Every calibration sample, checked against the model input, in batches.
            let mut batches = Vec::new();
            for path in &args.calib {
                let x = read_input(path)?;
                check_against(&graph.inputs, &[(&input, &x)])
                    .map_err(|e| usage(format!("calibration file {}: {e}", path.display())))?;
                let n = x.shape()[0];
                for s in (0..n).step_by(args.calib_batch) {
                    let e = (s + args.calib_batch).min(n);
                    batches.push(x.slice_axis(ndarray::Axis(0), (s..e).into()).to_owned());
                }
            }
            let exec = Fp32Executor::new(&graph, kernels).map_err(|e| crate::Error::Model {
                model: model_name.clone(),
                message: e.to_string(),
            })?;
            let ranges = if l.act == ActMode::Static {
                let rule = (
                    l.calibration.unwrap_or(Calibration::MinMax),
                    l.scheme == Scheme::Symmetric,
                );
                Some(
                    super::ActivationRanges::observe_rules(
                        &exec,
                        &input,
                        batches.iter().cloned(),
                        &[rule],
                    )
                    .map_err(quant_err)?,
                )
            } else {
                None
            };
            let refine = if !matches!(l.refinement, Refinement::None | Refinement::Cle) {
                Some(
                    super::refine::RefineData::collect(
                        &exec,
                        &graph,
                        &input,
                        batches.iter().cloned(),
                        &[l.refinement],
                        args.seed,
                    )
                    .map_err(quant_err)?,
                )
            } else {
                None
            };
            QuantizedModel::build_full(&graph, l, None, ranges.as_ref(), refine.as_ref(), kernels)
                .map_err(quant_err)?
        }
    };
    let fp32 = serialize::serialize_fp32(&graph).len();
    let size = serialize::serialize_quantized(&model).len();
    println!(
        "strategy:  {strategy} ({} quantized layers, kernels {})",
        model.linears().count(),
        model.kernel_names().join("+")
    );
    println!(
        "size:      {size} bytes of constants ({:.1} % of FP32's {fp32})",
        100.0 * size as f64 / fp32 as f64
    );
    // A strategy the QDQ format cannot express is refused before anything is written.
    let qdq = match &args.qdq {
        Some(path) => Some((
            path,
            crate::onnx::qdq::export_qdq(&model).map_err(|e| usage(e.to_string()))?,
        )),
        None => None,
    };
    if let Some(path) = &args.out {
        let bytes = model
            .save(path)
            .map_err(|e| crate::Error::Run(e.to_string()))?;
        println!("artifact:  {} ({bytes} bytes)", path.display());
    }
    if let Some((path, proto)) = qdq {
        let bytes = proto.encode_to_vec();
        std::fs::write(path, &bytes)
            .map_err(|e| crate::Error::Run(format!("{}: {e}", path.display())))?;
        println!("qdq onnx:  {} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}

/// Checks named inputs against the declared ones: a known name, and the declared rank and fixed dimensions (all
/// but the first, the free batch dimension).
fn check_against(declared: &[ValueInfo], given: &[(&str, &ArrayD<f32>)]) -> Result<(), String> {
    for (name, a) in given {
        let decl = declared.iter().find(|v| v.name == *name).ok_or_else(|| {
            format!(
                "the model has no input `{name}` (its inputs: [{}])",
                names(declared)
            )
        })?;
        // An empty declared shape means the file did not record one.
        let fits = decl.shape.is_empty()
            || (decl.shape.len() == a.ndim()
                && decl
                    .shape
                    .iter()
                    .zip(a.shape())
                    .enumerate()
                    .all(|(axis, (d, &got))| {
                        axis == 0 || !matches!(d, crate::ir::Dim::Fixed(n) if *n != got)
                    }));
        if !fits {
            return Err(format!(
                "input `{name}` has shape {:?}; the model declares {}",
                a.shape(),
                crate::exec::format_dims(&decl.shape)
            ));
        }
    }
    Ok(())
}

/// `harness infer`: runs an ONNX model (FP32) or a `.qhq` artifact on `.npy` inputs and writes every graph output
/// to `<out>/<output>.npy`.
pub fn infer_command(args: &InferArgs) -> Result<(), crate::Error> {
    use crate::exec::reference::Fp32Executor;
    let model_name = args.model.display().to_string();
    let mut head = [0u8; 4];
    let is_artifact = std::fs::File::open(&args.model)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"QHQM";
    enum Runner {
        Fp32(Box<Fp32Executor>),
        Quantized(Box<QuantizedModel>),
    }
    let (runner, inputs_declared) = if is_artifact {
        let m = QuantizedModel::load(&args.model).map_err(|e| usage(e.to_string()))?;
        let inputs = m.signature().inputs.clone();
        (Runner::Quantized(Box::new(m)), inputs)
    } else {
        let graph =
            crate::onnx::load_model(&args.model).map_err(|source| crate::Error::Import {
                model: model_name.clone(),
                source: Box::new(source),
            })?;
        let kernels = kernels::select(None).map_err(|e| crate::Error::Run(e.to_string()))?;
        let exec = Fp32Executor::new(&graph, kernels).map_err(|e| crate::Error::Model {
            model: model_name.clone(),
            message: e.to_string(),
        })?;
        (Runner::Fp32(Box::new(exec)), graph.inputs)
    };
    let mut given: Vec<(String, ArrayD<f32>)> = Vec::new();
    for spec in &args.inputs {
        let (name, file) = match spec.split_once('=') {
            Some((n, f)) => (n.to_string(), PathBuf::from(f)),
            None => match inputs_declared.as_slice() {
                [only] => (only.name.clone(), PathBuf::from(spec)),
                _ => {
                    return Err(usage(format!(
                        "--input {spec}: the model has inputs [{}]; write NAME=FILE.npy",
                        names(&inputs_declared)
                    )));
                }
            },
        };
        if !inputs_declared.iter().any(|v| v.name == name) {
            return Err(usage(format!(
                "--input {spec}: the model has no input `{name}` (its inputs: [{}])",
                names(&inputs_declared)
            )));
        }
        if given.iter().any(|(n, _)| *n == name) {
            return Err(usage(format!("input `{name}` is given twice")));
        }
        given.push((name, read_input(&file)?));
    }
    if let Some(missing) = inputs_declared
        .iter()
        .find(|v| !given.iter().any(|(n, _)| *n == v.name))
    {
        return Err(usage(format!(
            "model input `{}` (shape {}) has no --input {}=FILE.npy",
            missing.name,
            crate::exec::format_dims(&missing.shape),
            missing.name
        )));
    }
    let refs: Vec<(&str, &ArrayD<f32>)> = given.iter().map(|(n, a)| (n.as_str(), a)).collect();
    check_against(&inputs_declared, &refs).map_err(usage)?;
    let feed: Vec<(&str, ArrayD<f32>)> =
        given.iter().map(|(n, a)| (n.as_str(), a.clone())).collect();
    let outputs = match &runner {
        Runner::Fp32(exec) => exec
            .run(&feed)
            .map_err(|e| crate::Error::Run(e.to_string()))?,
        Runner::Quantized(m) => m.run(&feed).map_err(|e| crate::Error::Run(e.to_string()))?,
    };
    std::fs::create_dir_all(&args.out)
        .map_err(|e| crate::Error::Run(format!("{}: {e}", args.out.display())))?;
    for (name, t) in outputs {
        let path = args.out.join(format!("{}.npy", file_stem(&name)));
        let written = match &t {
            Tensor::F32(a) => {
                crate::data::write_npy(&path, a.shape(), &a.iter().copied().collect::<Vec<_>>())
            }
            Tensor::I64(a) => {
                crate::data::write_npy(&path, a.shape(), &a.iter().copied().collect::<Vec<_>>())
            }
        };
        written.map_err(|e| crate::Error::Run(e.to_string()))?;
        println!(
            "{name}: {} {:?} -> {}",
            t.dtype(),
            t.shape(),
            path.display()
        );
    }
    Ok(())
}

fn names(values: &[ValueInfo]) -> String {
    values
        .iter()
        .map(|v| v.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An output name as a file name: characters other than ASCII letters, digits, `.`, `_` and `-` become `_`.
fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("output{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names_parse_back() {
        for name in [
            "fp32",
            "bf16",
            "fp16",
            "w8-static-channel-sym-minmax",
            "w8-static-tensor-affine-p99.99",
            "w8-static-channel-sym-ema0.01",
            "w4-dynamic-group32-sym",
            "w8-weightonly-tensor-affine",
            "w4-static-group32-sym-p99.99-log-pow2-wmse-gptq",
            "w2-static-channel-sym-kl-adaround",
            "w8-static-channel-sym-mse-biascorr",
            "w3-weightonly-tensor-sym-cle",
            "w2-static-channel-sym-minmax-mix.keep8.Conv_4+Gemm_10",
        ] {
            let s: Strategy = name.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.name(), name);
        }
        let token: Strategy = "w8-static-channel-sym-percentile:99.99".parse().unwrap();
        assert_eq!(token.name(), "w8-static-channel-sym-p99.99");
        for bad in [
            "w9-static-channel-sym-minmax",
            "w8-static-channel-sym",
            "w8-dynamic-channel-sym-minmax",
            "w8-static-row-sym-minmax",
            "w8-static-channel-sym-minmax-gptq-log",
            "w8-static-channel-sym-minmax-mix.",
            "fp16-mix.first8",
            "int8",
        ] {
            let e = bad.parse::<Strategy>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn output_names_become_file_names() {
        assert_eq!(file_stem("logits"), "logits");
        assert_eq!(file_stem("a/b:0"), "a_b_0");
        assert_eq!(file_stem(".."), "output..");
    }
}
