//! Per-op parity with ONNX Runtime on the fixtures of `scripts/make_onnx_fixtures.py`
//! (`suites/data/onnx_ops/<Op>/<variant>/`): every model is imported and run by the FP32 executor on the
//! stored inputs, and every output is compared with ONNX Runtime's, element by element, within the
//! tolerance written (and justified) in the case's `case.toml`: `|ours - ort| <= atol + rtol * |ort|`.
//! Integer and boolean outputs must match exactly. Also checks that every op the importer lists has a
//! fixture, and, where a case says so, which ops the import leaves after folding.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use harness::exec::Fp32Executor;
use harness::ir::Tensor;
use harness::onnx;
use ndarray::{ArrayD, IxDyn};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    op: String,
    variant: String,
    opset: i64,
    runs: usize,
    inputs: Vec<String>,
    outputs: Vec<String>,
    tolerance: String,
    atol: f32,
    rtol: f32,
    why: String,
    expect_ops: Option<Vec<String>>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites/data/onnx_ops")
}

/// Every case folder (`<Op>/<variant>/`), sorted.
fn case_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for op in std::fs::read_dir(fixtures_dir()).expect("suites/data/onnx_ops exists") {
        let op = op.unwrap().path();
        if !op.is_dir() {
            continue;
        }
        for variant in std::fs::read_dir(&op).unwrap() {
            let variant = variant.unwrap().path();
            if variant.join("case.toml").exists() {
                dirs.push(variant);
            }
        }
    }
    dirs.sort();
    dirs
}

/// A `.npy` file as a tensor: float32 as f32; int64, int32 and bool as i64 (booleans 0 / 1), as the IR holds
/// them.
fn read_tensor(path: &Path) -> Tensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(npy.order(), npyz::Order::C, "{}", path.display());
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = npy.dtype().descr();
    let shape = IxDyn(&shape);
    fn vec<T: npyz::Deserialize>(npy: npyz::NpyFile<&[u8]>, path: &Path) -> Vec<T> {
        npy.into_vec::<T>()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
    match descr.trim_matches('\'') {
        "<f4" => Tensor::F32(ArrayD::from_shape_vec(shape, vec::<f32>(npy, path)).unwrap()),
        "<i8" => Tensor::I64(ArrayD::from_shape_vec(shape, vec::<i64>(npy, path)).unwrap()),
        "<i4" => {
            let v = vec::<i32>(npy, path).into_iter().map(i64::from).collect();
            Tensor::I64(ArrayD::from_shape_vec(shape, v).unwrap())
        }
        "|b1" => {
            let v = vec::<bool>(npy, path).into_iter().map(i64::from).collect();
            Tensor::I64(ArrayD::from_shape_vec(shape, v).unwrap())
        }
        other => panic!("{}: unexpected dtype {other}", path.display()),
    }
}

/// Max abs difference and the worst ratio of difference to budget (> 1 fails).
fn compare(got: &Tensor, want: &Tensor, atol: f32, rtol: f32) -> Result<(f32, f32), String> {
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?}, ONNX Runtime {:?}",
            got.shape(),
            want.shape()
        ));
    }
    match (got, want) {
        (Tensor::F32(g), Tensor::F32(w)) => {
            let mut max_diff = 0f32;
            let mut worst = 0f32;
            for (idx, (&a, &b)) in g
                .indexed_iter()
                .zip(w.iter())
                .map(|((i, a), b)| (i, (a, b)))
            {
                if a.is_nan() && b.is_nan() {
                    continue;
                }
                let diff = (a - b).abs();
                let budget = atol + rtol * b.abs();
                // NaN on one side only fails too.
                if diff.is_nan() || diff > budget {
                    return Err(format!(
                        "at {:?}: {a} vs ONNX Runtime {b} (|diff| {diff:e} > budget {budget:e})",
                        idx
                    ));
                }
                max_diff = max_diff.max(diff);
                if budget > 0.0 {
                    worst = worst.max(diff / budget);
                }
            }
            Ok((max_diff, worst))
        }
        (Tensor::I64(g), Tensor::I64(w)) => match g.iter().zip(w).position(|(a, b)| a != b) {
            None => Ok((0.0, 0.0)),
            Some(i) => Err(format!(
                "element {i}: {} vs ONNX Runtime {}",
                g.iter().nth(i).unwrap(),
                w.iter().nth(i).unwrap()
            )),
        },
        _ => Err(format!(
            "element type {}, ONNX Runtime {}",
            got.dtype(),
            want.dtype()
        )),
    }
}

