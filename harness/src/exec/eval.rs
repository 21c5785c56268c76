//! One op on tensors, without preparation: [`eval_op`] is the executor's general path (ops without a
//! prepared fast path) and the importer's constant folder. It checks arity, element types and shapes and
//! returns an [`OpError`] naming them.

use kernels::GemmF32;
use ndarray::{ArrayD, ArrayViewD, Ix1, IxDyn};

use super::elementwise;
use super::movement::{self, per_dtype};
use super::nn;
use super::ops::{self, OpError, PackedConvWeights};
use crate::ir::{Op, Tensor};

/// How many inputs each op takes: `(required, max)` (`usize::MAX` for variadic ops).
pub fn arity(op: &Op) -> (usize, usize) {
    match op {
        Op::Conv(_) | Op::Gemm(_) | Op::ConvTranspose(_) => (2, 3),
        Op::MatMul
        | Op::Reshape { .. }
        | Op::Add
        | Op::Binary(_)
        | Op::Gather { .. }
        | Op::Expand
        | Op::Tile => (2, 2),
        Op::Relu
        | Op::MaxPool(_)
        | Op::Flatten { .. }
        | Op::AveragePool(_)
        | Op::GlobalAveragePool
        | Op::GlobalMaxPool
        | Op::Softmax { .. }
        | Op::Unary(_)
        | Op::Transpose { .. }
        | Op::Split { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Shape { .. }
        | Op::Cast { .. }
        | Op::Reduce { .. }
        | Op::ConstantOfShape { .. }
        | Op::Identity => (1, 1),
        Op::BatchNormalization { .. } => (5, 5),
        Op::LayerNormalization { .. } => (2, 3),
        Op::Variadic(_) | Op::Concat { .. } => (1, usize::MAX),
        Op::Slice => (3, 5),
        Op::Where | Op::Range => (3, 3),
        Op::Resize(_) => (1, 4),
    }
}

/// Input `i`, which the arity check guarantees is present for required slots.
fn input<'t>(op: &Op, inputs: &[Option<&'t Tensor>], i: usize) -> Result<&'t Tensor, OpError> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| OpError::Shape(format!("{}: input {i} is missing", op.op_type())))
}

pub(crate) fn f32_of<'t>(
    op: &Op,
    what: &str,
    t: &'t Tensor,
) -> Result<ArrayViewD<'t, f32>, OpError> {
    t.as_f32().map(|a| a.view()).ok_or_else(|| {
        OpError::Shape(format!(
            "{}: {what} must be f32, got {} with shape {:?}",
            op.op_type(),
            t.dtype(),
            t.shape()
        ))
    })
}

/// A 1-D (or scalar) i64 tensor as a vector.
pub(crate) fn i64_vec(op: &Op, what: &str, t: &Tensor) -> Result<Vec<i64>, OpError> {
    match t.as_i64() {
        Some(a) if a.ndim() <= 1 => Ok(a.iter().copied().collect()),
        _ => Err(OpError::Shape(format!(
            "{}: {what} must be a 1-D i64 tensor, got {} with shape {:?}",
            op.op_type(),
            t.dtype(),
            t.shape()
        ))),
    }
}

/// `t` reshaped (row-major) to `shape`, whose element count the caller has checked.
pub(crate) fn reshape_to(t: &Tensor, shape: &[usize]) -> Tensor {
    per_dtype!(t, a => a
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(shape))
        .expect("element count checked"))
}

/// As [`reshape_to`], reusing the buffer.
pub(crate) fn reshape_owned(t: Tensor, shape: &[usize]) -> Tensor {
    fn go<T: Clone>(a: ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
        let a = if a.is_standard_layout() {
            a
        } else {
            a.as_standard_layout().into_owned()
        };
        a.into_shape_with_order(IxDyn(shape))
            .expect("element count checked")
    }
    per_dtype!(t, a => go(a, shape))
}

/// The output shape of a pure reshape op (Flatten, Reshape, Squeeze, Unsqueeze) on input `x`, or `None` for
/// other ops.
pub(crate) fn reshape_target(
    op: &Op,
    x: &[usize],
    inputs: &[Option<&Tensor>],
) -> Option<Result<Vec<usize>, OpError>> {
    Some(match op {
        Op::Flatten { axis } => ops::flatten_shape(x, *axis),
        Op::Reshape { allowzero } => input(op, inputs, 1)
            .and_then(|t| i64_vec(op, "shape", t))
            .and_then(|target| ops::reshape_shape(x, &target, *allowzero)),
        Op::Squeeze { axes } => movement::squeeze_shape(x, axes.as_deref()),
        Op::Unsqueeze { axes } => movement::unsqueeze_shape(x, axes),
        Op::Identity => Ok(x.to_vec()),
        _ => return None,
    })
}

