//! `ModelProto` -> `ir::Graph` conversion: tensor decoding, attribute parsing and validation, `Constant`
//! folding and the topological-order check.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use ndarray::{ArrayD, IxDyn};

use super::ImportError;
use super::proto::{
    self, AttributeProto, AttributeType, DataLocation, DataType, NodeProto, TensorProto,
    ValueInfoProto, tensor_shape_proto::dimension, type_proto,
};
use crate::ir::{self, ConvAttrs, Dim, GemmAttrs, Op, PoolAttrs, Tensor, ValueInfo};

/// Converts a decoded model into the IR; `source` names the file in errors.
pub fn import_model(model: &proto::ModelProto, source: &Path) -> Result<ir::Graph, ImportError> {
    let bad_model = |reason: String| ImportError::BadModel {
        path: source.to_owned(),
        reason,
    };
    let opset = default_opset(model).ok_or_else(|| {
        bad_model(format!(
            "no default-domain (\"\" / \"ai.onnx\") entry in opset_import (found: {:?})",
            model
                .opset_import
                .iter()
                .map(|o| (&o.domain, o.version))
                .collect::<Vec<_>>()
        ))
    })?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| bad_model("model has no graph".to_owned()))?;
    if let Some(sparse) = graph.sparse_initializer.first() {
        let name = sparse.values.as_ref().map_or("", |v| v.name.as_str());
        return Err(bad_model(format!(
            "sparse initializer \"{name}\" is not supported"
        )));
    }

    let cx = Ctx {
        path: source,
        opset,
    };
    let mut initializers = BTreeMap::new();
    for t in &graph.initializer {
        if t.name.is_empty() {
            return Err(tensor_err(source, t, "initializer has no name"));
        }
        if initializers
            .insert(t.name.clone(), tensor_from_proto(t, source)?)
            .is_some()
        {
            return Err(bad_model(format!(
                "initializer \"{}\" is defined twice",
                t.name
            )));
        }
    }

    // Values defined so far, in file order: graph inputs, initializers, then node outputs as they appear.
    let mut defined: HashSet<&str> = graph.input.iter().map(|v| v.name.as_str()).collect();
    defined.extend(graph.initializer.iter().map(|t| t.name.as_str()));

    let mut nodes = Vec::with_capacity(graph.node.len());
    for (index, node) in graph.node.iter().enumerate() {
        let name = if node.name.is_empty() {
            format!("{}_{index}", node.op_type)
        } else {
            node.name.clone()
        };
        let nx = NodeCtx {
            cx: &cx,
            node,
            name: &name,
        };
        for input in node.input.iter().filter(|i| !i.is_empty()) {
            if !defined.contains(input.as_str()) {
                return Err(ImportError::NotTopological {
                    path: source.to_owned(),
                    node: name,
                    op_type: node.op_type.clone(),
                    value: input.clone(),
                });
            }
        }
        for output in node.output.iter().filter(|o| !o.is_empty()) {
            if !defined.insert(output.as_str()) {
                return Err(nx.invalid(format!(
                    "output \"{output}\" is already defined earlier in the graph"
                )));
            }
        }

        if !is_default_domain(&node.domain) {
            let version = model
                .opset_import
                .iter()
                .find(|o| o.domain == node.domain)
                .map_or(0, |o| o.version);
            return Err(ImportError::UnsupportedOp {
                path: source.to_owned(),
                op_type: format!("{}.{}", node.domain, node.op_type),
                node: name,
                opset: version,
            });
        }
        if node.op_type == "Constant" {
            let (out, tensor) = fold_constant(&nx)?;
            initializers.insert(out, tensor);
            continue;
        }
        let op = convert_op(&nx, &initializers)?;
        let mut outputs = node.output.clone();
        while outputs.last().is_some_and(String::is_empty) {
            outputs.pop();
        }
        if outputs.len() != 1 || outputs[0].is_empty() {
            return Err(nx.invalid(format!(
                "expected exactly one output, got {:?}",
                node.output
            )));
        }
        nodes.push(ir::Node {
            name,
            op,
            inputs: node.input.clone(),
            outputs,
        });
    }

    let inputs = graph
        .input
        .iter()
        .filter(|v| !initializers.contains_key(&v.name))
        .map(|v| value_info(v, &cx))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = graph
        .output
        .iter()
        .map(|v| {
            if defined.contains(v.name.as_str()) || initializers.contains_key(&v.name) {
                value_info(v, &cx)
            } else {
                Err(bad_model(format!(
                    "graph output \"{}\" is not produced by any node",
                    v.name
                )))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;

    Ok(ir::Graph {
        name: graph.name.clone(),
        opset,
        inputs,
        outputs,
        initializers,
        nodes,
    })
}

fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

fn default_opset(model: &proto::ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .filter(|o| is_default_domain(&o.domain))
        .map(|o| o.version)
        .max()
}

struct Ctx<'a> {
    path: &'a Path,
    opset: i64,
}

fn tensor_err(path: &Path, t: &TensorProto, reason: impl Into<String>) -> ImportError {
    ImportError::Tensor {
        path: path.to_owned(),
        tensor: t.name.clone(),
        data_type: data_type_name(t.data_type),
        dims: t.dims.clone(),
        reason: reason.into(),
    }
}

struct NodeCtx<'a> {
    cx: &'a Ctx<'a>,
    node: &'a NodeProto,
    name: &'a str,
}

