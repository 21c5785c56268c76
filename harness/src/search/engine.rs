//! Search algorithms over one (model, target)'s candidate strategies: which trial to run next.
//!
//! Every algorithm runs FP32 first (the reference for the accuracy drop and the latency guard), then asks an
//! `eval` callback for one trial at a time, so that trials are logged as they end and the best so far is
//! always known. Budgets: `trials` counts trials of this (model, target), FP32 included, whether measured
//! now or reused from the log (so a resumed search makes the same choices); `deadline` is wall time.
//!
//! - `grid`: every candidate, in the suite's order.
//! - `random`: a seeded sample (without a trial budget: a third of the space).
//! - `greedy`: accuracy-aware fallback. Candidates are ranked by a predicted objective (cheap priors: bits
//!   and scale overhead for size; activation mode, float format, group and FP32 layers for latency; replaced
//!   by measured values as soon as a trial of the same kind has run), the most precise option first among
//!   equally cheap ones (the least precise first once one passed). A candidate that breaks the accuracy budget rules out every untried candidate that
//!   is no more precise in any respect (fewer or equal bits, coarser or equal granularity, symmetric,
//!   min-max calibration, no refinement, no per-layer map, static rather than dynamic activations, ...), so
//!   the search falls back to more precise options (more bits, finer granularity, other calibrations,
//!   refinements, mixed maps that keep layers higher) in order of cost. After the first pass it keeps
//!   spending the budget on candidates predicted at least as good, the simplifications of the best first
//!   (the best without its refinement, with another calibration: likely to pass again, a little smaller or
//!   faster), and stops when none is left or after [`PATIENCE`] trials without improvement.

use std::time::Instant;

use strategies::Granularity;
use strategies::Scheme;
use strategies::pow2::ScaleConstraint;

use crate::error::Error;
use crate::quant::strategy::{
    ActMode, Calibration, FloatFormat, LayerPrecision, LinearStrategy, MixedPrecision, Quantizer,
    Refinement, Strategy, WeightRange,
};
use crate::results::Row;
use crate::suite::spec::Objective;

/// Greedy stops after this many trials past the first pass that do not improve the best.
pub const PATIENCE: usize = 4;

/// Relative margin under which two latencies are the same (timing noise).
const LATENCY_NOISE: f64 = 0.02;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Grid,
    Random,
    Greedy,
    /// Per-layer sensitivity, then bits allocated by it ([`super::sensitivity`]).
    Sensitivity,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Grid => "grid",
            Algorithm::Random => "random",
            Algorithm::Greedy => "greedy",
            Algorithm::Sensitivity => "sensitivity",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub algorithm: Algorithm,
    pub objective: Objective,
    pub max_drop: f64,
    /// Trials per (model, target), FP32 included.
    pub budget_trials: Option<usize>,
    pub deadline: Option<Instant>,
    pub seed: u64,
}

/// What one search did.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// Rows of the trials it ran or reused, in order (FP32 first).
    pub rows: Vec<Row>,
    /// Candidates it could have tried (FP32 not included).
    pub candidates: usize,
    /// Why it stopped.
    pub stopped: String,
    /// One line per decision worth telling (greedy, sensitivity).
    pub notes: Vec<String>,
    /// Per-layer sensitivity, in graph order (sensitivity search).
    pub sensitivity: Vec<super::sensitivity::LayerSensitivity>,
    /// By strategy name: the precision of every layer of a map the sensitivity search made, and why.
    pub layer_choices: std::collections::BTreeMap<String, Vec<super::sensitivity::LayerChoice>>,
}

/// True when `row` is inside the accuracy budget.
pub fn within(row: &Row, max_drop: f64) -> bool {
    row.top1_drop <= max_drop + 1e-12
}

/// True when `row` is slower than FP32 on the same target (flagged; never chosen for latency).
pub fn slower_than(row: &Row, fp32: &Row) -> bool {
    row.latency_median_ns > fp32.latency_median_ns
}

fn value(row: &Row, objective: Objective) -> f64 {
    match objective {
        Objective::Latency => row.latency_median_ns as f64,
        Objective::Size => row.size_bytes as f64,
    }
}

