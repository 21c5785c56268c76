//! Criterion benches of the GEMM kernels the dispatcher picks on this machine, one per ISA tier this CPU has
//! (the scalar oracles are left out: they are references, not deployment kernels), on the default shapes of
//! `harness bench` and the MNIST CNN's layers.
//!
//! IDs read `gemm/{isa}/{dtype}/{M}x{K}x{N}`, with `{isa}` the kernel's own ISA; a tier that inherits a lower
//! tier's kernel is not timed twice. Dtypes as in `harness bench`: int8, dynint8 (f32 in, quantized at run
//! time), int4 (int8 activations, group 32), int4f32, bf16, f16 (f16 weights), f32, f32w8; and int8rq, the
//! static layer (int8 GEMM plus requantization to u8, fused in registers where the kernel does it).
//!
//! Throughput is `Elements(m*k*n)`, i.e. multiply-adds per second (GOPS = 2 x that). Single-threaded (a
//! one-thread rayon pool, as `harness bench --threads 1`). Hot caches only: the same inputs and weights every
//! iteration, weights prepacked outside the timed loop. Kept short (10 flat samples in 0.7 s each) so
//! `cargo bench -p kernels` finishes in a few minutes on 2 cores; filter with e.g.
//! `cargo bench -p kernels -- gemm/avx512vnni/int8`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};
use kernels::formats::{bf16, f16};
use kernels::testing::Rng;
use kernels::{GemmW4, Isa, Kernel, KernelSet, PackedW4, select};

/// `(m, k, n)`: `harness bench`'s defaults (BERT-base GEMV and FFN, attention-sized, large square, a ResNet
/// 1x1 convolution after im2col), then the MNIST CNN: conv1 (28x28 outputs, 3x3x1 -> 32), conv2 (14x14
/// outputs, 3x3x32 -> 64), fc1 (3136 -> 128) and fc2 (128 -> 10), at batch 1.
const SHAPES: [(usize, usize, usize); 10] = [
    (1, 768, 768),
    (16, 768, 3072),
    (128, 768, 768),
    (256, 1024, 1024),
    (1024, 1024, 1024),
    (3136, 576, 64),
    (784, 9, 32),
    (196, 288, 64),
    (1, 3136, 128),
    (1, 128, 10),
];

const SEED: u64 = 7;

/// Rows of `k` per int4 scale, as in `harness bench` and the ONNX Runtime peer.
const W4_GROUP: usize = 32;

/// One kernel run on prepared inputs.
type Run = Box<dyn FnMut() + Send>;

/// Benches `dtype` for every distinct kernel `of` picks at the tiers above scalar that this CPU has.
fn family<K: Kernel + ?Sized + 'static>(
    c: &mut Criterion,
    dtype: &str,
    of: impl Fn(&KernelSet) -> &'static K,
    prepare: impl Fn(&'static K, (usize, usize, usize), &mut Rng) -> Run,
) {
    // One thread, as `harness bench --threads 1`: kernels split rows over the current rayon pool, and the
    // global one has a thread per core.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let mut seen: Vec<&'static str> = Vec::new();
    for isa in Isa::ALL
        .into_iter()
        .filter(|i| *i > Isa::Scalar && i.is_available())
    {
        let kern = of(&select(Some(isa)).expect("an available ISA selects"));
        if seen.contains(&kern.name()) {
            continue;
        }
        seen.push(kern.name());
        let mut g = c.benchmark_group(format!("gemm/{}/{dtype}", kern.isa()));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(700))
            .sampling_mode(SamplingMode::Flat);
        for shape @ (m, k, n) in SHAPES {
            let mut run = prepare(kern, shape, &mut Rng::new(SEED));
            g.throughput(Throughput::Elements((m * k * n) as u64));
            g.bench_function(format!("{m}x{k}x{n}"), |b| {
                pool.install(|| b.iter(&mut run))
            });
        }
        g.finish();
    }
}

fn int8(c: &mut Criterion) {
    family(
        c,
        "int8",
        |s| s.gemm_u8i8,
        |kern, (m, k, n), rng| {
            let a = rng.u8s(m * k);
            let b = kern.pack_b(&rng.i8s(k * n), k, n);
            let mut out = vec![0i32; m * n];
            Box::new(move || kern.gemm(m, black_box(&a), k, &b, black_box(&mut out), n))
        },
    );
}

/// The static int8 layer: GEMM plus requantization to u8 (fused in registers where the kernel does it).
fn int8rq(c: &mut Criterion) {
    family(
        c,
        "int8rq",
        |s| s.gemm_u8i8_requant,
        |kern, (m, k, n), rng| {
            let a = rng.u8s(m * k);
            let b = kern.pack_b(&rng.i8s(k * n), k, n);
            let offset: Vec<i32> = (0..n).map(|_| rng.below(2001) as i32 - 1000).collect();
            let mult = vec![1.0 / (k as f32 * 500.0); n];
            let mut out = vec![0u8; m * n];
            Box::new(move || {
                let rq = kernels::Requant {
                    offset: &offset,
                    zero_point_rows: None,
                    mult: &mult,
                    out_zp: 128,
                    relu: true,
                };
                kern.gemm_requant(m, black_box(&a), k, &b, &rq, black_box(&mut out), n)
            })
        },
    );
}

