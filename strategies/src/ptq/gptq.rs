//! GPTQ (Frantar, Ashkboos, Hoefler and Alistarh 2022, "GPTQ: Accurate Post-Training Quantization for Generative
//! Pre-trained Transformers", Algorithm 1), for one `[k, n]` weight.
//!
//! Input rows of `W` are quantized one at a time, in order; after each, its rounding error is spread over the
//! rows not yet quantized through the inverse Hessian of the layer-output error `||X W - X W_q||^2`, so later
//! rows absorb what earlier ones lost. (The paper's weights are `[n, k]` and it walks columns; here `W` is the
//! GEMM's `[k, n]`, so it walks rows.)
//!
//! As in the reference implementation (`gptq.py`, `fasterquant`):
//! - *Dead inputs*: where `H[i, i] == 0` the input is always zero, so `H[i, i]` is set to 1 and row `i` of `W` to
//!   0 (it then quantizes to the zero point).
//! - *Dampening*: `percdamp * mean(diag(H))` is added to the diagonal (after the dead-input fix).
//! - *Inverse*: the upper Cholesky factor `U` of `H^-1` (`U^T U = H^-1`); row `i` quantizes with error
//!   `(w - q) / U[i, i]` and rows `j > i` move by `-U[i, j] * err`.
//! - *Lazy batches*: rows are processed in blocks of `block_size`; inside a block the updates are applied at
//!   once, to the rest of the matrix only when the block ends (one GEMM). This reorders float operations, not
//!   the algorithm.
//! - *Parameters*: per tensor or per channel they are chosen once, from the whole weight (after the dead-input
//!   fix). Per group, they are chosen when the group's first row comes up, from the group's rows *as updated by
//!   the error compensation so far*, as the paper's group variant does. Blocks are cut so that every group
//!   starts at a block start or lies inside one block, so those rows hold every update made before (the
//!   reference, with groups smaller than its block, reads rows that miss the current block's updates).
//!
//! Not implemented: the reference's `act_order` (quantizing rows by decreasing `H[i, i]`), and its
//! grid-searched (`mse`) clipping; ranges are min-max, as [`crate::weight_params`] chooses them.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, s};

use super::linalg::inverse_upper_cholesky;
use super::{
    PtqError, QuantizedWeights, check_finite, dequantize_value, quantize_value, shape_mismatch,
};
use crate::pow2::ScaleConstraint;
use crate::scheme::{Granularity, QParams, Scheme, check_weight_bits, qrange, weight_params};

const OP: &str = "gptq";

/// What GPTQ quantizes to and how.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GptqConfig {
    /// Bit width, 2..=8.
    pub bits: u32,
    pub scheme: Scheme,
    pub granularity: Granularity,
    pub constraint: ScaleConstraint,
    /// Dampening, as a fraction of the mean of the Hessian's diagonal; the reference's default is 0.01.
    pub percdamp: f64,
    /// Rows per lazy batch; the reference's default is 128. Changes float rounding only.
    pub block_size: usize,
}

impl GptqConfig {
    /// `bits`, `scheme` and `granularity` with float scales and the reference's defaults (`percdamp = 0.01`,
    /// `block_size = 128`).
    pub fn new(bits: u32, scheme: Scheme, granularity: Granularity) -> Self {
        GptqConfig {
            bits,
            scheme,
            granularity,
            constraint: ScaleConstraint::Float,
            percdamp: 0.01,
            block_size: 128,
        }
    }
}