/// Runs one search. `eval` returns the row of a strategy (measured or reused); `layers` is the model's
/// number of Conv / Gemm / MatMul layers (for the size prior of per-layer maps).
pub fn search(
    candidates: &[Strategy],
    mixed: &[MixedPrecision],
    layers: usize,
    cfg: &Config,
    eval: &mut dyn FnMut(&Strategy) -> Result<Row, Error>,
) -> Result<Trace, Error> {
    if cfg.algorithm == Algorithm::Sensitivity {
        return Err(Error::Usage(
            "the sensitivity search needs per-layer probes: run it through search::run_search"
                .into(),
        ));
    }
    let cands: Vec<Strategy> = candidates
        .iter()
        .copied()
        .filter(|s| *s != Strategy::Fp32)
        .collect();
    let mut trace = Trace {
        candidates: cands.len(),
        ..Trace::default()
    };
    let fp32 = eval(&Strategy::Fp32)?;
    trace.rows.push(fp32.clone());
    let out_of_budget = |trace: &Trace| -> Option<String> {
        if let Some(n) = cfg.budget_trials
            && trace.rows.len() >= n
        {
            return Some(format!("trial budget of {n} spent"));
        }
        if let Some(d) = cfg.deadline
            && Instant::now() >= d
        {
            return Some("time budget spent".into());
        }
        None
    };
    match cfg.algorithm {
        Algorithm::Grid | Algorithm::Random => {
            let mut order = cands.clone();
            if cfg.algorithm == Algorithm::Random {
                shuffle(&mut order, cfg.seed);
                if cfg.budget_trials.is_none() {
                    order.truncate(cands.len().div_ceil(3));
                }
            }
            trace.stopped = format!(
                "{} all {} candidates it drew",
                if cfg.algorithm == Algorithm::Grid {
                    "ran"
                } else {
                    "sampled"
                },
                order.len()
            );
            for s in &order {
                if let Some(why) = out_of_budget(&trace) {
                    trace.stopped = why;
                    break;
                }
                trace.rows.push(eval(s)?);
            }
        }
        Algorithm::Sensitivity => unreachable!("returned above"),
        Algorithm::Greedy => greedy(
            &cands,
            mixed,
            layers,
            cfg,
            &fp32,
            &mut trace,
            eval,
            &out_of_budget,
        )?,
    }
    Ok(trace)
}

