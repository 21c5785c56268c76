//! ISA-free helpers: requantization against an `f64` reference, the fixed-point scaler, ONNX quantization
//! rounding, and im2col + GEMM against a direct convolution.

use kernels::GemmU8I8;
use kernels::frame::{
    Conv2dGeom, Scaler, dequantize_acc_f32, dequantize_u8, im2col, min_max, quantize_i8,
    quantize_u8, requantize_u8,
};
use kernels::reference::{SCALAR_GEMM_F32, SCALAR_GEMM_U8I8};
use kernels::testing::{Rng, compare_exact, compare_f32, compare_u8_within, tolerance};
use kernels::{GemmF32, frame};

/// `round(x * real)` with ties away from zero, in `f64`: the exact-real requantization the fixed-point path
/// approximates.
fn requant_f64(x: i32, real: f64, zp: i32, lo: i32) -> u8 {
    ((x as f64 * real).round() as i64 + zp as i64).clamp(lo as i64, 255) as u8
}

#[test]
fn requantize_u8_within_one_lsb_of_f64() {
    let mut rng = Rng::new(11);
    let (m, n, ldc) = (9, 13, 16);
    let (mut diff_sum, mut count) = (0i64, 0usize);
    for case in 0..200 {
        let acc: Vec<i32> = (0..m * ldc)
            .map(|_| rng.below(1 << 21) as i32 - (1 << 20))
            .collect();
        let bias: Vec<i32> = (0..n)
            .map(|_| rng.below(1 << 13) as i32 - (1 << 12))
            .collect();
        // Log-uniform reals in [1e-6, 1e-1]; a few cases >= 1 to exercise the left shift.
        let mut real = || {
            if case % 10 == 9 {
                1.0 + rng.f32_unit().abs() as f64 * 3.0
            } else {
                10f64.powf(-1.0 - 5.0 * rng.f32_unit().abs() as f64)
            }
        };
        let per_channel = case % 2 == 0;
        let reals: Vec<f64> = (0..if per_channel { n } else { 1 })
            .map(|_| real())
            .collect();
        let scalers: Vec<Scaler> = reals.iter().map(|&r| Scaler::new(r)).collect();
        let zp = rng.below(256) as i32;
        let relu = case % 3 == 0;
        let lo = if relu { zp } else { 0 };
        let with_bias = case % 4 != 1;
        let mut out = vec![0u8; m * n];
        requantize_u8(
            &acc,
            m,
            n,
            ldc,
            with_bias.then_some(bias.as_slice()),
            &scalers,
            zp,
            relu,
            &mut out,
        );
        let want: Vec<u8> = (0..m * n)
            .map(|x| {
                let (i, j) = (x / n, x % n);
                let r = if per_channel { reals[j] } else { reals[0] };
                requant_f64(
                    acc[i * ldc + j] + if with_bias { bias[j] } else { 0 },
                    r,
                    zp,
                    lo,
                )
            })
            .collect();
        compare_u8_within(&want, &out, m, n, tolerance::REQUANT_U8_MAX_LSB)
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
        // Saturated outputs agree trivially; the bias check looks at the others.
        for (w, o) in want
            .iter()
            .zip(&out)
            .filter(|(w, _)| (lo as u8 + 1..255).contains(*w))
        {
            diff_sum += *o as i64 - *w as i64;
            count += 1;
        }
    }
    let mean = diff_sum as f64 / count as f64;
    eprintln!("requant mean signed difference {mean} over {count} unsaturated outputs");
    assert!(
        mean.abs() <= tolerance::REQUANT_U8_MEAN_LSB,
        "mean signed difference {mean}: a biased rounding"
    );
}

#[test]
fn requantize_u8_saturates_and_clamps_relu() {
    let s = [Scaler::new(0.01)];
    let acc = [i32::MAX, i32::MIN, 1_000_000, -1_000_000, 0, -500];
    let mut out = [0u8; 6];
    requantize_u8(&acc, 1, 6, 6, None, &s, 10, false, &mut out);
    assert_eq!(out, [255, 0, 255, 0, 10, 5]);
    requantize_u8(&acc, 1, 6, 6, None, &s, 10, true, &mut out);
    assert_eq!(out, [255, 10, 255, 10, 10, 10]);
    // Bias saturates instead of wrapping.
    requantize_u8(
        &acc[..1],
        1,
        1,
        1,
        Some(&[i32::MAX]),
        &s,
        0,
        false,
        &mut out[..1],
    );
    assert_eq!(out[0], 255);
}

