//! The shared GEMM suite: every kernel registered in `kernels::registry` against the scalar reference, on
//! proptest shapes (m, n in 1..3*tile, k in 0..64), ruy's fixed sizes, deep and narrow shapes, adversarial
//! int8 extremes, zero-point compensation, and several thread counts. A kernel whose ISA this CPU lacks is
//! skipped with a note. Integer results must be exact; float results meet `testing::tolerance`.

use kernels::frame::{col_sums_i8, compensate_zero_points, row_sums_u8};
use kernels::reference::{SCALAR_GEMM_F32, SCALAR_GEMM_F32W8, SCALAR_GEMM_U8I8};
use kernels::registry::{gemm_f32_kernels, gemm_f32w8_kernels, gemm_u8i8_kernels};
use kernels::testing::{DEEP_K, RUY_SIZES, Rng, compare_exact, compare_f32_gemm};
use kernels::{GemmF32, GemmF32W8, GemmU8I8, Kernel};
use proptest::prelude::*;

/// Largest register tile registered (rows, columns): proptest shapes span three tiles of it.
const TILE: (usize, usize) = (8, 32);
/// Extra leading-dimension padding, so kernels are tested with `lda > k` and `ldc > n`.
const LD_PAD: usize = 3;
/// Written into the `ldc` padding of C; a kernel must leave it untouched.
const SENTINEL_I32: i32 = 0x5EED;
const SENTINEL_F32: f32 = -7.25;

fn supported<K: Kernel + ?Sized>(k: &K) -> bool {
    let ok = k.isa().is_available();
    if !ok {
        eprintln!("skip {}: this CPU lacks {}", k.name(), k.isa());
    }
    ok
}

/// `a` row-major `m x k` (dense) copied into a buffer with leading dimension `k + LD_PAD`.
fn with_lda<T: Copy + Default>(a: &[T], m: usize, k: usize) -> (Vec<T>, usize) {
    let lda = k + LD_PAD;
    let mut out = vec![T::default(); m * lda];
    for i in 0..m {
        out[i * lda..i * lda + k].copy_from_slice(&a[i * k..i * k + k]);
    }
    (out, lda)
}

/// Dense `m x n` rows out of a C buffer with leading dimension `ldc`, checking its padding is untouched.
fn dense<T: Copy + PartialEq + std::fmt::Debug>(
    c: &[T],
    m: usize,
    n: usize,
    ldc: usize,
    sentinel: T,
) -> Vec<T> {
    for i in 0..m {
        assert!(
            c[i * ldc + n..(i + 1) * ldc].iter().all(|&v| v == sentinel),
            "kernel wrote into ldc padding"
        );
    }
    (0..m)
        .flat_map(|i| c[i * ldc..i * ldc + n].to_vec())
        .collect()
}

fn run_u8i8(kern: &dyn GemmU8I8, m: usize, k: usize, n: usize, a: &[u8], b: &[i8]) -> Vec<i32> {
    let (a, lda) = with_lda(a, m, k);
    let ldc = n + LD_PAD;
    let mut c = vec![SENTINEL_I32; m * ldc];
    kern.gemm(m, &a, lda, &kern.pack_b(b, k, n), &mut c, ldc);
    dense(&c, m, n, ldc, SENTINEL_I32)
}

fn run_f32(kern: &dyn GemmF32, m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let (a, lda) = with_lda(a, m, k);
    let ldc = n + LD_PAD;
    let mut c = vec![SENTINEL_F32; m * ldc];
    kern.gemm(m, &a, lda, &kern.pack_b(b, k, n), &mut c, ldc);
    dense(&c, m, n, ldc, SENTINEL_F32)
}

#[allow(clippy::too_many_arguments)]
fn run_f32w8(
    kern: &dyn GemmF32W8,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[i8],
    scales: &[f32],
    zps: &[i32],
) -> Vec<f32> {
    let (a, lda) = with_lda(a, m, k);
    let ldc = n + LD_PAD;
    let mut c = vec![SENTINEL_F32; m * ldc];
    kern.gemm(m, &a, lda, &kern.pack_b(b, k, n), scales, zps, &mut c, ldc);
    dense(&c, m, n, ldc, SENTINEL_F32)
}

/// Every supported u8i8 kernel against the reference on one problem.
fn check_u8i8(m: usize, k: usize, n: usize, a: &[u8], b: &[i8]) -> Result<(), String> {
    let want = run_u8i8(&SCALAR_GEMM_U8I8, m, k, n, a, b);
    for kern in gemm_u8i8_kernels().iter().filter(|k| supported(**k)) {
        compare_exact(&want, &run_u8i8(*kern, m, k, n, a, b), m, n)
            .map_err(|e| format!("{} {m}x{k}x{n}: {e}", kern.name()))?;
    }
    Ok(())
}

