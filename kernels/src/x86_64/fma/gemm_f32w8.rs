//! Weight-only int8 GEMM with AVX-512 F: `C = A (f32) * dequant(B (i8))`, the int8 weights widened to `f32` in
//! registers. B is packed k-major in `i8` panels of [`NR`] = 32 columns (32 bytes per depth step); per depth
//! step the tile sign-extends the row (`vpmovsxbd`), subtracts the panel's zero points in `i32` (exact) and
//! converts to `f32` (exact, `|b - zp| < 2^24`), then does `2 * MR` FMAs against broadcast A values. The
//! per-column scales multiply the sums once, after the last depth block (before it C holds unscaled partial
//! sums), as in [`crate::generic::gemm_f32w8`]. A is read in place or packed as in [`super::gemm_f32`].
//!
//! The AVX-512 kernel needs AVX-512 F only and is registered at the `avx512vnni` tier (see [`super`]). An AVX2
//! + FMA sibling ([`MR2`]` x 16`, two ymm per row, `vpmovsxbd ymm` per 8 bytes) serves the `avx2` tier.

use core::arch::x86_64::*;

use super::gemm_f32::{ARows, mask16, with_a};
use crate::frame::gemm::{Blocking, Tile, assert_a, assert_packed, drive};
use crate::frame::pack::pack_k_major;
use crate::isa::Isa;
use crate::reference::gemm_f32w8::assert_dequant_params;
use crate::x86_64::fma::gemm_f32::{MR2, NR2};
use crate::{GemmF32W8, Kernel, PackedB};

/// Register-tile rows.
pub const MR: usize = 8;
/// Register-tile columns (two zmm), and packed panel width.
pub const NR: usize = 32;
/// `kc * NR` = 24 KiB of int8 B per panel block stays in L1; `kc` 256-768 and `mc` 96-192 measured within 3 %.
const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: 768,
    mc: 96,
};

/// The AVX-512 weight-only int8 GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx512GemmF32W8;

/// The registered instance.
pub static AVX512_GEMM_F32W8: Avx512GemmF32W8 = Avx512GemmF32W8;

impl Kernel for Avx512GemmF32W8 {
    fn name(&self) -> &'static str {
        "avx512vnni_gemm_f32w8_8x32"
    }

    fn isa(&self) -> Isa {
        Isa::Avx512Vnni
    }
}

/// Dequantization parameters of one panel's columns (zero for padding columns).
struct Params {
    zero_points: [i32; NR],
    scales: [f32; NR],
}

impl GemmF32W8 for Avx512GemmF32W8 {
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8> {
        PackedB {
            k,
            n,
            data: pack_k_major(b, k, n, NR),
            kernel: self.name(),
        }
    }

