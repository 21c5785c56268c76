//! End-to-end tests of the `harness` binary on the real MNIST CNN and real MNIST digits: bad suites fail
//! with one clear line and exit code 2 without touching earlier results; a run is reproducible.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prost::Message;

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

/// A small but real suite: the pretrained CNN on stratified MNIST digits.
fn suite_text(model: &Path, extra_space: &str) -> String {
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

[space]
activations = ["static", "dynamic", "weight-only"]
granularity = ["channel"]
scheme = ["symmetric", "affine"]
{extra_space}
[measure]
warmup = 0
repeats = 2
min_time_ms = 0
eval_batch = 50
"#,
        csv = d.join("mnist_5k/mnist_5k.csv.gz").display(),
        model = model.display(),
    )
}

fn real_model() -> PathBuf {
    data_dir().join("ccexam_mnist_cnn/ccexam_mnist_cnn.onnx")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a bad suite in a folder that already holds a results file, and checks the failure contract.
fn assert_bad_suite(text: &str, expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let earlier = dir.path().join("results/tiny/earlier.csv");
    std::fs::create_dir_all(earlier.parent().unwrap()).unwrap();
    std::fs::write(&earlier, "run_id,suite\nx,tiny\n").unwrap();
    let suite = dir.path().join("bad.toml");
    std::fs::write(&suite, text).unwrap();
    let out = harness(&["run", "-q", suite.to_str().unwrap()], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected, got: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    for e in expect {
        assert!(err.contains(e), "`{e}` missing from: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(&earlier).unwrap(),
        "run_id,suite\nx,tiny\n"
    );
    let files: Vec<_> = std::fs::read_dir(earlier.parent().unwrap())
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1, "no new results file may appear");
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = suite_text(&real_model(), "").replace("seed = 11", "seed = 11\nsede = 3");
    assert_bad_suite(&text, &["bad.toml:4:", "unknown field `sede`"]);
}

#[test]
fn wrong_type_names_line() {
    let text = suite_text(&real_model(), "").replace("batch = 4", "batch = \"four\"");
    assert_bad_suite(&text, &["bad.toml:21:9", "`batch`", "invalid type"]);
}

#[test]
fn missing_file_names_key_file_and_line() {
    let text = suite_text(&real_model().with_file_name("nope.onnx"), "");
    assert_bad_suite(
        &text,
        &[
            "bad.toml:16:",
            "model[0].path",
            "file not found",
            "nope.onnx",
        ],
    );
}

#[test]
fn empty_calibration_split_is_an_error() {
    let text = suite_text(&real_model(), "").replace(
        "calibration = { samples = 40 }",
        "calibration = { samples = 0 }",
    );
    assert_bad_suite(
        &text,
        &["bad.toml:11:", "dataset[0].calibration.samples", "empty"],
    );
}

#[test]
fn calibration_and_evaluation_larger_than_the_data_is_an_error() {
    let text = suite_text(&real_model(), "").replace("samples = 200", "samples = 4990");
    assert_bad_suite(&text, &["bad.toml:11:", "4990", "5000"]);
}

#[test]
fn unsupported_op_names_op_node_and_opset() {
    let dir = tempfile::tempdir().unwrap();
    let mut model =
        harness::onnx::proto::ModelProto::decode(std::fs::read(real_model()).unwrap().as_slice())
            .unwrap();
    let graph = model.graph.as_mut().unwrap();
    let relu = graph.node.iter_mut().find(|n| n.op_type == "Relu").unwrap();
    relu.op_type = "Softsign".into();
    let node_name = relu.name.clone();
    let path = dir.path().join("softsign.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let text = suite_text(&path, "");
    assert_bad_suite(
        &text,
        &["Softsign", &node_name, "opset 17", "softsign.onnx"],
    );
}

#[test]
fn unknown_isa_is_an_error_naming_the_key() {
    let text = suite_text(&real_model(), "").replace("batch = 4", "batch = 4\nisa = \"avx9000\"");
    assert_bad_suite(&text, &["bad.toml:22:", "target[0].isa", "avx9000"]);
}

/// Same suite, same seed, twice: identical accuracy and size columns; every int8 strategy close to FP32.
#[test]
fn runs_are_reproducible_and_rows_are_complete() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("tiny.toml");
    std::fs::write(&suite, suite_text(&real_model(), "")).unwrap();
    let mut runs = Vec::new();
    for _ in 0..2 {
        // `--fresh`: measure again rather than reuse the first run's trials.
        let out = harness(
            &["run", "-q", "--fresh", suite.to_str().unwrap()],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let csv = stdout
            .lines()
            .find_map(|l| l.strip_prefix("results: "))
            .unwrap()
            .to_string();
        runs.push(harness::results::read_rows(&dir.path().join(csv)).unwrap());
        assert!(stdout.contains("w8-static-channel-sym-minmax"), "{stdout}");
    }
    let key = |rows: &[harness::results::Row]| -> Vec<(String, String, f64, f64, f64, u64)> {
        rows.iter()
            .map(|r| {
                (
                    r.strategy.clone(),
                    r.kernel.clone(),
                    r.top1,
                    r.top1_drop,
                    r.top1_agreement,
                    r.size_bytes,
                )
            })
            .collect()
    };
    assert_eq!(key(&runs[0]), key(&runs[1]));
    let rows = &runs[0];
    // FP32 + static x2 schemes + dynamic x2 + weight-only x2.
    assert_eq!(rows.len(), 7);
    assert_eq!(rows[0].strategy, "fp32");
    assert_eq!(rows[0].top1_drop, 0.0);
    assert!(rows[0].top1 > 0.95, "fp32 top1 {}", rows[0].top1);
    for r in rows {
        assert_eq!(r.eval_samples, 200);
        assert_eq!(r.calib_samples, 40);
        assert!(r.latency_median_ns > 0 && r.latency_p90_ns >= r.latency_median_ns);
        assert!(!r.kernel.is_empty() && !r.isa.is_empty() && !r.cpu.is_empty());
        assert!(
            r.top1_drop.abs() <= 0.015,
            "{}: drop {}",
            r.strategy,
            r.top1_drop
        );
        if r.strategy != "fp32" {
            assert!(
                r.size_ratio < 0.27,
                "{}: size ratio {}",
                r.strategy,
                r.size_ratio
            );
        }
    }
}

#[test]
fn search_from_results_picks_within_budget() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("tiny.toml");
    std::fs::write(&suite, suite_text(&real_model(), "")).unwrap();
    let out = harness(
        &[
            "search",
            "-q",
            suite.to_str().unwrap(),
            "--max-drop",
            "0.01",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("best: w8-"), "{text}");
    assert!(text.contains("Pareto front"), "{text}");
    let csv = stderr(&out)
        .lines()
        .find_map(|l| l.strip_prefix("results: ").map(str::to_string))
        .unwrap();
    let again = harness(
        &["search", "--from", &csv, "--objective", "size"],
        dir.path(),
    );
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("smallest"));
    // A suite named beside --from lends its [search] settings; flags still win.
    let with_settings = dir.path().join("settings.toml");
    let text = suite_text(&real_model(), "")
        + "\n[search]\nobjective = \"size\"\nmax_accuracy_drop = 0.0125\n";
    std::fs::write(&with_settings, text).unwrap();
    let from_suite = harness(
        &["search", with_settings.to_str().unwrap(), "--from", &csv],
        dir.path(),
    );
    assert_eq!(from_suite.status.code(), Some(0), "{}", stderr(&from_suite));
    let out = String::from_utf8_lossy(&from_suite.stdout);
    assert!(out.contains("smallest") && out.contains("1.25"), "{out}");
    let flags_win = harness(
        &[
            "search",
            with_settings.to_str().unwrap(),
            "--from",
            &csv,
            "--objective",
            "latency",
        ],
        dir.path(),
    );
    let out = String::from_utf8_lossy(&flags_win.stdout);
    assert!(out.contains("fastest") && out.contains("1.25"), "{out}");
}

/// The same CNN fed from NumPy files (the ONNX Runtime reference images and labels), through `format = "npy"`.
#[test]
fn npy_dataset_suite_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = data_dir().join("ccexam_mnist_cnn");
    let text = format!(
        r#"[suite]
name = "npy"

[[dataset]]
name = "ref"
format = "npy"
path = "{images}"
labels = "{labels}"
shape = [1, 28, 28]
normalize = {{ scale = 0.00392156862745098, mean = 0.1307, std = 0.3081 }}
calibration = {{ samples = 20 }}
evaluation = {{ samples = 80 }}

[[model]]
name = "cnn"
path = "{model}"
dataset = "ref"

[space]
activations = ["static"]
granularity = ["tensor"]
scheme = ["affine"]

[measure]
warmup = 0
repeats = 1
min_time_ms = 0
"#,
        images = d.join("reference/input_pixels_u8.npy").display(),
        labels = d.join("reference/labels_i64.npy").display(),
        model = real_model().display(),
    );
    let suite = dir.path().join("npy.toml");
    std::fs::write(&suite, text).unwrap();
    let out = harness(&["run", "-q", suite.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let csv = stdout
        .lines()
        .find_map(|l| l.strip_prefix("results: "))
        .unwrap();
    let rows = harness::results::read_rows(&dir.path().join(csv)).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].strategy, "w8-static-tensor-affine-minmax");
    assert!(
        rows.iter().all(|r| r.eval_samples == 80 && r.top1 > 0.95),
        "{rows:?}"
    );
}

#[test]
fn dataset_shape_that_does_not_fit_the_model_is_an_error() {
    let text = suite_text(&real_model(), "").replace("shape = [1, 28, 28]", "shape = [1, 784]");
    assert_bad_suite(
        &text,
        &["bad.toml:", "model[0].path", "input `input`", "[1, 784]"],
    );
}

/// A reader that closes the pipe early (`harness inspect ... --json | head -c 10`) ends the output without a
/// panic message: the process gets the default SIGPIPE, as other Unix tools do. The pipe's read end is closed
/// before the process starts, so its first write meets the closed pipe whatever the output's size.
#[cfg(unix)]
#[test]
fn closed_stdout_is_not_a_panic() {
    use std::os::unix::process::ExitStatusExt;

    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["inspect", real_model().to_str().unwrap(), "--json"])
        .stdout(writer)
        .output()
        .expect("harness runs");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "stderr: {err}");
    // SIGPIPE is 13 on Linux and macOS.
    assert_eq!(out.status.signal(), Some(13), "status {:?}", out.status);
}
