//! Scalar reference for group-wise int4 weight-only GEMM ([`GemmW4`]). Packing keeps the row-major nibbles
//! ([`int4::pack_nibbles`]) and the row-major `ceil(k / group) x n` scales and zero points.
//!
//! - `gemm`: `w = (q - zp) as f32 * scale` per element, then one `f32` sum from 0.0 in `p` order (no FMA).
//! - `gemm_dyn_i8`: rows quantized by [`int4::quantize_row_dyn_i8`]; per group an exact `i32` sum of
//!   `a_q * (q - zp)`, converted to `f32` and multiplied by the group's scale, the group terms summed from 0.0
//!   in group order, and the total multiplied by the row scale.

use crate::formats::int4;
use crate::frame::gemm::assert_a;
use crate::isa::Isa;
use crate::{GemmW4, Kernel, PackedW4};

/// The scalar int4 weight-only GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScalarGemmW4;

/// The registered instance.
pub static SCALAR_GEMM_W4: ScalarGemmW4 = ScalarGemmW4;

impl Kernel for ScalarGemmW4 {
    fn name(&self) -> &'static str {
        "scalar_gemm_w4_f32_1x1"
    }

    fn isa(&self) -> Isa {
        Isa::Scalar
    }
}

impl ScalarGemmW4 {
    /// Checks the packing and the operands; returns the group count.
    fn check(&self, m: usize, a: &[f32], lda: usize, b: &PackedW4, c: &[f32], ldc: usize) -> usize {
        let (k, n) = (b.k, b.n);
        assert_packed_w4(self.name(), b, k * n, int4::group_count(k, b.group) * n);
        assert_a(self.name(), m, k, a, lda);
        super::gemm_f32::assert_c(self.name(), m, n, c.len(), ldc);
        int4::group_count(k, b.group)
    }
}

impl GemmW4 for ScalarGemmW4 {
    fn pack_b(
        &self,
        q: &[u8],
        k: usize,
        n: usize,
        group: usize,
        scales: &[f32],
        zero_points: &[u8],
    ) -> PackedW4 {
        int4::assert_pack_args(self.name(), q, k, n, group, scales, zero_points);
        let params = int4::group_count(k, group) * n;
        PackedW4 {
            k,
            n,
            group,
            data: int4::pack_nibbles(&q[..k * n]),
            scales: scales[..params].to_vec(),
            zero_points: zero_points[..params].to_vec(),
            sums: Vec::new(),
            kernel: self.name(),
        }
    }

    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedW4, c: &mut [f32], ldc: usize) {
        self.check(m, a, lda, b, c, ldc);
        let (k, n) = (b.k, b.n);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f32;
                for p in 0..k {
                    let g = (p / b.group) * n + j;
                    let w = (int4::nibble(&b.data, p * n + j) as i32 - b.zero_points[g] as i32)
                        as f32
                        * b.scales[g];
                    acc += a[i * lda + p] * w;
                }
                c[i * ldc + j] = acc;
            }
        }
    }

    fn gemm_dyn_i8(
        &self,
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedW4,
        c: &mut [f32],
        ldc: usize,
    ) {
        let groups = self.check(m, a, lda, b, c, ldc);
        let (k, n) = (b.k, b.n);
        let mut aq = vec![0i8; k];
        for i in 0..m {
            let a_scale = int4::quantize_row_dyn_i8(&a[i * lda..i * lda + k], &mut aq);
            for j in 0..n {
                let mut acc = 0f32;
                for g in 0..groups {
                    let zp = b.zero_points[g * n + j] as i32;
                    let dot: i32 = (g * b.group..((g + 1) * b.group).min(k))
                        .map(|p| aq[p] as i32 * (int4::nibble(&b.data, p * n + j) as i32 - zp))
                        .sum();
                    acc += dot as f32 * b.scales[g * n + j];
                }
                c[i * ldc + j] = acc * a_scale;
            }
        }
    }
}

/// Panics unless `b` was packed by `kernel` with `values` nibbles and `params` scales and zero points.
pub(crate) fn assert_packed_w4(kernel: &str, b: &PackedW4, values: usize, params: usize) {
    assert!(
        b.kernel == kernel,
        "{kernel}: B was packed by `{}`; pack it with this kernel's pack_b",
        b.kernel
    );
    assert!(
        b.data.len() * 2 >= values && b.scales.len() == params && b.zero_points.len() == params,
        "{kernel}: packed B has {} bytes, {} scales, {} zero points; expected {values} nibbles, {params} of each",
        b.data.len(),
        b.scales.len(),
        b.zero_points.len()
    );
}
