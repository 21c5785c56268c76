//! The static requantization epilogue compiled for AVX2 and for AVX-512: the portable code of
//! [`crate::frame::nhwc::requantize_u8_f32`] (inlined) under wider target features, so the compiler uses 8 or
//! 16 lanes instead of SSE2's 4. Same IEEE operations in the same order (Rust never contracts to FMA), so every
//! variant gives the same bits as the generic kernel; `kernels/tests/frame.rs` checks it.

use crate::frame::nhwc::requantize_u8_f32;
use crate::{Isa, Kernel, RequantU8};

macro_rules! epilogue_kernel {
    ($ty:ident, $static:ident, $name:literal, $isa:expr, $features:literal, $inner:ident) => {
        pub struct $ty;

        pub static $static: $ty = $ty;

        impl Kernel for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn isa(&self) -> Isa {
                $isa
            }
        }

        /// # Safety
        /// The CPU must support the enabled target features (the registry hands the kernel out only when
        /// [`Isa::is_available`] holds for its ISA).
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $inner(
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

        impl RequantU8 for $ty {
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
                assert!(self.isa().is_available(), "{} needs {}", $name, self.isa());
                // SAFETY: the features are present (checked above).
                unsafe {
                    $inner(
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
                    )
                }
            }
        }
    };
}

epilogue_kernel!(
    Avx2RequantU8,
    AVX2_REQUANT_U8,
    "avx2_requant_u8_f32",
    Isa::Avx2,
    "avx2,fma",
    avx2_requant
);
// Plain AVX-512 (F/BW/VL) sits in the avx512vnni tier, as the other AVX-512F kernels do (DESIGN-float-gemm.md).
epilogue_kernel!(
    Avx512RequantU8,
    AVX512_REQUANT_U8,
    "avx512vnni_requant_u8_f32",
    Isa::Avx512Vnni,
    "avx512f,avx512bw,avx512vl",
    avx512_requant
);

/// The AVX2 GEMM, then the AVX2 epilogue, per row block.
pub static AVX2_GEMM_U8I8_REQUANT: crate::frame::gemm_requant::ComposedGemmRequant =
    crate::frame::gemm_requant::ComposedGemmRequant {
        name: "avx2_gemm_u8i8_requant_u8_6x8",
        isa: Isa::Avx2,
        gemm: &crate::x86_64::avx2::AVX2_GEMM_U8I8,
        requant: &AVX2_REQUANT_U8,
    };
