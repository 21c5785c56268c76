//! Dynamic int8 GEMM with AVX-512 VNNI: `f32` A is quantized to `u8` block by block inside the GEMM, and the
//! zero-point compensation, dequantization, bias and relu run on the accumulators in registers, so C is written
//! once, as `f32`. Results are bit-identical to [`reference::gemm_f32_dyn_i8`](crate::reference::gemm_f32_dyn_i8)
//! for `k <= 33_025`.
//!
//! Passes over A:
//! 1. min/max of the finite values (`min_max_rows`, rows first to last: at 3136x576 that pass took 120 us
//!    walking the rows last to first, for the first rows to stay in L2, and 99 us forward), giving `(scale,
//!    zero_point)` by the call's [`DynRule`] (ONNX's affine `dynamic_qparams`, or symmetric): a per-tensor
//!    scale needs the whole range before any value is quantized;
//! 2. rows in blocks of [`MB`]: while the register tiles of block `b` run (bound by `vpdpbusd`), each k-group
//!    iteration of the full-height tiles also quantizes one 16-value vector of block `b + 1` (`QuantJob`),
//!    into the other of two `u8` buffers, whose rows are zero-padded to a multiple of 4 so tiles need no
//!    ragged-depth path. Interleaved this way a vector costs about 2.2 cycles on top of the GEMM's 16 per
//!    k-group, against 5.6 in a separate pass (Zen 4 dev box: microbenchmark, and 3136x576x64 end to end).
//!    Blocks that are too short to interleave (the first one, the last rows) are quantized in one go.
//!
//! Quantization is exactly the reference's: `vdivps` (not a multiplication by the reciprocal, whose rounding
//! differs near half-integers), rounding to nearest even, `+ zero_point`, clamp to `[0, 255]`. When the range
//! pass saw only finite values, the scale is normal and the lowest value's code is not negative, every code is
//! in `[0, 256]` (`unchecked_is_exact`, `QuantJob::step`), so the unsigned saturating narrowing is the whole
//! clamp (3136x576x64: 750 -> 715 us). Otherwise each vector
//! is checked: a non-finite value converts to `i32::MIN`, which finite values cannot reach (their quotients are
//! at most 255, or a few times that when the scale is subnormal); a block holding one is requantized by the
//! scalar [`quantize_u8`], the reference itself, as are the last `k % 16` values of each row.
//!
//! Epilogue per column `j` and row `i`: `acc - b_zp[j] * row_sum[i] + (k * zp * b_zp[j] - zp * col_sum[j])` in
//! wrapping `i32` (equal to the reference's `i64`-then-saturate whenever the true value fits, i.e. `k <=
//! 33_025`), then `as f32 * scale * b_scale[j] + bias[j]` as separate IEEE operations in the reference's order
//! (no FMA), then `max(0, .)`. B's column sums are computed at packing time and stored after the panels.

use core::arch::x86_64::*;

use rayon::prelude::*;

use super::gemm_u8i8::{GROUP_BYTES, MR, NR, NV, accumulate, column_mask};
use crate::frame::gemm::{PAR_MIN_MACS, assert_a, assert_packed};
use crate::frame::{col_sums_i8, quantize_u8};
use crate::isa::Isa;
use crate::reference::gemm_f32::assert_c;
#[cfg(test)]
use crate::reference::gemm_f32_dyn_i8::dynamic_qparams;
use crate::reference::gemm_f32_dyn_i8::{DynRule, assert_bias};
use crate::reference::gemm_f32w8::assert_dequant_params;
use crate::x86_64::avx2::pack::{pack_k4, packed_len_k4};
use crate::{GemmF32DynI8, Kernel, PackedB};

/// Rows of A quantized at a time: `MB x k` bytes (36 KiB at `k = 576`) stay in L1/L2 while every panel of B
/// passes over them.
pub const MB: usize = 8 * MR;

/// The AVX-512 VNNI dynamic int8 GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx512VnniGemmF32DynI8;

/// The registered instance.
pub static AVX512VNNI_GEMM_F32_DYN_I8: Avx512VnniGemmF32DynI8 = Avx512VnniGemmF32DynI8;

impl Kernel for Avx512VnniGemmF32DynI8 {
    fn name(&self) -> &'static str {
        "avx512vnni_gemm_f32_dyn_i8_8x32"
    }

    fn isa(&self) -> Isa {
        Isa::Avx512Vnni
    }
}

/// Per-column epilogue terms of one `gemm` call, padded to whole panels.
struct Columns {
    b_zp: Vec<i32>,
    /// `k * zp * b_zp[j] - zp * col_sum[j]`, wrapping.
    offset: Vec<i32>,
    /// `b_scale[j]`.
    scale: Vec<f32>,
    /// `bias[j]`, or 0.
    bias: Vec<f32>,
    /// Whether every `b_zp` is 0 (the row-sum term vanishes).
    no_b_zp: bool,
}

