//! Reference for the dynamic int8 GEMM ([`GemmF32DynI8`]), composed of the frame helpers with the semantics
//! every optimized kernel must reproduce bit for bit:
//! 1. `(scale, zero_point)` from A's finite range by the call's [`DynRule`] ([`dynamic_qparams`], ONNX
//!    DynamicQuantizeLinear, or [`symmetric_qparams`]);
//! 2. `q = clamp(round_half_even(a / scale) + zero_point, 0, 255)` ([`quantize_u8`](crate::frame::quantize_u8), division in `f32`);
//! 3. exact `u8 x i8 -> i32` products, zero points compensated with row and column sums
//!    ([`compensate_zero_points`]: exact for `k <= 33_025`, saturating beyond);
//! 4. `c = acc as f32 * scale * b_scale[j] + bias[j]`, then `max(0, .)` if `relu` ([`dequantize_acc_f32`]).
//!
//! The same composition serves three times: on the scalar GEMM it is the `scalar` tier's kernel (the oracle), on
//! the generic GEMM the `generic` tier's, on the AVX2 GEMM the `avx2` tier's. B is packed once, by the inner GEMM, with B's column sums appended (as
//! little-endian `i32` bytes); each call copies the inner packing into the `PackedB` the inner GEMM takes (a
//! fallback cost; the SIMD kernels use their packing in place).

use crate::frame::gemm::assert_a;
use crate::frame::{
    col_sums_i8, compensate_zero_points, dequantize_acc_f32, min_max, quantize_u8_at, row_sums_u8,
};
use crate::isa::Isa;
use crate::reference::gemm_f32::assert_c;
use crate::reference::gemm_f32w8::assert_dequant_params;
use crate::{GemmF32DynI8, GemmU8I8, Kernel, PackedB};

/// How a dynamic kernel chooses A's `(scale, zero_point)` from the range of A's finite values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DynRule {
    /// ONNX DynamicQuantizeLinear ([`dynamic_qparams`]): affine over the range widened to 0.
    #[default]
    Affine,
    /// Symmetric ([`symmetric_qparams`]): `max(|lo|, |hi|) / 127` and zero point 128, i.e. s8 codes in
    /// [-127, 127] stored as `u8` (code + 128).
    Symmetric,
}

impl DynRule {
    /// `(scale, zero_point)` for finite values spanning `[lo, hi]` (`lo > hi`: no finite value, as 0).
    pub fn qparams(self, lo: f32, hi: f32) -> (f32, i32) {
        let (lo, hi) = if lo > hi { (0.0, 0.0) } else { (lo, hi) };
        match self {
            DynRule::Affine => dynamic_qparams(lo, hi),
            DynRule::Symmetric => symmetric_qparams(lo, hi),
        }
    }
}

/// Symmetric `(scale, zero_point)` for a tensor whose finite values span `[lo, hi]`: `scale = max(|lo|, |hi|) /
/// 127` (`1 / 127` for all zeros), zero point 128, in `f32`. Quantizing with it gives `clamp(round(a / scale),
/// -127, 127) + 128`: the codes of a symmetric s8 activation, offset into `u8`.
pub fn symmetric_qparams(lo: f32, hi: f32) -> (f32, i32) {
    let absmax = lo.abs().max(hi.abs());
    let scale = if absmax == 0.0 { 1.0 } else { absmax } / 127.0;
    (scale, 128)
}

/// ONNX DynamicQuantizeLinear's `(scale, zero_point)` for a tensor whose finite values span `[lo, hi]`: the range
/// is widened to include 0; `scale = (hi - lo) / 255`, or `1 / 255` when `hi == lo` (all zeros);
/// `zero_point = round_half_even(clamp(-lo / scale, 0, 255))`. All in `f32`, as the ONNX reference computes it.
pub fn dynamic_qparams(lo: f32, hi: f32) -> (f32, i32) {
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let scale = if hi == lo { 1.0 } else { hi - lo } / 255.0;
    let zero_point = (0.0 - lo / scale).clamp(0.0, 255.0).round_ties_even() as i32;
    (scale, zero_point)
}

/// [`dynamic_qparams`] of the `m x k` matrix `a` (row-major, leading dimension `lda`); non-finite values are
/// ignored, as in [`min_max`].
pub fn dynamic_qparams_of(a: &[f32], m: usize, k: usize, lda: usize) -> (f32, i32) {
    qparams_of(DynRule::Affine, a, m, k, lda)
}

