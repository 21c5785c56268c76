//! Scale-out: `harness run --shard I/N` on a real suite (the pretrained MNIST CNN on real digits, two targets)
//! and `harness merge` give the unsharded run's rows, in its order, apart from timing and provenance columns;
//! a missing or overlapping shard is an error.

mod common;

use std::path::{Path, PathBuf};

use common::{harness, mnist_suite};
use harness::results::{Row, read_rows};

/// Two targets (batch 1 and 4), static and dynamic per tensor and per channel.
fn suite(dir: &Path) -> PathBuf {
    mnist_suite(
        dir,
        "shards",
        5,
        r#"[[target]]
name = "b1"

[[target]]
name = "b4"
batch = 4

[space]
activations = ["static", "dynamic"]
granularity = ["tensor", "channel"]
scheme = ["symmetric"]

[measure]
warmup = 0
repeats = 1
min_time_ms = 0
eval_batch = 50
"#,
    )
}

/// The one CSV a run wrote under `results_dir`.
fn run_csv(dir: &Path, results_dir: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "run",
        "shards.toml",
        "-q",
        "--fresh",
        "--results-dir",
        results_dir,
    ];
    args.extend(extra);
    let out = harness(&args, dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join(results_dir).join("shards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

/// The columns a shard cannot change: everything but timing and provenance.
fn stable(r: &Row) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
        r.model,
        r.target,
        r.strategy,
        r.kernel,
        r.isa,
        r.isa_requested,
        r.top1,
        r.top1_drop,
        r.top1_agreement,
        r.size_bytes,
        r.size_ratio,
        r.batch,
        r.calib_samples,
        r.eval_samples
    )
}

#[test]
fn sharded_then_merged_equals_unsharded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    suite(dir);
    let whole = read_rows(&run_csv(dir, "whole", &[])).unwrap();
    let s0 = run_csv(dir, "s0", &["--shard", "0/3"]);
    let s1 = run_csv(dir, "s1", &["--shard", "1/3"]);
    let s2 = run_csv(dir, "s2", &["--shard", "2/3"]);
    // Each shard ran fewer trials than the whole (plus the FP32 baselines it needs).
    for s in [&s0, &s1, &s2] {
        assert!(read_rows(s).unwrap().len() < whole.len());
    }
    let merged = dir.join("merged.csv");
    let args = [
        "merge",
        "--suite",
        "shards.toml",
        "--out",
        merged.to_str().unwrap(),
        s0.to_str().unwrap(),
        s1.to_str().unwrap(),
        s2.to_str().unwrap(),
    ];
    let out = harness(&args, dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged_rows = read_rows(&merged).unwrap();
    let a: Vec<String> = whole.iter().map(stable).collect();
    let b: Vec<String> = merged_rows.iter().map(stable).collect();
    assert_eq!(a, b);

    // A missing shard, and overlapping shards, are errors that say so (exit 2), and write nothing.
    let partial = dir.join("partial.csv");
    let out = harness(
        &[
            "merge",
            "--suite",
            "shards.toml",
            "--out",
            partial.to_str().unwrap(),
            s0.to_str().unwrap(),
            s1.to_str().unwrap(),
        ],
        dir,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in no shard"));
    assert!(!partial.exists());
    let out = harness(
        &[
            "merge",
            "--suite",
            "shards.toml",
            "--out",
            partial.to_str().unwrap(),
            s0.to_str().unwrap(),
            s1.to_str().unwrap(),
            s2.to_str().unwrap(),
            s1.to_str().unwrap(),
        ],
        dir,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shards overlap"));

    // A shard argument outside 0..N is an input error.
    let out = harness(&["run", "shards.toml", "--shard", "3/3"], dir);
    assert_eq!(out.status.code(), Some(2));
}
