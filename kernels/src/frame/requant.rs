//! Integer epilogues of a quantized GEMM: zero-point compensation with row and column sums (so micro-kernels
//! stay pure `u8 x i8 -> i32` products), fixed-point requantization to `u8`, and dequantization to `f32`.
//!
//! # Rounding of [`Scaler::apply`]
//! A real multiplier `r` is stored as `mult * 2^-31 * 2^-shift` with `mult` in `[2^30, 2^31)` (gemmlowp /
//! TFLite style). Applying it to an accumulator `x` is:
//! 1. if `shift < 0`, a left shift `x << -shift` (exact, in wide integers);
//! 2. a saturating rounding doubling high multiply: `round(x * mult / 2^31)`, ties away from zero, saturated to
//!    `i32`;
//! 3. if `shift > 0`, a rounding right shift by `shift`, ties away from zero.
//!
//! Two roundings happen (steps 2 and 3), so the result can differ from `round(x * r)` by one unit; tests allow
//! exactly that one LSB. SIMD kernels must implement the same steps bit for bit.

use crate::error::KernelError;

/// Fixed-point form of a positive real multiplier: `real = mult * 2^-31 * 2^-shift`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scaler {
    /// In `[2^30, 2^31)`, or 0 for a zero multiplier.
    pub mult: i32,
    /// Right shift after the high multiply; negative means a left shift before it (for `real >= 1`).
    pub shift: i32,
}

