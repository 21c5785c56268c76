//! [`TrainableGraph`]: an [`ir::Graph`] whose f32 initializers are parameters, with a forward pass that keeps
//! what the backward pass needs (a [`Tape`]) and a backward pass that returns the gradient of every parameter
//! (and, under fake quantization, of every step size).
//!
//! Scope: one runtime input and one output (the logits); Conv (group 1), Gemm, MatMul (2-D B), Relu, MaxPool,
//! Flatten, Reshape (constant target) and Add. Every f32 initializer is a parameter; i64 initializers
//! (reshape targets) are constants. Fake quantization ([`super::quant`]) applies to the weight input (an
//! initializer) and the activation input (a runtime value) of each Conv / Gemm / MatMul.

use std::collections::{BTreeMap, HashMap};

use kernels::KernelSet;
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::TrainError;
use super::ops;
use super::quant::{ActQuant, MIN_STEP, QuantConfig, WeightQuant};
use super::real::{Linalg, Real};
use crate::exec::ops::{OpError, flatten_shape, reshape_shape};
use crate::ir::{self, Dim, Op, Tensor};

/// Where a node input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    /// A runtime value (the graph input or a node output), by slot.
    Value(usize),
    /// A trainable parameter (an f32 initializer), by index.
    Param(usize),
    /// A constant i64 tensor, by index.
    Const(usize),
}

#[derive(Clone, Debug)]
struct TNode {
    name: String,
    op: Op,
    inputs: Vec<Option<Src>>,
    output: usize,
}

/// What a trainable tensor is, for the optimizer (weight decay applies to weights only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A parameter of rank >= 2.
    Weight,
    /// A parameter of rank <= 1.
    Bias,
    /// Quantizer step sizes.
    Step,
}

/// A trainable parameter: an f32 initializer of the graph.
#[derive(Clone, Debug)]
pub struct Param<T> {
    pub name: String,
    pub value: ArrayD<T>,
}

/// Fake quantizers attached to a graph.
#[derive(Clone, Debug)]
pub(crate) struct QuantState<T> {
    pub config: QuantConfig,
    pub weights: Vec<WeightQuant<T>>,
    pub acts: Vec<ActQuant<T>>,
    /// Per parameter: its weight quantizer.
    pub weight_of: Vec<Option<usize>>,
    /// Per value slot: its activation quantizer.
    pub act_of: Vec<Option<usize>>,
}

/// What one forward pass kept for the backward pass.
#[derive(Debug)]
pub struct Tape<T> {
    values: Vec<Option<ArrayD<T>>>,
    /// Fake-quantized values (slots with an activation quantizer).
    qvalues: Vec<Option<ArrayD<T>>>,
    /// Fake-quantized weights (parameters with a weight quantizer).
    qweights: Vec<Option<ArrayD<T>>>,
    /// MaxPool winners, per node.
    argmax: Vec<Option<Vec<u32>>>,
    batch: usize,
    output: usize,
}

impl<T> Tape<T> {
    /// The graph output (logits).
    pub fn output(&self) -> &ArrayD<T> {
        self.values[self.output]
            .as_ref()
            .expect("forward computed the output")
    }

    /// The runtime value in `slot` (see [`TrainableGraph::value_name`]), if this pass computed it.
    pub fn value(&self, slot: usize) -> Option<&ArrayD<T>> {
        self.values.get(slot).and_then(Option::as_ref)
    }
}

/// Gradients from one backward pass, in the graph's parameter and quantizer order.
#[derive(Clone, Debug)]
pub struct Grads<T> {
    /// One per parameter ([`TrainableGraph::params`]).
    pub params: Vec<ArrayD<T>>,
    /// One vector per weight quantizer (per channel).
    pub weight_steps: Vec<Vec<T>>,
    /// One per activation quantizer.
    pub act_steps: Vec<T>,
}

