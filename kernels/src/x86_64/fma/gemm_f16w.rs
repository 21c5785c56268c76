//! FP16-weight GEMM with AVX-512 F: `C = A (f32) * B (f16)`, B widened in registers. B is packed k-major in
//! panels of [`NR`] = 32 f16 values (64 bytes per depth step); per depth step the tile widens the row with two
//! `vcvtph2ps` (exact) and does `2 * MR` FMAs against broadcast A values, so it runs like
//! [`super::gemm_f32`] while streaming half the weight bytes. A is read in place or packed as there.
//!
//! Needs AVX-512 F only (`vcvtph2ps zmm` is AVX-512 F); registered at the `avx512vnni` tier (see [`super`]).

use core::arch::x86_64::*;

use super::gemm_f32::{ARows, store512, with_a};
use crate::frame::gemm::{Blocking, Tile, assert_a, assert_packed, drive};
use crate::frame::pack::pack_k_major;
use crate::isa::Isa;
use crate::{GemmF16W, Kernel, PackedB};

/// Register-tile rows.
pub const MR: usize = 8;
/// Register-tile columns (two zmm), and packed panel width.
pub const NR: usize = 32;
/// Deep blocks as in [`super::gemm_f32`] (`kc * NR * 2` = 48 KiB of f16 B per panel block, from L2); `kc`
/// 256-768 and `mc` 96-192 measured within 4 %.
const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: 768,
    mc: 96,
};

/// The AVX-512 FP16-weight GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx512GemmF16W;

/// The registered instance.
pub static AVX512_GEMM_F16W: Avx512GemmF16W = Avx512GemmF16W;

impl Kernel for Avx512GemmF16W {
    fn name(&self) -> &'static str {
        "avx512vnni_gemm_f16w_f32_8x32"
    }

    fn isa(&self) -> Isa {
        Isa::Avx512Vnni
    }
}

impl GemmF16W for Avx512GemmF16W {
    fn pack_b(&self, b: &[u16], k: usize, n: usize) -> PackedB<u16> {
        PackedB {
            k,
            n,
            data: pack_k_major(b, k, n, NR),
            kernel: self.name(),
        }
    }

    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedB<u16>, c: &mut [f32], ldc: usize) {
        self.assert_runnable();
        let (k, n) = (b.k, b.n);
        assert_packed(self.name(), b, n.div_ceil(NR) * NR * k);
        assert_a(self.name(), m, k, a, lda);
        with_a(a, m, k, lda, n, MR, |a| {
            drive(BLOCKING, m, n, k, c, ldc, |t, ct, ldc| {
                let block = &b.data[(t.panel * k + t.p0) * NR..][..t.kc * NR];
                debug_assert!(ct.len() >= (t.rows - 1) * ldc + t.cols);
                // SAFETY: AVX-512 F was checked above; `assert_a`, `with_a` and `drive` guarantee that rows
                // `t.i0 .. t.i0 + t.rows` of A hold depths `t.p0 .. t.p0 + t.kc`, that `block` is `t.kc` rows of
                // the panel, and that `ct` holds `t.rows` rows of `t.cols` columns at stride `ldc`.
                unsafe {
                    match (a.is_packed(), t.rows) {
                        (true, 8) => tile::<8, true>(a, t, block, ct, ldc),
                        (true, 7) => tile::<7, true>(a, t, block, ct, ldc),
                        (true, 6) => tile::<6, true>(a, t, block, ct, ldc),
                        (true, 5) => tile::<5, true>(a, t, block, ct, ldc),
                        (true, 4) => tile::<4, true>(a, t, block, ct, ldc),
                        (true, 3) => tile::<3, true>(a, t, block, ct, ldc),
                        (true, 2) => tile::<2, true>(a, t, block, ct, ldc),
                        (true, _) => tile::<1, true>(a, t, block, ct, ldc),
                        (false, 8) => tile::<8, false>(a, t, block, ct, ldc),
                        (false, 7) => tile::<7, false>(a, t, block, ct, ldc),
                        (false, 6) => tile::<6, false>(a, t, block, ct, ldc),
                        (false, 5) => tile::<5, false>(a, t, block, ct, ldc),
                        (false, 4) => tile::<4, false>(a, t, block, ct, ldc),
                        (false, 3) => tile::<3, false>(a, t, block, ct, ldc),
                        (false, 2) => tile::<2, false>(a, t, block, ct, ldc),
                        (false, _) => tile::<1, false>(a, t, block, ct, ldc),
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
/// hold `t.kc` packed rows of 32 f16; `c` must hold `R` rows of `t.cols` at stride `ldc`.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize, const PACKED: bool>(
    a: ARows,
    t: &Tile,
    b: &[u16],
    c: &mut [f32],
    ldc: usize,
) {
    const U: usize = 2;
    let (ap, rs, ps) = a.at::<PACKED>(t, MR);
    let bp = b.as_ptr();
    let widen = |p: usize| {
        // SAFETY: `p < kc`: row `p` of the block is in `b`.
        unsafe {
            let q = bp.add(p * NR);
            (
                _mm512_cvtph_ps(_mm256_loadu_si256(q.cast())),
                _mm512_cvtph_ps(_mm256_loadu_si256(q.add(16).cast())),
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
    // SAFETY: as the caller's contract.
    unsafe { store512::<R, 2>(&sum, t.cols, t.first, c, ldc) };
}
