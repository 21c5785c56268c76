//! NumPy `.npy` reading (parsed with `npyz`): single arrays as f32 or i64 with their shape, and
//! features + labels file pairs into [`RawData`]. Little-endian u8 / i32 / i64 / f32, C order.

use std::path::Path;

use ndarray::Array2;
use npyz::{DType, Endianness, NpyFile, NpyHeader, Order, TypeChar, WriterBuilder};

use super::{DataError, RawData, read_maybe_gzip};

/// The element types accepted in `.npy` files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    U8,
    I32,
    I64,
    F32,
}

impl Elem {
    fn size(self) -> u64 {
        match self {
            Elem::U8 => 1,
            Elem::I32 | Elem::F32 => 4,
            Elem::I64 => 8,
        }
    }
}

const SUPPORTED: &str = "supported: |u1 (u8), <i4 (i32), <i8 (i64), <f4 (f32)";

/// A parsed `.npy` file: its shape, element type and the raw little-endian data bytes.
struct Npy {
    header: NpyHeader,
    shape: Vec<usize>,
    elem: Elem,
    data: Vec<u8>,
}

impl Npy {
    fn read(path: &Path) -> Result<Npy, DataError> {
        let bytes = read_maybe_gzip(path)?;
        let mut rest: &[u8] = &bytes;
        let header = NpyHeader::from_reader(&mut rest)
            .map_err(|e| DataError::npy(path, format!("not a valid .npy file: {e}")))?;
        let dtype = header.dtype();
        let descr = dtype.descr();
        let elem = match &dtype {
            DType::Plain(ts) => {
                let little = matches!(ts.endianness(), Endianness::Little | Endianness::Irrelevant);
                match (ts.type_char(), ts.size_field(), little) {
                    (TypeChar::Uint, 1, _) => Elem::U8,
                    (TypeChar::Int, 4, true) => Elem::I32,
                    (TypeChar::Int, 8, true) => Elem::I64,
                    (TypeChar::Float, 4, true) => Elem::F32,
                    (_, _, false) => {
                        return Err(DataError::npy(
                            path,
                            format!("big-endian dtype {descr:?} is not supported ({SUPPORTED})"),
                        ));
                    }
                    _ => {
                        return Err(DataError::npy(
                            path,
                            format!("unsupported dtype {descr:?} ({SUPPORTED})"),
                        ));
                    }
                }
            }
            _ => {
                return Err(DataError::npy(
                    path,
                    format!("unsupported structured dtype {descr:?} ({SUPPORTED})"),
                ));
            }
        };
        let shape = header
            .shape()
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| {
                DataError::npy(
                    path,
                    format!("shape {:?} does not fit in memory", header.shape()),
                )
            })?;
        if header.order() == Order::Fortran && shape.iter().filter(|&&d| d > 1).count() > 1 {
            return Err(DataError::npy(
                path,
                format!("shape {shape:?} is stored in Fortran order; only C order is supported"),
            ));
        }
        let expected = header
            .len()
            .checked_mul(elem.size())
            .ok_or_else(|| DataError::npy(path, format!("shape {shape:?} is too large")))?;
        let actual = rest.len() as u64;
        if actual != expected {
            let what = if actual < expected {
                "truncated .npy data"
            } else {
                "trailing bytes after .npy data"
            };
            return Err(DataError::SizeMismatch {
                path: path.to_path_buf(),
                what: format!("{what} (header declares {descr} {shape:?})"),
                expected,
                actual,
            });
        }
        let data = rest.to_vec();
        Ok(Npy {
            header,
            shape,
            elem,
            data,
        })
    }

    fn values<T: npyz::Deserialize>(&self, path: &Path) -> Result<Vec<T>, DataError> {
        NpyFile::with_header(self.header.clone(), &self.data[..])
            .into_vec::<T>()
            .map_err(|e| DataError::npy(path, format!("cannot decode data: {e}")))
    }
}

/// Reads one `.npy` array (u8, i32, i64 or f32) converted to f32, with its shape.
/// i32 / i64 values beyond 2^24 in magnitude are rounded to the nearest f32.
pub fn read_npy_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    let npy = Npy::read(path)?;
    let values = match npy.elem {
        Elem::U8 => npy.values::<u8>(path)?.into_iter().map(f32::from).collect(),
        Elem::I32 => npy
            .values::<i32>(path)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        Elem::I64 => npy
            .values::<i64>(path)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        Elem::F32 => npy.values::<f32>(path)?,
    };
    Ok((npy.shape, values))
}

/// Reads one integer `.npy` array (u8, i32 or i64) converted to i64, with its shape.
pub fn read_npy_i64(path: &Path) -> Result<(Vec<usize>, Vec<i64>), DataError> {
    let npy = Npy::read(path)?;
    let values = match npy.elem {
        Elem::U8 => npy.values::<u8>(path)?.into_iter().map(i64::from).collect(),
        Elem::I32 => npy
            .values::<i32>(path)?
            .into_iter()
            .map(i64::from)
            .collect(),
        Elem::I64 => npy.values::<i64>(path)?,
        Elem::F32 => {
            return Err(DataError::npy(
                path,
                "dtype '<f4' is not an integer type (supported: |u1, <i4, <i8)",
            ));
        }
    };
    Ok((npy.shape, values))
}

/// Loads a features `.npy` (u8 / i32 / i64 / f32, shape `[n, ...]`, each sample flattened) and a
/// labels `.npy` (u8 / i32 / i64, shape `[n]`) into [`RawData`]; the two `n` must agree.
pub fn load_npy(features: &Path, labels: &Path) -> Result<RawData, DataError> {
    let (fshape, values) = read_npy_f32(features)?;
    let Some((&n, rest)) = fshape.split_first() else {
        return Err(DataError::npy(
            features,
            "features array is 0-dimensional; expected shape [n, ...]",
        ));
    };
    let per_sample: usize = rest.iter().product();

    let (lshape, label_values) = read_npy_i64(labels)?;
    if lshape.len() != 1 {
        return Err(DataError::npy(
            labels,
            format!("labels must have shape [n], got {lshape:?}"),
        ));
    }
    if lshape[0] != n {
        return Err(DataError::CountMismatch {
            features: features.to_path_buf(),
            features_count: n,
            labels: labels.to_path_buf(),
            labels_count: lshape[0],
        });
    }
    if n == 0 {
        return Err(DataError::Empty {
            path: features.to_path_buf(),
        });
    }
    let features_arr = Array2::from_shape_vec((n, per_sample), values).map_err(|e| {
        DataError::npy(
            features,
            format!("cannot shape {fshape:?} as [{n}, {per_sample}]: {e}"),
        )
    })?;
    Ok(RawData {
        features: features_arr,
        labels: label_values,
        source: features.to_path_buf(),
    })
}

/// Writes `data` (C order, `shape`) as a little-endian `.npy` file that NumPy reads with `np.load`.
pub fn write_npy<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[usize],
    data: &[T],
) -> Result<(), DataError> {
    let io = |source: std::io::Error| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(&dims)
        .writer(file)
        .begin_nd()
        .map_err(io)?;
    writer.extend(data.iter().copied()).map_err(io)?;
    writer.finish().map_err(io)
}