#[allow(clippy::too_many_arguments)]
fn greedy(
    cands: &[Strategy],
    mixed: &[MixedPrecision],
    layers: usize,
    cfg: &Config,
    fp32: &Row,
    trace: &mut Trace,
    eval: &mut dyn FnMut(&Strategy) -> Result<Row, Error>,
    out_of_budget: &dyn Fn(&Trace) -> Option<String>,
) -> Result<(), Error> {
    let obj = cfg.objective;
    let mut tried: Vec<(Strategy, Row)> = vec![(Strategy::Fp32, fp32.clone())];
    let mut failed: Vec<Strategy> = Vec::new();
    // FP32 itself is within any budget: the fallback when nothing quantized passes.
    let mut best: (Strategy, Row) = (Strategy::Fp32, fp32.clone());
    let mut since_improvement = 0;
    loop {
        if let Some(why) = out_of_budget(trace) {
            trace.stopped = why;
            return Ok(());
        }
        // Measured-value scale of the prior, and measured values per kind of candidate.
        let predict = |s: &Strategy| -> f64 {
            let same: Vec<f64> = tried
                .iter()
                .filter(|(t, _)| kind(t, obj) == kind(s, obj))
                .map(|(_, r)| value(r, obj))
                .collect();
            // The best measured of its kind: optimistic, so that siblings of a pass (another
            // refinement or calibration, a few bytes or a timing jitter apart) still get their chance.
            if let Some(v) = same.iter().copied().min_by(f64::total_cmp) {
                return v;
            }
            let mut ratios: Vec<f64> = tried
                .iter()
                .map(|(t, r)| value(r, obj) / prior(t, obj, mixed, layers))
                .collect();
            ratios.sort_by(f64::total_cmp);
            // The lower median: optimistic too. With FP32 and one quantized kind measured, the upper one took
            // the quantized kind's scale, and the prior's speed ranks (tuned on small CNNs, where the GEMMs are
            // all the time) then predicted every other kind slower than FP32 on MiniLM, whose float ops
            // (LayerNorm, GELU, softmax, the attention's activation MatMuls) take most of the time: the
            // search stopped after static int8 failed, without trying dynamic int8 (1.75x FP32's speed).
            prior(s, obj, mixed, layers) * ratios[(ratios.len() - 1) / 2]
        };
        let next = cands
            .iter()
            .filter(|s| !tried.iter().any(|(t, _)| t == *s))
            .filter(|s| !failed.iter().any(|f| no_more_precise(s, f)))
            .map(|s| (predict(s), precision(s), nearness(s, &best.0), *s))
            // Before a quantized pass, the most precise of equally cheap candidates first (a failure rules
            // out the most). After it, the nearest simplifications of the best first (the best with one
            // option dropped, e.g. its refinement: likely to pass again and a little smaller or faster),
            // then the least precise first.
            .min_by(|a, b| {
                let by_precision = if best.0 == Strategy::Fp32 {
                    b.1.total_cmp(&a.1)
                } else {
                    a.1.total_cmp(&b.1)
                };
                a.0.total_cmp(&b.0).then(a.2.cmp(&b.2)).then(by_precision)
            });
        let Some((predicted, _, _, s)) = next else {
            trace.stopped = "no candidate left that is not ruled out".into();
            return Ok(());
        };
        let bar = value(&best.1, obj)
            * match obj {
                Objective::Latency => 1.0 + LATENCY_NOISE,
                Objective::Size => 1.0,
            };
        if predicted > bar {
            trace.stopped = format!(
                "no candidate left is predicted to beat {} ({} remain, predicted worse)",
                best.1.strategy,
                cands.len() + 1 - tried.len()
            );
            return Ok(());
        }
        let row = eval(&s)?;
        trace.rows.push(row.clone());
        tried.push((s, row.clone()));
        if !within(&row, cfg.max_drop) {
            let ruled_out = cands
                .iter()
                .filter(|c| !tried.iter().any(|(t, _)| t == *c))
                .filter(|c| !failed.iter().any(|f| no_more_precise(c, f)))
                .filter(|c| no_more_precise(c, &s))
                .count();
            trace.notes.push(format!(
                "{} {} (> {}): rules out {ruled_out} less precise candidates; falling back to more precise ones",
                row.strategy,
                drop_text(&row, row.top1_drop),
                budget_text(&row, cfg.max_drop)
            ));
            failed.push(s);
            if best.0 != Strategy::Fp32 {
                since_improvement += 1;
            }
        } else if obj == Objective::Latency && slower_than(&row, fp32) {
            trace.notes.push(format!(
                "{} is slower than FP32: flagged, not chosen",
                row.strategy
            ));
            if best.0 != Strategy::Fp32 {
                since_improvement += 1;
            }
        } else if better(&row, &best.1, obj) {
            trace.notes.push(format!(
                "{} passes ({}): best so far",
                row.strategy,
                drop_text(&row, row.top1_drop)
            ));
            best = (s, row);
            since_improvement = 0;
        } else {
            trace.notes.push(format!(
                "{} passes ({}) but does not beat {}",
                row.strategy,
                drop_text(&row, row.top1_drop),
                best.1.strategy
            ));
            since_improvement += 1;
        }
        if best.0 != Strategy::Fp32 && since_improvement >= PATIENCE {
            trace.stopped = format!(
                "{PATIENCE} trials after the best ({}) without improvement",
                best.1.strategy
            );
            return Ok(());
        }
    }
}

/// Better on the objective (the other measure breaks ties), as [`super::recommend`] ranks.
fn better(a: &Row, b: &Row, obj: Objective) -> bool {
    let key = |r: &Row| match obj {
        Objective::Latency => (r.latency_median_ns, r.size_bytes),
        Objective::Size => (r.size_bytes, r.latency_median_ns),
    };
    key(a) < key(b)
}

