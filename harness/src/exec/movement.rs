//! Data-movement and shape ops, generic over the element type: Transpose, Concat, Slice, Split, Squeeze,
//! Unsqueeze, Gather, Shape, Expand, Tile, Range and ConstantOfShape. Each validates its arguments against
//! the input shape and returns an [`OpError`] naming both.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Slice};

use super::ops::{OpError, broadcast_shapes, checked_elements, normalize_axis};
use crate::ir::Tensor;

/// Applies `$body` to the array inside a [`Tensor`] of any element type, rewrapping the result.
macro_rules! per_dtype {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            Tensor::F32($a) => Tensor::F32($body),
            Tensor::I64($a) => Tensor::I64($body),
        }
    };
}
pub(crate) use per_dtype;

/// `axis` of an op over a tensor of rank `rank`, in `-rank..rank` (or `..=rank` when `inclusive`).
pub fn resolve_axis(op: &str, axis: i64, rank: usize, inclusive: bool) -> Result<usize, OpError> {
    normalize_axis(axis, rank, inclusive)
        .ok_or_else(|| OpError::Shape(format!("{op}: axis {axis} is out of range for rank {rank}")))
}

/// Several axes, each resolved as by [`resolve_axis`]; duplicates are an error.
pub fn resolve_axes(
    op: &str,
    axes: &[i64],
    rank: usize,
    inclusive: bool,
) -> Result<Vec<usize>, OpError> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let a = resolve_axis(op, a, rank, inclusive)?;
        if out.contains(&a) {
            return Err(OpError::Shape(format!(
                "{op}: axes {axes:?} repeat an axis (rank {rank})"
            )));
        }
        out.push(a);
    }
    Ok(out)
}

/// Converts a count or dimension from an i64 tensor.
fn to_usize(op: &str, what: &str, v: i64) -> Result<usize, OpError> {
    usize::try_from(v).map_err(|_| OpError::Shape(format!("{op}: {what} {v} is negative")))
}

pub fn transpose<T: Clone>(a: ArrayViewD<T>, perm: Option<&[usize]>) -> Result<ArrayD<T>, OpError> {
    let rank = a.ndim();
    let perm: Vec<usize> = match perm {
        Some(p) => {
            let mut seen = vec![false; rank];
            let valid = p.len() == rank
                && p.iter()
                    .all(|&i| i < rank && !std::mem::replace(&mut seen[i], true));
            if !valid {
                return Err(OpError::Shape(format!(
                    "Transpose: perm {p:?} is not a permutation of the axes of shape {:?}",
                    a.shape()
                )));
            }
            p.to_vec()
        }
        None => (0..rank).rev().collect(),
    };
    Ok(a.permuted_axes(IxDyn(&perm))
        .as_standard_layout()
        .into_owned())
}

pub fn concat<T: Clone>(inputs: &[ArrayViewD<T>], axis: i64) -> Result<ArrayD<T>, OpError> {
    let shapes = || {
        inputs
            .iter()
            .map(|a| a.shape().to_vec())
            .collect::<Vec<_>>()
    };
    let Some(first) = inputs.first() else {
        return Err(OpError::Shape("Concat needs at least one input".into()));
    };
    let rank = first.ndim();
    let ax = resolve_axis("Concat", axis, rank, false)?;
    let fits = inputs.iter().all(|a| {
        a.ndim() == rank
            && a.shape()
                .iter()
                .zip(first.shape())
                .enumerate()
                .all(|(i, (x, y))| i == ax || x == y)
    });
    if !fits {
        return Err(OpError::Shape(format!(
            "Concat along axis {axis}: shapes {:?} differ outside that axis",
            shapes()
        )));
    }
    ndarray::concatenate(Axis(ax), inputs)
        .map(|a| a.as_standard_layout().into_owned())
        .map_err(|e| OpError::Shape(format!("Concat of {:?}: {e}", shapes())))
}

/// The ndarray slice for ONNX `start:end:step` on a dimension of length `dim` (clamped as ONNX specifies).
fn onnx_slice(start: i64, end: i64, step: i64, dim: usize) -> Slice {
    let d = dim as i64;
    // Any step beyond the dimension takes one element; keeping it in range avoids overflow below.
    let step = step.clamp(-(d + 1), d + 1);
    let wrap = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    if step > 0 {
        let s = wrap(start).clamp(0, d);
        let e = wrap(end).clamp(0, d);
        Slice::new(s as isize, Some(e.max(s) as isize), step as isize)
    } else {
        let s = wrap(start).clamp(-1, d - 1);
        let e = wrap(end).clamp(-1, d - 1);
        if s <= e {
            return Slice::new(0, Some(0), 1);
        }
        // numpy visits s, s+step, ... > e; ndarray walks [lo, s] backwards from s.
        let n = (s - e + (-step) - 1) / (-step);
        let lo = s + (n - 1) * step;
        Slice::new(lo as isize, Some((s + 1) as isize), step as isize)
    }
}

