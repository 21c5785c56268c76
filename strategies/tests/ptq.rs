//! PTQ refinements against their contracts, on seeded synthetic layers: GPTQ and AdaRound lower the layer-output
//! error below round-to-nearest's on the same grid (and GPTQ *is* round-to-nearest when the inputs are
//! uncorrelated); cross-layer equalization keeps the two-layer function and lowers per-tensor error; bias
//! correction removes the mean output shift; the accumulators stream exactly.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use strategies::ptq::{
    AdaRoundConfig, GptqConfig, HessianAccumulator, MeanAccumulator, PtqError, QuantizedWeights,
    RowReservoir, adaround, correct_bias, equalize_pair, gptq,
};
use strategies::{
    Granularity, ScaleConstraint, Scheme, dequantize_weights, quantize_weights, weight_params,
};

/// splitmix64 with Box-Muller normals: the same data, and so the same measured figures, on every run.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn normal_matrix(&mut self, rows: usize, cols: usize, std: f64) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |_| (self.normal() * std) as f32)
    }
}

/// Calibration rows whose features are correlated as neighbouring pixels or channels are: an AR(1) chain across
/// the `k` features (`x_j = rho x_{j-1} + sqrt(1 - rho^2) z_j`), each feature then scaled by a factor in
/// [0.5, 2], plus `mean` (0 for zero-mean rows).
fn correlated_rows(rows: usize, k: usize, rho: f64, mean: f64, seed: u64) -> Array2<f32> {
    let mut rng = Rng(seed);
    let gain: Vec<f64> = (0..k).map(|_| 0.5 + 1.5 * rng.uniform()).collect();
    let mut x = Array2::zeros((rows, k));
    for mut row in x.axis_iter_mut(Axis(0)) {
        let mut prev = rng.normal();
        for (j, v) in row.iter_mut().enumerate() {
            if j > 0 {
                prev = rho * prev + (1.0 - rho * rho).sqrt() * rng.normal();
            }
            *v = (prev * gain[j] + mean) as f32;
        }
    }
    x
}

/// Gaussian weights with per-output-channel spread (std 0.02 .. 0.2), as trained layers have.
fn layer_weights(k: usize, n: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng(seed);
    let mut w = rng.normal_matrix(k, n, 1.0);
    for mut col in w.axis_iter_mut(Axis(1)) {
        let std = 0.02 + 0.18 * rng.uniform();
        col.mapv_inplace(|v| v * std as f32);
    }
    w
}

fn hessian_of(x: ArrayView2<f32>) -> Array2<f64> {
    let mut acc = HessianAccumulator::new(x.ncols());
    acc.add(x).unwrap();
    acc.hessian().unwrap()
}

/// Round-to-nearest on the min-max grid: the baseline every refinement is measured against.
fn rtn(
    w: ArrayView2<f32>,
    bits: u32,
    scheme: Scheme,
    granularity: Granularity,
) -> QuantizedWeights {
    let params = weight_params(w, bits, scheme, granularity, ScaleConstraint::Float).unwrap();
    QuantizedWeights {
        values: quantize_weights(w, &params).unwrap(),
        params,
    }
}

/// `||X W - X W_q||_F / ||X W||_F`, in f64.
fn relative_output_error(x: ArrayView2<f32>, w: ArrayView2<f32>, q: &QuantizedWeights) -> f64 {
    let x = x.mapv(f64::from);
    let w = w.mapv(f64::from);
    let wq = q.dequantize().unwrap().mapv(f64::from);
    let y = x.dot(&w);
    let e = &y - &x.dot(&wq);
    (e.iter().map(|v| v * v).sum::<f64>() / y.iter().map(|v| v * v).sum::<f64>()).sqrt()
}

// ---------------------------------------------------------------------------------------------------------------
// GPTQ

const K: usize = 128;
const N: usize = 48;
const ROWS: usize = 2048;
const RHO: f64 = 0.9;

/// GPTQ's layer-output error as a fraction of round-to-nearest's, on the same grid granularity.
fn gptq_vs_rtn(scheme: Scheme, granularity: Granularity, seed: u64) -> (f64, f64) {
    // Calibrate on the first half of the rows, measure on the held-out second half.
    let all = correlated_rows(2 * ROWS, K, RHO, 0.0, seed);
    let (calib, x) = all.view().split_at(Axis(0), ROWS);
    let w = layer_weights(K, N, seed + 1);
    let h = hessian_of(calib);
    let q = gptq(w.view(), h.view(), &GptqConfig::new(4, scheme, granularity)).unwrap();
    let base = rtn(w.view(), 4, scheme, granularity);
    let (e_gptq, e_rtn) = (
        relative_output_error(x, w.view(), &q),
        relative_output_error(x, w.view(), &base),
    );
    eprintln!(
        "gptq {scheme} {granularity}: relative output error {e_gptq:.4} vs rtn {e_rtn:.4} (ratio {:.3})",
        e_gptq / e_rtn
    );
    (e_gptq, e_rtn)
}

