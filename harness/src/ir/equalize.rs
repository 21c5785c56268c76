//! Cross-layer equalization over a whole graph: finds every pair of linear layers joined only by positively
//! homogeneous ops and rescales their weights with [`strategies::equalize_pair`] (Nagel et al. 2019), sweeping
//! the chain until the scales settle, as the paper does for layers that belong to two pairs.
//!
//! A pair is layer 1 (Conv with one group, or Gemm / MatMul with a constant `B`) whose output has one reader
//! and is not a graph output, then any run of Relu, MaxPool and `Flatten(axis = 1)` (each read by the next
//! alone), then layer 2 of the same kinds reading that value as its data input. Relu and max pooling commute
//! with a positive per-channel scale; Flatten only moves channel `i` to columns `i*h*w .. (i+1)*h*w`, which is
//! the row layout `equalize_pair` expects for a dense layer after a flattened NCHW map. The graph computes the
//! same function afterwards, up to float rounding.

use std::collections::HashMap;

use ndarray::{ArrayViewMut1, ArrayViewMut2, Ix2, IxDyn};

use super::{Graph, Op, Tensor};

/// Sweeps over all pairs before giving up on convergence (the MNIST CNN settles in a few).
const MAX_SWEEPS: usize = 50;
/// A sweep whose scales all lie within this of 1 ends the iteration.
const SETTLED: f32 = 1e-4;

/// What [`equalize_graph`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EqualizeReport {
    /// The `(layer 1, layer 2)` node names of every equalized pair, in graph order.
    pub pairs: Vec<(String, String)>,
    /// Sweeps run (each equalizes every pair once).
    pub sweeps: usize,
}

/// Why a graph could not be equalized (a weight that is not what its node says).
#[derive(Debug, thiserror::Error)]
#[error("cross-layer equalization of {first} -> {second}: {message}")]
pub struct EqualizeError {
    pub first: String,
    pub second: String,
    pub message: String,
}

/// One layer's weight as `equalize_pair` sees it.
#[derive(Clone, Debug)]
struct Layer {
    node: String,
    weight: String,
    bias: Option<String>,
    /// The stored weight's shape is `[c_out, rest]` (Conv OIHW, Gemm with transB): the `[k, c_out]` matrix is
    /// its transpose.
    out_major: bool,
}

/// Equalizes every pair in `graph` in place; see the module docs. Graphs without pairs are left unchanged.
pub fn equalize_graph(graph: &mut Graph) -> Result<EqualizeReport, EqualizeError> {
    let pairs = find_pairs(graph);
    let mut report = EqualizeReport {
        pairs: pairs
            .iter()
            .map(|(a, b)| (a.node.clone(), b.node.clone()))
            .collect(),
        sweeps: 0,
    };
    if pairs.is_empty() {
        return Ok(report);
    }
    for _ in 0..MAX_SWEEPS {
        report.sweeps += 1;
        let mut worst = 0.0f32;
        for (first, second) in &pairs {
            let scales = equalize_one(graph, first, second)?;
            worst = scales.iter().fold(worst, |w, &s| w.max((s - 1.0).abs()));
        }
        if worst <= SETTLED {
            break;
        }
    }
    Ok(report)
}

/// The weight, bias and layout of a node that can be either side of a pair.
fn linear_layer(graph: &Graph, index: usize) -> Option<Layer> {
    let node = &graph.nodes[index];
    let constant_2d_or_4d = |name: &str, rank: usize| {
        graph
            .initializers
            .get(name)
            .and_then(Tensor::as_f32)
            .is_some_and(|w| w.ndim() == rank)
    };
    let weight = node.inputs.get(1)?.clone();
    let bias = node.inputs.get(2).filter(|b| !b.is_empty()).cloned();
    let out_major = match &node.op {
        Op::Conv(attrs) if attrs.group == 1 && constant_2d_or_4d(&weight, 4) => true,
        Op::Gemm(attrs) if !attrs.trans_a && constant_2d_or_4d(&weight, 2) => attrs.trans_b,
        Op::MatMul if constant_2d_or_4d(&weight, 2) => false,
        _ => return None,
    };
    // A bias must be a constant per-output-channel vector (Gemm's C may be a full matrix).
    if let Some(b) = &bias {
        let c_out = {
            let w = graph.initializers.get(&weight)?.shape();
            if out_major { w[0] } else { w[1] }
        };
        let ok = graph
            .initializers
            .get(b)
            .and_then(Tensor::as_f32)
            .is_some_and(|a| a.len() == c_out && a.shape().iter().rev().skip(1).all(|&d| d == 1));
        if !ok {
            return None;
        }
    }
    Some(Layer {
        node: node.name.clone(),
        weight,
        bias,
        out_major,
    })
}

