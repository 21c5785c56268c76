//! The FP32 reference executor: runs an [`ir::Graph`] in f32 on the kernels crate's float GEMM. Constant
//! Conv / Gemm / MatMul weights are packed once at construction; intermediate values are dropped after their
//! last consumer, so memory stays bounded by the widest point of the graph. Its outputs are the oracle every
//! quantized run is compared with.

use kernels::{KernelSet, PackedB};
use ndarray::{ArrayD, ArrayViewD, Ix1};

use super::elementwise;
use super::eval::{self, eval_op, reshape_owned, reshape_target};
use super::ops::{self, OpError, PackedConvWeights};
use super::{ExecError, Schedule, check_inputs, check_tensor_inputs};
use crate::ir::{self, Op, Tensor};

/// Work done once per node at construction.
enum Prepared {
    Nothing,
    /// Packed weights when the weight input is an initializer.
    Conv(Option<PackedConvWeights>),
    /// Packed `op(B)` as `[K, N]` when B is an initializer.
    Gemm(Option<PackedB<f32>>),
    /// Packed B (and whether it was 1-D) when B is an initializer of rank 1 or 2.
    MatMul(Option<(PackedB<f32>, bool)>),
    /// The target shape when it is an initializer.
    Reshape(Option<Vec<i64>>),
}

/// A value during one run: borrowed from the graph's initializers, or produced by the run.
enum Val<'a> {
    Const(&'a Tensor),
    Owned(Tensor),
}

impl Val<'_> {
    fn tensor(&self) -> &Tensor {
        match self {
            Val::Const(t) => t,
            Val::Owned(t) => t,
        }
    }
}

/// Runs a graph in f32; see the module docs.
pub struct Fp32Executor {
    graph: ir::Graph,
    kernels: KernelSet,
    schedule: Schedule,
    prepared: Vec<Prepared>,
}

impl std::fmt::Debug for Fp32Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fp32Executor")
            .field("graph", &self.graph.name)
            .field("nodes", &self.graph.nodes.len())
            .field("gemm_f32", &self.kernels.gemm_f32.name())
            .finish()
    }
}

// Executors are shared across the runner's threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Fp32Executor>();
};

/// The arity of an op in words, for [`ExecError::Arity`].
fn arity_words(required: usize, max: usize) -> &'static str {
    match (required, max) {
        (1, 1) => "1 input",
        (2, 2) => "2 inputs",
        (3, 3) => "3 inputs",
        (5, 5) => "5 inputs",
        (2, 3) => "2 or 3 inputs",
        (3, 5) => "3 to 5 inputs",
        (1, 4) => "1 to 4 inputs",
        (1, usize::MAX) => "1 or more inputs",
        _ => "another number of inputs",
    }
}