impl NodeCtx<'_> {
    fn invalid(&self, reason: impl Into<String>) -> ImportError {
        ImportError::InvalidNode {
            path: self.cx.path.to_owned(),
            node: self.name.to_owned(),
            op_type: self.node.op_type.clone(),
            opset: self.cx.opset,
            reason: reason.into(),
        }
    }

    fn unsupported_value(&self, attribute: &'static str, value: String) -> ImportError {
        ImportError::UnsupportedAttribute {
            path: self.cx.path.to_owned(),
            node: self.name.to_owned(),
            op_type: self.node.op_type.clone(),
            opset: self.cx.opset,
            attribute,
            value,
        }
    }

    fn unsupported_op(&self) -> ImportError {
        ImportError::UnsupportedOp {
            path: self.cx.path.to_owned(),
            op_type: self.node.op_type.clone(),
            node: self.name.to_owned(),
            opset: self.cx.opset,
        }
    }

    /// Checks the count of (possibly empty) inputs and that the first `required` are present.
    fn expect_inputs(&self, required: usize, max: usize) -> Result<(), ImportError> {
        let inputs = &self.node.input;
        let n = inputs
            .iter()
            .rposition(|i| !i.is_empty())
            .map_or(0, |p| p + 1);
        if n < required || n > max || inputs[..required].iter().any(String::is_empty) {
            let expected = if required == max {
                format!("{required}")
            } else {
                format!("{required} to {max}")
            };
            return Err(self.invalid(format!("expected {expected} inputs, got {inputs:?}")));
        }
        Ok(())
    }

    fn attrs(&self) -> Result<Attrs<'_>, ImportError> {
        let mut map = HashMap::new();
        for a in &self.node.attribute {
            if !a.ref_attr_name.is_empty() {
                return Err(self.invalid(format!(
                    "attribute `{}` refers to function attribute `{}`, which is only valid inside functions",
                    a.name, a.ref_attr_name
                )));
            }
            if map.insert(a.name.as_str(), a).is_some() {
                return Err(self.invalid(format!("attribute `{}` is given twice", a.name)));
            }
        }
        Ok(Attrs { nx: self, map })
    }
}

/// A node's attributes; each getter consumes one, and [`Attrs::finish`] rejects any left unread.
struct Attrs<'a> {
    nx: &'a NodeCtx<'a>,
    map: HashMap<&'a str, &'a AttributeProto>,
}

