//! Op implementations as pure functions over ndarray views, shared by the FP32 reference executor and the
//! quantized executors: shape rules (flatten, reshape, numpy broadcasting, pooling/convolution output
//! sizes), max-pooling over any ordered element type, and f32 Conv / Gemm / MatMul lowered onto the
//! kernels crate's packed GEMM. Functions validate shapes and return [`OpError`]; callers add the node.

use kernels::frame::conv::{Conv2dGeom, im2col_kn};
use kernels::{GemmF32, PackedB};
use ndarray::{ArrayD, ArrayView2, ArrayViewD, Axis, Ix2, IxDyn, Zip};
use rayon::prelude::*;

use crate::ir::{ConvAttrs, GemmAttrs, PoolAttrs};

/// A shape or attribute problem in one op; the message names the shapes involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("{what} must be {expected}, got shape {shape:?}")]
    Rank {
        what: &'static str,
        expected: &'static str,
        shape: Vec<usize>,
    },

    #[error("shapes {a:?} and {b:?} do not broadcast together")]
    Broadcast { a: Vec<usize>, b: Vec<usize> },

    #[error("{0}")]
    Shape(String),
}

// ---------------------------------------------------------------------------------------------------------
// Shape rules

/// The most elements an op may allocate for an output whose size comes from data (a shape tensor, Expand,
/// Tile, Range, Resize sizes, broadcasting): 2^30 (4 GiB of f32). Real models stay far below it; a corrupt
/// or hostile file would otherwise abort the process on allocation instead of failing with an error.
pub const MAX_ELEMENTS: usize = 1 << 30;

/// The element count of `shape`, or an error naming `op` when it overflows or exceeds [`MAX_ELEMENTS`].
pub fn checked_elements(op: &str, shape: &[usize]) -> Result<usize, OpError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            OpError::Shape(format!(
                "{op}: output shape {shape:?} has more than {MAX_ELEMENTS} elements"
            ))
        })
}

/// ONNX `Flatten`: the dimensions before `axis` (in `-rank..=rank`) become the rows, the rest the columns.
pub fn flatten_shape(shape: &[usize], axis: i64) -> Result<Vec<usize>, OpError> {
    let axis = normalize_axis(axis, shape.len(), true).ok_or_else(|| {
        OpError::Shape(format!(
            "Flatten axis {axis} is out of range for shape {shape:?}"
        ))
    })?;
    Ok(vec![
        shape[..axis].iter().product(),
        shape[axis..].iter().product(),
    ])
}

/// `axis` in `-rank..rank` (or `..=rank` when `inclusive`) as a non-negative index.
pub(crate) fn normalize_axis(axis: i64, rank: usize, inclusive: bool) -> Option<usize> {
    let rank = i64::try_from(rank).ok()?;
    let hi = if inclusive { rank } else { rank - 1 };
    let a = if axis < 0 { axis + rank } else { axis };
    (0..=hi).contains(&a).then_some(a as usize)
}

/// ONNX `Reshape` target resolution: `-1` (at most once) is inferred from the element count; `0` copies the
/// input dimension at the same index unless `allowzero`, in which case it is a literal zero (and may not be
/// combined with `-1`).
pub fn reshape_shape(
    shape: &[usize],
    target: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>, OpError> {
    let err =
        |why: String| OpError::Shape(format!("cannot reshape {shape:?} to {target:?}: {why}"));
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        out.push(match t {
            -1 if infer.is_some() => return Err(err("more than one -1".to_owned())),
            -1 => {
                infer = Some(i);
                1
            }
            0 if allowzero => 0,
            0 => *shape
                .get(i)
                .ok_or_else(|| err(format!("0 at index {i} has no input dimension to copy")))?,
            t if t > 0 => {
                usize::try_from(t).map_err(|_| err(format!("dimension {t} is too large")))?
            }
            t => return Err(err(format!("invalid dimension {t}"))),
        });
    }
    let known = out
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err("element count overflows".to_owned()))?;
    if let Some(i) = infer {
        if known == 0 {
            return Err(err(
                "-1 is ambiguous when the other dimensions multiply to zero".to_owned(),
            ));
        }
        if !total.is_multiple_of(known) {
            return Err(err(format!("{total} elements do not divide into {known}")));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(err(format!("{total} elements, target has {known}")));
    }
    Ok(out)
}

/// Numpy broadcasting of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() < rank {
            1
        } else {
            s[i + s.len() - rank]
        }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(OpError::Broadcast {
                a: a.to_vec(),
                b: b.to_vec(),
            }),
        })
        .collect()
}

