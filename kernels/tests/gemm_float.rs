//! The float and weight-only GEMM suite: every kernel registered for `GemmF32`, `GemmF32W8`, `GemmBf16`,
//! `GemmF16W` and `GemmW4` against its scalar reference, on proptest shapes spanning three of the largest float
//! tile (8 x 32), ruy-style fixed, deep and narrow shapes, shapes that take the packed-A path (`n >= 256`),
//! several thread counts, and extreme values (large magnitudes, subnormals, zeros). Then the three format
//! layers (candle style): the round trip of each format, kernel vs reference, and the result vs an exact (`f64`)
//! dot of the unrounded operands, each within a budget of `kernels::testing::tolerance`. A kernel whose ISA
//! this CPU lacks is skipped with a note.

use kernels::formats::{bf16, f16, int4};
use kernels::reference::gemm_bf16::SCALAR_GEMM_BF16;
use kernels::reference::gemm_f16w::SCALAR_GEMM_F16W;
use kernels::reference::gemm_w4::SCALAR_GEMM_W4;
use kernels::reference::{SCALAR_GEMM_F32, SCALAR_GEMM_F32W8};
use kernels::registry::{
    gemm_bf16_kernels, gemm_f16w_kernels, gemm_f32_kernels, gemm_f32w8_kernels, gemm_w4_kernels,
};
use kernels::testing::{DEEP_K, RUY_SIZES, Rng, compare_by, compare_f32_gemm, tolerance};
use kernels::{GemmBf16, GemmF16W, GemmF32, GemmF32W8, GemmW4, Isa, Kernel};
use proptest::prelude::*;

/// Largest float register tile registered (rows, columns): proptest shapes span three tiles of it.
const TILE: (usize, usize) = (8, 32);
/// Extra leading-dimension padding, so kernels are tested with `lda > k` and `ldc > n`.
const LD_PAD: usize = 3;
/// Written into the `ldc` padding of C; a kernel must leave it untouched.
const SENTINEL: f32 = -7.25;

fn supported<K: Kernel + ?Sized>(k: &K) -> bool {
    let ok = k.isa().is_available();
    if !ok {
        eprintln!("skip {}: this CPU lacks {}", k.name(), k.isa());
    }
    ok
}

/// The optimized kernels of a table (everything but the scalar reference) that this CPU runs.
fn optimized<K: Kernel + ?Sized>(table: &'static [&'static K]) -> impl Iterator<Item = &'static K> {
    table
        .iter()
        .copied()
        .filter(|k| k.isa() != Isa::Scalar && supported(*k))
}

/// Runs `gemm(a, lda, c, ldc)` with A copied to leading dimension `k + LD_PAD` and C of `n + LD_PAD` filled with
/// [`SENTINEL`]; returns the dense `m x n` result after checking the padding is untouched.
fn run(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    gemm: impl FnOnce(&[f32], usize, &mut [f32], usize),
) -> Vec<f32> {
    let lda = k + LD_PAD;
    let mut ap = vec![0f32; m * lda];
    for i in 0..m {
        ap[i * lda..i * lda + k].copy_from_slice(&a[i * k..i * k + k]);
    }
    let ldc = n + LD_PAD;
    let mut c = vec![SENTINEL; m * ldc];
    gemm(&ap, lda, &mut c, ldc);
    for i in 0..m {
        assert!(
            c[i * ldc + n..(i + 1) * ldc].iter().all(|&v| v == SENTINEL),
            "kernel wrote into ldc padding"
        );
    }
    (0..m)
        .flat_map(|i| c[i * ldc..i * ldc + n].to_vec())
        .collect()
}

fn run_f32(kern: &dyn GemmF32, m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let packed = kern.pack_b(b, k, n);
    run(m, k, n, a, |a, lda, c, ldc| {
        kern.gemm(m, a, lda, &packed, c, ldc)
    })
}

#[allow(clippy::too_many_arguments)]
fn run_w8(
    kern: &dyn GemmF32W8,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[i8],
    s: &[f32],
    z: &[i32],
) -> Vec<f32> {
    let packed = kern.pack_b(b, k, n);
    run(m, k, n, a, |a, lda, c, ldc| {
        kern.gemm(m, a, lda, &packed, s, z, c, ldc)
    })
}

