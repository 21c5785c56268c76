//! Scalar reference for BF16 GEMM: both operands rounded to bf16 ([`bf16::from_f32`], nearest even,
//! subnormals kept), then one `f32` sum per output element from 0.0 in `p` order with separate multiply and
//! add. A product of two bf16 values is exact in `f32` (8 x 8 significand bits), so only the additions round.

use crate::formats::bf16;
use crate::frame::gemm::{assert_a, assert_packed};
use crate::isa::Isa;
use crate::{GemmBf16, Kernel, PackedB};

/// The scalar BF16 GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScalarGemmBf16;

/// The registered instance.
pub static SCALAR_GEMM_BF16: ScalarGemmBf16 = ScalarGemmBf16;

impl Kernel for ScalarGemmBf16 {
    fn name(&self) -> &'static str {
        "scalar_gemm_bf16_f32_1x1"
    }

    fn isa(&self) -> Isa {
        Isa::Scalar
    }
}

impl GemmBf16 for ScalarGemmBf16 {
    fn pack_b(&self, b: &[f32], k: usize, n: usize) -> PackedB<u16> {
        let rounded = bf16::from_f32_slice(&b[..(k * n).min(b.len())]);
        super::pack_row_major(self.name(), &rounded, k, n)
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
                    acc += bf16::round_f32(a[i * lda + p]) * bf16::to_f32(b.data[p * n + j]);
                }
                c[i * ldc + j] = acc;
            }
        }
    }
}
