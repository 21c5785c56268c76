//! Logarithmic (power-of-two level) weight quantization: the non-linear quantizer.
//!
//! A `bits`-bit code is 1 sign bit and `bits - 1` magnitude bits:
//!
//! ```text
//! bit  bits-1 | bits-2 .. 0
//!      sign   | m
//! m = 0            -> 0 (exact zero; the sign bit is ignored, the encoder writes 0)
//! m = 1 ..= E      -> (-1)^sign * scale * 2^-(m-1),   E = 2^(bits-1) - 1 exponents
//! ```
//!
//! So 4 bits give 7 exponents, levels `±scale * {1, 1/2, ..., 1/64}` and 0; 2 bits give `{-scale, 0, scale}`.
//! Codes are `u8` values `< 2^bits`; store them densely with [`crate::bits::pack_codes`].
//!
//! The encoder picks the nearest level in linear distance (least squared error): between `2^-e` and `2^-(e+1)`
//! the threshold is `0.75 * 2^-e`, between the smallest level `2^-(E-1)` and 0 it is `2^-E`; ties go to the
//! larger magnitude. Magnitudes above `scale` saturate to `scale`. [`log_params`] takes `scale = max |w|` of
//! each slice, so the largest weight of each slice is exact.
//!
//! # Execution through the int8 GEMM
//!
//! [`log_decode_lut_i8`] maps each code to an integer `q = ±2^(E-1-e)` (or 0) and [`log_int_scale`] gives
//! `int_scale = scale / 2^(E-1)`, so that `q as f32 * int_scale == ` [`log_dequantize`] bit for bit (both are the
//! same power-of-two multiple of `scale`, exact unless the result underflows below `f32::MIN_POSITIVE`). That
//! needs `2^(E-1) <= 127`, i.e. at most 7 exponents: bits 2, 3 and 4 (4 bits: `q` in `{±64, ±32, ..., ±1, 0}`,
//! `int_scale = scale / 64`). Wider codes are refused with [`SchemeError::LogNotInt8Exact`].

use ndarray::{Array2, ArrayView2};

use crate::scheme::{
    Granularity, MIN_SCALE, QParams, Scheme, SchemeError, check_finite, for_each_slice,
};

/// Narrowest log code width (sign + 1 exponent: ternary).
pub const MIN_LOG_BITS: u32 = 2;
/// Widest log code width (127 exponents).
pub const MAX_LOG_BITS: u32 = 8;
/// Widest log code width whose levels decode exactly into int8 ([`log_decode_lut_i8`]).
pub const MAX_LOG_BITS_INT8: u32 = 4;

/// Number of exponents `E = 2^(bits-1) - 1` of a `bits`-bit log code (levels `2^0 .. 2^-(E-1)`).
pub fn log_exponents(bits: u32) -> Result<u32, SchemeError> {
    if !(MIN_LOG_BITS..=MAX_LOG_BITS).contains(&bits) {
        return Err(SchemeError::BitsOutOfRange {
            bits,
            min: MIN_LOG_BITS,
            max: MAX_LOG_BITS,
        });
    }
    Ok((1 << (bits - 1)) - 1)
}

/// `2^-e` for `e` in `0..=126` (a normal f32, exact).
fn pow2_neg(e: u32) -> f32 {
    debug_assert!(e <= 126);
    f32::from_bits((127 - e) << 23)
}

fn check_scale(scale: f32) -> Result<(), SchemeError> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(SchemeError::InvalidScale(scale))
    }
}

/// The code of `v` (finite) for `exponents` levels and a valid `scale`.
fn encode(v: f32, bits: u32, exponents: u32, scale: f32) -> u8 {
    let sign = u8::from(v.is_sign_negative()) << (bits - 1);
    // Exact in f64 for values on a level: |v| = scale * 2^-e gives a = 2^-e.
    let a = f64::from(v.abs()) / f64::from(scale);
    if a == 0.0 {
        return 0;
    }
    let e = if a >= 1.0 {
        0
    } else {
        // a in [2^x, 2^(x+1)) with x <= -1 (always a normal f64: a >= 2^-149 / 2^128). The nearest of the two
        // levels is the upper one when the mantissa is >= 1.5, i.e. its top fraction bit is set.
        let bits64 = a.to_bits();
        let x = ((bits64 >> 52) & 0x7ff) as i64 - 1023;
        let upper = ((bits64 >> 51) & 1) as i64;
        (-x - upper) as u64
    };
    let m = if e < u64::from(exponents) {
        e as u32 + 1
    } else if a >= f64::from(pow2_neg(exponents - 1)) * 0.5 {
        // Past the smallest level: it or zero, split at half of it.
        exponents
    } else {
        return 0;
    };
    sign | m as u8
}