/// Every `(layer 1, layer 2)` pair of the graph, in node order. A weight shared by two layers is left alone.
fn find_pairs(graph: &Graph) -> Vec<(Layer, Layer)> {
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for input in &node.inputs {
            readers.entry(input.as_str()).or_default().push(i);
        }
    }
    let is_output = |v: &str| graph.outputs.iter().any(|o| o.name == v);
    let only_reader = |v: &str| match readers.get(v).map(Vec::as_slice) {
        Some([r]) if !is_output(v) => Some(*r),
        _ => None,
    };
    let shared = |w: &str| readers.get(w).is_some_and(|r| r.len() > 1);
    let mut pairs = Vec::new();
    for i in 0..graph.nodes.len() {
        let Some(first) = linear_layer(graph, i) else {
            continue;
        };
        let mut value = graph.nodes[i].outputs[0].as_str();
        let second = loop {
            let Some(r) = only_reader(value) else {
                break None;
            };
            let node = &graph.nodes[r];
            match node.op {
                Op::Relu | Op::MaxPool(_) | Op::Flatten { axis: 1 } => value = &node.outputs[0],
                _ if node.inputs.first().map(String::as_str) == Some(value) => {
                    break linear_layer(graph, r);
                }
                _ => break None,
            }
        };
        if let Some(second) = second
            && !shared(&first.weight)
            && !shared(&second.weight)
            && first.bias.as_deref().is_none_or(|b| !shared(b))
        {
            pairs.push((first, second));
        }
    }
    pairs
}

/// A `[k, c]`-oriented mutable view of a layer's weight (the transpose of out-major storage).
fn matrix<'a>(w: &'a mut ndarray::ArrayD<f32>, out_major: bool) -> Option<ArrayViewMut2<'a, f32>> {
    let rows = w.shape()[0];
    let rest = w.len().checked_div(rows)?;
    let view = w
        .view_mut()
        .into_shape_with_order(IxDyn(&[rows, rest]))
        .ok()?;
    let view = view.into_dimensionality::<Ix2>().ok()?;
    Some(if out_major {
        view.reversed_axes()
    } else {
        view
    })
}

fn equalize_one(
    graph: &mut Graph,
    first: &Layer,
    second: &Layer,
) -> Result<Vec<f32>, EqualizeError> {
    let fail = |message: String| EqualizeError {
        first: first.node.clone(),
        second: second.node.clone(),
        message,
    };
    // Three distinct initializers (checked by find_pairs), borrowed mutably at once.
    let mut w1 = take(graph, &first.weight)
        .ok_or_else(|| fail(format!("no f32 weight {}", first.weight)))?;
    let mut w2 = take(graph, &second.weight)
        .ok_or_else(|| fail(format!("no f32 weight {}", second.weight)))?;
    let mut b1 = match &first.bias {
        Some(b) => Some(take(graph, b).ok_or_else(|| fail(format!("no f32 bias {b}")))?),
        None => None,
    };
    let result = (|| {
        let m1 = matrix(&mut w1, first.out_major)
            .ok_or_else(|| fail("weight 1 is not a matrix".into()))?;
        let m2 = matrix(&mut w2, second.out_major)
            .ok_or_else(|| fail("weight 2 is not a matrix".into()))?;
        let bias = b1.as_mut().map(|b| {
            let n = b.len();
            b.view_mut()
                .into_shape_with_order(IxDyn(&[n]))
                .expect("a contiguous bias")
                .into_dimensionality::<ndarray::Ix1>()
                .expect("rank 1")
        });
        let bias: Option<ArrayViewMut1<f32>> = bias;
        strategies::equalize_pair(m1, bias, m2).map_err(|e| fail(e.to_string()))
    })();
    graph
        .initializers
        .insert(first.weight.clone(), Tensor::F32(w1));
    graph
        .initializers
        .insert(second.weight.clone(), Tensor::F32(w2));
    if let (Some(name), Some(b)) = (&first.bias, b1) {
        graph.initializers.insert(name.clone(), Tensor::F32(b));
    }
    result
}

