//! `u8 x i8 -> i32` GEMM on AVX2, exact: both operands are widened to `i16` and multiplied with `vpmaddwd`,
//! whose pair sums (`2 * 255 * 128 = 65_280`) fit its `i32` lanes, so nothing saturates. The faster-looking
//! `vpmaddubsw` (u8 x s8 -> saturating i16 pair sums) overflows when both products of a pair are extreme
//! (`255 * 127 * 2 = 64_770 > 32_767`); DESIGN-int8-gemm.md records why the exact `vpmaddubsw` variants lose
//! to this one on Zen 4.
//!
//! Layout: B is packed in k-groups of 4 ([`pack_k4`], register-tile width [`SUB`] = 8) and widened to `i16` at
//! packing time, so one ymm holds 4 columns x 4 depths. A tile call first widens its [`MR`] rows of A (one depth
//! block) into an `i16` stack buffer, then runs [`SUBS`] register tiles of `MR x SUB` against it, so the
//! widening (`vpmovzxbw`) is paid once per 64 columns instead of once per 8. In the register tile, 4 widened A
//! values `[a0 a1 a2 a3]` are broadcast (`vpbroadcastq`); `vpmaddwd` then gives, per column, `a0*b0 + a1*b1` in
//! one `i32` lane and `a2*b2 + a3*b3` in the next, added into 12 accumulators (6 rows x 2 ymm; with a B pair, A
//! and the product that is the 16 ymm registers of AVX2). The epilogue adds the lane pairs (`vphaddd` +
//! `vpermq`) into one sum per column.
//!
//! Edges: ragged `k` pads the widened A rows and B with zeros; ragged `n` skips absent register tiles and stores
//! the last one through `vpmaskmovd`; ragged `m` dispatches to tiles of fewer rows. Sums wrap in `i32` like the
//! reference (exact for `k <= 65_793`).

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::pack::{pack_k4, packed_len_k4};
use crate::frame::gemm::{Blocking, Tile, assert_a, assert_packed, drive};
use crate::isa::Isa;
use crate::{GemmU8I8, Kernel, PackedB};

/// Register-tile rows.
pub const MR: usize = 6;
/// Register-tile columns (2 ymm of 4 columns), and the packing's panel width.
pub const SUB: usize = 8;
/// Register tiles per tile call (one `drive` panel), sharing one widened copy of A.
pub const SUBS: usize = 8;
/// Columns of one `drive` panel.
pub const NR: usize = SUB * SUBS;
/// `i16` elements of packed B per k-group of a register-tile panel.
const GROUP_ELEMS: usize = SUB * 4;
/// Depth block: a multiple of 4, so only the last block is ragged. A `drive` panel's block (512 x 64 x 2 B =
/// 64 KiB) streams from L2 once per row tile (8 B per cycle at full speed); the widened A (6 x 512 x 2 B = 6 KiB)
/// stays in L1. Measured (best of repeats, 256x1024x1024 / 128x768x768 / 3136x576x64 GOPS, one thread): 4 tiles
/// per panel with kc 128: 143 / 150 / 153, kc 512: 158 / 160 / 162; 8 tiles, kc 256: 158 / 160 / 162, kc 512:
/// 163 / 164 / 167; 16 tiles, kc 512: 167 / 167 / 167 (within noise of 8, with more padding for small `n`).
const KC: usize = 512;
const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: KC,
    mc: 10 * MR,
};

/// The AVX2 `u8 x i8 -> i32` GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx2GemmU8I8;

/// The registered instance.
pub static AVX2_GEMM_U8I8: Avx2GemmU8I8 = Avx2GemmU8I8;

impl Kernel for Avx2GemmU8I8 {
    fn name(&self) -> &'static str {
        "avx2_gemm_u8i8_s32_6x8"
    }

    fn isa(&self) -> Isa {
        Isa::Avx2
    }
}

impl GemmU8I8 for Avx2GemmU8I8 {
    /// Packs B widened to `i16` (each value as 2 little-endian bytes of the `i8` data), in k-groups of 4.
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8> {
        let wide: Vec<i16> = pack_k4(b, k, n, SUB);
        PackedB {
            k,
            n,
            data: wide
                .iter()
                .flat_map(|v| v.to_le_bytes().map(|x| x as i8))
                .collect(),
            kernel: self.name(),
        }
    }

