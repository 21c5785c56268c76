//! The dynamic int8 GEMM suite: every kernel registered in `registry::gemm_f32_dyn_i8_kernels()` against the
//! scalar reference, on proptest shapes, ruy's sizes, deep and narrow shapes, several thread counts, and
//! adversarial activations (all zeros, one sign only, huge and tiny ranges, non-finite values, values exactly
//! halfway between two codes). A kernel whose ISA this CPU lacks is skipped with a note.
//!
//! Every case runs by both activation rules (ONNX DynamicQuantizeLinear's affine one, and symmetric). Results
//! must be bit-identical, not merely close: the quantization parameters and codes are defined exactly
//! (`f32` division, ties to even), the integer products are exact, and the float
//! epilogue is specified as separate IEEE operations in one order (`acc * scale * b_scale + bias`).

use kernels::reference::gemm_f32_dyn_i8::{
    SCALAR_GEMM_F32_DYN_I8, dynamic_qparams, dynamic_qparams_of, qparams_of,
};
use kernels::registry::gemm_f32_dyn_i8_kernels;
use kernels::testing::{DEEP_K, RUY_SIZES, Rng, compare_exact};
use kernels::{DynRule, GemmF32DynI8};
use proptest::prelude::*;

/// Largest register tile registered (rows, columns): proptest shapes span three tiles of it.
const TILE: (usize, usize) = (8, 32);
/// Extra leading-dimension padding, so kernels are tested with `lda > k` and `ldc > n`.
const LD_PAD: usize = 3;
/// Written into the `ldc` padding of C; a kernel must leave it untouched.
const SENTINEL: f32 = -7.25;

/// The weight-side parameters of one case.
struct Params {
    scales: Vec<f32>,
    zero_points: Vec<i32>,
    bias: Option<Vec<f32>>,
    relu: bool,
}

impl Params {
    fn random(rng: &mut Rng, n: usize, per_channel: bool, with_bias: bool, relu: bool) -> Params {
        let channels = if per_channel { n } else { 1 };
        Params {
            scales: (0..channels)
                .map(|_| 1e-3 + rng.f32_unit().abs() * 0.05)
                .collect(),
            zero_points: (0..channels).map(|_| rng.below(256) as i32 - 128).collect(),
            bias: with_bias.then(|| rng.f32s(n)),
            relu,
        }
    }
}

fn supported(k: &dyn GemmF32DynI8) -> bool {
    let ok = k.isa().is_available();
    if !ok {
        eprintln!("skip {}: this CPU lacks {}", k.name(), k.isa());
    }
    ok
}

fn run(
    kern: &dyn GemmF32DynI8,
    rule: DynRule,
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    b: &[i8],
    p: &Params,
) -> (Vec<f32>, (f32, i32)) {
    let lda = k + LD_PAD;
    let mut a_ld = vec![0f32; m * lda];
    for i in 0..m {
        a_ld[i * lda..i * lda + k].copy_from_slice(&a[i * k..i * k + k]);
    }
    let ldc = n + LD_PAD;
    let mut c = vec![SENTINEL; m * ldc];
    let params = kern.gemm_with(
        rule,
        m,
        &a_ld,
        lda,
        &kern.pack_b(b, k, n),
        &p.scales,
        &p.zero_points,
        p.bias.as_deref(),
        p.relu,
        &mut c,
        ldc,
    );
    for i in 0..m {
        assert!(
            c[i * ldc + n..(i + 1) * ldc]
                .iter()
                .all(|&v| v.to_bits() == SENTINEL.to_bits()),
            "{}: wrote into ldc padding",
            kern.name()
        );
    }
    let dense = (0..m)
        .flat_map(|i| c[i * ldc..i * ldc + n].to_vec())
        .collect();
    (dense, params)
}

