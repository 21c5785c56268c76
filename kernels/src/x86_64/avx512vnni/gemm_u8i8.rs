//! `u8 x i8 -> i32` GEMM with AVX-512 VNNI `vpdpbusd`: each 32-bit lane multiplies 4 unsigned bytes of A by 4
//! signed bytes of B and adds the four products to an `i32` accumulator exactly (no intermediate `i16`, so no
//! saturation). B is packed in k-groups of 4 ([`pack_k4`]), panels of [`NR`] = 32 columns (two zmm); A is read
//! in place, 4 consecutive bytes of a row broadcast to all 16 lanes. A register tile is [`MR`] = 8 rows x 2 zmm
//! = 16 independent accumulator chains, enough to cover `vpdpbusd`'s latency at one zmm per cycle.
//!
//! Edges: ragged `k` reads B's zero padding and copies A's last 1-3 bytes of a row into a zeroed 4-byte word (so
//! nothing past the slice is read); ragged `n` uses masked loads and stores; ragged `m` dispatches to tiles of
//! fewer rows; `k = 0` stores zeros. `m = 1` (`gemv`) takes the whole depth per panel and splits panels over
//! threads itself; one-row tiles keep four k-groups in flight (8 accumulators, see `accumulate`) so the B
//! stream from L2 is not latency bound.
//!
//! Sums wrap in `i32` like the reference; they are exact for `k <= 65_793`.

use core::arch::x86_64::*;

use rayon::prelude::*;

use crate::frame::gemm::{Blocking, PAR_MIN_MACS, Tile, assert_a, assert_packed, drive};
use crate::isa::Isa;
use crate::x86_64::avx2::pack::{pack_k4, packed_len_k4};
use crate::{GemmU8I8, Kernel, PackedB};

/// Register-tile rows.
pub const MR: usize = 8;
/// zmm accumulators per row.
pub(crate) const NV: usize = 2;
/// Register-tile columns, and packed panel width.
pub const NR: usize = 16 * NV;
/// Bytes of packed B per k-group of a panel.
pub(crate) const GROUP_BYTES: usize = NR * 4;
/// `kc` is a multiple of 4, so only the last depth block is ragged. One panel's depth block (1024 * 32 B = 32
/// KiB) just fits Zen 4's L1d; the `mc` rows of A (64 KiB) stay in L2 across panels. Measured (one thread,
/// best of repeats, 256x1024x1024 / 1024x1024x1024 / 128x768x768 GOPS): kc 256: 383 / 364 / 423; kc 512: 429 /
/// 408 / 437; kc 1024: 453 / 423 / 454; kc 2048 and 4096: no better than 1024. `mc` from 64 to 512 moved
/// nothing beyond noise.
const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: 1024,
    mc: 64,
};
/// k-groups one-row tiles keep in flight (independent accumulators per zmm column).
const GEMV_UNROLL: usize = 4;

/// The AVX-512 VNNI `u8 x i8 -> i32` GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx512VnniGemmU8I8;

/// The registered instance.
pub static AVX512VNNI_GEMM_U8I8: Avx512VnniGemmU8I8 = Avx512VnniGemmU8I8;

impl Kernel for Avx512VnniGemmU8I8 {
    fn name(&self) -> &'static str {
        "avx512vnni_gemm_u8i8_s32_8x32"
    }

    fn isa(&self) -> Isa {
        Isa::Avx512Vnni
    }
}

impl GemmU8I8 for Avx512VnniGemmU8I8 {
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8> {
        PackedB {
            k,
            n,
            data: pack_k4(b, k, n, NR),
            kernel: self.name(),
        }
    }

