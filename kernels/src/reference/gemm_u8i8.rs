//! Scalar reference for `C (i32) = A (u8) * B (i8)`: one `i32` sum per output element, in `p` order; exact for
//! `k <= 65_793` (`k * 255 * 128 < 2^31`), wrapping beyond, like the SIMD kernels.

use crate::frame::gemm::{assert_a, assert_packed};
use crate::isa::Isa;
use crate::{GemmU8I8, Kernel, PackedB};

/// The scalar `u8 x i8 -> i32` GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScalarGemmU8I8;

/// The registered instance.
pub static SCALAR_GEMM_U8I8: ScalarGemmU8I8 = ScalarGemmU8I8;

impl Kernel for ScalarGemmU8I8 {
    fn name(&self) -> &'static str {
        "scalar_gemm_u8i8_s32_1x1"
    }

    fn isa(&self) -> Isa {
        Isa::Scalar
    }
}

impl GemmU8I8 for ScalarGemmU8I8 {
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8> {
        super::pack_row_major(self.name(), b, k, n)
    }

    fn gemm(&self, m: usize, a: &[u8], lda: usize, b: &PackedB<i8>, c: &mut [i32], ldc: usize) {
        let (k, n) = (b.k, b.n);
        assert_packed(self.name(), b, k * n);
        assert_a(self.name(), m, k, a, lda);
        super::gemm_f32::assert_c(self.name(), m, n, c.len(), ldc);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0i32;
                for p in 0..k {
                    acc = acc.wrapping_add(a[i * lda + p] as i32 * b.data[p * n + j] as i32);
                }
                c[i * ldc + j] = acc;
            }
        }
    }
}
