//! Portable weight-only int8 GEMM: `C = A (f32) * dequant(B (i8))`, broadcast form like [`super::gemm_f32`].
//! B is packed k-major in `i8` panels of [`NR`] columns; the tile widens each B row to `f32` as `b - zp[j]`
//! (exact: `|b - zp| < 2^24`), accumulates `sum_p a * (b - zp)` in `p` order, and multiplies by `scale[j]` once,
//! after the last depth block. The reference instead scales every term, so results differ by rounding only
//! (covered by the float tolerance). Measured on the dev box (Zen 4, one thread, m=784 k=288 n=64): 4x16 22
//! GFLOPS, 8x8 22, 2x16 15.

use crate::frame::gemm::{Blocking, Tile, assert_a, assert_packed, drive};
use crate::frame::pack::pack_k_major;
use crate::isa::Isa;
use crate::reference::gemm_f32w8::assert_dequant_params;
use crate::{GemmF32W8, Kernel, PackedB};

/// Register-tile rows.
pub const MR: usize = 4;
/// Register-tile columns, and packed panel width.
pub const NR: usize = 16;
const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: 512,
    mc: 64,
};

/// The portable weight-only int8 GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenericGemmF32W8;

/// The registered instance.
pub static GENERIC_GEMM_F32W8: GenericGemmF32W8 = GenericGemmF32W8;

impl Kernel for GenericGemmF32W8 {
    fn name(&self) -> &'static str {
        "generic_gemm_f32w8_4x16"
    }

    fn isa(&self) -> Isa {
        Isa::Generic
    }
}

impl GemmF32W8 for GenericGemmF32W8 {
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
        let (k, n) = (b.k, b.n);
        assert_packed(self.name(), b, n.div_ceil(NR) * NR * k);
        assert_a(self.name(), m, k, a, lda);
        assert_dequant_params(self.name(), n, scales.len(), zero_points.len());
        let column = |values_len: usize, j: usize| if values_len == 1 { 0 } else { j };
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
            match t.rows {
                4 => tile::<4>(a, lda, block, &params, t, ct, ldc),
                3 => tile::<3>(a, lda, block, &params, t, ct, ldc),
                2 => tile::<2>(a, lda, block, &params, t, ct, ldc),
                _ => tile::<1>(a, lda, block, &params, t, ct, ldc),
            }
        });
    }
}

/// Dequantization parameters of one panel's columns (zero for padding columns).
struct Params {
    zero_points: [i32; NR],
    scales: [f32; NR],
}

/// `R x NR` tile over one depth block. Before the last block C holds unscaled partial sums.
#[inline(always)]
fn tile<const R: usize>(
    a: &[f32],
    lda: usize,
    block: &[i8],
    params: &Params,
    t: &Tile,
    c: &mut [f32],
    ldc: usize,
) {
    let mut acc = [[0f32; NR]; R];
    if !t.first {
        for (r, acc_row) in acc.iter_mut().enumerate() {
            acc_row[..t.cols].copy_from_slice(&c[r * ldc..r * ldc + t.cols]);
        }
    }
    let rows: [&[f32]; R] = std::array::from_fn(|r| &a[(t.i0 + r) * lda + t.p0..][..t.kc]);
    for (p, b_row) in block.chunks_exact(NR).enumerate() {
        let b_row: &[i8; NR] = b_row.try_into().expect("chunks_exact(NR)");
        let w: [f32; NR] =
            std::array::from_fn(|j| (b_row[j] as i32).wrapping_sub(params.zero_points[j]) as f32);
        for r in 0..R {
            let av = rows[r][p];
            for j in 0..NR {
                acc[r][j] += av * w[j];
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let dst = &mut c[r * ldc..r * ldc + t.cols];
        for ((d, &v), &s) in dst.iter_mut().zip(acc_row).zip(&params.scales) {
            *d = if t.last { v * s } else { v };
        }
    }
}