/// Every supported kernel against the reference on one problem, by both activation rules: same parameters,
/// bit-identical C.
fn check(
    shape @ (m, k, n): (usize, usize, usize),
    a: &[f32],
    b: &[i8],
    p: &Params,
) -> Result<(), String> {
    for rule in [DynRule::Affine, DynRule::Symmetric] {
        let (want, want_params) = run(&SCALAR_GEMM_F32_DYN_I8, rule, shape, a, b, p);
        assert_eq!(want_params, qparams_of(rule, a, m, k, k));
        if rule == DynRule::Affine {
            assert_eq!(want_params, dynamic_qparams_of(a, m, k, k));
        }
        for kern in gemm_f32_dyn_i8_kernels().iter().filter(|k| supported(**k)) {
            let (got, params) = run(*kern, rule, shape, a, b, p);
            if params != want_params {
                return Err(format!(
                    "{} {rule:?} {m}x{k}x{n}: parameters {params:?}, reference {want_params:?}",
                    kern.name()
                ));
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            compare_exact(&bits(&want), &bits(&got), m, n).map_err(|e| {
                format!(
                    "{} {rule:?} {m}x{k}x{n} (f32 bit patterns): {e}",
                    kern.name()
                )
            })?;
        }
    }
    Ok(())
}

/// Random activations in `[-3, 3) + offset` (so the zero point moves) and random weights.
fn check_random(shape @ (m, k, n): (usize, usize, usize), seed: u64) {
    let mut rng = Rng::new(seed);
    let offset = rng.f32_unit() * 2.0;
    let a: Vec<f32> = (0..m * k).map(|_| rng.f32_unit() * 3.0 + offset).collect();
    let b = rng.i8s(k * n);
    let p = Params::random(
        &mut rng,
        n,
        seed.is_multiple_of(2),
        !seed.is_multiple_of(3),
        seed % 4 == 1,
    );
    check(shape, &a, &b, &p).unwrap();
}

proptest! {
    #[test]
    fn matches_reference(
        (m, k, n, a, b) in (1..3 * TILE.0, 0..64usize, 1..3 * TILE.1).prop_flat_map(|(m, k, n)| {
            (Just(m), Just(k), Just(n), prop::collection::vec(-4f32..4.0, m * k), prop::collection::vec(any::<i8>(), k * n))
        }),
        per_channel in any::<bool>(),
        with_bias in any::<bool>(),
        relu in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let p = Params::random(&mut Rng::new(seed), n, per_channel, with_bias, relu);
        check((m, k, n), &a, &b, &p).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn ruy_sizes() {
    for (s, &m) in RUY_SIZES.iter().enumerate() {
        for &n in RUY_SIZES {
            for k in [0, 1, 7, 16, 33, 65] {
                check_random((m, k, n), (s * 1000 + n * 10 + k) as u64);
            }
        }
    }
}

#[test]
fn deep_and_narrow() {
    for (i, shape) in [
        (1, DEEP_K, 128),
        (5, DEEP_K, 17),
        (100, 40, 1),
        (1, 1, 1),
        (2, 0, 40),
        (784, 288, 64),
        (70, 577, 65),
    ]
    .into_iter()
    .enumerate()
    {
        check_random(shape, 77 + i as u64);
    }
}

#[test]
fn thread_counts_agree() {
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            for shape in [(257, 70, 40), (1, 900, 300), (300, 576, 64), (3, 700, 45)] {
                check_random(shape, threads as u64);
            }
        });
    }
}

#[test]
fn adversarial_activations() {
    // 70 rows: the second block of rows is quantized inside the first block's tiles.
    let (m, k, n) = (70, 70, 33);
    let mut rng = Rng::new(3);
    let b = rng.i8s(k * n);
    let p = Params::random(&mut rng, n, true, true, false);
    let (scale, zp) = dynamic_qparams(-1.0, 3.0);
    let cases: Vec<(&str, Vec<f32>)> = vec![
        ("all zeros", vec![0.0; m * k]),
        ("constant positive", vec![0.75; m * k]),
        (
            "all negative",
            (0..m * k).map(|i| -1.0 - (i % 7) as f32).collect(),
        ),
        (
            "huge range",
            (0..m * k)
                .map(|i| if i % 2 == 0 { 3e37 } else { -1e37 })
                .collect(),
        ),
        // `hi - lo` overflows to infinity: scale infinite, reciprocal 0; the exact (scalar) path takes over.
        (
            "overflowing range",
            (0..m * k)
                .map(|i| if i % 2 == 0 { 3e38 } else { -3e38 })
                .collect(),
        ),
        // Subnormal scale with a normal reciprocal: the fast path must still agree.
        (
            "small range",
            (0..m * k).map(|i| (i % 5) as f32 * 1e-36).collect(),
        ),
        // The scale rounds to 0 (0 / 0 quantizes to the zero point): the exact path again.
        (
            "tiny range",
            (0..m * k).map(|i| (i % 5) as f32 * 1e-44).collect(),
        ),
        // NaN alone leaves the range finite: only the range pass's NaN flag sends it down the checked path.
        (
            "NaN only",
            (0..m * k)
                .map(|i| match i % 11 {
                    0 => f32::NAN,
                    _ => (i % 13) as f32 * 0.25 - 1.0,
                })
                .collect(),
        ),
        (
            "non-finite values",
            (0..m * k)
                .map(|i| match i % 11 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    2 => f32::NEG_INFINITY,
                    _ => (i % 13) as f32 * 0.25 - 1.0,
                })
                .collect(),
        ),
        (
            // Range [-1, 3] pinned by the first two values; every other value is exactly halfway between two
            // codes after division (ties to even), or its neighbour one ulp up.
            "halfway values",
            (0..m * k)
                .map(|i| match i {
                    0 => -1.0,
                    1 => 3.0,
                    _ => {
                        let x = ((i % 200) as f32 - zp as f32 + 0.5) * scale;
                        if i % 2 == 0 {
                            x
                        } else {
                            f32::from_bits(x.to_bits() + 1)
                        }
                    }
                })
                .collect(),
        ),
    ];
    for (what, a) in cases {
        check((m, k, n), &a, &b, &p).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[test]
fn int8_extreme_weights_and_zero_points() {
    let (m, k, n) = (5, 300, 7);
    let a: Vec<f32> = (0..m * k)
        .map(|i| if i % 2 == 0 { 4.0 } else { -0.5 })
        .collect();
    for (bv, b_zp) in [(-128i8, 127), (127, -128), (-128, -128), (127, 0)] {
        let p = Params {
            scales: vec![0.01],
            zero_points: vec![b_zp],
            bias: None,
            relu: true,
        };
        check((m, k, n), &a, &vec![bv; k * n], &p)
            .unwrap_or_else(|e| panic!("b={bv} zp={b_zp}: {e}"));
    }
}
