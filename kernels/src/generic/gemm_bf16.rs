//! Portable BF16 GEMM in broadcast form, like [`super::gemm_f32`]: B rounded to bf16 at pack time and stored
//! k-major in panels of [`NR`] columns; the tile rounds each A value to bf16 as it broadcasts it and widens the
//! B row (a 16-bit shift), then multiplies and adds in `f32` in `p` order from 0.0: the same operations as the
//! scalar reference, so results are identical to it. Its point is portability (and halving B's memory), not
//! speed: without a bf16 dot instruction the widening costs extra work per element.

use crate::formats::bf16;
use crate::frame::gemm::{Blocking, Tile, assert_a, assert_packed, drive};
use crate::frame::pack::pack_k_major;
use crate::isa::Isa;
use crate::{GemmBf16, Kernel, PackedB};

/// Register-tile rows.
pub const MR: usize = 4;
/// Register-tile columns, and packed panel width.
pub const NR: usize = 16;
const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: 256,
    mc: 64,
};

/// The portable BF16 GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenericGemmBf16;

/// The registered instance.
pub static GENERIC_GEMM_BF16: GenericGemmBf16 = GenericGemmBf16;

impl Kernel for GenericGemmBf16 {
    fn name(&self) -> &'static str {
        "generic_gemm_bf16_f32_4x16"
    }

    fn isa(&self) -> Isa {
        Isa::Generic
    }
}

impl GemmBf16 for GenericGemmBf16 {
    fn pack_b(&self, b: &[f32], k: usize, n: usize) -> PackedB<u16> {
        let rounded = bf16::from_f32_slice(&b[..(k * n).min(b.len())]);
        PackedB {
            k,
            n,
            data: pack_k_major(&rounded, k, n, NR),
            kernel: self.name(),
        }
    }

    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedB<u16>, c: &mut [f32], ldc: usize) {
        let (k, n) = (b.k, b.n);
        assert_packed(self.name(), b, n.div_ceil(NR) * NR * k);
        assert_a(self.name(), m, k, a, lda);
        drive(BLOCKING, m, n, k, c, ldc, |t, ct, ldc| {
            let block = &b.data[(t.panel * k + t.p0) * NR..][..t.kc * NR];
            match t.rows {
                4 => tile::<4>(a, lda, block, t, ct, ldc),
                3 => tile::<3>(a, lda, block, t, ct, ldc),
                2 => tile::<2>(a, lda, block, t, ct, ldc),
                _ => tile::<1>(a, lda, block, t, ct, ldc),
            }
        });
    }
}

/// `R x NR` tile over one depth block; `block` is the panel's `kc x NR` slice for this block.
#[inline(always)]
fn tile<const R: usize>(a: &[f32], lda: usize, block: &[u16], t: &Tile, c: &mut [f32], ldc: usize) {
    let mut acc = [[0f32; NR]; R];
    if !t.first {
        for (r, acc_row) in acc.iter_mut().enumerate() {
            acc_row[..t.cols].copy_from_slice(&c[r * ldc..r * ldc + t.cols]);
        }
    }
    let rows: [&[f32]; R] = std::array::from_fn(|r| &a[(t.i0 + r) * lda + t.p0..][..t.kc]);
    for (p, b_row) in block.chunks_exact(NR).enumerate() {
        let w: [f32; NR] = std::array::from_fn(|j| bf16::to_f32(b_row[j]));
        for r in 0..R {
            let av = bf16::round_f32(rows[r][p]);
            for j in 0..NR {
                acc[r][j] += av * w[j];
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        c[r * ldc..r * ldc + t.cols].copy_from_slice(&acc_row[..t.cols]);
    }
}
