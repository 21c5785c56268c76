//! Round-trip error budgets and layout checks for every weight scheme: linear (bits 2..=8, symmetric / affine,
//! tensor / channel / group, float / power-of-two scales), dense bit packing, and logarithmic codes.

use ndarray::{Array2, ArrayView2};
use strategies::log::log_exponents;
use strategies::pow2::is_pow2;
use strategies::{
    Granularity, QParams, ScaleConstraint, Scheme, SchemeError, activation_params,
    dequantize_weights, log_decode_lut_i8, log_dequantize, log_dequantize_weights, log_params,
    log_quantize, log_quantize_weights, log_to_int8, minmax_range, pack_bits, pack_codes,
    packed_len, qrange, quantize_weights, quantize_weights_i8, shift_for_multiplier, unpack_bits,
    unpack_codes, weight_params, weight_params_i8, weight_params_try_with, weight_params_with,
};

const SCHEMES: [Scheme; 2] = [Scheme::Symmetric, Scheme::Affine];
const CONSTRAINTS: [ScaleConstraint; 2] = [ScaleConstraint::Float, ScaleConstraint::PowerOfTwo];
/// Tensor, channel, a group size that divides nothing special, and a ragged one (37 = 7 * 5 + 2).
const GRANULARITIES: [Granularity; 4] = [
    Granularity::PerTensor,
    Granularity::PerChannel,
    Granularity::PerGroup(32),
    Granularity::PerGroup(5),
];

/// Half a quantization step, plus float slack: `w / scale` and `(q - z) * scale` each round once, by at most
/// half an ulp of a value no larger than `|w| + scale`; 4 ulps leaves room for both.
fn half_step_budget(scale: f32, w: f32) -> f32 {
    0.5 * scale + 4.0 * f32::EPSILON * (w.abs() + scale)
}

/// Deterministic xorshift64: uniform in [0, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [-1, 1).
    fn signed(&mut self) -> f32 {
        (2.0 * self.next() - 1.0) as f32
    }
    /// Standard Laplace (heavy tails, mass near zero), by inverting its CDF.
    fn laplace(&mut self) -> f32 {
        let u = self.next() - 0.5;
        (-u.signum() * (1.0 - 2.0 * u.abs()).ln()) as f32
    }
}

/// `[37, 6]` with columns and row bands of very different magnitudes, one all-positive and one all-zero column.
fn test_matrix() -> Array2<f32> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    Array2::from_shape_fn((37, 6), |(i, j)| {
        let row_mag = [0.01f32, 1.0, 30.0][i % 3];
        let v = rng.signed() * row_mag * [1.0f32, 0.5, 4.0, 1e-3, 1.0, 0.0][j];
        if j == 4 { v.abs() } else { v }
    })
}

fn mse(a: ArrayView2<f32>, b: ArrayView2<f32>) -> f64 {
    let sum: f64 = a
        .iter()
        .zip(b.iter())
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum();
    sum / a.len() as f64
}

fn round_trip(w: ArrayView2<f32>, p: &QParams) -> Array2<f32> {
    dequantize_weights(quantize_weights(w, p).unwrap().view(), p).unwrap()
}

/// The clipping interval a slice range `[lo, hi]` asks for: widened to include 0, and symmetric about 0 for
/// the symmetric scheme.
fn clipping_interval(lo: f32, hi: f32, scheme: Scheme) -> (f32, f32) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    match scheme {
        Scheme::Symmetric => (-lo.abs().max(hi), lo.abs().max(hi)),
        Scheme::Affine => (lo, hi),
    }
}