fn check_f32(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Result<(), String> {
    let want = run_f32(&SCALAR_GEMM_F32, m, k, n, a, b);
    for kern in gemm_f32_kernels().iter().filter(|k| supported(**k)) {
        compare_f32_gemm(&want, &run_f32(*kern, m, k, n, a, b), m, n, k)
            .map_err(|e| format!("{} {m}x{k}x{n}: {e}", kern.name()))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn check_f32w8(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[i8],
    scales: &[f32],
    zps: &[i32],
) -> Result<(), String> {
    let want = run_f32w8(&SCALAR_GEMM_F32W8, m, k, n, a, b, scales, zps);
    for kern in gemm_f32w8_kernels().iter().filter(|k| supported(**k)) {
        compare_f32_gemm(
            &want,
            &run_f32w8(*kern, m, k, n, a, b, scales, zps),
            m,
            n,
            k,
        )
        .map_err(|e| format!("{} {m}x{k}x{n}: {e}", kern.name()))?;
    }
    Ok(())
}

/// Random data of one shape through all three ops; per-channel or per-tensor dequantization by `seed`.
fn check_all_ops(m: usize, k: usize, n: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    check_u8i8(m, k, n, &rng.u8s(m * k), &rng.i8s(k * n)).unwrap();
    check_f32(m, k, n, &rng.f32s(m * k), &rng.f32s(k * n)).unwrap();
    let channels = if seed.is_multiple_of(2) { n } else { 1 };
    let scales: Vec<f32> = (0..channels)
        .map(|_| 0.001 + rng.f32_unit().abs() * 0.1)
        .collect();
    let zps: Vec<i32> = (0..channels).map(|_| rng.below(256) as i32 - 128).collect();
    check_f32w8(m, k, n, &rng.f32s(m * k), &rng.i8s(k * n), &scales, &zps).unwrap();
}

fn shape() -> impl Strategy<Value = (usize, usize, usize)> {
    (1..3 * TILE.0, 0..64usize, 1..3 * TILE.1)
}

proptest! {
    #[test]
    fn u8i8_matches_reference(
        (m, k, n, a, b) in shape().prop_flat_map(|(m, k, n)| {
            (Just(m), Just(k), Just(n), prop::collection::vec(any::<u8>(), m * k), prop::collection::vec(any::<i8>(), k * n))
        })
    ) {
        check_u8i8(m, k, n, &a, &b).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn f32_matches_reference(
        (m, k, n, a, b) in shape().prop_flat_map(|(m, k, n)| {
            (Just(m), Just(k), Just(n), prop::collection::vec(-1f32..1.0, m * k), prop::collection::vec(-1f32..1.0, k * n))
        })
    ) {
        check_f32(m, k, n, &a, &b).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn f32w8_matches_reference(
        (m, k, n, a, b, per_channel, scale, zp) in shape().prop_flat_map(|(m, k, n)| {
            (Just(m), Just(k), Just(n), prop::collection::vec(-1f32..1.0, m * k), prop::collection::vec(any::<i8>(), k * n),
             any::<bool>(), 1e-4f32..1.0, -128i32..128)
        })
    ) {
        let channels = if per_channel { n } else { 1 };
        // Per-channel parameters vary by column so a kernel mixing up columns fails.
        let scales: Vec<f32> = (0..channels).map(|j| scale * (1.0 + j as f32 / 8.0)).collect();
        let zps: Vec<i32> = (0..channels).map(|j| (zp + 37 * j as i32).rem_euclid(256) - 128).collect();
        check_f32w8(m, k, n, &a, &b, &scales, &zps).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn ruy_fixed_sizes() {
    for (s, &m) in RUY_SIZES.iter().enumerate() {
        for &n in RUY_SIZES {
            for k in [0, 1, 2, 7, 16, 33, 64, 65] {
                check_all_ops(m, k, n, (s * 1000 + n * 10 + k) as u64);
            }
        }
    }
}

#[test]
fn deep_and_narrow() {
    let shapes = [
        (1, DEEP_K, 128),
        (5, DEEP_K, 17),
        (33, DEEP_K, 1),
        (1, DEEP_K, 1),
        (64, 5000, 3),
        (100, 40, 1),
        (1, 1, 1),
        (2, 0, 40),
        (784, 288, 64),
    ];
    for (i, (m, k, n)) in shapes.into_iter().enumerate() {
        check_all_ops(m, k, n, 99 + i as u64);
    }
}

#[test]
fn thread_counts_agree() {
    // Row split (many rows), column split (one row, many panels) and inline, for 1, 2 and 3 threads.
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            for (m, k, n) in [(257, 70, 40), (1, 900, 300), (3, 700, 45)] {
                check_all_ops(m, k, n, threads as u64);
            }
        });
    }
}

#[test]
fn int8_extremes_are_exact() {
    let alternating_a = |len: usize| {
        (0..len)
            .map(|i| if i % 2 == 0 { 255 } else { 0 })
            .collect::<Vec<u8>>()
    };
    let alternating_b = |len: usize| {
        (0..len)
            .map(|i| if i % 3 == 0 { -128 } else { 127 })
            .collect::<Vec<i8>>()
    };
    for (m, k, n) in [(4, 64, 16), (9, DEEP_K, 33), (5, 300, 7)] {
        let cases: [(&str, Vec<u8>, Vec<i8>); 5] = [
            ("a=255 b=-128", vec![255; m * k], vec![-128; k * n]),
            ("a=255 b=127", vec![255; m * k], vec![127; k * n]),
            ("a=0 b=-128", vec![0; m * k], vec![-128; k * n]),
            ("alternating", alternating_a(m * k), alternating_b(k * n)),
            (
                "a=255 alternating b",
                vec![255; m * k],
                alternating_b(k * n),
            ),
        ];
        for (what, a, b) in cases {
            check_u8i8(m, k, n, &a, &b).unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
    // The deepest exact accumulation: 65_000 * 255 * -128 = -2_121_600_000 fits i32.
    let (m, k, n) = (2, 65_000, 5);
    check_u8i8(m, k, n, &vec![255; m * k], &vec![-128; k * n]).unwrap();
    let c = run_u8i8(
        kernels::select(Some(kernels::Isa::Generic))
            .unwrap()
            .gemm_u8i8,
        m,
        k,
        n,
        &vec![255; m * k],
        &vec![-128; k * n],
    );
    assert!(c.iter().all(|&v| v == -2_121_600_000));
}

#[test]
fn zero_point_compensation_matches_naive() {
    let gemm = kernels::select(Some(kernels::Isa::detect_best()))
        .unwrap()
        .gemm_u8i8;
    let mut rng = Rng::new(5);
    for (m, k, n) in [(7, 45, 19), (1, DEEP_K, 8), (16, 1, 3)] {
        let (a, b) = (rng.u8s(m * k), rng.i8s(k * n));
        let (row_sums, col_sums) = (row_sums_u8(&a, m, k, k), col_sums_i8(&b, k, n));
        let per_channel: Vec<i32> = (0..n).map(|j| [-128, 0, 127][j % 3]).collect();
        for a_zp in [0, 128, 255] {
            for b_zps in [vec![-128], vec![0], vec![127], per_channel.clone()] {
                let mut acc = vec![0i32; m * n];
                gemm.gemm(m, &a, k, &gemm.pack_b(&b, k, n), &mut acc, n);
                compensate_zero_points(&mut acc, m, n, n, k, &row_sums, a_zp, &col_sums, &b_zps);
                let naive: Vec<i32> = (0..m * n)
                    .map(|x| {
                        let (i, j) = (x / n, x % n);
                        let b_zp = if b_zps.len() == 1 { b_zps[0] } else { b_zps[j] };
                        (0..k)
                            .map(|p| (a[i * k + p] as i32 - a_zp) * (b[p * n + j] as i32 - b_zp))
                            .sum()
                    })
                    .collect();
                compare_exact(&naive, &acc, m, n)
                    .unwrap_or_else(|e| panic!("{m}x{k}x{n} a_zp={a_zp} b_zps={b_zps:?}: {e}"));
            }
        }
    }
}

#[test]
#[should_panic(expected = "packed by `scalar_gemm_u8i8_s32_1x1`")]
fn refuses_another_kernels_packing() {
    let generic = kernels::select(Some(kernels::Isa::Generic))
        .unwrap()
        .gemm_u8i8;
    let packed = SCALAR_GEMM_U8I8.pack_b(&[1, 2, 3, 4], 2, 2);
    generic.gemm(1, &[1, 1], 2, &packed, &mut [0; 2], 2);
}

#[test]
#[should_panic(expected = "c has 3 elements")]
fn refuses_a_short_c() {
    let generic = kernels::select(Some(kernels::Isa::Generic))
        .unwrap()
        .gemm_f32;
    let packed = generic.pack_b(&[1.0; 8], 2, 4);
    generic.gemm(1, &[1.0, 1.0], 2, &packed, &mut [0.0; 3], 4);
}
