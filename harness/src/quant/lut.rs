//! Elementwise chains run as 256-entry look-up tables on u8 codes (static mode).
//!
//! A chain is a run of consecutive nodes whose only non-constant input is one u8 value `v` (or values the
//! chain computed from `v`), every other input a one-element f32 initializer, every op an f32 elementwise map
//! ([`lut_op`]); values computed inside the chain are read only inside it and are not graph outputs. Hard-swish
//! written as `Add(x, 3) -> Clip(0, 6) -> Mul(x, .) -> Div(6)` is one chain (it reads `x` twice); so is a lone
//! `HardSigmoid` of a convolution's output. [`lut_chain`] finds them; the builder and `harness inspect` both
//! ask it.
//!
//! The table holds, for each code `c`, the chain evaluated by [`eval_op`] on `dequantize(c)` with `v`'s
//! parameters, in node order: the float path's arithmetic, element by element, so its entries are bit for bit
//! what the float path computes for that code. When every consumer of the chain's output `y` is a static
//! quantized layer (and `y` is not a graph output) the entries are then quantized with `y`'s calibrated
//! parameters by [`quantize_u8`], the function that layer's input quantization calls: `y` stays u8 (NHWC
//! when `v` was) and the layer takes it as it is. Otherwise the table holds the f32 values and `y` is f32 in
//! the graph's layout, as the float path gives it.

use std::collections::HashMap;

use kernels::frame::quantize::{dequantize_u8, quantize_u8};
use ndarray::{Array1, ArrayD};
use strategies::ActParams;

use super::QuantError;
use crate::exec::eval::eval_op;
use crate::ir::{BinaryOp, Graph, Node, Op, Tensor, UnaryOp};

/// Ops a chain may hold: f32 maps of their inputs, elementwise with broadcasting against scalars.
pub fn lut_op(op: &Op) -> bool {
    match op {
        Op::Add | Op::Relu | Op::Identity | Op::Variadic(_) => true,
        Op::Unary(u) => !matches!(u, UnaryOp::Not),
        Op::Binary(b) => matches!(
            b,
            BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Pow
        ),
        _ => false,
    }
}

/// A chain of a graph: nodes `start..end`, the u8 value it reads and the value it writes.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainSpan {
    pub start: usize,
    pub end: usize,
    pub input: String,
    pub output: String,
    /// The output stays u8 (every consumer is a static quantized layer); else it is f32.
    pub u8_output: bool,
}

fn scalar_constant(graph: &Graph, name: &str) -> bool {
    graph
        .initializers
        .get(name)
        .and_then(Tensor::as_f32)
        .is_some_and(|t| t.len() == 1)
}

/// The longest chain that starts at `graph.nodes[start]`, if one does. `is_u8(v)`: `v` is u8 at run time;
/// `static_layer(node)`: `node` becomes a static quantized layer. A chain does not start with a Relu of the u8
/// value (Relu keeps u8 values u8 with their parameters already) and holds no Relu of it.
pub fn lut_chain(
    graph: &Graph,
    start: usize,
    is_u8: impl Fn(&str) -> bool,
    static_layer: impl Fn(&Node) -> bool,
) -> Option<ChainSpan> {
    let first = graph.nodes.get(start)?;
    if !lut_op(&first.op) {
        return None;
    }
    let mut dynamic = first
        .inputs
        .iter()
        .filter(|i| !i.is_empty() && !scalar_constant(graph, i));
    let input = dynamic.next()?.clone();
    if dynamic.any(|i| *i != input) || !is_u8(&input) || graph.initializers.contains_key(&input) {
        return None;
    }
    // Grow while each node reads only the chain's values and scalar constants.
    let mut inside: Vec<&str> = vec![&input];
    let mut end = start;
    for node in &graph.nodes[start..] {
        let reads_chain = node.inputs.iter().any(|i| inside.contains(&i.as_str()));
        let ok = lut_op(&node.op)
            && node.outputs.len() == 1
            && reads_chain
            && node
                .inputs
                .iter()
                .all(|i| i.is_empty() || inside.contains(&i.as_str()) || scalar_constant(graph, i))
            && !(node.op == Op::Relu && node.inputs.first() == Some(&input));
        if !ok {
            break;
        }
        inside.push(&node.outputs[0]);
        end += 1;
    }
    let is_output = |v: &str| graph.outputs.iter().any(|o| o.name == v);
    let readers = |v: &str| readers(graph, v);
    // The longest prefix whose inner values are read only inside it.
    (start + 1..=end).rev().find_map(|e| {
        let inner_ok = graph.nodes[start..e - 1].iter().all(|n| {
            let v = &n.outputs[0];
            !is_output(v) && readers(v).into_iter().all(|j| (start..e).contains(&j))
        });
        if !inner_ok {
            return None;
        }
        let output = graph.nodes[e - 1].outputs[0].clone();
        let consumers = readers(&output);
        let u8_output = !is_output(&output)
            && !consumers.is_empty()
            && consumers.iter().all(|&j| static_layer(&graph.nodes[j]));
        Some(ChainSpan {
            start,
            end: e,
            input: input.clone(),
            output,
            u8_output,
        })
    })
}

