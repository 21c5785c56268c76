//! Graph executors. This module owns the execution error type and the helpers every executor shares
//! (value numbering, last-use analysis, input checking). The op implementations are pure functions over
//! ndarray views: [`ops`] (shape rules, MaxPool, Conv / Gemm / MatMul on the kernels crate), [`nn`] (the
//! other neural-network ops), [`elementwise`], [`movement`] (data movement and shape ops) and [`broadcast`]
//! (numpy broadcasting as slice runs); [`eval::eval_op`] runs any op on tensors. [`reference`] is the FP32
//! reference executor whose outputs every quantized run is compared against.

pub mod broadcast;
pub mod elementwise;
pub mod eval;
pub mod movement;
pub mod nn;
pub mod ops;
pub mod reference;

use std::collections::HashMap;

use ndarray::ArrayD;

use crate::ir::{self, Dim};

pub use ops::OpError;
pub use reference::Fp32Executor;

/// Why a graph could not be prepared or run. Node-level variants name the node, its op type and the shapes
/// involved.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("graph input \"{name}\" was not provided (graph inputs: {expected:?})")]
    MissingInput { name: String, expected: Vec<String> },

    #[error("\"{name}\" is not a graph input (graph inputs: {expected:?})")]
    UnknownInput { name: String, expected: Vec<String> },

    #[error("graph input \"{name}\" was provided twice")]
    DuplicateInput { name: String },

    #[error(
        "graph input \"{name}\": shape {got:?} does not match the declared shape {declared} (dimension 0 is free)"
    )]
    InputShape {
        name: String,
        declared: String,
        got: Vec<usize>,
    },

    #[error(
        "node \"{node}\" ({op}): input \"{value}\" is not a graph input, an initializer or an earlier node's output"
    )]
    MissingValue {
        node: String,
        op: &'static str,
        value: String,
    },

    #[error(
        "node \"{node}\" ({op}): output \"{value}\" is already a graph input, an initializer or an earlier output"
    )]
    Redefined {
        node: String,
        op: &'static str,
        value: String,
    },

    #[error("graph output \"{name}\" is not a graph input, an initializer or a node output")]
    MissingOutput { name: String },

    #[error(
        "node \"{node}\" ({op}): expected {expected}, got inputs {inputs:?} and outputs {outputs:?}"
    )]
    Arity {
        node: String,
        op: &'static str,
        expected: &'static str,
        inputs: Vec<String>,
        outputs: Vec<String>,
    },

    #[error(
        "node \"{node}\" ({op}): input \"{value}\" must be {expected}, got {got} with shape {shape:?}"
    )]
    DType {
        node: String,
        op: &'static str,
        value: String,
        expected: &'static str,
        got: &'static str,
        shape: Vec<usize>,
    },

    #[error("node \"{node}\" ({op}): {reason}")]
    Op {
        node: String,
        op: &'static str,
        reason: OpError,
    },
}

impl ExecError {
    pub(crate) fn op(node: &ir::Node, reason: OpError) -> Self {
        ExecError::Op {
            node: node.name.clone(),
            op: node.op.op_type(),
            reason,
        }
    }
}

/// Dense numbering of every value a graph mentions: graph inputs, initializers, node outputs.
#[derive(Clone, Debug)]
pub struct ValueTable {
    pub names: Vec<String>,
    pub index: HashMap<String, usize>,
}

impl ValueTable {
    fn intern(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), self.names.len() - 1);
        self.names.len() - 1
    }
}

/// What an executor needs to know about value lifetimes, computed once per graph.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub values: ValueTable,
    /// Per node: the value index of each input (`None` for an absent optional input).
    pub node_inputs: Vec<Vec<Option<usize>>>,
    /// Per node: the value index of its (single) output.
    pub node_output: Vec<usize>,
    /// Per node: runtime values to drop once the node has run (their last consumer).
    pub free_after: Vec<Vec<usize>>,
    /// Per node and input: whether the node may take the value by move (last use, not a graph output,
    /// not an initializer, read once by the node).
    pub consumable: Vec<Vec<bool>>,
    /// Value index of each graph input and output, in graph order.
    pub graph_inputs: Vec<usize>,
    pub graph_outputs: Vec<usize>,
}

