//! Linear quantization schemes: how a float range becomes a scale and a zero point, for weights (`bits` in
//! 2..=8, one value per `i8`; per tensor, per output channel or per group of input rows) and activations (`u8`,
//! per tensor).
//!
//! Rounding follows ONNX `QuantizeLinear`: round half to even, then saturate. Dequantization is
//! `w = (q - zero_point) * scale`.
//!
//! # Integer ranges (`b` = bits)
//!
//! | scheme    | levels                          | zero point            |
//! |-----------|---------------------------------|-----------------------|
//! | symmetric | `[-(2^(b-1) - 1), 2^(b-1) - 1]` | 0                     |
//! | affine    | `[-2^(b-1), 2^(b-1) - 1]`       | inside the same range |
//!
//! Symmetric drops the most negative level so that `-w` quantizes to `-q`, as symmetric back ends expect.
//! `b = 8` is the `i8` case ([`weight_params_i8`], [`quantize_weights_i8`]); narrower values still live one per
//! `i8` in memory and are stored densely with [`crate::bits::pack_bits`], whose byte count is the serialized size.
//!
//! # Parameter layout for a `[k, n]` weight (output channels along `n`)
//!
//! | granularity       | entries in `scales` / `zero_points` | element `(i, j)` uses entry |
//! |-------------------|-------------------------------------|-----------------------------|
//! | `PerTensor`       | 1                                   | 0                           |
//! | `PerChannel`      | `n`                                 | `j`                         |
//! | `PerGroup(g)`     | `ceil(k / g) * n`                   | `(i / g) * n + j`           |
//!
//! Per-group entries form a row-major `[groups, n]` matrix: group `t` covers input rows `t*g .. min((t+1)*g, k)`
//! of every column, so the last group is ragged when `g` does not divide `k`.
//!
//! # Clipping range
//!
//! Each slice (the elements sharing one entry) gets a range `[lo, hi]`, by default its min and max
//! ([`minmax_range`]), or from any function of the slice's values ([`weight_params_with`]; e.g. an MSE-optimal
//! clipping search). The range is widened to include 0, so 0 is always exact (padding, ReLU outputs). Symmetric
//! uses `max(|lo|, |hi|)`. Values outside the range saturate to the extreme levels.
//!
//! # Scale constraint
//!
//! [`ScaleConstraint::PowerOfTwo`] rounds every scale up to a power of two (see [`crate::pow2`]) after the range
//! is chosen; the zero point is then fitted to the rounded scale.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use ndarray::{Array2, ArrayView2, Axis};

use crate::pow2::ScaleConstraint;