fn f32(c: &mut Criterion) {
    family(
        c,
        "f32",
        |s| s.gemm_f32,
        |kern, (m, k, n), rng| {
            let a = rng.f32s(m * k);
            let b = kern.pack_b(&rng.f32s(k * n), k, n);
            let mut out = vec![0f32; m * n];
            Box::new(move || kern.gemm(m, black_box(&a), k, &b, black_box(&mut out), n))
        },
    );
}

fn f32w8(c: &mut Criterion) {
    family(
        c,
        "f32w8",
        |s| s.gemm_f32_w8,
        |kern, (m, k, n), rng| {
            let a = rng.f32s(m * k);
            let b = kern.pack_b(&rng.i8s(k * n), k, n);
            let (scales, zero_points) = (vec![0.01f32; n], vec![0i32; n]);
            let mut out = vec![0f32; m * n];
            Box::new(move || {
                let out = black_box(&mut out);
                kern.gemm(m, black_box(&a), k, &b, &scales, &zero_points, out, n)
            })
        },
    );
}

fn dynint8(c: &mut Criterion) {
    family(
        c,
        "dynint8",
        |s| s.gemm_f32_dyn_i8,
        |kern, (m, k, n), rng| {
            let a = rng.f32s(m * k);
            let b = kern.pack_b(&rng.i8s(k * n), k, n);
            let (scales, zero_points) = (vec![0.01f32; n], vec![0i32; n]);
            let mut out = vec![0f32; m * n];
            Box::new(move || {
                let out = black_box(&mut out);
                black_box(kern.gemm(
                    m,
                    black_box(&a),
                    k,
                    &b,
                    &scales,
                    &zero_points,
                    None,
                    false,
                    out,
                    n,
                ));
            })
        },
    );
}

fn bf16(c: &mut Criterion) {
    family(
        c,
        "bf16",
        |s| s.gemm_bf16,
        |kern, (m, k, n), rng| {
            let a: Vec<f32> = rng.f32s(m * k).into_iter().map(bf16::round_f32).collect();
            let b = kern.pack_b(&rng.f32s(k * n), k, n);
            let mut out = vec![0f32; m * n];
            Box::new(move || kern.gemm(m, black_box(&a), k, &b, black_box(&mut out), n))
        },
    );
}

fn f16w(c: &mut Criterion) {
    family(
        c,
        "f16",
        |s| s.gemm_f16w,
        |kern, (m, k, n), rng| {
            let a = rng.f32s(m * k);
            let b = kern.pack_b(&f16::from_f32_slice(&rng.f32s(k * n)), k, n);
            let mut out = vec![0f32; m * n];
            Box::new(move || kern.gemm(m, black_box(&a), k, &b, black_box(&mut out), n))
        },
    );
}

/// Seeded f32 activations and symmetric int4 weights (zero point 8), packed for `kern`.
fn w4_inputs(
    kern: &dyn GemmW4,
    (m, k, n): (usize, usize, usize),
    rng: &mut Rng,
) -> (Vec<f32>, PackedW4) {
    let a = rng.f32s(m * k);
    let q: Vec<u8> = (0..k * n).map(|_| rng.below(16) as u8).collect();
    let groups = k.div_ceil(W4_GROUP) * n;
    let scales: Vec<f32> = (0..groups)
        .map(|_| 0.001 + rng.f32_unit().abs() * 0.01)
        .collect();
    let b = kern.pack_b(&q, k, n, W4_GROUP, &scales, &vec![8u8; groups]);
    (a, b)
}

fn int4(c: &mut Criterion) {
    family(
        c,
        "int4",
        |s| s.gemm_w4,
        |kern, shape @ (m, k, n), rng| {
            let (a, b) = w4_inputs(kern, shape, rng);
            let mut out = vec![0f32; m * n];
            Box::new(move || kern.gemm_dyn_i8(m, black_box(&a), k, &b, black_box(&mut out), n))
        },
    );
    family(
        c,
        "int4f32",
        |s| s.gemm_w4,
        |kern, shape @ (m, k, n), rng| {
            let (a, b) = w4_inputs(kern, shape, rng);
            let mut out = vec![0f32; m * n];
            Box::new(move || kern.gemm(m, black_box(&a), k, &b, black_box(&mut out), n))
        },
    );
}

criterion::criterion_group!(benches, int8, int8rq, dynint8, int4, bf16, f16w, f32, f32w8);
criterion::criterion_main!(benches);
