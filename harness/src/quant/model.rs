//! The quantized model and its executor.
//!
//! Built once per (model, strategy, kernels): weights quantized and packed, static requantization
//! parameters precomputed, then run many times. Integer arithmetic is real: u8 activations, s8 weights, s32
//! accumulation in the dispatched GEMM kernel, zero points compensated with row and column sums outside it,
//! requantization to u8 between layers (static) or dequantization to f32 (dynamic).
//!
//! Static convolutions run channels-last (NHWC): one GEMM per layer over every output pixel of the batch, whose
//! `[pixels, c_out]` result is already the next layer's NHWC input (see `kernels::frame::nhwc`). NHWC values
//! stay NHWC through ReLU, MaxPool and the u8 tables of elementwise chains ([`super::lut`]); a Flatten that feeds a quantized Gemm keeps the NHWC order and that Gemm's
//! weight rows are permuted to match at build time. Any other consumer gets the value back in NCHW.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use kernels::frame::conv::im2col;
use kernels::frame::nhwc::{depthwise_nhwc_acc, im2col_nhwc_slice, max_pool_nhwc};
use kernels::frame::quantize::{dequantize_u8, min_max_at, quantize_u8_at};
use kernels::frame::requant::{
    col_sums_i8, compensate_zero_points, dequantize_acc_f32, row_sums_u8,
};
use kernels::{KernelSet, PackedB, PackedW4, Requant};
use ndarray::{Array2, ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;
use strategies::bits::{pack_bits, pack_codes};
use strategies::calib::weight_range_mse;
use strategies::log::{log_params, log_quantize_weights, log_to_int8};
use strategies::pow2::ScaleConstraint;
use strategies::{
    ActParams, Granularity, QParams, Scheme, activation_params, quantize_weights, weight_params,
    weight_params_try_with,
};

use super::QuantError;
use super::calibrate::ActivationRanges;
use super::lut::{LutChain, lut_chain};
use super::refine::{LayerInputs, RefineData};
use super::strategy::{
    ActMode, Calibration, FloatFormat, LayerPrecision, LinearStrategy, MixedPrecision, Quantizer,
    Refinement, Strategy, WeightRange,
};
use crate::exec::eval::eval_op;
use crate::exec::ops;
use crate::ir::{ConvAttrs, Graph, Node, Op, Tensor, ValueInfo};

/// Target size of one im2col block in the static path: about a quarter of Zen 4's 1 MB L2, leaving room for
/// the accumulators and the packed weights.
const IM2COL_BLOCK_BYTES: usize = 256 * 1024;

/// Per-thread buffers of the static path, kept between layers and runs: the im2col block is fully overwritten
/// before it is read, so reusing it saves an allocation and a memset of a few hundred KB per layer.
#[derive(Default)]
struct Scratch {
    cols: Vec<u8>,
    /// Depthwise accumulators.
    acc: Vec<i32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// A runtime value: float, or u8 with the affine parameters that give it meaning.
#[derive(Clone, Debug)]
enum Value {
    F32(ArrayD<f32>),
    /// u8 in the graph's own layout (NCHW for images).
    U8(ArrayD<u8>, ActParams),
    /// u8 images channels-last, `[n, h, w, c]`: what static convolutions produce and consume.
    U8Nhwc(ArrayD<u8>, ActParams),
    I64(ArrayD<i64>),
}

/// `[n, a, b, c]` -> `[n, c, a, b]` (NHWC to NCHW) or, with `to_nhwc`, `[n, c, a, b]` -> `[n, a, b, c]`.
fn swap_channels<T: Copy + Default>(x: &ArrayD<T>, to_nhwc: bool) -> ArrayD<T> {
    let sh = x.shape().to_vec();
    let data = contiguous(x);
    let (n, c, hw, shape) = if to_nhwc {
        (sh[0], sh[1], sh[2] * sh[3], [sh[0], sh[2], sh[3], sh[1]])
    } else {
        (sh[0], sh[3], sh[1] * sh[2], [sh[0], sh[3], sh[1], sh[2]])
    };
    let mut out = vec![T::default(); data.len()];
    for b in 0..n {
        let (src, dst) = (
            &data[b * c * hw..(b + 1) * c * hw],
            &mut out[b * c * hw..(b + 1) * c * hw],
        );
        for p in 0..hw {
            for ch in 0..c {
                if to_nhwc {
                    dst[p * c + ch] = src[ch * hw + p];
                } else {
                    dst[ch * hw + p] = src[p * c + ch];
                }
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out).expect("same length")
}

impl Value {
    /// The value in the graph's own layout (NHWC u8 images turned back into NCHW).
    fn into_graph_layout(self) -> Value {
        match self {
            Value::U8Nhwc(q, p) => Value::U8(swap_channels(&q, false), p),
            other => other,
        }
    }

    fn into_f32(self) -> Result<ArrayD<f32>, QuantError> {
        match self.into_graph_layout() {
            Value::F32(a) => Ok(a),
            Value::U8(q, p) => {
                let mut out = vec![0f32; q.len()];
                dequantize_u8(contiguous(&q).as_ref(), p.scale, p.zero_point, &mut out);
                Ok(ArrayD::from_shape_vec(q.raw_dim(), out).expect("same length"))
            }
            Value::U8Nhwc(..) => unreachable!("converted to the graph layout above"),
            Value::I64(_) => Err(QuantError::MissingValue("an i64 value used as f32".into())),
        }
    }

    fn to_tensor(&self) -> Result<Tensor, QuantError> {
        self.clone().into_tensor()
    }

    /// The value as the FP32 executor's tensor: u8 dequantized (NHWC back to NCHW), f32 and i64 moved.
    fn into_tensor(self) -> Result<Tensor, QuantError> {
        Ok(match self {
            Value::I64(a) => Tensor::I64(a),
            other => Tensor::F32(other.into_f32()?),
        })
    }

    fn from_tensor(t: Tensor) -> Value {
        match t {
            Tensor::F32(a) => Value::F32(a),
            Tensor::I64(a) => Value::I64(a),
        }
    }
}

fn contiguous<T: Clone>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().cloned().collect()),
    }
}

/// What a quantized linear layer does with its activations.
#[derive(Clone, Debug)]
enum LinearMode {
    Static {
        input: ActParams,
        output: ActParams,
        /// Bias in accumulator units (`bias / (s_in * s_w)`), so it is added before requantization.
        bias_q: Option<Vec<i32>>,
        /// Per column: `bias_q - a_zp * col_sum(B) + k * a_zp * b_zp`, everything known before run time.
        offset: Vec<i32>,
        /// Per column weight zero points, when any is non-zero (affine weights need row sums of A).
        b_zps: Option<Vec<i32>>,
        /// Per column `s_in * s_w / s_out`.
        mult: Vec<f32>,
    },
    /// Static activations with per-group weights: one int8 GEMM per group of rows, summed in f32 with the
    /// group's scales, then quantized to the output's u8 parameters.
    StaticGrouped {
        input: ActParams,
        output: ActParams,
    },
    Dynamic,
    WeightOnly,
    /// Whole-model 16-bit float: weights in `QLinear::half`, activations f32.
    Float(FloatFormat),
}

/// Per-group weights laid out for the grouped paths: the int4 kernel's packing when it can run them (at most 4
/// bits, a group it supports, float or dynamic activations), else one packed int8 slice per group of `g` rows.
#[derive(Clone, Debug)]
struct Grouped {
    g: usize,
    w4: Option<PackedW4>,
    /// Per group: the rows' packing (by the mode's int8 kernel) and their column sums.
    slices: Vec<(PackedB<i8>, Vec<i32>)>,
}

#[derive(Clone, Debug)]
pub(crate) enum LinearShape {
    /// 2-D convolution; `c_out = n`; weight rows ordered `(c, ky, kx)` over one group's `c_in / group` input
    /// channels (`k = c_in / group * kh * kw`), columns in groups of `n / group`; NCHW activations.
    Conv(ConvAttrs),
    /// The same with weight rows ordered `(ky, kx, c)` for NHWC activations (static mode).
    ConvNhwc(ConvAttrs),
    /// `[.., k] x [k, n]`.
    Dense,
}

/// One Conv / Gemm / MatMul with int8 weights.
#[derive(Clone, Debug)]
pub(crate) struct QLinear {
    pub(crate) name: String,
    pub(crate) op: &'static str,
    input: String,
    output: String,
    shape: LinearShape,
    pub(crate) k: usize,
    pub(crate) n: usize,
    /// What the serialized model stores for the weights: the integers (or log codes) packed at the strategy's
    /// bit width.
    pub(crate) stored: Vec<u8>,
    /// The width `stored` is packed at: the layer's weight bits (the code width for log weights), or 16 / 32 for
    /// float weights.
    pub(crate) code_bits: u32,
    /// `stored` holds logarithmic codes (decoded into int8 weights by `strategies::log`).
    pub(crate) log: bool,
    /// A Dense layer fed by an NHWC image flattened in NHWC order with this many channels: its weight rows were
    /// permuted from the graph's NCHW flatten order.
    pub(crate) nhwc_channels: Option<usize>,
    grouped: Option<Grouped>,
    /// 16-bit float weights packed by the format's kernel (float strategies only).
    half: Option<PackedB<u16>>,
    /// f32 weights of a layer a mixed-precision map leaves in FP32.
    full: Option<PackedB<f32>>,
    pub(crate) params: QParams,
    /// One packing per convolution group (its `n / group` columns); one for every other layer.
    packed: Vec<PackedB<i8>>,
    /// Dynamic dense layers whose activation parameters are DynamicQuantizeLinear's (affine, float scale): the
    /// weights packed for the fused dynamic kernel (`gemm_f32_dyn_i8`), which quantizes A while packing it and
    /// dequantizes in its epilogue, in one pass over C. On MiniLM's 36 MatMuls this replaced a min-max pass, a
    /// quantize pass, the u8 GEMM, a row-sum pass, a compensation pass and a dequantize pass per layer.
    fused_dyn: Option<PackedB<i8>>,
    /// Depthwise static layers (one input channel per output channel): the weights `[taps, c]` minus their zero
    /// points, for the direct loop ([`depthwise_nhwc_acc`]) that replaces one GEMM per channel.
    depthwise: Option<Vec<i32>>,
    col_sums: Vec<i32>,
    pub(crate) bias: Option<Vec<f32>>,
    relu: bool,
    mode: LinearMode,
}

impl QLinear {
    /// Static activation parameters `(input, output)`, bias in accumulator units.
    pub(crate) fn static_params(&self) -> Option<(ActParams, ActParams, Option<&[i32]>)> {
        match &self.mode {
            LinearMode::Static {
                input,
                output,
                bias_q,
                ..
            } => Some((*input, *output, bias_q.as_deref())),
            LinearMode::StaticGrouped { input, output } => Some((*input, *output, None)),
            _ => None,
        }
    }
}

/// One step of a quantized model, borrowed (see [`QuantizedModel::step_refs`]).
pub(crate) enum StepRef<'a> {
    Linear(&'a QLinear),
    /// A Flatten (axis 1) of an NHWC u8 image into a Dense layer whose rows are permuted to match.
    FlattenNhwc {
        input: &'a str,
        output: &'a str,
    },
    /// An original node, run as it is.
    Node(&'a Node),
    /// An elementwise chain run as a table on u8 codes.
    Lut(&'a LutChain),
}

/// One step of a quantized model as plain data, for [`QuantizedModel::from_parts`].
pub(crate) enum StepParts {
    Linear(Box<LayerParts>),
    FlattenNhwc {
        input: String,
        output: String,
    },
    Node(Node),
    /// An elementwise chain (its nodes in order) reading u8 `input` with `input_params`, its output u8 with
    /// `output_params` or f32; the table is computed again from these.
    Lut {
        nodes: Vec<Node>,
        input: String,
        input_params: ActParams,
        output_params: Option<ActParams>,
    },
}

/// What a quantized layer does with its activations, as plain data.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum LayerMode {
    /// u8 in and out; the bias in accumulator units.
    Static {
        input: ActParams,
        output: ActParams,
        bias_q: Option<Vec<i32>>,
    },
    /// u8 in and out, per-group weights; the bias in f32.
    StaticGrouped {
        input: ActParams,
        output: ActParams,
    },
    Dynamic,
    WeightOnly,
    Float(FloatFormat),
}

/// A quantized layer as plain data: its stored weights and parameters, without the kernels' packing.
pub(crate) struct LayerParts {
    pub name: String,
    /// `Conv`, `Gemm` or `MatMul`.
    pub op: &'static str,
    pub input: String,
    pub output: String,
    pub shape: LinearShape,
    pub k: usize,
    pub n: usize,
    /// See [`QLinear::stored`].
    pub stored: Vec<u8>,
    pub code_bits: u32,
    pub log: bool,
    pub nhwc_channels: Option<usize>,
    pub params: QParams,
    /// The f32 bias; `None` in [`LayerMode::Static`], whose bias is `bias_q`.
    pub bias: Option<Vec<f32>>,
    pub relu: bool,
    pub mode: LayerMode,
}

impl QLinear {
    pub(crate) fn input(&self) -> &str {
        &self.input
    }

    /// The value the layer writes (the fused Relu's output when it has one).
    pub(crate) fn output(&self) -> &str {
        &self.output
    }

    /// A Relu is fused into the layer.
    pub(crate) fn relu(&self) -> bool {
        self.relu
    }

    pub(crate) fn shape(&self) -> &LinearShape {
        &self.shape
    }

    pub(crate) fn layer_mode(&self) -> LayerMode {
        match &self.mode {
            LinearMode::Static {
                input,
                output,
                bias_q,
                ..
            } => LayerMode::Static {
                input: *input,
                output: *output,
                bias_q: bias_q.clone(),
            },
            LinearMode::StaticGrouped { input, output } => LayerMode::StaticGrouped {
                input: *input,
                output: *output,
            },
            LinearMode::Dynamic => LayerMode::Dynamic,
            LinearMode::WeightOnly => LayerMode::WeightOnly,
            LinearMode::Float(f) => LayerMode::Float(*f),
        }
    }

    /// The integer weights `[k, n]` in this layer's row order, decoded from `stored` (log codes become their
    /// exact int8 values, whose parameters are `params`). An error for float layers.
    pub(crate) fn int8_weights(&self) -> Result<Array2<i8>, QuantError> {
        let len = self.k * self.n;
        let values = if self.log {
            let lut = strategies::log::log_decode_lut_i8(self.code_bits)?;
            strategies::bits::unpack_codes(&self.stored, self.code_bits, len)?
                .into_iter()
                .map(|c| lut[usize::from(c)])
                .collect()
        } else if matches!(self.mode, LinearMode::Float(_)) {
            return Err(QuantError::Node {
                node: self.name.clone(),
                op: self.op,
                message: "float layer has no integer weights".into(),
            });
        } else {
            strategies::bits::unpack_bits(&self.stored, self.code_bits, len)?
        };
        Ok(Array2::from_shape_vec((self.k, self.n), values).expect("k * n values"))
    }

    /// The f32 weights `[k, n]` (this layer's row order) of a float layer, decoded from `stored`.
    pub(crate) fn float_weights(&self) -> Option<Array2<f32>> {
        let LinearMode::Float(format) = self.mode else {
            return None;
        };
        let values: Vec<f32> = match format {
            FloatFormat::Fp32 => self
                .stored
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            FloatFormat::Fp16 | FloatFormat::Bf16 => {
                let bits: Vec<u16> = self
                    .stored
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect();
                if format == FloatFormat::Fp16 {
                    kernels::formats::f16::to_f32_slice(&bits)
                } else {
                    kernels::formats::bf16::to_f32_slice(&bits)
                }
            }
        };
        Array2::from_shape_vec((self.k, self.n), values).ok()
    }

    /// `w` (`[k, n]` in this layer's row order) with its rows back in the graph's order: `(c, ky, kx)` for
    /// convolutions, the NCHW flatten order for a Dense layer after an NHWC flatten.
    pub(crate) fn graph_rows<T: Clone>(&self, w: Array2<T>) -> Array2<T> {
        match rows_from_graph(&self.shape, self.k, self.nhwc_channels) {
            None => w,
            Some(perm) => {
                let mut inverse = vec![0; perm.len()];
                for (row, &graph_row) in perm.iter().enumerate() {
                    inverse[graph_row] = row;
                }
                Array2::from_shape_fn(w.dim(), |(r, j)| w[[inverse[r], j]].clone())
            }
        }
    }
}

/// The layer of [`LayerParts`], packed by `kernels` (see [`QuantizedModel::from_parts`]).
fn linear_from_parts(
    p: LayerParts,
    strategy: LinearStrategy,
    kernels: KernelSet,
) -> Result<QLinear, QuantError> {
    let (k, n) = (p.k, p.n);
    let bad = |message: String| QuantError::Node {
        node: p.name.clone(),
        op: p.op,
        message,
    };
    let want = strategies::bits::packed_len(k * n, p.code_bits);
    if p.stored.len() != want {
        return Err(bad(format!(
            "{} stored weight bytes for [{k}, {n}] at {} bits; expected {want}",
            p.stored.len(),
            p.code_bits
        )));
    }
    if let Some(b) = &p.bias
        && b.len() != n
    {
        return Err(bad(format!("bias has {} values for {n} channels", b.len())));
    }
    let mut lin = QLinear {
        name: p.name.clone(),
        op: p.op,
        input: p.input,
        output: p.output,
        shape: p.shape,
        k,
        n,
        stored: p.stored,
        code_bits: p.code_bits,
        log: p.log,
        nhwc_channels: p.nhwc_channels,
        grouped: None,
        half: None,
        full: None,
        params: p.params,
        packed: Vec::new(),
        fused_dyn: None,
        depthwise: None,
        col_sums: Vec::new(),
        bias: p.bias,
        relu: p.relu,
        mode: LinearMode::WeightOnly,
    };
    let act = match p.mode {
        LayerMode::Float(format) => {
            lin.mode = LinearMode::Float(format);
            let w = lin.float_weights().expect("float mode");
            let flat: Vec<f32> = w.iter().copied().collect();
            match format {
                FloatFormat::Fp16 => {
                    let bits = kernels::formats::f16::from_f32_slice(&flat);
                    lin.half = Some(kernels.gemm_f16w.pack_b(&bits, k, n));
                }
                FloatFormat::Bf16 => lin.half = Some(kernels.gemm_bf16.pack_b(&flat, k, n)),
                FloatFormat::Fp32 => lin.full = Some(kernels.gemm_f32.pack_b(&flat, k, n)),
            }
            return Ok(lin);
        }
        LayerMode::Static { .. } | LayerMode::StaticGrouped { .. } => ActMode::Static,
        LayerMode::Dynamic => ActMode::Dynamic,
        LayerMode::WeightOnly => ActMode::WeightOnly,
    };
    let expected = lin.params.granularity.param_count(k, n)?;
    if lin.params.scales.len() != expected || lin.params.zero_points.len() != expected {
        return Err(bad(format!(
            "{} scales and {} zero points; {} granularity of [{k}, {n}] needs {expected}",
            lin.params.scales.len(),
            lin.params.zero_points.len(),
            lin.params.granularity.name()
        )));
    }
    lin.mode = match &p.mode {
        LayerMode::Dynamic => LinearMode::Dynamic,
        _ => LinearMode::WeightOnly,
    };
    let groups = conv_groups(&lin.shape);
    if groups == 0 || n % groups != 0 {
        return Err(bad(format!("{n} output channels in {groups} groups")));
    }
    if groups > 1 && matches!(lin.params.granularity, Granularity::PerGroup(_)) {
        return Err(bad(
            "per-group weights of a grouped convolution are not supported".into(),
        ));
    }
    let weights = lin.int8_weights()?;
    let flat: Vec<i8> = weights.iter().copied().collect();
    lin.col_sums = col_sums_i8(&flat, k, n);
    lin.fused_dyn = fused_dynamic(
        &lin.shape,
        &lin.params,
        &flat,
        (k, n),
        act,
        strategy,
        kernels,
    );
    // The fused kernel's packing replaces the u8 GEMM's (the layer never calls that GEMM).
    if lin.fused_dyn.is_none() {
        lin.packed = pack_conv_groups(&flat, k, n, groups, act, kernels);
    }
    if matches!(act, ActMode::Static | ActMode::Dynamic) {
        lin.depthwise = depthwise_weights(&lin.shape, &flat, k, n, &lin.params);
    }
    if let Granularity::PerGroup(g) = lin.params.granularity {
        let layer = LinearStrategy {
            weight_bits: lin.code_bits,
            act,
            ..strategy
        };
        lin.grouped = Some(group_weights(&weights, &lin.params, g, layer, kernels));
    }
    lin.mode = match p.mode {
        LayerMode::Static {
            input,
            output,
            bias_q,
        } => {
            if let Some(b) = &bias_q
                && b.len() != n
            {
                return Err(bad(format!("bias has {} values for {n} channels", b.len())));
            }
            static_mode_with_bias(&lin, input, output, bias_q)
        }
        LayerMode::StaticGrouped { input, output } => LinearMode::StaticGrouped { input, output },
        LayerMode::Dynamic => LinearMode::Dynamic,
        LayerMode::WeightOnly => LinearMode::WeightOnly,
        LayerMode::Float(_) => unreachable!("returned above"),
    };
    Ok(lin)
}

#[derive(Clone, Debug)]
enum Step {
    Linear(Box<QLinear>),
    /// A Flatten (axis 1) of an NHWC value into a quantized Gemm whose weights were permuted to NHWC order:
    /// the bytes stay where they are.
    FlattenNhwc {
        input: String,
        output: String,
    },
    /// An original node, run on whatever value types reach it.
    Node(Node),
    /// An elementwise chain run as a 256-entry table on its u8 input (see [`super::lut`]).
    Lut(Box<LutChain>),
}

/// The graph a quantized model came from, as its callers see it: name, opset, inputs and outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    pub name: String,
    pub opset: i64,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
}

impl Signature {
    fn of(graph: &Graph) -> Self {
        Signature {
            name: graph.name.clone(),
            opset: graph.opset,
            inputs: graph.inputs.clone(),
            outputs: graph.outputs.clone(),
        }
    }
}

/// A model quantized with one [`LinearStrategy`], ready to run.
pub struct QuantizedModel {
    pub(crate) strategy: LinearStrategy,
    /// `Some` for a whole-model 16-bit float strategy (then `strategy` only shapes the layer rules).
    pub(crate) float: Option<FloatFormat>,
    signature: Signature,
    outputs: Vec<String>,
    steps: Vec<Step>,
    /// Constants the remaining float nodes read (reshape targets, biases of float nodes).
    pub(crate) constants: HashMap<String, Tensor>,
    kernels: KernelSet,
    /// How many times the steps read each value (graph outputs once more): the executor frees a value after
    /// its last read.
    uses: HashMap<String, usize>,
}

/// Reads per value over `steps`, plus one for each graph output (see [`QuantizedModel::uses`]).
fn count_uses(steps: &[Step], outputs: &[String]) -> HashMap<String, usize> {
    let mut uses: HashMap<String, usize> = HashMap::new();
    let mut add = |name: &str| *uses.entry(name.to_owned()).or_insert(0) += 1;
    for step in steps {
        match step {
            Step::Linear(l) => add(&l.input),
            Step::FlattenNhwc { input, .. } => add(input),
            Step::Lut(c) => add(&c.input),
            Step::Node(n) => n
                .inputs
                .iter()
                .filter(|i| !i.is_empty())
                .for_each(|i| add(i)),
        }
    }
    outputs.iter().for_each(|o| add(o));
    uses
}

impl QuantizedModel {
    /// Quantizes `graph` with `strategy`. `ranges` must come from calibration when the strategy is static.
    pub fn build(
        graph: &Graph,
        strategy: LinearStrategy,
        ranges: Option<&ActivationRanges>,
        kernels: KernelSet,
    ) -> Result<Self, QuantError> {
        Self::build_with(graph, strategy, None, None, ranges, None, kernels)
    }

    /// The general form: an optional per-layer precision map, and the calibration statistics the strategy's
    /// refinement needs (GPTQ, AdaRound, bias correction).
    pub fn build_full(
        graph: &Graph,
        strategy: LinearStrategy,
        mixed: Option<&MixedPrecision>,
        ranges: Option<&ActivationRanges>,
        refine: Option<&RefineData>,
        kernels: KernelSet,
    ) -> Result<Self, QuantError> {
        match mixed {
            Some(map) => {
                check_layers(graph, map)?;
                Self::build_with(graph, strategy, None, Some(map), ranges, refine, kernels)
            }
            None => Self::build_with(graph, strategy, None, None, ranges, refine, kernels),
        }
    }

    /// [`build`](Self::build) with a per-layer precision map: listed layers take their own bit width, or stay
    /// in FP32 (their input dequantized, their output quantized again by the next quantized layer).
    pub fn build_mixed(
        graph: &Graph,
        strategy: LinearStrategy,
        map: &MixedPrecision,
        ranges: Option<&ActivationRanges>,
        kernels: KernelSet,
    ) -> Result<Self, QuantError> {
        check_layers(graph, map)?;
        Self::build_with(graph, strategy, None, Some(map), ranges, None, kernels)
    }

    /// The whole model with Conv / Gemm / MatMul weights in a 16-bit float format, run on that format's GEMM
    /// (f16 weights widened in registers, or bf16 operands with f32 sums); everything else in f32.
    pub fn build_float(
        graph: &Graph,
        format: FloatFormat,
        kernels: KernelSet,
    ) -> Result<Self, QuantError> {
        // The float layers follow the weight-only rules (float activations, per-image lowering).
        let rules = LinearStrategy::uniform(
            8,
            ActMode::WeightOnly,
            Granularity::PerTensor,
            Scheme::Symmetric,
            None,
        );
        Self::build_with(graph, rules, Some(format), None, None, None, kernels)
    }

    /// The strategy this model runs, as result rows name it.
    pub fn strategy(&self) -> Strategy {
        match self.float {
            Some(f) => Strategy::Float(f),
            None => Strategy::Linear(self.strategy),
        }
    }

    fn build_with(
        graph: &Graph,
        strategy: LinearStrategy,
        float: Option<FloatFormat>,
        mixed: Option<&MixedPrecision>,
        ranges: Option<&ActivationRanges>,
        refine: Option<&RefineData>,
        kernels: KernelSet,
    ) -> Result<Self, QuantError> {
        let consumers = consumer_counts(graph);
        let graph_outputs: BTreeSet<&str> = graph.outputs.iter().map(|o| o.name.as_str()).collect();
        let static_mode = strategy.act == ActMode::Static;
        let mut used_constants = BTreeSet::new();
        // Values that will be u8 at run time, and their parameters (static mode only).
        let mut qvals: HashMap<String, ActParams> = HashMap::new();
        // Values that will be NHWC u8 images at run time, and their channel count.
        let mut nhwc: HashMap<String, usize> = HashMap::new();
        // Flatten outputs kept in NHWC order: the consuming Gemm permutes its weights (value -> channels).
        let mut nhwc_flat: HashMap<String, usize> = HashMap::new();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < graph.nodes.len() {
            let node = &graph.nodes[i];
            let permute = node.inputs.first().and_then(|v| nhwc_flat.get(v)).copied();
            let (layer_strategy, layer_float) = match mixed.and_then(|m| m.layers.get(&node.name)) {
                Some(LayerPrecision::Bits(bits)) => (
                    LinearStrategy {
                        weight_bits: *bits,
                        ..strategy
                    },
                    float,
                ),
                Some(LayerPrecision::Fp32) => (
                    LinearStrategy {
                        act: ActMode::WeightOnly,
                        ..strategy
                    },
                    Some(FloatFormat::Fp32),
                ),
                None => (strategy, float),
            };
            let Some(mut lin) = linear_from_node(
                graph,
                node,
                layer_strategy,
                layer_float,
                refine.and_then(|r| r.layer(&node.name)),
                kernels,
                permute,
            )?
            else {
                if static_mode
                    && let Some(span) = lut_chain(
                        graph,
                        i,
                        |v| qvals.contains_key(v),
                        |n| static_layer(graph, n, strategy.granularity, mixed),
                    )
                {
                    let nodes = graph.nodes[span.start..span.end].to_vec();
                    let chain_constants: HashMap<String, Tensor> = nodes
                        .iter()
                        .flat_map(|n| &n.inputs)
                        .filter_map(|v| Some((v.clone(), graph.initializers.get(v)?.clone())))
                        .collect();
                    used_constants.extend(chain_constants.keys().cloned());
                    let output_params = match span.u8_output {
                        true => Some(static_params(ranges, strategy, &span.output)?),
                        false => None,
                    };
                    if let Some(p) = output_params {
                        qvals.insert(span.output.clone(), p);
                        if let Some(&c) = nhwc.get(&span.input) {
                            nhwc.insert(span.output.clone(), c);
                        }
                    }
                    steps.push(Step::Lut(Box::new(LutChain::new(
                        nodes,
                        span.input.clone(),
                        qvals[&span.input],
                        output_params,
                        &chain_constants,
                        kernels.gemm_f32,
                    )?)));
                    i = span.end;
                    continue;
                }
                let input = node.inputs.first().cloned().unwrap_or_default();
                let output = node.outputs[0].clone();
                let keeps_params = matches!(
                    node.op,
                    Op::Relu | Op::MaxPool(_) | Op::Flatten { .. } | Op::Reshape { .. }
                );
                if let Some(p) = qvals.get(&input).copied().filter(|_| keeps_params) {
                    qvals.insert(output.clone(), p);
                }
                if let Some(&c) = nhwc.get(&input) {
                    match node.op {
                        Op::Relu | Op::MaxPool(_) => {
                            nhwc.insert(output.clone(), c);
                        }
                        Op::Flatten { axis: 1 }
                            if feeds_one_dense(graph, &output, &consumers, c) =>
                        {
                            nhwc_flat.insert(output.clone(), c);
                            steps.push(Step::FlattenNhwc { input, output });
                            i += 1;
                            continue;
                        }
                        _ => {}
                    }
                }
                used_constants.extend(
                    node.inputs
                        .iter()
                        .filter(|v| graph.initializers.contains_key(*v))
                        .cloned(),
                );
                steps.push(Step::Node(node.clone()));
                i += 1;
                continue;
            };
            // Fuse a Relu that is this layer's only consumer.
            if let Some(next) = graph.nodes.get(i + 1) {
                let out = &node.outputs[0];
                if next.op == Op::Relu
                    && next.inputs[0] == *out
                    && consumers.get(out.as_str()) == Some(&1)
                    && !graph_outputs.contains(out.as_str())
                {
                    lin.relu = true;
                    lin.output = next.outputs[0].clone();
                    i += 1;
                }
            }
            if static_mode && layer_float.is_none() {
                let params = |value: &str| static_params(ranges, strategy, value);
                let input = match qvals.get(&lin.input) {
                    Some(p) => *p,
                    None => params(&lin.input)?,
                };
                let output = params(&lin.output)?;
                lin.mode = if lin.grouped.is_some() {
                    LinearMode::StaticGrouped { input, output }
                } else {
                    static_mode_params(&lin, input, output)
                };
                qvals.insert(lin.output.clone(), output);
                if matches!(lin.shape, LinearShape::ConvNhwc(_)) {
                    nhwc.insert(lin.output.clone(), lin.n);
                }
            }
            steps.push(Step::Linear(Box::new(lin)));
            i += 1;
        }
        let constants = used_constants
            .into_iter()
            .map(|name| {
                let t = graph.initializers[&name].clone();
                (name, t)
            })
            .collect();
        let outputs: Vec<String> = graph.outputs.iter().map(|v| v.name.clone()).collect();
        Ok(QuantizedModel {
            strategy,
            float,
            signature: Signature::of(graph),
            uses: count_uses(&steps, &outputs),
            outputs,
            steps,
            constants,
            kernels,
        })
    }

    /// Names of the kernels this model's layers call.
    pub fn kernel_names(&self) -> Vec<&'static str> {
        let mut names = BTreeSet::new();
        for step in &self.steps {
            if let Step::Linear(l) = step {
                let w4 = l.grouped.as_ref().is_some_and(|g| g.w4.is_some());
                match l.mode {
                    LinearMode::Float(FloatFormat::Fp16) => {
                        names.insert(self.kernels.gemm_f16w.name())
                    }
                    LinearMode::Float(FloatFormat::Bf16) => {
                        names.insert(self.kernels.gemm_bf16.name())
                    }
                    LinearMode::Float(FloatFormat::Fp32) => {
                        names.insert(self.kernels.gemm_f32.name())
                    }
                    _ if w4 => names.insert(self.kernels.gemm_w4.name()),
                    LinearMode::WeightOnly => names.insert(self.kernels.gemm_f32_w8.name()),
                    LinearMode::Dynamic if l.fused_dyn.is_some() => {
                        names.insert(self.kernels.gemm_f32_dyn_i8.name())
                    }
                    LinearMode::Dynamic | LinearMode::StaticGrouped { .. } => {
                        names.insert(self.kernels.gemm_u8i8.name())
                    }
                    LinearMode::Static { .. } if l.depthwise.is_some() => {
                        names.insert(self.kernels.requant_u8.name())
                    }
                    LinearMode::Static { .. } => {
                        names.insert(self.kernels.gemm_u8i8_requant.name())
                    }
                };
            }
        }
        names.into_iter().collect()
    }

    /// The quantized layers, in execution order.
    pub(crate) fn linears(&self) -> impl Iterator<Item = &QLinear> {
        self.steps.iter().filter_map(|s| match s {
            Step::Linear(l) => Some(l.as_ref()),
            Step::Node(_) | Step::FlattenNhwc { .. } | Step::Lut(_) => None,
        })
    }

    /// The graph this model was quantized from: name, opset, inputs and outputs.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The steps the executor runs, in order (for the artifact writer and the QDQ exporter).
    pub(crate) fn step_refs(&self) -> impl Iterator<Item = StepRef<'_>> {
        self.steps.iter().map(|s| match s {
            Step::Linear(l) => StepRef::Linear(l),
            Step::FlattenNhwc { input, output } => StepRef::FlattenNhwc { input, output },
            Step::Node(n) => StepRef::Node(n),
            Step::Lut(c) => StepRef::Lut(c),
        })
    }

    /// Rebuilds a model from its parts (what [`Self::step_refs`] and the layers' accessors give): weights
    /// unpacked from their stored bytes and packed again by `kernels`, requantization parameters recomputed
    /// from the stored activation parameters and biases, exactly as [`Self::build`] computed them.
    pub(crate) fn from_parts(
        strategy: Strategy,
        signature: Signature,
        steps: Vec<StepParts>,
        constants: HashMap<String, Tensor>,
        kernels: KernelSet,
    ) -> Result<Self, QuantError> {
        let (strategy, float) = match strategy {
            Strategy::Linear(l) => (l, None),
            Strategy::Float(f) => (
                LinearStrategy::uniform(
                    8,
                    ActMode::WeightOnly,
                    Granularity::PerTensor,
                    Scheme::Symmetric,
                    None,
                ),
                Some(f),
            ),
            Strategy::Fp32 => {
                return Err(QuantError::Unsupported(
                    "an FP32 model is not a quantized model".into(),
                ));
            }
        };
        let steps = steps
            .into_iter()
            .map(|s| {
                Ok(match s {
                    StepParts::Linear(p) => {
                        Step::Linear(Box::new(linear_from_parts(*p, strategy, kernels)?))
                    }
                    StepParts::FlattenNhwc { input, output } => Step::FlattenNhwc { input, output },
                    StepParts::Node(n) => Step::Node(n),
                    StepParts::Lut {
                        nodes,
                        input,
                        input_params,
                        output_params,
                    } => Step::Lut(Box::new(LutChain::new(
                        nodes,
                        input,
                        input_params,
                        output_params,
                        &constants,
                        kernels.gemm_f32,
                    )?)),
                })
            })
            .collect::<Result<Vec<_>, QuantError>>()?;
        let outputs: Vec<String> = signature.outputs.iter().map(|v| v.name.clone()).collect();
        Ok(QuantizedModel {
            strategy,
            float,
            uses: count_uses(&steps, &outputs),
            outputs,
            signature,
            steps,
            constants,
            kernels,
        })
    }

    /// Runs the model on f32 inputs; returns the graph outputs (as f32 / i64 tensors) in graph order.
    pub fn run(&self, inputs: &[(&str, ArrayD<f32>)]) -> Result<Vec<(String, Tensor)>, QuantError> {
        self.run_values(
            inputs
                .iter()
                .map(|(name, a)| (name.to_string(), Value::F32(a.clone())))
                .collect(),
        )
    }

    /// Runs the model on inputs of any element type (a BERT encoder's i64 token ids and attention mask).
    pub fn run_tensors(
        &self,
        inputs: &[(&str, Tensor)],
    ) -> Result<Vec<(String, Tensor)>, QuantError> {
        self.run_values(
            inputs
                .iter()
                .map(|(name, t)| (name.to_string(), Value::from_tensor(t.clone())))
                .collect(),
        )
    }

    fn run_values(
        &self,
        mut values: HashMap<String, Value>,
    ) -> Result<Vec<(String, Tensor)>, QuantError> {
        // Reads left per value: a value is moved out (and freed) by its last reader, cloned before that.
        let mut left = self.uses.clone();
        let mut last_use = |name: &str| match left.get_mut(name) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        for step in &self.steps {
            match step {
                Step::Linear(l) => {
                    let x = if last_use(&l.input) {
                        values.remove(&l.input)
                    } else {
                        values.get(&l.input).cloned()
                    };
                    let x = match x {
                        Some(x) => x,
                        None => self
                            .constants
                            .get(&l.input)
                            .map(|t| Value::from_tensor(t.clone()))
                            .ok_or_else(|| QuantError::MissingValue(l.input.clone()))?,
                    };
                    let y = self.run_linear(l, x)?;
                    values.insert(l.output.clone(), y);
                }
                Step::Node(node) => {
                    if !matches!(node.op, Op::Relu | Op::MaxPool(_)) {
                        // Every other op sees the graph's own layout.
                        for name in &node.inputs {
                            if matches!(values.get(name), Some(Value::U8Nhwc(..))) {
                                let v = values.remove(name).expect("present");
                                values.insert(name.clone(), v.into_graph_layout());
                            }
                        }
                    }
                    // Inputs read for the last time are moved; a value the node reads twice is borrowed.
                    let mut owned: Vec<Option<Value>> = Vec::with_capacity(node.inputs.len());
                    for name in &node.inputs {
                        let once = node.inputs.iter().filter(|n| *n == name).count() == 1;
                        let take = !name.is_empty() && last_use(name) && once;
                        owned.push(if take { values.remove(name) } else { None });
                    }
                    let args =
                        node.inputs
                            .iter()
                            .zip(owned)
                            .map(|(name, own)| {
                                if name.is_empty() {
                                    return Ok(None);
                                }
                                Ok(Some(match own {
                                    Some(v) => Arg::Value(Cow::Owned(v)),
                                    None => match values.get(name) {
                                        Some(v) => Arg::Value(Cow::Borrowed(v)),
                                        None => Arg::Const(self.constants.get(name).ok_or_else(
                                            || QuantError::MissingValue(name.clone()),
                                        )?),
                                    },
                                }))
                            })
                            .collect::<Result<Vec<_>, QuantError>>()?;
                    let y = run_node(node, args, self.kernels.gemm_f32)?;
                    values.insert(node.outputs[0].clone(), y);
                }
                Step::Lut(c) => {
                    let x = if last_use(&c.input) {
                        values.remove(&c.input)
                    } else {
                        values.get(&c.input).cloned()
                    };
                    let x = x.ok_or_else(|| QuantError::MissingValue(c.input.clone()))?;
                    let y = self.run_lut(c, x)?;
                    values.insert(c.output.clone(), y);
                }
                Step::FlattenNhwc { input, output } => {
                    let x = if last_use(input) {
                        values.remove(input)
                    } else {
                        values.get(input).cloned()
                    };
                    let y = match x {
                        Some(Value::U8Nhwc(q, p)) => {
                            let n = q.shape()[0];
                            let rest = q.len() / n.max(1);
                            Value::U8(
                                q.into_shape_with_order(IxDyn(&[n, rest]))
                                    .expect("same length"),
                                p,
                            )
                        }
                        Some(other) => {
                            return Err(QuantError::MissingValue(format!(
                                "{input} (expected an NHWC u8 image, got {})",
                                match other {
                                    Value::F32(_) => "f32",
                                    Value::U8(..) => "NCHW u8",
                                    _ => "another type",
                                }
                            )));
                        }
                        None => return Err(QuantError::MissingValue(input.clone())),
                    };
                    values.insert(output.clone(), y);
                }
            }
        }
        self.outputs
            .iter()
            .map(|name| {
                let v = values
                    .get(name)
                    .ok_or_else(|| QuantError::MissingValue(name.clone()))?;
                Ok((name.clone(), v.to_tensor()?))
            })
            .collect()
    }

    /// A chain's table applied to its u8 input (u8 output in the input's layout, or f32 in the graph's); an
    /// input with other parameters than the table's runs the chain's nodes in f32 instead.
    fn run_lut(&self, c: &LutChain, x: Value) -> Result<Value, QuantError> {
        match (x, c.output_params) {
            (Value::U8(q, p), Some(out)) if p == c.input_params => {
                Ok(Value::U8(c.apply_u8(&q).expect("u8 table"), out))
            }
            (Value::U8Nhwc(q, p), Some(out)) if p == c.input_params => {
                Ok(Value::U8Nhwc(c.apply_u8(&q).expect("u8 table"), out))
            }
            (x @ (Value::U8(..) | Value::U8Nhwc(..)), None) if matches!(&x, Value::U8(_, p) | Value::U8Nhwc(_, p) if *p == c.input_params) =>
            {
                let Value::U8(q, _) = x.into_graph_layout() else {
                    unreachable!("a u8 value stays u8")
                };
                Ok(Value::F32(c.apply_f32(&q).expect("f32 table")))
            }
            (x, _) => {
                let y = super::lut::eval_chain(
                    &c.nodes,
                    &c.input,
                    x.into_tensor()?,
                    &self.constants,
                    self.kernels.gemm_f32,
                )?;
                Ok(Value::from_tensor(y))
            }
        }
    }

    /// How many elementwise chains run as tables (see [`super::lut`]).
    pub fn lut_count(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Lut(_)))
            .count()
    }

    /// The same model with every elementwise chain run node by node in f32 again (the float path the tables
    /// replace: its u8 input dequantized, its output quantized by the next static layer), for comparisons.
    pub fn without_luts(mut self) -> Self {
        self.steps = std::mem::take(&mut self.steps)
            .into_iter()
            .flat_map(|s| match s {
                Step::Lut(c) => c.nodes.into_iter().map(Step::Node).collect(),
                other => vec![other],
            })
            .collect();
        self.uses = count_uses(&self.steps, &self.outputs);
        self
    }

    /// A dynamic convolution (one group) channels-last: the f32 NCHW input quantized with its own range
    /// (per tensor, as the NCHW path does) straight into NHWC u8, lowered a few images at a time by the NHWC
    /// im2col, the int8 GEMM, zero-point compensation and dequantization to f32, each block then transposed
    /// into its images' NCHW output (for the float ops that read it; contiguous runs per channel, and no
    /// second full-size buffer). The integer sums equal the NCHW path's (only their order differs), so the
    /// output is the same bit for bit.
    fn run_dynamic_nhwc(&self, l: &QLinear, x: Value) -> Result<Value, QuantError> {
        let LinearShape::ConvNhwc(attrs) = &l.shape else {
            unreachable!("called for channels-last layers")
        };
        let x = x.into_f32()?;
        let isa = self.kernels.gemm_u8i8.isa();
        let (lo, hi) = min_max_at(&contiguous(&x), isa);
        let p = activation_params(lo, hi, self.strategy.scheme, self.strategy.scale);
        let q = to_static_input(Value::F32(x), p, true, isa)?;
        let shape = q.shape().to_vec();
        let &[batch, h, w, c_in] = shape.as_slice() else {
            return Err(self.shape_error(l, &shape, "is not a 4-D image batch"));
        };
        let groups = attrs.group.max(1);
        let g = attrs.geometry(c_in / groups, h, w);
        if c_in % groups != 0 || g.k() != l.k || (groups > 1 && l.depthwise.is_none()) {
            return Err(self.shape_error(l, &shape, "has a channel count the weights do not take"));
        }
        let data = contiguous(&q);
        let (pixels, n, k) = (g.out_h() * g.out_w(), l.n, l.k);
        // Depthwise: `acc = sum_t x * (w - b_zp)` from the direct loop; the input zero point's share,
        // `a_zp * sum_t (w - b_zp)` per channel, is taken off before dequantizing.
        let depthwise = l.depthwise.as_ref().map(|dw| {
            let a_zp_terms: Vec<i32> = (0..n)
                .map(|ch| p.zero_point * (0..k).map(|t| dw[t * n + ch]).sum::<i32>())
                .collect();
            (dw, a_zp_terms, attrs.geometry(c_in, h, w))
        });
        let image = h * w * c_in;
        let gemm = self.kernels.gemm_u8i8;
        // `dst`: the NCHW output of images `b0..`, `[images, n, pixels]`.
        let lower = |b0: usize, dst: &mut [f32]| {
            let rows = dst.len() / n;
            let images = rows / pixels;
            let src = &data[b0 * image..(b0 + images) * image];
            let (mut cols, mut acc) = SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                (std::mem::take(&mut s.cols), std::mem::take(&mut s.acc))
            });
            if cols.len() < rows * k {
                cols.resize(rows * k, 0);
            }
            if acc.len() < rows * n {
                acc.resize(rows * n, 0);
            }
            let (cols_block, acc_block) = (&mut cols[..rows * k], &mut acc[..rows * n]);
            if let Some((dw, a_zp_terms, gd)) = &depthwise {
                let isa = self.kernels.gemm_u8i8.isa();
                depthwise_nhwc_acc(src, images, gd, dw, p.zero_point as u8, acc_block, isa);
                for row in acc_block.chunks_exact_mut(n) {
                    for (v, t) in row.iter_mut().zip(a_zp_terms) {
                        *v -= t;
                    }
                }
            } else {
                im2col_nhwc_slice(src, images, &g, c_in, 0, p.zero_point as u8, cols_block);
                gemm.gemm(rows, cols_block, k, &l.packed[0], acc_block, n);
                let row_sums = row_sums_u8(cols_block, rows, k, k);
                compensate_zero_points(
                    acc_block,
                    rows,
                    n,
                    n,
                    k,
                    &row_sums,
                    p.zero_point,
                    &l.col_sums,
                    &l.params.zero_points,
                );
            }
            let mut rows_f32 = vec![0f32; rows * n];
            dequantize_acc_f32(
                acc_block,
                rows,
                n,
                n,
                p.scale,
                &l.params.scales,
                l.bias.as_deref(),
                l.relu,
                &mut rows_f32,
            );
            // [images * pixels, n] -> [images, n, pixels].
            for (img, out) in rows_f32
                .chunks_exact(pixels * n)
                .zip(dst.chunks_exact_mut(pixels * n))
            {
                for (pix, row) in img.chunks_exact(n).enumerate() {
                    for (c, &v) in row.iter().enumerate() {
                        out[c * pixels + pix] = v;
                    }
                }
            }
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                (s.cols, s.acc) = (cols, acc);
            });
        };
        let mut out = vec![0f32; batch * pixels * n];
        for_image_blocks(&mut out, batch, pixels * n, pixels * k, lower);
        let y = ArrayD::from_shape_vec(IxDyn(&[batch, n, g.out_h(), g.out_w()]), out)
            .expect("shape matches");
        Ok(Value::F32(y))
    }

    fn run_linear(&self, l: &QLinear, x: Value) -> Result<Value, QuantError> {
        if let Some(gr) = &l.grouped
            && !matches!(l.mode, LinearMode::StaticGrouped { .. })
        {
            return self.run_grouped_float(l, gr, x);
        }
        match &l.mode {
            LinearMode::Float(format) => {
                let x = x.into_f32()?;
                let y = run_lowered(l, x.view(), 0.0f32, |_, m, a, c| {
                    match (format, &l.half, &l.full) {
                        (FloatFormat::Fp16, Some(half), _) => {
                            self.kernels.gemm_f16w.gemm(m, a, l.k, half, c, l.n)
                        }
                        (FloatFormat::Bf16, Some(half), _) => {
                            self.kernels.gemm_bf16.gemm(m, a, l.k, half, c, l.n)
                        }
                        (FloatFormat::Fp32, _, Some(full)) => {
                            self.kernels.gemm_f32.gemm(m, a, l.k, full, c, l.n)
                        }
                        _ => unreachable!("float layers are built with their format's weights"),
                    }
                    add_bias_relu(c, l.n, l.bias.as_deref(), l.relu);
                })?;
                Ok(Value::F32(y))
            }
            LinearMode::WeightOnly => {
                let x = x.into_f32()?;
                let gemm = self.kernels.gemm_f32_w8;
                let ng = l.n / l.packed.len();
                let y = run_lowered(l, x.view(), 0.0f32, |gi, m, a, c| {
                    let cols = gi * ng..(gi + 1) * ng;
                    let scales = columns(&l.params.scales, cols.clone());
                    let zps = columns(&l.params.zero_points, cols.clone());
                    gemm.gemm(m, a, l.k, &l.packed[gi], scales, zps, c, ng);
                    let bias = l.bias.as_deref().map(|b| &b[cols]);
                    add_bias_relu(c, ng, bias, l.relu);
                })?;
                Ok(Value::F32(y))
            }
            LinearMode::Dynamic if l.fused_dyn.is_some() => {
                let fused = l.fused_dyn.as_ref().expect("checked");
                let x = x.into_f32()?;
                let gemm = self.kernels.gemm_f32_dyn_i8;
                let rule = dyn_rule(self.strategy.scheme);
                let y = run_lowered(l, x.view(), 0.0f32, |_, m, a, c| {
                    gemm.gemm_with(
                        rule,
                        m,
                        a,
                        l.k,
                        fused,
                        &l.params.scales,
                        &l.params.zero_points,
                        l.bias.as_deref(),
                        l.relu,
                        c,
                        l.n,
                    );
                })?;
                Ok(Value::F32(y))
            }
            LinearMode::Dynamic if matches!(l.shape, LinearShape::ConvNhwc(_)) => {
                self.run_dynamic_nhwc(l, x)
            }
            LinearMode::Dynamic => {
                let x = x.into_f32()?;
                let data = contiguous(&x);
                let isa = self.kernels.gemm_u8i8.isa();
                let (lo, hi) = min_max_at(&data, isa);
                let p = activation_params(lo, hi, self.strategy.scheme, self.strategy.scale);
                let mut q = vec![0u8; data.len()];
                quantize_u8_at(&data, p.scale, p.zero_point, &mut q, isa);
                let q = ArrayD::from_shape_vec(x.raw_dim(), q).expect("same length");
                let gemm = self.kernels.gemm_u8i8;
                let mut acc = Vec::new();
                let ng = l.n / l.packed.len();
                let y = run_lowered(
                    l,
                    q.view(),
                    p.zero_point as u8,
                    |gi, m, a, c: &mut [f32]| {
                        let cols = gi * ng..(gi + 1) * ng;
                        acc.resize(m * ng, 0);
                        gemm.gemm(m, a, l.k, &l.packed[gi], &mut acc, ng);
                        let row_sums = row_sums_u8(a, m, l.k, l.k);
                        compensate_zero_points(
                            &mut acc,
                            m,
                            ng,
                            ng,
                            l.k,
                            &row_sums,
                            p.zero_point,
                            &l.col_sums[cols.clone()],
                            columns(&l.params.zero_points, cols.clone()),
                        );
                        dequantize_acc_f32(
                            &acc,
                            m,
                            ng,
                            ng,
                            p.scale,
                            columns(&l.params.scales, cols.clone()),
                            l.bias.as_deref().map(|b| &b[cols]),
                            l.relu,
                            c,
                        );
                    },
                )?;
                Ok(Value::F32(y))
            }
            LinearMode::Static { input, output, .. }
            | LinearMode::StaticGrouped { input, output } => {
                let nhwc = matches!(l.shape, LinearShape::ConvNhwc(_));
                let q = to_static_input(x, *input, nhwc, self.kernels.gemm_u8i8.isa())?;
                let shape = q.shape().to_vec();
                let data = contiguous(&q);
                let groups = l.packed.len().max(1);
                let ng = l.n / groups;
                // `rows of A -> u8 rows of the output` for convolution group `gi` (its `ng` columns, written with
                // leading dimension `ldo`): the whole static layer, epilogue included, in one kernel.
                let run = |gi: usize, m: usize, a: &[u8], out: &mut [u8], ldo: usize| match (
                    &l.mode, &l.grouped,
                ) {
                    (
                        LinearMode::Static {
                            offset,
                            b_zps,
                            mult,
                            ..
                        },
                        None,
                    ) => {
                        let cols = gi * ng..(gi + 1) * ng;
                        let row_sums = b_zps.as_ref().map(|_| row_sums_u8(a, m, l.k, l.k));
                        let b_zps = b_zps.as_deref().map(|z| &z[cols.clone()]);
                        let rq = Requant {
                            offset: &offset[cols.clone()],
                            zero_point_rows: b_zps.zip(row_sums.as_deref()),
                            mult: &mult[cols],
                            out_zp: output.zero_point,
                            relu: l.relu,
                        };
                        self.kernels.gemm_u8i8_requant.gemm_requant(
                            m,
                            a,
                            l.k,
                            &l.packed[gi],
                            &rq,
                            out,
                            ldo,
                        );
                    }
                    (_, Some(gr)) => {
                        let mut c = vec![0f32; m * l.n];
                        self.grouped_u8(l, gr, m, a, *input, &mut c);
                        let isa = self.kernels.gemm_u8i8.isa();
                        quantize_u8_at(&c, output.scale, output.zero_point, out, isa);
                    }
                    _ => unreachable!("static modes are built with matching weights"),
                };
                let (out, out_shape) = match &l.shape {
                    LinearShape::ConvNhwc(attrs) => {
                        let &[batch, h, w, c_in] = shape.as_slice() else {
                            return Err(self.shape_error(l, &shape, "is not a 4-D image batch"));
                        };
                        let g = attrs.geometry(c_in / groups, h, w);
                        if c_in % groups != 0 || g.k() != l.k {
                            return Err(self.shape_error(
                                l,
                                &shape,
                                "has a channel count the weights do not take",
                            ));
                        }
                        let pixels = g.out_h() * g.out_w();
                        let mut out = vec![0u8; batch * pixels * l.n];
                        let image = h * w * c_in;
                        let pad = input.zero_point as u8;
                        let lower = |b0: usize, dst: &mut [u8]| {
                            let images = dst.len() / (pixels * l.n).max(1);
                            let rows = images * pixels;
                            let src = &data[b0 * image..(b0 + images) * image];
                            if let (Some(dw), LinearMode::Static { offset, mult, .. }) =
                                (&l.depthwise, &l.mode)
                            {
                                // Depthwise: a direct loop over taps and channels, then the same epilogue.
                                let mut acc =
                                    SCRATCH.with(|s| std::mem::take(&mut s.borrow_mut().acc));
                                if acc.len() < rows * l.n {
                                    acc.resize(rows * l.n, 0);
                                }
                                let acc_block = &mut acc[..rows * l.n];
                                let gd = attrs.geometry(c_in, h, w);
                                let isa = self.kernels.gemm_u8i8.isa();
                                depthwise_nhwc_acc(src, images, &gd, dw, pad, acc_block, isa);
                                self.kernels.requant_u8.requantize(
                                    acc_block,
                                    rows,
                                    l.n,
                                    l.n,
                                    offset,
                                    None,
                                    mult,
                                    output.zero_point,
                                    l.relu,
                                    dst,
                                );
                                SCRATCH.with(|s| s.borrow_mut().acc = acc);
                                return;
                            }
                            let mut cols =
                                SCRATCH.with(|s| std::mem::take(&mut s.borrow_mut().cols));
                            if cols.len() < rows * l.k {
                                cols.resize(rows * l.k, 0);
                            }
                            let cols_block = &mut cols[..rows * l.k];
                            for gi in 0..groups {
                                im2col_nhwc_slice(
                                    src,
                                    images,
                                    &g,
                                    c_in,
                                    gi * g.c_in,
                                    pad,
                                    cols_block,
                                );
                                run(gi, rows, cols_block, &mut dst[gi * ng..], l.n);
                            }
                            SCRATCH.with(|s| s.borrow_mut().cols = cols);
                        };
                        for_image_blocks(&mut out, batch, pixels * l.n, pixels * l.k, lower);
                        (out, vec![batch, g.out_h(), g.out_w(), l.n])
                    }
                    _ => {
                        if shape.last() != Some(&l.k) {
                            return Err(self.shape_error(
                                l,
                                &shape,
                                &format!("does not end in k = {}", l.k),
                            ));
                        }
                        let m = data.len() / l.k;
                        let mut out = vec![0u8; m * l.n];
                        run(0, m, &data, &mut out, l.n);
                        let mut out_shape = shape.clone();
                        *out_shape.last_mut().expect("non-empty") = l.n;
                        (out, out_shape)
                    }
                };
                let y = ArrayD::from_shape_vec(IxDyn(&out_shape), out).expect("shape matches");
                Ok(if nhwc {
                    Value::U8Nhwc(y, *output)
                } else {
                    Value::U8(y, *output)
                })
            }
        }
    }

    /// Per-group weights with float or dynamic activations: the int4 kernel when it holds the weights, else
    /// one int8 (or weight-only) GEMM per group of rows, summed in f32.
    fn run_grouped_float(&self, l: &QLinear, gr: &Grouped, x: Value) -> Result<Value, QuantError> {
        let x = x.into_f32()?;
        let (k, n) = (l.k, l.n);
        let y = match (&l.mode, &gr.w4) {
            (LinearMode::WeightOnly, Some(w4)) => {
                run_lowered(l, x.view(), 0.0f32, |_, m, a, c| {
                    self.kernels.gemm_w4.gemm(m, a, k, w4, c, n);
                    add_bias_relu(c, n, l.bias.as_deref(), l.relu);
                })?
            }
            (LinearMode::Dynamic, Some(w4)) => run_lowered(l, x.view(), 0.0f32, |_, m, a, c| {
                self.kernels.gemm_w4.gemm_dyn_i8(m, a, k, w4, c, n);
                add_bias_relu(c, n, l.bias.as_deref(), l.relu);
            })?,
            (LinearMode::WeightOnly, None) => run_lowered(l, x.view(), 0.0f32, |_, m, a, c| {
                let mut part = vec![0f32; m * n];
                c[..m * n].fill(0.0);
                for (gi, (packed, _)) in gr.slices.iter().enumerate() {
                    let r0 = gi * gr.g;
                    let cols = gi * n..(gi + 1) * n;
                    self.kernels.gemm_f32_w8.gemm(
                        m,
                        &a[r0..],
                        k,
                        packed,
                        &l.params.scales[cols.clone()],
                        &l.params.zero_points[cols],
                        &mut part,
                        n,
                    );
                    for (c, p) in c.iter_mut().zip(&part) {
                        *c += p;
                    }
                }
                add_bias_relu(c, n, l.bias.as_deref(), l.relu);
            })?,
            _ => {
                let data = contiguous(&x);
                let isa = self.kernels.gemm_u8i8.isa();
                let (lo, hi) = min_max_at(&data, isa);
                let p = activation_params(lo, hi, self.strategy.scheme, self.strategy.scale);
                let mut q = vec![0u8; data.len()];
                quantize_u8_at(&data, p.scale, p.zero_point, &mut q, isa);
                let q = ArrayD::from_shape_vec(x.raw_dim(), q).expect("same length");
                run_lowered(l, q.view(), p.zero_point as u8, |_, m, a, c: &mut [f32]| {
                    self.grouped_u8(l, gr, m, a, p, c)
                })?
            }
        };
        Ok(Value::F32(y))
    }

    /// `c[m, n]` (f32) of u8 activations with parameters `a_p` and per-group int8 weights: per group of rows,
    /// the int8 GEMM on that slice of A's columns, zero points compensated in integers, then scaled by the
    /// activation scale and the group's column scales and summed; bias and ReLU last.
    fn grouped_u8(
        &self,
        l: &QLinear,
        gr: &Grouped,
        m: usize,
        a: &[u8],
        a_p: ActParams,
        c: &mut [f32],
    ) {
        let (k, n) = (l.k, l.n);
        let c = &mut c[..m * n];
        c.fill(0.0);
        let mut acc = vec![0i32; m * n];
        for (gi, (packed, col_sums)) in gr.slices.iter().enumerate() {
            let r0 = gi * gr.g;
            let len = packed.k;
            self.kernels
                .gemm_u8i8
                .gemm(m, &a[r0..], k, packed, &mut acc, n);
            let zps = &l.params.zero_points[gi * n..(gi + 1) * n];
            let scales = &l.params.scales[gi * n..(gi + 1) * n];
            let row_sums = zps
                .iter()
                .any(|&z| z != 0)
                .then(|| row_sums_u8(&a[r0..], m, len, k));
            let za = a_p.zero_point;
            for (i, (c_row, acc_row)) in c.chunks_exact_mut(n).zip(acc.chunks_exact(n)).enumerate()
            {
                let rs = row_sums.as_ref().map_or(0, |r| r[i]);
                for j in 0..n {
                    let v = acc_row[j] - za * col_sums[j] - zps[j] * rs + len as i32 * za * zps[j];
                    c_row[j] += v as f32 * (a_p.scale * scales[j]);
                }
            }
        }
        add_bias_relu(c, n, l.bias.as_deref(), l.relu);
    }

    fn shape_error(&self, l: &QLinear, shape: &[usize], what: &str) -> QuantError {
        QuantError::Node {
            node: l.name.clone(),
            op: l.op,
            message: format!("input shape {shape:?} {what}"),
        }
    }
}