/// Everything that can go wrong choosing or applying quantization parameters; each message names the value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchemeError {
    #[error("unknown scheme `{0}`; expected `symmetric` or `affine`")]
    UnknownScheme(String),
    #[error(
        "unknown granularity `{0}`; expected `tensor`, `channel` or `group<N>` (e.g. `group32` or `group:32`)"
    )]
    UnknownGranularity(String),
    #[error("unknown scale constraint `{0}`; expected `float` or `pow2`")]
    UnknownConstraint(String),
    #[error("non-finite weight {value} at [{row}, {col}]: cannot choose a scale")]
    NonFinite { row: usize, col: usize, value: f32 },
    #[error("non-finite value {value} at index {index}")]
    NonFiniteValue { index: usize, value: f32 },
    #[error("bit width {bits} is out of range; expected {min}..={max}")]
    BitsOutOfRange { bits: u32, min: u32, max: u32 },
    #[error("group size 0: a group must hold at least one input row")]
    ZeroGroupSize,
    #[error("clipping range [{lo}, {hi}] is not a finite interval with lo <= hi")]
    InvalidRange { lo: f32, hi: f32 },
    #[error("clipping range [{lo}, {hi}] is too wide: its {bits}-bit scale is not finite")]
    RangeTooWide { lo: f32, hi: f32, bits: u32 },
    #[error("scale {0} is not positive and finite")]
    InvalidScale(f32),
    #[error(
        "requantization multiplier {0} is not an exact power of two: shift-only requantization needs \
         power-of-two scales"
    )]
    NotPowerOfTwo(f64),
    #[error(
        "{got} quantization parameters do not fit a [{k}, {n}] weight with {granularity} granularity \
         (expected {expected})"
    )]
    ParamsMismatch {
        k: usize,
        n: usize,
        granularity: Granularity,
        expected: usize,
        got: usize,
    },
    #[error("value {value} at index {index} does not fit in {bits} signed bits")]
    ValueOutOfRange { index: usize, value: i32, bits: u32 },
    #[error("code {code} at index {index} does not fit in {bits} bits")]
    CodeOutOfRange { index: usize, code: u8, bits: u32 },
    #[error("{got} packed bytes are too few for {len} values of {bits} bits (need {needed})")]
    PackedTooShort {
        len: usize,
        bits: u32,
        needed: usize,
        got: usize,
    },
    #[error(
        "{bits}-bit log codes have {exponents} exponents (2^0..2^-{max_exp}); int8 decodes at most 7 \
         (2^0..2^-6) exactly, so int8 execution needs bits <= 4",
        max_exp = exponents - 1
    )]
    LogNotInt8Exact { bits: u32, exponents: u32 },
}

/// Narrowest weight bit width [`weight_params`] accepts.
pub const MIN_WEIGHT_BITS: u32 = 2;
/// Widest weight bit width [`weight_params`] accepts (the `i8` storage type).
pub const MAX_WEIGHT_BITS: u32 = 8;

/// `Ok` when `bits` is a supported weight bit width (2..=8).
pub fn check_weight_bits(bits: u32) -> Result<(), SchemeError> {
    if (MIN_WEIGHT_BITS..=MAX_WEIGHT_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(SchemeError::BitsOutOfRange {
            bits,
            min: MIN_WEIGHT_BITS,
            max: MAX_WEIGHT_BITS,
        })
    }
}

/// The integer range `(qmin, qmax)` of `bits`-bit weights under `scheme` (see the module table).
pub fn qrange(bits: u32, scheme: Scheme) -> Result<(i32, i32), SchemeError> {
    check_weight_bits(bits)?;
    let half = 1i32 << (bits - 1);
    Ok(match scheme {
        Scheme::Symmetric => (-(half - 1), half - 1),
        Scheme::Affine => (-half, half - 1),
    })
}

/// How a range maps to integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Zero point fixed at the middle of the integer range; scale from the largest magnitude.
    Symmetric,
    /// Scale and zero point fitted to `[min, max]` (the range always includes 0, so 0 is exact).
    Affine,
}

impl Scheme {
    /// The short name used in strategy names and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Symmetric => "sym",
            Scheme::Affine => "affine",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheme {
    type Err = SchemeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "symmetric" | "sym" => Ok(Scheme::Symmetric),
            "affine" | "asymmetric" | "asym" => Ok(Scheme::Affine),
            _ => Err(SchemeError::UnknownScheme(s.to_string())),
        }
    }
}

/// Which elements share one scale and zero point (layouts in the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    PerTensor,
    /// One pair per output channel (a column of the `[k, n]` weight matrix).
    PerChannel,
    /// One pair per output channel and group of this many consecutive input rows; the last group may be ragged.
    /// A size of 0 is rejected where parameters are chosen ([`SchemeError::ZeroGroupSize`]).
    PerGroup(usize),
}