/// What the fused epilogue of every tile shares.
struct Epilogue<'a> {
    cols: &'a Columns,
    a_scale: f32,
    relu: bool,
}

impl GemmF32DynI8 for Avx512VnniGemmF32DynI8 {
    /// Packs B like [`super::Avx512VnniGemmU8I8`] (k-groups of 4, panels of 32 columns), followed by the `n`
    /// column sums as little-endian `i32` bytes.
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8> {
        let mut data: Vec<i8> = pack_k4(b, k, n, NR);
        data.extend(
            col_sums_i8(b, k, n)
                .iter()
                .flat_map(|s| s.to_le_bytes().map(|x| x as i8)),
        );
        PackedB {
            k,
            n,
            data,
            kernel: self.name(),
        }
    }

    fn gemm_with(
        &self,
        rule: DynRule,
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedB<i8>,
        b_scales: &[f32],
        b_zero_points: &[i32],
        bias: Option<&[f32]>,
        relu: bool,
        c: &mut [f32],
        ldc: usize,
    ) -> (f32, i32) {
        let name = self.name();
        self.assert_runnable();
        let (k, n) = (b.k, b.n);
        let panels_len = packed_len_k4(k, n, NR);
        assert_packed(name, b, panels_len + 4 * n);
        assert_a(name, m, k, a, lda);
        assert_dequant_params(name, n, b_scales.len(), b_zero_points.len());
        assert_bias(name, n, bias);
        assert_c(name, m, n, c.len(), ldc);

        let threads = rayon::current_num_threads();
        let parallel = threads > 1 && m.saturating_mul(n).saturating_mul(k.max(1)) >= PAR_MIN_MACS;
        // SAFETY: the ISA was checked above; `assert_a` guarantees the rows.
        let Range { lo, hi, all_finite } = if parallel && m >= 2 * threads {
            let rows = m.div_ceil(2 * threads);
            (0..m.div_ceil(rows))
                .into_par_iter()
                .map(|t| {
                    let r = t * rows..((t + 1) * rows).min(m);
                    unsafe { min_max_rows(a, lda, r, k) }
                })
                .reduce(Range::empty, Range::union)
        } else {
            unsafe { min_max_rows(a, lda, 0..m, k) }
        };
        let (a_scale, a_zp) = rule.qparams(lo, hi);
        let checked = !unchecked_is_exact(all_finite, lo, (a_scale, a_zp));
        if m == 0 || n == 0 {
            return (a_scale, a_zp);
        }

        let panels = n.div_ceil(NR);
        let padded = panels * NR;
        let mut cols = Columns {
            b_zp: vec![0; padded],
            offset: vec![0; padded],
            scale: vec![0.0; padded],
            bias: vec![0.0; padded],
            no_b_zp: b_zero_points.iter().all(|&z| z == 0),
        };
        match b_zero_points {
            [z] => cols.b_zp[..n].fill(*z),
            zps => cols.b_zp[..n].copy_from_slice(zps),
        }
        match b_scales {
            [s] => cols.scale[..n].fill(*s),
            scales => cols.scale[..n].copy_from_slice(scales),
        }
        if let Some(bias) = bias {
            cols.bias[..n].copy_from_slice(&bias[..n]);
        }
        let k_zp = (k as i32).wrapping_mul(a_zp);
        let col_sums = b.data[panels_len..].chunks_exact(4);
        for ((offset, &b_zp), sum) in cols.offset.iter_mut().zip(&cols.b_zp).zip(col_sums) {
            let sum = i32::from_le_bytes([sum[0] as u8, sum[1] as u8, sum[2] as u8, sum[3] as u8]);
            *offset = k_zp.wrapping_mul(b_zp).wrapping_sub(a_zp.wrapping_mul(sum));
        }
        let epi = Epilogue {
            cols: &cols,
            a_scale,
            relu,
        };
        let kq = k.next_multiple_of(4);
        let want_sums = !cols.no_b_zp;
        let b_panels = &b.data[..panels_len];
        let c = &mut c[..(m - 1) * ldc + n];

        let run_rows = |r0: usize, rows: usize, c: &mut [f32]| {
            let len = MB.min(rows) * kq;
            // A second buffer only when there is a second block.
            let (mut cur, mut next) = (vec![0u8; len], vec![0u8; if rows > MB { len } else { 0 }]);
            let (mut cur_sums, mut next_sums) = (vec![0i32; MB], vec![0i32; MB]);
            // SAFETY (all `unsafe` below): the ISA was checked above.
            let first = QuantJob::new(
                a,
                lda,
                k,
                r0..r0 + MB.min(rows),
                &mut cur,
                kq,
                (a_scale, a_zp),
                checked,
            );
            unsafe { first.finish(want_sums, &mut cur_sums) };
            for ib in (0..rows).step_by(MB) {
                let block = MB.min(rows - ib);
                let next_rows = r0 + ib + block..r0 + (ib + block + MB).min(rows);
                let mut quant = QuantJob::new(
                    a,
                    lda,
                    k,
                    next_rows,
                    &mut next,
                    kq,
                    (a_scale, a_zp),
                    checked,
                );
                let c_block = &mut c[ib * ldc..];
                for panel in 0..panels {
                    let j0 = panel * NR;
                    let b_panel =
                        &b_panels[panel * (kq / 4) * GROUP_BYTES..][..(kq / 4) * GROUP_BYTES];
                    let t = TileAt {
                        j0,
                        cols: NR.min(n - j0),
                        kq,
                    };
                    for i in (0..block).step_by(MR) {
                        let c_tile = &mut c_block[i * ldc + j0..];
                        let sums = &cur_sums[i..];
                        // SAFETY: the ISA was checked above; rows `i .. i + MR.min(block - i)` of `cur` hold `kq`
                        // bytes each, `b_panel` holds `kq / 4` k-groups, and `c_tile` holds those rows of
                        // `t.cols` columns at stride `ldc` (it starts at row `ib + i`, column `j0` of C).
                        unsafe {
                            match MR.min(block - i) {
                                8 if quant.left() >= kq / 4 && kq > 0 && checked => {
                                    tile_quantizing::<true>(
                                        &cur, i, &t, b_panel, sums, &epi, c_tile, ldc, &mut quant,
                                    )
                                }
                                8 if quant.left() >= kq / 4 && kq > 0 => tile_quantizing::<false>(
                                    &cur, i, &t, b_panel, sums, &epi, c_tile, ldc, &mut quant,
                                ),
                                8 => tile::<8>(&cur, i, &t, b_panel, sums, &epi, c_tile, ldc),
                                7 => tile::<7>(&cur, i, &t, b_panel, sums, &epi, c_tile, ldc),
                                6 => tile::<6>(&cur, i, &t, b_panel, sums, &epi, c_tile, ldc),
                                5 => tile::<5>(&cur, i, &t, b_panel, sums, &epi, c_tile, ldc),
                                4 => tile::<4>(&cur, i, &t, b_panel, sums, &epi, c_tile, ldc),
                                3 => tile::<3>(&cur, i, &t, b_panel, sums, &epi, c_tile, ldc),
                                2 => tile::<2>(&cur, i, &t, b_panel, sums, &epi, c_tile, ldc),
                                _ => tile::<1>(&cur, i, &t, b_panel, sums, &epi, c_tile, ldc),
                            }
                        }
                    }
                }
                unsafe { quant.finish(want_sums, &mut next_sums) };
                std::mem::swap(&mut cur, &mut next);
                std::mem::swap(&mut cur_sums, &mut next_sums);
            }
        };
        if parallel && m >= 2 * MR * threads {
            let chunk_rows = m.div_ceil(4 * threads).next_multiple_of(MR);
            c.par_chunks_mut(chunk_rows * ldc)
                .enumerate()
                .for_each(|(ci, cc)| {
                    let r0 = ci * chunk_rows;
                    run_rows(r0, chunk_rows.min(m - r0), cc);
                });
        } else {
            run_rows(0, m, c);
        }
        (a_scale, a_zp)
    }
}

