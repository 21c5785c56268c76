//! Forward and backward passes of the trainable ops over ndarray (NCHW), generic over [`Real`].
//!
//! Forward semantics are the FP32 executor's ([`crate::exec::ops`]); shape rules are reused from there. Each
//! backward takes the upstream gradient and what its forward kept, and returns the gradients of the inputs
//! that need one. Convolutions run per image in parallel on the current rayon pool; weight gradients are
//! summed over fixed groups of images, so results do not depend on the pool size or scheduling.

use ndarray::{ArrayD, ArrayView2, ArrayViewD, Axis, Ix2, IxDyn, Zip};
use rayon::prelude::*;

use super::real::{Linalg, Real, tap};
use crate::exec::ops::{OpError, broadcast_shapes, conv_geom, pool_output_len};
use crate::ir::{ConvAttrs, GemmAttrs, PoolAttrs};

fn rank_err(what: &'static str, expected: &'static str, shape: &[usize]) -> OpError {
    OpError::Rank {
        what,
        expected,
        shape: shape.to_vec(),
    }
}

/// `a` as a contiguous row-major slice (copying only when it is not one already).
fn contiguous<'a, T: Real>(a: &'a ArrayViewD<'_, T>) -> std::borrow::Cow<'a, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

/// Sum of `v` with eight independent accumulators (a single running sum is bound by the add latency).
pub fn sum<T: Real>(v: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    let tail: T = chunks.remainder().iter().copied().sum();
    acc.iter().copied().sum::<T>() + tail
}

// ---------------------------------------------------------------------------------------------------------
// Convolution

/// Geometry of a group-1 convolution of `x` (`[n, c, h, w]`) with `w` (`[c_out, c, kh, kw]`).
fn conv_check<T: Real>(
    x: &ArrayViewD<T>,
    w: &ArrayViewD<T>,
    attrs: &ConvAttrs,
) -> Result<(kernels::frame::conv::Conv2dGeom, usize, usize), OpError> {
    let &[n, c, h, wd] = x.shape() else {
        return Err(rank_err("Conv input", "4-D NCHW", x.shape()));
    };
    let &[c_out, cw, kh, kw] = w.shape() else {
        return Err(rank_err("Conv weight", "4-D OIHW", w.shape()));
    };
    if attrs.group != 1 {
        return Err(OpError::Shape(format!(
            "training supports group 1 convolutions only, got group {}",
            attrs.group
        )));
    }
    if cw != c || [kh, kw] != attrs.kernel_shape {
        return Err(OpError::Shape(format!(
            "input {:?} does not match weights {:?} (kernel_shape {:?})",
            x.shape(),
            w.shape(),
            attrs.kernel_shape
        )));
    }
    Ok((conv_geom(c, h, wd, attrs)?, n, c_out))
}

/// Conv forward: `y[n] = W[c_out, K] * im2col(x[n])[K, P] + b`.
pub fn conv2d<T: Real>(
    lin: &Linalg,
    x: ArrayViewD<T>,
    w: ArrayViewD<T>,
    b: Option<ArrayViewD<T>>,
    attrs: &ConvAttrs,
) -> Result<ArrayD<T>, OpError> {
    let (geom, n, c_out) = conv_check(&x, &w, attrs)?;
    if let Some(b) = &b
        && b.len() != c_out
    {
        return Err(OpError::Shape(format!(
            "bias {:?} does not match {c_out} output channels",
            b.shape()
        )));
    }
    let (oh, ow, k) = (geom.out_h(), geom.out_w(), geom.k());
    let p = oh * ow;
    let mut y = ArrayD::<T>::zeros(IxDyn(&[n, c_out, oh, ow]));
    if y.is_empty() {
        return Ok(y);
    }
    let xs = contiguous(&x);
    let ws = contiguous(&w);
    let wm = ArrayView2::from_shape((c_out, k), &ws[..]).expect("OIHW");
    let bias = b.as_ref().map(contiguous);
    let image_in = geom.c_in * geom.h * geom.w;
    y.as_slice_mut()
        .expect("fresh array")
        .par_chunks_mut(c_out * p)
        .enumerate()
        .for_each_init(
            || vec![T::ZERO; k * p],
            |cols, (img, dst)| {
                T::im2col_kn(&xs[img * image_in..][..image_in], &geom, cols);
                let cv = ArrayView2::from_shape((k, p), &cols[..]).expect("K x P");
                T::gemm_into(lin, wm, cv, dst);
                if let Some(b) = &bias {
                    for (plane, &b) in dst.chunks_exact_mut(p).zip(b.iter()) {
                        plane.iter_mut().for_each(|v| *v += b);
                    }
                }
            },
        );
    Ok(y)
}

