//! Quantization schemes, granularities and calibrators, on plain tensors.
//!
//! This crate never sees the model IR: it turns float tensors (ndarray views) and activation statistics into
//! quantization parameters and quantized values. The harness decides which tensors to quantize; this crate
//! decides how.
//!
//! Conventions: weights are quantized to `i8`, activations to `u8` (the operand types of the u8 x s8 GEMM).
//! A weight matrix is seen as `[k, n]` with output channels along `n` (columns), the layout the GEMM packs.

pub mod bits;
pub mod calib;
pub mod log;
pub mod observer;
pub mod pow2;
pub mod ptq;
pub mod scheme;

pub use bits::{pack_bits, pack_codes, packed_len, unpack_bits, unpack_codes};
pub use calib::{
    CalibError, CalibrationMethod, Calibrator, StreamingHistogram, weight_range_minmax,
    weight_range_mse,
};
pub use log::{
    LogParams, log_decode_lut_i8, log_dequantize, log_dequantize_weights, log_int_scale,
    log_params, log_quantize, log_quantize_weights, log_to_int8,
};
pub use observer::MinMaxObserver;
pub use pow2::{ScaleConstraint, pow2_ceil, shift_for_multiplier};
pub use ptq::{
    AdaRoundConfig, GptqConfig, HessianAccumulator, MeanAccumulator, PtqError, QuantizedWeights,
    RowReservoir, adaround, correct_bias, equalize_pair, gptq,
};
pub use scheme::{
    ActParams, Granularity, QParams, Scheme, SchemeError, activation_params_u8,
    quantize_weights_i8, weight_params_i8,
};
pub use scheme::{
    activation_params, dequantize_weights, minmax_range, qrange, quantize_weights, weight_params,
    weight_params_try_with, weight_params_with,
};
