//! Neural-network ops in f32 beyond Conv / Gemm / MatMul / MaxPool (which live in [`super::ops`]):
//! ConvTranspose (GEMM + col2im on the kernels crate), AveragePool, the global pools, BatchNormalization,
//! LayerNormalization, Softmax, the Reduce family and Resize. Where ONNX Runtime's formula is known and
//! cheap to mirror (BatchNormalization, Softmax, Resize coordinates, average-pool divisors) it is mirrored,
//! so that parity is limited by rounding, not by a different formula.

use kernels::GemmF32;
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

use super::movement::{resolve_axes, resolve_axis};
use super::ops::{OpError, checked_elements, pool_output_len, pool_taps};
use crate::ir::{
    AutoPad, AvgPoolAttrs, ConvTransposeAttrs, CoordinateMode, NearestMode, ReduceOp, ResizeAttrs,
    ResizeMode,
};

fn nchw(what: &'static str, shape: &[usize]) -> Result<[usize; 4], OpError> {
    match *shape {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(OpError::Rank {
            what,
            expected: "4-D NCHW",
            shape: shape.to_vec(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------------------
// ConvTranspose

/// Padding `[top, left, bottom, right]` and output size of a transposed convolution over an `h x w` input,
/// as the ONNX specification (and ONNX Runtime 1.32) derive them: with `output_shape`, or with SAME_* (output
/// `input * stride`), the total padding is the full output minus the requested one, its odd cell at the start
/// except for SAME_UPPER.
pub fn conv_transpose_geometry(
    attrs: &ConvTransposeAttrs,
    h: usize,
    w: usize,
) -> Result<([usize; 4], [usize; 2]), OpError> {
    let mut pads = [0usize; 4];
    let mut out = [0usize; 2];
    for (axis, input) in [h, w].into_iter().enumerate() {
        let (k, s, d, adj) = (
            attrs.kernel_shape[axis],
            attrs.strides[axis],
            attrs.dilations[axis],
            attrs.output_padding[axis],
        );
        let full = s * input.saturating_sub(1) + adj + (k - 1) * d + 1;
        let requested = match (attrs.output_shape, attrs.auto_pad) {
            (Some(shape), _) => Some(shape[axis]),
            (None, AutoPad::SameUpper | AutoPad::SameLower) => Some(input * s),
            (None, _) => None,
        };
        let (head, tail, size) = match (requested, attrs.auto_pad) {
            (Some(size), pad) => {
                let total = full.saturating_sub(size);
                let head = if pad == AutoPad::SameUpper {
                    total / 2
                } else {
                    total - total / 2
                };
                (head, total - head, size)
            }
            (None, AutoPad::Valid) => (0, 0, full),
            (None, _) => {
                let (head, tail) = (attrs.pads[axis], attrs.pads[axis + 2]);
                if head + tail >= full {
                    return Err(OpError::Shape(format!(
                        "ConvTranspose: pads {:?} leave no output from input {h}x{w}",
                        attrs.pads
                    )));
                }
                (head, tail, full - head - tail)
            }
        };
        if size == 0 {
            return Err(OpError::Shape(format!(
                "ConvTranspose: empty output from input {h}x{w} with kernel {:?}",
                attrs.kernel_shape
            )));
        }
        pads[axis] = head;
        pads[axis + 2] = tail;
        out[axis] = size;
    }
    Ok((pads, out))
}

/// 2-D transposed convolution: per image and group, `cols = W_g^T X_g` on the GEMM, then col2im scatters
/// the columns into the (padded) output.
pub fn conv_transpose2d(
    x: ArrayViewD<f32>,
    w: ArrayViewD<f32>,
    bias: Option<&[f32]>,
    attrs: &ConvTransposeAttrs,
    gemm: &dyn GemmF32,
) -> Result<ArrayD<f32>, OpError> {
    let [n, c_in, h, wd] = nchw("ConvTranspose input", x.shape())?;
    let [wc_in, c_out_g, kh, kw] = nchw("ConvTranspose weight", w.shape())?;
    let g = attrs.group;
    if wc_in != c_in || c_in % g != 0 || [kh, kw] != attrs.kernel_shape {
        return Err(OpError::Shape(format!(
            "ConvTranspose: input shape {:?} does not match weights {:?} with group {g} and kernel_shape {:?}",
            x.shape(),
            w.shape(),
            attrs.kernel_shape
        )));
    }
    let c_out = c_out_g * g;
    if let Some(b) = bias
        && b.len() != c_out
    {
        return Err(OpError::Shape(format!(
            "ConvTranspose: bias has {} values, weights {:?} with group {g} give {c_out} output channels",
            b.len(),
            w.shape()
        )));
    }
    let (pads, [oh, ow]) = conv_transpose_geometry(attrs, h, wd)?;
    checked_elements("ConvTranspose", &[n, c_out, oh, ow])?;
    let cig = c_in / g;
    let (m, pixels) = (c_out_g * kh * kw, h * wd);
    // Per group, W_g^T as a row-major [c_out_g * kh * kw, cig] left operand.
    let w = w.as_standard_layout();
    let wsl = w.as_slice().expect("standard layout");
    let wt: Vec<Vec<f32>> = (0..g)
        .map(|gi| {
            let block = &wsl[gi * cig * m..][..cig * m];
            let mut t = vec![0f32; m * cig];
            for ci in 0..cig {
                for r in 0..m {
                    t[r * cig + ci] = block[ci * m + r];
                }
            }
            t
        })
        .collect();
    let x = x.as_standard_layout();
    let src = x.as_slice().expect("standard layout");
    let mut out = vec![0f32; n * c_out * oh * ow];
    if out.is_empty() {
        return Ok(ArrayD::from_shape_vec(IxDyn(&[n, c_out, oh, ow]), out).expect("empty"));
    }
    let [sh, sw] = attrs.strides;
    let [dh, dw] = attrs.dilations;
    out.par_chunks_mut(c_out * oh * ow)
        .enumerate()
        .for_each_init(
            || vec![0f32; m * pixels],
            |cols, (img, dst)| {
                for gi in 0..g {
                    let xg = &src[(img * c_in + gi * cig) * pixels..][..cig * pixels];
                    if cig > 0 && pixels > 0 {
                        let packed = gemm.pack_b(xg, cig, pixels);
                        gemm.gemm(m, &wt[gi], cig, &packed, cols, pixels);
                    } else {
                        cols.fill(0.0);
                    }
                    for (r, row) in cols.chunks_exact(pixels).enumerate() {
                        let (co, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
                        let plane = &mut dst[(gi * c_out_g + co) * oh * ow..][..oh * ow];
                        for iy in 0..h {
                            let oy = (iy * sh + ky * dh) as isize - pads[0] as isize;
                            if oy < 0 || oy as usize >= oh {
                                continue;
                            }
                            let orow = &mut plane[oy as usize * ow..][..ow];
                            for ix in 0..wd {
                                let ox = (ix * sw + kx * dw) as isize - pads[1] as isize;
                                if ox >= 0 && (ox as usize) < ow {
                                    orow[ox as usize] += row[iy * wd + ix];
                                }
                            }
                        }
                    }
                }
                if let Some(b) = bias {
                    for (plane, &b) in dst.chunks_exact_mut(oh * ow).zip(b) {
                        plane.iter_mut().for_each(|v| *v += b);
                    }
                }
            },
        );
    Ok(ArrayD::from_shape_vec(IxDyn(&[n, c_out, oh, ow]), out).expect("output size computed"))
}

// ---------------------------------------------------------------------------------------------------------
// Pooling

/// 2-D average pooling over NCHW. The divisor is the number of input cells in the window, or with
/// `count_include_pad` the window clipped to the padded input (as ONNX Runtime counts it).
pub fn avg_pool2d(x: ArrayViewD<f32>, attrs: &AvgPoolAttrs) -> Result<ArrayD<f32>, OpError> {
    let [n, c, h, w] = nchw("AveragePool input", x.shape())?;
    let p = &attrs.pool;
    let [kh, kw] = p.kernel_shape;
    let [sh, sw] = p.strides;
    let [dh, dw] = p.dilations;
    let [pt, pl, pb, pr] = p.pads;
    let oh = pool_output_len("AveragePool height", h, kh, sh, (pt, pb), dh, p.ceil_mode)?;
    let ow = pool_output_len("AveragePool width", w, kw, sw, (pl, pr), dw, p.ceil_mode)?;
    let rows = pool_taps(oh, sh, pt, dh, kh, h);
    let cols = pool_taps(ow, sw, pl, dw, kw, w);
    // Taps inside the padded extent [-pad_begin, len + pad_end).
    let padded = |out: usize, s: usize, pad: usize, d: usize, k: usize, len: usize, end: usize| {
        (0..out)
            .map(|o| {
                (0..k)
                    .filter(|&j| {
                        let pos = (o * s + j * d) as isize - pad as isize;
                        pos >= -(pad as isize) && pos < (len + end) as isize
                    })
                    .count()
            })
            .collect::<Vec<_>>()
    };
    let prow = padded(oh, sh, pt, dh, kh, h, pb);
    let pcol = padded(ow, sw, pl, dw, kw, w, pr);
    let x = x.as_standard_layout();
    let src = x.as_slice().expect("standard layout");
    let mut out = vec![0f32; n * c * oh * ow];
    if !out.is_empty() {
        out.par_chunks_mut(oh * ow)
            .zip(src.par_chunks(h * w))
            .for_each(|(dst, plane)| {
                for (oy, dst_row) in dst.chunks_exact_mut(ow).enumerate() {
                    let (y0, ny) = rows[oy];
                    for (ox, d) in dst_row.iter_mut().enumerate() {
                        let (x0, nx) = cols[ox];
                        let mut sum = 0f32;
                        for ky in 0..ny {
                            let row = &plane[(y0 + ky * dh) * w..][..w];
                            for kx in 0..nx {
                                sum += row[x0 + kx * dw];
                            }
                        }
                        let count = if attrs.count_include_pad {
                            prow[oy] * pcol[ox]
                        } else {
                            ny * nx
                        };
                        *d = sum / count as f32;
                    }
                }
            });
    }
    Ok(ArrayD::from_shape_vec(IxDyn(&[n, c, oh, ow]), out).expect("output size computed"))
}

/// Mean (`max == false`) or maximum over every axis after the first two; the output keeps them as 1.
pub fn global_pool(x: ArrayViewD<f32>, max: bool) -> Result<ArrayD<f32>, OpError> {
    let what = if max {
        "GlobalMaxPool input"
    } else {
        "GlobalAveragePool input"
    };
    if x.ndim() < 3 {
        return Err(OpError::Rank {
            what,
            expected: "at least 3-D (N, C, spatial...)",
            shape: x.shape().to_vec(),
        });
    }
    let spatial: usize = x.shape()[2..].iter().product();
    if spatial == 0 {
        return Err(OpError::Shape(format!(
            "{what} has an empty spatial extent (shape {:?})",
            x.shape()
        )));
    }
    let mut shape = x.shape()[..2].to_vec();
    shape.extend(std::iter::repeat_n(1, x.ndim() - 2));
    let x = x.as_standard_layout();
    let src = x.as_slice().expect("standard layout");
    let out: Vec<f32> = src
        .chunks_exact(spatial)
        .map(|plane| {
            if max {
                plane.iter().copied().fold(f32::NEG_INFINITY, f32::max)
            } else {
                (plane.iter().map(|&v| f64::from(v)).sum::<f64>() / spatial as f64) as f32
            }
        })
        .collect();
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), out).expect("one value per plane"))
}

// ---------------------------------------------------------------------------------------------------------
// Normalization

/// Per-channel `(scale, shift)` of inference-mode batch normalization, as ONNX Runtime folds it:
/// `s = scale / sqrt(var + eps)`, `shift = B - mean * s` (f32).
pub fn batch_norm_affine(
    scale: &[f32],
    b: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f32,
) -> (Vec<f32>, Vec<f32>) {
    let s: Vec<f32> = scale
        .iter()
        .zip(var)
        .map(|(&g, &v)| (1.0 / (v + epsilon).sqrt()) * g)
        .collect();
    let shift = b
        .iter()
        .zip(mean)
        .zip(&s)
        .map(|((&b, &m), &s)| b - m * s)
        .collect();
    (s, shift)
}

/// Inference-mode BatchNormalization over axis 1 of an `[N, C, ...]` tensor.
pub fn batch_norm(
    x: ArrayViewD<f32>,
    params: [ArrayViewD<f32>; 4],
    epsilon: f32,
) -> Result<ArrayD<f32>, OpError> {
    let c = match x.shape() {
        [_, c, ..] => *c,
        s => {
            return Err(OpError::Rank {
                what: "BatchNormalization input",
                expected: "at least 2-D (N, C, ...)",
                shape: s.to_vec(),
            });
        }
    };
    let names = ["scale", "B", "mean", "var"];
    let mut flat = Vec::with_capacity(4);
    for (p, name) in params.iter().zip(names) {
        if p.len() != c || p.ndim() != 1 {
            return Err(OpError::Shape(format!(
                "BatchNormalization: {name} has shape {:?}, input {:?} has {c} channels",
                p.shape(),
                x.shape()
            )));
        }
        flat.push(p.iter().copied().collect::<Vec<f32>>());
    }
    let (s, shift) = batch_norm_affine(&flat[0], &flat[1], &flat[2], &flat[3], epsilon);
    let inner: usize = x.shape()[2..].iter().product();
    let mut y = x.as_standard_layout().into_owned();
    if inner > 0 {
        for (i, plane) in y
            .as_slice_mut()
            .expect("standard layout")
            .chunks_exact_mut(inner)
            .enumerate()
        {
            let ch = i % c;
            let (a, b) = (s[ch], shift[ch]);
            plane.iter_mut().for_each(|v| *v = *v * a + b);
        }
    }
    Ok(y)
}

/// LayerNormalization over the axes from `axis` on; `scale` and `bias` broadcast to those axes. Mean and
/// variance in f64.
pub fn layer_norm(
    x: ArrayViewD<f32>,
    scale: ArrayViewD<f32>,
    bias: Option<ArrayViewD<f32>>,
    axis: i64,
    epsilon: f32,
) -> Result<ArrayD<f32>, OpError> {
    let ax = resolve_axis("LayerNormalization", axis, x.ndim(), false)?;
    let norm_shape = &x.shape()[ax..];
    let cols: usize = norm_shape.iter().product();
    let spread = |t: ArrayViewD<f32>, what: &str| -> Result<Vec<f32>, OpError> {
        t.broadcast(IxDyn(norm_shape))
            .map(|b| b.iter().copied().collect())
            .ok_or_else(|| {
                OpError::Shape(format!(
                    "LayerNormalization: {what} shape {:?} does not broadcast to the normalized shape {norm_shape:?} of input {:?}",
                    t.shape(),
                    x.shape()
                ))
            })
    };
    let g = spread(scale, "scale")?;
    let b = match bias {
        Some(b) => spread(b, "B")?,
        None => vec![0.0; cols],
    };
    let mut y = x.as_standard_layout().into_owned();
    if cols > 0 {
        for row in y
            .as_slice_mut()
            .expect("standard layout")
            .chunks_exact_mut(cols)
        {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / cols as f64;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / cols as f64;
            let inv = 1.0 / (var + f64::from(epsilon)).sqrt();
            for ((v, &g), &b) in row.iter_mut().zip(&g).zip(&b) {
                *v = ((f64::from(*v) - mean) * inv) as f32 * g + b;
            }
        }
    }
    Ok(y)
}

/// Softmax of each contiguous row: `exp(x - max)` in f32, the sum in f64, scaled by its reciprocal.
fn softmax_rows(data: &mut [f32], cols: usize) {
    if cols == 0 {
        return;
    }
    for row in data.chunks_exact_mut(cols) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f64;
        for v in row.iter_mut() {
            // Below -104, `exp` underflows to +0 (half the least subnormal is e^-103.97), and glibc's `expf`
            // takes a slow error-reporting path to say so: attention masks put every padded key there.
            let d = *v - max;
            *v = if d < -104.0 { 0.0 } else { d.exp() };
            sum += f64::from(*v);
        }
        let inv = (1.0 / sum) as f32;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// ONNX Softmax: over `axis` (opset 13+) or, when `legacy`, over everything from `axis` on.
pub fn softmax(x: ArrayViewD<f32>, axis: i64, legacy: bool) -> Result<ArrayD<f32>, OpError> {
    let rank = x.ndim();
    if legacy {
        let ax = resolve_axis("Softmax", axis, rank, true)?;
        let cols: usize = x.shape()[ax..].iter().product();
        let mut y = x.as_standard_layout().into_owned();
        softmax_rows(y.as_slice_mut().expect("standard layout"), cols);
        return Ok(y);
    }
    let ax = resolve_axis("Softmax", axis, rank, false)?;
    let len = x.shape()[ax];
    let mut perm: Vec<usize> = (0..rank).filter(|&a| a != ax).collect();
    perm.push(ax);
    let mut y = x
        .permuted_axes(IxDyn(&perm))
        .as_standard_layout()
        .into_owned();
    softmax_rows(y.as_slice_mut().expect("standard layout"), len);
    let mut inverse = vec![0; rank];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    Ok(y.permuted_axes(IxDyn(&inverse))
        .as_standard_layout()
        .into_owned())
}

// ---------------------------------------------------------------------------------------------------------
// Reductions

/// Moves the reduced axes last; returns the contiguous data, the row length and the output shape.
fn reduce_layout<T: Clone>(
    op: &str,
    x: ArrayViewD<T>,
    axes: Option<&[i64]>,
    keepdims: bool,
) -> Result<(ArrayD<T>, usize, Vec<usize>), OpError> {
    let rank = x.ndim();
    let axes = match axes {
        Some(a) => resolve_axes(op, a, rank, false)?,
        None => (0..rank).collect(),
    };
    let kept: Vec<usize> = (0..rank).filter(|a| !axes.contains(a)).collect();
    let perm: Vec<usize> = kept.iter().chain(axes.iter()).copied().collect();
    let row: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let out_shape: Vec<usize> = (0..rank)
        .filter_map(|a| {
            if axes.contains(&a) {
                keepdims.then_some(1)
            } else {
                Some(x.shape()[a])
            }
        })
        .collect();
    let data = x
        .permuted_axes(IxDyn(&perm))
        .as_standard_layout()
        .into_owned();
    Ok((data, row, out_shape))
}

/// ReduceMean / Sum / Max / Min / L2 over f32 (sums in f64).
pub fn reduce_f32(
    op: ReduceOp,
    x: ArrayViewD<f32>,
    axes: Option<&[i64]>,
    keepdims: bool,
) -> Result<ArrayD<f32>, OpError> {
    let name = op.op_type();
    let (data, row, shape) = reduce_layout(name, x.view(), axes, keepdims)?;
    let count: usize = shape.iter().product();
    if row == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min) && count > 0 {
        return Err(OpError::Shape(format!(
            "{name} over an empty extent (input shape {:?}, axes {axes:?})",
            x.shape()
        )));
    }
    let src = data.as_slice().expect("standard layout");
    let out: Vec<f32> =
        (0..count)
            .map(|i| {
                let r = &src[i * row..(i + 1) * row];
                let sum = || r.iter().map(|&v| f64::from(v)).sum::<f64>();
                match op {
                    ReduceOp::Sum => sum() as f32,
                    ReduceOp::Mean => (sum() / row as f64) as f32,
                    ReduceOp::L2 => r
                        .iter()
                        .map(|&v| f64::from(v) * f64::from(v))
                        .sum::<f64>()
                        .sqrt() as f32,
                    ReduceOp::Max => r.iter().copied().fold(f32::NEG_INFINITY, |a, v| {
                        if v > a || v.is_nan() { v } else { a }
                    }),
                    ReduceOp::Min => r.iter().copied().fold(f32::INFINITY, |a, v| {
                        if v < a || v.is_nan() { v } else { a }
                    }),
                }
            })
            .collect();
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), out).expect("one value per row"))
}

