//! Graph simplifications the importer applies after conversion, each a local rewrite that keeps the graph's
//! outputs (up to f32 rounding, where the folded arithmetic is done once at import as ONNX Runtime's own
//! graph optimizer does it):
//!
//! - `Identity` removed (consumers read its input; when it produces a graph output, its producer is renamed);
//! - `BatchNormalization` with constant statistics folded into the preceding Conv: `W' = W * s`,
//!   `B' = (B - mean) * s + beta` with `s = scale / sqrt(var + eps)` (ONNX Runtime's `ConvBNFusion`);
//! - `Add` of a constant per-channel tensor folded into the preceding Conv's bias (`ConvAddFusion`);
//! - nodes whose output nothing reads, and initializers nothing reads, dropped.
//!
//! A rewrite applies only when the intermediate value has exactly one reader and is not a graph output.

use std::collections::{BTreeMap, HashMap};

use ndarray::{ArrayD, Axis, IxDyn};

use super::{Graph, Node, Op, Tensor};

/// Applies every simplification until none applies.
pub fn simplify(g: &mut Graph) {
    remove_identities(g);
    while fold_conv_successor(g) {}
    remove_dead(g);
}

/// How many nodes read each value (graph outputs count as readers).
fn readers(g: &Graph) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for name in g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter())
        .chain(g.outputs.iter().map(|v| &v.name))
        .filter(|s| !s.is_empty())
    {
        *count.entry(name.clone()).or_insert(0) += 1;
    }
    count
}

fn is_graph_output(g: &Graph, name: &str) -> bool {
    g.outputs.iter().any(|v| v.name == name)
}

fn rename_inputs(nodes: &mut [Node], from: &str, to: &str) {
    for n in nodes {
        for i in &mut n.inputs {
            if i == from {
                *i = to.to_owned();
            }
        }
    }
}

fn remove_identities(g: &mut Graph) {
    let mut i = 0;
    while i < g.nodes.len() {
        let node = &g.nodes[i];
        if node.op != Op::Identity {
            i += 1;
            continue;
        }
        let (Some(src), Some(dst)) = (node.inputs.first().cloned(), node.outputs.first().cloned())
        else {
            i += 1;
            continue;
        };
        if !is_graph_output(g, &dst) {
            g.nodes.remove(i);
            rename_inputs(&mut g.nodes, &dst, &src);
            continue;
        }
        // `dst` is a graph output: rename `src` to it when a node produces `src` and nothing else needs the
        // old name.
        let producer = g.nodes.iter().position(|n| n.outputs.first() == Some(&src));
        match producer {
            Some(p) if !is_graph_output(g, &src) => {
                g.nodes[p].outputs[0] = dst.clone();
                g.nodes.remove(i);
                rename_inputs(&mut g.nodes, &src, &dst);
            }
            _ => i += 1,
        }
    }
}

/// An f32 initializer by name.
fn const_f32<'g>(inits: &'g BTreeMap<String, Tensor>, name: &str) -> Option<&'g ArrayD<f32>> {
    inits.get(name).and_then(Tensor::as_f32)
}