impl Granularity {
    /// The short name used in strategy names and CSV rows: `tensor`, `channel`, `group32`.
    ///
    /// Group names are built once per distinct group size and kept for the life of the process (a handful of
    /// short strings), so that every granularity has a `'static` name.
    pub fn name(self) -> &'static str {
        match self {
            Granularity::PerTensor => "tensor",
            Granularity::PerChannel => "channel",
            Granularity::PerGroup(g) => group_name(g),
        }
    }

    /// Number of parameter entries for a `[k, n]` weight.
    pub fn param_count(self, k: usize, n: usize) -> Result<usize, SchemeError> {
        Ok(match self {
            Granularity::PerTensor => 1,
            Granularity::PerChannel => n,
            Granularity::PerGroup(0) => return Err(SchemeError::ZeroGroupSize),
            Granularity::PerGroup(g) => k.div_ceil(g) * n,
        })
    }

    /// The parameter entry of element `(row, col)` of a weight with `n` columns.
    ///
    /// # Panics
    /// On `PerGroup(0)` (division by zero); validated parameters never hold it.
    pub fn param_index(self, row: usize, col: usize, n: usize) -> usize {
        match self {
            Granularity::PerTensor => 0,
            Granularity::PerChannel => col,
            Granularity::PerGroup(g) => (row / g) * n + col,
        }
    }
}

fn group_name(g: usize) -> &'static str {
    static NAMES: Mutex<BTreeMap<usize, &'static str>> = Mutex::new(BTreeMap::new());
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    names
        .entry(g)
        .or_insert_with(|| Box::leak(format!("group{g}").into_boxed_str()))
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Granularity::PerGroup(g) => write!(f, "group{g}"),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for Granularity {
    type Err = SchemeError;
    /// `tensor`, `channel`, `group32` or `group:32` (also with a `per-` prefix).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || SchemeError::UnknownGranularity(s.to_string());
        let bare = s.strip_prefix("per-").unwrap_or(s);
        match bare {
            "tensor" => Ok(Granularity::PerTensor),
            "channel" => Ok(Granularity::PerChannel),
            _ => {
                let size = bare.strip_prefix("group").ok_or_else(unknown)?;
                let size = size.strip_prefix(':').unwrap_or(size);
                if !size.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(unknown());
                }
                match size.parse::<usize>().map_err(|_| unknown())? {
                    0 => Err(SchemeError::ZeroGroupSize),
                    g => Ok(Granularity::PerGroup(g)),
                }
            }
        }
    }
}

/// Weight quantization parameters: entries laid out as the module docs say for `granularity`.
#[derive(Clone, Debug, PartialEq)]
pub struct QParams {
    pub scales: Vec<f32>,
    pub zero_points: Vec<i32>,
    /// Bit width of the quantized values (2..=8); they are clamped to [`qrange`]`(bits, scheme)`.
    pub bits: u32,
    pub scheme: Scheme,
    pub granularity: Granularity,
}

impl QParams {
    /// The integer range quantized values are clamped to.
    pub fn qrange(&self) -> Result<(i32, i32), SchemeError> {
        qrange(self.bits, self.scheme)
    }

    /// The entry of element `(row, col)` of a weight with `n` columns.
    pub fn index(&self, row: usize, col: usize, n: usize) -> usize {
        self.granularity.param_index(row, col, n)
    }

    /// `Ok` when these parameters fit a `[k, n]` weight.
    pub fn check_shape(&self, k: usize, n: usize) -> Result<(), SchemeError> {
        let expected = self.granularity.param_count(k, n)?;
        let got = self.scales.len();
        if got != expected || self.zero_points.len() != expected {
            return Err(SchemeError::ParamsMismatch {
                k,
                n,
                granularity: self.granularity,
                expected,
                got: if got != expected {
                    got
                } else {
                    self.zero_points.len()
                },
            });
        }
        Ok(())
    }
}

/// Activation quantization parameters for `u8` values: `x = (q - zero_point) * scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActParams {
    pub scale: f32,
    pub zero_point: i32,
}

/// The smallest scale we hand out: a tensor of zeros still needs a positive, finite scale.
pub(crate) const MIN_SCALE: f32 = f32::MIN_POSITIVE * 1e6;