/// Whether quantizing without checks ([`QuantJob::step`] unchecked) gives the reference's codes: every value
/// is finite, the scale is normal, and the lowest value's code is at least 0. Quantization is monotonic, so
/// then every code is at least 0, and at most `|a / scale| + 255` (below `2^30` for a normal scale from a
/// finite range), which the unsigned saturating narrowing clamps to 255 as the reference does. For both
/// rules the lowest code is provably at least 0 (affine: see `QuantJob::step`; symmetric: `round(lo / s) >=
/// -127` and the zero point is 128); computing it keeps the condition true to the arithmetic.
fn unchecked_is_exact(all_finite: bool, lo: f32, (scale, zero_point): (f32, i32)) -> bool {
    all_finite
        && scale.is_normal()
        && (lo.min(0.0) / scale).round_ties_even() as i32 + zero_point >= 0
}

/// The range of some rows of A: min and max of the finite values (`(inf, -inf)` if none), and whether every
/// value was finite.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Range {
    lo: f32,
    hi: f32,
    all_finite: bool,
}

impl Range {
    fn empty() -> Range {
        Range {
            lo: f32::INFINITY,
            hi: f32::NEG_INFINITY,
            all_finite: true,
        }
    }

    fn union(self, other: Range) -> Range {
        Range {
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
            all_finite: self.all_finite && other.all_finite,
        }
    }
}

