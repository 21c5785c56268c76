//! Timing: warm-up runs, then repeated timed runs inside a thread pool of the target's size; the median,
//! 90th percentile and minimum are reported (never the mean, which one preemption drags up).

use std::time::Instant;

use crate::error::Error;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyStats {
    pub median_ns: u64,
    pub p90_ns: u64,
    pub min_ns: u64,
    pub runs: usize,
}

/// Never more timed runs than this, whatever `min_time` asks for.
const MAX_RUNS: usize = 100_000;

/// Runs `f` `warmup` times untimed, then timed until at least `repeats` runs and `min_time` have passed, on a
/// pool of `threads` threads.
pub fn time_runs<F>(
    threads: usize,
    warmup: usize,
    repeats: usize,
    min_time: std::time::Duration,
    f: F,
) -> Result<(LatencyStats, Vec<u64>), Error>
where
    F: Fn() -> Result<(), Error> + Send + Sync,
{
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Run(format!("cannot start a pool of {threads} threads: {e}")))?;
    pool.install(|| {
        for _ in 0..warmup {
            f()?;
        }
        let mut samples = Vec::with_capacity(repeats);
        let start = Instant::now();
        while samples.len() < repeats.max(1)
            || (start.elapsed() < min_time && samples.len() < MAX_RUNS)
        {
            let t = Instant::now();
            f()?;
            samples.push(t.elapsed().as_nanos() as u64);
        }
        let stats = summarize(&mut samples);
        Ok((stats, samples))
    })
}

/// Order statistics of `samples` (nearest-rank percentiles). `samples` must be non-empty.
pub fn summarize(samples: &mut [u64]) -> LatencyStats {
    assert!(!samples.is_empty(), "no timed runs");
    samples.sort_unstable();
    let rank =
        |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    LatencyStats {
        median_ns: rank(0.5),
        p90_ns: rank(0.9),
        min_ns: samples[0],
        runs: samples.len(),
    }
}

/// `1.23 ms`, `456.7 µs`, `89 ns`.
pub fn format_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=9_999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s: Vec<u64> = (1..=10).rev().collect();
        let st = summarize(&mut s);
        assert_eq!((st.median_ns, st.p90_ns, st.min_ns, st.runs), (5, 9, 1, 10));
        let mut one = vec![42];
        assert_eq!(summarize(&mut one).p90_ns, 42);
    }

    #[test]
    fn formats_scale_with_magnitude() {
        assert_eq!(format_ns(950), "950 ns");
        assert_eq!(format_ns(123_456), "123.5 µs");
        assert_eq!(format_ns(12_345_678), "12.35 ms");
    }
}