fn round_half_even(x: f32) -> f32 {
    x.round_ties_even()
}

/// `[min(x, 0), max(x, 0)]`: the default (min-max) clipping range of a slice.
pub fn minmax_range(values: &[f32]) -> (f32, f32) {
    values
        .iter()
        .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// The first non-finite element of `w`, as an error.
pub(crate) fn check_finite(w: ArrayView2<f32>) -> Result<(), SchemeError> {
    match w.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((row, col), &value)) => Err(SchemeError::NonFinite { row, col, value }),
        None => Ok(()),
    }
}

/// Calls `f` once per parameter entry, in layout order, with the values of the slice sharing that entry.
pub(crate) fn for_each_slice<E: From<SchemeError>>(
    w: ArrayView2<f32>,
    granularity: Granularity,
    mut f: impl FnMut(&[f32]) -> Result<(), E>,
) -> Result<(), E> {
    let (k, _) = w.dim();
    let mut buf = Vec::new();
    match granularity {
        Granularity::PerTensor => {
            buf.extend(w.iter().copied());
            f(&buf)
        }
        Granularity::PerChannel => {
            for col in w.axis_iter(Axis(1)) {
                buf.clear();
                buf.extend(col.iter().copied());
                f(&buf)?;
            }
            Ok(())
        }
        Granularity::PerGroup(0) => Err(SchemeError::ZeroGroupSize.into()),
        Granularity::PerGroup(g) => {
            for start in (0..k).step_by(g) {
                let rows = w.slice(ndarray::s![start..(start + g).min(k), ..]);
                for col in rows.axis_iter(Axis(1)) {
                    buf.clear();
                    buf.extend(col.iter().copied());
                    f(&buf)?;
                }
            }
            Ok(())
        }
    }
}

/// Scale and zero point for the range `[lo, hi]` (widened to include 0).
fn scale_and_zero_point(
    lo: f32,
    hi: f32,
    bits: u32,
    scheme: Scheme,
    constraint: ScaleConstraint,
) -> Result<(f32, i32), SchemeError> {
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(SchemeError::InvalidRange { lo, hi });
    }
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let (qmin, qmax) = qrange(bits, scheme)?;
    let (s, z) = match scheme {
        Scheme::Symmetric => {
            let s = constraint.apply((lo.abs().max(hi.abs()) / qmax as f32).max(MIN_SCALE));
            (s, 0)
        }
        Scheme::Affine => {
            let s = constraint.apply(((hi - lo) / (qmax - qmin) as f32).max(MIN_SCALE));
            let z = (qmin as f32 - round_half_even(lo / s)).clamp(qmin as f32, qmax as f32) as i32;
            (s, z)
        }
    };
    if !s.is_finite() {
        return Err(SchemeError::RangeTooWide { lo, hi, bits });
    }
    Ok((s, z))
}

/// Chooses `bits`-bit weight parameters for `w` (`[k, n]`, output channels along `n`) from each slice's min-max
/// range. See the module docs for the integer ranges and the parameter layout.
pub fn weight_params(
    w: ArrayView2<f32>,
    bits: u32,
    scheme: Scheme,
    granularity: Granularity,
    constraint: ScaleConstraint,
) -> Result<QParams, SchemeError> {
    weight_params_with(w, bits, scheme, granularity, constraint, minmax_range)
}

/// Like [`weight_params`], with each slice's clipping range `(lo, hi)` chosen by `range` from the slice's values
/// (in layout order: one call per parameter entry). The range is widened to include 0; it must be finite with
/// `lo <= hi`. For a fallible range function use [`weight_params_try_with`].
pub fn weight_params_with(
    w: ArrayView2<f32>,
    bits: u32,
    scheme: Scheme,
    granularity: Granularity,
    constraint: ScaleConstraint,
    mut range: impl FnMut(&[f32]) -> (f32, f32),
) -> Result<QParams, SchemeError> {
    weight_params_try_with(w, bits, scheme, granularity, constraint, |v| {
        Ok::<_, SchemeError>(range(v))
    })
}

