//! The static int8 convolution path in NHWC (channels last): im2col that copies whole channel runs, max
//! pooling across channels, and the requantization epilogue that turns a GEMM's i32 accumulators into the next
//! layer's u8 activations.
//!
//! Why NHWC: a convolution lowered to GEMM with rows = output pixels produces `[pixels, c_out]`, which *is*
//! NHWC; keeping that layout between layers removes a transpose per layer and lets im2col copy `c_in`
//! contiguous bytes per kernel tap instead of gathering single bytes.
//!
//! Rounding of [`requantize_u8_f32`]: the real multiplier is held in f32 (as ONNX Runtime's MLAS does), the
//! product is rounded half to even, then the zero point is added and the result clamped. Against the exact real
//! product this is off by at most one LSB, and only where the product is within an f32 ulp of a tie.

use super::conv::Conv2dGeom;
use crate::isa::{Isa, LoopBuild};

/// im2col over a batch of NHWC images (`[batch, h, w, c_in]`), rows = output pixels of every image in order,
/// columns ordered `(ky, kx, c)`: `out` is `[batch * out_h * out_w, kh * kw * c_in]`. Padding taps get
/// `pad_value` (the activation zero point).
pub fn im2col_nhwc(input: &[u8], batch: usize, g: &Conv2dGeom, pad_value: u8, out: &mut [u8]) {
    im2col_nhwc_slice(input, batch, g, g.c_in, 0, pad_value, out)
}

/// [`im2col_nhwc`] over a slice of the channels: the images have `channels` channels per pixel and the
/// lowering reads `g.c_in` of them starting at `first` (one group of a grouped convolution). `out` is
/// `[batch * out_h * out_w, kh * kw * g.c_in]`, columns ordered `(ky, kx, c)` over the slice.
pub fn im2col_nhwc_slice(
    input: &[u8],
    batch: usize,
    g: &Conv2dGeom,
    channels: usize,
    first: usize,
    pad_value: u8,
    out: &mut [u8],
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let k = g.k();
    assert!(
        first + g.c_in <= channels,
        "im2col_nhwc_slice: channels {first}..{} of {channels}",
        first + g.c_in
    );
    assert!(
        input.len() >= batch * g.h * g.w * channels,
        "im2col_nhwc: input too short"
    );
    assert!(
        out.len() >= batch * oh * ow * k,
        "im2col_nhwc: out too short"
    );
    if k == 0 {
        return;
    }
    // The run of one kernel row inside the image is `kw * c` contiguous bytes; a compile-time length turns
    // each copy into a few moves instead of a call. 3 is a 3x3 kernel on one channel (a grayscale first layer),
    // where a copy per run costs more than the bytes it moves.
    let sl = (channels, first);
    match (g.kw * g.c_in, channels == g.c_in) {
        (3, true) => lower::<3>(input, batch, g, sl, pad_value, out),
        (9, true) => lower::<9>(input, batch, g, sl, pad_value, out),
        _ => lower::<0>(input, batch, g, sl, pad_value, out),
    }
}

