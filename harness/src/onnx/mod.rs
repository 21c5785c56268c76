//! ONNX import: decodes `.onnx` files ([`proto`]) and converts them into the [`ir::Graph`] every executor
//! runs ([`import_model`]).
//!
//! Scope is the op set the IR models ([`SUPPORTED_OPS`], default domain, opsets 11 to 21; convolution and
//! pooling 2-D only); `Constant` nodes and constant sub-graphs are folded into initializers.
//! Anything else is refused with an [`ImportError`] that names the file, the node, its op type and the
//! model's opset, never silently approximated.

pub mod export;
mod import;
pub mod proto;
pub mod qdq;

use std::path::{Path, PathBuf};

use prost::Message;

use crate::ir;

pub use export::{ExportError, encode_model, export_model, save_model};
pub use import::{SUPPORTED_OPS, import_model, tensor_from_proto};

/// Why a model could not be imported. Every variant names the file; node-level variants also name the
/// node, its op type and the model's default-domain opset.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: cannot read model file: {error}", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error("{}: not a valid ONNX protobuf ({} bytes): {error}", .path.display(), .len)]
    Decode {
        path: PathBuf,
        len: usize,
        error: prost::DecodeError,
    },

    #[error("{}: {reason}", .path.display())]
    BadModel { path: PathBuf, reason: String },

    #[error(
        "{}: unsupported op `{op_type}` (node \"{node}\", opset {opset}); supported: {}",
        .path.display(),
        SUPPORTED_OPS.join(", ")
    )]
    UnsupportedOp {
        path: PathBuf,
        op_type: String,
        node: String,
        opset: i64,
    },

    #[error(
        "{}: node \"{node}\" ({op_type}, opset {opset}): unsupported value {value} for attribute `{attribute}`",
        .path.display()
    )]
    UnsupportedAttribute {
        path: PathBuf,
        node: String,
        op_type: String,
        opset: i64,
        attribute: &'static str,
        value: String,
    },

    #[error("{}: node \"{node}\" ({op_type}, opset {opset}): {reason}", .path.display())]
    InvalidNode {
        path: PathBuf,
        node: String,
        op_type: String,
        opset: i64,
        reason: String,
    },

    #[error(
        "{}: node \"{node}\" ({op_type}) reads \"{value}\", which is not a graph input, an initializer or an earlier node's output (nodes must be topologically sorted)",
        .path.display()
    )]
    NotTopological {
        path: PathBuf,
        node: String,
        op_type: String,
        value: String,
    },

    #[error("{}: tensor \"{tensor}\" (data type {data_type}, dims {dims:?}): {reason}", .path.display())]
    Tensor {
        path: PathBuf,
        tensor: String,
        data_type: String,
        dims: Vec<i64>,
        reason: String,
    },
}

/// Reads, decodes and imports the model at `path`.
pub fn load_model(path: &Path) -> Result<ir::Graph, ImportError> {
    let bytes = std::fs::read(path).map_err(|error| ImportError::Io {
        path: path.to_owned(),
        error,
    })?;
    let model = decode_model(&bytes, path)?;
    import_model(&model, path)
}

/// Decodes a serialized `ModelProto`; `source` only names the bytes in errors.
pub fn decode_model(bytes: &[u8], source: &Path) -> Result<proto::ModelProto, ImportError> {
    proto::ModelProto::decode(bytes).map_err(|error| ImportError::Decode {
        path: source.to_owned(),
        len: bytes.len(),
        error,
    })
}
