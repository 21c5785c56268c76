//! Strategy selection from measured trials: per (model, target), the best strategy for an objective within
//! an accuracy budget, with the reason, and the Pareto front over accuracy, latency and size.
//!
//! This first version selects among the trials of the suite's whole space (exhaustive); smarter search
//! strategies will propose fewer trials, and this selection stays the same.

use std::collections::BTreeMap;

use crate::results::Row;
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
            let within: Vec<&Row> = group.iter().copied().filter(|r| r.top1_drop <= max_drop + 1e-12).collect();
            let best = within.iter().copied().min_by_key(|r| objective_key(r, objective));
            let reason = match best {
                None => format!(
                    "no strategy keeps the top-1 drop within {:.2} points; the smallest drop is {:.2} points",
                    max_drop * 100.0,
                    group.iter().map(|r| r.top1_drop).fold(f64::INFINITY, f64::min) * 100.0
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
    let mut s = format!(
        "{} is the {what} of {eligible} strategies (of {}) whose top-1 drop stays within {:.2} points: top-1 {:.2}% (drop {:.2} points), median {} per batch of {}, {:.1}% of the FP32 size",
        best.strategy,
        group.len(),
        max_drop * 100.0,
        best.top1 * 100.0,
        best.top1_drop * 100.0,
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
            "; {} would be {} but drops {:.2} points",
            r.strategy,
            match objective {
                Objective::Latency => "faster",
                Objective::Size => "smaller",
            },
            r.top1_drop * 100.0
        ));
    }
    s
}

/// The summary table `run` and `search` print: one line per row.
pub fn summary_table(rows: &[&Row]) -> String {
    let header = [
        "model",
        "target",
        "strategy",
        "kernel",
        "top1 %",
        "vs fp32 pts",
        "agree %",
        "size KiB",
        "size %",
        "median",
        "p90",
        "per s",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.model.clone(),
                r.target.clone(),
                r.strategy.clone(),
                r.kernel.clone(),
                format!("{:.2}", r.top1 * 100.0),
                // `+ 0.0` turns a negative zero into zero, so an equal accuracy prints as +0.00.
                format!("{:+.2}", -r.top1_drop * 100.0 + 0.0),
                format!("{:.2}", r.top1_agreement * 100.0),
                format!("{:.1}", r.size_bytes as f64 / 1024.0),
                format!("{:.1}", r.size_ratio * 100.0),
                format_ns(r.latency_median_ns),
                format_ns(r.latency_p90_ns),
                format!("{:.0}", r.throughput_per_s),
            ]
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
