//! Quick throughput check of every registered GEMM kernel on two model shapes (a conv layer lowered by
//! im2col, and a deep GEMV), single-threaded and with the whole rayon pool. Not a benchmark suite: minimum
//! over repeats, hot caches. Run with `cargo run --release -p kernels --example gemm_gops`.
//! GOPS counts 2 operations (multiply, add) per multiply-add.

use std::time::{Duration, Instant};

use kernels::registry::{gemm_f32_kernels, gemm_f32w8_kernels, gemm_u8i8_kernels};
use kernels::testing::Rng;

/// `(m, k, n)`: a 3x3 conv with 32 input and 64 output channels on a 28x28 map, and a 3136 -> 128 FC layer.
const SHAPES: [(usize, usize, usize); 2] = [(784, 288, 64), (1, 3136, 128)];

fn min_time(mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    let mut best = Duration::MAX;
    let mut runs = 0;
    while runs < 5 || (start.elapsed() < Duration::from_millis(300) && runs < 10_000) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
        runs += 1;
    }
    best
}

fn report(op: &str, kernel: &str, threads: usize, (m, k, n): (usize, usize, usize), t: Duration) {
    let gops = 2.0 * (m * k * n) as f64 / t.as_secs_f64() / 1e9;
    println!(
        "{op:<10} {kernel:<28} threads={threads:<2} m={m:<4} k={k:<5} n={n:<4} {gops:>7.2} GOPS  ({t:?})"
    );
}

fn main() {
    let all = rayon::current_num_threads();
    let mut rng = Rng::new(7);
    for threads in [1, all] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("rayon pool");
        for shape @ (m, k, n) in SHAPES {
            let (a8, b8) = (rng.u8s(m * k), rng.i8s(k * n));
            let (af, bf) = (rng.f32s(m * k), rng.f32s(k * n));
            let (scales, zps) = (vec![0.01f32; n], vec![3i32; n]);
            for kern in gemm_u8i8_kernels()
                .iter()
                .filter(|k| k.isa().is_available())
            {
                let packed = kern.pack_b(&b8, k, n);
                let mut c = vec![0i32; m * n];
                let t = pool.install(|| min_time(|| kern.gemm(m, &a8, k, &packed, &mut c, n)));
                report("gemm_u8i8", kern.name(), threads, shape, t);
            }
            for kern in gemm_f32_kernels().iter().filter(|k| k.isa().is_available()) {
                let packed = kern.pack_b(&bf, k, n);
                let mut c = vec![0f32; m * n];
                let t = pool.install(|| min_time(|| kern.gemm(m, &af, k, &packed, &mut c, n)));
                report("gemm_f32", kern.name(), threads, shape, t);
            }
            for kern in gemm_f32w8_kernels()
                .iter()
                .filter(|k| k.isa().is_available())
            {
                let packed = kern.pack_b(&b8, k, n);
                let mut c = vec![0f32; m * n];
                let t = pool.install(|| {
                    min_time(|| kern.gemm(m, &af, k, &packed, &scales, &zps, &mut c, n))
                });
                report("gemm_f32w8", kern.name(), threads, shape, t);
            }
        }
    }
}
