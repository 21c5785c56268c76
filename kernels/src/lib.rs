//! CPU kernels for quantized and float inference.
//!
//! This crate owns ISA detection and the single dispatch point ([`select`]): every kernel the harness runs is
//! chosen there, and every kernel reports its name and ISA so that result rows record what actually ran.
//! Kernels work on plain slices; shapes are validated by the safe callers, never inside hot loops.
//!
//! Layout: `isa` (detection, precedence explicit > `QH_ISA` > CPUID), `knobs` (environment overrides),
//! `registry` (which kernel serves which ISA), `reference` (naive scalar oracles), `generic` (portable kernels,
//! always registered), `frame` (ISA-free helpers: requantization, zero-point compensation, im2col, quantize).

pub mod error;
pub mod frame;
pub mod generic;
pub mod isa;
pub mod knobs;
pub mod reference;
pub mod registry;
pub mod testing;

pub use error::KernelError;
pub use isa::Isa;
pub use registry::{KernelSet, select};

/// What every kernel can say about itself, so that result rows name the kernel that ran.
pub trait Kernel: Send + Sync {
    /// `{isa}_{op}_{acc}_{mr}x{nr}`, e.g. `generic_gemm_u8i8_s32_4x16`.
    fn name(&self) -> &'static str;
    /// The instruction set the kernel's code needs.
    fn isa(&self) -> Isa;
}

/// A right-hand side (weights) matrix packed into the layout one kernel wants.
/// `k x n` logical shape; the data layout is private to the kernel named in `kernel`.
#[derive(Clone, Debug)]
pub struct PackedB<T> {
    pub k: usize,
    pub n: usize,
    pub data: Vec<T>,
    /// Name of the kernel that packed it; a kernel refuses (panics on) another kernel's packing.
    pub kernel: &'static str,
}

/// Integer GEMM: `C[m x n] (i32) = A[m x k] (u8) * B[k x n] (i8)`, no zero points (they are compensated
/// outside the micro-kernel with row and column sums, see [`frame::requant`]). Accumulation is exact i32.
/// Splits rows over the current rayon pool when it has more than one thread and `m` is large enough.
pub trait GemmU8I8: Kernel {
    /// Packs row-major `b` (`k x n`).
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8>;
    /// `a` is row-major with leading dimension `lda >= k`; `c` row-major with `ldc >= n`; `c` is overwritten.
    fn gemm(&self, m: usize, a: &[u8], lda: usize, b: &PackedB<i8>, c: &mut [i32], ldc: usize);
}

/// Float GEMM: `C[m x n] = A[m x k] * B[k x n]`, all f32; `c` is overwritten.
pub trait GemmF32: Kernel {
    fn pack_b(&self, b: &[f32], k: usize, n: usize) -> PackedB<f32>;
    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedB<f32>, c: &mut [f32], ldc: usize);
}

/// Weight-only int8 GEMM: `C[m x n] = A[m x k] (f32) * dequant(B)`, where column `j` of B dequantizes as
/// `(b - zero_points[j]) * scales[j]` (slices of length `n`, or length 1 for per-tensor). `c` is overwritten.
pub trait GemmF32W8: Kernel {
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8>;
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedB<i8>,
        scales: &[f32],
        zero_points: &[i32],
        c: &mut [f32],
        ldc: usize,
    );
}