#[test]
fn every_op_matches_onnx_runtime() {
    let dirs = case_dirs();
    assert!(
        dirs.len() >= 100,
        "expected the generated fixtures, found {} cases",
        dirs.len()
    );
    let kernels = kernels::select(None).expect("kernel selection");
    let mut failures = Vec::new();
    let mut covered = BTreeSet::new();
    for dir in &dirs {
        let text = std::fs::read_to_string(dir.join("case.toml")).unwrap();
        let case: Case = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let label = format!("{}/{}", case.op, case.variant);
        assert!(
            !case.why.is_empty() && !case.tolerance.is_empty(),
            "{label}: tolerance without a reason"
        );
        covered.insert(case.op.clone());
        let result = (|| -> Result<String, String> {
            let graph =
                onnx::load_model(&dir.join("model.onnx")).map_err(|e| format!("import: {e}"))?;
            if graph.opset != case.opset {
                return Err(format!(
                    "opset {} but case.toml says {}",
                    graph.opset, case.opset
                ));
            }
            if let Some(expect) = &case.expect_ops {
                let ops: Vec<&str> = graph.nodes.iter().map(|n| n.op.op_type()).collect();
                if ops != *expect {
                    return Err(format!("imported ops {ops:?}, expected {expect:?}"));
                }
            }
            let exec = Fp32Executor::new(&graph, kernels).map_err(|e| format!("executor: {e}"))?;
            let mut report = Vec::new();
            for run in 0..case.runs {
                let inputs: Vec<(&str, Tensor)> = case
                    .inputs
                    .iter()
                    .map(|n| {
                        (
                            n.as_str(),
                            read_tensor(&dir.join(format!("r{run}.in.{n}.npy"))),
                        )
                    })
                    .collect();
                let outputs = exec
                    .run_tensors(&inputs)
                    .map_err(|e| format!("run {run}: {e}"))?;
                for ((name, got), want_name) in outputs.iter().zip(&case.outputs) {
                    assert_eq!(name, want_name);
                    let want = read_tensor(&dir.join(format!("r{run}.out.{name}.npy")));
                    let (diff, ratio) = compare(got, &want, case.atol, case.rtol)
                        .map_err(|e| format!("run {run}, output \"{name}\": {e}"))?;
                    report.push(format!(
                        "{name} {diff:.1e} ({:.0}% of budget)",
                        ratio * 100.0
                    ));
                }
            }
            Ok(report.join(", "))
        })();
        match result {
            Ok(report) => eprintln!("ok   {label:60} {} {report}", case.tolerance),
            Err(e) => {
                eprintln!("FAIL {label}: {e}");
                failures.push(format!("{label}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );

    // Every op the importer accepts has at least one fixture (Constant included; Dropout rides on Identity).
    let missing: Vec<&&str> = onnx::SUPPORTED_OPS
        .iter()
        .filter(|op| !covered.contains(**op) && **op != "Dropout")
        .collect();
    assert!(missing.is_empty(), "ops without a fixture: {missing:?}");
}

/// The fixtures stay small enough to commit.
#[test]
fn fixtures_are_small() {
    fn size(p: &Path) -> u64 {
        if p.is_dir() {
            std::fs::read_dir(p)
                .unwrap()
                .map(|e| size(&e.unwrap().path()))
                .sum()
        } else {
            p.metadata().unwrap().len()
        }
    }
    let total = size(&fixtures_dir());
    assert!(
        total < 2 * 1024 * 1024,
        "suites/data/onnx_ops is {total} bytes"
    );
}
