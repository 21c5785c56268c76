//! `harness compare` on recorded data (`tests/fixtures/compare/`: two real runs of the same commit): the two
//! runs are not flagged; an accuracy regression (32 digits turned wrong for one strategy) and a 20 %
//! slowdown (every timing sample of one strategy scaled by 1.2), injected into a copy of the second run, are.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harness::results::{CsvAppender, read_rows};
use harness::runner::samples::TrialSamples;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compare")
}

fn csv_in(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "csv"))
        .unwrap()
}

fn compare(base: &Path, new: &Path, json: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["compare"])
        .arg(base)
        .arg(new)
        .arg("--json")
        .arg(json)
        .output()
        .unwrap()
}

/// A copy of the recorded second run in `dir`, with `edit` applied to one strategy's row and samples.
fn injected(
    dir: &Path,
    strategy: &str,
    edit: impl Fn(&mut harness::results::Row, &mut TrialSamples),
) -> PathBuf {
    let src = csv_in(&fixtures().join("new"));
    let samples_src = src.with_extension("samples.jsonl");
    let mut rows = read_rows(&src).unwrap();
    let mut samples: Vec<TrialSamples> = std::fs::read_to_string(&samples_src)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let row = rows.iter_mut().find(|r| r.strategy == strategy).unwrap();
    let s = samples
        .iter_mut()
        .find(|s| s.strategy == strategy && s.run_id == row.run_id)
        .unwrap();
    edit(row, s);
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join(src.file_name().unwrap());
    let mut csv = CsvAppender::open(&out).unwrap();
    for r in &rows {
        csv.append(r).unwrap();
    }
    let lines: Vec<String> = samples
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
    std::fs::write(out.with_extension("samples.jsonl"), lines.join("\n") + "\n").unwrap();
    out
}

#[test]
fn compare_flags_injected_regressions_and_not_two_runs_of_one_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let base = csv_in(&fixtures().join("base"));
    let json = tmp.path().join("verdict.json");

    // Two runs of the same commit: no regression.
    let same = compare(&base, &csv_in(&fixtures().join("new")), &json);
    let text = String::from_utf8_lossy(&same.stdout);
    assert_eq!(same.status.code(), Some(0), "{text}");
    assert!(text.contains("no regression"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["regressions"], 0);
    assert_eq!(v["entries"].as_array().unwrap().len(), 3);
    // Classifier rows: top-1 in percent, as before the embedding columns existed.
    assert!(text.contains("| strategy | top-1 % | accuracy |"), "{text}");
    assert!(!text.contains("cosine"), "{text}");
    for e in v["entries"].as_array().unwrap() {
        assert_eq!(e["metric"], "top1", "{e}");
        assert!(e["top1_baseline"].as_f64().unwrap() > 0.5, "{e}");
        assert!(e["nn_agreement_new"].is_null(), "{e}");
    }

    // 32 digits the w8 strategy got right are now wrong.
    let acc = injected(
        &tmp.path().join("accuracy"),
        "w8-static-channel-sym-minmax",
        |row, s| {
            let mut bits = s.outcomes().unwrap();
            let mut turned = 0;
            for b in bits.iter_mut() {
                if *b && turned < 32 {
                    *b = false;
                    turned += 1;
                }
            }
            row.top1 -= turned as f64 / bits.len() as f64;
            s.correct = harness::runner::samples::encode_bits(bits.into_iter());
        },
    );
    let out = compare(&base, &acc, &json);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let e = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["strategy"] == "w8-static-channel-sym-minmax")
        .unwrap();
    assert_eq!(e["accuracy"]["verdict"], "regression", "{e}");
    assert_eq!(e["latency"]["verdict"], "unchanged", "{e}");
    assert!(text.contains("32 samples lost"), "{text}");

    // The w4 strategy 20 % slower on every timed run.
    let slow = injected(
        &tmp.path().join("latency"),
        "w4-static-channel-sym-minmax",
        |row, s| {
            for t in s.latency_ns.iter_mut() {
                *t = *t * 12 / 10;
            }
            row.latency_median_ns = row.latency_median_ns * 12 / 10;
        },
    );
    let out = compare(&base, &slow, &json);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let flagged: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["latency"]["verdict"] == "regression")
        .map(|e| e["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, vec!["w4-static-channel-sym-minmax"], "{text}");
    assert_eq!(v["regressions"], 1);
}
