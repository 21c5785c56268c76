//! AVX-512 VNNI kernels (F/BW/VL + VNNI): int8 GEMM on `vpdpbusd`, and the dynamic-quantization GEMM built on
//! the same register tile.

pub mod gemm_f32_dyn_i8;
pub mod gemm_requant;
pub mod gemm_u8i8;

pub use gemm_f32_dyn_i8::{AVX512VNNI_GEMM_F32_DYN_I8, Avx512VnniGemmF32DynI8};
pub use gemm_requant::{AVX512VNNI_GEMM_U8I8_REQUANT, Avx512VnniGemmU8I8Requant};
pub use gemm_u8i8::{AVX512VNNI_GEMM_U8I8, Avx512VnniGemmU8I8};