impl<'a> Attrs<'a> {
    fn take(
        &mut self,
        name: &str,
        expected: AttributeType,
    ) -> Result<Option<&'a AttributeProto>, ImportError> {
        let Some(a) = self.map.remove(name) else {
            return Ok(None);
        };
        // IR version 1 files leave `type` unset; trust the field the caller reads in that case.
        if a.r#type != AttributeType::Undefined as i32 && a.r#type != expected as i32 {
            let got = AttributeType::try_from(a.r#type)
                .map_or_else(|_| format!("{}", a.r#type), |t| format!("{t:?}"));
            return Err(self.nx.invalid(format!(
                "attribute `{name}` must be {expected:?}, got {got}"
            )));
        }
        Ok(Some(a))
    }

    fn int(&mut self, name: &str) -> Result<Option<i64>, ImportError> {
        Ok(self.take(name, AttributeType::Int)?.map(|a| a.i))
    }

    fn float(&mut self, name: &str) -> Result<Option<f32>, ImportError> {
        Ok(self.take(name, AttributeType::Float)?.map(|a| a.f))
    }

    fn ints(&mut self, name: &str) -> Result<Option<&'a [i64]>, ImportError> {
        Ok(self
            .take(name, AttributeType::Ints)?
            .map(|a| a.ints.as_slice()))
    }

    fn floats(&mut self, name: &str) -> Result<Option<&'a [f32]>, ImportError> {
        Ok(self
            .take(name, AttributeType::Floats)?
            .map(|a| a.floats.as_slice()))
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, ImportError> {
        Ok(self
            .take(name, AttributeType::String)?
            .map(|a| String::from_utf8_lossy(&a.s).into_owned()))
    }

    fn tensor(&mut self, name: &str) -> Result<Option<&'a TensorProto>, ImportError> {
        match self.take(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => {
                a.t.as_ref()
                    .map(Some)
                    .ok_or_else(|| self.nx.invalid(format!("attribute `{name}` has no tensor")))
            }
        }
    }

    /// A boolean stored as an int attribute (0 or 1).
    fn flag(&mut self, name: &str) -> Result<Option<bool>, ImportError> {
        match self.int(name)? {
            None => Ok(None),
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            Some(v) => Err(self
                .nx
                .invalid(format!("attribute `{name}` must be 0 or 1, got {v}"))),
        }
    }

    /// A list of `len` values, each >= `min`.
    fn usizes<const N: usize>(
        &mut self,
        name: &str,
        min: i64,
    ) -> Result<Option<[usize; N]>, ImportError> {
        let Some(v) = self.ints(name)? else {
            return Ok(None);
        };
        if v.len() != N || v.iter().any(|&x| x < min) {
            return Err(self.nx.invalid(format!(
                "attribute `{name}` must be {N} values >= {min} (2-D only), got {v:?}"
            )));
        }
        let mut out = [0; N];
        for (o, &x) in out.iter_mut().zip(v) {
            *o = usize::try_from(x).map_err(|_| {
                self.nx
                    .invalid(format!("attribute `{name}` value {x} is too large"))
            })?;
        }
        Ok(Some(out))
    }

    /// Rejects attributes nobody read: silently ignoring one could change the op's meaning.
    fn finish(self) -> Result<(), ImportError> {
        let mut left: Vec<&str> = self.map.keys().copied().collect();
        if left.is_empty() {
            return Ok(());
        }
        left.sort_unstable();
        Err(self
            .nx
            .invalid(format!("unknown or unsupported attributes {left:?}")))
    }
}

