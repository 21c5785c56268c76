//! `harness report`: static HTML pages and charts (SVG shown, PNG beside it) read from result CSVs (rows only; reports never run
//! anything). One index, one page per (suite, model, target), and a kernel page when `harness bench` CSVs are
//! given. Pages reference their charts by relative path and load no script, style sheet or font from the
//! network, so the folder works offline from the file system.
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
    page.paragraph(&format!(
        "Latest run {} ({} trials, commit {}, CPU {}). Objective: {}, within a top-1 drop of {:.2} points.",
        latest.first().map_or("", |r| r.run_id.as_str()),
        latest.len(),
        latest.first().map_or("", |r| r.git_commit.as_str()),
        latest.first().map_or("", |r| r.cpu.as_str()),
        match opts.objective {
            Objective::Latency => "latency",
            Objective::Size => "size",
        },
        opts.max_drop * 100.0
    ));
    if let Some(rec) = rec {
        page.paragraph(&format!("Chosen: {}", rec.reason));
    }
    let mut chart = |name: &str, drawn: charts::Chart, alt: &str, page: &mut html::Page| {
        write_chart(dir, &format!("{stem}--{name}"), drawn, alt, page, charts)
    };
    chart(
        "pareto",
        charts::accuracy_latency(latest, chosen.as_deref())?,
        "top-1 against median latency; marker area follows the size ratio; the accuracy-latency front joined",
        &mut page,
    )?;
    chart(
        "size",
        charts::size_accuracy(latest, chosen.as_deref())?,
        "top-1 against serialized size (percent of FP32)",
        &mut page,
    )?;
    let probes = sensitivity_probes(all);
    if !probes.is_empty() {
        chart(
            "sensitivity",
            charts::sensitivity(&probes)?,
            "top-1 drop when each layer alone is quantized (the others FP32), from the latest run that probed it",
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
            charts::history(all, chosen.as_deref())?,
            "median latency and top-1 of FP32 and the chosen strategy over runs",
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
    page.table(
        &[
            "strategy",
            "kernel",
            "top-1 %",
            "drop (points)",
            "size KiB",
            "size %",
            "median",
            "p90",
            "layer precision",
        ],
        sorted
            .iter()
            .map(|r| {
                vec![
                    r.strategy.clone(),
                    r.kernel.clone(),
                    format!("{:.2}", r.top1 * 100.0),
                    format!("{:+.2}", -r.top1_drop * 100.0),
                    format!("{:.1}", r.size_bytes as f64 / 1024.0),
                    format!("{:.1}", r.size_ratio * 100.0),
                    crate::runner::measure::format_ns(r.latency_median_ns),
                    crate::runner::measure::format_ns(r.latency_p90_ns),
                    r.layer_precision.clone(),
                ]
            })
            .collect(),
        highlight,
    );
    Ok(page.finish())
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
/// the label names the width when several were probed.
fn sensitivity_probes(all: &[&Row]) -> Vec<(String, f64)> {
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
            (label, latest[key].top1_drop * 100.0)
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
