//! `ModelProto` -> `ir::Graph` conversion: tensor decoding, attribute parsing and validation across opsets
//! 11 to 21 (attribute and input forms), `Constant` folding, constant sub-graph folding (any node whose
//! inputs are all constants is evaluated here, so Shape -> Gather -> Concat -> Reshape chains on constants
//! become one initializer), the topological-order check, then the graph simplifications of
//! [`ir::passes::simplify`] (BatchNormalization and per-channel Add folded into the preceding Conv,
//! Identity removed, dead nodes and initializers dropped).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use ndarray::{ArrayD, IxDyn};

use super::ImportError;
use super::proto::{
    self, AttributeProto, AttributeType, DataLocation, DataType, NodeProto, TensorProto,
    ValueInfoProto, tensor_shape_proto::dimension, type_proto,
};
use crate::exec::eval::eval_op;
use crate::ir::{
    self, AutoPad, AvgPoolAttrs, BinaryOp, CastTo, ConvAttrs, ConvTransposeAttrs, CoordinateMode,
    Dim, GemmAttrs, NearestMode, Op, PoolAttrs, ReduceOp, ResizeAttrs, ResizeMode, Tensor, UnaryOp,
    ValueInfo, VariadicOp,
};

/// Every op type the importer accepts (`Constant` is folded into initializers, `Dropout` becomes Identity).
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Div",
    "Dropout",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "MatMul",
    "Max",
    "MaxPool",
    "Mean",
    "Min",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Pow",
    "Range",
    "Reciprocal",
    "ReduceL2",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Tile",
    "Transpose",
    "Unsqueeze",
    "Where",
    "Xor",
];

/// Converts a decoded model into the IR; `source` names the file in errors.
pub fn import_model(model: &proto::ModelProto, source: &Path) -> Result<ir::Graph, ImportError> {
    let bad_model = |reason: String| ImportError::BadModel {
        path: source.to_owned(),
        reason,
    };
    let opset = default_opset(model).ok_or_else(|| {
        bad_model(format!(
            "no default-domain (\"\" / \"ai.onnx\") entry in opset_import (found: {:?})",
            model
                .opset_import
                .iter()
                .map(|o| (&o.domain, o.version))
                .collect::<Vec<_>>()
        ))
    })?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| bad_model("model has no graph".to_owned()))?;
    if let Some(sparse) = graph.sparse_initializer.first() {
        let name = sparse.values.as_ref().map_or("", |v| v.name.as_str());
        return Err(bad_model(format!(
            "sparse initializer \"{name}\" is not supported"
        )));
    }

    let cx = Ctx {
        path: source,
        opset,
        declared: declared_shapes(graph),
        consumed: graph
            .node
            .iter()
            .flat_map(|n| n.input.iter())
            .chain(graph.output.iter().map(|v| &v.name))
            .filter(|s| !s.is_empty())
            .map(String::as_str)
            .collect(),
    };
    let mut initializers = BTreeMap::new();
    for t in &graph.initializer {
        if t.name.is_empty() {
            return Err(tensor_err(source, t, "initializer has no name"));
        }
        if initializers
            .insert(t.name.clone(), tensor_from_proto(t, source)?)
            .is_some()
        {
            return Err(bad_model(format!(
                "initializer \"{}\" is defined twice",
                t.name
            )));
        }
    }

    // Values defined so far, in file order: graph inputs, initializers, then node outputs as they appear.
    let mut defined: HashSet<&str> = graph.input.iter().map(|v| v.name.as_str()).collect();
    defined.extend(graph.initializer.iter().map(|t| t.name.as_str()));
    let scalar_gemm = kernels::select(Some(kernels::Isa::Scalar))
        .expect("the scalar kernels always exist")
        .gemm_f32;

    let mut nodes = Vec::with_capacity(graph.node.len());
    for (index, node) in graph.node.iter().enumerate() {
        let name = if node.name.is_empty() {
            format!("{}_{index}", node.op_type)
        } else {
            node.name.clone()
        };
        let nx = NodeCtx {
            cx: &cx,
            node,
            name: &name,
        };
        for input in node.input.iter().filter(|i| !i.is_empty()) {
            if !defined.contains(input.as_str()) {
                return Err(ImportError::NotTopological {
                    path: source.to_owned(),
                    node: name,
                    op_type: node.op_type.clone(),
                    value: input.clone(),
                });
            }
        }
        for output in node.output.iter().filter(|o| !o.is_empty()) {
            if !defined.insert(output.as_str()) {
                return Err(nx.invalid(format!(
                    "output \"{output}\" is already defined earlier in the graph"
                )));
            }
        }

        if !is_default_domain(&node.domain) {
            let version = model
                .opset_import
                .iter()
                .find(|o| o.domain == node.domain)
                .map_or(0, |o| o.version);
            return Err(ImportError::UnsupportedOp {
                path: source.to_owned(),
                op_type: format!("{}.{}", node.domain, node.op_type),
                node: name,
                opset: version,
            });
        }
        if node.op_type == "Constant" {
            let (out, tensor) = fold_constant(&nx)?;
            initializers.insert(out, tensor);
            continue;
        }
        for ir_node in convert_node(&nx, &mut initializers)? {
            // A node whose inputs are all constants is evaluated now (the heavy linear ops are left to run).
            let constant = !matches!(
                ir_node.op,
                Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) | Op::MatMul
            ) && ir_node
                .inputs
                .iter()
                .all(|i| i.is_empty() || initializers.contains_key(i));
            if !constant {
                nodes.push(ir_node);
                continue;
            }
            let args: Vec<Option<&Tensor>> =
                ir_node.inputs.iter().map(|i| initializers.get(i)).collect();
            let value = eval_op(&ir_node.op, &args, scalar_gemm).map_err(|e| {
                nx.invalid(format!("folding constant inputs {:?}: {e}", ir_node.inputs))
            })?;
            initializers.insert(ir_node.outputs[0].clone(), value);
        }
    }

    let inputs = graph
        .input
        .iter()
        .filter(|v| !initializers.contains_key(&v.name))
        .map(|v| value_info(v, &cx))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = graph
        .output
        .iter()
        .map(|v| {
            if defined.contains(v.name.as_str()) || initializers.contains_key(&v.name) {
                value_info(v, &cx)
            } else {
                Err(bad_model(format!(
                    "graph output \"{}\" is not produced by any node",
                    v.name
                )))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut g = ir::Graph {
        name: graph.name.clone(),
        opset,
        inputs,
        outputs,
        initializers,
        nodes,
    };
    ir::passes::simplify(&mut g);
    Ok(g)
}

/// Shapes the file declares for graph inputs, outputs and intermediate values (`None` for unknown
/// dimensions), used to resolve `auto_pad` SAME_* when the stride is not 1.
fn declared_shapes(graph: &proto::GraphProto) -> HashMap<&str, Vec<Option<usize>>> {
    graph
        .input
        .iter()
        .chain(&graph.value_info)
        .chain(&graph.output)
        .filter_map(|v| {
            let Some(type_proto::Value::TensorType(tt)) =
                v.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                return None;
            };
            let dims = tt.shape.as_ref()?.dim.iter().map(|d| match d.value {
                Some(dimension::Value::DimValue(n)) => usize::try_from(n).ok(),
                _ => None,
            });
            Some((v.name.as_str(), dims.collect()))
        })
        .collect()
}

fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

fn default_opset(model: &proto::ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .filter(|o| is_default_domain(&o.domain))
        .map(|o| o.version)
        .max()
}

struct Ctx<'a> {
    path: &'a Path,
    opset: i64,
    /// Declared shapes of values, by name.
    declared: HashMap<&'a str, Vec<Option<usize>>>,
    /// Every value some node reads or the graph outputs.
    consumed: HashSet<&'a str>,
}

