//! Weight ranges: weights are fully known, so their clipping range is searched exactly on the values rather
//! than on a histogram. Each call sees one slice (one tensor, one output channel or one group; the caller
//! slices).
//!
//! [`weight_range_mse`] tries [`WEIGHT_MSE_CANDIDATES`] ranges `α·[min(w, 0), max(w, 0)]` for
//! `α = i / WEIGHT_MSE_CANDIDATES` (symmetric: `α·max|w|`) and keeps the one with the smallest
//! `Σ (w − qdq(w))²`, computed on every value with the scheme's grid (`grid.rs`). This is the usual MSE
//! scale search for weights (e.g. the "MSE" range setting in Nagel et al., "A White Paper on Neural Network
//! Quantization", 2021). Cost: `WEIGHT_MSE_CANDIDATES · len` quantize-dequantize steps. Ties keep the larger
//! range.

use super::grid::Grid;
use super::{CalibError, batch_extent, check_bits, sided, with_zero};

/// Number of candidate fractions [`weight_range_mse`] tries.
pub const WEIGHT_MSE_CANDIDATES: usize = 100;

/// `[min(w, 0), max(w, 0)]`.
pub fn weight_range_minmax(values: &[f32]) -> Result<(f32, f32), CalibError> {
    let (min, max) = batch_extent(values)?.ok_or(CalibError::NoData)?;
    Ok(with_zero(min as f64, max as f64))
}

/// The range (from the candidate grid of the module docs) with the smallest quantize-dequantize squared
/// error over `values` at `bits` bits. Symmetric ranges follow the calibrators' convention (`[-T, T]` restricted
/// to the sides the values occupy).
pub fn weight_range_mse(
    values: &[f32],
    bits: u32,
    symmetric: bool,
) -> Result<(f32, f32), CalibError> {
    check_bits(bits)?;
    let (min, max) = batch_extent(values)?.ok_or(CalibError::NoData)?;
    let (min, max) = ((min as f64).min(0.0), (max as f64).max(0.0));
    if min == 0.0 && max == 0.0 {
        return Ok((0.0, 0.0));
    }
    let grid_for = |i: usize| {
        let alpha = i as f64 / WEIGHT_MSE_CANDIDATES as f64;
        if symmetric {
            Grid::symmetric(alpha * (-min).max(max), bits)
        } else {
            Grid::affine(alpha * min, alpha * max, bits)
        }
    };
    let (mut best, mut best_err) = (WEIGHT_MSE_CANDIDATES, f64::INFINITY);
    for i in (1..=WEIGHT_MSE_CANDIDATES).rev() {
        let grid = grid_for(i);
        let err: f64 = values
            .iter()
            .map(|&v| {
                let d = v as f64 - grid.qdq(v as f64);
                d * d
            })
            .sum();
        if err < best_err {
            (best, best_err) = (i, err);
        }
    }
    let alpha = best as f64 / WEIGHT_MSE_CANDIDATES as f64;
    Ok(if symmetric {
        sided(alpha * (-min).max(max), min, max)
    } else {
        with_zero(alpha * min, alpha * max)
    })
}
