//! Per-trial samples beside a run's CSV (`<run-id>.samples.jsonl`, one JSON object per measured trial): which
//! evaluation samples the strategy got right (a bit string, in evaluation order) and every timed run's
//! latency; for sentence encoders also each sentence's cosine to FP32. `harness compare` judges accuracy on
//! the paired per-sample outcomes (McNemar; paired per-sentence cosines with a sign test) and latency on the
//! timing samples (Mann-Whitney), which the CSV's summary columns cannot support. A reused trial keeps its
//! original run id, so its samples are in that run's file.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrialSamples {
    pub run_id: String,
    pub model: String,
    pub target: String,
    pub strategy: String,
    /// Correct (1) or not (0) per evaluation sample, 4 per hex digit, first sample in the high bit.
    pub correct: String,
    pub eval_samples: usize,
    pub latency_ns: Vec<u64>,
    /// Sentence-embedding trials: each evaluation sentence's cosine to its FP32 embedding (absent for
    /// classifiers and in files written before it existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cosines: Vec<f64>,
}

impl TrialSamples {
    /// The per-sample outcomes.
    pub fn outcomes(&self) -> Result<Vec<bool>, String> {
        decode_bits(&self.correct, self.eval_samples)
    }
}

/// `run.csv` -> `run.samples.jsonl`.
pub fn samples_path(csv: &Path) -> PathBuf {
    csv.with_extension("samples.jsonl")
}

/// Booleans as hex digits, four per digit, first in the high bit.
pub fn encode_bits(bits: impl Iterator<Item = bool>) -> String {
    let mut out = String::new();
    let (mut nibble, mut n) = (0u8, 0);
    for b in bits {
        nibble = (nibble << 1) | b as u8;
        n += 1;
        if n == 4 {
            out.push(char::from_digit(nibble as u32, 16).expect("a nibble"));
            (nibble, n) = (0, 0);
        }
    }
    if n > 0 {
        out.push(char::from_digit((nibble << (4 - n)) as u32, 16).expect("a nibble"));
    }
    out
}

/// The inverse of [`encode_bits`] for `len` booleans.
pub fn decode_bits(hex: &str, len: usize) -> Result<Vec<bool>, String> {
    if hex.len() != len.div_ceil(4) {
        return Err(format!(
            "{} hex digits for {len} samples (expected {})",
            hex.len(),
            len.div_ceil(4)
        ));
    }
    let mut out = Vec::with_capacity(len);
    for c in hex.chars() {
        let d = c
            .to_digit(16)
            .ok_or_else(|| format!("`{c}` is not a hex digit"))?;
        for k in (0..4).rev() {
            if out.len() < len {
                out.push(d >> k & 1 == 1);
            }
        }
    }
    Ok(out)
}

/// Appends one JSON line per trial, flushed as it ends.
pub struct SamplesWriter {
    path: PathBuf,
    file: File,
}

impl SamplesWriter {
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::Run(format!("{}: {e}", path.display())))?;
        Ok(SamplesWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn append(&mut self, s: &TrialSamples) -> Result<(), Error> {
        let line = serde_json::to_string(s).map_err(|e| Error::Run(e.to_string()))?;
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::Run(format!("{}: {e}", self.path.display())))
    }
}

/// Every `*.samples.jsonl` in `dir`, read tolerantly (a torn last line is skipped).
pub fn read_dir_samples(dir: &Path) -> Vec<TrialSamples> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.to_string_lossy().ends_with(".samples.jsonl")
            && let Ok(f) = File::open(&p)
        {
            out.extend(
                BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter_map(|l| serde_json::from_str::<TrialSamples>(&l).ok()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_for_ragged_lengths() {
        for len in 0..20 {
            let bits: Vec<bool> = (0..len).map(|i| (i * 7 + len) % 3 == 0).collect();
            let hex = encode_bits(bits.iter().copied());
            assert_eq!(decode_bits(&hex, len).unwrap(), bits, "{len}");
        }
        assert!(decode_bits("zz", 8).is_err());
        assert!(decode_bits("f", 8).is_err());
    }
}
