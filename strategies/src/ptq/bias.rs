//! Empirical bias correction (Nagel, van Baalen, Blankevoort and Welling 2019, "Data-Free Quantization Through
//! Weight Equalization and Bias Correction", section 4.2, with the expected input measured on calibration rows
//! rather than derived from batch-norm statistics).
//!
//! Quantizing `W` to `W_q` shifts the layer's mean output by `E[x] (W_q - W)` per output channel; subtracting
//! that from the bias removes the shift: `b_q = b - E[x] (W_q - W)`.

use ndarray::{Array1, ArrayView1, ArrayView2};

use super::{PtqError, check_finite, check_len, shape_mismatch};

const OP: &str = "correct_bias";

/// The corrected bias `b - E[x] (w_q - w)` (`[n]`), for float weights `w` and dequantized weights `w_q` (both
/// `[k, n]`; e.g. [`super::QuantizedWeights::dequantize`]), the layer's bias (`None` reads as zeros: a layer
/// without a bias gains one) and its expected input `input_mean` (`[k]`, e.g. [`super::MeanAccumulator::mean`]).
/// Accumulated in f64.
///
/// # Errors
/// Shape mismatches, non-finite values.
pub fn correct_bias(
    w: ArrayView2<f32>,
    w_q: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
    input_mean: ArrayView1<f64>,
) -> Result<Array1<f32>, PtqError> {
    let (k, n) = w.dim();
    if w_q.dim() != (k, n) {
        return Err(shape_mismatch(OP, "w_q", w_q.shape(), "w", w.shape()));
    }
    check_len(OP, "input_mean", input_mean, "w", w.shape(), k)?;
    if let Some(b) = bias {
        check_len(OP, "bias", b, "w", w.shape(), n)?;
        check_finite(OP, "bias", b)?;
    }
    check_finite(OP, "w", w)?;
    check_finite(OP, "w_q", w_q)?;
    check_finite(OP, "input_mean", input_mean)?;

    let mut shift = vec![0.0f64; n];
    for ((row, row_q), &mean) in w.rows().into_iter().zip(w_q.rows()).zip(input_mean) {
        for ((s, &a), &b) in shift.iter_mut().zip(row).zip(row_q) {
            *s += mean * (f64::from(b) - f64::from(a));
        }
    }
    Ok(Array1::from_shape_fn(n, |j| {
        let b = bias.map_or(0.0, |b| f64::from(b[j]));
        (b - shift[j]) as f32
    }))
}
