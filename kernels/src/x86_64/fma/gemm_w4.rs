//! Group-wise int4 weight-only GEMM with AVX-512 (F/BW + VNNI), in the FMA family's tree because its `f32`
//! entry point is an FMA kernel; the int8-activation entry point runs on `vpdpbusd`.
//!
//! Packing (panels of [`NR`] = 16 columns, one `i32` lane per column; `k` padded to a multiple of 8 with
//! `q = zp`, so padded rows weigh zero):
//! - `data`: per panel, per 8 rows of depth ("oct" `o`), 64 bytes; byte `4j + t` holds `q[8o + t][j]` in its
//!   low nibble and `q[8o + 4 + t][j]` in its high nibble. One load and two masks give two `vpdpbusd`
//!   operands (4 consecutive depths per lane each).
//! - `scales`, `zero_points`: per panel, per group, 16 values (zero padded).
//! - `sums`: per panel, per group, per column `-128 * sum_p (q - zp)`, the correction of the `+128` offset below.
//!
//! `gemm_dyn_i8`: each row of A is quantized with [`int4::quantize_row_dyn_i8`]'s arithmetic (`vmaxps` for
//! `max|a|`, the same scalar `127 / max`, `vcvtps2dq` rounding to nearest even: bit-identical codes) and
//! stored as `u8 = code + 128`, rows padded to whole octs with code 0. `vpdpbusd` multiplies those unsigned
//! bytes by the signed centred weights `q - zp` (in `-15..=15`, one `vpsubb`), so each group's integer sum is
//! `sum (code + 128)(q - zp)`; starting the accumulator at `sums` removes the offset exactly. At the end of a
//! group the sum (`|.| < 2^24`, exact in `f32`) is scaled into an `f32` accumulator with one FMA; the row scale
//! multiplies after the last depth block. Differences from the reference: the FMA's single rounding and the
//! order of the additions of blocks.
//!
//! `gemm`: the tile widens each depth row of 16 nibbles to `f32` (`(q - zp)` in `i32`, converted, times the
//! group's scale: the reference's exact weight values) and does [`MR`] FMAs per row of weights.

use core::arch::x86_64::*;

use super::gemm_f32::{ARows, mask16, with_a};
use crate::formats::int4;
use crate::frame::gemm::{Blocking, Tile, assert_a, drive};
use crate::isa::Isa;
use crate::reference::gemm_w4::assert_packed_w4;
use crate::{GemmW4, Kernel, PackedW4};

/// Register-tile rows.
pub const MR: usize = 8;
/// Register-tile columns (one zmm of `i32` or `f32` lanes), and packed panel width.
pub const NR: usize = 16;
/// Bytes of one oct (8 depths) of a panel.
const OCT: usize = 64;
/// `kc` holds whole groups of every size; one panel block is `kc / 8 * 64` = 8 KiB (L1); `mc * kc` bytes of
/// quantized A (256 KiB) stay in L2.
const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: 1024,
    mc: 256,
};
const _: () = assert!(
    BLOCKING.kc.is_multiple_of(128),
    "a depth block must hold whole groups"
);

/// The AVX-512 VNNI int4 weight-only GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx512VnniGemmW4;

/// The registered instance.
pub static AVX512VNNI_GEMM_W4: Avx512VnniGemmW4 = Avx512VnniGemmW4;

impl Kernel for Avx512VnniGemmW4 {
    fn name(&self) -> &'static str {
        "avx512vnni_gemm_w4_f32_8x16"
    }

    fn isa(&self) -> Isa {
        Isa::Avx512Vnni
    }
}

/// One panel's packed weights and per-group parameters.
#[derive(Clone, Copy)]
struct Panel<'a> {
    /// `octs x 64` bytes.
    data: &'a [u8],
    /// `groups x 16`.
    scales: &'a [f32],
    /// `groups x 16`.
    zero_points: &'a [u8],
    /// `groups x 16`.
    sums: &'a [i32],
    group: usize,
}

