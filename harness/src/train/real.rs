//! The scalar types training runs in, and the two primitives whose fast versions differ by type.
//!
//! `f32` is what models train in: its GEMM is the kernels crate's dispatched [`GemmF32`] and its im2col the
//! kernels crate's. `f64` exists for gradient checks against finite differences: its GEMM is ndarray's and its
//! im2col the plain loop in this file. Every other op is the same generic code for both, so a gradient check in
//! `f64` checks the code `f32` training runs, and an `f32`-vs-`f64` comparison checks the two fast primitives.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, Neg, SubAssign};

use kernels::GemmF32;
use kernels::frame::conv::Conv2dGeom;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, LinalgScalar, ScalarOperand};

/// The GEMM the `f32` ops call: one dispatched kernel, chosen once by [`kernels::select`].
#[derive(Clone, Copy)]
pub struct Linalg {
    pub gemm_f32: &'static dyn GemmF32,
}

impl Debug for Linalg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linalg")
            .field("gemm_f32", &self.gemm_f32.name())
            .finish()
    }
}

/// A float type the training ops are generic over (`f32` or `f64`).
pub trait Real:
    LinalgScalar
    + ScalarOperand
    + Send
    + Sync
    + Debug
    + Display
    + PartialOrd
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Neg<Output = Self>
    + Sum
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn round_ties_even(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn min(self, other: Self) -> Self;
    fn is_finite(self) -> bool;

    /// `c = a * b` (row-major `c`, `m x n`, overwritten); `a` and `b` may have any strides.
    fn gemm_into(lin: &Linalg, a: ArrayView2<Self>, b: ArrayView2<Self>, c: &mut [Self]);

    /// Transposed im2col of one image: `[c_in*kh*kw, out_h*out_w]` (see [`kernels::frame::conv::im2col_kn`]).
    fn im2col_kn(input: &[Self], g: &Conv2dGeom, out: &mut [Self]);

    /// im2col of one image: `[out_h*out_w, c_in*kh*kw]` (see [`kernels::frame::conv::im2col`]).
    fn im2col_pk(input: &[Self], g: &Conv2dGeom, out: &mut [Self]);

    /// `a * b` as a new row-major matrix.
    fn matmul(lin: &Linalg, a: ArrayView2<Self>, b: ArrayView2<Self>) -> Array2<Self> {
        let (m, n) = (a.nrows(), b.ncols());
        let mut c = vec![Self::ZERO; m * n];
        Self::gemm_into(lin, a, b, &mut c);
        Array2::from_shape_vec((m, n), c).expect("m x n")
    }
}

