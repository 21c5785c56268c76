//! Portable kernels, always registered: plain Rust shaped so that LLVM auto-vectorizes it with the baseline
//! target features (SSE2 on x86_64). No `target_feature`, no intrinsics, no `unsafe`. Each kernel is a packing
//! layout plus a register-tile function; the loop nest, cache blocking and threading are
//! [`crate::frame::gemm::drive`]'s. Ragged row tiles dispatch to const-generic instantiations of the tile
//! function; ragged columns read the zero padding of the packed panel and are not stored.

pub mod gemm_bf16;
pub mod gemm_f16w;
pub mod gemm_f32;
pub mod gemm_f32w8;
pub mod gemm_u8i8;
pub mod gemm_w4;
pub mod requant;

pub use gemm_f32::{GENERIC_GEMM_F32, GenericGemmF32};
pub use gemm_f32w8::{GENERIC_GEMM_F32W8, GenericGemmF32W8};
pub use gemm_u8i8::{GENERIC_GEMM_U8I8, GenericGemmU8I8};
