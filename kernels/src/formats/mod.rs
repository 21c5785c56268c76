//! Number formats of the float and weight-only kernels, with their scalar conversions: [`bf16`] (brain float,
//! 8-bit significand), [`mod@f16`] (IEEE binary16) and [`int4`] (4-bit weights, two per byte, group-wise
//! scales and zero points, plus the dynamic int8 activation quantization of the int4 x int8 path).
//!
//! These are element formats, not ggml-style blocks: each kernel packs its weights into panels of its own layout
//! (see the kernels' `pack_b`), so no `#[repr(C)]` block is shared between kernels. Every conversion here is the
//! scalar definition that the reference kernels use and that the SIMD kernels must reproduce; where a SIMD
//! instruction deviates (BF16 conversions flush subnormals), the kernel documents it and the tests budget it.

pub mod bf16;
pub mod f16;
pub mod int4;
