//! Quantization of a graph: calibration statistics from FP32 runs, the quantized model (packed int8 weights,
//! requantization parameters, which values stay integer between layers), its executor and its serialized form.
//!
//! Rules (first slice): Conv (group 1), Gemm (constant B, no transA) and MatMul (constant 2-D B) become
//! quantized linear layers; a Relu that is the only consumer of such a layer's output is fused into it.
//! In static mode MaxPool, Relu, Flatten and Reshape run directly on u8 values (they commute with the affine
//! map), so values stay integer from the first quantized layer to the graph output. Everything else runs in f32.

pub mod artifact;
pub mod calibrate;
pub mod model;
pub mod refine;
pub mod serialize;
pub mod strategy;

pub use artifact::{ArtifactError, StrategyNameError};
pub use calibrate::ActivationRanges;
pub use model::{QuantizedModel, Signature};
pub use strategy::{
    ActMode, Calibration, FloatFormat, LinearStrategy, Quantizer, Refinement, Strategy, WeightRange,
};

#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("node \"{node}\" ({op}): {message}")]
    Node {
        node: String,
        op: &'static str,
        message: String,
    },
    #[error("value \"{value}\" has no calibration range: the calibration run never produced it")]
    NoRange { value: String },
    #[error("value \"{0}\" is used before it is computed")]
    MissingValue(String),
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
    #[error(transparent)]
    Scheme(#[from] strategies::SchemeError),
    #[error("calibration of value \"{value}\": {source}")]
    Calibration {
        value: String,
        source: strategies::calib::CalibError,
    },
    #[error("weight range: {0}")]
    WeightRange(#[from] strategies::calib::CalibError),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Ptq(#[from] strategies::ptq::PtqError),
}
