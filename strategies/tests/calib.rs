//! Calibrators against their contracts: streaming equals one-shot, known distributions with outliers, the KL
//! rule against a direct TensorRT-style loop, the MSE rule against brute force on the raw samples, bounded
//! memory, ReLU data, and the error cases.

use strategies::calib::{
    CalibError, CalibrationMethod, Calibrator, HistogramCalibrator, StreamingHistogram,
    WEIGHT_MSE_CANDIDATES, kl_range, mse_range, weight_range_minmax, weight_range_mse,
};

/// splitmix64: a small, seeded generator, so the data (and every threshold below) is the same on every run.
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

    /// Laplace(0, 1) by inversion.
    fn laplace(&mut self) -> f32 {
        let u = self.uniform() - 0.5;
        (-u.signum() * (1.0 - 2.0 * u.abs()).ln()) as f32
    }

    fn laplace_vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.laplace() * scale).collect()
    }
}

/// `n` Laplace(0, 1) samples with `outliers` values at 50.0 inserted at random positions.
fn laplace_with_outliers(seed: u64, n: usize, outliers: usize) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut data = rng.laplace_vec(n, 1.0);
    for _ in 0..outliers {
        let at = (rng.next_u64() % data.len() as u64) as usize;
        data.insert(at, 50.0);
    }
    data
}

/// The grid the schemes use (the calibrators' contract, restated independently): symmetric
/// `k·T/(2^(bits-1) − 1)`, `|k| <= 2^(bits-1) − 1`; affine `2^bits` levels over `[lo, hi]` with the zero point
/// rounded half to even so that 0 is exact. Returns `(step, kmin, kmax)`.
fn grid(lo: f64, hi: f64, bits: u32, symmetric: bool) -> (f64, f64, f64) {
    if symmetric {
        let m = ((1u32 << (bits - 1)) - 1) as f64;
        (lo.abs().max(hi.abs()) / m, -m, m)
    } else {
        let levels = ((1u32 << bits) - 1) as f64;
        let s = (hi - lo) / levels;
        let z = if s > 0.0 {
            round(-lo / s).clamp(0.0, levels)
        } else {
            0.0
        };
        (s, -z, levels - z)
    }
}

/// Round half to even (1.5·2^52 trick, exact for |x| < 2^51; `round_ties_even` is a libm call).
fn round(x: f64) -> f64 {
    (x + 6_755_399_441_055_744.0) - 6_755_399_441_055_744.0
}

/// `Σ (x − qdq(x))²` over the data for the range `(lo, hi)`.
fn sq_error(data: &[f32], (lo, hi): (f32, f32), bits: u32, symmetric: bool) -> f64 {
    let (s, kmin, kmax) = grid(lo as f64, hi as f64, bits, symmetric);
    let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
    // Four partial sums: the loop is the hot spot of the brute-force tests.
    let mut acc = [0.0f64; 4];
    for chunk in data.chunks(4) {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            let x = x as f64;
            let d = x - round((x * inv).clamp(kmin, kmax)) * s;
            *a += d * d;
        }
    }
    acc.iter().sum()
}

fn calibrate(
    method: CalibrationMethod,
    bits: u32,
    symmetric: bool,
    batches: &[&[f32]],
) -> Box<dyn Calibrator + Send> {
    let mut c = method.calibrator(bits, symmetric);
    for b in batches {
        c.observe(b).unwrap();
    }
    c
}

fn range_of(method: &str, bits: u32, symmetric: bool, data: &[f32]) -> (f32, f32) {
    calibrate(
        CalibrationMethod::parse(method).unwrap(),
        bits,
        symmetric,
        &[data],
    )
    .range()
    .unwrap()
}

fn histogram_of(c: &dyn Calibrator) -> &StreamingHistogram {
    c.as_any()
        .downcast_ref::<HistogramCalibrator>()
        .expect("a histogram calibrator")
        .histogram()
}

fn histogram(data: &[f32]) -> StreamingHistogram {
    let mut h = StreamingHistogram::default();
    h.observe(data).unwrap();
    h
}

