//! Naive scalar oracles: plain triple loops over row-major data, with the integer-accumulation semantics every
//! optimized kernel must reproduce. They serve twice: as the `scalar` ISA's kernels (so a run can be forced onto
//! them) and as the reference every other kernel is tested against. Their packed B is a plain row-major copy.

pub mod gemm_bf16;
pub mod gemm_f16w;
pub mod gemm_f32;
pub mod gemm_f32_dyn_i8;
pub mod gemm_f32w8;
pub mod gemm_u8i8;
pub mod gemm_w4;
pub mod requant;

pub use gemm_f32::{SCALAR_GEMM_F32, ScalarGemmF32};
pub use gemm_f32w8::{SCALAR_GEMM_F32W8, ScalarGemmF32W8};
pub use gemm_u8i8::{SCALAR_GEMM_U8I8, ScalarGemmU8I8};

use crate::PackedB;

/// The reference packing: a row-major copy of `b` (`k x n`).
fn pack_row_major<T: Copy>(kernel: &'static str, b: &[T], k: usize, n: usize) -> PackedB<T> {
    assert!(
        b.len() >= k * n,
        "{kernel}: b has {} elements, {k}x{n} needs {}",
        b.len(),
        k * n
    );
    PackedB {
        k,
        n,
        data: b[..k * n].to_vec(),
        kernel,
    }
}

/// Per-column parameter `j` of a slice of length 1 (per-tensor) or `n` (per-channel).
#[inline]
fn per_column<T: Copy>(values: &[T], j: usize) -> T {
    if values.len() == 1 {
        values[0]
    } else {
        values[j]
    }
}
