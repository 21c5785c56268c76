//! Throughput of every registered float and weight-only GEMM kernel (f32, int8 weights, bf16, f16 weights, int4
//! weights) on model shapes, one thread, weights prepacked, hot caches. GFLOPS = `2 * m * k * n / time`: the
//! median and the best wall-clock time of timed repeats, and the median thread CPU time. Run with
//! `cargo run --release -p kernels --example gemm_float [-- FILTER...]`; a FILTER keeps the kernels whose name
//! contains it (or the shapes written `MxKxN`).
//!
//! The machine is shared: check `uptime` first, and repeat.

use std::time::{Duration, Instant};

use kernels::formats::{f16, int4};
use kernels::registry::{
    gemm_bf16_kernels, gemm_f16w_kernels, gemm_f32_kernels, gemm_f32w8_kernels, gemm_w4_kernels,
};
use kernels::testing::Rng;

/// `(m, k, n)`: GEMV and batched transformer projections (768 / 3072), square-ish GEMMs, and a 1x1 conv of a
/// ResNet stage lowered to GEMM (56 * 56 = 3136 positions, 576 -> 64 channels).
const SHAPES: [(usize, usize, usize); 6] = [
    (1, 768, 768),
    (16, 768, 3072),
    (128, 768, 768),
    (256, 1024, 1024),
    (1024, 1024, 1024),
    (3136, 576, 64),
];

/// Int4 group size (ONNX Runtime MatMulNBits' default block size is 32; 128 is common for LLM weights).
const W4_GROUP: usize = 32;

/// Wall-clock median and minimum, and the median of the thread's CPU time, over timed repeats after one
/// warm-up call; at least 5 repeats and about 0.4 s. On a shared machine the CPU time excludes the slices other
/// processes ran in (not their cache pollution), so it is the steadier number under load.
fn time(mut f: impl FnMut()) -> (Duration, Duration, Duration) {
    f();
    let start = Instant::now();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    while wall.len() < 5 || (start.elapsed() < Duration::from_millis(400) && wall.len() < 2000) {
        let (t, c) = (Instant::now(), thread_cpu_time());
        f();
        wall.push(t.elapsed());
        cpu.push(thread_cpu_time().saturating_sub(c));
    }
    wall.sort();
    cpu.sort();
    (wall[wall.len() / 2], wall[0], cpu[cpu.len() / 2])
}

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`); zero where unsupported.
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Duration {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid `struct timespec` (64-bit Linux layout) for the call to fill.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc == 0 {
        Duration::new(ts.sec as u64, ts.nsec as u32)
    } else {
        Duration::ZERO
    }
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Duration {
    Duration::ZERO
}

fn report(
    op: &str,
    kernel: &str,
    (m, k, n): (usize, usize, usize),
    (median, min, cpu): (Duration, Duration, Duration),
) {
    let flops = 2.0 * (m * k * n) as f64;
    let rate = |d: Duration| flops / d.as_secs_f64().max(1e-12) / 1e9;
    println!(
        "{op:<12} {kernel:<34} {:>16} {:>7.1} GFLOPS median {:>7.1} best {:>7.1} cpu-time  ({median:?})",
        format!("{m}x{k}x{n}"),
        rate(median),
        rate(min),
        rate(cpu),
    );
}

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).collect();
    let keep = |name: &str, shape: (usize, usize, usize)| {
        let s = format!("{}x{}x{}", shape.0, shape.1, shape.2);
        let (shape_f, name_f): (Vec<&String>, Vec<&String>) = filters
            .iter()
            .partition(|f| f.chars().all(|c| c.is_ascii_digit() || c == 'x'));
        (shape_f.is_empty() || shape_f.iter().any(|f| **f == s))
            && (name_f.is_empty() || name_f.iter().any(|f| name.contains(f.as_str())))
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("rayon pool");
    let mut rng = Rng::new(7);
    pool.install(|| {
        for shape @ (m, k, n) in SHAPES {
            let (a, bf) = (rng.f32s(m * k), rng.f32s(k * n));
            let b8 = rng.i8s(k * n);
            let mut c = vec![0f32; m * n];
            let usable = |isa: kernels::Isa| isa > kernels::Isa::Scalar && isa.is_available();
            for kern in gemm_f32_kernels()
                .iter()
                .filter(|k| usable(k.isa()) && keep(k.name(), shape))
            {
                let packed = kern.pack_b(&bf, k, n);
                report(
                    "gemm_f32",
                    kern.name(),
                    shape,
                    time(|| kern.gemm(m, &a, k, &packed, &mut c, n)),
                );
            }
            let (scales, zps) = (vec![0.01f32; n], vec![3i32; n]);
            for kern in gemm_f32w8_kernels()
                .iter()
                .filter(|k| usable(k.isa()) && keep(k.name(), shape))
            {
                let packed = kern.pack_b(&b8, k, n);
                let t = time(|| kern.gemm(m, &a, k, &packed, &scales, &zps, &mut c, n));
                report("gemm_f32w8", kern.name(), shape, t);
            }
            for kern in gemm_bf16_kernels()
                .iter()
                .filter(|k| usable(k.isa()) && keep(k.name(), shape))
            {
                let packed = kern.pack_b(&bf, k, n);
                report(
                    "gemm_bf16",
                    kern.name(),
                    shape,
                    time(|| kern.gemm(m, &a, k, &packed, &mut c, n)),
                );
            }
            let bh = f16::from_f32_slice(&bf);
            for kern in gemm_f16w_kernels()
                .iter()
                .filter(|k| usable(k.isa()) && keep(k.name(), shape))
            {
                let packed = kern.pack_b(&bh, k, n);
                report(
                    "gemm_f16w",
                    kern.name(),
                    shape,
                    time(|| kern.gemm(m, &a, k, &packed, &mut c, n)),
                );
            }
            let (q, scales, zps) = int4::quantize_groupwise(&bf, k, n, W4_GROUP, true);
            for kern in gemm_w4_kernels()
                .iter()
                .filter(|k| usable(k.isa()) && keep(k.name(), shape))
            {
                let packed = kern.pack_b(&q, k, n, W4_GROUP, &scales, &zps);
                report(
                    "gemm_w4",
                    kern.name(),
                    shape,
                    time(|| kern.gemm(m, &a, k, &packed, &mut c, n)),
                );
                let t = time(|| kern.gemm_dyn_i8(m, &a, k, &packed, &mut c, n));
                report("gemm_w4_dyn", kern.name(), shape, t);
            }
        }
    });
}