const METHODS: [&str; 5] = ["minmax", "ema", "percentile:99.9", "kl", "mse"];

#[test]
fn streaming_equals_one_shot() {
    // Narrow data first; later batches extend the range upwards (30) and then downwards (-40), so the
    // histogram regrids in both directions mid-stream.
    let mut rng = Rng(11);
    let mut data = rng.laplace_vec(6_000, 0.1);
    data.extend(rng.laplace_vec(10_000, 1.0));
    data.push(30.0);
    data.extend(rng.laplace_vec(3_000, 3.0));
    data.push(-40.0);
    data.extend(rng.laplace_vec(3_000, 1.0));

    for symmetric in [false, true] {
        for method in ["minmax", "percentile:99.9", "kl", "mse"] {
            let method = CalibrationMethod::parse(method).unwrap();
            let one = calibrate(method, 8, symmetric, &[&data]);
            let expected = one.range().unwrap();
            for n in [1, 7, 50] {
                let chunks: Vec<&[f32]> = data.chunks(data.len().div_ceil(n)).collect();
                assert_eq!(chunks.len(), n);
                let streamed = calibrate(method, 8, symmetric, &chunks);
                let got = streamed.range().unwrap();
                assert_eq!(streamed.count(), data.len() as u64);
                if method == CalibrationMethod::MinMax {
                    assert_eq!(got, expected, "minmax is exact");
                    continue;
                }
                // Tolerance: one bin width of the final histogram. The rules read thresholds off bin edges (KL,
                // MSE) or interpolate inside one bin (percentile), so a histogram that differed only in how
                // the stream was binned would move a threshold by at most about one bin. This histogram
                // regrids by exact power-of-two merges, so the streamed counts equal the one-shot counts bin
                // for bin and the ranges in fact agree exactly; the bound is the contract, not the observation.
                let w = histogram_of(one.as_ref()).bin_width() as f32;
                assert_eq!(histogram_of(streamed.as_ref()).bin_width() as f32, w);
                assert!(
                    (got.0 - expected.0).abs() <= w && (got.1 - expected.1).abs() <= w,
                    "{method} sym={symmetric} in {n} batches: {got:?} vs one-shot {expected:?} (bin {w})"
                );
            }
            // Two workers' calibrators merged equal one that saw everything.
            let (a, b) = data.split_at(data.len() / 3);
            let mut left = calibrate(method, 8, symmetric, &[a]);
            left.merge(calibrate(method, 8, symmetric, &[b]).as_ref())
                .unwrap();
            assert_eq!(left.range().unwrap(), expected, "{method} merged");
        }
    }
}

#[test]
fn laplace_with_outliers_minmax_keeps_them_kl_and_percentile_clip() {
    let data = laplace_with_outliers(7, 100_000, 10);
    for symmetric in [true, false] {
        let minmax = range_of("minmax", 8, symmetric, &data);
        let kl = range_of("kl", 8, symmetric, &data);
        let p = range_of("percentile:99.9", 8, symmetric, &data);
        let mse = range_of("mse", 8, symmetric, &data);
        eprintln!("sym={symmetric}: minmax {minmax:?} kl {kl:?} p99.9 {p:?} mse {mse:?}");
        assert!(minmax.1 >= 50.0, "minmax must not clip: {minmax:?}");
        assert!(
            kl.1 < 20.0 && kl.1 > 3.0,
            "kl must clip the outliers: {kl:?}"
        );
        assert!(
            p.1 < 20.0 && p.1 > 3.0,
            "p99.9 must clip the outliers: {p:?}"
        );
        // Laplace(0, 1) has P(|x| > t) = e^-t, so the two-sided 99.9 % range is ±ln(1000) = ±6.9.
        assert!((p.1 - 6.91).abs() < 0.3, "{p:?}");
        // MSE: 10 outliers at 50 hold 10·42² ≈ 17 600 of squared error if clipped near the bulk, against
        // 1e5·(50/127)²/12 ≈ 1 300 of rounding error for the whole range; so the MSE optimum trims them only a
        // little (symmetric: T ≈ 47.5, see `first_order_hi`). It clips, and it must beat min-max on the data.
        assert!(mse.1 < 50.0, "mse clips: {mse:?}");
        let predicted = first_order_hi(100_000, 10, mse.0, symmetric);
        assert!(
            (mse.1 - predicted).abs() < 0.5,
            "mse {mse:?} vs predicted hi {predicted}"
        );
        let (e_mse, e_minmax) = (
            sq_error(&data, mse, 8, symmetric),
            sq_error(&data, minmax, 8, symmetric),
        );
        eprintln!("  squared error: mse {e_mse:.1} minmax {e_minmax:.1}");
        assert!(e_mse < e_minmax, "mse {e_mse} vs minmax {e_minmax}");
    }
}

