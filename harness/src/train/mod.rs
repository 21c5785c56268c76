//! Training and quantization-aware training, in Rust, on the graph IR.
//!
//! Contract:
//! - [`TrainableGraph`] wraps an [`ir::Graph`](crate::ir::Graph): its f32 initializers are the parameters,
//!   [`TrainableGraph::forward`] keeps what the backward pass needs, [`TrainableGraph::backward`] returns the
//!   gradient of every parameter. Ops: Conv (group 1, any stride / padding / dilation), Gemm, MatMul (2-D B),
//!   Relu, MaxPool, Flatten, Reshape, Add, with the FP32 executor's forward semantics; the loss is mean
//!   softmax cross-entropy ([`ops::softmax_cross_entropy`]).
//! - Ops are generic over [`Real`]: `f32` trains (the kernels crate's dispatched GEMM and im2col), `f64`
//!   checks gradients against finite differences with the same op code.
//! - [`train`] runs seeded, shuffled mini-batches with SGD (momentum) or Adam ([`optim`]); [`top1`]
//!   evaluates.
//! - QAT ([`quant`], [`qat`]): per-channel symmetric fake-quantized weights and per-tensor affine `u8`
//!   activations at the inputs of Conv / Gemm / MatMul, straight-through gradients, LSQ step sizes. The
//!   result ([`QatResult`]) is the fine-tuned FP32 graph plus weight scales and activation ranges for a
//!   quantized executor; [`ptq`] gives the same form without training, [`fake_quant_top1`] evaluates either.
//! - [`arch`] builds architectures to train from scratch; [`command`] is `harness train`.

pub mod arch;
pub mod command;
pub mod fit;
pub mod graph;
pub mod ops;
pub mod optim;
pub mod qat;
pub mod quant;
pub mod real;

pub use command::TrainArgs;
pub use fit::{Dataset, EpochReport, TrainConfig, top1, train};
pub use graph::{Grads, Param, ParamKind, Tape, TrainableGraph};
pub use optim::{LrSchedule, Optimizer, OptimizerConfig, OptimizerKind};
pub use qat::{QatConfig, QatResult, fake_quant_top1, ptq, qat};
pub use quant::{QuantConfig, StepInit};
pub use real::{Linalg, Real};

use crate::exec::OpError;
use crate::ir::Op;

/// Why a graph cannot be trained, or training failed. Node-level variants name the node and its op.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("node \"{node}\" ({op}) cannot be trained: {reason}")]
    Unsupported {
        node: String,
        op: &'static str,
        reason: String,
    },

    #[error("node \"{node}\" ({op}): {reason}")]
    Op {
        node: String,
        op: &'static str,
        reason: OpError,
    },

    #[error("{0}")]
    Graph(String),

    #[error("{0}")]
    Config(String),

    #[error("{0}")]
    Data(String),

    #[error(
        "training diverged: loss {loss} at epoch {epoch}, step {step} (lower the learning rate)"
    )]
    Diverged {
        epoch: usize,
        step: usize,
        loss: f64,
    },
}

impl TrainError {
    pub(crate) fn op(node: &str, op: &Op, reason: OpError) -> Self {
        TrainError::Op {
            node: node.to_owned(),
            op: op.op_type(),
            reason,
        }
    }
}
