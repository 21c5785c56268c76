//! Which kernel serves which op at which ISA, and [`select`], the single dispatch point. Kernels are `static`
//! unit structs listed in the per-op tables below, lowest ISA first; a new SIMD kernel is one more table entry
//! (and inherits the shared test suite, which walks these tables).
//!
//! Selection is ruy-style inheritance: after [`resolve`](crate::isa::resolve) fixes the ISA, each op gets the
//! best registered kernel whose ISA is at most the resolved one and available here, so a request for
//! `avx512vnni` with no VNNI kernel for an op runs that op's best lower kernel. A `scalar` request gets the
//! scalar reference kernels; any other request gets at least the generic ones.

use std::fmt;

use crate::error::KernelError;
use crate::isa::{self, Isa};
use crate::{GemmF32, GemmF32W8, GemmU8I8, Kernel, generic, reference};

/// The kernels registered for [`GemmU8I8`], lowest ISA first.
pub fn gemm_u8i8_kernels() -> &'static [&'static dyn GemmU8I8] {
    static TABLE: &[&dyn GemmU8I8] = &[
        &reference::SCALAR_GEMM_U8I8,
        &generic::GENERIC_GEMM_U8I8,
        // Exact vpmaddwd on widened operands: ~160 GOPS one thread at 256x1024x1024 (DESIGN-int8-gemm.md).
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::avx2::AVX2_GEMM_U8I8,
        // vpdpbusd 8x32: ~450 GOPS one thread at 256x1024x1024, 96 % of peak (DESIGN-int8-gemm.md).
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::avx512vnni::AVX512VNNI_GEMM_U8I8,
    ];
    TABLE
}

/// The kernels registered for [`GemmF32`], lowest ISA first.
pub fn gemm_f32_kernels() -> &'static [&'static dyn GemmF32] {
    static TABLE: &[&dyn GemmF32] = &[
        &reference::SCALAR_GEMM_F32,
        &generic::GENERIC_GEMM_F32,
        // 1 thread, Zen 4, 256x1024x1024: avx2 6x16 ymm 107 GFLOPS, 8x32 zmm 108.5 (AVX-512 F only, at the
        // avx512vnni tier; 106-114 on the large shapes). DESIGN-float-gemm.md.
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::fma::gemm_f32::AVX2_GEMM_F32,
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::fma::gemm_f32::AVX512_GEMM_F32,
    ];
    TABLE
}

/// The kernels registered for [`GemmF32W8`], lowest ISA first.
pub fn gemm_f32w8_kernels() -> &'static [&'static dyn GemmF32W8] {
    static TABLE: &[&dyn GemmF32W8] = &[
        &reference::SCALAR_GEMM_F32W8,
        &generic::GENERIC_GEMM_F32W8,
        // avx2 6x16 ymm and 8x32 zmm (AVX-512 F at the avx512vnni tier), int8 widened in registers: 88-95
        // GFLOPS on the large shapes for zmm against generic's 22 (DESIGN-float-gemm.md).
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::fma::gemm_f32w8::AVX2_GEMM_F32W8,
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::fma::gemm_f32w8::AVX512_GEMM_F32W8,
    ];
    TABLE
}

/// The kernels registered for [`GemmBf16`](crate::GemmBf16), lowest ISA first.
pub fn gemm_bf16_kernels() -> &'static [&'static dyn crate::GemmBf16] {
    static TABLE: &[&dyn crate::GemmBf16] = &[
        &reference::gemm_bf16::SCALAR_GEMM_BF16,
        &generic::gemm_bf16::GENERIC_GEMM_BF16,
        // 8x32 on vdpbf16ps: 222 GFLOPS at 256x1024x1024, 2.0x the f32 kernel (DESIGN-float-gemm.md).
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::avx512bf16::gemm_bf16::AVX512BF16_GEMM_BF16,
    ];
    TABLE
}

/// The kernels registered for [`GemmF16W`](crate::GemmF16W), lowest ISA first.
pub fn gemm_f16w_kernels() -> &'static [&'static dyn crate::GemmF16W] {
    static TABLE: &[&dyn crate::GemmF16W] = &[
        &reference::gemm_f16w::SCALAR_GEMM_F16W,
        &generic::gemm_f16w::GENERIC_GEMM_F16W,
        // 8x32 zmm, vcvtph2ps in registers (AVX-512 F at the avx512vnni tier): 91-100 GFLOPS on the large
        // shapes (DESIGN-float-gemm.md).
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::fma::gemm_f16w::AVX512_GEMM_F16W,
    ];
    TABLE
}