/// The u8 input a static layer expects: parameters `p`, NHWC when `nhwc`, whatever arrives; float inputs are
/// quantized at `isa` (the layer's kernel tier).
fn to_static_input(
    x: Value,
    p: ActParams,
    nhwc: bool,
    isa: kernels::Isa,
) -> Result<ArrayD<u8>, QuantError> {
    let quantize = |f: ArrayD<f32>| {
        let mut q = vec![0u8; f.len()];
        quantize_u8_at(&contiguous(&f), p.scale, p.zero_point, &mut q, isa);
        ArrayD::from_shape_vec(f.raw_dim(), q).expect("same length")
    };
    Ok(match x {
        Value::U8Nhwc(q, have) if have == p && nhwc => q,
        Value::U8(q, have) if have == p && !nhwc => q,
        Value::U8(q, have) if have == p => swap_channels(&q, true),
        other => {
            // Float input, or u8 with other parameters: requantize through f32 (the graph's first layer).
            let q = quantize(other.into_f32()?);
            if nhwc { swap_channels(&q, true) } else { q }
        }
    })
}

/// Runs `lower(first image, its block of out)` over `out` (`batch` images of `per_image` values each) a few
/// whole images at a time, so that each block's im2col (`im2col_per_image` bytes an image) stays in L2; with
/// several threads, at least one block per thread (each lowers and multiplies its own images).
fn for_image_blocks<T: Send>(
    out: &mut [T],
    batch: usize,
    per_image: usize,
    im2col_per_image: usize,
    lower: impl Fn(usize, &mut [T]) + Sync,
) {
    let threads = rayon::current_num_threads();
    let chunk = (IM2COL_BLOCK_BYTES / im2col_per_image.max(1))
        .clamp(1, batch.max(1))
        .min(batch.div_ceil(threads).max(1));
    let block = chunk * per_image;
    if block == 0 {
        return;
    }
    if threads > 1 && batch > chunk {
        out.par_chunks_mut(block)
            .enumerate()
            .for_each(|(i, dst)| lower(i * chunk, dst));
    } else {
        for (i, dst) in out.chunks_mut(block).enumerate() {
            lower(i * chunk, dst);
        }
    }
}

