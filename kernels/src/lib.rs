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
pub mod formats;
pub mod frame;
pub mod generic;
pub mod isa;
pub mod knobs;
pub mod reference;
pub mod registry;
pub mod testing;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub use error::KernelError;
pub use isa::Isa;
pub use reference::gemm_f32_dyn_i8::DynRule;
pub use registry::{KernelSet, select};

/// What every kernel can say about itself, so that result rows name the kernel that ran.
pub trait Kernel: Send + Sync {
    /// `{isa}_{op}_{acc}_{mr}x{nr}`, e.g. `generic_gemm_u8i8_s32_4x16`.
    fn name(&self) -> &'static str;
    /// The instruction set the kernel's code needs.
    fn isa(&self) -> Isa;

    /// Panics unless this CPU runs the kernel's ISA: the safe entry points' guard before they call
    /// `#[target_feature]` code (the dispatcher never hands out such a kernel; a caller that picks one by
    /// hand gets this message instead of an illegal instruction).
    fn assert_runnable(&self) {
        assert!(
            self.isa().is_available(),
            "{}: this CPU lacks {}",
            self.name(),
            self.isa()
        );
    }
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

/// The static requantization epilogue: i32 accumulators to the next layer's u8 activations, with the
/// arithmetic and rounding of [`frame::nhwc::requantize_u8_f32`] (every implementation gives the same bits; the
/// SIMD ones are that code compiled for wider vectors).
pub trait RequantU8: Kernel {
    #[allow(clippy::too_many_arguments)]
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
    );
}

/// The static requantization of one layer, per output column `j` (slices of length `n`): `offset[j]` (bias in
/// accumulator units plus the activation zero point times the weight column sums), `mult[j] = s_in * s_w[j] /
/// s_out`, and for affine weights `zero_point_rows = Some((b_zp, row_sums))` (`row_sums` has one entry per row of
/// A). Arithmetic and rounding are [`frame::nhwc::requantize_u8_f32`]'s.
#[derive(Clone, Copy, Debug)]
pub struct Requant<'a> {
    pub offset: &'a [i32],
    pub zero_point_rows: Option<(&'a [i32], &'a [i32])>,
    pub mult: &'a [f32],
    pub out_zp: i32,
    /// ReLU fused: outputs clamp at `out_zp` (real 0) instead of 0.
    pub relu: bool,
}

/// The static int8 layer in one call: `out[m x n] (u8) = requant(A[m x k] (u8) * B[k x n] (i8))`, with
/// [`Requant`]'s arithmetic. A kernel may requantize straight from the accumulator registers (no i32 matrix in
/// memory) or compose a GEMM and a [`RequantU8`] over row blocks that stay in cache; either way the bytes are
/// the scalar oracle's. Splits rows over the current rayon pool like [`GemmU8I8`].
pub trait GemmU8I8Requant: Kernel {
    /// Packs row-major `b` (`k x n`).
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8>;
    /// `a` is row-major with `lda >= k`; `out` row-major with `ldo >= n`; `out` is overwritten.
    #[allow(clippy::too_many_arguments)]
    fn gemm_requant(
        &self,
        m: usize,
        a: &[u8],
        lda: usize,
        b: &PackedB<i8>,
        rq: &Requant<'_>,
        out: &mut [u8],
        ldo: usize,
    );
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

/// Dynamic int8 GEMM: f32 A quantized to u8 while packing (per-tensor scale and zero point computed from A's
/// range by a [`DynRule`]: ONNX DynamicQuantizeLinear's, round half to even, range includes 0, see
/// [`reference::gemm_f32_dyn_i8::dynamic_qparams`]; or symmetric, see
/// [`reference::gemm_f32_dyn_i8::symmetric_qparams`]), times prepacked s8 B with per-column scales (len 1 or n)
/// and zero points, f32 C = dequantized result (+ bias, optional relu). Returns the activation
/// `(scale, zero_point)` it used. `c` is overwritten.
pub trait GemmF32DynI8: Kernel {
    /// Packs row-major `b` (`k x n`).
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8>;
    /// `a` is row-major with `lda >= k`; `c` row-major with `ldc >= n`; `bias`, if any, has `n` entries. A's
    /// `(scale, zero_point)` follow `rule` (ONNX's affine rule, or symmetric).
    #[allow(clippy::too_many_arguments)]
    fn gemm_with(
        &self,
        rule: reference::gemm_f32_dyn_i8::DynRule,
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedB<i8>,
        b_scales: &[f32],
        b_zero_points: &[i32],
        bias: Option<&[f32]>,
        relu: bool,
        c: &mut [f32],
        ldc: usize,
    ) -> (f32, i32);
    /// [`GemmF32DynI8::gemm_with`] by ONNX DynamicQuantizeLinear's rule.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedB<i8>,
        b_scales: &[f32],
        b_zero_points: &[i32],
        bias: Option<&[f32]>,
        relu: bool,
        c: &mut [f32],
        ldc: usize,
    ) -> (f32, i32) {
        self.gemm_with(
            reference::gemm_f32_dyn_i8::DynRule::Affine,
            m,
            a,
            lda,
            b,
            b_scales,
            b_zero_points,
            bias,
            relu,
            c,
            ldc,
        )
    }
}

