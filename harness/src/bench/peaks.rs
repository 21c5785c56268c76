//! Peak arithmetic throughput per core, as data: operations per cycle for each (ISA tier, arithmetic) pair.
//! One multiply-add counts as 2 operations, as in the `gops` column. `peak_gops = clock_ghz x ops_per_cycle x
//! threads`, and `peak_fraction = gops / peak_gops`.
//!
//! The peak is the one of the ISA the kernel *really* uses (its [`kernels::Kernel::isa`]), not the best
//! ISA of the machine: a generic kernel at 90 % of its SSE2 ceiling is doing its job, and the table below
//! says how far that ceiling is from VNNI's.
//!
//! The numbers are AMD Zen 4's, the machine this project measures on (EPYC, 2 cores, about 3.66 GHz).
//! Zen 4 executes 512-bit instructions as two 256-bit halves on its two 256-bit pipes, so AVX-512 doubles
//! the work per instruction but not per cycle, except where the instruction itself does more (VNNI, BF16).
//! Measured on this machine with throughput loops of independent instructions (shared/DESIGN.md, "Goals in
//! numbers"), per core at 3.66 GHz: int8 VNNI 469 GOPS, AVX2 int8 234 GOPS, BF16 234 GFLOPS, FP32 FMA
//! 117 GFLOPS.

use kernels::Isa;

/// The arithmetic a kernel's inner loop performs, which decides its ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arith {
    /// u8 x s8 products accumulated in i32 (int8 GEMM, dynamic int8, int4 unpacked to int8).
    Int8,
    /// f32 multiply-adds (f32 GEMM, and weight-only GEMMs that convert weights to f32 on the fly).
    F32,
    /// bf16 pairs multiplied and accumulated in f32 (`vdpbf16ps`); converted to f32 below AVX-512 BF16.
    Bf16,
}

impl Arith {
    pub fn name(self) -> &'static str {
        match self {
            Arith::Int8 => "int8",
            Arith::F32 => "f32",
            Arith::Bf16 => "bf16",
        }
    }
}

/// Operations per cycle per core at one ISA tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierPeak {
    pub isa: Isa,
    pub int8: u32,
    pub f32: u32,
    pub bf16: u32,
}

/// Zen 4, per core. Sources per row:
///
/// - `scalar`, `generic` — ASSUMED, not measured: both are compiled for the x86_64 baseline (SSE2), and LLVM
///   may vectorize even the scalar reference loops, so their ceiling is SSE2's. int8: `pmaddwd` on 128 bits
///   is 8 i16 multiply-adds (after widening u8/s8 to i16), two per cycle = 32 ops. f32: SSE2 has no FMA;
///   `mulps` + `addps` on 128 bits, two of each per cycle (Zen 4 has two FMUL and two FADD pipes) = 8
///   multiply-adds = 16 flops. bf16 is widened to f32 there (16).
/// - `avx2` — int8: `vpmaddubsw` + `vpmaddwd` + `vpaddd`, two 256-bit streams, 32 u8 x s8 multiply-adds per
///   cycle = 64 ops (measured 234 GOPS = 64 x 3.66). f32: two 256-bit FMAs per cycle = 16 multiply-adds = 32
///   flops (measured 117 GFLOPS = 32 x 3.66). bf16 widened to f32 (32).
/// - `avx512vnni` — int8: `vpdpbusd` zmm, 64 u8 x s8 multiply-adds, one per cycle (two 256-bit halves on the
///   two pipes) = 128 ops (measured 469 GOPS = 128 x 3.66). f32: 512-bit FMA is split in halves, so still 32.
///   bf16 widened to f32 (32).
/// - `avx512bf16` — as `avx512vnni`, plus bf16: `vdpbf16ps` zmm, 32 bf16 pairs, one per cycle = 64 flops
///   (measured 234 GFLOPS = 64 x 3.66).
pub const ZEN4: [TierPeak; 5] = [
    TierPeak {
        isa: Isa::Scalar,
        int8: 32,
        f32: 16,
        bf16: 16,
    },
    TierPeak {
        isa: Isa::Generic,
        int8: 32,
        f32: 16,
        bf16: 16,
    },
    TierPeak {
        isa: Isa::Avx2,
        int8: 64,
        f32: 32,
        bf16: 32,
    },
    TierPeak {
        isa: Isa::Avx512Vnni,
        int8: 128,
        f32: 32,
        bf16: 32,
    },
    TierPeak {
        isa: Isa::Avx512Bf16,
        int8: 128,
        f32: 32,
        bf16: 64,
    },
];

/// Operations per cycle per core for `arith` at `isa` (a tier missing from the table gets the best lower one).
pub fn ops_per_cycle(isa: Isa, arith: Arith) -> u32 {
    let tier = ZEN4.iter().rfind(|t| t.isa <= isa).unwrap_or(&ZEN4[0]);
    match arith {
        Arith::Int8 => tier.int8,
        Arith::F32 => tier.f32,
        Arith::Bf16 => tier.bf16,
    }
}

/// `clock_ghz x ops_per_cycle x threads`, in GOPS.
pub fn peak_gops(clock_ghz: f64, ops_per_cycle: u32, threads: usize) -> f64 {
    clock_ghz * f64::from(ops_per_cycle) * threads as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_every_tier_in_order() {
        assert_eq!(ZEN4.map(|t| t.isa), Isa::ALL);
    }

    #[test]
    fn lookups_match_the_measured_peaks() {
        assert_eq!(ops_per_cycle(Isa::Avx512Vnni, Arith::Int8), 128);
        assert_eq!(ops_per_cycle(Isa::Avx2, Arith::Int8), 64);
        assert_eq!(ops_per_cycle(Isa::Avx512Bf16, Arith::Bf16), 64);
        assert_eq!(ops_per_cycle(Isa::Avx512Bf16, Arith::F32), 32);
        assert_eq!(ops_per_cycle(Isa::Generic, Arith::F32), 16);
        assert_eq!(ops_per_cycle(Isa::Scalar, Arith::Int8), 32);
        // 469 GOPS int8 VNNI at 3.66 GHz, one core.
        let p = peak_gops(3.66, ops_per_cycle(Isa::Avx512Vnni, Arith::Int8), 1);
        assert!((p - 468.48).abs() < 1e-9, "{p}");
        assert_eq!(peak_gops(2.0, 32, 2), 128.0);
    }

    #[test]
    fn peaks_never_drop_with_a_higher_tier() {
        for arith in [Arith::Int8, Arith::F32, Arith::Bf16] {
            let per_tier = Isa::ALL.map(|isa| ops_per_cycle(isa, arith));
            assert!(
                per_tier.windows(2).all(|w| w[0] <= w[1]),
                "{arith:?}: {per_tier:?}"
            );
        }
    }
}
