//! `ir::Graph` -> ONNX `ModelProto`: the inverse of the importer, so that trained, fine-tuned and imported
//! graphs are real `.onnx` files that [`super::load_model`] and ONNX Runtime load.
//!
//! Contract: `import_model(export_model(g)) == g` for every graph the importer produces (names, opset,
//! declared shapes, attributes, initializers bit for bit), and ONNX Runtime runs the file as the IR means it.
//! Every [`Op`] the importer produces has an ONNX form, written the way the graph's opset expects it:
//! - attributes the IR carries that ONNX takes as constant inputs in later opsets become initializers named
//!   after the node (`<node>.axes`, `<node>.split`, `<node>.min` / `.max`): Squeeze / Unsqueeze / ReduceSum
//!   axes from opset 13, the other Reduce axes from 18, Split sizes from 13, Clip bounds from 11;
//! - the IR nodes of one ONNX Split (one per output) become one Split again, with a placeholder name for an
//!   output the importer dropped as unused; from opset 18 an unsized Split says `num_outputs`;
//! - attributes an opset does not know are left out when they hold their default (MaxPool `dilations` /
//!   `ceil_mode` before 10, AveragePool `dilations` before 19, Reshape `allowzero` before 14, Shape `start` /
//!   `end` before 15, Resize `axes` before 18);
//! - a graph written at a later opset than it was imported from (QDQ export raises it to 13) keeps its
//!   meaning: opset 1-12's Softmax over a flattened view becomes `Shape`, `Flatten`, `Softmax`, `Reshape`;
//! - an IR node whose meaning the opset cannot express (HardSwish before 14, LayerNormalization before 17, a
//!   non-default Shape range before 15, a one-axis Softmax before 13 unless over the last axis, Resize
//!   `half_pixel_symmetric` before 19) is an [`ExportError::NoOnnxForm`] naming the node.
//!
//! Element types: the IR holds every integer as i64 and booleans as 0 / 1, but ONNX types are strict
//! (`Where` takes a bool condition, `Cast` to INT32 makes int32 values that later ops read). The exporter
//! recovers them by unification over the graph: ops fix the types of some slots (comparison outputs and
//! `And` / `Or` / `Xor` / `Not` are bool, shapes and `Shape` outputs int64, convolutions float, `Cast` its
//! target) and tie others together (elementwise inputs and outputs, data in and out of movement ops); an i64
//! initializer takes its class's type (written as int64, int32 or bool), an unconstrained class is float, or
//! int64 when it holds an i64 initializer. Graph input types can be given ([`export_model_typed`]) where the
//! graph alone cannot tell (an `Add` of two int64 inputs).
//!
//! Tensors go in `raw_data` (little-endian); initializers are not listed as graph inputs; graph inputs and
//! outputs always declare a shape (an empty IR shape as a scalar's), as ONNX's checker requires; a graph output that
//! is an initializer (a fully folded graph) is written through an `Identity`. The IR version is the lowest
//! one that carries the opset (ONNX's versioning table), at least 7.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use prost::Message;

use super::proto::{
    AttributeProto, AttributeType, DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};
use crate::ir::{
    self, AutoPad, BinaryOp, CastTo, CoordinateMode, Dim, NearestMode, Op, ReduceOp, ResizeMode,
    Tensor, UnaryOp,
};

/// Why a model could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: cannot write model file: {error}", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The node's meaning has no ONNX form in the graph's opset.
    #[error("node \"{node}\" ({op}): no ONNX form in opset {opset}: {reason}")]
    NoOnnxForm {
        node: String,
        op: &'static str,
        opset: i64,
        reason: String,
    },
    /// Two ops need one value to have two element types (a malformed graph).
    #[error(
        "node \"{node}\" ({op}): value \"{value}\" must be {wanted}, but the graph already makes it {found}"
    )]
    TypeConflict {
        node: String,
        op: &'static str,
        value: String,
        wanted: &'static str,
        found: &'static str,
    },
    /// An initializer cannot be written in the element type its readers need.
    #[error(
        "initializer \"{name}\" ({dtype}, shape {shape:?}): cannot be written as {wanted}: {reason}"
    )]
    Initializer {
        name: String,
        dtype: &'static str,
        shape: Vec<usize>,
        wanted: &'static str,
        reason: String,
    },
}

/// An ONNX element type the IR's tensors stand for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElemType {
    F32,
    I64,
    I32,
    Bool,
}

impl ElemType {
    pub fn data_type(self) -> DataType {
        match self {
            ElemType::F32 => DataType::Float,
            ElemType::I64 => DataType::Int64,
            ElemType::I32 => DataType::Int32,
            ElemType::Bool => DataType::Bool,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ElemType::F32 => "float",
            ElemType::I64 => "int64",
            ElemType::I32 => "int32",
            ElemType::Bool => "bool",
        }
    }