/// Every element inside its slice's clipping interval lands within half a step of itself; every element lands
/// within half a step of its value clamped to the interval the integer levels span (which is wider than the
/// clipping interval when a power-of-two scale was rounded up), and that span covers the clipping interval to
/// within half a step. With min-max ranges nothing is outside, so that is the plain round-trip bound.
fn check_round_trip(
    w: ArrayView2<f32>,
    bits: u32,
    scheme: Scheme,
    granularity: Granularity,
    constraint: ScaleConstraint,
    shrink: f32,
) {
    let mut ranges = Vec::new();
    let p = weight_params_with(w, bits, scheme, granularity, constraint, |v| {
        let (lo, hi) = minmax_range(v);
        ranges.push((lo * shrink, hi * shrink));
        (lo * shrink, hi * shrink)
    })
    .unwrap();
    let (k, n) = w.dim();
    let tag = format!("{bits}-bit {scheme} {granularity} {constraint} shrink {shrink}");
    assert_eq!(
        p.scales.len(),
        granularity.param_count(k, n).unwrap(),
        "{tag}"
    );
    assert_eq!(ranges.len(), p.scales.len(), "{tag}");
    let (qmin, qmax) = qrange(bits, scheme).unwrap();
    let q = quantize_weights(w, &p).unwrap();
    assert!(
        q.iter().all(|&v| (qmin..=qmax).contains(&i32::from(v))),
        "{tag}"
    );
    assert!(
        p.zero_points
            .iter()
            .all(|&z| (qmin..=qmax).contains(&z) && (scheme == Scheme::Affine || z == 0)),
        "{tag}"
    );
    let spans: Vec<(f32, f32)> = (0..p.scales.len())
        .map(|c| {
            let (s, z) = (p.scales[c], p.zero_points[c]);
            let span = ((qmin - z) as f32 * s, (qmax - z) as f32 * s);
            let (lo, hi) = clipping_interval(ranges[c].0, ranges[c].1, scheme);
            assert!(
                span.0 <= lo + half_step_budget(s, lo) && span.1 >= hi - half_step_budget(s, hi),
                "{tag} entry {c}: levels span {span:?}, clipping interval [{lo}, {hi}]"
            );
            span
        })
        .collect();
    let back = dequantize_weights(q.view(), &p).unwrap();
    for ((i, j), &v) in w.indexed_iter() {
        let c = p.index(i, j, n);
        let budget = half_step_budget(p.scales[c], v);
        let (lo, hi) = clipping_interval(ranges[c].0, ranges[c].1, scheme);
        let err = (back[[i, j]] - v).abs();
        if (lo..=hi).contains(&v) {
            assert!(
                err <= budget,
                "{tag} [{i},{j}] w {v} in [{lo}, {hi}] back {} err {err} > {budget}",
                back[[i, j]]
            );
        }
        let target = v.clamp(spans[c].0, spans[c].1);
        let err = (back[[i, j]] - target).abs();
        assert!(
            err <= budget,
            "{tag} [{i},{j}] w {v} span {:?} back {} err {err} > {budget}",
            spans[c],
            back[[i, j]]
        );
    }
}

#[test]
fn round_trip_error_is_at_most_half_a_step_for_every_scheme_granularity_and_width() {
    let w = test_matrix();
    for bits in 2..=8 {
        for scheme in SCHEMES {
            for granularity in GRANULARITIES {
                for constraint in CONSTRAINTS {
                    check_round_trip(w.view(), bits, scheme, granularity, constraint, 1.0);
                }
            }
        }
    }
}

#[test]
fn clipped_ranges_saturate_to_within_half_a_step_of_the_clip() {
    let w = test_matrix();
    for bits in [2, 4, 8] {
        for scheme in SCHEMES {
            for granularity in GRANULARITIES {
                for constraint in CONSTRAINTS {
                    check_round_trip(w.view(), bits, scheme, granularity, constraint, 0.5);
                }
            }
        }
    }
}

#[test]
fn eight_bit_wrappers_are_the_general_eight_bit_float_case() {
    let w = test_matrix();
    for scheme in SCHEMES {
        for granularity in [Granularity::PerTensor, Granularity::PerChannel] {
            let a = weight_params_i8(w.view(), scheme, granularity).unwrap();
            let b =
                weight_params(w.view(), 8, scheme, granularity, ScaleConstraint::Float).unwrap();
            assert_eq!(a, b);
            assert_eq!(
                quantize_weights_i8(w.view(), &a),
                quantize_weights(w.view(), &b).unwrap()
            );
            // The harness indexes per-tensor / per-channel entries by `len > 1`; that layout is unchanged.
            assert_eq!(
                a.scales.len(),
                if granularity == Granularity::PerTensor {
                    1
                } else {
                    w.ncols()
                }
            );
        }
    }
}

