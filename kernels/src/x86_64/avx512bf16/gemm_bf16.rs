//! BF16 GEMM with AVX-512 BF16: `C (f32) = bf16(A) * bf16(B)`.
//!
//! - B is rounded to bf16 at pack time ([`bf16::from_f32`]) and packed in panels of [`NR`] = 32
//!   columns, by depth pairs: pair `q` of a panel is 32 lanes of `(b[2q][j], b[2q + 1][j])` (128 bytes, two
//!   zmm; an odd `k` pads the last pair with zero).
//! - A is converted to bf16 row by row at the start of the call (`vcvtne2ps2bf16`, round to nearest even, 32
//!   values per instruction) into a per-thread scratch, rows zero-padded to a multiple of 32 values (plus 64
//!   bytes when the row stride would be a multiple of 1 KiB, so that the tile's rows do not share L1 sets).
//! - The tile broadcasts one 32-bit pair `(a[i][2q], a[i][2q + 1])` per row and issues `vdpbf16ps` against the
//!   two B vectors: [`MR`]` x 2` zmm accumulators, `2 * MR` dot instructions per 2 B loads and `MR`
//!   broadcasts per depth pair.
//!
//! Differences from the reference (covered by the float GEMM budget): the sum order (pairs, blocks, and
//! whatever order `vdpbf16ps` adds its two products in), and DAZ/FTZ (see [`super`]).

use core::arch::x86_64::*;

use crate::formats::bf16;
use crate::frame::gemm::{Blocking, Tile, assert_a, assert_packed, drive};
use crate::isa::Isa;
use crate::x86_64::fma::gemm_f32::{mask16, store512};
use crate::{GemmBf16, Kernel, PackedB};

/// Register-tile rows.
pub const MR: usize = 8;
/// Register-tile columns (two zmm of `f32`), and packed panel width.
pub const NR: usize = 32;
/// `u16` values per depth pair of a panel.
const PAIR: usize = 2 * NR;
/// `kc` is even, so depth pairs never straddle blocks. Deep blocks as in [`crate::x86_64::fma::gemm_f32`]: one
/// panel block is `kc / 2 * 128` = 48 KiB (L2); measured 207-229 GFLOPS on the large shapes against 189-225
/// for `kc` 256.
const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: 768,
    mc: 96,
};

/// The AVX-512 BF16 GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avx512Bf16GemmBf16;

/// The registered instance.
pub static AVX512BF16_GEMM_BF16: Avx512Bf16GemmBf16 = Avx512Bf16GemmBf16;

impl Kernel for Avx512Bf16GemmBf16 {
    fn name(&self) -> &'static str {
        "avx512bf16_gemm_bf16_f32_8x32"
    }

    fn isa(&self) -> Isa {
        Isa::Avx512Bf16
    }
}

/// Packed length of a `k x n` B.
fn packed_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * k.div_ceil(2) * PAIR
}

