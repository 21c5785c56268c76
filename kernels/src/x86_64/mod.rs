//! x86_64 SIMD kernels, one module per ISA tier: `#[target_feature(enable = ...)] unsafe fn` inner code behind
//! safe [`crate::Kernel`] impls that the registry only hands out when [`crate::Isa::is_available`] holds.

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512bf16;
#[cfg(target_arch = "x86_64")]
pub mod avx512vnni;
#[cfg(target_arch = "x86_64")]
pub mod epilogue;
#[cfg(target_arch = "x86_64")]
pub mod fma;