    fn gemm(&self, m: usize, a: &[u8], lda: usize, b: &PackedB<i8>, c: &mut [i32], ldc: usize) {
        self.assert_runnable();
        let (k, n) = (b.k, b.n);
        assert_packed(self.name(), b, packed_len_k4(k, n, NR));
        assert_a(self.name(), m, k, a, lda);
        let panel_len = k.div_ceil(4) * GROUP_BYTES;
        if m == 1 {
            crate::reference::gemm_f32::assert_c(self.name(), m, n, c.len(), ldc);
            // SAFETY: the ISA was checked above, and the asserts guarantee the slices' lengths.
            unsafe { gemv(a, k, &b.data, n, &mut c[..n]) };
            return;
        }
        drive(BLOCKING, m, n, k, c, ldc, |t, ct, ldc| {
            let panel = &b.data[t.panel * panel_len..][..panel_len];
            let block = &panel[t.p0 / 4 * GROUP_BYTES..];
            // SAFETY: the ISA was checked above; `assert_a` and `drive` guarantee that rows `t.i0 .. t.i0 +
            // t.rows` of A hold depths `t.p0 .. t.p0 + t.kc`, that `block` holds `ceil(t.kc / 4)` k-groups of the
            // panel (`p0` is a multiple of 4 because `kc` is), and that `ct` holds `t.rows` rows of `t.cols`
            // columns at stride `ldc`; `tile` re-checks this with `debug_assert!`.
            unsafe {
                match t.rows {
                    8 => tile::<8>(a, lda, t, block, ct, ldc),
                    7 => tile::<7>(a, lda, t, block, ct, ldc),
                    6 => tile::<6>(a, lda, t, block, ct, ldc),
                    5 => tile::<5>(a, lda, t, block, ct, ldc),
                    4 => tile::<4>(a, lda, t, block, ct, ldc),
                    3 => tile::<3>(a, lda, t, block, ct, ldc),
                    2 => tile::<2>(a, lda, t, block, ct, ldc),
                    _ => tile::<1>(a, lda, t, block, ct, ldc),
                }
            }
        });
    }
}

/// `m = 1`: one pass over B, whole depth per panel (no reuse of B to block for). With more than one thread in
/// the pool the panels are split into one contiguous run per thread, each writing its own columns of the row
/// in place (`drive`'s column split allocates and copies per task, which costs as much as the work here).
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available; `a` must hold `k` values, `b` must be this kernel's packing of a
/// `k x n` matrix, and `c` must hold `n` values.
unsafe fn gemv(a: &[u8], k: usize, b: &[i8], n: usize, c: &mut [i32]) {
    debug_assert!(a.len() >= k && b.len() >= packed_len_k4(k, n, NR) && c.len() >= n);
    let panel_len = k.div_ceil(4) * GROUP_BYTES;
    let run = |first_panel: usize, out: &mut [i32]| {
        for (p, cols) in out.chunks_mut(NR).enumerate() {
            let panel = first_panel + p;
            let t = Tile {
                i0: 0,
                rows: 1,
                panel,
                cols: cols.len(),
                p0: 0,
                kc: k,
                first: true,
                last: true,
            };
            // SAFETY: by `gemv`'s contract: row 0 of `a` holds `k` values, the panel `ceil(k / 4)` k-groups, and
            // `cols` is this panel's part of the row.
            unsafe { tile::<1>(a, 0, &t, &b[panel * panel_len..][..panel_len], cols, 0) };
        }
    };
    let panels = n.div_ceil(NR);
    let threads = rayon::current_num_threads();
    if threads > 1 && panels >= 2 && k * n >= PAR_MIN_MACS {
        let per_task = panels.div_ceil(threads);
        c.par_chunks_mut(per_task * NR)
            .enumerate()
            .for_each(|(task, out)| run(task * per_task, out));
    } else {
        run(0, c);
    }
}

/// Debug-build check of [`tile`]'s preconditions.
fn debug_check(a: &[u8], lda: usize, rows: usize, t: &Tile, b: &[i8], c: &[i32], ldc: usize) {
    debug_assert!(Isa::Avx512Vnni.is_available());
    debug_assert!(t.rows == rows && t.cols >= 1 && t.cols <= NR);
    debug_assert!(t.p0.is_multiple_of(4));
    debug_assert!(a.len() >= (t.i0 + rows - 1) * lda + t.p0 + t.kc);
    debug_assert!(b.len() >= t.kc.div_ceil(4) * GROUP_BYTES);
    debug_assert!(c.len() >= (rows - 1) * ldc + t.cols);
}

