//! Post-training quantization refinements on plain tensors: GPTQ, AdaRound, cross-layer equalization and bias
//! correction. Nothing here knows the model IR: a layer is its weight matrix, and calibration is either the
//! layer's input rows or statistics accumulated from them.
//!
//! # Conventions
//!
//! A linear layer is `y = x W + b` with `W` as `[k, n]`: input features along rows, output channels along
//! columns (the GEMM's layout, as everywhere in this crate). A convolution is the same after im2col, with
//! `k = c_in * kh * kw`; its calibration rows are the im2col rows of the layer's input (one per output pixel),
//! with columns in the order of `W`'s rows. Quantized weights come back as [`QuantizedWeights`]: the integers and
//! the [`QParams`] of [`crate::weight_params`] (same layout), so the caller runs them through its normal path.
//!
//! # What to collect at calibration time, per layer
//!
//! | refinement          | statistic                                 | accumulator            |
//! |---------------------|-------------------------------------------|------------------------|
//! | [`gptq()`]          | `H = 2 X^T X / N` (`[k, k]`, f64)         | [`HessianAccumulator`] |
//! | [`adaround()`]      | a sub-sample of input rows (`[rows, k]`)  | [`RowReservoir`]       |
//! | [`correct_bias`]    | `E[x]` (`[k]`, f64)                       | [`MeanAccumulator`]    |
//! | [`equalize_pair`]   | nothing (data-free)                       |                        |
//!
//! Each accumulator takes batches of rows (`add`), in bounded memory, and is deterministic in the order of the
//! rows it is fed.
//!
//! # Order per model
//!
//! 1. [`equalize_pair`] on the float weights of each (layer, ReLU / max-pool, layer) pair. It changes the second
//!    layer's inputs (channel `i` divided by `s_i`), so collect calibration statistics *after* it, on the
//!    equalized float model.
//! 2. Per layer, choose the grid and the integers: round-to-nearest ([`crate::weight_params`] +
//!    [`crate::quantize_weights`]), or [`gptq()`], or [`adaround()`] (on a grid from [`crate::weight_params`]).
//! 3. [`correct_bias`] with the dequantized result ([`QuantizedWeights::dequantize`]) and the layer's float
//!    input mean.
//!
//! # Files
//! - `mod.rs` (this file): [`PtqError`], [`QuantizedWeights`] and the shared element quantizer.
//! - [`stats`]: the accumulators.
//! - [`mod@gptq`]: GPTQ (Frantar et al. 2022), with `linalg.rs` for its Cholesky factors.
//! - [`mod@adaround`]: AdaRound (Nagel et al. 2020), with a hand-written Adam.
//! - [`cle`]: cross-layer equalization (Nagel et al. 2019).
//! - [`bias`]: empirical bias correction (Nagel et al. 2019).

use ndarray::{Array2, ArrayView, ArrayView1, ArrayView2, Dimension};

use crate::scheme::{QParams, SchemeError, dequantize_weights};

pub mod adaround;
pub mod bias;
pub mod cle;
pub mod gptq;
mod linalg;
mod rng;
pub mod stats;

pub use adaround::{AdaRoundConfig, adaround};
pub use bias::correct_bias;
pub use cle::equalize_pair;
pub use gptq::{GptqConfig, gptq};
pub use stats::{HessianAccumulator, MeanAccumulator, RowReservoir};

