//! The scalar oracle of the static requantization epilogue: one element at a time, written out plainly, with the
//! arithmetic [`crate::frame::nhwc::requantize_u8_f32`] documents (f32 multiplier, round half to even, zero
//! point, clamp). Every registered epilogue must give exactly these bits.

use crate::{Isa, Kernel, RequantU8};

pub struct ScalarRequantU8;

pub static SCALAR_REQUANT_U8: ScalarRequantU8 = ScalarRequantU8;

impl Kernel for ScalarRequantU8 {
    fn name(&self) -> &'static str {
        "scalar_requant_u8_f32"
    }
    fn isa(&self) -> Isa {
        Isa::Scalar
    }
}

impl RequantU8 for ScalarRequantU8 {
    fn requantize(
        &self,
        acc: &[i32],
        m: usize,
        n: usize,
        ldc: usize,
        offset: &[i32],
        zero_point_rows: Option<(&[i32], &[i32])>,
        mult: &[f32],
        out_zp: i32,
        relu: bool,
        out: &mut [u8],
    ) {
        let lo = if relu { out_zp.clamp(0, 255) } else { 0 };
        for i in 0..m {
            for j in 0..n {
                let zp_term = zero_point_rows.map_or(0, |(b_zp, rows)| b_zp[j] * rows[i]);
                let x = (acc[i * ldc + j] + offset[j] - zp_term) as f32 * mult[j];
                // Products beyond +-2^22 saturate the u8 output either way.
                let r = x.clamp(-4_194_304.0, 4_194_304.0).round_ties_even() as i32;
                out[i * n + j] = (r + out_zp).clamp(lo, 255) as u8;
            }
        }
    }
}

/// The static layer's oracle: the scalar GEMM, then this epilogue.
pub static SCALAR_GEMM_U8I8_REQUANT: crate::frame::gemm_requant::ComposedGemmRequant =
    crate::frame::gemm_requant::ComposedGemmRequant {
        name: "scalar_gemm_u8i8_requant_u8",
        isa: Isa::Scalar,
        gemm: &crate::reference::SCALAR_GEMM_U8I8,
        requant: &SCALAR_REQUANT_U8,
    };
