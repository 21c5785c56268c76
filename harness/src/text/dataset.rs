//! The text dataset format: UTF-8, one sentence per line (gzip is detected by its magic bytes). Lines are
//! trimmed; empty lines are skipped. Sentences keep file order, so embeddings of the same file line up across
//! runs; [`TextDataset::batches`] tokenises consecutive sentences into padded batches.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::TextError;
use super::tokenizer::{TokenBatch, Tokenizer};

/// Sentences read from one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextDataset {
    pub sentences: Vec<String>,
    pub source: PathBuf,
}

/// Reads a one-sentence-per-line UTF-8 file; invalid UTF-8 is an error naming the line.
pub fn load_text_lines(path: &Path) -> Result<TextDataset, TextError> {
    let mut bytes = Vec::new();
    crate::data::open_maybe_gzip(path)
        .and_then(|mut r| {
            r.read_to_end(&mut bytes)
                .map_err(|e| crate::data::DataError::io(path, e))
        })
        .map_err(|e| TextError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    let mut sentences = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(line).map_err(|e| TextError::Format {
            path: path.to_owned(),
            message: format!("line {}: not UTF-8 ({e})", i + 1),
        })?;
        let line = line.trim_start_matches('\u{feff}').trim();
        if !line.is_empty() {
            sentences.push(line.to_owned());
        }
    }
    if sentences.is_empty() {
        return Err(TextError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(TextDataset {
        sentences,
        source: path.to_owned(),
    })
}

impl TextDataset {
    pub fn len(&self) -> usize {
        self.sentences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sentences.is_empty()
    }

    /// The sentences at `indices`, in that order (e.g. one side of a calibration / evaluation split).
    pub fn select(&self, indices: &[usize]) -> Result<TextDataset, TextError> {
        let sentences = indices
            .iter()
            .map(|&i| {
                self.sentences
                    .get(i)
                    .cloned()
                    .ok_or_else(|| TextError::Format {
                        path: self.source.clone(),
                        message: format!("sentence {i} out of range ({} sentences)", self.len()),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(TextDataset {
            sentences,
            source: self.source.clone(),
        })
    }

    /// Consecutive sentences in batches of `batch_size` (the last one shorter), each padded to its longest.
    pub fn batches(&self, tokenizer: &Tokenizer, batch_size: usize) -> Vec<TokenBatch> {
        self.sentences
            .chunks(batch_size.max(1))
            .map(|chunk| tokenizer.batch(chunk))
            .collect()
    }
}