impl Fp32Executor {
    /// Validates the graph (value order, arity, constant weight shapes) and packs constant weights.
    pub fn new(graph: &ir::Graph, kernels: KernelSet) -> Result<Self, ExecError> {
        let schedule = Schedule::new(graph)?;
        let gemm = kernels.gemm_f32;
        let mut prepared = Vec::with_capacity(graph.nodes.len());
        for (i, node) in graph.nodes.iter().enumerate() {
            let ins = &schedule.node_inputs[i];
            let (required, max) = eval::arity(&node.op);
            let present = ins.iter().rposition(Option::is_some).map_or(0, |p| p + 1);
            if present < required || present > max || ins[..required].iter().any(Option::is_none) {
                return Err(ExecError::Arity {
                    node: node.name.clone(),
                    op: node.op.op_type(),
                    expected: arity_words(required, max),
                    inputs: node.inputs.clone(),
                    outputs: node.outputs.clone(),
                });
            }
            let constant = |slot: usize| {
                node.inputs
                    .get(slot)
                    .and_then(|name| graph.initializers.get(name))
                    .map(|t| (slot, t))
            };
            let op_err = |e: OpError| ExecError::op(node, e);
            prepared.push(match &node.op {
                Op::Conv(attrs) => {
                    if let Some((slot, b)) = constant(2) {
                        let b = const_f32(node, slot, b)?;
                        if b.ndim() != 1 {
                            return Err(op_err(OpError::Rank {
                                what: "Conv bias",
                                expected: "1-D",
                                shape: b.shape().to_vec(),
                            }));
                        }
                    }
                    match constant(1) {
                        Some((slot, w)) => Prepared::Conv(Some(
                            PackedConvWeights::new(const_f32(node, slot, w)?, attrs)
                                .map_err(op_err)?,
                        )),
                        None => Prepared::Conv(None),
                    }
                }
                Op::Gemm(attrs) => match constant(1) {
                    Some((slot, b)) => Prepared::Gemm(Some(
                        ops::pack_gemm_b(const_f32(node, slot, b)?, attrs.trans_b, gemm)
                            .map_err(op_err)?,
                    )),
                    None => Prepared::Gemm(None),
                },
                Op::MatMul => match constant(1) {
                    Some((slot, b)) => {
                        let b = const_f32(node, slot, b)?;
                        match b.ndim() {
                            1 => {
                                let col = b.insert_axis(ndarray::Axis(1));
                                let col = col.into_dimensionality().expect("2-D");
                                Prepared::MatMul(Some((ops::pack_matrix(col, gemm), true)))
                            }
                            2 => {
                                let b2 = b.into_dimensionality().expect("2-D");
                                Prepared::MatMul(Some((ops::pack_matrix(b2, gemm), false)))
                            }
                            _ => Prepared::MatMul(None),
                        }
                    }
                    None => Prepared::MatMul(None),
                },
                Op::Reshape { .. } => match constant(1) {
                    Some((slot, t)) => Prepared::Reshape(Some(shape_vector(node, slot, t)?)),
                    None => Prepared::Reshape(None),
                },
                _ => Prepared::Nothing,
            });
        }
        Ok(Fp32Executor {
            graph: graph.clone(),
            kernels,
            schedule,
            prepared,
        })
    }

    /// The graph this executor runs.
    pub fn graph(&self) -> &ir::Graph {
        &self.graph
    }

    /// Runs with the given named f32 inputs (dimension 0, the batch, is free); returns the graph outputs in
    /// graph order.
    pub fn run(&self, inputs: &[(&str, ArrayD<f32>)]) -> Result<Vec<(String, Tensor)>, ExecError> {
        self.run_observed(inputs, &mut |_, _| {})
    }