fn tensor_err(path: &Path, t: &TensorProto, reason: impl Into<String>) -> ImportError {
    ImportError::Tensor {
        path: path.to_owned(),
        tensor: t.name.clone(),
        data_type: data_type_name(t.data_type),
        dims: t.dims.clone(),
        reason: reason.into(),
    }
}

struct NodeCtx<'a> {
    cx: &'a Ctx<'a>,
    node: &'a NodeProto,
    name: &'a str,
}

impl NodeCtx<'_> {
    fn invalid(&self, reason: impl Into<String>) -> ImportError {
        ImportError::InvalidNode {
            path: self.cx.path.to_owned(),
            node: self.name.to_owned(),
            op_type: self.node.op_type.clone(),
            opset: self.cx.opset,
            reason: reason.into(),
        }
    }

    fn unsupported_value(&self, attribute: &'static str, value: String) -> ImportError {
        ImportError::UnsupportedAttribute {
            path: self.cx.path.to_owned(),
            node: self.name.to_owned(),
            op_type: self.node.op_type.clone(),
            opset: self.cx.opset,
            attribute,
            value,
        }
    }

    fn unsupported_op(&self) -> ImportError {
        ImportError::UnsupportedOp {
            path: self.cx.path.to_owned(),
            op_type: self.node.op_type.clone(),
            node: self.name.to_owned(),
            opset: self.cx.opset,
        }
    }

    /// The single output (every other output slot must be empty).
    fn output0(&self) -> Result<String, ImportError> {
        let outputs = &self.node.output;
        match outputs.first() {
            Some(o) if !o.is_empty() && outputs[1..].iter().all(String::is_empty) => Ok(o.clone()),
            _ => Err(self.invalid(format!("expected exactly one output, got {outputs:?}"))),
        }
    }

    /// The first output, for ops whose optional extra outputs are checked by [`Self::unused_extra_outputs`].
    fn output0_any(&self) -> Result<String, ImportError> {
        match self.node.output.first() {
            Some(o) if !o.is_empty() => Ok(o.clone()),
            _ => Err(self.invalid(format!(
                "the first output is missing, got {:?}",
                self.node.output
            ))),
        }
    }

    /// Optional extra outputs (training statistics, masks) may be named but not read by anything.
    fn unused_extra_outputs(&self, what: &str) -> Result<(), ImportError> {
        match self.node.output[1.min(self.node.output.len())..]
            .iter()
            .find(|o| !o.is_empty() && self.cx.consumed.contains(o.as_str()))
        {
            Some(o) => Err(self.invalid(format!(
                "output \"{o}\" ({what}) is read by the graph, which is not supported"
            ))),
            None => Ok(()),
        }
    }

    /// Input `slot` when it is present: it must be a constant (initializer or folded sub-graph).
    fn const_input<'t>(
        &self,
        initializers: &'t BTreeMap<String, Tensor>,
        slot: usize,
        what: &str,
    ) -> Result<Option<&'t Tensor>, ImportError> {
        match self.node.input.get(slot).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(name) => initializers.get(name).map(Some).ok_or_else(|| {
                self.invalid(format!(
                    "{what} (input \"{name}\") must be a constant; computing it at run time is not supported"
                ))
            }),
        }
    }

    /// A constant 1-D (or scalar) integer input, such as Squeeze axes or Split sizes.
    fn const_ints(
        &self,
        initializers: &BTreeMap<String, Tensor>,
        slot: usize,
        what: &str,
    ) -> Result<Option<Vec<i64>>, ImportError> {
        match self.const_input(initializers, slot, what)? {
            None => Ok(None),
            Some(Tensor::I64(a)) if a.ndim() <= 1 => Ok(Some(a.iter().copied().collect())),
            Some(t) => Err(self.invalid(format!(
                "{what} must be a 1-D integer tensor, got {} with shape {:?}",
                t.dtype(),
                t.shape()
            ))),
        }
    }

    /// A constant scalar float input, such as Clip's bounds.
    fn const_f32_scalar(
        &self,
        initializers: &BTreeMap<String, Tensor>,
        slot: usize,
        what: &str,
    ) -> Result<Option<f32>, ImportError> {
        match self.const_input(initializers, slot, what)? {
            None => Ok(None),
            Some(Tensor::F32(a)) if a.len() == 1 => Ok(a.iter().next().copied()),
            Some(t) => Err(self.invalid(format!(
                "{what} must be one f32 value (Clip on integers is not supported), got {} with shape {:?}",
                t.dtype(),
                t.shape()
            ))),
        }
    }

    /// Checks the count of (possibly empty) inputs and that the first `required` are present.
    fn expect_inputs(&self, required: usize, max: usize) -> Result<(), ImportError> {
        let inputs = &self.node.input;
        let n = inputs
            .iter()
            .rposition(|i| !i.is_empty())
            .map_or(0, |p| p + 1);
        if n < required || n > max || inputs[..required].iter().any(String::is_empty) {
            let expected = if required == max {
                format!("{required}")
            } else {
                format!("{required} to {max}")
            };
            return Err(self.invalid(format!("expected {expected} inputs, got {inputs:?}")));
        }
        Ok(())
    }

    fn attrs(&self) -> Result<Attrs<'_>, ImportError> {
        let mut map = HashMap::new();
        for a in &self.node.attribute {
            if !a.ref_attr_name.is_empty() {
                return Err(self.invalid(format!(
                    "attribute `{}` refers to function attribute `{}`, which is only valid inside functions",
                    a.name, a.ref_attr_name
                )));
            }
            if map.insert(a.name.as_str(), a).is_some() {
                return Err(self.invalid(format!("attribute `{}` is given twice", a.name)));
            }
        }
        Ok(Attrs { nx: self, map })
    }
}

/// A node's attributes; each getter consumes one, and [`Attrs::finish`] rejects any left unread.
struct Attrs<'a> {
    nx: &'a NodeCtx<'a>,
    map: HashMap<&'a str, &'a AttributeProto>,
}