/// ReduceSum / Max / Min / Mean over i64 (shape arithmetic); L2 is refused.
pub fn reduce_i64(
    op: ReduceOp,
    x: ArrayViewD<i64>,
    axes: Option<&[i64]>,
    keepdims: bool,
) -> Result<ArrayD<i64>, OpError> {
    let name = op.op_type();
    let (data, row, shape) = reduce_layout(name, x.view(), axes, keepdims)?;
    let count: usize = shape.iter().product();
    if (row == 0 && count > 0 && op != ReduceOp::Sum) || op == ReduceOp::L2 {
        return Err(OpError::Shape(format!(
            "{name} of i64 input {:?} over axes {axes:?} is not supported",
            x.shape()
        )));
    }
    let src = data.as_slice().expect("standard layout");
    let out: Vec<i64> = (0..count)
        .map(|i| {
            let r = &src[i * row..(i + 1) * row];
            match op {
                ReduceOp::Sum => r.iter().fold(0i64, |a, &v| a.wrapping_add(v)),
                ReduceOp::Mean => r.iter().fold(0i64, |a, &v| a.wrapping_add(v)) / row as i64,
                ReduceOp::Max => r.iter().copied().max().expect("non-empty"),
                ReduceOp::Min => r.iter().copied().min().expect("non-empty"),
                ReduceOp::L2 => unreachable!("refused above"),
            }
        })
        .collect();
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), out).expect("one value per row"))
}