/// Quantizes `w` (`[k, n]`) with GPTQ, given the layer's Hessian proxy `h` (`[k, k]`, symmetric, e.g.
/// [`super::HessianAccumulator::hessian`]; only its lower triangle is read).
///
/// # Errors
/// Shape mismatches, non-finite values in `w` or `h`, an invalid bit width, group size, `percdamp` (must be
/// finite and >= 0) or `block_size` (must be >= 1), and [`PtqError::Cholesky`] when the dampened Hessian is not
/// positive definite.
pub fn gptq(
    w: ArrayView2<f32>,
    h: ArrayView2<f64>,
    config: &GptqConfig,
) -> Result<QuantizedWeights, PtqError> {
    let (k, n) = w.dim();
    if h.dim() != (k, k) {
        return Err(shape_mismatch(OP, "h", h.shape(), "w", w.shape()));
    }
    check_weight_bits(config.bits)?;
    let param_count = config.granularity.param_count(k, n)?;
    if !(config.percdamp.is_finite() && config.percdamp >= 0.0) {
        return Err(PtqError::InvalidParameter {
            op: OP,
            name: "percdamp",
            value: config.percdamp,
            expected: "a finite value >= 0",
        });
    }
    if config.block_size == 0 {
        return Err(PtqError::InvalidParameter {
            op: OP,
            name: "block_size",
            value: 0.0,
            expected: ">= 1",
        });
    }
    check_finite(OP, "w", w)?;
    check_finite(OP, "h", h)?;

    let mut h = h.to_owned();
    let mut work = w.mapv(f64::from);
    for i in 0..k {
        if h[[i, i]] == 0.0 {
            h[[i, i]] = 1.0;
            work.row_mut(i).fill(0.0);
        }
    }
    let damp = if k == 0 {
        0.0
    } else {
        config.percdamp * h.diag().sum() / k as f64
    };
    h.diag_mut().mapv_inplace(|d| d + damp);
    let u = inverse_upper_cholesky(h.view()).map_err(|(column, pivot)| PtqError::Cholesky {
        column,
        pivot,
        percdamp: config.percdamp,
    })?;

    let (qmin, qmax) = qrange(config.bits, config.scheme)?;
    let mut params = QParams {
        scales: vec![0.0; param_count],
        zero_points: vec![0; param_count],
        bits: config.bits,
        scheme: config.scheme,
        granularity: config.granularity,
    };
    let group = match config.granularity {
        Granularity::PerGroup(g) => Some(g),
        Granularity::PerTensor | Granularity::PerChannel => {
            let p = choose_params(work.view(), config, config.granularity)?;
            params.scales = p.scales;
            params.zero_points = p.zero_points;
            None
        }
    };

    let mut values = Array2::<i8>::zeros((k, n));
    let mut errors = Array2::<f64>::zeros((config.block_size.min(k), n));
    let mut err_row = vec![0.0f64; n];
    let mut i1 = 0;
    while i1 < k {
        let i2 = block_end(i1, k, config.block_size, group);
        for i in i1..i2 {
            if let Some(g) = group
                && i % g == 0
            {
                // Every row of this group holds all updates so far (see `block_end`).
                let rows = work.slice(s![i..(i + g).min(k), ..]);
                let p = choose_params(rows, config, Granularity::PerChannel)?;
                let t = i / g;
                params.scales[t * n..(t + 1) * n].copy_from_slice(&p.scales);
                params.zero_points[t * n..(t + 1) * n].copy_from_slice(&p.zero_points);
            }
            let d = u[[i, i]];
            for (j, e) in err_row.iter_mut().enumerate() {
                let c = params.index(i, j, n);
                let (scale, zp) = (params.scales[c], params.zero_points[c]);
                let v = work[[i, j]];
                let q = quantize_value(v as f32, scale, zp, qmin, qmax);
                values[[i, j]] = q;
                *e = (v - f64::from(dequantize_value(q, scale, zp))) / d;
            }
            for r in i + 1..i2 {
                let coef = u[[i, r]];
                if coef != 0.0 {
                    for (x, &e) in work.row_mut(r).iter_mut().zip(&err_row) {
                        *x -= coef * e;
                    }
                }
            }
            errors
                .row_mut(i - i1)
                .iter_mut()
                .zip(&err_row)
                .for_each(|(dst, &e)| *dst = e);
        }
        if i2 < k {
            let u_block = u.slice(s![i1..i2, i2..]);
            let err_block = errors.slice(s![..i2 - i1, ..]);
            general_mat_mul(
                -1.0,
                &u_block.t(),
                &err_block,
                1.0,
                &mut work.slice_mut(s![i2.., ..]),
            );
        }
        i1 = i2;
    }
    Ok(QuantizedWeights { values, params })
}

/// End of the lazy batch that starts at row `i1`: `i1 + block_size` (or `k`), cut back to the start of the last
/// group that begins inside the batch but would end after it, so that every group's rows are fully updated when
/// the group's parameters are chosen.
fn block_end(i1: usize, k: usize, block_size: usize, group: Option<usize>) -> usize {
    let i2 = (i1 + block_size).min(k);
    let Some(g) = group else { return i2 };
    let last_start = (i2 - 1) / g * g;
    if last_start > i1 && (last_start + g).min(k) > i2 {
        last_start
    } else {
        i2
    }
}

/// Min-max parameters of `rows` (f64 working weights, rounded to f32 as the layer stores them).
fn choose_params(
    rows: ArrayView2<f64>,
    config: &GptqConfig,
    granularity: Granularity,
) -> Result<QParams, PtqError> {
    let rows = rows.mapv(|v| v as f32);
    Ok(weight_params(
        rows.view(),
        config.bits,
        config.scheme,
        granularity,
        config.constraint,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_never_split_a_group_that_starts_inside_them() {
        // No groups: plain blocks.
        assert_eq!(block_end(0, 300, 128, None), 128);
        assert_eq!(block_end(256, 300, 128, None), 300);
        // Groups that tile the block.
        assert_eq!(block_end(0, 300, 128, Some(32)), 128);
        // A group of 48 starting at 96 would end at 144: cut at 96.
        assert_eq!(block_end(0, 300, 128, Some(48)), 96);
        assert_eq!(block_end(96, 300, 128, Some(48)), 192);
        // Groups larger than the block start at block starts.
        assert_eq!(block_end(0, 600, 128, Some(256)), 128);
        assert_eq!(block_end(128, 600, 128, Some(256)), 256);
        // A ragged last group that fits.
        assert_eq!(block_end(256, 300, 128, Some(40)), 300);
        // Every group start is a block start or lies in a block holding the whole group.
        for g in 1..70 {
            for b in 1..70 {
                let k = 157;
                let mut i1 = 0;
                while i1 < k {
                    let i2 = block_end(i1, k, b, Some(g));
                    assert!(i2 > i1, "g={g} b={b}");
                    for t in (i1 + 1..i2).filter(|t| t % g == 0) {
                        assert!(
                            (t + g).min(k) <= i2,
                            "g={g} b={b} block {i1}..{i2} group {t}"
                        );
                    }
                    i1 = i2;
                }
            }
        }
    }
}