impl GemmBf16 for Avx512Bf16GemmBf16 {
    fn pack_b(&self, b: &[f32], k: usize, n: usize) -> PackedB<u16> {
        assert!(
            b.len() >= k * n,
            "{}: b has {} elements, {k}x{n} needs {}",
            self.name(),
            b.len(),
            k * n
        );
        let pairs = k.div_ceil(2);
        let mut data = vec![0u16; packed_len(k, n)];
        for p in 0..k {
            for j in 0..n {
                let (panel, jj) = (j / NR, j % NR);
                data[(panel * pairs + p / 2) * PAIR + 2 * jj + p % 2] =
                    bf16::from_f32(b[p * n + j]);
            }
        }
        PackedB {
            k,
            n,
            data,
            kernel: self.name(),
        }
    }

    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedB<u16>, c: &mut [f32], ldc: usize) {
        self.assert_runnable();
        let (k, n) = (b.k, b.n);
        assert_packed(self.name(), b, packed_len(k, n));
        assert_a(self.name(), m, k, a, lda);
        if m == 0 || n == 0 {
            return;
        }
        let pairs = k.div_ceil(2);
        let stride = a_stride(k);
        let mut abf = A_SCRATCH.take();
        if abf.len() < m * stride {
            abf.resize(m * stride, 0);
        }
        for i in 0..m {
            // SAFETY: the ISA was checked above; the row holds `stride >= 2 * ceil(k / 32) * 16` pairs.
            unsafe {
                convert_row(
                    &a[i * lda..i * lda + k],
                    &mut abf[i * stride..(i + 1) * stride],
                )
            };
        }
        let abf_ref = &abf[..m * stride];
        drive(BLOCKING, m, n, k, c, ldc, |t, ct, ldc| {
            let panel = &b.data[t.panel * pairs * PAIR..][..pairs * PAIR];
            let block = &panel[t.p0 / 2 * PAIR..][..t.kc.div_ceil(2) * PAIR];
            let arows = &abf_ref[t.i0 * stride + t.p0 / 2..];
            debug_assert!(arows.len() >= (t.rows - 1) * stride + t.kc.div_ceil(2));
            debug_assert!(ct.len() >= (t.rows - 1) * ldc + t.cols);
            // SAFETY: the ISA was checked above; `arows` holds `t.rows` rows of `ceil(t.kc / 2)` pairs at stride
            // `stride` (the converted A is zero-padded to whole pairs), `block` holds `ceil(t.kc / 2)` pairs of
            // the panel, and `ct` holds `t.rows` rows of `t.cols` columns at stride `ldc` (`drive`).
            unsafe {
                match t.rows {
                    8 => tile::<8>(arows, stride, t, block, ct, ldc),
                    7 => tile::<7>(arows, stride, t, block, ct, ldc),
                    6 => tile::<6>(arows, stride, t, block, ct, ldc),
                    5 => tile::<5>(arows, stride, t, block, ct, ldc),
                    4 => tile::<4>(arows, stride, t, block, ct, ldc),
                    3 => tile::<3>(arows, stride, t, block, ct, ldc),
                    2 => tile::<2>(arows, stride, t, block, ct, ldc),
                    _ => tile::<1>(arows, stride, t, block, ct, ldc),
                }
            }
        });
        A_SCRATCH.set(abf);
    }
}

thread_local! {
    /// Reused bf16 copy of A for the calling thread (grows to the largest A converted on it).
    static A_SCRATCH: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Row stride of the converted A, in pairs: whole zmm (16 pairs), plus one more when the stride in bytes would
/// be a multiple of 1 KiB.
fn a_stride(k: usize) -> usize {
    let s = k.div_ceil(32) * 16;
    if s.is_multiple_of(256) {
        s + 16
    } else {
        s.max(16)
    }
}

/// Converts one row of A to bf16 pairs, zero-padded to the end of `out`.
///
/// # Safety
/// AVX-512 F and BF16 must be available; `out` must hold at least `ceil(row.len() / 32) * 16` pairs.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn convert_row(row: &[f32], out: &mut [u32]) {
    let k = row.len();
    let (src, dst) = (row.as_ptr(), out.as_mut_ptr());
    for (c, at) in (0..k).step_by(32).enumerate() {
        // SAFETY: the masks keep the loads within `row`; chunk `c` of 16 pairs lies in `out`.
        unsafe {
            let lo = _mm512_maskz_loadu_ps(mask16(k - at, 0), src.add(at));
            let hi = _mm512_maskz_loadu_ps(mask16(k - at, 1), src.wrapping_add(at + 16));
            let packed = _mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(
                dst.add(16 * c).cast(),
                std::mem::transmute::<__m512bh, __m512i>(packed),
            );
        }
    }
    out[k.div_ceil(32) * 16..].fill(0);
}

/// One `R x 32` tile over the depth block.
///
/// # Safety
/// AVX-512 F and BF16 must be available; `a` must hold `R` rows of `ceil(t.kc / 2)` pairs at stride `stride`;
/// `b` must hold `ceil(t.kc / 2)` packed pairs of the panel; `c` must hold `R` rows of `t.cols` at stride `ldc`.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile<const R: usize>(
    a: &[u32],
    stride: usize,
    t: &Tile,
    b: &[u16],
    c: &mut [f32],
    ldc: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    for q in 0..t.kc.div_ceil(2) {
        // SAFETY: pair `q` is within `b` and every row of `a`, by the caller's contract.
        unsafe {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(q * PAIR).cast()));
            let b1: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(bp.add(q * PAIR + NR).cast()));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*ap.add(r * stride + q) as i32));
                acc_r[0] = _mm512_dpbf16_ps(acc_r[0], av, b0);
                acc_r[1] = _mm512_dpbf16_ps(acc_r[1], av, b1);
            }
        }
    }
    // SAFETY: as the caller's contract; AVX-512 F is enabled here.
    unsafe { store512::<R, 2>(&acc, t.cols, t.first, c, ldc) };
}