/// Candidates of one kind share a measured objective value in the greedy's predictions.
fn kind(s: &Strategy, obj: Objective) -> String {
    match (s, obj) {
        (Strategy::Linear(l), Objective::Latency) => format!(
            "{}-{}-{}",
            l.act.name(),
            matches!(l.granularity, Granularity::PerGroup(_)),
            l.mixed.map(|m| m.name).unwrap_or("")
        ),
        (Strategy::Linear(l), Objective::Size) => format!(
            "{}-{}-{}",
            l.weight_bits,
            l.granularity.name(),
            l.mixed.map(|m| m.name).unwrap_or("")
        ),
        (s, _) => s.name(),
    }
}

/// The prior of the objective: bits per weight for size (scales included), a speed rank for latency.
pub(super) fn prior(s: &Strategy, obj: Objective, mixed: &[MixedPrecision], layers: usize) -> f64 {
    let l = match s {
        Strategy::Fp32 => return if obj == Objective::Size { 32.0 } else { 6.0 },
        Strategy::Float(FloatFormat::Bf16) => {
            return if obj == Objective::Size { 16.0 } else { 4.0 };
        }
        Strategy::Float(_) => return if obj == Objective::Size { 16.0 } else { 4.5 },
        Strategy::Linear(l) => l,
    };
    let map = l.mixed.and_then(|m| mixed.get(m.index as usize));
    match obj {
        Objective::Size => {
            let scales = match l.granularity {
                Granularity::PerTensor => 0.0,
                Granularity::PerChannel => 0.05,
                Granularity::PerGroup(g) => 32.0 / g.max(1) as f64,
            };
            let layers = layers.max(map.map_or(0, |m| m.layers.len())).max(1) as f64;
            let bits = match map {
                None => l.weight_bits as f64,
                Some(m) => {
                    let listed: f64 = m
                        .layers
                        .values()
                        .map(|p| match p {
                            LayerPrecision::Bits(b) => *b as f64,
                            LayerPrecision::Fp32 => 32.0,
                        })
                        .sum();
                    (listed + (layers - m.layers.len() as f64) * l.weight_bits as f64) / layers
                }
            };
            bits + scales
        }
        Objective::Latency => {
            let act = match l.act {
                ActMode::Static => 1.0,
                ActMode::Dynamic => 2.0,
                ActMode::WeightOnly => 3.0,
            };
            let group = if matches!(l.granularity, Granularity::PerGroup(_)) {
                0.25
            } else {
                0.0
            };
            let fp32_layers =
                if map.is_some_and(|m| m.layers.values().any(|p| *p == LayerPrecision::Fp32)) {
                    0.5
                } else {
                    0.0
                };
            act + group + fp32_layers
        }
    }
}

/// A scalar for "expected accuracy", to order equally cheap candidates (most precise first).
pub(super) fn precision(s: &Strategy) -> f64 {
    let l = match s {
        Strategy::Fp32 => return 1000.0,
        Strategy::Float(FloatFormat::Bf16) => return 900.0,
        Strategy::Float(_) => return 950.0,
        Strategy::Linear(l) => l,
    };
    let mut p = l.weight_bits as f64 * 10.0;
    p += match l.granularity {
        Granularity::PerTensor => 0.0,
        Granularity::PerChannel => 2.0,
        Granularity::PerGroup(g) => 3.0 + 1.0 / g.max(1) as f64,
    };
    // Above every static calibration: when per-batch ranges break the budget, no calibration will pass.
    p += match l.act {
        ActMode::Static => 0.0,
        ActMode::Dynamic => 1.5,
        ActMode::WeightOnly => 2.5,
    };
    if l.scheme == Scheme::Affine {
        p += 0.5;
    }
    if matches!(l.calibration, Some(c) if c != Calibration::MinMax) {
        p += 1.0;
    }
    if l.weight_range == WeightRange::Mse {
        p += 0.5;
    }
    p += match l.refinement {
        Refinement::None => 0.0,
        Refinement::Cle => 0.5,
        Refinement::BiasCorrection => 1.0,
        Refinement::Gptq | Refinement::AdaRound => 2.0,
        Refinement::Qat => 3.0,
    };
    if l.mixed.is_some() {
        p += 5.0;
    }
    if l.quantizer == Quantizer::Log {
        p -= 1.0;
    }
    if l.scale == ScaleConstraint::PowerOfTwo {
        p -= 0.5;
    }
    p
}

