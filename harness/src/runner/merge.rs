//! `harness merge`: joins the result CSVs of a sharded run (`harness run --shard i/N` on N machines) into
//! one, in the suite's trial order, so that it equals the unsharded run's rows apart from the timing and
//! provenance columns (each shard measured its own trials, at its own time).
//!
//! Every shard measures the FP32 baseline its trials are compared with, so FP32 rows repeat across shards:
//! the first one of each (model, target) is kept. Any other trial found twice is an error (two shards ran
//! it: the shard arguments overlapped), as is a trial the suite does not have, or one missing from every
//! shard (a shard did not finish).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::Prepared;
use super::trial_order;
use crate::error::Error;
use crate::results::{CsvAppender, Row, read_rows};

/// What a merge wrote.
#[derive(Debug)]
pub struct MergeOutcome {
    pub csv: PathBuf,
    pub rows: usize,
    /// FP32 rows that more than one shard measured (one kept).
    pub baselines_dropped: usize,
}

/// Merges `inputs` (shard CSVs of `prepared`'s suite) into `out` in the suite's order.
pub fn merge(prepared: &Prepared, inputs: &[PathBuf], out: &Path) -> Result<MergeOutcome, Error> {
    let suite = &prepared.suite;
    let order = trial_order(prepared);
    let position: HashMap<(String, String, String), usize> = order
        .iter()
        .enumerate()
        .map(|(i, &(m, t, s))| {
            (
                (
                    prepared.models[m].name.clone(),
                    prepared.targets[t].0.name.clone(),
                    suite.strategies[s].name(),
                ),
                i,
            )
        })
        .collect();
    let mut slots: Vec<Option<Row>> = vec![None; order.len()];
    let mut baselines_dropped = 0;
    for path in inputs {
        for row in read_rows(path)? {
            let key = (row.model.clone(), row.target.clone(), row.strategy.clone());
            let Some(&i) = position.get(&key) else {
                return Err(Error::Usage(format!(
                    "{}: trial ({}, {}, {}) is not in suite `{}`",
                    path.display(),
                    key.0,
                    key.1,
                    key.2,
                    suite.name
                )));
            };
            match &slots[i] {
                None => slots[i] = Some(row),
                Some(_) if row.strategy == "fp32" => baselines_dropped += 1,
                Some(first) => {
                    return Err(Error::Usage(format!(
                        "{}: trial ({}, {}, {}) is also in run {}: shards overlap",
                        path.display(),
                        key.0,
                        key.1,
                        key.2,
                        first.run_id
                    )));
                }
            }
        }
    }
    let missing: Vec<String> = slots
        .iter()
        .zip(&order)
        .filter(|(r, _)| r.is_none())
        .map(|(_, &(m, t, s))| {
            format!(
                "({}, {}, {})",
                prepared.models[m].name,
                prepared.targets[t].0.name,
                suite.strategies[s].name()
            )
        })
        .collect();
    if !missing.is_empty() {
        return Err(Error::Usage(format!(
            "{} trial(s) of suite `{}` are in no shard, e.g. {}: did every shard finish?",
            missing.len(),
            suite.name,
            missing[..missing.len().min(3)].join(", ")
        )));
    }
    if out.exists() {
        return Err(Error::Usage(format!(
            "{} exists; merge writes a new file",
            out.display()
        )));
    }
    let mut csv = CsvAppender::open(out)?;
    for row in slots.iter().flatten() {
        csv.append(row)?;
    }
    Ok(MergeOutcome {
        csv: out.to_path_buf(),
        rows: slots.len(),
        baselines_dropped,
    })
}
