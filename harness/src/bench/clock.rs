//! The core clock, measured rather than assumed: a long chain of dependent integer adds runs at one add per
//! cycle on every x86_64 and aarch64 core (one-cycle latency, and each add needs the previous result), so
//! `adds / seconds` is the clock the core actually ran at, boost included. Written as inline assembly so the
//! compiler can neither fold the chain nor break it up. The best of a few runs is taken (a preempted or
//! not-yet-boosted run is only ever slower), and [`measure_ghz`] caches the result for the process.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Adds per loop iteration (the assembly's `.rept` count); the loop's own decrement and branch form a
/// separate dependency chain that runs alongside.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const ADDS_PER_ITER: u64 = 200;

/// Loop iterations per timed run: 200 x 10,000 = 2 M cycles, about 0.5 ms at 4 GHz: short enough that most
/// runs fit in one scheduler time slice even when the machine is busy (a preempted run only reads slower).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const ITERS: u64 = 10_000;

/// Timed runs; the fastest wins.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const RUNS: usize = 41;

/// The core clock in GHz, measured once per process (about 0.07 s) and cached. NaN on architectures without
/// an add chain here (then every `peak_*` column is NaN too, which is honest).
pub fn measure_ghz() -> f64 {
    static CLOCK: OnceLock<f64> = OnceLock::new();
    *CLOCK.get_or_init(measure_ghz_uncached)
}

/// One fresh measurement: spin about 50 ms so the core leaves any idle state, then the best of a few runs.
pub fn measure_ghz_uncached() -> f64 {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            add_chain(ITERS);
        }
        let best = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                add_chain(ITERS);
                t.elapsed()
            })
            .min()
            .unwrap_or(Duration::MAX);
        (ADDS_PER_ITER * ITERS) as f64 / best.as_nanos().max(1) as f64
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        f64::NAN
    }
}

/// `iters * ADDS_PER_ITER` dependent adds on one register.
#[cfg(target_arch = "x86_64")]
fn add_chain(iters: u64) {
    let mut x: u64 = 0;
    // SAFETY: register-only arithmetic and a counted loop; touches no memory and no stack.
    unsafe {
        std::arch::asm!(
            "2:",
            ".rept {adds}",
            "add {x}, 1",
            ".endr",
            "dec {n}",
            "jnz 2b",
            x = inout(reg) x,
            n = inout(reg) iters.max(1) => _,
            adds = const ADDS_PER_ITER,
            options(nomem, nostack),
        );
    }
    std::hint::black_box(x);
}

/// `iters * ADDS_PER_ITER` dependent adds on one register.
#[cfg(target_arch = "aarch64")]
fn add_chain(iters: u64) {
    let mut x: u64 = 0;
    // SAFETY: register-only arithmetic and a counted loop; touches no memory and no stack.
    unsafe {
        std::arch::asm!(
            "2:",
            ".rept {adds}",
            "add {x}, {x}, #1",
            ".endr",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            x = inout(reg) x,
            n = inout(reg) iters.max(1) => _,
            adds = const ADDS_PER_ITER,
            options(nomem, nostack),
        );
    }
    std::hint::black_box(x);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn the_chain_really_runs_every_add() {
        // The assembly must not be skippable: four times the adds take more than twice as long.
        let time = |iters| {
            (0..9)
                .map(|_| {
                    let t = Instant::now();
                    add_chain(iters);
                    t.elapsed()
                })
                .min()
                .unwrap()
        };
        let (one, four) = (time(5_000), time(20_000));
        assert!(four > one * 2, "{one:?} vs {four:?}");
    }

    #[test]
    fn cached_value_is_stable() {
        let ghz = measure_ghz();
        assert_eq!(ghz.to_bits(), measure_ghz().to_bits());
    }
}