/// The [`Range`] of rows `rows` (depth `k`, stride `lda`) of `a`. A first pass ignores NaN for free (`vminps`
/// returns its second operand when either is NaN) and notes whether any value was not finite (the largest
/// exponent field, two integer operations per vector, hidden under the pass's L3 reads: 85 us at 3136x576,
/// against 99 with a NaN compare into a mask); only if it met an infinity does a second pass mask the
/// non-finite values out (two more operations per vector).
///
/// # Safety
/// AVX-512 F must be available; the rows must lie in `a`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn min_max_rows(a: &[f32], lda: usize, rows: std::ops::Range<usize>, k: usize) -> Range {
    // SAFETY: same contract.
    let (lo, hi, all_finite) = unsafe { min_max_pass::<false>(a, lda, rows.clone(), k) };
    if lo.is_finite() && hi.is_finite() {
        return Range { lo, hi, all_finite };
    }
    // SAFETY: same contract.
    let (lo, hi, _) = unsafe { min_max_pass::<true>(a, lda, rows, k) };
    Range {
        lo,
        hi,
        all_finite: false,
    }
}

/// One pass of [`min_max_rows`]: NaN is always ignored, infinities too if `FINITE_ONLY`; the flag says whether
/// every value was finite (only meaningful without `FINITE_ONLY`).
///
/// # Safety
/// As [`min_max_rows`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn min_max_pass<const FINITE_ONLY: bool>(
    a: &[f32],
    lda: usize,
    rows: std::ops::Range<usize>,
    k: usize,
) -> (f32, f32, bool) {
    debug_assert!(Isa::Avx512Vnni.is_available());
    let zero = _mm512_setzero_ps();
    // Lanes of `x` to take: all (NaN is dropped by operand order), or the finite ones (`x - x` is 0 exactly
    // for finite `x`, NaN otherwise).
    let take = |x: __m512, mask: __mmask16| {
        if FINITE_ONLY {
            mask & _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_sub_ps(x, x), zero)
        } else {
            mask
        }
    };
    let mut lo = [_mm512_set1_ps(f32::INFINITY); 4];
    let mut hi = [_mm512_set1_ps(f32::NEG_INFINITY); 4];
    // Per lane, the largest exponent field seen: all ones only for infinities and NaN.
    let exponent = _mm512_set1_epi32(0x7f80_0000);
    let mut top = [_mm512_setzero_si512(); 4];
    let mut note = |u: usize, x: __m512| {
        if !FINITE_ONLY {
            top[u] = _mm512_max_epu32(top[u], _mm512_and_si512(_mm512_castps_si512(x), exponent));
        }
    };
    for i in rows {
        let row = &a[i * lda..][..k];
        let p = row.as_ptr();
        let mut at = 0;
        while at + 64 <= k {
            for u in 0..4 {
                // SAFETY: `at + 16 * u + 16 <= k` values are in the row.
                let x = unsafe { _mm512_loadu_ps(p.add(at + 16 * u)) };
                if FINITE_ONLY {
                    let m = take(x, 0xFFFF);
                    lo[u] = _mm512_mask_min_ps(lo[u], m, x, lo[u]);
                    hi[u] = _mm512_mask_max_ps(hi[u], m, x, hi[u]);
                } else {
                    note(u, x);
                    lo[u] = _mm512_min_ps(x, lo[u]);
                    hi[u] = _mm512_max_ps(x, hi[u]);
                }
            }
            at += 64;
        }
        while at < k {
            let mask = column_mask(k - at, 0);
            // SAFETY: lanes outside `mask` are not read (masked loads do not fault).
            let x = unsafe { _mm512_maskz_loadu_ps(mask, p.add(at)) };
            note(0, x);
            let m = take(x, mask);
            lo[0] = _mm512_mask_min_ps(lo[0], m, x, lo[0]);
            hi[0] = _mm512_mask_max_ps(hi[0], m, x, hi[0]);
            at += 16;
        }
    }
    let lo = _mm512_min_ps(_mm512_min_ps(lo[0], lo[1]), _mm512_min_ps(lo[2], lo[3]));
    let hi = _mm512_max_ps(_mm512_max_ps(hi[0], hi[1]), _mm512_max_ps(hi[2], hi[3]));
    let top = _mm512_max_epu32(
        _mm512_max_epu32(top[0], top[1]),
        _mm512_max_epu32(top[2], top[3]),
    );
    let all_finite = _mm512_cmpeq_epi32_mask(top, exponent) == 0;
    (
        _mm512_reduce_min_ps(lo),
        _mm512_reduce_max_ps(hi),
        all_finite,
    )
}

/// Quantizes rows of A into a block buffer (rows of `kq` bytes) one 16-value vector at a time, so that the work
/// can be spread through the k-loop of the previous block's tiles; [`QuantJob::finish`] does what is left.
struct QuantJob<'a> {
    a: &'a [f32],
    lda: usize,
    k: usize,
    rows: std::ops::Range<usize>,
    out: &'a mut [u8],
    kq: usize,
    scale: f32,
    zero_point: i32,
    /// Whether [`QuantJob::step`] must watch for non-finite values and negative codes (see there).
    checked: bool,
    /// Vectors in the job: `rows.len() * (k / 16)`.
    total: usize,
    at: Cursor,
}