/// The MSE-optimal upper threshold for `n` Laplace(0, 1) samples plus `k` outliers at 50, to first order:
/// the rounding error `n·step²/12` (step `T/127` symmetric, `(hi − lo)/255` affine) grows with `hi` at the rate
/// the outliers' clipping error `k·(50 − hi)²` falls; the Laplace tail beyond `hi` is negligible there.
fn first_order_hi(n: usize, k: usize, lo: f32, symmetric: bool) -> f32 {
    let (levels, lo) = if symmetric {
        (127.0, 0.0)
    } else {
        (255.0, lo as f64)
    };
    let c = n as f64 / (6.0 * levels * levels);
    let k = k as f64;
    ((2.0 * k * 50.0 + c * lo) / (c + 2.0 * k)) as f32
}

#[test]
fn mse_clips_outliers_that_are_rare_enough() {
    // 1M Laplace samples and 2 outliers at 50: now the rounding error of the full range,
    // 1e6·(50/127)²/12 ≈ 12 900, outweighs clipping the two (d/dT = 0 at T ≈ 14 for symmetric ranges).
    let data = laplace_with_outliers(3, 1_000_000, 2);
    for symmetric in [true, false] {
        let minmax = range_of("minmax", 8, symmetric, &data);
        let mse = range_of("mse", 8, symmetric, &data);
        let (e_mse, e_minmax) = (
            sq_error(&data, mse, 8, symmetric),
            sq_error(&data, minmax, 8, symmetric),
        );
        eprintln!("sym={symmetric}: mse {mse:?} ({e_mse:.0}) minmax {minmax:?} ({e_minmax:.0})");
        // Symmetric: T ≈ 14. Affine: a step is (hi − lo)/255, about half the symmetric one, and the lower
        // tail is clipped too, so hi ≈ 27: still far below the outliers.
        let predicted = first_order_hi(1_000_000, 2, mse.0, symmetric);
        assert!(
            (mse.1 - predicted).abs() < 0.5,
            "mse {mse:?} vs predicted hi {predicted}"
        );
        assert!(mse.1 < 30.0, "{mse:?}");
        assert!(e_mse < 0.75 * e_minmax, "mse {e_mse} vs minmax {e_minmax}");
    }
}

/// TensorRT's entropy calibration written as directly as possible (Migacz 2017): for every candidate `i`,
/// build `P` (first `i` bins, outliers added to the last), quantize the first `i` bins into `levels` groups
/// (split evenly: group `g` is bins `[g·i/levels, (g+1)·i/levels)`), expand each group's mass over its bins where
/// `P` is non-zero, normalize both and sum `p·ln(p/q)`. Returns the chosen `i` (ties: the larger `i`, i.e. less
/// clipping, as the calibrator documents; exact ties do occur between candidates separated by empty bins).
fn reference_kl_bins(hist: &[f64], levels: usize) -> usize {
    reference_kl_bins_atoms(hist, &vec![false; hist.len()], levels)
}

