//! The runner: prepares a suite (loads and splits data, imports models, resolves kernels: every input error
//! surfaces here, before a results file is opened), then runs every (model, target, strategy) trial and
//! appends its row as soon as it is measured.

pub mod measure;
pub mod provenance;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kernels::{KernelSet, select};
use ndarray::{Array2, ArrayD, Axis, IxDyn};

use crate::data::{self, DataError, RawData, stratified_split};
use crate::error::Error;
use crate::exec::reference::Fp32Executor;
use crate::ir::{Dim, Graph, Tensor};
use crate::quant::refine::RefineData;
use crate::quant::serialize::{serialize_fp32, serialize_quantized};
use crate::quant::strategy::{LinearStrategy, Refinement};
use crate::quant::{ActMode, ActivationRanges, QuantizedModel, Strategy};
use crate::results::{CsvAppender, Row};
use crate::suite::spec::DataFormat;
use crate::suite::{DatasetDef, Suite};
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
}

impl PreparedData {
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
    pub input: String,
    pub dataset: usize,
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
        let mut models = Vec::new();
        for def in &suite.models {
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
            // Mixed-precision maps name layers: an unknown one is an input error now, not mid-run.
            let layers = crate::quant::model::linear_layer_names(&graph);
            for map in &suite.mixed {
                if let Some(unknown) = map.layers.keys().find(|l| !layers.contains(l)) {
                    return Err(Error::Model {
                        model: def.name.clone(),
                        message: format!(
                            "mixed-precision map `{}` names layer `{unknown}`, which is not one of its Conv / Gemm / MatMul layers ({})",
                            map.name,
                            layers.join(", ")
                        ),
                    });
                }
            }
            models.push(PreparedModel {
                name: def.name.clone(),
                graph,
                input,
                dataset: def.dataset,
            });
        }
        Ok(Prepared {
            suite,
            data,
            models,
            targets,
        })
    }
}

/// Something that maps an input batch to logits.
trait Classifier: Sync {
    fn logits(&self, input: &str, batch: ArrayD<f32>) -> Result<ArrayD<f32>, Error>;
}

impl Classifier for Fp32Executor {
    fn logits(&self, input: &str, batch: ArrayD<f32>) -> Result<ArrayD<f32>, Error> {
        let out = self
            .run(&[(input, batch)])
            .map_err(|e| Error::Run(e.to_string()))?;
        first_f32(out)
    }
}

impl Classifier for QuantizedModel {
    fn logits(&self, input: &str, batch: ArrayD<f32>) -> Result<ArrayD<f32>, Error> {
        let out = self
            .run(&[(input, batch)])
            .map_err(|e| Error::Run(e.to_string()))?;
        first_f32(out)
    }
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

/// Options for one `run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub results_dir: PathBuf,
    /// Print one line per trial on stderr.
    pub progress: bool,
}

/// What a run produced.
pub struct RunOutcome {
    pub csv: PathBuf,
    pub rows: Vec<Row>,
}