// ---------------------------------------------------------------------------------------------------------
// Resize

/// Per-axis output lengths and scales of a Resize from `scales` or `sizes` (given for `axes`, or every axis).
pub fn resize_plan(
    shape: &[usize],
    attrs: &ResizeAttrs,
    scales: Option<&[f32]>,
    sizes: Option<&[i64]>,
) -> Result<(Vec<usize>, Vec<f32>), OpError> {
    let rank = shape.len();
    let axes = match &attrs.axes {
        Some(a) => resolve_axes("Resize", a, rank, false)?,
        None => (0..rank).collect(),
    };
    let mut out = shape.to_vec();
    let mut scale = vec![1f32; rank];
    match (scales, sizes) {
        (_, Some(sizes)) if !sizes.is_empty() => {
            if sizes.len() != axes.len() {
                return Err(OpError::Shape(format!(
                    "Resize: sizes {sizes:?} do not match input shape {shape:?} (axes {:?})",
                    attrs.axes
                )));
            }
            for (&a, &s) in axes.iter().zip(sizes) {
                out[a] = usize::try_from(s)
                    .map_err(|_| OpError::Shape(format!("Resize: negative size in {sizes:?}")))?;
                scale[a] = out[a] as f32 / shape[a] as f32;
            }
        }
        (Some(scales), _) if !scales.is_empty() => {
            if scales.len() != axes.len() || scales.iter().any(|&s| s.is_nan() || s <= 0.0) {
                return Err(OpError::Shape(format!(
                    "Resize: scales {scales:?} do not fit input shape {shape:?} (axes {:?}; scales must be > 0)",
                    attrs.axes
                )));
            }
            for (&a, &s) in axes.iter().zip(scales) {
                out[a] = (shape[a] as f32 * s) as usize;
                scale[a] = s;
            }
        }
        _ => {
            return Err(OpError::Shape(
                "Resize: neither scales nor sizes is given".into(),
            ));
        }
    }
    checked_elements("Resize", &out)?;
    Ok((out, scale))
}

