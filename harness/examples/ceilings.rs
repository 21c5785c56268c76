//! What this core can do at all, measured with loops that contain nothing but the limiting resource, so that a
//! kernel's figure can be read against its real ceiling instead of a datasheet's. Each probe prints its
//! throughput and the bound it sets on a GEMM goal of issue 3 (kernels/DESIGN-int8-gemm.md, "Ceilings"):
//!
//! - **L2 read**: a streaming read of 590 KB (the int8 weights of 1x768x768), hot in L2. A GEMV must read every
//!   weight once, so this time is the floor of the int8 1x768x768 GEMM.
//! - **L3 read with min/max**: the range pass of dynamic quantization over 3136x576 f32 (7.2 MB, hot in L3).
//!   Every quantized value depends on the range, so this pass cannot overlap the GEMM.
//! - **`vpdpbusd` zmm**: the VNNI int8 peak (16 independent accumulators, no memory).
//! - **AVX2 exact int8**: `vpmaddwd` products added into `i32` accumulators by `vpaddd`, the AVX2 kernel's loop
//!   body, in three forms: registers only, the 6x2 register tile with its broadcasts and B loads from L1, and
//!   (for contrast) the same instruction mix with adds that do not wait for the products.
//!
//! `cargo run --release -p harness --example ceilings` (x86_64 with AVX-512 VNNI; about 3 s). Run it on a quiet
//! machine: every figure is the best of many runs, so load only ever lowers it.

#[cfg(target_arch = "x86_64")]
mod probes {
    use std::arch::asm;
    use std::arch::x86_64::*;
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    /// Best time of `runs` calls of `f`, after one warm-up call.
    pub fn best(runs: usize, mut f: impl FnMut()) -> Duration {
        f();
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap_or(Duration::MAX)
    }

    /// A 64-byte aligned byte buffer.
    pub struct Aligned {
        words: Vec<__m512i>,
        pub len: usize,
    }

    impl Aligned {
        pub fn new(len: usize) -> Self {
            let words = (0..len.div_ceil(64))
                // SAFETY: `_mm512_set1_epi32` only needs AVX-512 F, which `main` checked.
                .map(|i| unsafe { _mm512_set1_epi32(i as i32 * 7 + 1) })
                .collect();
            Aligned { words, len }
        }

        pub fn as_ptr(&self) -> *const u8 {
            self.words.as_ptr().cast()
        }
    }

