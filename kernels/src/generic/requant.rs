//! The portable static requantization epilogue: [`crate::frame::nhwc::requantize_u8_f32`] as a registered kernel.

use crate::frame::nhwc::requantize_u8_f32;
use crate::{Isa, Kernel, RequantU8};

/// Baseline x86-64 (SSE2) vectors: four lanes.
pub struct GenericRequantU8;

pub static GENERIC_REQUANT_U8: GenericRequantU8 = GenericRequantU8;

impl Kernel for GenericRequantU8 {
    fn name(&self) -> &'static str {
        "generic_requant_u8_f32"
    }
    fn isa(&self) -> Isa {
        Isa::Generic
    }
}

impl RequantU8 for GenericRequantU8 {
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
        requantize_u8_f32(
            acc,
            m,
            n,
            ldc,
            offset,
            zero_point_rows,
            mult,
            out_zp,
            relu,
            out,
        );
    }
}

/// The generic GEMM, then this epilogue, per row block.
pub static GENERIC_GEMM_U8I8_REQUANT: crate::frame::gemm_requant::ComposedGemmRequant =
    crate::frame::gemm_requant::ComposedGemmRequant {
        name: "generic_gemm_u8i8_requant_u8_4x4",
        isa: Isa::Generic,
        gemm: &crate::generic::GENERIC_GEMM_U8I8,
        requant: &GENERIC_REQUANT_U8,
    };
