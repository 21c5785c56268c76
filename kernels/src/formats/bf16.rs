//! `bfloat16`: the top 16 bits of an `f32` (sign, 8 exponent bits, 7 stored significand bits). Conversion from
//! `f32` rounds to nearest, ties to even; NaN stays NaN (quieted, sign kept); overflow rounds to infinity;
//! subnormals are kept (the AVX-512 BF16 instructions flush them to zero instead, see
//! [`crate::x86_64::avx512bf16`]). Conversion to `f32` is exact.
//!
//! Unit roundoff: [`UNIT_ROUNDOFF`] = `2^-8` (8-bit significand with the implicit bit).

/// Relative error bound of one rounding to bf16 (round to nearest): half an ulp of an 8-bit significand.
pub const UNIT_ROUNDOFF: f32 = 1.0 / 256.0;

/// `x` rounded to the nearest bf16, ties to even.
#[inline]
pub fn from_f32(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    // Adding 0x7FFF plus the lowest kept bit rounds to nearest, ties to even; a carry into the exponent is the
    // correct result (up to infinity). No NaN reaches here, so the sum never passes 0xFF80_7FFF.
    let lsb = (bits >> 16) & 1;
    (bits.wrapping_add(0x7FFF + lsb) >> 16) as u16
}

/// The `f32` value of a bf16 (exact).
#[inline]
pub fn to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `x` rounded through bf16 and back: the value a bf16 kernel multiplies.
#[inline]
pub fn round_f32(x: f32) -> f32 {
    to_f32(from_f32(x))
}

/// Converts a slice (for packing and tests).
pub fn from_f32_slice(xs: &[f32]) -> Vec<u16> {
    xs.iter().map(|&x| from_f32(x)).collect()
}

/// Converts a slice back.
pub fn to_f32_slice(hs: &[u16]) -> Vec<f32> {
    hs.iter().map(|&h| to_f32(h)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_even() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even (1.0).
        assert_eq!(from_f32(1.0 + 1.0 / 256.0), from_f32(1.0));
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: goes up.
        assert_eq!(to_f32(from_f32(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        // Just above halfway rounds up.
        assert_eq!(
            to_f32(from_f32(1.0 + 1.0 / 256.0 + 1.0 / 65536.0)),
            1.0 + 1.0 / 128.0
        );
        assert_eq!(from_f32(-2.5), 0xC020);
    }

    #[test]
    fn special_values() {
        assert!(to_f32(from_f32(f32::NAN)).is_nan());
        assert!(to_f32(from_f32(-f32::NAN)).is_nan());
        // A NaN whose payload sits only in the low 16 bits must not become infinity.
        assert!(to_f32(from_f32(f32::from_bits(0x7F80_0001))).is_nan());
        assert_eq!(to_f32(from_f32(f32::INFINITY)), f32::INFINITY);
        assert_eq!(to_f32(from_f32(f32::NEG_INFINITY)), f32::NEG_INFINITY);
        assert_eq!(to_f32(from_f32(f32::MAX)), f32::INFINITY);
        assert_eq!(from_f32(-0.0), 0x8000);
        let tiny = f32::from_bits(0x0001_0000); // subnormal, kept
        assert_eq!(to_f32(from_f32(tiny)), tiny);
    }

    #[test]
    fn every_bf16_round_trips() {
        for h in 0..=u16::MAX {
            let x = to_f32(h);
            if x.is_nan() {
                assert!(to_f32(from_f32(x)).is_nan());
            } else {
                assert_eq!(from_f32(x), h, "{h:#06x}");
            }
        }
    }
}
