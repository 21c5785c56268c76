//! Strategy selection from measured trials: per (model, target), the best strategy for an objective within
//! an accuracy budget, with the reason, and the Pareto front over accuracy, latency and size.
//!
//! [`engine`] decides which trials to run (grid, random, greedy); [`run_search`] drives it through the
//! runner's [`Session`] (every trial logged as it ends, earlier trials reused); [`recommend`] chooses among
//! the rows whatever produced them. Guard: a strategy slower than FP32 on its target is flagged and never
//! chosen for the latency objective.

pub mod engine;
pub mod sensitivity;

use std::collections::BTreeMap;

use crate::error::Error;
use crate::results::Row;
use crate::runner::Session;
use crate::runner::measure::format_ns;
use crate::suite::spec::Objective;
use crate::table;

/// The choice for one (model, target).
#[derive(Clone, Debug)]
pub struct Recommendation<'a> {
    pub model: String,
    pub target: String,
    pub baseline: Option<&'a Row>,
    /// `None` when no strategy meets the budget.
    pub best: Option<&'a Row>,
    pub reason: String,
    /// Non-dominated rows, fastest first.
    pub pareto: Vec<&'a Row>,
    /// Strategies slower than FP32 on this target (flagged; never chosen for latency).
    pub slower_than_fp32: Vec<&'a Row>,
}

/// True when `a` is at least as good as `b` on accuracy, latency and size, and better on one.
fn dominates(a: &Row, b: &Row) -> bool {
    let ge = a.top1 >= b.top1
        && a.latency_median_ns <= b.latency_median_ns
        && a.size_bytes <= b.size_bytes;
    let gt =
        a.top1 > b.top1 || a.latency_median_ns < b.latency_median_ns || a.size_bytes < b.size_bytes;
    ge && gt
}

/// The rows no other row dominates, fastest first.
pub fn pareto_front<'a>(rows: &[&'a Row]) -> Vec<&'a Row> {
    let mut front: Vec<&Row> = rows
        .iter()
        .filter(|r| !rows.iter().any(|o| dominates(o, r)))
        .copied()
        .collect();
    front.sort_by_key(|r| (r.latency_median_ns, r.size_bytes));
    front
}

fn objective_key(r: &Row, objective: Objective) -> (u64, u64) {
    match objective {
        Objective::Latency => (r.latency_median_ns, r.size_bytes),
        Objective::Size => (r.size_bytes, r.latency_median_ns),
    }
}

