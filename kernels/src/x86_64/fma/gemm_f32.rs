//! `f32` GEMM with FMA: an AVX-512 kernel ([`MR`]` x 32`, two zmm per row) and an AVX2 kernel
//! ([`MR2`]` x 16`, two ymm per row). B is packed k-major in panels of the tile width; A is read in place, one
//! value per row broadcast per depth step. Per depth step a tile does `2 * MR` FMAs against 2 B loads and `MR`
//! broadcasts, so it is FMA-bound on Zen 4 (one zmm or two ymm FMAs per cycle).
//!
//! Accumulators start at zero and C is added after the depth block (ruy/tract style), so the per-element
//! summation order differs from the reference by the blocking and by FMA's single rounding: covered by the
//! float GEMM tolerance. One row (`m = 1`) uses four independent accumulator pairs along k so that the FMA
//! latency does not bound it.

use core::arch::x86_64::*;

use crate::frame::gemm::{Blocking, Tile, assert_a, assert_packed, drive};
use crate::frame::pack::pack_k_major;
use crate::isa::Isa;
use crate::{GemmF32, Kernel, PackedB};

/// Register-tile rows of the AVX-512 kernel.
pub const MR: usize = 8;
/// Register-tile columns of the AVX-512 kernel (two zmm), and its packed panel width.
pub const NR: usize = 32;
/// Measured (Zen 4, thread CPU time, the six benchmark shapes): a deep block beats an L1-sized one. With `kc` =
/// 768 a panel block (96 KiB) and the tile's packed A (24 KiB) stream from L2 at a fraction of its bandwidth,
/// and C is read and written once per 768 depths instead of once per 128: 107-115 GFLOPS against 87-101 for
/// `kc` 128 (`mc` 64-256 changes little; `mc * kc * 4` = 288 KiB of A stays in L2).
const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: 768,
    mc: 96,
};

/// Register-tile rows of the AVX2 kernel.
pub const MR2: usize = 6;
/// Register-tile columns of the AVX2 kernel (two ymm), and its packed panel width.
pub const NR2: usize = 16;
/// As [`BLOCKING`] (measured 98-107 GFLOPS with `kc` 768, 97-104 with 256).
const BLOCKING2: Blocking = Blocking {
    mr: MR2,
    nr: NR2,
    kc: 768,
    mc: 96,
};

/// The AVX-512 `f32` GEMM (needs AVX-512 F only; registered at the `avx512vnni` tier, see the module docs of
/// [`super`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx512GemmF32;

/// The registered instance.
pub static AVX512_GEMM_F32: Avx512GemmF32 = Avx512GemmF32;

impl Kernel for Avx512GemmF32 {
    fn name(&self) -> &'static str {
        "avx512vnni_gemm_f32_8x32"
    }

    fn isa(&self) -> Isa {
        Isa::Avx512Vnni
    }
}

impl GemmF32 for Avx512GemmF32 {
    fn pack_b(&self, b: &[f32], k: usize, n: usize) -> PackedB<f32> {
        PackedB {
            k,
            n,
            data: pack_k_major(b, k, n, NR),
            kernel: self.name(),
        }
    }

    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedB<f32>, c: &mut [f32], ldc: usize) {
        self.assert_runnable();
        let (k, n) = (b.k, b.n);
        assert_packed(self.name(), b, n.div_ceil(NR) * NR * k);
        assert_a(self.name(), m, k, a, lda);
        with_a(a, m, k, lda, n, MR, |a| {
            drive(BLOCKING, m, n, k, c, ldc, |t, ct, ldc| {
                let block = &b.data[(t.panel * k + t.p0) * NR..][..t.kc * NR];
                debug_check(a, t, block, NR, ct, ldc);
                // SAFETY: AVX-512 F was checked above; `assert_a`, `with_a` and `drive` guarantee that rows
                // `t.i0 .. t.i0 + t.rows` of A hold depths `t.p0 .. t.p0 + t.kc`, that `block` is `t.kc` rows
                // of the panel, and that `ct` holds `t.rows` rows of `t.cols` columns at stride `ldc`
                // (re-checked by `debug_check`).
                unsafe {
                    match (a.is_packed(), t.rows) {
                        (true, 8) => tile512::<8, true>(a, t, block, ct, ldc),
                        (true, 7) => tile512::<7, true>(a, t, block, ct, ldc),
                        (true, 6) => tile512::<6, true>(a, t, block, ct, ldc),
                        (true, 5) => tile512::<5, true>(a, t, block, ct, ldc),
                        (true, 4) => tile512::<4, true>(a, t, block, ct, ldc),
                        (true, 3) => tile512::<3, true>(a, t, block, ct, ldc),
                        (true, 2) => tile512::<2, true>(a, t, block, ct, ldc),
                        (true, _) => row512::<true>(a, t, block, ct),
                        (false, 8) => tile512::<8, false>(a, t, block, ct, ldc),
                        (false, 7) => tile512::<7, false>(a, t, block, ct, ldc),
                        (false, 6) => tile512::<6, false>(a, t, block, ct, ldc),
                        (false, 5) => tile512::<5, false>(a, t, block, ct, ldc),
                        (false, 4) => tile512::<4, false>(a, t, block, ct, ldc),
                        (false, 3) => tile512::<3, false>(a, t, block, ct, ldc),
                        (false, 2) => tile512::<2, false>(a, t, block, ct, ldc),
                        (false, _) => row512::<false>(a, t, block, ct),
                    }
                }
            });
        });
    }
}