fn convert_op(
    nx: &NodeCtx<'_>,
    initializers: &BTreeMap<String, Tensor>,
) -> Result<Op, ImportError> {
    let node = nx.node;
    let mut attrs = nx.attrs()?;
    let op = match node.op_type.as_str() {
        "Conv" => {
            nx.expect_inputs(2, 3)?;
            let weight_dims = initializers.get(&node.input[1]).map(|w| w.shape().to_vec());
            let kernel_shape = match (attrs.usizes::<2>("kernel_shape", 1)?, &weight_dims) {
                (Some(k), Some(w)) if w.len() == 4 && w[2..] != k => {
                    return Err(nx.invalid(format!(
                        "kernel_shape {k:?} does not match weight \"{}\" shape {w:?}",
                        node.input[1]
                    )));
                }
                (Some(k), _) => k,
                (None, Some(w)) if w.len() == 4 && w[2] > 0 && w[3] > 0 => [w[2], w[3]],
                (None, Some(w)) => {
                    return Err(nx.invalid(format!(
                        "only 2-D convolution is supported: weight \"{}\" has shape {w:?}, expected [c_out, c_in/group, kh, kw]",
                        node.input[1]
                    )));
                }
                (None, None) => {
                    return Err(nx.invalid(format!(
                        "kernel_shape is absent and weight \"{}\" is not an initializer to infer it from",
                        node.input[1]
                    )));
                }
            };
            let pads = spatial_pads(&mut attrs, nx)?;
            let strides = attrs.usizes::<2>("strides", 1)?.unwrap_or([1, 1]);
            let dilations = attrs.usizes::<2>("dilations", 1)?.unwrap_or([1, 1]);
            let group = match attrs.int("group")?.unwrap_or(1) {
                g if g >= 1 => {
                    usize::try_from(g).map_err(|_| nx.invalid(format!("group {g} is too large")))?
                }
                g => return Err(nx.invalid(format!("group must be >= 1, got {g}"))),
            };
            Op::Conv(ConvAttrs {
                kernel_shape,
                strides,
                pads,
                dilations,
                group,
            })
        }
        "Gemm" => {
            nx.expect_inputs(2, 3)?;
            Op::Gemm(GemmAttrs {
                alpha: attrs.float("alpha")?.unwrap_or(1.0),
                beta: attrs.float("beta")?.unwrap_or(1.0),
                trans_a: attrs.flag("transA")?.unwrap_or(false),
                trans_b: attrs.flag("transB")?.unwrap_or(false),
            })
        }
        "MatMul" => {
            nx.expect_inputs(2, 2)?;
            Op::MatMul
        }
        "Relu" => {
            nx.expect_inputs(1, 1)?;
            Op::Relu
        }
        "Add" => {
            nx.expect_inputs(2, 2)?;
            // Opsets < 7 used an explicit `broadcast`/`axis` scheme instead of numpy broadcasting.
            if let Some(b) = attrs.int("broadcast")? {
                return Err(nx.unsupported_value("broadcast", b.to_string()));
            }
            Op::Add
        }
        "MaxPool" => {
            nx.expect_inputs(1, 1)?;
            if node.output.get(1).is_some_and(|o| !o.is_empty()) {
                return Err(nx.invalid(format!(
                    "the indices output (\"{}\") is not supported",
                    node.output[1]
                )));
            }
            if let Some(order) = attrs.int("storage_order")?
                && order != 0
            {
                return Err(nx.unsupported_value("storage_order", order.to_string()));
            }
            let kernel_shape = attrs
                .usizes::<2>("kernel_shape", 1)?
                .ok_or_else(|| nx.invalid("attribute `kernel_shape` is required"))?;
            let pads = spatial_pads(&mut attrs, nx)?;
            Op::MaxPool(PoolAttrs {
                kernel_shape,
                strides: attrs.usizes::<2>("strides", 1)?.unwrap_or([1, 1]),
                pads,
                dilations: attrs.usizes::<2>("dilations", 1)?.unwrap_or([1, 1]),
                ceil_mode: attrs.flag("ceil_mode")?.unwrap_or(false),
            })
        }
        "Flatten" => {
            nx.expect_inputs(1, 1)?;
            Op::Flatten {
                axis: attrs.int("axis")?.unwrap_or(1),
            }
        }
        "Reshape" => {
            if node.input.len() < 2 && node.attribute.iter().any(|a| a.name == "shape") {
                return Err(nx.invalid(
                    "the `shape` attribute form of Reshape (opset < 5) is not supported; the shape must be an input",
                ));
            }
            nx.expect_inputs(2, 2)?;
            Op::Reshape {
                allowzero: attrs.flag("allowzero")?.unwrap_or(false),
            }
        }
        _ => return Err(nx.unsupported_op()),
    };
    attrs.finish()?;
    Ok(op)
}

