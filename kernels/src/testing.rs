//! Shared test support, public so this crate's integration tests and other crates' tests use the same budgets:
//! named tolerances (each with its reason, in one place), ruy's test shapes, a deterministic data generator, and
//! comparisons that report a mismatch grid instead of a bare assertion failure.

use std::fmt::Write as _;

/// Every accuracy budget the kernel tests use. No test may compare against a bare literal.
pub mod tolerance {
    /// `i32` accumulators must match exactly: `u8 * i8` products and their sums are exact integers
    /// (for `k <= 65_793`).
    pub const I32_MAX_DIFF: i64 = 0;

    /// Requantized `u8` outputs may differ from `round(x * real)` computed in `f64` by one unit:
    /// [`crate::frame::Scaler::apply`] rounds twice (after the high multiply, then in the right shift) and its
    /// multiplier carries a `2^-31` relative error, either of which can move a value across a rounding boundary.
    pub const REQUANT_U8_MAX_LSB: i32 = 1;

    /// Mean signed difference of unsaturated requantized outputs from the `f64` reference, in LSB. The
    /// one-unit differences above are rare (the first rounding moves a value by at most `2^-shift` output
    /// units) and symmetric (ties go away from zero on both sides), so their mean stays near 0; a truncating
    /// or one-sided rounding shifts it by about 0.5.
    pub const REQUANT_U8_MEAN_LSB: f64 = 0.02;

    /// [`crate::frame::Scaler::new`] round-trip: the multiplier keeps 31 bits with `mult >= 2^30`, so rounding
    /// it costs at most `2^-31` relative; `2^-30` leaves a factor of two for the `f64` arithmetic around it.
    pub const SCALER_ROUNDTRIP_REL: f64 = 1.0 / (1u64 << 30) as f64;

    /// Float GEMM, after ruy's `Agree()`: a kernel may reorder or fuse the `k` additions, each costing up to
    /// one rounding of a partial sum no larger than `max|C|`; the errors grow like a random walk (`sqrt(k)`),
    /// and 64 is ruy's safety factor for correlated errors.
    pub const F32_GEMM_EPS_FACTOR: f32 = 64.0;

    /// Floor of the float GEMM budget, in units of `f32::EPSILON`, for outputs near zero (ruy's `4 eps`).
    pub const F32_GEMM_FLOOR_EPS: f32 = 4.0;

    /// Largest allowed `|expected - actual|` of a float GEMM of depth `k` whose outputs are at most `max_abs`.
    pub fn f32_gemm_max_diff(max_abs: f32, k: usize) -> f32 {
        let budget = max_abs * f32::EPSILON * F32_GEMM_EPS_FACTOR * (k.max(1) as f32).sqrt();
        budget.max(F32_GEMM_FLOOR_EPS * f32::EPSILON)
    }

    /// Largest allowed mean signed difference over `count` outputs: independent rounding errors average out
    /// like `1/sqrt(count)`; a larger mean means a systematic bias (e.g. a dropped term or a biased rounding).
    pub fn f32_gemm_mean_diff(max_diff: f32, count: usize) -> f32 {
        max_diff / (count.max(1) as f32).sqrt()
    }

    /// Extra ulps of `|x|` allowed by a quantize -> dequantize round trip beyond half a step: one rounding in the
    /// `f32` division `x / scale`, one in the multiplication `(q - zp) * scale`, doubled for safety.
    pub const QUANT_ROUNDTRIP_ULPS: f32 = 4.0;

    /// Largest `|x - dequantize(quantize(x))|` for unsaturated values of magnitude at most `max_abs`: half a
    /// quantization step from the rounding, plus [`QUANT_ROUNDTRIP_ULPS`].
    pub fn quant_roundtrip_max_diff(scale: f32, max_abs: f32) -> f32 {
        0.5 * scale + QUANT_ROUNDTRIP_ULPS * f32::EPSILON * max_abs
    }

    /// Float results of im2col + GEMM against a direct convolution: the same float GEMM budget, the depth
    /// being `c_in * kh * kw` (padding terms add exact zeros).
    pub fn f32_conv_max_diff(max_abs: f32, k: usize) -> f32 {
        f32_gemm_max_diff(max_abs, k)
    }

