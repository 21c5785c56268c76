//! [`DataError`]: every way loading or splitting a data set can fail, each naming the file and
//! the line / column / key / shape involved, in a one-line message.

use std::path::{Path, PathBuf};

/// An error from the data loaders or the splitter. Messages are one line and start with the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be opened or read (including corrupt gzip streams).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A CSV cell that is not what it must be (a finite number, or an integer label).
    #[error("{} line {line}, column {column}: {message}", path.display())]
    CsvCell {
        path: PathBuf,
        /// 1-based line number in the (decompressed) file.
        line: u64,
        /// 1-based column number.
        column: usize,
        message: String,
    },

    /// A CSV row with a different number of columns from the first row.
    #[error(
        "{} line {line}: row has {found} columns, expected {expected} (as on line {first_line})",
        path.display()
    )]
    CsvRagged {
        path: PathBuf,
        line: u64,
        found: usize,
        expected: usize,
        first_line: u64,
    },

    /// A CSV file that cannot be tokenised, or whose layout cannot hold a label and features.
    #[error("{} line {line}: {message}", path.display())]
    CsvFormat {
        path: PathBuf,
        line: u64,
        message: String,
    },

    /// The file holds no samples.
    #[error("{}: no samples in file", path.display())]
    Empty { path: PathBuf },

    /// A malformed or unsupported `.npy` file (header, dtype, order or shape).
    #[error("{}: {message}", path.display())]
    Npy { path: PathBuf, message: String },

    /// A malformed or unsupported IDX file (magic, dtype or dimensions).
    #[error("{}: {message}", path.display())]
    Idx { path: PathBuf, message: String },

    /// A binary file whose size does not match what its header declares.
    #[error(
        "{}: {what}: expected {expected} bytes, found {actual}",
        path.display()
    )]
    SizeMismatch {
        path: PathBuf,
        /// Which part of the file, e.g. "truncated IDX data (header declares [10000, 28, 28] u8)".
        what: String,
        expected: u64,
        actual: u64,
    },

    /// A features file and a labels file that disagree on the number of samples.
    #[error(
        "sample count mismatch: {} has {features_count} samples, {} has {labels_count} labels",
        features.display(),
        labels.display()
    )]
    CountMismatch {
        features: PathBuf,
        features_count: usize,
        labels: PathBuf,
        labels_count: usize,
    },

    /// A sample index outside the data set (from [`super::RawData::select`]).
    #[error("{}: sample index {index} out of range for {len} samples", path.display())]
    IndexOutOfRange {
        path: PathBuf,
        index: usize,
        len: usize,
    },

    /// A split request with a zero count; `which` is "calibration" or "evaluation".
    #[error("stratified split: {which} sample count must be at least 1, got 0")]
    ZeroSplit { which: &'static str },

    /// A split that asks for more samples than there are.
    #[error(
        "stratified split: calibration {calibration} + evaluation {evaluation} exceeds the {available} samples available"
    )]
    SplitTooLarge {
        calibration: usize,
        evaluation: usize,
        available: usize,
    },

    /// One class cannot provide its proportional share of the split.
    #[error(
        "stratified split: class {label} has {available} samples but its proportional share is {calibration} calibration + {evaluation} evaluation"
    )]
    ClassTooSmall {
        label: i64,
        available: usize,
        calibration: usize,
        evaluation: usize,
    },

    /// Normalisation parameters that would produce non-finite values.
    #[error("normalize: {message}")]
    InvalidNormalize { message: String },
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn npy(path: &Path, message: impl Into<String>) -> Self {
        DataError::Npy {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn idx(path: &Path, message: impl Into<String>) -> Self {
        DataError::Idx {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}
