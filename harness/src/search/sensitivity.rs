//! Sensitivity-guided mixed precision: per-layer sensitivity measured once, then bits allocated by it.
//!
//! 1. FP32, then the space's cheapest uniform strategy at its lowest bit width (the *base*). When the base
//!    keeps the accuracy budget there is nothing to allocate, and the search stops there.
//! 2. Sensitivity: every Conv / Gemm / MatMul layer alone at the base's low width, every other layer FP32
//!    (a map `sens.<layer>`), recording its top-1 drop and the relative L2 error of its logits.
//! 3. Allocation: layers ranked by sensitivity (top-1 drop, then output error); map `k` keeps the `k` most
//!    sensitive at the space's highest width and the rest at the low one. The first `k` tried is the
//!    smallest whose summed single-layer drops fit the budget; from there the search walks down while maps
//!    pass (each one cheaper) and up while they fail, within the trial and time budgets.
//!
//! Every probe and map is an ordinary trial (logged, reused on resume); [`super::recommend`] chooses among
//! them as among any rows.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::quant::Strategy;
use crate::quant::strategy::{LayerPrecision, LinearStrategy, MixedId, MixedPrecision, Refinement};
use crate::results::Row;
use crate::suite::spec::Objective;

use super::engine::{Config, Trace, precision, prior, slower_than, within};

/// What the sensitivity search needs from the runner: trials, output errors, and ids for the maps it
/// makes up.
pub trait Trials {
    fn trial(&mut self, strategy: &Strategy) -> Result<Row, Error>;
    /// Relative L2 error of the strategy's logits against FP32's.
    fn output_error(&mut self, strategy: &Strategy) -> Result<f64, Error>;
    fn intern(&mut self, map: MixedPrecision) -> MixedId;
    /// True when the target's profile runs the strategy.
    fn allows(&self, strategy: &Strategy) -> bool;
}

/// One layer's sensitivity: the model with only this layer quantized.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSensitivity {
    pub layer: String,
    /// Weights of the layer (elements).
    pub weights: usize,
    /// The probe strategy's name.
    pub strategy: String,
    pub bits: u32,
    pub top1_drop: f64,
    pub output_error: f64,
}

/// The precision a map gives one layer, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerChoice {
    pub layer: String,
    /// `8`, `2`, `fp32`.
    pub precision: String,
    pub reason: String,
}