/// Weight gradients of a convolution are summed over at most this many fixed groups of images (enough to
/// balance a few cores; fixed so that results do not depend on the thread count).
const CONV_GRAD_GROUPS: usize = 16;

/// Gradients of a convolution.
pub struct ConvGrads<T> {
    /// `None` when not asked for.
    pub dx: Option<ArrayD<T>>,
    pub dw: ArrayD<T>,
    pub db: Vec<T>,
}

/// Conv backward: `dW = sum_n dY[n] * im2col(x[n])^T`, `db = sum dY`, and (when `need_dx`)
/// `dx[n] = col2im(W^T * dY[n])`.
pub fn conv2d_backward<T: Real>(
    lin: &Linalg,
    x: ArrayViewD<T>,
    w: ArrayViewD<T>,
    dy: ArrayViewD<T>,
    attrs: &ConvAttrs,
    need_dx: bool,
) -> Result<ConvGrads<T>, OpError> {
    let (geom, n, c_out) = conv_check(&x, &w, attrs)?;
    let (oh, ow, k) = (geom.out_h(), geom.out_w(), geom.k());
    let p = oh * ow;
    if dy.shape() != [n, c_out, oh, ow] {
        return Err(OpError::Shape(format!(
            "Conv output gradient {:?} does not match the output [{n}, {c_out}, {oh}, {ow}]",
            dy.shape()
        )));
    }
    let xs = contiguous(&x);
    let dys = contiguous(&dy);
    let image_in = geom.c_in * geom.h * geom.w;

    // Images are summed in fixed groups (their partial sums added in group order), so the gradient does not
    // depend on how rayon schedules the groups: training is reproducible from its seed.
    let per_group = n.div_ceil(CONV_GRAD_GROUPS).max(1);
    let partials: Vec<(Vec<T>, Vec<T>)> = (0..n.div_ceil(per_group))
        .into_par_iter()
        .map(|group| {
            let (mut dw, mut db) = (vec![T::ZERO; c_out * k], vec![T::ZERO; c_out]);
            let (mut cols, mut tmp) = (vec![T::ZERO; p * k], vec![T::ZERO; c_out * k]);
            for img in group * per_group..((group + 1) * per_group).min(n) {
                let dyi = &dys[img * c_out * p..][..c_out * p];
                if p * k > 0 {
                    T::im2col_pk(&xs[img * image_in..][..image_in], &geom, &mut cols);
                }
                let a = ArrayView2::from_shape((c_out, p), dyi).expect("c_out x P");
                let bm = ArrayView2::from_shape((p, k), &cols[..]).expect("P x K");
                T::gemm_into(lin, a, bm, &mut tmp);
                dw.iter_mut().zip(&tmp).for_each(|(d, &t)| *d += t);
                for (d, plane) in db.iter_mut().zip(dyi.chunks_exact(p.max(1))) {
                    *d += sum(plane);
                }
            }
            (dw, db)
        })
        .collect();
    let (mut dw, mut db) = (vec![T::ZERO; c_out * k], vec![T::ZERO; c_out]);
    for (pw, pb) in &partials {
        dw.iter_mut().zip(pw).for_each(|(a, &b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, &b)| *a += b);
    }
    let dw = ArrayD::from_shape_vec(IxDyn(w.shape()), dw).expect("weight shape");

    let dx = if need_dx {
        let ws = contiguous(&w);
        let wt = ArrayView2::from_shape((c_out, k), &ws[..])
            .expect("OIHW")
            .reversed_axes()
            .as_standard_layout()
            .into_owned();
        let mut dx = ArrayD::<T>::zeros(IxDyn(x.shape()));
        if image_in > 0 {
            dx.as_slice_mut()
                .expect("fresh array")
                .par_chunks_mut(image_in)
                .enumerate()
                .for_each_init(
                    || vec![T::ZERO; k * p],
                    |dcols, (img, dst)| {
                        let dyi = ArrayView2::from_shape(
                            (c_out, p),
                            &dys[img * c_out * p..][..c_out * p],
                        )
                        .expect("c_out x P");
                        T::gemm_into(lin, wt.view(), dyi, dcols);
                        col2im_kn(dcols, &geom, dst);
                    },
                );
        }
        Some(dx)
    } else {
        None
    };
    Ok(ConvGrads { dx, dw, db })
}

