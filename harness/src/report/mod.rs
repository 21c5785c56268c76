//! `harness report`: static HTML pages and charts (SVG shown, PNG beside it) read from result CSVs (rows only; reports never run
//! anything). One index, one page per (suite, model, target), and a kernel page when `harness bench` CSVs are
//! given. Pages reference their charts by relative path and load no script, style sheet or font from the
//! network, so the folder works offline from the file system.
//!
//! Each model page labels its quality column by the rows' `metric` (see [`crate::results`]): top-1 accuracy in
//! percent for classifiers; for sentence-embedding models (`metric = embedding`) the mean cosine to FP32's
//! embeddings as a fraction (FP32: 1), drops in cosine, and the table adds the minimum cosine and the
//! nearest-neighbour agreement.
//!
//! Charts (plotters; SVG, and PNG with an embedded font): accuracy vs latency with the Pareto front (marker
//! area follows the size ratio), size vs accuracy, per-layer sensitivity (when the results hold
//! `sens.<layer>` probes), the same strategies on each target (back-end comparison, a page per model when the
//! suite has several targets), history over runs (one point per run of the chosen strategy and of FP32),
//! and kernel GOPS per shape against the measured peak. Tables are ordered by the objective, the chosen
//! strategy's row highlighted.

mod charts;
mod html;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::results::{Row, read_rows};
use crate::search::recommend;
use crate::suite::spec::Objective;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Results(#[from] crate::results::ResultsError),
    #[error("{}: {reason}", path.display())]
    Input { path: PathBuf, reason: String },
    #[error("chart `{chart}`: {reason}")]
    Chart { chart: String, reason: String },
}

/// One `harness bench` row (the columns the kernel chart needs).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct BenchRow {
    pub op: String,
    pub dtype: String,
    pub isa: String,
    pub kernel: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub threads: usize,
    pub median_ns: u64,
    pub gops: f64,
    pub peak_gops: f64,
    pub peak_fraction: f64,
}

/// What a report wrote.
#[derive(Debug, Default)]
pub struct ReportSummary {
    pub pages: Vec<PathBuf>,
    /// Chart files: each chart as SVG and as PNG.
    pub charts: Vec<PathBuf>,
}

/// How the report chooses the strategy it highlights.
#[derive(Clone, Copy, Debug)]
pub struct ReportOptions {
    pub objective: Objective,
    pub max_drop: f64,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            objective: Objective::Latency,
            max_drop: 0.005,
        }
    }
}

/// What a model's quality column (`top1`) measures, and how pages and charts label, scale and print it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quality {
    /// Top-1 accuracy: shown in percent, drops in points.
    Top1,
    /// Mean cosine to FP32's sentence embeddings: shown as a fraction (FP32: 1), drops as fractions.
    Cosine,
}

impl Quality {
    /// `Cosine` when any row is of an embedding model (its `metric`, or the cosine columns of a row that has them).
    fn of(rows: &[&Row]) -> Self {
        if rows
            .iter()
            .any(|r| r.metric == "embedding" || r.cosine_mean.is_some())
        {
            Quality::Cosine
        } else {
            Quality::Top1
        }
    }

    /// The quality as charts plot it.
    fn value(self, r: &Row) -> f64 {
        match self {
            Quality::Top1 => r.top1 * 100.0,
            Quality::Cosine => r.top1,
        }
    }

    /// The quality drop against FP32 as charts plot it.
    fn drop(self, r: &Row) -> f64 {
        match self {
            Quality::Top1 => r.top1_drop * 100.0,
            Quality::Cosine => r.top1_drop,
        }
    }

    /// A plotted value (of [`Quality::value`] or [`Quality::drop`]) as text.
    fn format(self, v: f64) -> String {
        match self {
            Quality::Top1 => format!("{v:.2}"),
            Quality::Cosine => format!("{v:.4}"),
        }
    }

    /// The quality's name in captions.
    fn name(self) -> &'static str {
        match self {
            Quality::Top1 => "top-1",
            Quality::Cosine => "mean cosine to FP32",
        }
    }

    /// The quality axis' description.
    fn axis(self) -> &'static str {
        match self {
            Quality::Top1 => "top-1 (%)",
            Quality::Cosine => "mean cosine to FP32",
        }
    }

    /// The drop axis' description.
    fn drop_axis(self) -> &'static str {
        match self {
            Quality::Top1 => "top-1 drop (points)",
            Quality::Cosine => "drop in mean cosine to FP32",
        }
    }

    /// The accuracy budget `max_drop` (a fraction) in words.
    fn budget(self, max_drop: f64) -> String {
        match self {
            Quality::Top1 => format!("within a top-1 drop of {:.2} points", max_drop * 100.0),
            Quality::Cosine => format!("within a drop in mean cosine to FP32 of {max_drop:.4}"),
        }
    }
}

