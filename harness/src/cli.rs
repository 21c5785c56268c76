//! Command-line interface: argument parsing and the commands, over the harness library.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use harness::Error;
use harness::results::read_rows;
use harness::runner::{self, Prepared, RunOptions};
use harness::search::{recommend, render, summary_table};
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
  harness search suites/quickstart.toml --max-drop 0.002
  harness search --from results/quickstart/20261125-120000-123.csv --objective size
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
    },
    /// Pick the best strategy within an accuracy budget, with the reason, and show the Pareto front.
    #[command(
        long_about = "Pick, for every model and target, the best strategy whose top-1 drop against FP32 \
        stays within --max-drop, say why, and show the Pareto front over accuracy, latency and size. Runs the \
        suite's space first (writing results like `run`), or reads earlier results with --from."
    )]
    Search {
        /// The suite file (default: the built-in quickstart suite). Ignored with --from.
        suite: Option<PathBuf>,
        /// Largest acceptable top-1 drop, as a fraction (0.005 = half a point). Default: the suite's
        /// [search] max_accuracy_drop.
        #[arg(long)]
        max_drop: Option<f64>,
        /// What "best" means. Default: the suite's [search] objective.
        #[arg(long, value_enum)]
        objective: Option<ObjectiveArg>,
        /// Choose among the rows of these results CSVs instead of running.
        #[arg(long, num_args = 1..)]
        from: Vec<PathBuf>,
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
    /// Train a built-in architecture from scratch on IDX data (Fashion-MNIST) and write it as ONNX.
    Train(harness::train::TrainArgs),
}

fn load_suite(path: Option<&Path>) -> Result<Suite, Error> {
    Ok(match path {
        Some(p) => Suite::load(p)?,
        None => Suite::embedded_quickstart()?,
    })
}

/// Prepares (every input error surfaces here) and runs every trial of `suite`.
fn run_suite(suite: Suite, results_dir: PathBuf, quiet: bool) -> Result<runner::RunOutcome, Error> {
    let prepared = Prepared::new(suite, !quiet)?;
    runner::run(
        &prepared,
        &RunOptions {
            results_dir,
            progress: !quiet,
        },
    )
}

pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Run {
            suite,
            results_dir,
            quiet,
        } => {
            let outcome = run_suite(load_suite(suite.as_deref())?, results_dir, quiet)?;
            let rows: Vec<_> = outcome.rows.iter().collect();
            println!("{}", summary_table(&rows));
            println!("results: {}", outcome.csv.display());
            Ok(())
        }
        Command::Search {
            suite,
            max_drop,
            objective,
            from,
            results_dir,
            quiet,
        } => {
            let (rows, suite_search) = if from.is_empty() {
                let suite = load_suite(suite.as_deref())?;
                let search = (suite.search.objective, suite.search.max_accuracy_drop);
                let outcome = run_suite(suite, results_dir, quiet)?;
                eprintln!("results: {}", outcome.csv.display());
                (outcome.rows, Some(search))
            } else {
                let mut rows = Vec::new();
                for path in &from {
                    // A results file the user names is input: a bad one exits 2 like a bad suite.
                    rows.extend(read_rows(path).map_err(|e| Error::Usage(e.to_string()))?);
                }
                (rows, None)
            };
            let objective = match objective {
                Some(ObjectiveArg::Latency) => Objective::Latency,
                Some(ObjectiveArg::Size) => Objective::Size,
                None => suite_search.map(|s| s.0).unwrap_or_default(),
            };
            let max_drop = max_drop.or(suite_search.map(|s| s.1)).unwrap_or(0.005);
            if !(0.0..=1.0).contains(&max_drop) {
                return Err(Error::Usage(format!(
                    "--max-drop {max_drop} is not a fraction in [0, 1] (0.005 is half a point)"
                )));
            }
            if rows.is_empty() {
                return Err(Error::Usage("no result rows to choose from".into()));
            }
            print!("{}", render(&recommend(&rows, objective, max_drop)));
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