/// Where a [`QuantJob`] stands; kept in registers by the loops that advance it.
#[derive(Clone, Copy)]
struct Cursor {
    /// Vectors done so far, in row-major order.
    done: usize,
    /// Index in `a` and `out` of the next vector.
    src: usize,
    dst: usize,
    /// Column of the next vector within its row.
    col: usize,
    /// Lanes that converted to `i32::MIN`: some value was not finite.
    non_finite: u16,
}

impl<'a> QuantJob<'a> {
    /// A job for rows `rows` of `a` (depth `k`, stride `lda`) into `out` (`rows.len()` rows of `kq >= k` bytes),
    /// with `(scale, zero_point)` from [`dynamic_qparams`]. `checked` must be true unless every value of A is
    /// finite and `scale` is normal.
    ///
    /// # Panics
    /// If the rows are not in `a` or `out` is too short.
    #[allow(clippy::too_many_arguments)]
    fn new(
        a: &'a [f32],
        lda: usize,
        k: usize,
        rows: std::ops::Range<usize>,
        out: &'a mut [u8],
        kq: usize,
        (scale, zero_point): (f32, i32),
        checked: bool,
    ) -> QuantJob<'a> {
        assert!(kq >= k && out.len() >= rows.len() * kq);
        if !rows.is_empty() {
            assert!(a.len() >= (rows.end - 1) * lda + k);
        }
        QuantJob {
            total: rows.len() * (k / 16),
            at: Cursor {
                done: 0,
                src: rows.start * lda,
                dst: 0,
                col: 0,
                non_finite: 0,
            },
            a,
            lda,
            k,
            rows,
            out,
            kq,
            scale,
            zero_point,
            checked,
        }
    }

    /// Vectors not yet quantized.
    fn left(&self) -> usize {
        self.total - self.at.done
    }

    /// Quantizes the vector at `at` and advances it; `at.done < total`. Takes the job's fields apart so that
    /// the caller's loop keeps them in registers.
    ///
    /// `CHECKED` notes codes that are `i32::MIN` (a non-finite value, or a quotient beyond `i32` when the scale
    /// is subnormal) and floors the codes at 0. Unchecked (every value finite, scale normal), neither can
    /// happen. Every value `a` lies in `[lo, hi]`, the range widened to 0, and `zero_point = round(-(lo / s))`
    /// (`-(lo / s) <= 255.0001` for a normal scale, so the clamp to 255 only ever rounds the same way). Division
    /// and round-half-even are monotonic and odd, so `round(a / s) + zero_point >= round(lo / s) + round(-(lo /
    /// s)) = 0`, and `|a / s| <= (hi - lo) / s`, which is `255 * (1 + 3 * 2^-24)` at most. Codes are therefore in
    /// `[0, 256]`, and the unsigned saturating narrowing clamps 256 to 255 as the reference does.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL must be available; `at` must come from this job (so the vector lies in `a` and `out`);
    /// `CHECKED` must be true unless the job's `checked` is false.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn step<const CHECKED: bool>(
        at: &mut Cursor,
        a: *const f32,
        out: *mut u8,
        shape: (usize, usize, usize),
        q: (f32, i32),
    ) {
        let (k, lda, kq) = shape;
        // SAFETY: the vector lies in its row of `a` (`col + 16 <= k`) and of `out` (`k <= kq`); `new` checked
        // that every row is in bounds.
        unsafe {
            let v = _mm512_loadu_ps(a.add(at.src));
            let code = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_div_ps(v, _mm512_set1_ps(q.0)),
            );
            let mut code = _mm512_add_epi32(code, _mm512_set1_epi32(q.1));
            if CHECKED {
                at.non_finite |= _mm512_cmpeq_epi32_mask(code, _mm512_set1_epi32(i32::MIN + q.1));
                code = _mm512_max_epi32(code, _mm512_setzero_si512());
            }
            _mm_storeu_si128(out.add(at.dst).cast(), _mm512_cvtusepi32_epi8(code));
        }
        // Next vector: 16 values on, or the start of the next row (written to compile to conditional moves).
        at.done += 1;
        let col = at.col + 16;
        let wrap = col + 16 > k;
        at.src += if wrap { lda - col + 16 } else { 16 };
        at.dst += if wrap { kq - col + 16 } else { 16 };
        at.col = if wrap { 0 } else { col };
    }

    /// Quantizes whatever is left, then the last `k % 16` values of each row (and, if any value was not
    /// finite, the whole block again) with the scalar reference; writes each row's code sum into `sums` if
    /// `want_sums`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL must be available.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn finish(self, want_sums: bool, sums: &mut [i32]) {
        let mut at = self.at;
        let (a, out) = (self.a.as_ptr(), self.out.as_mut_ptr());
        let (shape, q) = ((self.k, self.lda, self.kq), (self.scale, self.zero_point));
        while at.done < self.total {
            // SAFETY: `at` is this job's cursor; same features; `CHECKED` follows the job.
            unsafe {
                if self.checked {
                    QuantJob::step::<true>(&mut at, a, out, shape, q)
                } else {
                    QuantJob::step::<false>(&mut at, a, out, shape, q)
                }
            };
        }
        let whole = if at.non_finite != 0 {
            0
        } else {
            16 * (self.k / 16)
        };
        for (r, i) in self.rows.clone().enumerate() {
            let row = &self.a[i * self.lda..][..self.k];
            let out = &mut self.out[r * self.kq..][..self.k];
            quantize_u8(
                &row[whole..],
                self.scale,
                self.zero_point,
                &mut out[whole..],
            );
            if want_sums {
                sums[r] = out.iter().map(|&v| i32::from(v)).sum();
            }
        }
    }
}