/// Reads `inputs` (result CSVs of `harness run` / `search`, or CSVs of `harness bench`, told apart by their
/// header) and writes the site into `out`.
pub fn build_report(
    inputs: &[PathBuf],
    out: &Path,
    opts: ReportOptions,
) -> Result<ReportSummary, ReportError> {
    let mut rows: Vec<Row> = Vec::new();
    let mut bench: Vec<BenchRow> = Vec::new();
    for path in inputs {
        let header = std::fs::read_to_string(path)
            .map_err(|source| ReportError::Io {
                path: path.clone(),
                source,
            })?
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        if header.starts_with("run_id,") {
            rows.extend(read_rows(path)?);
        } else if header.starts_with("op,dtype,") {
            let mut reader = csv::Reader::from_path(path).map_err(|e| ReportError::Input {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            for r in reader.deserialize::<BenchRow>() {
                bench.push(r.map_err(|e| ReportError::Input {
                    path: path.clone(),
                    reason: e.to_string(),
                })?);
            }
        } else {
            return Err(ReportError::Input {
                path: path.clone(),
                reason:
                    "neither a results CSV (header starting `run_id,`) nor a `harness bench` CSV \
                         (header starting `op,dtype,`)"
                        .into(),
            });
        }
    }
    if rows.is_empty() && bench.is_empty() {
        return Err(ReportError::Input {
            path: inputs.first().cloned().unwrap_or_default(),
            reason: "no rows to report".into(),
        });
    }
    let mkdir = |dir: &Path| {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
            path: dir.to_path_buf(),
            source,
        })
    };
    mkdir(out)?;
    let mut summary = ReportSummary::default();
    let write = |path: PathBuf, text: &str, summary: &mut Vec<PathBuf>| {
        std::fs::write(&path, text).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        summary.push(path);
        Ok::<(), ReportError>(())
    };

    // suite -> model -> target -> rows (every run).
    let mut tree: BTreeMap<&str, BTreeMap<&str, BTreeMap<&str, Vec<&Row>>>> = BTreeMap::new();
    for r in &rows {
        tree.entry(&r.suite)
            .or_default()
            .entry(&r.model)
            .or_default()
            .entry(&r.target)
            .or_default()
            .push(r);
    }
    let mut index = html::Page::new("Quantization results");
    for (suite, models) in &tree {
        let dir = out.join(slug(suite));
        mkdir(&dir)?;
        index.heading(2, &format!("Suite {suite}"));
        let mut links = Vec::new();
        for (model, targets) in models {
            for (target, all) in targets {
                let latest = latest_run(all);
                let file = format!("{}--{}.html", slug(model), slug(target));
                let page = target_page(
                    suite,
                    model,
                    target,
                    all,
                    &latest,
                    opts,
                    &dir,
                    &file,
                    &mut summary.charts,
                )?;
                write(dir.join(&file), &page, &mut summary.pages)?;
                links.push((
                    format!("{}/{}", slug(suite), file),
                    format!("{model} on {target}"),
                ));
            }
            // Back ends: the same strategies on every target of this model (latest run of each).
            if targets.len() > 1 {
                let file = format!("{}--backends.html", slug(model));
                let page = backend_page(suite, model, targets, &dir, &file, &mut summary.charts)?;
                write(dir.join(&file), &page, &mut summary.pages)?;
                links.push((
                    format!("{}/{}", slug(suite), file),
                    format!("{model}: back ends compared"),
                ));
            }
        }
        index.links(&links);
        let runs: BTreeMap<&str, (&str, &str, usize)> = models
            .values()
            .flat_map(|t| t.values().flatten())
            .fold(BTreeMap::new(), |mut m, r| {
                let e = m.entry(r.run_id.as_str()).or_insert((
                    r.started_at.as_str(),
                    r.git_commit.as_str(),
                    0,
                ));
                e.2 += 1;
                m
            });
        index.table(
            &["run", "started", "commit", "trials"],
            runs.iter()
                .rev()
                .map(|(id, (at, commit, n))| {
                    vec![
                        id.to_string(),
                        at.to_string(),
                        commit.to_string(),
                        n.to_string(),
                    ]
                })
                .collect(),
            None,
        );
    }
    if !bench.is_empty() {
        let file = "kernels.html";
        let page = kernels_page(&bench, out, &mut summary.charts)?;
        write(out.join(file), &page, &mut summary.pages)?;
        index.heading(2, "Kernels");
        index.links(&[(
            file.to_string(),
            "GEMM throughput against the peak".to_string(),
        )]);
    }
    write(out.join("index.html"), &index.finish(), &mut summary.pages)?;
    Ok(summary)
}

