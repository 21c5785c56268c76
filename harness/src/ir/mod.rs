//! The graph IR every importer produces and every executor runs.
//!
//! A [`Graph`] is a topologically ordered list of [`Node`]s over named values, with constant tensors
//! (ONNX initializers and folded `Constant` nodes) in `initializers`. Ops carry their attributes already
//! validated and normalised (pads as `[top, left, bottom, right]`, defaults filled in), so executors never
//! re-parse attributes.
//!
//! Values are f32 or i64 tensors: ONNX integer types of every width are widened to i64 (they are shapes,
//! indices and counts), and booleans are held as 0 / 1 in i64 (comparisons produce them, `Where`, `Not`,
//! `And` / `Or` / `Xor` read any non-zero as true). Ops whose ONNX form takes an attribute-like input
//! (Squeeze / Unsqueeze axes, Split sizes, Reduce axes, Clip bounds) carry it as an attribute here, resolved
//! from constants at import; data-like inputs (Reshape / Expand / Tile shapes, Slice bounds, Resize scales)
//! stay inputs. Every node has exactly one output (an ONNX Split becomes one node per output).

pub mod equalize;
pub mod passes;

use std::collections::BTreeMap;

use ndarray::ArrayD;

/// A constant or runtime tensor. Integers of every ONNX width are held as i64, booleans as 0 / 1 in i64.
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
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Tensor::F32(a) => a.len(),
            Tensor::I64(a) => a.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

impl ConvAttrs {
    /// The im2col geometry of one group over a `[c_in, h, w]` image (`c_in` channels per group).
    pub fn geometry(&self, c_in: usize, h: usize, w: usize) -> kernels::frame::conv::Conv2dGeom {
        kernels::frame::conv::Conv2dGeom {
            c_in,
            h,
            w,
            kh: self.kernel_shape[0],
            kw: self.kernel_shape[1],
            stride_h: self.strides[0],
            stride_w: self.strides[1],
            pad_top: self.pads[0],
            pad_left: self.pads[1],
            pad_bottom: self.pads[2],
            pad_right: self.pads[3],
            dil_h: self.dilations[0],
            dil_w: self.dilations[1],
        }
    }
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

/// Which way `auto_pad` asks a convolution or pooling window to be padded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoPad {
    /// Explicit `pads`.
    NotSet,
    /// No padding.
    Valid,
    /// Output size `ceil(input / stride)`; an odd total padding puts the extra cell at the end.
    SameUpper,
    /// As `SameUpper`, with the extra cell at the beginning.
    SameLower,
}

/// 2-D transposed convolution attributes (NCHW input, `[c_in, c_out / group, kh, kw]` weights). Padding is
/// resolved per run because `output_shape` and `auto_pad` depend on the input size.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTransposeAttrs {
    pub kernel_shape: [usize; 2],
    pub strides: [usize; 2],
    /// `[top, left, bottom, right]`; ignored when `output_shape` is set or `auto_pad` is SAME_*.
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub group: usize,
    pub output_padding: [usize; 2],
    /// Requested spatial output size; padding is derived from it.
    pub output_shape: Option<[usize; 2]>,
    pub auto_pad: AutoPad,
}

/// 2-D average-pool attributes: the window as for max-pooling, and whether padded cells count in the divisor.
#[derive(Clone, Debug, PartialEq)]
pub struct AvgPoolAttrs {
    pub pool: PoolAttrs,
    pub count_include_pad: bool,
}

/// One-input elementwise ops. All take f32; `Neg` and `Abs` also i64, `Not` takes booleans (0 / 1 in i64).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Sqrt,
    Reciprocal,
    Exp,
    Log,
    Erf,
    Tanh,
    Sigmoid,
    Neg,
    Abs,
    Floor,
    Ceil,
    Not,
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * max(0, min(1, x / 6 + 1 / 2))`.
    HardSwish,
    /// `x` if `x >= 0`, else `alpha * x`.
    LeakyRelu {
        alpha: f32,
    },
    /// `min(max(x, min), max)`; absent bounds are infinite.
    Clip {
        min: f32,
        max: f32,
    },
}

impl UnaryOp {
    pub fn op_type(&self) -> &'static str {
        match self {
            UnaryOp::Sqrt => "Sqrt",
            UnaryOp::Reciprocal => "Reciprocal",
            UnaryOp::Exp => "Exp",
            UnaryOp::Log => "Log",
            UnaryOp::Erf => "Erf",
            UnaryOp::Tanh => "Tanh",
            UnaryOp::Sigmoid => "Sigmoid",
            UnaryOp::Neg => "Neg",
            UnaryOp::Abs => "Abs",
            UnaryOp::Floor => "Floor",
            UnaryOp::Ceil => "Ceil",
            UnaryOp::Not => "Not",
            UnaryOp::HardSigmoid { .. } => "HardSigmoid",
            UnaryOp::HardSwish => "HardSwish",
            UnaryOp::LeakyRelu { .. } => "LeakyRelu",
            UnaryOp::Clip { .. } => "Clip",
        }
    }
}

/// Two-input elementwise ops with numpy broadcasting (`Add` is its own [`Op`]). Arithmetic takes two f32 or
/// two i64 tensors (`Pow` also an f32 base with an i64 exponent); comparisons return booleans; `And` / `Or` /
/// `Xor` take booleans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Sub,
    Mul,
    Div,
    Pow,
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

impl BinaryOp {
    pub fn op_type(&self) -> &'static str {
        match self {
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
            BinaryOp::Pow => "Pow",
            BinaryOp::Equal => "Equal",
            BinaryOp::Less => "Less",
            BinaryOp::LessOrEqual => "LessOrEqual",
            BinaryOp::Greater => "Greater",
            BinaryOp::GreaterOrEqual => "GreaterOrEqual",
            BinaryOp::And => "And",
            BinaryOp::Or => "Or",
            BinaryOp::Xor => "Xor",
        }
    }
}

/// Elementwise ops over one or more inputs, with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VariadicOp {
    Max,
    Min,
    Sum,
    Mean,
}

impl VariadicOp {
    pub fn op_type(&self) -> &'static str {
        match self {
            VariadicOp::Max => "Max",
            VariadicOp::Min => "Min",
            VariadicOp::Sum => "Sum",
            VariadicOp::Mean => "Mean",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Mean,
    Sum,
    Max,
    Min,
    /// `sqrt(sum(x^2))`.
    L2,
}

impl ReduceOp {
    pub fn op_type(&self) -> &'static str {
        match self {
            ReduceOp::Mean => "ReduceMean",
            ReduceOp::Sum => "ReduceSum",
            ReduceOp::Max => "ReduceMax",
            ReduceOp::Min => "ReduceMin",
            ReduceOp::L2 => "ReduceL2",
        }
    }
}

/// Target element type of a `Cast`. Integers are held as i64 and booleans as 0 / 1 in i64 (see [`Tensor`]),
/// so `I32` truncates toward zero and saturates to the i32 range, and `Bool` maps non-zero to 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CastTo {
    F32,
    I64,
    I32,
    Bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    Nearest,
    Linear,
}

/// How an output coordinate maps back to an input coordinate (ONNX `coordinate_transformation_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordinateMode {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
}