/// [`reference_kl_bins`] with the point masses `atom[j]` left out of `P` and `Q` where the candidate covers
/// them (kl.rs); beyond it they are clipped mass like any other.
fn reference_kl_bins_atoms(hist: &[f64], atom: &[bool], levels: usize) -> usize {
    let mut best = (f64::INFINITY, hist.len());
    let hist_in: Vec<f64> = hist
        .iter()
        .zip(atom)
        .map(|(&c, &a)| if a { 0.0 } else { c })
        .collect();
    for i in (levels..=hist.len()).rev() {
        let mut p: Vec<f64> = hist_in[..i].to_vec();
        p[i - 1] += hist[i..].iter().sum::<f64>();
        let hist = &hist_in;

        let mut q = vec![0.0; i];
        for g in 0..levels {
            let (start, stop) = (g * i / levels, (g + 1) * i / levels);
            let mass: f64 = hist[start..stop].iter().sum();
            let support = (start..stop).filter(|&j| p[j] != 0.0).count();
            for j in start..stop {
                if p[j] != 0.0 {
                    q[j] = mass / support as f64;
                }
            }
        }
        let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
        let mut kl = 0.0;
        for j in 0..i {
            if p[j] != 0.0 {
                kl += if q[j] == 0.0 {
                    f64::INFINITY
                } else {
                    p[j] / sp * ((p[j] / sp) / (q[j] / sq)).ln()
                };
            }
        }
        if kl < best.0 {
            best = (kl, i);
        }
    }
    best.1
}

/// Dense counts of `|x|` (folded) or of `x >= 0` from bin 0, read off the histogram's bins.
fn dense_from_zero(h: &StreamingHistogram, fold: bool) -> Vec<f64> {
    let mut dense = Vec::new();
    for (i, c) in h.nonempty_bins() {
        let k = if i < 0 {
            assert!(fold, "one-sided data expected");
            (-1 - i) as usize
        } else {
            i as usize
        };
        if dense.len() <= k {
            dense.resize(k + 1, 0.0);
        }
        dense[k] += c as f64;
    }
    dense
}

#[test]
fn kl_matches_a_direct_tensorrt_loop() {
    let signed = laplace_with_outliers(5, 100_000, 10);
    let relu: Vec<f32> = signed.iter().map(|&x| x.max(0.0)).collect();
    for (data, symmetric, bits) in [
        (&signed, true, 8),
        (&signed, true, 4),
        (&relu, false, 8),
        (&relu, true, 8),
        (&relu, false, 3),
    ] {
        let h = histogram(data);
        let levels = if symmetric {
            1 << (bits - 1)
        } else {
            1 << bits
        };
        let mut dense = dense_from_zero(&h, symmetric);
        // Exact zeros are left out of the compared distribution (kl.rs): a ReLU's zero spike costs nothing.
        dense[0] -= h.zeros() as f64;
        let i = reference_kl_bins(&dense, levels);
        let max_abs = data.iter().fold(0.0f32, |m, &x| m.max(x.abs())) as f64;
        let expected = (i as f64 * h.bin_width()).min(max_abs) as f32;
        let got = kl_range(&h, bits, symmetric).unwrap();
        eprintln!(
            "kl sym={symmetric} bits={bits}: reference bin {i} of {} -> {expected}, got {got:?}",
            dense.len()
        );
        assert_eq!(got.1, expected, "sym={symmetric} bits={bits}");
        assert!(i < dense.len(), "KL clips the outliers");
    }
}

