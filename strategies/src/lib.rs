//! Quantization schemes, granularities and calibrators, on plain tensors.
//!
//! This crate never sees the model IR: it turns float tensors (ndarray views) and activation statistics into
//! quantization parameters and quantized values. The harness decides which tensors to quantize; this crate
//! decides how.
//!
//! Conventions: weights are quantized to `i8`, activations to `u8` (the operand types of the u8 x s8 GEMM).
//! A weight matrix is seen as `[k, n]` with output channels along `n` (columns), the layout the GEMM packs.

pub mod observer;
pub mod scheme;

pub use observer::MinMaxObserver;
pub use scheme::{
    ActParams, Granularity, QParams, Scheme, SchemeError, activation_params_u8,
    quantize_weights_i8, weight_params_i8,
};