/// How near `s` is to a simplification of the best so far: 0 for candidates no more precise than it in any
/// respect that differ in one respect only, 1 for such candidates that differ in more, 2 for the rest (and
/// for everything while FP32 is the best). Among equally cheap candidates the greedy tries the lower first,
/// so that a pass is followed by its own simpler variants (without the refinement, another calibration)
/// before patience runs out on unrelated ones.
fn nearness(s: &Strategy, best: &Strategy) -> u8 {
    match (s, best) {
        (Strategy::Linear(c), Strategy::Linear(b)) if linear_le(c, b) => {
            if differences(c, b) <= 1 {
                0
            } else {
                1
            }
        }
        _ => 2,
    }
}

/// In how many respects two linear strategies differ (activation mode and calibration count as one).
fn differences(a: &LinearStrategy, b: &LinearStrategy) -> usize {
    [
        a.weight_bits != b.weight_bits,
        a.act != b.act || a.calibration != b.calibration,
        a.granularity != b.granularity,
        a.scheme != b.scheme,
        a.quantizer != b.quantizer,
        a.scale != b.scale,
        a.weight_range != b.weight_range,
        a.refinement != b.refinement,
        a.mixed != b.mixed,
    ]
    .iter()
    .filter(|d| **d)
    .count()
}

/// A quality drop as the notes print it: top-1 points, or for sentence-embedding rows (whose `top1` is the
/// mean cosine to FP32) the cosine drop.
fn drop_text(row: &Row, drop: f64) -> String {
    if row.cosine_mean.is_some() {
        format!("drops the mean cosine by {drop:.4}")
    } else {
        format!("drops {:.2} points", drop * 100.0)
    }
}

/// The budget in the same units as [`drop_text`].
fn budget_text(row: &Row, max_drop: f64) -> String {
    if row.cosine_mean.is_some() {
        format!("{max_drop:.4}")
    } else {
        format!("{:.2}", max_drop * 100.0)
    }
}

/// True when `b` is in no respect more precise than `a` (so if `a` breaks the accuracy budget, `b` is
/// expected to break it too).
fn no_more_precise(b: &Strategy, a: &Strategy) -> bool {
    let (Strategy::Linear(b), Strategy::Linear(a)) = (b, a) else {
        return false;
    };
    linear_le(b, a)
}

fn linear_le(b: &LinearStrategy, a: &LinearStrategy) -> bool {
    let act_rank = |m: ActMode| match m {
        ActMode::Static => 0,
        ActMode::Dynamic => 1,
        ActMode::WeightOnly => 2,
    };
    let gran_le = match (b.granularity, a.granularity) {
        (x, y) if x == y => true,
        (Granularity::PerTensor, _) => true,
        (Granularity::PerChannel, Granularity::PerGroup(_)) => true,
        (Granularity::PerGroup(gb), Granularity::PerGroup(ga)) => gb >= ga,
        _ => false,
    };
    let calibration_le = match (b.calibration, a.calibration) {
        (x, y) if x == y => true,
        // Static activations are no more precise than per-batch (dynamic) or float ones.
        (Some(_), None) => true,
        (Some(Calibration::MinMax), Some(_)) => true,
        _ => false,
    };
    b.quantizer == a.quantizer
        && (b.scale == a.scale || b.scale == ScaleConstraint::PowerOfTwo)
        && b.weight_bits <= a.weight_bits
        && gran_le
        && (b.scheme == a.scheme || b.scheme == Scheme::Symmetric)
        && act_rank(b.act) <= act_rank(a.act)
        && calibration_le
        && (b.weight_range == a.weight_range || b.weight_range == WeightRange::MinMax)
        && (b.refinement == a.refinement || b.refinement == Refinement::None)
        && (b.mixed == a.mixed || b.mixed.is_none())
}

