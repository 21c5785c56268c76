//! Dataset loading: real samples from CSV (optionally gzipped), NumPy `.npy` and IDX files into
//! [`RawData`], seeded stratified calibration / evaluation splits, and the per-suite input
//! normalisation. Everything returns [`DataError`], which always names the file involved.

mod csv;
mod error;
mod idx;
mod normalize;
mod npy;
mod split;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use ndarray::{Array2, Axis};

pub use self::csv::load_csv;
pub use self::error::DataError;
pub use self::idx::load_idx;
pub use self::normalize::Normalize;
pub use self::npy::{load_npy, read_npy_f32, read_npy_i64, write_npy};
pub use self::split::{Split, stratified_split};

/// Raw samples as loaded: features row-major `[n, features_per_sample]` in f32 (pixel values as
/// stored, not normalised), labels as i64.
#[derive(Clone, Debug, PartialEq)]
pub struct RawData {
    pub features: Array2<f32>,
    pub labels: Vec<i64>,
    pub source: PathBuf,
}

impl RawData {
    /// Number of samples (rows).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of feature values per sample (columns).
    pub fn features_per_sample(&self) -> usize {
        self.features.ncols()
    }

    /// The samples at `indices` (in that order), e.g. one side of a [`Split`].
    pub fn select(&self, indices: &[usize]) -> Result<RawData, DataError> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::IndexOutOfRange {
                path: self.source.clone(),
                index: bad,
                len: self.len(),
            });
        }
        Ok(RawData {
            features: self.features.select(Axis(0), indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            source: self.source.clone(),
        })
    }
}

/// Which CSV column holds the label; the remaining columns are the features, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelColumn {
    First,
    Last,
    /// Zero-based column index.
    Index(usize),
}

/// The two bytes every gzip stream starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens `path` for reading, transparently decompressing it when its first bytes are the gzip
/// magic (whatever the file is named).
pub(crate) fn open_maybe_gzip(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let mut file = BufReader::new(File::open(path).map_err(|e| DataError::io(path, e))?);
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
    let head = std::io::Cursor::new(magic[..got].to_vec());
    let chained = head.chain(file);
    if got == magic.len() && magic == GZIP_MAGIC {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(chained)))
    } else {
        Ok(Box::new(chained))
    }
}

/// Reads the whole of `path` into memory, decompressing gzip (sniffed by magic bytes).
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut reader = open_maybe_gzip(path)?;
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    Ok(bytes)
}