/// A ReLU output whose mass is mostly a few point masses: a convolution's response to a constant background
/// is one value per channel (the MNIST CNN's first layer: six such values hold 59 % of its non-zero outputs),
/// and the strokes form a continuous tail to 2.7. TensorRT's rule clips just above the highest atom (its `Q`
/// smears each atom over its quantization group, which narrower groups avoid), saturating a quarter of the
/// tail (on the real layer it clipped at 0.34 of 2.77); with atoms left out of the comparison, the threshold
/// covers every atom and nearly all of the tail.
#[test]
fn kl_leaves_point_masses_out_of_the_comparison() {
    let atoms = [0.108f32, 0.164, 0.192, 0.312, 0.333, 0.5];
    let mut rng = Rng(11);
    let mut data = Vec::new();
    for _ in 0..20_000 {
        for &a in &atoms {
            data.push(a);
        }
        for _ in 0..4 {
            // Exponential tail, scale 0.35, capped at 2.7.
            data.push((-(1.0 - rng.uniform()).ln() * 0.35).min(2.7) as f32);
        }
        data.push(0.0);
    }
    let h = histogram(&data);
    let mut dense = dense_from_zero(&h, false);
    dense[0] -= h.zeros() as f64;
    let width = h.bin_width();
    let atom_bins: Vec<usize> = atoms.iter().map(|&a| (a as f64 / width) as usize).collect();
    let is_atom: Vec<bool> = (0..dense.len()).map(|j| atom_bins.contains(&j)).collect();
    let trt = reference_kl_bins(&dense, 256) as f64 * width;
    let i = reference_kl_bins_atoms(&dense, &is_atom, 256);
    let expected = (i as f64 * width).min(2.7) as f32;
    let got = kl_range(&h, 8, false).unwrap();
    let mut tail: Vec<f32> = data
        .iter()
        .copied()
        .filter(|&x| x > 0.0 && !atoms.contains(&x))
        .collect();
    tail.sort_by(f32::total_cmp);
    let p999 = tail[tail.len() * 999 / 1000];
    eprintln!(
        "TensorRT rule {trt}, with atoms left out {got:?} (reference {expected}), tail p99.9 {p999}"
    );
    assert!(
        trt < 0.55,
        "the plain rule clips just above the atoms: {trt}"
    );
    assert_eq!(got, (0.0, expected));
    assert!(got.1 >= p999, "{got:?} vs p99.9 {p999}");
}

/// Laplace(0, 1) at evenly spaced probabilities `(i + 0.5)/n`: the distribution without sampling noise.
fn stratified_laplace(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let u = (i as f64 + 0.5) / n as f64;
            (if u < 0.5 {
                (2.0 * u).ln()
            } else {
                -(2.0 - 2.0 * u).ln()
            }) as f32
        })
        .collect()
}

/// Brute force over the MSE calibrator's candidate thresholds (bin edges `k·w`, the last one clipped to the
/// data's extent), on the raw samples: `(chosen threshold, its error, the grid step w)`.
fn brute_force_mse(
    h: &StreamingHistogram,
    data: &[f32],
    bits: u32,
    symmetric: bool,
) -> (f64, f64, f64) {
    let w = h.bin_width();
    let max = data.iter().fold(0.0f32, |m, &x| m.max(x.abs())) as f64;
    let candidate = |k: usize| (k as f64 * w).min(max);
    let mut best = (f64::INFINITY, 0);
    for k in (1..=(max / w).ceil() as usize).rev() {
        let t = candidate(k) as f32;
        let e = sq_error(data, (if symmetric { -t } else { 0.0 }, t), bits, symmetric);
        if e < best.0 {
            best = (e, k);
        }
    }
    (candidate(best.1), best.0, w)
}

const MSE_CASES: [(bool, bool, u32); 5] = [
    // (ReLU data, symmetric, bits)
    (false, true, 8),
    (false, true, 4),
    (true, false, 8),
    (true, false, 4),
    (true, true, 6),
];

#[test]
fn mse_matches_brute_force_on_raw_samples() {
    // Noise-free samples (no sampling noise in the bulk): where the optimum lies in the dense part of the
    // distribution (4 and 6 bits), the histogram's model of a bin (values uniform over it) is faithful and
    // the histogram optimum is within one candidate step of the brute-force optimum on the raw samples.
    // At 8 bits the optimum lies in the sparse tail (about 1 sample in 10^4 beyond it), where single samples
    // sit alone in bins a fifth of a quantization step wide; a sample's rounding error depends on its phase
    // on the grid, which the histogram cannot know and which moves by about a bin per candidate step, so the
    // raw optimum may move by a few steps (the error cost of that is bounded in the next test).
    let signed = stratified_laplace(30_000);
    let relu: Vec<f32> = signed.iter().map(|&x| x.max(0.0)).collect();
    for (is_relu, symmetric, bits) in MSE_CASES {
        let data = if is_relu { &relu } else { &signed };
        let h = histogram(data);
        let got = mse_range(&h, bits, symmetric).unwrap();
        let (brute, _, w) = brute_force_mse(&h, data, bits, symmetric);
        let steps = (got.1 as f64 - brute).abs() / w;
        eprintln!(
            "mse stratified sym={symmetric} bits={bits}: got {got:?}, brute force {brute} ({steps} steps of {w})"
        );
        assert_eq!(got.0, if symmetric && !is_relu { -got.1 } else { 0.0 });
        let allowed = if bits <= 6 { 1.0 } else { 4.0 };
        assert!(
            steps <= allowed + 1e-9,
            "sym={symmetric} bits={bits}: {} vs {brute}",
            got.1
        );
    }
}