    /// Reads `buf` once with 64-byte loads, 4 independent xor chains.
    ///
    /// # Safety
    /// AVX-512 F must be available.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn stream_read(buf: &Aligned) -> __m512i {
        let p = buf.as_ptr();
        let mut acc = [_mm512_setzero_si512(); 4];
        let mut at = 0;
        while at + 256 <= buf.len {
            for (u, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `at + 64 * u + 64 <= len` bytes lie in the buffer, 64-byte aligned.
                *acc = _mm512_xor_si512(*acc, unsafe {
                    _mm512_load_si512(p.add(at + 64 * u).cast())
                });
            }
            at += 256;
        }
        _mm512_xor_si512(
            _mm512_xor_si512(acc[0], acc[1]),
            _mm512_xor_si512(acc[2], acc[3]),
        )
    }

    /// Min and max of `x`, 4 chains of each: the dynamic kernel's range pass without its NaN handling.
    ///
    /// # Safety
    /// AVX-512 F must be available.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn min_max(x: &[f32]) -> (f32, f32) {
        let mut lo = [_mm512_set1_ps(f32::INFINITY); 4];
        let mut hi = [_mm512_set1_ps(f32::NEG_INFINITY); 4];
        for chunk in x.chunks_exact(64) {
            for u in 0..4 {
                // SAFETY: the chunk holds 64 values.
                let v = unsafe { _mm512_loadu_ps(chunk.as_ptr().add(16 * u)) };
                lo[u] = _mm512_min_ps(v, lo[u]);
                hi[u] = _mm512_max_ps(v, hi[u]);
            }
        }
        let lo = _mm512_min_ps(_mm512_min_ps(lo[0], lo[1]), _mm512_min_ps(lo[2], lo[3]));
        let hi = _mm512_max_ps(_mm512_max_ps(hi[0], hi[1]), _mm512_max_ps(hi[2], hi[3]));
        (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi))
    }

    /// `iters` x 16 `vpdpbusd` zmm into 16 independent accumulators (registers only).
    pub fn vnni(iters: u64) {
        // SAFETY: register-only AVX-512 VNNI arithmetic (checked by `main`) and a counted loop.
        unsafe {
            asm!(
                "vpxord zmm16, zmm16, zmm16",
                "2:",
                ".irp r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
                "vpdpbusd zmm\\r, zmm16, zmm17",
                ".endr",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) iters.max(1) => _,
                out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _, out("zmm5") _,
                out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
                out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _, out("zmm16") _, out("zmm17") _,
                options(nomem, nostack),
            );
        }
    }

    /// `iters` x 12 (`vpmaddwd` into a temporary, `vpaddd` of it into one of 12 accumulators): the AVX2
    /// kernel's arithmetic with nothing else (registers only).
    pub fn avx2_madd_add(iters: u64) {
        // SAFETY: register-only AVX2 arithmetic (checked by `main`) and a counted loop.
        unsafe {
            asm!(
                "2:",
                ".irp r, 0,1,2,3,4,5,6,7,8,9,10,11",
                "vpmaddwd ymm15, ymm14, ymm12",
                "vpaddd ymm\\r, ymm\\r, ymm15",
                ".endr",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) iters.max(1) => _,
                out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _, out("ymm5") _,
                out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                out("ymm12") _, out("ymm14") _, out("ymm15") _,
                options(nomem, nostack),
            );
        }
    }

    /// The same 12 `vpmaddwd` + 12 `vpaddd`, but each add reads a register no product writes, so no add waits:
    /// shows that the four vector pipes can take this mix at full rate when nothing depends on a product.
    pub fn avx2_madd_add_independent(iters: u64) {
        // SAFETY: register-only AVX2 arithmetic (checked by `main`) and a counted loop.
        unsafe {
            asm!(
                "2:",
                ".irp r, 0,1,2,3,4,5,6,7,8,9,10,11",
                "vpmaddwd ymm15, ymm14, ymm12",
                "vpaddd ymm\\r, ymm\\r, ymm13",
                ".endr",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) iters.max(1) => _,
                out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _, out("ymm5") _,
                out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                options(nomem, nostack),
            );
        }
    }

    /// The AVX2 kernel's 6x2 register tile over `groups` k-groups, from L1: per group 2 B loads, 6
    /// `vpbroadcastq` of A (rows `row_bytes` apart), 12 `vpmaddwd`, 12 `vpaddd`.
    ///
    /// # Safety
    /// AVX2 must be available; `a` must hold `5 * row_bytes + 8 * groups` bytes and `b` `64 * groups`.
    pub unsafe fn avx2_tile(a: *const u8, row_bytes: usize, b: *const u8, groups: u64) {
        // SAFETY: the caller's contract covers every address read.
        unsafe {
            asm!(
                "2:",
                "vmovdqu ymm12, [{b}]",
                "vmovdqu ymm13, [{b} + 32]",
                "mov {p}, {a}",
                // Row r accumulates into ymm(2r) and ymm(2r + 1); `.macro` names the pair.
                ".macro qh_row lo, hi",
                "vpbroadcastq ymm14, qword ptr [{p}]",
                "vpmaddwd ymm15, ymm14, ymm12",
                "vpaddd \\lo, \\lo, ymm15",
                "vpmaddwd ymm14, ymm14, ymm13",
                "vpaddd \\hi, \\hi, ymm14",
                "add {p}, {stride}",
                ".endm",
                "qh_row ymm0, ymm1",
                "qh_row ymm2, ymm3",
                "qh_row ymm4, ymm5",
                "qh_row ymm6, ymm7",
                "qh_row ymm8, ymm9",
                "qh_row ymm10, ymm11",
                ".purgem qh_row",
                "add {a}, 8",
                "add {b}, 64",
                "dec {n}",
                "jnz 2b",
                a = inout(reg) a => _,
                b = inout(reg) b => _,
                p = out(reg) _,
                stride = in(reg) row_bytes,
                n = inout(reg) groups.max(1) => _,
                out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _, out("ymm5") _,
                out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                options(readonly, nostack),
            );
        }
    }

    pub fn run() {
        let ghz = harness::bench::clock::measure_ghz();
        println!("clock: {ghz:.3} GHz (measured, dependent add chain)");
        let cycles = |t: Duration| t.as_secs_f64() * ghz * 1e9;

        // L2: the 1x768x768 int8 weights.
        let l2 = Aligned::new(768 * 768);
        // SAFETY: AVX-512 F was checked by `main`.
        let t = best(2000, || {
            black_box(unsafe { stream_read(black_box(&l2)) });
        });
        let gops = 2.0 * 768.0 * 768.0 / t.as_secs_f64() / 1e9;
        println!(
            "L2 read, {} KB: {:.2} us, {:.1} B/cycle -> int8 1x768x768 cannot beat {:.2} us = {:.0} GOPS",
            l2.len / 1000,
            t.as_secs_f64() * 1e6,
            l2.len as f64 / cycles(t),
            t.as_secs_f64() * 1e6,
            gops
        );

        // L3: the range pass of 3136x576x64.
        let (m, k, n) = (3136usize, 576usize, 64usize);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 2_654_435_761) % 1000) as f32 * 0.01 - 5.0)
            .collect();
        // SAFETY: AVX-512 F was checked by `main`.
        let t_range = best(200, || {
            black_box(unsafe { min_max(black_box(&a)) });
        });
        println!(
            "L3 read + min/max, {:.1} MB of f32: {:.1} us, {:.1} B/cycle",
            (m * k * 4) as f64 / 1e6,
            t_range.as_secs_f64() * 1e6,
            (m * k * 4) as f64 / cycles(t_range)
        );

        // VNNI peak.
        let iters = 200_000;
        let t = best(20, || vnni(iters));
        let per_cycle = (iters * 16) as f64 / cycles(t);
        let gemm_floor = (m * k * n) as f64 / (per_cycle * 64.0) / (ghz * 1e3);
        println!(
            "vpdpbusd zmm: {per_cycle:.2} per cycle = {:.0} int8 ops/cycle -> {m}x{k}x{n} integer GEMM alone \
             >= {gemm_floor:.0} us; with the range pass >= {:.0} us before any value is quantized",
            per_cycle * 128.0,
            gemm_floor + t_range.as_secs_f64() * 1e6
        );

        // AVX2 exact int8.
        let peak = 2.0; // `vpmaddwd` ymm per cycle: the 64 ops/cycle AVX2 int8 peak of harness/src/bench/peaks.rs
        let t = best(20, || avx2_madd_add(iters));
        let regs = (iters * 12) as f64 / cycles(t);
        let t = best(20, || avx2_madd_add_independent(iters));
        let indep = (iters * 12) as f64 / cycles(t);
        let groups = 128u64;
        let row_bytes = 1024; // the kernel's widened A rows: KC = 512 i16
        let a_wide = Aligned::new(5 * row_bytes + 8 * groups as usize);
        let b_wide = Aligned::new(64 * groups as usize);
        // SAFETY: AVX2 was checked by `main`; the buffers have the sizes `avx2_tile` needs.
        let t = best(2000, || unsafe {
            avx2_tile(a_wide.as_ptr(), row_bytes, b_wide.as_ptr(), groups)
        });
        let tile = (groups * 12) as f64 / cycles(t);
        println!(
            "AVX2 vpmaddwd + dependent vpaddd, registers only: {regs:.2} vpmaddwd/cycle = {:.0} % of the AVX2 \
             int8 peak (adds that wait for no product: {indep:.2}/cycle = {:.0} %)",
            100.0 * regs / peak,
            100.0 * indep / peak
        );
        println!(
            "AVX2 6x2 tile from L1 (6 broadcasts, 2 B loads, 12 vpmaddwd, 12 vpaddd per k-group): {tile:.2} \
             vpmaddwd/cycle = {:.0} % of peak",
            100.0 * tile / peak
        );
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        let needs = [
            is_x86_feature_detected!("avx2"),
            is_x86_feature_detected!("avx512f"),
            is_x86_feature_detected!("avx512vnni"),
        ];
        if needs.contains(&false) {
            eprintln!(
                "ceilings: this CPU lacks AVX2, AVX-512 F or AVX-512 VNNI; nothing to measure"
            );
            std::process::exit(2);
        }
        probes::run();
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        eprintln!(
            "ceilings: the probes are x86_64 assembly; nothing to measure on this architecture"
        );
        std::process::exit(2);
    }
}