impl<'a> Attrs<'a> {
    fn take(
        &mut self,
        name: &str,
        expected: AttributeType,
    ) -> Result<Option<&'a AttributeProto>, ImportError> {
        let Some(a) = self.map.remove(name) else {
            return Ok(None);
        };
        // IR version 1 files leave `type` unset; trust the field the caller reads in that case.
        if a.r#type != AttributeType::Undefined as i32 && a.r#type != expected as i32 {
            let got = AttributeType::try_from(a.r#type)
                .map_or_else(|_| format!("{}", a.r#type), |t| format!("{t:?}"));
            return Err(self.nx.invalid(format!(
                "attribute `{name}` must be {expected:?}, got {got}"
            )));
        }
        Ok(Some(a))
    }

    fn int(&mut self, name: &str) -> Result<Option<i64>, ImportError> {
        Ok(self.take(name, AttributeType::Int)?.map(|a| a.i))
    }

    fn float(&mut self, name: &str) -> Result<Option<f32>, ImportError> {
        Ok(self.take(name, AttributeType::Float)?.map(|a| a.f))
    }

    fn ints(&mut self, name: &str) -> Result<Option<&'a [i64]>, ImportError> {
        Ok(self
            .take(name, AttributeType::Ints)?
            .map(|a| a.ints.as_slice()))
    }

    fn floats(&mut self, name: &str) -> Result<Option<&'a [f32]>, ImportError> {
        Ok(self
            .take(name, AttributeType::Floats)?
            .map(|a| a.floats.as_slice()))
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, ImportError> {
        Ok(self
            .take(name, AttributeType::String)?
            .map(|a| String::from_utf8_lossy(&a.s).into_owned()))
    }

    fn tensor(&mut self, name: &str) -> Result<Option<&'a TensorProto>, ImportError> {
        match self.take(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => {
                a.t.as_ref()
                    .map(Some)
                    .ok_or_else(|| self.nx.invalid(format!("attribute `{name}` has no tensor")))
            }
        }
    }

    /// A boolean stored as an int attribute (0 or 1).
    fn flag(&mut self, name: &str) -> Result<Option<bool>, ImportError> {
        match self.int(name)? {
            None => Ok(None),
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            Some(v) => Err(self
                .nx
                .invalid(format!("attribute `{name}` must be 0 or 1, got {v}"))),
        }
    }

    /// A list of `len` values, each >= `min`.
    fn usizes<const N: usize>(
        &mut self,
        name: &str,
        min: i64,
    ) -> Result<Option<[usize; N]>, ImportError> {
        let Some(v) = self.ints(name)? else {
            return Ok(None);
        };
        if v.len() != N || v.iter().any(|&x| x < min) {
            return Err(self.nx.invalid(format!(
                "attribute `{name}` must be {N} values >= {min} (2-D only), got {v:?}"
            )));
        }
        let mut out = [0; N];
        for (o, &x) in out.iter_mut().zip(v) {
            *o = usize::try_from(x).map_err(|_| {
                self.nx
                    .invalid(format!("attribute `{name}` value {x} is too large"))
            })?;
        }
        Ok(Some(out))
    }

    /// Rejects attributes nobody read: silently ignoring one could change the op's meaning.
    fn finish(self) -> Result<(), ImportError> {
        let mut left: Vec<&str> = self.map.keys().copied().collect();
        if left.is_empty() {
            return Ok(());
        }
        left.sort_unstable();
        Err(self
            .nx
            .invalid(format!("unknown or unsupported attributes {left:?}")))
    }
}