#[test]
fn mse_is_near_brute_force_on_random_samples() {
    // Random samples: where the error curve is flat (8 bits, where the optimum is set by the few samples in
    // the tail), the in-bin positions the histogram forgets move the raw optimum by a few steps, but not the
    // error: the histogram's choice costs at most 0.5 % more than the best candidate on the raw samples.
    let mut rng = Rng(21);
    let signed = rng.laplace_vec(30_000, 1.0);
    let relu: Vec<f32> = signed.iter().map(|&x| x.max(0.0)).collect();
    for (is_relu, symmetric, bits) in MSE_CASES {
        let data = if is_relu { &relu } else { &signed };
        let h = histogram(data);
        let got = mse_range(&h, bits, symmetric).unwrap();
        let e_got = sq_error(data, got, bits, symmetric);
        let (brute, e_brute, w) = brute_force_mse(&h, data, bits, symmetric);
        eprintln!(
            "mse random sym={symmetric} bits={bits}: got {got:?} err {e_got:.4}, brute force {brute} err \
             {e_brute:.4} (step {w})"
        );
        assert!(
            e_got <= e_brute * 1.005,
            "sym={symmetric} bits={bits}: {e_got} vs {e_brute}"
        );
        assert!(
            (got.1 as f64 - brute).abs() <= 8.0 * w,
            "{} vs {brute}",
            got.1
        );
    }
}

#[test]
fn memory_is_bounded() {
    let mut rng = Rng(99);
    for symmetric in [false, true] {
        for method in METHODS {
            let mut c = CalibrationMethod::parse(method)
                .unwrap()
                .calibrator(8, symmetric);
            let before = c.memory_bytes();
            c.observe(&rng.laplace_vec(10_000, 1.0)).unwrap();
            let after_10k = c.memory_bytes();
            // 990k more values whose scale keeps growing, so the histogram regrids repeatedly.
            for step in 0..99 {
                c.observe(&rng.laplace_vec(10_000, 1.0 + step as f32))
                    .unwrap();
            }
            assert_eq!(c.count(), 1_000_000);
            assert_eq!(c.memory_bytes(), after_10k, "{method}");
            assert_eq!(before, after_10k, "{method}");
            assert!(after_10k <= 20 * 1024, "{method}: {after_10k} bytes");
            c.range().unwrap();
        }
    }
}

#[test]
fn relu_data_has_lo_zero() {
    let mut rng = Rng(4);
    let data: Vec<f32> = rng
        .laplace_vec(20_000, 2.0)
        .into_iter()
        .map(|x| x.max(0.0))
        .collect();
    for symmetric in [false, true] {
        for bits in [8, 4] {
            for method in METHODS {
                let (lo, hi) = range_of(method, bits, symmetric, &data);
                assert_eq!(lo, 0.0, "{method} sym={symmetric} bits={bits}");
                assert!(hi > 0.0, "{method} sym={symmetric} bits={bits}");
            }
        }
    }
}

#[test]
fn non_finite_batches_are_rejected_with_their_count() {
    for method in METHODS {
        let mut c = CalibrationMethod::parse(method)
            .unwrap()
            .calibrator(8, false);
        c.observe(&[1.0, -2.0]).unwrap();
        let before = c.range().unwrap();
        let err = c
            .observe(&[0.5, f32::NAN, 3.0, f32::INFINITY, f32::NAN])
            .unwrap_err();
        assert_eq!(err, CalibError::NonFinite { count: 3, len: 5 }, "{method}");
        assert!(err.to_string().contains("3 non-finite"), "{err}");
        assert_eq!(
            c.range().unwrap(),
            before,
            "{method}: the bad batch is not folded in"
        );
        assert_eq!(c.count(), 2);
    }
}