/// Chooses, for every (model, target) in `rows`, the best strategy whose top-1 drop is at most `max_drop`.
pub fn recommend(rows: &[Row], objective: Objective, max_drop: f64) -> Vec<Recommendation<'_>> {
    let mut groups: BTreeMap<(&str, &str), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups.entry((&r.model, &r.target)).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((model, target), group)| {
            let baseline = group.iter().copied().find(|r| r.strategy == "fp32");
            // A tiny tolerance so that a drop of exactly the budget, computed in floating point, is in.
            // The guard: for latency, a strategy slower than FP32 is never the choice.
            let within: Vec<&Row> = group
                .iter()
                .copied()
                .filter(|r| engine::within(r, max_drop))
                .filter(|r| {
                    objective != Objective::Latency
                        || baseline.is_none_or(|b| !engine::slower_than(r, b))
                })
                .collect();
            let best = within.iter().copied().min_by_key(|r| objective_key(r, objective));
            let smallest = group.iter().map(|r| r.top1_drop).fold(f64::INFINITY, f64::min);
            let reason = match best {
                None if group.iter().any(|r| r.cosine_mean.is_some()) => format!(
                    "no strategy keeps the mean cosine to FP32 within {max_drop:.4} of 1; the smallest drop is {smallest:.4}"
                ),
                None => format!(
                    "no strategy keeps the top-1 drop within {:.2} points; the smallest drop is {:.2} points",
                    max_drop * 100.0,
                    smallest * 100.0
                ),
                Some(b) => explain(b, baseline, &group, within.len(), objective, max_drop),
            };
            Recommendation {
                model: model.to_string(),
                target: target.to_string(),
                baseline,
                best,
                reason,
                pareto: pareto_front(&group),
                slower_than_fp32: baseline
                    .map(|b| group.iter().copied().filter(|r| engine::slower_than(r, b)).collect())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

fn explain(
    best: &Row,
    baseline: Option<&Row>,
    group: &[&Row],
    eligible: usize,
    objective: Objective,
    max_drop: f64,
) -> String {
    let what = match objective {
        Objective::Latency => "fastest",
        Objective::Size => "smallest",
    };
    // Sentence-embedding rows: `top1` is the mean cosine to FP32 (see `results`).
    let embedding = best.cosine_mean.is_some();
    let (budget, quality) = if embedding {
        (
            format!("mean cosine to FP32 stays within {max_drop:.4} of 1"),
            format!(
                "mean cosine {:.4} (min {:.4}, nearest neighbour kept for {:.1}% of sentences)",
                best.top1,
                best.cosine_min.unwrap_or(f64::NAN),
                best.nn_agreement.unwrap_or(f64::NAN) * 100.0
            ),
        )
    } else {
        (
            format!("top-1 drop stays within {:.2} points", max_drop * 100.0),
            format!(
                "top-1 {:.2}% (drop {:.2} points)",
                best.top1 * 100.0,
                best.top1_drop * 100.0
            ),
        )
    };
    let mut s = format!(
        "{} is the {what} of {eligible} strategies (of {}) whose {budget}: {quality}, median {} per batch of {}, {:.1}% of the FP32 size",
        best.strategy,
        group.len(),
        format_ns(best.latency_median_ns),
        best.batch,
        best.size_ratio * 100.0
    );
    if let Some(b) = baseline.filter(|b| b.strategy != best.strategy) {
        s.push_str(&format!(
            "; {:.2}x the speed of FP32 ({})",
            b.latency_median_ns as f64 / best.latency_median_ns.max(1) as f64,
            format_ns(b.latency_median_ns)
        ));
    }
    let better_but_rejected: Vec<&Row> = group
        .iter()
        .copied()
        .filter(|r| {
            r.top1_drop > max_drop + 1e-12
                && objective_key(r, objective) < objective_key(best, objective)
        })
        .collect();
    if let Some(r) = better_but_rejected
        .iter()
        .min_by_key(|r| objective_key(r, objective))
    {
        s.push_str(&format!(
            "; {} would be {} but {}",
            r.strategy,
            match objective {
                Objective::Latency => "faster",
                Objective::Size => "smaller",
            },
            if embedding {
                format!("its mean cosine is {:.4}", r.top1)
            } else {
                format!("drops {:.2} points", r.top1_drop * 100.0)
            }
        ));
    }
    s
}

/// The summary table `run` and `search` print: one line per row. With sentence-embedding rows among them,
/// three more columns (mean and minimum cosine to FP32, nearest-neighbour agreement), and those rows leave the
/// top-1 columns blank (their `top1` is the mean cosine again).
pub fn summary_table(rows: &[&Row]) -> String {
    let embeddings = rows.iter().any(|r| r.cosine_mean.is_some());
    let mut header = vec![
        "model",
        "target",
        "strategy",
        "kernel",
        "top1 %",
        "vs fp32 pts",
        "agree %",
    ];
    if embeddings {
        header.extend(["cos mean", "cos min", "nn agree %"]);
    }
    header.extend(["size KiB", "size %", "median", "p90", "per s"]);
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut line = vec![
                r.model.clone(),
                r.target.clone(),
                r.strategy.clone(),
                r.kernel.clone(),
            ];
            match r.cosine_mean {
                Some(_) => line.extend(["-".to_string(), "-".to_string(), "-".to_string()]),
                None => line.extend([
                    format!("{:.2}", r.top1 * 100.0),
                    // `+ 0.0` turns a negative zero into zero, so an equal accuracy prints as +0.00.
                    format!("{:+.2}", -r.top1_drop * 100.0 + 0.0),
                    format!("{:.2}", r.top1_agreement * 100.0),
                ]),
            }
            if embeddings {
                let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".into(), f);
                line.extend([
                    opt(r.cosine_mean, &|v| format!("{v:.4}")),
                    opt(r.cosine_min, &|v| format!("{v:.4}")),
                    opt(r.nn_agreement, &|v| format!("{:.1}", v * 100.0)),
                ]);
            }
            line.extend([
                format!("{:.1}", r.size_bytes as f64 / 1024.0),
                format!("{:.1}", r.size_ratio * 100.0),
                format_ns(r.latency_median_ns),
                format_ns(r.latency_p90_ns),
                format!("{:.0}", r.throughput_per_s),
            ]);
            line
        })
        .collect();
    table::render(&header, &body)
}