fn add_bias_relu(c: &mut [f32], n: usize, bias: Option<&[f32]>, relu: bool) {
    for row in c.chunks_mut(n) {
        if let Some(b) = bias {
            for (v, b) in row.iter_mut().zip(b) {
                *v += b;
            }
        }
        if relu {
            for v in row.iter_mut() {
                *v = v.max(0.0);
            }
        }
    }
}

/// Lowers a linear layer to GEMMs: per image and convolution group through im2col for Conv (output written back
/// as NCHW), or one GEMM over all leading dimensions for Dense. `gemm(group, m, a, c)` computes the group's
/// `c[m, n / groups]` from `a[m, k]` (group 0 and all `n` columns for every layer but a grouped Conv).
fn run_lowered<T, U, F>(
    l: &QLinear,
    x: ArrayViewD<T>,
    pad: T,
    mut gemm: F,
) -> Result<ArrayD<U>, QuantError>
where
    T: Copy + Default,
    U: Copy + Default,
    F: FnMut(usize, usize, &[T], &mut [U]),
{
    let shape = x.shape().to_vec();
    let bad_shape = |what: &str| QuantError::Node {
        node: l.name.clone(),
        op: l.op,
        message: format!("input shape {shape:?} {what}"),
    };
    let x = x.as_standard_layout();
    let data = x.as_slice().expect("standard layout");
    match &l.shape {
        LinearShape::Dense => {
            let k = *shape.last().ok_or_else(|| bad_shape("is a scalar"))?;
            if k != l.k {
                return Err(bad_shape(&format!("does not end in k = {}", l.k)));
            }
            let m = data.len() / k;
            let mut out = vec![U::default(); m * l.n];
            gemm(0, m, data, &mut out);
            let mut out_shape = shape.clone();
            *out_shape.last_mut().expect("non-empty") = l.n;
            Ok(ArrayD::from_shape_vec(IxDyn(&out_shape), out).expect("shape matches"))
        }
        LinearShape::ConvNhwc(_) => Err(bad_shape(
            "reached a float path of an NHWC (static-only) layer",
        )),
        LinearShape::Conv(attrs) => {
            if shape.len() != 4 {
                return Err(bad_shape("is not NCHW"));
            }
            let (batch, c_in, h, w) = (shape[0], shape[1], shape[2], shape[3]);
            let groups = attrs.group.max(1);
            let g = attrs.geometry(c_in / groups, h, w);
            if c_in % groups != 0 || g.k() != l.k {
                return Err(bad_shape(&format!(
                    "has {c_in} channels; the weights expect {} in {groups} group(s)",
                    l.k / (g.kh * g.kw) * groups
                )));
            }
            let (oh, ow) = (g.out_h(), g.out_w());
            let m = oh * ow;
            let ng = l.n / groups;
            let mut cols = vec![T::default(); m * l.k];
            let mut tile = vec![U::default(); m * ng];
            let mut out = vec![U::default(); batch * l.n * m];
            let image = c_in * h * w;
            let part = g.c_in * h * w;
            for b in 0..batch {
                for gi in 0..groups {
                    let src = &data[b * image + gi * part..b * image + (gi + 1) * part];
                    im2col(src, &g, pad, &mut cols);
                    gemm(gi, m, &cols, &mut tile);
                    // [m, ng] -> the group's channels of [n, m] (NCHW).
                    let dst = &mut out[(b * l.n + gi * ng) * m..(b * l.n + (gi + 1) * ng) * m];
                    for (p, row) in tile.chunks_exact(ng).enumerate() {
                        for (c, &v) in row.iter().enumerate() {
                            dst[c * m + p] = v;
                        }
                    }
                }
            }
            Ok(ArrayD::from_shape_vec(IxDyn(&[batch, l.n, oh, ow]), out).expect("shape matches"))
        }
    }
}

