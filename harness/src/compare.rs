//! `harness compare BASELINE NEW`: a regression verdict for CI, per (model, target, strategy) present in both
//! result CSVs. Accuracy is judged on the paired per-sample outcomes (exact McNemar test on the samples one
//! run got right and the other wrong), latency on the timing samples (one-sided Mann-Whitney U test, plus a
//! relative threshold on the medians so that a significant 1 % drift is not a regression), size exactly.
//! Samples come from the `<run-id>.samples.jsonl` files beside each CSV (see [`crate::runner::samples`]);
//! without them a trial is judged on its summary columns only, and the verdict says so.
//!
//! Sentence-embedding rows (`metric = embedding`, see [`crate::results`]): the quality compared is the mean
//! cosine to FP32's embeddings (the `top1` column; `top1_baseline` / `top1_new` in the JSON verdict hold it,
//! beside `metric`), shown in the markdown as a fraction (FP32: 1, four decimals) rather than as a top-1
//! percentage; the per-sample outcomes are then per sentence, whether its nearest other sentence is still
//! FP32's, so McNemar tests the nearest-neighbour agreement and the verdict counts sentences whose neighbour
//! changed. Where both runs recorded each sentence's cosine to FP32, those are paired too: an exact sign test
//! on the sentences whose cosine fell against those whose cosine rose, a regression when it is significant
//! and the mean fell by more than [`CompareOptions::cosine_threshold`]; either test can flag the trial.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::error::Error;
use crate::results::{Row, read_rows};
use crate::runner::samples::{TrialSamples, read_dir_samples};

/// Thresholds of the verdict.
#[derive(Clone, Copy, Debug)]
pub struct CompareOptions {
    /// Significance level of both tests.
    pub alpha: f64,
    /// A latency regression also needs the new median this much above the baseline's (0.10 = 10 %).
    pub latency_threshold: f64,
    /// An encoder's cosine regression also needs its mean cosine to FP32 this much lower (a kernel that
    /// reorders float sums moves every sentence's cosine by ~1e-7, which a sign test would call significant).
    pub cosine_threshold: f64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            alpha: 0.01,
            latency_threshold: 0.10,
            cosine_threshold: 0.001,
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "why")]
pub enum Judgement {
    Unchanged,
    Improved(String),
    Regression(String),
}

impl Judgement {
    fn is_regression(&self) -> bool {
        matches!(self, Judgement::Regression(_))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub model: String,
    pub target: String,
    pub strategy: String,
    /// `top1` (classifier) or `embedding` (sentence encoder), from the new row (the baseline's when the new
    /// row names none; `top1` when neither does, as in files written before the column existed).
    pub metric: String,
    /// Top-1 accuracy, or for `embedding` rows the mean cosine to FP32 (fractions).
    pub top1_baseline: f64,
    pub top1_new: f64,
    /// `embedding` rows: the smallest cosine to FP32 (null otherwise).
    pub cosine_min_baseline: Option<f64>,
    pub cosine_min_new: Option<f64>,
    /// `embedding` rows: the nearest-neighbour agreement with FP32 (null otherwise).
    pub nn_agreement_baseline: Option<f64>,
    pub nn_agreement_new: Option<f64>,
    pub accuracy: Judgement,
    pub latency_median_ns_baseline: u64,
    pub latency_median_ns_new: u64,
    pub latency: Judgement,
    pub size_bytes_baseline: u64,
    pub size_bytes_new: u64,
    pub size: Judgement,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub regressions: usize,
    pub entries: Vec<Entry>,
    /// Trials of the baseline that the new results lack (each counts as a regression).
    pub missing: Vec<String>,
    /// Trials only the new results have.
    pub added: Vec<String>,
}

type Key = (String, String, String);

/// A results file's last row per trial, and the samples of the runs those rows came from (by run id).
type Loaded = (BTreeMap<Key, Row>, HashMap<(String, Key), TrialSamples>);

/// `embedding` for a sentence encoder's row (its `metric`, or cosine columns filled), else `top1`.
fn metric_of(r: &Row) -> &'static str {
    if r.metric == "embedding" || r.cosine_mean.is_some() {
        "embedding"
    } else {
        "top1"
    }
}

fn key(r: &Row) -> Key {
    (r.model.clone(), r.target.clone(), r.strategy.clone())
}