/// `auto_pad` (NOTSET or VALID only) and `pads`, converted from ONNX `[h_begin, w_begin, h_end, w_end]` to
/// the IR's `[top, left, bottom, right]` (the same order for 2-D).
fn spatial_pads(attrs: &mut Attrs<'_>, nx: &NodeCtx<'_>) -> Result<[usize; 4], ImportError> {
    let auto_pad = attrs.string("auto_pad")?;
    let pads = attrs.usizes::<4>("pads", 0)?;
    match auto_pad.as_deref() {
        None | Some("NOTSET") => {
            let [h0, w0, h1, w1] = pads.unwrap_or([0; 4]);
            Ok([h0, w0, h1, w1])
        }
        Some("VALID") => match pads {
            Some(p) if p != [0; 4] => {
                Err(nx.invalid(format!("auto_pad VALID with non-zero pads {p:?}")))
            }
            _ => Ok([0; 4]),
        },
        Some(other) => Err(nx.unsupported_value("auto_pad", format!("\"{other}\""))),
    }
}

/// A `Constant` node's single output and its value.
fn fold_constant(nx: &NodeCtx<'_>) -> Result<(String, Tensor), ImportError> {
    let node = nx.node;
    if !node.input.iter().all(String::is_empty)
        || node.output.len() != 1
        || node.output[0].is_empty()
    {
        return Err(nx.invalid(format!(
            "expected no inputs and one output, got inputs {:?}, outputs {:?}",
            node.input, node.output
        )));
    }
    let mut attrs = nx.attrs()?;
    let mut values = Vec::new();
    if let Some(t) = attrs.tensor("value")? {
        values.push(tensor_from_proto(t, nx.cx.path)?);
    }
    if let Some(f) = attrs.float("value_float")? {
        values.push(Tensor::F32(ArrayD::from_elem(IxDyn(&[]), f)));
    }
    if let Some(f) = attrs.floats("value_floats")? {
        values.push(Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(&[f.len()]), f.to_vec()).expect("1-D shape"),
        ));
    }
    if let Some(i) = attrs.int("value_int")? {
        values.push(Tensor::I64(ArrayD::from_elem(IxDyn(&[]), i)));
    }
    if let Some(i) = attrs.ints("value_ints")? {
        values.push(Tensor::I64(
            ArrayD::from_shape_vec(IxDyn(&[i.len()]), i.to_vec()).expect("1-D shape"),
        ));
    }
    for unsupported in ["sparse_value", "value_string", "value_strings"] {
        if attrs.map.contains_key(unsupported) {
            return Err(nx.unsupported_value(
                unsupported,
                "(only numeric constants are supported)".to_owned(),
            ));
        }
    }
    attrs.finish()?;
    match values.len() {
        1 => Ok((node.output[0].clone(), values.pop().expect("one value"))),
        n => Err(nx.invalid(format!("expected exactly one value attribute, got {n}"))),
    }
}

fn data_type_name(data_type: i32) -> String {
    DataType::try_from(data_type).map_or_else(
        |_| format!("{data_type} (unknown)"),
        |t| format!("{t:?}").to_uppercase(),
    )
}