/// An input of an unquantized node: a runtime value (moved on its last use) or a model constant.
enum Arg<'a> {
    Value(Cow<'a, Value>),
    Const(&'a Tensor),
}

/// Runs an unquantized node. Relu, MaxPool, Flatten and Reshape keep u8 values in u8 (they commute with the
/// affine map; Relu and MaxPool also keep NHWC); every other op runs on the FP32 executor's [`eval_op`], its
/// u8 inputs dequantized (NCHW, as the caller converted them) and its output f32 or i64.
fn run_node(
    node: &Node,
    args: Vec<Option<Arg<'_>>>,
    gemm: &dyn kernels::GemmF32,
) -> Result<Value, QuantError> {
    let node_err = |message: String| QuantError::Node {
        node: node.name.clone(),
        op: node.op.op_type(),
        message,
    };
    if let Some(Some(Arg::Value(x))) = args.first()
        && let Some(y) = run_node_u8(node, x, args.get(1).and_then(Option::as_ref))
    {
        return y.map_err(node_err);
    }
    let tensors = args
        .into_iter()
        .map(|a| {
            Ok(match a {
                None => None,
                Some(Arg::Const(t)) => Some(Cow::Borrowed(t)),
                Some(Arg::Value(v)) => Some(Cow::Owned(v.into_owned().into_tensor()?)),
            })
        })
        .collect::<Result<Vec<Option<Cow<'_, Tensor>>>, QuantError>>()?;
    let refs: Vec<Option<&Tensor>> = tensors.iter().map(|t| t.as_deref()).collect();
    let y = eval_op(&node.op, &refs, gemm).map_err(|e| node_err(e.to_string()))?;
    Ok(Value::from_tensor(y))
}

/// The u8 paths of [`run_node`]: `Some` when `x` is u8 and the op keeps it u8.
fn run_node_u8(node: &Node, x: &Value, second: Option<&Arg<'_>>) -> Option<Result<Value, String>> {
    let (q, p, nhwc) = match x {
        Value::U8(q, p) => (q, *p, false),
        Value::U8Nhwc(q, p) => (q, *p, true),
        _ => return None,
    };
    let wrap = |y: ArrayD<u8>| {
        if nhwc {
            Value::U8Nhwc(y, p)
        } else {
            Value::U8(y, p)
        }
    };
    Some(match &node.op {
        Op::Relu => {
            let zp = p.zero_point.clamp(0, 255) as u8;
            Ok(wrap(q.mapv(|v| v.max(zp))))
        }
        Op::MaxPool(attrs) if nhwc => max_pool_u8_nhwc(q, attrs).map(wrap),
        Op::MaxPool(attrs) => ops::max_pool2d(q.view(), attrs)
            .map(wrap)
            .map_err(|e| e.to_string()),
        _ if nhwc => return None,
        Op::Flatten { axis } => ops::flatten_shape(q.shape(), *axis)
            .map_err(|e| e.to_string())
            .and_then(|shape| reshape_value(x, &shape)),
        Op::Reshape { allowzero } => {
            let target: Vec<i64> = match second {
                Some(Arg::Value(v)) => match v.as_ref() {
                    Value::I64(t) => t.iter().copied().collect(),
                    _ => return Some(Err("the shape input is not an i64 tensor".into())),
                },
                Some(Arg::Const(Tensor::I64(t))) => t.iter().copied().collect(),
                _ => return Some(Err("the shape input is not an i64 tensor".into())),
            };
            ops::reshape_shape(q.shape(), &target, *allowzero)
                .map_err(|e| e.to_string())
                .and_then(|shape| reshape_value(x, &shape))
        }
        _ => return None,
    })
}

/// MaxPool over an NHWC u8 batch.
fn max_pool_u8_nhwc(q: &ArrayD<u8>, attrs: &crate::ir::PoolAttrs) -> Result<ArrayD<u8>, String> {
    let &[n, h, w, c] = q.shape() else {
        return Err(format!(
            "MaxPool input {:?} is not a 4-D image batch",
            q.shape()
        ));
    };
    let [kh, kw] = attrs.kernel_shape;
    let [sh, sw] = attrs.strides;
    let [dh, dw] = attrs.dilations;
    let [pt, pl, pb, pr] = attrs.pads;
    let oh = ops::pool_output_len("MaxPool height", h, kh, sh, (pt, pb), dh, attrs.ceil_mode)
        .map_err(|e| e.to_string())?;
    let ow = ops::pool_output_len("MaxPool width", w, kw, sw, (pl, pr), dw, attrs.ceil_mode)
        .map_err(|e| e.to_string())?;
    // Each window's first valid tap and how many valid taps follow (padding never wins).
    let taps = |out: usize,
                stride: usize,
                pad: usize,
                dil: usize,
                kernel: usize,
                len: usize|
     -> Vec<(usize, usize)> {
        (0..out)
            .map(|o| {
                let valid: Vec<usize> = (0..kernel)
                    .filter_map(|t| (o * stride + t * dil).checked_sub(pad).filter(|&i| i < len))
                    .collect();
                (valid.first().copied().unwrap_or(0), valid.len())
            })
            .collect()
    };
    let rows = taps(oh, sh, pt, dh, kh, h);
    let cols = taps(ow, sw, pl, dw, kw, w);
    if rows.iter().chain(&cols).any(|t| t.1 == 0) {
        return Err(format!(
            "MaxPool has a window over padding only (input {h}x{w})"
        ));
    }
    let mut out = vec![0u8; n * oh * ow * c];
    max_pool_nhwc(&contiguous(q), n, h, w, c, &rows, &cols, (dh, dw), &mut out);
    Ok(ArrayD::from_shape_vec(IxDyn(&[n, oh, ow, c]), out).expect("shape matches"))
}

fn reshape_value(v: &Value, shape: &[usize]) -> Result<Value, String> {
    fn re<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
        ArrayD::from_shape_vec(IxDyn(shape), contiguous(a).into_owned())
            .map_err(|e| format!("cannot reshape {:?} to {shape:?}: {e}", a.shape()))
    }
    Ok(match v {
        Value::F32(a) => Value::F32(re(a, shape)?),
        Value::U8(a, p) => Value::U8(re(a, shape)?, *p),
        Value::U8Nhwc(..) => return Err("an NHWC value must be converted before a reshape".into()),
        Value::I64(a) => Value::I64(re(a, shape)?),
    })
}

