//! The trial log: every results CSV of a suite (`results/<suite>/*.csv`) read back, so that a run or a
//! search of the same suite reuses the trials measured before (an interrupted one included) instead of
//! measuring them again.
//!
//! Rows are appended and flushed one at a time, so a killed run leaves complete rows, and at worst one torn
//! last line, which is skipped here. A trial is the same trial when everything that decides its numbers is
//! the same: suite, model, dataset and split sizes, target, strategy (and its per-layer map), the ISA the
//! kernels were chosen for, batch, threads, seed and CPU ([`TrialKey`]).

use std::collections::HashMap;
use std::path::Path;

use crate::results::Row;

/// What identifies a trial across runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TrialKey {
    pub suite: String,
    pub model: String,
    pub dataset: String,
    pub target: String,
    pub strategy: String,
    pub layer_precision: String,
    pub isa_requested: String,
    pub batch: usize,
    pub threads: usize,
    pub calib_samples: usize,
    pub eval_samples: usize,
    pub seed: u64,
    pub cpu: String,
}

impl TrialKey {
    pub fn of(row: &Row) -> TrialKey {
        TrialKey {
            suite: row.suite.clone(),
            model: row.model.clone(),
            dataset: row.dataset.clone(),
            target: row.target.clone(),
            strategy: row.strategy.clone(),
            layer_precision: row.layer_precision.clone(),
            isa_requested: row.isa_requested.clone(),
            batch: row.batch,
            threads: row.threads,
            calib_samples: row.calib_samples,
            eval_samples: row.eval_samples,
            seed: row.seed,
            cpu: row.cpu.clone(),
        }
    }
}

/// Earlier trials by key.
#[derive(Debug, Default)]
pub struct TrialLog {
    rows: HashMap<TrialKey, Row>,
    /// Files read.
    pub files: usize,
    /// Lines that were not complete rows (a torn last line, a file of another column layout).
    pub skipped: usize,
}

impl TrialLog {
    /// Reads every `*.csv` directly in `dir` (none when it does not exist), oldest file first; the first
    /// measurement of a key is kept (later files only hold copies of it).
    pub fn load(dir: &Path) -> TrialLog {
        let mut log = TrialLog::default();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return log;
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "csv") && p.is_file())
            .collect();
        files.sort();
        for path in files {
            let Ok(mut reader) = csv::Reader::from_path(&path) else {
                log.skipped += 1;
                continue;
            };
            log.files += 1;
            for record in reader.deserialize::<Row>() {
                match record {
                    Ok(row) => {
                        log.rows.entry(TrialKey::of(&row)).or_insert(row);
                    }
                    Err(_) => log.skipped += 1,
                }
            }
        }
        log
    }

    pub fn get(&self, key: &TrialKey) -> Option<&Row> {
        self.rows.get(key)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{CsvAppender, sample_row};

    #[test]
    fn reads_every_file_skips_torn_lines_and_keeps_the_first_measurement() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("20260101-000000-000.csv");
        let mut w = CsvAppender::open(&a).unwrap();
        w.append(&sample_row("fp32")).unwrap();
        w.append(&sample_row("w8")).unwrap();
        drop(w);
        // A run killed while writing its third row.
        let mut text = std::fs::read_to_string(&a).unwrap();
        text.push_str("r,s,m,d,t,generic,avx2,k,w4,4,sta");
        std::fs::write(&a, text).unwrap();
        let b = dir.path().join("20260102-000000-000.csv");
        let mut later = sample_row("w8");
        later.run_id = "later".into();
        CsvAppender::open(&b).unwrap().append(&later).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a csv").unwrap();
        let log = TrialLog::load(dir.path());
        assert_eq!((log.len(), log.files, log.skipped), (2, 2, 1));
        let w8 = log.get(&TrialKey::of(&later)).unwrap();
        assert_eq!(w8.run_id, "r", "the first measurement is kept");
        let mut other_target = sample_row("w8");
        other_target.target = "elsewhere".into();
        assert!(log.get(&TrialKey::of(&other_target)).is_none());
        assert!(TrialLog::load(&dir.path().join("missing")).is_empty());
    }
}