    fn of_cast(to: CastTo) -> ElemType {
        match to {
            CastTo::F32 => ElemType::F32,
            CastTo::I64 => ElemType::I64,
            CastTo::I32 => ElemType::I32,
            CastTo::Bool => ElemType::Bool,
        }
    }
}

/// The ONNX IR version that goes with a default-domain opset (onnx/docs/Versioning.md), at least 7.
pub fn ir_version_for_opset(opset: i64) -> i64 {
    match opset {
        ..=12 => 7,
        13..=18 => 8,
        19..=20 => 9,
        21..=22 => 10,
        _ => 11,
    }
}

/// The model proto of `graph`; graph input types are inferred from their readers (float by default).
pub fn export_model(graph: &ir::Graph) -> Result<ModelProto, ExportError> {
    export_model_typed(graph, &HashMap::new())
}

/// The model proto of `graph`, with the element types of (some of) its inputs given by name.
pub fn export_model_typed(
    graph: &ir::Graph,
    input_types: &HashMap<String, ElemType>,
) -> Result<ModelProto, ExportError> {
    let nodes: Vec<GraphNode<'_>> = graph.nodes.iter().map(GraphNode::Ir).collect();
    export_mixed(graph, &nodes, input_types)
}

/// A node of an exported graph: an IR node, or a node already in ONNX form (QDQ export's
/// `QuantizeLinear` / `DequantizeLinear`), written as it is.
pub(crate) enum GraphNode<'a> {
    Ir(&'a ir::Node),
    Proto(&'a NodeProto),
}

/// The model proto of `graph`'s header and initializers with `nodes` (in order) as its nodes.
pub(crate) fn export_mixed(
    graph: &ir::Graph,
    nodes: &[GraphNode<'_>],
    input_types: &HashMap<String, ElemType>,
) -> Result<ModelProto, ExportError> {
    let types = infer_types(graph, nodes, input_types)?;
    let mut w = Writer {
        opset: graph.opset,
        used: used_names(graph, nodes),
        initializers: graph
            .initializers
            .iter()
            .map(|(name, t)| typed_tensor_proto(name, t, types.of(name)))
            .collect::<Result<Vec<_>, _>>()?,
    };
    for n in nodes {
        if let GraphNode::Ir(n) = n
            && let Op::Split {
                sizes,
                parts,
                index,
                ..
            } = &n.op
            && (index >= parts || sizes.as_ref().is_some_and(|s| s.len() != *parts))
        {
            return Err(w.no_form(
                n,
                format!("output {index} of a Split into {parts} parts with sizes {sizes:?}"),
            ));
        }
    }
    let splits = split_groups(nodes);
    let mut out = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        match node {
            GraphNode::Proto(p) => out.push((*p).clone()),
            GraphNode::Ir(n) => match &n.op {
                Op::Split { .. } => {
                    if let Some(group) = splits.get(&i) {
                        out.push(w.split(n, group)?);
                    }
                }
                _ => out.extend(w.node(n, graph, &types)?),
            },
        }
    }
    // A graph output that is an initializer (a graph folded to constants) is produced by an Identity.
    for o in &graph.outputs {
        if let Some(t) = graph.initializers.get(&o.name) {
            let name = w.fresh(&format!("{}.value", o.name));
            let pos = w
                .initializers
                .iter()
                .position(|p| p.name == o.name)
                .expect("every initializer is written");
            w.initializers[pos] = typed_tensor_proto(&name, t, types.of(&o.name))?;
            out.push(proto_node(
                format!("{}.identity", o.name),
                "Identity",
                vec![name],
                vec![o.name.clone()],
                Vec::new(),
            ));
        }
    }
    Ok(ModelProto {
        ir_version: ir_version_for_opset(graph.opset),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: graph.opset,
        }],
        producer_name: env!("CARGO_PKG_NAME").to_owned(),
        producer_version: env!("CARGO_PKG_VERSION").to_owned(),
        domain: String::new(),
        model_version: 0,
        doc_string: String::new(),
        graph: Some(GraphProto {
            node: out,
            name: graph.name.clone(),
            initializer: w.initializers,
            sparse_initializer: Vec::new(),
            doc_string: String::new(),
            input: graph
                .inputs
                .iter()
                .map(|v| value_info(v, types.of(&v.name)))
                .collect(),
            output: graph
                .outputs
                .iter()
                .map(|v| value_info(v, types.of(&v.name)))
                .collect(),
            value_info: Vec::new(),
        }),
        metadata_props: Vec::new(),
    })
}

/// `graph` serialized as an `.onnx` file's bytes.
pub fn encode_model(graph: &ir::Graph) -> Result<Vec<u8>, ExportError> {
    Ok(export_model(graph)?.encode_to_vec())
}