/// Static requantization parameters of a layer between `input` and `output` activation parameters.
fn static_mode_params(lin: &QLinear, input: ActParams, output: ActParams) -> LinearMode {
    let per_col = |j: usize| if lin.params.scales.len() > 1 { j } else { 0 };
    let bias_q: Option<Vec<i32>> = lin.bias.as_ref().map(|b| {
        b.iter()
            .enumerate()
            .map(|(j, &v)| {
                let q = (v as f64 / (input.scale as f64 * lin.params.scales[per_col(j)] as f64))
                    .round_ties_even();
                q.clamp(i32::MIN as f64, i32::MAX as f64) as i32
            })
            .collect()
    });
    static_mode_with_bias(lin, input, output, bias_q)
}

/// [`static_mode_params`] with the bias already in accumulator units.
fn static_mode_with_bias(
    lin: &QLinear,
    input: ActParams,
    output: ActParams,
    bias_q: Option<Vec<i32>>,
) -> LinearMode {
    let per_col = |j: usize| if lin.params.scales.len() > 1 { j } else { 0 };
    let (za, k) = (input.zero_point as i64, lin.k as i64);
    let offset = (0..lin.n)
        .map(|j| {
            let zb = lin.params.zero_points[per_col(j)] as i64;
            let b = bias_q.as_ref().map_or(0, |b| b[j] as i64);
            (b - za * lin.col_sums[j] as i64 + k * za * zb).clamp(i32::MIN as i64, i32::MAX as i64)
                as i32
        })
        .collect();
    let b_zps = lin.params.zero_points.iter().any(|&z| z != 0).then(|| {
        (0..lin.n)
            .map(|j| lin.params.zero_points[per_col(j)])
            .collect()
    });
    let mult = (0..lin.n)
        .map(|j| {
            (input.scale as f64 * lin.params.scales[per_col(j)] as f64 / output.scale as f64) as f32
        })
        .collect();
    LinearMode::Static {
        input,
        output,
        bias_q,
        offset,
        b_zps,
        mult,
    }
}