fn check_gemm_shapes<T>(a: &ArrayView2<T>, b: &ArrayView2<T>, c: &[T]) -> (usize, usize, usize) {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert_eq!(k, k2, "gemm: a is {m}x{k}, b is {k2}x{n}");
    assert_eq!(
        c.len(),
        m * n,
        "gemm: c has {} elements, needs {m}x{n}",
        c.len()
    );
    (m, k, n)
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline]
    fn exp(self) -> Self {
        f32::exp(self)
    }
    #[inline]
    fn ln(self) -> Self {
        f32::ln(self)
    }
    #[inline]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline]
    fn abs(self) -> Self {
        f32::abs(self)
    }
    #[inline]
    fn round_ties_even(self) -> Self {
        // Adding and removing 1.5 * 2^23 rounds to an integer, ties to even (the default rounding mode), without
        // the libm call that `f32::round_ties_even` becomes on baseline x86_64 (no SSE4.1 `roundss`). Exact for
        // |x| < 2^22; larger magnitudes are integers already.
        const MAGIC: f32 = 12_582_912.0;
        if self.abs() < 4_194_304.0 {
            (self + MAGIC) - MAGIC
        } else {
            self
        }
    }
    #[inline]
    fn max(self, other: Self) -> Self {
        f32::max(self, other)
    }
    #[inline]
    fn min(self, other: Self) -> Self {
        f32::min(self, other)
    }
    #[inline]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }

    fn gemm_into(lin: &Linalg, a: ArrayView2<f32>, b: ArrayView2<f32>, c: &mut [f32]) {
        let (m, k, n) = check_gemm_shapes(&a, &b, c);
        if m * n == 0 {
            return;
        }
        if k == 0 {
            c.fill(0.0);
            return;
        }
        let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
        let packed = lin
            .gemm_f32
            .pack_b(b.as_slice().expect("standard layout"), k, n);
        lin.gemm_f32
            .gemm(m, a.as_slice().expect("standard layout"), k, &packed, c, n);
    }

    fn im2col_kn(input: &[f32], g: &Conv2dGeom, out: &mut [f32]) {
        kernels::frame::conv::im2col_kn(input, g, out);
    }

    fn im2col_pk(input: &[f32], g: &Conv2dGeom, out: &mut [f32]) {
        kernels::frame::conv::im2col(input, g, 0.0, out);
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline]
    fn ln(self) -> Self {
        f64::ln(self)
    }
    #[inline]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline]
    fn abs(self) -> Self {
        f64::abs(self)
    }
    fn round_ties_even(self) -> Self {
        f64::round_ties_even(self)
    }
    #[inline]
    fn max(self, other: Self) -> Self {
        f64::max(self, other)
    }
    #[inline]
    fn min(self, other: Self) -> Self {
        f64::min(self, other)
    }
    #[inline]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }

    fn gemm_into(_: &Linalg, a: ArrayView2<f64>, b: ArrayView2<f64>, c: &mut [f64]) {
        let (m, _, n) = check_gemm_shapes(&a, &b, c);
        let mut cv = ArrayViewMut2::from_shape((m, n), c).expect("m x n");
        ndarray::linalg::general_mat_mul(1.0, &a, &b, 0.0, &mut cv);
    }

    fn im2col_kn(input: &[f64], g: &Conv2dGeom, out: &mut [f64]) {
        im2col_generic(input, g, out, true);
    }

    fn im2col_pk(input: &[f64], g: &Conv2dGeom, out: &mut [f64]) {
        im2col_generic(input, g, out, false);
    }
}

/// The input row (or column) a tap reads for output position `o`, or `None` in the padding.
pub(crate) fn tap(
    o: usize,
    stride: usize,
    t: usize,
    dil: usize,
    pad: usize,
    len: usize,
) -> Option<usize> {
    (o * stride + t * dil).checked_sub(pad).filter(|&v| v < len)
}

/// Plain im2col: `[K, P]` when `kn`, else `[P, K]`, with `K = c*kh*kw` in OIHW order and padding as zero.
fn im2col_generic<T: Real>(input: &[T], g: &Conv2dGeom, out: &mut [T], kn: bool) {
    let (oh, ow, k) = (g.out_h(), g.out_w(), g.k());
    let p = oh * ow;
    assert!(input.len() >= g.c_in * g.h * g.w, "im2col: input too short");
    assert!(out.len() >= k * p, "im2col: out too short");
    for r in 0..k {
        let (c, ky, kx) = (r / (g.kh * g.kw), r / g.kw % g.kh, r % g.kw);
        let channel = &input[c * g.h * g.w..][..g.h * g.w];
        for oy in 0..oh {
            let iy = tap(oy, g.stride_h, ky, g.dil_h, g.pad_top, g.h);
            for ox in 0..ow {
                let ix = tap(ox, g.stride_w, kx, g.dil_w, g.pad_left, g.w);
                let v = match (iy, ix) {
                    (Some(y), Some(x)) => channel[y * g.w + x],
                    _ => T::ZERO,
                };
                let pix = oy * ow + ox;
                out[if kn { r * p + pix } else { pix * k + r }] = v;
            }
        }
    }
}
