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
    // Input coordinate of every (output position, tap) pair, or None in the padding: computed once per call
    // instead of per element.
    let coords =
        |out_len: usize, taps: usize, stride: usize, dil: usize, pad: usize, len: usize| {
            (0..out_len)
                .flat_map(|o| {
                    (0..taps)
                        .map(move |t| (o * stride + t * dil).checked_sub(pad).filter(|&v| v < len))
                })
                .collect::<Vec<Option<usize>>>()
        };
    let ys = coords(oh, g.kh, g.stride_h, g.dil_h, g.pad_top, g.h);
    let xs = coords(ow, g.kw, g.stride_w, g.dil_w, g.pad_left, g.w);
    for (pix, row) in out.chunks_exact_mut(k).take(oh * ow).enumerate() {
        let (oy, ox) = (pix / ow, pix % ow);
        let xs = &xs[ox * g.kw..(ox + 1) * g.kw];
        // Every tap of this output column lands inside the row, contiguously: copy instead of gathering.
        let dense = g.dil_w == 1 && xs[0].is_some() && xs[g.kw - 1].is_some();
        let mut dst = row.chunks_exact_mut(g.kw);
        for c in 0..g.c_in {
            let channel = &input[c * plane..(c + 1) * plane];
            for &iy in &ys[oy * g.kh..(oy + 1) * g.kh] {
                let d = dst.next().expect("row has c_in * kh runs of kw");
                match iy {
                    None => d.fill(pad_value),
                    Some(y) if dense => {
                        let x0 = xs[0].expect("dense");
                        let src = &channel[y * g.w + x0..y * g.w + x0 + g.kw];
                        if let ([d0, d1, d2], [s0, s1, s2]) = (&mut *d, src) {
                            // 3-wide kernels, the common case: three stores, not a memcpy call.
                            (*d0, *d1, *d2) = (*s0, *s1, *s2);
                        } else {
                            d.copy_from_slice(src);
                        }
                    }
                    Some(y) => {
                        let line = &channel[y * g.w..(y + 1) * g.w];
                        for (v, &ix) in d.iter_mut().zip(xs) {
                            *v = ix.map_or(pad_value, |x| line[x]);
                        }
                    }
                }
            }
        }
    }
}

/// im2col transposed: `out` is `[c_in*kh*kw, out_h*out_w]`, row `(c*kh + ky)*kw + kx` holding that tap for every
/// output pixel. With the weights as the GEMM's left operand (`[c_out, K] x [K, pixels]`) the product is the NCHW
/// output itself, and each row is built from runs of one input row (contiguous for stride 1), so neither the
/// lowering nor the write-back gathers single elements.
pub fn im2col_kn(input: &[f32], g: &Conv2dGeom, out: &mut [f32]) {
    let (oh, ow, k) = (g.out_h(), g.out_w(), g.k());
    let plane = g.h * g.w;
    let m = oh * ow;
    assert!(input.len() >= g.c_in * plane, "im2col_kn: input too short");
    assert!(out.len() >= k * m, "im2col_kn: out too short");
    if m == 0 {
        return;
    }
    for (r, row) in out.chunks_exact_mut(m).take(k).enumerate() {
        let (c, ky, kx) = (r / (g.kh * g.kw), r / g.kw % g.kh, r % g.kw);
        let channel = &input[c * plane..(c + 1) * plane];
        // Output columns whose input column is inside the image: ox in [x_lo, x_hi).
        let off = kx * g.dil_w;
        let x_lo = g.pad_left.saturating_sub(off).div_ceil(g.stride_w).min(ow);
        let x_hi = (g.w + g.pad_left)
            .saturating_sub(off)
            .div_ceil(g.stride_w)
            .clamp(x_lo, ow);
        for (oy, dst) in row.chunks_exact_mut(ow).enumerate() {
            let iy = (oy * g.stride_h + ky * g.dil_h)
                .checked_sub(g.pad_top)
                .filter(|&y| y < g.h);
            let Some(y) = iy else {
                dst.fill(0.0);
                continue;
            };
            let line = &channel[y * g.w..(y + 1) * g.w];
            dst[..x_lo].fill(0.0);
            dst[x_hi..].fill(0.0);
            let x0 = x_lo * g.stride_w + off - g.pad_left;
            if g.stride_w == 1 {
                dst[x_lo..x_hi].copy_from_slice(&line[x0..x0 + (x_hi - x_lo)]);
            } else {
                for (d, x) in dst[x_lo..x_hi].iter_mut().zip((x0..).step_by(g.stride_w)) {
                    *d = line[x];
                }
            }
        }
    }
}