/// [`im2col_nhwc`] with the dense run length `RUN` fixed at compile time (0: read it from `g`).
#[inline(always)]
/// `(channels, first)`: the pixel stride and the first channel read (see [`im2col_nhwc_slice`]).
fn lower<const RUN: usize>(
    input: &[u8],
    batch: usize,
    g: &Conv2dGeom,
    (cs, c0): (usize, usize),
    pad_value: u8,
    out: &mut [u8],
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let c = g.c_in;
    let k = g.k();
    let image = g.h * g.w * cs;
    let run = if RUN > 0 { RUN } else { g.kw * c };
    debug_assert_eq!(run, g.kw * c);
    // Input coordinate of every (output position, tap) pair, or None in the padding, computed once per call.
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
    // Per output column: the first input column when all kw taps are inside the row and adjacent (in NHWC
    // they are then `run` contiguous bytes).
    let dense: Vec<Option<usize>> = xs
        .chunks_exact(g.kw)
        .map(|t| {
            (cs == c && g.dil_w == 1 && t[0].is_some() && t[g.kw - 1].is_some())
                .then(|| t[0].expect("some"))
        })
        .collect();
    for (b, image_out) in out.chunks_exact_mut(oh * ow * k).take(batch).enumerate() {
        let src = &input[b * image..(b + 1) * image];
        for (oy, row_out) in image_out.chunks_exact_mut(ow * k).enumerate() {
            let ys = &ys[oy * g.kh..(oy + 1) * g.kh];
            for (ox, dst) in row_out.chunks_exact_mut(k).enumerate() {
                match dense[ox] {
                    Some(x0) => {
                        for (&iy, dst) in ys.iter().zip(dst.chunks_exact_mut(run)) {
                            match iy {
                                Some(y) => {
                                    let from = &src[(y * g.w + x0) * c..];
                                    if RUN > 0 {
                                        dst[..RUN].copy_from_slice(&from[..RUN]);
                                    } else {
                                        copy_channels(dst, &from[..run]);
                                    }
                                }
                                None => dst.fill(pad_value),
                            }
                        }
                    }
                    None => {
                        let xs = &xs[ox * g.kw..(ox + 1) * g.kw];
                        for (&iy, dst) in ys.iter().zip(dst.chunks_exact_mut(run)) {
                            for (&ix, tap) in xs.iter().zip(dst.chunks_exact_mut(c)) {
                                match (iy, ix) {
                                    (Some(y), Some(x)) => {
                                        copy_channels(tap, &src[(y * g.w + x) * cs + c0..][..c])
                                    }
                                    _ => tap.fill(pad_value),
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Depthwise convolution accumulators over NHWC u8 images (`[batch, h, w, c]`, `g.c_in = c`, one input
/// channel per output channel): `acc[row, ch] = sum over taps t of x(t, ch) * weights[t * c + ch]`, rows = output
/// pixels of every image in order (`acc` is `[batch * out_h * out_w, c]`), taps ordered `(ky, kx)`. Padding taps
/// read `pad_value` (the activation zero point), exactly as [`im2col_nhwc`] lowers them, so the result is the
/// i32 matrix the per-channel GEMMs of that lowering would give; the caller folds weight zero points into
/// `weights` (`w - zp`) and requantizes with [`requantize_u8_f32`]'s arithmetic.
///
/// The loop over channels is compiled for the baseline, AVX2 and AVX-512, and the widest build that `isa` (the
/// caller's kernel tier) allows and the CPU runs is taken; integer arithmetic, so every build gives the same
/// accumulators. The baseline (SSE2) has no 32-bit multiply: PP-OCR's static int8 at batch 1 spent about a
/// third of its time here.
pub fn depthwise_nhwc_acc(
    input: &[u8],
    batch: usize,
    g: &Conv2dGeom,
    weights: &[i32],
    pad_value: u8,
    acc: &mut [i32],
    isa: Isa,
) {
    let (oh, ow, c) = (g.out_h(), g.out_w(), g.c_in);
    let taps = g.kh * g.kw;
    assert!(
        input.len() >= batch * g.h * g.w * c && weights.len() >= taps * c,
        "depthwise_nhwc_acc: short input or weights"
    );
    assert!(
        acc.len() >= batch * oh * ow * c,
        "depthwise_nhwc_acc: acc too short"
    );
    if c == 0 {
        return;
    }
    match isa.loop_build() {
        // SAFETY (both): `loop_build` chose the build because the CPU has its features.
        #[cfg(target_arch = "x86_64")]
        LoopBuild::Avx512 => unsafe {
            depthwise_builds::avx512(input, batch, g, weights, pad_value, acc)
        },
        #[cfg(target_arch = "x86_64")]
        LoopBuild::Avx2 => unsafe {
            depthwise_builds::avx2(input, batch, g, weights, pad_value, acc)
        },
        _ => depthwise_body(input, batch, g, weights, pad_value, acc),
    }
}

/// The builds of [`depthwise_nhwc_acc`]'s loop.
#[cfg(target_arch = "x86_64")]
mod depthwise_builds {
    use super::{Conv2dGeom, depthwise_body};

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn avx2(i: &[u8], b: usize, g: &Conv2dGeom, w: &[i32], pad: u8, acc: &mut [i32]) {
        depthwise_body(i, b, g, w, pad, acc)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) fn avx512(i: &[u8], b: usize, g: &Conv2dGeom, w: &[i32], pad: u8, acc: &mut [i32]) {
        depthwise_body(i, b, g, w, pad, acc)
    }
}

/// [`depthwise_nhwc_acc`]'s loops, after its checks.
#[inline(always)]
fn depthwise_body(
    input: &[u8],
    batch: usize,
    g: &Conv2dGeom,
    weights: &[i32],
    pad_value: u8,
    acc: &mut [i32],
) {
    let (oh, ow, c) = (g.out_h(), g.out_w(), g.c_in);
    let taps = g.kh * g.kw;
    let coord = |o: usize, t: usize, stride: usize, dil: usize, pad: usize, len: usize| {
        (o * stride + t * dil).checked_sub(pad).filter(|&v| v < len)
    };
    // Per tap: the padding's contribution `pad_value * w`, added where the tap falls outside the image.
    let pad: Vec<i32> = weights[..taps * c]
        .iter()
        .map(|&w| i32::from(pad_value) * w)
        .collect();
    let image = g.h * g.w * c;
    for (b, image_acc) in acc.chunks_exact_mut(oh * ow * c).take(batch).enumerate() {
        let src = &input[b * image..(b + 1) * image];
        for (oy, row) in image_acc.chunks_exact_mut(ow * c).enumerate() {
            row.fill(0);
            for ky in 0..g.kh {
                let iy = coord(oy, ky, g.stride_h, g.dil_h, g.pad_top, g.h);
                for kx in 0..g.kw {
                    let t = ky * g.kw + kx;
                    let w = &weights[t * c..(t + 1) * c];
                    let p = &pad[t * c..(t + 1) * c];
                    for (ox, dst) in row.chunks_exact_mut(c).enumerate() {
                        let ix = coord(ox, kx, g.stride_w, g.dil_w, g.pad_left, g.w);
                        match (iy, ix) {
                            (Some(y), Some(x)) => {
                                let x = &src[(y * g.w + x) * c..][..c];
                                for ((d, &v), &w) in dst.iter_mut().zip(x).zip(w) {
                                    *d += i32::from(v) * w;
                                }
                            }
                            _ => {
                                for (d, &p) in dst.iter_mut().zip(p) {
                                    *d += p;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Copies a short run of channels. Runs are short (1 to a few hundred bytes) and a `memcpy` call per run
/// costs more than the copy: up to three bytes are stores, multiples of 16 go as 16-byte blocks the compiler
/// keeps in vector registers.
#[inline]
fn copy_channels(dst: &mut [u8], src: &[u8]) {
    match (&mut *dst, src) {
        ([d0], [s0]) => *d0 = *s0,
        ([d0, d1, d2], [s0, s1, s2]) => (*d0, *d1, *d2) = (*s0, *s1, *s2),
        _ => copy_run(dst, src),
    }
}

#[inline]
fn copy_run(dst: &mut [u8], src: &[u8]) {
    match src.len() {
        len if len % 16 == 0 => {
            for (d, s) in dst.chunks_exact_mut(16).zip(src.chunks_exact(16)) {
                let block: [u8; 16] = s.try_into().expect("16 bytes");
                d.copy_from_slice(&block);
            }
        }
        _ => dst.copy_from_slice(src),
    }
}

/// Max pooling of NHWC u8 images: `rows[oy] = (first input row, taps)` and `cols[ox]` likewise give each
/// window's valid taps (padding never wins; every window needs at least one), with dilation `(dh, dw)`. `out` is
/// `[batch, rows.len(), cols.len(), c]`.
#[allow(clippy::too_many_arguments)]
pub fn max_pool_nhwc(
    input: &[u8],
    batch: usize,
    h: usize,
    w: usize,
    c: usize,
    rows: &[(usize, usize)],
    cols: &[(usize, usize)],
    dil: (usize, usize),
    out: &mut [u8],
) {
    let (oh, ow) = (rows.len(), cols.len());
    assert!(
        input.len() >= batch * h * w * c && out.len() >= batch * oh * ow * c,
        "max_pool_nhwc: short buffers"
    );
    let mut cells = out.chunks_exact_mut(c);
    for b in 0..batch {
        let src = &input[b * h * w * c..(b + 1) * h * w * c];
        for &(y0, ny) in rows {
            for &(x0, nx) in cols {
                let dst = cells.next().expect("one cell per output pixel");
                let tap = |ky: usize, kx: usize| {
                    let at = ((y0 + ky * dil.0) * w + x0 + kx * dil.1) * c;
                    &src[at..at + c]
                };
                // The first tap seeds the cell (every window has one: callers reject all-padding windows).
                dst.copy_from_slice(tap(0, 0));
                for ky in 0..ny {
                    for kx in 0..nx {
                        if ky + kx > 0 {
                            for (d, &v) in dst.iter_mut().zip(tap(ky, kx)) {
                                *d = (*d).max(v);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// 1.5 * 2^23: adding it to an f32 of magnitude below 2^22 rounds it to an integer, ties to even, in the
/// default rounding mode; subtracting it back leaves the rounded value. Vectorizes on every x86-64.
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;
/// Products are clamped to this before rounding; far beyond any u8 output, well inside the magic's range.
pub(crate) const ROUND_LIMIT: f32 = 4_194_304.0;

/// Static requantization of a GEMM block:
/// `out[i*n + j] = clamp(round_half_even((acc[i*ldc + j] + offset[j] - b_zp[j] * row_sums[i]) * mult[j]) + out_zp,
/// lo, 255)`, with `lo = out_zp` when `relu` (ReLU fused: the zero point is real 0) and 0 otherwise.
///
/// `offset` holds everything known ahead of time (bias in accumulator units, the activation zero point times the
/// weight column sums); the row-sum term is only needed for affine weights (`zero_point_rows = Some((b_zp,
/// row_sums))`, `b_zp` of length `n`). `mult[j] = s_in * s_w[j] / s_out`. All per-column slices have length `n`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn requantize_u8_f32(
    acc: &[i32],
    m: usize,
    n: usize,
    ldc: usize,
    offset: &[i32],
    zero_point_rows: Option<(&[i32], &[i32])>,
    mult: &[f32],
    out_zp: i32,
    relu: bool,
    out: &mut [u8],
) {
    assert!(
        offset.len() == n && mult.len() == n,
        "requantize_u8_f32: per-column slices must have n entries"
    );
    assert!(
        m == 0 || (acc.len() >= (m - 1) * ldc + n && out.len() >= m * n),
        "requantize_u8_f32: short buffers"
    );
    let lo = if relu {
        out_zp.clamp(0, 255) as f32
    } else {
        0.0
    };
    let zp = out_zp as f32;
    let mut row_offset = vec![0i32; n];
    for i in 0..m {
        let offset = match zero_point_rows {
            Some((b_zp, row_sums)) => {
                let rs = row_sums[i];
                for ((o, &base), &z) in row_offset.iter_mut().zip(offset).zip(b_zp) {
                    *o = base - z * rs;
                }
                &row_offset[..]
            }
            None => offset,
        };
        let src = &acc[i * ldc..i * ldc + n];
        let dst = &mut out[i * n..(i + 1) * n];
        for (((d, &a), &o), &s) in dst.iter_mut().zip(src).zip(offset).zip(mult) {
            let x = ((a + o) as f32 * s).clamp(-ROUND_LIMIT, ROUND_LIMIT);
            let r = ((x + ROUND_MAGIC) - ROUND_MAGIC + zp).clamp(lo, 255.0);
            // SAFETY: `r` is finite and within [0, 255] after the clamps, so the conversion is exact; the
            // unchecked form lets the loop vectorize without saturation fix-ups.
            *d = unsafe { r.to_int_unchecked::<i32>() } as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::conv::im2col;

    fn geom(c_in: usize, h: usize, w: usize, pad: usize, stride: usize, dil: usize) -> Conv2dGeom {
        Conv2dGeom {
            c_in,
            h,
            w,
            kh: 3,
            kw: 3,
            stride_h: stride,
            stride_w: stride,
            pad_top: pad,
            pad_left: pad,
            pad_bottom: pad,
            pad_right: pad,
            dil_h: dil,
            dil_w: dil,
        }
    }

    /// The NHWC im2col holds the same values as the NCHW one, with columns reordered from (c, ky, kx) to (ky, kx, c).
    #[test]
    fn nhwc_im2col_matches_nchw_im2col_reordered() {
        for (c, h, w, pad, stride, dil) in [
            (1, 5, 4, 1, 1, 1),
            (3, 7, 6, 1, 2, 1),
            (4, 9, 8, 2, 1, 2),
            (2, 3, 3, 0, 1, 1),
        ] {
            let g = geom(c, h, w, pad, stride, dil);
            let batch = 2;
            let nchw: Vec<u8> = (0..batch * c * h * w)
                .map(|i| (i * 37 % 251) as u8)
                .collect();
            let mut nhwc = vec![0u8; nchw.len()];
            for b in 0..batch {
                for ch in 0..c {
                    for p in 0..h * w {
                        nhwc[(b * h * w + p) * c + ch] = nchw[(b * c + ch) * h * w + p];
                    }
                }
            }
            let (m, k) = (g.out_h() * g.out_w(), g.k());
            let mut got = vec![0u8; batch * m * k];
            im2col_nhwc(&nhwc, batch, &g, 77, &mut got);
            for b in 0..batch {
                let mut want = vec![0u8; m * k];
                im2col(&nchw[b * c * h * w..(b + 1) * c * h * w], &g, 77, &mut want);
                for p in 0..m {
                    for ch in 0..c {
                        for t in 0..9 {
                            assert_eq!(
                                got[(b * m + p) * k + t * c + ch],
                                want[p * k + ch * 9 + t],
                                "{g:?} b{b} p{p} c{ch} t{t}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A channel slice lowers exactly as the same channels copied into their own image.
    #[test]
    fn nhwc_slice_im2col_matches_im2col_of_the_extracted_channels() {
        let (c, h, w, batch) = (6, 5, 7, 2);
        let input: Vec<u8> = (0..batch * h * w * c)
            .map(|i| (i * 53 % 251) as u8)
            .collect();
        for (first, len, pad, stride) in [(0, 2, 1, 1), (2, 2, 1, 2), (4, 2, 0, 1), (3, 1, 2, 1)] {
            let g = geom(len, h, w, pad, stride, 1);
            let part: Vec<u8> = input
                .chunks_exact(c)
                .flat_map(|px| px[first..first + len].to_vec())
                .collect();
            let rows = batch * g.out_h() * g.out_w();
            let mut want = vec![0u8; rows * g.k()];
            im2col_nhwc(&part, batch, &g, 9, &mut want);
            let mut got = vec![0u8; rows * g.k()];
            im2col_nhwc_slice(&input, batch, &g, c, first, 9, &mut got);
            assert_eq!(got, want, "first {first} len {len}");
        }
    }

    /// The depthwise accumulators equal one GEMM per channel over that channel's im2col.
    #[test]
    fn depthwise_acc_matches_per_channel_im2col_dot_products() {
        let (c, h, w, batch) = (5, 6, 5, 2);
        let input: Vec<u8> = (0..batch * h * w * c)
            .map(|i| (i * 97 % 256) as u8)
            .collect();
        let weights: Vec<i32> = (0..9 * c).map(|i| (i as i32 * 37) % 255 - 127).collect();
        for (pad, stride, dil) in [(1, 1, 1), (1, 2, 1), (0, 1, 1), (2, 1, 2)] {
            let g = geom(c, h, w, pad, stride, dil);
            let rows = batch * g.out_h() * g.out_w();
            let mut acc = vec![0i32; rows * c];
            depthwise_nhwc_acc(&input, batch, &g, &weights, 3, &mut acc, Isa::Scalar);
            // Every build the CPU runs gives the same accumulators.
            for isa in [Isa::Avx2, Isa::Avx512Vnni] {
                if !isa.is_available() {
                    eprintln!("skip: this CPU lacks {isa}");
                    continue;
                }
                let mut other = vec![-1i32; rows * c];
                depthwise_nhwc_acc(&input, batch, &g, &weights, 3, &mut other, isa);
                assert_eq!(other, acc, "{isa} build, {g:?}");
            }
            let g1 = geom(1, h, w, pad, stride, dil);
            let mut cols = vec![0u8; rows * 9];
            for ch in 0..c {
                im2col_nhwc_slice(&input, batch, &g1, c, ch, 3, &mut cols);
                for r in 0..rows {
                    let want: i32 = (0..9)
                        .map(|t| i32::from(cols[r * 9 + t]) * weights[t * c + ch])
                        .sum();
                    assert_eq!(acc[r * c + ch], want, "{g:?} row {r} channel {ch}");
                }
            }
        }
    }

    #[test]
    fn requantize_rounds_half_to_even_and_clamps() {
        // acc * 0.5: 1 -> 0.5 -> 0, 3 -> 1.5 -> 2, 5 -> 2.5 -> 2; then + zp 10.
        let acc = [1, 3, 5, -1000, 1000, -3];
        let mut out = [0u8; 6];
        requantize_u8_f32(&acc, 1, 6, 6, &[0; 6], None, &[0.5; 6], 10, false, &mut out);
        assert_eq!(out, [10, 12, 12, 0, 255, 8]);
        requantize_u8_f32(&acc, 1, 6, 6, &[0; 6], None, &[0.5; 6], 10, true, &mut out);
        assert_eq!(out, [10, 12, 12, 10, 255, 10]);
    }

    #[test]
    fn requantize_applies_offset_and_row_zero_points_within_one_lsb_of_exact() {
        let (m, n) = (3, 5);
        let acc: Vec<i32> = (0..m * n)
            .map(|i| (i as i32 * 7919) % 20011 - 10000)
            .collect();
        let offset = [100, -200, 0, 3, 5000];
        let b_zp = [0, 1, -3, 7, 0];
        let rows = [10, -20, 30];
        let mult = [0.01, 0.003, 0.02, 0.0005, 0.011];
        let mut out = vec![0u8; m * n];
        requantize_u8_f32(
            &acc,
            m,
            n,
            n,
            &offset,
            Some((&b_zp, &rows)),
            &mult,
            128,
            false,
            &mut out,
        );
        for i in 0..m {
            for j in 0..n {
                let exact = (acc[i * n + j] + offset[j] - b_zp[j] * rows[i]) as f64
                    * mult[j] as f64
                    + 128.0;
                let want = exact.round().clamp(0.0, 255.0);
                assert!(
                    (out[i * n + j] as f64 - want).abs() <= 1.0,
                    "[{i},{j}] {} vs {want}",
                    out[i * n + j]
                );
            }
        }
    }

    #[test]
    fn max_pool_takes_the_maximum_of_valid_taps_per_channel() {
        // One 2x2 image, 2 channels, 2x2 window stride 2: one output cell.
        let x = [1u8, 9, 4, 2, 3, 8, 7, 5];
        let mut out = [0u8; 2];
        max_pool_nhwc(&x, 1, 2, 2, 2, &[(0, 2)], &[(0, 2)], (1, 1), &mut out);
        assert_eq!(out, [7, 9]);
    }
}