    /// Same as [`Fp32Executor::run`], calling `observe(value_name, tensor)` for every value a node produces,
    /// in execution order (used for calibration statistics).
    pub fn run_observed(
        &self,
        inputs: &[(&str, ArrayD<f32>)],
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Vec<(String, Tensor)>, ExecError> {
        let ordered = check_inputs(&self.graph, inputs)?;
        let owned = ordered
            .into_iter()
            .map(|a| Tensor::F32(a.clone()))
            .collect();
        self.run_ordered(owned, observe)
    }

    /// Runs with named inputs of any element type (integer and boolean inputs as i64); checked like
    /// [`Fp32Executor::run`].
    pub fn run_tensors(
        &self,
        inputs: &[(&str, Tensor)],
    ) -> Result<Vec<(String, Tensor)>, ExecError> {
        self.run_tensors_observed(inputs, &mut |_, _| {})
    }

    /// [`Fp32Executor::run_tensors`], calling `observe(value_name, tensor)` for every value a node produces (as
    /// [`Fp32Executor::run_observed`] does): calibration of models with integer inputs.
    pub fn run_tensors_observed(
        &self,
        inputs: &[(&str, Tensor)],
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Vec<(String, Tensor)>, ExecError> {
        let ordered = check_tensor_inputs(&self.graph, inputs)?;
        self.run_ordered(ordered.into_iter().cloned().collect(), observe)
    }

    fn run_ordered(
        &self,
        ordered: Vec<Tensor>,
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Vec<(String, Tensor)>, ExecError> {
        let s = &self.schedule;
        let mut env: Vec<Option<Val<'_>>> = (0..s.values.names.len()).map(|_| None).collect();
        for (name, t) in &self.graph.initializers {
            env[s.values.index[name]] = Some(Val::Const(t));
        }
        for (&slot, t) in s.graph_inputs.iter().zip(ordered) {
            env[slot] = Some(Val::Owned(t));
        }
        for (i, node) in self.graph.nodes.iter().enumerate() {
            let out = self.eval(i, node, &mut env)?;
            let slot = s.node_output[i];
            observe(&s.values.names[slot], &out);
            env[slot] = Some(Val::Owned(out));
            for &v in &s.free_after[i] {
                env[v] = None;
            }
        }
        let mut outputs = Vec::with_capacity(s.graph_outputs.len());
        for (k, (&slot, info)) in s.graph_outputs.iter().zip(&self.graph.outputs).enumerate() {
            let reused_later = s.graph_outputs[k + 1..].contains(&slot);
            let tensor = match env[slot].take() {
                Some(Val::Owned(t)) if !reused_later => t,
                Some(v) => {
                    let t = v.tensor().clone();
                    env[slot] = Some(v);
                    t
                }
                None => {
                    return Err(ExecError::MissingOutput {
                        name: info.name.clone(),
                    });
                }
            };
            outputs.push((info.name.clone(), tensor));
        }
        Ok(outputs)
    }

    /// Names of the kernels this executor calls (for the result row's `kernel` column).
    pub fn kernel_names(&self) -> Vec<&'static str> {
        let uses_gemm = self.graph.nodes.iter().any(|n| {
            matches!(
                n.op,
                Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) | Op::MatMul
            )
        });
        if uses_gemm {
            vec![self.kernels.gemm_f32.name()]
        } else {
            Vec::new()
        }
    }

    fn eval(
        &self,
        i: usize,
        node: &ir::Node,
        env: &mut [Option<Val<'_>>],
    ) -> Result<Tensor, ExecError> {
        let gemm = self.kernels.gemm_f32;
        let op_err = |e: OpError| ExecError::op(node, e);
        let out = match (&node.op, &self.prepared[i]) {
            (Op::Conv(attrs), Prepared::Conv(packed)) => {
                let x = self.f32_in(env, i, node, 0)?;
                let runtime_w;
                let w = match packed {
                    Some(w) => w,
                    None => {
                        let w = self.f32_in(env, i, node, 1)?;
                        runtime_w = PackedConvWeights::new(w, attrs).map_err(op_err)?;
                        &runtime_w
                    }
                };
                let bias = self.opt_f32_in(env, i, node, 2)?;
                let bias = match &bias {
                    Some(b) => Some(
                        b.view()
                            .into_dimensionality::<Ix1>()
                            .map_err(|_| {
                                op_err(OpError::Rank {
                                    what: "Conv bias",
                                    expected: "1-D",
                                    shape: b.shape().to_vec(),
                                })
                            })?
                            .to_vec(),
                    ),
                    None => None,
                };
                ops::conv2d_f32(x, w, bias.as_deref(), attrs, gemm).map_err(op_err)?
            }
            (Op::Gemm(attrs), Prepared::Gemm(packed)) => {
                let a = self.f32_in(env, i, node, 0)?;
                let runtime_b;
                let b = match packed {
                    Some(b) => b,
                    None => {
                        let b = self.f32_in(env, i, node, 1)?;
                        runtime_b = ops::pack_gemm_b(b, attrs.trans_b, gemm).map_err(op_err)?;
                        &runtime_b
                    }
                };
                let c = self.opt_f32_in(env, i, node, 2)?;
                ops::gemm_f32(a, b, c, attrs, gemm).map_err(op_err)?
            }
            (Op::MatMul, Prepared::MatMul(packed)) => {
                let a = self.f32_in(env, i, node, 0)?;
                match packed {
                    Some((b, b_vec)) => ops::matmul_packed_f32(a, b, *b_vec, gemm),
                    None => ops::matmul_f32(a, self.f32_in(env, i, node, 1)?, gemm),
                }
                .map_err(op_err)?
            }
            (Op::Relu, _) => {
                let mut x = match self.take_f32(env, i, 0) {
                    Some(x) => x,
                    None => self.f32_in(env, i, node, 0)?.to_owned(),
                };
                ops::relu_inplace(&mut x);
                x
            }
            (Op::MaxPool(attrs), _) => {
                ops::max_pool2d(self.f32_in(env, i, node, 0)?, attrs).map_err(op_err)?
            }
            (Op::Reshape { allowzero }, Prepared::Reshape(Some(target))) => {
                let x = self.input(env, i, node, 0)?;
                let shape = ops::reshape_shape(x.shape(), target, *allowzero).map_err(op_err)?;
                return self.reshaped(env, i, node, &shape);
            }
            (Op::Unary(u), _) => {
                return match self.take(env, i, 0) {
                    Some(x) => elementwise::unary_owned(*u, x, self.kernels.gemm_f32.isa()),
                    None => elementwise::unary(
                        *u,
                        self.input(env, i, node, 0)?,
                        self.kernels.gemm_f32.isa(),
                    ),
                }
                .map_err(op_err);
            }
            (Op::Add | Op::Binary(_), _) => return self.binary(i, node, env),
            (op, _) => {
                let x = self.input(env, i, node, 0)?;
                let shape = {
                    let ins = self.inputs(env, i, node)?;
                    reshape_target(op, x.shape(), &ins)
                };
                if let Some(shape) = shape {
                    let shape = shape.map_err(op_err)?;
                    return self.reshaped(env, i, node, &shape);
                }
                let ins = self.inputs(env, i, node)?;
                return eval_op(op, &ins, gemm).map_err(op_err);
            }
        };
        Ok(Tensor::F32(out))
    }

    /// Every input of node `i` (`None` for absent optional ones).
    fn inputs<'e>(
        &self,
        env: &'e [Option<Val<'_>>],
        i: usize,
        node: &ir::Node,
    ) -> Result<Vec<Option<&'e Tensor>>, ExecError> {
        (0..self.schedule.node_inputs[i].len())
            .map(|slot| match self.schedule.node_inputs[i][slot] {
                Some(_) => self.input(env, i, node, slot).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    /// Add and the binary ops: f32 arithmetic reuses an operand's buffer when it already has the output's
    /// shape and this node is its last reader.
    fn binary(
        &self,
        i: usize,
        node: &ir::Node,
        env: &mut [Option<Val<'_>>],
    ) -> Result<Tensor, ExecError> {
        let op_err = |e: OpError| ExecError::op(node, e);
        let (a, b) = (self.input(env, i, node, 0)?, self.input(env, i, node, 1)?);
        let arithmetic = match node.op {
            Op::Add => true,
            Op::Binary(op) => matches!(
                op,
                ir::BinaryOp::Sub | ir::BinaryOp::Mul | ir::BinaryOp::Div | ir::BinaryOp::Pow
            ),
            _ => false,
        };
        if arithmetic && let (Tensor::F32(fa), Tensor::F32(fb)) = (a, b) {
            let (sa, sb) = (fa.shape().to_vec(), fb.shape().to_vec());
            let shape = ops::broadcast_shapes(&sa, &sb).map_err(op_err)?;
            let reuse = [(0, &sa), (1, &sb)]
                .into_iter()
                .filter(|(_, s)| **s == shape)
                .find_map(|(slot, _)| self.take_f32(env, i, slot).map(|acc| (slot, acc)));
            if let Some((slot, mut acc)) = reuse {
                let other = self.f32_in(env, i, node, 1 - slot)?;
                match node.op {
                    Op::Add => ops::add_assign_broadcast(&mut acc, other).map_err(op_err)?,
                    Op::Binary(op) => {
                        elementwise::binary_assign_f32(op, &mut acc, other, slot == 1)
                            .map_err(op_err)?;
                    }
                    _ => unreachable!("arithmetic ops only"),
                }
                return Ok(Tensor::F32(acc));
            }
        }
        let (a, b) = (self.input(env, i, node, 0)?, self.input(env, i, node, 1)?);
        match node.op {
            Op::Add => elementwise::add(a, b),
            Op::Binary(op) => elementwise::binary(op, a, b),
            _ => unreachable!("binary ops only"),
        }
        .map_err(op_err)
    }

    /// The tensor bound to input `slot` of node `i`.
    fn input<'e>(
        &self,
        env: &'e [Option<Val<'_>>],
        i: usize,
        node: &ir::Node,
        slot: usize,
    ) -> Result<&'e Tensor, ExecError> {
        let v = self.schedule.node_inputs[i][slot];
        v.and_then(|v| env[v].as_ref())
            .map(Val::tensor)
            .ok_or_else(|| ExecError::MissingValue {
                node: node.name.clone(),
                op: node.op.op_type(),
                value: node.inputs.get(slot).cloned().unwrap_or_default(),
            })
    }