fn check_arity(op: &Op, inputs: &[Option<&Tensor>]) -> Result<(), OpError> {
    let (required, max) = arity(op);
    let n = inputs
        .iter()
        .rposition(Option::is_some)
        .map_or(0, |p| p + 1);
    if n < required || n > max || inputs[..required].iter().any(Option::is_none) {
        let shapes: Vec<Option<Vec<usize>>> = inputs
            .iter()
            .map(|t| t.map(|t| t.shape().to_vec()))
            .collect();
        return Err(OpError::Shape(format!(
            "{} takes {required}{} inputs, got {shapes:?}",
            op.op_type(),
            match max {
                usize::MAX => " or more".to_owned(),
                m if m == required => String::new(),
                m => format!(" to {m}"),
            }
        )));
    }
    Ok(())
}

/// Evaluates `op` on `inputs` (`None` for an absent optional input).
pub fn eval_op(op: &Op, inputs: &[Option<&Tensor>], gemm: &dyn GemmF32) -> Result<Tensor, OpError> {
    check_arity(op, inputs)?;
    let x = input(op, inputs, 0)?;
    let f32_in = |i: usize, what: &str| input(op, inputs, i).and_then(|t| f32_of(op, what, t));
    let opt = |i: usize| inputs.get(i).copied().flatten();
    if let Some(shape) = reshape_target(op, x.shape(), inputs) {
        return Ok(reshape_to(x, &shape?));
    }
    Ok(match op {
        Op::Conv(attrs) => {
            let w = PackedConvWeights::new(f32_in(1, "W")?, attrs)?;
            let bias = opt(2).map(|b| bias_vec(op, b)).transpose()?;
            Tensor::F32(ops::conv2d_f32(
                f32_of(op, "X", x)?,
                &w,
                bias.as_deref(),
                attrs,
                gemm,
            )?)
        }
        Op::ConvTranspose(attrs) => {
            let bias = opt(2).map(|b| bias_vec(op, b)).transpose()?;
            Tensor::F32(nn::conv_transpose2d(
                f32_of(op, "X", x)?,
                f32_in(1, "W")?,
                bias.as_deref(),
                attrs,
                gemm,
            )?)
        }
        Op::Gemm(attrs) => {
            let b = ops::pack_gemm_b(f32_in(1, "B")?, attrs.trans_b, gemm)?;
            let c = opt(2).map(|c| f32_of(op, "C", c)).transpose()?;
            Tensor::F32(ops::gemm_f32(f32_of(op, "A", x)?, &b, c, attrs, gemm)?)
        }
        Op::MatMul => Tensor::F32(ops::matmul_f32(f32_of(op, "A", x)?, f32_in(1, "B")?, gemm)?),
        Op::Relu => Tensor::F32(f32_of(op, "X", x)?.mapv(|v| if v < 0.0 { 0.0 } else { v })),
        Op::MaxPool(attrs) => Tensor::F32(ops::max_pool2d(f32_of(op, "X", x)?, attrs)?),
        Op::AveragePool(attrs) => Tensor::F32(nn::avg_pool2d(f32_of(op, "X", x)?, attrs)?),
        Op::GlobalAveragePool => Tensor::F32(nn::global_pool(f32_of(op, "X", x)?, false)?),
        Op::GlobalMaxPool => Tensor::F32(nn::global_pool(f32_of(op, "X", x)?, true)?),
        Op::Add => elementwise::add(x, input(op, inputs, 1)?)?,
        Op::Binary(b) => elementwise::binary(*b, x, input(op, inputs, 1)?)?,
        Op::Unary(u) => elementwise::unary(*u, x, gemm.isa())?,
        Op::Variadic(v) => {
            let all: Vec<&Tensor> = inputs
                .iter()
                .map(|t| t.ok_or_else(|| missing(op)))
                .collect::<Result<_, _>>()?;
            elementwise::variadic(*v, &all)?
        }
        Op::BatchNormalization { epsilon } => Tensor::F32(nn::batch_norm(
            f32_of(op, "X", x)?,
            [
                f32_in(1, "scale")?,
                f32_in(2, "B")?,
                f32_in(3, "mean")?,
                f32_in(4, "var")?,
            ],
            *epsilon,
        )?),
        Op::LayerNormalization { axis, epsilon } => Tensor::F32(nn::layer_norm(
            f32_of(op, "X", x)?,
            f32_in(1, "Scale")?,
            opt(2).map(|b| f32_of(op, "B", b)).transpose()?,
            *axis,
            *epsilon,
        )?),
        Op::Softmax { axis, legacy } => {
            Tensor::F32(nn::softmax(f32_of(op, "X", x)?, *axis, *legacy)?)
        }
        Op::Transpose { perm } => {
            per_dtype!(x, a => movement::transpose(a.view(), perm.as_deref())?)
        }
        Op::Concat { axis } => {
            let all: Vec<&Tensor> = inputs
                .iter()
                .map(|t| t.ok_or_else(|| missing(op)))
                .collect::<Result<_, _>>()?;
            concat(op, &all, *axis)?
        }
        Op::Slice => {
            let v = |i: usize, what: &str| opt(i).map(|t| i64_vec(op, what, t)).transpose();
            let (starts, ends) = (
                v(1, "starts")?.unwrap_or_default(),
                v(2, "ends")?.unwrap_or_default(),
            );
            let (axes, steps) = (v(3, "axes")?, v(4, "steps")?);
            per_dtype!(x, a => movement::slice(a.view(), &starts, &ends, axes.as_deref(), steps.as_deref())?)
        }
        Op::Split {
            axis,
            sizes,
            parts,
            index,
        } => {
            per_dtype!(x, a => movement::split(a.view(), *axis, sizes.as_deref(), *parts, *index)?)
        }
        Op::Gather { axis } => {
            let idx = input(op, inputs, 1)?;
            let Some(idx) = idx.as_i64() else {
                return Err(OpError::Shape(format!(
                    "Gather: indices must be i64 (or i32), got {} with shape {:?}",
                    idx.dtype(),
                    idx.shape()
                )));
            };
            per_dtype!(x, a => movement::gather(a.view(), idx.view(), *axis)?)
        }
        Op::Shape { start, end } => Tensor::I64(movement::shape_of(x.shape(), *start, *end)),
        Op::Cast { to } => elementwise::cast(x, *to),
        Op::Expand => {
            let shape = i64_vec(op, "shape", input(op, inputs, 1)?)?;
            per_dtype!(x, a => movement::expand(a.view(), &shape)?)
        }
        Op::Tile => {
            let repeats = i64_vec(op, "repeats", input(op, inputs, 1)?)?;
            per_dtype!(x, a => movement::tile(a.view(), &repeats)?)
        }
        Op::Where => elementwise::where_(x, input(op, inputs, 1)?, input(op, inputs, 2)?)?,
        Op::Reduce {
            op: r,
            axes,
            keepdims,
        } => match x {
            Tensor::F32(a) => {
                Tensor::F32(nn::reduce_f32(*r, a.view(), axes.as_deref(), *keepdims)?)
            }
            Tensor::I64(a) => {
                Tensor::I64(nn::reduce_i64(*r, a.view(), axes.as_deref(), *keepdims)?)
            }
        },
        Op::ConstantOfShape { value } => {
            movement::constant_of_shape(&i64_vec(op, "shape", x)?, value)?
        }
        Op::Range => movement::range(x, input(op, inputs, 1)?, input(op, inputs, 2)?)?,
        Op::Resize(attrs) => {
            let scales = match opt(2) {
                Some(t) => Some(
                    f32_of(op, "scales", t)?
                        .into_dimensionality::<Ix1>()
                        .map_err(|_| {
                            OpError::Shape(format!(
                                "Resize: scales must be 1-D, got shape {:?}",
                                t.shape()
                            ))
                        })?
                        .to_vec(),
                ),
                None => None,
            };
            let sizes = opt(3).map(|t| i64_vec(op, "sizes", t)).transpose()?;
            Tensor::F32(nn::resize(
                f32_of(op, "X", x)?,
                attrs,
                scales.as_deref(),
                sizes.as_deref(),
            )?)
        }
        Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity => unreachable!("handled as reshapes above"),
    })
}