/// Decodes an initializer or `Constant` tensor. FLOAT becomes `Tensor::F32`; INT64 and INT32 become
/// `Tensor::I64`. Data may come from `raw_data` (little-endian) or the typed repeated field.
pub fn tensor_from_proto(t: &TensorProto, source: &Path) -> Result<Tensor, ImportError> {
    if t.data_location == DataLocation::External as i32 || !t.external_data.is_empty() {
        let location = t
            .external_data
            .iter()
            .find(|e| e.key == "location")
            .map_or("?", |e| e.value.as_str());
        return Err(tensor_err(
            source,
            t,
            format!("external data (location \"{location}\") is not supported"),
        ));
    }
    if t.segment.is_some() {
        return Err(tensor_err(source, t, "segmented tensors are not supported"));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut len: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| tensor_err(source, t, "negative dimension"))?;
        len = len
            .checked_mul(d)
            .ok_or_else(|| tensor_err(source, t, "element count overflows"))?;
        shape.push(d);
    }
    let shape = IxDyn(&shape);
    let wrong_len = |what: &str, got: usize| {
        tensor_err(
            source,
            t,
            format!("{what} holds {got} elements, dims need {len}"),
        )
    };

    match DataType::try_from(t.data_type) {
        Ok(DataType::Float) => {
            let data: Vec<f32> = if !t.raw_data.is_empty() {
                if t.raw_data.len() != len * 4 {
                    return Err(wrong_len("raw_data", t.raw_data.len() / 4));
                }
                t.raw_data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                    .collect()
            } else {
                if t.float_data.len() != len {
                    return Err(wrong_len("float_data", t.float_data.len()));
                }
                t.float_data.clone()
            };
            Ok(Tensor::F32(
                ArrayD::from_shape_vec(shape, data).expect("length checked"),
            ))
        }
        Ok(DataType::Int64) => {
            let data: Vec<i64> = if !t.raw_data.is_empty() {
                if t.raw_data.len() != len * 8 {
                    return Err(wrong_len("raw_data", t.raw_data.len() / 8));
                }
                t.raw_data
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect()
            } else {
                if t.int64_data.len() != len {
                    return Err(wrong_len("int64_data", t.int64_data.len()));
                }
                t.int64_data.clone()
            };
            Ok(Tensor::I64(
                ArrayD::from_shape_vec(shape, data).expect("length checked"),
            ))
        }
        Ok(DataType::Int32) => {
            let data: Vec<i64> = if !t.raw_data.is_empty() {
                if t.raw_data.len() != len * 4 {
                    return Err(wrong_len("raw_data", t.raw_data.len() / 4));
                }
                t.raw_data
                    .chunks_exact(4)
                    .map(|b| i64::from(i32::from_le_bytes(b.try_into().expect("4 bytes"))))
                    .collect()
            } else {
                if t.int32_data.len() != len {
                    return Err(wrong_len("int32_data", t.int32_data.len()));
                }
                t.int32_data.iter().map(|&v| i64::from(v)).collect()
            };
            Ok(Tensor::I64(
                ArrayD::from_shape_vec(shape, data).expect("length checked"),
            ))
        }
        _ => Err(tensor_err(
            source,
            t,
            "unsupported data type (only FLOAT, INT64 and INT32 are)",
        )),
    }
}

fn value_info(v: &ValueInfoProto, cx: &Ctx<'_>) -> Result<ValueInfo, ImportError> {
    let bad = |reason: String| ImportError::BadModel {
        path: cx.path.to_owned(),
        reason,
    };
    let Some(type_proto::Value::TensorType(tt)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(bad(format!(
            "graph input/output \"{}\" has no tensor type",
            v.name
        )));
    };
    // An absent shape means unknown rank; the IR records it as an empty shape.
    let dims = tt.shape.as_ref().map_or(&[][..], |s| s.dim.as_slice());
    let mut shape = Vec::with_capacity(dims.len());
    for (i, d) in dims.iter().enumerate() {
        shape.push(match &d.value {
            Some(dimension::Value::DimValue(n)) => {
                Dim::Fixed(usize::try_from(*n).map_err(|_| {
                    bad(format!(
                        "graph input/output \"{}\" has negative dimension {n} at axis {i}",
                        v.name
                    ))
                })?)
            }
            Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
            _ => Dim::Symbolic(format!("{}_dim{i}", v.name)),
        });
    }
    Ok(ValueInfo {
        name: v.name.clone(),
        shape,
    })
}
