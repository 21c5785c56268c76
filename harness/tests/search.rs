//! End-to-end tests of `harness search` on the real MNIST CNN: a search killed with SIGKILL resumes with no
//! lost and no repeated trial; `--json` output; target profiles filter the proposed strategies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::results::{Row, read_rows};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../suites/data")
        .canonicalize()
        .unwrap()
}

fn harness(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("harness runs")
}

/// The pretrained CNN on 200 MNIST digits; `target` and `space` are TOML appended to the suite.
fn suite_text(target: &str, space: &str, min_time_ms: u64) -> String {
    let d = data_dir();
    format!(
        r#"[suite]
name = "tiny"
seed = 11

[[dataset]]
name = "mnist"
format = "csv"
path = "{csv}"
shape = [1, 28, 28]
normalize = {{ scale = 0.00392156862745098, mean = 0.1307, std = 0.3081 }}
calibration = {{ samples = 40 }}
evaluation = {{ samples = 200 }}

[[model]]
name = "cnn"
path = "{model}"
dataset = "mnist"

[[target]]
name = "cpu"
batch = 4
{target}

[space]
{space}

[measure]
warmup = 0
repeats = 2
min_time_ms = {min_time_ms}
eval_batch = 50
"#,
        csv = d.join("mnist_5k/mnist_5k.csv.gz").display(),
        model = d.join("ccexam_mnist_cnn/ccexam_mnist_cnn.onnx").display(),
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn csv_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "csv"));
    v.sort();
    v
}

/// Complete lines after the header, in every results file.
fn rows_written(dir: &Path) -> usize {
    csv_files(dir)
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .matches('\n')
                .count()
                .saturating_sub(1)
        })
        .sum()
}

fn json(out: &Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

const SPACE: &str = r#"weight_bits = [8, 4]
activations = ["static", "dynamic", "weight-only"]
granularity = ["tensor", "channel"]
scheme = ["symmetric"]"#;

/// `kill -9` mid-search, then the same command again: every trial of the space exactly once in the final
/// results, the trials finished before the kill reused (not measured again), nothing lost.
#[test]
fn killed_search_resumes_without_losing_or_repeating_a_trial() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("tiny.toml");
    // 1 + 2 bits x (static + dynamic + weight-only) x 2 granularities = 13 trials of at least 60 ms each.
    std::fs::write(&suite, suite_text("", SPACE, 60)).unwrap();
    let args = [
        "search",
        "-q",
        "--json",
        "--algorithm",
        "grid",
        "--target",
        "cpu",
        suite.to_str().unwrap(),
    ];
    let results = dir.path().join("results/tiny");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while rows_written(&results) < 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the search ended before it could be killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no rows written"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed = csv_files(&results);
    assert_eq!(killed.len(), 1);
    let before: Vec<Row> = read_rows(&killed[0]).unwrap_or_default();
    let before_lines = rows_written(&results);
    assert!(before_lines >= 3);

    let v = json(&harness(&args, dir.path()));
    let run = v["trials_run"].as_u64().unwrap() as usize;
    let reused = v["trials_reused"].as_u64().unwrap() as usize;
    assert_eq!(run + reused, 13, "{v}");
    assert!(reused >= before.len() && reused >= 3, "{v}");
    let files = csv_files(&results);
    assert_eq!(files.len(), 2);
    let last = read_rows(&files[1]).unwrap();
    let strategies: BTreeSet<&str> = last.iter().map(|r| r.strategy.as_str()).collect();
    assert_eq!(last.len(), 13, "one row per trial");
    assert_eq!(strategies.len(), 13, "no repeated trial: {strategies:?}");
    // Every trial was measured once: all rows of a strategy, in every file, come from one run.
    let mut measured_by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        for r in read_rows(f).unwrap() {
            measured_by.entry(r.strategy).or_default().insert(r.run_id);
        }
    }
    for (s, runs) in &measured_by {
        assert_eq!(runs.len(), 1, "{s} measured by {runs:?}");
    }
    for r in &before {
        assert!(last.contains(r), "{} lost or measured again", r.strategy);
    }
    // A third time: everything is reused.
    let v = json(&harness(&args, dir.path()));
    assert_eq!(
        (v["trials_run"].as_u64(), v["trials_reused"].as_u64()),
        (Some(0), Some(13))
    );
}