/// The last row of every trial in `path`, and the samples of the runs those rows came from.
fn load(path: &Path) -> Result<Loaded, Error> {
    let rows: BTreeMap<Key, Row> = read_rows(path)?.into_iter().map(|r| (key(&r), r)).collect();
    let samples = read_dir_samples(path.parent().unwrap_or(Path::new(".")))
        .into_iter()
        .map(|s| {
            let k = (s.model.clone(), s.target.clone(), s.strategy.clone());
            ((s.run_id.clone(), k), s)
        })
        .collect();
    Ok((rows, samples))
}

/// Compares `new` against `baseline` (result CSVs).
pub fn compare(baseline: &Path, new: &Path, opts: CompareOptions) -> Result<Verdict, Error> {
    let (base_rows, base_samples) = load(baseline)?;
    let (new_rows, new_samples) = load(new)?;
    let mut entries = Vec::new();
    let mut missing = Vec::new();
    for (k, b) in &base_rows {
        let Some(n) = new_rows.get(k) else {
            missing.push(format!("{} / {} / {}", k.0, k.1, k.2));
            continue;
        };
        let bs = base_samples.get(&(b.run_id.clone(), k.clone()));
        let ns = new_samples.get(&(n.run_id.clone(), k.clone()));
        entries.push(Entry {
            model: k.0.clone(),
            target: k.1.clone(),
            strategy: k.2.clone(),
            metric: if n.metric.is_empty() && n.cosine_mean.is_none() {
                metric_of(b)
            } else {
                metric_of(n)
            }
            .to_string(),
            top1_baseline: b.top1,
            top1_new: n.top1,
            cosine_min_baseline: b.cosine_min,
            cosine_min_new: n.cosine_min,
            nn_agreement_baseline: b.nn_agreement,
            nn_agreement_new: n.nn_agreement,
            accuracy: judge_accuracy(b, n, bs, ns, opts),
            latency_median_ns_baseline: b.latency_median_ns,
            latency_median_ns_new: n.latency_median_ns,
            latency: judge_latency(b, n, bs, ns, opts),
            size_bytes_baseline: b.size_bytes,
            size_bytes_new: n.size_bytes,
            size: match n.size_bytes.cmp(&b.size_bytes) {
                std::cmp::Ordering::Greater => {
                    Judgement::Regression(format!("{} B larger", n.size_bytes - b.size_bytes))
                }
                std::cmp::Ordering::Less => {
                    Judgement::Improved(format!("{} B smaller", b.size_bytes - n.size_bytes))
                }
                std::cmp::Ordering::Equal => Judgement::Unchanged,
            },
        });
    }
    let added = new_rows
        .keys()
        .filter(|k| !base_rows.contains_key(*k))
        .map(|k| format!("{} / {} / {}", k.0, k.1, k.2))
        .collect();
    let regressions = entries
        .iter()
        .map(|e| {
            [&e.accuracy, &e.latency, &e.size]
                .iter()
                .filter(|j| j.is_regression())
                .count()
        })
        .sum::<usize>()
        + missing.len();
    Ok(Verdict {
        regressions,
        entries,
        missing,
        added,
    })
}

