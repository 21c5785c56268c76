//! The static int8 layer fused: the `vpdpbusd` 8x32 register tile of [`super::gemm_u8i8`], then the
//! requantization epilogue applied to the accumulator registers and the u8 result stored, so no i32 matrix ever
//! reaches memory. For a convolution with few output channels the i32 matrix is 4x the bytes of the u8 result
//! and storing it, then reading it back, costs more than the multiply-adds (the MNIST CNN's first layer, k = 9,
//! n = 32: 50 176 x 32 accumulators at batch 64).
//!
//! The epilogue gives exactly the bytes of [`crate::frame::nhwc::requantize_u8_f32`] (the scalar oracle): the
//! same i32 add, conversion to f32 and f32 multiply, then a round-half-even conversion and a clamp done on
//! integers, which equal the oracle's float rounding and clamp for every input (see `tile`).
//!
//! A fused tile needs the whole depth in one pass. Up to [`FUSED_MAX_K`] the depth is one block (a panel's
//! depth block then stays within L1 as in the plain kernel); deeper layers (and output zero points outside
//! 0..=255) run the plain kernel and the AVX-512 epilogue per row block of cache-resident accumulators.

use core::arch::x86_64::*;

use super::gemm_u8i8::{AVX512VNNI_GEMM_U8I8, GROUP_BYTES, MR, NR, NV, accumulate, column_mask};
use crate::frame::gemm::{Blocking, Tile, assert_a, assert_packed, drive};
use crate::frame::gemm_requant::{check, compose};
use crate::frame::nhwc::ROUND_LIMIT;
use crate::x86_64::avx2::pack::packed_len_k4;
use crate::x86_64::epilogue::AVX512_REQUANT_U8;
use crate::{GemmU8I8, GemmU8I8Requant, Isa, Kernel, PackedB, Requant};

/// Deepest layer fused in one depth block: the plain kernel's `kc` (one panel's block, 32 KiB, fits L1d).
pub const FUSED_MAX_K: usize = 1024;

/// The AVX-512 VNNI static layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx512VnniGemmU8I8Requant;

/// The registered instance.
pub static AVX512VNNI_GEMM_U8I8_REQUANT: Avx512VnniGemmU8I8Requant = Avx512VnniGemmU8I8Requant;

impl Kernel for Avx512VnniGemmU8I8Requant {
    fn name(&self) -> &'static str {
        "avx512vnni_gemm_u8i8_requant_u8_8x32"
    }

    fn isa(&self) -> Isa {
        Isa::Avx512Vnni
    }
}

impl GemmU8I8Requant for Avx512VnniGemmU8I8Requant {
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8> {
        AVX512VNNI_GEMM_U8I8.pack_b(b, k, n)
    }

    fn gemm_requant(
        &self,
        m: usize,
        a: &[u8],
        lda: usize,
        b: &PackedB<i8>,
        rq: &Requant<'_>,
        out: &mut [u8],
        ldo: usize,
    ) {
        self.assert_runnable();
        let (k, n) = (b.k, b.n);
        // The 16-bit zero-point add below needs the zero point of a u8 output.
        if k > FUSED_MAX_K || !(0..=255).contains(&rq.out_zp) {
            compose(
                &AVX512VNNI_GEMM_U8I8,
                &AVX512_REQUANT_U8,
                m,
                a,
                lda,
                b,
                rq,
                out,
                ldo,
            );
            return;
        }
        let plain = AVX512VNNI_GEMM_U8I8.name();
        assert_packed(plain, b, packed_len_k4(k, n, NR));
        assert_a(self.name(), m, k, a, lda);
        check(m, n, rq, out.len(), ldo);
        let panel_len = k.div_ceil(4) * GROUP_BYTES;
        let blocking = Blocking {
            mr: MR,
            nr: NR,
            kc: k.next_multiple_of(4).max(4),
            mc: 64,
        };
        drive(blocking, m, n, k, out, ldo, |t, ot, ldo| {
            let panel = &b.data[t.panel * panel_len..][..panel_len];
            // SAFETY: the ISA was checked above; `assert_a`, `check` and `drive` guarantee that rows `t.i0 ..
            // t.i0 + t.rows` of A hold the whole depth (`t.p0 == 0`, `t.kc == k`: one depth block), that the
            // panel holds `ceil(k / 4)` k-groups, that the epilogue slices have `n` entries (and row sums `m`),
            // and that `ot` holds `t.rows` rows of `t.cols` bytes at stride `ldo`.
            unsafe {
                match t.rows {
                    8 => tile::<8>(a, lda, t, panel, rq, ot, ldo),
                    7 => tile::<7>(a, lda, t, panel, rq, ot, ldo),
                    6 => tile::<6>(a, lda, t, panel, rq, ot, ldo),
                    5 => tile::<5>(a, lda, t, panel, rq, ot, ldo),
                    4 => tile::<4>(a, lda, t, panel, rq, ot, ldo),
                    3 => tile::<3>(a, lda, t, panel, rq, ot, ldo),
                    2 => tile::<2>(a, lda, t, panel, rq, ot, ldo),
                    _ => tile::<1>(a, lda, t, panel, rq, ot, ldo),
                }
            }
        });
    }
}

