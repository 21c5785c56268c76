//! Scalar reference for weight-only int8: `C = A * dequant(B)` with `dequant(b)[p][j] = (b - zp[j]) * scale[j]`
//! evaluated per element in `f32`, then summed from 0.0 in `p` order (no FMA).

use crate::frame::gemm::{assert_a, assert_packed};
use crate::isa::Isa;
use crate::{GemmF32W8, Kernel, PackedB};

/// The scalar weight-only int8 GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScalarGemmF32W8;

/// The registered instance.
pub static SCALAR_GEMM_F32W8: ScalarGemmF32W8 = ScalarGemmF32W8;

impl Kernel for ScalarGemmF32W8 {
    fn name(&self) -> &'static str {
        "scalar_gemm_f32w8_1x1"
    }

    fn isa(&self) -> Isa {
        Isa::Scalar
    }
}

impl GemmF32W8 for ScalarGemmF32W8 {
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8> {
        super::pack_row_major(self.name(), b, k, n)
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
        assert_packed(self.name(), b, k * n);
        assert_a(self.name(), m, k, a, lda);
        super::gemm_f32::assert_c(self.name(), m, n, c.len(), ldc);
        assert_dequant_params(self.name(), n, scales.len(), zero_points.len());
        for i in 0..m {
            for j in 0..n {
                let (scale, zp) = (
                    super::per_column(scales, j),
                    super::per_column(zero_points, j),
                );
                let mut acc = 0f32;
                for p in 0..k {
                    acc += a[i * lda + p] * ((b.data[p * n + j] as i32 - zp) as f32 * scale);
                }
                c[i * ldc + j] = acc;
            }
        }
    }
}

/// Panics unless `scales` and `zero_points` have length 1 or `n`.
pub(crate) fn assert_dequant_params(kernel: &str, n: usize, scales: usize, zero_points: usize) {
    assert!(
        scales == 1 || scales == n,
        "{kernel}: {scales} scales; expected 1 (per-tensor) or n = {n}"
    );
    assert!(
        zero_points == 1 || zero_points == n,
        "{kernel}: {zero_points} zero points; expected 1 (per-tensor) or n = {n}"
    );
}
