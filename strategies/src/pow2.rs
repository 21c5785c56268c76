//! Power-of-two scales, for back ends whose requantization is a shift.
//!
//! Requantizing an int32 accumulator to the next layer's integers multiplies it by
//! `m = s_input * s_weight / s_output`. General back ends do that with a fixed-point multiplier and a shift;
//! some accelerators (and cheap fixed-point DSP / microcontroller paths) have only an arithmetic right shift.
//! Those need `m` to be an exact power of two, which holds when every scale is one: quantize with
//! [`ScaleConstraint::PowerOfTwo`], then turn each multiplier into a shift with [`shift_for_multiplier`].
//!
//! The constraint rounds each scale **up** to the next power of two, so the clipping range still fits inside
//! the integer range (nothing that was in range saturates); the price is a coarser step, at most 2x (one bit).

use std::fmt;
use std::str::FromStr;

use crate::scheme::SchemeError;

/// Which scales a scheme may hand out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScaleConstraint {
    /// Any positive float.
    #[default]
    Float,
    /// Exact powers of two, rounded up from the float scale ([`pow2_ceil`]).
    PowerOfTwo,
}

impl ScaleConstraint {
    /// The short name used in strategy names and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            ScaleConstraint::Float => "float",
            ScaleConstraint::PowerOfTwo => "pow2",
        }
    }

    /// The scale this constraint hands out for the float scale `scale`.
    pub fn apply(self, scale: f32) -> f32 {
        match self {
            ScaleConstraint::Float => scale,
            ScaleConstraint::PowerOfTwo => pow2_ceil(scale),
        }
    }
}

impl fmt::Display for ScaleConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ScaleConstraint {
    type Err = SchemeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "float" | "fp" => Ok(ScaleConstraint::Float),
            "pow2" | "power-of-two" | "po2" => Ok(ScaleConstraint::PowerOfTwo),
            _ => Err(SchemeError::UnknownConstraint(s.to_string())),
        }
    }
}

/// The smallest power of two `>= x`, exactly, for positive finite `x` (subnormals included); `+inf` when that
/// power exceeds `f32::MAX`. Zero, negative and non-finite inputs come back unchanged.
pub fn pow2_ceil(x: f32) -> f32 {
    if !(x.is_finite() && x > 0.0) {
        return x;
    }
    let bits = x.to_bits();
    let (exponent, mantissa) = (bits >> 23, bits & 0x7f_ffff);
    if exponent == 0 {
        // Subnormal: value = mantissa * 2^-149; the next power of two of the mantissa is still a valid bit
        // pattern (2^23 is the exponent field 1, i.e. f32::MIN_POSITIVE).
        return f32::from_bits(mantissa.next_power_of_two());
    }
    if mantissa == 0 {
        x
    } else {
        // Exponent field 255 is +inf with a zero mantissa.
        f32::from_bits((exponent + 1) << 23)
    }
}

/// Whether `x` is an exact (positive) power of two.
pub fn is_pow2(x: f32) -> bool {
    x.is_finite() && x > 0.0 && pow2_ceil(x) == x
}

/// The right shift that implements multiplying by `multiplier`: `shift` with `multiplier == 2^-shift` exactly.
/// Negative means a left shift (a multiplier above 1).
///
/// Errors with [`SchemeError::NotPowerOfTwo`] unless `multiplier` is an exact positive power of two (e.g. the
/// ratio `s_in * s_w / s_out` of power-of-two scales; `3/8` is not one).
pub fn shift_for_multiplier(multiplier: f64) -> Result<i32, SchemeError> {
    let err = || SchemeError::NotPowerOfTwo(multiplier);
    if !(multiplier.is_finite() && multiplier > 0.0) {
        return Err(err());
    }
    let bits = multiplier.to_bits();
    let (exponent, mantissa) = ((bits >> 52) as i32, bits & ((1u64 << 52) - 1));
    let log2 = if exponent == 0 {
        // Subnormal: mantissa * 2^-1074.
        if !mantissa.is_power_of_two() {
            return Err(err());
        }
        mantissa.trailing_zeros() as i32 - 1074
    } else {
        if mantissa != 0 {
            return Err(err());
        }
        exponent - 1023
    };
    Ok(-log2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow2_ceil_is_exact_at_every_kind_of_input() {
        assert_eq!(pow2_ceil(1.0), 1.0);
        assert_eq!(pow2_ceil(0.75), 1.0);
        assert_eq!(pow2_ceil(1.0 + f32::EPSILON), 2.0);
        assert_eq!(pow2_ceil(3.0 / 127.0), 1.0 / 32.0);
        assert_eq!(pow2_ceil(f32::MIN_POSITIVE), f32::MIN_POSITIVE);
        assert_eq!(pow2_ceil(f32::from_bits(3)), f32::from_bits(4));
        assert_eq!(pow2_ceil(f32::from_bits(0x7f_ffff)), f32::MIN_POSITIVE);
        assert_eq!(pow2_ceil(f32::MAX), f32::INFINITY);
        assert!(is_pow2(0.125) && !is_pow2(0.375) && !is_pow2(0.0) && !is_pow2(-2.0));
    }

    #[test]
    fn shifts_cover_left_right_and_subnormal_multipliers() {
        assert_eq!(shift_for_multiplier(1.0), Ok(0));
        assert_eq!(shift_for_multiplier(4.0), Ok(-2));
        assert_eq!(shift_for_multiplier(2f64.powi(-20)), Ok(20));
        assert_eq!(shift_for_multiplier(2f64.powi(-1074)), Ok(1074));
        for bad in [
            0.0,
            -0.5,
            0.375,
            f64::NAN,
            f64::INFINITY,
            3.0 * 2f64.powi(-1074),
        ] {
            assert!(shift_for_multiplier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn constraint_names_round_trip() {
        for c in [ScaleConstraint::Float, ScaleConstraint::PowerOfTwo] {
            assert_eq!(c.name().parse::<ScaleConstraint>(), Ok(c));
        }
        assert!("pow3".parse::<ScaleConstraint>().is_err());
    }
}