/// Output length of one spatial axis of a pooling window, ONNX rules: floor by default; with `ceil_mode`,
/// rounded up, but a last window that would start in the end padding is dropped.
pub fn pool_output_len(
    what: &'static str,
    input: usize,
    kernel: usize,
    stride: usize,
    pads: (usize, usize),
    dilation: usize,
    ceil_mode: bool,
) -> Result<usize, OpError> {
    let effective = dilation * (kernel - 1) + 1;
    let padded = input + pads.0 + pads.1;
    if kernel == 0 || stride == 0 || dilation == 0 || padded < effective {
        return Err(OpError::Shape(format!(
            "{what}: window {kernel} (dilation {dilation}, effective {effective}, stride {stride}) does not fit \
             input {input} padded by {pads:?}"
        )));
    }
    let span = padded - effective;
    let mut out = span / stride + 1;
    if ceil_mode && !span.is_multiple_of(stride) {
        out += 1;
        if (out - 1) * stride >= input + pads.0 {
            out -= 1;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------
// Elementwise

/// Numpy-broadcasting `a + b`.
pub fn broadcast_add(a: ArrayViewD<f32>, b: ArrayViewD<f32>) -> Result<ArrayD<f32>, OpError> {
    let shape = broadcast_shapes(a.shape(), b.shape())?;
    let (a, b) = (
        a.broadcast(IxDyn(&shape)).expect("broadcast shape checked"),
        b.broadcast(IxDyn(&shape)).expect("broadcast shape checked"),
    );
    let mut out = ArrayD::<f32>::zeros(IxDyn(&shape));
    Zip::from(&mut out)
        .and(&a)
        .and(&b)
        .for_each(|o, &x, &y| *o = x + y);
    Ok(out)
}

/// `a += b` where `b` broadcasts to `a`'s shape (the output shape of an `Add` whose left side is the larger).
pub fn add_assign_broadcast(a: &mut ArrayD<f32>, b: ArrayViewD<f32>) -> Result<(), OpError> {
    let shape = a.shape().to_vec();
    let b = b
        .broadcast(IxDyn(&shape))
        .ok_or_else(|| OpError::Broadcast {
            a: shape.clone(),
            b: b.shape().to_vec(),
        })?;
    Zip::from(a).and(&b).for_each(|x, &y| *x += y);
    Ok(())
}

/// `max(x, 0)` in place; NaN stays NaN.
pub fn relu_inplace(x: &mut ArrayD<f32>) {
    x.mapv_inplace(|v| if v < 0.0 { 0.0 } else { v });
}

// ---------------------------------------------------------------------------------------------------------
// Pooling

/// The input cells one pooling axis reads for each output position: `(first, count)`, the window's taps
/// that fall inside the input (`first + j * dilation` for `j < count`). Padding taps are left out.
pub(crate) fn pool_taps(
    out: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    kernel: usize,
    len: usize,
) -> Vec<(usize, usize)> {
    (0..out)
        .map(|o| {
            let start = (o * stride) as isize - pad as isize;
            let valid = |j: usize| (0..len as isize).contains(&(start + (j * dilation) as isize));
            match (0..kernel).find(|&j| valid(j)) {
                Some(lo) => {
                    let count = (lo..kernel).take_while(|&j| valid(j)).count();
                    ((start + (lo * dilation) as isize) as usize, count)
                }
                None => (0, 0),
            }
        })
        .collect()
}

/// 2-D max-pooling over an NCHW tensor. Padded cells never win: each window takes the maximum of the
/// input cells it covers. Planes run in parallel on the current rayon pool.
pub fn max_pool2d<T: Copy + PartialOrd + Send + Sync>(
    x: ArrayViewD<T>,
    attrs: &PoolAttrs,
) -> Result<ArrayD<T>, OpError> {
    let &[n, c, h, w] = x.shape() else {
        return Err(OpError::Rank {
            what: "MaxPool input",
            expected: "4-D NCHW",
            shape: x.shape().to_vec(),
        });
    };
    let [kh, kw] = attrs.kernel_shape;
    let [sh, sw] = attrs.strides;
    let [dh, dw] = attrs.dilations;
    let [pt, pl, pb, pr] = attrs.pads;
    let oh = pool_output_len("MaxPool height", h, kh, sh, (pt, pb), dh, attrs.ceil_mode)?;
    let ow = pool_output_len("MaxPool width", w, kw, sw, (pl, pr), dw, attrs.ceil_mode)?;
    let rows = pool_taps(oh, sh, pt, dh, kh, h);
    let cols = pool_taps(ow, sw, pl, dw, kw, w);
    let empty_row = rows.iter().position(|r| r.1 == 0);
    let empty_col = cols.iter().position(|c| c.1 == 0);
    if let Some(at) = empty_row.map(|r| (r, 0)).or(empty_col.map(|c| (0, c)))
        && n * c > 0
    {
        return Err(OpError::Shape(format!(
            "MaxPool window {at:?} covers only padding (input {h}x{w}, kernel {kh}x{kw}, dilation {dh}x{dw}, \
             pads {:?})",
            attrs.pads
        )));
    }
    let x = x.as_standard_layout();
    let src = x.as_slice().expect("standard layout");
    let planes = n * c;
    if planes * oh * ow == 0 {
        return Ok(ArrayD::from_shape_vec(IxDyn(&[n, c, oh, ow]), Vec::new()).expect("empty"));
    }
    // Seed with the first input value; every cell is overwritten with its window's maximum below.
    let mut out = vec![src[0]; planes * oh * ow];
    let larger = |a: T, b: T| if b > a { b } else { a };
    if attrs.kernel_shape == [2, 2]
        && attrs.strides == [2, 2]
        && attrs.dilations == [1, 1]
        && attrs.pads == [0; 4]
    {
        // The CNN pooling every classifier has: four loads and three compares per cell, no tap bookkeeping.
        // (`oh <= h / 2` here: without padding even ceil_mode cannot add a window past the input.)
        out.par_chunks_mut(oh * ow)
            .zip(src.par_chunks(h * w))
            .for_each(|(dst, plane)| {
                for (oy, dst_row) in dst.chunks_exact_mut(ow).enumerate() {
                    let (r0, r1) = (
                        &plane[2 * oy * w..][..w],
                        &plane[(2 * oy + 1).min(h - 1) * w..][..w],
                    );
                    for (ox, d) in dst_row.iter_mut().enumerate() {
                        let x1 = (2 * ox + 1).min(w - 1);
                        *d = larger(larger(r0[2 * ox], r0[x1]), larger(r1[2 * ox], r1[x1]));
                    }
                }
            });
        return Ok(
            ArrayD::from_shape_vec(IxDyn(&[n, c, oh, ow]), out).expect("output size computed")
        );
    }
    out.par_chunks_mut(oh * ow)
        .zip(src.par_chunks(h * w))
        .for_each(|(dst, plane)| {
            for (dst_row, &(y0, ny)) in dst.chunks_exact_mut(ow).zip(&rows) {
                for (d, &(x0, nx)) in dst_row.iter_mut().zip(&cols) {
                    let mut best = plane[y0 * w + x0];
                    for ky in 0..ny {
                        let row = &plane[(y0 + ky * dh) * w..][..w];
                        for kx in 0..nx {
                            let v = row[x0 + kx * dw];
                            if v > best {
                                best = v;
                            }
                        }
                    }
                    *d = best;
                }
            }
        });
    Ok(ArrayD::from_shape_vec(IxDyn(&[n, c, oh, ow]), out).expect("output size computed"))
}

// ---------------------------------------------------------------------------------------------------------
// Convolution

/// The im2col geometry of one group of a 2-D convolution over a `[c, h, w]` image, with the output size
/// validated (the kernel must fit in the padded input).
pub fn conv_geom(
    c_in_per_group: usize,
    h: usize,
    w: usize,
    attrs: &ConvAttrs,
) -> Result<Conv2dGeom, OpError> {
    let [kh, kw] = attrs.kernel_shape;
    let [pt, pl, pb, pr] = attrs.pads;
    pool_output_len(
        "Conv height",
        h,
        kh,
        attrs.strides[0],
        (pt, pb),
        attrs.dilations[0],
        false,
    )?;
    pool_output_len(
        "Conv width",
        w,
        kw,
        attrs.strides[1],
        (pl, pr),
        attrs.dilations[1],
        false,
    )?;
    Ok(Conv2dGeom {
        c_in: c_in_per_group,
        h,
        w,
        kh,
        kw,
        stride_h: attrs.strides[0],
        stride_w: attrs.strides[1],
        pad_top: pt,
        pad_left: pl,
        pad_bottom: pb,
        pad_right: pr,
        dil_h: attrs.dilations[0],
        dil_w: attrs.dilations[1],
    })
}

/// Validates OIHW conv weights against the attributes; returns `(c_out, c_in_per_group)`.
pub fn check_conv_weights(w_shape: &[usize], attrs: &ConvAttrs) -> Result<(usize, usize), OpError> {
    let &[c_out, cpg, kh, kw] = w_shape else {
        return Err(OpError::Rank {
            what: "Conv weight",
            expected: "4-D OIHW",
            shape: w_shape.to_vec(),
        });
    };
    if [kh, kw] != attrs.kernel_shape {
        return Err(OpError::Shape(format!(
            "weight shape {w_shape:?} does not match kernel_shape {:?}",
            attrs.kernel_shape
        )));
    }
    if c_out == 0 || cpg == 0 || c_out % attrs.group != 0 {
        return Err(OpError::Shape(format!(
            "weight shape {w_shape:?}: output channels {c_out} are not a positive multiple of group {}",
            attrs.group
        )));
    }
    Ok((c_out, cpg))
}

/// Conv weights laid out once for the GEMM: per group, the OIHW slice as a row-major `[c_out / group, K]`
/// left operand (`K = c_in_per_group * kh * kw`, row order `(c * kh + ky) * kw + kx`, the im2col order).
#[derive(Clone, Debug)]
pub struct PackedConvWeights {
    pub c_out: usize,
    pub c_in_per_group: usize,
    pub group: usize,
    pub kernel_shape: [usize; 2],
    /// Per group, `[c_out / group, c_in_per_group * kh * kw]` row-major: the GEMM's left operand.
    pub groups: Vec<Vec<f32>>,
}

impl PackedConvWeights {
    pub fn new(w: ArrayViewD<f32>, attrs: &ConvAttrs) -> Result<Self, OpError> {
        let (c_out, cpg) = check_conv_weights(w.shape(), attrs)?;
        let w = w.as_standard_layout();
        let flat = w.as_slice().expect("standard layout");
        let per_group = flat.len() / attrs.group;
        let groups = flat
            .chunks_exact(per_group.max(1))
            .take(attrs.group)
            .map(<[f32]>::to_vec)
            .collect();
        Ok(PackedConvWeights {
            c_out,
            c_in_per_group: cpg,
            group: attrs.group,
            kernel_shape: attrs.kernel_shape,
            groups,
        })
    }
}

/// 2-D convolution, NCHW input, f32. Per image and group: the transposed im2col `[K, out_h*out_w]` packed as
/// the GEMM's right operand, the weights `[c_out/group, K]` as its left: the product is the output planes in
/// NCHW order, so there is no write-back transpose.
/// Images run in parallel on the current rayon pool; each image's result does not depend on the pool.
pub fn conv2d_f32(
    x: ArrayViewD<f32>,
    w: &PackedConvWeights,
    bias: Option<&[f32]>,
    attrs: &ConvAttrs,
    gemm: &dyn GemmF32,
) -> Result<ArrayD<f32>, OpError> {
    let &[n, c, h, wd] = x.shape() else {
        return Err(OpError::Rank {
            what: "Conv input",
            expected: "4-D NCHW",
            shape: x.shape().to_vec(),
        });
    };
    if c != w.c_in_per_group * w.group
        || w.kernel_shape != attrs.kernel_shape
        || w.group != attrs.group
    {
        return Err(OpError::Shape(format!(
            "input shape {:?} does not match weights [{}, {}, {}, {}] with group {}",
            x.shape(),
            w.c_out,
            w.c_in_per_group,
            w.kernel_shape[0],
            w.kernel_shape[1],
            w.group
        )));
    }
    if let Some(b) = bias
        && b.len() != w.c_out
    {
        return Err(OpError::Shape(format!(
            "bias has {} values, weights have {} output channels",
            b.len(),
            w.c_out
        )));
    }
    let geom = conv_geom(w.c_in_per_group, h, wd, attrs)?;
    let (oh, ow, k) = (geom.out_h(), geom.out_w(), geom.k());
    let (m, ng) = (oh * ow, w.c_out / w.group);
    let mut out = ArrayD::<f32>::zeros(IxDyn(&[n, w.c_out, oh, ow]));
    if out.is_empty() {
        return Ok(out);
    }
    let x = x.as_standard_layout();
    let src = x.as_slice().expect("standard layout");
    let image_in = c * h * wd;
    let group_in = w.c_in_per_group * h * wd;
    out.as_slice_mut()
        .expect("fresh array")
        .par_chunks_mut(w.c_out * m)
        .enumerate()
        .for_each_init(
            || vec![0f32; k * m],
            |cols, (img, dst)| {
                let image = &src[img * image_in..][..image_in];
                for (g, weights) in w.groups.iter().enumerate() {
                    // [ng, K] x [K, pixels] = this group's NCHW output planes, written in place.
                    im2col_kn(&image[g * group_in..][..group_in], &geom, cols);
                    let packed = gemm.pack_b(cols, k, m);
                    let planes = &mut dst[g * ng * m..(g + 1) * ng * m];
                    gemm.gemm(ng, weights, k, &packed, planes, m);
                    if let Some(b) = bias {
                        for (plane, &b) in planes.chunks_exact_mut(m).zip(&b[g * ng..(g + 1) * ng])
                        {
                            plane.iter_mut().for_each(|v| *v += b);
                        }
                    }
                }
            },
        );
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------
// Gemm and MatMul

/// Packs a Gemm `B` input (`[K, N]`, or `[N, K]` when `trans_b`) for `gemm`.
pub fn pack_gemm_b(
    b: ArrayViewD<f32>,
    trans_b: bool,
    gemm: &dyn GemmF32,
) -> Result<PackedB<f32>, OpError> {
    let shape = b.shape().to_vec();
    let b = b.into_dimensionality::<Ix2>().map_err(|_| OpError::Rank {
        what: "Gemm B",
        expected: "2-D",
        shape,
    })?;
    Ok(pack_matrix(
        if trans_b { b.reversed_axes() } else { b },
        gemm,
    ))
}

/// Packs any 2-D view `[K, N]` (copying it to row-major first when needed).
pub fn pack_matrix(b: ArrayView2<f32>, gemm: &dyn GemmF32) -> PackedB<f32> {
    let (k, n) = b.dim();
    let b = b.as_standard_layout();
    gemm.pack_b(b.as_slice().expect("standard layout"), k, n)
}

/// `Y = alpha * op(A) * B + beta * C` with `B` already packed as `[K, N]` and `C` broadcast to `[M, N]`.
pub fn gemm_f32(
    a: ArrayViewD<f32>,
    b: &PackedB<f32>,
    c: Option<ArrayViewD<f32>>,
    attrs: &GemmAttrs,
    gemm: &dyn GemmF32,
) -> Result<ArrayD<f32>, OpError> {
    let shape_err = || {
        OpError::Shape(format!(
            "A shape {:?} (transA {}) does not match B [K={}, N={}] (transB {})",
            a.shape(),
            attrs.trans_a,
            b.k,
            b.n,
            attrs.trans_b
        ))
    };
    let a2 = a
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| OpError::Rank {
            what: "Gemm A",
            expected: "2-D",
            shape: a.shape().to_vec(),
        })?;
    let a2 = if attrs.trans_a {
        a2.reversed_axes()
    } else {
        a2
    };
    let (m, k) = a2.dim();
    if k != b.k {
        return Err(shape_err());
    }
    let a2 = a2.as_standard_layout();
    let mut y = vec![0f32; m * b.n];
    if m > 0 && k > 0 && b.n > 0 {
        gemm.gemm(
            m,
            a2.as_slice().expect("standard layout"),
            k,
            b,
            &mut y,
            b.n,
        );
    }
    let mut y = ArrayD::from_shape_vec(IxDyn(&[m, b.n]), y).expect("m x n");
    if attrs.alpha != 1.0 {
        y.mapv_inplace(|v| v * attrs.alpha);
    }
    if let Some(c) = c
        && attrs.beta != 0.0
    {
        let cb = c.broadcast(IxDyn(&[m, b.n])).ok_or_else(|| {
            OpError::Shape(format!(
                "C shape {:?} does not broadcast to the output [{m}, {}]",
                c.shape(),
                b.n
            ))
        })?;
        let beta = attrs.beta;
        if beta == 1.0 {
            Zip::from(&mut y).and(&cb).for_each(|y, &c| *y += c);
        } else {
            Zip::from(&mut y).and(&cb).for_each(|y, &c| *y += beta * c);
        }
    }
    Ok(y)
}

/// `A @ B` where `B` is a 2-D matrix already packed as `[K, N]`: every leading dimension of `A` is a row
/// (`A` of rank 1 is one row, dropped from the result).
pub fn matmul_packed_f32(
    a: ArrayViewD<f32>,
    b: &PackedB<f32>,
    b_was_vector: bool,
    gemm: &dyn GemmF32,
) -> Result<ArrayD<f32>, OpError> {
    let k = *a.shape().last().ok_or_else(|| OpError::Rank {
        what: "MatMul A",
        expected: "at least 1-D",
        shape: Vec::new(),
    })?;
    if k != b.k {
        return Err(OpError::Shape(format!(
            "MatMul A shape {:?} does not match B [K={}, N={}]",
            a.shape(),
            b.k,
            b.n
        )));
    }
    let m: usize = a.shape()[..a.ndim() - 1].iter().product();
    let a = a.as_standard_layout();
    let mut y = vec![0f32; m * b.n];
    if m > 0 && k > 0 && b.n > 0 {
        gemm.gemm(m, a.as_slice().expect("standard layout"), k, b, &mut y, b.n);
    }
    let mut shape = a.shape()[..a.ndim() - 1].to_vec();
    if !b_was_vector {
        shape.push(b.n);
    }
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), y).expect("rows x n"))
}