/// The full text `search` prints for its recommendations.
pub fn render(recs: &[Recommendation<'_>]) -> String {
    let mut out = String::new();
    for rec in recs {
        out.push_str(&format!("\n== {} on {} ==\n", rec.model, rec.target));
        match rec.best {
            Some(b) => out.push_str(&format!("best: {}\n", b.strategy)),
            None => out.push_str("best: none within budget\n"),
        }
        out.push_str(&format!(
            "why:  {}\n\nPareto front (accuracy x latency x size):\n",
            rec.reason
        ));
        out.push_str(&summary_table(&rec.pareto));
        if !rec.slower_than_fp32.is_empty() {
            let names: Vec<&str> = rec
                .slower_than_fp32
                .iter()
                .map(|r| r.strategy.as_str())
                .collect();
            out.push_str(&format!(
                "flagged: slower than FP32 on {} (never chosen for latency): {}\n",
                rec.target,
                names.join(", ")
            ));
        }
    }
    out
}

/// One (model, target) searched.
#[derive(Clone, Debug)]
pub struct SearchResult {
    pub model: String,
    pub target: String,
    /// Indices of the model and the target in the prepared suite.
    pub m: usize,
    pub t: usize,
    pub trace: engine::Trace,
    /// Every strategy tried, by name (to rebuild or save the chosen one).
    pub strategies: BTreeMap<String, crate::quant::Strategy>,
}

impl SearchResult {
    /// The strategy [`recommend`] chooses from this search's rows.
    pub fn chosen(&self, cfg: &engine::Config) -> Option<crate::quant::Strategy> {
        let recs = recommend(&self.trace.rows, cfg.objective, cfg.max_drop);
        let best = recs.first()?.best?;
        self.strategies.get(&best.strategy).copied()
    }
}

/// Searches every model of the session's suite on `target` (every target when `None`), `model` narrowing
/// the models. Each (model, target) gets its own trial budget; the deadline is shared.
pub fn run_search(
    session: &mut Session<'_>,
    cfg: &engine::Config,
    target: Option<&str>,
    model: Option<&str>,
) -> Result<Vec<SearchResult>, Error> {
    let prepared = session.prepared();
    let suite = &prepared.suite;
    let pick = |what: &str, want: Option<&str>, names: Vec<&str>| -> Result<Vec<usize>, Error> {
        match want {
            None => Ok((0..names.len()).collect()),
            Some(w) => match names.iter().position(|n| *n == w) {
                Some(i) => Ok(vec![i]),
                None => Err(Error::Usage(format!(
                    "no {what} `{w}` in suite `{}` (it has: {})",
                    suite.name,
                    names.join(", ")
                ))),
            },
        }
    };
    let targets = pick(
        "target",
        target,
        prepared
            .targets
            .iter()
            .map(|(t, _)| t.name.as_str())
            .collect(),
    )?;
    let models = pick(
        "model",
        model,
        prepared.models.iter().map(|m| m.name.as_str()).collect(),
    )?;
    let mut out = Vec::new();
    for &m in &models {
        let graph = &prepared.models[m].graph;
        let layers: Vec<(String, usize)> = crate::quant::model::linear_layer_names(graph)
            .into_iter()
            .map(|name| {
                let weights = graph
                    .nodes
                    .iter()
                    .find(|n| n.name == name)
                    .and_then(|n| n.inputs.get(1))
                    .and_then(|w| graph.initializers.get(w))
                    .map_or(0, |w| w.len());
                (name, weights)
            })
            .collect();
        for &t in &targets {
            let def = &prepared.targets[t].0;
            let candidates: Vec<_> = suite
                .strategies
                .iter()
                .copied()
                .filter(|s| def.allows(s, &suite.mixed))
                .collect();
            let mut strategies = BTreeMap::new();
            let trace = if cfg.algorithm == engine::Algorithm::Sensitivity {
                let mut trials = SessionTrials {
                    session,
                    m,
                    t,
                    seen: &mut strategies,
                };
                sensitivity::search(&candidates, &layers, cfg, &mut trials)?
            } else {
                engine::search(&candidates, &suite.mixed, layers.len(), cfg, &mut |s| {
                    strategies.insert(s.name(), *s);
                    session.trial(m, t, s)
                })?
            };
            out.push(SearchResult {
                model: prepared.models[m].name.clone(),
                target: def.name.clone(),
                m,
                t,
                trace,
                strategies,
            });
        }
    }
    Ok(out)
}

/// The runner's trials of one (model, target), for the sensitivity search.
struct SessionTrials<'s, 'p> {
    session: &'s mut Session<'p>,
    m: usize,
    t: usize,
    seen: &'s mut BTreeMap<String, crate::quant::Strategy>,
}

impl sensitivity::Trials for SessionTrials<'_, '_> {
    fn trial(&mut self, strategy: &crate::quant::Strategy) -> Result<Row, Error> {
        self.seen.insert(strategy.name(), *strategy);
        self.session.trial(self.m, self.t, strategy)
    }

    fn output_error(&mut self, strategy: &crate::quant::Strategy) -> Result<f64, Error> {
        self.session.output_error(self.m, self.t, strategy)
    }

    fn intern(
        &mut self,
        map: crate::quant::strategy::MixedPrecision,
    ) -> crate::quant::strategy::MixedId {
        self.session.intern_mixed(map)
    }

    fn allows(&self, strategy: &crate::quant::Strategy) -> bool {
        let def = &self.session.prepared().targets[self.t].0;
        def.allows(strategy, &self.session.mixed_maps())
    }
}

/// Readable text for a search: per (model, target) the choice and why, the Pareto front, the trials.
pub fn render_search(
    results: &[SearchResult],
    cfg: &engine::Config,
    trials_run: usize,
    trials_reused: usize,
) -> String {
    let mut out = String::new();
    for r in results {
        let recs = recommend(&r.trace.rows, cfg.objective, cfg.max_drop);
        out.push_str(&render(&recs));
        out.push_str(&format!(
            "search: {} ran {} trials, FP32 included, over a space of {} candidates{}; stopped: {}\n",
            cfg.algorithm.name(),
            r.trace.rows.len(),
            r.trace.candidates,
            if cfg.algorithm == engine::Algorithm::Sensitivity {
                " (and the per-layer maps it made)"
            } else {
                ""
            },
            r.trace.stopped
        ));
        for n in &r.trace.notes {
            out.push_str(&format!("  - {n}\n"));
        }
        if !r.trace.sensitivity.is_empty() {
            out.push_str(&sensitivity_table(&r.trace.sensitivity));
        }
        if let Some(best) = recs.first().and_then(|x| x.best)
            && let Some(choices) = r.trace.layer_choices.get(&best.strategy)
        {
            out.push_str(&format!("layers of {}:\n", best.strategy));
            for c in choices {
                out.push_str(&format!("  {}: {}\n", c.layer, c.reason));
            }
        }
    }
    out.push_str(&format!(
        "\ntrials: {trials_run} run, {trials_reused} reused from the trial log\n"
    ));
    out
}

/// Per-layer sensitivity as a table, in graph order.
fn sensitivity_table(s: &[sensitivity::LayerSensitivity]) -> String {
    let body: Vec<Vec<String>> = s
        .iter()
        .map(|x| {
            vec![
                x.layer.clone(),
                x.weights.to_string(),
                x.bits.to_string(),
                format!("{:.2}", x.top1_drop * 100.0),
                format!("{:.4}", x.output_error),
            ]
        })
        .collect();
    format!(
        "sensitivity (each layer alone at low bits, the others FP32):\n{}",
        table::render(
            &["layer", "weights", "bits", "top1 drop pts", "output error"],
            &body
        )
    )
}

fn sensitivity_json(s: &[sensitivity::LayerSensitivity]) -> serde_json::Value {
    s.iter()
        .map(|x| {
            serde_json::json!({
                "layer": x.layer,
                "weights": x.weights,
                "bits": x.bits,
                "strategy": x.strategy,
                "top1_drop": x.top1_drop,
                "output_error": x.output_error,
            })
        })
        .collect()
}

fn row_json(r: &Row, baseline: Option<&Row>) -> serde_json::Value {
    serde_json::json!({
        "strategy": r.strategy,
        "top1": r.top1,
        "top1_drop": r.top1_drop,
        "latency_median_ns": r.latency_median_ns,
        "size_bytes": r.size_bytes,
        "size_ratio": r.size_ratio,
        "speedup_vs_fp32": baseline.map(|b| b.latency_median_ns as f64 / r.latency_median_ns.max(1) as f64),
        "slower_than_fp32": baseline.is_some_and(|b| engine::slower_than(r, b)),
        "layer_precision": r.layer_precision,
        "kernel": r.kernel,
    })
}

/// One JSON object: the first (model, target)'s `chosen` and `pareto` at the top level (the usual case is
/// one of each), every one under `searches`, and the trial counts of the whole command.
pub fn search_json(
    results: &[SearchResult],
    cfg: &engine::Config,
    trials_run: usize,
    trials_reused: usize,
    csv: &std::path::Path,
) -> serde_json::Value {
    let searches: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let recs = recommend(&r.trace.rows, cfg.objective, cfg.max_drop);
            let rec = recs.first();
            let baseline = rec.and_then(|x| x.baseline);
            let chosen = rec.and_then(|x| x.best).map(|b| {
                let mut v = row_json(b, baseline);
                if let Some(choices) = r.trace.layer_choices.get(&b.strategy) {
                    v["layers"] = choices
                        .iter()
                        .map(|c| {
                            serde_json::json!({
                                "layer": c.layer,
                                "precision": c.precision,
                                "reason": c.reason,
                            })
                        })
                        .collect();
                }
                v
            });
            serde_json::json!({
                "model": r.model,
                "target": r.target,
                "chosen": chosen,
                "reason": rec.map(|x| x.reason.clone()),
                "baseline": baseline.map(|b| row_json(b, Some(b))),
                "pareto": rec.map(|x| x.pareto.iter().map(|p| row_json(p, baseline)).collect::<Vec<_>>()).unwrap_or_default(),
                "slower_than_fp32": rec.map(|x| x.slower_than_fp32.iter().map(|p| p.strategy.clone()).collect::<Vec<_>>()).unwrap_or_default(),
                "trials": r.trace.rows.len(),
                "candidates": r.trace.candidates,
                "stopped": r.trace.stopped,
                "notes": r.trace.notes,
                "sensitivity": sensitivity_json(&r.trace.sensitivity),
            })
        })
        .collect();
    let first = searches.first().cloned().unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "algorithm": cfg.algorithm.name(),
        "objective": match cfg.objective { Objective::Latency => "latency", Objective::Size => "size" },
        "max_drop": cfg.max_drop,
        "model": first.get("model"),
        "target": first.get("target"),
        "chosen": first.get("chosen"),
        "reason": first.get("reason"),
        "pareto": first.get("pareto"),
        "trials": first.get("trials"),
        "sensitivity": first.get("sensitivity"),
        "trials_run": trials_run,
        "trials_reused": trials_reused,
        "results": csv.display().to_string(),
        "searches": searches,
    })
}