/// ONNX Slice (opset 10+ input form).
pub fn slice<T: Clone>(
    a: ArrayViewD<T>,
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<ArrayD<T>, OpError> {
    let rank = a.ndim();
    let n = starts.len();
    let default_axes: Vec<i64> = (0..n as i64).collect();
    let axes = axes.unwrap_or(&default_axes);
    if ends.len() != n || axes.len() != n || steps.is_some_and(|s| s.len() != n) {
        return Err(OpError::Shape(format!(
            "Slice: starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} differ in length"
        )));
    }
    let axes = resolve_axes("Slice", axes, rank, false)?;
    let mut per_axis = vec![Slice::new(0, None, 1); rank];
    for (i, &ax) in axes.iter().enumerate() {
        let step = steps.map_or(1, |s| s[i]);
        if step == 0 {
            return Err(OpError::Shape("Slice: a step is 0".into()));
        }
        per_axis[ax] = onnx_slice(starts[i], ends[i], step, a.shape()[ax]);
    }
    Ok(a.slice_each_axis(|d| per_axis[d.axis.index()])
        .as_standard_layout()
        .into_owned())
}

/// Output `index` of a Split into `parts` along `axis` (see [`crate::ir::Op::Split`]).
pub fn split<T: Clone>(
    a: ArrayViewD<T>,
    axis: i64,
    sizes: Option<&[usize]>,
    parts: usize,
    index: usize,
) -> Result<ArrayD<T>, OpError> {
    let ax = resolve_axis("Split", axis, a.ndim(), false)?;
    let dim = a.shape()[ax];
    let (start, len) = match sizes {
        Some(s) => {
            let total = s.iter().try_fold(0usize, |acc, &v| acc.checked_add(v));
            if total != Some(dim) || index >= s.len() {
                return Err(OpError::Shape(format!(
                    "Split: sizes {s:?} do not add up to dimension {dim} of shape {:?} (axis {axis})",
                    a.shape()
                )));
            }
            (s[..index].iter().sum(), s[index])
        }
        None => {
            let chunk = dim.div_ceil(parts.max(1));
            let start = (chunk * index).min(dim);
            (start, chunk.min(dim - start))
        }
    };
    Ok(a.slice_axis(Axis(ax), Slice::from(start..start + len))
        .as_standard_layout()
        .into_owned())
}

/// The shape after ONNX Squeeze: `axes` (or every axis of size 1) removed.
pub fn squeeze_shape(shape: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>, OpError> {
    match axes {
        None => Ok(shape.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let axes = resolve_axes("Squeeze", axes, shape.len(), false)?;
            if let Some(&bad) = axes.iter().find(|&&a| shape[a] != 1) {
                return Err(OpError::Shape(format!(
                    "Squeeze: axis {bad} of shape {shape:?} is not 1"
                )));
            }
            Ok(shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect())
        }
    }
}

/// The shape after ONNX Unsqueeze: a 1 inserted at each of `axes` (indices into the output).
pub fn unsqueeze_shape(shape: &[usize], axes: &[i64]) -> Result<Vec<usize>, OpError> {
    let rank = shape.len() + axes.len();
    let axes = resolve_axes("Unsqueeze", axes, rank, false)?;
    let mut rest = shape.iter();
    Ok((0..rank)
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                *rest.next().expect("rank counted")
            }
        })
        .collect())
}

/// ONNX Gather: `data[.., indices, ..]` along `axis`; the output shape is `data.shape[..axis] +
/// indices.shape + data.shape[axis + 1..]`.
pub fn gather<T: Clone>(
    a: ArrayViewD<T>,
    indices: ArrayViewD<i64>,
    axis: i64,
) -> Result<ArrayD<T>, OpError> {
    let ax = resolve_axis("Gather", axis, a.ndim(), false)?;
    let dim = a.shape()[ax] as i64;
    let idx = indices
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + dim } else { i };
            if (0..dim).contains(&j) {
                Ok(j as usize)
            } else {
                Err(OpError::Shape(format!(
                    "Gather: index {i} is out of range for axis {axis} of shape {:?}",
                    a.shape()
                )))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let picked = a.select(Axis(ax), &idx);
    let mut shape = a.shape()[..ax].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&a.shape()[ax + 1..]);
    let picked = picked.as_standard_layout().into_owned();
    Ok(picked
        .into_shape_with_order(IxDyn(&shape))
        .expect("same element count"))
}

