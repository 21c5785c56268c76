//! A reader for the safetensors format: an 8-byte little-endian header length, a JSON header mapping each
//! tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets into the data after the header, plus an
//! optional `__metadata__` map), then the raw little-endian data. F32, F16, BF16 (widened to f32) and the
//! integer types (widened to i64) are read; other dtypes are an error naming the tensor. Every offset and size
//! is checked against the file, so a truncated or corrupted file is an error, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use serde::Deserialize;

use super::ModelError;
use crate::ir::Tensor;

/// Largest header accepted (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// Reads every tensor of a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    parse_safetensors(&bytes).map_err(|message| ModelError::Format {
        path: path.to_owned(),
        message,
    })
}

/// Parses safetensors bytes; the error is a one-line message naming the tensor where there is one.
pub fn parse_safetensors(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, String> {
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            format!(
                "{} bytes is too short for a safetensors header",
                bytes.len()
            )
        })?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER || header_len > (bytes.len() - 8) as u64 {
        return Err(format!(
            "header length {header_len} does not fit the file ({} bytes)",
            bytes.len()
        ));
    }
    let data_start = 8 + header_len as usize;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&bytes[8..data_start])
        .map_err(|e| format!("header is not a JSON object: {e}"))?;
    let data = &bytes[data_start..];
    let mut tensors = BTreeMap::new();
    for (name, value) in header {
        if name == "__metadata__" {
            continue;
        }
        let entry: Entry = serde_json::from_value(value)
            .map_err(|e| format!("tensor \"{name}\": bad header entry: {e}"))?;
        let [begin, end] = entry.data_offsets;
        if begin > end || end > data.len() {
            return Err(format!(
                "tensor \"{name}\": data offsets [{begin}, {end}] exceed the {} data bytes",
                data.len()
            ));
        }
        let raw = &data[begin..end];
        let count = entry
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor \"{name}\": shape {:?} overflows", entry.shape))?;
        let width = match entry.dtype.as_str() {
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "I64" | "U64" => 8,
            "I8" | "U8" | "BOOL" => 1,
            other => {
                return Err(format!(
                    "tensor \"{name}\": dtype {other} is not supported (F32, F16, BF16 and integer types are)"
                ));
            }
        };
        if count.checked_mul(width) != Some(raw.len()) {
            return Err(format!(
                "tensor \"{name}\": {} bytes do not hold {} x {width}-byte elements (shape {:?})",
                raw.len(),
                count,
                entry.shape
            ));
        }
        let shape = IxDyn(&entry.shape);
        let chunks = raw.chunks_exact(width);
        let tensor = match entry.dtype.as_str() {
            "F32" => Tensor::F32(from_vec(
                shape,
                chunks.map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
            )),
            "F16" => Tensor::F32(from_vec(
                shape,
                chunks.map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
            )),
            "BF16" => Tensor::F32(from_vec(
                shape,
                chunks.map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)),
            )),
            dtype => Tensor::I64(from_vec(shape, chunks.map(|c| int_le(dtype, c)))),
        };
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

fn from_vec<T>(shape: IxDyn, values: impl Iterator<Item = T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(shape, values.collect()).expect("count checked")
}

/// A little-endian integer of the given safetensors dtype, widened to i64 (U64 wraps).
fn int_le(dtype: &str, c: &[u8]) -> i64 {
    match dtype {
        "I64" | "U64" => i64::from_le_bytes(c.try_into().expect("8 bytes")),
        "I32" => i64::from(i32::from_le_bytes(c.try_into().expect("4 bytes"))),
        "U32" => i64::from(u32::from_le_bytes(c.try_into().expect("4 bytes"))),
        "I16" => i64::from(i16::from_le_bytes([c[0], c[1]])),
        "U16" => i64::from(u16::from_le_bytes([c[0], c[1]])),
        "I8" => i64::from(c[0] as i8),
        _ => i64::from(c[0]),
    }
}

/// IEEE half to single precision (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value m * 2^-24.
            let v = m as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file from `(name, dtype, shape, bytes)`.
    pub(crate) fn build(tensors: &[(&str, &str, &[usize], Vec<u8>)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            header.insert(
                (*name).into(),
                serde_json::json!({"dtype": dtype, "shape": shape,
                    "data_offsets": [data.len(), data.len() + bytes.len()]}),
            );
            data.extend_from_slice(bytes);
        }
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let h = serde_json::to_vec(&header).unwrap();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.extend(data);
        out
    }

    #[test]
    fn reads_f32_half_and_integer_tensors() {
        let f: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let h: Vec<u8> = [0x3c00u16, 0xc000, 0x0001]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b: Vec<u8> = [0x3fc0u16].iter().flat_map(|v| v.to_le_bytes()).collect();
        let i: Vec<u8> = [7i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bytes = build(&[
            ("f", "F32", &[2], f),
            ("h", "F16", &[3], h),
            ("b", "BF16", &[1, 1], b),
            ("i", "I64", &[1, 2], i),
        ]);
        let t = parse_safetensors(&bytes).unwrap();
        assert_eq!(t["f"].as_f32().unwrap().as_slice().unwrap(), &[1.5, -2.0]);
        assert_eq!(
            t["h"].as_f32().unwrap().as_slice().unwrap(),
            &[1.0, -2.0, 2f32.powi(-24)]
        );
        assert_eq!(t["b"].as_f32().unwrap().shape(), &[1, 1]);
        assert_eq!(t["b"].as_f32().unwrap()[[0, 0]], 1.5);
        assert_eq!(t["i"].as_i64().unwrap().as_slice().unwrap(), &[7, -1]);
    }

    #[test]
    fn truncated_and_inconsistent_files_are_errors() {
        let f: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let good = build(&[("w", "F32", &[2], f.clone())]);
        for cut in [0, 4, 8, 20, good.len() - 1] {
            assert!(parse_safetensors(&good[..cut]).is_err(), "cut at {cut}");
        }
        let wrong_shape = build(&[("w", "F32", &[3], f.clone())]);
        let e = parse_safetensors(&wrong_shape).unwrap_err();
        assert!(e.contains("\"w\""), "{e}");
        let bad_dtype = build(&[("w", "F64", &[1], f)]);
        assert!(parse_safetensors(&bad_dtype).unwrap_err().contains("F64"));
    }
}