/// True when `value` is read by exactly one node, a Gemm / MatMul this module quantizes whose weight rows can
/// be permuted for an input of `channels` NHWC channels.
fn feeds_one_dense(
    graph: &Graph,
    value: &str,
    consumers: &HashMap<&str, usize>,
    channels: usize,
) -> bool {
    if consumers.get(value) != Some(&1) || graph.outputs.iter().any(|o| o.name == value) {
        return false;
    }
    let Some(node) = graph
        .nodes
        .iter()
        .find(|n| n.inputs.first().is_some_and(|i| i == value))
    else {
        return false;
    };
    matches!(
        float_linear(graph, node),
        Ok(Some((LinearShape::Dense, w, _))) if w.nrows() % channels == 0
    )
}

/// How many nodes read each value.
fn consumer_counts(graph: &Graph) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for node in &graph.nodes {
        for input in &node.inputs {
            *counts.entry(input.as_str()).or_insert(0) += 1;
        }
    }
    counts
}

/// The float weights of a layer this module quantizes: its shape, weights as `[k, n]` (conv rows ordered
/// `(c, ky, kx)`), bias as `[n]`. `None` leaves the node in float.
type FloatLinear = (LinearShape, Array2<f32>, Option<Vec<f32>>);

fn float_linear(graph: &Graph, node: &Node) -> Result<Option<FloatLinear>, QuantError> {
    let constant = |i: usize| -> Option<&ArrayD<f32>> {
        node.inputs
            .get(i)
            .and_then(|name| graph.initializers.get(name))
            .and_then(Tensor::as_f32)
    };
    let err = |message: String| QuantError::Node {
        node: node.name.clone(),
        op: node.op.op_type(),
        message,
    };
    // Weights as `[k, n]`, bias as `[n]`.
    let (shape, w_kn, bias): (LinearShape, Array2<f32>, Option<Vec<f32>>) = match &node.op {
        Op::Conv(attrs) => {
            let Some(w) = constant(1) else {
                return Ok(None);
            };
            if w.ndim() != 4 {
                return Err(err(format!("weight shape {:?} is not OIHW", w.shape())));
            }
            let n = w.shape()[0];
            let k = w.len() / n;
            let w_nk = w
                .to_owned()
                .into_shape_with_order((n, k))
                .map_err(|e| err(e.to_string()))?;
            let bias = constant(2).map(|b| b.iter().copied().collect());
            (LinearShape::Conv(attrs.clone()), w_nk.t().to_owned(), bias)
        }
        Op::Gemm(attrs) if !attrs.trans_a => {
            let Some(w) = constant(1) else {
                return Ok(None);
            };
            if w.ndim() != 2 {
                return Err(err(format!("B has shape {:?}; Gemm needs 2-D", w.shape())));
            }
            let w2 = w.view().into_dimensionality::<ndarray::Ix2>().expect("2-D");
            let mut w_kn = if attrs.trans_b {
                w2.t().to_owned()
            } else {
                w2.to_owned()
            };
            w_kn.mapv_inplace(|v| v * attrs.alpha);
            let n = w_kn.ncols();
            let bias = match node.inputs.get(2).filter(|s| !s.is_empty()) {
                None => None,
                Some(_) => {
                    let Some(c) = constant(2) else {
                        return Ok(None);
                    };
                    if c.len() != n {
                        // A full [m, n] C cannot be folded into a per-channel bias.
                        return Ok(None);
                    }
                    Some(c.iter().map(|v| v * attrs.beta).collect())
                }
            };
            (LinearShape::Dense, w_kn, bias)
        }
        Op::MatMul => {
            let Some(w) = constant(1) else {
                return Ok(None);
            };
            if w.ndim() != 2 {
                return Ok(None);
            }
            let w2 = w.view().into_dimensionality::<ndarray::Ix2>().expect("2-D");
            (LinearShape::Dense, w2.to_owned(), None)
        }
        _ => return Ok(None),
    };
    Ok(Some((shape, w_kn, bias)))
}