/// ONNX Shape with opset-15 `start` / `end` (clamped to the rank).
pub fn shape_of(shape: &[usize], start: i64, end: Option<i64>) -> ArrayD<i64> {
    let r = shape.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    let dims: Vec<i64> = shape[s..e.max(s)].iter().map(|&d| d as i64).collect();
    ArrayD::from_shape_vec(IxDyn(&[dims.len()]), dims).expect("1-D")
}

/// ONNX Expand: broadcast `a` and `shape` together (numpy rules, both ways).
pub fn expand<T: Clone>(a: ArrayViewD<T>, shape: &[i64]) -> Result<ArrayD<T>, OpError> {
    let target = shape
        .iter()
        .map(|&d| to_usize("Expand", "dimension", d))
        .collect::<Result<Vec<_>, _>>()?;
    let out = broadcast_shapes(a.shape(), &target).map_err(|_| {
        OpError::Shape(format!(
            "Expand: shape {:?} does not broadcast with {shape:?}",
            a.shape()
        ))
    })?;
    checked_elements("Expand", &out)?;
    Ok(a.broadcast(IxDyn(&out))
        .expect("broadcast checked")
        .as_standard_layout()
        .into_owned())
}

/// ONNX Tile: `a` repeated `repeats[i]` times along each axis.
pub fn tile<T: Clone>(a: ArrayViewD<T>, repeats: &[i64]) -> Result<ArrayD<T>, OpError> {
    if repeats.len() != a.ndim() {
        return Err(OpError::Shape(format!(
            "Tile: repeats {repeats:?} do not match the rank of shape {:?}",
            a.shape()
        )));
    }
    let reps = repeats
        .iter()
        .map(|&r| to_usize("Tile", "repeat", r))
        .collect::<Result<Vec<_>, _>>()?;
    let out_shape: Vec<usize> = a
        .shape()
        .iter()
        .zip(&reps)
        .map(|(&d, &r)| d.saturating_mul(r))
        .collect();
    checked_elements("Tile", &out_shape)?;
    let mut out = a.to_owned();
    for (ax, &r) in reps.iter().enumerate() {
        if r != 1 {
            let views = vec![out.view(); r];
            out = if r == 0 {
                let mut shape = out.shape().to_vec();
                shape[ax] = 0;
                ArrayD::from_shape_vec(IxDyn(&shape), Vec::new()).expect("empty")
            } else {
                ndarray::concatenate(Axis(ax), &views).expect("equal shapes")
            };
        }
    }
    Ok(out.as_standard_layout().into_owned())
}