fn missing(op: &Op) -> OpError {
    OpError::Shape(format!("{}: an input is missing", op.op_type()))
}

fn bias_vec(op: &Op, t: &Tensor) -> Result<Vec<f32>, OpError> {
    let b = f32_of(op, "B", t)?;
    b.into_dimensionality::<Ix1>()
        .map(|b| b.to_vec())
        .map_err(|_| OpError::Rank {
            what: "Conv bias",
            expected: "1-D",
            shape: t.shape().to_vec(),
        })
}

fn concat(op: &Op, all: &[&Tensor], axis: i64) -> Result<Tensor, OpError> {
    if all.iter().all(|t| matches!(t, Tensor::F32(_))) {
        let views: Vec<_> = all
            .iter()
            .filter_map(|t| t.as_f32())
            .map(|a| a.view())
            .collect();
        return Ok(Tensor::F32(movement::concat(&views, axis)?));
    }
    if all.iter().all(|t| matches!(t, Tensor::I64(_))) {
        let views: Vec<_> = all
            .iter()
            .filter_map(|t| t.as_i64())
            .map(|a| a.view())
            .collect();
        return Ok(Tensor::I64(movement::concat(&views, axis)?));
    }
    Err(OpError::Shape(format!(
        "{} needs inputs of one element type, got {:?}",
        op.op_type(),
        all.iter()
            .map(|t| (t.dtype(), t.shape()))
            .collect::<Vec<_>>()
    )))
}