/// Searches one (model, target). `layers` are the model's Conv / Gemm / MatMul layers with their weight
/// counts, in graph order.
pub fn search(
    candidates: &[Strategy],
    layers: &[(String, usize)],
    cfg: &Config,
    trials: &mut dyn Trials,
) -> Result<Trace, Error> {
    let obj = cfg.objective;
    let uniform: Vec<LinearStrategy> = candidates
        .iter()
        .filter_map(|s| match s {
            Strategy::Linear(l) if l.mixed.is_none() && l.refinement != Refinement::Qat => Some(*l),
            _ => None,
        })
        .collect();
    let mut trace = Trace {
        candidates: candidates.iter().filter(|s| **s != Strategy::Fp32).count(),
        ..Trace::default()
    };
    let fp32 = trials.trial(&Strategy::Fp32)?;
    trace.rows.push(fp32.clone());
    let Some(low) = uniform.iter().map(|l| l.weight_bits).min() else {
        trace.stopped = "the space has no uniform integer strategy to allocate bits from".into();
        return Ok(trace);
    };
    let high = uniform.iter().map(|l| l.weight_bits).max().unwrap_or(low);
    // The base: the cheapest predicted of the low-width strategies, the most precise among equals.
    let base = *uniform
        .iter()
        .filter(|l| l.weight_bits == low)
        .min_by(|a, b| {
            let (a, b) = (Strategy::Linear(**a), Strategy::Linear(**b));
            prior(&a, obj, &[], layers.len())
                .total_cmp(&prior(&b, obj, &[], layers.len()))
                .then(precision(&b).total_cmp(&precision(&a)))
        })
        .expect("low is some candidate's width");
    let passes = |row: &Row| {
        within(row, cfg.max_drop) && !(obj == Objective::Latency && slower_than(row, &fp32))
    };
    let out_of_budget = |trace: &Trace| -> Option<String> {
        if let Some(n) = cfg.budget_trials
            && trace.rows.len() >= n
        {
            return Some(format!("trial budget of {n} spent"));
        }
        if let Some(d) = cfg.deadline
            && std::time::Instant::now() >= d
        {
            return Some("time budget spent".into());
        }
        None
    };
    macro_rules! budget {
        () => {
            if let Some(why) = out_of_budget(&trace) {
                trace.stopped = why;
                return Ok(trace);
            }
        };
    }
    budget!();
    let base_row = trials.trial(&Strategy::Linear(base))?;
    trace.rows.push(base_row.clone());
    if passes(&base_row) {
        trace.stopped = format!(
            "{} keeps the budget with every layer at {low} bits: nothing to allocate",
            base_row.strategy
        );
        return Ok(trace);
    }
    trace.notes.push(format!(
        "{} drops {:.2} points (> {:.2}) with every layer at {low} bits: measuring each layer alone",
        base_row.strategy,
        base_row.top1_drop * 100.0,
        cfg.max_drop * 100.0
    ));
    if low == high {
        trace.stopped =
            format!("the space has one bit width ({low}): no higher one to keep layers at");
        return Ok(trace);
    }

    // 2. One probe per layer.
    for (layer, weights) in layers {
        budget!();
        let map = MixedPrecision {
            name: format!("sens.{layer}"),
            layers: layers
                .iter()
                .filter(|(l, _)| l != layer)
                .map(|(l, _)| (l.clone(), LayerPrecision::Fp32))
                .collect(),
        };
        let probe = Strategy::Linear(LinearStrategy {
            mixed: Some(trials.intern(map)),
            ..base
        });
        if !trials.allows(&probe) {
            trace.stopped = format!(
                "the target's profile runs no per-layer precision maps like {}",
                probe.name()
            );
            return Ok(trace);
        }
        let row = trials.trial(&probe)?;
        let output_error = trials.output_error(&probe)?;
        trace.sensitivity.push(LayerSensitivity {
            layer: layer.clone(),
            weights: *weights,
            strategy: row.strategy.clone(),
            bits: low,
            top1_drop: row.top1_drop,
            output_error,
        });
        trace.rows.push(row);
    }
    let mut ranked: Vec<&LayerSensitivity> = trace.sensitivity.iter().collect();
    ranked.sort_by(|a, b| {
        b.top1_drop
            .total_cmp(&a.top1_drop)
            .then(b.output_error.total_cmp(&a.output_error))
    });
    let ranked: Vec<LayerSensitivity> = ranked.into_iter().cloned().collect();
    trace.notes.push(format!(
        "sensitivity at {low} bits, most sensitive first: {}",
        ranked
            .iter()
            .map(|s| format!(
                "{} {:.2} pts / err {:.3}",
                s.layer,
                s.top1_drop * 100.0,
                s.output_error
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // 3. Allocation: map k keeps the k most sensitive layers at `high` bits.
    let n = ranked.len();
    let map_of = |k: usize, trials: &mut dyn Trials| -> (Strategy, Vec<LayerChoice>) {
        let choices: Vec<LayerChoice> = layers
            .iter()
            .map(|(layer, _)| {
                let rank = ranked.iter().position(|s| &s.layer == layer).expect("ranked");
                let s = &ranked[rank];
                let alone = format!(
                    "drop {:.2} points (output error {:.3}) when alone at {low} bits, sensitivity rank {} of {n}",
                    s.top1_drop * 100.0,
                    s.output_error,
                    rank + 1
                );
                if rank < k {
                    LayerChoice {
                        layer: layer.clone(),
                        precision: high.to_string(),
                        reason: format!("kept at {high} bits: {alone}"),
                    }
                } else {
                    LayerChoice {
                        layer: layer.clone(),
                        precision: low.to_string(),
                        reason: format!("at {low} bits: {alone}"),
                    }
                }
            })
            .collect();
        let strategy = if k == 0 {
            Strategy::Linear(base)
        } else if k == n {
            Strategy::Linear(LinearStrategy {
                weight_bits: high,
                ..base
            })
        } else {
            let kept: Vec<&str> = ranked[..k].iter().map(|s| s.layer.as_str()).collect();
            let map = MixedPrecision {
                name: format!("keep{high}.{}", kept.join("+")),
                layers: kept
                    .iter()
                    .map(|l| (l.to_string(), LayerPrecision::Bits(high)))
                    .collect::<BTreeMap<_, _>>(),
            };
            Strategy::Linear(LinearStrategy {
                mixed: Some(trials.intern(map)),
                ..base
            })
        };
        (strategy, choices)
    };
    // The smallest k whose summed single-layer drops fit the budget (drops below zero count as zero).
    let mut k = (1..=n)
        .find(|&k| {
            ranked[k..]
                .iter()
                .map(|s| s.top1_drop.max(0.0))
                .sum::<f64>()
                <= cfg.max_drop + 1e-12
        })
        .unwrap_or(n);
    let mut results: BTreeMap<usize, bool> = BTreeMap::from([(0, false)]);
    loop {
        budget!();
        let (strategy, choices) = map_of(k, trials);
        let row = trials.trial(&strategy)?;
        let ok = passes(&row);
        trace.notes.push(format!(
            "{} (the {k} most sensitive of {n} layers at {high} bits) {} (drop {:.2} points)",
            row.strategy,
            if ok { "passes" } else { "fails" },
            row.top1_drop * 100.0
        ));
        trace.layer_choices.insert(row.strategy.clone(), choices);
        trace.rows.push(row);
        results.insert(k, ok);
        // Down while maps pass (a cheaper one may too), up while they fail.
        let next = if ok { k.checked_sub(1) } else { Some(k + 1) };
        match next {
            Some(j) if j <= n && !results.contains_key(&j) => k = j,
            _ => {
                let best = results.iter().find(|(_, ok)| **ok).map(|(k, _)| *k);
                trace.stopped = match best {
                    Some(b) => format!(
                        "the {b} most sensitive layers at {high} bits keep the budget; {} do not",
                        b - 1
                    ),
                    None => format!("even every layer at {high} bits breaks the budget"),
                };
                return Ok(trace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::ActMode;
    use strategies::{Granularity, Scheme};

    /// A model of three layers where only `b` (and, a little, `c`) cares about low bits; sizes follow bits.
    struct Fake {
        maps: Vec<MixedPrecision>,
        calls: Vec<String>,
    }

    impl Fake {
        fn bits_of(&self, s: &LinearStrategy, layer: &str) -> Option<u32> {
            match s.mixed.map(|id| &self.maps[id.index as usize]) {
                Some(m) => match m.layers.get(layer) {
                    Some(LayerPrecision::Fp32) => None,
                    Some(LayerPrecision::Bits(b)) => Some(*b),
                    None => Some(s.weight_bits),
                },
                None => Some(s.weight_bits),
            }
        }
    }

    impl Trials for Fake {
        fn trial(&mut self, strategy: &Strategy) -> Result<Row, Error> {
            let mut r = crate::results::sample_row(&strategy.name());
            self.calls.push(strategy.name());
            r.latency_median_ns = 100;
            let Strategy::Linear(l) = strategy else {
                r.latency_median_ns = 400;
                r.size_bytes = 3 * 3200;
                r.top1_drop = 0.0;
                return Ok(r);
            };
            let mut drop = 0.0;
            let mut size = 0;
            for (layer, cost) in [("a", 0.001), ("b", 0.05), ("c", 0.004)] {
                match self.bits_of(l, layer) {
                    None => size += 3200,
                    Some(b) => {
                        size += 100 * b as u64;
                        if b < 8 {
                            drop += cost;
                        }
                    }
                }
            }
            r.top1_drop = drop;
            r.size_bytes = size;
            Ok(r)
        }

        fn output_error(&mut self, strategy: &Strategy) -> Result<f64, Error> {
            Ok(self.trial(strategy)?.top1_drop * 2.0)
        }

        fn intern(&mut self, map: MixedPrecision) -> MixedId {
            let index = match self.maps.iter().position(|m| *m == map) {
                Some(i) => i,
                None => {
                    self.maps.push(map);
                    self.maps.len() - 1
                }
            };
            MixedId {
                index: index as u16,
                name: Box::leak(self.maps[index].name.clone().into_boxed_str()),
            }
        }

        fn allows(&self, _: &Strategy) -> bool {
            true
        }
    }

    fn space() -> Vec<Strategy> {
        let mut v = vec![Strategy::Fp32];
        for bits in [8, 2] {
            for act in [ActMode::Static, ActMode::Dynamic] {
                v.push(Strategy::Linear(LinearStrategy::uniform(
                    bits,
                    act,
                    Granularity::PerChannel,
                    Scheme::Symmetric,
                    (act == ActMode::Static).then_some(crate::quant::Calibration::MinMax),
                )));
            }
        }
        v
    }

    fn cfg(max_drop: f64) -> Config {
        Config {
            algorithm: super::super::engine::Algorithm::Sensitivity,
            objective: Objective::Size,
            max_drop,
            budget_trials: None,
            deadline: None,
            seed: 1,
        }
    }

    fn layers() -> Vec<(String, usize)> {
        ["a", "b", "c"]
            .iter()
            .map(|l| (l.to_string(), 100))
            .collect()
    }

    #[test]
    fn keeps_the_most_sensitive_layer_at_eight_bits_and_says_why() {
        let mut fake = Fake {
            maps: Vec::new(),
            calls: Vec::new(),
        };
        let trace = search(&space(), &layers(), &cfg(0.005), &mut fake).unwrap();
        let sens: Vec<(&str, f64)> = trace
            .sensitivity
            .iter()
            .map(|s| (s.layer.as_str(), s.top1_drop))
            .collect();
        assert_eq!(sens, vec![("a", 0.001), ("b", 0.05), ("c", 0.004)]);
        let recs = super::super::recommend(&trace.rows, Objective::Size, 0.005);
        let best = recs[0].best.unwrap();
        assert_eq!(best.strategy, "w2-dynamic-channel-sym-mix.keep8.b");
        let why = &trace.layer_choices[&best.strategy];
        assert_eq!(why[1].precision, "8");
        assert!(
            why[1]
                .reason
                .starts_with("kept at 8 bits: drop 5.00 points"),
            "{why:?}"
        );
        assert_eq!(why[0].precision, "2");
        // FP32, the base, three probes, then k = 1 (passes) and k = 0 is the base (known to fail).
        assert_eq!(trace.rows.len(), 6, "{:#?}", trace.notes);
        assert!(
            trace.stopped.contains("the 1 most sensitive"),
            "{}",
            trace.stopped
        );
    }

    #[test]
    fn a_base_within_budget_needs_no_probes_and_budgets_hold() {
        let mut fake = Fake {
            maps: Vec::new(),
            calls: Vec::new(),
        };
        let trace = search(&space(), &layers(), &cfg(0.1), &mut fake).unwrap();
        assert_eq!(trace.rows.len(), 2);
        assert!(trace.sensitivity.is_empty());
        let mut limited = cfg(0.005);
        limited.budget_trials = Some(4);
        let trace = search(&space(), &layers(), &limited, &mut fake).unwrap();
        assert_eq!(trace.rows.len(), 4);
        assert_eq!(trace.stopped, "trial budget of 4 spent");
    }
}