/// Writes `graph` to `path` as ONNX.
pub fn save_model(graph: &ir::Graph, path: &Path) -> Result<(), ExportError> {
    std::fs::write(path, encode_model(graph)?).map_err(|error| ExportError::Io {
        path: path.to_owned(),
        error,
    })
}

/// An initializer as a `TensorProto` with little-endian `raw_data`: f32 as FLOAT, i64 as INT64.
pub fn tensor_proto(name: &str, t: &Tensor) -> TensorProto {
    let ty = match t {
        Tensor::F32(_) => ElemType::F32,
        Tensor::I64(_) => ElemType::I64,
    };
    typed_tensor_proto(name, t, ty).expect("a tensor in its own type")
}

/// `t` as a `TensorProto` of element type `ty`: an i64 tensor may be written as INT32 (values in range) or
/// BOOL (values 0 / 1); an f32 tensor only as FLOAT.
pub fn typed_tensor_proto(
    name: &str,
    t: &Tensor,
    ty: ElemType,
) -> Result<TensorProto, ExportError> {
    let err = |reason: String| ExportError::Initializer {
        name: name.to_owned(),
        dtype: t.dtype(),
        shape: t.shape().to_vec(),
        wanted: ty.name(),
        reason,
    };
    let raw_data: Vec<u8> = match (t, ty) {
        (Tensor::F32(a), ElemType::F32) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        (Tensor::I64(a), ElemType::I64) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        (Tensor::I64(a), ElemType::I32) => {
            let mut raw = Vec::with_capacity(a.len() * 4);
            for &v in a {
                let v = i32::try_from(v).map_err(|_| err(format!("{v} is out of int32 range")))?;
                raw.extend(v.to_le_bytes());
            }
            raw
        }
        (Tensor::I64(a), ElemType::Bool) => {
            let mut raw = Vec::with_capacity(a.len());
            for &v in a {
                match v {
                    0 | 1 => raw.push(v as u8),
                    _ => return Err(err(format!("{v} is not a boolean (0 or 1)"))),
                }
            }
            raw
        }
        (Tensor::F32(_), _) | (Tensor::I64(_), ElemType::F32) => {
            return Err(err("the values are of another kind".to_owned()));
        }
    };
    Ok(TensorProto {
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: ty.data_type() as i32,
        name: name.to_owned(),
        raw_data,
        ..TensorProto::default()
    })
}

fn i64_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        name: name.to_owned(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..TensorProto::default()
    }
}

fn f32_scalar(name: &str, value: f32) -> TensorProto {
    TensorProto {
        dims: Vec::new(),
        data_type: DataType::Float as i32,
        name: name.to_owned(),
        raw_data: value.to_le_bytes().to_vec(),
        ..TensorProto::default()
    }
}

fn value_info(v: &ir::ValueInfo, ty: ElemType) -> ValueInfoProto {
    let dim = v
        .shape
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                Dim::Symbolic(s) => tensor_shape_proto::dimension::Value::DimParam(s.clone()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: v.name.clone(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: ty.data_type() as i32,
                // An empty IR shape is a scalar or (from a file without one) an unknown rank; ONNX's checker
                // requires a shape on graph inputs and outputs, so it is written as a scalar's.
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn ints(name: &str, values: &[usize]) -> AttributeProto {
    ints_i64(name, &values.iter().map(|&v| v as i64).collect::<Vec<_>>())
}

fn ints_i64(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..AttributeProto::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..AttributeProto::default()
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Float as i32,
        f: value,
        ..AttributeProto::default()
    }
}

fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::String as i32,
        s: value.as_bytes().to_vec(),
        ..AttributeProto::default()
    }
}

fn tensor_attr(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Tensor as i32,
        t: Some(t),
        ..AttributeProto::default()
    }
}

fn proto_node(
    name: String,
    op_type: &str,
    input: Vec<String>,
    output: Vec<String>,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input,
        output,
        name,
        op_type: op_type.to_owned(),
        domain: String::new(),
        attribute,
        doc_string: String::new(),
    }
}