impl<'a> Panel<'a> {
    fn new(b: &'a PackedW4, panel: usize) -> Panel<'a> {
        let (octs, groups) = (b.k.div_ceil(8), int4::group_count(b.k, b.group));
        Panel {
            data: &b.data[panel * octs * OCT..][..octs * OCT],
            scales: &b.scales[panel * groups * NR..][..groups * NR],
            zero_points: &b.zero_points[panel * groups * NR..][..groups * NR],
            sums: &b.sums[panel * groups * NR..][..groups * NR],
            group: b.group,
        }
    }
}

impl Avx512VnniGemmW4 {
    fn check(&self, m: usize, a: &[f32], lda: usize, b: &PackedW4, c: &[f32], ldc: usize) {
        self.assert_runnable();
        let (k, n) = (b.k, b.n);
        let (panels, groups) = (n.div_ceil(NR), int4::group_count(k, b.group));
        assert_packed_w4(
            self.name(),
            b,
            panels * k.div_ceil(8) * OCT * 2,
            panels * groups * NR,
        );
        assert!(
            b.sums.len() == panels * groups * NR,
            "{}: packed B lacks its sums",
            self.name()
        );
        assert_a(self.name(), m, k, a, lda);
        crate::reference::gemm_f32::assert_c(self.name(), m, n, c.len(), ldc);
    }
}

impl GemmW4 for Avx512VnniGemmW4 {
    fn pack_b(
        &self,
        q: &[u8],
        k: usize,
        n: usize,
        group: usize,
        scales: &[f32],
        zero_points: &[u8],
    ) -> PackedW4 {
        int4::assert_pack_args(self.name(), q, k, n, group, scales, zero_points);
        let (panels, groups, octs) = (n.div_ceil(NR), int4::group_count(k, group), k.div_ceil(8));
        let mut data = vec![0u8; panels * octs * OCT];
        let mut pscales = vec![0f32; panels * groups * NR];
        let mut pzps = vec![0u8; panels * groups * NR];
        let mut sums = vec![0i32; panels * groups * NR];
        for j in 0..n {
            let (panel, jj) = (j / NR, j % NR);
            for g in 0..groups {
                let at = (panel * groups + g) * NR + jj;
                pscales[at] = scales[g * n + j];
                pzps[at] = zero_points[g * n + j];
            }
            for p in 0..octs * 8 {
                let zp = zero_points[(p / group) * n + j];
                let v = if p < k { q[p * n + j] } else { zp };
                let (o, within) = (p / 8, p % 8);
                data[(panel * octs + o) * OCT + 4 * jj + within % 4] |= v << (4 * (within / 4));
                sums[(panel * groups + p / group) * NR + jj] -= 128 * (v as i32 - zp as i32);
            }
        }
        PackedW4 {
            k,
            n,
            group,
            data,
            scales: pscales,
            zero_points: pzps,
            sums,
            kernel: self.name(),
        }
    }

    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedW4, c: &mut [f32], ldc: usize) {
        self.check(m, a, lda, b, c, ldc);
        let (k, n) = (b.k, b.n);
        with_a(a, m, k, lda, n, MR, |a| {
            drive(BLOCKING, m, n, k, c, ldc, |t, ct, ldc| {
                let panel = Panel::new(b, t.panel);
                debug_assert!(ct.len() >= (t.rows - 1) * ldc + t.cols);
                // SAFETY: the ISA was checked above; `assert_a`, `with_a` and `drive` guarantee that rows
                // `t.i0 .. t.i0 + t.rows` of A hold depths `t.p0 .. t.p0 + t.kc`, that the panel holds every
                // oct and group of the block (`check`), and that `ct` holds `t.rows` rows of `t.cols` columns.
                unsafe {
                    match (a.is_packed(), t.rows) {
                        (true, 8) => tile_f32::<8, true>(a, t, panel, ct, ldc),
                        (true, 7) => tile_f32::<7, true>(a, t, panel, ct, ldc),
                        (true, 6) => tile_f32::<6, true>(a, t, panel, ct, ldc),
                        (true, 5) => tile_f32::<5, true>(a, t, panel, ct, ldc),
                        (true, 4) => tile_f32::<4, true>(a, t, panel, ct, ldc),
                        (true, 3) => tile_f32::<3, true>(a, t, panel, ct, ldc),
                        (true, 2) => tile_f32::<2, true>(a, t, panel, ct, ldc),
                        (true, _) => tile_f32::<1, true>(a, t, panel, ct, ldc),
                        (false, 8) => tile_f32::<8, false>(a, t, panel, ct, ldc),
                        (false, 7) => tile_f32::<7, false>(a, t, panel, ct, ldc),
                        (false, 6) => tile_f32::<6, false>(a, t, panel, ct, ldc),
                        (false, 5) => tile_f32::<5, false>(a, t, panel, ct, ldc),
                        (false, 4) => tile_f32::<4, false>(a, t, panel, ct, ldc),
                        (false, 3) => tile_f32::<3, false>(a, t, panel, ct, ldc),
                        (false, 2) => tile_f32::<2, false>(a, t, panel, ct, ldc),
                        (false, _) => tile_f32::<1, false>(a, t, panel, ct, ldc),
                    }
                }
            });
        });
    }