/// The AVX2 + FMA `f32` GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx2GemmF32;

/// The registered instance.
pub static AVX2_GEMM_F32: Avx2GemmF32 = Avx2GemmF32;

impl Kernel for Avx2GemmF32 {
    fn name(&self) -> &'static str {
        "avx2_gemm_f32_6x16"
    }

    fn isa(&self) -> Isa {
        Isa::Avx2
    }
}

impl GemmF32 for Avx2GemmF32 {
    fn pack_b(&self, b: &[f32], k: usize, n: usize) -> PackedB<f32> {
        PackedB {
            k,
            n,
            data: pack_k_major(b, k, n, NR2),
            kernel: self.name(),
        }
    }

    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedB<f32>, c: &mut [f32], ldc: usize) {
        self.assert_runnable();
        let (k, n) = (b.k, b.n);
        assert_packed(self.name(), b, n.div_ceil(NR2) * NR2 * k);
        assert_a(self.name(), m, k, a, lda);
        with_a(a, m, k, lda, n, MR2, |a| {
            drive(BLOCKING2, m, n, k, c, ldc, |t, ct, ldc| {
                let block = &b.data[(t.panel * k + t.p0) * NR2..][..t.kc * NR2];
                debug_check(a, t, block, NR2, ct, ldc);
                // SAFETY: AVX2 + FMA were checked above; bounds as in `Avx512GemmF32::gemm`.
                unsafe {
                    match (a.is_packed(), t.rows) {
                        (true, 6) => tile256::<6, true>(a, t, block, ct, ldc),
                        (true, 5) => tile256::<5, true>(a, t, block, ct, ldc),
                        (true, 4) => tile256::<4, true>(a, t, block, ct, ldc),
                        (true, 3) => tile256::<3, true>(a, t, block, ct, ldc),
                        (true, 2) => tile256::<2, true>(a, t, block, ct, ldc),
                        (true, _) => row256::<true>(a, t, block, ct),
                        (false, 6) => tile256::<6, false>(a, t, block, ct, ldc),
                        (false, 5) => tile256::<5, false>(a, t, block, ct, ldc),
                        (false, 4) => tile256::<4, false>(a, t, block, ct, ldc),
                        (false, 3) => tile256::<3, false>(a, t, block, ct, ldc),
                        (false, 2) => tile256::<2, false>(a, t, block, ct, ldc),
                        (false, _) => row256::<false>(a, t, block, ct),
                    }
                }
            });
        });
    }
}

/// Debug-build check of the tile preconditions.
fn debug_check(a: ARows, t: &Tile, b: &[f32], nr: usize, c: &[f32], ldc: usize) {
    debug_assert!(t.rows >= 1 && t.cols >= 1 && t.cols <= nr);
    match a {
        ARows::InPlace { a, lda } => {
            debug_assert!(a.len() >= (t.i0 + t.rows - 1) * lda + t.p0 + t.kc)
        }
        ARows::Packed { a, k, mr } => {
            debug_assert!(t.i0.is_multiple_of(mr) && a.len() >= (t.i0 + mr) * k)
        }
    }
    debug_assert!(b.len() == t.kc * nr);
    debug_assert!(c.len() >= (t.rows - 1) * ldc + t.cols);
}