/// `numpy.matmul` semantics for f32: 1-D operands are promoted (and the added axis dropped), leading batch
/// dimensions broadcast. `B` is packed on every call; prefer [`matmul_packed_f32`] for constant weights.
pub fn matmul_f32(
    a: ArrayViewD<f32>,
    b: ArrayViewD<f32>,
    gemm: &dyn GemmF32,
) -> Result<ArrayD<f32>, OpError> {
    let mismatch = || {
        OpError::Shape(format!(
            "MatMul shapes {:?} and {:?} do not match",
            a.shape(),
            b.shape()
        ))
    };
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(mismatch());
    }
    if b.ndim() <= 2 {
        let b_vec = b.ndim() == 1;
        let b2 = if b_vec {
            b.view().insert_axis(Axis(1))
        } else {
            b.view()
        };
        let b2 = b2.into_dimensionality::<Ix2>().expect("2-D");
        if a.shape()[a.ndim() - 1] != b2.dim().0 {
            return Err(mismatch());
        }
        return matmul_packed_f32(a, &pack_matrix(b2, gemm), b_vec, gemm);
    }
    // Batched B: broadcast both to [batch.., M, K] and [batch.., K, N].
    let a_vec = a.ndim() == 1;
    let a = if a_vec {
        a.view().insert_axis(Axis(0))
    } else {
        a.view()
    };
    let (ra, rb) = (a.ndim(), b.ndim());
    let (m, k, kb, n) = (
        a.shape()[ra - 2],
        a.shape()[ra - 1],
        b.shape()[rb - 2],
        b.shape()[rb - 1],
    );
    if k != kb {
        return Err(mismatch());
    }
    let batch = broadcast_shapes(&a.shape()[..ra - 2], &b.shape()[..rb - 2])?;
    let full = |tail: [usize; 2]| IxDyn(&[batch.as_slice(), &tail].concat());
    let ab = a.broadcast(full([m, k])).ok_or_else(mismatch)?;
    let bb = b.broadcast(full([k, n])).ok_or_else(mismatch)?;
    let count: usize = batch.iter().product();
    let ab = ab.as_standard_layout();
    let bb = bb.as_standard_layout();
    let (asl, bsl) = (
        ab.as_slice().expect("standard"),
        bb.as_slice().expect("standard"),
    );
    let mut y = vec![0f32; count * m * n];
    if m * k * n > 0 {
        for i in 0..count {
            let packed = gemm.pack_b(&bsl[i * k * n..][..k * n], k, n);
            gemm.gemm(
                m,
                &asl[i * m * k..][..m * k],
                k,
                &packed,
                &mut y[i * m * n..][..m * n],
                n,
            );
        }
    }
    let mut shape = batch;
    if !a_vec {
        shape.push(m);
    }
    shape.push(n);
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), y).expect("batch x m x n"))
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn, arr2};

    use kernels::testing::tolerance::f32_gemm_max_diff;

    use super::*;

    /// The 2x2 / stride 2 fast path against a naive window maximum, on odd and even sizes, with ceil_mode.
    #[test]
    fn max_pool_2x2_fast_path_matches_naive() {
        for (h, w, ceil) in [
            (4, 6, false),
            (5, 7, false),
            (5, 7, true),
            (3, 3, true),
            (28, 28, false),
        ] {
            let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, h, w]), |d| {
                ((d[0] * 31 + d[1] * 17 + d[2] * 7 + d[3] * 3) % 23) as f32 - 11.0
            });
            let y = max_pool2d(x.view(), &pool(2, 2, [0; 4], ceil)).unwrap();
            let (oh, ow) = (y.shape()[2], y.shape()[3]);
            assert_eq!(
                (oh, ow),
                if ceil {
                    (h.div_ceil(2), w.div_ceil(2))
                } else {
                    (h / 2, w / 2)
                }
            );
            for idx in ndarray::indices(y.shape()) {
                let (b, c, oy, ox) = (idx[0], idx[1], idx[2], idx[3]);
                let mut best = f32::NEG_INFINITY;
                for yy in 2 * oy..(2 * oy + 2).min(h) {
                    for xx in 2 * ox..(2 * ox + 2).min(w) {
                        best = best.max(x[[b, c, yy, xx]]);
                    }
                }
                assert_eq!(y[[b, c, oy, ox]], best, "{h}x{w} ceil {ceil} at {idx:?}");
            }
        }
    }

    fn pool(k: usize, s: usize, pads: [usize; 4], ceil_mode: bool) -> PoolAttrs {
        PoolAttrs {
            kernel_shape: [k, k],
            strides: [s, s],
            pads,
            dilations: [1, 1],
            ceil_mode,
        }
    }

    #[test]
    fn reshape_rules() {
        assert_eq!(reshape_shape(&[2, 3, 4], &[0, -1], false), Ok(vec![2, 12]));
        assert_eq!(reshape_shape(&[2, 3, 4], &[-1], false), Ok(vec![24]));
        assert_eq!(
            reshape_shape(&[2, 3, 4], &[4, 0, 2], false),
            Ok(vec![4, 3, 2])
        );
        assert_eq!(
            reshape_shape(&[2, 3, 4], &[3, -1, 2], false),
            Ok(vec![3, 4, 2])
        );
        // allowzero: 0 is a literal zero-sized dimension.
        assert_eq!(reshape_shape(&[0, 3], &[3, 0], true), Ok(vec![3, 0]));
        assert!(reshape_shape(&[2, 3], &[3, 0], true).is_err());
        assert!(
            reshape_shape(&[0, 3], &[0, -1], true).is_err(),
            "-1 with a zero dimension is ambiguous"
        );
        assert!(reshape_shape(&[2, 3, 4], &[-1, -1], false).is_err());
        assert!(reshape_shape(&[2, 3, 4], &[5, -1], false).is_err());
        assert!(reshape_shape(&[2, 3, 4], &[2, 3, 5], false).is_err());
        assert!(
            reshape_shape(&[2, 3], &[0, 0, 0, -1], false).is_err(),
            "0 beyond the input rank"
        );
        assert!(reshape_shape(&[6], &[-2, 3], false).is_err());
        let msg = reshape_shape(&[2, 3, 4], &[5, -1], false)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("[2, 3, 4]") && msg.contains("[5, -1]"),
            "{msg}"
        );
    }

    #[test]
    fn flatten_rules() {
        assert_eq!(flatten_shape(&[2, 3, 4, 5], 1), Ok(vec![2, 60]));
        assert_eq!(flatten_shape(&[2, 3, 4, 5], 0), Ok(vec![1, 120]));
        assert_eq!(flatten_shape(&[2, 3, 4, 5], 4), Ok(vec![120, 1]));
        assert_eq!(flatten_shape(&[2, 3, 4, 5], -1), Ok(vec![24, 5]));
        assert_eq!(flatten_shape(&[2, 3, 4, 5], -4), Ok(vec![1, 120]));
        assert!(flatten_shape(&[2, 3, 4, 5], 5).is_err());
        assert!(flatten_shape(&[2, 3, 4, 5], -5).is_err());
    }

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_shapes(&[2, 1, 4], &[3, 1]), Ok(vec![2, 3, 4]));
        assert_eq!(broadcast_shapes(&[], &[3]), Ok(vec![3]));
        assert!(broadcast_shapes(&[2, 3], &[4]).is_err());

        let a = arr2(&[[1.0f32], [2.0]]).into_dyn(); // [2, 1]
        let b = ndarray::arr1(&[10.0f32, 20.0, 30.0]).into_dyn(); // [3]
        let y = broadcast_add(a.view(), b.view()).unwrap();
        assert_eq!(
            y,
            arr2(&[[11.0, 21.0, 31.0], [12.0, 22.0, 32.0]]).into_dyn()
        );
        assert_eq!(broadcast_add(b.view(), a.view()).unwrap(), y);
        let err = broadcast_add(
            y.view(),
            ndarray::arr1(&[1.0f32, 2.0, 3.0, 4.0]).into_dyn().view(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shapes [2, 3] and [4] do not broadcast together"
        );

        let mut acc = y.clone();
        add_assign_broadcast(&mut acc, b.view()).unwrap();
        assert_eq!(
            acc,
            arr2(&[[21.0, 41.0, 61.0], [22.0, 42.0, 62.0]]).into_dyn()
        );
        assert!(
            add_assign_broadcast(&mut a.clone(), b.view()).is_err(),
            "[3] does not fit into [2, 1]"
        );
    }

    fn grid(h: usize, w: usize, f: impl Fn(usize, usize) -> i32) -> ArrayD<i32> {
        ArrayD::from_shape_fn(IxDyn(&[1, 1, h, w]), |i| f(i[2], i[3]))
    }

    #[test]
    fn max_pool_plain() {
        // 4x4 with values y*4+x; 2x2 stride 2 keeps each block's bottom-right.
        let x = grid(4, 4, |y, x| (y * 4 + x) as i32);
        let y = max_pool2d(x.view(), &pool(2, 2, [0; 4], false)).unwrap();
        assert_eq!(y.shape(), [1, 1, 2, 2]);
        assert_eq!(y.into_raw_vec_and_offset().0, [5, 7, 13, 15]);
    }

    #[test]
    fn max_pool_padding_never_wins() {
        // All-negative input: a padded zero would win if padding took part.
        let x = grid(3, 3, |y, x| -((y * 3 + x) as i32) - 1); // -1 .. -9
        let y = max_pool2d(x.view(), &pool(2, 2, [1, 1, 1, 1], false)).unwrap();
        // Padded input is 5x5 -> out 2x2; windows cover rows {-1,0},{1,2} and cols {-1,0},{1,2}.
        assert_eq!(y.shape(), [1, 1, 2, 2]);
        assert_eq!(y.into_raw_vec_and_offset().0, [-1, -2, -4, -5]);
    }

    #[test]
    fn max_pool_ceil_mode() {
        // 5x5, k2 s2: floor -> 2x2; ceil -> 3x3 with a last window holding one column/row.
        let x = grid(5, 5, |y, x| (y * 5 + x) as i32);
        let floor = max_pool2d(x.view(), &pool(2, 2, [0; 4], false)).unwrap();
        assert_eq!(floor.into_raw_vec_and_offset().0, [6, 8, 16, 18]);
        let ceil = max_pool2d(x.view(), &pool(2, 2, [0; 4], true)).unwrap();
        assert_eq!(ceil.shape(), [1, 1, 3, 3]);
        assert_eq!(
            ceil.into_raw_vec_and_offset().0,
            [6, 8, 9, 16, 18, 19, 21, 23, 24]
        );
        // A window that would start inside the end padding is dropped: 4 wide, k2 s2, pad end 1 ->
        // span (4+1-2)=3, ceil(3/2)+1 = 3, but window 2 starts at 4 >= 4 + 0 -> 2 windows.
        let x = grid(4, 4, |y, x| (y * 4 + x) as i32);
        let y = max_pool2d(x.view(), &pool(2, 2, [0, 0, 1, 1], true)).unwrap();
        assert_eq!(y.shape(), [1, 1, 2, 2]);
        assert_eq!(pool_output_len("t", 4, 2, 2, (0, 1), 1, true), Ok(2));
        assert_eq!(pool_output_len("t", 5, 3, 2, (1, 1), 1, true), Ok(3));
        assert_eq!(pool_output_len("t", 6, 3, 2, (1, 1), 1, true), Ok(4));
        assert_eq!(pool_output_len("t", 6, 3, 2, (1, 1), 1, false), Ok(3));
    }

    #[test]
    fn max_pool_rejects_bad_input() {
        let x = ArrayD::<f32>::zeros(IxDyn(&[1, 3, 3]));
        assert!(matches!(
            max_pool2d(x.view(), &pool(2, 2, [0; 4], false)),
            Err(OpError::Rank { .. })
        ));
        let x = ArrayD::<f32>::zeros(IxDyn(&[1, 1, 2, 2]));
        assert!(
            max_pool2d(x.view(), &pool(3, 1, [0; 4], false)).is_err(),
            "window larger than the input"
        );
    }

    fn gemm() -> &'static dyn GemmF32 {
        kernels::select(Some(kernels::Isa::Scalar))
            .expect("scalar kernels always exist")
            .gemm_f32
    }

    /// Deterministic, non-trivial values in [-1, 1).
    fn pseudo(shape: &[usize], seed: usize) -> ArrayD<f32> {
        let mut i = seed;
        ArrayD::from_shape_simple_fn(IxDyn(shape), || {
            i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345) % (1 << 31);
            (i % 2000) as f32 / 1000.0 - 1.0
        })
    }

    /// Outputs are sums of `k` products in another order than the oracle's: the kernels crate's float GEMM
    /// budget (ruy's `Agree()`), scaled by the largest expected output.
    fn assert_close(got: &ArrayD<f32>, want: &ArrayD<f32>, k: usize) {
        assert_eq!(got.shape(), want.shape());
        let max_abs = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let budget = f32_gemm_max_diff(max_abs, k);
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= budget, "{g} vs {w} (budget {budget})");
        }
    }

    /// Direct (non-lowered) convolution in f64.
    fn naive_conv(x: &ArrayD<f32>, w: &ArrayD<f32>, b: &[f32], a: &ConvAttrs) -> ArrayD<f32> {
        let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let (co, cpg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
        let oh = (h + a.pads[0] + a.pads[2] - a.dilations[0] * (kh - 1) - 1) / a.strides[0] + 1;
        let ow = (wd + a.pads[1] + a.pads[3] - a.dilations[1] * (kw - 1) - 1) / a.strides[1] + 1;
        assert_eq!(c, cpg * a.group);
        let per = co / a.group;
        ArrayD::from_shape_fn(IxDyn(&[n, co, oh, ow]), |i| {
            let (img, o, oy, ox) = (i[0], i[1], i[2], i[3]);
            let g = o / per;
            let mut acc = f64::from(b[o]);
            for ci in 0..cpg {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let y =
                            (oy * a.strides[0] + ky * a.dilations[0]) as isize - a.pads[0] as isize;
                        let xx =
                            (ox * a.strides[1] + kx * a.dilations[1]) as isize - a.pads[1] as isize;
                        if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < wd {
                            acc += f64::from(x[[img, g * cpg + ci, y as usize, xx as usize]])
                                * f64::from(w[[o, ci, ky, kx]]);
                        }
                    }
                }
            }
            acc as f32
        })
    }

    #[test]
    fn conv_matches_direct_convolution() {
        let cases = [
            ConvAttrs {
                kernel_shape: [3, 3],
                strides: [1, 1],
                pads: [1, 1, 1, 1],
                dilations: [1, 1],
                group: 1,
            },
            ConvAttrs {
                kernel_shape: [3, 2],
                strides: [2, 1],
                pads: [0, 2, 1, 0],
                dilations: [1, 2],
                group: 2,
            },
            ConvAttrs {
                kernel_shape: [1, 1],
                strides: [1, 1],
                pads: [0; 4],
                dilations: [1, 1],
                group: 4,
            },
        ];
        for (seed, a) in cases.iter().enumerate() {
            let x = pseudo(&[3, 4, 7, 6], seed);
            let w = pseudo(
                &[8, 4 / a.group, a.kernel_shape[0], a.kernel_shape[1]],
                seed + 10,
            );
            let b: Vec<f32> = (0..8).map(|i| i as f32 * 0.1).collect();
            let packed = PackedConvWeights::new(w.view(), a).unwrap();
            let y = conv2d_f32(x.view(), &packed, Some(&b), a, gemm()).unwrap();
            let k = w.shape()[1..].iter().product::<usize>() + 1; // + bias
            assert_close(&y, &naive_conv(&x, &w, &b, a), k);
        }
        let a = &cases[0];
        let packed = PackedConvWeights::new(pseudo(&[8, 4, 3, 3], 0).view(), a).unwrap();
        let err =
            conv2d_f32(pseudo(&[1, 3, 5, 5], 0).view(), &packed, None, a, gemm()).unwrap_err();
        assert!(
            err.to_string().contains("input shape [1, 3, 5, 5]"),
            "{err}"
        );
        let bad = ConvAttrs {
            group: 3,
            ..a.clone()
        };
        assert!(PackedConvWeights::new(pseudo(&[8, 4, 3, 3], 0).view(), &bad).is_err());
    }

    #[test]
    fn gemm_transposes_alpha_beta_and_bias_broadcast() {
        let a = pseudo(&[4, 5], 1); // used as A^T: M = 5, K = 4
        let b = pseudo(&[3, 4], 2); // used as B^T: K = 4, N = 3
        let attrs = GemmAttrs {
            alpha: 0.5,
            beta: -2.0,
            trans_a: true,
            trans_b: true,
        };
        let packed = pack_gemm_b(b.view(), true, gemm()).unwrap();
        for c in [
            pseudo(&[3], 3),
            pseudo(&[1, 3], 4),
            pseudo(&[5, 3], 5),
            pseudo(&[5, 1], 6),
        ] {
            let y = gemm_f32(a.view(), &packed, Some(c.view()), &attrs, gemm()).unwrap();
            let cb = c.broadcast(IxDyn(&[5, 3])).unwrap();
            let want = ArrayD::from_shape_fn(IxDyn(&[5, 3]), |i| {
                let dot: f32 = (0..4).map(|k| a[[k, i[0]]] * b[[i[1], k]]).sum();
                0.5 * dot - 2.0 * cb[[i[0], i[1]]]
            });
            assert_close(&y, &want, 4 + 1);
        }
        let err = gemm_f32(pseudo(&[5, 5], 0).view(), &packed, None, &attrs, gemm()).unwrap_err();
        assert!(err.to_string().contains("[5, 5]"), "{err}");
        let bad_c = pseudo(&[2], 0);
        assert!(gemm_f32(a.view(), &packed, Some(bad_c.view()), &attrs, gemm()).is_err());
    }

    #[test]
    fn matmul_numpy_semantics() {
        let naive = |a: &ArrayD<f32>, b: &ArrayD<f32>| -> ArrayD<f32> {
            // Both 3-D with equal batch here.
            let (bt, m, k, n) = (a.shape()[0], a.shape()[1], a.shape()[2], b.shape()[2]);
            ArrayD::from_shape_fn(IxDyn(&[bt, m, n]), |i| {
                (0..k)
                    .map(|p| a[[i[0], i[1], p]] * b[[i[0], p, i[2]]])
                    .sum()
            })
        };
        let a = pseudo(&[2, 3, 4], 1);
        let b = pseudo(&[2, 4, 5], 2);
        assert_close(
            &matmul_f32(a.view(), b.view(), gemm()).unwrap(),
            &naive(&a, &b),
            4,
        );
        // Broadcast batch: [1, 4, 5] against [2, 3, 4].
        let b1 = pseudo(&[1, 4, 5], 3);
        let b1x2 = b1.broadcast(IxDyn(&[2, 4, 5])).unwrap().to_owned();
        assert_close(
            &matmul_f32(a.view(), b1.view(), gemm()).unwrap(),
            &naive(&a, &b1x2),
            4,
        );
        // 2-D B shared by every batch row, via the packed path.
        let b2 = pseudo(&[4, 5], 4);
        let b2x2 = b2.broadcast(IxDyn(&[2, 4, 5])).unwrap().to_owned();
        assert_close(
            &matmul_f32(a.view(), b2.view(), gemm()).unwrap(),
            &naive(&a, &b2x2),
            4,
        );
        // Vectors: [4] @ [4, 5] -> [5]; [2, 3, 4] @ [4] -> [2, 3]; [4] @ [4] -> [].
        let v = pseudo(&[4], 5);
        assert_eq!(
            matmul_f32(v.view(), b2.view(), gemm()).unwrap().shape(),
            [5]
        );
        let y = matmul_f32(a.view(), v.view(), gemm()).unwrap();
        assert_eq!(y.shape(), [2, 3]);
        let want: f32 = (0..4).map(|p| a[[1, 2, p]] * v[[p]]).sum();
        assert!((y[[1, 2]] - want).abs() <= f32_gemm_max_diff(want.abs().max(1.0), 4));
        assert_eq!(
            matmul_f32(v.view(), v.view(), gemm()).unwrap().shape(),
            [] as [usize; 0]
        );
        assert_eq!(
            matmul_f32(v.view(), b.view(), gemm()).unwrap().shape(),
            [2, 5]
        );
        assert!(matmul_f32(a.view(), pseudo(&[3, 5], 0).view(), gemm()).is_err());
        assert!(
            matmul_f32(a.view(), pseudo(&[3, 4, 5], 0).view(), gemm()).is_err(),
            "batch 2 vs 3"
        );
    }
}
