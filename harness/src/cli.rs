//! Command-line interface: argument parsing and the commands, over the harness library.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use harness::Error;
use harness::results::read_rows;
use harness::runner::{self, Prepared, RunOptions};
use harness::search::{self, recommend, render, summary_table};
use harness::suite::Suite;
use harness::suite::spec::Objective;

const ABOUT: &str =
    "Measure quantization strategies for a model on this machine, and pick the one to ship.";

const LONG_ABOUT: &str = "\
Measure quantization strategies for a model on this machine, and pick the one to ship.

A suite file (TOML) lists datasets, models, hardware targets and a strategy space. `harness run` builds
every strategy of the space, runs it through the CPU kernels on held-out data, and appends one CSV row per
trial (accuracy, size, latency, provenance) to results/<suite>/<run-id>.csv. `harness search` picks the
fastest (or smallest) strategy within an accuracy budget and shows the Pareto front.

Examples:
  harness run                                   # the built-in quickstart suite (MNIST CNN, int8 PTQ)
  harness run suites/quickstart.toml
  harness run suites/nightly.toml --fresh --json > run.json   # machine-readable summary; progress on stderr
  harness search suites/quickstart.toml --max-drop 0.002
  harness search --from results/quickstart/20261125-120000-123.csv --objective size
  harness search suites/strategies.toml --target this-cpu --algorithm greedy --objective size --json
  harness quantize m.onnx --strategy w8-static-channel-sym-minmax --calib calib.npy --out m.qhq --qdq m.qdq.onnx
  harness infer m.qhq --input input=x.npy --out outputs/
  harness info                                  # CPU features and the kernels this machine runs

Exit codes: 0 success, 1 failure while running, 2 bad input (suite, data, model, options).";