/// Runs every trial of a prepared suite, appending rows to `results/<suite>/<run-id>.csv`.
pub fn run(prepared: &Prepared, opts: &RunOptions) -> Result<RunOutcome, Error> {
    let suite = &prepared.suite;
    let prov = Provenance::collect();
    let csv_path = opts
        .results_dir
        .join(&suite.name)
        .join(format!("{}.csv", prov.run_id));
    let mut out = CsvAppender::open(&csv_path)?;
    if opts.progress {
        eprintln!("writing {}", csv_path.display());
    }
    let total = prepared.models.len() * prepared.targets.len() * suite.strategies.len();
    let mut done = 0;
    let mut rows = Vec::new();
    for model in &prepared.models {
        let data = &prepared.data[model.dataset];
        let fp32_bytes = serialize_fp32(&model.graph).len() as u64;
        let needs_calibration = suite
            .strategies
            .iter()
            .any(|s| matches!(s, Strategy::Linear(l) if l.act == ActMode::Static));
        let ranges = if needs_calibration {
            let exec = Fp32Executor::new(&model.graph, prepared.targets[0].1)
                .map_err(|e| Error::Run(e.to_string()))?;
            let n = data.calibration.nrows();
            let chunk = suite.measure.eval_batch;
            let batches = (0..n)
                .step_by(chunk)
                .map(|s| data.batch(&data.calibration, s..(s + chunk).min(n)));
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
            Some(
                ActivationRanges::observe_rules(&exec, &model.input, batches, &rules).map_err(
                    |e| Error::Quant {
                        model: model.name.clone(),
                        strategy: "calibration".into(),
                        source: Box::new(e),
                    },
                )?,
            )
        } else {
            None
        };
        // Per-layer calibration statistics for the PTQ refinements the space uses (once per model).
        let refinements: Vec<Refinement> = suite
            .strategies
            .iter()
            .filter_map(|s| match s {
                Strategy::Linear(l) if l.refinement != Refinement::None => Some(l.refinement),
                _ => None,
            })
            .collect();
        let refine = if refinements.is_empty() {
            None
        } else {
            let exec = Fp32Executor::new(&model.graph, prepared.targets[0].1)
                .map_err(|e| Error::Run(e.to_string()))?;
            let n = data.calibration.nrows();
            let chunk = suite.measure.eval_batch;
            let batches = (0..n)
                .step_by(chunk)
                .map(|s| data.batch(&data.calibration, s..(s + chunk).min(n)));
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
        // Quantization-aware training, once per weight width: the fine-tuned graph, its learned activation
        // ranges and weight steps.
        let mut qat_done: HashMap<u32, QatOutcome> = HashMap::new();
        // Predictions depend on the strategy and the kernels that ran, not on the timed batch or threads:
        // targets that share kernels share one accuracy pass.
        let mut predictions: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (target, kernels) in &prepared.targets {
            let mut fp32_pred: Option<Vec<usize>> = None;
            let mut fp32_top1 = 0.0;
            for strategy in &suite.strategies {
                let started = Instant::now();
                let (classifier, kernel_names, size): (
                    Box<dyn Classifier>,
                    Vec<&'static str>,
                    u64,
                ) =
                    match strategy {
                        Strategy::Fp32 => {
                            let exec = Fp32Executor::new(&model.graph, *kernels)
                                .map_err(|e| Error::Run(e.to_string()))?;
                            let names = exec.kernel_names();
                            (Box::new(exec), names, fp32_bytes)
                        }
                        Strategy::Float(f) => {
                            let q = QuantizedModel::build_float(&model.graph, *f, *kernels)
                                .map_err(|source| Error::Quant {
                                    model: model.name.clone(),
                                    strategy: strategy.name(),
                                    source: Box::new(source),
                                })?;
                            let names = q.kernel_names();
                            let size = serialize_quantized(&q).len() as u64;
                            (Box::new(q), names, size)
                        }
                        Strategy::Linear(l) if l.refinement == Refinement::Qat => {
                            let qat =
                                match qat_done.entry(l.weight_bits) {
                                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                                    std::collections::hash_map::Entry::Vacant(e) => e.insert(
                                        run_qat(suite, model, data, *kernels, l.weight_bits, opts)?,
                                    ),
                                };
                            let qat = &*qat;
                            let q = QuantizedModel::build_full(
                                &qat.graph,
                                *l,
                                l.mixed.map(|m| &suite.mixed[m.index as usize]),
                                Some(&qat.ranges),
                                Some(&qat.steps),
                                *kernels,
                            )
                            .map_err(|source| Error::Quant {
                                model: model.name.clone(),
                                strategy: strategy.name(),
                                source: Box::new(source),
                            })?;
                            let names = q.kernel_names();
                            let size = serialize_quantized(&q).len() as u64;
                            (Box::new(q), names, size)
                        }
                        Strategy::Linear(l) => {
                            let built = QuantizedModel::build_full(
                                &model.graph,
                                *l,
                                l.mixed.map(|m| &suite.mixed[m.index as usize]),
                                ranges.as_ref(),
                                refine.as_ref(),
                                *kernels,
                            );
                            let q = built.map_err(|source| Error::Quant {
                                model: model.name.clone(),
                                strategy: strategy.name(),
                                source: Box::new(source),
                            })?;
                            let names = q.kernel_names();
                            let size = serialize_quantized(&q).len() as u64;
                            (Box::new(q), names, size)
                        }
                    };
                let memo = (strategy.name(), kernel_names.join("+"));
                let pred = match predictions.get(&memo) {
                    Some(p) => p.clone(),
                    None => {
                        let p = predict(
                            classifier.as_ref(),
                            &model.input,
                            data,
                            suite.measure.eval_batch,
                        )?;
                        predictions.insert(memo, p.clone());
                        p
                    }
                };
                let correct = pred
                    .iter()
                    .zip(&data.eval_labels)
                    .filter(|(p, l)| **p as i64 == **l)
                    .count();
                let top1 = correct as f64 / pred.len() as f64;
                let reference = fp32_pred.get_or_insert_with(|| pred.clone());
                if *strategy == Strategy::Fp32 {
                    fp32_top1 = top1;
                }
                let agree = pred
                    .iter()
                    .zip(reference.iter())
                    .filter(|(a, b)| a == b)
                    .count() as f64
                    / pred.len() as f64;
                let batch_input = data.batch(
                    &data.evaluation,
                    0..target.batch.min(data.evaluation.nrows()),
                );
                let lat: LatencyStats = time_runs(
                    target.threads,
                    suite.measure.warmup,
                    suite.measure.repeats,
                    std::time::Duration::from_millis(suite.measure.min_time_ms),
                    || {
                        classifier
                            .logits(&model.input, batch_input.clone())
                            .map(|_| ())
                    },
                )?;
                let isa = kernel_isa(kernels, &kernel_names);
                let row = Row {
                    run_id: prov.run_id.clone(),
                    suite: suite.name.clone(),
                    model: model.name.clone(),
                    dataset: data.name.clone(),
                    target: target.name.clone(),
                    isa,
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
                    layer_precision: match strategy {
                        Strategy::Linear(LinearStrategy { mixed: Some(m), .. }) => {
                            suite.mixed[m.index as usize].describe()
                        }
                        _ => String::new(),
                    },
                    calib_samples: data.calibration.nrows(),
                    eval_samples: pred.len(),
                    top1,
                    top1_drop: fp32_top1 - top1,
                    top1_agreement: agree,
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
                };
                out.append(&row)?;
                done += 1;
                if opts.progress {
                    eprintln!(
                        "[{done}/{total}] {} / {} / {:<30} top1 {:6.2}%  size {:5.1}%  median {:>9}  ({:.1} s)",
                        model.name,
                        target.name,
                        row.strategy,
                        row.top1 * 100.0,
                        row.size_ratio * 100.0,
                        measure::format_ns(row.latency_median_ns),
                        started.elapsed().as_secs_f64()
                    );
                }
                rows.push(row);
            }
        }
    }
    Ok(RunOutcome {
        csv: out.path().to_path_buf(),
        rows,
    })
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
    opts: &RunOptions,
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
        if opts.progress {
            eprintln!("  QAT w{weight_bits} {}: {e}", model.name);
        }
    })
    .map_err(fail)?;
    if opts.progress {
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