/// Adds the transposed patch matrix `cols` (`[K, P]`) back onto the image `out` (`c*h*w`, accumulated into):
/// the adjoint of [`Real::im2col_kn`].
pub fn col2im_kn<T: Real>(cols: &[T], g: &kernels::frame::conv::Conv2dGeom, out: &mut [T]) {
    let (oh, ow, k) = (g.out_h(), g.out_w(), g.k());
    let p = oh * ow;
    for r in 0..k {
        let (c, ky, kx) = (r / (g.kh * g.kw), r / g.kw % g.kh, r % g.kw);
        let channel = &mut out[c * g.h * g.w..][..g.h * g.w];
        let row = &cols[r * p..][..p];
        // Output columns whose input column is inside the image: ox in [x_lo, x_hi), as im2col_kn.
        let off = kx * g.dil_w;
        let x_lo = g.pad_left.saturating_sub(off).div_ceil(g.stride_w).min(ow);
        let x_hi = (g.w + g.pad_left)
            .saturating_sub(off)
            .div_ceil(g.stride_w)
            .clamp(x_lo, ow);
        if x_lo == x_hi {
            continue;
        }
        let x0 = x_lo * g.stride_w + off - g.pad_left;
        for oy in 0..oh {
            let Some(y) = tap(oy, g.stride_h, ky, g.dil_h, g.pad_top, g.h) else {
                continue;
            };
            let line = &mut channel[y * g.w..][..g.w];
            let src = &row[oy * ow + x_lo..oy * ow + x_hi];
            if g.stride_w == 1 {
                for (d, &v) in line[x0..x0 + src.len()].iter_mut().zip(src) {
                    *d += v;
                }
            } else {
                for (x, &v) in (x0..).step_by(g.stride_w).zip(src) {
                    line[x] += v;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Gemm and MatMul

fn as_matrix<'a, T: Real>(
    a: &'a ArrayViewD<T>,
    what: &'static str,
) -> Result<ArrayView2<'a, T>, OpError> {
    a.view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| rank_err(what, "2-D", a.shape()))
}

/// ONNX Gemm: `alpha * op(A) * op(B) + beta * C` (C broadcast to the output).
pub fn gemm<T: Real>(
    lin: &Linalg,
    a: ArrayViewD<T>,
    b: ArrayViewD<T>,
    c: Option<ArrayViewD<T>>,
    attrs: &GemmAttrs,
) -> Result<ArrayD<T>, OpError> {
    let a2 = as_matrix(&a, "Gemm A")?;
    let b2 = as_matrix(&b, "Gemm B")?;
    let oa = if attrs.trans_a { a2.t() } else { a2 };
    let ob = if attrs.trans_b { b2.t() } else { b2 };
    if oa.ncols() != ob.nrows() {
        return Err(OpError::Shape(format!(
            "A {:?} (transA {}) and B {:?} (transB {}) do not multiply",
            a.shape(),
            attrs.trans_a,
            b.shape(),
            attrs.trans_b
        )));
    }
    let mut y = T::matmul(lin, oa, ob).into_dyn();
    let alpha = T::from_f32(attrs.alpha);
    if attrs.alpha != 1.0 {
        y.mapv_inplace(|v| v * alpha);
    }
    if let Some(c) = c
        && attrs.beta != 0.0
    {
        let shape = y.shape().to_vec();
        let cb = c.broadcast(IxDyn(&shape)).ok_or_else(|| {
            OpError::Shape(format!(
                "C {:?} does not broadcast to the output {shape:?}",
                c.shape()
            ))
        })?;
        let beta = T::from_f32(attrs.beta);
        Zip::from(&mut y).and(&cb).for_each(|y, &c| *y += beta * c);
    }
    Ok(y)
}

/// Gradients of a Gemm: `(dA, dB, dC)`, each `None` when not asked for.
pub type GemmGrads<T> = (Option<ArrayD<T>>, Option<ArrayD<T>>, Option<ArrayD<T>>);

/// Gemm backward. `need` says which of A, B, C want a gradient.
pub fn gemm_backward<T: Real>(
    lin: &Linalg,
    a: ArrayViewD<T>,
    b: ArrayViewD<T>,
    c_shape: Option<&[usize]>,
    dy: ArrayViewD<T>,
    attrs: &GemmAttrs,
    need: [bool; 3],
) -> Result<GemmGrads<T>, OpError> {
    let a2 = as_matrix(&a, "Gemm A")?;
    let b2 = as_matrix(&b, "Gemm B")?;
    let dy2 = as_matrix(&dy, "Gemm output gradient")?;
    let oa = if attrs.trans_a { a2.t() } else { a2 };
    let ob = if attrs.trans_b { b2.t() } else { b2 };
    let alpha = T::from_f32(attrs.alpha);
    let scale = |mut g: ndarray::Array2<T>| {
        if attrs.alpha != 1.0 {
            g.mapv_inplace(|v| v * alpha);
        }
        g.into_dyn()
    };
    // d op(A) = dY op(B)^T; dA is its transpose under transA (computed directly as op(B) dY^T).
    let da = need[0].then(|| {
        scale(if attrs.trans_a {
            T::matmul(lin, ob, dy2.t())
        } else {
            T::matmul(lin, dy2, ob.t())
        })
    });
    // d op(B) = op(A)^T dY; under transB, dB = dY^T op(A).
    let db = need[1].then(|| {
        scale(if attrs.trans_b {
            T::matmul(lin, dy2.t(), oa)
        } else {
            T::matmul(lin, oa.t(), dy2)
        })
    });
    let dc = match c_shape {
        Some(shape) if need[2] => {
            let beta = T::from_f32(attrs.beta);
            let mut g = reduce_to_shape(dy.view(), shape)?;
            g.mapv_inplace(|v| v * beta);
            Some(g)
        }
        _ => None,
    };
    Ok((da, db, dc))
}

/// `A @ B` for A of any rank >= 1 (leading dimensions are rows) and a 2-D B.
pub fn matmul<T: Real>(
    lin: &Linalg,
    a: ArrayViewD<T>,
    b: ArrayViewD<T>,
) -> Result<ArrayD<T>, OpError> {
    let (a2, b2) = matmul_operands(&a, &b)?;
    let y = T::matmul(lin, a2.view(), b2);
    let mut shape = a.shape()[..a.ndim() - 1].to_vec();
    shape.push(b2.ncols());
    Ok(y.into_shape_with_order(IxDyn(&shape)).expect("rows x n"))
}

fn matmul_operands<'a, T: Real>(
    a: &'a ArrayViewD<T>,
    b: &'a ArrayViewD<T>,
) -> Result<(ndarray::CowArray<'a, T, Ix2>, ArrayView2<'a, T>), OpError> {
    let b2 = as_matrix(b, "MatMul B (training supports 2-D B only)")?;
    let Some(&k) = a.shape().last() else {
        return Err(rank_err("MatMul A", "at least 1-D", a.shape()));
    };
    if k != b2.nrows() {
        return Err(OpError::Shape(format!(
            "MatMul A {:?} and B {:?} do not multiply",
            a.shape(),
            b.shape()
        )));
    }
    let rows = a.len() / k.max(1);
    let a2 = a
        .as_standard_layout()
        .into_shape_with_order((rows, k))
        .expect("rows x k");
    Ok((a2, b2))
}

/// Gradients of a MatMul: `(dA, dB)`, each `None` when not asked for.
pub type MatMulGrads<T> = (Option<ArrayD<T>>, Option<ArrayD<T>>);

/// MatMul backward.
pub fn matmul_backward<T: Real>(
    lin: &Linalg,
    a: ArrayViewD<T>,
    b: ArrayViewD<T>,
    dy: ArrayViewD<T>,
    need: [bool; 2],
) -> Result<MatMulGrads<T>, OpError> {
    let (a2, b2) = matmul_operands(&a, &b)?;
    let dy2 = dy
        .as_standard_layout()
        .into_shape_with_order((a2.nrows(), b2.ncols()))
        .map_err(|_| OpError::Shape(format!("MatMul output gradient {:?}", dy.shape())))?;
    let da = need[0].then(|| {
        T::matmul(lin, dy2.view(), b2.t())
            .into_shape_with_order(IxDyn(a.shape()))
            .expect("A shape")
    });
    let db = need[1].then(|| T::matmul(lin, a2.t(), dy2.view()).into_dyn());
    Ok((da, db))
}

// ---------------------------------------------------------------------------------------------------------
// Elementwise, pooling, loss

/// Sums `g` over the axes along which a tensor of `shape` was broadcast to `g`'s shape.
pub fn reduce_to_shape<T: Real>(g: ArrayViewD<T>, shape: &[usize]) -> Result<ArrayD<T>, OpError> {
    let full = broadcast_shapes(g.shape(), shape)?;
    if full != g.shape() {
        return Err(OpError::Broadcast {
            a: g.shape().to_vec(),
            b: shape.to_vec(),
        });
    }
    let mut out = g.to_owned();
    let lead = g.ndim() - shape.len();
    for _ in 0..lead {
        out = out.sum_axis(Axis(0));
    }
    for (axis, &d) in shape.iter().enumerate() {
        if d == 1 && out.shape()[axis] != 1 {
            out = out.sum_axis(Axis(axis)).insert_axis(Axis(axis));
        }
    }
    Ok(out)
}

/// ReLU backward from the forward output: `dx = dy * (y > 0)`, in place (`y` is 0 wherever the input was not
/// positive, NaN included).
pub fn relu_backward<T: Real>(y: ArrayViewD<T>, dy: ArrayD<T>) -> ArrayD<T> {
    let mut dx = dy;
    Zip::from(&mut dx).and(&y).for_each(|d, &y| {
        if y <= T::ZERO {
            *d = T::ZERO;
        }
    });
    dx
}

/// Max-pool forward with the winning input cell of every output (index within its `h*w` plane; the first
/// maximum in window order wins, padding never does).
pub fn max_pool<T: Real>(
    x: ArrayViewD<T>,
    attrs: &PoolAttrs,
) -> Result<(ArrayD<T>, Vec<u32>), OpError> {
    let &[n, c, h, w] = x.shape() else {
        return Err(rank_err("MaxPool input", "4-D NCHW", x.shape()));
    };
    let [kh, kw] = attrs.kernel_shape;
    let [sh, sw] = attrs.strides;
    let [dh, dw] = attrs.dilations;
    let [pt, pl, pb, pr] = attrs.pads;
    let oh = pool_output_len("MaxPool height", h, kh, sh, (pt, pb), dh, attrs.ceil_mode)?;
    let ow = pool_output_len("MaxPool width", w, kw, sw, (pl, pr), dw, attrs.ceil_mode)?;
    let u32_plane = u32::try_from(h * w).is_ok();
    if !u32_plane {
        return Err(OpError::Shape(format!(
            "MaxPool plane {h}x{w} is too large"
        )));
    }
    let xs = contiguous(&x);
    let mut y = vec![T::ZERO; n * c * oh * ow];
    let mut arg = vec![0u32; n * c * oh * ow];
    let plane_out = oh * ow;
    // The CNN pooling: 2x2, stride 2, no padding, every window inside the input (`oh <= h / 2`).
    let fast = attrs.kernel_shape == [2, 2]
        && attrs.strides == [2, 2]
        && attrs.dilations == [1, 1]
        && attrs.pads == [0; 4]
        && 2 * oh <= h
        && 2 * ow <= w;
    if fast && plane_out > 0 {
        y.par_chunks_mut(plane_out)
            .zip(arg.par_chunks_mut(plane_out))
            .zip(xs.par_chunks(h * w))
            .for_each(|((yd, ad), plane)| {
                for oy in 0..oh {
                    let (r0, r1) = (2 * oy * w, (2 * oy + 1) * w);
                    let (top, bottom) = (&plane[r0..][..2 * ow], &plane[r1..][..2 * ow]);
                    let (yrow, arow) = (&mut yd[oy * ow..][..ow], &mut ad[oy * ow..][..ow]);
                    let cells = top.chunks_exact(2).zip(bottom.chunks_exact(2));
                    for (ox, ((yv, av), (t, b))) in
                        yrow.iter_mut().zip(arow.iter_mut()).zip(cells).enumerate()
                    {
                        // Window order (t0, t1, b0, b1), first maximum wins as in the general path; selects,
                        // not branches (a data-dependent branch mispredicts half the time).
                        let (m1, j1) = if t[1] > t[0] { (t[1], 1u32) } else { (t[0], 0) };
                        let (m2, j2) = if b[1] > b[0] { (b[1], 3u32) } else { (b[0], 2) };
                        let (m, j) = if m2 > m1 { (m2, j2) } else { (m1, j1) };
                        *yv = m;
                        *av = (r0 + 2 * ox) as u32 + (j & 1) + (j >> 1) * w as u32;
                    }
                }
            });
    } else if plane_out > 0 && h * w > 0 {
        let failed = y
            .par_chunks_mut(plane_out)
            .zip(arg.par_chunks_mut(plane_out))
            .zip(xs.par_chunks(h * w))
            .map(|((yd, ad), plane)| {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut best: Option<(T, usize)> = None;
                        for ky in 0..kh {
                            let Some(iy) = tap(oy, sh, ky, dh, pt, h) else {
                                continue;
                            };
                            for kx in 0..kw {
                                let Some(ix) = tap(ox, sw, kx, dw, pl, w) else {
                                    continue;
                                };
                                let v = plane[iy * w + ix];
                                if best.is_none_or(|(b, _)| v > b) {
                                    best = Some((v, iy * w + ix));
                                }
                            }
                        }
                        let Some((v, at)) = best else {
                            return true;
                        };
                        yd[oy * ow + ox] = v;
                        ad[oy * ow + ox] = at as u32;
                    }
                }
                false
            })
            .any(|f| f);
        if failed {
            return Err(OpError::Shape(format!(
                "MaxPool: a window covers only padding (input {h}x{w}, pads {:?})",
                attrs.pads
            )));
        }
    }
    Ok((
        ArrayD::from_shape_vec(IxDyn(&[n, c, oh, ow]), y).expect("output shape"),
        arg,
    ))
}