/// Pack A (see [`with_a`]) when B has at least this many columns: packing costs about one pass over A, which
/// `n / NR` panels then reuse; below this the in-place reads win (e.g. 3136x576x64).
pub(crate) const PACK_A_MIN_N: usize = 256;

/// Where a tile reads A: in place (row-major, leading dimension `lda`), or packed in panels of `mr` rows, k-major
/// (`a[(i / mr) * k * mr + p * mr + i % mr]`, the last panel zero-padded). Packing makes the broadcasts one
/// sequential stream; in place, `mr` rows at a stride of `lda` floats can map to the same L1 sets (4 KiB
/// aliasing when `lda` is a multiple of 1024) and the tiles slow down by a third.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ARows<'a> {
    InPlace { a: &'a [f32], lda: usize },
    Packed { a: &'a [f32], k: usize, mr: usize },
}

impl ARows<'_> {
    #[inline(always)]
    pub(crate) fn is_packed(&self) -> bool {
        matches!(self, ARows::Packed { .. })
    }

    /// The tile's first A value and the (row, depth) strides; `PACKED` must match the variant (it makes the
    /// strides of the packed layout compile-time constants).
    #[inline(always)]
    pub(crate) fn at<const PACKED: bool>(&self, t: &Tile, mr: usize) -> (*const f32, usize, usize) {
        debug_assert_eq!(PACKED, self.is_packed());
        let (base, lda, k) = match *self {
            ARows::InPlace { a, lda } => (a.as_ptr(), lda, 0),
            ARows::Packed { a, k, .. } => (a.as_ptr(), 0, k),
        };
        if PACKED {
            (base.wrapping_add(t.i0 * k + t.p0 * mr), 1, mr)
        } else {
            (base.wrapping_add(t.i0 * lda + t.p0), lda, 1)
        }
    }
}