#[test]
fn scaler_round_trips_real() {
    let mut rng = Rng::new(3);
    // Log-uniform over [1e-6, 1e3], plus the ends and powers of two.
    let mut reals: Vec<f64> = (0..2000)
        .map(|_| 10f64.powf(-6.0 + 9.0 * (rng.f32_unit() as f64 * 0.5 + 0.5)))
        .collect();
    reals.extend([1e-6, 1e3, 0.5, 1.0, 2.0, 0.25, 1.0 - 1e-12]);
    for real in reals {
        let s = Scaler::new(real);
        assert!(
            (1 << 30..=i32::MAX).contains(&s.mult),
            "{real}: mult {}",
            s.mult
        );
        let rel = ((s.real() - real) / real).abs();
        assert!(
            rel <= tolerance::SCALER_ROUNDTRIP_REL,
            "{real}: {s:?} gives {} (rel {rel:e})",
            s.real()
        );
    }
}

#[test]
fn dequantize_acc_f32_applies_scales_bias_relu() {
    let acc = [10, -20, 30, 0, 5, -5];
    let mut out = [0f32; 4];
    dequantize_acc_f32(
        &acc,
        2,
        2,
        3,
        0.5,
        &[1.0, 2.0],
        Some(&[1.0, 0.0]),
        false,
        &mut out,
    );
    assert_eq!(out, [6.0, -20.0, 1.0, 5.0]);
    dequantize_acc_f32(&acc, 2, 2, 3, 0.5, &[1.0], None, true, &mut out);
    assert_eq!(out, [5.0, 0.0, 0.0, 2.5]);
}

#[test]
fn sums() {
    let a = [1u8, 2, 3, 99, 4, 5, 6, 99];
    assert_eq!(frame::row_sums_u8(&a, 2, 3, 4), [6, 15]);
    assert_eq!(
        frame::col_sums_i8(&[1, -2, 3, -4, 5, -6], 2, 3),
        [-3, 3, -3]
    );
    assert_eq!(frame::col_sums_i8(&[], 0, 3), [0, 0, 0]);
}

#[test]
fn quantize_u8_rounds_ties_to_even() {
    let x = [0.5, 1.5, 2.5, -0.5, 3.5, 254.5, 300.0, -3.0, f32::NAN];
    let mut q = [0u8; 9];
    quantize_u8(&x, 1.0, 0, &mut q);
    assert_eq!(q, [0, 2, 2, 0, 4, 254, 255, 0, 0]);
    quantize_u8(&x, 1.0, 10, &mut q);
    assert_eq!(q, [10, 12, 12, 10, 14, 255, 255, 7, 10]);
    let mut q = [0u8; 3];
    quantize_u8(&[0.25, 0.75, 1.25], 0.5, 0, &mut q);
    assert_eq!(q, [0, 2, 2]);
}

#[test]
fn quantize_i8_saturates() {
    let mut q = [0i8; 6];
    quantize_i8(&[-1000.0, 1000.0, -0.5, 0.5, 1.5, -1.5], 1.0, 0, &mut q);
    assert_eq!(q, [-128, 127, 0, 0, 2, -2]);
    quantize_i8(&[-1000.0, 1000.0, 0.0, 1.0, 2.0, -2.0], 0.5, -3, &mut q);
    assert_eq!(q, [-128, 127, -3, -1, 1, -7]);
}

#[test]
fn dequantize_inverts_quantize_within_half_a_step() {
    let mut rng = Rng::new(9);
    let x: Vec<f32> = rng.f32s(500).iter().map(|v| v * 2.0).collect();
    let (lo, hi) = min_max(&x);
    let scale = (hi - lo) / 255.0;
    let zp = (-lo / scale).round() as i32;
    let mut q = vec![0u8; x.len()];
    let mut back = vec![0f32; x.len()];
    quantize_u8(&x, scale, zp, &mut q);
    dequantize_u8(&q, scale, zp, &mut back);
    let budget = tolerance::quant_roundtrip_max_diff(scale, lo.abs().max(hi.abs()));
    for (a, b) in x.iter().zip(&back) {
        assert!((a - b).abs() <= budget, "{a} -> {b} (budget {budget})");
    }
}

#[test]
fn min_max_ignores_non_finite() {
    assert_eq!(min_max(&[]), (0.0, 0.0));
    assert_eq!(min_max(&[f32::NAN, f32::INFINITY]), (0.0, 0.0));
    assert_eq!(
        min_max(&[3.0, f32::NAN, -2.0, f32::NEG_INFINITY, 7.0]),
        (-2.0, 7.0)
    );
}