/// Removes an f32 initializer (in standard layout) from the graph, to be put back.
fn take(graph: &mut Graph, name: &str) -> Option<ndarray::ArrayD<f32>> {
    match graph.initializers.remove(name) {
        Some(Tensor::F32(a)) => Some(a.as_standard_layout().into_owned()),
        Some(other) => {
            graph.initializers.insert(name.to_string(), other);
            None
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::exec::Fp32Executor;

    fn model(path: &str) -> Graph {
        crate::onnx::load_model(&Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
    }

    fn mnist_cnn() -> Graph {
        model("../suites/data/ccexam_mnist_cnn/ccexam_mnist_cnn.onnx")
    }

    fn run(graph: &Graph, x: &ArrayD<f32>) -> ArrayD<f32> {
        let exec = Fp32Executor::new(graph, kernels::select(None).unwrap()).unwrap();
        let name = graph.inputs[0].name.clone();
        match exec.run(&[(name.as_str(), x.clone())]).unwrap().remove(0).1 {
            Tensor::F32(a) => a,
            other => panic!("{other:?}"),
        }
    }

    fn channel_ranges(graph: &Graph, layer: &Layer, outputs: bool) -> Vec<f32> {
        let mut w = graph.initializers[&layer.weight].as_f32().unwrap().clone();
        let m = matrix(&mut w, layer.out_major).unwrap();
        if outputs {
            m.columns()
                .into_iter()
                .map(|c| c.fold(0f32, |a, v| a.max(v.abs())))
                .collect()
        } else {
            m.rows()
                .into_iter()
                .map(|r| r.fold(0f32, |a, v| a.max(v.abs())))
                .collect()
        }
    }

    /// The real CNNs (MNIST, Fashion-MNIST): conv -> relu -> pool -> conv -> relu -> pool -> flatten -> gemm
    /// -> relu -> gemm holds three pairs; equalized, each computes the same logits and each pair's shared
    /// channels have equal ranges.
    #[test]
    fn the_cnns_keep_their_function_and_get_equal_ranges() {
        for path in [
            "../suites/data/ccexam_mnist_cnn/ccexam_mnist_cnn.onnx",
            "../suites/data/fashion_cnn/fashion_cnn.onnx",
        ] {
            equalized_keeps_function_and_balances(model(path));
        }
    }

    fn equalized_keeps_function_and_balances(mut graph: Graph) {
        let before = graph.clone();
        let pairs = find_pairs(&graph);
        assert_eq!(
            pairs.len(),
            3,
            "{:?}",
            pairs
                .iter()
                .map(|p| (&p.0.node, &p.1.node))
                .collect::<Vec<_>>()
        );
        let report = equalize_graph(&mut graph).unwrap();
        assert_eq!(report.pairs.len(), 3);
        assert!(report.sweeps < MAX_SWEEPS, "did not settle: {report:?}");
        assert_ne!(graph, before, "weights changed");

        let x = ArrayD::from_shape_fn(IxDyn(&[4, 1, 28, 28]), |i| {
            ((i[2] * 7 + i[3] * 3 + i[0]) % 11) as f32 / 5.0 - 0.4
        });
        let (a, b) = (run(&before, &x), run(&graph, &x));
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            diff <= 1e-4 * scale,
            "max diff {diff} (logit scale {scale})"
        );

        // After the last sweep every pair is balanced to within the settling tolerance: layer 1's output
        // channel range equals layer 2's input channel range (taken over its rows of that channel).
        for (first, second) in &pairs {
            let r1 = channel_ranges(&graph, first, true);
            let rows = channel_ranges(&graph, second, false);
            let m = rows.len() / r1.len();
            for (i, &r) in r1.iter().enumerate() {
                let r2 = rows[i * m..(i + 1) * m].iter().fold(0f32, |a, &v| a.max(v));
                if r > 0.0 && r2 > 0.0 {
                    assert!(
                        (r / r2 - 1.0).abs() < 1e-2,
                        "{} ch {i}: {r} vs {r2}",
                        first.node
                    );
                }
            }
        }
    }

    /// A value read twice, a graph output in the middle or a non-homogeneous op between layers ends a chain.
    #[test]
    fn chains_stop_at_branches_outputs_and_other_ops() {
        let mut graph = mnist_cnn();
        // Make the first ReLU's output a graph output too: the first pair disappears.
        let relu = graph
            .nodes
            .iter()
            .find(|n| n.op == Op::Relu)
            .unwrap()
            .outputs[0]
            .clone();
        graph.outputs.push(super::super::ValueInfo {
            name: relu,
            shape: vec![],
        });
        assert_eq!(find_pairs(&graph).len(), 2);
    }
}
