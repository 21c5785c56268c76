//! Shared by the end-to-end tests that run the `harness` binary on small real suites: the binary runner and
//! a suite of the pretrained MNIST CNN on real digits with the targets, space and measure tables given.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `harness` binary in `cwd`.
pub fn harness(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("harness runs")
}

/// Writes `dir/<name>.toml`: suite `name` (seed `seed`), the MNIST CNN on 40 calibration and 100 evaluation
/// digits of mnist_5k, and the given target, space and measure tables (TOML text).
pub fn mnist_suite(dir: &Path, name: &str, seed: u64, tables: &str) -> PathBuf {
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../suites/data")
        .canonicalize()
        .unwrap();
    let text = format!(
        r#"[suite]
name = "{name}"
seed = {seed}

[[dataset]]
name = "mnist"
format = "csv"
path = "{csv}"
shape = [1, 28, 28]
normalize = {{ scale = 0.00392156862745098, mean = 0.1307, std = 0.3081 }}
calibration = {{ samples = 40 }}
evaluation = {{ samples = 100 }}

[[model]]
name = "cnn"
path = "{model}"
dataset = "mnist"

{tables}"#,
        csv = data.join("mnist_5k/mnist_5k.csv.gz").display(),
        model = data
            .join("ccexam_mnist_cnn/ccexam_mnist_cnn.onnx")
            .display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}