/// Where a tile sits in its row block: first column `j0` of C, valid columns, padded depth.
struct TileAt {
    j0: usize,
    cols: usize,
    kq: usize,
}

/// Checks the preconditions shared by [`tile`] and [`tile_quantizing`] (debug builds).
#[allow(clippy::too_many_arguments)]
fn debug_check(
    rows: usize,
    qa: &[u8],
    i: usize,
    t: &TileAt,
    b: &[i8],
    sums: &[i32],
    c: &[f32],
    ldc: usize,
) {
    debug_assert!(Isa::Avx512Vnni.is_available());
    debug_assert!(qa.len() >= (i + rows) * t.kq && b.len() >= t.kq / 4 * GROUP_BYTES);
    debug_assert!(sums.len() >= rows && t.cols >= 1 && t.cols <= NR);
    debug_assert!(c.len() >= (rows - 1) * ldc + t.cols);
}

/// One `R x NR` tile of a row block: VNNI accumulation over the padded depth, then the fused epilogue into C.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available. Rows `i .. i + R` of `qa` (stride `t.kq`) must exist; `b` must hold
/// the panel's `t.kq / 4` k-groups; `row_sums` must hold `R` values; `c` must hold `R` rows of `t.cols` elements
/// at stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const R: usize>(
    qa: &[u8],
    i: usize,
    t: &TileAt,
    b: &[i8],
    row_sums: &[i32],
    epi: &Epilogue<'_>,
    c: &mut [f32],
    ldc: usize,
) {
    debug_check(R, qa, i, t, b, row_sums, c, ldc);
    // SAFETY: by this function's contract.
    unsafe {
        let acc = accumulate::<R>(qa, t.kq, i, 0, t.kq, b);
        epilogue::<R>(acc, t, row_sums, epi, c, ldc);
    }
}

/// A full-height ([`MR`]-row) [`tile`] whose k-loop also quantizes one vector of the next block per k-group
/// (`t.kq / 4` vectors; the job must have that many left), in the shadow of the `vpdpbusd` chains.
///
/// # Safety
/// As [`tile`] with `R = MR`; `CHECKED` must be true unless the job's `checked` is false.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_quantizing<const CHECKED: bool>(
    qa: &[u8],
    i: usize,
    t: &TileAt,
    b: &[i8],
    row_sums: &[i32],
    epi: &Epilogue<'_>,
    c: &mut [f32],
    ldc: usize,
    job: &mut QuantJob<'_>,
) {
    debug_check(MR, qa, i, t, b, row_sums, c, ldc);
    let groups = t.kq / 4;
    assert!(job.left() >= groups);
    let mut at = job.at;
    let (src, dst) = (job.a.as_ptr(), job.out.as_mut_ptr());
    let (shape, q) = ((job.k, job.lda, job.kq), (job.scale, job.zero_point));
    let mut acc = [[_mm512_setzero_si512(); NV]; MR];
    let a0 = qa[i * t.kq..].as_ptr();
    let bp = b.as_ptr();
    for g in 0..groups {
        // SAFETY: group `g` is in the panel and depths `4g .. 4g + 4` in every row (`kq` is a multiple of 4);
        // `at` is the job's cursor, with at least `groups - g` vectors to go.
        unsafe {
            QuantJob::step::<CHECKED>(&mut at, src, dst, shape, q);
            let b0 = _mm512_loadu_si512(bp.add(g * GROUP_BYTES).cast());
            let b1 = _mm512_loadu_si512(bp.add(g * GROUP_BYTES + 64).cast());
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(a0.add(r * t.kq + 4 * g).cast::<i32>().read_unaligned());
                acc_r[0] = _mm512_dpbusd_epi32(acc_r[0], av, b0);
                acc_r[1] = _mm512_dpbusd_epi32(acc_r[1], av, b1);
            }
        }
    }
    job.at = at;
    // SAFETY: by this function's contract.
    unsafe { epilogue::<MR>(acc, t, row_sums, epi, c, ldc) };
}