/// `rule`'s `(scale, zero_point)` of the `m x k` matrix `a` (row-major, leading dimension `lda`); non-finite
/// values are ignored, as in [`min_max`].
pub fn qparams_of(rule: DynRule, a: &[f32], m: usize, k: usize, lda: usize) -> (f32, i32) {
    let (lo, hi) = (0..m)
        .map(|i| &a[i * lda..i * lda + k])
        .filter(|row| row.iter().any(|v| v.is_finite()))
        .map(min_max)
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), (l, h)| {
            (lo.min(l), hi.max(h))
        });
    rule.qparams(lo, hi)
}

/// Panics unless `bias` (if any) covers the `n` columns; shared with the SIMD kernels.
pub(crate) fn assert_bias(kernel: &str, n: usize, bias: Option<&[f32]>) {
    if let Some(b) = bias {
        assert!(
            b.len() >= n,
            "{kernel}: bias has {} entries, n = {n}",
            b.len()
        );
    }
}

/// The reference composition over an inner `u8 x i8` GEMM.
pub struct ComposedGemmF32DynI8 {
    pub(crate) name: &'static str,
    pub(crate) isa: Isa,
    pub(crate) inner: &'static dyn GemmU8I8,
}

/// The scalar oracle.
pub static SCALAR_GEMM_F32_DYN_I8: ComposedGemmF32DynI8 = ComposedGemmF32DynI8 {
    name: "scalar_gemm_f32_dyn_i8_1x1",
    isa: Isa::Scalar,
    inner: &crate::reference::SCALAR_GEMM_U8I8,
};

/// The portable kernel: the same composition on the generic GEMM.
pub static GENERIC_GEMM_F32_DYN_I8: ComposedGemmF32DynI8 = ComposedGemmF32DynI8 {
    name: "generic_gemm_f32_dyn_i8_4x4",
    isa: Isa::Generic,
    inner: &crate::generic::GENERIC_GEMM_U8I8,
};

impl Kernel for ComposedGemmF32DynI8 {
    fn name(&self) -> &'static str {
        self.name
    }

    fn isa(&self) -> Isa {
        self.isa
    }
}

impl GemmF32DynI8 for ComposedGemmF32DynI8 {
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8> {
        let mut data = self.inner.pack_b(b, k, n).data;
        data.extend(
            col_sums_i8(b, k, n)
                .iter()
                .flat_map(|s| s.to_le_bytes().map(|x| x as i8)),
        );
        PackedB {
            k,
            n,
            data,
            kernel: self.name,
        }
    }