/// Lane mask of the `v`-th zmm of a panel with `cols` valid columns.
#[inline(always)]
pub(crate) fn column_mask(cols: usize, v: usize) -> __mmask16 {
    let valid = cols.saturating_sub(16 * v).min(16);
    ((1u32 << valid) - 1) as __mmask16
}

/// The 4 bytes of A at `row[at..at + len]` (`len <= 4`) as one little-endian word, zero-filled past `len`.
#[inline(always)]
fn tail_word(row: &[u8], at: usize, len: usize) -> i32 {
    let mut word = [0u8; 4];
    word[..len].copy_from_slice(&row[at..at + len]);
    i32::from_le_bytes(word)
}

/// `R x NR` accumulators of `sum_p A[i0 + r][p0 + p] * B[p0 + p][panel column]` over `p < kc`: the register
/// tile's main loop, shared with the fused dynamic-quantization kernel. With one row it keeps
/// [`GEMV_UNROLL`] k-groups in flight (separate accumulators, summed at the end) so that `vpdpbusd`'s latency
/// does not bound the B stream.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available. Rows `i0 .. i0 + R` of `a` (stride `lda`) must hold depths
/// `p0 .. p0 + kc`; `b` must start at the k-group of depth `p0` of a packed panel and hold `ceil(kc / 4)` groups.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn accumulate<const R: usize>(
    a: &[u8],
    lda: usize,
    i0: usize,
    p0: usize,
    kc: usize,
    b: &[i8],
) -> [[__m512i; NV]; R] {
    let full = kc / 4;
    let rem = kc % 4;
    let mut acc = [[_mm512_setzero_si512(); NV]; R];
    let mut rows = [a.as_ptr(); R];
    for (r, p) in rows.iter_mut().enumerate() {
        // SAFETY: in bounds by the caller's contract.
        *p = unsafe { p.add((i0 + r) * lda + p0) };
    }
    let bp = b.as_ptr();
    let mut g = 0;
    if R == 1 {
        let mut more = [[_mm512_setzero_si512(); NV]; GEMV_UNROLL];
        while g + GEMV_UNROLL <= full {
            for (u, acc_u) in more.iter_mut().enumerate() {
                // SAFETY: groups `g .. g + GEMV_UNROLL <= full` are in the row and in `b`.
                let (word, b0, b1) = unsafe {
                    let q = bp.add((g + u) * GROUP_BYTES);
                    (
                        rows[0].add(4 * (g + u)).cast::<i32>().read_unaligned(),
                        _mm512_loadu_si512(q.cast()),
                        _mm512_loadu_si512(q.add(64).cast()),
                    )
                };
                let av = _mm512_set1_epi32(word);
                acc_u[0] = _mm512_dpbusd_epi32(acc_u[0], av, b0);
                acc_u[1] = _mm512_dpbusd_epi32(acc_u[1], av, b1);
            }
            g += GEMV_UNROLL;
        }
        for acc_u in &more {
            for v in 0..NV {
                acc[0][v] = _mm512_add_epi32(acc[0][v], acc_u[v]);
            }
        }
    }
    while g < full {
        let mut bv = [_mm512_setzero_si512(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: group `g < full` of the block is in `b`.
            *x = unsafe { _mm512_loadu_si512(bp.add(g * GROUP_BYTES + 64 * v).cast()) };
        }
        for r in 0..R {
            // SAFETY: `4 * g + 4 <= kc` bytes of row `r` are in `a`.
            let word = unsafe { rows[r].add(4 * g).cast::<i32>().read_unaligned() };
            let av = _mm512_set1_epi32(word);
            for v in 0..NV {
                acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], av, bv[v]);
            }
        }
        g += 1;
    }
    if rem > 0 {
        let mut bv = [_mm512_setzero_si512(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: the ragged last group is zero-padded in the packing and lies in `b`.
            *x = unsafe { _mm512_loadu_si512(bp.add(full * GROUP_BYTES + 64 * v).cast()) };
        }
        // Bytes past the row's end are masked off; reading them whole is safe wherever the slice extends
        // 4 bytes past the tail (every row but the matrix's last, when `lda == k`), which saves a byte copy
        // through the stack per row: with k = 9 (a 3x3 single-channel convolution) that copy cost more than
        // the row's multiply-adds.
        let keep = (1u32 << (8 * rem)) - 1;
        for r in 0..R {
            let at = (i0 + r) * lda + p0 + 4 * full;
            let word = if at + 4 <= a.len() {
                // SAFETY: `at + 4 <= a.len()` was just checked.
                (unsafe { a.as_ptr().add(at).cast::<u32>().read_unaligned() } & keep) as i32
            } else {
                tail_word(&a[(i0 + r) * lda + p0..], 4 * full, rem)
            };
            let av = _mm512_set1_epi32(word);
            for v in 0..NV {
                acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], av, bv[v]);
            }
        }
    }
    acc
}