/// The value of `code`; `code < 2^bits` is the caller's to check.
fn decode(code: u8, bits: u32, scale: f32) -> f32 {
    let m = u32::from(code) & ((1 << (bits - 1)) - 1);
    if m == 0 {
        return 0.0;
    }
    let v = scale * pow2_neg(m - 1);
    if code >> (bits - 1) & 1 == 1 { -v } else { v }
}

fn check_code(index: usize, code: u8, bits: u32) -> Result<(), SchemeError> {
    if u32::from(code) >> bits == 0 {
        Ok(())
    } else {
        Err(SchemeError::CodeOutOfRange { index, code, bits })
    }
}

/// Encodes `values` as `bits`-bit log codes with one `scale` (layout and rounding in the module docs).
pub fn log_quantize(values: &[f32], bits: u32, scale: f32) -> Result<Vec<u8>, SchemeError> {
    let exponents = log_exponents(bits)?;
    check_scale(scale)?;
    values
        .iter()
        .enumerate()
        .map(|(index, &value)| {
            if value.is_finite() {
                Ok(encode(value, bits, exponents, scale))
            } else {
                Err(SchemeError::NonFiniteValue { index, value })
            }
        })
        .collect()
}

/// Decodes `bits`-bit log codes: 0 or `±scale * 2^-e`.
pub fn log_dequantize(codes: &[u8], bits: u32, scale: f32) -> Result<Vec<f32>, SchemeError> {
    log_exponents(bits)?;
    codes
        .iter()
        .enumerate()
        .map(|(index, &code)| {
            check_code(index, code, bits)?;
            Ok(decode(code, bits, scale))
        })
        .collect()
}

/// Log quantization parameters of a `[k, n]` weight: one scale per entry, laid out as for [`QParams`]
/// (see [`crate::scheme`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LogParams {
    pub bits: u32,
    pub granularity: Granularity,
    pub scales: Vec<f32>,
}

impl LogParams {
    fn check_shape(&self, k: usize, n: usize) -> Result<(), SchemeError> {
        let expected = self.granularity.param_count(k, n)?;
        if self.scales.len() != expected {
            return Err(SchemeError::ParamsMismatch {
                k,
                n,
                granularity: self.granularity,
                expected,
                got: self.scales.len(),
            });
        }
        Ok(())
    }
}

/// Chooses log parameters for `w` (`[k, n]`): each slice's scale is its `max |w|` (so its largest weight is the
/// level `2^0` exactly), or a tiny positive scale for an all-zero slice. Per channel is the usual choice.
pub fn log_params(
    w: ArrayView2<f32>,
    bits: u32,
    granularity: Granularity,
) -> Result<LogParams, SchemeError> {
    log_exponents(bits)?;
    let count = granularity.param_count(w.nrows(), w.ncols())?;
    check_finite(w)?;
    let mut scales = Vec::with_capacity(count);
    for_each_slice(w, granularity, |values| {
        let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        scales.push(if max > 0.0 { max } else { MIN_SCALE });
        Ok::<_, SchemeError>(())
    })?;
    Ok(LogParams {
        bits,
        granularity,
        scales,
    })
}

/// Encodes `w` (`[k, n]`) with `params`.
pub fn log_quantize_weights(
    w: ArrayView2<f32>,
    params: &LogParams,
) -> Result<Array2<u8>, SchemeError> {
    let exponents = log_exponents(params.bits)?;
    let (k, n) = w.dim();
    params.check_shape(k, n)?;
    params.scales.iter().try_for_each(|&s| check_scale(s))?;
    check_finite(w)?;
    Ok(Array2::from_shape_fn((k, n), |(i, j)| {
        let scale = params.scales[params.granularity.param_index(i, j, n)];
        encode(w[[i, j]], params.bits, exponents, scale)
    }))
}

/// Decodes `codes` (`[k, n]`) with `params`.
pub fn log_dequantize_weights(
    codes: ArrayView2<u8>,
    params: &LogParams,
) -> Result<Array2<f32>, SchemeError> {
    log_exponents(params.bits)?;
    let (k, n) = codes.dim();
    params.check_shape(k, n)?;
    for (index, &code) in codes.iter().enumerate() {
        check_code(index, code, params.bits)?;
    }
    Ok(Array2::from_shape_fn((k, n), |(i, j)| {
        let scale = params.scales[params.granularity.param_index(i, j, n)];
        decode(codes[[i, j]], params.bits, scale)
    }))
}

/// `2^(E-1)`, the int8 magnitude of the level `2^0`, when the levels fit int8 exactly.
fn int8_top(bits: u32) -> Result<u32, SchemeError> {
    let exponents = log_exponents(bits)?;
    if bits > MAX_LOG_BITS_INT8 {
        return Err(SchemeError::LogNotInt8Exact { bits, exponents });
    }
    Ok(exponents - 1)
}

