//! Scalar reference for `C = A * B` in `f32`: one sum per output element, starting at 0.0, in `p` order, with
//! separate multiply and add (no FMA).

use crate::frame::gemm::{assert_a, assert_packed};
use crate::isa::Isa;
use crate::{GemmF32, Kernel, PackedB};

/// The scalar `f32` GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScalarGemmF32;

/// The registered instance.
pub static SCALAR_GEMM_F32: ScalarGemmF32 = ScalarGemmF32;

impl Kernel for ScalarGemmF32 {
    fn name(&self) -> &'static str {
        "scalar_gemm_f32_1x1"
    }

    fn isa(&self) -> Isa {
        Isa::Scalar
    }
}

impl GemmF32 for ScalarGemmF32 {
    fn pack_b(&self, b: &[f32], k: usize, n: usize) -> PackedB<f32> {
        super::pack_row_major(self.name(), b, k, n)
    }

    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedB<f32>, c: &mut [f32], ldc: usize) {
        let (k, n) = (b.k, b.n);
        assert_packed(self.name(), b, k * n);
        assert_a(self.name(), m, k, a, lda);
        assert_c(self.name(), m, n, c.len(), ldc);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f32;
                for p in 0..k {
                    acc += a[i * lda + p] * b.data[p * n + j];
                }
                c[i * ldc + j] = acc;
            }
        }
    }
}

/// Panics unless `c` holds an `m x n` result with leading dimension `ldc`.
pub(crate) fn assert_c(kernel: &str, m: usize, n: usize, c_len: usize, ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n, "{kernel}: ldc ({ldc}) < n ({n})");
    let needed = (m - 1) * ldc + n;
    assert!(
        c_len >= needed,
        "{kernel}: c has {c_len} elements, {m}x{n} with ldc {ldc} needs {needed}"
    );
}
