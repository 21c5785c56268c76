//! Importers for model formats other than ONNX: [`safetensors`] weights and the [`bert`] encoder built from
//! them (a HF `config.json` + `model.safetensors` folder, as transformer users have) into the graph IR.

pub mod bert;
pub mod safetensors;

use std::path::PathBuf;

pub use bert::{BertConfig, BertModel, load_bert};

/// Why a model folder could not be imported or run. Messages name the file, tensor or node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },

    /// A file that is not what it must be (bad JSON, a truncated safetensors file, an unsupported config).
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },

    /// A weight the architecture needs is absent or has the wrong shape or type.
    #[error("weight \"{name}\": {message}")]
    Weight { name: String, message: String },

    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
}
