//! The runner: prepares a suite (loads and splits data, imports models, resolves kernels: every input error
//! surfaces here, before a results file is opened), then runs every (model, target, strategy) trial and
//! appends its row as soon as it is measured.
//!
//! Two kinds of models: classifiers (ONNX, `metric = "top1"`) fed f32 samples, scored on their labels; and
//! sentence encoders (`format = "bert"`, `metric = "embedding"`) fed tokenised sentences, scored against the
//! FP32 embeddings of the same sentences on the same kernels (computed once per model and kernels): mean and
//! minimum cosine and nearest-neighbour agreement. An encoder's timed input is the target's `batch` first
//! evaluation sentences padded to the longest of them. Static calibration of encoders is min-max only and the
//! PTQ refinements and QAT (which read f32 image batches) are not available for them: a suite asking for them
//! is an error before anything runs.

pub mod log;
pub mod measure;
pub mod merge;
pub mod provenance;
pub mod samples;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kernels::{KernelSet, select};
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use rayon::prelude::*;

use crate::data::{self, DataError, RawData, stratified_split};
use crate::error::Error;
use crate::exec::reference::Fp32Executor;
use crate::ir::{Dim, Graph, Tensor};
use crate::models::bert::{self, SENTENCE_EMBEDDING};
use crate::quant::refine::RefineData;
use crate::quant::serialize::{serialize_fp32, serialize_quantized};
use crate::quant::strategy::{LinearStrategy, MixedId, MixedPrecision, Refinement};
use crate::quant::{ActMode, ActivationRanges, QuantizedModel, Strategy};
use crate::results::{CsvAppender, Row};
use crate::suite::spec::{DataFormat, Metric, ModelFormat};
use crate::suite::{DatasetDef, ModelDef, Suite};
use crate::text::{TokenBatch, Tokenizer, TokenizerOptions, load_text_lines};
use measure::{LatencyStats, time_runs};
use provenance::Provenance;

/// A dataset split and normalised, ready to feed a model.
pub struct PreparedData {
    pub name: String,
    pub shape: Vec<usize>,
    /// `[calibration samples, features]`.
    pub calibration: Array2<f32>,
    pub calib_labels: Vec<i64>,
    /// `[evaluation samples, features]`.
    pub evaluation: Array2<f32>,
    pub eval_labels: Vec<i64>,
    /// A text dataset's sentences (the arrays above are then empty).
    pub text: Option<TextSplit>,
}

/// A text dataset split: each side keeps the file's order.
#[derive(Clone, Debug)]
pub struct TextSplit {
    pub calibration: Vec<String>,
    pub evaluation: Vec<String>,
    /// The dataset's own tokenizer file (else the model folder's `tokenizer.json`).
    pub tokenizer: Option<PathBuf>,
    pub max_length: Option<usize>,
}

impl PreparedData {
    /// Calibration samples (sentences for text).
    pub fn calibration_len(&self) -> usize {
        self.text
            .as_ref()
            .map_or(self.calibration.nrows(), |t| t.calibration.len())
    }

    /// Evaluation samples (sentences for text).
    pub fn evaluation_len(&self) -> usize {
        self.text
            .as_ref()
            .map_or(self.evaluation.nrows(), |t| t.evaluation.len())
    }

    /// The calibration split in model input batches of at most `chunk` samples.
    pub fn calibration_batches(&self, chunk: usize) -> impl Iterator<Item = ArrayD<f32>> + '_ {
        let n = self.calibration.nrows();
        (0..n)
            .step_by(chunk.max(1))
            .map(move |s| self.batch(&self.calibration, s..(s + chunk).min(n)))
    }

    /// Rows `range` of `samples` as a model input batch `[n, shape...]`.
    pub fn batch(&self, samples: &Array2<f32>, range: std::ops::Range<usize>) -> ArrayD<f32> {
        let rows = samples.slice(ndarray::s![range, ..]);
        let mut dims = vec![rows.nrows()];
        dims.extend(&self.shape);
        ArrayD::from_shape_vec(IxDyn(&dims), rows.iter().copied().collect())
            .expect("features match shape")
    }
}

/// A model imported, checked against its dataset, with its FP32 reference ready.
pub struct PreparedModel {
    pub name: String,
    pub graph: Graph,
    /// The input fed with the dataset's samples (`input_ids` for a sentence encoder).
    pub input: String,
    pub dataset: usize,
    /// A sentence encoder's tokenizer and tokenised sentences (`None` for classifiers).
    pub text: Option<TextModel>,
}

/// A sentence encoder's inputs, tokenised once.
pub struct TextModel {
    pub tokenizer: Tokenizer,
    /// The evaluation sentences in batches of `measure.eval_batch`, each padded to its longest sentence.
    pub eval_batches: Vec<TokenBatch>,
    /// The calibration sentences, batched the same way.
    pub calib_batches: Vec<TokenBatch>,
}

impl PreparedModel {
    pub fn metric(&self) -> Metric {
        if self.text.is_some() {
            Metric::Embedding
        } else {
            Metric::Top1
        }
    }
}

/// A suite with everything loaded and checked.
pub struct Prepared {
    pub suite: Suite,
    pub data: Vec<PreparedData>,
    pub models: Vec<PreparedModel>,
    pub targets: Vec<(crate::suite::TargetDef, KernelSet)>,
}

/// Loads a dataset and splits it as the suite says.
pub fn prepare_data(def: &DatasetDef, seed: u64) -> Result<PreparedData, Error> {
    let wrap = |source: DataError| Error::Data {
        dataset: def.name.clone(),
        source,
    };
    let raw: RawData = match def.format {
        DataFormat::Csv => data::load_csv(&def.path, def.label),
        DataFormat::Npy => data::load_npy(&def.path, def.labels.as_deref().expect("validated")),
        DataFormat::Idx => data::load_idx(&def.path, def.labels.as_deref().expect("validated")),
        DataFormat::Text => return prepare_text(def, seed),
    }
    .map_err(wrap)?;
    let per_sample: usize = def.shape.iter().product();
    if raw.features_per_sample() != per_sample {
        return Err(Error::Suite(def.split_at.error(format!(
            "dataset `{}` has {} values per sample but `shape = {:?}` needs {per_sample}",
            def.name,
            raw.features_per_sample(),
            def.shape
        ))));
    }
    let split = stratified_split(&raw.labels, def.calibration, def.evaluation, seed)
        .map_err(|e| Error::Suite(def.split_at.error(format!("dataset `{}`: {e}", def.name))))?;
    let mut calibration = raw.select(&split.calibration).map_err(wrap)?;
    let mut evaluation = raw.select(&split.evaluation).map_err(wrap)?;
    if let Some(n) = &def.normalize {
        n.validate().map_err(wrap)?;
        n.apply(&mut calibration.features);
        n.apply(&mut evaluation.features);
    }
    Ok(PreparedData {
        name: def.name.clone(),
        shape: def.shape.clone(),
        calibration: calibration.features,
        calib_labels: calibration.labels,
        evaluation: evaluation.features,
        eval_labels: evaluation.labels,
        text: None,
    })
}