    fn gemm(
        &self,
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedB<i8>,
        scales: &[f32],
        zero_points: &[i32],
        c: &mut [f32],
        ldc: usize,
    ) {
        self.assert_runnable();
        let (k, n) = (b.k, b.n);
        assert_packed(self.name(), b, n.div_ceil(NR) * NR * k);
        assert_a(self.name(), m, k, a, lda);
        assert_dequant_params(self.name(), n, scales.len(), zero_points.len());
        let column = |len: usize, j: usize| if len == 1 { 0 } else { j };
        with_a(a, m, k, lda, n, MR, |a| {
            drive(BLOCKING, m, n, k, c, ldc, |t, ct, ldc| {
                let j0 = t.panel * NR;
                let mut params = Params {
                    zero_points: [0; NR],
                    scales: [0.0; NR],
                };
                for jj in 0..t.cols {
                    params.zero_points[jj] = zero_points[column(zero_points.len(), j0 + jj)];
                    params.scales[jj] = scales[column(scales.len(), j0 + jj)];
                }
                let block = &b.data[(t.panel * k + t.p0) * NR..][..t.kc * NR];
                debug_assert!(ct.len() >= (t.rows - 1) * ldc + t.cols);
                // SAFETY: AVX-512 F was checked above; `assert_a`, `with_a` and `drive` guarantee that rows
                // `t.i0 .. t.i0 + t.rows` of A hold depths `t.p0 .. t.p0 + t.kc`, that `block` is `t.kc` rows of
                // the panel, and that `ct` holds `t.rows` rows of `t.cols` columns at stride `ldc`.
                unsafe {
                    match (a.is_packed(), t.rows) {
                        (true, 8) => tile::<8, true>(a, t, block, &params, ct, ldc),
                        (true, 7) => tile::<7, true>(a, t, block, &params, ct, ldc),
                        (true, 6) => tile::<6, true>(a, t, block, &params, ct, ldc),
                        (true, 5) => tile::<5, true>(a, t, block, &params, ct, ldc),
                        (true, 4) => tile::<4, true>(a, t, block, &params, ct, ldc),
                        (true, 3) => tile::<3, true>(a, t, block, &params, ct, ldc),
                        (true, 2) => tile::<2, true>(a, t, block, &params, ct, ldc),
                        (true, _) => tile::<1, true>(a, t, block, &params, ct, ldc),
                        (false, 8) => tile::<8, false>(a, t, block, &params, ct, ldc),
                        (false, 7) => tile::<7, false>(a, t, block, &params, ct, ldc),
                        (false, 6) => tile::<6, false>(a, t, block, &params, ct, ldc),
                        (false, 5) => tile::<5, false>(a, t, block, &params, ct, ldc),
                        (false, 4) => tile::<4, false>(a, t, block, &params, ct, ldc),
                        (false, 3) => tile::<3, false>(a, t, block, &params, ct, ldc),
                        (false, 2) => tile::<2, false>(a, t, block, &params, ct, ldc),
                        (false, _) => tile::<1, false>(a, t, block, &params, ct, ldc),
                    }
                }
            });
        });
    }
}

/// One `R x 32` tile over the depth block. One row (`R = 1`) runs two depth steps in flight.
///
/// # Safety
/// AVX-512 F must be available; rows `t.i0 .. t.i0 + R` of A must hold depths `t.p0 .. t.p0 + t.kc`; `b` must
/// hold `t.kc` packed rows of 32 bytes; `c` must hold `R` rows of `t.cols` at stride `ldc`.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize, const PACKED: bool>(
    a: ARows,
    t: &Tile,
    b: &[i8],
    params: &Params,
    c: &mut [f32],
    ldc: usize,
) {
    // One row has only two dependency chains per depth step; give it a second set (summed at the end).
    const U: usize = 2;
    let (ap, rs, ps) = a.at::<PACKED>(t, MR);
    let bp = b.as_ptr();
    // SAFETY: `params` holds 32 values.
    let (zp0, zp1) = unsafe {
        (
            _mm512_loadu_si512(params.zero_points.as_ptr().cast()),
            _mm512_loadu_si512(params.zero_points.as_ptr().add(16).cast()),
        )
    };
    let widen = |p: usize| {
        // SAFETY: `p < kc`: row `p` of the block is in `b`.
        unsafe {
            let q = bp.add(p * NR);
            let lo = _mm512_cvtepi8_epi32(_mm_loadu_si128(q.cast()));
            let hi = _mm512_cvtepi8_epi32(_mm_loadu_si128(q.add(16).cast()));
            (
                _mm512_cvtepi32_ps(_mm512_sub_epi32(lo, zp0)),
                _mm512_cvtepi32_ps(_mm512_sub_epi32(hi, zp1)),
            )
        }
    };
    let mut acc = [[[_mm512_setzero_ps(); 2]; R]; U];
    let unrolled = if R == 1 { t.kc / U * U } else { 0 };
    let mut p = 0;
    while p < unrolled {
        for (u, acc_u) in acc.iter_mut().enumerate() {
            let (w0, w1) = widen(p + u);
            // SAFETY: `p + u < kc` lies in row 0's depth range.
            let av = _mm512_set1_ps(unsafe { *ap.add((p + u) * ps) });
            acc_u[0][0] = _mm512_fmadd_ps(av, w0, acc_u[0][0]);
            acc_u[0][1] = _mm512_fmadd_ps(av, w1, acc_u[0][1]);
        }
        p += U;
    }
    while p < t.kc {
        let (w0, w1) = widen(p);
        for (r, acc_r) in acc[0].iter_mut().enumerate() {
            // SAFETY: `p < kc` lies in every row's depth range.
            let av = _mm512_set1_ps(unsafe { *ap.add(r * rs + p * ps) });
            acc_r[0] = _mm512_fmadd_ps(av, w0, acc_r[0]);
            acc_r[1] = _mm512_fmadd_ps(av, w1, acc_r[1]);
        }
        p += 1;
    }
    let mut sum = acc[0];
    for acc_u in &acc[1..] {
        for (s, x) in sum.iter_mut().zip(acc_u) {
            s[0] = _mm512_add_ps(s[0], x[0]);
            s[1] = _mm512_add_ps(s[1], x[1]);
        }
    }
    let cp = c.as_mut_ptr();
    for v in 0..2 {
        let mask = mask16(t.cols, v);
        if mask == 0 {
            break;
        }
        // SAFETY: `params` holds 32 scales.
        let scale = unsafe { _mm512_loadu_ps(params.scales.as_ptr().add(16 * v)) };
        for (r, row) in sum.iter().enumerate() {
            // SAFETY: masked-off lanes are neither read nor written; the valid lanes of row `r` lie in `c`.
            unsafe {
                let q = cp.wrapping_add(r * ldc + 16 * v);
                let mut val = row[v];
                if !t.first {
                    val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(mask, q));
                }
                if t.last {
                    val = _mm512_mul_ps(val, scale);
                }
                _mm512_mask_storeu_ps(q, mask, val);
            }
        }
    }
}

