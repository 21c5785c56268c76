//! The graph IR every importer produces and every executor runs.
//!
//! A [`Graph`] is a topologically ordered list of [`Node`]s over named values, with constant tensors
//! (ONNX initializers and folded `Constant` nodes) in `initializers`. Ops carry their attributes already
//! validated and normalised (pads as `[top, left, bottom, right]`, defaults filled in), so executors never
//! re-parse attributes.

use std::collections::BTreeMap;

use ndarray::ArrayD;

/// A constant or runtime tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
}

impl Tensor {
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::I64(a) => a.shape(),
        }
    }
    pub fn dtype(&self) -> &'static str {
        match self {
            Tensor::F32(_) => "f32",
            Tensor::I64(_) => "i64",
        }
    }
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Some(a),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<&ArrayD<i64>> {
        match self {
            Tensor::I64(a) => Some(a),
            _ => None,
        }
    }
}

/// A dimension of a graph input or output: fixed, or named (a dynamic batch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    Symbolic(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub shape: Vec<Dim>,
}

/// 2-D convolution attributes (NCHW input, OIHW weights).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvAttrs {
    pub kernel_shape: [usize; 2],
    pub strides: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub group: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GemmAttrs {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

/// 2-D max-pool attributes (NCHW).
#[derive(Clone, Debug, PartialEq)]
pub struct PoolAttrs {
    pub kernel_shape: [usize; 2],
    pub strides: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub ceil_mode: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// inputs: X, W, optional B.
    Conv(ConvAttrs),
    /// inputs: A, B, optional C.
    Gemm(GemmAttrs),
    /// inputs: A, B (2-D or batched with broadcasting, as numpy.matmul).
    MatMul,
    Relu,
    MaxPool(PoolAttrs),
    Flatten {
        axis: i64,
    },
    /// inputs: data, shape (an i64 tensor, normally an initializer).
    Reshape {
        allowzero: bool,
    },
    /// Elementwise with numpy broadcasting.
    Add,
}

impl Op {
    /// The ONNX op type this op came from (for messages and `inspect`).
    pub fn op_type(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::Gemm(_) => "Gemm",
            Op::MatMul => "MatMul",
            Op::Relu => "Relu",
            Op::MaxPool(_) => "MaxPool",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Add => "Add",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The ONNX node name, or `<op_type>_<index>` where the file left it empty.
    pub name: String,
    pub op: Op,
    /// Value names; an empty string is an absent optional input.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub name: String,
    /// The default-domain opset the model was exported with.
    pub opset: i64,
    /// Runtime inputs only (initializers that ONNX also lists as inputs are removed).
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub initializers: BTreeMap<String, Tensor>,
    /// Topologically ordered.
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Number of scalar parameters held in f32 initializers.
    pub fn parameter_count(&self) -> usize {
        self.initializers
            .values()
            .filter_map(Tensor::as_f32)
            .map(|a| a.len())
            .sum()
    }
}