/// Everything that can go wrong in a PTQ refinement; each message names the operation and the offending value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PtqError {
    #[error("{op}: {a} has shape {a_shape:?}, which does not fit {b} with shape {b_shape:?}")]
    ShapeMismatch {
        op: &'static str,
        a: &'static str,
        a_shape: Vec<usize>,
        b: &'static str,
        b_shape: Vec<usize>,
    },
    #[error("{op}: non-finite value {value} in {what} at {index:?}")]
    NonFinite {
        op: &'static str,
        what: &'static str,
        index: Vec<usize>,
        value: f64,
    },
    #[error(
        "gptq: the Cholesky factorization of the dampened Hessian failed at column {column} (pivot {pivot}) \
         with percdamp {percdamp}; raise percdamp or calibrate on more rows"
    )]
    Cholesky {
        column: usize,
        pivot: f64,
        percdamp: f64,
    },
    #[error("{op}: {name} = {value} is out of range; expected {expected}")]
    InvalidParameter {
        op: &'static str,
        name: &'static str,
        value: f64,
        expected: &'static str,
    },
    #[error("{op}: no calibration rows were added")]
    NoSamples { op: &'static str },
    #[error(transparent)]
    Scheme(#[from] SchemeError),
}

/// Quantized weights of a `[k, n]` layer: `w ≈ (values - zero_point) * scale`, parameters laid out as
/// [`crate::weight_params`] lays them out for `params.granularity`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedWeights {
    /// `[k, n]`, each within [`QParams::qrange`].
    pub values: Array2<i8>,
    pub params: QParams,
}

impl QuantizedWeights {
    /// The float weights these integers stand for.
    pub fn dequantize(&self) -> Result<Array2<f32>, PtqError> {
        Ok(dequantize_weights(self.values.view(), &self.params)?)
    }
}

/// `clamp(round_half_even(v / scale) + zero_point, qmin, qmax)`: the same operations, in the same order and
/// precision, as [`crate::quantize_weights`], so that an unrefined weight quantizes to the same integer.
pub(crate) fn quantize_value(v: f32, scale: f32, zero_point: i32, qmin: i32, qmax: i32) -> i8 {
    let r = (v / scale).round_ties_even() + zero_point as f32;
    r.clamp(qmin as f32, qmax as f32) as i8
}

/// `(q - zero_point) * scale`, as [`crate::dequantize_weights`] computes it.
pub(crate) fn dequantize_value(q: i8, scale: f32, zero_point: i32) -> f32 {
    (q as i32 - zero_point) as f32 * scale
}

/// The first non-finite element of an array (f32 or f64), as an error naming `op`, `what` and its index.
pub(crate) fn check_finite<T: Copy + Into<f64>, D: Dimension>(
    op: &'static str,
    what: &'static str,
    a: ArrayView<'_, T, D>,
) -> Result<(), PtqError> {
    match a.iter().position(|&v| !v.into().is_finite()) {
        Some(pos) => {
            // Unravel the logical (row-major) position into an index.
            let mut index = vec![0; a.ndim()];
            let mut rest = pos;
            for (slot, &len) in index.iter_mut().zip(a.shape()).rev() {
                *slot = rest % len;
                rest /= len;
            }
            let value = a.iter().nth(pos).copied().map_or(f64::NAN, Into::into);
            Err(PtqError::NonFinite {
                op,
                what,
                index,
                value,
            })
        }
        None => Ok(()),
    }
}

/// A shape-mismatch error naming both shapes.
pub(crate) fn shape_mismatch(
    op: &'static str,
    a: &'static str,
    a_shape: &[usize],
    b: &'static str,
    b_shape: &[usize],
) -> PtqError {
    PtqError::ShapeMismatch {
        op,
        a,
        a_shape: a_shape.to_vec(),
        b,
        b_shape: b_shape.to_vec(),
    }
}

/// `Ok` when `v` has `len` elements.
pub(crate) fn check_len<T>(
    op: &'static str,
    a: &'static str,
    v: ArrayView1<T>,
    b: &'static str,
    b_shape: &[usize],
    len: usize,
) -> Result<(), PtqError> {
    if v.len() == len {
        Ok(())
    } else {
        Err(shape_mismatch(op, a, v.shape(), b, b_shape))
    }
}

/// `Ok` when `params` fit a `[k, n]` weight ([`SchemeError::ParamsMismatch`] names both otherwise).
pub(crate) fn check_params(w: ArrayView2<f32>, params: &QParams) -> Result<(), PtqError> {
    let (k, n) = w.dim();
    params.check_shape(k, n)?;
    params.qrange()?;
    Ok(())
}