#[derive(Parser, Debug)]
#[command(name = "harness", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ObjectiveArg {
    /// Lowest median latency.
    Latency,
    /// Fewest serialized bytes.
    Size,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AlgorithmArg {
    /// Every candidate.
    Grid,
    /// A seeded random sample.
    Random,
    /// Cheapest first, falling back to more precise options when accuracy breaks.
    Greedy,
    /// Per-layer sensitivity measured once (each layer alone at the space's lowest width, the others
    /// FP32), then the most sensitive layers kept at its highest width until the accuracy budget holds.
    Sensitivity,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every trial of a suite and append the rows to results/<suite>/<run-id>.csv.
    #[command(
        long_about = "Run every trial of a suite: FP32 plus every strategy of its [space], for every \
        model and target. Rows are appended to <results-dir>/<suite>/<run-id>.csv as each trial ends, so an \
        interrupted run keeps what it measured. Bad input (unknown key, missing file, unsupported op, empty \
        split) is reported before any result file is written, with exit code 2."
    )]
    Run {
        /// The suite file. Without it, the built-in quickstart suite (suites/quickstart.toml) runs.
        suite: Option<PathBuf>,
        /// Folder that receives <suite>/<run-id>.csv.
        #[arg(long, default_value = "results")]
        results_dir: PathBuf,
        /// No progress lines on stderr.
        #[arg(long, short)]
        quiet: bool,
        /// Print one JSON object on stdout instead of the table: suite, run id, the CSV and samples files,
        /// trials run and reused, every row's key columns, and the strategy the suite's [search] settings
        /// choose per model and target. Progress stays on stderr (--quiet silences it).
        #[arg(long)]
        json: bool,
        /// Measure every trial again instead of reusing the suite's earlier results.
        #[arg(long)]
        fresh: bool,
        /// Run only shard I of N (0-based): the trials whose index in the suite's order is I modulo N, so N
        /// machines (a CI matrix, a Slurm array) split the sweep; `harness merge` joins their CSVs.
        #[arg(long, value_name = "I/N", value_parser = parse_shard)]
        shard: Option<(usize, usize)>,
    },
    /// A regression verdict: NEW against BASELINE results, per model, target and strategy; exit 1 on a regression.
    #[command(
        long_about = "Compare two result CSVs for CI: per (model, target, strategy) in both, accuracy is judged \
        on the paired per-sample outcomes (exact McNemar test; for sentence-embedding models, whose quality is \
        shown as the mean cosine to FP32, the per-sentence nearest-neighbour agreement), latency on the timing \
        samples (one-sided Mann-Whitney U, and the median must also rise by more than --latency-threshold), \
        size exactly. The samples are read from the <run-id>.samples.jsonl files `harness run` writes beside \
        each CSV. Prints a markdown summary fit for a pull-request comment; --json FILE writes the machine-readable verdict. \
        Exit 1 on any regression (a trial missing from NEW counts), 0 otherwise."
    )]
    Compare {
        baseline: PathBuf,
        new: PathBuf,
        /// Significance level of the tests.
        #[arg(long, default_value_t = 0.01)]
        alpha: f64,
        /// Relative rise of the median latency below which no slowdown is reported (0.10 = 10 %).
        #[arg(long, default_value_t = 0.10)]
        latency_threshold: f64,
        /// Sentence encoders: a cosine regression also needs the mean cosine to FP32 this much lower (a
        /// significant sign test on per-sentence cosines alone can be float-rounding drift)
        #[arg(long, default_value_t = 0.001)]
        cosine_threshold: f64,
        /// Write the verdict as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Join the CSVs of a sharded run into one, in the suite's trial order.
    #[command(
        long_about = "Join the result CSVs that `harness run SUITE --shard I/N` wrote on N machines into one \
        file, in the suite's trial order: it equals the unsharded run's rows apart from the timing and \
        provenance columns. FP32 baselines that several shards measured are kept once; a trial in two shards, \
        a trial the suite does not have, or one in no shard is an error (exit 2)."
    )]
    Merge {
        /// The suite the shards ran.
        #[arg(long)]
        suite: PathBuf,
        /// The merged CSV to write (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// The shards' CSVs.
        #[arg(required = true, num_args = 1..)]
        shards: Vec<PathBuf>,
    },
    /// Search the strategy space for a target: the best strategy within an accuracy budget, with the reason,
    /// and the Pareto front.
    #[command(
        long_about = "Search the suite's strategy space (only what each target's profile runs) for every \
        model and target, and pick the best strategy whose top-1 drop against FP32 stays within --max-drop, \
        with the reason and the Pareto front over accuracy, latency and size. grid runs every candidate, \
        random a seeded sample, greedy starts from the cheapest candidates and falls back to more precise \
        ones when the accuracy budget breaks, then keeps looking for faster or smaller ones; sensitivity \
        measures each layer alone at the space's lowest bit width (the others FP32) and keeps the most \
        sensitive layers at its highest width until the budget holds. Every trial is \
        appended to results/<suite>/<run-id>.csv as it ends; trials already in the suite's results folder \
        (an interrupted search included) are reused, not measured again (--fresh measures everything). A \
        strategy slower than FP32 on its target is flagged and never chosen for latency. With --from, \
        chooses among the rows of earlier results instead."
    )]
    Search {
        /// The suite file (default: the built-in quickstart suite). With --from, only its [search] settings
        /// are used (without a suite: latency, and a 0.005 drop).
        suite: Option<PathBuf>,
        /// The target to search for (default: every target of the suite).
        #[arg(long)]
        target: Option<String>,
        /// Only this model of the suite (default: every model).
        #[arg(long)]
        model: Option<String>,
        /// How to explore the space.
        #[arg(long, value_enum, default_value = "greedy")]
        algorithm: AlgorithmArg,
        /// Largest acceptable top-1 drop, as a fraction (0.005 = half a point; for embedding models, the
        /// drop of the mean cosine). Default: the suite's [search] max_accuracy_drop.
        #[arg(long)]
        max_drop: Option<f64>,
        /// What "best" means. Default: the suite's [search] objective.
        #[arg(long, value_enum)]
        objective: Option<ObjectiveArg>,
        /// At most this many trials per model and target, FP32 included (random without it: a third of
        /// the space).
        #[arg(long)]
        budget_trials: Option<usize>,
        /// Stop proposing trials after this many seconds (the trial under way finishes).
        #[arg(long)]
        budget_seconds: Option<f64>,
        /// Print one JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
        /// Measure every trial again instead of reusing the suite's earlier results.
        #[arg(long)]
        fresh: bool,
        /// Choose among the rows of these results CSVs instead of running.
        #[arg(long, num_args = 1..)]
        from: Vec<PathBuf>,
        /// Write the chosen strategy as a suite fragment: a [space] (with its per-layer map) that expands
        /// to exactly that strategy, for a suite (a nightly one) to pin. Needs one model and one target.
        #[arg(long, value_name = "FILE.toml")]
        save_strategy: Option<PathBuf>,
        /// Save the chosen quantized model as a loadable .qhq artifact (`harness infer` runs it). Needs one
        /// model and one target.
        #[arg(long, value_name = "FILE.qhq")]
        save_model: Option<PathBuf>,
        #[arg(long, default_value = "results")]
        results_dir: PathBuf,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Show this CPU's features, the ISA the dispatcher would pick, and every kernel.
    Info,
    /// Time GEMM kernels on given shapes: CSV with GOPS and the fraction of this core's peak.
    Bench(harness::bench::BenchArgs),
    /// Write each dataset's calibration and evaluation split as NumPy files, for peer runtimes and notebooks.
    #[command(
        long_about = "Write each dataset's calibration and evaluation split, exactly as `run` uses it \
        (same seed, stratification and normalisation), to <out>/<dataset>/{calibration,evaluation}_f32.npy and \
        {calibration,evaluation}_labels_i64.npy, so that another runtime can be measured on the same samples."
    )]
    ExportSplit {
        /// The suite file (default: the built-in quickstart suite).
        suite: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write static HTML pages with charts (SVG, and PNG beside each) from result CSVs (and `harness bench` CSVs).
    #[command(
        long_about = "Read result CSVs (of `harness run` / `search`; several runs give history charts) and \
        `harness bench` CSVs, and write an offline HTML site into --out: an index, one page per suite, model \
        and target (top-1 vs latency with the Pareto front and the chosen strategy, size vs top-1, per-layer \
        sensitivity when the results hold `sens.<layer>` probes, history over runs, the table ordered by the \
        objective with the chosen row highlighted), a back-end page per model when it ran on several targets, \
        and a kernel page (GOPS per shape against the peak). Each chart is an SVG shown on its page and a PNG \
        beside it (text drawn with an embedded font); nothing is loaded from the network."
    )]
    Report {
        /// Result or bench CSV files.
        #[arg(required = true, num_args = 1..)]
        results: Vec<PathBuf>,
        /// Folder that receives index.html and the pages.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        /// What "best" means for the highlighted strategy.
        #[arg(long, value_enum, default_value = "latency")]
        objective: ObjectiveArg,
        /// Largest acceptable top-1 drop for the highlighted strategy, as a fraction.
        #[arg(long, default_value_t = 0.005)]
        max_drop: f64,
    },
    /// Train a built-in architecture from scratch on IDX data (Fashion-MNIST) and write it as ONNX.
    Train(harness::train::TrainArgs),
    /// Quantize an ONNX model with one strategy into a loadable `.qhq` file and / or a QDQ ONNX model.
    #[command(
        long_about = "Quantize an ONNX model with one strategy (named as result rows name it), calibrated on \
        .npy samples of its input, and write the loadable quantized model (--out FILE.qhq: packed weights, \
        quantization and activation parameters, float constants and the graph's structure; `harness infer` runs \
        it without recalibrating) and / or a QDQ ONNX model (--qdq FILE.onnx: ONNX Runtime's static QDQ format \
        with our weights, scales and zero points)."
    )]
    Quantize(harness::quant::artifact::QuantizeArgs),
    /// Run an ONNX model (FP32) or a `.qhq` quantized model on .npy inputs; write every output as .npy.
    Infer(harness::quant::artifact::InferArgs),
    /// Show a model's ops, parameters, and what each quantization strategy quantizes or keeps in FP32 (and why),
    /// with static mode's Q/DQ boundaries. MODEL: an ONNX file, a BERT folder, or `minilm`.
    Inspect(harness::inspect::InspectArgs),
}