/// Every name the graph uses (values, initializers), so that added initializers get fresh ones.
fn used_names(graph: &ir::Graph, nodes: &[GraphNode<'_>]) -> HashSet<String> {
    let mut used: HashSet<String> = graph.initializers.keys().cloned().collect();
    used.extend(graph.inputs.iter().map(|v| v.name.clone()));
    used.extend(graph.outputs.iter().map(|v| v.name.clone()));
    for n in nodes {
        let (i, o) = match n {
            GraphNode::Ir(n) => (&n.inputs, &n.outputs),
            GraphNode::Proto(p) => (&p.input, &p.output),
        };
        used.extend(i.iter().chain(o).cloned());
    }
    used
}

// ---------------------------------------------------------------------------------------------------------
// Element types.

/// The element type of every value of an exported graph (see the module docs).
pub(crate) struct Types {
    ids: HashMap<String, usize>,
    parent: Vec<usize>,
    /// Per class root: the type some op requires.
    fixed: Vec<Option<ElemType>>,
    /// Per class root: an i64 initializer in the class (int64 unless something fixes the class).
    has_i64_const: Vec<bool>,
}

impl Types {
    fn id(&mut self, v: &str) -> usize {
        if let Some(&i) = self.ids.get(v) {
            return i;
        }
        let i = self.parent.len();
        self.parent.push(i);
        self.fixed.push(None);
        self.has_i64_const.push(false);
        self.ids.insert(v.to_owned(), i);
        i
    }

    fn root(&self, mut i: usize) -> usize {
        while self.parent[i] != i {
            i = self.parent[i];
        }
        i
    }

    /// The element type of value `v`.
    pub(crate) fn of(&self, v: &str) -> ElemType {
        let Some(&i) = self.ids.get(v) else {
            return ElemType::F32;
        };
        let r = self.root(i);
        match (self.fixed[r], self.has_i64_const[r]) {
            (Some(t), _) => t,
            (None, true) => ElemType::I64,
            (None, false) => ElemType::F32,
        }
    }
}

/// Adds the constraints of one node to `Types`, naming the node in conflicts.
struct Constrain<'a> {
    t: &'a mut Types,
    node: &'a str,
    op: &'static str,
}

impl Constrain<'_> {
    fn conflict(&self, value: &str, wanted: ElemType, found: ElemType) -> ExportError {
        ExportError::TypeConflict {
            node: self.node.to_owned(),
            op: self.op,
            value: value.to_owned(),
            wanted: wanted.name(),
            found: found.name(),
        }
    }

    fn fix(&mut self, v: &str, ty: ElemType) -> Result<(), ExportError> {
        if v.is_empty() {
            return Ok(());
        }
        let i = self.t.id(v);
        let r = self.t.root(i);
        match self.t.fixed[r] {
            Some(t) if t != ty => Err(self.conflict(v, ty, t)),
            _ => {
                self.t.fixed[r] = Some(ty);
                Ok(())
            }
        }
    }

    fn fix_all<'s>(
        &mut self,
        vs: impl IntoIterator<Item = &'s String>,
        ty: ElemType,
    ) -> Result<(), ExportError> {
        for v in vs {
            self.fix(v, ty)?;
        }
        Ok(())
    }

    /// Ties the types of `vs` together.
    fn same<'s>(&mut self, vs: impl IntoIterator<Item = &'s String>) -> Result<(), ExportError> {
        let mut first: Option<(usize, &str)> = None;
        for v in vs.into_iter().filter(|v| !v.is_empty()) {
            let i = self.t.id(v);
            let r = self.t.root(i);
            let Some((r0, v0)) = first else {
                first = Some((r, v));
                continue;
            };
            if r == r0 {
                continue;
            }
            let merged = match (self.t.fixed[r0], self.t.fixed[r]) {
                (Some(a), Some(b)) if a != b => return Err(self.conflict(v, a, b)),
                (a, b) => a.or(b),
            };
            self.t.parent[r] = r0;
            self.t.fixed[r0] = merged;
            self.t.has_i64_const[r0] |= self.t.has_i64_const[r];
            first = Some((r0, v0));
        }
        Ok(())
    }
}

