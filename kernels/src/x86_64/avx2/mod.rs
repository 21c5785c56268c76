//! AVX2 (+FMA) int8 kernels, and the k-groups-of-4 B packing the x86 int8 kernels share.

pub mod gemm_u8i8;
pub mod pack;

pub use gemm_u8i8::{AVX2_GEMM_U8I8, Avx2GemmU8I8};

/// The AVX2 tier's dynamic int8 GEMM: the reference composition (range, quantization, GEMM, compensation,
/// dequantization as separate passes) on the AVX2 GEMM. Before it, an AVX2 target fell back to the generic
/// composition (all-MiniLM-L6-v2 dynamic int8 at `isa = "avx2"`: 575 ms per batch of 8, FP32 178 ms).
pub static AVX2_GEMM_F32_DYN_I8: crate::reference::gemm_f32_dyn_i8::ComposedGemmF32DynI8 =
    crate::reference::gemm_f32_dyn_i8::ComposedGemmF32DynI8 {
        name: "avx2_gemm_f32_dyn_i8_6x8",
        isa: crate::Isa::Avx2,
        inner: &AVX2_GEMM_U8I8,
    };