/// The input coordinate of output index `x` along one axis (ONNX coordinate_transformation_mode, in f32).
fn original_coordinate(mode: CoordinateMode, x: f32, scale: f32, out_len: f32, in_len: f32) -> f32 {
    match mode {
        CoordinateMode::HalfPixel => (x + 0.5) / scale - 0.5,
        CoordinateMode::HalfPixelSymmetric => {
            let adjustment = out_len / (scale * in_len);
            let center = in_len / 2.0;
            let offset = center * (1.0 - adjustment);
            offset + (x + 0.5) / scale - 0.5
        }
        CoordinateMode::PytorchHalfPixel => {
            if out_len > 1.0 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordinateMode::AlignCorners => {
            if out_len == 1.0 {
                0.0
            } else {
                x * (in_len - 1.0) / (out_len - 1.0)
            }
        }
        CoordinateMode::Asymmetric => x / scale,
        CoordinateMode::TfHalfPixelForNn => (x + 0.5) / scale,
    }
}

fn nearest_index(mode: NearestMode, x: f32, len: usize) -> usize {
    let i = match mode {
        NearestMode::RoundPreferFloor => {
            if x == x.floor() + 0.5 {
                x.floor()
            } else {
                x.round()
            }
        }
        NearestMode::RoundPreferCeil => x.round(),
        NearestMode::Floor => x.floor(),
        NearestMode::Ceil => x.ceil(),
    };
    (i.max(0.0) as usize).min(len - 1)
}

/// Resamples one axis of a contiguous `[outer, len, inner]` block into `[outer, out_len, inner]`, each output
/// row the weighted sum of up to two input rows.
fn resample_axis(x: &ArrayD<f32>, axis: usize, taps: &[(usize, usize, f32, f32)]) -> ArrayD<f32> {
    let shape = x.shape();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let len = shape[axis];
    let mut out_shape = shape.to_vec();
    out_shape[axis] = taps.len();
    let src = x.as_slice().expect("standard layout");
    let mut out = Vec::with_capacity(outer * taps.len() * inner);
    for o in 0..outer {
        let block = &src[o * len * inner..][..len * inner];
        for &(i0, i1, w0, w1) in taps {
            let (r0, r1) = (&block[i0 * inner..][..inner], &block[i1 * inner..][..inner]);
            if w1 == 0.0 {
                out.extend_from_slice(r0);
            } else {
                out.extend(r0.iter().zip(r1).map(|(&a, &b)| a * w0 + b * w1));
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&out_shape), out).expect("resampled size")
}

/// ONNX Resize in nearest or (n-)linear mode, separably one axis at a time. Axes with scale 1 and an
/// unchanged length are copied, as ONNX Runtime does.
pub fn resize(
    x: ArrayViewD<f32>,
    attrs: &ResizeAttrs,
    scales: Option<&[f32]>,
    sizes: Option<&[i64]>,
) -> Result<ArrayD<f32>, OpError> {
    let (out_shape, scale) = resize_plan(x.shape(), attrs, scales, sizes)?;
    let mut y = x.as_standard_layout().into_owned();
    for (axis, (&len, &olen)) in x.shape().iter().zip(&out_shape).enumerate() {
        if len == olen && scale[axis] == 1.0 {
            continue;
        }
        if len == 0 || olen == 0 {
            let mut shape = y.shape().to_vec();
            shape[axis] = olen;
            if len == 0 && olen > 0 {
                return Err(OpError::Shape(format!(
                    "Resize: cannot resize an empty axis {axis} of shape {:?} to {olen}",
                    x.shape()
                )));
            }
            y = ArrayD::from_shape_vec(IxDyn(&shape), Vec::new()).expect("empty");
            continue;
        }
        let taps: Vec<(usize, usize, f32, f32)> = (0..olen)
            .map(|o| {
                let c = original_coordinate(
                    attrs.coordinate,
                    o as f32,
                    scale[axis],
                    olen as f32,
                    len as f32,
                );
                match attrs.mode {
                    ResizeMode::Nearest => (nearest_index(attrs.nearest, c, len), 0, 1.0, 0.0),
                    ResizeMode::Linear => {
                        let c = c.clamp(0.0, (len - 1) as f32);
                        let i0 = (c as usize).min(len - 1);
                        let i1 = (i0 + 1).min(len - 1);
                        if i0 == i1 {
                            (i0, i1, 0.5, 0.5)
                        } else {
                            (i0, i1, (c - i1 as f32).abs(), (c - i0 as f32).abs())
                        }
                    }
                }
            })
            .collect();
        y = resample_axis(&y, axis, &taps);
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use ndarray::{Axis, arr1};

    use super::*;
    use crate::ir::PoolAttrs;

    /// The underflow shortcut changes nothing: every value equals plain `exp`'s, around the threshold (where
    /// `exp` gives subnormals, then 0) and for masked scores.
    #[test]
    fn softmax_underflow_shortcut_is_exact() {
        let mut row: Vec<f32> = (0..400).map(|i| -100.0 - i as f32 * 0.02).collect();
        row.extend([0.0, -1e30, f32::MIN, -3.0e4]);
        let max = 0.0f32;
        let want: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
        let sum: f64 = want.iter().map(|&v| f64::from(v)).sum();
        let inv = (1.0 / sum) as f32;
        let want: Vec<f32> = want.iter().map(|&v| v * inv).collect();
        assert!(
            want[0] > 0.0 && want[399] == 0.0,
            "the row spans the underflow"
        );
        let mut got = row.clone();
        softmax_rows(&mut got, row.len());
        assert_eq!(got, want);
    }

    #[test]
    fn softmax_rows_sum_to_one_on_any_axis() {
        let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| {
            (i[0] * 12 + i[1] * 4 + i[2]) as f32 * 0.3
        });
        for axis in [-1, 0, 1] {
            let y = softmax(x.view(), axis, false).unwrap();
            let ax = resolve_axis("t", axis, 3, false).unwrap();
            for s in y.sum_axis(Axis(ax)).iter() {
                assert!((s - 1.0).abs() < 1e-6, "axis {axis}: {s}");
            }
        }
        let y = softmax(x.view(), 1, true).unwrap();
        for row in y.into_shape_with_order((2, 12)).unwrap().rows() {
            assert!((row.sum() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn avg_pool_divisors() {
        let x = ArrayD::from_elem(IxDyn(&[1, 1, 3, 3]), 1.0f32);
        let pool = PoolAttrs {
            kernel_shape: [2, 2],
            strides: [2, 2],
            pads: [1, 1, 1, 1],
            dilations: [1, 1],
            ceil_mode: false,
        };
        let y = avg_pool2d(
            x.view(),
            &AvgPoolAttrs {
                pool: pool.clone(),
                count_include_pad: false,
            },
        )
        .unwrap();
        assert!(y.iter().all(|&v| v == 1.0), "{y:?}");
        let y = avg_pool2d(
            x.view(),
            &AvgPoolAttrs {
                pool,
                count_include_pad: true,
            },
        )
        .unwrap();
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), [0.25, 0.5, 0.5, 1.0]);
    }

    #[test]
    fn resize_nearest_and_linear() {
        let x = arr1(&[1.0f32, 2.0, 4.0]).into_dyn();
        let attrs = |mode, coordinate| ResizeAttrs {
            mode,
            coordinate,
            nearest: NearestMode::Floor,
            axes: None,
        };
        let y = resize(
            x.view(),
            &attrs(ResizeMode::Nearest, CoordinateMode::Asymmetric),
            Some(&[2.0]),
            None,
        )
        .unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            [1.0, 1.0, 2.0, 2.0, 4.0, 4.0]
        );
        let y = resize(
            x.view(),
            &attrs(ResizeMode::Linear, CoordinateMode::AlignCorners),
            None,
            Some(&[5]),
        )
        .unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            [1.0, 1.5, 2.0, 3.0, 4.0]
        );
    }

    #[test]
    fn reduce_shapes() {
        let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| (i[0] * 12 + i[1] * 4 + i[2]) as f32);
        let y = reduce_f32(ReduceOp::Sum, x.view(), Some(&[0, 2]), true).unwrap();
        assert_eq!(y.shape(), [1, 3, 1]);
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), [60.0, 92.0, 124.0]);
        let y = reduce_f32(ReduceOp::Max, x.view(), None, false).unwrap();
        assert_eq!(y.shape(), [] as [usize; 0]);
        assert_eq!(y.iter().next(), Some(&23.0));
        assert!(reduce_f32(ReduceOp::Mean, x.view(), Some(&[3]), true).is_err());
    }
}