impl Scaler {
    /// See [`Scaler::try_new`].
    ///
    /// # Panics
    /// If `real` is negative, NaN or infinite.
    pub fn new(real: f64) -> Scaler {
        Scaler::try_new(real).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Converts `real >= 0` (finite). The multiplier is exact to within `2^-31` relative. Reals so small that
    /// every `i32` maps to 0 keep a large shift; reals of `2^31` and more saturate every non-zero input.
    pub fn try_new(real: f64) -> Result<Scaler, KernelError> {
        if !real.is_finite() || real < 0.0 {
            return Err(KernelError::InvalidScale { real });
        }
        if real == 0.0 {
            return Ok(Scaler { mult: 0, shift: 0 });
        }
        // real = f * 2^e with f in [0.5, 1).
        let mut e = real.log2().floor() as i32 + 1;
        let mut f = real / 2f64.powi(e);
        // log2 can be off by one ulp at powers of two; normalize.
        if f >= 1.0 {
            f /= 2.0;
            e += 1;
        } else if f < 0.5 {
            f *= 2.0;
            e -= 1;
        }
        let mut mult = (f * 2f64.powi(31)).round() as i64;
        if mult == 1 << 31 {
            mult = 1 << 30;
            e += 1;
        }
        let shift = (-e).clamp(-31, 62);
        Ok(Scaler {
            mult: mult as i32,
            shift,
        })
    }

    /// The real multiplier this scaler represents.
    pub fn real(&self) -> f64 {
        self.mult as f64 * 2f64.powi(-31) * 2f64.powi(-self.shift)
    }

    /// `acc * real`, rounded as described in the [module docs](self).
    #[inline]
    pub fn apply(&self, acc: i32) -> i32 {
        if self.shift < 0 {
            // Rare (real >= 1): shift exactly in i64, multiply in i128, saturate once at the end.
            let x = (acc as i64) << -self.shift;
            let ab = x as i128 * self.mult as i128;
            let nudge = if ab >= 0 { 1i128 << 30 } else { -(1i128 << 30) };
            return ((ab + nudge) / (1i128 << 31)).clamp(i32::MIN as i128, i32::MAX as i128) as i32;
        }
        let high = rounding_doubling_high_mul(acc as i64 * self.mult as i64);
        if self.shift > 0 {
            rounding_shift_right(high, self.shift as u32)
        } else {
            high
        }
    }
}

/// `round(ab / 2^31)`, ties away from zero, saturated to `i32` (`ab` is an `i32 x i32` product).
#[inline]
fn rounding_doubling_high_mul(ab: i64) -> i32 {
    // Truncating division after a signed half nudge: ties go away from zero, symmetric for negatives (unlike
    // ARM's SQRDMULH, which rounds ties up).
    let nudge = if ab >= 0 { 1i64 << 30 } else { -(1i64 << 30) };
    ((ab + nudge) / (1i64 << 31)).clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// `round(x / 2^shift)`, ties away from zero; `shift <= 62`.
#[inline]
fn rounding_shift_right(x: i32, shift: u32) -> i32 {
    let x = x as i64;
    let mask = (1i64 << shift) - 1;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i64::from(x < 0);
    ((x >> shift) + i64::from(remainder > threshold)) as i32
}

/// Requantizes a block of accumulators to `u8`:
/// `out[i*n + j] = clamp(scalers[j or 0].apply(acc[i*ldc + j] + bias[j]) + out_zp, lo, 255)`, where
/// `lo = clamp(out_zp, 0, 255)` when `relu` (real 0 maps to the zero point) and 0 otherwise. `bias = None` means
/// 0; `scalers` has length 1 (per-tensor) or `n` (per-channel). Additions saturate.
///
/// # Panics
/// On slices too short for the shape, or `scalers` of another length.
#[allow(clippy::too_many_arguments)]
pub fn requantize_u8(
    acc: &[i32],
    m: usize,
    n: usize,
    ldc: usize,
    bias: Option<&[i32]>,
    scalers: &[Scaler],
    out_zp: i32,
    relu: bool,
    out: &mut [u8],
) {
    check_block("requantize_u8", acc.len(), m, n, ldc, out.len());
    check_per_channel("requantize_u8", "scalers", scalers.len(), n);
    if let Some(b) = bias {
        assert!(
            b.len() >= n,
            "requantize_u8: bias has {} entries, n = {n}",
            b.len()
        );
    }
    let lo = if relu { out_zp.clamp(0, 255) } else { 0 };
    for i in 0..m {
        let row = &acc[i * ldc..i * ldc + n];
        let dst = &mut out[i * n..i * n + n];
        for (j, (d, &a)) in dst.iter_mut().zip(row).enumerate() {
            let s = if scalers.len() == 1 {
                scalers[0]
            } else {
                scalers[j]
            };
            let x = a.saturating_add(bias.map_or(0, |b| b[j]));
            *d = s.apply(x).saturating_add(out_zp).clamp(lo, 255) as u8;
        }
    }
}

/// Dequantizes a block of accumulators to `f32`:
/// `out[i*n + j] = acc[i*ldc + j] as f32 * a_scale * w_scales[j or 0] + bias[j]`, then `max(0, .)` if `relu`.
/// `w_scales` has length 1 or `n`; `bias = None` means 0.
///
/// # Panics
/// On slices too short for the shape, or `w_scales` of another length.
#[allow(clippy::too_many_arguments)]
pub fn dequantize_acc_f32(
    acc: &[i32],
    m: usize,
    n: usize,
    ldc: usize,
    a_scale: f32,
    w_scales: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    out: &mut [f32],
) {
    check_block("dequantize_acc_f32", acc.len(), m, n, ldc, out.len());
    check_per_channel("dequantize_acc_f32", "w_scales", w_scales.len(), n);
    if let Some(b) = bias {
        assert!(
            b.len() >= n,
            "dequantize_acc_f32: bias has {} entries, n = {n}",
            b.len()
        );
    }
    for i in 0..m {
        let row = &acc[i * ldc..i * ldc + n];
        let dst = &mut out[i * n..i * n + n];
        for (j, (d, &a)) in dst.iter_mut().zip(row).enumerate() {
            let ws = if w_scales.len() == 1 {
                w_scales[0]
            } else {
                w_scales[j]
            };
            let v = a as f32 * a_scale * ws + bias.map_or(0.0, |b| b[j]);
            *d = if relu { v.max(0.0) } else { v };
        }
    }
}

/// Depths up to which the compensated sum always fits `i32` (`33_025 * 255^2 < 2^31`).
const EXACT_COMPENSATION_K: usize = 33_025;

/// Turns `acc = sum_p a*b` into `sum_p (a - a_zp)(b - b_zp[j])`:
/// `acc[i,j] += -b_zp[j]*a_row_sums[i] - a_zp*b_col_sums[j] + k*a_zp*b_zp[j]` (`b_zps` of length 1 or `n`).
///
/// The correction is computed in `i64`, so no intermediate wraps; the result is exact whenever it fits `i32`,
/// which is guaranteed for `k <= 33_025` (`|a - a_zp|, |b - b_zp| <= 255`, and `33_025 * 255^2 < 2^31`), and it
/// saturates beyond. The raw `u8 x i8` accumulator itself is exact for `k <= 65_793` (`k * 255 * 128 < 2^31`).
///
/// # Panics
/// On slices too short for the shape, or `b_zps` of another length.
#[allow(clippy::too_many_arguments)]
pub fn compensate_zero_points(
    acc: &mut [i32],
    m: usize,
    n: usize,
    ldc: usize,
    k: usize,
    a_row_sums: &[i32],
    a_zp: i32,
    b_col_sums: &[i32],
    b_zps: &[i32],
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldc >= n && acc.len() >= (m - 1) * ldc + n,
        "compensate_zero_points: acc too short for {m}x{n}"
    );
    assert!(
        a_row_sums.len() >= m,
        "compensate_zero_points: {} row sums for m = {m}",
        a_row_sums.len()
    );
    assert!(
        b_col_sums.len() >= n,
        "compensate_zero_points: {} column sums for n = {n}",
        b_col_sums.len()
    );
    check_per_channel("compensate_zero_points", "b_zps", b_zps.len(), n);
    if k <= EXACT_COMPENSATION_K {
        // The compensated sum fits `i32` (see above), so wrapping `i32` arithmetic gives it exactly: every
        // intermediate is congruent to it modulo 2^32. Per column `-a_zp*col_sum + k*a_zp*b_zp` once, then one
        // multiply-subtract and one add per element, in lanes the compiler vectorizes.
        let zp_at = |j: usize| if b_zps.len() == 1 { b_zps[0] } else { b_zps[j] };
        let column_term: Vec<i32> = (0..n)
            .map(|j| {
                (k as i32)
                    .wrapping_mul(a_zp)
                    .wrapping_mul(zp_at(j))
                    .wrapping_sub(a_zp.wrapping_mul(b_col_sums[j]))
            })
            .collect();
        let zps: Vec<i32> = (0..n).map(zp_at).collect();
        for i in 0..m {
            let row_sum = a_row_sums[i];
            let row = &mut acc[i * ldc..i * ldc + n];
            if zps.iter().all(|&z| z == 0) {
                for (c, &t) in row.iter_mut().zip(&column_term) {
                    *c = c.wrapping_add(t);
                }
            } else {
                for ((c, &t), &z) in row.iter_mut().zip(&column_term).zip(&zps) {
                    *c = c.wrapping_sub(z.wrapping_mul(row_sum)).wrapping_add(t);
                }
            }
        }
        return;
    }
    let (k, a_zp) = (k as i64, a_zp as i64);
    for i in 0..m {
        let row_sum = a_row_sums[i] as i64;
        for (j, c) in acc[i * ldc..i * ldc + n].iter_mut().enumerate() {
            let b_zp = (if b_zps.len() == 1 { b_zps[0] } else { b_zps[j] }) as i64;
            let v = *c as i64 - b_zp * row_sum - a_zp * b_col_sums[j] as i64 + k * a_zp * b_zp;
            *c = v.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        }
    }
}

/// `sum_p a[i*lda + p]` for each of the `m` rows.
pub fn row_sums_u8(a: &[u8], m: usize, k: usize, lda: usize) -> Vec<i32> {
    crate::frame::gemm::assert_a("row_sums_u8", m, k, a, lda);
    (0..m)
        .map(|i| a[i * lda..i * lda + k].iter().map(|&v| v as i32).sum())
        .collect()
}

/// `sum_p b[p*n + j]` for each of the `n` columns of a row-major `k x n` matrix.
pub fn col_sums_i8(b: &[i8], k: usize, n: usize) -> Vec<i32> {
    assert!(
        b.len() >= k * n,
        "col_sums_i8: b has {} elements, {k}x{n} needs {}",
        b.len(),
        k * n
    );
    let mut sums = vec![0i32; n];
    for row in b.chunks_exact(n.max(1)).take(k) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += v as i32;
        }
    }
    sums
}