/// The IR nodes for one ONNX node (none for an eliminated node, several for Split), with attribute-like
/// constant inputs resolved into attributes.
fn convert_node(
    nx: &NodeCtx<'_>,
    initializers: &mut BTreeMap<String, Tensor>,
) -> Result<Vec<ir::Node>, ImportError> {
    let node = nx.node;
    let opset = nx.cx.opset;
    let mut attrs = nx.attrs()?;
    let one = |op: Op, inputs: Vec<String>| -> Result<Vec<ir::Node>, ImportError> {
        Ok(vec![ir::Node {
            name: nx.name.to_owned(),
            op,
            inputs,
            outputs: vec![nx.output0()?],
        }])
    };
    let first = |n: usize| node.input.iter().take(n).cloned().collect::<Vec<_>>();
    let binary = |attrs: &mut Attrs<'_>, op: BinaryOp| -> Result<Op, ImportError> {
        nx.expect_inputs(2, 2)?;
        // Opsets < 7 used an explicit `broadcast`/`axis` scheme instead of numpy broadcasting.
        if let Some(b) = attrs.int("broadcast")? {
            return Err(nx.unsupported_value("broadcast", b.to_string()));
        }
        Ok(Op::Binary(op))
    };
    let unary = |op: UnaryOp| -> Result<Op, ImportError> {
        nx.expect_inputs(1, 1)?;
        Ok(Op::Unary(op))
    };
    let nodes = match node.op_type.as_str() {
        "Conv" => {
            nx.expect_inputs(2, 3)?;
            let kernel_shape =
                kernel_shape(nx, &mut attrs, initializers, "[c_out, c_in/group, kh, kw]")?;
            let strides = attrs.usizes::<2>("strides", 1)?.unwrap_or([1, 1]);
            let dilations = attrs.usizes::<2>("dilations", 1)?.unwrap_or([1, 1]);
            let pads = spatial_pads(&mut attrs, nx, kernel_shape, strides, dilations)?;
            let group = positive(nx, "group", attrs.int("group")?.unwrap_or(1))?;
            one(
                Op::Conv(ConvAttrs {
                    kernel_shape,
                    strides,
                    pads,
                    dilations,
                    group,
                }),
                first(3),
            )?
        }
        "ConvTranspose" => {
            nx.expect_inputs(2, 3)?;
            let kernel_shape =
                kernel_shape(nx, &mut attrs, initializers, "[c_in, c_out/group, kh, kw]")?;
            let auto_pad = match attrs.string("auto_pad")?.as_deref() {
                None | Some("NOTSET") => AutoPad::NotSet,
                Some("VALID") => AutoPad::Valid,
                Some("SAME_UPPER") => AutoPad::SameUpper,
                Some("SAME_LOWER") => AutoPad::SameLower,
                Some(other) => return Err(nx.unsupported_value("auto_pad", format!("\"{other}\""))),
            };
            let output_shape = match attrs.ints("output_shape")? {
                None => None,
                Some(v) => {
                    let spatial = match v.len() {
                        2 => v,
                        4 => &v[2..],
                        _ => {
                            return Err(nx.invalid(format!(
                                "attribute `output_shape` must have 2 values (2-D only), got {v:?}"
                            )));
                        }
                    };
                    let h = usize::try_from(spatial[0]).ok().filter(|&d| d > 0);
                    let w = usize::try_from(spatial[1]).ok().filter(|&d| d > 0);
                    match (h, w) {
                        (Some(h), Some(w)) => Some([h, w]),
                        _ => {
                            return Err(nx.invalid(format!(
                                "attribute `output_shape` {v:?} must be positive"
                            )));
                        }
                    }
                }
            };
            let pads = attrs.usizes::<4>("pads", 0)?.unwrap_or([0; 4]);
            one(
                Op::ConvTranspose(ConvTransposeAttrs {
                    kernel_shape,
                    strides: attrs.usizes::<2>("strides", 1)?.unwrap_or([1, 1]),
                    pads,
                    dilations: attrs.usizes::<2>("dilations", 1)?.unwrap_or([1, 1]),
                    group: positive(nx, "group", attrs.int("group")?.unwrap_or(1))?,
                    output_padding: attrs.usizes::<2>("output_padding", 0)?.unwrap_or([0, 0]),
                    output_shape,
                    auto_pad,
                }),
                first(3),
            )?
        }
        "Gemm" => {
            nx.expect_inputs(2, 3)?;
            one(
                Op::Gemm(GemmAttrs {
                    alpha: attrs.float("alpha")?.unwrap_or(1.0),
                    beta: attrs.float("beta")?.unwrap_or(1.0),
                    trans_a: attrs.flag("transA")?.unwrap_or(false),
                    trans_b: attrs.flag("transB")?.unwrap_or(false),
                }),
                first(3),
            )?
        }
        "MatMul" => {
            nx.expect_inputs(2, 2)?;
            one(Op::MatMul, first(2))?
        }
        "Relu" => {
            nx.expect_inputs(1, 1)?;
            one(Op::Relu, first(1))?
        }
        "Add" => {
            nx.expect_inputs(2, 2)?;
            if let Some(b) = attrs.int("broadcast")? {
                return Err(nx.unsupported_value("broadcast", b.to_string()));
            }
            one(Op::Add, first(2))?
        }
        "Sub" => one(binary(&mut attrs, BinaryOp::Sub)?, first(2))?,
        "Mul" => one(binary(&mut attrs, BinaryOp::Mul)?, first(2))?,
        "Div" => one(binary(&mut attrs, BinaryOp::Div)?, first(2))?,
        "Pow" => one(binary(&mut attrs, BinaryOp::Pow)?, first(2))?,
        "Equal" => one(binary(&mut attrs, BinaryOp::Equal)?, first(2))?,
        "Less" => one(binary(&mut attrs, BinaryOp::Less)?, first(2))?,
        "LessOrEqual" => one(binary(&mut attrs, BinaryOp::LessOrEqual)?, first(2))?,
        "Greater" => one(binary(&mut attrs, BinaryOp::Greater)?, first(2))?,
        "GreaterOrEqual" => one(binary(&mut attrs, BinaryOp::GreaterOrEqual)?, first(2))?,
        "And" => one(binary(&mut attrs, BinaryOp::And)?, first(2))?,
        "Or" => one(binary(&mut attrs, BinaryOp::Or)?, first(2))?,
        "Xor" => one(binary(&mut attrs, BinaryOp::Xor)?, first(2))?,
        "Sqrt" => one(unary(UnaryOp::Sqrt)?, first(1))?,
        "Reciprocal" => one(unary(UnaryOp::Reciprocal)?, first(1))?,
        "Exp" => one(unary(UnaryOp::Exp)?, first(1))?,
        "Log" => one(unary(UnaryOp::Log)?, first(1))?,
        "Erf" => one(unary(UnaryOp::Erf)?, first(1))?,
        "Tanh" => one(unary(UnaryOp::Tanh)?, first(1))?,
        "Sigmoid" => one(unary(UnaryOp::Sigmoid)?, first(1))?,
        "Neg" => one(unary(UnaryOp::Neg)?, first(1))?,
        "Abs" => one(unary(UnaryOp::Abs)?, first(1))?,
        "Floor" => one(unary(UnaryOp::Floor)?, first(1))?,
        "Ceil" => one(unary(UnaryOp::Ceil)?, first(1))?,
        "Not" => one(unary(UnaryOp::Not)?, first(1))?,
        "HardSwish" => one(unary(UnaryOp::HardSwish)?, first(1))?,
        "HardSigmoid" => {
            let op = unary(UnaryOp::HardSigmoid {
                alpha: attrs.float("alpha")?.unwrap_or(0.2),
                beta: attrs.float("beta")?.unwrap_or(0.5),
            })?;
            one(op, first(1))?
        }
        "LeakyRelu" => {
            let op = unary(UnaryOp::LeakyRelu {
                alpha: attrs.float("alpha")?.unwrap_or(0.01),
            })?;
            one(op, first(1))?
        }
        "Clip" => {
            let (min, max) = if opset < 11 {
                nx.expect_inputs(1, 1)?;
                (attrs.float("min")?, attrs.float("max")?)
            } else {
                nx.expect_inputs(1, 3)?;
                (
                    nx.const_f32_scalar(initializers, 1, "min")?,
                    nx.const_f32_scalar(initializers, 2, "max")?,
                )
            };
            let op = Op::Unary(UnaryOp::Clip {
                min: min.unwrap_or(f32::NEG_INFINITY),
                max: max.unwrap_or(f32::INFINITY),
            });
            one(op, first(1))?
        }
        "Max" | "Min" | "Sum" | "Mean" => {
            if node.input.is_empty() || node.input.iter().any(String::is_empty) {
                return Err(
                    nx.invalid(format!("expected one or more inputs, got {:?}", node.input))
                );
            }
            let op = match node.op_type.as_str() {
                "Max" => VariadicOp::Max,
                "Min" => VariadicOp::Min,
                "Sum" => VariadicOp::Sum,
                _ => VariadicOp::Mean,
            };
            one(Op::Variadic(op), node.input.clone())?
        }
        "Softmax" => {
            nx.expect_inputs(1, 1)?;
            let legacy = opset < 13;
            let axis = attrs.int("axis")?.unwrap_or(if legacy { 1 } else { -1 });
            one(Op::Softmax { axis, legacy }, first(1))?
        }
        "BatchNormalization" => {
            nx.expect_inputs(5, 5)?;
            if let Some(spatial) = attrs.int("spatial")?
                && spatial != 1
            {
                return Err(nx.unsupported_value("spatial", spatial.to_string()));
            }
            if attrs.flag("training_mode")?.unwrap_or(false) {
                return Err(nx.unsupported_value("training_mode", "1".to_owned()));
            }
            if let Some(t) = attrs.int("is_test")?
                && t == 0
            {
                return Err(nx.unsupported_value("is_test", "0".to_owned()));
            }
            attrs.float("momentum")?; // only used in training
            let epsilon = attrs.float("epsilon")?.unwrap_or(1e-5);
            nx.unused_extra_outputs("training statistics")?;
            vec![ir::Node {
                name: nx.name.to_owned(),
                op: Op::BatchNormalization { epsilon },
                inputs: first(5),
                outputs: vec![nx.output0_any()?],
            }]
        }
        "LayerNormalization" => {
            nx.expect_inputs(2, 3)?;
            attrs.int("stash_type")?; // statistics are computed in f64 whatever it asks
            let op = Op::LayerNormalization {
                axis: attrs.int("axis")?.unwrap_or(-1),
                epsilon: attrs.float("epsilon")?.unwrap_or(1e-5),
            };
            nx.unused_extra_outputs("Mean / InvStdDev")?;
            vec![ir::Node {
                name: nx.name.to_owned(),
                op,
                inputs: first(3),
                outputs: vec![nx.output0_any()?],
            }]
        }
        "MaxPool" => {
            nx.expect_inputs(1, 1)?;
            if node.output.get(1).is_some_and(|o| !o.is_empty()) {
                return Err(nx.invalid(format!(
                    "the indices output (\"{}\") is not supported",
                    node.output[1]
                )));
            }
            if let Some(order) = attrs.int("storage_order")?
                && order != 0
            {
                return Err(nx.unsupported_value("storage_order", order.to_string()));
            }
            let pool = pool_attrs(nx, &mut attrs)?;
            vec![ir::Node {
                name: nx.name.to_owned(),
                op: Op::MaxPool(pool),
                inputs: first(1),
                outputs: vec![nx.output0_any()?],
            }]
        }
        "AveragePool" => {
            nx.expect_inputs(1, 1)?;
            let pool = pool_attrs(nx, &mut attrs)?;
            let count_include_pad = attrs.flag("count_include_pad")?.unwrap_or(false);
            one(
                Op::AveragePool(AvgPoolAttrs {
                    pool,
                    count_include_pad,
                }),
                first(1),
            )?
        }
        "GlobalAveragePool" => {
            nx.expect_inputs(1, 1)?;
            one(Op::GlobalAveragePool, first(1))?
        }
        "GlobalMaxPool" => {
            nx.expect_inputs(1, 1)?;
            one(Op::GlobalMaxPool, first(1))?
        }
        "Flatten" => {
            nx.expect_inputs(1, 1)?;
            one(
                Op::Flatten {
                    axis: attrs.int("axis")?.unwrap_or(1),
                },
                first(1),
            )?
        }
        "Reshape" => {
            if node.input.len() < 2 && node.attribute.iter().any(|a| a.name == "shape") {
                return Err(nx.invalid(
                    "the `shape` attribute form of Reshape (opset < 5) is not supported; the shape must be an input",
                ));
            }
            nx.expect_inputs(2, 2)?;
            let op = Op::Reshape {
                allowzero: attrs.flag("allowzero")?.unwrap_or(false),
            };
            one(op, first(2))?
        }
        "Transpose" => {
            nx.expect_inputs(1, 1)?;
            let perm = match attrs.ints("perm")? {
                None => None,
                Some(p) => Some(
                    p.iter()
                        .map(|&i| usize::try_from(i))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| {
                            nx.invalid(format!("attribute `perm` {p:?} has a negative axis"))
                        })?,
                ),
            };
            one(Op::Transpose { perm }, first(1))?
        }
        "Concat" => {
            if node.input.is_empty() || node.input.iter().any(String::is_empty) {
                return Err(
                    nx.invalid(format!("expected one or more inputs, got {:?}", node.input))
                );
            }
            let axis = attrs
                .int("axis")?
                .ok_or_else(|| nx.invalid("attribute `axis` is required"))?;
            one(Op::Concat { axis }, node.input.clone())?
        }
        "Slice" => {
            if opset < 10 {
                nx.expect_inputs(1, 1)?;
                let mut inputs = first(1);
                for key in ["starts", "ends", "axes"] {
                    match attrs.ints(key)? {
                        Some(v) => {
                            let name = format!("{}::{key}", nx.name);
                            initializers.insert(
                                name.clone(),
                                Tensor::I64(
                                    ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec())
                                        .expect("1-D"),
                                ),
                            );
                            inputs.push(name);
                        }
                        None if key == "axes" => {}
                        None => return Err(nx.invalid(format!("attribute `{key}` is required"))),
                    }
                }
                one(Op::Slice, inputs)?
            } else {
                nx.expect_inputs(3, 5)?;
                one(Op::Slice, first(5))?
            }
        }
        "Split" => {
            nx.expect_inputs(1, 2)?;
            let axis = attrs.int("axis")?.unwrap_or(0);
            let sizes = if opset < 13 {
                attrs.ints("split")?.map(<[i64]>::to_vec)
            } else {
                nx.const_ints(initializers, 1, "split")?
            };
            let parts = node.output.len();
            if parts == 0 {
                return Err(nx.invalid("Split has no outputs"));
            }
            if let Some(n) = attrs.int("num_outputs")?
                && n != parts as i64
            {
                return Err(nx.invalid(format!(
                    "num_outputs {n} does not match the {parts} outputs {:?}",
                    node.output
                )));
            }
            let sizes = match sizes {
                None => None,
                Some(s) if s.is_empty() => None,
                Some(s) => {
                    if s.len() != parts || s.iter().any(|&v| v < 0) {
                        return Err(nx.invalid(format!(
                            "split sizes {s:?} do not match the {parts} outputs {:?}",
                            node.output
                        )));
                    }
                    Some(s.iter().map(|&v| v as usize).collect::<Vec<_>>())
                }
            };
            node.output
                .iter()
                .enumerate()
                .filter(|(_, o)| !o.is_empty())
                .map(|(index, o)| ir::Node {
                    name: if index == 0 {
                        nx.name.to_owned()
                    } else {
                        format!("{}:{index}", nx.name)
                    },
                    op: Op::Split {
                        axis,
                        sizes: sizes.clone(),
                        parts,
                        index,
                    },
                    inputs: first(1),
                    outputs: vec![o.clone()],
                })
                .collect()
        }
        "Squeeze" | "Unsqueeze" => {
            let axes = if opset < 13 {
                nx.expect_inputs(1, 1)?;
                attrs.ints("axes")?.map(<[i64]>::to_vec)
            } else {
                nx.expect_inputs(1, 2)?;
                nx.const_ints(initializers, 1, "axes")?
            };
            let op = if node.op_type == "Squeeze" {
                Op::Squeeze { axes }
            } else {
                Op::Unsqueeze {
                    axes: axes.ok_or_else(|| nx.invalid("axes are required"))?,
                }
            };
            one(op, first(1))?
        }
        "Gather" => {
            nx.expect_inputs(2, 2)?;
            let op = Op::Gather {
                axis: attrs.int("axis")?.unwrap_or(0),
            };
            one(op, first(2))?
        }
        "Shape" => {
            nx.expect_inputs(1, 1)?;
            let op = Op::Shape {
                start: attrs.int("start")?.unwrap_or(0),
                end: attrs.int("end")?,
            };
            one(op, first(1))?
        }
        "Cast" => {
            nx.expect_inputs(1, 1)?;
            attrs.int("saturate")?; // only affects float8 targets, which are refused
            let to = attrs
                .int("to")?
                .ok_or_else(|| nx.invalid("attribute `to` is required"))?;
            let to = match DataType::try_from(to as i32) {
                Ok(DataType::Float) => CastTo::F32,
                Ok(DataType::Int64) => CastTo::I64,
                Ok(DataType::Int32) => CastTo::I32,
                Ok(DataType::Bool) => CastTo::Bool,
                _ => {
                    return Err(nx.unsupported_value(
                        "to",
                        format!(
                            "{} (only FLOAT, INT64, INT32 and BOOL are)",
                            data_type_name(to as i32)
                        ),
                    ));
                }
            };
            one(Op::Cast { to }, first(1))?
        }
        "Expand" => {
            nx.expect_inputs(2, 2)?;
            one(Op::Expand, first(2))?
        }
        "Tile" => {
            nx.expect_inputs(2, 2)?;
            one(Op::Tile, first(2))?
        }
        "Where" => {
            nx.expect_inputs(3, 3)?;
            one(Op::Where, first(3))?
        }
        "Range" => {
            nx.expect_inputs(3, 3)?;
            one(Op::Range, first(3))?
        }
        "Identity" => {
            nx.expect_inputs(1, 1)?;
            one(Op::Identity, first(1))?
        }
        "Dropout" => {
            nx.expect_inputs(1, 3)?;
            attrs.float("ratio")?; // inference: no-op
            attrs.int("seed")?;
            if attrs.int("is_test")? == Some(0) {
                return Err(nx.unsupported_value("is_test", "0".to_owned()));
            }
            if let Some(Tensor::I64(t)) = nx.const_input(initializers, 2, "training_mode")?
                && t.iter().any(|&v| v != 0)
            {
                return Err(nx.unsupported_value("training_mode", "true".to_owned()));
            }
            nx.unused_extra_outputs("mask")?;
            vec![ir::Node {
                name: nx.name.to_owned(),
                op: Op::Identity,
                inputs: first(1),
                outputs: vec![nx.output0_any()?],
            }]
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceL2" => {
            let op = match node.op_type.as_str() {
                "ReduceMean" => ReduceOp::Mean,
                "ReduceSum" => ReduceOp::Sum,
                "ReduceMax" => ReduceOp::Max,
                "ReduceMin" => ReduceOp::Min,
                _ => ReduceOp::L2,
            };
            // Axes became an input in opset 13 for ReduceSum, 18 for the others.
            let input_form = opset >= if op == ReduceOp::Sum { 13 } else { 18 };
            let axes = if input_form {
                nx.expect_inputs(1, 2)?;
                nx.const_ints(initializers, 1, "axes")?
            } else {
                nx.expect_inputs(1, 1)?;
                attrs.ints("axes")?.map(<[i64]>::to_vec)
            };
            let keepdims = attrs.flag("keepdims")?.unwrap_or(true);
            let noop = attrs.flag("noop_with_empty_axes")?.unwrap_or(false);
            let axes = axes.filter(|a| !a.is_empty());
            if axes.is_none() && noop {
                one(Op::Identity, first(1))?
            } else {
                one(Op::Reduce { op, axes, keepdims }, first(1))?
            }
        }
        "ConstantOfShape" => {
            nx.expect_inputs(1, 1)?;
            let value = match attrs.tensor("value")? {
                Some(t) => tensor_from_proto(t, nx.cx.path)?,
                None => Tensor::F32(ArrayD::zeros(IxDyn(&[1]))),
            };
            if value.len() != 1 {
                return Err(nx.invalid(format!(
                    "attribute `value` must hold one element, got shape {:?}",
                    value.shape()
                )));
            }
            one(Op::ConstantOfShape { value }, first(1))?
        }
        "Resize" => {
            if opset < 11 {
                return Err(nx.invalid(
                    "Resize before opset 11 (asymmetric coordinates, `simple` rounding) is not supported",
                ));
            }
            nx.expect_inputs(1, 4)?;
            let mode = match attrs.string("mode")?.as_deref() {
                None | Some("nearest") => ResizeMode::Nearest,
                Some("linear") => ResizeMode::Linear,
                Some(other) => return Err(nx.unsupported_value("mode", format!("\"{other}\""))),
            };
            let coordinate = match attrs.string("coordinate_transformation_mode")?.as_deref() {
                None | Some("half_pixel") => CoordinateMode::HalfPixel,
                Some("half_pixel_symmetric") => CoordinateMode::HalfPixelSymmetric,
                Some("pytorch_half_pixel") => CoordinateMode::PytorchHalfPixel,
                Some("align_corners") => CoordinateMode::AlignCorners,
                Some("asymmetric") => CoordinateMode::Asymmetric,
                Some("tf_half_pixel_for_nn") => CoordinateMode::TfHalfPixelForNn,
                Some(other) => {
                    return Err(nx.unsupported_value(
                        "coordinate_transformation_mode",
                        format!("\"{other}\""),
                    ));
                }
            };
            let nearest = match attrs.string("nearest_mode")?.as_deref() {
                None | Some("round_prefer_floor") => NearestMode::RoundPreferFloor,
                Some("round_prefer_ceil") => NearestMode::RoundPreferCeil,
                Some("floor") => NearestMode::Floor,
                Some("ceil") => NearestMode::Ceil,
                Some(other) => {
                    return Err(nx.unsupported_value("nearest_mode", format!("\"{other}\"")));
                }
            };
            attrs.float("cubic_coeff_a")?; // cubic mode only
            attrs.float("extrapolation_value")?; // tf_crop_and_resize only
            if attrs.flag("exclude_outside")?.unwrap_or(false) {
                return Err(nx.unsupported_value("exclude_outside", "1".to_owned()));
            }
            if attrs.flag("antialias")?.unwrap_or(false) {
                return Err(nx.unsupported_value("antialias", "1".to_owned()));
            }
            if let Some(policy) = attrs.string("keep_aspect_ratio_policy")?
                && policy != "stretch"
            {
                return Err(
                    nx.unsupported_value("keep_aspect_ratio_policy", format!("\"{policy}\""))
                );
            }
            let axes = attrs.ints("axes")?.map(<[i64]>::to_vec);
            one(
                Op::Resize(ResizeAttrs {
                    mode,
                    coordinate,
                    nearest,
                    axes,
                }),
                first(4),
            )?
        }
        _ => return Err(nx.unsupported_op()),
    };
    attrs.finish()?;
    Ok(nodes)
}