/// [`weight_params_with`] for a range function that can fail: its error (or a [`SchemeError`], converted) comes
/// back unchanged. E.g. MSE-optimal clipping with the calibrators' error type `E`:
/// `weight_params_try_with(w, bits, scheme, granularity, constraint, |v| weight_range_mse(v, bits, symmetric))`
/// where `E: From<SchemeError>` (the harness's error type, holding both).
pub fn weight_params_try_with<E: From<SchemeError>>(
    w: ArrayView2<f32>,
    bits: u32,
    scheme: Scheme,
    granularity: Granularity,
    constraint: ScaleConstraint,
    mut range: impl FnMut(&[f32]) -> Result<(f32, f32), E>,
) -> Result<QParams, E> {
    check_weight_bits(bits)?;
    let count = granularity.param_count(w.nrows(), w.ncols())?;
    check_finite(w)?;
    let (mut scales, mut zero_points) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for_each_slice(w, granularity, |values| {
        let (lo, hi) = range(values)?;
        let (s, z) = scale_and_zero_point(lo, hi, bits, scheme, constraint)?;
        scales.push(s);
        zero_points.push(z);
        Ok::<_, E>(())
    })?;
    Ok(QParams {
        scales,
        zero_points,
        bits,
        scheme,
        granularity,
    })
}

/// Quantizes `w` (`[k, n]`) with `params`: `q = clamp(round_half_even(w / scale) + zero_point, qmin, qmax)`.
pub fn quantize_weights(w: ArrayView2<f32>, params: &QParams) -> Result<Array2<i8>, SchemeError> {
    let (k, n) = w.dim();
    params.check_shape(k, n)?;
    let (qmin, qmax) = params.qrange()?;
    let (qmin, qmax) = (qmin as f32, qmax as f32);
    Ok(Array2::from_shape_fn((k, n), |(i, j)| {
        let c = params.index(i, j, n);
        let r = round_half_even(w[[i, j]] / params.scales[c]) + params.zero_points[c] as f32;
        r.clamp(qmin, qmax) as i8
    }))
}

/// `(q - zero_point) * scale` for every element of `q` (`[k, n]`).
pub fn dequantize_weights(q: ArrayView2<i8>, params: &QParams) -> Result<Array2<f32>, SchemeError> {
    let (k, n) = q.dim();
    params.check_shape(k, n)?;
    Ok(Array2::from_shape_fn((k, n), |(i, j)| {
        let c = params.index(i, j, n);
        (q[[i, j]] as i32 - params.zero_points[c]) as f32 * params.scales[c]
    }))
}

/// Chooses `i8` weight parameters for `w` (`[k, n]`, output channels along `n`): [`weight_params`] with 8 bits
/// and float scales.
///
/// Symmetric uses the restricted range `[-127, 127]` with zero point 0 (so that `-w` quantizes to `-q`, as
/// symmetric back ends expect); affine maps `[min(w, 0), max(w, 0)]` onto `[-128, 127]`.
pub fn weight_params_i8(
    w: ArrayView2<f32>,
    scheme: Scheme,
    granularity: Granularity,
) -> Result<QParams, SchemeError> {
    weight_params(w, 8, scheme, granularity, ScaleConstraint::Float)
}

/// Quantizes `w` (`[k, n]`) with `params` ([`quantize_weights`]).
///
/// # Panics
/// When `params` do not fit the shape of `w`; [`quantize_weights`] returns that as an error instead.
pub fn quantize_weights_i8(w: ArrayView2<f32>, params: &QParams) -> Array2<i8> {
    match quantize_weights(w, params) {
        Ok(q) => q,
        Err(e) => panic!("quantize_weights_i8: {e}"),
    }
}