/// Geometries covering padding (symmetric and not), stride 2, dilation 2, 1x1, kernel = input, ragged sizes.
fn geometries() -> Vec<Conv2dGeom> {
    let g = |c_in,
             h,
             w,
             kh,
             kw,
             (stride_h, stride_w),
             (pad_top, pad_left, pad_bottom, pad_right),
             (dil_h, dil_w)| {
        Conv2dGeom {
            c_in,
            h,
            w,
            kh,
            kw,
            stride_h,
            stride_w,
            pad_top,
            pad_left,
            pad_bottom,
            pad_right,
            dil_h,
            dil_w,
        }
    };
    let mut out = vec![
        g(3, 7, 9, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
        g(2, 8, 7, 3, 3, (2, 2), (1, 0, 2, 1), (1, 1)),
        g(4, 9, 10, 3, 2, (1, 1), (2, 2, 2, 2), (2, 2)),
        g(1, 5, 5, 5, 5, (1, 1), (0, 0, 0, 0), (1, 1)),
        g(3, 6, 11, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1)),
        g(2, 4, 4, 3, 3, (2, 3), (0, 1, 1, 0), (2, 1)),
        g(5, 13, 6, 3, 3, (2, 1), (1, 1, 1, 1), (2, 2)),
    ];
    let mut rng = Rng::new(17);
    let mut r = |lo: u64, hi: u64| (lo + rng.below(hi - lo + 1)) as usize;
    for _ in 0..60 {
        let pads = (r(0, 2), r(0, 2), r(0, 2), r(0, 2));
        out.push(g(
            r(1, 4),
            r(1, 9),
            r(1, 9),
            r(1, 3),
            r(1, 3),
            (r(1, 3), r(1, 3)),
            pads,
            (r(1, 2), r(1, 2)),
        ));
    }
    out
}

/// `[out_h * out_w, c_out]` by the definition, with `pad` outside the image.
fn direct_conv<T: Copy, W: Copy, A: Copy + std::ops::Add<Output = A>>(
    g: &Conv2dGeom,
    input: &[T],
    weights: &[W],
    c_out: usize,
    pad: T,
    zero: A,
    mul: impl Fn(T, W) -> A,
) -> Vec<A> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut out = vec![zero; oh * ow * c_out];
    for oy in 0..oh {
        for ox in 0..ow {
            for co in 0..c_out {
                let mut acc = zero;
                for c in 0..g.c_in {
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let iy = (oy * g.stride_h + ky * g.dil_h) as isize - g.pad_top as isize;
                            let ix =
                                (ox * g.stride_w + kx * g.dil_w) as isize - g.pad_left as isize;
                            let inside =
                                (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix);
                            let v = if inside {
                                input[(c * g.h + iy as usize) * g.w + ix as usize]
                            } else {
                                pad
                            };
                            acc =
                                acc + mul(v, weights[((co * g.c_in + c) * g.kh + ky) * g.kw + kx]);
                        }
                    }
                }
                out[(oy * ow + ox) * c_out + co] = acc;
            }
        }
    }
    out
}

/// OIHW weights `[c_out, k]` transposed to the GEMM's `k x c_out`.
fn transpose<T: Copy>(w: &[T], c_out: usize, k: usize) -> Vec<T> {
    (0..k * c_out)
        .map(|x| w[(x % c_out) * k + x / c_out])
        .collect()
}

#[test]
fn im2col_gemm_matches_direct_conv_f32() {
    let mut rng = Rng::new(23);
    let c_out = 5;
    for g in geometries() {
        let (rows, k) = (g.out_h() * g.out_w(), g.k());
        let input = rng.f32s(g.c_in * g.h * g.w);
        let weights = rng.f32s(c_out * k);
        let mut cols = vec![f32::NAN; rows * k];
        im2col(&input, &g, 0.0, &mut cols);
        let mut got = vec![0f32; rows * c_out];
        SCALAR_GEMM_F32.gemm(
            rows,
            &cols,
            k,
            &SCALAR_GEMM_F32.pack_b(&transpose(&weights, c_out, k), k, c_out),
            &mut got,
            c_out,
        );
        let want = direct_conv(&g, &input, &weights, c_out, 0.0, 0.0, |x, w| x * w);
        compare_f32(&want, &got, rows, c_out, k, tolerance::f32_conv_max_diff)
            .unwrap_or_else(|e| panic!("{g:?}: {e}"));
    }
}

/// The transposed lowering holds exactly the same values as `im2col`, row for column, on every test geometry
/// (padding, stride 2, dilation 2, ragged sizes).
#[test]
fn im2col_kn_is_the_transpose_of_im2col() {
    let mut rng = Rng::new(29);
    for g in geometries() {
        let (rows, k) = (g.out_h() * g.out_w(), g.k());
        let input = rng.f32s(g.c_in * g.h * g.w);
        let mut cols = vec![f32::NAN; rows * k];
        im2col(&input, &g, 0.0, &mut cols);
        let mut cols_t = vec![f32::NAN; k * rows];
        frame::conv::im2col_kn(&input, &g, &mut cols_t);
        for r in 0..k {
            for p in 0..rows {
                assert_eq!(
                    cols_t[r * rows + p].to_bits(),
                    cols[p * k + r].to_bits(),
                    "{g:?} tap {r} pixel {p}"
                );
            }
        }
    }
}