fn judge_accuracy(
    b: &Row,
    n: &Row,
    bs: Option<&TrialSamples>,
    ns: Option<&TrialSamples>,
    opts: CompareOptions,
) -> Judgement {
    let outcomes = bs
        .zip(ns)
        .and_then(|(x, y)| Some((x.outcomes().ok()?, y.outcomes().ok()?)))
        .filter(|(x, y)| x.len() == y.len() && !x.is_empty());
    let embedding = metric_of(n) == "embedding" || metric_of(b) == "embedding";
    let Some((x, y)) = outcomes else {
        // No paired outcomes: any quality loss is reported, but not as statistically established.
        return if n.top1 < b.top1 {
            Judgement::Regression(if embedding {
                format!(
                    "mean cosine to FP32 {:.4} -> {:.4} (no per-sentence outcomes to test)",
                    b.top1, n.top1
                )
            } else {
                format!(
                    "top-1 {:.2} % -> {:.2} % (no per-sample outcomes to test)",
                    b.top1 * 100.0,
                    n.top1 * 100.0
                )
            })
        } else {
            Judgement::Unchanged
        };
    };
    // Discordant pairs: right before and wrong now (lost), wrong before and right now (gained). For an
    // embedding model "right" is a sentence whose nearest other sentence is FP32's.
    let lost = x.iter().zip(&y).filter(|(a, b)| **a && !**b).count();
    let gained = x.iter().zip(&y).filter(|(a, b)| !**a && **b).count();
    let p = mcnemar_exact(lost, gained);
    if embedding
        && let Some(cosine) = judge_cosines(b, n, bs, ns, opts)
        && !matches!(cosine, Judgement::Unchanged)
        && !(p < opts.alpha && lost > gained)
    {
        return cosine;
    }
    let what = if embedding {
        format!(
            "nearest-neighbour agreement: {lost} sentences lost FP32's neighbour, {gained} regained it, \
             McNemar p = {p:.2e}"
        )
    } else {
        format!("{lost} samples lost, {gained} gained, McNemar p = {p:.2e}")
    };
    if p < opts.alpha && lost > gained {
        Judgement::Regression(what)
    } else if p < opts.alpha && gained > lost {
        Judgement::Improved(what)
    } else {
        Judgement::Unchanged
    }
}

/// The paired per-sentence cosines of two encoder trials: `None` without them (or with different sentence
/// counts); else a sign test on the sentences whose cosine to FP32 fell against those whose cosine rose.
fn judge_cosines(
    b: &Row,
    n: &Row,
    bs: Option<&TrialSamples>,
    ns: Option<&TrialSamples>,
    opts: CompareOptions,
) -> Option<Judgement> {
    let (x, y) = (&bs?.cosines, &ns?.cosines);
    if x.is_empty() || x.len() != y.len() {
        return None;
    }
    let fell = x.iter().zip(y).filter(|(a, b)| b < a).count();
    let rose = x.iter().zip(y).filter(|(a, b)| b > a).count();
    let p = mcnemar_exact(fell, rose);
    let what = format!(
        "mean cosine to FP32 {:.4} -> {:.4}: {fell} sentences fell, {rose} rose, sign test p = {p:.2e}",
        b.top1, n.top1
    );
    let moved = (n.top1 - b.top1).abs() > opts.cosine_threshold;
    Some(
        if p < opts.alpha && moved && fell > rose && n.top1 < b.top1 {
            Judgement::Regression(what)
        } else if p < opts.alpha && moved && rose > fell && n.top1 > b.top1 {
            Judgement::Improved(what)
        } else {
            Judgement::Unchanged
        },
    )
}

fn judge_latency(
    b: &Row,
    n: &Row,
    bs: Option<&TrialSamples>,
    ns: Option<&TrialSamples>,
    opts: CompareOptions,
) -> Judgement {
    let ratio = n.latency_median_ns as f64 / b.latency_median_ns.max(1) as f64;
    let over = ratio > 1.0 + opts.latency_threshold;
    let under = ratio < 1.0 / (1.0 + opts.latency_threshold);
    let samples = bs
        .zip(ns)
        .filter(|(x, y)| x.latency_ns.len() >= 2 && y.latency_ns.len() >= 2);
    let Some((x, y)) = samples else {
        return if over {
            Judgement::Regression(format!("median x{ratio:.2} (no timing samples to test)"))
        } else {
            Judgement::Unchanged
        };
    };
    let p_slower = mann_whitney_greater(&y.latency_ns, &x.latency_ns);
    let p_faster = mann_whitney_greater(&x.latency_ns, &y.latency_ns);
    if over && p_slower < opts.alpha {
        Judgement::Regression(format!(
            "median x{ratio:.2}, Mann-Whitney p = {p_slower:.2e}"
        ))
    } else if under && p_faster < opts.alpha {
        Judgement::Improved(format!(
            "median x{ratio:.2}, Mann-Whitney p = {p_faster:.2e}"
        ))
    } else {
        Judgement::Unchanged
    }
}

/// Two-sided exact McNemar p-value: the binomial(b + c, 1/2) probability of a split at least as uneven.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let ln_half_n = n as f64 * 0.5f64.ln();
    let ln_choose = |i: usize| {
        libm::lgamma(n as f64 + 1.0)
            - libm::lgamma(i as f64 + 1.0)
            - libm::lgamma((n - i) as f64 + 1.0)
    };
    let tail: f64 = (0..=k).map(|i| (ln_choose(i) + ln_half_n).exp()).sum();
    (2.0 * tail).min(1.0)
}

