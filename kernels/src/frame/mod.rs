//! ISA-free building blocks shared by every kernel family: the blocked, threaded GEMM driver and B packing
//! ([`gemm`], [`pack`]), requantization and zero-point compensation ([`requant`]), convolution lowering
//! ([`conv`]) and ONNX-style (de)quantization ([`quantize`]). Nothing here depends on the CPU's ISA; SIMD
//! kernels plug a micro-kernel into [`gemm::drive`] and reuse the rest.

pub mod conv;
pub mod gemm;
pub mod gemm_requant;
pub mod nhwc;
pub mod pack;
pub mod quantize;
pub mod requant;

pub use conv::{Conv2dGeom, im2col};
pub use quantize::{dequantize_u8, min_max, min_max_at, quantize_i8, quantize_u8, quantize_u8_at};
pub use requant::{
    Scaler, col_sums_i8, compensate_zero_points, dequantize_acc_f32, requantize_u8, row_sums_u8,
};