#[test]
fn per_group_beats_per_channel_when_row_magnitudes_differ() {
    // Rows 0..32 are ~100x smaller than rows 32..64: one scale per column rounds the small half away.
    let mut rng = Rng(7);
    let w = Array2::from_shape_fn((64, 8), |(i, _)| {
        rng.signed() * if i < 32 { 0.01 } else { 1.0 }
    });
    for bits in [4, 8] {
        for scheme in SCHEMES {
            let f = ScaleConstraint::Float;
            let pc = weight_params(w.view(), bits, scheme, Granularity::PerChannel, f).unwrap();
            let pg = weight_params(w.view(), bits, scheme, Granularity::PerGroup(32), f).unwrap();
            let (ec, eg) = (round_trip(w.view(), &pc), round_trip(w.view(), &pg));
            let small = ndarray::s![..32, ..];
            let (mse_c, mse_g) = (mse(w.view(), ec.view()), mse(w.view(), eg.view()));
            let (small_c, small_g) = (
                mse(w.slice(small), ec.slice(small)),
                mse(w.slice(small), eg.slice(small)),
            );
            assert!(
                mse_g < mse_c,
                "{bits}-bit {scheme}: group {mse_g} channel {mse_c}"
            );
            assert!(
                small_g * 100.0 < small_c,
                "{bits}-bit {scheme} small rows: group {small_g} channel {small_c}"
            );
        }
    }
}

#[test]
fn the_ragged_last_group_gets_its_own_scale() {
    // k = 37, g = 5: groups 0..7 hold 5 rows, group 7 holds rows 35 and 36.
    let mut w = Array2::from_elem((37, 3), 0.1f32);
    w[[36, 1]] = 8.0;
    let p = weight_params(
        w.view(),
        4,
        Scheme::Symmetric,
        Granularity::PerGroup(5),
        ScaleConstraint::Float,
    )
    .unwrap();
    assert_eq!(p.scales.len(), 8 * 3);
    assert_eq!(p.index(36, 1, 3), 7 * 3 + 1);
    assert_eq!(p.index(34, 1, 3), 6 * 3 + 1);
    assert_eq!(p.scales[7 * 3 + 1], 8.0 / 7.0);
    assert_eq!(p.scales[6 * 3 + 1], 0.1 / 7.0);
    assert_eq!(p.scales[7 * 3], 0.1 / 7.0);
}

#[test]
fn pack_unpack_round_trips_every_width_and_ragged_length() {
    let mut rng = Rng(42);
    for bits in 1..=8u32 {
        let (lo, hi) = (-(1i32 << (bits - 1)), (1i32 << (bits - 1)) - 1);
        for len in 1..=33usize {
            let mut values: Vec<i8> = (0..len)
                .map(|_| (lo + (rng.next() * f64::from(hi - lo + 1)) as i32) as i8)
                .collect();
            // Both extremes, at the ends where ragged tails live.
            values[0] = lo as i8;
            values[len - 1] = hi as i8;
            let packed = pack_bits(&values, bits).unwrap();
            assert_eq!(
                packed.len(),
                (len * bits as usize).div_ceil(8),
                "{bits} bits x {len}"
            );
            assert_eq!(packed.len(), packed_len(len, bits));
            assert_eq!(
                unpack_bits(&packed, bits, len).unwrap(),
                values,
                "{bits} bits x {len}"
            );

            let codes: Vec<u8> = values
                .iter()
                .map(|&v| (v as u8) & ((1u16 << bits) - 1) as u8)
                .collect();
            let packed_codes = pack_codes(&codes, bits).unwrap();
            assert_eq!(
                packed_codes, packed,
                "two's complement codes pack identically"
            );
            assert_eq!(unpack_codes(&packed_codes, bits, len).unwrap(), codes);
            // Unused bits of the last byte are zero.
            let used = len * bits as usize % 8;
            if used != 0 {
                assert_eq!(packed[packed.len() - 1] >> used, 0, "{bits} bits x {len}");
            }
        }
    }
}