#[test]
fn im2col_gemm_matches_direct_conv_u8_with_zero_point_padding() {
    let mut rng = Rng::new(29);
    let (c_out, zp) = (3, 7u8);
    for g in geometries() {
        let (rows, k) = (g.out_h() * g.out_w(), g.k());
        let input = rng.u8s(g.c_in * g.h * g.w);
        let weights = rng.i8s(c_out * k);
        let mut cols = vec![0u8; rows * k];
        im2col(&input, &g, zp, &mut cols);
        let mut got = vec![0i32; rows * c_out];
        SCALAR_GEMM_U8I8.gemm(
            rows,
            &cols,
            k,
            &SCALAR_GEMM_U8I8.pack_b(&transpose(&weights, c_out, k), k, c_out),
            &mut got,
            c_out,
        );
        let want = direct_conv(&g, &input, &weights, c_out, zp, 0i32, |x, w| {
            x as i32 * w as i32
        });
        compare_exact(&want, &got, rows, c_out).unwrap_or_else(|e| panic!("{g:?}: {e}"));
    }
}

#[test]
fn conv_output_sizes() {
    let g = Conv2dGeom {
        c_in: 3,
        h: 224,
        w: 224,
        kh: 7,
        kw: 7,
        stride_h: 2,
        stride_w: 2,
        pad_top: 3,
        pad_left: 3,
        pad_bottom: 3,
        pad_right: 3,
        dil_h: 1,
        dil_w: 1,
    };
    assert_eq!((g.out_h(), g.out_w(), g.k()), (112, 112, 147));
    // A dilated kernel larger than the padded input has no output.
    let tiny = Conv2dGeom {
        h: 2,
        w: 2,
        kh: 3,
        kw: 3,
        dil_h: 2,
        dil_w: 2,
        pad_top: 0,
        pad_left: 0,
        pad_bottom: 0,
        pad_right: 0,
        ..g
    };
    assert_eq!((tiny.out_h(), tiny.out_w()), (0, 0));
}

/// Every registered static requantization epilogue gives exactly the scalar oracle's bytes: ragged widths (the
/// SIMD tails), ReLU on and off, with and without the affine-weight row term, products far past saturation.
#[test]
fn requant_epilogues_match_the_scalar_oracle_exactly() {
    use kernels::RequantU8;
    use kernels::registry::requant_u8_kernels;
    let oracle = &kernels::reference::requant::SCALAR_REQUANT_U8;
    let mut rng = kernels::testing::Rng::new(41);
    for kernel in requant_u8_kernels() {
        if !kernel.isa().is_available() {
            eprintln!("skip {}: this CPU lacks {}", kernel.name(), kernel.isa());
            continue;
        }
        for &(m, n) in &[(1, 1), (3, 7), (5, 16), (2, 33), (4, 64), (1, 65), (7, 130)] {
            let ldc = n + 3;
            let acc: Vec<i32> = (0..m * ldc)
                .map(|_| rng.below(2_000_001) as i32 - 1_000_000)
                .collect();
            let offset: Vec<i32> = (0..n).map(|_| rng.below(20_001) as i32 - 10_000).collect();
            let b_zp: Vec<i32> = (0..n).map(|_| rng.below(256) as i32 - 128).collect();
            let rows: Vec<i32> = (0..m).map(|_| rng.below(60_001) as i32).collect();
            // Multipliers from tiny (most outputs near the zero point) to large (most saturate).
            let mult: Vec<f32> = (0..n).map(|j| 1e-5 * 10f32.powi((j % 5) as i32)).collect();
            for relu in [false, true] {
                for zp_rows in [None, Some((&b_zp[..], &rows[..]))] {
                    for out_zp in [0, 77, 255] {
                        let mut want = vec![0u8; m * n];
                        let mut got = vec![1u8; m * n];
                        oracle.requantize(
                            &acc, m, n, ldc, &offset, zp_rows, &mult, out_zp, relu, &mut want,
                        );
                        kernel.requantize(
                            &acc, m, n, ldc, &offset, zp_rows, &mult, out_zp, relu, &mut got,
                        );
                        assert_eq!(
                            got,
                            want,
                            "{} m{m} n{n} relu {relu} zp {out_zp}",
                            kernel.name()
                        );
                    }
                }
            }
        }
    }
}
