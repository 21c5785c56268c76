//! Portable FP16-weight GEMM in broadcast form, like [`super::gemm_f32`]: f16 B stored k-major in panels of
//! [`NR`] columns; the tile widens one B row at a time ([`formats::f16::to_f32`](crate::formats::f16::to_f32),
//! exact) and multiplies and adds in `f32` in `p` order from 0.0, exactly as the scalar reference does.

use crate::formats::f16;
use crate::frame::gemm::{Blocking, Tile, assert_a, assert_packed, drive};
use crate::frame::pack::pack_k_major;
use crate::isa::Isa;
use crate::{GemmF16W, Kernel, PackedB};

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

/// The portable FP16-weight GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenericGemmF16W;

/// The registered instance.
pub static GENERIC_GEMM_F16W: GenericGemmF16W = GenericGemmF16W;

impl Kernel for GenericGemmF16W {
    fn name(&self) -> &'static str {
        "generic_gemm_f16w_f32_4x16"
    }

    fn isa(&self) -> Isa {
        Isa::Generic
    }
}

impl GemmF16W for GenericGemmF16W {
    fn pack_b(&self, b: &[u16], k: usize, n: usize) -> PackedB<u16> {
        PackedB {
            k,
            n,
            data: pack_k_major(b, k, n, NR),
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
        let mut w = [0f32; NR];
        for (wj, &h) in w.iter_mut().zip(b_row) {
            *wj = f16::to_f32(h);
        }
        for r in 0..R {
            let av = rows[r][p];
            for j in 0..NR {
                acc[r][j] += av * w[j];
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        c[r * ldc..r * ldc + t.cols].copy_from_slice(&acc_row[..t.cols]);
    }
}
