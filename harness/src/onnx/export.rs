//! `ir::Graph` -> ONNX `ModelProto`: the inverse of the importer, so that trained and fine-tuned graphs are
//! real `.onnx` files that [`super::load_model`] and ONNX Runtime load.
//!
//! Contract: `import_model(export_model(g)) == g` for every graph the importer produces (names, opset,
//! declared shapes, attributes, initializers bit for bit). Attributes are written explicitly, except those
//! the op's opset does not know (MaxPool `dilations` / `ceil_mode` before opset 10 and Reshape `allowzero`
//! before 14, written only when they differ from the default, which the importer then reads back). Tensors
//! go in `raw_data` (little-endian); initializers are not listed as graph inputs. The IR version is the
//! lowest one that carries the opset (ONNX's versioning table), at least 7.

use std::path::{Path, PathBuf};

use prost::Message;

use super::proto::{
    AttributeProto, AttributeType, DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};
use crate::ir::{self, Dim, Op, Tensor};

/// Why a model could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: cannot write model file: {error}", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The exporter writes the trainable op set (and what QDQ export adds around it).
    #[error("node \"{node}\" ({op}): ONNX export of this op is not implemented")]
    UnsupportedOp { node: String, op: &'static str },
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

/// The model proto of `graph`.
pub fn export_model(graph: &ir::Graph) -> Result<ModelProto, ExportError> {
    let nodes = graph
        .nodes
        .iter()
        .map(|n| node_proto(n, graph.opset))
        .collect::<Result<Vec<_>, _>>()?;
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
            node: nodes,
            name: graph.name.clone(),
            initializer: graph
                .initializers
                .iter()
                .map(|(name, t)| tensor_proto(name, t))
                .collect(),
            sparse_initializer: Vec::new(),
            doc_string: String::new(),
            input: graph.inputs.iter().map(value_info).collect(),
            output: graph.outputs.iter().map(value_info).collect(),
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

/// An initializer as a `TensorProto` with little-endian `raw_data`.
pub fn tensor_proto(name: &str, t: &Tensor) -> TensorProto {
    let (data_type, raw_data) = match t {
        Tensor::F32(a) => (
            DataType::Float,
            a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        Tensor::I64(a) => (
            DataType::Int64,
            a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    };
    TensorProto {
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        name: name.to_owned(),
        raw_data,
        ..TensorProto::default()
    }
}

fn value_info(v: &ir::ValueInfo) -> ValueInfoProto {
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
                elem_type: DataType::Float as i32,
                // The importer records an absent shape (unknown rank) as an empty one.
                shape: (!v.shape.is_empty()).then_some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Ints as i32,
        ints: values.iter().map(|&v| v as i64).collect(),
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

fn node_proto(node: &ir::Node, opset: i64) -> Result<NodeProto, ExportError> {
    let attribute = match &node.op {
        Op::Conv(a) => vec![
            ints("kernel_shape", &a.kernel_shape),
            ints("strides", &a.strides),
            ints("pads", &a.pads),
            ints("dilations", &a.dilations),
            int("group", a.group as i64),
        ],
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
        Op::Flatten { axis } => vec![int("axis", *axis)],
        Op::Reshape { allowzero } if opset >= 14 || *allowzero => {
            vec![int("allowzero", i64::from(*allowzero))]
        }
        Op::Reshape { .. } | Op::MatMul | Op::Relu | Op::Add => Vec::new(),
        // Only graphs of the trainable op set (train::graph) are exported so far.
        other => {
            return Err(ExportError::UnsupportedOp {
                node: node.name.clone(),
                op: other.op_type(),
            });
        }
    };
    Ok(NodeProto {
        input: node.inputs.clone(),
        output: node.outputs.clone(),
        name: node.name.clone(),
        op_type: node.op.op_type().to_owned(),
        domain: String::new(),
        attribute,
        doc_string: String::new(),
    })
}