/// A suite fragment whose `[space]` expands to exactly `strategy` (plus the FP32 baseline every space
/// has), with its per-layer map: what `search --save-strategy` writes, for a suite (a nightly one) to pin.
pub fn strategy_fragment(
    strategy: &crate::quant::Strategy,
    map: Option<&crate::quant::strategy::MixedPrecision>,
    header: &str,
) -> String {
    use crate::quant::Strategy;
    use crate::quant::strategy::{
        ActMode, Calibration, FloatFormat, LayerPrecision, Quantizer, Refinement, WeightRange,
    };
    let q = |v: &str| toml::Value::String(v.to_string()).to_string();
    let mut out: String = header.lines().map(|l| format!("# {l}\n")).collect();
    out.push_str(&format!("# strategy: {}\n[space]\n", strategy.name()));
    match strategy {
        Strategy::Fp32 => out.push_str("weight_bits = []\n"),
        Strategy::Float(f) => {
            let f = match f {
                FloatFormat::Fp16 => "fp16",
                FloatFormat::Bf16 => "bf16",
                FloatFormat::Fp32 => "fp32",
            };
            out.push_str(&format!("weight_bits = []\nfloats = [{}]\n", q(f)));
        }
        Strategy::Linear(l) => {
            let act = match l.act {
                ActMode::Static => "static",
                ActMode::Dynamic => "dynamic",
                ActMode::WeightOnly => "weight-only",
            };
            let granularity = match l.granularity {
                strategies::Granularity::PerTensor => "tensor".to_string(),
                strategies::Granularity::PerChannel => "channel".to_string(),
                strategies::Granularity::PerGroup(g) => format!("group:{g}"),
            };
            let scheme = match l.scheme {
                strategies::Scheme::Symmetric => "symmetric",
                strategies::Scheme::Affine => "affine",
            };
            out.push_str(&format!(
                "weight_bits = [{}]\nactivations = [{}]\ngranularity = [{}]\nscheme = [{}]\n",
                l.weight_bits,
                q(act),
                q(&granularity),
                q(scheme)
            ));
            if let Some(c) = l.calibration {
                let c = match c {
                    Calibration::MinMax => "minmax".to_string(),
                    Calibration::MovingAverage { momentum_ppm } => {
                        format!("ema:{}", momentum_ppm as f64 / 1e6)
                    }
                    Calibration::Percentile { percent_ppm } => {
                        format!("percentile:{}", percent_ppm as f64 / 1e6)
                    }
                    Calibration::Kl => "kl".to_string(),
                    Calibration::Mse => "mse".to_string(),
                };
                out.push_str(&format!("calibration = [{}]\n", q(&c)));
            }
            let quantizer = match l.quantizer {
                Quantizer::Uniform => "uniform",
                Quantizer::Log => "log",
            };
            let scale = match l.scale {
                strategies::pow2::ScaleConstraint::Float => "float",
                strategies::pow2::ScaleConstraint::PowerOfTwo => "pow2",
            };
            let weight_range = match l.weight_range {
                WeightRange::MinMax => "minmax",
                WeightRange::Mse => "mse",
            };
            let refinement = match l.refinement {
                Refinement::None => "none",
                Refinement::Gptq => "gptq",
                Refinement::AdaRound => "adaround",
                Refinement::BiasCorrection => "bias-correction",
                Refinement::Qat => "qat",
                Refinement::Cle => "cle",
            };
            out.push_str(&format!(
                "quantizer = [{}]\nscale = [{}]\nweight_range = [{}]\nrefinement = [{}]\n",
                q(quantizer),
                q(scale),
                q(weight_range),
                q(refinement)
            ));
            if let Some(map) = map {
                let layers: Vec<String> = map
                    .layers
                    .iter()
                    .map(|(layer, p)| match p {
                        LayerPrecision::Bits(b) => format!("{} = {b}", q(layer)),
                        LayerPrecision::Fp32 => format!("{} = \"fp32\"", q(layer)),
                    })
                    .collect();
                out.push_str(&format!(
                    "\n[[space.mixed]]\nname = {}\nlayers = {{ {} }}\n",
                    q(&map.name),
                    layers.join(", ")
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(strategy: &str, top1: f64, lat: u64, size: u64) -> Row {
        Row {
            top1,
            top1_drop: 0.99 - top1,
            size_bytes: size,
            size_ratio: size as f64 / 400.0,
            latency_median_ns: lat,
            latency_p90_ns: lat,
            latency_min_ns: lat,
            ..crate::results::sample_row(strategy)
        }
    }

    #[test]
    fn picks_fastest_within_budget_and_says_what_was_rejected() {
        let rows = vec![
            row("fp32", 0.99, 1000, 400),
            row("fast-but-bad", 0.95, 100, 100),
            row("good", 0.988, 300, 100),
            row("slower", 0.99, 500, 100),
        ];
        let recs = recommend(&rows, Objective::Latency, 0.005);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].best.unwrap().strategy, "good");
        assert!(
            recs[0].reason.contains("fast-but-bad would be faster"),
            "{}",
            recs[0].reason
        );
        assert!(recs[0].reason.contains("3.33x"), "{}", recs[0].reason);
        let front: Vec<&str> = recs[0].pareto.iter().map(|r| r.strategy.as_str()).collect();
        assert_eq!(front, vec!["fast-but-bad", "good", "slower"]);
        let by_size = recommend(&rows, Objective::Size, 0.0);
        assert_eq!(by_size[0].best.unwrap().strategy, "slower");
    }

    /// A saved strategy, used as a suite's `[space]`, expands to exactly that strategy and its map.
    #[test]
    fn a_saved_strategy_expands_to_itself() {
        use crate::quant::Strategy;
        use crate::quant::strategy::{
            ActMode, Calibration, FloatFormat, LayerPrecision, LinearStrategy, MixedId,
            MixedPrecision, Refinement, WeightRange,
        };
        use crate::suite::Suite;
        use strategies::{Granularity, Scheme};
        let base = std::path::Path::new(crate::suite::EMBEDDED_BASE);
        let head = r#"[suite]
name = "pinned"
[[dataset]]
name = "d"
format = "csv"
path = "data/mnist_5k/mnist_5k.csv.gz"
shape = [1, 28, 28]
calibration = { samples = 10 }
evaluation = { samples = 10 }
[[model]]
name = "m"
path = "data/ccexam_mnist_cnn/ccexam_mnist_cnn.onnx"
dataset = "d"
"#;
        let map = MixedPrecision {
            name: "keep8.Conv_4+Gemm_10".into(),
            layers: [
                ("Conv_4".to_string(), LayerPrecision::Bits(8)),
                ("Gemm_10".to_string(), LayerPrecision::Fp32),
            ]
            .into(),
        };
        let mixed = Strategy::Linear(LinearStrategy {
            mixed: Some(MixedId {
                index: 0,
                name: "keep8.Conv_4+Gemm_10",
            }),
            ..LinearStrategy::uniform(
                2,
                ActMode::Static,
                Granularity::PerChannel,
                Scheme::Symmetric,
                Some(Calibration::Percentile {
                    percent_ppm: 99_990_000,
                }),
            )
        });
        let refined = Strategy::Linear(LinearStrategy {
            refinement: Refinement::Gptq,
            weight_range: WeightRange::Mse,
            ..LinearStrategy::uniform(
                4,
                ActMode::Dynamic,
                Granularity::PerGroup(32),
                Scheme::Affine,
                None,
            )
        });
        let cases = [
            (mixed, Some(&map)),
            (refined, None),
            (Strategy::Float(FloatFormat::Bf16), None),
            (Strategy::Fp32, None),
        ];
        for (strategy, map) in cases {
            let fragment = strategy_fragment(&strategy, map, "chosen by a test\nsecond line");
            let text = format!("{head}{fragment}");
            let suite = Suite::parse(&text, &base.join("pinned.toml"), base)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            let names: Vec<String> = suite.strategies.iter().map(|s| s.name()).collect();
            let mut want = vec!["fp32".to_string()];
            if strategy != Strategy::Fp32 {
                want.push(strategy.name());
            }
            assert_eq!(names, want, "{fragment}");
            assert_eq!(suite.mixed.first(), map, "{fragment}");
        }
    }

    #[test]
    fn no_candidate_within_budget_is_reported() {
        let rows = vec![row("fp32", 0.99, 1000, 400), row("bad", 0.9, 100, 100)];
        let mut r = rows.clone();
        r[0].top1_drop = 0.01;
        let recs = recommend(&r, Objective::Latency, 0.005);
        assert!(recs[0].best.is_none());
        assert!(recs[0].reason.contains("smallest drop is 1.00 points"));
    }
}