/// The kernels registered for [`GemmW4`](crate::GemmW4), lowest ISA first.
pub fn gemm_w4_kernels() -> &'static [&'static dyn crate::GemmW4] {
    static TABLE: &[&dyn crate::GemmW4] = &[
        &reference::gemm_w4::SCALAR_GEMM_W4,
        &generic::gemm_w4::GENERIC_GEMM_W4,
        // 8x16: gemm_dyn_i8 (int4 x int8 on vpdpbusd) 367 GOPS at 16x768x3072, 362 at 128x768x768; gemm
        // (nibbles widened to f32, FMA) ~100 (DESIGN-float-gemm.md).
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::fma::gemm_w4::AVX512VNNI_GEMM_W4,
    ];
    TABLE
}

/// The kernels registered for [`GemmF32DynI8`](crate::GemmF32DynI8), lowest ISA first.
pub fn gemm_f32_dyn_i8_kernels() -> &'static [&'static dyn crate::GemmF32DynI8] {
    static TABLE: &[&dyn crate::GemmF32DynI8] = &[
        &reference::gemm_f32_dyn_i8::SCALAR_GEMM_F32_DYN_I8,
        &reference::gemm_f32_dyn_i8::GENERIC_GEMM_F32_DYN_I8,
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::avx2::AVX2_GEMM_F32_DYN_I8,
        // Quantization fused per row block into the 8x32 vpdpbusd tile (DESIGN-int8-gemm.md).
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::avx512vnni::AVX512VNNI_GEMM_F32_DYN_I8,
    ];
    TABLE
}

/// The kernels registered for [`RequantU8`](crate::RequantU8), lowest ISA first.
pub fn requant_u8_kernels() -> &'static [&'static dyn crate::RequantU8] {
    static TABLE: &[&dyn crate::RequantU8] = &[
        &reference::requant::SCALAR_REQUANT_U8,
        &crate::generic::requant::GENERIC_REQUANT_U8,
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::epilogue::AVX2_REQUANT_U8,
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::epilogue::AVX512_REQUANT_U8,
    ];
    TABLE
}

/// The kernels registered for [`GemmU8I8Requant`](crate::GemmU8I8Requant) (the static int8 layer), lowest ISA
/// first.
pub fn gemm_u8i8_requant_kernels() -> &'static [&'static dyn crate::GemmU8I8Requant] {
    static TABLE: &[&dyn crate::GemmU8I8Requant] = &[
        &reference::requant::SCALAR_GEMM_U8I8_REQUANT,
        &crate::generic::requant::GENERIC_GEMM_U8I8_REQUANT,
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::epilogue::AVX2_GEMM_U8I8_REQUANT,
        // Requantized in registers, no i32 matrix in memory (DESIGN-int8-gemm.md).
        #[cfg(target_arch = "x86_64")]
        &crate::x86_64::avx512vnni::AVX512VNNI_GEMM_U8I8_REQUANT,
    ];
    TABLE
}

/// One kernel per op, chosen together by [`select`]. Result rows record [`KernelSet::describe`].
#[derive(Clone, Copy)]
pub struct KernelSet {
    /// The ISA the request resolved to (explicit > `QH_ISA` > best detected). Individual kernels may be of a
    /// lower ISA when none is registered at this one; each reports its own via [`Kernel::isa`].
    pub isa_requested: Isa,
    pub gemm_u8i8: &'static dyn GemmU8I8,
    pub gemm_f32: &'static dyn GemmF32,
    pub gemm_f32_w8: &'static dyn GemmF32W8,
    pub gemm_bf16: &'static dyn crate::GemmBf16,
    pub gemm_f16w: &'static dyn crate::GemmF16W,
    pub gemm_w4: &'static dyn crate::GemmW4,
    pub gemm_f32_dyn_i8: &'static dyn crate::GemmF32DynI8,
    pub requant_u8: &'static dyn crate::RequantU8,
    pub gemm_u8i8_requant: &'static dyn crate::GemmU8I8Requant,
}

impl KernelSet {
    /// Every kernel of the set, one per op, as `(op, kernel)`.
    pub fn all(&self) -> [(&'static str, &'static dyn Kernel); 9] {
        [
            ("gemm_u8i8", self.gemm_u8i8 as &dyn Kernel),
            ("gemm_f32", self.gemm_f32),
            ("gemm_f32w8", self.gemm_f32_w8),
            ("gemm_bf16", self.gemm_bf16),
            ("gemm_f16w", self.gemm_f16w),
            ("gemm_w4", self.gemm_w4),
            ("gemm_f32_dyn_i8", self.gemm_f32_dyn_i8),
            ("requant_u8", self.requant_u8),
            ("gemm_u8i8_requant", self.gemm_u8i8_requant),
        ]
    }