fn load_suite(path: Option<&Path>) -> Result<Suite, Error> {
    Ok(match path {
        Some(p) => Suite::load(p)?,
        None => Suite::embedded_quickstart()?,
    })
}

/// Prepares (every input error surfaces here) and runs every trial of `suite`.
fn run_suite(
    suite: Suite,
    results_dir: PathBuf,
    quiet: bool,
    fresh: bool,
    shard: Option<(usize, usize)>,
) -> Result<runner::RunOutcome, Error> {
    let prepared = Prepared::new(suite, !quiet)?;
    runner::run(
        &prepared,
        &RunOptions {
            results_dir,
            progress: !quiet,
            resume: !fresh,
            shard,
        },
    )
}

/// `harness run --json`: the run's files and counts, every row's key columns, and the choice of the suite's
/// `[search]` settings per model and target.
fn run_json(
    suite: &str,
    search: &harness::suite::spec::SearchSpec,
    outcome: &runner::RunOutcome,
) -> serde_json::Value {
    use serde_json::json;
    let rows: Vec<serde_json::Value> = outcome
        .rows
        .iter()
        .map(|r| {
            json!({
                "model": r.model,
                "target": r.target,
                "strategy": r.strategy,
                "isa": r.isa,
                "kernel": r.kernel,
                "top1": r.top1,
                "top1_drop": r.top1_drop,
                "size_bytes": r.size_bytes,
                "size_ratio": r.size_ratio,
                "latency_median_ns": r.latency_median_ns,
                "latency_p90_ns": r.latency_p90_ns,
                "throughput_per_s": r.throughput_per_s,
                "batch": r.batch,
                "threads": r.threads,
            })
        })
        .collect();
    let chosen: Vec<serde_json::Value> =
        recommend(&outcome.rows, search.objective, search.max_accuracy_drop)
            .iter()
            .map(|rec| {
                json!({
                    "model": rec.model,
                    "target": rec.target,
                    "strategy": rec.best.map(|r| r.strategy.as_str()),
                    "reason": rec.reason,
                })
            })
            .collect();
    json!({
        "suite": suite,
        "run_id": outcome.csv.file_stem().and_then(|s| s.to_str()),
        "csv": outcome.csv,
        "samples": runner::samples::samples_path(&outcome.csv),
        "trials_run": outcome.trials_run,
        "trials_reused": outcome.trials_reused,
        "objective": match search.objective {
            Objective::Latency => "latency",
            Objective::Size => "size",
        },
        "max_accuracy_drop": search.max_accuracy_drop,
        "chosen": chosen,
        "rows": rows,
    })
}