/// Max-pool backward: each output's gradient goes to the input cell that won its window.
pub fn max_pool_backward<T: Real>(x_shape: &[usize], arg: &[u32], dy: ArrayViewD<T>) -> ArrayD<T> {
    let plane_in: usize = x_shape[2..].iter().product();
    let plane_out: usize = dy.shape()[2..].iter().product();
    let dys = contiguous(&dy);
    let mut dx = ArrayD::<T>::zeros(IxDyn(x_shape));
    if plane_in > 0 && plane_out > 0 {
        dx.as_slice_mut()
            .expect("fresh array")
            .par_chunks_mut(plane_in)
            .zip(dys.par_chunks(plane_out))
            .zip(arg.par_chunks(plane_out))
            .for_each(|((d, g), a)| {
                for (&g, &a) in g.iter().zip(a) {
                    d[a as usize] += g;
                }
            });
    }
    dx
}

/// Mean softmax cross-entropy of `logits` (`[batch, classes]`) against `labels`, and its gradient
/// with respect to the logits: `(softmax - onehot) / batch`.
pub fn softmax_cross_entropy<T: Real>(
    logits: ArrayViewD<T>,
    labels: &[usize],
) -> Result<(f64, ArrayD<T>), OpError> {
    let l = as_matrix(&logits, "logits")?;
    let (b, classes) = l.dim();
    if labels.len() != b {
        return Err(OpError::Shape(format!(
            "{} labels for logits {:?}",
            labels.len(),
            logits.shape()
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&y| y >= classes) {
        return Err(OpError::Shape(format!(
            "label {bad} is out of range for {classes} classes"
        )));
    }
    let mut grad = ndarray::Array2::<T>::zeros((b, classes));
    let inv_b = T::from_f64(1.0 / b.max(1) as f64);
    let mut loss = 0.0f64;
    for ((row, mut g), &y) in l.outer_iter().zip(grad.outer_iter_mut()).zip(labels) {
        let max = row.iter().copied().fold(row[0], T::max);
        let mut sum = T::ZERO;
        for (gi, &v) in g.iter_mut().zip(row.iter()) {
            *gi = (v - max).exp();
            sum += *gi;
        }
        loss += (sum.ln() + max - row[y]).to_f64();
        for gi in g.iter_mut() {
            *gi = *gi / sum * inv_b;
        }
        g[y] -= inv_b;
    }
    Ok((loss / b.max(1) as f64, grad.into_dyn()))
}

/// Index of the largest logit of each row (first on ties).
pub fn argmax_rows<T: Real>(logits: ArrayViewD<T>) -> Result<Vec<usize>, OpError> {
    let l = as_matrix(&logits, "logits")?;
    Ok(l.outer_iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (0, row[0]),
                    |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
                )
                .0
        })
        .collect())
}