    /// `isa=<resolved> gemm_u8i8=<name> gemm_f32=<name> ...`, every op of the set.
    pub fn describe(&self) -> String {
        let mut s = format!("isa={}", self.isa_requested);
        for (op, k) in self.all() {
            s.push_str(&format!(" {op}={}", k.name()));
        }
        s
    }
}

impl fmt::Debug for KernelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// THE dispatch point: resolves `requested` (see [`isa::resolve`]: explicit > `QH_ISA` > detection; forcing an
/// unavailable ISA is an error) and picks each op's kernel as described in the [module docs](self).
pub fn select(requested: Option<Isa>) -> Result<KernelSet, KernelError> {
    let isa = isa::resolve(requested)?;
    Ok(KernelSet {
        isa_requested: isa,
        gemm_u8i8: pick(gemm_u8i8_kernels(), isa),
        gemm_f32: pick(gemm_f32_kernels(), isa),
        gemm_f32_w8: pick(gemm_f32w8_kernels(), isa),
        gemm_bf16: pick(gemm_bf16_kernels(), isa),
        gemm_f16w: pick(gemm_f16w_kernels(), isa),
        gemm_w4: pick(gemm_w4_kernels(), isa),
        gemm_f32_dyn_i8: pick(gemm_f32_dyn_i8_kernels(), isa),
        requant_u8: pick(requant_u8_kernels(), isa),
        gemm_u8i8_requant: pick(gemm_u8i8_requant_kernels(), isa),
    })
}

/// The best kernel for a resolved ISA. Tables are sorted by ISA, so the last eligible entry wins.
fn pick<K: Kernel + ?Sized>(table: &'static [&'static K], isa: Isa) -> &'static K {
    let eligible = |k: &&'static K| {
        let kisa = k.isa();
        kisa <= isa && kisa.is_available() && (isa == Isa::Scalar || kisa != Isa::Scalar)
    };
    table
        .iter()
        .copied()
        .rfind(eligible)
        .expect("scalar and generic kernels are registered for every op")
}

/// `(op, kernel name, kernel ISA, supported on this CPU)` for every registered kernel, for `harness info`.
pub fn available_kernels() -> Vec<(&'static str, &'static str, Isa, bool)> {
    let row = |op: &'static str, k: &dyn Kernel| (op, k.name(), k.isa(), k.isa().is_available());
    let mut rows = Vec::new();
    rows.extend(gemm_u8i8_kernels().iter().map(|k| row("gemm_u8i8", *k)));
    rows.extend(gemm_f32_kernels().iter().map(|k| row("gemm_f32", *k)));
    rows.extend(gemm_f32w8_kernels().iter().map(|k| row("gemm_f32w8", *k)));
    rows.extend(gemm_bf16_kernels().iter().map(|k| row("gemm_bf16", *k)));
    rows.extend(gemm_f16w_kernels().iter().map(|k| row("gemm_f16w", *k)));
    rows.extend(gemm_w4_kernels().iter().map(|k| row("gemm_w4", *k)));
    rows.extend(
        gemm_f32_dyn_i8_kernels()
            .iter()
            .map(|k| row("gemm_f32_dyn_i8", *k)),
    );
    rows.extend(requant_u8_kernels().iter().map(|k| row("requant_u8", *k)));
    rows.extend(
        gemm_u8i8_requant_kernels()
            .iter()
            .map(|k| row("gemm_u8i8_requant", *k)),
    );
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_by_isa_and_start_with_scalar_then_generic() {
        fn check<K: Kernel + ?Sized>(table: &[&K]) {
            assert_eq!(table[0].isa(), Isa::Scalar);
            assert_eq!(table[1].isa(), Isa::Generic);
            assert!(table.windows(2).all(|w| w[0].isa() <= w[1].isa()));
            for k in table {
                assert!(
                    k.name().starts_with(k.isa().name()),
                    "{} vs {}",
                    k.name(),
                    k.isa()
                );
            }
        }
        check(gemm_u8i8_kernels());
        check(gemm_f32_kernels());
        check(gemm_f32w8_kernels());
        check(gemm_u8i8_requant_kernels());
    }

    #[test]
    fn pick_inherits_from_lower_tiers() {
        assert_eq!(pick(gemm_u8i8_kernels(), Isa::Scalar).isa(), Isa::Scalar);
        for isa in [Isa::Generic, Isa::Avx2, Isa::Avx512Vnni, Isa::Avx512Bf16] {
            let k = pick(gemm_u8i8_kernels(), isa);
            assert!(
                k.isa() >= Isa::Generic && k.isa() <= isa,
                "{isa}: {}",
                k.name()
            );
        }
    }
}
