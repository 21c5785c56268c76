//! The quantized model and its executor.
//!
//! Built once per (model, strategy, kernels): weights quantized and packed, static requantization
//! parameters precomputed, then run many times. Integer arithmetic is real: u8 activations, s8 weights, s32
//! accumulation in the dispatched GEMM kernel, zero points compensated with row and column sums outside it,
//! fixed-point requantization between layers (static) or dequantization to f32 (dynamic).

use std::collections::{BTreeSet, HashMap};

use kernels::frame::conv::{Conv2dGeom, im2col};
use kernels::frame::quantize::{dequantize_u8, min_max, quantize_u8};
use kernels::frame::requant::{
    Scaler, col_sums_i8, compensate_zero_points, dequantize_acc_f32, requantize_u8, row_sums_u8,
};
use kernels::{KernelSet, PackedB};
use ndarray::{Array2, ArrayD, ArrayViewD, IxDyn};
use strategies::{ActParams, QParams, activation_params_u8, quantize_weights_i8, weight_params_i8};

use super::QuantError;
use super::calibrate::ActivationRanges;
use super::strategy::{ActMode, LinearStrategy};
use crate::exec::ops;
use crate::ir::{ConvAttrs, Graph, Node, Op, Tensor};

/// A runtime value: float, or u8 with the affine parameters that give it meaning.
#[derive(Clone, Debug)]
enum Value {
    F32(ArrayD<f32>),
    U8(ArrayD<u8>, ActParams),
    I64(ArrayD<i64>),
}

impl Value {
    fn into_f32(self) -> Result<ArrayD<f32>, QuantError> {
        match self {
            Value::F32(a) => Ok(a),
            Value::U8(q, p) => {
                let mut out = vec![0f32; q.len()];
                dequantize_u8(contiguous(&q).as_ref(), p.scale, p.zero_point, &mut out);
                Ok(ArrayD::from_shape_vec(q.raw_dim(), out).expect("same length"))
            }
            Value::I64(_) => Err(QuantError::MissingValue("an i64 value used as f32".into())),
        }
    }

    fn to_tensor(&self) -> Result<Tensor, QuantError> {
        Ok(match self {
            Value::I64(a) => Tensor::I64(a.clone()),
            other => Tensor::F32(other.clone().into_f32()?),
        })
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
        scalers: Vec<Scaler>,
        /// Bias in accumulator units (`bias / (s_in * s_w)`), so it is added before requantization.
        bias_q: Option<Vec<i32>>,
    },
    Dynamic,
    WeightOnly,
}

#[derive(Clone, Debug)]
enum LinearShape {
    /// 2-D convolution, group 1; `c_out = n`.
    Conv(ConvAttrs),
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
    /// Row-major `[k, n]`; what the serialized model stores.
    pub(crate) weights: Array2<i8>,
    pub(crate) params: QParams,
    packed: PackedB<i8>,
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
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    Linear(Box<QLinear>),
    /// An original node, run on whatever value types reach it.
    Node(Node),
}

/// A model quantized with one [`LinearStrategy`], ready to run.
pub struct QuantizedModel {
    pub(crate) strategy: LinearStrategy,
    inputs: Vec<String>,
    outputs: Vec<String>,
    steps: Vec<Step>,
    /// Constants the remaining float nodes read (reshape targets, biases of float nodes).
    pub(crate) constants: HashMap<String, Tensor>,
    kernels: KernelSet,
}