/// Loads a text dataset and splits its sentences (a seeded shuffle; each side in file order).
fn prepare_text(def: &DatasetDef, seed: u64) -> Result<PreparedData, Error> {
    let lines = load_text_lines(&def.path)
        .map_err(|e| Error::Usage(format!("dataset `{}`: {e}", def.name)))?;
    // One class: the stratified split is a seeded random split.
    let split = stratified_split(&vec![0; lines.len()], def.calibration, def.evaluation, seed)
        .map_err(|e| Error::Suite(def.split_at.error(format!("dataset `{}`: {e}", def.name))))?;
    let side = |indices: &[usize]| -> Result<Vec<String>, Error> {
        Ok(lines
            .select(indices)
            .map_err(|e| Error::Usage(format!("dataset `{}`: {e}", def.name)))?
            .sentences)
    };
    Ok(PreparedData {
        name: def.name.clone(),
        shape: Vec::new(),
        calibration: Array2::zeros((0, 0)),
        calib_labels: Vec::new(),
        evaluation: Array2::zeros((0, 0)),
        eval_labels: Vec::new(),
        text: Some(TextSplit {
            calibration: side(&split.calibration)?,
            evaluation: side(&split.evaluation)?,
            tokenizer: def.tokenizer.clone(),
            max_length: def.max_length,
        }),
    })
}

/// Imports a BERT folder and tokenises its dataset's sentences; checks that one sentence runs.
fn prepare_bert(
    def: &ModelDef,
    data: &PreparedData,
    kernels: KernelSet,
    eval_batch: usize,
) -> Result<PreparedModel, Error> {
    let fail = |message: String| Error::Model {
        model: def.name.clone(),
        message,
    };
    let text = data
        .text
        .as_ref()
        .expect("validated: bert models read text datasets");
    let model = bert::load_bert(&def.path).map_err(|e| fail(e.to_string()))?;
    let file = text
        .tokenizer
        .clone()
        .unwrap_or_else(|| def.path.join("tokenizer.json"));
    let is_json = file.extension().is_some_and(|e| e == "json");
    let tokenizer = if is_json {
        Tokenizer::from_tokenizer_json(&file)
    } else {
        Tokenizer::from_vocab_txt(&file, TokenizerOptions::bert_uncased())
    }
    .map_err(|e| fail(e.to_string()))?;
    let positions = model.config.max_position_embeddings;
    let max_length = text.max_length.unwrap_or(tokenizer.options().max_length);
    if max_length > positions {
        return Err(fail(format!(
            "sequences of {max_length} tokens exceed the model's {positions} positions: set `max_length` on dataset `{}` to at most {positions}",
            data.name
        )));
    }
    let tokenizer = tokenizer.with_max_length(max_length);
    let batches = |sentences: &[String]| -> Vec<TokenBatch> {
        sentences
            .chunks(eval_batch.max(1))
            .map(|c| tokenizer.batch(c))
            .collect()
    };
    let (eval_batches, calib_batches) = (batches(&text.evaluation), batches(&text.calibration));
    // One sentence through the FP32 executor: a model that cannot run fails now, not mid-run.
    let exec = Fp32Executor::new(&model.graph, kernels).map_err(|e| fail(e.to_string()))?;
    let one = tokenizer.batch(&text.calibration[..1]);
    bert::embed(&exec, &one).map_err(|e| fail(e.to_string()))?;
    Ok(PreparedModel {
        name: def.name.clone(),
        graph: model.graph,
        input: bert::INPUT_IDS.to_string(),
        dataset: def.dataset,
        text: Some(TextModel {
            tokenizer,
            eval_batches,
            calib_batches,
        }),
    })
}

impl PreparedData {
    /// Writes the split as NumPy files other tools (a peer runtime, a notebook) can read:
    /// `calibration_f32.npy` / `evaluation_f32.npy` (normalised samples, `[n, shape...]`) and
    /// `calibration_labels_i64.npy` / `evaluation_labels_i64.npy`. Returns the files written.
    pub fn export(&self, dir: &Path) -> Result<Vec<PathBuf>, Error> {
        let wrap = |source: DataError| Error::Data {
            dataset: self.name.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|source| {
            wrap(DataError::Io {
                path: dir.to_path_buf(),
                source,
            })
        })?;
        let mut written = Vec::new();
        if let Some(text) = &self.text {
            for (split, sentences) in [
                ("calibration", &text.calibration),
                ("evaluation", &text.evaluation),
            ] {
                let path = dir.join(format!("{split}.txt"));
                let mut body = sentences.join("\n");
                body.push('\n');
                std::fs::write(&path, body).map_err(|source| {
                    wrap(DataError::Io {
                        path: path.clone(),
                        source,
                    })
                })?;
                written.push(path);
            }
            return Ok(written);
        }
        for (split, samples, labels) in [
            ("calibration", &self.calibration, &self.calib_labels),
            ("evaluation", &self.evaluation, &self.eval_labels),
        ] {
            let mut shape = vec![samples.nrows()];
            shape.extend(&self.shape);
            let features = dir.join(format!("{split}_f32.npy"));
            let data: Vec<f32> = samples.iter().copied().collect();
            data::write_npy(&features, &shape, &data).map_err(wrap)?;
            let label_file = dir.join(format!("{split}_labels_i64.npy"));
            data::write_npy(&label_file, &[labels.len()], labels).map_err(wrap)?;
            written.extend([features, label_file]);
        }
        Ok(written)
    }
}

impl Prepared {
    /// Everything that can fail because of the suite's inputs fails here.
    pub fn new(suite: Suite, progress: bool) -> Result<Prepared, Error> {
        let mut data = Vec::new();
        for def in &suite.datasets {
            let t = Instant::now();
            data.push(prepare_data(def, suite.seed)?);
            if progress {
                eprintln!(
                    "loaded dataset {}: {} calibration + {} evaluation samples ({:.1} s)",
                    def.name,
                    def.calibration,
                    def.evaluation,
                    t.elapsed().as_secs_f64()
                );
            }
        }
        let mut targets = Vec::new();
        for t in &suite.targets {
            let kernels = select(t.isa).map_err(|e| Error::Suite(t.at.error(e.to_string())))?;
            targets.push((t.clone(), kernels));
        }
        check_text_strategies(&suite)?;
        let mut models = Vec::new();
        for def in &suite.models {
            if def.format == ModelFormat::Bert {
                let t = Instant::now();
                let model = prepare_bert(
                    def,
                    &data[def.dataset],
                    targets[0].1,
                    suite.measure.eval_batch,
                )?;
                check_mixed_layers(&suite, &model)?;
                if progress {
                    eprintln!(
                        "loaded model {} from {} ({:.1} s)",
                        def.name,
                        def.path.display(),
                        t.elapsed().as_secs_f64()
                    );
                }
                models.push(model);
                continue;
            }
            let graph = crate::onnx::load_model(&def.path).map_err(|source| Error::Import {
                model: def.name.clone(),
                source: Box::new(source),
            })?;
            let input = match (&def.input, graph.inputs.as_slice()) {
                (Some(name), inputs) if inputs.iter().any(|i| &i.name == name) => name.clone(),
                (None, [only]) => only.name.clone(),
                (_, inputs) => {
                    let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
                    return Err(Error::Suite(def.at.error(format!(
                        "model `{}` has inputs [{}]; set `input` to the one the dataset feeds",
                        def.name,
                        names.join(", ")
                    ))));
                }
            };
            let d = &data[def.dataset];
            let declared = &graph
                .inputs
                .iter()
                .find(|i| i.name == input)
                .expect("found")
                .shape;
            let fixed: Vec<Option<usize>> = declared
                .iter()
                .skip(1)
                .map(|dim| match dim {
                    Dim::Fixed(n) => Some(*n),
                    Dim::Symbolic(_) => None,
                })
                .collect();
            let matches = fixed.len() == d.shape.len()
                && fixed
                    .iter()
                    .zip(&d.shape)
                    .all(|(f, s)| f.is_none_or(|f| f == *s));
            if !matches {
                return Err(Error::Suite(def.at.error(format!(
                    "model `{}` input `{input}` has shape {declared:?}; dataset `{}` gives [N, {:?}]",
                    def.name, d.name, d.shape
                ))));
            }
            // One sample through the FP32 executor: a model that cannot run fails now, not mid-run.
            let exec = Fp32Executor::new(&graph, targets[0].1).map_err(|e| Error::Model {
                model: def.name.clone(),
                message: e.to_string(),
            })?;
            exec.run(&[(&input, d.batch(&d.calibration, 0..1))])
                .map_err(|e| Error::Model {
                    model: def.name.clone(),
                    message: e.to_string(),
                })?;
            let model = PreparedModel {
                name: def.name.clone(),
                graph,
                input,
                dataset: def.dataset,
                text: None,
            };
            check_mixed_layers(&suite, &model)?;
            models.push(model);
        }
        Ok(Prepared {
            suite,
            data,
            models,
            targets,
        })
    }
}

