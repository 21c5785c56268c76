//! Portable `f32` GEMM in broadcast form. B is packed k-major in panels of [`NR`] columns (row `p` of a panel is
//! `NR` contiguous values); a [`MR`]`x`[`NR`] tile broadcasts one A value per row against each B row. Float sums
//! cannot be reordered, so LLVM vectorizes across the `NR` columns (`mulps` + `addps` on SSE2, no FMA). Every
//! element is summed in `p` order starting from 0.0, exactly as the scalar reference does, so on the same
//! inputs the results are identical; tests still use the float tolerance so faster kernels can reorder.
//! Measured on the dev box (Zen 4, one thread, m=784 k=288 n=64): 4x16 36 GFLOPS, 4x8 36, 6x8 28, 8x8 28.

use crate::frame::gemm::{Blocking, Tile, assert_a, assert_packed, drive};
use crate::frame::pack::pack_k_major;
use crate::isa::Isa;
use crate::{GemmF32, Kernel, PackedB};

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

/// The portable `f32` GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenericGemmF32;

/// The registered instance.
pub static GENERIC_GEMM_F32: GenericGemmF32 = GenericGemmF32;

impl Kernel for GenericGemmF32 {
    fn name(&self) -> &'static str {
        "generic_gemm_f32_4x16"
    }

    fn isa(&self) -> Isa {
        Isa::Generic
    }
}

impl GemmF32 for GenericGemmF32 {
    fn pack_b(&self, b: &[f32], k: usize, n: usize) -> PackedB<f32> {
        PackedB {
            k,
            n,
            data: pack_k_major(b, k, n, NR),
            kernel: self.name(),
        }
    }

    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedB<f32>, c: &mut [f32], ldc: usize) {
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
fn tile<const R: usize>(a: &[f32], lda: usize, block: &[f32], t: &Tile, c: &mut [f32], ldc: usize) {
    let mut acc = [[0f32; NR]; R];
    if !t.first {
        for (r, acc_row) in acc.iter_mut().enumerate() {
            acc_row[..t.cols].copy_from_slice(&c[r * ldc..r * ldc + t.cols]);
        }
    }
    let rows: [&[f32]; R] = std::array::from_fn(|r| &a[(t.i0 + r) * lda + t.p0..][..t.kc]);
    for (p, b_row) in block.chunks_exact(NR).enumerate() {
        let b_row: &[f32; NR] = b_row.try_into().expect("chunks_exact(NR)");
        for r in 0..R {
            let av = rows[r][p];
            for j in 0..NR {
                acc[r][j] += av * b_row[j];
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        c[r * ldc..r * ldc + t.cols].copy_from_slice(&acc_row[..t.cols]);
    }
}