    fn gemm_with(
        &self,
        rule: DynRule,
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedB<i8>,
        b_scales: &[f32],
        b_zero_points: &[i32],
        bias: Option<&[f32]>,
        relu: bool,
        c: &mut [f32],
        ldc: usize,
    ) -> (f32, i32) {
        let (k, n) = (b.k, b.n);
        assert!(
            b.kernel == self.name && b.data.len() >= 4 * n,
            "{}: B was packed by `{}`; pack it with this kernel's pack_b",
            self.name,
            b.kernel
        );
        let (inner_data, col_sums) = b.data.split_at(b.data.len() - 4 * n);
        let inner_b = PackedB {
            k,
            n,
            data: inner_data.to_vec(),
            kernel: self.inner.name(),
        };
        assert_a(self.name, m, k, a, lda);
        assert_dequant_params(self.name, n, b_scales.len(), b_zero_points.len());
        assert_bias(self.name, n, bias);
        assert_c(self.name, m, n, c.len(), ldc);
        let (scale, zero_point) = qparams_of(rule, a, m, k, lda);
        if m == 0 || n == 0 {
            return (scale, zero_point);
        }
        let mut qa = vec![0u8; m * k];
        for i in 0..m {
            // At this kernel's tier (the same codes in every build; see `quantize_u8_at`).
            quantize_u8_at(
                &a[i * lda..i * lda + k],
                scale,
                zero_point,
                &mut qa[i * k..i * k + k],
                self.isa,
            );
        }
        let mut acc = vec![0i32; m * n];
        self.inner.gemm(m, &qa, k, &inner_b, &mut acc, n);
        let col_sums: Vec<i32> = col_sums
            .chunks_exact(4)
            .map(|s| i32::from_le_bytes([s[0] as u8, s[1] as u8, s[2] as u8, s[3] as u8]))
            .collect();
        let row_sums = row_sums_u8(&qa, m, k, k);
        compensate_zero_points(
            &mut acc,
            m,
            n,
            n,
            k,
            &row_sums,
            zero_point,
            &col_sums,
            b_zero_points,
        );
        let mut out = vec![0f32; m * n];
        dequantize_acc_f32(&acc, m, n, n, scale, b_scales, bias, relu, &mut out);
        for (i, row) in out.chunks_exact(n).enumerate() {
            c[i * ldc..i * ldc + n].copy_from_slice(row);
        }
        (scale, zero_point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::quantize_u8;

    #[test]
    fn qparams_follow_onnx() {
        // Range [-1, 3]: scale 4/255, zero point round(255/4) = round(63.75) = 64.
        assert_eq!(dynamic_qparams(-1.0, 3.0), (4.0 / 255.0, 64));
        // Positive-only data: the range is widened to include 0, zero point 0.
        assert_eq!(dynamic_qparams(0.5, 2.0), (2.0 / 255.0, 0));
        // Negative-only data: zero point 255.
        assert_eq!(dynamic_qparams(-2.0, -0.5), (2.0 / 255.0, 255));
        // All zeros: ONNX uses a scale of 1/255.
        assert_eq!(dynamic_qparams(0.0, 0.0), (1.0 / 255.0, 0));
        // Non-finite values are ignored; nothing finite behaves like all zeros.
        let a = [f32::NAN, -2.0, f32::INFINITY, 1.0];
        assert_eq!(dynamic_qparams_of(&a, 2, 2, 2), dynamic_qparams(-2.0, 1.0));
        assert_eq!(
            dynamic_qparams_of(&[f32::NAN; 3], 1, 3, 3),
            dynamic_qparams(0.0, 0.0)
        );
    }

    #[test]
    fn symmetric_qparams_take_the_larger_magnitude() {
        assert_eq!(symmetric_qparams(-1.0, 3.0), (3.0 / 127.0, 128));
        assert_eq!(symmetric_qparams(-2.5, 0.5), (2.5 / 127.0, 128));
        assert_eq!(symmetric_qparams(0.0, 0.0), (1.0 / 127.0, 128));
        // No finite value behaves like all zeros, by either rule.
        assert_eq!(
            qparams_of(DynRule::Symmetric, &[f32::NAN; 3], 1, 3, 3),
            symmetric_qparams(0.0, 0.0)
        );
        let a = [f32::NEG_INFINITY, -2.0, 0.5, 1.0];
        assert_eq!(
            qparams_of(DynRule::Symmetric, &a, 2, 2, 2),
            (2.0 / 127.0, 128)
        );
        // The codes are the symmetric s8 codes offset by 128: -2.0 -> -127 + 128, 1.0 -> round(63.5) + 128.
        let mut q = [0u8; 2];
        quantize_u8(&[-2.0, 1.0], 2.0 / 127.0, 128, &mut q);
        assert_eq!(q, [1, 64 + 128]);
    }

    #[test]
    fn matches_a_float_computation_on_grid_data() {
        // A takes values on the quantization grid of [-1, 3], including both ends, so quantization is lossless
        // and the result is the float product up to the rounding of the float epilogue.
        let (m, k, n) = (3, 5, 4);
        let (scale, zp) = dynamic_qparams(-1.0, 3.0);
        let mut codes: Vec<i32> = (0..m * k).map(|x| ((x * 37) % 256) as i32).collect();
        codes[0] = 0;
        codes[1] = 255;
        let a: Vec<f32> = codes.iter().map(|&q| (q - zp) as f32 * scale).collect();
        let b: Vec<i8> = (0..k * n)
            .map(|x| (x as i32 * 29 % 256 - 128) as i8)
            .collect();
        let bias = [1.0, 2.0, 3.0, 4.0];
        let kern = &SCALAR_GEMM_F32_DYN_I8;
        let mut c = vec![0f32; m * n];
        let packed = kern.pack_b(&b, k, n);
        let params = kern.gemm(
            m,
            &a,
            k,
            &packed,
            &[0.5],
            &[3],
            Some(&bias),
            false,
            &mut c,
            n,
        );
        assert_eq!(params, (scale, zp));
        let want: Vec<f32> = (0..m * n)
            .map(|x| {
                let (i, j) = (x / n, x % n);
                let dot: f64 = (0..k)
                    .map(|p| (codes[i * k + p] - zp) as f64 * (b[p * n + j] as i32 - 3) as f64)
                    .sum();
                (dot * scale as f64 * 0.5 + bias[j] as f64) as f32
            })
            .collect();
        crate::testing::compare_f32_gemm(&want, &c, m, n, k).unwrap();
    }
}
