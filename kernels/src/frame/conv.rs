//! Lowering of a 2-D convolution to a GEMM (`im2col`). For one image and one group, the patch matrix built here
//! times the OIHW weights flattened per output channel (transposed to `k x c_out`) is the convolution output in
//! `[out_h * out_w, c_out]` (NHWC-like) order.

/// Geometry of one 2-D convolution group over one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeom {
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub pad_bottom: usize,
    pub pad_right: usize,
    pub dil_h: usize,
    pub dil_w: usize,
}

impl Conv2dGeom {
    /// Output rows: `(h + pads - dil_h*(kh-1) - 1) / stride_h + 1`, or 0 when the dilated kernel does not fit.
    pub fn out_h(&self) -> usize {
        out_len(
            self.h + self.pad_top + self.pad_bottom,
            self.kh,
            self.dil_h,
            self.stride_h,
        )
    }

    /// Output columns, as [`Conv2dGeom::out_h`].
    pub fn out_w(&self) -> usize {
        out_len(
            self.w + self.pad_left + self.pad_right,
            self.kw,
            self.dil_w,
            self.stride_w,
        )
    }

    /// GEMM depth: `c_in * kh * kw`.
    pub fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }
}

fn out_len(padded: usize, kernel: usize, dilation: usize, stride: usize) -> usize {
    assert!(
        stride > 0 && dilation > 0 && kernel > 0,
        "Conv2dGeom: kernel, stride and dilation must be >= 1"
    );
    match padded.checked_sub(dilation * (kernel - 1) + 1) {
        Some(span) => span / stride + 1,
        None => 0,
    }
}

/// Builds the patch matrix of one image. `input` holds `c_in` channels in CHW order (`c_in * h * w` elements);
/// `out` receives row-major `[out_h * out_w, c_in * kh * kw]`, with column `(c*kh + ky)*kw + kx` (the order of
/// flattened OIHW weights of one output channel). Padding positions get `pad_value`: 0.0 for `f32`, the
/// activation zero point for `u8`.
///
/// # Panics
/// If `input` or `out` is too short, or the geometry has a zero stride, dilation or kernel size.
pub fn im2col<T: Copy>(input: &[T], g: &Conv2dGeom, pad_value: T, out: &mut [T]) {
    let (oh, ow, k) = (g.out_h(), g.out_w(), g.k());
    let plane = g.h * g.w;
    assert!(
        input.len() >= g.c_in * plane,
        "im2col: input has {} elements, needs {}",
        input.len(),
        g.c_in * plane
    );
    assert!(
        out.len() >= oh * ow * k,
        "im2col: out has {} elements, needs {}",
        out.len(),
        oh * ow * k
    );
    if k == 0 {
        return;
    }
    for (pix, row) in out.chunks_exact_mut(k).take(oh * ow).enumerate() {
        let (oy, ox) = (pix / ow, pix % ow);
        let mut dst = row.iter_mut();
        for c in 0..g.c_in {
            let channel = &input[c * plane..(c + 1) * plane];
            for ky in 0..g.kh {
                // Input row, or None in the top/bottom padding.
                let iy = (oy * g.stride_h + ky * g.dil_h)
                    .checked_sub(g.pad_top)
                    .filter(|&y| y < g.h);
                for kx in 0..g.kw {
                    let ix = (ox * g.stride_w + kx * g.dil_w)
                        .checked_sub(g.pad_left)
                        .filter(|&x| x < g.w);
                    let v = match (iy, ix) {
                        (Some(y), Some(x)) => channel[y * g.w + x],
                        _ => pad_value,
                    };
                    *dst.next().expect("row has k elements") = v;
                }
            }
        }
    }
}