/// Element types for `nodes` over `graph`'s inputs and initializers (see the module docs).
pub(crate) fn infer_types(
    graph: &ir::Graph,
    nodes: &[GraphNode<'_>],
    input_types: &HashMap<String, ElemType>,
) -> Result<Types, ExportError> {
    let mut t = Types {
        ids: HashMap::new(),
        parent: Vec::new(),
        fixed: Vec::new(),
        has_i64_const: Vec::new(),
    };
    for (name, tensor) in &graph.initializers {
        let i = t.id(name);
        match tensor {
            Tensor::F32(_) => t.fixed[i] = Some(ElemType::F32),
            Tensor::I64(_) => t.has_i64_const[i] = true,
        }
    }
    for (name, &ty) in input_types {
        let i = t.id(name);
        t.fixed[i] = Some(ty);
    }
    use ElemType::{Bool, F32, I64};
    for node in nodes {
        let node = match node {
            GraphNode::Ir(n) => n,
            GraphNode::Proto(p) => {
                // QDQ nodes: what IR nodes read from them is a dequantized float.
                if p.op_type == "DequantizeLinear" {
                    let mut c = Constrain {
                        t: &mut t,
                        node: &p.name,
                        op: "DequantizeLinear",
                    };
                    c.fix_all(&p.output, F32)?;
                }
                continue;
            }
        };
        let mut c = Constrain {
            t: &mut t,
            node: &node.name,
            op: node.op.op_type(),
        };
        let i = &node.inputs;
        let o = &node.outputs;
        let arg = |k: usize| i.get(k).into_iter();
        let data_and_out = || arg(0).chain(o);
        match &node.op {
            Op::Conv(_)
            | Op::ConvTranspose(_)
            | Op::Gemm(_)
            | Op::MatMul
            | Op::MaxPool(_)
            | Op::AveragePool(_)
            | Op::GlobalAveragePool
            | Op::GlobalMaxPool
            | Op::BatchNormalization { .. }
            | Op::LayerNormalization { .. }
            | Op::Softmax { .. } => c.fix_all(i.iter().chain(o), F32)?,
            Op::Unary(UnaryOp::Not) => c.fix_all(i.iter().chain(o), Bool)?,
            Op::Unary(UnaryOp::Neg | UnaryOp::Abs) => c.same(i.iter().chain(o))?,
            Op::Unary(_) => c.fix_all(i.iter().chain(o), F32)?,
            Op::Add
            | Op::Binary(BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div)
            | Op::Variadic(_)
            | Op::Concat { .. }
            | Op::Range => c.same(i.iter().chain(o))?,
            Op::Binary(BinaryOp::Pow) => c.same(data_and_out())?,
            Op::Binary(BinaryOp::And | BinaryOp::Or | BinaryOp::Xor) => {
                c.fix_all(i.iter().chain(o), Bool)?
            }
            Op::Binary(_) => {
                // Comparisons.
                c.same(i)?;
                c.fix_all(o, Bool)?;
            }
            Op::Relu
            | Op::Flatten { .. }
            | Op::Transpose { .. }
            | Op::Identity
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Split { .. }
            | Op::Reduce { .. }
            | Op::Gather { .. } => c.same(data_and_out())?,
            Op::Reshape { .. } | Op::Expand | Op::Tile => {
                c.same(data_and_out())?;
                c.fix_all(arg(1), I64)?;
            }
            Op::Slice => {
                c.same(data_and_out())?;
                c.same(i.iter().skip(1))?;
            }
            Op::Shape { .. } => c.fix_all(o, I64)?,
            Op::Cast { to } => c.fix_all(o, ElemType::of_cast(*to))?,
            Op::Where => {
                c.fix_all(arg(0), Bool)?;
                c.same(i.iter().skip(1).chain(o))?;
            }
            Op::ConstantOfShape { value } => {
                c.fix_all(arg(0), I64)?;
                if let Tensor::F32(_) = value {
                    c.fix_all(o, F32)?;
                } else {
                    for v in o {
                        let id = c.t.id(v);
                        let r = c.t.root(id);
                        c.t.has_i64_const[r] = true;
                    }
                }
            }
            Op::Resize(_) => {
                c.same(data_and_out())?;
                c.fix_all(arg(1).chain(arg(2)), F32)?;
                c.fix_all(arg(3), I64)?;
            }
        }
    }
    Ok(t)
}

// ---------------------------------------------------------------------------------------------------------
// Nodes.

/// The ONNX Split an IR Split node belongs to, keyed by the position of its first IR node.
struct SplitGroup {
    /// The ONNX node's name (the first output's IR node name, without `:<index>`).
    name: String,
    /// Per output index, the IR node's output (absent where the importer dropped an unused output).
    outputs: Vec<Option<String>>,
}

/// Groups the IR Split nodes of one ONNX Split: same input and attributes, distinct indices.
fn split_groups(nodes: &[GraphNode<'_>]) -> HashMap<usize, SplitGroup> {
    let mut groups: HashMap<usize, SplitGroup> = HashMap::new();
    let mut open: Vec<usize> = Vec::new();
    for (pos, n) in nodes.iter().enumerate() {
        let GraphNode::Ir(n) = n else { continue };
        let Op::Split { parts, index, .. } = &n.op else {
            continue;
        };
        let same = |first: usize| match &nodes[first] {
            GraphNode::Ir(f) => f.inputs == n.inputs && split_key(&f.op) == split_key(&n.op),
            GraphNode::Proto(_) => false,
        };
        let found = open
            .iter()
            .copied()
            .find(|&first| same(first) && groups[&first].outputs.get(*index) == Some(&None));
        let first = match found {
            Some(first) => first,
            None => {
                let suffix = format!(":{index}");
                let name = n.name.strip_suffix(&suffix).unwrap_or(&n.name).to_owned();
                groups.insert(
                    pos,
                    SplitGroup {
                        name,
                        outputs: vec![None; *parts],
                    },
                );
                open.push(pos);
                pos
            }
        };
        let g = groups.get_mut(&first).expect("group exists");
        if let Some(slot) = g.outputs.get_mut(*index) {
            *slot = n.outputs.first().cloned();
        }
    }
    groups
}

struct Writer {
    opset: i64,
    used: HashSet<String>,
    initializers: Vec<TensorProto>,
}

impl Writer {
    /// `base`, or `base_<n>` when the graph already uses it; reserved.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_owned();
        let mut n = 1;
        while self.used.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.used.insert(name.clone());
        name
    }

    /// A new int64 1-D initializer `<node>.<what>`; returns its name.
    fn i64_input(&mut self, node: &str, what: &str, values: &[i64]) -> String {
        let name = self.fresh(&format!("{node}.{what}"));
        self.initializers.push(i64_tensor(&name, values));
        name
    }

    fn no_form(&self, node: &ir::Node, reason: impl Into<String>) -> ExportError {
        ExportError::NoOnnxForm {
            node: node.name.clone(),
            op: node.op.op_type(),
            opset: self.opset,
            reason: reason.into(),
        }
    }

    fn split(&mut self, node: &ir::Node, group: &SplitGroup) -> Result<NodeProto, ExportError> {
        let Op::Split {
            axis, sizes, parts, ..
        } = &node.op
        else {
            unreachable!("split() takes Split nodes");
        };
        let outputs: Vec<String> = group
            .outputs
            .iter()
            .enumerate()
            .map(|(i, o)| match o {
                Some(o) => o.clone(),
                None => self.fresh(&format!("{}:unused{i}", group.name)),
            })
            .collect();
        let mut input = node.inputs[..1].to_vec();
        let mut attribute = vec![int("axis", *axis)];
        let sizes: Option<Vec<i64>> = sizes
            .as_ref()
            .map(|s| s.iter().map(|&v| v as i64).collect());
        match sizes {
            Some(s) if self.opset < 13 => attribute.push(ints_i64("split", &s)),
            Some(s) => input.push(self.i64_input(&group.name, "split", &s)),
            None if self.opset >= 18 => attribute.push(int("num_outputs", *parts as i64)),
            None => {}
        }
        Ok(proto_node(
            group.name.clone(),
            "Split",
            input,
            outputs,
            attribute,
        ))
    }

    fn node(
        &mut self,
        node: &ir::Node,
        graph: &ir::Graph,
        types: &Types,
    ) -> Result<Vec<NodeProto>, ExportError> {
        let opset = self.opset;
        let mut input = node.inputs.clone();
        let attribute = match &node.op {
            Op::Conv(a) => vec![
                ints("kernel_shape", &a.kernel_shape),
                ints("strides", &a.strides),
                ints("pads", &a.pads),
                ints("dilations", &a.dilations),
                int("group", a.group as i64),
            ],
            Op::ConvTranspose(a) => {
                let mut v = vec![
                    ints("kernel_shape", &a.kernel_shape),
                    ints("strides", &a.strides),
                    ints("dilations", &a.dilations),
                    int("group", a.group as i64),
                    ints("output_padding", &a.output_padding),
                ];
                if a.auto_pad == AutoPad::NotSet || a.pads != [0; 4] {
                    v.push(ints("pads", &a.pads));
                }
                if let Some(s) = &a.output_shape {
                    v.push(ints("output_shape", s));
                }
                let auto_pad = match a.auto_pad {
                    AutoPad::NotSet => None,
                    AutoPad::Valid => Some("VALID"),
                    AutoPad::SameUpper => Some("SAME_UPPER"),
                    AutoPad::SameLower => Some("SAME_LOWER"),
                };
                v.extend(auto_pad.map(|p| string("auto_pad", p)));
                v
            }
            Op::Gemm(a) => vec![
                float("alpha", a.alpha),
                float("beta", a.beta),
                int("transA", i64::from(a.trans_a)),
                int("transB", i64::from(a.trans_b)),
            ],
            Op::MaxPool(a) => {
                let mut v = vec![
                    ints("kernel_shape", &a.kernel_shape),
                    ints("strides", &a.strides),
                    ints("pads", &a.pads),
                ];
                if opset >= 10 || a.dilations != [1, 1] {
                    v.push(ints("dilations", &a.dilations));
                }
                if opset >= 10 || a.ceil_mode {
                    v.push(int("ceil_mode", i64::from(a.ceil_mode)));
                }
                v
            }
            Op::AveragePool(a) => {
                let p = &a.pool;
                let mut v = vec![
                    ints("kernel_shape", &p.kernel_shape),
                    ints("strides", &p.strides),
                    ints("pads", &p.pads),
                    int("count_include_pad", i64::from(a.count_include_pad)),
                ];
                if opset >= 19 || p.dilations != [1, 1] {
                    v.push(ints("dilations", &p.dilations));
                }
                if opset >= 10 || p.ceil_mode {
                    v.push(int("ceil_mode", i64::from(p.ceil_mode)));
                }
                v
            }
            Op::Flatten { axis } => vec![int("axis", *axis)],
            Op::Reshape { allowzero } if opset >= 14 || *allowzero => {
                vec![int("allowzero", i64::from(*allowzero))]
            }
            Op::BatchNormalization { epsilon } => vec![float("epsilon", *epsilon)],
            Op::LayerNormalization { axis, epsilon } => {
                if opset < 17 {
                    return Err(self.no_form(
                        node,
                        "LayerNormalization is in the default domain from opset 17",
                    ));
                }
                vec![int("axis", *axis), float("epsilon", *epsilon)]
            }
            Op::Softmax { axis, legacy } => {
                if *legacy && opset >= 13 && *axis != -1 {
                    return self.legacy_softmax(node, *axis);
                }
                if !*legacy && opset < 13 && *axis != -1 {
                    return Err(self.no_form(
                        node,
                        "Softmax before opset 13 normalizes over the flattened trailing axes, not one axis",
                    ));
                }
                // Over the last axis, both forms agree.
                vec![int("axis", *axis)]
            }
            Op::Unary(u) => match u {
                UnaryOp::HardSigmoid { alpha, beta } => {
                    vec![float("alpha", *alpha), float("beta", *beta)]
                }
                UnaryOp::LeakyRelu { alpha } => vec![float("alpha", *alpha)],
                UnaryOp::HardSwish if opset < 14 => {
                    return Err(
                        self.no_form(node, "HardSwish is in the default domain from opset 14")
                    );
                }
                UnaryOp::Clip { min, max } => {
                    let bounds = [
                        ("min", *min, f32::NEG_INFINITY),
                        ("max", *max, f32::INFINITY),
                    ];
                    if opset < 11 {
                        bounds
                            .iter()
                            .filter(|(_, v, absent)| v != absent)
                            .map(|(k, v, _)| float(k, *v))
                            .collect()
                    } else {
                        input.truncate(1);
                        for (k, v, absent) in bounds {
                            if v != absent {
                                input.resize(if k == "min" { 1 } else { 2 }, String::new());
                                let name = self.fresh(&format!("{}.{k}", node.name));
                                self.initializers.push(f32_scalar(&name, v));
                                input.push(name);
                            }
                        }
                        Vec::new()
                    }
                }
                _ => Vec::new(),
            },
            Op::Transpose { perm } => perm.iter().map(|p| ints("perm", p)).collect(),
            Op::Concat { axis } | Op::Gather { axis } => vec![int("axis", *axis)],
            Op::Slice if opset < 10 => {
                let mut v = Vec::new();
                for (k, key) in ["starts", "ends", "axes"].iter().enumerate() {
                    let Some(name) = node.inputs.get(k + 1).filter(|s| !s.is_empty()) else {
                        continue;
                    };
                    match graph.initializers.get(name) {
                        Some(Tensor::I64(a)) => {
                            v.push(ints_i64(key, &a.iter().copied().collect::<Vec<_>>()))
                        }
                        _ => {
                            return Err(self.no_form(
                                node,
                                format!("Slice before opset 10 takes constant {key}; \"{name}\" is computed"),
                            ));
                        }
                    }
                }
                if node.inputs.get(4).is_some_and(|s| !s.is_empty()) {
                    return Err(self.no_form(node, "Slice before opset 10 has no steps"));
                }
                input.truncate(1);
                v
            }
            Op::Squeeze { axes } => self.axes(node, axes.as_deref(), 13, &mut input),
            Op::Unsqueeze { axes } => self.axes(node, Some(axes), 13, &mut input),
            Op::Reduce { op, axes, keepdims } => {
                let since = if *op == ReduceOp::Sum { 13 } else { 18 };
                let mut v = self.axes(node, axes.as_deref(), since, &mut input);
                v.push(int("keepdims", i64::from(*keepdims)));
                v
            }
            Op::Shape { start, end } => {
                if opset < 15 {
                    if *start != 0 || end.is_some() {
                        return Err(self.no_form(node, "Shape takes start / end from opset 15"));
                    }
                    Vec::new()
                } else {
                    let mut v = Vec::new();
                    if *start != 0 {
                        v.push(int("start", *start));
                    }
                    v.extend(end.map(|e| int("end", e)));
                    v
                }
            }
            Op::Cast { to } => vec![int("to", ElemType::of_cast(*to).data_type() as i64)],
            Op::ConstantOfShape { value } => {
                let ty = types.of(&node.outputs[0]);
                let t = typed_tensor_proto("value", value, ty)?;
                vec![tensor_attr("value", t)]
            }
            Op::Resize(a) => {
                let mut v = vec![
                    string(
                        "mode",
                        match a.mode {
                            ResizeMode::Nearest => "nearest",
                            ResizeMode::Linear => "linear",
                        },
                    ),
                    string(
                        "coordinate_transformation_mode",
                        match a.coordinate {
                            CoordinateMode::HalfPixel => "half_pixel",
                            CoordinateMode::HalfPixelSymmetric => "half_pixel_symmetric",
                            CoordinateMode::PytorchHalfPixel => "pytorch_half_pixel",
                            CoordinateMode::AlignCorners => "align_corners",
                            CoordinateMode::Asymmetric => "asymmetric",
                            CoordinateMode::TfHalfPixelForNn => "tf_half_pixel_for_nn",
                        },
                    ),
                    string(
                        "nearest_mode",
                        match a.nearest {
                            NearestMode::RoundPreferFloor => "round_prefer_floor",
                            NearestMode::RoundPreferCeil => "round_prefer_ceil",
                            NearestMode::Floor => "floor",
                            NearestMode::Ceil => "ceil",
                        },
                    ),
                ];
                if a.coordinate == CoordinateMode::HalfPixelSymmetric && opset < 19 {
                    return Err(
                        self.no_form(node, "half_pixel_symmetric coordinates are opset 19's")
                    );
                }
                if let Some(axes) = &a.axes {
                    if opset < 18 {
                        return Err(self.no_form(node, "Resize takes `axes` from opset 18"));
                    }
                    v.push(ints_i64("axes", axes));
                }
                v
            }
            Op::Reshape { .. }
            | Op::MatMul
            | Op::Relu
            | Op::Add
            | Op::GlobalAveragePool
            | Op::GlobalMaxPool
            | Op::Binary(_)
            | Op::Variadic(_)
            | Op::Slice
            | Op::Expand
            | Op::Where
            | Op::Identity
            | Op::Range
            | Op::Tile => Vec::new(),
            Op::Split { .. } => unreachable!("Split nodes are grouped by split()"),
        };
        // Trailing absent optional inputs are left out.
        while input.last().is_some_and(String::is_empty) {
            input.pop();
        }
        Ok(vec![proto_node(
            node.name.clone(),
            node.op.op_type(),
            input,
            node.outputs.clone(),
            attribute,
        )])
    }

    /// Opset 1-12's Softmax (the input flattened to 2-D at `axis`, normalized over the second dimension) in a
    /// later opset: `Flatten(axis)`, `Softmax(axis = -1)`, then `Reshape` back to the input's `Shape`.
    fn legacy_softmax(
        &mut self,
        node: &ir::Node,
        axis: i64,
    ) -> Result<Vec<NodeProto>, ExportError> {
        let (x, y) = (&node.inputs[0], &node.outputs[0]);
        let shape = self.fresh(&format!("{}.shape", node.name));
        let flat = self.fresh(&format!("{}.flat", node.name));
        let soft = self.fresh(&format!("{}.softmax", node.name));
        Ok(vec![
            proto_node(
                format!("{}.shape", node.name),
                "Shape",
                vec![x.clone()],
                vec![shape.clone()],
                Vec::new(),
            ),
            proto_node(
                format!("{}.flatten", node.name),
                "Flatten",
                vec![x.clone()],
                vec![flat.clone()],
                vec![int("axis", axis)],
            ),
            proto_node(
                node.name.clone(),
                "Softmax",
                vec![flat],
                vec![soft.clone()],
                vec![int("axis", -1)],
            ),
            proto_node(
                format!("{}.reshape", node.name),
                "Reshape",
                vec![soft, shape],
                vec![y.clone()],
                Vec::new(),
            ),
        ])
    }

    /// Squeeze / Unsqueeze / Reduce axes: an attribute before opset `since`, else a constant second input.
    fn axes(
        &mut self,
        node: &ir::Node,
        axes: Option<&[i64]>,
        since: i64,
        input: &mut Vec<String>,
    ) -> Vec<AttributeProto> {
        input.truncate(1);
        match axes {
            None => Vec::new(),
            Some(a) if self.opset < since => vec![ints_i64("axes", a)],
            Some(a) => {
                let name = self.i64_input(&node.name, "axes", a);
                input.push(name);
                Vec::new()
            }
        }
    }
}

/// A Split's attributes without its output index: what the IR nodes of one ONNX Split share.
fn split_key(op: &Op) -> Option<(i64, Option<&[usize]>, usize)> {
    match op {
        Op::Split {
            axis, sizes, parts, ..
        } => Some((*axis, sizes.as_deref(), *parts)),
        _ => None,
    }
}