/// One-sided p-value that `a` tends to exceed `b` (Mann-Whitney U, normal approximation with mid-ranks for
/// ties).
pub fn mann_whitney_greater(a: &[u64], b: &[u64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let mut all: Vec<(u64, bool)> = a
        .iter()
        .map(|&v| (v, true))
        .chain(b.iter().map(|&v| (v, false)))
        .collect();
    all.sort_unstable_by_key(|p| p.0);
    let mut rank_sum_a = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        // Mid-rank of the tie group (ranks are 1-based).
        let rank = (i + j + 1) as f64 / 2.0;
        rank_sum_a += rank * all[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let sd = (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    if sd == 0.0 {
        return 1.0;
    }
    let z = (u - mean) / sd;
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// The verdict as markdown, fit for a pull-request comment.
pub fn markdown(v: &Verdict) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "### Quantization results: {}\n\n",
        if v.regressions == 0 {
            "no regression".to_string()
        } else {
            format!("**{} regression(s)**", v.regressions)
        }
    ));
    let embedding = |e: &Entry| e.metric == "embedding";
    let (any_embedding, all_embedding) = (
        v.entries.iter().any(embedding),
        !v.entries.is_empty() && v.entries.iter().all(embedding),
    );
    let quality = if all_embedding {
        "mean cosine to FP32"
    } else if any_embedding {
        "top-1 % / mean cosine to FP32"
    } else {
        "top-1 %"
    };
    s.push_str(&format!(
        "| model | target | strategy | {quality} | accuracy | median | latency | size B | size |\n"
    ));
    s.push_str("|---|---|---|---|---|---|---|---|---|\n");
    let show = |j: &Judgement| match j {
        Judgement::Unchanged => "=".to_string(),
        Judgement::Improved(w) => format!("better ({w})"),
        Judgement::Regression(w) => format!("**REGRESSION** ({w})"),
    };
    for e in &v.entries {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} -> {} | {} | {} -> {} | {} |\n",
            e.model,
            e.target,
            e.strategy,
            quality_cell(e, any_embedding && !all_embedding),
            show(&e.accuracy),
            crate::runner::measure::format_ns(e.latency_median_ns_baseline),
            crate::runner::measure::format_ns(e.latency_median_ns_new),
            show(&e.latency),
            e.size_bytes_baseline,
            e.size_bytes_new,
            show(&e.size),
        ));
    }
    if any_embedding {
        s.push_str(
            "\nEmbedding rows: quality is the mean cosine of the sentence embeddings to FP32's (a fraction; \
             FP32 = 1), with the nearest-neighbour agreement (nn); their accuracy verdict tests, per sentence, \
             whether its nearest other sentence is still FP32's.\n",
        );
    }
    for m in &v.missing {
        s.push_str(&format!(
            "\n**Missing in the new results (a regression):** {m}"
        ));
    }
    if !v.added.is_empty() {
        s.push_str(&format!("\n\nNew trials: {}\n", v.added.join(", ")));
    }
    s
}

