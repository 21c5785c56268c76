//! Quantization of a graph: calibration statistics from FP32 runs, the quantized model (packed int8 weights,
//! requantization parameters, which values stay integer between layers), its executor and its serialized form.
//!
//! # Rules
//!
//! `harness inspect MODEL [--strategy NAME]` prints what these rules decide for a model, layer by layer
//! ([`model::float_reason`] is the one place the builder and `inspect` ask).
//!
//! **Which ops are quantized.** Conv (any group, including depthwise), Gemm (constant B, no transA, C absent or
//! a constant per-column bias) and MatMul (constant 2-D B) become quantized linear layers: int8 (or 2..7-bit)
//! weights, s32 accumulation. Every other op the FP32 executor supports runs in f32 inside the quantized model
//! (its u8 inputs dequantized, NHWC images turned back into NCHW, then [`crate::exec::eval::eval_op`]); so do
//! MatMuls of two activations, a Gemm with transA or a full `[m, n]` C, and layers with weights computed at
//! run time. A Relu that is a quantized layer's only consumer is fused into it.
//!
//! **Per strategy family.** Static, dynamic and weight-only activations quantize the same layers, with two
//! exceptions for grouped convolutions (group > 1), which stay in FP32 under row-group (k) granularity
//! (`group<g>`) and under the 16-bit float formats (fp16 / bf16, and FP32 layers of a mixed-precision map run
//! as float nodes). Refinements (GPTQ, AdaRound, bias correction, QAT) gather their statistics for group-1
//! layers; grouped convolutions fall back to round-to-nearest weights.
//!
//! **Grouped convolutions.** The `[k, n]` weights hold one group's inputs per column (`k = c_in / group * kh *
//! kw`) and are packed per group (`n / group` columns each). Static mode lowers each group with an im2col over
//! its channel slice of the NHWC input and runs the fused `gemm_u8i8_requant` kernel writing the group's output
//! columns (`ldo = c_out`); depthwise layers (one input and one output channel per group) run a direct loop
//! over taps and channels ([`kernels::frame::nhwc::depthwise_nhwc_acc`], weight zero points folded into the
//! weights) and the same requantization epilogue, bit for bit what the per-group GEMMs give. Dynamic and
//! weight-only modes run one GEMM per image and group on NCHW im2col.
//!
//! **Dynamic convolutions with one group, and depthwise ones** (per-tensor or per-channel weights) run
//! channels-last like static ones: the f32 input is quantized with its own per-tensor range straight into NHWC
//! u8, lowered a few images at a time by the NHWC im2col (contiguous `kw * c_in` runs) and the int8 GEMM, or
//! for depthwise layers by the direct loop over taps and channels (the input zero point's share `a_zp * sum_t
//! (w - w_zp)` taken off per channel), compensated for the zero points and dequantized, and each block is
//! transposed into the NCHW f32 output the float ops read. The integer sums are the NCHW lowering's in another
//! order, so the outputs are the same bit for bit. Other grouped convolutions keep the NCHW lowering.
//!
//! **Q / DQ boundaries (static mode).** A quantized layer's output is u8 with its calibrated parameters (NHWC
//! for convolutions). MaxPool, Relu, Flatten and Reshape run directly on u8 values (they commute with the
//! affine map; MaxPool and Relu keep NHWC), so values stay integer through them. A quantized layer whose input
//! is f32 quantizes it with the input's calibrated parameters (Q); any other op reading a u8 value dequantizes
//! it (DQ), as does a graph output.
//!
//! **Elementwise chains (static mode).** A run of consecutive nodes whose only non-constant input is one u8
//! value (or values the run computed from it), every other input a one-element f32 initializer, every op an
//! f32 elementwise map (Add, Sub, Mul, Div, Pow, the unary maps such as Clip, HardSigmoid, HardSwish, Sigmoid,
//! Tanh, LeakyRelu, Relu of a computed value, Identity, Max / Min / Sum / Mean), its inner values read only
//! inside the run and not graph outputs, runs as a 256-entry table on the u8 codes, in the input's layout
//! (NHWC or not) ([`lut`]). Hard-swish written as `Add(x, 3) -> Clip(0, 6) -> Mul(x, .) -> Div(6)` is one
//! chain. The table is the float path's own arithmetic ([`crate::exec::eval::eval_op`] on the 256 dequantized
//! codes, node by node); when every consumer of the chain's output is a static quantized layer (and it is not
//! a graph output) the entries are quantized with the output's calibrated parameters by the function the
//! layer's input quantization calls, so the output is u8 and the layer takes it with no conversion; otherwise
//! the table holds f32 values and the output is f32 in the graph's layout. Either way the model's outputs are
//! bit for bit those of the float path ([`model::QuantizedModel::without_luts`] runs that path). A Relu of the
//! u8 value itself is not a chain (it stays u8, above). Dynamic mode quantizes each layer's f32 input per run (range of the
//! tensor) and returns f32; weight-only layers take and return f32.

pub mod artifact;
pub mod calibrate;
pub mod lut;
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