/// One `R x NR` tile over the whole depth, requantized in registers and stored as u8 through lane masks.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available. `t` must cover the whole depth (`t.p0 == 0`, `t.kc == k`, first and
/// last block); rows `t.i0 .. t.i0 + R` of `a` (stride `lda`) must hold it; `b` must be the tile's packed panel;
/// `rq`'s per-column slices must cover the panel's columns (and its row sums rows `t.i0 .. t.i0 + R`); `out`
/// must hold `R` rows of `t.cols` bytes at stride `ldo`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(
    a: &[u8],
    lda: usize,
    t: &Tile,
    b: &[i8],
    rq: &Requant<'_>,
    out: &mut [u8],
    ldo: usize,
) {
    debug_assert!(t.first && t.last && t.p0 == 0 && t.rows == R);
    debug_assert!(out.len() >= (R - 1) * ldo + t.cols);
    // SAFETY: the caller's contract is `accumulate`'s.
    let acc = unsafe { accumulate::<R>(a, lda, t.i0, 0, t.kc, b) };
    let j0 = t.panel * NR;
    let lo = if rq.relu {
        rq.out_zp.clamp(0, 255) as i8
    } else {
        0
    };
    let lo = _mm512_set1_epi8(lo);
    let zp = _mm512_set1_epi16(rq.out_zp as i16);
    let limit = _mm512_set1_ps(ROUND_LIMIT);
    let op = out.as_mut_ptr();
    // Per panel half `v`: the epilogue's per-column terms.
    let mut offset = [_mm512_setzero_si512(); NV];
    let mut mult = [_mm512_setzero_ps(); NV];
    let mut b_zp = [_mm512_setzero_si512(); NV];
    for v in 0..NV {
        let mask = column_mask(t.cols, v);
        let col = j0 + 16 * v;
        // SAFETY: masked loads read only the valid columns, which lie in the `n`-long slices.
        unsafe {
            offset[v] = _mm512_maskz_loadu_epi32(mask, rq.offset.as_ptr().add(col).cast());
            mult[v] = _mm512_maskz_loadu_ps(mask, rq.mult.as_ptr().add(col));
            if let Some((z, _)) = rq.zero_point_rows {
                b_zp[v] = _mm512_maskz_loadu_epi32(mask, z.as_ptr().add(col).cast());
            }
        }
    }
    // One accumulator register to rounded i32 (`vcvtps2dq` rounds half to even in the default MXCSR mode, as
    // the oracle's magic-number add does below 2^22). Large positive products are clamped first so that they
    // do not convert to the "integer indefinite" i32::MIN; large negative ones become i32::MIN, which the
    // saturating packs take to 0 as the oracle's clamp does.
    let rounded = |acc: __m512i, offset: __m512i, mult: __m512| {
        let x = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc, offset)), mult);
        _mm512_cvtps_epi32(_mm512_min_ps(x, limit))
    };
    // Dword `d` of the packed pair: quads of the first register (lanes 0-3 at dwords 0, 4, 8, 12), then of the
    // second (dwords 1, 5, 9, 13), undoing the per-128-bit-lane interleave of the two packs.
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    for (r, row) in acc.iter().enumerate() {
        let mut off = offset;
        if let Some((_, sums)) = rq.zero_point_rows {
            let rs = _mm512_set1_epi32(sums[t.i0 + r]);
            for v in 0..NV {
                off[v] = _mm512_sub_epi32(offset[v], _mm512_mullo_epi32(b_zp[v], rs));
            }
        }
        // Zero point and clamp on 16-bit lanes: the signed pack saturates at +-32767 (far past any u8 output),
        // the saturating add keeps it there, and the unsigned pack clamps to 0..=255, which is the oracle's
        // clamp; ReLU raises the floor to the zero point. Half the zmm operations of clamping in f32, and
        // storing through vpmovdb to memory measured 3x slower on Zen 4 than the packs, one permute and one
        // store.
        let words = _mm512_packs_epi32(
            rounded(row[0], off[0], mult[0]),
            rounded(row[1], off[1], mult[1]),
        );
        let words = _mm512_adds_epi16(words, zp);
        let bytes = _mm512_max_epu8(_mm512_packus_epi16(words, words), lo);
        let bytes = _mm512_permutexvar_epi32(order, bytes);
        let low = _mm512_castsi512_si256(bytes);
        // SAFETY: row `r` has `t.cols` valid bytes in `out`; masked lanes are not written.
        unsafe {
            let p = op.add(r * ldo);
            if t.cols == NR {
                _mm256_storeu_si256(p.cast(), low);
            } else {
                let mask = (1u64 << t.cols).wrapping_sub(1) as __mmask32;
                _mm256_mask_storeu_epi8(p.cast(), mask, low);
            }
        }
    }
}