    fn gemm(&self, m: usize, a: &[u8], lda: usize, b: &PackedB<i8>, c: &mut [i32], ldc: usize) {
        self.assert_runnable();
        let (k, n) = (b.k, b.n);
        assert_packed(self.name(), b, 2 * packed_len_k4(k, n, SUB));
        assert_a(self.name(), m, k, a, lda);
        // Bytes of one register-tile panel over the whole depth.
        let sub_bytes = 2 * k.div_ceil(4) * GROUP_ELEMS;
        drive(BLOCKING, m, n, k, c, ldc, |t, ct, ldc| {
            let subs = t.cols.div_ceil(SUB);
            let first_sub = t.panel * SUBS;
            let panels = &b.data[first_sub * sub_bytes..][..subs * sub_bytes];
            let b_block = Panels {
                data: panels,
                stride: sub_bytes,
                offset: 2 * (t.p0 / 4) * GROUP_ELEMS,
            };
            // SAFETY: the ISA was checked above; `assert_a` and `drive` guarantee that rows `t.i0 .. t.i0 +
            // t.rows` of A hold depths `t.p0 .. t.p0 + t.kc`, that each of the `ceil(cols / SUB)` register-tile
            // panels holds `ceil(t.kc / 4)` k-groups from `offset` (`p0` is a multiple of 4 because `kc` is),
            // and that `ct` holds `t.rows` rows of `t.cols` columns at stride `ldc`; `tile` re-checks this with
            // `debug_assert!`.
            unsafe {
                match t.rows {
                    6 => tile::<6>(a, lda, t, &b_block, ct, ldc),
                    5 => tile::<5>(a, lda, t, &b_block, ct, ldc),
                    4 => tile::<4>(a, lda, t, &b_block, ct, ldc),
                    3 => tile::<3>(a, lda, t, &b_block, ct, ldc),
                    2 => tile::<2>(a, lda, t, &b_block, ct, ldc),
                    _ => tile::<1>(a, lda, t, &b_block, ct, ldc),
                }
            }
        });
    }
}

/// The packed register-tile panels of one `drive` panel: panel `s` of the depth block starts at byte
/// `s * stride + offset` of `data`.
struct Panels<'a> {
    data: &'a [i8],
    stride: usize,
    offset: usize,
}

/// `MR` rows of A widened to `i16`, one depth block (`KC`) each, 32-byte aligned.
#[repr(C, align(32))]
struct WideA([i16; MR * KC]);