/// Compensation, dequantization, bias and relu of `R x NR` accumulators, stored into C through lane masks.
///
/// # Safety
/// AVX-512 F must be available; `row_sums` must hold `R` values and `c` `R` rows of `t.cols` elements at stride
/// `ldc`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn epilogue<const R: usize>(
    acc: [[__m512i; NV]; R],
    t: &TileAt,
    row_sums: &[i32],
    epi: &Epilogue<'_>,
    c: &mut [f32],
    ldc: usize,
) {
    const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    let cols = epi.cols;
    let a_scale = _mm512_set1_ps(epi.a_scale);
    let zero = _mm512_setzero_ps();
    for v in 0..NV {
        let mask = column_mask(t.cols, v);
        if mask == 0 {
            break;
        }
        let j = t.j0 + 16 * v;
        // SAFETY: the per-column vectors are padded to whole panels, so `j + 16` is in bounds.
        let (b_zp, offset, scale, bias) = unsafe {
            (
                _mm512_loadu_si512(cols.b_zp[j..j + 16].as_ptr().cast()),
                _mm512_loadu_si512(cols.offset[j..j + 16].as_ptr().cast()),
                _mm512_loadu_ps(cols.scale[j..j + 16].as_ptr()),
                _mm512_loadu_ps(cols.bias[j..j + 16].as_ptr()),
            )
        };
        for (r, acc_r) in acc.iter().enumerate() {
            let mut x = _mm512_add_epi32(acc_r[v], offset);
            if !cols.no_b_zp {
                let rs = _mm512_set1_epi32(row_sums[r]);
                x = _mm512_sub_epi32(x, _mm512_mullo_epi32(b_zp, rs));
            }
            // `as f32` rounds to nearest even; then the reference's order, without fusing.
            let f = _mm512_mul_ps(_mm512_cvt_roundepi32_ps::<NEAREST>(x), a_scale);
            let mut f = _mm512_add_ps(_mm512_mul_ps(f, scale), bias);
            if epi.relu {
                f = _mm512_max_ps(f, zero);
            }
            // SAFETY: lanes outside `mask` are not written; the valid ones lie in row `r` of `c`.
            unsafe { _mm512_mask_storeu_ps(c.as_mut_ptr().add(r * ldc + 16 * v), mask, f) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::gemm_f32_dyn_i8::SCALAR_GEMM_F32_DYN_I8;

    #[test]
    fn quant_job_equals_the_reference_quantization() {
        if !Isa::Avx512Vnni.is_available() {
            eprintln!("skip: this CPU lacks avx512vnni");
            return;
        }
        let mut rng = crate::testing::Rng::new(11);
        let (scale, zp) = dynamic_qparams(-1.0, 3.0);
        // Values exactly halfway between two codes and their neighbours, the range's ends (codes 0 and 255),
        // random values, and (in the last case) non-finite ones; row lengths around the vector width. Finite
        // cases run unchecked too, as the kernel runs them.
        for (k, non_finite, checked) in [
            (1usize, false, true),
            (16, false, true),
            (33, false, true),
            (64, false, true),
            (70, true, true),
            (16, false, false),
            (33, false, false),
            (64, false, false),
        ] {
            let (rows, lda, kq) = (5, k + 2, k.next_multiple_of(4));
            let a: Vec<f32> = (0..rows * lda)
                .map(|i| match i % 7 {
                    0 => ((i % 300) as f32 - zp as f32 + 0.5) * scale,
                    1 => f32::from_bits((((i % 300) as f32 + 0.5) * scale).to_bits() + 1),
                    2 if non_finite && i % 3 == 0 => f32::NAN,
                    3 if non_finite => f32::NEG_INFINITY,
                    4 if i % 2 == 0 => -1.0,
                    5 if i % 2 == 0 => 3.0,
                    _ => rng.f32_unit() * 2.0 + 1.0,
                })
                .collect();
            let mut out = vec![0u8; rows * kq];
            let mut sums = vec![0; rows];
            let job = QuantJob::new(&a, lda, k, 1..rows, &mut out, kq, (scale, zp), checked);
            unsafe { job.finish(true, &mut sums) };
            for r in 0..rows - 1 {
                let mut want = vec![0u8; k];
                quantize_u8(&a[(r + 1) * lda..][..k], scale, zp, &mut want);
                assert_eq!(&out[r * kq..r * kq + k], &want[..], "k {k} row {r}");
                assert!(out[r * kq + k..(r + 1) * kq].iter().all(|&v| v == 0));
                assert_eq!(sums[r], want.iter().map(|&v| i32::from(v)).sum::<i32>());
            }
        }
    }

    #[test]
    fn min_max_ignores_non_finite_values() {
        if !Isa::Avx512Vnni.is_available() {
            eprintln!("skip: this CPU lacks avx512vnni");
            return;
        }
        let k = 70;
        // In the 64-value body and in the ragged tail of a row.
        for (at, bad) in [3, 66]
            .into_iter()
            .flat_map(|at| [f32::NAN, f32::INFINITY, f32::NEG_INFINITY].map(|v| (at, v)))
        {
            let mut a: Vec<f32> = (0..2 * k).map(|i| i as f32 * 0.01 - 0.3).collect();
            a[at] = bad;
            a[k + at] = bad;
            let got = unsafe { min_max_rows(&a, k, 0..2, k) };
            let (lo, hi) = crate::frame::min_max(&a);
            let want = Range {
                lo,
                hi,
                all_finite: false,
            };
            assert_eq!(got, want, "{bad} at {at}");
            a[at] = 0.5;
            a[k + at] = 0.5;
            let got = unsafe { min_max_rows(&a, k, 0..2, k) };
            assert!(got.all_finite, "{bad} at {at} replaced");
        }
        let none = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
        let got = unsafe { min_max_rows(&none, 4, 0..1, 4) };
        assert_eq!(got.lo, f32::INFINITY);
        assert_eq!(got.hi, f32::NEG_INFINITY);
        assert!(!got.all_finite);
    }

    #[test]
    fn subnormal_scales_keep_codes_clamped() {
        if !Isa::Avx512Vnni.is_available() {
            eprintln!("skip: this CPU lacks avx512vnni");
            return;
        }
        // Range [-300, 0] x 2^-149: the scale rounds to 2^-149, the zero point clamps to 255 and the lowest
        // values' codes to 0 from -45, which the unchecked quantization (no floor) would turn into 255.
        let (m, k, n) = (40, 64, 32);
        let tiny = f32::from_bits(1);
        let a: Vec<f32> = (0..m * k).map(|i| -((i % 301) as f32) * tiny).collect();
        let (scale, zp) = dynamic_qparams(-300.0 * tiny, 0.0);
        assert!(!scale.is_normal() && zp == 255);
        let b = crate::testing::Rng::new(9).i8s(k * n);
        let kern = &AVX512VNNI_GEMM_F32_DYN_I8;
        let (mut want, mut got) = (vec![0f32; m * n], vec![0f32; m * n]);
        let packed = SCALAR_GEMM_F32_DYN_I8.pack_b(&b, k, n);
        SCALAR_GEMM_F32_DYN_I8.gemm(m, &a, k, &packed, &[1.0], &[0], None, false, &mut want, n);
        kern.gemm(
            m,
            &a,
            k,
            &kern.pack_b(&b, k, n),
            &[1.0],
            &[0],
            None,
            false,
            &mut got,
            n,
        );
        crate::testing::compare_exact(&want, &got, m, n).unwrap();
    }

    #[test]
    fn bit_identical_to_the_reference() {
        if !Isa::Avx512Vnni.is_available() {
            eprintln!("skip: this CPU lacks avx512vnni");
            return;
        }
        let mut rng = crate::testing::Rng::new(5);
        let kern = &AVX512VNNI_GEMM_F32_DYN_I8;
        for (m, k, n) in [
            (1, 1, 1),
            (9, 70, 33),
            (17, 3, 64),
            (1, 769, 40),
            (70, 130, 5),
            (3, 0, 7),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.f32_unit() * 3.0 + 0.7).collect();
            let b = rng.i8s(k * n);
            let scales: Vec<f32> = (0..n).map(|j| 0.01 + j as f32 * 1e-3).collect();
            let zps: Vec<i32> = (0..n).map(|j| (j as i32 * 37) % 256 - 128).collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.1 - 1.0).collect();
            for (per_channel, with_bias, relu) in [(true, true, true), (false, false, false)] {
                let (s, z) = if per_channel {
                    (&scales[..], &zps[..])
                } else {
                    (&scales[..1], &zps[..1])
                };
                let bias = with_bias.then_some(&bias[..]);
                let mut want = vec![0f32; m * n];
                let mut got = vec![0f32; m * n];
                let rp = SCALAR_GEMM_F32_DYN_I8.gemm(
                    m,
                    &a,
                    k,
                    &SCALAR_GEMM_F32_DYN_I8.pack_b(&b, k, n),
                    s,
                    z,
                    bias,
                    relu,
                    &mut want,
                    n,
                );
                let gp = kern.gemm(
                    m,
                    &a,
                    k,
                    &kern.pack_b(&b, k, n),
                    s,
                    z,
                    bias,
                    relu,
                    &mut got,
                    n,
                );
                assert_eq!(rp, gp, "{m}x{k}x{n}");
                crate::testing::compare_exact(&want, &got, m, n)
                    .unwrap_or_else(|e| panic!("{m}x{k}x{n}: {e}"));
            }
        }
    }
}
