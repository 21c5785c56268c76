//! `harness bench`: times GEMM kernels on given shapes and prints one CSV row per case to stdout (progress on
//! stderr), with the peak this core could reach so that each number says how good it is.
//!
//! Contract:
//! - The kernel is chosen by the one dispatch point, [`kernels::select`] (`--isa NAME|auto`, or every ISA this
//!   CPU has for `--isa all`), or by its registered name (`--kernel`). Forcing an ISA the CPU lacks, an unknown
//!   name, or a malformed shape is a usage error (exit code 2) reported before anything is timed.
//! - Weights are packed once, untimed; inputs come from a seeded generator. Each case warms up, then repeats
//!   until both `--repeats` runs and `--min-time-ms` have passed; the median and minimum are reported. Runs
//!   execute inside a rayon pool of `--threads` threads.
//! - `gops = 2*m*k*n / median_ns`; `peak_gops = clock_ghz * ops_per_cycle * threads` with the clock measured
//!   ([`clock`]) and ops per cycle of the kernel's ISA and arithmetic ([`peaks`]).
//! - One flat row ([`BenchRow`]) per case; its field order is the CSV header. Rows are flushed as each case
//!   ends, so an interrupted run keeps what it measured.
//!
//! Dtypes plug in through [`workload`]: one match arm per GEMM flavour.

pub mod clock;
pub mod peaks;
pub mod workload;

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use kernels::Isa;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::runner::measure::{LatencyStats, format_ns, summarize};
use crate::runner::provenance::Provenance;
use workload::{Dtype, Pick};

/// Shapes timed when `--shapes` is not given: a BERT-base GEMV and FFN slice, attention-sized GEMMs, a large
/// square one, and a ResNet-style 1x1 convolution after im2col (56x56 pixels, 576 -> 64 channels).
pub const DEFAULT_SHAPES: &str =
    "1x768x768,16x768x3072,128x768x768,256x1024x1024,1024x1024x1024,3136x576x64";

/// The `--help` text after the options: what each column means and where the peak comes from.
pub const COLUMNS_HELP: &str = "\
Output: CSV on stdout, one row per (dtype, kernel, shape, threads); progress on stderr.
Columns:
  op, dtype          the operation (gemm) and its flavour: int8 (u8 x s8 -> i32); int4 (4-bit weights in
                     groups of 32, activations quantized to int8 per row at run time, integer dots);
                     int4f32 (same weights, f32 arithmetic); bf16; f16 (f32 x f16 weights); f32; f32w8
                     (f32 x int8 weights); dynint8 (f32 in, quantized at run time, fused int8 GEMM)
  isa                the ISA of the kernel that ran (a request inherits from a lower tier when no kernel
                     exists at its own); isa_requested: the tier the request resolved to
  kernel             the registered kernel that ran ({isa}_{op}_{acc}_{mr}x{nr})
  m, k, n            C[m x n] = A[m x k] * B[k x n]; B is the (prepacked) weight matrix
  threads            size of the rayon pool the runs execute in
  runs               timed runs (after warm-up)
  median_ns, min_ns  per-run wall time
  gops               2*m*k*n / median_ns (a multiply-add is 2 operations)
  peak_gops          clock_ghz * ops_per_cycle * threads
  peak_fraction      gops / peak_gops
  ops_per_cycle      peak operations per cycle per core of the kernel's ISA for this arithmetic (Zen 4 table
                     in harness/src/bench/peaks.rs: VNNI int8 128, AVX2 int8 64, BF16 64, FMA f32 32; the
                     SSE2 numbers for scalar/generic kernels, 32 int8 and 16 f32, are assumptions)
  clock_ghz          core clock measured at start-up with a chain of dependent adds (--clock-ghz overrides)
  cpu, git_commit, harness_version   provenance

Examples:
  harness bench --dtype int8 --isa auto
  harness bench --dtype int8,f32 --isa all --shapes 256x1024x1024,1x768x768 --threads 1,2
  harness bench --dtype int8 --kernel generic_gemm_u8i8_s32_4x16 --repeats 20 --min-time-ms 1000
  harness bench --list          # dtypes and kernels of this build
  harness bench --print-clock   # just the measured clock, in GHz";