impl QuantizedModel {
    /// Quantizes `graph` with `strategy`. `ranges` must come from calibration when the strategy is static.
    pub fn build(
        graph: &Graph,
        strategy: LinearStrategy,
        ranges: Option<&ActivationRanges>,
        kernels: KernelSet,
    ) -> Result<Self, QuantError> {
        let consumers = consumer_counts(graph);
        let graph_outputs: BTreeSet<&str> = graph.outputs.iter().map(|o| o.name.as_str()).collect();
        let mut used_constants = BTreeSet::new();
        // Values that will be u8 at run time, and their parameters (static mode only).
        let mut qvals: HashMap<String, ActParams> = HashMap::new();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < graph.nodes.len() {
            let node = &graph.nodes[i];
            let Some(mut lin) = linear_from_node(graph, node, strategy, kernels)? else {
                let keeps_params = matches!(
                    node.op,
                    Op::Relu | Op::MaxPool(_) | Op::Flatten { .. } | Op::Reshape { .. }
                );
                if let Some(p) = qvals.get(&node.inputs[0]).copied().filter(|_| keeps_params) {
                    qvals.insert(node.outputs[0].clone(), p);
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
            if strategy.act == ActMode::Static {
                let ranges = ranges.ok_or_else(|| QuantError::NoRange {
                    value: lin.input.clone(),
                })?;
                let input = match qvals.get(&lin.input) {
                    Some(p) => *p,
                    None => {
                        let (lo, hi) = ranges.get(&lin.input)?;
                        activation_params_u8(lo, hi, strategy.scheme)
                    }
                };
                let (lo, hi) = ranges.get(&lin.output)?;
                let output = activation_params_u8(lo, hi, strategy.scheme);
                let scalers = lin
                    .params
                    .scales
                    .iter()
                    .map(|&sw| Scaler::new(input.scale as f64 * sw as f64 / output.scale as f64))
                    .collect();
                let bias_q = lin.bias.as_ref().map(|b| {
                    b.iter()
                        .enumerate()
                        .map(|(j, &v)| {
                            let sw =
                                lin.params.scales[if lin.params.scales.len() > 1 { j } else { 0 }];
                            let q = (v as f64 / (input.scale as f64 * sw as f64)).round_ties_even();
                            q.clamp(i32::MIN as f64, i32::MAX as f64) as i32
                        })
                        .collect()
                });
                qvals.insert(lin.output.clone(), output);
                lin.mode = LinearMode::Static {
                    input,
                    output,
                    scalers,
                    bias_q,
                };
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
        Ok(QuantizedModel {
            strategy,
            inputs: graph.inputs.iter().map(|v| v.name.clone()).collect(),
            outputs: graph.outputs.iter().map(|v| v.name.clone()).collect(),
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
                names.insert(match l.mode {
                    LinearMode::WeightOnly => self.kernels.gemm_f32_w8.name(),
                    _ => self.kernels.gemm_u8i8.name(),
                });
            }
        }
        names.into_iter().collect()
    }

    /// The quantized layers, in execution order.
    pub(crate) fn linears(&self) -> impl Iterator<Item = &QLinear> {
        self.steps.iter().filter_map(|s| match s {
            Step::Linear(l) => Some(l.as_ref()),
            Step::Node(_) => None,
        })
    }

    /// Runs the model; returns the graph outputs (as f32 / i64 tensors) in graph order.
    pub fn run(&self, inputs: &[(&str, ArrayD<f32>)]) -> Result<Vec<(String, Tensor)>, QuantError> {
        let mut values: HashMap<String, Value> = HashMap::new();
        for (name, t) in &self.constants {
            values.insert(
                name.clone(),
                match t {
                    Tensor::F32(a) => Value::F32(a.clone()),
                    Tensor::I64(a) => Value::I64(a.clone()),
                },
            );
        }
        for (name, a) in inputs {
            values.insert(name.to_string(), Value::F32(a.clone()));
        }
        for step in &self.steps {
            match step {
                Step::Linear(l) => {
                    let x = values
                        .remove(&l.input)
                        .ok_or_else(|| QuantError::MissingValue(l.input.clone()))?;
                    let y = self.run_linear(l, x)?;
                    values.insert(l.output.clone(), y);
                }
                Step::Node(node) => {
                    let y = run_node(node, &values)?;
                    values.insert(node.outputs[0].clone(), y);
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

    /// The graph input names.
    pub fn input_names(&self) -> &[String] {
        &self.inputs
    }

    fn run_linear(&self, l: &QLinear, x: Value) -> Result<Value, QuantError> {
        match &l.mode {
            LinearMode::WeightOnly => {
                let x = x.into_f32()?;
                let zps = &l.params.zero_points;
                let gemm = self.kernels.gemm_f32_w8;
                let y = run_lowered(l, x.view(), 0.0f32, |m, a, c| {
                    gemm.gemm(m, a, l.k, &l.packed, &l.params.scales, zps, c, l.n);
                    add_bias_relu(c, l.n, l.bias.as_deref(), l.relu);
                })?;
                Ok(Value::F32(y))
            }
            LinearMode::Dynamic => {
                let x = x.into_f32()?;
                let data = contiguous(&x);
                let (lo, hi) = min_max(&data);
                let p = activation_params_u8(lo, hi, self.strategy.scheme);
                let mut q = vec![0u8; data.len()];
                quantize_u8(&data, p.scale, p.zero_point, &mut q);
                let q = ArrayD::from_shape_vec(x.raw_dim(), q).expect("same length");
                let gemm = self.kernels.gemm_u8i8;
                let mut acc = Vec::new();
                let y = run_lowered(l, q.view(), p.zero_point as u8, |m, a, c: &mut [f32]| {
                    acc.resize(m * l.n, 0);
                    gemm.gemm(m, a, l.k, &l.packed, &mut acc, l.n);
                    let row_sums = row_sums_u8(a, m, l.k, l.k);
                    compensate_zero_points(
                        &mut acc,
                        m,
                        l.n,
                        l.n,
                        l.k,
                        &row_sums,
                        p.zero_point,
                        &l.col_sums,
                        &l.params.zero_points,
                    );
                    dequantize_acc_f32(
                        &acc,
                        m,
                        l.n,
                        l.n,
                        p.scale,
                        &l.params.scales,
                        l.bias.as_deref(),
                        l.relu,
                        c,
                    );
                })?;
                Ok(Value::F32(y))
            }
            LinearMode::Static {
                input,
                output,
                scalers,
                bias_q,
            } => {
                let q = match x {
                    Value::U8(q, p) if p == *input => q,
                    other => {
                        let f = other.into_f32()?;
                        let mut q = vec![0u8; f.len()];
                        quantize_u8(&contiguous(&f), input.scale, input.zero_point, &mut q);
                        ArrayD::from_shape_vec(f.raw_dim(), q).expect("same length")
                    }
                };
                let gemm = self.kernels.gemm_u8i8;
                let mut acc = Vec::new();
                let y = run_lowered(l, q.view(), input.zero_point as u8, |m, a, c: &mut [u8]| {
                    acc.resize(m * l.n, 0);
                    gemm.gemm(m, a, l.k, &l.packed, &mut acc, l.n);
                    let row_sums = row_sums_u8(a, m, l.k, l.k);
                    compensate_zero_points(
                        &mut acc,
                        m,
                        l.n,
                        l.n,
                        l.k,
                        &row_sums,
                        input.zero_point,
                        &l.col_sums,
                        &l.params.zero_points,
                    );
                    requantize_u8(
                        &acc,
                        m,
                        l.n,
                        l.n,
                        bias_q.as_deref(),
                        scalers,
                        output.zero_point,
                        l.relu,
                        c,
                    );
                })?;
                Ok(Value::U8(y, *output))
            }
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

/// Lowers a linear layer to GEMMs: per image through im2col for Conv (output written back as NCHW), or one
/// GEMM over all leading dimensions for Dense. `gemm(m, a, c)` computes `c[m, n]` from `a[m, k]`.
fn run_lowered<T, U, F>(
    l: &QLinear,
    x: ArrayViewD<T>,
    pad: T,
    mut gemm: F,
) -> Result<ArrayD<U>, QuantError>
where
    T: Copy + Default,
    U: Copy + Default,
    F: FnMut(usize, &[T], &mut [U]),
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
            gemm(m, data, &mut out);
            let mut out_shape = shape.clone();
            *out_shape.last_mut().expect("non-empty") = l.n;
            Ok(ArrayD::from_shape_vec(IxDyn(&out_shape), out).expect("shape matches"))
        }
        LinearShape::Conv(attrs) => {
            if shape.len() != 4 {
                return Err(bad_shape("is not NCHW"));
            }
            let (batch, c_in, h, w) = (shape[0], shape[1], shape[2], shape[3]);
            let g = Conv2dGeom {
                c_in,
                h,
                w,
                kh: attrs.kernel_shape[0],
                kw: attrs.kernel_shape[1],
                stride_h: attrs.strides[0],
                stride_w: attrs.strides[1],
                pad_top: attrs.pads[0],
                pad_left: attrs.pads[1],
                pad_bottom: attrs.pads[2],
                pad_right: attrs.pads[3],
                dil_h: attrs.dilations[0],
                dil_w: attrs.dilations[1],
            };
            if g.k() != l.k {
                return Err(bad_shape(&format!(
                    "has {c_in} channels; the weights expect {}",
                    l.k / (g.kh * g.kw)
                )));
            }
            let (oh, ow) = (g.out_h(), g.out_w());
            let m = oh * ow;
            let mut cols = vec![T::default(); m * l.k];
            let mut tile = vec![U::default(); m * l.n];
            let mut out = vec![U::default(); batch * l.n * m];
            let image = c_in * h * w;
            for b in 0..batch {
                im2col(&data[b * image..(b + 1) * image], &g, pad, &mut cols);
                gemm(m, &cols, &mut tile);
                // [m, n] -> [n, m] (NCHW).
                let dst = &mut out[b * l.n * m..(b + 1) * l.n * m];
                for (p, row) in tile.chunks_exact(l.n).enumerate() {
                    for (c, &v) in row.iter().enumerate() {
                        dst[c * m + p] = v;
                    }
                }
            }
            Ok(ArrayD::from_shape_vec(IxDyn(&[batch, l.n, oh, ow]), out).expect("shape matches"))
        }
    }
}

/// Runs an unquantized node. Shape-only ops and MaxPool / Relu keep u8 values in u8.
fn run_node(node: &Node, values: &HashMap<String, Value>) -> Result<Value, QuantError> {
    let get = |i: usize| {
        values
            .get(&node.inputs[i])
            .ok_or_else(|| QuantError::MissingValue(node.inputs[i].clone()))
    };
    let node_err = |message: String| QuantError::Node {
        node: node.name.clone(),
        op: node.op.op_type(),
        message,
    };
    let x = get(0)?;
    Ok(match (&node.op, x) {
        (Op::Relu, Value::F32(a)) => Value::F32(a.mapv(|v| v.max(0.0))),
        (Op::Relu, Value::U8(q, p)) => {
            let zp = p.zero_point.clamp(0, 255) as u8;
            Value::U8(q.mapv(|v| v.max(zp)), *p)
        }
        (Op::MaxPool(attrs), Value::F32(a)) => {
            Value::F32(ops::max_pool2d(a.view(), attrs).map_err(|e| node_err(e.to_string()))?)
        }
        (Op::MaxPool(attrs), Value::U8(q, p)) => Value::U8(
            ops::max_pool2d(q.view(), attrs).map_err(|e| node_err(e.to_string()))?,
            *p,
        ),
        (Op::Flatten { axis }, v) => {
            let shape =
                ops::flatten_shape(value_shape(v), *axis).map_err(|e| node_err(e.to_string()))?;
            reshape_value(v, &shape).map_err(node_err)?
        }
        (Op::Reshape { allowzero }, v) => {
            let target = match get(1)? {
                Value::I64(t) => t.iter().copied().collect::<Vec<_>>(),
                _ => return Err(node_err("the shape input is not an i64 tensor".into())),
            };
            let shape = ops::reshape_shape(value_shape(v), &target, *allowzero)
                .map_err(|e| node_err(e.to_string()))?;
            reshape_value(v, &shape).map_err(node_err)?
        }
        (Op::Add, _) => {
            let a = x.clone().into_f32()?;
            let b = get(1)?.clone().into_f32()?;
            Value::F32(ops::broadcast_add(a.view(), b.view()).map_err(|e| node_err(e.to_string()))?)
        }
        (op, _) => {
            return Err(node_err(format!(
                "{} cannot run in a quantized model yet (only Conv with group 1, Gemm and MatMul with constant weights are quantized)",
                op.op_type()
            )));
        }
    })
}

fn value_shape(v: &Value) -> &[usize] {
    match v {
        Value::F32(a) => a.shape(),
        Value::U8(a, _) => a.shape(),
        Value::I64(a) => a.shape(),
    }
}

fn reshape_value(v: &Value, shape: &[usize]) -> Result<Value, String> {
    fn re<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
        ArrayD::from_shape_vec(IxDyn(shape), contiguous(a).into_owned())
            .map_err(|e| format!("cannot reshape {:?} to {shape:?}: {e}", a.shape()))
    }
    Ok(match v {
        Value::F32(a) => Value::F32(re(a, shape)?),
        Value::U8(a, p) => Value::U8(re(a, shape)?, *p),
        Value::I64(a) => Value::I64(re(a, shape)?),
    })
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

/// Builds the quantized layer for `node` if the strategy quantizes it; `None` leaves it in float.
fn linear_from_node(
    graph: &Graph,
    node: &Node,
    strategy: LinearStrategy,
    kernels: KernelSet,
) -> Result<Option<QLinear>, QuantError> {
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
        Op::Conv(attrs) if attrs.group == 1 => {
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
    let params = weight_params_i8(w_kn.view(), strategy.scheme, strategy.granularity)?;
    let weights = quantize_weights_i8(w_kn.view(), &params);
    let (k, n) = weights.dim();
    let flat: Vec<i8> = weights.iter().copied().collect();
    let packed = match strategy.act {
        ActMode::WeightOnly => kernels.gemm_f32_w8.pack_b(&flat, k, n),
        _ => kernels.gemm_u8i8.pack_b(&flat, k, n),
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
        weights,
        params,
        packed,
        bias,
        relu: false,
        mode: match strategy.act {
            ActMode::WeightOnly => LinearMode::WeightOnly,
            // Static parameters are filled in by the caller, which knows the calibrated ranges.
            _ => LinearMode::Dynamic,
        },
    }))
}