/// One `R x NR` register tile over the depth block `t.p0 .. t.p0 + t.kc`: [`accumulate`], then store (first
/// depth block) or add (later blocks) into C through lane masks.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available. Rows `t.i0 .. t.i0 + R` of `a` (stride `lda`) must hold depths
/// `t.p0 .. t.p0 + t.kc`; `b` must start at k-group `t.p0 / 4` of a packed panel and hold `ceil(t.kc / 4)`
/// groups; `c` must hold `R` rows of `t.cols` (`1..=NR`) elements at stride `ldc`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const R: usize>(
    a: &[u8],
    lda: usize,
    t: &Tile,
    b: &[i8],
    c: &mut [i32],
    ldc: usize,
) {
    debug_check(a, lda, R, t, b, c, ldc);
    // SAFETY: the caller's contract is `accumulate`'s.
    let acc = unsafe { accumulate::<R>(a, lda, t.i0, t.p0, t.kc, b) };
    let cp = c.as_mut_ptr();
    for v in 0..NV {
        let mask = column_mask(t.cols, v);
        if mask == 0 {
            break;
        }
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: lanes outside `mask` are neither read nor written (masked accesses do not fault), and
            // the caller guarantees the `cols` valid lanes of row `r` lie in `c`.
            unsafe {
                let p = cp.add(r * ldc + 16 * v);
                let val = if t.first {
                    row[v]
                } else {
                    _mm512_add_epi32(row[v], _mm512_maskz_loadu_epi32(mask, p))
                };
                _mm512_mask_storeu_epi32(p, mask, val);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::SCALAR_GEMM_U8I8;
    use crate::testing::{Rng, compare_exact};

    fn check(m: usize, k: usize, n: usize, seed: u64) {
        if !Isa::Avx512Vnni.is_available() {
            eprintln!("skip: this CPU lacks avx512vnni");
            return;
        }
        let mut rng = Rng::new(seed);
        let (a, b) = (rng.u8s(m * k), rng.i8s(k * n));
        let mut want = vec![0; m * n];
        let mut got = vec![-1; m * n];
        SCALAR_GEMM_U8I8.gemm(m, &a, k, &SCALAR_GEMM_U8I8.pack_b(&b, k, n), &mut want, n);
        let kern = &AVX512VNNI_GEMM_U8I8;
        kern.gemm(m, &a, k, &kern.pack_b(&b, k, n), &mut got, n);
        compare_exact(&want, &got, m, n).unwrap_or_else(|e| panic!("{m}x{k}x{n}: {e}"));
    }

    #[test]
    fn ragged_depth_reads_nothing_past_a() {
        // `a` is exactly `m * k` long, so a tail read past the last row would go out of bounds.
        for k in [1, 2, 3, 5, 6, 7, 513, 514, 515, 1027] {
            check(9, k, 33, k as u64);
            check(1, k, 33, k as u64);
        }
    }

    #[test]
    fn gemv_path_unroll_remainders() {
        // Full groups modulo the unroll: 0..3, plus ragged tails, across several panels.
        for k in (0..=24).chain([768, 769, 3136]) {
            check(1, k, 70, 1000 + k as u64);
        }
    }
}
