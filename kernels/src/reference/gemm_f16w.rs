//! Scalar reference for FP16-weight GEMM: B widened exactly from f16 ([`f16::to_f32`]), then one
//! `f32` sum per output element from 0.0 in `p` order with separate multiply and add (no FMA).

use crate::formats::f16;
use crate::frame::gemm::{assert_a, assert_packed};
use crate::isa::Isa;
use crate::{GemmF16W, Kernel, PackedB};

/// The scalar FP16-weight GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScalarGemmF16W;

/// The registered instance.
pub static SCALAR_GEMM_F16W: ScalarGemmF16W = ScalarGemmF16W;

impl Kernel for ScalarGemmF16W {
    fn name(&self) -> &'static str {
        "scalar_gemm_f16w_f32_1x1"
    }

    fn isa(&self) -> Isa {
        Isa::Scalar
    }
}

impl GemmF16W for ScalarGemmF16W {
    fn pack_b(&self, b: &[u16], k: usize, n: usize) -> PackedB<u16> {
        super::pack_row_major(self.name(), b, k, n)
    }

    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedB<u16>, c: &mut [f32], ldc: usize) {
        let (k, n) = (b.k, b.n);
        assert_packed(self.name(), b, k * n);
        assert_a(self.name(), m, k, a, lda);
        super::gemm_f32::assert_c(self.name(), m, n, c.len(), ldc);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f32;
                for p in 0..k {
                    acc += a[i * lda + p] * f16::to_f32(b.data[p * n + j]);
                }
                c[i * ldc + j] = acc;
            }
        }
    }
}
