//! Float kernels on FMA: `f32` GEMM, weight-only int8, FP16-weight and group-wise int4 weight GEMMs, each in
//! an AVX2 + FMA form (ymm, [`crate::Isa::Avx2`]) and/or an AVX-512 form (zmm).
//!
//! The AVX-512 forms of the `f32`, int8-weight and f16-weight GEMMs need only AVX-512 F, but are registered at
//! the [`crate::Isa::Avx512Vnni`] tier (and named `avx512vnni_...`): the ISA ladder has no plain AVX-512 F
//! tier, and every VNNI CPU has AVX-512 F. The int4 kernel's integer path does use VNNI (`vpdpbusd`).
//!
//! Common shape: B packed k-major in panels of `NR` columns (zero-padded), A read in place (each A value
//! broadcast against one B row), accumulators zeroed before the depth loop (an accumulator holding a denormal
//! bit pattern would slow the FMAs) and added to C after it, masked stores for ragged columns, smaller tiles for
//! ragged rows; loop nest, cache blocking and threading from [`crate::frame::gemm::drive`].

pub mod gemm_f16w;
pub mod gemm_f32;
pub mod gemm_f32w8;
pub mod gemm_w4;