    fn gemm_dyn_i8(
        &self,
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedW4,
        c: &mut [f32],
        ldc: usize,
    ) {
        self.check(m, a, lda, b, c, ldc);
        let (k, n) = (b.k, b.n);
        if m == 0 || n == 0 {
            return;
        }
        let ld = k.div_ceil(8) * 8;
        let mut codes = A_SCRATCH.take();
        if codes.len() < m * ld {
            codes.resize(m * ld, 0);
        }
        let mut row_scales = vec![0f32; m];
        for (i, s) in row_scales.iter_mut().enumerate() {
            // SAFETY: the ISA was checked above; the output row holds `ld >= k` bytes.
            *s = unsafe {
                quantize_row_u8(&a[i * lda..i * lda + k], &mut codes[i * ld..(i + 1) * ld])
            };
        }
        let quantized = Quantized {
            codes: &codes[..m * ld],
            ld,
            scales: &row_scales,
        };
        drive(BLOCKING, m, n, k, c, ldc, |t, ct, ldc| {
            let panel = Panel::new(b, t.panel);
            debug_assert!(ct.len() >= (t.rows - 1) * ldc + t.cols);
            // SAFETY: the ISA was checked above; the quantized rows hold `ld` codes (whole octs), the panel
            // every oct and group of the block (`check`), and `ct` holds `t.rows` rows of `t.cols` columns.
            unsafe {
                match t.rows {
                    8 => tile_dyn::<8>(&quantized, t, panel, ct, ldc),
                    7 => tile_dyn::<7>(&quantized, t, panel, ct, ldc),
                    6 => tile_dyn::<6>(&quantized, t, panel, ct, ldc),
                    5 => tile_dyn::<5>(&quantized, t, panel, ct, ldc),
                    4 => tile_dyn::<4>(&quantized, t, panel, ct, ldc),
                    3 => tile_dyn::<3>(&quantized, t, panel, ct, ldc),
                    2 => tile_dyn::<2>(&quantized, t, panel, ct, ldc),
                    _ => tile_dyn::<1>(&quantized, t, panel, ct, ldc),
                }
            }
        });
        A_SCRATCH.set(codes);
    }
}

thread_local! {
    /// Reused quantized A of the calling thread (grows to the largest A quantized on it).
    static A_SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Dynamically quantized activations: `u8` codes (`code + 128`), row-major with leading dimension `ld` (a
/// multiple of 8, padded with 128), and the row scales.
struct Quantized<'a> {
    codes: &'a [u8],
    ld: usize,
    scales: &'a [f32],
}

/// [`int4::quantize_row_dyn_i8`] with AVX-512, bit-identical (the maximum is exact in any order, the scale is
/// the same scalar division, `vcvtps2dq` rounds to nearest even like `round_ties_even`, and `|x * inv| <= 127`
/// up to one rounding, so the clamp never acts), writing `code + 128` and padding `out` past the row with 128.
///
/// # Safety
/// AVX-512 F/BW/VL must be available; `out.len() >= row.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantize_row_u8(row: &[f32], out: &mut [u8]) -> f32 {
    let k = row.len();
    let src = row.as_ptr();
    let mut vmax = _mm512_setzero_ps();
    for at in (0..k).step_by(16) {
        // SAFETY: the mask keeps the load within `row`.
        let x = unsafe { _mm512_maskz_loadu_ps(mask16(k - at, 0), src.add(at)) };
        vmax = _mm512_max_ps(vmax, _mm512_abs_ps(x));
    }
    let amax = _mm512_reduce_max_ps(vmax);
    if amax == 0.0 || !amax.is_finite() {
        out.fill(128);
        return 0.0;
    }
    let inv = _mm512_set1_ps(127.0 / amax);
    let offset = _mm512_set1_epi32(128);
    let dst = out.as_mut_ptr();
    for at in (0..k).step_by(16) {
        let mask = mask16(k - at, 0);
        // SAFETY: the masks keep the load within `row` and the store within `out[..k]`.
        unsafe {
            let x = _mm512_maskz_loadu_ps(mask, src.add(at));
            let q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x, inv)), offset);
            _mm_mask_storeu_epi8(dst.add(at).cast(), mask, _mm512_cvtepi32_epi8(q));
        }
    }
    out[k..].fill(128);
    amax / 127.0
}

