//! Float <-> 8-bit conversion with ONNX `QuantizeLinear` / `DequantizeLinear` semantics:
//! `q = saturate(round_half_even(x / scale) + zero_point)`, `x = (q - zero_point) * scale`. The division is
//! done in `f32`, as the ONNX reference does. NaN quantizes to the zero point.

use crate::isa::{Isa, LoopBuild};

/// `out[i] = clamp(round_half_even(x[i] / scale) + zero_point, 0, 255)`.
///
/// # Panics
/// If `out` is shorter than `x`.
pub fn quantize_u8(x: &[f32], scale: f32, zero_point: i32, out: &mut [u8]) {
    assert!(
        out.len() >= x.len(),
        "quantize_u8: out has {} elements, x has {}",
        out.len(),
        x.len()
    );
    for (o, &v) in out.iter_mut().zip(x) {
        *o = quantize_one(v, scale, zero_point, 0, 255) as u8;
    }
}

/// `out[i] = clamp(round_half_even(x[i] / scale) + zero_point, -128, 127)`.
///
/// # Panics
/// If `out` is shorter than `x`.
pub fn quantize_i8(x: &[f32], scale: f32, zero_point: i32, out: &mut [i8]) {
    assert!(
        out.len() >= x.len(),
        "quantize_i8: out has {} elements, x has {}",
        out.len(),
        x.len()
    );
    for (o, &v) in out.iter_mut().zip(x) {
        *o = quantize_one(v, scale, zero_point, -128, 127) as i8;
    }
}

/// `out[i] = (q[i] - zero_point) * scale`.
///
/// # Panics
/// If `out` is shorter than `q`.
pub fn dequantize_u8(q: &[u8], scale: f32, zero_point: i32, out: &mut [f32]) {
    assert!(
        out.len() >= q.len(),
        "dequantize_u8: out has {} elements, q has {}",
        out.len(),
        q.len()
    );
    for (o, &v) in out.iter_mut().zip(q) {
        *o = (v as i32 - zero_point) as f32 * scale;
    }
}

/// `(min, max)` over the finite values of `x`; `(0.0, 0.0)` when there are none. (Between 0.0 and -0.0 either
/// may be returned; every use widens the range to 0 first.)
pub fn min_max(x: &[f32]) -> (f32, f32) {
    min_max_body(x)
}

/// [`min_max`] by the widest build that `isa` (the caller's kernel tier) allows and the CPU runs: the loop is
/// compiled for the baseline, AVX2 and AVX-512, with the same result.
pub fn min_max_at(x: &[f32], isa: Isa) -> (f32, f32) {
    match isa.loop_build() {
        // SAFETY (both): `loop_build` chose the build because the CPU has its features.
        #[cfg(target_arch = "x86_64")]
        LoopBuild::Avx512 => unsafe { builds::min_max_avx512(x) },
        #[cfg(target_arch = "x86_64")]
        LoopBuild::Avx2 => unsafe { builds::min_max_avx2(x) },
        _ => min_max_body(x),
    }
}

/// [`quantize_u8`] by the widest build that `isa` allows and the CPU runs (as [`min_max_at`]); the same IEEE
/// division and rounding in every build, so the same codes. The dynamic int8 paths quantize every activation
/// this way.
///
/// # Panics
/// If `out` is shorter than `x`.
pub fn quantize_u8_at(x: &[f32], scale: f32, zero_point: i32, out: &mut [u8], isa: Isa) {
    assert!(
        out.len() >= x.len(),
        "quantize_u8: out has {} elements, x has {}",
        out.len(),
        x.len()
    );
    match isa.loop_build() {
        // SAFETY (both): `loop_build` chose the build because the CPU has its features.
        #[cfg(target_arch = "x86_64")]
        LoopBuild::Avx512 => unsafe { builds::quantize_u8_avx512(x, scale, zero_point, out) },
        #[cfg(target_arch = "x86_64")]
        LoopBuild::Avx2 => unsafe { builds::quantize_u8_avx2(x, scale, zero_point, out) },
        _ => quantize_u8(x, scale, zero_point, out),
    }
}