/// Folds one BatchNormalization or per-channel Add into the Conv before it; returns whether it did.
fn fold_conv_successor(g: &mut Graph) -> bool {
    let count = readers(g);
    for ci in 0..g.nodes.len() {
        let conv = &g.nodes[ci];
        if !matches!(conv.op, Op::Conv(_)) {
            continue;
        }
        let (Some(out), Some(w_name)) = (conv.outputs.first(), conv.inputs.get(1)) else {
            continue;
        };
        if count.get(out) != Some(&1) || is_graph_output(g, out) {
            continue;
        }
        let Some(w) = const_f32(&g.initializers, w_name) else {
            continue;
        };
        if w.ndim() != 4 {
            continue;
        }
        let c_out = w.shape()[0];
        let bias_name = conv.inputs.get(2).filter(|s| !s.is_empty());
        let bias: Vec<f32> = match bias_name {
            None => vec![0.0; c_out],
            Some(b) => match const_f32(&g.initializers, b) {
                Some(b) if b.len() == c_out => b.iter().copied().collect(),
                _ => continue,
            },
        };
        let Some(next) = g
            .nodes
            .iter()
            .position(|n| n.inputs.iter().any(|i| i == out))
        else {
            continue;
        };
        let succ = &g.nodes[next];
        let Some(new_out) = succ.outputs.first().cloned() else {
            continue;
        };
        let folded = match &succ.op {
            Op::BatchNormalization { epsilon }
                if succ.inputs.len() == 5 && succ.inputs[0] == *out =>
            {
                let p: Option<Vec<Vec<f32>>> = succ.inputs[1..5]
                    .iter()
                    .map(|n| {
                        const_f32(&g.initializers, n)
                            .filter(|a| a.len() == c_out && a.ndim() == 1)
                            .map(|a| a.iter().copied().collect())
                    })
                    .collect();
                let Some(p) = p else { continue };
                let (gamma, beta, mean, var) = (&p[0], &p[1], &p[2], &p[3]);
                // ONNX Runtime's order of operations, in f32.
                let s: Vec<f32> = gamma
                    .iter()
                    .zip(var)
                    .map(|(&g, &v)| g / (v + epsilon).sqrt())
                    .collect();
                let mut w2 = w.clone();
                for (mut oc, &s) in w2.axis_iter_mut(Axis(0)).zip(&s) {
                    oc.mapv_inplace(|v| v * s);
                }
                let b2: Vec<f32> = (0..c_out)
                    .map(|o| match bias_name {
                        Some(_) => (bias[o] - mean[o]) * s[o] + beta[o],
                        None => beta[o] - mean[o] * s[o],
                    })
                    .collect();
                Some((Some(w2), b2))
            }
            Op::Add if succ.inputs.len() == 2 => {
                let other = if succ.inputs[0] == *out {
                    &succ.inputs[1]
                } else {
                    &succ.inputs[0]
                };
                let Some(c) = const_f32(&g.initializers, other) else {
                    continue;
                };
                // Per channel of an NCHW output: right-aligned shape [1, c_out | 1, 1, 1].
                let s = c.shape();
                let per_channel = s.len() <= 4
                    && s.iter()
                        .rev()
                        .enumerate()
                        .all(|(from_end, &d)| d == 1 || (from_end == 2 && d == c_out));
                if !per_channel {
                    continue;
                }
                let c: Vec<f32> = if c.len() == 1 {
                    vec![c.iter().copied().next().unwrap_or(0.0); c_out]
                } else {
                    c.iter().copied().collect()
                };
                Some((None, bias.iter().zip(&c).map(|(b, c)| b + c).collect()))
            }
            _ => None,
        };
        let Some((new_w, new_b)) = folded else {
            continue;
        };
        let conv_name = g.nodes[ci].name.clone();
        if let Some(w2) = new_w {
            let name = fresh(&g.initializers, &format!("{conv_name}::W"));
            g.initializers.insert(name.clone(), Tensor::F32(w2));
            g.nodes[ci].inputs[1] = name;
        }
        let name = fresh(&g.initializers, &format!("{conv_name}::B"));
        g.initializers.insert(
            name.clone(),
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[c_out]), new_b).expect("1-D")),
        );
        let conv = &mut g.nodes[ci];
        conv.inputs.truncate(2);
        conv.inputs.push(name);
        conv.outputs[0] = new_out;
        g.nodes.remove(next);
        return true;
    }
    false
}

/// `base`, or `base.1`, `base.2`, ... when taken.
fn fresh(inits: &BTreeMap<String, Tensor>, base: &str) -> String {
    if !inits.contains_key(base) {
        return base.to_owned();
    }
    (1..)
        .map(|i| format!("{base}.{i}"))
        .find(|n| !inits.contains_key(n))
        .expect("unbounded")
}