fn check_block(what: &str, acc_len: usize, m: usize, n: usize, ldc: usize, out_len: usize) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n, "{what}: ldc ({ldc}) < n ({n})");
    assert!(
        acc_len >= (m - 1) * ldc + n,
        "{what}: acc has {acc_len} elements, too few for {m}x{n} ldc {ldc}"
    );
    assert!(
        out_len >= m * n,
        "{what}: out has {out_len} elements, {m}x{n} needs {}",
        m * n
    );
}

fn check_per_channel(what: &str, name: &str, len: usize, n: usize) {
    assert!(
        len == 1 || len == n,
        "{what}: {name} has {len} entries; expected 1 (per-tensor) or n = {n}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_rounds_half_away_from_zero() {
        let half = Scaler::new(0.5);
        assert_eq!((half.mult, half.shift), (1 << 30, 0));
        assert_eq!([1, 3, -1, -3, 4].map(|x| half.apply(x)), [1, 2, -1, -2, 2]);
        let quarter = Scaler::new(0.25);
        assert_eq!(quarter.shift, 1);
        assert_eq!(
            [2, 6, -2, -6, 4].map(|x| quarter.apply(x)),
            [1, 2, -1, -2, 1]
        );
        // The documented double rounding: 0.25 -> 0.5 (step 2) -> 1 (step 3), where round(0.25) = 0.
        assert_eq!([1, -1].map(|x| quarter.apply(x)), [1, -1]);
    }

    #[test]
    fn large_and_degenerate_scales() {
        let s = Scaler::new(3.0);
        assert!(s.shift < 0);
        assert_eq!(s.apply(7), 21);
        assert_eq!(s.apply(i32::MAX), i32::MAX);
        assert_eq!(s.apply(i32::MIN), i32::MIN);
        assert_eq!(Scaler::new(0.0).apply(12345), 0);
        assert_eq!(Scaler::new(1e-30).apply(i32::MAX), 0);
        assert!(Scaler::try_new(-1.0).is_err());
        assert!(Scaler::try_new(f64::NAN).is_err());
        assert!(Scaler::try_new(f64::INFINITY).is_err());
    }
}