    /// RMS error of an f32 -> bf16 -> f32 round trip of normal values, relative to their RMS: rounding to
    /// nearest errs by at most the unit roundoff `2^-8` relative per value (IEEE-style bound), hence in RMS too.
    pub const BF16_ROUNDTRIP_RMSE_REL: f32 = crate::formats::bf16::UNIT_ROUNDOFF;

    /// The same for f16 (normal range): unit roundoff `2^-11`.
    pub const F16_ROUNDTRIP_RMSE_REL: f32 = crate::formats::f16::UNIT_ROUNDOFF;

    /// A bf16 GEMM element against the `f64` dot of the unrounded operands, `abs_dot = sum |a| |b|`: each
    /// product carries two bf16 roundings, `|a'b' - ab| <= (2u + u^2) |ab|` with `u = 2^-8`, plus the f32
    /// summation budget.
    pub fn bf16_gemm_vs_exact_max_diff(abs_dot: f32, k: usize) -> f32 {
        let u = crate::formats::bf16::UNIT_ROUNDOFF;
        (2.0 * u + u * u) * abs_dot + f32_gemm_max_diff(abs_dot, k)
    }

    /// An f16-weight GEMM element against the `f64` dot with the f32 weights before rounding: one f16 rounding
    /// per product (normal-range weights, `u = 2^-11`), plus the f32 summation budget.
    pub fn f16w_gemm_vs_exact_max_diff(abs_dot: f32, k: usize) -> f32 {
        crate::formats::f16::UNIT_ROUNDOFF * abs_dot + f32_gemm_max_diff(abs_dot, k)
    }

    /// Steps of weight error an unclipped round-to-nearest int4 weight carries (half a step), with the ulps of
    /// [`QUANT_ROUNDTRIP_ULPS`] on top in [`w4_gemm_vs_exact_max_diff`].
    pub const W4_WEIGHT_STEPS: f32 = 0.5;

    /// An int4-weight GEMM element against the `f64` dot with the unquantized weights: [`W4_WEIGHT_STEPS`]
    /// times `abs_a_step` (the sum over `p` of `|a_p|` times the scale of `p`'s group), the round trip's ulps on
    /// `abs_dot = sum |a| |w|`, and the f32 summation budget.
    pub fn w4_gemm_vs_exact_max_diff(abs_a_step: f32, abs_dot: f32, k: usize) -> f32 {
        W4_WEIGHT_STEPS * abs_a_step
            + QUANT_ROUNDTRIP_ULPS * f32::EPSILON * abs_dot
            + f32_gemm_max_diff(abs_dot, k)
    }

    /// The int8-activation path of an int4 GEMM against the `f64` dot with the dequantized weights: each
    /// activation code is rounded to nearest (half a step of `row_scale = max|a| / 127`, plus a few ulps of
    /// `max|a|` for the f32 scale arithmetic, as in [`quant_roundtrip_max_diff`]), times `abs_w = sum_p |w_p|`,
    /// plus the f32 summation budget on `abs_dot = sum |a| |w|`.
    pub fn w4_dyn_i8_vs_exact_max_diff(
        row_scale: f32,
        max_abs_a: f32,
        abs_w: f32,
        abs_dot: f32,
        k: usize,
    ) -> f32 {
        quant_roundtrip_max_diff(row_scale, max_abs_a) * abs_w + f32_gemm_max_diff(abs_dot, k)
    }
}

/// ruy's fixed test sizes: 1-10, around 16, 32 and 64.
pub const RUY_SIZES: &[usize] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 16, 17, 31, 32, 33, 63, 64, 65,
];

/// A deep GEMM depth from a real model (ResNet-style 3136 = 56 * 56).
pub const DEEP_K: usize = 3136;

/// Deterministic xorshift64* generator: reproducible test data without a `rand` dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, bound)`; `bound > 0`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn u8s(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next_u64() >> 56) as u8).collect()
    }

    pub fn i8s(&mut self, len: usize) -> Vec<i8> {
        (0..len)
            .map(|_| (self.next_u64() >> 56) as u8 as i8)
            .collect()
    }

    /// Uniform in `[-1, 1)`.
    pub fn f32_unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn f32s(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.f32_unit()).collect()
    }
}