/// Mixed-precision maps name layers: an unknown one is an input error now, not mid-run.
fn check_mixed_layers(suite: &Suite, model: &PreparedModel) -> Result<(), Error> {
    let layers = crate::quant::model::linear_layer_names(&model.graph);
    for map in &suite.mixed {
        if let Some(unknown) = map.layers.keys().find(|l| !layers.contains(l)) {
            return Err(Error::Model {
                model: model.name.clone(),
                message: format!(
                    "mixed-precision map `{}` names layer `{unknown}`, which is not one of its Conv / Gemm / MatMul layers ({})",
                    map.name,
                    layers.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// Sentence encoders are calibrated min-max only (by [`Session`]'s own observer: the calibrators of
/// `quant::calibrate` take one f32 input) and get no refinement or QAT (their statistics are gathered on f32
/// image batches): a suite asking for them is an input error.
fn check_text_strategies(suite: &Suite) -> Result<(), Error> {
    let Some(model) = suite.models.iter().find(|m| m.format == ModelFormat::Bert) else {
        return Ok(());
    };
    for s in &suite.strategies {
        let Strategy::Linear(l) = s else { continue };
        let calibration = l.calibration.unwrap_or(crate::quant::Calibration::MinMax);
        if l.act == ActMode::Static && calibration != crate::quant::Calibration::MinMax {
            return Err(Error::Suite(model.at.error(format!(
                "strategy `{}`: text models are calibrated with minmax only, not `{}` (set `calibration = [\"minmax\"]`)",
                s.name(),
                calibration.name()
            ))));
        }
        if l.refinement != Refinement::None {
            return Err(Error::Suite(model.at.error(format!(
                "strategy `{}`: the `{}` refinement is not available for text models (use `refinement = [\"none\"]`)",
                s.name(),
                l.refinement.name()
            ))));
        }
    }
    Ok(())
}

/// A built model: logits of an f32 batch (classifiers), or every output of named tensors (encoders).
trait Classifier: Sync {
    fn logits(&self, input: &str, batch: ArrayD<f32>) -> Result<ArrayD<f32>, Error>;
    fn outputs(&self, inputs: &[(&str, Tensor)]) -> Result<Vec<(String, Tensor)>, Error>;
}

impl Classifier for Fp32Executor {
    fn logits(&self, input: &str, batch: ArrayD<f32>) -> Result<ArrayD<f32>, Error> {
        let out = self
            .run(&[(input, batch)])
            .map_err(|e| Error::Run(e.to_string()))?;
        first_f32(out)
    }

    fn outputs(&self, inputs: &[(&str, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        self.run_tensors(inputs)
            .map_err(|e| Error::Run(e.to_string()))
    }
}

impl Classifier for QuantizedModel {
    fn logits(&self, input: &str, batch: ArrayD<f32>) -> Result<ArrayD<f32>, Error> {
        let out = self
            .run(&[(input, batch)])
            .map_err(|e| Error::Run(e.to_string()))?;
        first_f32(out)
    }

    fn outputs(&self, inputs: &[(&str, Tensor)]) -> Result<Vec<(String, Tensor)>, Error> {
        self.run_tensors(inputs)
            .map_err(|e| Error::Run(e.to_string()))
    }
}

/// The [`SENTENCE_EMBEDDING`] output of one token batch, `[batch, hidden]`.
fn sentence_embeddings(model: &dyn Classifier, batch: &TokenBatch) -> Result<Array2<f32>, Error> {
    let outputs = model.outputs(&batch.to_inputs())?;
    let bad = |what: String| Error::Run(format!("output `{SENTENCE_EMBEDDING}`: {what}"));
    match outputs.into_iter().find(|(n, _)| n == SENTENCE_EMBEDDING) {
        Some((_, Tensor::F32(a))) => {
            let shape = a.shape().to_vec();
            match a.into_dimensionality() {
                Ok(e) if shape[0] == batch.len() => Ok(e),
                _ => Err(bad(format!(
                    "shape {shape:?} for {} sentences: expected [sentences, hidden]",
                    batch.len()
                ))),
            }
        }
        Some((_, t)) => Err(bad(format!("{}, not f32", t.dtype()))),
        None => Err(bad("the model has no such output".into())),
    }
}

/// Sentence embeddings of every batch in order, `[sentences, hidden]`; batches run in parallel (each is
/// computed alone, so results do not depend on the thread count).
fn embed_batches(model: &dyn Classifier, batches: &[TokenBatch]) -> Result<Array2<f32>, Error> {
    let parts: Vec<Array2<f32>> = batches
        .par_iter()
        .map(|b| sentence_embeddings(model, b))
        .collect::<Result<_, Error>>()?;
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views).map_err(|e| Error::Run(e.to_string()))
}

fn first_f32(outputs: Vec<(String, Tensor)>) -> Result<ArrayD<f32>, Error> {
    match outputs.into_iter().next() {
        Some((_, Tensor::F32(a))) => Ok(a),
        Some((name, t)) => Err(Error::Run(format!(
            "output `{name}` is {}, not f32 logits",
            t.dtype()
        ))),
        None => Err(Error::Run("the model has no output".into())),
    }
}

/// Top-1 class of every evaluation sample, computed in parallel over fixed chunks (so results do not
/// depend on the thread count).
fn predict(
    model: &dyn Classifier,
    input: &str,
    data: &PreparedData,
    chunk: usize,
) -> Result<Vec<usize>, Error> {
    use rayon::prelude::*;
    let n = data.evaluation.nrows();
    let starts: Vec<usize> = (0..n).step_by(chunk).collect();
    let parts: Vec<Vec<usize>> = starts
        .par_iter()
        .map(|&s| {
            let rows = chunk.min(n - s);
            let logits = model.logits(input, data.batch(&data.evaluation, s..s + rows))?;
            if logits.is_empty() || logits.len() % rows != 0 || logits.shape()[0] != rows {
                return Err(Error::Run(format!(
                    "logits of shape {:?} for a batch of {rows}: expected [{rows}, classes]",
                    logits.shape()
                )));
            }
            let classes = logits.len() / rows;
            let flat = logits
                .into_shape_with_order((rows, classes))
                .map_err(|e| Error::Run(e.to_string()))?;
            Ok(flat
                .axis_iter(Axis(0))
                .map(|r| argmax(r.iter().copied()))
                .collect())
        })
        .collect::<Result<_, Error>>()?;
    Ok(parts.concat())
}

/// Index of the largest value (the first one on ties, as numpy's argmax).
fn argmax(values: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Options for one `run` (or one search's trials).
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub results_dir: PathBuf,
    /// Print one line per trial on stderr.
    pub progress: bool,
    /// Reuse the trials already in `results/<suite>/*.csv` (see [`log`]) instead of measuring them again.
    pub resume: bool,
    /// `Some((i, n))`: run only the trials whose index in the suite's order is `i` modulo `n` (0-based), so
    /// `n` machines split a sweep; `harness merge` joins their CSVs. Every shard also measures the FP32
    /// baseline its trials are compared with.
    pub shard: Option<(usize, usize)>,
}

/// Every trial of a prepared suite in its canonical order (models, then targets, then the expanded
/// strategies), each target's profile permitting: `(model, target, strategy)` indices.
pub fn trial_order(prepared: &Prepared) -> Vec<(usize, usize, usize)> {
    let suite = &prepared.suite;
    let mut order = Vec::new();
    for m in 0..prepared.models.len() {
        for (t, (target, _)) in prepared.targets.iter().enumerate() {
            for (s, strategy) in suite.strategies.iter().enumerate() {
                if target.allows(strategy, &suite.mixed) {
                    order.push((m, t, s));
                }
            }
        }
    }
    order
}

/// What a run produced.
pub struct RunOutcome {
    pub csv: PathBuf,
    pub rows: Vec<Row>,
    /// Trials measured by this run.
    pub trials_run: usize,
    /// Trials taken from the log of earlier runs.
    pub trials_reused: usize,
}

/// Runs every trial of a prepared suite (each target's profile permitting), appending rows to
/// `results/<suite>/<run-id>.csv`; with `opts.resume`, trials already logged are reused.
pub fn run(prepared: &Prepared, opts: &RunOptions) -> Result<RunOutcome, Error> {
    let mut session = Session::open(prepared, opts)?;
    let suite = &prepared.suite;
    let trials: Vec<(usize, usize, usize)> = trial_order(prepared)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| opts.shard.is_none_or(|(k, n)| i % n == k))
        .map(|(_, trial)| trial)
        .collect();
    session.total = Some(trials.len());
    for (m, t, s) in trials {
        session.trial(m, t, &suite.strategies[s])?;
    }
    Ok(session.finish())
}

/// How well a trial's outputs match: the row's quality columns and the per-sample outcomes.
struct Quality {
    /// Top-1 accuracy, or an encoder's mean cosine to FP32.
    top1: f64,
    /// Agreement with FP32 (predictions, or nearest neighbours; 1 for fewer than 3 sentences).
    agreement: f64,
    /// Per evaluation sample: right label, or unchanged nearest neighbour.
    correct: Vec<bool>,
    /// An encoder's per-sentence cosine to FP32 (empty for classifiers).
    cosines: Vec<f64>,
    embedding: Option<crate::text::EmbeddingMetrics>,
}

/// Min-max ranges of every f32 value of an encoder over its calibration batches (FP32 on `exec`), as fixed
/// ranges for the static strategies.
fn observe_min_max(exec: &Fp32Executor, batches: &[TokenBatch]) -> Result<ActivationRanges, Error> {
    let mut ranges: HashMap<String, (f32, f32)> = HashMap::new();
    for batch in batches {
        exec.run_tensors_observed(&batch.to_inputs(), &mut |name, t| {
            if let Tensor::F32(a) = t {
                let (lo, hi) = a
                    .iter()
                    .filter(|v| v.is_finite())
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                        (lo.min(v), hi.max(v))
                    });
                let e = ranges
                    .entry(name.to_string())
                    .or_insert((f32::INFINITY, f32::NEG_INFINITY));
                *e = (e.0.min(lo), e.1.max(hi));
            }
        })
        .map_err(|e| Error::Run(format!("calibration: {e}")))?;
    }
    Ok(ActivationRanges::from_fixed(
        ranges.into_iter().filter(|(_, (lo, hi))| lo <= hi),
    ))
}

/// A built strategy: the classifier, the kernels it runs and its serialized size.
type Built = (Box<dyn Classifier>, Vec<&'static str>, u64);

/// Per-model state computed at most once and shared by every trial of the model: calibration ranges,
/// refinement statistics, QAT outcomes.
#[derive(Default)]
struct ModelCache {
    ranges: Option<Option<ActivationRanges>>,
    refine: Option<Option<RefineData>>,
    /// The cross-layer-equalized graph and its activation ranges (static strategies), for `cle`.
    equalized: Option<(crate::ir::Graph, Option<ActivationRanges>)>,
    qat: HashMap<u32, QatOutcome>,
}

/// Trials on demand, for `run` (every strategy) and `search` (the ones its algorithm proposes). Each trial
/// is appended to this run's CSV as it ends; with resume, trials of the log are copied instead of measured.
pub struct Session<'p> {
    prepared: &'p Prepared,
    prov: Provenance,
    out: CsvAppender,
    /// This run's per-trial samples (`<run-id>.samples.jsonl` beside the CSV).
    samples: samples::SamplesWriter,
    log: log::TrialLog,
    cache: Vec<ModelCache>,
    /// Predictions by (model, strategy, kernels): targets that share kernels share one accuracy pass.
    predictions: HashMap<(usize, String, String), Vec<usize>>,
    /// Sentence embeddings of the evaluation split, keyed the same way (FP32's are every encoder trial's
    /// reference).
    embeddings: HashMap<(usize, String, String), Array2<f32>>,
    /// Trials of this session by key, as indices into `rows`.
    done: HashMap<log::TrialKey, usize>,
    rows: Vec<Row>,
    trials_run: usize,
    trials_reused: usize,
    progress: bool,
    /// Trials planned, for progress lines (`None`: a search, open-ended).
    pub total: Option<usize>,
    /// Per-layer precision maps a search made up (sensitivity probes, bit allocations): their
    /// [`MixedId`] indices follow the suite's own maps.
    extra_mixed: Vec<MixedPrecision>,
    /// FP32 logits of the first evaluation samples per (model, target), for [`Session::output_error`].
    fp32_logits: HashMap<(usize, usize), ArrayD<f32>>,
    /// When the session opened, for the progress lines' elapsed and remaining times.
    opened: Instant,
}

impl<'p> Session<'p> {
    /// Opens this run's CSV and reads the log of earlier runs (with `opts.resume`).
    pub fn open(prepared: &'p Prepared, opts: &RunOptions) -> Result<Session<'p>, Error> {
        let suite = &prepared.suite;
        let prov = Provenance::collect();
        let dir = opts.results_dir.join(&suite.name);
        // Read the log before this run's file exists.
        let log = if opts.resume {
            log::TrialLog::load(&dir)
        } else {
            log::TrialLog::default()
        };
        let csv_path = dir.join(format!("{}.csv", prov.run_id));
        let out = CsvAppender::open(&csv_path)?;
        let samples = samples::SamplesWriter::open(&samples::samples_path(&csv_path))?;
        if opts.progress {
            eprintln!("writing {}", csv_path.display());
            if !log.is_empty() {
                eprintln!(
                    "trial log: {} earlier trials in {} files of {} (reused when they match)",
                    log.len(),
                    log.files,
                    dir.display()
                );
            }
        }
        Ok(Session {
            prepared,
            prov,
            out,
            samples,
            log,
            cache: prepared
                .models
                .iter()
                .map(|_| ModelCache::default())
                .collect(),
            predictions: HashMap::new(),
            embeddings: HashMap::new(),
            done: HashMap::new(),
            rows: Vec::new(),
            trials_run: 0,
            trials_reused: 0,
            progress: opts.progress,
            total: None,
            extra_mixed: Vec::new(),
            fp32_logits: HashMap::new(),
            opened: Instant::now(),
        })
    }

    pub fn prepared(&self) -> &'p Prepared {
        self.prepared
    }

    /// Every per-layer precision map strategies of this session can name: the suite's, then the ones
    /// added with [`Session::intern_mixed`].
    pub fn mixed_maps(&self) -> Vec<MixedPrecision> {
        let mut all = self.prepared.suite.mixed.clone();
        all.extend(self.extra_mixed.iter().cloned());
        all
    }

    /// The map `id` names.
    pub fn mixed(&self, id: MixedId) -> &MixedPrecision {
        let suite = &self.prepared.suite.mixed;
        let i = id.index as usize;
        if i < suite.len() {
            &suite[i]
        } else {
            &self.extra_mixed[i - suite.len()]
        }
    }

    /// An id for `map`, made up by a search: the same id for a map of the same name and layers (so that a
    /// strategy that uses it has the same name, and the same key in the trial log, in every run).
    pub fn intern_mixed(&mut self, map: MixedPrecision) -> MixedId {
        let suite = &self.prepared.suite.mixed;
        let found = suite
            .iter()
            .chain(self.extra_mixed.iter())
            .position(|m| *m == map);
        let index = match found {
            Some(i) => i,
            None => {
                self.extra_mixed.push(map);
                suite.len() + self.extra_mixed.len() - 1
            }
        };
        let name: &'static str = Box::leak(self.mixed_at(index).name.clone().into_boxed_str());
        MixedId {
            index: index as u16,
            name,
        }
    }

    fn mixed_at(&self, index: usize) -> &MixedPrecision {
        self.mixed(MixedId {
            index: index as u16,
            name: "",
        })
    }

    /// The relative L2 error of `strategy`'s logits against FP32's (`|q - f| / |f|`) on the first evaluation
    /// batch of model `m`, on target `t`'s kernels: a smooth measure of how much a quantization disturbs
    /// the model, where top-1 moves in steps of one sample.
    pub fn output_error(&mut self, m: usize, t: usize, strategy: &Strategy) -> Result<f64, Error> {
        let p = self.prepared;
        let model = &p.models[m];
        let data = &p.data[model.dataset];
        let n = p.suite.measure.eval_batch.min(data.evaluation.nrows());
        // Logits of the first evaluation batch, or an encoder's sentence embeddings of its first batch.
        let first = |c: &dyn Classifier| match &model.text {
            Some(text) => sentence_embeddings(c, &text.eval_batches[0]).map(|e| e.into_dyn()),
            None => c.logits(&model.input, data.batch(&data.evaluation, 0..n)),
        };
        if !self.fp32_logits.contains_key(&(m, t)) {
            let (fp32, _, _) = self.build(m, t, &Strategy::Fp32)?;
            let logits = first(fp32.as_ref())?;
            self.fp32_logits.insert((m, t), logits);
        }
        let (q, _, _) = self.build(m, t, strategy)?;
        let logits = first(q.as_ref())?;
        let reference = &self.fp32_logits[&(m, t)];
        if logits.shape() != reference.shape() {
            return Err(Error::Run(format!(
                "{} gives logits of shape {:?}, FP32 {:?}",
                strategy.name(),
                logits.shape(),
                reference.shape()
            )));
        }
        let (mut err, mut norm) = (0.0f64, 0.0f64);
        for (a, b) in logits.iter().zip(reference.iter()) {
            err += (*a as f64 - *b as f64).powi(2);
            norm += (*b as f64).powi(2);
        }
        Ok((err / norm.max(f64::MIN_POSITIVE)).sqrt())
    }

    pub fn csv(&self) -> &Path {
        self.out.path()
    }

    pub fn trials_run(&self) -> usize {
        self.trials_run
    }

    pub fn trials_reused(&self) -> usize {
        self.trials_reused
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn finish(self) -> RunOutcome {
        RunOutcome {
            csv: self.out.path().to_path_buf(),
            rows: self.rows,
            trials_run: self.trials_run,
            trials_reused: self.trials_reused,
        }
    }

    /// The key `strategy` on model `m` and target `t` has in the log.
    fn key(&self, m: usize, t: usize, strategy: &Strategy) -> log::TrialKey {
        let p = self.prepared;
        let model = &p.models[m];
        let data = &p.data[model.dataset];
        let (target, kernels) = &p.targets[t];
        log::TrialKey {
            suite: p.suite.name.clone(),
            model: model.name.clone(),
            dataset: data.name.clone(),
            target: target.name.clone(),
            strategy: strategy.name(),
            layer_precision: self.layer_precision(strategy),
            isa_requested: kernels.isa_requested.name().to_string(),
            batch: target.batch,
            threads: target.threads,
            calib_samples: data.calibration_len(),
            eval_samples: data.evaluation_len(),
            seed: p.suite.seed,
            cpu: self.prov.cpu.clone(),
        }
    }

    /// The row of `strategy` on model `m` and target `t`: from this session, else from the log (copied to
    /// this run's CSV), else measured and appended. FP32 on the same model and target comes first (it is the
    /// reference for the accuracy drop).
    pub fn trial(&mut self, m: usize, t: usize, strategy: &Strategy) -> Result<Row, Error> {
        let key = self.key(m, t, strategy);
        if let Some(&i) = self.done.get(&key) {
            return Ok(self.rows[i].clone());
        }
        if let Some(row) = self.log.get(&key).cloned() {
            self.out.append(&row)?;
            self.trials_reused += 1;
            self.record(key, row.clone(), None, true);
            return Ok(row);
        }
        let fp32_top1 = if *strategy == Strategy::Fp32 {
            None
        } else {
            Some(self.trial(m, t, &Strategy::Fp32)?.top1)
        };
        let started = Instant::now();
        let row = self.measure(m, t, strategy, fp32_top1)?;
        self.out.append(&row)?;
        self.trials_run += 1;
        self.record(key, row.clone(), Some(started), false);
        Ok(row)
    }

    fn record(&mut self, key: log::TrialKey, row: Row, started: Option<Instant>, reused: bool) {
        self.done.insert(key, self.rows.len());
        if self.progress {
            let n = self.rows.len() + 1;
            let elapsed = self.opened.elapsed().as_secs_f64();
            // Progress: trials done of those planned, a bar, time so far and (at this run's pace) to go.
            let count = match self.total {
                Some(total) if total > 0 => {
                    let done = n.min(total);
                    let width = 20;
                    let filled = done * width / total;
                    let left = elapsed / done as f64 * (total - done) as f64;
                    format!(
                        "[{}{}] {done}/{total} {elapsed:.0} s, ~{left:.0} s left",
                        "#".repeat(filled),
                        ".".repeat(width - filled)
                    )
                }
                _ => format!("[{n}] {elapsed:.0} s"),
            };
            let how = match (reused, started) {
                (true, _) => "reused".to_string(),
                (false, Some(s)) => format!("{:.1} s", s.elapsed().as_secs_f64()),
                (false, None) => String::new(),
            };
            let quality = match (row.cosine_mean, row.cosine_min) {
                (Some(mean), Some(min)) => format!(
                    "cos {mean:.4} (min {min:.4}) nn {:5.1}%",
                    row.nn_agreement.unwrap_or(f64::NAN) * 100.0
                ),
                _ => format!("top1 {:6.2}%", row.top1 * 100.0),
            };
            eprintln!(
                "{count} {} / {} / {:<30} {quality}  size {:5.1}%  median {:>9}  ({how})",
                row.model,
                row.target,
                row.strategy,
                row.size_ratio * 100.0,
                measure::format_ns(row.latency_median_ns),
            );
        }
        self.rows.push(row);
    }

    /// Activation ranges for the static strategies of the suite, observed once per model.
    fn ranges(&mut self, m: usize) -> Result<Option<&ActivationRanges>, Error> {
        if self.cache[m].ranges.is_none() {
            let ranges = self.observe_ranges(m, &self.prepared.models[m].graph)?;
            self.cache[m].ranges = Some(ranges);
        }
        Ok(self.cache[m].ranges.as_ref().and_then(|r| r.as_ref()))
    }

    /// Fills `cache[m].equalized`: model `m`'s graph after cross-layer equalization, with its activation
    /// ranges when the suite has static strategies; computed once per model.
    fn equalize(&mut self, m: usize) -> Result<(), Error> {
        if self.cache[m].equalized.is_none() {
            let model = &self.prepared.models[m];
            let mut graph = model.graph.clone();
            crate::ir::equalize::equalize_graph(&mut graph).map_err(|e| Error::Quant {
                model: model.name.clone(),
                strategy: "cross-layer equalization".into(),
                source: Box::new(crate::quant::QuantError::Unsupported(e.to_string())),
            })?;
            let ranges = self.observe_ranges(m, &graph)?;
            self.cache[m].equalized = Some((graph, ranges));
        }
        Ok(())
    }

    /// The activation ranges of `graph` (model `m`'s, or a transformed copy) over the calibration split, one
    /// calibrator per value for every rule the suite's static strategies use; `None` without such strategies.
    fn observe_ranges(
        &self,
        m: usize,
        graph: &crate::ir::Graph,
    ) -> Result<Option<ActivationRanges>, Error> {
        let p = self.prepared;
        let suite = &p.suite;
        let model = &p.models[m];
        // One calibrator per value for every (method, symmetric) pair the static strategies use.
        let rules: Vec<_> = suite
            .strategies
            .iter()
            .filter_map(|s| match s {
                Strategy::Linear(l) if l.act == ActMode::Static => Some((
                    l.calibration.unwrap_or(crate::quant::Calibration::MinMax),
                    l.scheme == strategies::Scheme::Symmetric,
                )),
                _ => None,
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if rules.is_empty() {
            return Ok(None);
        }
        let exec =
            Fp32Executor::new(graph, p.targets[0].1).map_err(|e| Error::Run(e.to_string()))?;
        if let Some(text) = &model.text {
            return Ok(Some(observe_min_max(&exec, &text.calib_batches)?));
        }
        let batches = p.data[model.dataset].calibration_batches(suite.measure.eval_batch);
        let ranges = ActivationRanges::observe_rules(&exec, &model.input, batches, &rules)
            .map_err(|e| Error::Quant {
                model: model.name.clone(),
                strategy: "calibration".into(),
                source: Box::new(e),
            })?;
        Ok(Some(ranges))
    }

    /// Per-layer calibration statistics for the PTQ refinements the suite uses, gathered once per model.
    fn refine(&mut self, m: usize) -> Result<Option<&RefineData>, Error> {
        if self.cache[m].refine.is_none() {
            let p = self.prepared;
            let suite = &p.suite;
            let model = &p.models[m];
            let data = &p.data[model.dataset];
            let refinements: Vec<Refinement> = suite
                .strategies
                .iter()
                .filter_map(|s| match s {
                    // QAT learns its own steps and ranges (`run_qat`); the others read these statistics.
                    // Cross-layer equalization changes the graph itself (`equalized`).
                    Strategy::Linear(l)
                        if !matches!(
                            l.refinement,
                            Refinement::None | Refinement::Qat | Refinement::Cle
                        ) =>
                    {
                        Some(l.refinement)
                    }
                    _ => None,
                })
                .collect();
            let refine = if refinements.is_empty() {
                None
            } else {
                let exec = Fp32Executor::new(&model.graph, p.targets[0].1)
                    .map_err(|e| Error::Run(e.to_string()))?;
                let batches = data.calibration_batches(suite.measure.eval_batch);
                Some(
                    RefineData::collect(
                        &exec,
                        &model.graph,
                        &model.input,
                        batches,
                        &refinements,
                        suite.seed,
                    )
                    .map_err(|e| Error::Quant {
                        model: model.name.clone(),
                        strategy: "refinement statistics".into(),
                        source: Box::new(e),
                    })?,
                )
            };
            self.cache[m].refine = Some(refine);
        }
        Ok(self.cache[m].refine.as_ref().and_then(|r| r.as_ref()))
    }

    /// Builds `strategy` for model `m` on target `t`'s kernels: the classifier, its kernels and its size.
    fn build(&mut self, m: usize, t: usize, strategy: &Strategy) -> Result<Built, Error> {
        let p = self.prepared;
        let model = &p.models[m];
        if *strategy == Strategy::Fp32 {
            let exec = Fp32Executor::new(&model.graph, p.targets[t].1)
                .map_err(|e| Error::Run(e.to_string()))?;
            let names = exec.kernel_names();
            let size = serialize_fp32(&model.graph).len() as u64;
            return Ok((Box::new(exec), names, size));
        }
        let q = self.quantized(m, t, strategy)?;
        let names = q.kernel_names();
        let size = serialize_quantized(&q).len() as u64;
        Ok((Box::new(q), names, size))
    }

    /// Builds `strategy` (not FP32) for model `m` on target `t`'s kernels, with the calibration, refinement
    /// and QAT outcomes this session computed once per model.
    pub fn quantized(
        &mut self,
        m: usize,
        t: usize,
        strategy: &Strategy,
    ) -> Result<QuantizedModel, Error> {
        let p = self.prepared;
        let suite = &p.suite;
        let model = &p.models[m];
        let kernels = p.targets[t].1;
        let quant_err = |source| Error::Quant {
            model: model.name.clone(),
            strategy: strategy.name(),
            source: Box::new(source),
        };
        match strategy {
            Strategy::Fp32 => Err(Error::Usage(format!(
                "model `{}`: FP32 is not a quantized model",
                model.name
            ))),
            Strategy::Float(f) => {
                QuantizedModel::build_float(&model.graph, *f, kernels).map_err(quant_err)
            }
            Strategy::Linear(l) if l.refinement == Refinement::Qat => {
                if !self.cache[m].qat.contains_key(&l.weight_bits) {
                    let data = &p.data[model.dataset];
                    let outcome =
                        run_qat(suite, model, data, kernels, l.weight_bits, self.progress)?;
                    self.cache[m].qat.insert(l.weight_bits, outcome);
                }
                let qat = &self.cache[m].qat[&l.weight_bits];
                QuantizedModel::build_full(
                    &qat.graph,
                    *l,
                    l.mixed.map(|id| self.mixed(id)),
                    Some(&qat.ranges),
                    Some(&qat.steps),
                    kernels,
                )
                .map_err(quant_err)
            }
            Strategy::Linear(l) if l.refinement == Refinement::Cle => {
                self.equalize(m)?;
                let (graph, ranges) = self.cache[m].equalized.as_ref().expect("just computed");
                QuantizedModel::build_full(
                    graph,
                    *l,
                    l.mixed.map(|id| self.mixed(id)),
                    ranges.as_ref(),
                    None,
                    kernels,
                )
                .map_err(quant_err)
            }
            Strategy::Linear(l) => {
                if l.act == ActMode::Static {
                    self.ranges(m)?;
                }
                if l.refinement != Refinement::None {
                    self.refine(m)?;
                }
                let cache = &self.cache[m];
                QuantizedModel::build_full(
                    &model.graph,
                    *l,
                    l.mixed.map(|id| self.mixed(id)),
                    cache.ranges.as_ref().and_then(|r| r.as_ref()),
                    cache.refine.as_ref().and_then(|r| r.as_ref()),
                    kernels,
                )
                .map_err(quant_err)
            }
        }
    }

    /// Top-1 predictions of a built classifier, memoized by (model, strategy, kernels).
    fn predictions(
        &mut self,
        m: usize,
        strategy: &Strategy,
        kernel_names: &[&'static str],
        classifier: &dyn Classifier,
    ) -> Result<Vec<usize>, Error> {
        let memo = (m, strategy.name(), kernel_names.join("+"));
        if let Some(p) = self.predictions.get(&memo) {
            return Ok(p.clone());
        }
        let p = self.prepared;
        let model = &p.models[m];
        let pred = predict(
            classifier,
            &model.input,
            &p.data[model.dataset],
            p.suite.measure.eval_batch,
        )?;
        self.predictions.insert(memo, pred.clone());
        Ok(pred)
    }

    /// A classifier's top-1 accuracy, its agreement with FP32 on the same kernels, and which samples it got
    /// right.
    fn top1_quality(
        &mut self,
        m: usize,
        t: usize,
        strategy: &Strategy,
        kernel_names: &[&'static str],
        classifier: &dyn Classifier,
    ) -> Result<Quality, Error> {
        let data = &self.prepared.data[self.prepared.models[m].dataset];
        let pred = self.predictions(m, strategy, kernel_names, classifier)?;
        // FP32 predictions on these kernels: the reference for agreement.
        let reference = if *strategy == Strategy::Fp32 {
            pred.clone()
        } else {
            let (fp32, names, _) = self.build(m, t, &Strategy::Fp32)?;
            self.predictions(m, &Strategy::Fp32, &names, fp32.as_ref())?
        };
        let correct: Vec<bool> = pred
            .iter()
            .zip(&data.eval_labels)
            .map(|(p, l)| *p as i64 == *l)
            .collect();
        let top1 = correct.iter().filter(|c| **c).count() as f64 / pred.len() as f64;
        let agreement = pred
            .iter()
            .zip(reference.iter())
            .filter(|(a, b)| a == b)
            .count() as f64
            / pred.len() as f64;
        Ok(Quality {
            top1,
            agreement,
            correct,
            cosines: Vec::new(),
            embedding: None,
        })
    }

    /// Evaluation-split sentence embeddings of a built encoder, memoized by (model, strategy, kernels).
    fn embeddings(
        &mut self,
        m: usize,
        strategy: &Strategy,
        kernel_names: &[&'static str],
        model: &dyn Classifier,
    ) -> Result<Array2<f32>, Error> {
        let memo = (m, strategy.name(), kernel_names.join("+"));
        if let Some(e) = self.embeddings.get(&memo) {
            return Ok(e.clone());
        }
        let text = self.prepared.models[m].text.as_ref().expect("an encoder");
        let e = embed_batches(model, &text.eval_batches)?;
        self.embeddings.insert(memo, e.clone());
        Ok(e)
    }

    /// An encoder's fidelity to FP32 on the same kernels: mean cosine (the row's `top1`), minimum cosine and
    /// nearest-neighbour agreement; a sentence counts as right when its nearest neighbour is FP32's.
    fn embedding_quality(
        &mut self,
        m: usize,
        t: usize,
        strategy: &Strategy,
        kernel_names: &[&'static str],
        model: &dyn Classifier,
    ) -> Result<Quality, Error> {
        let candidate = self.embeddings(m, strategy, kernel_names, model)?;
        let reference = if *strategy == Strategy::Fp32 {
            candidate.clone()
        } else {
            let (fp32, names, _) = self.build(m, t, &Strategy::Fp32)?;
            self.embeddings(m, &Strategy::Fp32, &names, fp32.as_ref())?
        };
        let metrics = crate::text::embedding_metrics(reference.view(), candidate.view())
            .map_err(|e| Error::Run(format!("model `{}`: {e}", self.prepared.models[m].name)))?;
        let (r, c) = (
            crate::text::metrics::nearest_neighbours(reference.view()),
            crate::text::metrics::nearest_neighbours(candidate.view()),
        );
        let correct: Vec<bool> = r.iter().zip(&c).map(|(a, b)| a == b).collect();
        let cosines = crate::text::metrics::row_cosines(reference.view(), candidate.view())
            .map_err(|e| Error::Run(format!("model `{}`: {e}", self.prepared.models[m].name)))?;
        Ok(Quality {
            top1: metrics.mean_cosine,
            agreement: metrics.neighbour_agreement.unwrap_or(1.0),
            correct,
            cosines,
            embedding: Some(metrics),
        })
    }

    /// Builds, evaluates and times one trial. `fp32_top1` is `None` for FP32 itself.
    fn measure(
        &mut self,
        m: usize,
        t: usize,
        strategy: &Strategy,
        fp32_top1: Option<f64>,
    ) -> Result<Row, Error> {
        let p = self.prepared;
        let suite = &p.suite;
        let model = &p.models[m];
        let data = &p.data[model.dataset];
        let (target, kernels) = &p.targets[t];
        let (classifier, kernel_names, size) = self.build(m, t, strategy)?;
        let quality = match &model.text {
            Some(_) => {
                self.embedding_quality(m, t, strategy, &kernel_names, classifier.as_ref())?
            }
            None => self.top1_quality(m, t, strategy, &kernel_names, classifier.as_ref())?,
        };
        let fp32_bytes = serialize_fp32(&model.graph).len() as u64;
        // The timed input: the target's `batch` first evaluation samples (sentences padded to the longest).
        let batch_input = data.batch(
            &data.evaluation,
            0..target.batch.min(data.evaluation.nrows()),
        );
        let tokens = match (&model.text, &data.text) {
            (Some(text), Some(split)) => {
                let n = target.batch.min(split.evaluation.len());
                Some(text.tokenizer.batch(&split.evaluation[..n]).to_inputs())
            }
            _ => None,
        };
        let timed = || -> Result<(), Error> {
            match &tokens {
                Some(inputs) => classifier.outputs(inputs).map(|_| ()),
                None => classifier
                    .logits(&model.input, batch_input.clone())
                    .map(|_| ()),
            }
        };
        let (lat, latency_samples): (LatencyStats, Vec<u64>) = time_runs(
            target.threads,
            suite.measure.warmup,
            suite.measure.repeats,
            std::time::Duration::from_millis(suite.measure.min_time_ms),
            timed,
        )?;
        // Per-sample outcomes and timing samples, for `harness compare`'s statistical verdicts.
        let outcomes = samples::TrialSamples {
            run_id: self.prov.run_id.clone(),
            model: model.name.clone(),
            target: target.name.clone(),
            strategy: strategy.name(),
            correct: samples::encode_bits(quality.correct.iter().copied()),
            eval_samples: quality.correct.len(),
            latency_ns: latency_samples,
            cosines: quality.cosines.clone(),
        };
        self.samples.append(&outcomes)?;
        let prov = &self.prov;
        Ok(Row {
            run_id: prov.run_id.clone(),
            suite: suite.name.clone(),
            model: model.name.clone(),
            dataset: data.name.clone(),
            target: target.name.clone(),
            isa: kernel_isa(kernels, &kernel_names),
            isa_requested: kernels.isa_requested.name().to_string(),
            kernel: kernel_names.join("+"),
            strategy: strategy.name(),
            weight_bits: strategy.weight_bits(),
            act_mode: strategy.act_mode().into(),
            granularity: strategy.granularity().into(),
            scheme: strategy.scheme().into(),
            calibration: strategy.calibration(),
            quantizer: strategy.quantizer().into(),
            scale_constraint: strategy.scale_constraint().into(),
            weight_range: strategy.weight_range().into(),
            refinement: strategy.refinement().into(),
            layer_precision: self.layer_precision(strategy),
            calib_samples: data.calibration_len(),
            eval_samples: quality.correct.len(),
            metric: model.metric().name().to_string(),
            top1: quality.top1,
            top1_drop: fp32_top1.unwrap_or(quality.top1) - quality.top1,
            top1_agreement: quality.agreement,
            cosine_mean: quality.embedding.map(|e| e.mean_cosine),
            cosine_min: quality.embedding.map(|e| e.min_cosine),
            nn_agreement: quality.embedding.and_then(|e| e.neighbour_agreement),
            size_bytes: size,
            size_ratio: size as f64 / fp32_bytes as f64,
            latency_median_ns: lat.median_ns,
            latency_p90_ns: lat.p90_ns,
            latency_min_ns: lat.min_ns,
            timed_runs: lat.runs,
            throughput_per_s: target.batch as f64 * 1e9 / lat.median_ns.max(1) as f64,
            batch: target.batch,
            threads: target.threads,
            seed: suite.seed,
            git_commit: prov.git_commit.clone(),
            cpu: prov.cpu.clone(),
            cpu_features: prov.cpu_features.clone(),
            harness_version: prov.harness_version.clone(),
            started_at: prov.started_at.clone(),
        })
    }
}

impl Session<'_> {
    /// A mixed-precision strategy's map, `Conv_1=8;Gemm_10=fp32` (empty otherwise).
    fn layer_precision(&self, strategy: &Strategy) -> String {
        match strategy {
            Strategy::Linear(LinearStrategy { mixed: Some(m), .. }) => self.mixed(*m).describe(),
            _ => String::new(),
        }
    }
}

/// The ISAs of the kernels that ran (`+`-joined when they differ).
fn kernel_isa(kernels: &KernelSet, names: &[&'static str]) -> String {
    let isas: std::collections::BTreeSet<kernels::Isa> = kernels
        .all()
        .iter()
        .filter(|(_, k)| names.contains(&k.name()))
        .map(|(_, k)| k.isa())
        .collect();
    isas.iter().map(|i| i.name()).collect::<Vec<_>>().join("+")
}

/// What quantization-aware training hands the quantizer.
struct QatOutcome {
    graph: Graph,
    ranges: ActivationRanges,
    steps: RefineData,
}

/// Fine-tunes `model` with fake-quantized `weight_bits`-bit weights and u8 activations on the calibration
/// split (disjoint from evaluation), starting from min-max quantizers, with the suite's `[qat]` settings.
fn run_qat(
    suite: &Suite,
    model: &PreparedModel,
    data: &PreparedData,
    kernels: KernelSet,
    weight_bits: u32,
    progress: bool,
) -> Result<QatOutcome, Error> {
    use crate::train::{
        Dataset, OptimizerConfig, QatConfig, QuantConfig, TrainConfig, qat as fine_tune,
    };
    let fail =
        |e: crate::train::TrainError| Error::Run(format!("model `{}`: QAT: {e}", model.name));
    let n = data.calibration.nrows();
    let labels = data
        .calib_labels
        .iter()
        .map(|&l| {
            usize::try_from(l).map_err(|_| Error::Run(format!("label {l} is not a class index")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let set = Dataset {
        images: data.batch(&data.calibration, 0..n),
        labels,
    };
    let config = QatConfig {
        quant: QuantConfig {
            weight_bits,
            ..QuantConfig::default()
        },
        train: TrainConfig {
            epochs: suite.qat.epochs,
            batch_size: suite.qat.batch,
            optimizer: OptimizerConfig {
                lr: suite.qat.learning_rate,
                ..OptimizerConfig::default()
            },
            seed: suite.seed,
        },
        calibration_samples: n,
    };
    let started = Instant::now();
    let result = fine_tune(&model.graph, &kernels, &set, &config, &mut |e| {
        if progress {
            eprintln!("  QAT w{weight_bits} {}: {e}", model.name);
        }
    })
    .map_err(fail)?;
    if progress {
        eprintln!(
            "  QAT w{weight_bits} {}: {} epochs on {n} samples in {:.1} s",
            model.name,
            suite.qat.epochs,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(QatOutcome {
        steps: RefineData::from_weight_scales(&result.graph, &result.weight_scales),
        ranges: ActivationRanges::from_fixed(result.act_ranges.clone()),
        graph: result.graph,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::LabelColumn;

    fn text_def(path: &Path, calibration: usize, evaluation: usize) -> DatasetDef {
        DatasetDef {
            name: "s".into(),
            format: DataFormat::Text,
            path: path.to_path_buf(),
            labels: None,
            label: LabelColumn::Last,
            shape: Vec::new(),
            normalize: None,
            tokenizer: None,
            max_length: Some(32),
            calibration,
            evaluation,
            split_at: crate::suite::Location {
                path: "t.toml".into(),
                line: Some(9),
                key: "dataset[0].calibration.samples".into(),
            },
        }
    }

    #[test]
    fn a_text_split_is_seeded_disjoint_in_file_order_and_exports_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.txt");
        let lines: Vec<String> = (0..20).map(|i| format!("sentence {i:02}")).collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        let data = prepare_data(&text_def(&file, 5, 12), 7).unwrap();
        let text = data.text.as_ref().unwrap();
        assert_eq!((data.calibration_len(), data.evaluation_len()), (5, 12));
        assert!(
            text.calibration
                .iter()
                .all(|s| !text.evaluation.contains(s))
        );
        for side in [&text.calibration, &text.evaluation] {
            assert!(side.windows(2).all(|w| w[0] < w[1]), "file order: {side:?}");
        }
        // The same seed, the same split; another seed, another one.
        let again = prepare_data(&text_def(&file, 5, 12), 7).unwrap();
        assert_eq!(again.text.unwrap().evaluation, text.evaluation);
        let other = prepare_data(&text_def(&file, 5, 12), 8).unwrap();
        assert_ne!(other.text.unwrap().calibration, text.calibration);
        let written = data.export(&dir.path().join("out")).unwrap();
        let evaluation = std::fs::read_to_string(&written[1]).unwrap();
        assert_eq!(evaluation.lines().collect::<Vec<_>>(), text.evaluation);
    }

    #[test]
    fn a_text_split_larger_than_the_file_names_the_suite_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.txt");
        std::fs::write(&file, "one\ntwo\nthree\n").unwrap();
        let e = prepare_data(&text_def(&file, 2, 2), 7)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("t.toml:9") && e.contains("calibration.samples"),
            "{e}"
        );
    }
}
