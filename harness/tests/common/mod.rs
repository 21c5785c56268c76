//! Shared by the integration tests: the binary runner, a suite of the pretrained MNIST CNN on real digits with
//! the targets, space and measure tables given, and readers of a model's outputs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harness::ir::Tensor;
use ndarray::{ArrayD, Axis};

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

/// The first output of a run, which must be f32 (a classifier's logits or probabilities).
pub fn first_f32(out: Vec<(String, Tensor)>) -> ArrayD<f32> {
    match out.into_iter().next() {
        Some((_, Tensor::F32(a))) => a,
        other => panic!("expected an f32 output, got {other:?}"),
    }
}

/// The index of each row's largest value (the first on ties).
pub fn argmax_rows(a: &ArrayD<f32>) -> Vec<usize> {
    a.axis_iter(Axis(0))
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
                .0
        })
        .collect()
}