/// A strictly positive count attribute (`group`).
fn positive(nx: &NodeCtx<'_>, name: &str, v: i64) -> Result<usize, ImportError> {
    match usize::try_from(v) {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(nx.invalid(format!("{name} must be >= 1, got {v}"))),
    }
}

/// `kernel_shape`, or the spatial dimensions of the weight (a constant, or a value whose shape the file
/// declares) when the attribute is absent.
fn kernel_shape(
    nx: &NodeCtx<'_>,
    attrs: &mut Attrs<'_>,
    initializers: &BTreeMap<String, Tensor>,
    layout: &str,
) -> Result<[usize; 2], ImportError> {
    let weight = &nx.node.input[1];
    let weight_dims: Option<Vec<usize>> = match initializers.get(weight) {
        Some(w) => Some(w.shape().to_vec()),
        None => nx
            .cx
            .declared
            .get(weight.as_str())
            .and_then(|d| d.iter().copied().collect::<Option<Vec<usize>>>()),
    };
    match (attrs.usizes::<2>("kernel_shape", 1)?, weight_dims.as_deref()) {
        (Some(k), Some(w)) if w.len() == 4 && w[2..] != k => Err(nx.invalid(format!(
            "kernel_shape {k:?} does not match weight \"{weight}\" shape {w:?}"
        ))),
        (Some(k), _) => Ok(k),
        (None, Some(w)) if w.len() == 4 && w[2] > 0 && w[3] > 0 => Ok([w[2], w[3]]),
        (None, Some(w)) => Err(nx.invalid(format!(
            "only 2-D convolution is supported: weight \"{weight}\" has shape {w:?}, expected {layout}"
        ))),
        (None, None) => Err(nx.invalid(format!(
            "kernel_shape is absent and the shape of weight \"{weight}\" is not known to infer it from"
        ))),
    }
}