fn run_bf16(kern: &dyn GemmBf16, m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let packed = kern.pack_b(b, k, n);
    run(m, k, n, a, |a, lda, c, ldc| {
        kern.gemm(m, a, lda, &packed, c, ldc)
    })
}

fn run_f16w(kern: &dyn GemmF16W, m: usize, k: usize, n: usize, a: &[f32], b: &[u16]) -> Vec<f32> {
    let packed = kern.pack_b(b, k, n);
    run(m, k, n, a, |a, lda, c, ldc| {
        kern.gemm(m, a, lda, &packed, c, ldc)
    })
}

/// Int4 weights of one problem: `(q, group, scales, zero points)`.
struct W4 {
    q: Vec<u8>,
    group: usize,
    scales: Vec<f32>,
    zps: Vec<u8>,
}

impl W4 {
    /// Random nibbles with per-group, per-column scales and zero points (affine unless `symmetric`).
    fn random(rng: &mut Rng, k: usize, n: usize, group: usize, symmetric: bool) -> W4 {
        let params = int4::group_count(k, group) * n;
        W4 {
            q: (0..k * n).map(|_| rng.below(16) as u8).collect(),
            group,
            scales: (0..params)
                .map(|_| 0.001 + rng.f32_unit().abs() * 0.1)
                .collect(),
            zps: (0..params)
                .map(|_| if symmetric { 8 } else { rng.below(16) as u8 })
                .collect(),
        }
    }
}

fn run_w4(
    kern: &dyn GemmW4,
    dyn_i8: bool,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    w: &W4,
) -> Vec<f32> {
    let packed = kern.pack_b(&w.q, k, n, w.group, &w.scales, &w.zps);
    run(m, k, n, a, |a, lda, c, ldc| {
        if dyn_i8 {
            kern.gemm_dyn_i8(m, a, lda, &packed, c, ldc)
        } else {
            kern.gemm(m, a, lda, &packed, c, ldc)
        }
    })
}