/// GPTQ's held-out output error over round-to-nearest's must be below this. Measured 0.43 .. 0.47 (symmetric and
/// affine, per channel and per group of 32, 4 bits, rho = 0.9); on uncorrelated inputs the ratio would be 1.
const GPTQ_MAX_RATIO: f64 = 0.6;

#[test]
fn gptq_beats_round_to_nearest_per_channel_4_bit() {
    for scheme in [Scheme::Symmetric, Scheme::Affine] {
        let (g, r) = gptq_vs_rtn(scheme, Granularity::PerChannel, 11);
        assert!(g < GPTQ_MAX_RATIO * r, "{scheme}: gptq {g} vs rtn {r}");
    }
}

#[test]
fn gptq_beats_round_to_nearest_per_group_32_4_bit() {
    for scheme in [Scheme::Symmetric, Scheme::Affine] {
        let (g, r) = gptq_vs_rtn(scheme, Granularity::PerGroup(32), 21);
        assert!(g < GPTQ_MAX_RATIO * r, "{scheme}: gptq {g} vs rtn {r}");
    }
}

/// With `H = I` nothing couples the input rows: GPTQ has no error to spread and rounds every weight to nearest,
/// on exactly the grid [`weight_params`] chooses (per group too: no row moves before its group starts).
#[test]
fn gptq_with_an_identity_hessian_is_round_to_nearest() {
    let (k, n) = (70, 9);
    let w = layer_weights(k, n, 5);
    let h = Array2::<f64>::eye(k);
    for bits in [2, 3, 4, 8] {
        for scheme in [Scheme::Symmetric, Scheme::Affine] {
            for granularity in [
                Granularity::PerTensor,
                Granularity::PerChannel,
                Granularity::PerGroup(32),
                Granularity::PerGroup(5),
            ] {
                let mut config = GptqConfig::new(bits, scheme, granularity);
                config.block_size = 16;
                let q = gptq(w.view(), h.view(), &config).unwrap();
                let base = rtn(w.view(), bits, scheme, granularity);
                assert_eq!(q, base, "{bits} bits {scheme} {granularity}");
            }
        }
    }
}

/// GPTQ written the way the paper derives it (OBQ's update with the full inverse, which is downdated after each
/// row, no Cholesky factor, no lazy batches): the library's version must pick the same integers.
fn gptq_by_definition(
    w: ArrayView2<f32>,
    h: ArrayView2<f64>,
    bits: u32,
    scheme: Scheme,
    granularity: Granularity,
) -> Array2<i8> {
    let (k, n) = w.dim();
    let mut work = w.mapv(f64::from);
    let mut h = h.to_owned();
    for i in 0..k {
        if h[[i, i]] == 0.0 {
            h[[i, i]] = 1.0;
            work.row_mut(i).fill(0.0);
        }
    }
    let damp = 0.01 * h.diag().sum() / k as f64;
    h.diag_mut().mapv_inplace(|d| d + damp);
    let mut hinv = invert(h);
    let as_f32 = |a: ArrayView2<f64>| a.mapv(|v| v as f32);
    let whole = weight_params(
        as_f32(work.view()).view(),
        bits,
        scheme,
        granularity,
        ScaleConstraint::Float,
    )
    .unwrap();
    let mut out = Array2::zeros((k, n));
    let mut group_params = None;
    for i in 0..k {
        if let Granularity::PerGroup(g) = granularity
            && i % g == 0
        {
            let rows = as_f32(work.slice(s![i..(i + g).min(k), ..]));
            group_params = Some(
                weight_params(
                    rows.view(),
                    bits,
                    scheme,
                    Granularity::PerChannel,
                    ScaleConstraint::Float,
                )
                .unwrap(),
            );
        }
        let params = group_params.as_ref().unwrap_or(&whole);
        let row = as_f32(work.slice(s![i..=i, ..]));
        let row_params = if matches!(granularity, Granularity::PerTensor) {
            params.clone()
        } else {
            let mut p = params.clone();
            p.granularity = Granularity::PerChannel;
            p
        };
        let q = quantize_weights(row.view(), &row_params).unwrap();
        let dq = dequantize_weights(q.view(), &row_params).unwrap();
        out.row_mut(i).assign(&q.row(0));
        let d = hinv[[i, i]];
        let err: Vec<f64> = (0..n)
            .map(|j| work[[i, j]] - f64::from(dq[[0, j]]))
            .collect();
        for r in i + 1..k {
            let coef = hinv[[i, r]] / d;
            for j in 0..n {
                work[[r, j]] -= coef * err[j];
            }
        }
        // Remove row and column i from the inverse Hessian of the remaining rows.
        let col = hinv.column(i).to_owned();
        let row_i = hinv.row(i).to_owned();
        for a in 0..k {
            for b in 0..k {
                hinv[[a, b]] -= col[a] * row_i[b] / d;
            }
        }
    }
    out
}