/// The rows of the most recent run among `rows` (run ids sort by time).
fn latest_run<'a>(rows: &[&'a Row]) -> Vec<&'a Row> {
    let last = rows.iter().map(|r| r.run_id.as_str()).max().unwrap_or("");
    rows.iter().copied().filter(|r| r.run_id == last).collect()
}

/// A file-name-safe form of a name.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn target_page(
    suite: &str,
    model: &str,
    target: &str,
    all: &[&Row],
    latest: &[&Row],
    opts: ReportOptions,
    dir: &Path,
    file: &str,
    charts: &mut Vec<PathBuf>,
) -> Result<String, ReportError> {
    let owned: Vec<Row> = latest.iter().map(|r| (*r).clone()).collect();
    let recs = recommend(&owned, opts.objective, opts.max_drop);
    let rec = recs.first();
    let chosen = rec.and_then(|r| r.best).map(|r| r.strategy.clone());
    let stem = file.trim_end_matches(".html");
    let mut page = html::Page::new(&format!("{model} on {target} ({suite})"));
    let q = Quality::of(all);
    page.paragraph(&format!(
        "Latest run {} ({} trials, commit {}, CPU {}). Objective: {}, {}.",
        latest.first().map_or("", |r| r.run_id.as_str()),
        latest.len(),
        latest.first().map_or("", |r| r.git_commit.as_str()),
        latest.first().map_or("", |r| r.cpu.as_str()),
        match opts.objective {
            Objective::Latency => "latency",
            Objective::Size => "size",
        },
        q.budget(opts.max_drop)
    ));
    if q == Quality::Cosine {
        page.paragraph(
            "A sentence-embedding model: quality is the mean cosine of each strategy's sentence embeddings to \
             FP32's (FP32: 1), with the smallest cosine and the nearest-neighbour agreement (share of sentences \
             whose nearest other sentence is FP32's) beside it.",
        );
    }
    if let Some(rec) = rec {
        page.paragraph(&format!("Chosen: {}", rec.reason));
    }
    let mut chart = |name: &str, drawn: charts::Chart, alt: &str, page: &mut html::Page| {
        write_chart(dir, &format!("{stem}--{name}"), drawn, alt, page, charts)
    };
    chart(
        "pareto",
        charts::accuracy_latency(latest, chosen.as_deref(), q)?,
        &format!(
            "{} against median latency; marker area follows the size ratio; the accuracy-latency front joined",
            q.name()
        ),
        &mut page,
    )?;
    chart(
        "size",
        charts::size_accuracy(latest, chosen.as_deref(), q)?,
        &format!("{} against serialized size (percent of FP32)", q.name()),
        &mut page,
    )?;
    let probes = sensitivity_probes(all, q);
    if !probes.is_empty() {
        chart(
            "sensitivity",
            charts::sensitivity(&probes, q)?,
            &format!(
                "{} when each layer alone is quantized (the others FP32), from the latest run that probed it",
                q.drop_axis()
            ),
            &mut page,
        )?;
    }
    let runs = all
        .iter()
        .map(|r| r.run_id.as_str())
        .collect::<std::collections::BTreeSet<_>>();
    if runs.len() > 1 {
        chart(
            "history",
            charts::history(all, chosen.as_deref(), q)?,
            &format!(
                "median latency and {} of FP32 and the chosen strategy over runs",
                q.name()
            ),
            &mut page,
        )?;
    }
    let mut sorted: Vec<&Row> = latest.to_vec();
    match opts.objective {
        Objective::Latency => sorted.sort_by_key(|r| (r.latency_median_ns, r.size_bytes)),
        Objective::Size => sorted.sort_by_key(|r| (r.size_bytes, r.latency_median_ns)),
    }
    let highlight = sorted
        .iter()
        .position(|r| Some(r.strategy.as_str()) == chosen.as_deref());
    let (header, body) = quality_table(&sorted, q);
    page.table(&header, body, highlight);
    Ok(page.finish())
}