/// The min/max loop: branch-free, so it vectorizes (non-finite values leave the running pair as it is).
#[inline(always)]
fn min_max_body(x: &[f32]) -> (f32, f32) {
    let (lo, hi) = x
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            let finite = v.is_finite();
            (
                if finite && v < lo { v } else { lo },
                if finite && v > hi { v } else { hi },
            )
        });
    if lo > hi { (0.0, 0.0) } else { (lo, hi) }
}

#[cfg(target_arch = "x86_64")]
mod builds {
    use super::{min_max_body, quantize_one};

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn min_max_avx2(x: &[f32]) -> (f32, f32) {
        min_max_body(x)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) fn min_max_avx512(x: &[f32]) -> (f32, f32) {
        min_max_body(x)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn quantize_u8_avx2(x: &[f32], scale: f32, zero_point: i32, out: &mut [u8]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = quantize_one(v, scale, zero_point, 0, 255) as u8;
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) fn quantize_u8_avx512(x: &[f32], scale: f32, zero_point: i32, out: &mut [u8]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = quantize_one(v, scale, zero_point, 0, 255) as u8;
        }
    }
}

#[inline(always)]
fn quantize_one(x: f32, scale: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
    // Round half to even by adding and removing 1.5 * 2^23 (exact for |r| < 2^22, and beyond that every
    // output saturates anyway): unlike `round_ties_even`, which is a libm call on baseline x86-64, this
    // vectorizes. NaN stays NaN through the clamp and `as i32` maps it to 0, as before.
    const MAGIC: f32 = 12_582_912.0;
    let r = (x / scale).clamp(-4_194_304.0, 4_194_304.0);
    (((r + MAGIC) - MAGIC) as i32)
        .saturating_add(zero_point)
        .clamp(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values around every code boundary (ties and their neighbours), both signs, the clamp's ends and
    /// non-finite values.
    fn values() -> Vec<f32> {
        let scale = 0.037f32;
        let mut x: Vec<f32> = (-300..300)
            .flat_map(|i| {
                let tie = (i as f32 + 0.5) * scale;
                [
                    tie,
                    f32::from_bits(tie.to_bits() + 1),
                    f32::from_bits(tie.to_bits().saturating_sub(1)),
                ]
            })
            .collect();
        x.extend([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e30,
            -1e30,
            0.0,
            -0.0,
        ]);
        x
    }

    #[test]
    fn every_build_quantizes_alike() {
        let x = values();
        for zp in [0, 77, 128, 255] {
            let mut want = vec![0u8; x.len()];
            quantize_u8(&x, 0.037, zp, &mut want);
            assert_eq!(
                want[x.len() - 7],
                zp as u8,
                "NaN quantizes to the zero point"
            );
            for isa in Isa::ALL {
                if !isa.is_available() {
                    eprintln!("skip: this CPU lacks {isa}");
                    continue;
                }
                let mut got = vec![1u8; x.len()];
                quantize_u8_at(&x, 0.037, zp, &mut got, isa);
                assert_eq!(got, want, "{isa}, zero point {zp}");
            }
        }
    }

    #[test]
    fn min_max_ignores_non_finite_values_in_every_build() {
        let x = values();
        let cases: [(&[f32], (f32, f32)); 3] = [
            (&x, (-1e30, 1e30)),
            (&[f32::NAN, f32::INFINITY], (0.0, 0.0)),
            (&[f32::NAN, 2.0, f32::NEG_INFINITY], (2.0, 2.0)),
        ];
        for (data, want) in cases {
            assert_eq!(min_max(data), want);
            for isa in Isa::ALL {
                if isa.is_available() {
                    assert_eq!(min_max_at(data, isa), want, "{isa}");
                }
            }
        }
    }
}
