//! Throughput of the registered int8 GEMM kernels (`gemm_u8i8`, and `gemm_f32_dyn_i8` with quantization of the
//! f32 activations included in the time) on transformer- and CNN-sized shapes, one thread and the whole rayon
//! pool (with the speed-up over one thread). Weights are prepacked outside the timed region; caches
//! are hot. Prints the median and the minimum over timed repeats. GOPS counts 2 operations per multiply-add:
//! `2*m*k*n / time`.
//!
//! `cargo run --release -p kernels --example gemm_int8 [-- FILTER...]`: only kernels whose name contains one of
//! the filters (default: every available non-scalar kernel; the scalar oracle takes minutes on these shapes).
//! `QH_BENCH_SHAPES=MxKxN,...` replaces the shape list.

use std::time::{Duration, Instant};

use kernels::registry::{gemm_f32_dyn_i8_kernels, gemm_u8i8_kernels};
use kernels::testing::Rng;

/// `(m, k, n)`: BERT-base GEMV and FFN shapes, square GEMMs, and a ResNet stage-1 3x3 conv lowered by im2col.
const SHAPES: [(usize, usize, usize); 6] = [
    (1, 768, 768),
    (16, 768, 3072),
    (128, 768, 768),
    (256, 1024, 1024),
    (1024, 1024, 1024),
    (3136, 576, 64),
];

/// Median and minimum of timed runs: at least 9 runs and 300 ms, at most 20_000 runs, after one warm-up run.
fn time(mut f: impl FnMut()) -> (Duration, Duration) {
    f();
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 9 || (start.elapsed() < Duration::from_millis(300) && times.len() < 20_000)
    {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], times[0])
}

fn gops((m, k, n): (usize, usize, usize), t: Duration) -> f64 {
    2.0 * (m * k * n) as f64 / t.as_secs_f64() / 1e9
}

fn shapes() -> Vec<(usize, usize, usize)> {
    let Ok(list) = std::env::var("QH_BENCH_SHAPES") else {
        return SHAPES.to_vec();
    };
    list.split(',')
        .map(|s| {
            let d: Vec<usize> = s
                .split('x')
                .map(|v| v.trim().parse().expect("QH_BENCH_SHAPES: MxKxN,..."))
                .collect();
            assert!(d.len() == 3, "QH_BENCH_SHAPES: MxKxN,...");
            (d[0], d[1], d[2])
        })
        .collect()
}

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |name: &str| {
        if filters.is_empty() {
            !name.starts_with("scalar")
        } else {
            filters.iter().any(|f| name.contains(f.as_str()))
        }
    };
    let all = rayon::current_num_threads();
    let mut counts = vec![1, all];
    counts.dedup();
    let pools: Vec<(usize, rayon::ThreadPool)> = counts
        .into_iter()
        .map(|t| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .expect("rayon pool");
            (t, pool)
        })
        .collect();
    let mut rng = Rng::new(7);
    println!(
        "{:<34} {:>16} {:>8} {:>10} {:>10} {:>8}",
        "kernel", "m x k x n", "threads", "median", "GOPS(med)", "GOPS(min)"
    );
    for shape @ (m, k, n) in shapes() {
        let (a, b) = (rng.u8s(m * k), rng.i8s(k * n));
        let af = rng.f32s(m * k);
        let (scales, zps, bias) = (vec![0.02f32; n], vec![0i32; n], vec![0.5f32; n]);
        let mut c = vec![0i32; m * n];
        let mut cf = vec![0f32; m * n];
        for kern in gemm_u8i8_kernels()
            .iter()
            .filter(|k| k.isa().is_available() && wanted(k.name()))
        {
            let packed = kern.pack_b(&b, k, n);
            let mut single = None;
            for (threads, pool) in &pools {
                let t = pool.install(|| time(|| kern.gemm(m, &a, k, &packed, &mut c, n)));
                print_row(kern.name(), shape, *threads, t, &mut single);
            }
        }
        for kern in gemm_f32_dyn_i8_kernels()
            .iter()
            .filter(|k| k.isa().is_available() && wanted(k.name()))
        {
            let packed = kern.pack_b(&b, k, n);
            let mut single = None;
            for (threads, pool) in &pools {
                let t = pool.install(|| {
                    time(|| {
                        kern.gemm(
                            m,
                            &af,
                            k,
                            &packed,
                            &scales,
                            &zps,
                            Some(&bias),
                            true,
                            &mut cf,
                            n,
                        );
                    })
                });
                print_row(kern.name(), shape, *threads, t, &mut single);
            }
        }
    }
}

/// One result line; `single` keeps the one-thread median for the speed-up column.
fn print_row(
    name: &str,
    shape @ (m, k, n): (usize, usize, usize),
    threads: usize,
    (med, min): (Duration, Duration),
    single: &mut Option<Duration>,
) {
    let scaling = match single {
        Some(t1) if threads > 1 => format!("  x{:.2}", t1.as_secs_f64() / med.as_secs_f64()),
        _ => String::new(),
    };
    single.get_or_insert(med);
    println!(
        "{:<34} {:>16} {:>8} {:>10.1?} {:>10.1} {:>8.1}{scaling}",
        name,
        format!("{m}x{k}x{n}"),
        threads,
        med,
        gops(shape, med),
        gops(shape, min),
    );
}