/// The AVX2 kernel's blocking: as [`BLOCKING`], with its 6x16 tile.
const BLOCKING2: Blocking = Blocking {
    mr: MR2,
    nr: NR2,
    kc: 768,
    mc: 96,
};

/// The AVX2 + FMA weight-only int8 GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx2GemmF32W8;

/// The registered instance.
pub static AVX2_GEMM_F32W8: Avx2GemmF32W8 = Avx2GemmF32W8;

impl Kernel for Avx2GemmF32W8 {
    fn name(&self) -> &'static str {
        "avx2_gemm_f32w8_6x16"
    }

    fn isa(&self) -> Isa {
        Isa::Avx2
    }
}

/// Dequantization parameters of one 16-column panel (zero for padding columns).
struct Params2 {
    zero_points: [i32; NR2],
    scales: [f32; NR2],
}

impl GemmF32W8 for Avx2GemmF32W8 {
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8> {
        PackedB {
            k,
            n,
            data: pack_k_major(b, k, n, NR2),
            kernel: self.name(),
        }
    }

    fn gemm(
        &self,
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedB<i8>,
        scales: &[f32],
        zero_points: &[i32],
        c: &mut [f32],
        ldc: usize,
    ) {
        self.assert_runnable();
        let (k, n) = (b.k, b.n);
        assert_packed(self.name(), b, n.div_ceil(NR2) * NR2 * k);
        assert_a(self.name(), m, k, a, lda);
        assert_dequant_params(self.name(), n, scales.len(), zero_points.len());
        let column = |len: usize, j: usize| if len == 1 { 0 } else { j };
        with_a(a, m, k, lda, n, MR2, |a| {
            drive(BLOCKING2, m, n, k, c, ldc, |t, ct, ldc| {
                let j0 = t.panel * NR2;
                let mut params = Params2 {
                    zero_points: [0; NR2],
                    scales: [0.0; NR2],
                };
                for jj in 0..t.cols {
                    params.zero_points[jj] = zero_points[column(zero_points.len(), j0 + jj)];
                    params.scales[jj] = scales[column(scales.len(), j0 + jj)];
                }
                let block = &b.data[(t.panel * k + t.p0) * NR2..][..t.kc * NR2];
                debug_assert!(ct.len() >= (t.rows - 1) * ldc + t.cols);
                // SAFETY: AVX2 + FMA were checked above; bounds as in `Avx512GemmF32W8::gemm`.
                unsafe {
                    match (a.is_packed(), t.rows) {
                        (true, 6) => tile2::<6, true>(a, t, block, &params, ct, ldc),
                        (true, 5) => tile2::<5, true>(a, t, block, &params, ct, ldc),
                        (true, 4) => tile2::<4, true>(a, t, block, &params, ct, ldc),
                        (true, 3) => tile2::<3, true>(a, t, block, &params, ct, ldc),
                        (true, 2) => tile2::<2, true>(a, t, block, &params, ct, ldc),
                        (true, _) => tile2::<1, true>(a, t, block, &params, ct, ldc),
                        (false, 6) => tile2::<6, false>(a, t, block, &params, ct, ldc),
                        (false, 5) => tile2::<5, false>(a, t, block, &params, ct, ldc),
                        (false, 4) => tile2::<4, false>(a, t, block, &params, ct, ldc),
                        (false, 3) => tile2::<3, false>(a, t, block, &params, ct, ldc),
                        (false, 2) => tile2::<2, false>(a, t, block, &params, ct, ldc),
                        (false, _) => tile2::<1, false>(a, t, block, &params, ct, ldc),
                    }
                }
            });
        });
    }
}