#[test]
fn json_output_has_the_choice_the_pareto_front_and_trial_counts() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("tiny.toml");
    std::fs::write(&suite, suite_text("", SPACE, 0)).unwrap();
    let s = suite.to_str().unwrap();
    let grid = json(&harness(
        &[
            "search",
            "-q",
            "--json",
            "--algorithm",
            "grid",
            "--objective",
            "size",
            "--max-drop",
            "0.01",
            s,
        ],
        dir.path(),
    ));
    assert_eq!(grid["trials_run"], 13);
    assert_eq!(grid["trials_reused"], 0);
    let chosen = &grid["chosen"];
    for k in [
        "strategy",
        "top1",
        "top1_drop",
        "latency_median_ns",
        "size_bytes",
        "speedup_vs_fp32",
    ] {
        assert!(!chosen[k].is_null(), "{k} missing: {grid}");
    }
    assert!(chosen["top1_drop"].as_f64().unwrap() <= 0.01);
    let pareto = grid["pareto"].as_array().unwrap();
    assert!(!pareto.is_empty() && pareto.iter().all(|p| p["size_bytes"].is_u64()));
    // Greedy and random on the same suite reuse the grid's trials and agree on the smallest size.
    let greedy = json(&harness(
        &[
            "search",
            "-q",
            "--json",
            "--objective",
            "size",
            "--max-drop",
            "0.01",
            s,
        ],
        dir.path(),
    ));
    assert_eq!(greedy["trials_run"], 0, "{greedy}");
    assert!(greedy["trials"].as_u64().unwrap() < 13, "{greedy}");
    assert_eq!(greedy["chosen"]["size_bytes"], chosen["size_bytes"]);
    let random = json(&harness(
        &[
            "search",
            "-q",
            "--json",
            "--algorithm",
            "random",
            "--budget-trials",
            "4",
            s,
        ],
        dir.path(),
    ));
    assert_eq!(random["trials"], 4);
    // Readable text says why.
    let text = harness(&["search", "-q", "--budget-trials", "3", s], dir.path());
    let t = String::from_utf8_lossy(&text.stdout);
    assert!(
        t.contains("why:") && t.contains("trials: 0 run, 3 reused"),
        "{t}"
    );
    let bad = harness(&["search", "-q", "--target", "gpu", s], dir.path());
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("no target `gpu`"), "{}", stderr(&bad));
}

/// A TensorRT-like target only gets symmetric per-channel static int8 (and FP32); a suite-local profile
/// file overrides the built-in one.
#[test]
fn target_profiles_filter_the_proposed_strategies() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("tiny.toml");
    let space = r#"weight_bits = [8, 4]
activations = ["static", "dynamic"]
granularity = ["tensor", "channel"]
scheme = ["symmetric", "affine"]"#;
    std::fs::write(&suite, suite_text("profile = \"tensorrt\"", space, 0)).unwrap();
    let s = suite.to_str().unwrap();
    let v = json(&harness(
        &["search", "-q", "--json", "--algorithm", "grid", s],
        dir.path(),
    ));
    let csv = PathBuf::from(v["results"].as_str().unwrap());
    let names: Vec<String> = read_rows(&dir.path().join(csv))
        .unwrap()
        .into_iter()
        .map(|r| r.strategy)
        .collect();
    assert_eq!(names, vec!["fp32", "w8-static-channel-sym-minmax"]);
    // `run` honours the profile too.
    let run = harness(&["run", "-q", s], dir.path());
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(out.contains("trials: 0 run, 2 reused"), "{out}");

    std::fs::create_dir_all(dir.path().join("profiles")).unwrap();
    std::fs::write(
        dir.path().join("profiles/mine.toml"),
        "[profile]\nname = \"mine\"\nweight_bits = [4]\nactivations = [\"dynamic\"]\ngranularity = [\"tensor\"]\nweight_zero_point = true\nactivation_zero_point = true\n",
    )
    .unwrap();
    std::fs::write(&suite, suite_text("profile = \"mine\"", space, 0)).unwrap();
    let v = json(&harness(
        &["search", "-q", "--json", "--algorithm", "grid", s],
        dir.path(),
    ));
    assert_eq!(v["trials"], 3, "{v}");
    std::fs::write(&suite, suite_text("profile = \"nope\"", space, 0)).unwrap();
    let bad = harness(&["search", "-q", s], dir.path());
    assert_eq!(bad.status.code(), Some(2));
    let e = stderr(&bad);
    assert!(
        e.contains("target[0].profile") && e.contains("tensorrt"),
        "{e}"
    );
}