impl Schedule {
    /// Numbers the graph's values and checks that every node reads only values defined before it, and that
    /// every node has exactly one output.
    pub fn new(graph: &ir::Graph) -> Result<Self, ExecError> {
        // Only defined values are ever interned, so "is in the table" means "defined earlier".
        let mut values = ValueTable {
            names: Vec::new(),
            index: HashMap::new(),
        };
        let graph_inputs = graph
            .inputs
            .iter()
            .map(|v| values.intern(&v.name))
            .collect();
        for name in graph.initializers.keys() {
            values.intern(name);
        }
        let mut node_inputs = Vec::with_capacity(graph.nodes.len());
        let mut node_output = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let op = node.op.op_type();
            let mut ins = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                if name.is_empty() {
                    ins.push(None);
                    continue;
                }
                match values.index.get(name.as_str()) {
                    Some(&i) => ins.push(Some(i)),
                    None => {
                        return Err(ExecError::MissingValue {
                            node: node.name.clone(),
                            op,
                            value: name.clone(),
                        });
                    }
                }
            }
            let extra_outputs = node.outputs.iter().skip(1).any(|o| !o.is_empty());
            let Some(out) = node
                .outputs
                .first()
                .filter(|o| !o.is_empty() && !extra_outputs)
            else {
                return Err(ExecError::Arity {
                    node: node.name.clone(),
                    op,
                    expected: "exactly one output",
                    inputs: node.inputs.clone(),
                    outputs: node.outputs.clone(),
                });
            };
            if values.index.contains_key(out.as_str()) {
                return Err(ExecError::Redefined {
                    node: node.name.clone(),
                    op,
                    value: out.clone(),
                });
            }
            node_inputs.push(ins);
            node_output.push(values.intern(out));
        }
        let mut graph_outputs = Vec::with_capacity(graph.outputs.len());
        for v in &graph.outputs {
            match values.index.get(v.name.as_str()) {
                Some(&i) => graph_outputs.push(i),
                None => {
                    return Err(ExecError::MissingOutput {
                        name: v.name.clone(),
                    });
                }
            }
        }

        // Last consumer of each runtime value; graph outputs live to the end.
        let n = values.names.len();
        let is_const: Vec<bool> = values
            .names
            .iter()
            .map(|v| graph.initializers.contains_key(v))
            .collect();
        let never = usize::MAX;
        let mut last_use = vec![None; n];
        for (node, ins) in node_inputs.iter().enumerate() {
            for &i in ins.iter().flatten() {
                last_use[i] = Some(node);
            }
        }
        for &o in &graph_outputs {
            last_use[o] = Some(never);
        }
        let mut free_after = vec![Vec::new(); graph.nodes.len()];
        for (v, last) in last_use.iter().enumerate() {
            if let Some(node) = *last
                && node != never
                && !is_const[v]
            {
                free_after[node].push(v);
            }
        }
        // Outputs nobody reads are dropped right after they are produced.
        for (node, &o) in node_output.iter().enumerate() {
            if last_use[o].is_none() {
                free_after[node].push(o);
            }
        }
        let consumable = node_inputs
            .iter()
            .enumerate()
            .map(|(node, ins)| {
                ins.iter()
                    .map(|slot| {
                        slot.is_some_and(|v| {
                            last_use[v] == Some(node)
                                && !is_const[v]
                                && ins.iter().filter(|s| **s == Some(v)).count() == 1
                        })
                    })
                    .collect()
            })
            .collect();

        Ok(Schedule {
            values,
            node_inputs,
            node_output,
            free_after,
            consumable,
            graph_inputs,
            graph_outputs,
        })
    }
}

/// Checks the caller's inputs against the graph's declared inputs (names, rank and every fixed dimension but
/// the first, which is the free batch dimension) and returns them ordered as the graph declares them.
pub fn check_inputs<'a>(
    graph: &ir::Graph,
    inputs: &'a [(&str, ArrayD<f32>)],
) -> Result<Vec<&'a ArrayD<f32>>, ExecError> {
    check_named(graph, inputs, |a| a.shape())
}

/// [`check_inputs`] for inputs of any element type.
pub fn check_tensor_inputs<'a>(
    graph: &ir::Graph,
    inputs: &'a [(&str, ir::Tensor)],
) -> Result<Vec<&'a ir::Tensor>, ExecError> {
    check_named(graph, inputs, ir::Tensor::shape)
}

fn check_named<'a, T>(
    graph: &ir::Graph,
    inputs: &'a [(&str, T)],
    shape_of: impl Fn(&T) -> &[usize],
) -> Result<Vec<&'a T>, ExecError> {
    let expected = || {
        graph
            .inputs
            .iter()
            .map(|v| v.name.clone())
            .collect::<Vec<_>>()
    };
    for (i, (name, _)) in inputs.iter().enumerate() {
        if !graph.inputs.iter().any(|v| v.name == *name) {
            return Err(ExecError::UnknownInput {
                name: (*name).to_owned(),
                expected: expected(),
            });
        }
        if inputs[..i].iter().any(|(n, _)| n == name) {
            return Err(ExecError::DuplicateInput {
                name: (*name).to_owned(),
            });
        }
    }
    graph
        .inputs
        .iter()
        .map(|decl| {
            let (_, array) = inputs
                .iter()
                .find(|(n, _)| *n == decl.name)
                .ok_or_else(|| ExecError::MissingInput {
                    name: decl.name.clone(),
                    expected: expected(),
                })?;
            // An empty declared shape means the file did not record one.
            let shape = shape_of(array);
            let fits = decl.shape.is_empty()
                || (decl.shape.len() == shape.len()
                    && decl
                        .shape
                        .iter()
                        .zip(shape)
                        .enumerate()
                        .all(|(axis, (d, &got))| {
                            axis == 0 || !matches!(d, Dim::Fixed(n) if *n != got)
                        }));
            if !fits {
                return Err(ExecError::InputShape {
                    name: decl.name.clone(),
                    declared: format_dims(&decl.shape),
                    got: shape.to_vec(),
                });
            }
            Ok(array)
        })
        .collect()
}

/// `[N, 1, 28, 28]`-style rendering of a declared shape.
pub fn format_dims(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Symbolic(s) => s.clone(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}