/// `I/N` with `I < N`.
fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{s}`: expected I/N with 0 <= I < N, e.g. 0/4");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i < n { Ok((i, n)) } else { Err(bad()) }
}

/// Writes the choice of a one-(model, target) search as a strategy fragment and / or a `.qhq` model.
fn save_choice(
    session: &mut runner::Session<'_>,
    results: &[search::SearchResult],
    cfg: &search::engine::Config,
    strategy_file: Option<&Path>,
    model_file: Option<&Path>,
) -> Result<(), Error> {
    let [r] = results else {
        return Err(Error::Usage(format!(
            "--save-strategy and --save-model save one choice; this search made {}",
            results.len()
        )));
    };
    let Some(chosen) = r.chosen(cfg) else {
        return Err(Error::Run(format!(
            "nothing to save: no strategy for {} on {} keeps the top-1 drop within {}",
            r.model, r.target, cfg.max_drop
        )));
    };
    let write_err = |path: &Path, e: std::io::Error| {
        Error::Run(format!("cannot write {}: {e}", path.display()))
    };
    if let Some(path) = strategy_file {
        let map = match chosen {
            harness::quant::Strategy::Linear(l) => l.mixed.map(|id| session.mixed(id).clone()),
            _ => None,
        };
        let header = format!(
            "Chosen by `harness search --algorithm {} --objective {} --max-drop {}` for model `{}` on target `{}`\n(suite `{}`). Use this [space] as a suite's own to pin the choice.",
            cfg.algorithm.name(),
            match cfg.objective {
                Objective::Latency => "latency",
                Objective::Size => "size",
            },
            cfg.max_drop,
            r.model,
            r.target,
            session.prepared().suite.name
        );
        let text = search::strategy_fragment(&chosen, map.as_ref(), &header);
        std::fs::write(path, text).map_err(|e| write_err(path, e))?;
        eprintln!("strategy: {} written to {}", chosen.name(), path.display());
    }
    if let Some(path) = model_file {
        let q = session.quantized(r.m, r.t, &chosen).map_err(|e| match chosen {
            harness::quant::Strategy::Fp32 => Error::Usage(format!(
                "--save-model: the choice is FP32 (no quantized strategy keeps the budget): nothing to quantize ({e})"
            )),
            _ => e,
        })?;
        let bytes = q
            .save(path)
            .map_err(|e| Error::Run(format!("--save-model: {} ({})", e, chosen.name())))?;
        eprintln!(
            "model: {} written to {} ({bytes} bytes)",
            chosen.name(),
            path.display()
        );
    }
    Ok(())
}

pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Run {
            suite,
            results_dir,
            quiet,
            json,
            fresh,
            shard,
        } => {
            let suite = load_suite(suite.as_deref())?;
            let (name, search) = (suite.name.clone(), suite.search.clone());
            let outcome = run_suite(suite, results_dir, quiet, fresh, shard)?;
            if json {
                println!("{}", run_json(&name, &search, &outcome));
                return Ok(());
            }
            let rows: Vec<_> = outcome.rows.iter().collect();
            println!("{}", summary_table(&rows));
            println!(
                "trials: {} run, {} reused from the trial log",
                outcome.trials_run, outcome.trials_reused
            );
            println!("results: {}", outcome.csv.display());
            Ok(())
        }
        Command::Search {
            suite,
            target,
            model,
            algorithm,
            max_drop,
            objective,
            budget_trials,
            budget_seconds,
            json,
            fresh,
            from,
            save_strategy,
            save_model,
            results_dir,
            quiet,
        } => {
            let objective = objective.map(|o| match o {
                ObjectiveArg::Latency => Objective::Latency,
                ObjectiveArg::Size => Objective::Size,
            });
            if let Some(d) = max_drop
                && !(0.0..=1.0).contains(&d)
            {
                return Err(Error::Usage(format!(
                    "--max-drop {d} is not a fraction in [0, 1] (0.005 is half a point)"
                )));
            }
            let saving = save_strategy.is_some() || save_model.is_some();
            if !from.is_empty() && saving {
                return Err(Error::Usage(
                    "--save-strategy and --save-model need a search, not --from".into(),
                ));
            }
            if !from.is_empty() {
                let mut rows = Vec::new();
                for path in &from {
                    // A results file the user names is input: a bad one exits 2 like a bad suite.
                    rows.extend(read_rows(path).map_err(|e| Error::Usage(e.to_string()))?);
                }
                if rows.is_empty() {
                    return Err(Error::Usage("no result rows to choose from".into()));
                }
                // A suite named beside `--from` lends its [search] settings, as it does to a search that runs.
                let settings = match &suite {
                    Some(_) => Some(load_suite(suite.as_deref())?.search),
                    None => None,
                };
                let objective = objective
                    .or(settings.as_ref().map(|s| s.objective))
                    .unwrap_or_default();
                let max_drop = max_drop
                    .or(settings.as_ref().map(|s| s.max_accuracy_drop))
                    .unwrap_or(0.005);
                print!("{}", render(&recommend(&rows, objective, max_drop)));
                return Ok(());
            }
            if budget_trials == Some(0) {
                return Err(Error::Usage(
                    "--budget-trials must be at least 1 (FP32 is the first trial)".into(),
                ));
            }
            if let Some(s) = budget_seconds
                && !(s > 0.0 && s.is_finite())
            {
                return Err(Error::Usage(format!(
                    "--budget-seconds {s} is not a positive number"
                )));
            }
            let suite = load_suite(suite.as_deref())?;
            let cfg = search::engine::Config {
                algorithm: match algorithm {
                    AlgorithmArg::Grid => search::engine::Algorithm::Grid,
                    AlgorithmArg::Random => search::engine::Algorithm::Random,
                    AlgorithmArg::Greedy => search::engine::Algorithm::Greedy,
                    AlgorithmArg::Sensitivity => search::engine::Algorithm::Sensitivity,
                },
                objective: objective.unwrap_or(suite.search.objective),
                max_drop: max_drop.unwrap_or(suite.search.max_accuracy_drop),
                budget_trials,
                deadline: None,
                seed: suite.seed,
            };
            if saving
                && (model.is_none() && suite.models.len() != 1
                    || target.is_none() && suite.targets.len() != 1)
            {
                return Err(Error::Usage(
                    "--save-strategy and --save-model save one choice: name the model and the target with --model and --target".into(),
                ));
            }
            let prepared = Prepared::new(suite, !quiet)?;
            let cfg = search::engine::Config {
                // The time budget starts once the data and models are loaded.
                deadline: budget_seconds
                    .map(|s| std::time::Instant::now() + std::time::Duration::from_secs_f64(s)),
                ..cfg
            };
            let mut session = runner::Session::open(
                &prepared,
                &RunOptions {
                    results_dir,
                    progress: !quiet,
                    resume: !fresh,
                    shard: None,
                },
            )?;
            let results =
                search::run_search(&mut session, &cfg, target.as_deref(), model.as_deref())?;
            let (run, reused) = (session.trials_run(), session.trials_reused());
            if json {
                println!(
                    "{}",
                    search::search_json(&results, &cfg, run, reused, session.csv())
                );
            } else {
                print!("{}", search::render_search(&results, &cfg, run, reused));
            }
            eprintln!("results: {}", session.csv().display());
            if saving {
                save_choice(
                    &mut session,
                    &results,
                    &cfg,
                    save_strategy.as_deref(),
                    save_model.as_deref(),
                )?;
            }
            Ok(())
        }
        Command::ExportSplit { suite, out } => {
            let suite = load_suite(suite.as_deref())?;
            for def in &suite.datasets {
                let data = runner::prepare_data(def, suite.seed)?;
                for path in data.export(&out.join(&def.name))? {
                    println!("{}", path.display());
                }
            }
            Ok(())
        }
        Command::Bench(args) => harness::bench::run(&args),
        Command::Train(args) => harness::train::command::run(&args),
        Command::Compare {
            baseline,
            new,
            alpha,
            latency_threshold,
            cosine_threshold,
            json,
        } => {
            let verdict = harness::compare::compare(
                &baseline,
                &new,
                harness::compare::CompareOptions {
                    alpha,
                    latency_threshold,
                    cosine_threshold,
                },
            )?;
            println!("{}", harness::compare::markdown(&verdict));
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&verdict)
                    .map_err(|e| Error::Run(e.to_string()))?;
                std::fs::write(&path, text)
                    .map_err(|e| Error::Run(format!("{}: {e}", path.display())))?;
            }
            if verdict.regressions > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Merge { suite, out, shards } => {
            let prepared = Prepared::new(load_suite(Some(&suite))?, false)?;
            let merged = runner::merge::merge(&prepared, &shards, &out)?;
            println!(
                "merged {} trials ({} repeated FP32 baselines dropped) into {}",
                merged.rows,
                merged.baselines_dropped,
                merged.csv.display()
            );
            Ok(())
        }
        Command::Report {
            results,
            out,
            objective,
            max_drop,
        } => {
            let opts = harness::report::ReportOptions {
                objective: match objective {
                    ObjectiveArg::Latency => Objective::Latency,
                    ObjectiveArg::Size => Objective::Size,
                },
                max_drop,
            };
            let summary = harness::report::build_report(&results, &out, opts)?;
            println!(
                "report: {} ({} pages, {} charts)",
                out.join("index.html").display(),
                summary.pages.len(),
                summary.charts.len()
            );
            Ok(())
        }
        Command::Quantize(args) => harness::quant::artifact::quantize_command(&args),
        Command::Infer(args) => harness::quant::artifact::infer_command(&args),
        Command::Inspect(args) => harness::inspect::command(&args),
        Command::Info => {
            println!("cpu:       {}", kernels::isa::cpu_model());
            println!("features:  {}", kernels::isa::cpu_features().join(" "));
            match kernels::select(None) {
                Ok(set) => {
                    println!(
                        "dispatch:  {} (explicit suite/CLI isa > QH_ISA > CPU detection)",
                        set.isa_requested
                    );
                    for (op, k) in set.all() {
                        println!("selected:  {op:<16} {}", k.name());
                    }
                }
                Err(e) => println!("dispatch:  error: {e}"),
            }
            println!("\nkernels:");
            let rows: Vec<Vec<String>> = kernels::registry::available_kernels()
                .into_iter()
                .map(|(op, name, isa, here)| {
                    vec![
                        op.to_string(),
                        name.to_string(),
                        isa.to_string(),
                        if here { "yes" } else { "no" }.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                harness::table::render(&["op", "kernel", "isa", "runs here"], &rows)
            );
            println!("\nenvironment knobs:");
            for (name, doc) in kernels::knobs::all() {
                println!("  {name}: {doc}");
            }
            Ok(())
        }
    }
}