#[test]
fn four_bit_packing_is_low_nibble_first_and_two_bit_is_four_per_byte() {
    // -2 is 0b1110 in 4-bit two's complement.
    assert_eq!(pack_bits(&[1, -2, 7], 4).unwrap(), vec![0xE1, 0x07]);
    // 2-bit codes 01 11 00 10 | 01.
    assert_eq!(
        pack_bits(&[1, -1, 0, -2, 1], 2).unwrap(),
        vec![0b10_00_11_01, 0b01]
    );
    assert_eq!(pack_bits(&[-128, 127], 8).unwrap(), vec![0x80, 0x7f]);
}

#[test]
fn packing_rejects_what_does_not_fit_and_names_it() {
    let err = pack_bits(&[0, 8], 4).unwrap_err();
    assert_eq!(
        err,
        SchemeError::ValueOutOfRange {
            index: 1,
            value: 8,
            bits: 4
        }
    );
    assert!(err.to_string().contains("value 8 at index 1"), "{err}");
    assert_eq!(
        pack_codes(&[4], 2),
        Err(SchemeError::CodeOutOfRange {
            index: 0,
            code: 4,
            bits: 2
        })
    );
    assert_eq!(
        unpack_bits(&[0, 0], 5, 4),
        Err(SchemeError::PackedTooShort {
            len: 4,
            bits: 5,
            needed: 3,
            got: 2
        })
    );
}

#[test]
fn power_of_two_scales_are_exact_powers_at_least_the_float_scale() {
    let w = test_matrix();
    for bits in 2..=8 {
        for scheme in SCHEMES {
            for granularity in GRANULARITIES {
                let float =
                    weight_params(w.view(), bits, scheme, granularity, ScaleConstraint::Float)
                        .unwrap();
                let pow2 = weight_params(
                    w.view(),
                    bits,
                    scheme,
                    granularity,
                    ScaleConstraint::PowerOfTwo,
                )
                .unwrap();
                for (&f, &p) in float.scales.iter().zip(&pow2.scales) {
                    assert!(is_pow2(p), "{bits}-bit {scheme} {granularity}: {p}");
                    assert!(
                        f <= p && p < 2.0 * f,
                        "{bits}-bit {scheme} {granularity}: {f} -> {p}"
                    );
                }
            }
        }
    }
    for (lo, hi) in [
        (0.0, 6.0),
        (-1.0, 3.0),
        (-2.5, 0.1),
        (0.0, 0.0),
        (-1e-3, 1e4),
    ] {
        for scheme in SCHEMES {
            let f = activation_params(lo, hi, scheme, ScaleConstraint::Float);
            let p = activation_params(lo, hi, scheme, ScaleConstraint::PowerOfTwo);
            assert!(is_pow2(p.scale), "[{lo}, {hi}] {scheme}: {}", p.scale);
            assert!(f.scale <= p.scale && p.scale < 2.0 * f.scale);
            // The range still fits: both ends are within half a step of a u8 level.
            for x in [lo, hi] {
                let q = ((x / p.scale).round_ties_even() + p.zero_point as f32).clamp(0.0, 255.0);
                let back = (q - p.zero_point as f32) * p.scale;
                assert!(
                    (back - x).abs() <= half_step_budget(p.scale, x),
                    "[{lo}, {hi}] {scheme}: {x} -> {back}"
                );
            }
        }
    }
}