/// Stores (first depth block) or adds (later blocks) `R` rows of one zmm into C, masked to `cols`, multiplied by
/// the per-row `row_scales` after the last block when given.
///
/// # Safety
/// AVX-512 F must be available; `c` must hold `R` rows of `cols` (`<= 16`) elements at stride `ldc`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store<const R: usize>(
    acc: &[__m512; R],
    t: &Tile,
    row_scales: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
) {
    let mask = mask16(t.cols, 0);
    let cp = c.as_mut_ptr();
    for (r, &v) in acc.iter().enumerate() {
        // SAFETY: masked-off lanes are neither read nor written; the valid lanes of row `r` lie in `c`.
        unsafe {
            let q = cp.wrapping_add(r * ldc);
            let mut val = v;
            if !t.first {
                val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(mask, q));
            }
            if let (true, Some(s)) = (t.last, row_scales) {
                val = _mm512_mul_ps(val, _mm512_set1_ps(s[r]));
            }
            _mm512_mask_storeu_ps(q, mask, val);
        }
    }
}

/// One `R x 16` tile of the int8-activation path over a depth block of whole groups. One row keeps the low- and
/// high-nibble dot products in separate accumulators, for two dependency chains.
///
/// # Safety
/// AVX-512 F/BW/VNNI must be available; `a` must hold rows `t.i0 .. t.i0 + R`; the panel must hold the block's
/// octs and groups; `c` must hold `R` rows of `t.cols` at stride `ldc`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_dyn<const R: usize>(
    a: &Quantized,
    t: &Tile,
    panel: Panel,
    c: &mut [f32],
    ldc: usize,
) {
    let split = R == 1;
    let low = _mm512_set1_epi8(0x0F);
    let spread = _mm512_set1_epi32(0x0101_0101);
    let mut facc = [_mm512_setzero_ps(); R];
    let ap = a.codes.as_ptr().wrapping_add(t.i0 * a.ld);
    let (dp, sp, zp, bp) = (
        panel.data.as_ptr(),
        panel.scales.as_ptr(),
        panel.zero_points.as_ptr(),
        panel.sums.as_ptr(),
    );
    let end = t.p0 + t.kc;
    let mut g0 = t.p0;
    while g0 < end {
        let g = g0 / panel.group;
        let octs = g0 / 8..(g0 + panel.group).min(end).div_ceil(8);
        // SAFETY: group `g` of the panel holds 16 scales, zero points and sums (`check`).
        let (scale, zp_bytes, bias) = unsafe {
            (
                _mm512_loadu_ps(sp.add(g * NR)),
                _mm512_mullo_epi32(
                    _mm512_cvtepu8_epi32(_mm_loadu_si128(zp.add(g * NR).cast())),
                    spread,
                ),
                _mm512_loadu_si512(bp.add(g * NR).cast()),
            )
        };
        let mut acc = [[bias, _mm512_setzero_si512()]; R];
        for o in octs {
            // SAFETY: oct `o` of the panel, and codes `8o .. 8o + 8` of every row (rows are padded to whole
            // octs), are in bounds.
            unsafe {
                let x = _mm512_loadu_si512(dp.add(o * OCT).cast());
                let lo = _mm512_sub_epi8(_mm512_and_si512(x, low), zp_bytes);
                let hi =
                    _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16::<4>(x), low), zp_bytes);
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let row = ap.add(r * a.ld + 8 * o);
                    let a0 = _mm512_set1_epi32(row.cast::<i32>().read_unaligned());
                    let a1 = _mm512_set1_epi32(row.add(4).cast::<i32>().read_unaligned());
                    acc_r[0] = _mm512_dpbusd_epi32(acc_r[0], a0, lo);
                    let h = usize::from(split);
                    acc_r[h] = _mm512_dpbusd_epi32(acc_r[h], a1, hi);
                }
            }
        }
        for (f, acc_r) in facc.iter_mut().zip(&acc) {
            let sum = if split {
                _mm512_add_epi32(acc_r[0], acc_r[1])
            } else {
                acc_r[0]
            };
            *f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, *f);
        }
        g0 += panel.group;
    }
    // SAFETY: as the caller's contract.
    unsafe { store::<R>(&facc, t, Some(&a.scales[t.i0..t.i0 + R]), c, ldc) };
}