/// A value's static u8 parameters: its calibrated range under the strategy's rule (calibration method,
/// symmetric or not), as every static quantized layer's input and output get theirs.
fn static_params(
    ranges: Option<&ActivationRanges>,
    strategy: LinearStrategy,
    value: &str,
) -> Result<ActParams, QuantError> {
    let ranges = ranges.ok_or_else(|| QuantError::NoRange {
        value: value.to_owned(),
    })?;
    let rule = (
        strategy.calibration.unwrap_or(Calibration::MinMax),
        strategy.scheme == Scheme::Symmetric,
    );
    let (lo, hi) = ranges.get_rule(value, rule)?;
    Ok(activation_params(lo, hi, strategy.scheme, strategy.scale))
}

/// Whether the static builder makes `node` a quantized layer with u8 input (not an FP32 layer of `mixed`).
pub(crate) fn static_layer(
    graph: &Graph,
    node: &Node,
    granularity: Granularity,
    mixed: Option<&MixedPrecision>,
) -> bool {
    matches!(node.op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul)
        && !matches!(
            mixed.and_then(|m| m.layers.get(&node.name)),
            Some(LayerPrecision::Fp32)
        )
        && float_reason(graph, node, granularity, false).is_none()
        && matches!(float_linear(graph, node), Ok(Some(_)))
}

/// Why a quantized model keeps `node` in FP32 under a strategy of this weight `granularity` (`float_format`:
/// a 16-bit float strategy or an FP32 layer of a mixed map); `None` when the node becomes a quantized layer.
/// The rules of the module docs in one place: the builder and `harness inspect` both ask here.
pub fn float_reason(
    graph: &Graph,
    node: &Node,
    granularity: Granularity,
    float_format: bool,
) -> Option<String> {
    let constant = |i: usize| {
        node.inputs
            .get(i)
            .and_then(|name| graph.initializers.get(name))
            .and_then(Tensor::as_f32)
    };
    let reason = |s: &str| Some(s.to_owned());
    match &node.op {
        Op::Conv(a) => match constant(1) {
            None => reason("the weights are computed at run time, not a constant"),
            Some(_) if a.group > 1 && float_format => {
                reason("grouped conv: 16-bit float weights are packed for group-1 layers only")
            }
            Some(_) if a.group > 1 && matches!(granularity, Granularity::PerGroup(_)) => {
                reason("grouped conv: k-row groups are not combined with conv groups")
            }
            Some(_) => None,
        },
        Op::Gemm(a) => match constant(1) {
            _ if a.trans_a => reason("transA: the activation is transposed"),
            None => reason("B is computed at run time (activation x activation)"),
            Some(b) if b.ndim() != 2 => reason("B is not 2-D"),
            Some(b) => {
                let n = if a.trans_b {
                    b.shape()[0]
                } else {
                    b.shape()[1]
                };
                match node.inputs.get(2).filter(|s| !s.is_empty()) {
                    Some(_) if constant(2).is_none_or(|c| c.len() != n) => {
                        reason("C is not a constant per-column bias")
                    }
                    _ => None,
                }
            }
        },
        Op::MatMul => match constant(1) {
            None => reason("B is computed at run time (activation x activation)"),
            Some(b) if b.ndim() != 2 => reason("B is batched (not 2-D)"),
            Some(_) => None,
        },
        op => Some(format!(
            "{} is not a quantized op (Conv, Gemm and MatMul with constant weights are)",
            op.op_type()
        )),
    }
}

/// `perm[row] = graph row` of a layer whose weight rows were reordered for channels-last inputs (`None`: the
/// graph's own order, `(c, ky, kx)` for convolutions).
fn rows_from_graph(
    shape: &LinearShape,
    k: usize,
    nhwc_channels: Option<usize>,
) -> Option<Vec<usize>> {
    match shape {
        LinearShape::ConvNhwc(attrs) => {
            // Rows (c, ky, kx) -> (ky, kx, c).
            let taps = attrs.kernel_shape[0] * attrs.kernel_shape[1];
            let c_in = k / taps;
            Some((0..k).map(|r| (r % c_in) * taps + r / c_in).collect())
        }
        LinearShape::Dense => nhwc_channels.map(|c| {
            // Rows c * hw + p (NCHW flatten) -> p * c + ch (NHWC flatten).
            let hw = k / c;
            (0..k).map(|r| (r % c) * hw + r / c).collect()
        }),
        LinearShape::Conv(_) => None,
    }
}

/// Builds the quantized layer for `node` if the strategy quantizes it; `None` leaves it in float.
/// `permute_channels`: the input is an NHWC image flattened in NHWC order with that many channels, so the
/// weight rows (NCHW flatten order) are permuted to match.
fn linear_from_node(
    graph: &Graph,
    node: &Node,
    strategy: LinearStrategy,
    float: Option<FloatFormat>,
    refine: Option<&LayerInputs>,
    kernels: KernelSet,
    permute_channels: Option<usize>,
) -> Result<Option<QLinear>, QuantError> {
    let Some((shape, w_kn, bias)) = float_linear(graph, node)? else {
        return Ok(None);
    };
    if float_reason(graph, node, strategy.granularity, float.is_some()).is_some() {
        return Ok(None);
    }
    let groups = conv_groups(&shape);
    if groups > 1 {
        // Refinements fall back to round-to-nearest on grouped convolutions: their calibration statistics are
        // gathered for group-1 layers only.
        if w_kn.ncols() % groups != 0 {
            return Err(QuantError::Node {
                node: node.name.clone(),
                op: node.op.op_type(),
                message: format!("{} output channels in {groups} groups", w_kn.ncols()),
            });
        }
    }
    let strategy = if groups > 1 {
        LinearStrategy {
            refinement: Refinement::None,
            ..strategy
        }
    } else {
        strategy
    };
    let static_mode = strategy.act == ActMode::Static;
    // Dynamic convolutions with one group, or depthwise, and per-tensor or per-channel weights also lower
    // channels-last (`run_dynamic_nhwc`): contiguous im2col runs of `kw * c_in` bytes instead of `kw`, and
    // depthwise layers the direct loop over taps and channels instead of one GEMM per channel.
    let taps_of = |a: &ConvAttrs| a.kernel_shape[0] * a.kernel_shape[1];
    let dynamic_nhwc = |a: &ConvAttrs| {
        let depthwise = a.group == w_kn.ncols() && w_kn.nrows() == taps_of(a);
        strategy.act == ActMode::Dynamic
            && float.is_none()
            && (a.group == 1 || depthwise)
            && !matches!(strategy.granularity, Granularity::PerGroup(_))
    };
    let (shape, nhwc_channels) = match shape {
        LinearShape::Conv(attrs) if static_mode || dynamic_nhwc(&attrs) => {
            (LinearShape::ConvNhwc(attrs), None)
        }
        LinearShape::Dense => (
            LinearShape::Dense,
            permute_channels.filter(|&c| w_kn.nrows() % c == 0),
        ),
        other => (other, None),
    };
    // `perm[new row] = old row` when the rows are reordered for channels-last inputs.
    let perm = rows_from_graph(&shape, w_kn.nrows(), nhwc_channels);
    let w_kn = match &perm {
        Some(p) => Array2::from_shape_fn(w_kn.dim(), |(r, j)| w_kn[[p[r], j]]),
        None => w_kn,
    };
    if let Some(format) = float {
        let (k, n) = w_kn.dim();
        let flat: Vec<f32> = w_kn.iter().copied().collect();
        let (half, full, stored): (_, _, Vec<u8>) = match format {
            FloatFormat::Fp16 => {
                let bits = kernels::formats::f16::from_f32_slice(&flat);
                let stored = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
                (Some(kernels.gemm_f16w.pack_b(&bits, k, n)), None, stored)
            }
            FloatFormat::Bf16 => {
                let bits = kernels::formats::bf16::from_f32_slice(&flat);
                let stored = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
                (Some(kernels.gemm_bf16.pack_b(&flat, k, n)), None, stored)
            }
            FloatFormat::Fp32 => {
                let stored = flat.iter().flat_map(|v| v.to_le_bytes()).collect();
                (None, Some(kernels.gemm_f32.pack_b(&flat, k, n)), stored)
            }
        };
        return Ok(Some(QLinear {
            name: node.name.clone(),
            op: node.op.op_type(),
            input: node.inputs[0].clone(),
            output: node.outputs[0].clone(),
            shape,
            k,
            n,
            stored,
            code_bits: if format == FloatFormat::Fp32 { 32 } else { 16 },
            log: false,
            nhwc_channels,
            grouped: None,
            half,
            full,
            params: QParams {
                scales: Vec::new(),
                zero_points: Vec::new(),
                bits: if format == FloatFormat::Fp32 { 32 } else { 16 },
                scheme: Scheme::Symmetric,
                granularity: Granularity::PerTensor,
            },
            packed: Vec::new(),
            fused_dyn: None,
            depthwise: None,
            col_sums: Vec::new(),
            bias,
            relu: false,
            mode: LinearMode::Float(format),
        }));
    }
    let (weights, params, stored) = match strategy.refinement {
        // Cross-layer equalization already changed the graph's weights; they round to nearest.
        Refinement::None | Refinement::Cle => quantize_layer_weights(w_kn.view(), strategy)?,
        r => {
            let inputs = refine.ok_or_else(|| {
                QuantError::Unsupported(format!(
                    "{} needs calibration statistics of layer `{}`, and none were gathered",
                    r.name(),
                    node.name
                ))
            })?;
            refined_weights(w_kn.view(), strategy, inputs, perm.as_deref(), &node.name)?
        }
    };
    // Bias correction: the bias absorbs the mean output shift the quantized weights cause.
    let bias = match (strategy.refinement, refine.and_then(|r| r.mean.as_ref())) {
        (Refinement::BiasCorrection, Some(mean)) => {
            let mean = permuted_vec(mean, perm.as_deref());
            let w_q = strategies::dequantize_weights(weights.view(), &params)?;
            let b = bias
                .as_ref()
                .map(|b| ndarray::ArrayView1::from(b.as_slice()));
            Some(strategies::ptq::correct_bias(w_kn.view(), w_q.view(), b, mean.view())?.to_vec())
        }
        _ => bias,
    };
    let (k, n) = weights.dim();
    let flat: Vec<i8> = weights.iter().copied().collect();
    let depthwise = matches!(strategy.act, ActMode::Static | ActMode::Dynamic)
        .then(|| depthwise_weights(&shape, &flat, k, n, &params))
        .flatten();
    let grouped = match strategy.granularity {
        Granularity::PerGroup(g) => Some(group_weights(&weights, &params, g, strategy, kernels)),
        _ => None,
    };
    let fused_dyn = fused_dynamic(
        &shape,
        &params,
        &flat,
        (k, n),
        strategy.act,
        strategy,
        kernels,
    );
    // The fused kernel's packing replaces the u8 GEMM's (the layer never calls that GEMM).
    let packed = match fused_dyn {
        Some(_) => Vec::new(),
        None => pack_conv_groups(&flat, k, n, groups, strategy.act, kernels),
    };
    Ok(Some(QLinear {
        name: node.name.clone(),
        op: node.op.op_type(),
        input: node.inputs[0].clone(),
        output: node.outputs[0].clone(),
        shape,
        k,
        n,
        col_sums: col_sums_i8(&flat, k, n),
        stored,
        code_bits: strategy.weight_bits,
        log: strategy.quantizer == Quantizer::Log,
        nhwc_channels,
        grouped,
        half: None,
        full: None,
        fused_dyn,
        params,
        packed,
        depthwise,
        bias,
        relu: false,
        mode: match strategy.act {
            ActMode::WeightOnly => LinearMode::WeightOnly,
            // Static parameters are filled in by the caller, which knows the calibrated ranges.
            _ => LinearMode::Dynamic,
        },
    }))
}

