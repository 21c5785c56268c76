//! Dense storage of narrow integers: what a serialized model stores, so the byte count is the real size.
//!
//! # Layout
//!
//! One little-endian bit stream for every width: value `i` occupies stream bits `i*bits .. (i+1)*bits`, least
//! significant bit first, and stream bit `j` is bit `j % 8` of byte `j / 8`. So
//! - 8 bits: one value per byte;
//! - 4 bits: two per byte, **low nibble first** (value `2t` in bits 0..4 of byte `t`, value `2t+1` in bits 4..8);
//! - 2 bits: four per byte, value `4t + r` in bits `2r .. 2r+2` of byte `t`;
//! - 3, 5, 6, 7 bits: values straddle byte boundaries (e.g. 3 bits: value 2 takes bits 6..8 of byte 0 and bit 0
//!   of byte 1).
//!
//! `len` values take exactly `ceil(len * bits / 8)` bytes ([`packed_len`]); unused high bits of the last byte are
//! zero. Signed values ([`pack_bits`]) are stored as `bits`-bit two's complement and sign-extended on unpacking;
//! unsigned codes (e.g. the logarithmic codes of [`crate::log`]) go through [`pack_codes`].

use crate::scheme::SchemeError;

/// Narrowest width the packers accept.
pub const MIN_PACK_BITS: u32 = 1;
/// Widest width the packers accept.
pub const MAX_PACK_BITS: u32 = 8;

fn check_bits(bits: u32) -> Result<(), SchemeError> {
    if (MIN_PACK_BITS..=MAX_PACK_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(SchemeError::BitsOutOfRange {
            bits,
            min: MIN_PACK_BITS,
            max: MAX_PACK_BITS,
        })
    }
}

/// Bytes that `len` values of `bits` bits take: `ceil(len * bits / 8)`.
pub fn packed_len(len: usize, bits: u32) -> usize {
    (len * bits as usize).div_ceil(8)
}

/// Packs unsigned codes, each `< 2^bits`, densely (layout in the module docs).
pub fn pack_codes(codes: &[u8], bits: u32) -> Result<Vec<u8>, SchemeError> {
    check_bits(bits)?;
    if let Some((index, &code)) = codes
        .iter()
        .enumerate()
        .find(|&(_, &c)| u32::from(c) >> bits != 0)
    {
        return Err(SchemeError::CodeOutOfRange { index, code, bits });
    }
    Ok(pack_unchecked(codes.iter().copied(), codes.len(), bits))
}

/// Packs signed values, each in `[-2^(bits-1), 2^(bits-1) - 1]`, densely as `bits`-bit two's complement.
pub fn pack_bits(values: &[i8], bits: u32) -> Result<Vec<u8>, SchemeError> {
    check_bits(bits)?;
    let half = 1i32 << (bits - 1);
    if let Some((index, &value)) = values
        .iter()
        .enumerate()
        .find(|&(_, &v)| !(-half..half).contains(&i32::from(v)))
    {
        return Err(SchemeError::ValueOutOfRange {
            index,
            value: value.into(),
            bits,
        });
    }
    let mask = ((1u32 << bits) - 1) as u8;
    Ok(pack_unchecked(
        values.iter().map(|&v| v as u8 & mask),
        values.len(),
        bits,
    ))
}

/// `codes` must already fit in `bits` bits.
fn pack_unchecked(codes: impl Iterator<Item = u8>, len: usize, bits: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(packed_len(len, bits));
    let (mut acc, mut filled) = (0u32, 0u32);
    for c in codes {
        acc |= u32::from(c) << filled;
        filled += bits;
        if filled >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out.push(acc as u8);
    }
    out
}

/// Unpacks `len` unsigned codes of `bits` bits from the front of `bytes` (which may be longer).
pub fn unpack_codes(bytes: &[u8], bits: u32, len: usize) -> Result<Vec<u8>, SchemeError> {
    check_bits(bits)?;
    let needed = packed_len(len, bits);
    if bytes.len() < needed {
        return Err(SchemeError::PackedTooShort {
            len,
            bits,
            needed,
            got: bytes.len(),
        });
    }
    let mask = (1u32 << bits) - 1;
    let mut out = Vec::with_capacity(len);
    let mut next = bytes[..needed].iter();
    let (mut acc, mut filled) = (0u32, 0u32);
    for _ in 0..len {
        if filled < bits {
            // At most 7 bits are left over and a byte adds 8, so one byte always completes the value.
            acc |= u32::from(*next.next().expect("length checked")) << filled;
            filled += 8;
        }
        out.push((acc & mask) as u8);
        acc >>= bits;
        filled -= bits;
    }
    Ok(out)
}

/// Unpacks `len` signed values of `bits` bits from the front of `bytes`, sign-extending each.
pub fn unpack_bits(bytes: &[u8], bits: u32, len: usize) -> Result<Vec<i8>, SchemeError> {
    let shift = 8 - bits;
    Ok(unpack_codes(bytes, bits, len)?
        .into_iter()
        .map(|c| ((c << shift) as i8) >> shift)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_outside_one_to_eight_are_rejected() {
        for bits in [0, 9] {
            assert!(matches!(
                pack_bits(&[0], bits),
                Err(SchemeError::BitsOutOfRange { bits: b, .. }) if b == bits
            ));
            assert!(unpack_codes(&[0], bits, 1).is_err());
        }
    }

    #[test]
    fn three_bit_values_straddle_bytes() {
        // Stream bits 0..3 = 1, 3..6 = 2, 6..9 = 3: byte 0 = 0b11_010_001, byte 1 holds the top bit of 3 (0).
        let packed = pack_codes(&[1, 2, 3], 3).unwrap();
        assert_eq!(packed, vec![0b1101_0001, 0b0000_0000]);
        assert_eq!(unpack_codes(&packed, 3, 3).unwrap(), vec![1, 2, 3]);
        let packed = pack_codes(&[7, 7, 7], 3).unwrap();
        assert_eq!(packed, vec![0xff, 0b1]);
    }

    #[test]
    fn one_bit_signed_values_are_minus_one_and_zero() {
        let packed = pack_bits(&[-1, 0, -1], 1).unwrap();
        assert_eq!(packed, vec![0b101]);
        assert_eq!(unpack_bits(&packed, 1, 3).unwrap(), vec![-1, 0, -1]);
    }
}