/// The model page's table of `rows` (in that order): top-1 in percent and its drop in points for classifiers;
/// for embedding models the mean cosine to FP32 and its drop as fractions, the minimum cosine and the
/// nearest-neighbour agreement (percent; empty where the row has none).
fn quality_table(rows: &[&Row], q: Quality) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut header = vec!["strategy", "kernel"];
    header.extend(match q {
        Quality::Top1 => vec!["top-1 %", "drop (points)"],
        Quality::Cosine => vec![
            "mean cosine to FP32",
            "drop",
            "cosine min",
            "nn agreement %",
        ],
    });
    header.extend(["size KiB", "size %", "median", "p90", "layer precision"]);
    let body = rows
        .iter()
        .map(|r| {
            let mut row = vec![r.strategy.clone(), r.kernel.clone()];
            match q {
                Quality::Top1 => row.extend([
                    format!("{:.2}", r.top1 * 100.0),
                    format!("{:+.2}", -r.top1_drop * 100.0),
                ]),
                Quality::Cosine => row.extend([
                    format!("{:.4}", r.top1),
                    format!("{:+.4}", -r.top1_drop),
                    r.cosine_min.map(|c| format!("{c:.4}")).unwrap_or_default(),
                    r.nn_agreement
                        .map(|a| format!("{:.1}", a * 100.0))
                        .unwrap_or_default(),
                ]),
            }
            row.extend([
                format!("{:.1}", r.size_bytes as f64 / 1024.0),
                format!("{:.1}", r.size_ratio * 100.0),
                crate::runner::measure::format_ns(r.latency_median_ns),
                crate::runner::measure::format_ns(r.latency_p90_ns),
                r.layer_precision.clone(),
            ]);
            row
        })
        .collect();
    (header, body)
}