/// The layer's integer weights in the strategy's bit range, their parameters, and the bytes a serialized model
/// stores for them (the integers, or the log codes, packed at the strategy's bit width).
fn quantize_layer_weights(
    w: ndarray::ArrayView2<f32>,
    s: LinearStrategy,
) -> Result<(Array2<i8>, QParams, Vec<u8>), QuantError> {
    let bits = s.weight_bits;
    match s.quantizer {
        Quantizer::Log => {
            if matches!(s.granularity, Granularity::PerGroup(_)) || s.scheme != Scheme::Symmetric {
                return Err(QuantError::Unsupported(format!(
                    "logarithmic weights are sign + exponent codes with one scale per tensor or channel: they need the symmetric scheme and tensor or channel granularity, not {} {}",
                    s.scheme.name(),
                    s.granularity.name()
                )));
            }
            let lp = log_params(w, bits, s.granularity)?;
            let codes = log_quantize_weights(w, &lp)?;
            // Exact decode: every code is a signed power of two times one int8 scale per channel.
            let (q, params) = log_to_int8(codes.view(), &lp)?;
            let stored = pack_codes(&codes.iter().copied().collect::<Vec<u8>>(), bits)?;
            Ok((q, params, stored))
        }
        Quantizer::Uniform => {
            let symmetric = s.scheme == Scheme::Symmetric;
            let params = match s.weight_range {
                WeightRange::MinMax => weight_params(w, bits, s.scheme, s.granularity, s.scale)?,
                WeightRange::Mse => weight_params_try_with::<QuantError>(
                    w,
                    bits,
                    s.scheme,
                    s.granularity,
                    s.scale,
                    |v| Ok(weight_range_mse(v, bits, symmetric)?),
                )?,
            };
            let q = quantize_weights(w, &params)?;
            let stored = pack_bits(&q.iter().copied().collect::<Vec<i8>>(), bits)?;
            Ok((q, params, stored))
        }
    }
}

/// Convolution groups of a layer's shape (1 for dense layers).
fn conv_groups(shape: &LinearShape) -> usize {
    match shape {
        LinearShape::Conv(a) | LinearShape::ConvNhwc(a) => a.group,
        LinearShape::Dense => 1,
    }
}

/// The fused dynamic kernel's rule for the strategy's activation scheme: its affine rule (ONNX
/// DynamicQuantizeLinear) and its symmetric one are [`activation_params`] with that scheme and
/// `ScaleConstraint::Float` (`fused_rules_are_the_activation_params`), apart from the floor `activation_params`
/// puts under the scale, which only a range below about 1e-30 reaches.
fn dyn_rule(scheme: Scheme) -> kernels::DynRule {
    match scheme {
        Scheme::Affine => kernels::DynRule::Affine,
        Scheme::Symmetric => kernels::DynRule::Symmetric,
    }
}

/// The weights packed for the fused dynamic kernel when it computes exactly what the unfused dynamic path
/// does: a dense layer (one GEMM over every leading dimension, e.g. BERT's `[batch * seq, hidden]`), not per
/// group of rows, with float-scale activation parameters (see [`dyn_rule`]).
fn fused_dynamic(
    shape: &LinearShape,
    params: &QParams,
    flat: &[i8],
    (k, n): (usize, usize),
    act: ActMode,
    strategy: LinearStrategy,
    kernels: KernelSet,
) -> Option<PackedB<i8>> {
    let fits = act == ActMode::Dynamic
        && matches!(shape, LinearShape::Dense)
        && !matches!(params.granularity, Granularity::PerGroup(_))
        && strategy.scale == ScaleConstraint::Float;
    fits.then(|| kernels.gemm_f32_dyn_i8.pack_b(flat, k, n))
}

/// The `[k, n]` int8 weights packed by the mode's kernel, one packing per convolution group (the group's
/// `n / groups` columns).
fn pack_conv_groups(
    flat: &[i8],
    k: usize,
    n: usize,
    groups: usize,
    act: ActMode,
    kernels: KernelSet,
) -> Vec<PackedB<i8>> {
    let pack = |b: &[i8], cols: usize| match act {
        ActMode::WeightOnly => kernels.gemm_f32_w8.pack_b(b, k, cols),
        ActMode::Static => kernels.gemm_u8i8_requant.pack_b(b, k, cols),
        ActMode::Dynamic => kernels.gemm_u8i8.pack_b(b, k, cols),
    };
    if groups <= 1 {
        return vec![pack(flat, n)];
    }
    let ng = n / groups;
    (0..groups)
        .map(|gi| {
            let part: Vec<i8> = flat
                .chunks_exact(n)
                .flat_map(|row| row[gi * ng..(gi + 1) * ng].iter().copied())
                .collect();
            pack(&part, ng)
        })
        .collect()
}

/// For a depthwise NHWC convolution (one input and one output channel per group), the weights `[taps, c]`
/// minus each channel's zero point, as [`depthwise_nhwc_acc`] takes them; `None` for every other layer.
fn depthwise_weights(
    shape: &LinearShape,
    flat: &[i8],
    k: usize,
    n: usize,
    params: &QParams,
) -> Option<Vec<i32>> {
    let LinearShape::ConvNhwc(a) = shape else {
        return None;
    };
    let taps = a.kernel_shape[0] * a.kernel_shape[1];
    if a.group != n || k != taps || matches!(params.granularity, Granularity::PerGroup(_)) {
        return None;
    }
    let zp = |j: usize| params.zero_points[if params.zero_points.len() > 1 { j } else { 0 }];
    Some(
        flat.iter()
            .enumerate()
            .map(|(i, &w)| i32::from(w) - zp(i % n))
            .collect(),
    )
}

/// `v[cols]`, or `v` itself when it holds one value for every column (per-tensor parameters).
fn columns<T>(v: &[T], cols: std::ops::Range<usize>) -> &[T] {
    if v.len() == 1 { v } else { &v[cols] }
}

/// Per-group weights laid out for the grouped paths (see [`Grouped`]).
fn group_weights(
    weights: &Array2<i8>,
    params: &QParams,
    g: usize,
    s: LinearStrategy,
    kernels: KernelSet,
) -> Grouped {
    let (k, n) = weights.dim();
    let int4 = s.weight_bits <= 4
        && kernels::formats::int4::GROUPS.contains(&g)
        && s.act != ActMode::Static;
    if int4 {
        // Nibbles hold `q + 8`: symmetric 4-bit values are -7..=7 with zero point 0, affine ones -8..=7 with a
        // zero point in the same range, so both fit 0..=15 with the zero point shifted alike.
        let nibbles: Vec<u8> = weights.iter().map(|&v| (v as i32 + 8) as u8).collect();
        let zps: Vec<u8> = params.zero_points.iter().map(|&z| (z + 8) as u8).collect();
        let w4 = kernels
            .gemm_w4
            .pack_b(&nibbles, k, n, g, &params.scales, &zps);
        return Grouped {
            g,
            w4: Some(w4),
            slices: Vec::new(),
        };
    }
    let slices = (0..k.div_ceil(g))
        .map(|gi| {
            let rows = gi * g..((gi + 1) * g).min(k);
            let len = rows.len();
            let flat: Vec<i8> = weights
                .slice(ndarray::s![rows, ..])
                .iter()
                .copied()
                .collect();
            let packed = match s.act {
                ActMode::WeightOnly => kernels.gemm_f32_w8.pack_b(&flat, len, n),
                _ => kernels.gemm_u8i8.pack_b(&flat, len, n),
            };
            (packed, col_sums_i8(&flat, len, n))
        })
        .collect();
    Grouped {
        g,
        w4: None,
        slices,
    }
}

/// Names of the nodes a quantized model turns into quantized layers (Conv, Gemm, MatMul), in graph order.
pub fn linear_layer_names(graph: &Graph) -> Vec<String> {
    graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul))
        .map(|n| n.name.clone())
        .collect()
}

/// An error unless every layer `map` names is a Conv / Gemm / MatMul of `graph`.
fn check_layers(graph: &Graph, map: &MixedPrecision) -> Result<(), QuantError> {
    let layers = linear_layer_names(graph);
    match map.layers.keys().find(|l| !layers.contains(l)) {
        Some(unknown) => Err(QuantError::Unsupported(format!(
            "mixed-precision map `{}` names layer `{unknown}`, which is not a Conv / Gemm / MatMul of the model (its layers: {})",
            map.name,
            layers.join(", ")
        ))),
        None => Ok(()),
    }
}

/// `v` reordered as the weight rows were (`perm[new] = old`).
fn permuted_vec(v: &ndarray::Array1<f64>, perm: Option<&[usize]>) -> ndarray::Array1<f64> {
    match perm {
        Some(p) => p.iter().map(|&old| v[old]).collect(),
        None => v.clone(),
    }
}

/// GPTQ or AdaRound weights from the layer's calibration statistics, in the (possibly permuted) row order of
/// `w`: the Hessian's rows and columns, or the sampled rows' columns, are permuted alike.
fn refined_weights(
    w: ndarray::ArrayView2<f32>,
    s: LinearStrategy,
    inputs: &LayerInputs,
    perm: Option<&[usize]>,
    node: &str,
) -> Result<(Array2<i8>, QParams, Vec<u8>), QuantError> {
    if s.quantizer == Quantizer::Log {
        return Err(QuantError::Unsupported(
            "GPTQ and AdaRound choose uniform integer weights; they do not apply to logarithmic levels".into(),
        ));
    }
    let missing = |what: &str| {
        QuantError::Unsupported(format!(
            "{} of layer `{node}` needs its {what} from calibration, which was not gathered",
            s.refinement.name()
        ))
    };
    let qw = match s.refinement {
        Refinement::Gptq => {
            let h = inputs.hessian.as_ref().ok_or_else(|| missing("Hessian"))?;
            let h = match perm {
                Some(p) => Array2::from_shape_fn(h.dim(), |(i, j)| h[[p[i], p[j]]]),
                None => h.clone(),
            };
            let config = strategies::ptq::GptqConfig {
                constraint: s.scale,
                ..strategies::ptq::GptqConfig::new(s.weight_bits, s.scheme, s.granularity)
            };
            strategies::ptq::gptq(w, h.view(), &config)?
        }
        Refinement::AdaRound => {
            let x = inputs.rows.as_ref().ok_or_else(|| missing("input rows"))?;
            let x = match perm {
                Some(p) => Array2::from_shape_fn((x.nrows(), p.len()), |(i, j)| x[[i, p[j]]]),
                None => x.clone(),
            };
            let params = weight_params(w, s.weight_bits, s.scheme, s.granularity, s.scale)?;
            strategies::ptq::adaround(
                w,
                x.view(),
                &params,
                &strategies::ptq::AdaRoundConfig::default(),
            )?
        }
        Refinement::Qat => {
            let scales = inputs
                .weight_scales
                .as_ref()
                .ok_or_else(|| missing("learned weight steps"))?;
            let n = w.ncols();
            if scales.len() != n || s.scheme != Scheme::Symmetric {
                return Err(QuantError::Unsupported(format!(
                    "QAT of layer `{node}` learned {} weight steps for {n} channels (symmetric per-channel weights only)",
                    scales.len()
                )));
            }
            let params = QParams {
                scales: scales.clone(),
                zero_points: vec![0; n],
                bits: s.weight_bits,
                scheme: Scheme::Symmetric,
                granularity: Granularity::PerChannel,
            };
            let values = quantize_weights(w, &params)?;
            strategies::ptq::QuantizedWeights { values, params }
        }
        Refinement::BiasCorrection | Refinement::None | Refinement::Cle => {
            return quantize_layer_weights(w, s);
        }
    };
    let stored = pack_bits(
        &qw.values.iter().copied().collect::<Vec<i8>>(),
        s.weight_bits,
    )?;
    Ok((qw.values, qw.params, stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused kernel's rules give the unfused path's parameters, for ranges of every sign and size above
    /// the scale floor.
    #[test]
    fn fused_rules_are_the_activation_params() {
        let ranges = [
            (-1.0f32, 3.0f32),
            (0.5, 2.0),
            (-2.0, -0.5),
            (-7.25, 7.25),
            (-1e-20, 3e-21),
            (-65_000.0, 12.0),
            (0.0, 1e-3),
        ];
        for (lo, hi) in ranges {
            for scheme in [Scheme::Affine, Scheme::Symmetric] {
                let p = activation_params(lo, hi, scheme, ScaleConstraint::Float);
                assert_eq!(
                    dyn_rule(scheme).qparams(lo, hi),
                    (p.scale, p.zero_point),
                    "{scheme:?} [{lo}, {hi}]"
                );
            }
        }
    }
}