/// The int8 weight of every `bits`-bit code: `±2^(E-1-e)` for exponent `e`, 0 for the zero codes and for the
/// unused entries `>= 2^bits`. Pair with [`log_int_scale`]. Bits 2..=4 only (see the module docs).
pub fn log_decode_lut_i8(bits: u32) -> Result<[i8; 256], SchemeError> {
    let top = int8_top(bits)?;
    let mut lut = [0i8; 256];
    for (code, q) in lut.iter_mut().enumerate().take(1 << bits) {
        let m = code as u32 & ((1 << (bits - 1)) - 1);
        if m > 0 {
            let magnitude = 1i8 << (top - (m - 1));
            *q = if code >> (bits - 1) & 1 == 1 {
                -magnitude
            } else {
                magnitude
            };
        }
    }
    Ok(lut)
}

/// The scale of the int8 weights from [`log_decode_lut_i8`]: `scale / 2^(E-1)` (`scale / 64` for 4 bits).
pub fn log_int_scale(scale: f32, bits: u32) -> Result<f32, SchemeError> {
    Ok(scale * pow2_neg(int8_top(bits)?))
}

/// Decodes log codes (`[k, n]`) into int8 weights plus symmetric 8-bit [`QParams`] (zero points 0, scales from
/// [`log_int_scale`], the same granularity), ready for the int8 GEMM: `(q - 0) * scale` reproduces
/// [`log_dequantize_weights`] bit for bit.
pub fn log_to_int8(
    codes: ArrayView2<u8>,
    params: &LogParams,
) -> Result<(Array2<i8>, QParams), SchemeError> {
    let lut = log_decode_lut_i8(params.bits)?;
    let (k, n) = codes.dim();
    params.check_shape(k, n)?;
    for (index, &code) in codes.iter().enumerate() {
        check_code(index, code, params.bits)?;
    }
    let scales = params
        .scales
        .iter()
        .map(|&s| log_int_scale(s, params.bits))
        .collect::<Result<Vec<_>, _>>()?;
    let q = codes.mapv(|c| lut[usize::from(c)]);
    Ok((
        q,
        QParams {
            zero_points: vec![0; scales.len()],
            scales,
            bits: 8,
            scheme: Scheme::Symmetric,
            granularity: params.granularity,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_bit_code_layout() {
        // Sign in bit 3, m in bits 0..3: m = 1 -> 2^0, m = 7 -> 2^-6, m = 0 -> zero.
        let v = log_dequantize(&[0b0001, 0b1001, 0b0111, 0b0000, 0b1000], 4, 2.0).unwrap();
        assert_eq!(v, vec![2.0, -2.0, 2.0 / 64.0, 0.0, 0.0]);
        let lut = log_decode_lut_i8(4).unwrap();
        assert_eq!(
            &lut[..16],
            &[0, 64, 32, 16, 8, 4, 2, 1, 0, -64, -32, -16, -8, -4, -2, -1]
        );
        assert!(lut[16..].iter().all(|&q| q == 0));
        assert_eq!(log_int_scale(2.0, 4), Ok(2.0 / 64.0));
    }

    #[test]
    fn nearest_level_thresholds_and_ties() {
        // 3 bits: levels 1, 1/2, 1/4 and 0.
        let codes =
            log_quantize(&[0.76, 0.74, 0.75, 0.13, 0.125, 0.12, 5.0, -0.3], 3, 1.0).unwrap();
        assert_eq!(codes, vec![1, 2, 1, 3, 3, 0, 1, 0b100 | 3]);
    }

    #[test]
    fn bad_inputs_name_the_value() {
        assert_eq!(
            log_quantize(&[1.0, f32::NAN], 4, 1.0).map_err(|e| e.to_string()),
            Err("non-finite value NaN at index 1".into())
        );
        assert_eq!(
            log_quantize(&[1.0], 4, 0.0),
            Err(SchemeError::InvalidScale(0.0))
        );
        assert_eq!(
            log_dequantize(&[3, 16], 4, 1.0),
            Err(SchemeError::CodeOutOfRange {
                index: 1,
                code: 16,
                bits: 4
            })
        );
        let err = log_decode_lut_i8(5).unwrap_err();
        assert_eq!(
            err,
            SchemeError::LogNotInt8Exact {
                bits: 5,
                exponents: 15
            }
        );
        assert!(err.to_string().contains("2^0..2^-14"), "{err}");
        assert!(matches!(
            log_exponents(1),
            Err(SchemeError::BitsOutOfRange { bits: 1, .. })
        ));
    }
}
