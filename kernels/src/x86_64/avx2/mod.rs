//! AVX2 (+FMA) int8 kernels, and the k-groups-of-4 B packing the x86 int8 kernels share.

pub mod gemm_u8i8;
pub mod pack;

pub use gemm_u8i8::{AVX2_GEMM_U8I8, Avx2GemmU8I8};