/// Chooses `u8` activation parameters for an observed range, with float scales.
///
/// Affine maps `[min(lo, 0), max(hi, 0)]` onto `[0, 255]`. Symmetric fixes the zero point at 128 and takes the
/// scale from the largest magnitude over `[-127, 127]` (the signed range shifted by the +128 offset that lets a
/// u8 x s8 kernel run symmetric activations).
pub fn activation_params_u8(lo: f32, hi: f32, scheme: Scheme) -> ActParams {
    activation_params(lo, hi, scheme, ScaleConstraint::Float)
}

/// [`activation_params_u8`] with a scale constraint: a power-of-two scale is rounded up from the float one, and
/// the affine zero point is fitted to the rounded scale.
pub fn activation_params(
    lo: f32,
    hi: f32,
    scheme: Scheme,
    constraint: ScaleConstraint,
) -> ActParams {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    match scheme {
        Scheme::Symmetric => ActParams {
            scale: constraint.apply((lo.abs().max(hi.abs()) / 127.0).max(MIN_SCALE)),
            zero_point: 128,
        },
        Scheme::Affine => {
            let scale = constraint.apply(((hi - lo) / 255.0).max(MIN_SCALE));
            let zero_point = round_half_even(-lo / scale).clamp(0.0, 255.0) as i32;
            ActParams { scale, zero_point }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn dequant(q: &Array2<i8>, p: &QParams) -> Array2<f32> {
        dequantize_weights(q.view(), p).unwrap()
    }

    /// Round-trip error is at most half a step (plus float slack) for every scheme and granularity.
    #[test]
    fn round_trip_within_half_step() {
        let w = array![
            [0.5f32, -2.0, 0.01],
            [-0.25, 1.0, 0.02],
            [0.125, 3.0, -0.03]
        ];
        for scheme in [Scheme::Symmetric, Scheme::Affine] {
            for gran in [Granularity::PerTensor, Granularity::PerChannel] {
                let p = weight_params_i8(w.view(), scheme, gran).unwrap();
                assert_eq!(
                    p.scales.len(),
                    if gran == Granularity::PerTensor { 1 } else { 3 }
                );
                let back = dequant(&quantize_weights_i8(w.view(), &p), &p);
                for ((i, j), &v) in w.indexed_iter() {
                    let s = p.scales[if p.scales.len() > 1 { j } else { 0 }];
                    let err = (back[[i, j]] - v).abs();
                    assert!(
                        err <= 0.5 * s * (1.0 + 1e-5),
                        "{scheme} {gran} [{i},{j}] err {err} step {s}"
                    );
                }
            }
        }
    }

    #[test]
    fn per_channel_is_finer_than_per_tensor_on_a_small_channel() {
        let w = array![[0.01f32, 3.0], [-0.02, -3.0]];
        let pt = weight_params_i8(w.view(), Scheme::Symmetric, Granularity::PerTensor).unwrap();
        let pc = weight_params_i8(w.view(), Scheme::Symmetric, Granularity::PerChannel).unwrap();
        assert!(pc.scales[0] < pt.scales[0] / 100.0);
        let q = quantize_weights_i8(w.view(), &pc);
        assert_eq!(q[[1, 0]], -127);
        assert_eq!(q[[1, 1]], -127);
    }

    #[test]
    fn affine_zero_is_exact_and_extremes_saturate_correctly() {
        let w = array![[-1.0f32, 0.0, 3.0]];
        let p = weight_params_i8(w.view(), Scheme::Affine, Granularity::PerTensor).unwrap();
        let q = quantize_weights_i8(w.view(), &p);
        assert_eq!(q[[0, 0]], -128);
        assert_eq!(q[[0, 2]], 127);
        assert_eq!(q[[0, 1]] as i32, p.zero_points[0]);
    }

    /// The 8-bit wrappers keep the formulas they had before bit widths were generalized.
    #[test]
    fn i8_parameters_match_the_original_formulas() {
        let w = array![[-0.7f32, 0.3], [0.2, 2.9], [-1.3, 0.0]];
        let sym = weight_params_i8(w.view(), Scheme::Symmetric, Granularity::PerChannel).unwrap();
        assert_eq!(sym.scales, vec![1.3f32 / 127.0, 2.9f32 / 127.0]);
        assert_eq!(sym.zero_points, vec![0, 0]);
        let aff = weight_params_i8(w.view(), Scheme::Affine, Granularity::PerTensor).unwrap();
        let s = (2.9f32 - -1.3) / 255.0;
        assert_eq!(aff.scales, vec![s]);
        assert_eq!(
            aff.zero_points,
            vec![(-128.0 - (-1.3f32 / s).round_ties_even()) as i32]
        );
        assert_eq!((aff.bits, aff.granularity), (8, Granularity::PerTensor));
    }

    #[test]
    fn activation_params_cover_the_range_and_keep_zero_exact() {
        let a = activation_params_u8(0.0, 6.0, Scheme::Affine);
        assert_eq!(a.zero_point, 0);
        assert!((a.scale - 6.0 / 255.0).abs() < 1e-7);
        let b = activation_params_u8(-1.0, 3.0, Scheme::Affine);
        let zero_back = (b.zero_point as f32 - b.zero_point as f32) * b.scale;
        assert_eq!(zero_back, 0.0);
        assert!((255 - b.zero_point) as f32 * b.scale >= 3.0 - b.scale);
        let s = activation_params_u8(-2.0, 1.0, Scheme::Symmetric);
        assert_eq!(s.zero_point, 128);
        assert!((s.scale - 2.0 / 127.0).abs() < 1e-7);
        let z = activation_params_u8(0.0, 0.0, Scheme::Affine);
        assert!(z.scale > 0.0 && z.scale.is_finite());
    }

    #[test]
    fn non_finite_weights_are_an_error_that_names_the_value() {
        let w = array![[1.0, 2.0], [f32::INFINITY, 1.0]];
        let err = weight_params_i8(w.view(), Scheme::Affine, Granularity::PerTensor).unwrap_err();
        assert_eq!(
            err,
            SchemeError::NonFinite {
                row: 1,
                col: 0,
                value: f32::INFINITY
            }
        );
        assert!(err.to_string().contains("inf at [1, 0]"), "{err}");
    }

    #[test]
    fn granularity_names_parse_and_print() {
        for (text, g) in [
            ("tensor", Granularity::PerTensor),
            ("per-channel", Granularity::PerChannel),
            ("group32", Granularity::PerGroup(32)),
            ("group:128", Granularity::PerGroup(128)),
            ("per-group:5", Granularity::PerGroup(5)),
        ] {
            assert_eq!(text.parse::<Granularity>(), Ok(g), "{text}");
        }
        assert_eq!(Granularity::PerGroup(32).name(), "group32");
        assert_eq!(Granularity::PerGroup(32).to_string(), "group32");
        assert!(std::ptr::eq(
            Granularity::PerGroup(7).name(),
            Granularity::PerGroup(7).name()
        ));
        assert_eq!(
            "group0".parse::<Granularity>(),
            Err(SchemeError::ZeroGroupSize)
        );
        for bad in ["group", "group:", "group+3", "groupx", "row"] {
            assert_eq!(
                bad.parse::<Granularity>(),
                Err(SchemeError::UnknownGranularity(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn params_that_do_not_fit_the_shape_are_an_error() {
        let w = array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let p = weight_params_i8(w.view(), Scheme::Symmetric, Granularity::PerChannel).unwrap();
        let err = quantize_weights(w.t(), &p).unwrap_err();
        assert_eq!(
            err,
            SchemeError::ParamsMismatch {
                k: 2,
                n: 3,
                granularity: Granularity::PerChannel,
                expected: 3,
                got: 2
            }
        );
    }
}
