//! IEEE 754 binary16 (`f16`): 1 sign, 5 exponent, 10 significand bits. Conversion from `f32` rounds to nearest,
//! ties to even, with gradual underflow (f16 subnormals) and overflow to infinity, exactly as F16C's
//! `vcvtps2ph` with round-to-nearest; NaN stays NaN. Conversion to `f32` is exact (what `vcvtph2ps` does).
//! The tests compare both directions with the F16C instructions where the CPU has them.
//!
//! Unit roundoff: [`UNIT_ROUNDOFF`] = `2^-11` for normal values; f16 subnormals (below `2^-14`) have an
//! absolute step of `2^-24`.

/// Relative error bound of one rounding to a normal f16: half an ulp of an 11-bit significand.
pub const UNIT_ROUNDOFF: f32 = 1.0 / 2048.0;

/// `x` rounded to the nearest f16, ties to even.
pub fn from_f32(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xFF) as i32;
    let man = bits & 0x7F_FFFF;
    if exp == 0xFF {
        // Infinity, or NaN with the top payload bits kept and the quiet bit set.
        let nan = if man != 0 {
            0x0200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7C00 | nan;
    }
    let e = exp - 127 + 15;
    if e >= 0x1F {
        return sign | 0x7C00;
    }
    if e <= 0 {
        // f16 subnormal (or zero): count units of 2^-24. Values below 2^-25 round to zero.
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32; // 14..=24
        let rem = m & ((1u32 << shift) - 1);
        let half = 1u32 << (shift - 1);
        let mut q = m >> shift;
        if rem > half || (rem == half && q & 1 == 1) {
            q += 1; // May carry into the smallest normal (0x0400): still the right encoding.
        }
        return sign | q as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1FFF;
    if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) {
        h += 1; // A carry into the exponent is correct, up to infinity (0x7C00).
    }
    sign | h as u16
}

/// The `f32` value of an f16 (exact). Written as three candidates and a select, so that loops over it
/// vectorize: normal values move their exponent and significand into place and rebias the exponent by 112;
/// subnormals are `significand * 2^-24` (an exact integer conversion and power-of-two scaling); exponent 31
/// becomes infinity or NaN.
#[inline]
pub fn to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let body = h & 0x7FFF;
    let normal = (body << 13) + (112 << 23);
    let subnormal = (body as f32 * f32::from_bits(0x3380_0000)).to_bits(); // 2^-24
    let special = (body << 13) | 0x7F80_0000;
    let bits = if body < 0x0400 {
        subnormal
    } else if body >= 0x7C00 {
        special
    } else {
        normal
    };
    f32::from_bits(bits | sign)
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
    fn known_values() {
        assert_eq!(from_f32(1.0), 0x3C00);
        assert_eq!(from_f32(-2.0), 0xC000);
        assert_eq!(from_f32(65504.0), 0x7BFF);
        assert_eq!(from_f32(65520.0), 0x7C00); // halfway to 2^16 rounds to even: infinity
        assert_eq!(from_f32(65519.0), 0x7BFF);
        assert_eq!(from_f32(f32::from_bits(0x3380_0000)), 0x0001); // 2^-24
        assert_eq!(from_f32(f32::from_bits(0x3300_0000)), 0x0000); // 2^-25: tie to even zero
        assert_eq!(from_f32(f32::from_bits(0x3300_0001)), 0x0001);
        assert_eq!(from_f32(-0.0), 0x8000);
        assert!(to_f32(from_f32(f32::NAN)).is_nan());
        assert_eq!(to_f32(0x7C00), f32::INFINITY);
        assert_eq!(to_f32(0x0001), f32::from_bits(0x3380_0000));
        assert_eq!(to_f32(0x8000).to_bits(), 0x8000_0000);
    }

    #[test]
    fn every_f16_round_trips() {
        for h in 0..=u16::MAX {
            let x = to_f32(h);
            if x.is_nan() {
                assert!(to_f32(from_f32(x)).is_nan());
            } else {
                assert_eq!(from_f32(x), h, "{h:#06x}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn matches_f16c() {
        use std::arch::x86_64::*;
        if !is_x86_feature_detected!("f16c") {
            eprintln!("skip matches_f16c: this CPU lacks f16c");
            return;
        }
        #[target_feature(enable = "f16c")]
        fn hw_from(x: f32) -> u16 {
            _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set1_ps(x))) as u16
        }
        #[target_feature(enable = "f16c")]
        fn hw_to(h: u16) -> f32 {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(h as i16)))
        }
        for h in 0..=u16::MAX {
            // SAFETY: f16c detected above.
            let (want, got) = (unsafe { hw_to(h) }, to_f32(h));
            assert!(
                want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()),
                "{h:#06x}"
            );
        }
        let mut rng = crate::testing::Rng::new(11);
        for i in 0..200_000u32 {
            // Half random bit patterns, half with exponents around the f16 range (subnormal to overflow).
            let raw = rng.next_u64() as u32;
            let exp = 100 + (raw >> 23) % 50;
            let bits = if i % 2 == 0 {
                (raw & 0x807F_FFFF) | (exp << 23)
            } else {
                raw
            };
            let x = f32::from_bits(bits);
            // SAFETY: f16c detected above.
            let want = unsafe { hw_from(x) };
            let got = from_f32(x);
            assert!(
                want == got || (x.is_nan() && got & 0x7C00 == 0x7C00 && got & 0x3FF != 0),
                "{bits:#010x}: {want:#06x} vs {got:#06x}"
            );
        }
    }
}