/// Options of `harness bench`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_long_help = COLUMNS_HELP)]
pub struct BenchArgs {
    /// The operation to time (only `gemm`).
    #[arg(long, default_value = "gemm")]
    pub op: String,
    /// Comma list of int8, int4, int4f32, bf16, f16, f32, f32w8, dynint8 (those this build has kernels for;
    /// see --list).
    #[arg(long, default_value = "int8")]
    pub dtype: String,
    /// An ISA name (scalar, generic, avx2, avx512vnni, avx512bf16), `auto` (QH_ISA, else the best this CPU
    /// has) or `all` (every ISA this CPU has). Forcing an ISA this CPU lacks is an error.
    #[arg(long, default_value = "auto", conflicts_with = "kernel")]
    pub isa: String,
    /// Comma list of MxKxN (C[MxN] = A[MxK] * B[KxN]).
    #[arg(long, default_value = DEFAULT_SHAPES)]
    pub shapes: String,
    /// Comma list of thread-pool sizes.
    #[arg(long, default_value = "1")]
    pub threads: String,
    /// Minimum number of timed runs per case.
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
    /// Minimum total time of the timed runs per case, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub min_time_ms: u64,
    /// Time this registered kernel (by name) instead of the dispatched one; see --list.
    #[arg(long)]
    pub kernel: Option<String>,
    /// Use this clock (GHz) for the peak instead of measuring it.
    #[arg(long)]
    pub clock_ghz: Option<f64>,
    /// Seed of the input generator.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Print the measured core clock in GHz and exit.
    #[arg(long)]
    pub print_clock: bool,
    /// List the dtypes this build has and their kernels, then exit.
    #[arg(long)]
    pub list: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A GEMM shape: `C[m x n] = A[m x k] * B[k x n]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl Shape {
    /// Multiply-adds per run.
    pub fn macs(self) -> u64 {
        (self.m * self.k * self.n) as u64
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.m, self.k, self.n)
    }
}

/// Parses `MxKxN[,MxKxN...]`; the error names the bad shape.
pub fn parse_shapes(list: &str) -> Result<Vec<Shape>, Error> {
    let bad = |s: &str| {
        Error::Usage(format!(
            "bad shape `{s}` in --shapes: expected MxKxN with three positive integers, e.g. 256x1024x1024"
        ))
    };
    list.split(',')
        .map(|s| {
            let dims: Vec<usize> = s
                .trim()
                .split(['x', 'X'])
                .map(|d| d.trim().parse::<usize>().ok().filter(|&v| v > 0))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(s))?;
            match dims[..] {
                [m, k, n] => Ok(Shape { m, k, n }),
                _ => Err(bad(s)),
            }
        })
        .collect()
}

/// Parses a comma list of positive thread counts.
fn parse_threads(list: &str) -> Result<Vec<usize>, Error> {
    list.split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|&t| t > 0)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "bad --threads value `{s}`: expected a positive integer"
                    ))
                })
        })
        .collect()
}

/// One result row. Units are in the field names; the field order is the CSV header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    pub op: String,
    pub dtype: String,
    pub isa: String,
    pub isa_requested: String,
    pub kernel: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub threads: usize,
    pub runs: usize,
    pub median_ns: u64,
    pub min_ns: u64,
    pub gops: f64,
    pub peak_gops: f64,
    pub peak_fraction: f64,
    pub ops_per_cycle: u32,
    pub clock_ghz: f64,
    pub cpu: String,
    pub git_commit: String,
    pub harness_version: String,
}

/// How long and how often each case runs.
#[derive(Clone, Copy, Debug)]
pub struct TimingPlan {
    pub min_repeats: usize,
    pub min_time: Duration,
}

/// Upper bound on timed runs of one case, whatever `min_time` asks (tiny shapes run in well under 1 µs).
const MAX_RUNS: usize = 1 << 22;

/// Warm-up (at least two runs and a quarter of `min_time`, at most 250 ms of it), then timed runs until both
/// `min_repeats` runs and `min_time` are reached.
pub fn time_adaptive(plan: TimingPlan, mut run: impl FnMut()) -> LatencyStats {
    let warm = (plan.min_time / 4).min(Duration::from_millis(250));
    let start = Instant::now();
    let mut warm_runs = 0;
    while warm_runs < 2 || start.elapsed() < warm {
        run();
        warm_runs += 1;
    }
    let mut samples = Vec::with_capacity(plan.min_repeats.max(16));
    let mut total = Duration::ZERO;
    while samples.len() < plan.min_repeats.max(1)
        || (total < plan.min_time && samples.len() < MAX_RUNS)
    {
        let t = Instant::now();
        run();
        let dt = t.elapsed();
        total += dt;
        samples.push(dt.as_nanos() as u64);
    }
    summarize(&mut samples)
}

/// Rounds to `digits` decimals, so that the CSV stays readable.
fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// One (ISA request or named kernel) the cases run under.
struct Target {
    /// `isa_requested` column.
    label: String,
    set: Option<kernels::KernelSet>,
}

impl Target {
    fn pick<'a>(&'a self, args: &'a BenchArgs) -> Pick<'a> {
        match (&self.set, &args.kernel) {
            (Some(set), _) => Pick::Dispatch(set),
            (None, Some(name)) => Pick::Named(name),
            (None, None) => unreachable!("a target has a kernel set or a kernel name"),
        }
    }
}

fn usage(e: kernels::KernelError) -> Error {
    Error::Usage(format!("--isa: {e}"))
}

/// Resolves `--isa` / `--kernel` to the targets to run.
fn targets(args: &BenchArgs) -> Result<Vec<Target>, Error> {
    if args.kernel.is_some() {
        return Ok(vec![Target {
            label: "kernel".to_owned(),
            set: None,
        }]);
    }
    let one = |isa: Option<Isa>| -> Result<Target, Error> {
        let set = kernels::select(isa).map_err(usage)?;
        Ok(Target {
            label: set.isa_requested.name().to_owned(),
            set: Some(set),
        })
    };
    match args.isa.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(vec![one(None)?]),
        "all" => Isa::ALL
            .into_iter()
            .filter(|i| i.is_available())
            .map(|i| one(Some(i)))
            .collect(),
        name => {
            let isa = name.parse::<Isa>().map_err(usage)?;
            Ok(vec![one(Some(isa))?])
        }
    }
}

/// Runs `harness bench`.
pub fn run(args: &BenchArgs) -> Result<(), Error> {
    if args.print_clock {
        println!("{:.3}", clock::measure_ghz());
        return Ok(());
    }
    if args.list {
        print!("{}", list());
        return Ok(());
    }
    // Validate everything before timing anything.
    if args.op.trim() != "gemm" {
        return Err(Error::Usage(format!(
            "unknown --op `{}`; valid: gemm",
            args.op
        )));
    }
    let dtypes: Vec<Dtype> = args
        .dtype
        .split(',')
        .map(Dtype::parse)
        .collect::<Result<_, _>>()?;
    let shapes = parse_shapes(&args.shapes)?;
    let thread_counts = parse_threads(&args.threads)?;
    if let Some(ghz) = args.clock_ghz
        && !(ghz.is_finite() && ghz > 0.0)
    {
        return Err(Error::Usage(format!(
            "--clock-ghz {ghz}: expected a positive number"
        )));
    }
    let targets = targets(args)?;

    // (dtype, target index) pairs, skipping a kernel already timed for that dtype (`--isa all` on a tier
    // that inherits a lower tier's kernel).
    let mut plan = Vec::new();
    for &dtype in &dtypes {
        let family = dtype.family()?;
        let mut seen = Vec::new();
        for (ti, target) in targets.iter().enumerate() {
            let (name, _) = family.choose(dtype, target.pick(args))?;
            if seen.contains(&name) {
                if !args.quiet {
                    eprintln!(
                        "bench: {} at {}: {name} already timed, skipped",
                        dtype.name(),
                        target.label
                    );
                }
                continue;
            }
            seen.push(name);
            plan.push((dtype, ti));
        }
    }

    // Rounded once, so that `peak_gops` is exactly `clock_ghz * ops_per_cycle * threads` as printed.
    let clock_ghz = round(
        match args.clock_ghz {
            Some(ghz) => ghz,
            None => clock::measure_ghz(),
        },
        3,
    );
    let prov = Provenance::collect();
    if !args.quiet {
        eprintln!(
            "bench: clock {clock_ghz:.3} GHz{}, cpu {}",
            if args.clock_ghz.is_some() {
                " (given)"
            } else {
                " (measured)"
            },
            prov.cpu
        );
    }
    let timing = TimingPlan {
        min_repeats: args.repeats,
        min_time: Duration::from_millis(args.min_time_ms),
    };
    let total = plan.len() * shapes.len() * thread_counts.len();
    let mut done = 0;
    let mut out = csv::Writer::from_writer(std::io::stdout());
    for &threads in &thread_counts {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::Run(format!("cannot start a pool of {threads} threads: {e}")))?;
        for &(dtype, ti) in &plan {
            let target = &targets[ti];
            let family = dtype.family()?;
            for &shape in &shapes {
                let mut w = family.workload(dtype, target.pick(args), shape, args.seed)?;
                let stats = pool.install(|| time_adaptive(timing, || w.run()));
                let gops = 2.0 * shape.macs() as f64 / stats.median_ns.max(1) as f64;
                let ops_per_cycle = peaks::ops_per_cycle(w.isa, dtype.arith());
                let peak = peaks::peak_gops(clock_ghz, ops_per_cycle, threads);
                let row = BenchRow {
                    op: "gemm".to_owned(),
                    dtype: dtype.name().to_owned(),
                    isa: w.isa.name().to_owned(),
                    isa_requested: match &target.set {
                        Some(_) => target.label.clone(),
                        None => w.isa.name().to_owned(),
                    },
                    kernel: w.kernel.to_owned(),
                    m: shape.m,
                    k: shape.k,
                    n: shape.n,
                    threads,
                    runs: stats.runs,
                    median_ns: stats.median_ns,
                    min_ns: stats.min_ns,
                    gops: round(gops, 3),
                    peak_gops: round(peak, 3),
                    peak_fraction: round(gops / peak, 4),
                    ops_per_cycle,
                    clock_ghz,
                    cpu: prov.cpu.clone(),
                    git_commit: prov.git_commit.clone(),
                    harness_version: prov.harness_version.clone(),
                };
                done += 1;
                if !args.quiet {
                    eprintln!(
                        "bench [{done}/{total}] {} {} {shape} t{threads}: median {}, {:.1} GOPS, {:.1} % of {:.1}",
                        row.dtype,
                        row.kernel,
                        format_ns(row.median_ns),
                        row.gops,
                        100.0 * row.peak_fraction,
                        row.peak_gops
                    );
                }
                out.serialize(&row)
                    .and_then(|()| out.flush().map_err(csv::Error::from))
                    .map_err(|e| Error::Run(format!("cannot write the CSV to stdout: {e}")))?;
            }
        }
    }
    std::io::stdout()
        .flush()
        .map_err(|e| Error::Run(format!("cannot write to stdout: {e}")))
}

/// `dtype  kernel  isa  runs here`, one line per registered kernel of every dtype this build has.
pub fn list() -> String {
    let mut rows = Vec::new();
    for d in Dtype::ALL {
        match d.family() {
            Ok(fam) => rows.extend(fam.kernels().into_iter().map(|(name, isa)| {
                vec![
                    d.name().to_owned(),
                    name.to_owned(),
                    isa.name().to_owned(),
                    if isa.is_available() { "yes" } else { "no" }.to_owned(),
                ]
            })),
            Err(_) => rows.push(vec![
                d.name().to_owned(),
                "(none in this build)".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
            ]),
        }
    }
    crate::table::render(&["dtype", "kernel", "isa", "runs here"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_shapes("256x1024x1024, 1X768x768").unwrap(),
            vec![
                Shape {
                    m: 256,
                    k: 1024,
                    n: 1024
                },
                Shape {
                    m: 1,
                    k: 768,
                    n: 768
                }
            ]
        );
        assert_eq!(parse_shapes(DEFAULT_SHAPES).unwrap().len(), 6);
        for bad in [
            "8x64",
            "8x64x0",
            "8x64x32x2",
            "axbxc",
            "",
            "8x-1x2",
            "1x2x3,",
        ] {
            let err = parse_shapes(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            assert!(err.to_string().contains("bad shape"), "{bad}: {err}");
        }
        let msg = parse_shapes("1x2x3,8x64").unwrap_err().to_string();
        assert!(msg.contains("`8x64`"), "{msg}");
    }

    #[test]
    fn threads_parse() {
        assert_eq!(parse_threads("1, 2").unwrap(), vec![1, 2]);
        assert!(parse_threads("0").is_err());
        assert!(parse_threads("two").is_err());
    }

    #[test]
    fn adaptive_timing_meets_both_minimums() {
        let mut calls = 0usize;
        let plan = TimingPlan {
            min_repeats: 5,
            min_time: Duration::from_millis(20),
        };
        let t = Instant::now();
        let st = time_adaptive(plan, || {
            calls += 1;
            std::thread::sleep(Duration::from_millis(1));
        });
        assert!(
            t.elapsed() >= Duration::from_millis(20) && st.runs >= 5,
            "{st:?}"
        );
        assert!(calls >= st.runs + 2, "warm-up runs");
        assert!(st.min_ns >= 1_000_000 && st.median_ns >= st.min_ns);
    }

    #[test]
    fn every_dtype_is_listed() {
        let text = list();
        for d in Dtype::ALL {
            assert!(text.contains(d.name()), "{text}");
        }
    }
}