    fn f32_in<'e>(
        &self,
        env: &'e [Option<Val<'_>>],
        i: usize,
        node: &ir::Node,
        slot: usize,
    ) -> Result<ArrayViewD<'e, f32>, ExecError> {
        let t = self.input(env, i, node, slot)?;
        t.as_f32()
            .map(|a| a.view())
            .ok_or_else(|| dtype_err(node, slot, t, "f32"))
    }

    fn opt_f32_in<'e>(
        &self,
        env: &'e [Option<Val<'_>>],
        i: usize,
        node: &ir::Node,
        slot: usize,
    ) -> Result<Option<ArrayViewD<'e, f32>>, ExecError> {
        match self.schedule.node_inputs[i].get(slot) {
            Some(Some(_)) => self.f32_in(env, i, node, slot).map(Some),
            _ => Ok(None),
        }
    }

    /// Moves input `slot` out of the environment when this node is its last reader and the run owns it.
    fn take_f32(&self, env: &mut [Option<Val<'_>>], i: usize, slot: usize) -> Option<ArrayD<f32>> {
        if !self.schedule.consumable[i]
            .get(slot)
            .copied()
            .unwrap_or(false)
        {
            return None;
        }
        let v = self.schedule.node_inputs[i][slot]?;
        match env[v].take() {
            Some(Val::Owned(Tensor::F32(a))) => Some(a),
            other => {
                env[v] = other;
                None
            }
        }
    }

    /// Moves input `slot` (of any element type) out of the environment when this node is its last reader
    /// and the run owns it.
    fn take(&self, env: &mut [Option<Val<'_>>], i: usize, slot: usize) -> Option<Tensor> {
        if !self.schedule.consumable[i]
            .get(slot)
            .copied()
            .unwrap_or(false)
        {
            return None;
        }
        let v = self.schedule.node_inputs[i][slot]?;
        match env[v].take() {
            Some(Val::Owned(t)) => Some(t),
            other => {
                env[v] = other;
                None
            }
        }
    }

    /// Input 0 reshaped to `shape` (element count already checked), without copying when it can be moved.
    fn reshaped(
        &self,
        env: &mut [Option<Val<'_>>],
        i: usize,
        node: &ir::Node,
        shape: &[usize],
    ) -> Result<Tensor, ExecError> {
        let from = self.input(env, i, node, 0)?.shape().to_vec();
        if from.iter().product::<usize>() != shape.iter().product::<usize>() {
            return Err(ExecError::op(
                node,
                OpError::Shape(format!("cannot reshape {from:?} to {shape:?}")),
            ));
        }
        Ok(match self.take(env, i, 0) {
            Some(x) => reshape_owned(x, shape),
            None => eval::reshape_to(self.input(env, i, node, 0)?, shape),
        })
    }
}

fn dtype_err(node: &ir::Node, slot: usize, t: &Tensor, expected: &'static str) -> ExecError {
    ExecError::DType {
        node: node.name.clone(),
        op: node.op.op_type(),
        value: node.inputs.get(slot).cloned().unwrap_or_default(),
        expected,
        got: t.dtype(),
        shape: t.shape().to_vec(),
    }
}

fn const_f32<'t>(
    node: &ir::Node,
    slot: usize,
    t: &'t Tensor,
) -> Result<ArrayViewD<'t, f32>, ExecError> {
    t.as_f32()
        .map(|a| a.view())
        .ok_or_else(|| dtype_err(node, slot, t, "f32"))
}

/// A Reshape target: a 1-D i64 tensor.
fn shape_vector(node: &ir::Node, slot: usize, t: &Tensor) -> Result<Vec<i64>, ExecError> {
    match t.as_i64() {
        Some(a) if a.ndim() == 1 => Ok(a.iter().copied().collect()),
        _ => Err(dtype_err(node, slot, t, "a 1-D i64 tensor")),
    }
}