/// One `R x 16` tile of the `f32` path over a depth block of whole groups.
///
/// # Safety
/// AVX-512 F must be available; rows `t.i0 .. t.i0 + R` of A must hold depths `t.p0 .. t.p0 + t.kc`; the panel
/// must hold the block's octs and groups; `c` must hold `R` rows of `t.cols` at stride `ldc`.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn tile_f32<const R: usize, const PACKED: bool>(
    a: ARows,
    t: &Tile,
    panel: Panel,
    c: &mut [f32],
    ldc: usize,
) {
    let low = _mm512_set1_epi8(0x0F);
    let byte = _mm512_set1_epi32(0xFF);
    let mut acc = [_mm512_setzero_ps(); R];
    let (ap, rs, ps) = a.at::<PACKED>(t, MR);
    let (dp, sp, zp) = (
        panel.data.as_ptr(),
        panel.scales.as_ptr(),
        panel.zero_points.as_ptr(),
    );
    let end = t.kc; // relative to t.p0
    let mut g0 = 0;
    while g0 < end {
        let g = (t.p0 + g0) / panel.group;
        let g1 = (g0 + panel.group).min(end);
        // SAFETY: group `g` of the panel holds 16 scales and zero points.
        let (scale, zpi) = unsafe {
            (
                _mm512_loadu_ps(sp.add(g * NR)),
                _mm512_cvtepu8_epi32(_mm_loadu_si128(zp.add(g * NR).cast())),
            )
        };
        let mut p = g0;
        while p < g1 {
            let o = (t.p0 + p) / 8;
            // SAFETY: oct `o` of the panel is in bounds.
            let x = unsafe { _mm512_loadu_si512(dp.add(o * OCT).cast()) };
            let halves = [
                _mm512_and_si512(x, low),
                _mm512_and_si512(_mm512_srli_epi16::<4>(x), low),
            ];
            let depths = (g1 - p).min(8);
            for (d, half) in halves.iter().enumerate() {
                for s in 0..4 {
                    let step = 4 * d + s;
                    if step >= depths {
                        break;
                    }
                    let q = _mm512_and_si512(
                        _mm512_srlv_epi32(*half, _mm512_set1_epi32(8 * s as i32)),
                        byte,
                    );
                    let w = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, zpi)), scale);
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        // SAFETY: depth `p + step < kc` lies in every row's range.
                        let av = _mm512_set1_ps(unsafe { *ap.add(r * rs + (p + step) * ps) });
                        *acc_r = _mm512_fmadd_ps(av, w, *acc_r);
                    }
                }
            }
            p += depths;
        }
        g0 = g1;
    }
    // SAFETY: as the caller's contract.
    unsafe { store::<R>(&acc, t, None, c, ldc) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    #[test]
    fn simd_quantizer_matches_the_scalar_codes_exactly() {
        if !Isa::Avx512Vnni.is_available() {
            eprintln!("skip: this CPU lacks avx512vnni");
            return;
        }
        let mut rng = Rng::new(17);
        for k in [1usize, 15, 16, 17, 100, 768] {
            let mut row = rng.f32s(k);
            // Exact ties after scaling: max 127 makes the scale 1, so x.5 values sit halfway.
            if k > 4 {
                row[0] = 127.0;
                row[1] = 2.5;
                row[2] = -3.5;
                row[3] = 0.5;
            }
            let mut want = vec![0i8; k];
            let want_scale = int4::quantize_row_dyn_i8(&row, &mut want);
            let mut got = vec![0u8; k.next_multiple_of(8)];
            // SAFETY: the ISA was checked above; `got` holds `k` bytes and more.
            let got_scale = unsafe { quantize_row_u8(&row, &mut got) };
            assert_eq!(want_scale, got_scale, "k={k}");
            for (p, (&w, &g)) in want.iter().zip(&got).enumerate() {
                assert_eq!(w as i32 + 128, g as i32, "k={k} p={p} x={}", row[p]);
            }
            assert!(got[k..].iter().all(|&g| g == 128));
        }
    }
}