/// BF16 GEMM: `C[m x n] (f32) = bf16(A) * bf16(B)`: both operands rounded to bf16 (nearest, ties to even; see
/// [`formats::bf16`]), products and sums in `f32`. `c` is overwritten.
pub trait GemmBf16: Kernel {
    /// Rounds row-major `b` (`k x n`) to bf16 and packs it.
    fn pack_b(&self, b: &[f32], k: usize, n: usize) -> PackedB<u16>;
    /// `a` (f32, rounded to bf16 while packing or streaming) is row-major with `lda >= k`; `c` has `ldc >= n`.
    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedB<u16>, c: &mut [f32], ldc: usize);
}

/// FP16-weight GEMM: `C[m x n] = A[m x k] (f32) * B[k x n]`, B stored as IEEE binary16 bits (see
/// [`formats::f16`]) and widened exactly to `f32` in registers; products and sums in `f32`. `c` is overwritten.
pub trait GemmF16W: Kernel {
    /// Packs row-major f16 bits `b` (`k x n`).
    fn pack_b(&self, b: &[u16], k: usize, n: usize) -> PackedB<u16>;
    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedB<u16>, c: &mut [f32], ldc: usize);
}

/// Group-wise int4 weights packed by one [`GemmW4`] kernel: `k x n` logical shape; every layout (nibble order,
/// where scales, zero points and precomputed sums live) is private to the kernel named in `kernel`.
#[derive(Clone, Debug)]
pub struct PackedW4 {
    pub k: usize,
    pub n: usize,
    /// Rows of `k` sharing one scale and zero point per column (one of [`formats::int4::GROUPS`]).
    pub group: usize,
    /// Nibbles, two per byte.
    pub data: Vec<u8>,
    pub scales: Vec<f32>,
    pub zero_points: Vec<u8>,
    /// Kernel-specific precomputed terms (e.g. per-group column sums); may be empty.
    pub sums: Vec<i32>,
    /// Name of the kernel that packed it; a kernel refuses (panics on) another kernel's packing.
    pub kernel: &'static str,
}

/// Weight-only int4 GEMM with group-wise scales and zero points: `C[m x n] = A (f32) * dequant(B)`, where
/// `dequant(B)[p][j] = (q[p][j] - zp[g][j]) * scale[g][j]`, `g = p / group` (see [`formats::int4`]). `c` is
/// overwritten by both entry points.
pub trait GemmW4: Kernel {
    /// Packs row-major nibble values `q` (`k x n`, each `0..=15`) with `ceil(k / group) x n` row-major `scales`
    /// and `zero_points` (`0..=15`; symmetric quantization is all 8). `group` is 32, 64 or 128; `k` need not
    /// be a multiple of it.
    fn pack_b(
        &self,
        q: &[u8],
        k: usize,
        n: usize,
        group: usize,
        scales: &[f32],
        zero_points: &[u8],
    ) -> PackedW4;
    /// `f32` activations times the dequantized weights, `f32` products and sums.
    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedW4, c: &mut [f32], ldc: usize);
    /// Activations dynamically quantized per row to int8 ([`formats::int4::quantize_row_dyn_i8`]); exact integer
    /// dot products per group, `C[i][j] = a_scale[i] * sum_g scale[g][j] * sum_{p in g} a_q[i][p] * (q[p][j] -
    /// zp[g][j])`, with the group terms summed in `f32`.
    fn gemm_dyn_i8(&self, m: usize, a: &[f32], lda: usize, b: &PackedW4, c: &mut [f32], ldc: usize);
}