thread_local! {
    /// Reused packed-A buffer of the calling thread (grows to the largest A packed on it).
    static A_SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` with A in place, or packed into `mr`-row panels when `n >= PACK_A_MIN_N` and there is more than
/// one row. The packed buffer is a per-thread scratch, taken for the call (a nested call allocates its own).
pub(crate) fn with_a<T>(
    a: &[f32],
    m: usize,
    k: usize,
    lda: usize,
    n: usize,
    mr: usize,
    f: impl FnOnce(ARows) -> T,
) -> T {
    if n < PACK_A_MIN_N || m < 2 || k == 0 {
        return f(ARows::InPlace { a, lda });
    }
    let mut buf = A_SCRATCH.take();
    let len = m.div_ceil(mr) * mr * k;
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    for (ip, panel) in buf[..len].chunks_exact_mut(mr * k).enumerate() {
        for r in 0..mr {
            let i = ip * mr + r;
            if i < m {
                for (p, &v) in a[i * lda..i * lda + k].iter().enumerate() {
                    panel[p * mr + r] = v;
                }
            } else {
                (0..k).for_each(|p| panel[p * mr + r] = 0.0);
            }
        }
    }
    let out = f(ARows::Packed {
        a: &buf[..len],
        k,
        mr,
    });
    A_SCRATCH.set(buf);
    out
}

/// Lane mask of the `v`-th zmm of a tile row with `cols` valid columns.
#[inline(always)]
pub(crate) fn mask16(cols: usize, v: usize) -> __mmask16 {
    let valid = cols.saturating_sub(16 * v).min(16);
    ((1u32 << valid) - 1) as __mmask16
}

/// Stores (first depth block) or adds (later blocks) `R` rows of `V` zmm accumulators into C, masked to `cols`.
///
/// # Safety
/// AVX-512 F must be available; `c` must hold `R` rows of `cols` elements at stride `ldc`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn store512<const R: usize, const V: usize>(
    acc: &[[__m512; V]; R],
    cols: usize,
    first: bool,
    c: &mut [f32],
    ldc: usize,
) {
    let cp = c.as_mut_ptr();
    for v in 0..V {
        let mask = mask16(cols, v);
        if mask == 0 {
            break;
        }
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: masked-off lanes are neither read nor written (masked accesses do not fault); the valid
            // lanes of row `r` lie in `c` by the caller's contract.
            unsafe {
                let p = cp.wrapping_add(r * ldc + 16 * v);
                let val = if first {
                    row[v]
                } else {
                    _mm512_add_ps(row[v], _mm512_maskz_loadu_ps(mask, p))
                };
                _mm512_mask_storeu_ps(p, mask, val);
            }
        }
    }
}

/// One `R x 32` tile over the depth block `t.p0 .. t.p0 + t.kc`.
///
/// # Safety
/// AVX-512 F must be available; rows `t.i0 .. t.i0 + R` of `a` (stride `lda`) must hold depths `t.p0 ..
/// t.p0 + t.kc`; `b` must hold `t.kc` packed rows of 32; `c` must hold `R` rows of `t.cols` at stride `ldc`.
#[target_feature(enable = "avx512f")]
unsafe fn tile512<const R: usize, const PACKED: bool>(
    a: ARows,
    t: &Tile,
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (ap, rs, ps) = a.at::<PACKED>(t, MR);
    let bp = b.as_ptr();
    for p in 0..t.kc {
        // SAFETY: `p < kc` is within B's block and every row's depth range, by the caller's contract.
        unsafe {
            let b0 = _mm512_loadu_ps(bp.add(p * NR));
            let b1 = _mm512_loadu_ps(bp.add(p * NR + 16));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*ap.add(r * rs + p * ps));
                acc_r[0] = _mm512_fmadd_ps(av, b0, acc_r[0]);
                acc_r[1] = _mm512_fmadd_ps(av, b1, acc_r[1]);
            }
        }
    }
    // SAFETY: as the caller's contract.
    unsafe { store512::<R, 2>(&acc, t.cols, t.first, c, ldc) };
}

/// One row against a 32-column panel: four depth steps in flight (8 accumulators), summed at the end.
///
/// # Safety
/// As [`tile512`] with one row.
#[target_feature(enable = "avx512f")]
unsafe fn row512<const PACKED: bool>(a: ARows, t: &Tile, b: &[f32], c: &mut [f32]) {
    const U: usize = 4;
    let mut acc = [[_mm512_setzero_ps(); 2]; U];
    let (ap, _, ps) = a.at::<PACKED>(t, MR);
    let bp = b.as_ptr();
    let full = t.kc / U * U;
    let mut p = 0;
    while p < full {
        for (u, acc_u) in acc.iter_mut().enumerate() {
            // SAFETY: `p + u < kc`.
            unsafe {
                let av = _mm512_set1_ps(*ap.add((p + u) * ps));
                let q = bp.add((p + u) * NR);
                acc_u[0] = _mm512_fmadd_ps(av, _mm512_loadu_ps(q), acc_u[0]);
                acc_u[1] = _mm512_fmadd_ps(av, _mm512_loadu_ps(q.add(16)), acc_u[1]);
            }
        }
        p += U;
    }
    while p < t.kc {
        // SAFETY: `p < kc`.
        unsafe {
            let av = _mm512_set1_ps(*ap.add(p * ps));
            let q = bp.add(p * NR);
            acc[0][0] = _mm512_fmadd_ps(av, _mm512_loadu_ps(q), acc[0][0]);
            acc[0][1] = _mm512_fmadd_ps(av, _mm512_loadu_ps(q.add(16)), acc[0][1]);
        }
        p += 1;
    }
    let mut sum = acc[0];
    for acc_u in &acc[1..] {
        sum[0] = _mm512_add_ps(sum[0], acc_u[0]);
        sum[1] = _mm512_add_ps(sum[1], acc_u[1]);
    }
    // SAFETY: as the caller's contract.
    unsafe { store512::<1, 2>(&[sum], t.cols, t.first, c, 0) };
}