/// One `drive` tile: `R` rows x `t.cols` columns over the depth block `t.p0 .. t.p0 + t.kc`.
///
/// # Safety
/// AVX2 must be available. Rows `t.i0 .. t.i0 + R` of `a` (stride `lda`) must hold depths `t.p0 .. t.p0 + t.kc`;
/// `b` must hold `ceil(t.cols / SUB)` register-tile panels, each with `ceil(t.kc / 4)` k-groups (of `i16`
/// values, as bytes) from `b.offset`; `c` must hold `R` rows of `t.cols` (`1..=NR`) elements at stride `ldc`.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize>(
    a: &[u8],
    lda: usize,
    t: &Tile,
    b: &Panels<'_>,
    c: &mut [i32],
    ldc: usize,
) {
    let groups = t.kc.div_ceil(4);
    let subs = t.cols.div_ceil(SUB);
    debug_assert!(Isa::Avx2.is_available());
    debug_assert!(
        t.rows == R && t.cols >= 1 && t.cols <= NR && t.p0.is_multiple_of(4) && t.kc <= KC
    );
    debug_assert!(a.len() >= (t.i0 + R - 1) * lda + t.p0 + t.kc);
    debug_assert!(b.data.len() >= (subs - 1) * b.stride + b.offset + 2 * groups * GROUP_ELEMS);
    debug_assert!(c.len() >= (R - 1) * ldc + t.cols);

    // Widen the rows of A, zero-padding the depth to `4 * groups`.
    let mut wide = MaybeUninit::<WideA>::uninit();
    let wp = wide.as_mut_ptr().cast::<i16>();
    for r in 0..R {
        let row = &a[(t.i0 + r) * lda + t.p0..][..t.kc];
        let mut chunks = row.chunks_exact(16);
        let mut p = 0;
        for chunk in &mut chunks {
            // SAFETY: `chunk` holds 16 bytes; the 16 `i16` written lie in row `r` of `wide` (`p + 16 <= kc`).
            unsafe {
                let v = _mm256_cvtepu8_epi16(_mm_loadu_si128(chunk.as_ptr().cast()));
                _mm256_storeu_si256(wp.add(r * KC + p).cast(), v);
            }
            p += 16;
        }
        for (i, &x) in chunks.remainder().iter().enumerate() {
            // SAFETY: `p + i < kc <= KC`.
            unsafe { wp.add(r * KC + p + i).write(i16::from(x)) };
        }
        for i in t.kc..4 * groups {
            // SAFETY: `4 * groups <= KC` (`KC` is a multiple of 4).
            unsafe { wp.add(r * KC + i).write(0) };
        }
    }

    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for s in 0..subs {
        let bp = b.data[s * b.stride + b.offset..].as_ptr().cast::<i16>();
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        for g in 0..groups {
            // SAFETY: k-group `g < groups` of panel `s` is in `b`; depths `4g .. 4g + 4` of every row of `wide`
            // were written above.
            unsafe {
                let b0 = _mm256_loadu_si256(bp.add(g * GROUP_ELEMS).cast());
                let b1 = _mm256_loadu_si256(bp.add(g * GROUP_ELEMS + 16).cast());
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let av =
                        _mm256_set1_epi64x(wp.add(r * KC + 4 * g).cast::<i64>().read_unaligned());
                    acc_r[0] = _mm256_add_epi32(acc_r[0], _mm256_madd_epi16(av, b0));
                    acc_r[1] = _mm256_add_epi32(acc_r[1], _mm256_madd_epi16(av, b1));
                }
            }
        }
        let valid = (t.cols - s * SUB).min(SUB);
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid as i32), lane);
        for (r, acc_r) in acc.iter().enumerate() {
            // [c0 c1 c4 c5 | c2 c3 c6 c7] -> [c0 .. c7].
            let sums = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(acc_r[0], acc_r[1]));
            // SAFETY: columns `s*SUB .. s*SUB + valid` of row `r` lie in `c` by the caller's contract; masked
            // lanes are neither read nor written and do not fault.
            unsafe {
                let p = c.as_mut_ptr().add(r * ldc + s * SUB);
                if valid == SUB {
                    let val = if t.first {
                        sums
                    } else {
                        _mm256_add_epi32(sums, _mm256_loadu_si256(p.cast()))
                    };
                    _mm256_storeu_si256(p.cast(), val);
                } else {
                    let val = if t.first {
                        sums
                    } else {
                        _mm256_add_epi32(sums, _mm256_maskload_epi32(p, mask))
                    };
                    _mm256_maskstore_epi32(p, mask, val);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::SCALAR_GEMM_U8I8;
    use crate::testing::{Rng, compare_exact};

    fn check(m: usize, k: usize, n: usize, a: &[u8], b: &[i8]) {
        if !Isa::Avx2.is_available() {
            eprintln!("skip: this CPU lacks avx2");
            return;
        }
        let mut want = vec![0; m * n];
        let mut got = vec![-1; m * n];
        SCALAR_GEMM_U8I8.gemm(m, a, k, &SCALAR_GEMM_U8I8.pack_b(b, k, n), &mut want, n);
        let kern = &AVX2_GEMM_U8I8;
        kern.gemm(m, a, k, &kern.pack_b(b, k, n), &mut got, n);
        compare_exact(&want, &got, m, n).unwrap_or_else(|e| panic!("{m}x{k}x{n}: {e}"));
    }

    #[test]
    fn ragged_depth_reads_nothing_past_a() {
        let mut rng = Rng::new(3);
        for k in [1, 2, 3, 5, 6, 7, 513, 514, 515] {
            for m in [1, 5] {
                check(m, k, 13, &rng.u8s(m * k), &rng.i8s(k * 13));
            }
        }
    }

    #[test]
    fn saturating_pairs_are_exact() {
        // Every pair of products at the extreme: 255*127 + 255*127 and 255*-128 + 255*-128 overflow i16.
        for bv in [127i8, -128] {
            let (m, k, n) = (5, 37, 14);
            check(m, k, n, &vec![255; m * k], &vec![bv; k * n]);
        }
    }
}