/// Fisher-Yates with splitmix64: the same seed gives the same sample on every platform.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lin(bits: u32, act: ActMode, g: Granularity, cal: Option<Calibration>) -> Strategy {
        Strategy::Linear(LinearStrategy::uniform(
            bits,
            act,
            g,
            Scheme::Symmetric,
            cal,
        ))
    }

    /// A synthetic model: accuracy drop shrinks with bits and finer granularity; size follows bits.
    fn fake(s: &Strategy) -> Row {
        let mut r = crate::results::sample_row(&s.name());
        match s {
            Strategy::Linear(l) => {
                let g = match l.granularity {
                    Granularity::PerTensor => 0.0,
                    _ => 1.0,
                };
                r.top1_drop = (0.08 / (l.weight_bits as f64 - 1.0).powi(2)) * (2.0 - g);
                r.size_bytes = 100 * l.weight_bits as u64 + if g > 0.0 { 5 } else { 0 };
                r.latency_median_ns = 100;
            }
            _ => {
                r.top1_drop = 0.0;
                r.size_bytes = 3200;
                r.latency_median_ns = 400;
            }
        }
        r
    }

    fn space() -> Vec<Strategy> {
        let mut v = vec![Strategy::Fp32];
        for bits in 2..=8 {
            for g in [Granularity::PerTensor, Granularity::PerChannel] {
                for cal in [
                    Calibration::MinMax,
                    Calibration::Kl,
                    Calibration::Mse,
                    Calibration::Percentile {
                        percent_ppm: 99_990_000,
                    },
                ] {
                    v.push(lin(bits, ActMode::Static, g, Some(cal)));
                }
                v.push(lin(bits, ActMode::Dynamic, g, None));
            }
        }
        v
    }

    fn run(algorithm: Algorithm, budget: Option<usize>) -> Trace {
        let cfg = Config {
            algorithm,
            objective: Objective::Size,
            max_drop: 0.005,
            budget_trials: budget,
            deadline: None,
            seed: 7,
        };
        search(&space(), &[], 4, &cfg, &mut |s| Ok(fake(s))).unwrap()
    }

    fn best(t: &Trace) -> u64 {
        let recs = super::super::recommend(&t.rows, Objective::Size, 0.005);
        recs[0].best.unwrap().size_bytes
    }

    #[test]
    fn greedy_matches_the_grid_with_a_third_of_its_trials() {
        let grid = run(Algorithm::Grid, None);
        let greedy = run(Algorithm::Greedy, None);
        assert_eq!(grid.rows.len(), space().len());
        assert_eq!(best(&greedy), best(&grid), "{:#?}", greedy.notes);
        assert!(
            greedy.rows.len() * 3 <= grid.rows.len(),
            "greedy {} vs grid {}: {:#?}",
            greedy.rows.len(),
            grid.rows.len(),
            greedy.notes
        );
        assert!(greedy.notes.iter().any(|n| n.contains("rules out")));
    }

    /// Fashion-MNIST's shape of the problem: at 4 bits only dynamic activations keep the budget, a
    /// refinement (tried first: it is the most precise of equally cheap ones) passes a few bytes larger than
    /// the plain variant, and many less precise static variants fail. The greedy must try the plain variant
    /// of the pass before patience runs out on the static ones.
    #[test]
    fn greedy_tries_the_simpler_variant_of_a_pass_before_its_patience_runs_out() {
        let refined = |bits, act, g, cal, r| {
            Strategy::Linear(LinearStrategy {
                refinement: r,
                ..LinearStrategy::uniform(bits, act, g, Scheme::Symmetric, cal)
            })
        };
        let mut space = vec![Strategy::Fp32];
        for bits in [4, 2] {
            for g in [Granularity::PerChannel, Granularity::PerGroup(32)] {
                for r in [Refinement::None, Refinement::Gptq, Refinement::AdaRound] {
                    space.push(refined(bits, ActMode::Dynamic, g, None, r));
                }
            }
        }
        for g in [Granularity::PerTensor, Granularity::PerChannel] {
            for cal in [
                Calibration::MinMax,
                Calibration::Kl,
                Calibration::Mse,
                Calibration::Percentile {
                    percent_ppm: 99_990_000,
                },
            ] {
                for bits in [8, 4] {
                    for scheme in [Scheme::Symmetric, Scheme::Affine] {
                        space.push(Strategy::Linear(LinearStrategy::uniform(
                            bits,
                            ActMode::Static,
                            g,
                            scheme,
                            Some(cal),
                        )));
                    }
                }
            }
        }
        let eval = |s: &Strategy| -> Row {
            let mut r = crate::results::sample_row(&s.name());
            r.latency_median_ns = 100;
            let Strategy::Linear(l) = s else {
                r.size_bytes = 3200;
                return r;
            };
            r.size_bytes = 100 * l.weight_bits as u64
                + match l.granularity {
                    Granularity::PerTensor => 0,
                    Granularity::PerChannel => 5,
                    Granularity::PerGroup(_) => 50,
                }
                + if l.act == ActMode::Static { 4 } else { 0 }
                + if l.refinement == Refinement::None {
                    0
                } else {
                    1
                };
            r.top1_drop = match (l.weight_bits, l.act) {
                (8, _) => 0.0,
                (4, ActMode::Dynamic) => 0.002,
                (4, _) => 0.006,
                _ => 0.05,
            };
            r
        };
        let cfg = |algorithm| Config {
            algorithm,
            objective: Objective::Size,
            max_drop: 0.005,
            budget_trials: None,
            deadline: None,
            seed: 7,
        };
        let grid = search(&space, &[], 4, &cfg(Algorithm::Grid), &mut |s| Ok(eval(s))).unwrap();
        let greedy = search(&space, &[], 4, &cfg(Algorithm::Greedy), &mut |s| {
            Ok(eval(s))
        })
        .unwrap();
        assert_eq!(best(&grid), 405);
        assert_eq!(best(&greedy), best(&grid), "{:#?}", greedy.notes);
        assert!(
            greedy.rows.len() * 3 <= grid.rows.len(),
            "greedy {} vs grid {}: {:#?}",
            greedy.rows.len(),
            grid.rows.len(),
            greedy.notes
        );
    }

    #[test]
    fn budgets_and_random_are_bounded_and_seeded() {
        assert_eq!(run(Algorithm::Grid, Some(5)).rows.len(), 5);
        assert_eq!(run(Algorithm::Greedy, Some(3)).rows.len(), 3);
        let a = run(Algorithm::Random, None);
        let b = run(Algorithm::Random, None);
        assert_eq!(a.rows.len(), 1 + (space().len() - 1).div_ceil(3));
        let names = |t: &Trace| {
            t.rows
                .iter()
                .map(|r| r.strategy.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&a), names(&b));
        assert_eq!(a.rows[0].strategy, "fp32");
    }

    #[test]
    fn precision_order_rules_out_only_what_is_no_more_precise() {
        let t8 = lin(
            8,
            ActMode::Static,
            Granularity::PerTensor,
            Some(Calibration::MinMax),
        );
        let c4 = lin(
            4,
            ActMode::Static,
            Granularity::PerChannel,
            Some(Calibration::Kl),
        );
        let c4m = lin(
            4,
            ActMode::Static,
            Granularity::PerChannel,
            Some(Calibration::MinMax),
        );
        let d4 = lin(4, ActMode::Dynamic, Granularity::PerChannel, None);
        assert!(no_more_precise(&c4m, &c4) && !no_more_precise(&c4, &c4m));
        assert!(no_more_precise(&c4, &d4) && !no_more_precise(&d4, &c4));
        assert!(!no_more_precise(&t8, &c4) && !no_more_precise(&c4, &t8));
        assert!(!no_more_precise(&Strategy::Fp32, &c4));
    }
}
