//! IDX loading (the MNIST / Fashion-MNIST format, optionally gzipped): an images file and a 1-D
//! labels file into [`RawData`], with sizes validated against the headers.

use std::path::Path;

use ndarray::Array2;

use super::{DataError, RawData, read_maybe_gzip};

/// IDX element types (third magic byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdxType {
    U8,
    I8,
    I16,
    I32,
    F32,
    F64,
}

impl IdxType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x08 => IdxType::U8,
            0x09 => IdxType::I8,
            0x0B => IdxType::I16,
            0x0C => IdxType::I32,
            0x0D => IdxType::F32,
            0x0E => IdxType::F64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            IdxType::U8 | IdxType::I8 => 1,
            IdxType::I16 => 2,
            IdxType::I32 | IdxType::F32 => 4,
            IdxType::F64 => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            IdxType::U8 => "u8",
            IdxType::I8 => "i8",
            IdxType::I16 => "i16",
            IdxType::I32 => "i32",
            IdxType::F32 => "f32",
            IdxType::F64 => "f64",
        }
    }
}

/// A parsed IDX file: dimensions, element type and the big-endian data bytes.
struct Idx {
    dims: Vec<usize>,
    elem: IdxType,
    bytes: Vec<u8>,
    data_offset: usize,
}

impl Idx {
    fn read(path: &Path) -> Result<Idx, DataError> {
        let bytes = read_maybe_gzip(path)?;
        if bytes.len() < 4 {
            return Err(DataError::SizeMismatch {
                path: path.to_path_buf(),
                what: "truncated IDX magic".to_string(),
                expected: 4,
                actual: bytes.len() as u64,
            });
        }
        if bytes[0] != 0 || bytes[1] != 0 {
            return Err(DataError::idx(
                path,
                format!(
                    "bad magic {:02x} {:02x} {:02x} {:02x}: IDX files start with 00 00",
                    bytes[0], bytes[1], bytes[2], bytes[3]
                ),
            ));
        }
        let elem = IdxType::from_code(bytes[2]).ok_or_else(|| {
            DataError::idx(
                path,
                format!(
                    "unknown IDX dtype code 0x{:02x} (known: 08 u8, 09 i8, 0B i16, 0C i32, 0D f32, 0E f64)",
                    bytes[2]
                ),
            )
        })?;
        let ndim = usize::from(bytes[3]);
        if ndim == 0 {
            return Err(DataError::idx(path, "IDX header declares 0 dimensions"));
        }
        let data_offset = 4 + 4 * ndim;
        if bytes.len() < data_offset {
            return Err(DataError::SizeMismatch {
                path: path.to_path_buf(),
                what: format!("truncated IDX header ({ndim} dimensions)"),
                expected: data_offset as u64,
                actual: bytes.len() as u64,
            });
        }
        let dims: Vec<usize> = bytes[4..data_offset]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        let too_large = || DataError::idx(path, format!("IDX dimensions {dims:?} are too large"));
        let count = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(too_large)?;
        let expected = count
            .checked_mul(elem.size())
            .and_then(|b| b.checked_add(data_offset))
            .ok_or_else(too_large)?;
        if bytes.len() != expected {
            let what = if bytes.len() < expected {
                "truncated IDX data"
            } else {
                "trailing bytes after IDX data"
            };
            return Err(DataError::SizeMismatch {
                path: path.to_path_buf(),
                what: format!("{what} (header declares {} {dims:?})", elem.name()),
                expected: expected as u64,
                actual: bytes.len() as u64,
            });
        }
        Ok(Idx {
            dims,
            elem,
            bytes,
            data_offset,
        })
    }

    fn data(&self) -> &[u8] {
        &self.bytes[self.data_offset..]
    }

    fn to_f32(&self) -> Vec<f32> {
        let d = self.data();
        match self.elem {
            IdxType::U8 => d.iter().map(|&b| f32::from(b)).collect(),
            IdxType::I8 => d.iter().map(|&b| f32::from(b as i8)).collect(),
            IdxType::I16 => d
                .chunks_exact(2)
                .map(|c| f32::from(i16::from_be_bytes([c[0], c[1]])))
                .collect(),
            IdxType::I32 => d
                .chunks_exact(4)
                .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
            IdxType::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            IdxType::F64 => d
                .chunks_exact(8)
                .map(|c| {
                    f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
        }
    }

    /// Integer elements as i64; `None` for float element types.
    fn to_i64(&self) -> Option<Vec<i64>> {
        let d = self.data();
        Some(match self.elem {
            IdxType::U8 => d.iter().map(|&b| i64::from(b)).collect(),
            IdxType::I8 => d.iter().map(|&b| i64::from(b as i8)).collect(),
            IdxType::I16 => d
                .chunks_exact(2)
                .map(|c| i64::from(i16::from_be_bytes([c[0], c[1]])))
                .collect(),
            IdxType::I32 => d
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            IdxType::F32 | IdxType::F64 => return None,
        })
    }
}

/// Loads an IDX images file (`[n, ...]`, any IDX dtype, each sample flattened) and a 1-D integer
/// IDX labels file into [`RawData`]. Either file may be gzipped (detected by magic bytes).
pub fn load_idx(images: &Path, labels: &Path) -> Result<RawData, DataError> {
    let img = Idx::read(images)?;
    let lab = Idx::read(labels)?;
    if lab.dims.len() != 1 {
        return Err(DataError::idx(
            labels,
            format!("labels must be 1-D [n], header declares {:?}", lab.dims),
        ));
    }
    let Some(label_values) = lab.to_i64() else {
        return Err(DataError::idx(
            labels,
            format!(
                "labels must have an integer dtype, header declares {}",
                lab.elem.name()
            ),
        ));
    };
    let n = img.dims[0];
    if lab.dims[0] != n {
        return Err(DataError::CountMismatch {
            features: images.to_path_buf(),
            features_count: n,
            labels: labels.to_path_buf(),
            labels_count: lab.dims[0],
        });
    }
    if n == 0 {
        return Err(DataError::Empty {
            path: images.to_path_buf(),
        });
    }
    let per_sample: usize = img.dims[1..].iter().product();
    let features = Array2::from_shape_vec((n, per_sample), img.to_f32()).map_err(|e| {
        DataError::idx(
            images,
            format!("cannot shape {:?} as [{n}, {per_sample}]: {e}", img.dims),
        )
    })?;
    Ok(RawData {
        features,
        labels: label_values,
        source: images.to_path_buf(),
    })
}