/// MaxPool / AveragePool window attributes.
fn pool_attrs(nx: &NodeCtx<'_>, attrs: &mut Attrs<'_>) -> Result<PoolAttrs, ImportError> {
    let kernel_shape = attrs
        .usizes::<2>("kernel_shape", 1)?
        .ok_or_else(|| nx.invalid("attribute `kernel_shape` is required"))?;
    let strides = attrs.usizes::<2>("strides", 1)?.unwrap_or([1, 1]);
    let dilations = attrs.usizes::<2>("dilations", 1)?.unwrap_or([1, 1]);
    let pads = spatial_pads(attrs, nx, kernel_shape, strides, dilations)?;
    Ok(PoolAttrs {
        kernel_shape,
        strides,
        pads,
        dilations,
        ceil_mode: attrs.flag("ceil_mode")?.unwrap_or(false),
    })
}

/// `auto_pad` and `pads`, converted from ONNX `[h_begin, w_begin, h_end, w_end]` to the IR's `[top, left,
/// bottom, right]` (the same order for 2-D). SAME_UPPER / SAME_LOWER are resolved here: with stride 1 the
/// padding does not depend on the input size; otherwise the input's spatial size must be declared in the
/// file (graph input or value_info).
fn spatial_pads(
    attrs: &mut Attrs<'_>,
    nx: &NodeCtx<'_>,
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
) -> Result<[usize; 4], ImportError> {
    let auto_pad = attrs.string("auto_pad")?;
    let pads = attrs.usizes::<4>("pads", 0)?;
    let upper = match auto_pad.as_deref() {
        None | Some("NOTSET") => {
            let [h0, w0, h1, w1] = pads.unwrap_or([0; 4]);
            return Ok([h0, w0, h1, w1]);
        }
        Some("VALID") => {
            return match pads {
                Some(p) if p != [0; 4] => {
                    Err(nx.invalid(format!("auto_pad VALID with non-zero pads {p:?}")))
                }
                _ => Ok([0; 4]),
            };
        }
        Some("SAME_UPPER") => true,
        Some("SAME_LOWER") => false,
        Some(other) => return Err(nx.unsupported_value("auto_pad", format!("\"{other}\""))),
    };
    if let Some(p) = pads
        && p != [0; 4]
    {
        return Err(nx.invalid(format!("auto_pad {auto_pad:?} with explicit pads {p:?}")));
    }
    let x = nx.node.input[0].as_str();
    let spatial = nx
        .cx
        .declared
        .get(x)
        .filter(|d| d.len() == 4)
        .and_then(|d| d[2].zip(d[3]));
    let mut out = [0usize; 4];
    for axis in 0..2 {
        let (k, s, d) = (kernel[axis], strides[axis], dilations[axis]);
        let total = if s == 1 {
            (k - 1) * d
        } else {
            let Some((h, w)) = spatial else {
                return Err(nx.unsupported_value(
                    "auto_pad",
                    format!(
                        "\"{}\" with strides {strides:?}: the spatial size of input \"{x}\" is not declared in the file, and the padding depends on it",
                        auto_pad.as_deref().unwrap_or_default()
                    ),
                ));
            };
            let len = if axis == 0 { h } else { w };
            let out_len = len.div_ceil(s);
            ((out_len.max(1) - 1) * s + (k - 1) * d + 1).saturating_sub(len)
        };
        let begin = if upper { total / 2 } else { total - total / 2 };
        out[axis] = begin;
        out[axis + 2] = total - begin;
    }
    Ok(out)
}

