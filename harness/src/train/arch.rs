//! Built-in architectures to train from scratch, as IR graphs with seeded initial weights.
//!
//! Initialisation: He-uniform (`U(-a, a)`, `a = sqrt(6 / fan_in)`, variance `2 / fan_in`) for layers followed
//! by a ReLU, `a = sqrt(3 / fan_in)` (variance `1 / fan_in`) for the logits layer; biases zero.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::TrainError;
use crate::ir::{ConvAttrs, Dim, GemmAttrs, Graph, Node, Op, PoolAttrs, Tensor, ValueInfo};

/// Names `harness train --arch` accepts.
pub const ARCHS: &[&str] = &["fashion-cnn"];

/// The graph of `name` with weights drawn from `seed`.
pub fn build(name: &str, seed: u64) -> Result<Graph, TrainError> {
    match name {
        "fashion-cnn" => Ok(fashion_cnn(seed)),
        other => Err(TrainError::Config(format!(
            "unknown architecture `{other}` (known: {})",
            ARCHS.join(", ")
        ))),
    }
}

/// Builds a sequential graph layer by layer.
struct Builder {
    rng: StdRng,
    graph: Graph,
    last: String,
}

impl Builder {
    fn new(name: &str, seed: u64, input_shape: &[usize]) -> Self {
        let mut shape = vec![Dim::Symbolic("N".into())];
        shape.extend(input_shape.iter().map(|&d| Dim::Fixed(d)));
        Builder {
            rng: StdRng::seed_from_u64(seed),
            graph: Graph {
                name: name.to_owned(),
                opset: 17,
                inputs: vec![ValueInfo {
                    name: "input".into(),
                    shape,
                }],
                outputs: Vec::new(),
                initializers: BTreeMap::new(),
                nodes: Vec::new(),
            },
            last: "input".into(),
        }
    }

    fn uniform(&mut self, shape: &[usize], bound: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| (self.rng.random::<f32>() * 2.0 - 1.0) * bound)
            .collect();
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape"))
    }

    fn node(&mut self, op: Op, params: &[(&str, Tensor)]) {
        let index = self.graph.nodes.len() + 1;
        let name = format!("{}_{index}", op.op_type());
        let output = name.to_lowercase();
        let mut inputs = vec![self.last.clone()];
        for (pname, t) in params {
            self.graph
                .initializers
                .insert((*pname).to_owned(), t.clone());
            inputs.push((*pname).to_owned());
        }
        self.graph.nodes.push(Node {
            name,
            op,
            inputs,
            outputs: vec![output.clone()],
        });
        self.last = output;
    }

    /// `kxk` convolution, stride 1, `same` padding.
    fn conv(&mut self, layer: &str, c_in: usize, c_out: usize, k: usize) {
        let fan_in = (c_in * k * k) as f32;
        let w = self.uniform(&[c_out, c_in, k, k], (6.0 / fan_in).sqrt());
        let b = Tensor::F32(ArrayD::zeros(IxDyn(&[c_out])));
        let p = k / 2;
        self.node(
            Op::Conv(ConvAttrs {
                kernel_shape: [k, k],
                strides: [1, 1],
                pads: [p, p, p, p],
                dilations: [1, 1],
                group: 1,
            }),
            &[
                (&format!("{layer}.weight"), w),
                (&format!("{layer}.bias"), b),
            ],
        );
    }

    /// Fully connected `[n_in] -> [n_out]` (ONNX Gemm with `transB`, PyTorch's `Linear` layout).
    fn dense(&mut self, layer: &str, n_in: usize, n_out: usize, before_relu: bool) {
        let gain = if before_relu { 6.0 } else { 3.0 };
        let w = self.uniform(&[n_out, n_in], (gain / n_in as f32).sqrt());
        let b = Tensor::F32(ArrayD::zeros(IxDyn(&[n_out])));
        self.node(
            Op::Gemm(GemmAttrs {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: true,
            }),
            &[
                (&format!("{layer}.weight"), w),
                (&format!("{layer}.bias"), b),
            ],
        );
    }

    fn relu(&mut self) {
        self.node(Op::Relu, &[]);
    }

    fn max_pool2(&mut self) {
        self.node(
            Op::MaxPool(PoolAttrs {
                kernel_shape: [2, 2],
                strides: [2, 2],
                pads: [0; 4],
                dilations: [1, 1],
                ceil_mode: false,
            }),
            &[],
        );
    }

    fn finish(mut self, output: &str, classes: usize) -> Graph {
        let last = self.graph.nodes.last_mut().expect("layers were added");
        last.outputs = vec![output.to_owned()];
        self.graph.outputs.push(ValueInfo {
            name: output.to_owned(),
            shape: vec![Dim::Symbolic("N".into()), Dim::Fixed(classes)],
        });
        self.graph
    }
}

/// The Fashion-MNIST CNN: input `[N, 1, 28, 28]`; Conv 1->16 3x3 pad 1, ReLU, MaxPool 2, Conv 16->32 3x3
/// pad 1, ReLU, MaxPool 2, Flatten (1568), Gemm -> 128, ReLU, Gemm -> 10 (`logits`). 206,922 parameters.
pub fn fashion_cnn(seed: u64) -> Graph {
    let mut b = Builder::new("fashion_cnn", seed, &[1, 28, 28]);
    b.conv("conv1", 1, 16, 3);
    b.relu();
    b.max_pool2();
    b.conv("conv2", 16, 32, 3);
    b.relu();
    b.max_pool2();
    b.node(Op::Flatten { axis: 1 }, &[]);
    b.dense("fc1", 32 * 7 * 7, 128, true);
    b.relu();
    b.dense("fc2", 128, 10, false);
    b.finish("logits", 10)
}