/// How `Nearest` rounds a fractional input coordinate (ONNX `nearest_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Resize attributes; the scales or sizes are inputs (`X, roi, scales, sizes`, read per run).
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeAttrs {
    pub mode: ResizeMode,
    pub coordinate: CoordinateMode,
    pub nearest: NearestMode,
    /// The axes `scales` / `sizes` refer to (opset 18); `None` is every axis.
    pub axes: Option<Vec<i64>>,
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
    /// inputs: X, W (`[c_in, c_out / group, kh, kw]`), optional B.
    ConvTranspose(ConvTransposeAttrs),
    AveragePool(AvgPoolAttrs),
    /// Mean over every axis after the first two.
    GlobalAveragePool,
    /// Maximum over every axis after the first two.
    GlobalMaxPool,
    /// Inference mode; inputs: X, scale, B, mean, var (per channel, axis 1).
    BatchNormalization {
        epsilon: f32,
    },
    /// inputs: X, scale, optional B; normalizes over the axes from `axis` on.
    LayerNormalization {
        axis: i64,
        epsilon: f32,
    },
    /// `legacy`: opset < 13, where the input is flattened to 2-D at `axis` and normalized over the second
    /// dimension; otherwise over `axis` alone.
    Softmax {
        axis: i64,
        legacy: bool,
    },
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// One or more inputs.
    Variadic(VariadicOp),
    /// `perm` absent reverses the axes.
    Transpose {
        perm: Option<Vec<usize>>,
    },
    /// One or more inputs.
    Concat {
        axis: i64,
    },
    /// inputs: data, starts, ends, optional axes, optional steps (1-D i64).
    Slice,
    /// Output `index` of an ONNX Split into `parts` pieces along `axis`: `sizes` when given, else equal
    /// pieces of `ceil(dim / parts)` (the last one shorter).
    Split {
        axis: i64,
        sizes: Option<Vec<usize>>,
        parts: usize,
        index: usize,
    },
    /// `axes` absent removes every axis of size 1.
    Squeeze {
        axes: Option<Vec<i64>>,
    },
    /// `axes` index the output.
    Unsqueeze {
        axes: Vec<i64>,
    },
    /// inputs: data, indices (i64, negative counts from the end).
    Gather {
        axis: i64,
    },
    /// The input's shape (i64), dimensions `start..end` (opset 15; negative counts from the end).
    Shape {
        start: i64,
        end: Option<i64>,
    },
    Cast {
        to: CastTo,
    },
    /// inputs: data, shape (broadcast both ways, as numpy).
    Expand,
    /// inputs: condition, X, Y (broadcast).
    Where,
    /// `axes` absent reduces every axis.
    Reduce {
        op: ReduceOp,
        axes: Option<Vec<i64>>,
        keepdims: bool,
    },
    /// input: shape (1-D i64); fills with `value`, a one-element tensor.
    ConstantOfShape {
        value: Tensor,
    },
    Identity,
    /// inputs: start, limit, delta (scalars of one type).
    Range,
    /// inputs: data, repeats (1-D i64).
    Tile,
    /// inputs: X, optional roi (unused: tf_crop_and_resize is not supported), optional scales, optional sizes.
    Resize(ResizeAttrs),
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
            Op::ConvTranspose(_) => "ConvTranspose",
            Op::AveragePool(_) => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::BatchNormalization { .. } => "BatchNormalization",
            Op::LayerNormalization { .. } => "LayerNormalization",
            Op::Softmax { .. } => "Softmax",
            Op::Unary(u) => u.op_type(),
            Op::Binary(b) => b.op_type(),
            Op::Variadic(v) => v.op_type(),
            Op::Transpose { .. } => "Transpose",
            Op::Concat { .. } => "Concat",
            Op::Slice => "Slice",
            Op::Split { .. } => "Split",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Gather { .. } => "Gather",
            Op::Shape { .. } => "Shape",
            Op::Cast { .. } => "Cast",
            Op::Expand => "Expand",
            Op::Where => "Where",
            Op::Reduce { op, .. } => op.op_type(),
            Op::ConstantOfShape { .. } => "ConstantOfShape",
            Op::Identity => "Identity",
            Op::Range => "Range",
            Op::Tile => "Tile",
            Op::Resize(_) => "Resize",
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