/// Exact comparison of `m x n` integer results (row-major, dense).
pub fn compare_exact<T: PartialEq + Copy + std::fmt::Debug>(
    expected: &[T],
    actual: &[T],
    m: usize,
    n: usize,
) -> Result<(), String> {
    compare_by(
        m,
        n,
        |i, j| expected[i * n + j] == actual[i * n + j],
        |i, j| {
            format!(
                "expected {:?}, got {:?}",
                expected[i * n + j],
                actual[i * n + j]
            )
        },
    )
}

/// `u8` results within `max_lsb` units.
pub fn compare_u8_within(
    expected: &[u8],
    actual: &[u8],
    m: usize,
    n: usize,
    max_lsb: i32,
) -> Result<(), String> {
    let ok = |i: usize, j: usize| {
        (expected[i * n + j] as i32 - actual[i * n + j] as i32).abs() <= max_lsb
    };
    compare_by(m, n, ok, |i, j| {
        format!(
            "expected {}, got {}",
            expected[i * n + j],
            actual[i * n + j]
        )
    })
}

/// Float GEMM results of depth `k` within [`tolerance::f32_gemm_max_diff`] per element and
/// [`tolerance::f32_gemm_mean_diff`] on the mean signed difference. NaN must match NaN.
pub fn compare_f32_gemm(
    expected: &[f32],
    actual: &[f32],
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), String> {
    compare_f32(expected, actual, m, n, k, tolerance::f32_gemm_max_diff)
}

/// Like [`compare_f32_gemm`] with a caller-chosen per-element budget `budget(max_abs, k)`.
pub fn compare_f32(
    expected: &[f32],
    actual: &[f32],
    m: usize,
    n: usize,
    k: usize,
    budget: impl Fn(f32, usize) -> f32,
) -> Result<(), String> {
    let count = m * n;
    let max_abs = expected[..count]
        .iter()
        .chain(&actual[..count])
        .filter(|v| v.is_finite())
        .fold(0f32, |acc, v| acc.max(v.abs()));
    let max_diff = budget(max_abs, k);
    let ok = |i: usize, j: usize| {
        let (e, a) = (expected[i * n + j], actual[i * n + j]);
        (e.is_nan() && a.is_nan()) || e == a || (e - a).abs() <= max_diff
    };
    compare_by(m, n, ok, |i, j| {
        let (e, a) = (expected[i * n + j], actual[i * n + j]);
        format!(
            "expected {e}, got {a} (diff {}, budget {max_diff})",
            (e - a).abs()
        )
    })?;
    let finite = (0..count).filter(|&x| expected[x].is_finite() && actual[x].is_finite());
    let mean = finite
        .clone()
        .map(|x| (actual[x] - expected[x]) as f64)
        .sum::<f64>()
        / (finite.count().max(1) as f64);
    let mean_budget = tolerance::f32_gemm_mean_diff(max_diff, count);
    if mean.abs() > mean_budget as f64 {
        return Err(format!(
            "{m}x{n} (k={k}): mean signed difference {mean} exceeds {mean_budget}: a bias"
        ));
    }
    Ok(())
}

/// Checks `ok(i, j)` over an `m x n` grid; on failure reports the count, the first mismatch and a grid of
/// mismatches (`X`) of at most 32 x 64.
pub fn compare_by(
    m: usize,
    n: usize,
    ok: impl Fn(usize, usize) -> bool,
    describe: impl Fn(usize, usize) -> String,
) -> Result<(), String> {
    let bad: Vec<(usize, usize)> = (0..m)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .filter(|&(i, j)| !ok(i, j))
        .collect();
    let Some(&(i0, j0)) = bad.first() else {
        return Ok(());
    };
    let mut msg = format!(
        "{m}x{n}: {} mismatches; first at ({i0}, {j0}): {}\n",
        bad.len(),
        describe(i0, j0)
    );
    for i in 0..m.min(32) {
        let line: String = (0..n.min(64))
            .map(|j| if ok(i, j) { '.' } else { 'X' })
            .collect();
        let _ = writeln!(msg, "{line}");
    }
    Err(msg)
}