#[cfg(test)]
mod tests {
    use ndarray::arr1;

    use super::*;
    use crate::ir::ReduceOp;

    fn i64s(v: &[i64]) -> Tensor {
        Tensor::I64(arr1(v).into_dyn())
    }

    fn gemm() -> &'static dyn GemmF32 {
        kernels::select(Some(kernels::Isa::Scalar))
            .unwrap()
            .gemm_f32
    }

    /// Sizes that come from data are bounded: a hostile shape is an error, never an abort.
    #[test]
    fn data_dependent_sizes_are_bounded() {
        let huge = i64s(&[1 << 20, 1 << 20]);
        let value = Op::ConstantOfShape {
            value: Tensor::F32(ArrayD::zeros(IxDyn(&[1]))),
        };
        let err = eval_op(&value, &[Some(&huge)], gemm()).unwrap_err();
        assert!(err.to_string().contains("ConstantOfShape"), "{err}");
        let x = Tensor::F32(ArrayD::zeros(IxDyn(&[2, 1])));
        assert!(eval_op(&Op::Expand, &[Some(&x), Some(&huge)], gemm()).is_err());
        assert!(
            eval_op(
                &Op::Tile,
                &[Some(&x), Some(&i64s(&[1 << 40, 1 << 40]))],
                gemm()
            )
            .is_err()
        );
        let (a, b, d) = (i64s(&[0]), i64s(&[i64::MAX]), i64s(&[1]));
        assert!(eval_op(&Op::Range, &[Some(&a), Some(&b), Some(&d)], gemm()).is_err());
        assert!(eval_op(&Op::Range, &[Some(&a), Some(&b), Some(&i64s(&[0]))], gemm()).is_err());
        // Extreme slice steps and bounds clamp instead of overflowing.
        let v = Tensor::I64(arr1(&[0i64, 1, 2, 3]).into_dyn());
        let sliced = eval_op(
            &Op::Slice,
            &[
                Some(&v),
                Some(&i64s(&[i64::MAX])),
                Some(&i64s(&[i64::MIN])),
                None,
                Some(&i64s(&[i64::MIN])),
            ],
            gemm(),
        )
        .unwrap();
        assert_eq!(sliced, i64s(&[3]));
    }

    #[test]
    fn arity_and_types_are_checked() {
        let x = Tensor::F32(ArrayD::zeros(IxDyn(&[2, 3])));
        let err = eval_op(&Op::Add, &[Some(&x)], gemm()).unwrap_err();
        assert!(err.to_string().contains("Add takes 2 inputs"), "{err}");
        let err = eval_op(&Op::Gather { axis: 0 }, &[Some(&x), Some(&x)], gemm()).unwrap_err();
        assert!(err.to_string().contains("indices must be i64"), "{err}");
        let r = Op::Reduce {
            op: ReduceOp::Mean,
            axes: Some(vec![2]),
            keepdims: true,
        };
        let err = eval_op(&r, &[Some(&x)], gemm()).unwrap_err();
        assert!(
            err.to_string()
                .contains("axis 2 is out of range for rank 2"),
            "{err}"
        );
        let empty = Tensor::F32(ArrayD::zeros(IxDyn(&[2, 3, 0])));
        assert!(eval_op(&Op::GlobalAveragePool, &[Some(&empty)], gemm()).is_err());
    }
}