/// One `R x 16` tile of the AVX2 kernel over the depth block.
///
/// # Safety
/// AVX2 and FMA must be available; rows `t.i0 .. t.i0 + R` of A must hold depths `t.p0 .. t.p0 + t.kc`; `b`
/// must hold `t.kc` packed rows of 16 bytes; `c` must hold `R` rows of `t.cols` at stride `ldc`.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile2<const R: usize, const PACKED: bool>(
    a: ARows,
    t: &Tile,
    b: &[i8],
    params: &Params2,
    c: &mut [f32],
    ldc: usize,
) {
    let (ap, rs, ps) = a.at::<PACKED>(t, MR2);
    let bp = b.as_ptr();
    // SAFETY: `params` holds 16 values.
    let (zp0, zp1) = unsafe {
        (
            _mm256_loadu_si256(params.zero_points.as_ptr().cast()),
            _mm256_loadu_si256(params.zero_points.as_ptr().add(8).cast()),
        )
    };
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for p in 0..t.kc {
        // SAFETY: `p < kc`: row `p` of the block is in `b`, and depth `p` in every row's range.
        unsafe {
            let q = bp.add(p * NR2);
            let lo = _mm256_cvtepi8_epi32(_mm_loadl_epi64(q.cast()));
            let hi = _mm256_cvtepi8_epi32(_mm_loadl_epi64(q.add(8).cast()));
            let w0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(lo, zp0));
            let w1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(hi, zp1));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap.add(r * rs + p * ps));
                acc_r[0] = _mm256_fmadd_ps(av, w0, acc_r[0]);
                acc_r[1] = _mm256_fmadd_ps(av, w1, acc_r[1]);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        let mut tmp = [0f32; NR2];
        // SAFETY: `tmp` holds 16 values.
        unsafe {
            _mm256_storeu_ps(tmp.as_mut_ptr(), acc_r[0]);
            _mm256_storeu_ps(tmp.as_mut_ptr().add(8), acc_r[1]);
        }
        let dst = &mut c[r * ldc..r * ldc + t.cols];
        for ((d, &v), &s) in dst.iter_mut().zip(&tmp).zip(&params.scales) {
            let v = if t.first { v } else { *d + v };
            *d = if t.last { v * s } else { v };
        }
    }
}