/// A graph set up for training; see the module docs.
#[derive(Clone, Debug)]
pub struct TrainableGraph<T: Real = f32> {
    template: ir::Graph,
    lin: Linalg,
    slot_names: Vec<String>,
    input: usize,
    output: usize,
    nodes: Vec<TNode>,
    params: Vec<Param<T>>,
    consts: Vec<Vec<i64>>,
    pub(crate) quant: Option<QuantState<T>>,
}

/// Which axis of a weight holds the output channels, for the node that reads it at `slot`.
fn weight_axis(op: &Op, slot: usize) -> Option<usize> {
    match (op, slot) {
        (Op::Conv(_), 1) => Some(0),
        (Op::Gemm(a), 1) => Some(if a.trans_b { 0 } else { 1 }),
        (Op::MatMul, 1) => Some(1),
        _ => None,
    }
}

fn is_linear(op: &Op) -> bool {
    matches!(op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul)
}

impl<T: Real> TrainableGraph<T> {
    /// Takes the graph's f32 initializers as parameters (converted to `T`); checks that every op is
    /// trainable and the graph has one input and one output.
    pub fn new(graph: &ir::Graph, kernels: &KernelSet) -> Result<Self, TrainError> {
        let unsupported = |node: &ir::Node, reason: String| TrainError::Unsupported {
            node: node.name.clone(),
            op: node.op.op_type(),
            reason,
        };
        let [input] = graph.inputs.as_slice() else {
            return Err(TrainError::Graph(format!(
                "training needs exactly one graph input, {} has {}",
                graph.name,
                graph.inputs.len()
            )));
        };
        let [output] = graph.outputs.as_slice() else {
            return Err(TrainError::Graph(format!(
                "training needs exactly one graph output (the logits), {} has {}",
                graph.name,
                graph.outputs.len()
            )));
        };
        let mut params = Vec::new();
        let mut consts = Vec::new();
        let mut init_src = HashMap::new();
        for (name, t) in &graph.initializers {
            let src = match t {
                Tensor::F32(a) => {
                    params.push(Param {
                        name: name.clone(),
                        value: a.as_standard_layout().mapv(T::from_f32),
                    });
                    Src::Param(params.len() - 1)
                }
                Tensor::I64(a) => {
                    consts.push(a.iter().copied().collect());
                    Src::Const(consts.len() - 1)
                }
            };
            init_src.insert(name.as_str(), src);
        }
        let mut slots: HashMap<&str, usize> = HashMap::new();
        let mut slot_names = vec![input.name.clone()];
        slots.insert(input.name.as_str(), 0);
        let mut nodes = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let arity = match node.op {
                Op::Conv(_) | Op::Gemm(_) => 2..=3,
                Op::MatMul | Op::Add => 2..=2,
                Op::Reshape { .. } => 2..=2,
                Op::Relu | Op::MaxPool(_) | Op::Flatten { .. } => 1..=1,
                ref other => {
                    return Err(unsupported(
                        node,
                        format!("{} cannot be trained", other.op_type()),
                    ));
                }
            };
            if !arity.contains(&node.inputs.len()) || node.outputs.len() != 1 {
                return Err(unsupported(
                    node,
                    format!(
                        "expected {arity:?} inputs and one output, got inputs {:?} outputs {:?}",
                        node.inputs, node.outputs
                    ),
                ));
            }
            let mut inputs = Vec::with_capacity(node.inputs.len());
            for (slot, name) in node.inputs.iter().enumerate() {
                if name.is_empty() {
                    inputs.push(None);
                    continue;
                }
                let src = match (slots.get(name.as_str()), init_src.get(name.as_str())) {
                    (Some(&v), _) => Src::Value(v),
                    (None, Some(&s)) => s,
                    (None, None) => {
                        return Err(unsupported(
                            node,
                            format!(
                                "input \"{name}\" is not the graph input, an initializer or an earlier output"
                            ),
                        ));
                    }
                };
                let ok = match (&node.op, slot, src) {
                    (Op::Reshape { .. }, 1, s) => matches!(s, Src::Const(_)),
                    (_, _, Src::Const(_)) => false,
                    _ => true,
                };
                if !ok {
                    return Err(unsupported(
                        node,
                        format!(
                            "input \"{name}\" must be {}",
                            if matches!(node.op, Op::Reshape { .. }) {
                                "a constant i64 shape"
                            } else {
                                "f32"
                            }
                        ),
                    ));
                }
                inputs.push(Some(src));
            }
            if let Op::Conv(a) = &node.op
                && a.group != 1
            {
                return Err(unsupported(
                    node,
                    format!("group {} (training supports group 1)", a.group),
                ));
            }
            let out = &node.outputs[0];
            if slots.contains_key(out.as_str()) || init_src.contains_key(out.as_str()) {
                return Err(unsupported(
                    node,
                    format!("output \"{out}\" is defined twice"),
                ));
            }
            slot_names.push(out.clone());
            slots.insert(out.as_str(), slot_names.len() - 1);
            nodes.push(TNode {
                name: node.name.clone(),
                op: node.op.clone(),
                inputs,
                output: slot_names.len() - 1,
            });
        }
        let output = *slots.get(output.name.as_str()).ok_or_else(|| {
            TrainError::Graph(format!(
                "graph output \"{}\" is not computed by any node",
                output.name
            ))
        })?;
        Ok(TrainableGraph {
            template: graph.clone(),
            lin: Linalg {
                gemm_f32: kernels.gemm_f32,
            },
            slot_names,
            input: 0,
            output,
            nodes,
            params,
            consts,
            quant: None,
        })
    }

    pub fn params(&self) -> &[Param<T>] {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut [Param<T>] {
        &mut self.params
    }

    /// Name of the runtime value in `slot` (slot 0 is the graph input).
    pub fn value_name(&self, slot: usize) -> &str {
        &self.slot_names[slot]
    }

    pub fn value_count(&self) -> usize {
        self.slot_names.len()
    }

    /// The graph with the current parameters written back as f32 initializers.
    pub fn to_graph(&self) -> ir::Graph {
        let mut g = self.template.clone();
        for p in &self.params {
            g.initializers
                .insert(p.name.clone(), Tensor::F32(p.value.mapv(T::to_f32)));
        }
        g
    }

    /// The graph's input shape with `batch` as dimension 0, when every other dimension is fixed.
    pub fn input_shape(&self, batch: usize) -> Option<Vec<usize>> {
        let dims = &self.template.inputs[0].shape;
        dims.iter()
            .enumerate()
            .map(|(i, d)| match d {
                _ if i == 0 => Some(batch),
                Dim::Fixed(n) => Some(*n),
                Dim::Symbolic(_) => None,
            })
            .collect()
    }

    /// Whether node input `slot` reads the fake-quantized version of its source.
    fn quantized_input(&self, node: &TNode, slot: usize) -> bool {
        let (Some(q), Some(Some(src))) = (&self.quant, node.inputs.get(slot)) else {
            return false;
        };
        if !is_linear(&node.op) {
            return false;
        }
        match (slot, *src) {
            (0, Src::Value(v)) => q.act_of[v].is_some(),
            (1, Src::Param(p)) => q.weight_of[p].is_some(),
            _ => false,
        }
    }

    fn view<'a>(
        &'a self,
        tape: &'a Tape<T>,
        node: &TNode,
        slot: usize,
    ) -> Result<Option<ArrayViewD<'a, T>>, TrainError> {
        let Some(Some(src)) = node.inputs.get(slot) else {
            return Ok(None);
        };
        let quantized = self.quantized_input(node, slot);
        let a = match *src {
            Src::Value(v) if quantized => tape.qvalues[v].as_ref(),
            Src::Value(v) => tape.values[v].as_ref(),
            Src::Param(p) if quantized => tape.qweights[p].as_ref(),
            Src::Param(p) => Some(&self.params[p].value),
            Src::Const(_) => None,
        };
        a.map(|a| Some(a.view())).ok_or_else(|| {
            TrainError::Graph(format!(
                "node \"{}\": input {slot} was not computed",
                node.name
            ))
        })
    }

    /// Runs the graph on a batch `x`, keeping every value for [`TrainableGraph::backward`].
    pub fn forward(&self, x: ArrayD<T>) -> Result<Tape<T>, TrainError> {
        if let Some(shape) = self.input_shape(x.shape().first().copied().unwrap_or(0))
            && shape != x.shape()
        {
            return Err(TrainError::Graph(format!(
                "input \"{}\" has shape {:?}, the graph declares {}",
                self.slot_names[0],
                x.shape(),
                crate::exec::format_dims(&self.template.inputs[0].shape)
            )));
        }
        let n = self.slot_names.len();
        let batch = x.shape().first().copied().unwrap_or(1);
        let mut tape = Tape {
            values: vec![None; n],
            qvalues: vec![None; n],
            qweights: vec![None; self.params.len()],
            argmax: vec![None; self.nodes.len()],
            batch,
            output: self.output,
        };
        if let Some(q) = &self.quant {
            for wq in &q.weights {
                tape.qweights[wq.param] = Some(wq.apply(&self.params[wq.param].value));
            }
        }
        self.store(&mut tape, self.input, x);
        for (i, node) in self.nodes.iter().enumerate() {
            let err = |e: OpError| TrainError::op(&node.name, &node.op, e);
            let input = |slot| self.view(&tape, node, slot);
            let x0 = input(0)?.expect("every op has input 0");
            let out = match &node.op {
                Op::Conv(a) => {
                    let w = input(1)?.expect("arity checked");
                    ops::conv2d(&self.lin, x0, w, input(2)?, a).map_err(err)?
                }
                Op::Gemm(a) => {
                    let b = input(1)?.expect("arity checked");
                    ops::gemm(&self.lin, x0, b, input(2)?, a).map_err(err)?
                }
                Op::MatMul => {
                    let b = input(1)?.expect("arity checked");
                    ops::matmul(&self.lin, x0, b).map_err(err)?
                }
                Op::Relu => x0.mapv(|v| if v < T::ZERO { T::ZERO } else { v }),
                Op::MaxPool(a) => {
                    let (y, arg) = ops::max_pool(x0, a).map_err(err)?;
                    tape.argmax[i] = Some(arg);
                    y
                }
                Op::Flatten { axis } => {
                    let shape = flatten_shape(x0.shape(), *axis).map_err(err)?;
                    reshaped(x0, &shape)
                }
                Op::Reshape { allowzero } => {
                    let Some(Src::Const(c)) = node.inputs[1] else {
                        unreachable!("checked at construction")
                    };
                    let shape =
                        reshape_shape(x0.shape(), &self.consts[c], *allowzero).map_err(err)?;
                    reshaped(x0, &shape)
                }
                Op::Add => {
                    let b = input(1)?.expect("arity checked");
                    crate::exec::ops::broadcast_shapes(x0.shape(), b.shape()).map_err(err)?;
                    &x0 + &b
                }
                _ => unreachable!("rejected at construction"),
            };
            self.store(&mut tape, node.output, out);
        }
        Ok(tape)
    }

    fn store(&self, tape: &mut Tape<T>, slot: usize, value: ArrayD<T>) {
        if let Some(q) = &self.quant
            && let Some(a) = q.act_of[slot]
        {
            tape.qvalues[slot] = Some(q.acts[a].apply(&value));
        }
        tape.values[slot] = Some(value);
    }

    /// The logits of a batch (a forward pass that keeps nothing else).
    pub fn predict(&self, x: ArrayD<T>) -> Result<ArrayD<T>, TrainError> {
        let mut tape = self.forward(x)?;
        Ok(tape.values[self.output].take().expect("output computed"))
    }

    /// Gradients of every parameter (and step size) given the gradient `d_output` of the loss with respect
    /// to the graph output of `tape`.
    pub fn backward(&self, tape: &Tape<T>, d_output: ArrayD<T>) -> Result<Grads<T>, TrainError> {
        let n = self.slot_names.len();
        let mut grads: Vec<Option<ArrayD<T>>> = vec![None; n];
        let mut qgrads: Vec<Option<ArrayD<T>>> = vec![None; n];
        let mut pgrads: Vec<Option<ArrayD<T>>> = vec![None; self.params.len()];
        let mut qwgrads: Vec<Option<ArrayD<T>>> = vec![None; self.params.len()];
        let (n_w, n_a) = self
            .quant
            .as_ref()
            .map_or((0, 0), |q| (q.weights.len(), q.acts.len()));
        let mut act_steps = vec![T::ZERO; n_a];
        if d_output.shape() != tape.output().shape() {
            return Err(TrainError::Graph(format!(
                "output gradient {:?} does not match the output {:?}",
                d_output.shape(),
                tape.output().shape()
            )));
        }
        grads[self.output] = Some(d_output);

        // Gradients reach every value that is not the graph input, and the graph input when its quantizer's
        // step needs them.
        let input_needs_grad = self
            .quant
            .as_ref()
            .is_some_and(|q| q.act_of[self.input].is_some() && q.config.learn_steps);
        let needs = |src: &Option<Src>| match src {
            Some(Src::Value(v)) => *v != self.input || input_needs_grad,
            Some(Src::Param(_)) => true,
            _ => false,
        };

        for (i, node) in self.nodes.iter().enumerate().rev() {
            self.finish_value(tape, node.output, &mut grads, &mut qgrads, &mut act_steps);
            let Some(dy) = grads[node.output].take() else {
                continue;
            };
            let err = |e: OpError| TrainError::op(&node.name, &node.op, e);
            let input = |slot| self.view(tape, node, slot);
            let x0 = input(0)?.expect("every op has input 0");
            let mut route = |slot: usize, g: ArrayD<T>| {
                let quantized = self.quantized_input(node, slot);
                let target = match node.inputs[slot] {
                    Some(Src::Value(v)) if quantized => &mut qgrads[v],
                    Some(Src::Value(v)) => &mut grads[v],
                    Some(Src::Param(p)) if quantized => &mut qwgrads[p],
                    Some(Src::Param(p)) => &mut pgrads[p],
                    _ => return,
                };
                accumulate(target, g);
            };
            match &node.op {
                Op::Conv(a) => {
                    let w = input(1)?.expect("arity checked");
                    let g = ops::conv2d_backward(
                        &self.lin,
                        x0,
                        w,
                        dy.view(),
                        a,
                        needs(&node.inputs[0]),
                    )
                    .map_err(err)?;
                    if let Some(dx) = g.dx {
                        route(0, dx);
                    }
                    route(1, g.dw);
                    if node.inputs.get(2).is_some_and(Option::is_some) {
                        let b_shape = input(2)?.expect("present").raw_dim();
                        route(
                            2,
                            ArrayD::from_shape_vec(b_shape, g.db)
                                .map_err(|e| err(OpError::Shape(e.to_string())))?,
                        );
                    }
                }
                Op::Gemm(a) => {
                    let b = input(1)?.expect("arity checked");
                    let c = input(2)?;
                    let need = [
                        needs(&node.inputs[0]),
                        needs(&node.inputs[1]),
                        node.inputs.get(2).is_some_and(needs),
                    ];
                    let (da, db, dc) = ops::gemm_backward(
                        &self.lin,
                        x0,
                        b,
                        c.as_ref().map(|c| c.shape()),
                        dy.view(),
                        a,
                        need,
                    )
                    .map_err(err)?;
                    for (slot, g) in [(0, da), (1, db), (2, dc)] {
                        if let Some(g) = g {
                            route(slot, g);
                        }
                    }
                }
                Op::MatMul => {
                    let b = input(1)?.expect("arity checked");
                    let need = [needs(&node.inputs[0]), needs(&node.inputs[1])];
                    let (da, db) =
                        ops::matmul_backward(&self.lin, x0, b, dy.view(), need).map_err(err)?;
                    for (slot, g) in [(0, da), (1, db)] {
                        if let Some(g) = g {
                            route(slot, g);
                        }
                    }
                }
                Op::Relu => {
                    let y = tape.values[node.output].as_ref().expect("forward kept it");
                    route(0, ops::relu_backward(y.view(), dy));
                }
                Op::MaxPool(_) => {
                    let arg = tape.argmax[i].as_ref().expect("forward kept it");
                    route(0, ops::max_pool_backward(x0.shape(), arg, dy.view()));
                }
                Op::Flatten { .. } | Op::Reshape { .. } => {
                    if needs(&node.inputs[0]) {
                        route(0, reshaped(dy.view(), x0.shape()));
                    }
                }
                Op::Add => {
                    let b = input(1)?.expect("arity checked");
                    for (slot, shape) in [(0, x0.shape()), (1, b.shape())] {
                        if needs(&node.inputs[slot]) {
                            route(slot, ops::reduce_to_shape(dy.view(), shape).map_err(err)?);
                        }
                    }
                }
                _ => unreachable!("rejected at construction"),
            }
        }
        self.finish_value(tape, self.input, &mut grads, &mut qgrads, &mut act_steps);

        let mut weight_steps = Vec::with_capacity(n_w);
        if let Some(q) = &self.quant {
            for wq in &q.weights {
                let w = &self.params[wq.param].value;
                let dw = pgrads[wq.param].get_or_insert_with(|| ArrayD::zeros(w.raw_dim()));
                let steps = match qwgrads[wq.param].take() {
                    Some(g) => wq.backward(w, &g, dw),
                    None => vec![T::ZERO; wq.steps.len()],
                };
                weight_steps.push(steps);
            }
        }
        let params = pgrads
            .into_iter()
            .zip(&self.params)
            .map(|(g, p)| g.unwrap_or_else(|| ArrayD::zeros(p.value.raw_dim())))
            .collect();
        Ok(Grads {
            params,
            weight_steps,
            act_steps,
        })
    }

    /// Turns the gradient of a value's fake-quantized version into the value's own gradient (straight
    /// through) and its quantizer's step gradient.
    fn finish_value(
        &self,
        tape: &Tape<T>,
        slot: usize,
        grads: &mut [Option<ArrayD<T>>],
        qgrads: &mut [Option<ArrayD<T>>],
        act_steps: &mut [T],
    ) {
        let (Some(q), Some(gq)) = (&self.quant, qgrads[slot].take()) else {
            return;
        };
        let a = q.act_of[slot].expect("only quantized values get such gradients");
        let x = tape.values[slot].as_ref().expect("forward kept it");
        let dx = grads[slot].get_or_insert_with(|| ArrayD::zeros(x.raw_dim()));
        act_steps[a] += q.acts[a].backward(x, &gq, dx, tape.batch);
    }

    // -----------------------------------------------------------------------------------------------------
    // Fake quantization

    /// Runs the model over `batches` (fake-quantized when quantizers are attached) and returns the observed
    /// `(min, max)` of every runtime value, by slot (`None` for values never seen).
    pub fn observe_ranges<I>(&self, batches: I) -> Result<Vec<Option<(f32, f32)>>, TrainError>
    where
        I: IntoIterator<Item = ArrayD<T>>,
    {
        let mut ranges: Vec<Option<(f32, f32)>> = vec![None; self.slot_names.len()];
        for x in batches {
            let tape = self.forward(x)?;
            for (r, v) in ranges.iter_mut().zip(&tape.values) {
                let Some(v) = v else { continue };
                let (lo, hi) = v
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                        let x = x.to_f32();
                        (lo.min(x), hi.max(x))
                    });
                if lo <= hi {
                    *r = Some(r.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
                }
            }
        }
        Ok(ranges)
    }

    /// Attaches fake quantizers: a per-channel weight quantizer on the weight of every Conv / Gemm / MatMul,
    /// and (when configured) an activation quantizer on each of their runtime inputs, with its range
    /// calibrated on `calibration` batches by the float model.
    pub fn attach_quant<I>(&mut self, config: QuantConfig, calibration: I) -> Result<(), TrainError>
    where
        I: IntoIterator<Item = ArrayD<T>>,
    {
        if !(2..=8).contains(&config.weight_bits) {
            return Err(TrainError::Config(format!(
                "weight bits must be 2..=8, got {}",
                config.weight_bits
            )));
        }
        self.quant = None;
        let ranges = if config.quantize_activations {
            self.observe_ranges(calibration)?
        } else {
            vec![None; self.slot_names.len()]
        };
        let mut state = QuantState {
            config,
            weights: Vec::new(),
            acts: Vec::new(),
            weight_of: vec![None; self.params.len()],
            act_of: vec![None; self.slot_names.len()],
        };
        for node in &self.nodes {
            if !is_linear(&node.op) {
                continue;
            }
            if let Some(Src::Param(p)) = node.inputs[1] {
                let axis = weight_axis(&node.op, 1).expect("linear op weight");
                match state.weight_of[p] {
                    Some(existing) if state.weights[existing].axis != axis => {
                        return Err(TrainError::Unsupported {
                            node: node.name.clone(),
                            op: node.op.op_type(),
                            reason: format!(
                                "weight \"{}\" is shared with a layer that reads its channels along another axis",
                                self.params[p].name
                            ),
                        });
                    }
                    Some(_) => {}
                    None => {
                        let w = &self.params[p].value;
                        if w.ndim() <= axis {
                            return Err(TrainError::op(
                                &node.name,
                                &node.op,
                                OpError::Shape(format!(
                                    "weight \"{}\" has shape {:?}",
                                    self.params[p].name,
                                    w.shape()
                                )),
                            ));
                        }
                        state.weight_of[p] = Some(state.weights.len());
                        state.weights.push(WeightQuant::new(
                            p,
                            w,
                            axis,
                            config.weight_bits,
                            config.weight_init,
                        ));
                    }
                }
            }
            if config.quantize_activations
                && let Some(Src::Value(v)) = node.inputs[0]
                && state.act_of[v].is_none()
            {
                let (lo, hi) = ranges[v].ok_or_else(|| {
                    TrainError::Config(format!(
                        "no calibration data reached \"{}\" (give at least one calibration batch)",
                        self.slot_names[v]
                    ))
                })?;
                state.act_of[v] = Some(state.acts.len());
                state.acts.push(ActQuant::from_range(v, lo, hi));
            }
        }
        self.quant = Some(state);
        Ok(())
    }

    /// Attaches fake quantizers with given steps: `weight_scales` per weight initializer (one per output
    /// channel) and `act_ranges` per value (as [`super::QatResult`] holds them). Every Conv / Gemm / MatMul
    /// weight needs scales; an activation input without a range stays unquantized.
    pub fn attach_quant_with(
        &mut self,
        weight_bits: u32,
        weight_scales: &BTreeMap<String, Vec<f32>>,
        act_ranges: &BTreeMap<String, (f32, f32)>,
    ) -> Result<(), TrainError> {
        let config = QuantConfig {
            weight_bits,
            quantize_activations: !act_ranges.is_empty(),
            ..QuantConfig::default()
        };
        // Start from quantizers at the right places, then overwrite their steps.
        let calibration = std::iter::empty();
        self.attach_quant(
            QuantConfig {
                quantize_activations: false,
                ..config
            },
            calibration,
        )?;
        let mut state = self.quant.take().expect("just attached");
        state.config = config;
        for wq in &mut state.weights {
            let name = &self.params[wq.param].name;
            let scales = weight_scales
                .get(name)
                .ok_or_else(|| TrainError::Config(format!("no weight scales for \"{name}\"")))?;
            if scales.len() != wq.steps.len() {
                return Err(TrainError::Config(format!(
                    "\"{name}\": {} scales for {} output channels",
                    scales.len(),
                    wq.steps.len()
                )));
            }
            wq.steps = scales.iter().map(|&s| T::from_f32(s)).collect();
        }
        for node in &self.nodes {
            if let (true, Some(Src::Value(v))) = (is_linear(&node.op), node.inputs[0])
                && let Some(&(lo, hi)) = act_ranges.get(&self.slot_names[v])
                && state.act_of[v].is_none()
            {
                state.act_of[v] = Some(state.acts.len());
                state.acts.push(ActQuant::from_range(v, lo, hi));
            }
        }
        self.quant = Some(state);
        Ok(())
    }

    /// Removes fake quantization.
    pub fn detach_quant(&mut self) {
        self.quant = None;
    }

    /// Calls `update(index, values, gradient, kind)` for every trainable tensor: the parameters (indices
    /// `0..params`), then each weight quantizer's steps, then all activation steps as one vector (only when
    /// steps are learned). Steps are kept positive afterwards.
    pub(crate) fn apply_update(
        &mut self,
        grads: &Grads<T>,
        mut update: impl FnMut(usize, &mut [T], &[T], ParamKind),
    ) {
        for (i, (p, g)) in self.params.iter_mut().zip(&grads.params).enumerate() {
            if !p.value.is_standard_layout() {
                p.value = p.value.as_standard_layout().into_owned();
            }
            let kind = if p.value.ndim() >= 2 {
                ParamKind::Weight
            } else {
                ParamKind::Bias
            };
            let v = p
                .value
                .as_slice_mut()
                .expect("parameters are standard layout");
            let g = g.as_standard_layout();
            update(i, v, g.as_slice().expect("standard"), kind);
        }
        let base = self.params.len();
        if let Some(q) = &mut self.quant
            && q.config.learn_steps
        {
            let min = T::from_f64(MIN_STEP);
            for (j, (wq, g)) in q.weights.iter_mut().zip(&grads.weight_steps).enumerate() {
                update(base + j, &mut wq.steps, g, ParamKind::Step);
                wq.steps.iter_mut().for_each(|s| *s = s.max(min));
            }
            let mut steps: Vec<T> = q.acts.iter().map(|a| a.step).collect();
            update(
                base + q.weights.len(),
                &mut steps,
                &grads.act_steps,
                ParamKind::Step,
            );
            for (a, s) in q.acts.iter_mut().zip(steps) {
                a.step = s.max(min);
            }
        }
    }

    /// The weight step sizes (per initializer, per output channel) of the attached quantizers.
    pub fn weight_scales(&self) -> BTreeMap<String, Vec<f32>> {
        self.quant
            .iter()
            .flat_map(|q| &q.weights)
            .map(|wq| {
                (
                    self.params[wq.param].name.clone(),
                    wq.steps.iter().map(|s| s.to_f32()).collect(),
                )
            })
            .collect()
    }

    /// The ranges `(-z * s, (255 - z) * s)` of the attached activation quantizers, by value name, extended
    /// backwards through MaxPool / Flatten / Reshape producers (quantization commutes with them, so their
    /// inputs get the same `u8` parameters: that is where a static int8 executor requantizes a layer output).
    pub fn act_ranges(&self) -> BTreeMap<String, (f32, f32)> {
        let mut out = BTreeMap::new();
        let Some(q) = &self.quant else {
            return out;
        };
        let producer: HashMap<usize, &TNode> = self.nodes.iter().map(|n| (n.output, n)).collect();
        for a in &q.acts {
            let range = a.range();
            let mut slot = a.slot;
            out.insert(self.slot_names[slot].clone(), range);
            while let Some(node) = producer.get(&slot)
                && matches!(
                    node.op,
                    Op::MaxPool(_) | Op::Flatten { .. } | Op::Reshape { .. }
                )
                && let Some(Src::Value(v)) = node.inputs[0]
            {
                slot = v;
                out.entry(self.slot_names[slot].clone()).or_insert(range);
            }
        }
        out
    }
}

/// `g` added into `target` (which takes it when empty).
fn accumulate<T: Real>(target: &mut Option<ArrayD<T>>, g: ArrayD<T>) {
    match target {
        Some(t) => *t += &g,
        None if g.is_standard_layout() => *target = Some(g),
        None => *target = Some(g.as_standard_layout().into_owned()),
    }
}

fn reshaped<T: Real>(x: ArrayViewD<T>, shape: &[usize]) -> ArrayD<T> {
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(shape))
        .expect("element count checked")
}