/// `--algorithm sensitivity` where every layer at 2 bits breaks the budget: the per-layer sensitivities
/// and the kept layers' reasons are in the JSON; `--save-strategy` writes a `[space]` that a suite pins
/// (running it measures the same strategy again, with the same top-1); `--save-model` saves the chosen model
/// (the mixed one, its layers carrying their own widths, and a uniform one) as a loadable `.qhq`.
#[test]
fn sensitivity_search_explains_its_map_and_the_choice_can_be_pinned_and_saved() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("tiny.toml");
    let space = r#"weight_bits = [8, 2]
activations = ["static"]
granularity = ["channel"]
scheme = ["symmetric"]"#;
    std::fs::write(&suite, suite_text("", space, 0)).unwrap();
    let s = suite.to_str().unwrap();
    let pin = dir.path().join("chosen.toml");
    let model = dir.path().join("chosen.qhq");
    let out = harness(
        &[
            "search",
            "-q",
            "--json",
            "--algorithm",
            "sensitivity",
            "--objective",
            "size",
            "--max-drop",
            "0.02",
            "--save-strategy",
            pin.to_str().unwrap(),
            "--save-model",
            model.to_str().unwrap(),
            s,
        ],
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sens = v["sensitivity"].as_array().unwrap();
    let layers: Vec<&str> = sens.iter().map(|x| x["layer"].as_str().unwrap()).collect();
    assert_eq!(layers, vec!["Conv_1", "Conv_4", "Gemm_8", "Gemm_10"], "{v}");
    assert!(
        sens.iter()
            .all(|x| x["output_error"].as_f64().unwrap() > 0.0)
    );
    let chosen = &v["chosen"];
    assert!(chosen["top1_drop"].as_f64().unwrap() <= 0.02, "{v}");
    let name = chosen["strategy"].as_str().unwrap().to_string();
    assert!(name.contains("-mix.keep8."), "{v}");
    let kept: Vec<&serde_json::Value> = chosen["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["precision"] == "8")
        .collect();
    assert!(!kept.is_empty(), "{v}");
    assert!(
        kept.iter().all(|l| l["reason"]
            .as_str()
            .unwrap()
            .starts_with("kept at 8 bits: drop")),
        "{v}"
    );
    assert!(chosen["layer_precision"].as_str().unwrap().contains("=8"));
    // The mixed choice saves as a loadable model that names its strategy as the results do.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let q = harness::quant::QuantizedModel::load(&model).unwrap();
    assert_eq!(q.strategy().name(), name);

    // A suite whose [space] is the saved fragment runs exactly FP32 and the chosen strategy, again.
    let fragment = std::fs::read_to_string(&pin).unwrap();
    assert!(fragment.contains("[[space.mixed]]"), "{fragment}");
    let text = suite_text("", "", 0).replace("[space]\n", &fragment);
    let pinned = dir.path().join("pinned.toml");
    std::fs::write(&pinned, text).unwrap();
    let run = harness(
        &["run", "-q", "--fresh", pinned.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let last = csv_files(&dir.path().join("results/tiny")).pop().unwrap();
    let rows = read_rows(&last).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.strategy.as_str()).collect();
    assert_eq!(names, vec!["fp32", name.as_str()]);
    assert_eq!(rows[1].top1, chosen["top1"].as_f64().unwrap());

    // A uniform choice saves as a loadable model.
    let out = harness(
        &[
            "search",
            "-q",
            "--algorithm",
            "grid",
            "--objective",
            "size",
            "--max-drop",
            "0.02",
            "--save-model",
            model.to_str().unwrap(),
            s,
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let q = harness::quant::QuantizedModel::load(&model).unwrap();
    assert_eq!(q.strategy().name(), "w8-static-channel-sym-minmax");
}
