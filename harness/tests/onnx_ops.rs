//! Per-op parity with ONNX Runtime on the fixtures of `scripts/make_onnx_fixtures.py`
//! (`suites/data/onnx_ops/<Op>/<variant>/`): every model is imported and run by the FP32 executor on the
//! stored inputs, and every output is compared with ONNX Runtime's, element by element, within the
//! tolerance written (and justified) in the case's `case.toml`: `|ours - ort| <= atol + rtol * |ort|`.
//! Integer and boolean outputs must match exactly. Also checks that every op the importer lists has a
//! fixture, and, where a case says so, which ops the import leaves after folding.
//!
//! Export round trip: every fixture's imported graph is exported ([`onnx::export::export_model_typed`]),
//! imported again to the same IR, and run by ONNX Runtime (`scripts/run_onnx_dir.py`, one process for all
//! cases) within the case's tolerance of the fixture's ONNX Runtime outputs (skipped, saying so, without
//! `python3 -c "import onnxruntime"`).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::exec::Fp32Executor;
use harness::ir::Tensor;
use harness::onnx;
use harness::onnx::qdq::QDQ_MIN_OPSET;
use ndarray::{ArrayD, IxDyn};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
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

/// The element type an input `.npy` file holds, as the exported graph declares it.
fn npy_elem_type(path: &Path) -> onnx::export::ElemType {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match npy.dtype().descr().trim_matches('\'') {
        "<f4" => onnx::export::ElemType::F32,
        "<i8" => onnx::export::ElemType::I64,
        "<i4" => onnx::export::ElemType::I32,
        "|b1" => onnx::export::ElemType::Bool,
        other => panic!("{}: unexpected dtype {other}", path.display()),
    }
}

#[test]
fn every_fixture_round_trips_through_export_and_onnx_runtime() {
    match Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .output()
    {
        Ok(o) if o.status.success() => {}
        other => {
            eprintln!(
                "SKIPPED: python3 cannot import onnxruntime and numpy ({:?}); `pip install onnxruntime onnx numpy` runs this test",
                other.map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
            );
            return;
        }
    }
    let dirs = case_dirs();
    let out = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut cases = Vec::new();
    let mut raised = 0;
    for dir in &dirs {
        let text = std::fs::read_to_string(dir.join("case.toml")).unwrap();
        let case: Case = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let label = format!("{}/{}", case.op, case.variant);
        let key = format!("{}__{}", case.op, case.variant);
        let result = (|| -> Result<Vec<String>, String> {
            let graph =
                onnx::load_model(&dir.join("model.onnx")).map_err(|e| format!("import: {e}"))?;
            let types: HashMap<String, onnx::export::ElemType> = case
                .inputs
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        npy_elem_type(&dir.join(format!("r0.in.{n}.npy"))),
                    )
                })
                .collect();
            let proto = onnx::export::export_model_typed(&graph, &types)
                .map_err(|e| format!("export: {e}"))?;
            let back = onnx::import_model(&proto, Path::new(&key))
                .map_err(|e| format!("re-import: {e}"))?;
            if back != graph {
                return Err(format!(
                    "re-imported graph differs:\n  ours  {:?}\n  back  {:?}",
                    graph.nodes, back.nodes
                ));
            }
            let mut protos = vec![(key.clone(), proto)];
            // QDQ export writes opset 13 at least: an older graph's IR in opset 13's forms means the same.
            if graph.opset < QDQ_MIN_OPSET {
                let raised = harness::ir::Graph {
                    opset: QDQ_MIN_OPSET,
                    ..graph.clone()
                };
                let proto = onnx::export::export_model_typed(&raised, &types)
                    .map_err(|e| format!("export at opset {QDQ_MIN_OPSET}: {e}"))?;
                protos.push((format!("{key}__as_opset{QDQ_MIN_OPSET}"), proto));
            }
            let mut keys = Vec::new();
            for (key, proto) in protos {
                let case_dir = out.path().join(&key);
                std::fs::create_dir(&case_dir).unwrap();
                std::fs::write(
                    case_dir.join("model.onnx"),
                    prost::Message::encode_to_vec(&proto),
                )
                .unwrap();
                for run in 0..case.runs {
                    for n in &case.inputs {
                        let f = format!("r{run}.in.{n}.npy");
                        std::fs::copy(dir.join(&f), case_dir.join(&f)).unwrap();
                    }
                }
                keys.push(key);
            }
            Ok(keys)
        })();
        match result {
            Ok(keys) => {
                raised += keys.len() - 1;
                for key in keys {
                    let label = format!("{label} ({key})");
                    cases.push((dir, case.clone(), label, key));
                }
            }
            Err(e) => failures.push(format!("{label}: {e}")),
        }
    }
    let export_failures = failures.len();
    let run = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/run_onnx_dir.py"))
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "run_onnx_dir.py: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    for (dir, case, label, key) in &cases {
        let result = (|| -> Result<(), String> {
            match report["cases"][key].as_str() {
                Some("ok") => {}
                other => return Err(format!("ONNX Runtime: {other:?}")),
            }
            for run in 0..case.runs {
                for name in &case.outputs {
                    let got =
                        read_tensor(&out.path().join(key).join(format!("r{run}.ort.{name}.npy")));
                    let want = read_tensor(&dir.join(format!("r{run}.out.{name}.npy")));
                    compare(&got, &want, case.atol, case.rtol)
                        .map_err(|e| format!("run {run}, output \"{name}\": {e}"))?;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            failures.push(format!("{label}: {e}"));
        }
    }
    // Exports that failed before reaching ONNX Runtime count once each.
    let total = cases.len() + export_failures;
    eprintln!(
        "{} of {total} exports matched by ONNX Runtime {}: the {} fixtures (each re-imported to the same IR) and {raised} of them written at opset {QDQ_MIN_OPSET}",
        total - failures.len(),
        report["onnxruntime"],
        dirs.len(),
    );
    assert!(
        failures.is_empty(),
        "{} of {} exports failed:\n{}",
        failures.len(),
        total,
        failures.join("\n")
    );
}