/// Stores (first depth block) or adds (later blocks) `R` rows of two ymm accumulators into C; ragged columns go
/// through a stack row.
///
/// # Safety
/// AVX must be available; `c` must hold `R` rows of `cols` (`<= 16`) elements at stride `ldc`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store256<const R: usize>(
    acc: &[[__m256; 2]; R],
    cols: usize,
    first: bool,
    c: &mut [f32],
    ldc: usize,
) {
    for (r, row) in acc.iter().enumerate() {
        let dst = &mut c[r * ldc..r * ldc + cols];
        if cols == NR2 {
            // SAFETY: `dst` holds 16 elements.
            unsafe {
                let p = dst.as_mut_ptr();
                let (mut v0, mut v1) = (row[0], row[1]);
                if !first {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(p));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(p.add(8)));
                }
                _mm256_storeu_ps(p, v0);
                _mm256_storeu_ps(p.add(8), v1);
            }
        } else {
            let mut tmp = [0f32; NR2];
            // SAFETY: `tmp` holds 16 elements.
            unsafe {
                _mm256_storeu_ps(tmp.as_mut_ptr(), row[0]);
                _mm256_storeu_ps(tmp.as_mut_ptr().add(8), row[1]);
            }
            for (d, &v) in dst.iter_mut().zip(&tmp) {
                *d = if first { v } else { *d + v };
            }
        }
    }
}

/// One `R x 16` tile over the depth block `t.p0 .. t.p0 + t.kc`.
///
/// # Safety
/// AVX2 and FMA must be available; bounds as [`tile512`] with 16-column panels.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile256<const R: usize, const PACKED: bool>(
    a: ARows,
    t: &Tile,
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let (ap, rs, ps) = a.at::<PACKED>(t, MR2);
    let bp = b.as_ptr();
    for p in 0..t.kc {
        // SAFETY: `p < kc` is within B's block and every row's depth range, by the caller's contract.
        unsafe {
            let b0 = _mm256_loadu_ps(bp.add(p * NR2));
            let b1 = _mm256_loadu_ps(bp.add(p * NR2 + 8));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap.add(r * rs + p * ps));
                acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
                acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
            }
        }
    }
    // SAFETY: as the caller's contract.
    unsafe { store256::<R>(&acc, t.cols, t.first, c, ldc) };
}

/// One row against a 16-column panel: four depth steps in flight (8 accumulators), summed at the end.
///
/// # Safety
/// As [`tile256`] with one row.
#[target_feature(enable = "avx2,fma")]
unsafe fn row256<const PACKED: bool>(a: ARows, t: &Tile, b: &[f32], c: &mut [f32]) {
    const U: usize = 4;
    let mut acc = [[_mm256_setzero_ps(); 2]; U];
    let (ap, _, ps) = a.at::<PACKED>(t, MR2);
    let bp = b.as_ptr();
    let full = t.kc / U * U;
    let mut p = 0;
    while p < full {
        for (u, acc_u) in acc.iter_mut().enumerate() {
            // SAFETY: `p + u < kc`.
            unsafe {
                let av = _mm256_broadcast_ss(&*ap.add((p + u) * ps));
                let q = bp.add((p + u) * NR2);
                acc_u[0] = _mm256_fmadd_ps(av, _mm256_loadu_ps(q), acc_u[0]);
                acc_u[1] = _mm256_fmadd_ps(av, _mm256_loadu_ps(q.add(8)), acc_u[1]);
            }
        }
        p += U;
    }
    while p < t.kc {
        // SAFETY: `p < kc`.
        unsafe {
            let av = _mm256_broadcast_ss(&*ap.add(p * ps));
            let q = bp.add(p * NR2);
            acc[0][0] = _mm256_fmadd_ps(av, _mm256_loadu_ps(q), acc[0][0]);
            acc[0][1] = _mm256_fmadd_ps(av, _mm256_loadu_ps(q.add(8)), acc[0][1]);
        }
        p += 1;
    }
    let mut sum = acc[0];
    for acc_u in &acc[1..] {
        sum[0] = _mm256_add_ps(sum[0], acc_u[0]);
        sum[1] = _mm256_add_ps(sum[1], acc_u[1]);
    }
    // SAFETY: as the caller's contract.
    unsafe { store256::<1>(&[sum], t.cols, t.first, c, 0) };
}
