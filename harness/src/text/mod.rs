//! Text models' inputs and outputs: a BERT WordPiece [`tokenizer`] that matches HF `tokenizers`, the
//! one-sentence-per-line text [`dataset`] format, and the [`metrics`] for sentence-embedding models (cosine to
//! the FP32 embedding, nearest-neighbour agreement). Errors are [`TextError`], which names the file.

pub mod dataset;
pub mod metrics;
pub mod tokenizer;
mod unicode_tables;

use std::path::PathBuf;

pub use dataset::{TextDataset, load_text_lines};
pub use metrics::{EmbeddingMetrics, embedding_metrics};
pub use tokenizer::{TokenBatch, Tokenizer, TokenizerOptions};

/// Why a tokenizer or a text dataset could not be loaded, or embeddings could not be compared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },

    /// A file that is not what it must be (bad JSON, an unsupported tokenizer pipeline, invalid UTF-8).
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },

    /// A text file with no sentence in it.
    #[error("{}: no sentences in file", path.display())]
    Empty { path: PathBuf },

    /// Embedding matrices that cannot be compared.
    #[error("embeddings: {0}")]
    Embeddings(String),
}