/// Gauss-Jordan inverse with partial pivoting.
fn invert(mut a: Array2<f64>) -> Array2<f64> {
    let k = a.nrows();
    let mut inv = Array2::<f64>::eye(k);
    for c in 0..k {
        let p = (c..k)
            .max_by(|&x, &y| a[[x, c]].abs().total_cmp(&a[[y, c]].abs()))
            .unwrap();
        for j in 0..k {
            a.swap([c, j], [p, j]);
            inv.swap([c, j], [p, j]);
        }
        let d = a[[c, c]];
        for j in 0..k {
            a[[c, j]] /= d;
            inv[[c, j]] /= d;
        }
        for r in (0..k).filter(|&r| r != c) {
            let f = a[[r, c]];
            for j in 0..k {
                a[[r, j]] -= f * a[[c, j]];
                inv[[r, j]] -= f * inv[[c, j]];
            }
        }
    }
    inv
}

#[test]
fn gptq_matches_its_definition() {
    let (k, n) = (45, 7);
    let x = correlated_rows(400, k, RHO, 0.3, 31);
    let w = layer_weights(k, n, 32);
    let h = hessian_of(x.view());
    for scheme in [Scheme::Symmetric, Scheme::Affine] {
        for granularity in [
            Granularity::PerChannel,
            Granularity::PerGroup(8),
            Granularity::PerGroup(20),
        ] {
            let expected = gptq_by_definition(w.view(), h.view(), 3, scheme, granularity);
            for block_size in [1, 6, 16, 128] {
                let mut config = GptqConfig::new(3, scheme, granularity);
                config.block_size = block_size;
                let q = gptq(w.view(), h.view(), &config).unwrap();
                assert_eq!(
                    q.values, expected,
                    "{scheme} {granularity} block {block_size}"
                );
            }
        }
    }
}

/// An input that is always zero has `H[i, i] = 0`: its weight row becomes the zero point and the rest of the
/// layer is quantized as if the row were absent.
#[test]
fn gptq_dead_inputs_quantize_to_the_zero_point() {
    let (k, n) = (40, 6);
    let mut x = correlated_rows(300, k, RHO, 0.0, 41);
    for dead in [0, 17, 39] {
        x.column_mut(dead).fill(0.0);
    }
    let w = layer_weights(k, n, 42);
    let h = hessian_of(x.view());
    for scheme in [Scheme::Symmetric, Scheme::Affine] {
        let q = gptq(
            w.view(),
            h.view(),
            &GptqConfig::new(4, scheme, Granularity::PerChannel),
        )
        .unwrap();
        for dead in [0, 17, 39] {
            for j in 0..n {
                assert_eq!(
                    q.values[[dead, j]] as i32,
                    q.params.zero_points[j],
                    "{scheme} row {dead}"
                );
            }
        }
        let live = rtn(w.view(), 4, scheme, Granularity::PerChannel);
        assert!(
            relative_output_error(x.view(), w.view(), &q)
                < relative_output_error(x.view(), w.view(), &live)
        );
    }
}

