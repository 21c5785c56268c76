//! Result rows: one flat, self-describing record per trial, and the CSV files they are appended to.
//!
//! The field order of [`Row`] is the column order; units are in the column names; accuracies are fractions.
//!
//! What `top1` holds depends on the model's `metric` column: for `top1` (classifiers) the top-1 accuracy on
//! the labels; for `embedding` (sentence encoders) the mean cosine of the strategy's sentence embeddings to
//! FP32's, so FP32 scores 1 and `top1_drop` is the cosine drop, which `search`'s `max_accuracy_drop` bounds.
//! `top1_agreement` is then the nearest-neighbour agreement. `cosine_mean`, `cosine_min` and `nn_agreement` are
//! filled for embedding models only (empty otherwise, and in files written before they existed).
//! The runner appends and flushes a row as each trial ends, so an interrupted run keeps what it measured.
//! Reports and `search --from` only read these files.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Csv { path: PathBuf, source: csv::Error },
}

/// One trial: a (model, target, strategy) measured on this machine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub run_id: String,
    pub suite: String,
    pub model: String,
    pub dataset: String,
    pub target: String,
    /// The ISA of the kernels that ran (not merely the one requested).
    pub isa: String,
    /// The ISA the target asked for, resolved (`auto` becomes the best this CPU has, or `QH_ISA`).
    pub isa_requested: String,
    /// The GEMM kernels that ran, `+`-joined.
    pub kernel: String,
    pub strategy: String,
    pub weight_bits: u32,
    pub act_mode: String,
    pub granularity: String,
    pub scheme: String,
    pub calibration: String,
    /// `uniform` or `log` levels (`float` for float models).
    #[serde(default)]
    pub quantizer: String,
    /// `float` or `pow2` scales.
    #[serde(default)]
    pub scale_constraint: String,
    /// How weight clipping ranges were chosen: `minmax` or `mse`.
    #[serde(default)]
    pub weight_range: String,
    /// PTQ refinement or fine-tuning applied (`none`, `gptq`, `qat`, ...).
    #[serde(default)]
    pub refinement: String,
    /// A mixed-precision map's per-layer overrides, `Conv_1=8;Gemm_10=fp32` (empty for uniform strategies).
    #[serde(default)]
    pub layer_precision: String,
    pub calib_samples: usize,
    pub eval_samples: usize,
    /// `top1` (classification) or `embedding` (sentence embeddings); empty in files written before it existed.
    #[serde(default)]
    pub metric: String,
    /// Top-1 accuracy, or the mean cosine to FP32 for embedding models (see the module docs).
    pub top1: f64,
    pub top1_drop: f64,
    /// Share of samples where the prediction (the nearest neighbour, for embedding models) is FP32's.
    pub top1_agreement: f64,
    /// Embedding models: the mean over evaluation sentences of the cosine to the FP32 embedding.
    #[serde(default)]
    pub cosine_mean: Option<f64>,
    /// Embedding models: the smallest such cosine.
    #[serde(default)]
    pub cosine_min: Option<f64>,
    /// Embedding models: share of sentences whose nearest other sentence is the one FP32's embeddings give
    /// (empty for fewer than 3 sentences).
    #[serde(default)]
    pub nn_agreement: Option<f64>,
    pub size_bytes: u64,
    pub size_ratio: f64,
    pub latency_median_ns: u64,
    pub latency_p90_ns: u64,
    pub latency_min_ns: u64,
    pub timed_runs: usize,
    pub throughput_per_s: f64,
    pub batch: usize,
    pub threads: usize,
    pub seed: u64,
    pub git_commit: String,
    pub cpu: String,
    pub cpu_features: String,
    pub harness_version: String,
    pub started_at: String,
}

/// Appends rows to one CSV file, writing the header when the file is new.
pub struct CsvAppender {
    path: PathBuf,
    writer: csv::Writer<File>,
}

impl CsvAppender {
    /// Opens (creating folders and the file as needed) for appending. Never truncates.
    pub fn open(path: &Path) -> Result<Self, ResultsError> {
        let io = |source| ResultsError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let fresh = !path.exists() || std::fs::metadata(path).map_err(io)?.len() == 0;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let writer = csv::WriterBuilder::new()
            .has_headers(fresh)
            .from_writer(file);
        Ok(CsvAppender {
            path: path.to_path_buf(),
            writer,
        })
    }

