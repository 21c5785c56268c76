//! Cross-layer equalization (Nagel, van Baalen, Blankevoort and Welling 2019, "Data-Free Quantization Through
//! Weight Equalization and Bias Correction", section 4.1), for two consecutive layers with a positively
//! homogeneous activation between them (ReLU, and max pooling: `f(x / s) = f(x) / s` for `s > 0`).
//!
//! Layer 1 is `W1` `[k1, c]` (output channel `i` is column `i`) with bias `b1` `[c]`; layer 2 reads those `c`
//! channels. Scaling channel `i` down by `s_i` in layer 1 and its weights up by `s_i` in layer 2 leaves the
//! pair's function unchanged:
//!
//! `relu(x W1 D^-1 + b1 D^-1) D W2 = relu(x W1 + b1) W2`, `D = diag(s)`.
//!
//! With `r1_i = max |W1[:, i]|` and `r2_i = max |W2 rows of channel i|`, the paper's choice
//! `s_i = sqrt(r1_i r2_i) / r2_i = sqrt(r1_i / r2_i)` makes both ranges `sqrt(r1_i r2_i)`, which maximizes the
//! total per-channel precision `sum_i (r1_i / R1)(r2_i / R2)` of per-tensor quantization. A channel with a zero
//! range on either side is left alone (`s_i = 1`).
//!
//! # Layer 2's layout
//!
//! `W2` is `[c * m, n2]` with channel `i` owning the `m` consecutive rows `i*m .. (i+1)*m` (`m` is
//! `W2.nrows() / c`, which must be whole):
//! - a dense layer: `m = 1`;
//! - a convolution after channel-major im2col (rows ordered `(c, ky, kx)`, as flattened OIHW weights and
//!   `kernels::frame::conv::im2col` order them): `m = kh * kw`;
//! - a dense layer after flattening a `[c, h, w]` map (NCHW order): `m = h * w`;
//! - equally, any `[c, rest]` reshape of those rows.
//!
//! Channel-last layouts (`(ky, kx, c)`, NHWC im2col) interleave channels; permute their rows first.

use ndarray::{ArrayViewMut1, ArrayViewMut2, Axis};

use super::{PtqError, check_finite, check_len, shape_mismatch};

const OP: &str = "equalize_pair";

/// Equalizes the ranges of `w1` (`[k1, c]`, with optional bias `b1` `[c]`) and `w2` (`[c * m, n2]`, see the
/// module docs) in place, and returns the per-channel scales `s` (`w1[:, i] /= s_i`, `b1[i] /= s_i`,
/// `w2[rows of i, :] *= s_i`). Every scale is positive and finite.
///
/// # Errors
/// `w2`'s rows are not a whole multiple of `c`, `b1` does not have `c` entries, non-finite weights.
pub fn equalize_pair(
    mut w1: ArrayViewMut2<f32>,
    b1: Option<ArrayViewMut1<f32>>,
    mut w2: ArrayViewMut2<f32>,
) -> Result<Vec<f32>, PtqError> {
    let c = w1.ncols();
    let rows2 = w2.nrows();
    // `is_multiple_of(0)` holds only for 0: no channels, no rows.
    if !rows2.is_multiple_of(c) {
        return Err(shape_mismatch(OP, "w2", w2.shape(), "w1", w1.shape()));
    }
    if let Some(b) = &b1 {
        check_len(OP, "b1", b.view(), "w1", w1.shape(), c)?;
        check_finite(OP, "b1", b.view())?;
    }
    check_finite(OP, "w1", w1.view())?;
    check_finite(OP, "w2", w2.view())?;
    let m = rows2.checked_div(c).unwrap_or(0);

    let max_abs = |it: &mut dyn Iterator<Item = &f32>| it.fold(0.0f32, |a, &v| a.max(v.abs()));
    let scales: Vec<f32> = (0..c)
        .map(|i| {
            let r1 = max_abs(&mut w1.column(i).iter());
            let r2 = max_abs(&mut w2.slice(ndarray::s![i * m..(i + 1) * m, ..]).iter());
            // In f64: r1 / r2 can leave f32's range even when its square root does not.
            let s = (f64::from(r1) / f64::from(r2)).sqrt() as f32;
            if r1 > 0.0 && r2 > 0.0 && s.is_finite() && s > 0.0 {
                s
            } else {
                1.0
            }
        })
        .collect();

    for (mut col, &s) in w1.axis_iter_mut(Axis(1)).zip(&scales) {
        col.mapv_inplace(|v| v / s);
    }
    if let Some(mut b) = b1 {
        b.iter_mut().zip(&scales).for_each(|(v, &s)| *v /= s);
    }
    for (i, &s) in scales.iter().enumerate() {
        w2.slice_mut(ndarray::s![i * m..(i + 1) * m, ..])
            .mapv_inplace(|v| v * s);
    }
    Ok(scales)
}