#[test]
fn gptq_errors_name_the_problem() {
    let w = Array2::<f32>::zeros((4, 3));
    let config = GptqConfig::new(4, Scheme::Symmetric, Granularity::PerChannel);
    let err = gptq(w.view(), Array2::<f64>::eye(5).view(), &config).unwrap_err();
    assert_eq!(
        err,
        PtqError::ShapeMismatch {
            op: "gptq",
            a: "h",
            a_shape: vec![5, 5],
            b: "w",
            b_shape: vec![4, 3]
        }
    );
    assert!(
        err.to_string().contains("[5, 5]") && err.to_string().contains("[4, 3]"),
        "{err}"
    );

    let mut h = Array2::<f64>::eye(4);
    h[[2, 1]] = f64::NAN;
    assert!(matches!(
        gptq(w.view(), h.view(), &config),
        Err(PtqError::NonFinite { what: "h", ref index, .. }) if *index == vec![2, 1]
    ));

    // Indefinite, and no dampening to rescue it.
    let mut h = Array2::<f64>::eye(4);
    h[[3, 3]] = -2.0;
    let mut undamped = config;
    undamped.percdamp = 0.0;
    let err = gptq(w.view(), h.view(), &undamped).unwrap_err();
    assert!(matches!(err, PtqError::Cholesky { column: 3, .. }), "{err}");
    assert!(err.to_string().contains("column 3"), "{err}");

    let mut bad = config;
    bad.bits = 9;
    assert!(matches!(
        gptq(w.view(), Array2::<f64>::eye(4).view(), &bad),
        Err(PtqError::Scheme(_))
    ));
    bad = config;
    bad.block_size = 0;
    assert!(matches!(
        gptq(w.view(), Array2::<f64>::eye(4).view(), &bad),
        Err(PtqError::InvalidParameter {
            name: "block_size",
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------------------------
// AdaRound

/// AdaRound's and round-to-nearest's held-out relative output errors, per-channel min-max grid.
fn adaround_vs_rtn(
    scheme: Scheme,
    config: &AdaRoundConfig,
    seed: u64,
) -> (f64, f64, QuantizedWeights) {
    let all = correlated_rows(2 * ROWS, K, RHO, 0.0, seed);
    let (calib, x) = all.view().split_at(Axis(0), ROWS);
    let w = layer_weights(K, N, seed + 1);
    let base = rtn(w.view(), 4, scheme, Granularity::PerChannel);
    let q = adaround(w.view(), calib, &base.params, config).unwrap();
    let (e_ada, e_rtn) = (
        relative_output_error(x, w.view(), &q),
        relative_output_error(x, w.view(), &base),
    );
    eprintln!(
        "adaround {scheme}: relative output error {e_ada:.4} vs rtn {e_rtn:.4} (ratio {:.3})",
        e_ada / e_rtn
    );
    (e_ada, e_rtn, q)
}

/// AdaRound's held-out output error over round-to-nearest's (same grid) must be below this. Measured 0.47 / 0.52
/// (symmetric / affine, 4 bits, per channel, default configuration).
const ADAROUND_MAX_RATIO: f64 = 0.6;

#[test]
fn adaround_beats_round_to_nearest_4_bit() {
    for scheme in [Scheme::Symmetric, Scheme::Affine] {
        let (a, r, _) = adaround_vs_rtn(scheme, &AdaRoundConfig::default(), 51);
        assert!(
            a < ADAROUND_MAX_RATIO * r,
            "{scheme}: adaround {a} vs rtn {r}"
        );
    }
}

/// Each learned integer is `floor(w / s) + z` or `ceil(w / s) + z` (clamped to the integer range), never further.
#[test]
fn adaround_only_chooses_floor_or_ceil() {
    let (k, n) = (64, 20);
    let x = correlated_rows(600, k, RHO, 0.0, 61);
    let mut w = layer_weights(k, n, 62);
    // Weights on the grid exactly (w / s an integer): floor == ceil, so they must stay put.
    let base = rtn(w.view(), 3, Scheme::Affine, Granularity::PerGroup(16));
    let on_grid = base.dequantize().unwrap();
    for i in (0..k).step_by(5) {
        w.row_mut(i).assign(&on_grid.row(i));
    }
    for (scheme, granularity) in [
        (Scheme::Symmetric, Granularity::PerChannel),
        (Scheme::Affine, Granularity::PerGroup(16)),
        (Scheme::Affine, Granularity::PerTensor),
    ] {
        let params =
            weight_params(w.view(), 3, scheme, granularity, ScaleConstraint::Float).unwrap();
        let q = adaround(w.view(), x.view(), &params, &AdaRoundConfig::default()).unwrap();
        let (qmin, qmax) = params.qrange().unwrap();
        let mut changed = 0;
        let nearest = quantize_weights(w.view(), &params).unwrap();
        for ((i, j), &v) in q.values.indexed_iter() {
            let c = params.index(i, j, n);
            let r = w[[i, j]] / params.scales[c];
            let z = params.zero_points[c];
            let lo = (r.floor() as i32 + z).clamp(qmin, qmax);
            let hi = (r.ceil() as i32 + z).clamp(qmin, qmax);
            assert!(
                v as i32 == lo || v as i32 == hi,
                "{scheme} {granularity} [{i},{j}] {v} not in {lo}..={hi}"
            );
            changed += usize::from(v != nearest[[i, j]]);
        }
        // It does learn something: some weights leave round-to-nearest.
        assert!(changed > 0, "{scheme} {granularity}");
    }
    let params = weight_params(
        w.view(),
        3,
        Scheme::Affine,
        Granularity::PerGroup(16),
        ScaleConstraint::Float,
    )
    .unwrap();
    let q = adaround(w.view(), x.view(), &params, &AdaRoundConfig::default()).unwrap();
    let exact = quantize_weights(w.view(), &params).unwrap();
    for i in (0..k).step_by(5) {
        assert_eq!(q.values.row(i), exact.row(i), "row {i} was on the grid");
    }
}

#[test]
fn adaround_is_deterministic_for_a_seed() {
    let x = correlated_rows(700, 48, RHO, 0.0, 71);
    let w = layer_weights(48, 16, 72);
    let params = weight_params(
        w.view(),
        4,
        Scheme::Symmetric,
        Granularity::PerChannel,
        ScaleConstraint::Float,
    )
    .unwrap();
    let config = AdaRoundConfig {
        iterations: 200,
        batch_rows: 64,
        seed: 9,
        ..AdaRoundConfig::default()
    };
    let a = adaround(w.view(), x.view(), &params, &config).unwrap();
    let b = adaround(w.view(), x.view(), &params, &config).unwrap();
    assert_eq!(a, b);
    // The seed is the only source of randomness: another one orders the mini-batches differently.
    let other = AdaRoundConfig { seed: 10, ..config };
    let c = adaround(w.view(), x.view(), &params, &other).unwrap();
    assert_ne!(a.values, c.values);
}

#[test]
fn adaround_errors_name_the_problem() {
    let w = Array2::<f32>::ones((6, 4));
    let params = weight_params(
        w.view(),
        4,
        Scheme::Symmetric,
        Granularity::PerChannel,
        ScaleConstraint::Float,
    )
    .unwrap();
    let config = AdaRoundConfig::default();
    let err = adaround(
        w.view(),
        Array2::<f32>::ones((10, 5)).view(),
        &params,
        &config,
    )
    .unwrap_err();
    assert_eq!(
        err,
        PtqError::ShapeMismatch {
            op: "adaround",
            a: "x",
            a_shape: vec![10, 5],
            b: "w",
            b_shape: vec![6, 4]
        }
    );
    let err = adaround(w.t(), Array2::<f32>::ones((10, 4)).view(), &params, &config).unwrap_err();
    assert!(matches!(err, PtqError::Scheme(_)), "{err}");
    assert!(matches!(
        adaround(
            w.view(),
            Array2::<f32>::ones((0, 6)).view(),
            &params,
            &config
        ),
        Err(PtqError::NoSamples { op: "adaround" })
    ));
    let mut x = Array2::<f32>::ones((3, 6));
    x[[1, 2]] = f32::INFINITY;
    assert!(matches!(
        adaround(w.view(), x.view(), &params, &config),
        Err(PtqError::NonFinite { what: "x", ref index, .. }) if *index == vec![1, 2]
    ));
    let bad = AdaRoundConfig {
        warmup: 1.5,
        ..config
    };
    assert!(matches!(
        adaround(w.view(), Array2::<f32>::ones((3, 6)).view(), &params, &bad),
        Err(PtqError::InvalidParameter { name: "warmup", .. })
    ));
}

// ---------------------------------------------------------------------------------------------------------------
// Cross-layer equalization

/// A pair of layers whose channels have very unequal ranges, as batch-norm folding leaves them: layer 1's output
/// channel `i` (weights and bias) scaled by `f_i`, spread over four decades, and layer 2's rows of channel `i`
/// by about `1 / f_i` (times a factor in [0.5, 2]), so every channel still carries a comparable signal. Layer 2
/// reads `m` rows per channel.
fn unequal_pair(
    k1: usize,
    c: usize,
    m: usize,
    n2: usize,
    seed: u64,
) -> (Array2<f32>, Array1<f32>, Array2<f32>) {
    let mut rng = Rng(seed);
    let mut w1 = rng.normal_matrix(k1, c, 1.0);
    let mut w2 = rng.normal_matrix(c * m, n2, 1.0);
    let mut b1 = Array1::from_shape_fn(c, |_| rng.normal() as f32 * 0.5);
    for i in 0..c {
        let f1 = 10f64.powf(4.0 * rng.uniform() - 2.0);
        let f2 = 10f64.powf(0.6 * rng.uniform() - 0.3) / f1;
        w1.column_mut(i).mapv_inplace(|v| v * f1 as f32);
        b1[i] *= f1 as f32;
        w2.slice_mut(s![i * m..(i + 1) * m, ..])
            .mapv_inplace(|v| v * f2 as f32);
    }
    (w1, b1, w2)
}

/// The pair's output on inputs `x` (`[rows, m * k1]`): layer 1 runs on each of the `m` slices of a row (the `m`
/// taps an im2col row of layer 2 gathers), ReLU, and layer 2 reads the `c * m` values channel-major.
fn pair_forward(
    x: ArrayView2<f32>,
    w1: ArrayView2<f32>,
    b1: &Array1<f32>,
    w2: ArrayView2<f32>,
    m: usize,
) -> Array2<f64> {
    let (k1, c) = w1.dim();
    let rows = x.nrows();
    let (w1, w2) = (w1.mapv(f64::from), w2.mapv(f64::from));
    let mut z = Array2::<f64>::zeros((rows, c * m));
    for t in 0..m {
        let xt = x.slice(s![.., t * k1..(t + 1) * k1]).mapv(f64::from);
        let y = xt.dot(&w1);
        for r in 0..rows {
            for i in 0..c {
                z[[r, i * m + t]] = (y[[r, i]] + f64::from(b1[i])).max(0.0);
            }
        }
    }
    z.dot(&w2)
}

fn max_abs_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn equalization_preserves_the_function_through_relu() {
    for m in [1, 4] {
        let (k1, c, n2) = (20, 12, 7);
        let (w1, b1, w2) = unequal_pair(k1, c, m, n2, 81 + m as u64);
        let x = Rng(83).normal_matrix(50, m * k1, 1.0);
        let before = pair_forward(x.view(), w1.view(), &b1, w2.view(), m);
        let (mut e1, mut eb, mut e2) = (w1.clone(), b1.clone(), w2.clone());
        let scales = equalize_pair(e1.view_mut(), Some(eb.view_mut()), e2.view_mut()).unwrap();
        assert_eq!(scales.len(), c);
        let after = pair_forward(x.view(), e1.view(), &eb, e2.view(), m);
        // Only the f32 rounding of the rescaled weights differs: a few ulps of each product, summed.
        let scale = before.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let diff = max_abs_diff(&before, &after);
        assert!(
            diff <= 1e-5 * scale,
            "m={m}: max difference {diff} at output scale {scale}"
        );
        // The ranges are now equal channel by channel.
        for i in 0..c {
            let r1 = e1.column(i).iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let r2 = e2
                .slice(s![i * m..(i + 1) * m, ..])
                .iter()
                .fold(0.0f32, |a, v| a.max(v.abs()));
            assert!(
                (r1 - r2).abs() <= 1e-5 * r1,
                "m={m} channel {i}: {r1} vs {r2}"
            );
        }
    }
}

/// Per-tensor quantization of both layers: equalizing first lowers the pair's output error. Measured relative
/// output error before -> after: 0.771 -> 0.0088 at 8 bits (ratio 0.011), 0.984 -> 0.157 at 4 bits (0.159).
#[test]
fn equalization_lowers_per_tensor_quantization_error() {
    let (k1, c, n2) = (32, 24, 10);
    let (w1, b1, w2) = unequal_pair(k1, c, 1, n2, 91);
    let x = Rng(92).normal_matrix(400, k1, 1.0);
    let reference = pair_forward(x.view(), w1.view(), &b1, w2.view(), 1);
    let fake_quant = |w: &Array2<f32>, bits: u32| {
        rtn(w.view(), bits, Scheme::Symmetric, Granularity::PerTensor)
            .dequantize()
            .unwrap()
    };
    let error = |w1: &Array2<f32>, b1: &Array1<f32>, w2: &Array2<f32>, bits: u32| {
        let y = pair_forward(
            x.view(),
            fake_quant(w1, bits).view(),
            b1,
            fake_quant(w2, bits).view(),
            1,
        );
        let e = &y - &reference;
        (e.iter().map(|v| v * v).sum::<f64>() / reference.iter().map(|v| v * v).sum::<f64>()).sqrt()
    };
    let (mut e1, mut eb, mut e2) = (w1.clone(), b1.clone(), w2.clone());
    equalize_pair(e1.view_mut(), Some(eb.view_mut()), e2.view_mut()).unwrap();
    for (bits, max_ratio) in [(8, 0.05), (4, 0.3)] {
        let (before, after) = (error(&w1, &b1, &w2, bits), error(&e1, &eb, &e2, bits));
        eprintln!(
            "cle {bits} bits: relative output error {before:.4} -> {after:.4} (ratio {:.3})",
            after / before
        );
        assert!(
            after < max_ratio * before,
            "{bits} bits: {before} -> {after}"
        );
    }
}

#[test]
fn equalization_scales_are_positive_and_finite_and_skip_dead_channels() {
    let (mut w1, mut b1, mut w2) = unequal_pair(8, 5, 3, 4, 101);
    // Channel 1 is dead in layer 1, channel 3 unused by layer 2.
    w1.column_mut(1).fill(0.0);
    w2.slice_mut(s![9..12, ..]).fill(0.0);
    // Channel 4 is extreme: 1e-30 against 1e30 (the ratio leaves f32's range, its square root does not).
    w1.column_mut(4).mapv_inplace(|v| v * 1e-30);
    w2.slice_mut(s![12..15, ..]).mapv_inplace(|v| v * 1e30);
    let (w1_before, b1_before, w2_before) = (w1.clone(), b1.clone(), w2.clone());
    let scales = equalize_pair(w1.view_mut(), Some(b1.view_mut()), w2.view_mut()).unwrap();
    assert!(
        scales.iter().all(|s| s.is_finite() && *s > 0.0),
        "{scales:?}"
    );
    for dead in [1, 3] {
        assert_eq!(scales[dead], 1.0);
        assert_eq!(w1.column(dead), w1_before.column(dead));
        assert_eq!(b1[dead], b1_before[dead]);
        assert_eq!(
            w2.slice(s![dead * 3..dead * 3 + 3, ..]),
            w2_before.slice(s![dead * 3..dead * 3 + 3, ..])
        );
    }
    assert!(scales[4] < 1e-25, "{}", scales[4]);
    // Without a bias, and a layer 2 whose rows are not whole channels.
    let mut w2_bad = Array2::<f32>::ones((7, 4));
    let err = equalize_pair(w1.view_mut(), None, w2_bad.view_mut()).unwrap_err();
    assert_eq!(
        err,
        PtqError::ShapeMismatch {
            op: "equalize_pair",
            a: "w2",
            a_shape: vec![7, 4],
            b: "w1",
            b_shape: vec![8, 5]
        }
    );
    let mut short_bias = Array1::<f32>::zeros(4);
    assert!(matches!(
        equalize_pair(w1.view_mut(), Some(short_bias.view_mut()), w2.view_mut()),
        Err(PtqError::ShapeMismatch { a: "b1", .. })
    ));
}

// ---------------------------------------------------------------------------------------------------------------
// Bias correction

/// Inputs with a non-zero mean (post-ReLU-like): quantization shifts every output channel's mean; the corrected
/// bias removes the shift on the calibration rows (up to float rounding) and on held-out rows (up to sampling
/// noise). Measured on held-out rows: mean |shift| 0.171 -> 0.0096.
#[test]
fn bias_correction_removes_the_mean_output_shift() {
    let (k, n) = (96, 24);
    let all = correlated_rows(4000, k, 0.5, 1.0, 111);
    let (calib, held_out) = all.view().split_at(Axis(0), 2000);
    let w = layer_weights(k, n, 112);
    let bias = Array1::from_shape_fn(n, |j| 0.1 * j as f32 - 1.0);
    let q = rtn(w.view(), 4, Scheme::Symmetric, Granularity::PerTensor);
    let wq = q.dequantize().unwrap();

    let mut mean = MeanAccumulator::new(k);
    for batch in calib.axis_chunks_iter(Axis(0), 300) {
        mean.add(batch).unwrap();
    }
    let corrected = correct_bias(
        w.view(),
        wq.view(),
        Some(bias.view()),
        mean.mean().unwrap().view(),
    )
    .unwrap();

    // Mean over rows of (x W_q + b_q) - (x W + b), per channel.
    let shift = |x: ArrayView2<f32>, b_q: &Array1<f32>| -> Vec<f64> {
        let x = x.mapv(f64::from);
        let d = x.dot(&(wq.mapv(f64::from) - w.mapv(f64::from)));
        let rows = x.nrows() as f64;
        (0..n)
            .map(|j| d.column(j).sum() / rows + f64::from(b_q[j]) - f64::from(bias[j]))
            .collect()
    };
    let mean_abs = |v: &[f64]| v.iter().map(|x| x.abs()).sum::<f64>() / v.len() as f64;
    let (before, after) = (
        mean_abs(&shift(calib, &bias)),
        mean_abs(&shift(calib, &corrected)),
    );
    // On the rows it was measured on the correction is exact up to f32 rounding of the bias.
    assert!(before > 0.01, "the test data must shift the mean: {before}");
    assert!(after < 1e-5, "calibration rows: {before} -> {after}");
    let (before, after) = (
        mean_abs(&shift(held_out, &bias)),
        mean_abs(&shift(held_out, &corrected)),
    );
    eprintln!("bias correction, held-out rows: mean |shift| {before:.4} -> {after:.4}");
    assert!(after < 0.1 * before, "held-out rows: {before} -> {after}");

    // No bias reads as zeros.
    let from_zero = correct_bias(w.view(), wq.view(), None, mean.mean().unwrap().view()).unwrap();
    for j in 0..n {
        assert!((from_zero[j] + bias[j] - corrected[j]).abs() < 1e-5);
    }
    let err = correct_bias(w.view(), wq.t(), None, mean.mean().unwrap().view()).unwrap_err();
    assert_eq!(
        err,
        PtqError::ShapeMismatch {
            op: "correct_bias",
            a: "w_q",
            a_shape: vec![n, k],
            b: "w",
            b_shape: vec![k, n]
        }
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Accumulators

/// Values on a 2^-8 grid in [-4, 4]: every product is a multiple of 2^-16 below 16, so sums of up to 2^33 of
/// them are exact in f64 and any summation order gives the same bits.
fn dyadic_rows(rows: usize, k: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng(seed);
    Array2::from_shape_fn((rows, k), |_| {
        ((rng.next_u64() % 2049) as f32 - 1024.0) / 256.0
    })
}

#[test]
fn hessian_streaming_equals_one_shot() {
    let (k, rows) = (37, 500);
    let x = dyadic_rows(rows, k, 121);
    let mut one_shot = HessianAccumulator::new(k);
    one_shot.add(x.view()).unwrap();
    for batch in [1, 7, 64, 499] {
        let mut streamed = HessianAccumulator::new(k);
        for chunk in x.axis_chunks_iter(Axis(0), batch) {
            streamed.add(chunk).unwrap();
        }
        assert_eq!(streamed.rows(), rows as u64);
        assert_eq!(
            streamed.hessian().unwrap(),
            one_shot.hessian().unwrap(),
            "batch {batch}"
        );
    }
    // Merging two halves (two threads or shards) is the same too.
    let (a, b) = x.view().split_at(Axis(0), 200);
    let (mut left, mut right) = (HessianAccumulator::new(k), HessianAccumulator::new(k));
    left.add(a).unwrap();
    right.add(b).unwrap();
    left.merge(&right).unwrap();
    assert_eq!(left.hessian().unwrap(), one_shot.hessian().unwrap());
    // And it is 2 X^T X / N.
    let xf = x.mapv(f64::from);
    let direct = xf.t().dot(&xf) * (2.0 / rows as f64);
    assert_eq!(one_shot.hessian().unwrap(), direct);
}

#[test]
fn accumulators_reject_bad_batches_and_stay_unchanged() {
    let mut h = HessianAccumulator::new(3);
    assert!(matches!(h.hessian(), Err(PtqError::NoSamples { .. })));
    let err = h.add(Array2::<f32>::zeros((2, 4)).view()).unwrap_err();
    assert!(
        err.to_string().contains("[2, 4]") && err.to_string().contains("[3]"),
        "{err}"
    );
    let mut bad = Array2::<f32>::ones((2, 3));
    bad[[1, 0]] = f32::NAN;
    assert!(matches!(h.add(bad.view()), Err(PtqError::NonFinite { .. })));
    assert_eq!(h.rows(), 0);

    let mut m = MeanAccumulator::new(3);
    assert!(matches!(m.mean(), Err(PtqError::NoSamples { .. })));
    assert!(m.add(bad.view()).is_err());
    m.add(
        Array2::from_shape_vec((2, 3), vec![1.0, 2.0, 3.0, 3.0, 2.0, 1.0])
            .unwrap()
            .view(),
    )
    .unwrap();
    assert_eq!(m.mean().unwrap().to_vec(), vec![2.0, 2.0, 2.0]);
}

/// The reservoir keeps at most its capacity, only rows it was given, the same rows for the same seed however
/// the stream is batched, and a roughly uniform sample.
#[test]
fn row_reservoir_is_bounded_uniform_and_deterministic() {
    let (k, rows, capacity) = (3, 10_000, 500);
    // Row r is [r, r, r].
    let x = Array2::from_shape_fn((rows, k), |(r, _)| r as f32);
    let sample = |batch: usize, seed: u64| {
        let mut res = RowReservoir::new(k, capacity, seed);
        for chunk in x.axis_chunks_iter(Axis(0), batch) {
            res.add(chunk).unwrap();
        }
        assert_eq!(res.seen(), rows as u64);
        res.rows()
    };
    let a = sample(64, 5);
    assert_eq!(a.dim(), (capacity, k));
    assert_eq!(a, sample(1000, 5));
    assert_ne!(a, sample(64, 6));
    let mut ids: Vec<usize> = a.rows().into_iter().map(|r| r[0] as usize).collect();
    assert!(a.rows().into_iter().all(|r| r[0] == r[1] && r[1] == r[2]));
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), capacity, "rows are sampled without replacement");
    // Uniform: each tenth of the stream holds about a tenth of the sample (50 +- 5 sigma, sigma ~ 6.7).
    for tenth in 0..10 {
        let count = ids.iter().filter(|&&r| r / 1000 == tenth).count();
        assert!((17..=83).contains(&count), "tenth {tenth}: {count}");
    }
    // Fewer rows than the capacity: all of them, in order.
    let mut small = RowReservoir::new(k, capacity, 1);
    small.add(x.slice(s![..10, ..])).unwrap();
    assert_eq!(small.rows(), x.slice(s![..10, ..]));
}

// ---------------------------------------------------------------------------------------------------------------
// Timing on the MNIST CNN's layer shapes (`cargo test -p strategies --test ptq -- --ignored --nocapture`)

/// GPTQ and AdaRound (default configuration) on conv2 (288x64, im2col rows) and fc1 (3136x128) shapes of the
/// MNIST CNN, on synthetic correlated rows: prints the wall time and the held-out error ratio against
/// round-to-nearest (4 bits, symmetric, per channel).
#[test]
#[ignore = "timing on model-sized layers; seconds"]
fn mnist_layer_shapes_timing() {
    for (k, n, rows) in [(288, 64, 4096), (3136, 128, 1024)] {
        let all = correlated_rows(2 * rows, k, RHO, 0.0, 131);
        let (calib, x) = all.view().split_at(Axis(0), rows);
        let w = layer_weights(k, n, 132);
        let base = rtn(w.view(), 4, Scheme::Symmetric, Granularity::PerChannel);
        let e_rtn = relative_output_error(x, w.view(), &base);

        let t = std::time::Instant::now();
        let mut acc = HessianAccumulator::new(k);
        for chunk in calib.axis_chunks_iter(Axis(0), 256) {
            acc.add(chunk).unwrap();
        }
        let h = acc.hessian().unwrap();
        let t_h = t.elapsed();
        let t = std::time::Instant::now();
        let config = GptqConfig::new(4, Scheme::Symmetric, Granularity::PerChannel);
        let g = gptq(w.view(), h.view(), &config).unwrap();
        let t_g = t.elapsed();
        let t = std::time::Instant::now();
        let a = adaround(w.view(), calib, &base.params, &AdaRoundConfig::default()).unwrap();
        let t_a = t.elapsed();
        println!(
            "{k}x{n}, {rows} rows: hessian {t_h:.2?}, gptq {t_g:.2?} (error ratio {:.3}), adaround {t_a:.2?} \
             (error ratio {:.3})",
            relative_output_error(x, w.view(), &g) / e_rtn,
            relative_output_error(x, w.view(), &a) / e_rtn,
        );
    }
}