/// A `Constant` node's single output and its value.
fn fold_constant(nx: &NodeCtx<'_>) -> Result<(String, Tensor), ImportError> {
    let node = nx.node;
    if !node.input.iter().all(String::is_empty)
        || node.output.len() != 1
        || node.output[0].is_empty()
    {
        return Err(nx.invalid(format!(
            "expected no inputs and one output, got inputs {:?}, outputs {:?}",
            node.input, node.output
        )));
    }
    let mut attrs = nx.attrs()?;
    let mut values = Vec::new();
    if let Some(t) = attrs.tensor("value")? {
        values.push(tensor_from_proto(t, nx.cx.path)?);
    }
    if let Some(f) = attrs.float("value_float")? {
        values.push(Tensor::F32(ArrayD::from_elem(IxDyn(&[]), f)));
    }
    if let Some(f) = attrs.floats("value_floats")? {
        values.push(Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(&[f.len()]), f.to_vec()).expect("1-D shape"),
        ));
    }
    if let Some(i) = attrs.int("value_int")? {
        values.push(Tensor::I64(ArrayD::from_elem(IxDyn(&[]), i)));
    }
    if let Some(i) = attrs.ints("value_ints")? {
        values.push(Tensor::I64(
            ArrayD::from_shape_vec(IxDyn(&[i.len()]), i.to_vec()).expect("1-D shape"),
        ));
    }
    for unsupported in ["sparse_value", "value_string", "value_strings"] {
        if attrs.map.contains_key(unsupported) {
            return Err(nx.unsupported_value(
                unsupported,
                "(only numeric constants are supported)".to_owned(),
            ));
        }
    }
    attrs.finish()?;
    match values.len() {
        1 => Ok((node.output[0].clone(), values.pop().expect("one value"))),
        n => Err(nx.invalid(format!("expected exactly one value attribute, got {n}"))),
    }
}