/// Indices of the nodes that read `v`.
fn readers(graph: &Graph, v: &str) -> Vec<usize> {
    graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.inputs.iter().any(|i| i == v))
        .map(|(j, _)| j)
        .collect()
}

/// Runs `nodes` in order on the f32 value `x` of `input` (constants from `constants`), as the float path
/// does; returns the last node's output.
pub(crate) fn eval_chain(
    nodes: &[Node],
    input: &str,
    x: Tensor,
    constants: &HashMap<String, Tensor>,
    gemm: &dyn kernels::GemmF32,
) -> Result<Tensor, QuantError> {
    let mut values: HashMap<&str, Tensor> = HashMap::new();
    values.insert(input, x);
    let mut last = None;
    for node in nodes {
        let args = node
            .inputs
            .iter()
            .map(|name| {
                if name.is_empty() {
                    return Ok(None);
                }
                values
                    .get(name.as_str())
                    .or_else(|| constants.get(name))
                    .map(Some)
                    .ok_or_else(|| QuantError::MissingValue(name.clone()))
            })
            .collect::<Result<Vec<_>, QuantError>>()?;
        let y = eval_op(&node.op, &args, gemm).map_err(|e| QuantError::Node {
            node: node.name.clone(),
            op: node.op.op_type(),
            message: e.to_string(),
        })?;
        values.insert(&node.outputs[0], y);
        last = Some(node.outputs[0].as_str());
    }
    let last = last.ok_or_else(|| QuantError::Unsupported("an empty elementwise chain".into()))?;
    Ok(values.remove(last).expect("inserted above"))
}

/// A chain's table: u8 codes of the output, or its f32 values.
#[derive(Clone, Debug)]
pub(crate) enum Table {
    U8(Box<[u8; 256]>),
    F32(Box<[f32; 256]>),
}

/// A chain as the executor runs it.
#[derive(Clone, Debug)]
pub(crate) struct LutChain {
    pub(crate) input: String,
    pub(crate) output: String,
    /// The original nodes, in order: what the table was computed from, what the QDQ export and the artifact
    /// write, and what runs if the input ever arrives with other parameters than `input_params`.
    pub(crate) nodes: Vec<Node>,
    pub(crate) input_params: ActParams,
    /// `Some`: the output is u8 with these parameters; `None`: it is f32.
    pub(crate) output_params: Option<ActParams>,
    pub(crate) table: Table,
}

impl LutChain {
    /// Evaluates the chain on the 256 codes of `input_params` and builds the table (module docs).
    pub(crate) fn new(
        nodes: Vec<Node>,
        input: String,
        input_params: ActParams,
        output_params: Option<ActParams>,
        constants: &HashMap<String, Tensor>,
        gemm: &dyn kernels::GemmF32,
    ) -> Result<Self, QuantError> {
        let output = nodes
            .last()
            .map(|n| n.outputs[0].clone())
            .ok_or_else(|| QuantError::Unsupported("an empty elementwise chain".into()))?;
        let codes: Vec<u8> = (0..=255).collect();
        let mut x = vec![0f32; 256];
        dequantize_u8(&codes, input_params.scale, input_params.zero_point, &mut x);
        let y = eval_chain(
            &nodes,
            &input,
            Tensor::F32(Array1::from(x).into_dyn()),
            constants,
            gemm,
        )?;
        let last = nodes.last().expect("non-empty");
        let y: Vec<f32> = match y {
            Tensor::F32(a) if a.len() == 256 => a.iter().copied().collect(),
            other => {
                return Err(QuantError::Node {
                    node: last.name.clone(),
                    op: last.op.op_type(),
                    message: format!(
                        "an elementwise chain gave a {} tensor of shape {:?} for 256 codes",
                        other.dtype(),
                        other.shape()
                    ),
                });
            }
        };
        let table = match output_params {
            Some(p) => {
                let mut q = Box::new([0u8; 256]);
                quantize_u8(&y, p.scale, p.zero_point, q.as_mut_slice());
                Table::U8(q)
            }
            None => Table::F32(Box::new(y.try_into().expect("256 values"))),
        };
        Ok(LutChain {
            input,
            output,
            nodes,
            input_params,
            output_params,
            table,
        })
    }

    /// `y[i] = table[q[i]]`.
    pub(crate) fn apply_u8(&self, q: &ArrayD<u8>) -> Option<ArrayD<u8>> {
        match &self.table {
            Table::U8(t) => Some(q.mapv(|c| t[c as usize])),
            Table::F32(_) => None,
        }
    }