#[test]
fn requantization_of_power_of_two_scales_is_an_exact_shift() {
    let w = test_matrix();
    let pw = weight_params(
        w.view(),
        8,
        Scheme::Symmetric,
        Granularity::PerChannel,
        ScaleConstraint::PowerOfTwo,
    )
    .unwrap();
    let input = activation_params(0.0, 6.0, Scheme::Affine, ScaleConstraint::PowerOfTwo);
    let output = activation_params(-3.0, 20.0, Scheme::Affine, ScaleConstraint::PowerOfTwo);
    for &sw in &pw.scales {
        let m = f64::from(input.scale) * f64::from(sw) / f64::from(output.scale);
        let shift = shift_for_multiplier(m).unwrap();
        assert_eq!(2f64.powi(-shift), m);
    }
    assert_eq!(shift_for_multiplier(1.0 / 1024.0), Ok(10));
    assert_eq!(shift_for_multiplier(2.0), Ok(-1));
    let err = shift_for_multiplier(3.0 / 8.0).unwrap_err();
    assert_eq!(err, SchemeError::NotPowerOfTwo(0.375));
    assert!(err.to_string().contains("0.375"), "{err}");
}

#[test]
fn invalid_inputs_are_errors_that_name_the_value() {
    let w = test_matrix();
    let f = ScaleConstraint::Float;
    for bits in [0, 1, 9, 16] {
        let err = weight_params(w.view(), bits, Scheme::Symmetric, Granularity::PerTensor, f)
            .unwrap_err();
        assert_eq!(
            err,
            SchemeError::BitsOutOfRange {
                bits,
                min: 2,
                max: 8
            }
        );
        assert!(
            err.to_string().contains(&format!("bit width {bits} ")),
            "{err}"
        );
    }
    assert_eq!(
        weight_params(w.view(), 4, Scheme::Affine, Granularity::PerGroup(0), f),
        Err(SchemeError::ZeroGroupSize)
    );
    let mut bad = w.clone();
    bad[[3, 2]] = f32::NEG_INFINITY;
    let err = weight_params(bad.view(), 4, Scheme::Affine, Granularity::PerChannel, f).unwrap_err();
    assert!(err.to_string().contains("-inf at [3, 2]"), "{err}");
    let err = weight_params_with(
        w.view(),
        4,
        Scheme::Affine,
        Granularity::PerChannel,
        f,
        |_| (1.0, f32::NAN),
    )
    .unwrap_err();
    assert!(
        matches!(err, SchemeError::InvalidRange { lo: 1.0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("[1, NaN]"), "{err}");
}

/// The levels of a `bits`-bit log code with `scale`: 0 and `±scale * 2^-e`.
fn log_levels(bits: u32, scale: f32) -> Vec<f32> {
    let exps = log_exponents(bits).unwrap() as i32;
    let mut levels = vec![0.0];
    for e in 0..exps {
        let l = scale * 2f32.powi(-e);
        levels.extend([l, -l]);
    }
    levels
}

#[test]
fn log_dequantized_values_are_zero_or_signed_powers_of_two_of_the_scale() {
    let w = test_matrix();
    for bits in 2..=8 {
        for granularity in GRANULARITIES {
            let p = log_params(w.view(), bits, granularity).unwrap();
            let codes = log_quantize_weights(w.view(), &p).unwrap();
            assert!(codes.iter().all(|&c| u32::from(c) < 1 << bits));
            let back = log_dequantize_weights(codes.view(), &p).unwrap();
            let exps = log_exponents(bits).unwrap() as i32;
            let n = w.ncols();
            for ((i, j), &v) in back.indexed_iter() {
                let scale = p.scales[granularity.param_index(i, j, n)];
                let x = w[[i, j]];
                assert!(
                    log_levels(bits, scale).contains(&v),
                    "{bits}-bit {granularity} [{i},{j}]: {v} not a level of {scale}"
                );
                // Nearest level: within a third of the value between the levels (the worst case is
                // 0.75 * 2^-e, a quarter step from both neighbours), within half the smallest level below it.
                let smallest = scale * 2f32.powi(-(exps - 1));
                let budget = if x.abs() >= smallest {
                    x.abs() / 3.0
                } else {
                    smallest / 2.0
                } * (1.0 + 4.0 * f32::EPSILON);
                assert!(
                    (v - x).abs() <= budget,
                    "{bits}-bit {granularity} [{i},{j}]: {x} -> {v}"
                );
            }
            // Each slice's largest magnitude is the level 2^0, exactly.
            if granularity == Granularity::PerChannel {
                for (j, col) in w.columns().into_iter().enumerate() {
                    let (i, &x) = col
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                        .unwrap();
                    if x != 0.0 {
                        assert_eq!(back[[i, j]], x, "{bits}-bit channel {j}");
                    }
                }
            }
        }
    }
}

#[test]
fn log_values_exactly_on_a_level_round_trip_exactly() {
    for bits in 2..=8 {
        for scale in [1.0f32, 0.37, 123.456, 3e-5] {
            let levels = log_levels(bits, scale);
            let codes = log_quantize(&levels, bits, scale).unwrap();
            let back = log_dequantize(&codes, bits, scale).unwrap();
            for (l, b) in levels.iter().zip(&back) {
                assert_eq!(
                    l.to_bits(),
                    b.to_bits(),
                    "{bits}-bit scale {scale}: {l} -> {b}"
                );
            }
        }
    }
}

#[test]
fn log_int8_lut_reproduces_log_dequantize_bit_for_bit() {
    let w = test_matrix();
    for bits in 2..=4 {
        let lut = log_decode_lut_i8(bits).unwrap();
        let top = (log_exponents(bits).unwrap() - 1) as i32;
        assert_eq!(lut[1], 1i8 << top, "{bits}-bit: code 1 is the level 2^0");
        for granularity in GRANULARITIES {
            let p = log_params(w.view(), bits, granularity).unwrap();
            let codes = log_quantize_weights(w.view(), &p).unwrap();
            let reference = log_dequantize_weights(codes.view(), &p).unwrap();
            let (q, qp) = log_to_int8(codes.view(), &p).unwrap();
            assert_eq!(qp.zero_points, vec![0; qp.scales.len()]);
            assert!(q.iter().all(|&v| v.unsigned_abs() <= 64));
            let n = w.ncols();
            for ((i, j), &r) in reference.indexed_iter() {
                let c = qp.index(i, j, n);
                assert_eq!(q[[i, j]], lut[usize::from(codes[[i, j]])]);
                let via_int8 = f32::from(q[[i, j]]) * qp.scales[c];
                assert_eq!(
                    via_int8.to_bits(),
                    r.to_bits(),
                    "{bits}-bit {granularity} [{i},{j}]"
                );
            }
            // The linear dequantizer reads the same parameters the same way.
            let linear = dequantize_weights(q.view(), &qp).unwrap();
            assert!(
                linear
                    .iter()
                    .zip(reference.iter())
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
        }
    }
    for bits in 5..=8 {
        assert!(
            matches!(log_decode_lut_i8(bits), Err(SchemeError::LogNotInt8Exact { bits: b, .. }) if b == bits)
        );
    }
}

/// Measured on 4096 standard-Laplace samples (3 seeds; ratio = log MSE / uniform MSE, both scaled to max |w|):
/// 2 bits ~1.0 (both are ternary), 3 bits 0.62-0.64, 4 bits 0.51-0.77, 5 bits 2.3-3.4, 6 bits 9-14, 8 bits
/// 150-250. Log spends its levels near zero, where a heavy-tailed sample lives, so it wins at 3-4 bits; its top
/// octave is one step of scale / 2 whatever the width, so from 5 bits on uniform wins by a growing margin.
/// (On 256 samples the max is smaller and 4-bit log already loses: 1.2-1.8.)
#[test]
fn log_beats_uniform_on_heavy_tails_at_three_and_four_bits_only() {
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let w = Array2::from_shape_fn((4096, 1), |_| rng.laplace());
    let gran = Granularity::PerChannel;
    let errors = |bits| {
        let lp = log_params(w.view(), bits, gran).unwrap();
        let codes = log_quantize_weights(w.view(), &lp).unwrap();
        let log = log_dequantize_weights(codes.view(), &lp).unwrap();
        let up = weight_params(
            w.view(),
            bits,
            Scheme::Symmetric,
            gran,
            ScaleConstraint::Float,
        )
        .unwrap();
        let uniform = round_trip(w.view(), &up);
        (mse(w.view(), log.view()), mse(w.view(), uniform.view()))
    };
    for bits in [3, 4] {
        let (log, uniform) = errors(bits);
        assert!(
            log < 0.9 * uniform,
            "{bits} bits: log {log} uniform {uniform}"
        );
    }
    for bits in [6, 8] {
        let (log, uniform) = errors(bits);
        assert!(uniform < log, "{bits} bits: log {log} uniform {uniform}");
    }
    // Near zero the gap is largest: 4-bit uniform rounds |w| < scale / 14 to zero, log keeps 2^-6 * scale.
    let lp = log_params(w.view(), 4, gran).unwrap();
    let log =
        log_dequantize_weights(log_quantize_weights(w.view(), &lp).unwrap().view(), &lp).unwrap();
    let up = weight_params(w.view(), 4, Scheme::Symmetric, gran, ScaleConstraint::Float).unwrap();
    let uniform = round_trip(w.view(), &up);
    let near_zero = |d: &Array2<f32>| {
        let (sum, count) = w
            .iter()
            .zip(d.iter())
            .filter(|(x, _)| x.abs() < 0.5)
            .fold((0.0f64, 0usize), |(s, c), (x, y)| {
                (s + f64::from(x - y).powi(2), c + 1)
            });
        sum / count as f64
    };
    let (nl, nu) = (near_zero(&log), near_zero(&uniform));
    assert!(nl * 10.0 < nu, "|w| < 0.5: log {nl} uniform {nu}");
}

/// A caller's error type that also holds scheme errors, as the harness's does.
#[derive(Debug, PartialEq)]
enum CallerError {
    NoRange(usize),
    Scheme(SchemeError),
}

impl From<SchemeError> for CallerError {
    fn from(e: SchemeError) -> Self {
        CallerError::Scheme(e)
    }
}

#[test]
fn a_fallible_range_function_passes_its_error_through_and_sees_every_slice() {
    let w = test_matrix();
    let f = ScaleConstraint::Float;
    let g = Granularity::PerGroup(5);
    let mut calls = 0;
    let err = weight_params_try_with(w.view(), 4, Scheme::Affine, g, f, |v| {
        calls += 1;
        if calls == 3 {
            Err(CallerError::NoRange(v.len()))
        } else {
            Ok(minmax_range(v))
        }
    })
    .unwrap_err();
    assert_eq!((err, calls), (CallerError::NoRange(5), 3));
    let err = weight_params_try_with(w.view(), 9, Scheme::Affine, g, f, |v| {
        Ok::<_, CallerError>(minmax_range(v))
    })
    .unwrap_err();
    assert!(matches!(
        err,
        CallerError::Scheme(SchemeError::BitsOutOfRange { bits: 9, .. })
    ));
    let ok = weight_params_try_with(w.view(), 4, Scheme::Affine, g, f, |v| {
        Ok::<_, CallerError>(minmax_range(v))
    })
    .unwrap();
    assert_eq!(
        ok,
        weight_params(w.view(), 4, Scheme::Affine, g, f).unwrap()
    );
    // The last (ragged) group hands the function 37 - 35 = 2 values per column.
    let mut lens = Vec::new();
    weight_params_with(w.view(), 4, Scheme::Affine, g, f, |v| {
        lens.push(v.len());
        minmax_range(v)
    })
    .unwrap();
    assert_eq!(lens.len(), 8 * 6);
    assert!(lens[..7 * 6].iter().all(|&l| l == 5) && lens[7 * 6..].iter().all(|&l| l == 2));
}