    /// Writes one row and flushes it to the file.
    pub fn append(&mut self, row: &Row) -> Result<(), ResultsError> {
        let csv = |source| ResultsError::Csv {
            path: self.path.clone(),
            source,
        };
        self.writer.serialize(row).map_err(csv)?;
        self.writer.flush().map_err(|source| ResultsError::Io {
            path: self.path.clone(),
            source,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every row of a results CSV.
pub fn read_rows(path: &Path) -> Result<Vec<Row>, ResultsError> {
    let mut reader = csv::Reader::from_path(path).map_err(|source| ResultsError::Csv {
        path: path.to_path_buf(),
        source,
    })?;
    reader
        .deserialize()
        .collect::<Result<Vec<Row>, _>>()
        .map_err(|source| ResultsError::Csv {
            path: path.to_path_buf(),
            source,
        })
}

/// A complete row with plausible values, for tests of code that reads rows.
#[cfg(test)]
pub(crate) fn sample_row(strategy: &str) -> Row {
    Row {
        run_id: "r".into(),
        suite: "s".into(),
        model: "m".into(),
        dataset: "d".into(),
        target: "t".into(),
        isa: "generic".into(),
        isa_requested: "avx2".into(),
        kernel: "k".into(),
        strategy: strategy.into(),
        weight_bits: 8,
        act_mode: "static".into(),
        granularity: "channel".into(),
        scheme: "sym".into(),
        calibration: "minmax".into(),
        quantizer: "uniform".into(),
        scale_constraint: "float".into(),
        weight_range: "minmax".into(),
        refinement: "none".into(),
        layer_precision: String::new(),
        calib_samples: 1,
        eval_samples: 2,
        metric: "top1".into(),
        top1: 0.5,
        top1_drop: 0.0,
        top1_agreement: 1.0,
        cosine_mean: None,
        cosine_min: None,
        nn_agreement: None,
        size_bytes: 10,
        size_ratio: 0.25,
        latency_median_ns: 100,
        latency_p90_ns: 120,
        latency_min_ns: 90,
        timed_runs: 3,
        throughput_per_s: 1e7,
        batch: 1,
        threads: 1,
        seed: 7,
        git_commit: "abc".into(),
        cpu: "cpu, with comma".into(),
        cpu_features: "avx2 fma".into(),
        harness_version: "0.1.0".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(strategy: &str) -> Row {
        sample_row(strategy)
    }

    #[test]
    fn appending_keeps_earlier_rows_and_writes_one_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.csv");
        CsvAppender::open(&path)
            .unwrap()
            .append(&row("fp32"))
            .unwrap();
        CsvAppender::open(&path)
            .unwrap()
            .append(&row("w8"))
            .unwrap();
        let rows = read_rows(&path).unwrap();
        assert_eq!(rows, vec![row("fp32"), row("w8")]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("run_id").count(), 1);
        assert!(text.starts_with(
            "run_id,suite,model,dataset,target,isa,isa_requested,kernel,strategy,weight_bits"
        ));
    }

    #[test]
    fn embedding_columns_round_trip_and_are_empty_for_classifiers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut emb = row("w8");
        emb.metric = "embedding".into();
        (emb.cosine_mean, emb.cosine_min, emb.nn_agreement) = (Some(0.995), Some(0.98), Some(0.9));
        let mut w = CsvAppender::open(&path).unwrap();
        w.append(&row("fp32")).unwrap();
        w.append(&emb).unwrap();
        drop(w);
        assert_eq!(read_rows(&path).unwrap(), vec![row("fp32"), emb]);
        let text = std::fs::read_to_string(&path).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let first: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
        assert_eq!(
            first[col("cosine_mean")],
            "",
            "a classifier's row leaves them empty"
        );
        assert_eq!(first[col("nn_agreement")], "");
    }

    #[test]
    fn files_without_the_embedding_columns_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.csv");
        CsvAppender::open(&path)
            .unwrap()
            .append(&row("w8"))
            .unwrap();
        // Drop the columns this version added, as a file written before them lacks them.
        let added = ["metric", "cosine_mean", "cosine_min", "nn_agreement"];
        let mut reader = csv::Reader::from_path(&path).unwrap();
        let headers = reader.headers().unwrap().clone();
        let record = reader.records().next().unwrap().unwrap();
        let mut out = csv::Writer::from_path(&path).unwrap();
        let pick = |r: &csv::StringRecord| -> Vec<String> {
            (0..r.len())
                .filter(|i| !added.contains(&&headers[*i]))
                .map(|i| r[i].to_string())
                .collect()
        };
        out.write_record(pick(&headers)).unwrap();
        out.write_record(pick(&record)).unwrap();
        drop(out);
        assert!(!std::fs::read_to_string(&path).unwrap().contains("cosine"));
        let back = read_rows(&path).unwrap();
        let mut expected = row("w8");
        expected.metric = String::new();
        assert_eq!(back, vec![expected]);
    }
}