    /// `y[i] = table[q[i]]` for an f32 table.
    pub(crate) fn apply_f32(&self, q: &ArrayD<u8>) -> Option<ArrayD<f32>> {
        match &self.table {
            Table::F32(t) => Some(q.mapv(|c| t[c as usize])),
            Table::U8(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ValueInfo;
    use std::collections::BTreeMap;

    fn scalar(v: f32) -> Tensor {
        Tensor::F32(ArrayD::from_elem(ndarray::IxDyn(&[1]), v))
    }

    fn node(name: &str, op: Op, inputs: &[&str], output: &str) -> Node {
        Node {
            name: name.into(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
        }
    }

    /// `x -> hard-swish (4 nodes) -> y`, `y` read by `reader`.
    fn hardswish(reader: Op) -> Graph {
        let mut init = BTreeMap::new();
        init.insert("three".to_string(), scalar(3.0));
        init.insert("six".to_string(), scalar(6.0));
        Graph {
            name: "hs".into(),
            opset: 13,
            inputs: vec![ValueInfo {
                name: "x".into(),
                shape: vec![],
            }],
            outputs: vec![ValueInfo {
                name: "out".into(),
                shape: vec![],
            }],
            initializers: init,
            nodes: vec![
                node("add", Op::Add, &["x", "three"], "a"),
                node(
                    "clip",
                    Op::Unary(UnaryOp::Clip { min: 0.0, max: 6.0 }),
                    &["a"],
                    "c",
                ),
                node("mul", Op::Binary(BinaryOp::Mul), &["x", "c"], "m"),
                node("div", Op::Binary(BinaryOp::Div), &["m", "six"], "y"),
                node("reader", reader, &["y"], "out"),
            ],
        }
    }

    #[test]
    fn hardswish_is_one_chain_whose_output_is_u8_only_before_static_layers() {
        let g = hardswish(Op::MatMul);
        let span = lut_chain(&g, 0, |v| v == "x", |n| n.op == Op::MatMul).unwrap();
        assert_eq!((span.start, span.end), (0, 4));
        assert_eq!((span.input.as_str(), span.output.as_str()), ("x", "y"));
        assert!(span.u8_output);
        // A float reader: the chain still runs as a table, with f32 entries.
        let g = hardswish(Op::GlobalAveragePool);
        let span = lut_chain(&g, 0, |v| v == "x", |n| n.op == Op::MatMul).unwrap();
        assert_eq!(span.end, 4);
        assert!(!span.u8_output);
        // Not u8: no chain.
        assert!(lut_chain(&g, 0, |_| false, |_| true).is_none());
    }

    #[test]
    fn an_inner_value_read_outside_cuts_the_chain() {
        let mut g = hardswish(Op::MatMul);
        // `c` is now a graph output: the chain stops before the node that reads it.
        g.outputs.push(ValueInfo {
            name: "c".into(),
            shape: vec![],
        });
        let span = lut_chain(&g, 0, |v| v == "x", |_| true).unwrap();
        assert_eq!((span.end, span.output.as_str()), (2, "c"));
        assert!(!span.u8_output, "a graph output is dequantized");
    }

    #[test]
    fn table_entries_are_the_float_paths_values() {
        let g = hardswish(Op::MatMul);
        let constants: HashMap<String, Tensor> = g
            .initializers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let gemm = kernels::select(None).unwrap().gemm_f32;
        let p = ActParams {
            scale: 0.05,
            zero_point: 100,
        };
        let lut =
            LutChain::new(g.nodes[..4].to_vec(), "x".into(), p, None, &constants, gemm).unwrap();
        let codes =
            ArrayD::from_shape_vec(ndarray::IxDyn(&[2, 3]), vec![0, 50, 100, 130, 200, 255])
                .unwrap();
        let y = lut.apply_f32(&codes).unwrap();
        for (&c, &v) in codes.iter().zip(y.iter()) {
            let x = (c as i32 - 100) as f32 * 0.05;
            assert_eq!(v, x * (x + 3.0).clamp(0.0, 6.0) / 6.0, "code {c}");
        }
        let out = ActParams {
            scale: 0.02,
            zero_point: 10,
        };
        let lut = LutChain::new(
            g.nodes[..4].to_vec(),
            "x".into(),
            p,
            Some(out),
            &constants,
            gemm,
        )
        .unwrap();
        let q = lut.apply_u8(&codes).unwrap();
        let mut want = vec![0u8; 6];
        quantize_u8(y.as_slice().unwrap(), 0.02, 10, &mut want);
        assert_eq!(q.as_slice().unwrap(), want.as_slice());
        assert_eq!(q.shape(), &[2, 3]);
    }
}