/// ONNX Range over scalars of one type: `ceil((limit - start) / delta)` values, accumulated by repeated
/// addition as ONNX Runtime does.
pub fn range(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Result<Tensor, OpError> {
    let scalar_err = || {
        OpError::Shape(format!(
            "Range needs three scalars of one type, got {} {:?}, {} {:?}, {} {:?}",
            start.dtype(),
            start.shape(),
            limit.dtype(),
            limit.shape(),
            delta.dtype(),
            delta.shape()
        ))
    };
    if [start, limit, delta].iter().any(|t| t.len() != 1) {
        return Err(scalar_err());
    }
    const MAX: f64 = super::ops::MAX_ELEMENTS as f64;
    match (start, limit, delta) {
        (Tensor::F32(s), Tensor::F32(l), Tensor::F32(d)) => {
            let (s, l, d) = (s.iter().next(), l.iter().next(), d.iter().next());
            let (&s, &l, &d) = (s.expect("1"), l.expect("1"), d.expect("1"));
            let n = (f64::from(l - s) / f64::from(d)).ceil();
            if d == 0.0 || n.is_nan() || n > MAX {
                return Err(OpError::Shape(format!(
                    "Range({s}, {l}, {d}) has no finite length"
                )));
            }
            let n = if n > 0.0 { n as usize } else { 0 };
            let mut v = s;
            let data: Vec<f32> = (0..n)
                .map(|_| {
                    let out = v;
                    v += d;
                    out
                })
                .collect();
            Ok(Tensor::F32(
                ArrayD::from_shape_vec(IxDyn(&[n]), data).expect("1-D"),
            ))
        }
        (Tensor::I64(s), Tensor::I64(l), Tensor::I64(d)) => {
            let (s, l, d) = (s.iter().next(), l.iter().next(), d.iter().next());
            let (&s, &l, &d) = (s.expect("1"), l.expect("1"), d.expect("1"));
            if d == 0 {
                return Err(OpError::Shape(format!("Range({s}, {l}, 0): delta is zero")));
            }
            let n = ((l as f64 - s as f64) / d as f64).ceil();
            if n > MAX {
                return Err(OpError::Shape(format!("Range({s}, {l}, {d}) is too long")));
            }
            let n = if n > 0.0 { n as usize } else { 0 };
            let data: Vec<i64> = (0..n as i64).map(|i| s + i * d).collect();
            Ok(Tensor::I64(
                ArrayD::from_shape_vec(IxDyn(&[n]), data).expect("1-D"),
            ))
        }
        _ => Err(scalar_err()),
    }
}

/// Dimensions from a 1-D i64 shape tensor (all >= 0).
pub fn dims_from(op: &str, shape: &[i64]) -> Result<Vec<usize>, OpError> {
    shape
        .iter()
        .map(|&d| to_usize(op, "dimension", d))
        .collect()
}

/// ONNX ConstantOfShape: `shape` filled with the single element of `value`.
pub fn constant_of_shape(shape: &[i64], value: &Tensor) -> Result<Tensor, OpError> {
    let dims = dims_from("ConstantOfShape", shape)?;
    checked_elements("ConstantOfShape", &dims)?;
    if value.len() != 1 {
        return Err(OpError::Shape(format!(
            "ConstantOfShape: value must hold one element, got shape {:?}",
            value.shape()
        )));
    }
    Ok(per_dtype!(value, v => ArrayD::from_elem(IxDyn(&dims), *v.iter().next().expect("one"))))
}

#[cfg(test)]
mod tests {
    use ndarray::arr1;

    use super::*;

    fn iota(shape: &[usize]) -> ArrayD<i64> {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n as i64).collect()).unwrap()
    }

    fn flat(a: ArrayD<i64>) -> Vec<i64> {
        a.iter().copied().collect()
    }

    /// numpy's results for the same slices.
    #[test]
    fn slice_follows_numpy() {
        let a = iota(&[10]);
        let s = |st, en, step| flat(slice(a.view(), &[st], &[en], None, Some(&[step])).unwrap());
        assert_eq!(s(2, 7, 2), [2, 4, 6]);
        assert_eq!(s(-3, i64::MAX, 1), [7, 8, 9]);
        assert_eq!(s(8, 1, -3), [8, 5, 2]);
        assert_eq!(s(i64::MAX, i64::MIN, -1), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
        assert_eq!(s(-1, -4, -1), [9, 8, 7]);
        assert_eq!(s(5, 2, 1), [] as [i64; 0]);
        assert_eq!(s(2, 5, -1), [] as [i64; 0]);
        let b = iota(&[3, 4]);
        let y = slice(b.view(), &[1, -1], &[3, 0], Some(&[0, -1]), Some(&[1, -2])).unwrap();
        assert_eq!(y.shape(), [2, 2]);
        assert_eq!(flat(y), [7, 5, 11, 9]);
        assert!(slice(b.view(), &[0], &[1], Some(&[2]), None).is_err());
    }

    #[test]
    fn gather_split_tile_shapes() {
        let a = iota(&[3, 4]);
        let idx = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![0i64, -1, 2, 1]).unwrap();
        let y = gather(a.view(), idx.view(), 1).unwrap();
        assert_eq!(y.shape(), [3, 2, 2]);
        assert_eq!(
            flat(y.slice_axis(Axis(0), Slice::from(0..1)).to_owned()),
            [0, 3, 2, 1]
        );
        let y = gather(a.view(), ndarray::arr0(1i64).into_dyn().view(), 0).unwrap();
        assert_eq!(flat(y), [4, 5, 6, 7]);
        assert!(gather(a.view(), arr1(&[4i64]).into_dyn().view(), 0).is_err());

        let parts: Vec<Vec<i64>> = (0..3)
            .map(|i| flat(split(iota(&[7]).view(), 0, None, 3, i).unwrap()))
            .collect();
        assert_eq!(parts, [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(
            flat(split(iota(&[7]).view(), 0, Some(&[2, 5]), 2, 1).unwrap()),
            [2, 3, 4, 5, 6]
        );
        let t = tile(iota(&[2, 1]).view(), &[2, 3]).unwrap();
        assert_eq!(t.shape(), [4, 3]);
        assert_eq!(flat(t), [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1]);
        assert_eq!(squeeze_shape(&[1, 3, 1], None).unwrap(), [3]);
        assert!(squeeze_shape(&[1, 3, 1], Some(&[1])).is_err());
        assert_eq!(unsqueeze_shape(&[3, 4], &[0, -1]).unwrap(), [1, 3, 4, 1]);
        assert_eq!(shape_of(&[2, 3, 4], -2, None), arr1(&[3i64, 4]).into_dyn());
        assert_eq!(shape_of(&[2, 3, 4], 2, Some(1)).len(), 0);
    }
}