/// Drops nodes whose output nothing reads (repeatedly), then initializers nothing reads.
fn remove_dead(g: &mut Graph) {
    loop {
        let count = readers(g);
        let before = g.nodes.len();
        g.nodes
            .retain(|n| n.outputs.iter().any(|o| count.contains_key(o)));
        if g.nodes.len() == before {
            break;
        }
    }
    let count = readers(g);
    g.initializers.retain(|name, _| count.contains_key(name));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{ConvAttrs, ValueInfo};

    fn node(name: &str, op: Op, inputs: &[&str], output: &str) -> Node {
        Node {
            name: name.into(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
        }
    }

    fn graph(nodes: Vec<Node>, outputs: &[&str], inits: &[(&str, Tensor)]) -> Graph {
        Graph {
            name: "g".into(),
            opset: 17,
            inputs: vec![ValueInfo {
                name: "x".into(),
                shape: vec![],
            }],
            outputs: outputs
                .iter()
                .map(|n| ValueInfo {
                    name: n.to_string(),
                    shape: vec![],
                })
                .collect(),
            initializers: inits
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
            nodes,
        }
    }

    fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
    }

    #[test]
    fn identities_and_dead_nodes_go() {
        let mut g = graph(
            vec![
                node("i0", Op::Identity, &["x"], "a"),
                node("r", Op::Relu, &["a"], "b"),
                node("dead", Op::Relu, &["b"], "unused"),
                node("i1", Op::Identity, &["b"], "y"),
                node("i2", Op::Identity, &["x"], "z"),
            ],
            &["y", "z"],
            &[("w", f32s(&[1], &[1.0]))],
        );
        simplify(&mut g);
        // Relu now writes the graph output itself; the Identity of a graph input stays.
        assert_eq!(
            g.nodes,
            [
                node("r", Op::Relu, &["x"], "y"),
                node("i2", Op::Identity, &["x"], "z")
            ]
        );
        assert!(g.initializers.is_empty(), "unused initializer dropped");
    }

    #[test]
    fn batch_norm_and_bias_fold_into_conv() {
        let conv = Op::Conv(ConvAttrs {
            kernel_shape: [1, 1],
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
            group: 1,
        });
        let mut g = graph(
            vec![
                node("c", conv.clone(), &["x", "w"], "c_out"),
                node(
                    "bn",
                    Op::BatchNormalization { epsilon: 0.0 },
                    &["c_out", "s", "b", "m", "v"],
                    "bn_out",
                ),
                node("add", Op::Add, &["bias", "bn_out"], "y"),
            ],
            &["y"],
            &[
                ("w", f32s(&[2, 1, 1, 1], &[1.0, 2.0])),
                ("s", f32s(&[2], &[2.0, 3.0])),
                ("b", f32s(&[2], &[0.5, -0.5])),
                ("m", f32s(&[2], &[1.0, 0.0])),
                ("v", f32s(&[2], &[4.0, 9.0])),
                ("bias", f32s(&[1, 2, 1, 1], &[10.0, 20.0])),
            ],
        );
        simplify(&mut g);
        assert_eq!(g.nodes.len(), 1);
        let c = &g.nodes[0];
        assert_eq!((c.op.clone(), c.outputs[0].as_str()), (conv, "y"));
        // s = scale / sqrt(var) = [1, 1]; W' = W * s; B' = beta - mean * s + bias = [9.5, 19.5].
        assert_eq!(
            g.initializers[&c.inputs[1]],
            f32s(&[2, 1, 1, 1], &[1.0, 2.0])
        );
        assert_eq!(g.initializers[&c.inputs[2]], f32s(&[2], &[9.5, 19.5]));
        assert_eq!(g.initializers.len(), 2, "the old parameters are dropped");
    }

    #[test]
    fn shared_or_output_values_are_not_folded() {
        let conv = Op::Conv(ConvAttrs {
            kernel_shape: [1, 1],
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
            group: 1,
        });
        let nodes = vec![
            node("c", conv, &["x", "w"], "c_out"),
            node("add", Op::Add, &["c_out", "bias"], "y"),
        ];
        let inits = [
            ("w", f32s(&[2, 1, 1, 1], &[1.0, 2.0])),
            ("bias", f32s(&[2, 1, 1], &[1.0, 2.0])),
        ];
        // The conv output is also a graph output: folding would change it.
        let mut g = graph(nodes.clone(), &["y", "c_out"], &inits);
        simplify(&mut g);
        assert_eq!(g.nodes.len(), 2);
        // A bias that is not per channel ([2, 2] would broadcast over H and W) is not folded.
        let mut g = graph(
            nodes,
            &["y"],
            &[inits[0].clone(), ("bias", f32s(&[2, 1, 2], &[1.0; 4]))],
        );
        simplify(&mut g);
        assert_eq!(g.nodes.len(), 2);
    }
}