fn check_f32(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Result<(), String> {
    let want = run_f32(&SCALAR_GEMM_F32, m, k, n, a, b);
    for kern in optimized(gemm_f32_kernels()) {
        compare_f32_gemm(&want, &run_f32(kern, m, k, n, a, b), m, n, k)
            .map_err(|e| format!("{} {m}x{k}x{n}: {e}", kern.name()))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn check_w8(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[i8],
    s: &[f32],
    z: &[i32],
) -> Result<(), String> {
    let want = run_w8(&SCALAR_GEMM_F32W8, m, k, n, a, b, s, z);
    for kern in optimized(gemm_f32w8_kernels()) {
        compare_f32_gemm(&want, &run_w8(kern, m, k, n, a, b, s, z), m, n, k)
            .map_err(|e| format!("{} {m}x{k}x{n}: {e}", kern.name()))?;
    }
    Ok(())
}

fn check_bf16(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Result<(), String> {
    let want = run_bf16(&SCALAR_GEMM_BF16, m, k, n, a, b);
    for kern in optimized(gemm_bf16_kernels()) {
        compare_f32_gemm(&want, &run_bf16(kern, m, k, n, a, b), m, n, k)
            .map_err(|e| format!("{} {m}x{k}x{n}: {e}", kern.name()))?;
    }
    Ok(())
}

fn check_f16w(m: usize, k: usize, n: usize, a: &[f32], b: &[u16]) -> Result<(), String> {
    let want = run_f16w(&SCALAR_GEMM_F16W, m, k, n, a, b);
    for kern in optimized(gemm_f16w_kernels()) {
        compare_f32_gemm(&want, &run_f16w(kern, m, k, n, a, b), m, n, k)
            .map_err(|e| format!("{} {m}x{k}x{n}: {e}", kern.name()))?;
    }
    Ok(())
}

fn check_w4(m: usize, k: usize, n: usize, a: &[f32], w: &W4) -> Result<(), String> {
    for dyn_i8 in [false, true] {
        let want = run_w4(&SCALAR_GEMM_W4, dyn_i8, m, k, n, a, w);
        for kern in optimized(gemm_w4_kernels()) {
            compare_f32_gemm(&want, &run_w4(kern, dyn_i8, m, k, n, a, w), m, n, k).map_err(
                |e| {
                    format!(
                        "{} dyn_i8={dyn_i8} group={} {m}x{k}x{n}: {e}",
                        kern.name(),
                        w.group
                    )
                },
            )?;
        }
    }
    Ok(())
}

/// Random data of one shape through every op; per-channel or per-tensor int8 parameters and the int4 group and
/// symmetry by `seed`.
fn check_all(m: usize, k: usize, n: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let (a, b) = (rng.f32s(m * k), rng.f32s(k * n));
    check_f32(m, k, n, &a, &b).unwrap();
    check_bf16(m, k, n, &a, &b).unwrap();
    check_f16w(m, k, n, &a, &f16::from_f32_slice(&b)).unwrap();
    let channels = if seed.is_multiple_of(2) { n } else { 1 };
    let scales: Vec<f32> = (0..channels)
        .map(|_| 0.001 + rng.f32_unit().abs() * 0.1)
        .collect();
    let zps: Vec<i32> = (0..channels).map(|_| rng.below(256) as i32 - 128).collect();
    check_w8(m, k, n, &a, &rng.i8s(k * n), &scales, &zps).unwrap();
    let group = int4::GROUPS[seed as usize % 3];
    let w = W4::random(&mut rng, k, n, group, seed % 4 == 1);
    check_w4(m, k, n, &a, &w).unwrap();
}

fn shape() -> impl Strategy<Value = (usize, usize, usize)> {
    (1..3 * TILE.0, 0..64usize, 1..3 * TILE.1)
}

/// Depth up to 300 so that several groups, and a short last group, occur for every group size.
fn w4_shape() -> impl Strategy<Value = (usize, usize, usize)> {
    (1..3 * TILE.0, 0..300usize, 1..3 * TILE.1)
}

type Problem<B> = (usize, usize, usize, Vec<f32>, Vec<B>);

/// A [`shape`] with A and B uniform in `[-1, 1)`.
fn f32_problem() -> impl Strategy<Value = Problem<f32>> {
    shape().prop_flat_map(|(m, k, n)| {
        let unit = |len| prop::collection::vec(-1f32..1.0, len);
        (Just(m), Just(k), Just(n), unit(m * k), unit(k * n))
    })
}

/// A [`shape`] with A uniform in `[-1, 1)` and any int8 B.
fn w8_problem() -> impl Strategy<Value = Problem<i8>> {
    shape().prop_flat_map(|(m, k, n)| {
        let b = prop::collection::vec(any::<i8>(), k * n);
        (
            Just(m),
            Just(k),
            Just(n),
            prop::collection::vec(-1f32..1.0, m * k),
            b,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn f32_matches_reference(
        (m, k, n, a, b) in f32_problem()
    ) {
        check_f32(m, k, n, &a, &b).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn w8_matches_reference(
        ((m, k, n, a, b), per_channel, scale, zp) in (w8_problem(), any::<bool>(), 1e-4f32..1.0, -128i32..128)
    ) {
        let channels = if per_channel { n } else { 1 };
        let scales: Vec<f32> = (0..channels).map(|j| scale * (1.0 + j as f32 / 8.0)).collect();
        let zps: Vec<i32> = (0..channels).map(|j| (zp + 37 * j as i32).rem_euclid(256) - 128).collect();
        check_w8(m, k, n, &a, &b, &scales, &zps).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn bf16_matches_reference(
        (m, k, n, a, b) in f32_problem()
    ) {
        check_bf16(m, k, n, &a, &b).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn f16w_matches_reference(
        (m, k, n, a, b) in f32_problem()
    ) {
        check_f16w(m, k, n, &a, &f16::from_f32_slice(&b)).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn w4_matches_reference(
        ((m, k, n), seed, group_index, symmetric) in (w4_shape(), any::<u64>(), 0..3usize, any::<bool>())
    ) {
        let mut rng = Rng::new(seed);
        let w = W4::random(&mut rng, k, n, int4::GROUPS[group_index], symmetric);
        check_w4(m, k, n, &rng.f32s(m * k), &w).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn fixed_sizes() {
    for (s, &m) in RUY_SIZES.iter().enumerate().step_by(2) {
        for &n in RUY_SIZES.iter().skip(1).step_by(3) {
            for k in [0, 1, 2, 7, 33, 65] {
                check_all(m, k, n, (s * 1000 + n * 10 + k) as u64);
            }
        }
    }
}

#[test]
fn deep_narrow_and_packed_a() {
    // Deep k; n >= 256 with m >= 2 takes the packed-A path of the FMA kernels (ragged rows and panels too).
    let shapes = [
        (1, DEEP_K, 40),
        (5, DEEP_K, 33),
        (33, 1000, 1),
        (13, 50, 257),
        (2, 7, 300),
        (9, 129, 256),
        (17, 300, 270),
        (1, 64, 300),
        (64, 0, 260),
        (20, 513, 64),
        // Packed A across several depth blocks (the FMA kernels block k by 768, int4 by 1024).
        (10, 1600, 260),
    ];
    for (i, (m, k, n)) in shapes.into_iter().enumerate() {
        check_all(m, k, n, 77 + i as u64);
    }
}

#[test]
fn thread_counts_agree() {
    // Row split, column split and inline, for 2 and 3 threads.
    for threads in [2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            for (m, k, n) in [(100, 70, 300), (1, 600, 300), (3, 200, 45)] {
                check_all(m, k, n, threads as u64);
            }
        });
    }
}

#[test]
fn extreme_values() {
    let (m, k, n) = (11, 67, 45);
    let mut rng = Rng::new(9);
    let sign = |rng: &mut Rng| if rng.below(2) == 0 { 1.0 } else { -1.0 };
    // Positive large magnitudes: no cancellation, so reordering stays within the relative budget.
    let large_a: Vec<f32> = (0..m * k)
        .map(|_| 1e15 * (1.0 + rng.f32_unit().abs()))
        .collect();
    let large_b: Vec<f32> = (0..k * n)
        .map(|_| 1e15 * (1.0 + rng.f32_unit().abs()))
        .collect();
    let subnormal = |rng: &mut Rng, len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| sign(rng) * f32::MIN_POSITIVE * rng.f32_unit().abs())
            .collect()
    };
    let unit = rng.f32s(m * k);
    let cases: [(&str, Vec<f32>, Vec<f32>); 5] = [
        ("large", large_a.clone(), large_b.clone()),
        ("subnormal a", subnormal(&mut rng, m * k), rng.f32s(k * n)),
        ("subnormal b", unit.clone(), subnormal(&mut rng, k * n)),
        ("zeros", vec![0.0; m * k], rng.f32s(k * n)),
        ("negative zeros", unit.clone(), vec![-0.0; k * n]),
    ];
    for (what, a, b) in &cases {
        check_f32(m, k, n, a, b).unwrap_or_else(|e| panic!("{what}: {e}"));
        check_bf16(m, k, n, a, b).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    // f16 weights: their own extremes (largest finite, subnormal, zero) against large and small activations.
    let f16_cases: [(&str, Vec<f32>, Vec<u16>); 3] = [
        ("f16 max x large a", large_a.clone(), vec![0x7BFF; k * n]),
        (
            "f16 subnormal",
            unit.clone(),
            (0..k * n).map(|i| 1 + (i % 0x3FF) as u16).collect(),
        ),
        ("f16 zeros", unit.clone(), vec![0x8000; k * n]),
    ];
    for (what, a, b) in &f16_cases {
        check_f16w(m, k, n, a, b).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    // Int8 weights at the extremes, zero point at the other extreme.
    for (what, b, zp) in [
        ("-128, zp 127", -128i8, 127i32),
        ("127, zp -128", 127, -128),
    ] {
        check_w8(m, k, n, &large_a, &vec![b; k * n], &[1e-3], &[zp])
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    // Int4: all-0 and all-15 nibbles against zero points 15 and 0, large activations.
    for (q, zp) in [(0u8, 15u8), (15, 0)] {
        let groups = int4::group_count(k, 32) * n;
        let w = W4 {
            q: vec![q; k * n],
            group: 32,
            scales: vec![1e3; groups],
            zps: vec![zp; groups],
        };
        check_w4(m, k, n, &large_a, &w).unwrap_or_else(|e| panic!("q={q} zp={zp}: {e}"));
    }
}

// ---- Formats, layer 1: round trips. ----

/// Normal-range values spanning many binades (for f16: inside its normal range).
fn spread(rng: &mut Rng, len: usize, max_exp: i32) -> Vec<f32> {
    (0..len)
        .map(|_| rng.f32_unit() * 2f32.powi(rng.below(2 * max_exp as u64) as i32 - max_exp))
        .filter(|v| v.abs() >= f32::MIN_POSITIVE)
        .collect()
}

fn rel_rmse(x: &[f32], y: &[f32]) -> f32 {
    let err: f64 = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| ((a - b) as f64).powi(2))
        .sum();
    let norm: f64 = x.iter().map(|&a| (a as f64).powi(2)).sum();
    (err / norm).sqrt() as f32
}

#[test]
fn bf16_and_f16_round_trips_within_rmse_budget() {
    let mut rng = Rng::new(21);
    let x = spread(&mut rng, 20_000, 30);
    let back = bf16::to_f32_slice(&bf16::from_f32_slice(&x));
    let e = rel_rmse(&x, &back);
    assert!(
        e <= tolerance::BF16_ROUNDTRIP_RMSE_REL,
        "bf16 relative RMSE {e}"
    );
    // The bound is a worst case; the typical error is well below it, and not zero.
    assert!(e > 0.0);
    let x = spread(&mut rng, 20_000, 12);
    let back = f16::to_f32_slice(&f16::from_f32_slice(&x));
    let e = rel_rmse(&x, &back);
    assert!(
        e <= tolerance::F16_ROUNDTRIP_RMSE_REL,
        "f16 relative RMSE {e}"
    );
}

#[test]
fn int4_nibbles_round_trip_exactly() {
    let mut rng = Rng::new(4);
    let v: Vec<u8> = (0..1001).map(|_| rng.below(16) as u8).collect();
    assert_eq!(int4::unpack_nibbles(&int4::pack_nibbles(&v), v.len()), v);
}

// ---- Formats, layer 3: results against exact dots of the unrounded operands. ----

/// `m x n` `f64` products `sum_p a[i][p] * b[p][j]` and `sum_p |a| |b|`.
fn exact(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> (Vec<f64>, Vec<f32>) {
    let mut dot = vec![0f64; m * n];
    let mut abs = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                let (x, y) = (a[i * k + p] as f64, b[p * n + j] as f64);
                dot[i * n + j] += x * y;
                abs[i * n + j] += (x * y).abs() as f32;
            }
        }
    }
    (dot, abs)
}

fn within(
    want: &[f64],
    got: &[f32],
    m: usize,
    n: usize,
    budget: impl Fn(usize) -> f32,
) -> Result<(), String> {
    compare_by(
        m,
        n,
        |i, j| (got[i * n + j] as f64 - want[i * n + j]).abs() <= budget(i * n + j) as f64,
        |i, j| {
            format!(
                "exact {}, got {} (budget {})",
                want[i * n + j],
                got[i * n + j],
                budget(i * n + j)
            )
        },
    )
}

#[test]
fn bf16_and_f16w_results_match_exact_dots() {
    let mut rng = Rng::new(31);
    for (m, k, n) in [(7, 300, 40), (16, 768, 64), (1, DEEP_K, 33)] {
        let (a, b) = (rng.f32s(m * k), rng.f32s(k * n));
        let (want, abs) = exact(m, k, n, &a, &b);
        for kern in gemm_bf16_kernels().iter().filter(|k| supported(**k)) {
            let got = run_bf16(*kern, m, k, n, &a, &b);
            within(&want, &got, m, n, |e| {
                tolerance::bf16_gemm_vs_exact_max_diff(abs[e], k)
            })
            .unwrap_or_else(|e| panic!("{} {m}x{k}x{n}: {e}", kern.name()));
        }
        let bh = f16::from_f32_slice(&b);
        for kern in gemm_f16w_kernels().iter().filter(|k| supported(**k)) {
            let got = run_f16w(*kern, m, k, n, &a, &bh);
            within(&want, &got, m, n, |e| {
                tolerance::f16w_gemm_vs_exact_max_diff(abs[e], k)
            })
            .unwrap_or_else(|e| panic!("{} {m}x{k}x{n}: {e}", kern.name()));
        }
    }
}

#[test]
fn w4_results_match_exact_dots() {
    let mut rng = Rng::new(41);
    for (m, k, n, group) in [(5, 300, 40, 32), (16, 768, 64, 128), (3, 200, 17, 64)] {
        let (a, w) = (rng.f32s(m * k), rng.f32s(k * n));
        let (q, scales, zps) = int4::quantize_groupwise(&w, k, n, group, true);
        let deq = int4::dequantize(&q, k, n, group, &scales, &zps);
        let (want_w, abs_w) = exact(m, k, n, &a, &w);
        let (want_deq, abs_deq) = exact(m, k, n, &a, &deq);
        // sum_p |a_p| * scale of p's group, per output.
        let a_step: Vec<f32> = (0..m * n)
            .map(|e| {
                let (i, j) = (e / n, e % n);
                (0..k)
                    .map(|p| a[i * k + p].abs() * scales[(p / group) * n + j])
                    .sum()
            })
            .collect();
        // Per output: the row's activation scale and max, and sum_p |w_p| of the column.
        let row_max: Vec<f32> = (0..m)
            .map(|i| {
                a[i * k..(i + 1) * k]
                    .iter()
                    .fold(0f32, |x, v| x.max(v.abs()))
            })
            .collect();
        let col_abs: Vec<f32> = (0..n)
            .map(|j| (0..k).map(|p| deq[p * n + j].abs()).sum())
            .collect();
        let packed_w = W4 {
            q,
            group,
            scales,
            zps,
        };
        for kern in gemm_w4_kernels().iter().filter(|k| supported(**k)) {
            let got = run_w4(*kern, false, m, k, n, &a, &packed_w);
            within(&want_w, &got, m, n, |e| {
                tolerance::w4_gemm_vs_exact_max_diff(a_step[e], abs_w[e], k)
            })
            .unwrap_or_else(|e| panic!("{} f32 path {m}x{k}x{n}: {e}", kern.name()));
            let got = run_w4(*kern, true, m, k, n, &a, &packed_w);
            within(&want_deq, &got, m, n, |e| {
                let (i, j) = (e / n, e % n);
                tolerance::w4_dyn_i8_vs_exact_max_diff(
                    row_max[i] / 127.0,
                    row_max[i],
                    col_abs[j],
                    abs_deq[e],
                    k,
                )
            })
            .unwrap_or_else(|e| panic!("{} dyn_i8 path {m}x{k}x{n}: {e}", kern.name()));
        }
    }
}

#[test]
fn registry_tables_are_sorted_and_named_after_their_isa() {
    fn check<K: Kernel + ?Sized>(table: &[&K]) {
        assert_eq!(table[0].isa(), Isa::Scalar);
        assert_eq!(table[1].isa(), Isa::Generic);
        assert!(table.windows(2).all(|w| w[0].isa() <= w[1].isa()));
        for k in table {
            assert!(
                k.name().starts_with(k.isa().name()),
                "{} vs {}",
                k.name(),
                k.isa()
            );
        }
    }
    check(gemm_bf16_kernels());
    check(gemm_f16w_kernels());
    check(gemm_w4_kernels());
    let set = kernels::select(Some(Isa::Generic)).unwrap();
    assert_eq!(set.gemm_bf16.isa(), Isa::Generic);
    assert_eq!(set.gemm_w4.isa(), Isa::Generic);
    assert_eq!(
        kernels::select(Some(Isa::Scalar)).unwrap().gemm_f16w.isa(),
        Isa::Scalar
    );
}

#[test]
#[should_panic(expected = "packed by `scalar_gemm_w4_f32_1x1`")]
fn w4_refuses_another_kernels_packing() {
    let generic = kernels::select(Some(Isa::Generic)).unwrap().gemm_w4;
    let packed = SCALAR_GEMM_W4.pack_b(&[1; 4], 2, 2, 32, &[1.0; 2], &[8; 2]);
    generic.gemm(1, &[1.0, 1.0], 2, &packed, &mut [0.0; 2], 2);
}

#[test]
#[should_panic(expected = "group 16 is not one of")]
fn w4_refuses_an_unsupported_group() {
    SCALAR_GEMM_W4.pack_b(&[1; 4], 2, 2, 16, &[1.0; 2], &[8; 2]);
}