/// Writes `dir/<stem>.svg` and `dir/<stem>.png`, shows the SVG on `page` with a link to the PNG, and
/// lists both files in `written`.
fn write_chart(
    dir: &Path,
    stem: &str,
    chart: charts::Chart,
    alt: &str,
    page: &mut html::Page,
    written: &mut Vec<PathBuf>,
) -> Result<(), ReportError> {
    let (svg, png) = (format!("{stem}.svg"), format!("{stem}.png"));
    for (file, bytes) in [(&svg, chart.svg.as_bytes()), (&png, &chart.png[..])] {
        let path = dir.join(file);
        std::fs::write(&path, bytes).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    page.chart(&svg, &png, alt);
    Ok(())
}

/// Per-layer sensitivity: the probes of `harness search --algorithm sensitivity`, or of a suite's own
/// `sens.<layer>` maps (one layer quantized, the others FP32: strategies named `...-mix.sens.<layer>`).
/// Each (layer, bit width) from the latest run that probed it, in the order the layers were first probed;
/// the label names the width when several were probed; the value is the drop as `q` plots it.
fn sensitivity_probes(all: &[&Row], q: Quality) -> Vec<(String, f64)> {
    let mut latest: BTreeMap<(&str, u32), &Row> = BTreeMap::new();
    let mut order: Vec<(&str, u32)> = Vec::new();
    for r in all {
        let Some((_, layer)) = r.strategy.split_once("-mix.sens.") else {
            continue;
        };
        let key = (layer, r.weight_bits);
        match latest.get(&key) {
            None => {
                order.push(key);
                latest.insert(key, r);
            }
            Some(seen) if seen.run_id < r.run_id => {
                latest.insert(key, r);
            }
            Some(_) => {}
        }
    }
    let widths = order
        .iter()
        .map(|k| k.1)
        .collect::<std::collections::BTreeSet<_>>();
    order
        .iter()
        .map(|key| {
            let label = if widths.len() > 1 {
                format!("{} @ {} bits", key.0, key.1)
            } else {
                key.0.to_string()
            };
            (label, q.drop(latest[key]))
        })
        .collect()
}

fn backend_page(
    suite: &str,
    model: &str,
    targets: &BTreeMap<&str, Vec<&Row>>,
    dir: &Path,
    file: &str,
    charts: &mut Vec<PathBuf>,
) -> Result<String, ReportError> {
    let latest: BTreeMap<&str, Vec<&Row>> = targets
        .iter()
        .map(|(t, rows)| (*t, latest_run(rows)))
        .collect();
    let mut page = html::Page::new(&format!("{model}: back ends ({suite})"));
    page.paragraph(
        "The same strategies on every target of the suite (latest run of each): median latency per target, \
         each bar labelled with the ISA whose kernels ran.",
    );
    write_chart(
        dir,
        file.trim_end_matches(".html"),
        charts::backends(&latest)?,
        "median latency of each strategy on each target",
        &mut page,
        charts,
    )?;
    let strategies: std::collections::BTreeSet<&str> = latest
        .values()
        .flatten()
        .map(|r| r.strategy.as_str())
        .collect();
    let mut header = vec!["strategy".to_string()];
    header.extend(latest.keys().map(|t| t.to_string()));
    let body = strategies
        .iter()
        .map(|s| {
            let mut row = vec![s.to_string()];
            for rows in latest.values() {
                row.push(
                    rows.iter()
                        .find(|r| r.strategy == *s)
                        .map(|r| {
                            format!(
                                "{} ({})",
                                crate::runner::measure::format_ns(r.latency_median_ns),
                                r.isa
                            )
                        })
                        .unwrap_or_default(),
                );
            }
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    page.table(&header, body, None);
    Ok(page.finish())
}

fn kernels_page(
    bench: &[BenchRow],
    out: &Path,
    charts: &mut Vec<PathBuf>,
) -> Result<String, ReportError> {
    let mut page = html::Page::new("Kernels: GEMM throughput against the peak");
    page.paragraph(
        "GOPS (2·m·k·n per second) of each kernel per shape, beside the peak of the kernel's own ISA from the \
         measured clock (harness bench).",
    );
    write_chart(
        out,
        "kernels",
        charts::kernels(bench)?,
        "GOPS per shape and kernel, and the peak",
        &mut page,
        charts,
    )?;
    page.table(
        &[
            "op", "dtype", "isa", "kernel", "shape", "threads", "median", "GOPS", "peak", "of peak",
        ],
        bench
            .iter()
            .map(|b| {
                vec![
                    b.op.clone(),
                    b.dtype.clone(),
                    b.isa.clone(),
                    b.kernel.clone(),
                    format!("{}x{}x{}", b.m, b.k, b.n),
                    b.threads.to_string(),
                    crate::runner::measure::format_ns(b.median_ns),
                    format!("{:.1}", b.gops),
                    format!("{:.1}", b.peak_gops),
                    format!("{:.1} %", b.peak_fraction * 100.0),
                ]
            })
            .collect(),
        None,
    );
    Ok(page.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::sample_row;

    /// FP32 and one int8 strategy of one model, as an embedding model's rows or a classifier's.
    fn rows(embedding: bool) -> Vec<Row> {
        let mut fp32 = sample_row("fp32");
        let mut w8 = sample_row("w8-dynamic-channel-affine");
        (fp32.latency_median_ns, w8.latency_median_ns) = (200, 100);
        w8.top1_drop = 0.01;
        w8.top1 -= 0.01;
        if embedding {
            for (r, min, nn) in [(&mut fp32, 1.0, 1.0), (&mut w8, 0.97, 0.875)] {
                r.metric = "embedding".into();
                r.top1 = 1.0 - r.top1_drop;
                (r.cosine_mean, r.cosine_min, r.nn_agreement) = (Some(r.top1), Some(min), Some(nn));
            }
        }
        vec![fp32, w8]
    }

    /// The page of `rows` and the SVG text of its charts.
    fn page(rows: &[Row]) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let refs: Vec<&Row> = rows.iter().collect();
        let mut charts = Vec::new();
        let html = target_page(
            "s",
            "m",
            "t",
            &refs,
            &refs,
            ReportOptions {
                objective: Objective::Latency,
                max_drop: 0.02,
            },
            dir.path(),
            "m--t.html",
            &mut charts,
        )
        .unwrap();
        let svg = charts
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "svg"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        (html, svg)
    }

    #[test]
    fn embedding_pages_label_quality_as_mean_cosine_with_its_columns() {
        let (html, svg) = page(&rows(true));
        for text in [
            "<th>mean cosine to FP32</th>",
            "<th>cosine min</th>",
            "<th>nn agreement %</th>",
            "<td>0.9900</td><td>-0.0100</td><td>0.9700</td><td>87.5</td>",
            "within a drop in mean cosine to FP32 of 0.0200",
            "mean cosine to FP32 against median latency",
        ] {
            assert!(html.contains(text), "page lacks `{text}`:\n{html}");
        }
        assert!(!html.contains("top-1"), "{html}");
        assert!(
            svg.contains("mean cosine to FP32 vs median latency") && !svg.contains("top-1"),
            "{svg}"
        );
    }

    #[test]
    fn classifier_pages_keep_top1_in_percent() {
        let (html, svg) = page(&rows(false));
        for text in [
            "<th>top-1 %</th>",
            "<th>drop (points)</th>",
            "<td>49.00</td><td>-1.00</td>",
            "within a top-1 drop of 2.00 points",
        ] {
            assert!(html.contains(text), "page lacks `{text}`:\n{html}");
        }
        assert!(!html.contains("cosine"), "{html}");
        assert!(svg.contains("top-1 vs median latency") && svg.contains("top-1 (%)"));
    }
}
