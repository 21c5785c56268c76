//! AVX-512 BF16 kernels: bf16 GEMM on `vdpbf16ps` (two bf16 products per 32-bit lane, accumulated in `f32`).
//!
//! The BF16 instructions treat subnormal inputs as zero and flush subnormal results (`vdpbf16ps`,
//! `vcvtne2ps2bf16`: no MXCSR, round to nearest even, DAZ/FTZ), where the scalar reference keeps subnormals;
//! the difference is below `2^-126` per term and inside the float GEMM budget's absolute floor.

pub mod gemm_bf16;