/// An entry's quality, baseline -> new: top-1 in percent, or the mean cosine to FP32 as a fraction with the
/// nearest-neighbour agreement (in percent) when the rows have it; `tagged` marks cosines `cos` (in a
/// table that mixes both kinds).
fn quality_cell(e: &Entry, tagged: bool) -> String {
    if e.metric != "embedding" {
        return format!(
            "{:.2} -> {:.2}",
            e.top1_baseline * 100.0,
            e.top1_new * 100.0
        );
    }
    let mut cell = format!(
        "{}{:.4} -> {:.4}",
        if tagged { "cos " } else { "" },
        e.top1_baseline,
        e.top1_new
    );
    if let (Some(b), Some(n)) = (e.nn_agreement_baseline, e.nn_agreement_new) {
        cell += &format!(" (nn {:.1} % -> {:.1} %)", b * 100.0, n * 100.0);
    }
    cell
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A run of an embedding model in `dir`: FP32 and one int8 strategy (mean cosine `cos`, nearest-neighbour
    /// agreement from `kept`, per sentence), with per-sentence samples when `samples`.
    fn embedding_run(dir: &Path, run: &str, cos: f64, kept: &[bool], samples: bool) -> PathBuf {
        embedding_run_with(dir, run, cos, kept, samples, &[])
    }

    /// [`embedding_run`] with the int8 trial's per-sentence cosines (`cosines`, empty: none recorded).
    fn embedding_run_with(
        dir: &Path,
        run: &str,
        cos: f64,
        kept: &[bool],
        samples: bool,
        cosines: &[f64],
    ) -> PathBuf {
        use crate::runner::samples::{SamplesWriter, encode_bits};
        std::fs::create_dir_all(dir).unwrap();
        let csv = dir.join(format!("{run}.csv"));
        let mut out = crate::results::CsvAppender::open(&csv).unwrap();
        let mut jsonl = SamplesWriter::open(&csv.with_extension("samples.jsonl")).unwrap();
        for (strategy, cos, kept) in [
            ("fp32", 1.0, &vec![true; kept.len()][..]),
            ("w8", cos, kept),
        ] {
            let mut r = crate::results::sample_row(strategy);
            let nn = kept.iter().filter(|k| **k).count() as f64 / kept.len() as f64;
            (r.run_id, r.metric, r.top1, r.top1_drop) =
                (run.into(), "embedding".into(), cos, 1.0 - cos);
            (r.cosine_mean, r.cosine_min, r.nn_agreement) = (Some(cos), Some(cos - 0.02), Some(nn));
            (r.top1_agreement, r.eval_samples) = (nn, kept.len());
            out.append(&r).unwrap();
            if samples {
                jsonl
                    .append(&TrialSamples {
                        run_id: run.into(),
                        model: r.model.clone(),
                        target: r.target.clone(),
                        strategy: strategy.into(),
                        correct: encode_bits(kept.iter().copied()),
                        eval_samples: kept.len(),
                        latency_ns: vec![100, 101, 99],
                        cosines: if strategy == "fp32" {
                            vec![1.0; kept.len()]
                        } else {
                            cosines.to_vec()
                        },
                    })
                    .unwrap();
            }
        }
        csv
    }

    /// Every sentence keeps its nearest neighbour but every cosine falls: the sign test on the paired
    /// per-sentence cosines flags it; the same cosines, or a drift below the threshold, do not.
    #[test]
    fn a_cosine_loss_that_keeps_every_neighbour_is_a_regression() {
        let tmp = tempfile::tempdir().unwrap();
        let all = [true; 16];
        let base_cos: Vec<f64> = (0..16).map(|i| 0.99 + i as f64 * 1e-4).collect();
        let lower: Vec<f64> = base_cos.iter().map(|c| c - 0.03).collect();
        let drift: Vec<f64> = base_cos.iter().map(|c| c - 1e-7).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let base = embedding_run_with(
            &tmp.path().join("b"),
            "r1",
            mean(&base_cos),
            &all,
            true,
            &base_cos,
        );
        for (name, cos, expect_regression) in [
            ("lower", &lower, true),
            ("same", &base_cos, false),
            ("drift", &drift, false),
        ] {
            let new = embedding_run_with(&tmp.path().join(name), "r2", mean(cos), &all, true, cos);
            let v = compare(&base, &new, CompareOptions::default()).unwrap();
            let w8 = v.entries.iter().find(|e| e.strategy == "w8").unwrap();
            match (&w8.accuracy, expect_regression) {
                (Judgement::Regression(why), true) => {
                    assert!(why.contains("16 sentences fell, 0 rose"), "{why}")
                }
                (Judgement::Unchanged, false) => {}
                (other, _) => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn embedding_rows_are_judged_and_labelled_by_cosine_and_neighbour_agreement() {
        let tmp = tempfile::tempdir().unwrap();
        let all = [true; 16];
        // 10 of 16 sentences lose FP32's nearest neighbour: McNemar p = 2 / 1024.
        let lost: Vec<bool> = (0..16).map(|i| i >= 10).collect();
        let base = embedding_run(&tmp.path().join("base"), "r1", 0.995, &all, true);
        let new = embedding_run(&tmp.path().join("new"), "r2", 0.94, &lost, true);
        let v = compare(&base, &new, CompareOptions::default()).unwrap();
        let w8 = v.entries.iter().find(|e| e.strategy == "w8").unwrap();
        assert_eq!(w8.metric, "embedding");
        let Judgement::Regression(why) = &w8.accuracy else {
            panic!("{:?}", w8.accuracy)
        };
        assert!(
            why.starts_with(
                "nearest-neighbour agreement: 10 sentences lost FP32's neighbour, 0 regained"
            ),
            "{why}"
        );
        let md = markdown(&v);
        assert!(
            md.contains("| strategy | mean cosine to FP32 | accuracy |"),
            "{md}"
        );
        assert!(
            md.contains("| 0.9950 -> 0.9400 (nn 100.0 % -> 37.5 %) |"),
            "{md}"
        );
        assert!(
            md.contains("Embedding rows: quality is the mean cosine"),
            "{md}"
        );
        assert!(!md.contains("top-1"), "{md}");
        // The JSON verdict keeps its field names and adds the metric and the embedding columns.
        let json = serde_json::to_value(w8).unwrap();
        assert_eq!(json["top1_baseline"], 0.995);
        assert_eq!(json["top1_new"], 0.94);
        assert_eq!(json["metric"], "embedding");
        assert_eq!(json["nn_agreement_new"], 0.375);
        assert_eq!(json["accuracy"]["verdict"], "regression");

        // Without samples the cosine loss itself is reported, in cosine.
        let bare = embedding_run(&tmp.path().join("bare"), "r3", 0.94, &lost, false);
        let v = compare(&base, &bare, CompareOptions::default()).unwrap();
        let w8 = v.entries.iter().find(|e| e.strategy == "w8").unwrap();
        assert_eq!(
            w8.accuracy,
            Judgement::Regression(
                "mean cosine to FP32 0.9950 -> 0.9400 (no per-sentence outcomes to test)".into()
            )
        );
    }

    #[test]
    fn a_mixed_table_tags_cosines_and_keeps_top1_in_percent() {
        let entry = |metric: &str, top1: (f64, f64)| Entry {
            model: "m".into(),
            target: "t".into(),
            strategy: "s".into(),
            metric: metric.into(),
            top1_baseline: top1.0,
            top1_new: top1.1,
            cosine_min_baseline: None,
            cosine_min_new: None,
            nn_agreement_baseline: None,
            nn_agreement_new: None,
            accuracy: Judgement::Unchanged,
            latency_median_ns_baseline: 1,
            latency_median_ns_new: 1,
            latency: Judgement::Unchanged,
            size_bytes_baseline: 1,
            size_bytes_new: 1,
            size: Judgement::Unchanged,
        };
        let v = Verdict {
            regressions: 0,
            entries: vec![entry("top1", (0.91, 0.9)), entry("embedding", (0.99, 0.98))],
            missing: Vec::new(),
            added: Vec::new(),
        };
        let md = markdown(&v);
        assert!(md.contains("| top-1 % / mean cosine to FP32 |"), "{md}");
        assert!(
            md.contains("| 91.00 -> 90.00 |") && md.contains("| cos 0.9900 -> 0.9800 |"),
            "{md}"
        );
        let v = Verdict {
            entries: vec![entry("top1", (0.91, 0.9))],
            ..v
        };
        let md = markdown(&v);
        assert!(md.contains("| top-1 % |") && !md.contains("cosine"), "{md}");
    }

    #[test]
    fn mcnemar_matches_binomial_tails() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // 0 of 10 discordant pairs on one side: 2 * 0.5^10.
        assert!((mcnemar_exact(10, 0) - 2.0 * 0.5f64.powi(10)).abs() < 1e-12);
        assert!((mcnemar_exact(5, 5) - 1.0).abs() < 1e-12);
        assert!(mcnemar_exact(30, 10) < 0.01);
    }

    #[test]
    fn mann_whitney_sees_a_shift_and_not_a_shuffle() {
        let a: Vec<u64> = (0..40).map(|i| 1000 + (i * 37 % 50)).collect();
        let slower: Vec<u64> = a.iter().map(|v| v * 12 / 10).collect();
        assert!(mann_whitney_greater(&slower, &a) < 1e-6);
        assert!(mann_whitney_greater(&a, &slower) > 0.99);
        let mut shuffled = a.clone();
        shuffled.reverse();
        assert!(mann_whitney_greater(&shuffled, &a) > 0.3);
    }
}