#[test]
fn no_data_and_bad_bits_are_errors() {
    for method in METHODS {
        let m = CalibrationMethod::parse(method).unwrap();
        let mut c = m.calibrator(8, true);
        assert_eq!(c.range(), Err(CalibError::NoData), "{method}");
        c.observe(&[]).unwrap();
        assert_eq!(c.range(), Err(CalibError::NoData), "{method}");
        for bits in [0, 1, 9, 16] {
            let mut c = m.calibrator(bits, false);
            assert_eq!(c.observe(&[1.0]), Err(CalibError::BitsOutOfRange(bits)));
            assert_eq!(c.range(), Err(CalibError::BitsOutOfRange(bits)));
        }
    }
    let err = CalibrationMethod::parse("percentile:abc").unwrap_err();
    assert!(err.to_string().contains("`percentile:abc`"), "{err}");
    let err = CalibrationMethod::parse("entropy").unwrap_err();
    assert!(err.to_string().contains("accepted: minmax, ema"), "{err}");
    assert_eq!(weight_range_minmax(&[]), Err(CalibError::NoData));
    assert_eq!(
        weight_range_mse(&[1.0], 1, true),
        Err(CalibError::BitsOutOfRange(1))
    );
    assert_eq!(
        weight_range_mse(&[1.0, f32::NAN], 8, true),
        Err(CalibError::NonFinite { count: 1, len: 2 })
    );
    let mut kl = CalibrationMethod::Kl.calibrator(8, true);
    let mse = CalibrationMethod::Mse.calibrator(8, true);
    assert!(matches!(
        kl.merge(mse.as_ref()),
        Err(CalibError::CannotMerge { .. })
    ));
}

#[test]
fn weight_mse_searches_the_candidate_grid_exactly() {
    let mut rng = Rng(8);
    let mut w = rng.laplace_vec(4_096, 0.02);
    w[100] = 0.5;
    for symmetric in [true, false] {
        for bits in [8, 4, 2] {
            let minmax = weight_range_minmax(&w).unwrap();
            let got = weight_range_mse(&w, bits, symmetric).unwrap();
            // Independent scan of the same candidates with the test's own quantizer.
            let (min, max) = (minmax.0 as f64, minmax.1 as f64);
            let mut best = (f64::INFINITY, (0.0f32, 0.0f32));
            for i in (1..=WEIGHT_MSE_CANDIDATES).rev() {
                let a = i as f64 / WEIGHT_MSE_CANDIDATES as f64;
                let r = if symmetric {
                    let t = (a * max.max(-min)) as f32;
                    (-t, t)
                } else {
                    ((a * min) as f32, (a * max) as f32)
                };
                let e = sq_error(&w, r, bits, symmetric);
                if e < best.0 {
                    best = (e, r);
                }
            }
            let e_got = sq_error(&w, got, bits, symmetric);
            eprintln!(
                "weights sym={symmetric} bits={bits}: {got:?} (scan {:?})",
                best.1
            );
            assert!(e_got <= best.0 * (1.0 + 1e-9), "{e_got} vs {}", best.0);
            assert!(e_got <= sq_error(&w, minmax, bits, symmetric));
            if bits <= 4 {
                assert!(got.1 < 0.5, "the outlier is clipped at {bits} bits");
                assert!(e_got < sq_error(&w, minmax, bits, symmetric));
            }
        }
    }
    // Uniform weights have no tail to clip at 8 bits.
    let u: Vec<f32> = (0..1000).map(|i| (i as f32 / 999.0) * 2.0 - 1.0).collect();
    let (lo, hi) = weight_range_mse(&u, 8, true).unwrap();
    assert!(hi >= 0.98 && lo <= -0.98, "{lo} {hi}");
}