fn data_type_name(data_type: i32) -> String {
    DataType::try_from(data_type).map_or_else(
        |_| format!("{data_type} (unknown)"),
        |t| format!("{t:?}").to_uppercase(),
    )
}

/// Decodes an initializer or `Constant` tensor. FLOAT becomes `Tensor::F32`; integer types of every width
/// and BOOL (as 0 / 1) become `Tensor::I64`. Data may come from `raw_data` (little-endian) or the typed repeated field.
pub fn tensor_from_proto(t: &TensorProto, source: &Path) -> Result<Tensor, ImportError> {
    if t.data_location == DataLocation::External as i32 || !t.external_data.is_empty() {
        let location = t
            .external_data
            .iter()
            .find(|e| e.key == "location")
            .map_or("?", |e| e.value.as_str());
        return Err(tensor_err(
            source,
            t,
            format!("external data (location \"{location}\") is not supported"),
        ));
    }
    if t.segment.is_some() {
        return Err(tensor_err(source, t, "segmented tensors are not supported"));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut len: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| tensor_err(source, t, "negative dimension"))?;
        len = len
            .checked_mul(d)
            .ok_or_else(|| tensor_err(source, t, "element count overflows"))?;
        shape.push(d);
    }
    let shape = IxDyn(&shape);
    let wrong_len = |what: &str, got: usize| {
        tensor_err(
            source,
            t,
            format!("{what} holds {got} elements, dims need {len}"),
        )
    };

    match DataType::try_from(t.data_type) {
        Ok(DataType::Float) => {
            let data: Vec<f32> = if !t.raw_data.is_empty() {
                if t.raw_data.len() != len * 4 {
                    return Err(wrong_len("raw_data", t.raw_data.len() / 4));
                }
                t.raw_data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                    .collect()
            } else {
                if t.float_data.len() != len {
                    return Err(wrong_len("float_data", t.float_data.len()));
                }
                t.float_data.clone()
            };
            Ok(Tensor::F32(
                ArrayD::from_shape_vec(shape, data).expect("length checked"),
            ))
        }
        Ok(DataType::Int64) => {
            let data: Vec<i64> = if !t.raw_data.is_empty() {
                if t.raw_data.len() != len * 8 {
                    return Err(wrong_len("raw_data", t.raw_data.len() / 8));
                }
                t.raw_data
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect()
            } else {
                if t.int64_data.len() != len {
                    return Err(wrong_len("int64_data", t.int64_data.len()));
                }
                t.int64_data.clone()
            };
            Ok(Tensor::I64(
                ArrayD::from_shape_vec(shape, data).expect("length checked"),
            ))
        }
        Ok(
            dt @ (DataType::Int32
            | DataType::Int16
            | DataType::Int8
            | DataType::Uint16
            | DataType::Uint8
            | DataType::Bool
            | DataType::Uint32
            | DataType::Uint64),
        ) => {
            // Integers of every width (and booleans, as 0 / 1) are held as i64.
            let (size, decode): (usize, fn(&[u8]) -> i64) = match dt {
                DataType::Int32 => (4, |b| {
                    i64::from(i32::from_le_bytes(b.try_into().expect("4")))
                }),
                DataType::Int16 => (2, |b| {
                    i64::from(i16::from_le_bytes(b.try_into().expect("2")))
                }),
                DataType::Uint16 => (2, |b| {
                    i64::from(u16::from_le_bytes(b.try_into().expect("2")))
                }),
                DataType::Int8 => (1, |b| i64::from(b[0] as i8)),
                DataType::Uint8 => (1, |b| i64::from(b[0])),
                DataType::Bool => (1, |b| i64::from(b[0] != 0)),
                DataType::Uint32 => (4, |b| {
                    i64::from(u32::from_le_bytes(b.try_into().expect("4")))
                }),
                _ => (8, |b| u64::from_le_bytes(b.try_into().expect("8")) as i64),
            };
            let data: Vec<i64> = if !t.raw_data.is_empty() {
                if t.raw_data.len() != len * size {
                    return Err(wrong_len("raw_data", t.raw_data.len() / size));
                }
                t.raw_data.chunks_exact(size).map(decode).collect()
            } else if matches!(dt, DataType::Uint32 | DataType::Uint64) {
                if t.uint64_data.len() != len {
                    return Err(wrong_len("uint64_data", t.uint64_data.len()));
                }
                t.uint64_data.iter().map(|&v| v as i64).collect()
            } else {
                if t.int32_data.len() != len {
                    return Err(wrong_len("int32_data", t.int32_data.len()));
                }
                t.int32_data
                    .iter()
                    .map(|&v| {
                        if dt == DataType::Bool {
                            i64::from(v != 0)
                        } else {
                            i64::from(v)
                        }
                    })
                    .collect()
            };
            if dt == DataType::Uint64 && data.iter().any(|&v| v < 0) {
                return Err(tensor_err(source, t, "a UINT64 value does not fit in i64"));
            }
            Ok(Tensor::I64(
                ArrayD::from_shape_vec(shape, data).expect("length checked"),
            ))
        }
        _ => Err(tensor_err(
            source,
            t,
            "unsupported data type (only FLOAT and integer or BOOL types are)",
        )),
    }
}

fn value_info(v: &ValueInfoProto, cx: &Ctx<'_>) -> Result<ValueInfo, ImportError> {
    let bad = |reason: String| ImportError::BadModel {
        path: cx.path.to_owned(),
        reason,
    };
    let Some(type_proto::Value::TensorType(tt)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(bad(format!(
            "graph input/output \"{}\" has no tensor type",
            v.name
        )));
    };
    // An absent shape means unknown rank; the IR records it as an empty shape.
    let dims = tt.shape.as_ref().map_or(&[][..], |s| s.dim.as_slice());
    let mut shape = Vec::with_capacity(dims.len());
    for (i, d) in dims.iter().enumerate() {
        shape.push(match &d.value {
            // Some exporters (PaddlePaddle) write -1 for a dynamic dimension.
            Some(dimension::Value::DimValue(-1)) => Dim::Symbolic(format!("{}_dim{i}", v.name)),
            Some(dimension::Value::DimValue(n)) => {
                Dim::Fixed(usize::try_from(*n).map_err(|_| {
                    bad(format!(
                        "graph input/output \"{}\" has negative dimension {n} at axis {i}",
                        v.name
                    ))
                })?)
            }
            Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
            _ => Dim::Symbolic(format!("{}_dim{i}", v.name)),
        });
    }
    Ok(ValueInfo {
        name: v.name.clone(),
        shape,
    })
}
