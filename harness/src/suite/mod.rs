//! Suites: parsing a TOML suite file, validating it (every error names the file, line and key), and
//! expanding its strategy space into the list of trials.
//!
//! Paths in a suite are relative to the suite file's folder. Validation here checks everything that can be
//! checked without loading data or models (files exist, references resolve, counts are positive); the runner
//! checks the rest before it writes a single result row.

pub mod profile;
pub mod spec;

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use kernels::Isa;
use strategies::{Granularity, Scheme};

use crate::data::{LabelColumn, Normalize};
use crate::quant::strategy::{
    ActMode, Calibration, FloatFormat, LayerPrecision, LinearStrategy, MixedId, MixedPrecision,
    Quantizer, Refinement, Strategy, WeightRange,
};
use spec::{
    ActModeSpec, DataFormat, FloatSpec, LabelSpec, Metric, ModelFormat, QuantizerSpec, ScaleSpec,
    SchemeSpec, SearchSpec, SuiteFile, WeightRangeSpec,
};
use strategies::calib::CalibrationMethod;
use strategies::pow2::ScaleConstraint;

/// A bert model's `path` naming all-MiniLM-L6-v2 wherever `scripts/fetch_minilm.sh` put it.
pub const MINILM: &str = "minilm";

/// The quickstart suite, compiled in so that `harness run` works with no argument from a checkout.
pub const EMBEDDED_QUICKSTART: &str = include_str!("../../../suites/quickstart.toml");
/// Where the embedded suite's relative paths point: the repository's `suites/` folder.
pub const EMBEDDED_BASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../suites");

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{}: cannot read suite: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}{}: `{key}`: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

/// A dataset as validated: absolute paths, the split sizes.
#[derive(Clone, Debug)]
pub struct DatasetDef {
    pub name: String,
    pub format: DataFormat,
    pub path: PathBuf,
    pub labels: Option<PathBuf>,
    pub label: LabelColumn,
    /// One sample's shape (empty for `text`).
    pub shape: Vec<usize>,
    pub normalize: Option<Normalize>,
    /// `text`: a tokenizer replacing the model folder's.
    pub tokenizer: Option<PathBuf>,
    /// `text`: the longest token sequence (truncation), `None` for the tokenizer's own.
    pub max_length: Option<usize>,
    pub calibration: usize,
    pub evaluation: usize,
    /// Where the split sizes were declared, for errors found when the data is loaded.
    pub split_at: Location,
}

#[derive(Clone, Debug)]
pub struct ModelDef {
    pub name: String,
    pub format: ModelFormat,
    /// The ONNX file, or the BERT folder.
    pub path: PathBuf,
    /// Index into [`Suite::datasets`].
    pub dataset: usize,
    pub metric: Metric,
    pub input: Option<String>,
    pub at: Location,
}

#[derive(Clone, Debug)]
pub struct TargetDef {
    pub name: String,
    /// `None`: the best ISA this CPU runs (or `QH_ISA`).
    pub isa: Option<Isa>,
    pub threads: usize,
    pub batch: usize,
    /// The back end's constraints; `None`: every strategy of the space.
    pub profile: Option<profile::Profile>,
    pub at: Location,
}

impl TargetDef {
    /// True when this target runs `strategy` (always, without a profile).
    pub fn allows(&self, strategy: &Strategy, mixed: &[MixedPrecision]) -> bool {
        self.profile
            .as_ref()
            .is_none_or(|p| p.allows(strategy, mixed))
    }
}

#[derive(Clone, Debug)]
pub struct Measure {
    pub warmup: usize,
    pub repeats: usize,
    pub min_time_ms: u64,
    pub eval_batch: usize,
}

/// A point in a suite file, for errors raised after validation.
#[derive(Clone, Debug)]
pub struct Location {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub key: String,
}

impl Location {
    pub fn error(&self, message: impl Into<String>) -> SuiteError {
        SuiteError::Invalid {
            path: self.path.clone(),
            line: self.line,
            key: self.key.clone(),
            message: message.into(),
        }
    }
}

/// A validated suite.
#[derive(Clone, Debug)]
pub struct Suite {
    pub name: String,
    pub seed: u64,
    pub source: PathBuf,
    pub datasets: Vec<DatasetDef>,
    pub models: Vec<ModelDef>,
    pub targets: Vec<TargetDef>,
    /// FP32 first, then the expanded space in a stable order.
    pub strategies: Vec<Strategy>,
    /// The per-layer precision maps strategies refer to by [`MixedId`].
    pub mixed: Vec<MixedPrecision>,
    pub measure: Measure,
    pub search: SearchSpec,
    pub qat: spec::QatSpec,
}

impl Suite {
    /// Reads and validates a suite file.
    pub fn load(path: &Path) -> Result<Suite, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Suite::parse(&text, path, base)
    }

    /// The compiled-in quickstart suite.
    pub fn embedded_quickstart() -> Result<Suite, SuiteError> {
        let base = Path::new(EMBEDDED_BASE);
        Suite::parse(EMBEDDED_QUICKSTART, &base.join("quickstart.toml"), base)
    }

    /// Parses suite text; `source` names it in errors and `base` anchors its relative paths.
    pub fn parse(text: &str, source: &Path, base: &Path) -> Result<Suite, SuiteError> {
        let file: SuiteFile = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            let mut message = e.message().trim().replace('\n', " ");
            if let Some(key) = e.span().and_then(|s| key_before(text, s.start)) {
                message = format!("`{key}`: {message}");
            }
            SuiteError::Parse {
                path: source.to_path_buf(),
                line,
                column,
                message,
            }
        })?;
        Validator { text, source, base }.validate(file)
    }
}

/// The key whose value starts at `offset` (`batch` in `batch = "four"`), for messages about values; `None`
/// when `offset` is not right after `key =` (an error about a key already names it).
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?;
    let line = &before[before.rfind('\n').map(|i| i + 1).unwrap_or(0)..];
    let line = line.trim_end().strip_suffix('=')?.trim_end();
    let start = line
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map(|i| i + 1)
        .unwrap_or(0);
    let key = &line[start..];
    (!key.is_empty()).then_some(key)
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

struct Validator<'a> {
    text: &'a str,
    source: &'a Path,
    base: &'a Path,
}

impl Validator<'_> {
    fn at(&self, span: Range<usize>, key: impl Into<String>) -> Location {
        // Defaults carry an empty span at 0: they have no line of their own.
        let line = (!span.is_empty()).then(|| line_col(self.text, span.start).0);
        Location {
            path: self.source.to_path_buf(),
            line,
            key: key.into(),
        }
    }

    fn existing_file(
        &self,
        value: &toml::Spanned<String>,
        key: String,
    ) -> Result<PathBuf, SuiteError> {
        let path = self.base.join(value.get_ref());
        if !path.is_file() {
            return Err(self
                .at(value.span(), key)
                .error(format!("file not found: {}", path.display())));
        }
        Ok(path)
    }

    /// A BERT folder (`config.json` + `model.safetensors`), or `"minilm"`: the all-MiniLM-L6-v2 copy that
    /// `scripts/fetch_minilm.sh` fetches.
    fn bert_folder(
        &self,
        value: &toml::Spanned<String>,
        key: String,
    ) -> Result<PathBuf, SuiteError> {
        let at = || self.at(value.span(), key.clone());
        if value.get_ref() == MINILM {
            return crate::models::bert::find_minilm_dir().ok_or_else(|| {
                at().error(
                    "all-MiniLM-L6-v2 is not installed: run `bash scripts/fetch_minilm.sh` (or set HARNESS_MINILM_DIR to a folder with config.json, model.safetensors and tokenizer.json)",
                )
            });
        }
        let dir = self.base.join(value.get_ref());
        for file in ["config.json", "model.safetensors"] {
            if !dir.join(file).is_file() {
                return Err(at().error(format!(
                    "{} is not a BERT folder: {file} not found",
                    dir.display()
                )));
            }
        }
        Ok(dir)
    }

    fn validate(&self, file: SuiteFile) -> Result<Suite, SuiteError> {
        let name = file.suite.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(self.at(file.suite.name.span(), "suite.name").error(
                "must be non-empty and use only letters, digits, '-', '_' and '.' (it names the results folder)",
            ));
        }

        let mut datasets = Vec::new();
        for (i, d) in file.datasets.iter().enumerate() {
            let key = |k: &str| format!("dataset[{i}].{k}");
            let path = self.existing_file(&d.path, key("path"))?;
            let text = d.format == DataFormat::Text;
            // Keys that belong to the other kind of dataset.
            let misplaced: [(&str, Option<Range<usize>>, bool); 6] = [
                ("labels", d.labels.as_ref().map(|v| v.span()), text),
                ("label", d.label.as_ref().map(|v| v.span()), text),
                ("shape", d.shape.as_ref().map(|v| v.span()), text),
                ("normalize", d.normalize.map(|_| d.path.span()), text),
                ("tokenizer", d.tokenizer.as_ref().map(|v| v.span()), !text),
                ("max_length", d.max_length.as_ref().map(|v| v.span()), !text),
            ];
            for (k, span, wrong) in misplaced {
                if let (Some(span), true) = (span, wrong) {
                    return Err(self.at(span, key(k)).error(if text {
                        format!(
                            "text datasets take no `{k}` (sentences have no labels and any length)"
                        )
                    } else {
                        format!("`{k}` is for text datasets only")
                    }));
                }
            }
            let labels = match (&d.format, &d.labels) {
                (DataFormat::Csv | DataFormat::Text, None) => None,
                (DataFormat::Csv, Some(l)) => {
                    return Err(self.at(l.span(), key("labels")).error(
                        "csv datasets keep labels in a column: use `label = \"last\"` instead",
                    ));
                }
                (_, Some(l)) => Some(self.existing_file(l, key("labels"))?),
                (_, None) => {
                    return Err(self
                        .at(d.path.span(), key("labels"))
                        .error("npy and idx datasets need a `labels` file"));
                }
            };
            let label = match d.label.as_ref().map(|l| (l.span(), l.get_ref())) {
                None => LabelColumn::Last,
                Some((_, LabelSpec::Index(i))) => LabelColumn::Index(*i),
                Some((_, LabelSpec::Named(n))) if n == "last" => LabelColumn::Last,
                Some((_, LabelSpec::Named(n))) if n == "first" => LabelColumn::First,
                Some((span, LabelSpec::Named(n))) => {
                    return Err(self.at(span, key("label")).error(format!(
                        "`{n}` is not a column: use \"first\", \"last\" or an index"
                    )));
                }
            };
            let shape = match &d.shape {
                None if text => Vec::new(),
                None => {
                    return Err(self.at(d.path.span(), key("shape")).error(
                        "missing: give the positive dimensions of one sample, e.g. [1, 28, 28]",
                    ));
                }
                Some(shape) if shape.get_ref().is_empty() || shape.get_ref().contains(&0) => {
                    return Err(self.at(shape.span(), key("shape")).error(
                        "must list the positive dimensions of one sample, e.g. [1, 28, 28]",
                    ));
                }
                Some(shape) => shape.get_ref().clone(),
            };
            let tokenizer = match &d.tokenizer {
                Some(t) => Some(self.existing_file(t, key("tokenizer"))?),
                None => None,
            };
            if let Some(m) = &d.max_length
                && *m.get_ref() < 3
            {
                return Err(self
                    .at(m.span(), key("max_length"))
                    .error("must be at least 3 ([CLS], one token, [SEP])"));
            }
            for (split, spec) in [
                ("calibration", &d.calibration),
                ("evaluation", &d.evaluation),
            ] {
                if *spec.samples.get_ref() == 0 {
                    return Err(self
                        .at(spec.samples.span(), key(&format!("{split}.samples")))
                        .error(format!(
                            "the {split} split is empty: give it at least one sample"
                        )));
                }
            }
            if datasets
                .iter()
                .any(|x: &DatasetDef| x.name == *d.name.get_ref())
            {
                return Err(self
                    .at(d.name.span(), key("name"))
                    .error("duplicate dataset name"));
            }
            datasets.push(DatasetDef {
                name: d.name.get_ref().clone(),
                format: d.format,
                path,
                labels,
                label,
                shape,
                normalize: d.normalize,
                tokenizer,
                max_length: d.max_length.as_ref().map(|m| *m.get_ref()),
                calibration: *d.calibration.samples.get_ref(),
                evaluation: *d.evaluation.samples.get_ref(),
                split_at: self.at(d.calibration.samples.span(), key("calibration.samples")),
            });
        }

        let mut models = Vec::new();
        for (i, m) in file.models.iter().enumerate() {
            let key = |k: &str| format!("model[{i}].{k}");
            let path = match m.format {
                ModelFormat::Onnx => self.existing_file(&m.path, key("path"))?,
                ModelFormat::Bert => self.bert_folder(&m.path, key("path"))?,
            };
            let dataset = datasets
                .iter()
                .position(|d| d.name == *m.dataset.get_ref())
                .ok_or_else(|| {
                    let known: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
                    self.at(m.dataset.span(), key("dataset")).error(format!(
                        "no dataset named `{}` (defined: {})",
                        m.dataset.get_ref(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ))
                })?;
            if models
                .iter()
                .any(|x: &ModelDef| x.name == *m.name.get_ref())
            {
                return Err(self
                    .at(m.name.span(), key("name"))
                    .error("duplicate model name"));
            }
            let metric = match (&m.metric, m.format) {
                (Some(metric), _) => *metric.get_ref(),
                (None, ModelFormat::Onnx) => Metric::Top1,
                (None, ModelFormat::Bert) => Metric::Embedding,
            };
            let metric_at = m.metric.as_ref().map_or(m.path.span(), |v| v.span());
            let text = datasets[dataset].format == DataFormat::Text;
            match (m.format, metric, text) {
                (ModelFormat::Onnx, Metric::Top1, false)
                | (ModelFormat::Bert, Metric::Embedding, true) => {}
                (ModelFormat::Bert, Metric::Embedding, false) => {
                    return Err(self.at(m.dataset.span(), key("dataset")).error(format!(
                        "a bert model reads sentences: dataset `{}` is not `format = \"text\"`",
                        m.dataset.get_ref()
                    )));
                }
                (ModelFormat::Onnx, Metric::Top1, true) => {
                    return Err(self.at(m.dataset.span(), key("dataset")).error(format!(
                        "text dataset `{}` feeds `format = \"bert\"` models only",
                        m.dataset.get_ref()
                    )));
                }
                (format, metric, _) => {
                    return Err(self.at(metric_at, key("metric")).error(format!(
                        "metric `{}` does not apply to {} models (top1: onnx classifiers on labelled samples; embedding: bert encoders on text)",
                        metric.name(),
                        match format {
                            ModelFormat::Onnx => "onnx",
                            ModelFormat::Bert => "bert",
                        }
                    )));
                }
            }
            if m.format == ModelFormat::Bert {
                if let Some(input) = &m.input {
                    return Err(self.at(input.span(), key("input")).error(
                        "bert models take `input_ids` and `attention_mask` from the tokenizer: leave `input` out",
                    ));
                }
                let has_tokenizer =
                    datasets[dataset].tokenizer.is_some() || path.join("tokenizer.json").is_file();
                if !has_tokenizer {
                    return Err(self.at(m.path.span(), key("path")).error(format!(
                        "{} has no tokenizer.json: add one, or set `tokenizer` on dataset `{}`",
                        path.display(),
                        m.dataset.get_ref()
                    )));
                }
            }
            models.push(ModelDef {
                name: m.name.get_ref().clone(),
                format: m.format,
                path,
                dataset,
                metric,
                input: m.input.as_ref().map(|s| s.get_ref().clone()),
                at: self.at(m.path.span(), key("path")),
            });
        }
        if models.is_empty() {
            return Err(SuiteError::Invalid {
                path: self.source.to_path_buf(),
                line: None,
                key: "model".into(),
                message: "the suite lists no [[model]]: nothing to measure".into(),
            });
        }

        let mut targets = Vec::new();
        for (i, t) in file.targets.iter().enumerate() {
            let key = |k: &str| format!("target[{i}].{k}");
            let mut isa = match t.isa.get_ref().as_str() {
                "auto" => None,
                other => Some(other.parse::<Isa>().map_err(|e| {
                    self.at(t.isa.span(), key("isa"))
                        .error(format!("{e}; or `auto`"))
                })?),
            };
            let profile = match &t.profile {
                None => None,
                Some(p) => Some(
                    profile::Profile::resolve(p.get_ref(), self.base)
                        .map_err(|e| self.at(p.span(), key("profile")).error(e))?,
                ),
            };
            // The profile's ISA times the target when the target leaves `isa` out (a default has no span).
            if t.isa.span().is_empty() && isa.is_none() {
                isa = profile.as_ref().and_then(|p| p.isa);
            }
            for (k, v) in [("threads", &t.threads), ("batch", &t.batch)] {
                if *v.get_ref() == 0 {
                    return Err(self.at(v.span(), key(k)).error("must be at least 1"));
                }
            }
            targets.push(TargetDef {
                name: t.name.get_ref().clone(),
                isa,
                threads: *t.threads.get_ref(),
                batch: *t.batch.get_ref(),
                profile,
                at: self.at(t.isa.span(), key("isa")),
            });
        }
        if targets.is_empty() {
            targets.push(TargetDef {
                name: "this-cpu".into(),
                isa: None,
                threads: 1,
                batch: 1,
                profile: None,
                at: self.at(0..0, "target"),
            });
        }

        let (strategies, mixed) = self.expand(&file)?;
        for (k, v) in [
            ("measure.repeats", &file.measure.repeats),
            ("measure.eval_batch", &file.measure.eval_batch),
        ] {
            if *v.get_ref() == 0 {
                return Err(self.at(v.span(), k).error("must be at least 1"));
            }
        }
        let drop = file.search.max_accuracy_drop;
        if !(0.0..=1.0).contains(&drop) {
            return Err(SuiteError::Invalid {
                path: self.source.to_path_buf(),
                line: None,
                key: "search.max_accuracy_drop".into(),
                message: format!("{drop} is not a fraction in [0, 1] (0.005 is half a point)"),
            });
        }

        Ok(Suite {
            name,
            seed: file.suite.seed,
            source: self.source.to_path_buf(),
            datasets,
            models,
            targets,
            strategies,
            mixed,
            measure: Measure {
                warmup: file.measure.warmup,
                repeats: *file.measure.repeats.get_ref(),
                min_time_ms: file.measure.min_time_ms,
                eval_batch: *file.measure.eval_batch.get_ref(),
            },
            search: file.search,
            qat: file.qat,
        })
    }

    /// The cartesian product of the space, FP32 first (then the 16-bit float models); calibration applies to
    /// static activations only. Combinations that do not exist are left out: logarithmic levels are
    /// sign + exponent codes with one scale per tensor or channel (symmetric, not per group, min-max range)
    /// and decode exactly into int8 only up to 4 bits.
    fn expand(&self, file: &SuiteFile) -> Result<(Vec<Strategy>, Vec<MixedPrecision>), SuiteError> {
        let mut linear = BTreeSet::new();
        let mut floats = BTreeSet::new();
        let mut mixed = Vec::new();
        let mut spaces = vec![&file.space];
        while let Some(space) = spaces.pop() {
            self.expand_space(space, &mut linear, &mut floats, &mut mixed)?;
            spaces.extend(space.also.iter());
        }
        let strategies = std::iter::once(Strategy::Fp32)
            .chain(floats.into_iter().map(Strategy::Float))
            .chain(linear.into_iter().map(Strategy::Linear))
            .collect();
        Ok((strategies, mixed))
    }

    /// Validates a space's precision maps, appends them to `all`, and returns their ids.
    fn mixed_maps(
        &self,
        space: &spec::SpaceSpec,
        all: &mut Vec<MixedPrecision>,
    ) -> Result<Vec<MixedId>, SuiteError> {
        let mut ids = Vec::new();
        for m in &space.mixed {
            let at = |what: &str| self.at(m.layers.span(), format!("space.mixed.layers.{what}"));
            let mut layers = std::collections::BTreeMap::new();
            for (layer, p) in m.layers.get_ref() {
                let precision = match p {
                    spec::LayerPrecisionSpec::Bits(b) if (2..=8).contains(b) => {
                        LayerPrecision::Bits(*b)
                    }
                    spec::LayerPrecisionSpec::Named(n) if n == "fp32" => LayerPrecision::Fp32,
                    other => {
                        return Err(at(layer).error(format!(
                            "precision {other:?} is not 2 to 8 bits or \"fp32\""
                        )));
                    }
                };
                layers.insert(layer.clone(), precision);
            }
            if all
                .iter()
                .any(|x: &MixedPrecision| x.name == *m.name.get_ref())
            {
                return Err(self.at(m.name.span(), "space.mixed.name").error(format!(
                    "a mixed-precision map named `{}` already exists",
                    m.name.get_ref()
                )));
            }
            let name: &'static str = Box::leak(m.name.get_ref().clone().into_boxed_str());
            ids.push(MixedId {
                index: all.len() as u16,
                name,
            });
            all.push(MixedPrecision {
                name: name.to_string(),
                layers,
            });
        }
        Ok(ids)
    }

    /// Adds one space's product to `set` and its float formats to `floats`.
    fn expand_space(
        &self,
        space: &spec::SpaceSpec,
        set: &mut BTreeSet<LinearStrategy>,
        floats: &mut BTreeSet<FloatFormat>,
        mixed: &mut Vec<MixedPrecision>,
    ) -> Result<(), SuiteError> {
        let mixes: Vec<Option<MixedId>> = match self.mixed_maps(space, mixed)? {
            ids if ids.is_empty() => vec![None],
            ids => ids.into_iter().map(Some).collect(),
        };
        for &bits in space.weight_bits.get_ref() {
            if !(2..=8).contains(&bits) {
                return Err(self
                    .at(space.weight_bits.span(), "space.weight_bits")
                    .error(format!(
                        "{bits}-bit weights are not supported (supported: 2 to 8)"
                    )));
            }
        }
        let granularities = space
            .granularity
            .get_ref()
            .iter()
            .map(|g| match g.parse::<Granularity>() {
                Ok(Granularity::PerGroup(0)) | Err(_) => Err(self
                    .at(space.granularity.span(), "space.granularity")
                    .error(format!(
                        "unknown granularity `{g}` (expected tensor, channel or group:G with G > 0, e.g. group:32)"
                    ))),
                Ok(g) => Ok(g),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let calibrations = space
            .calibration
            .get_ref()
            .iter()
            .map(|c| {
                CalibrationMethod::parse(c)
                    .map(Calibration::from_method)
                    .map_err(|e| {
                        self.at(space.calibration.span(), "space.calibration")
                            .error(e.to_string())
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for &bits in space.weight_bits.get_ref() {
            for &act in &space.activations {
                for &granularity in &granularities {
                    for &scheme in &space.scheme {
                        for &quantizer in &space.quantizer {
                            for &scale in &space.scale {
                                for &weight_range in &space.weight_range {
                                    let act = match act {
                                        ActModeSpec::Static => ActMode::Static,
                                        ActModeSpec::Dynamic => ActMode::Dynamic,
                                        ActModeSpec::WeightOnly => ActMode::WeightOnly,
                                    };
                                    let scheme = match scheme {
                                        SchemeSpec::Symmetric => Scheme::Symmetric,
                                        SchemeSpec::Affine => Scheme::Affine,
                                    };
                                    let quantizer = match quantizer {
                                        QuantizerSpec::Uniform => Quantizer::Uniform,
                                        QuantizerSpec::Log => Quantizer::Log,
                                    };
                                    let weight_range = match weight_range {
                                        WeightRangeSpec::Minmax => WeightRange::MinMax,
                                        WeightRangeSpec::Mse => WeightRange::Mse,
                                    };
                                    if quantizer == Quantizer::Log
                                        && (scheme != Scheme::Symmetric
                                            || matches!(granularity, Granularity::PerGroup(_))
                                            || weight_range != WeightRange::MinMax
                                            || bits > 4)
                                    {
                                        continue;
                                    }
                                    let per_act: Vec<Option<Calibration>> =
                                        if act == ActMode::Static {
                                            calibrations.iter().copied().map(Some).collect()
                                        } else {
                                            vec![None]
                                        };
                                    let refinements: Vec<Refinement> = space
                                        .refinement
                                        .iter()
                                        .map(|r| match r {
                                            spec::RefinementSpec::None => Refinement::None,
                                            spec::RefinementSpec::Gptq => Refinement::Gptq,
                                            spec::RefinementSpec::Adaround => Refinement::AdaRound,
                                            spec::RefinementSpec::BiasCorrection => {
                                                Refinement::BiasCorrection
                                            }
                                            spec::RefinementSpec::Qat => Refinement::Qat,
                                            spec::RefinementSpec::Cle => Refinement::Cle,
                                        })
                                        // QAT learns per-channel symmetric weight steps and the ranges of
                                        // static activations.
                                        .filter(|r| {
                                            *r != Refinement::Qat
                                                || (act == ActMode::Static
                                                    && granularity == Granularity::PerChannel
                                                    && scheme == Scheme::Symmetric)
                                        })
                                        // Refinements choose uniform integer weights.
                                        .filter(|r| {
                                            *r == Refinement::None
                                                || quantizer == Quantizer::Uniform
                                        })
                                        .collect();
                                    let mut combos = Vec::new();
                                    for &c in &per_act {
                                        for &m in &mixes {
                                            for &r in &refinements {
                                                combos.push((c, m, r));
                                            }
                                        }
                                    }
                                    for (calibration, mix, refinement) in combos {
                                        set.insert(LinearStrategy {
                                            weight_bits: bits,
                                            act,
                                            granularity,
                                            scheme,
                                            calibration,
                                            quantizer,
                                            scale: match scale {
                                                ScaleSpec::Float => ScaleConstraint::Float,
                                                ScaleSpec::Pow2 => ScaleConstraint::PowerOfTwo,
                                            },
                                            weight_range,
                                            refinement,
                                            mixed: mix,
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        floats.extend(space.floats.iter().map(|f| match f {
            FloatSpec::Fp16 => FloatFormat::Fp16,
            FloatSpec::Bf16 => FloatFormat::Bf16,
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A suite with a text dataset and a bert model folder (fake files: validation only checks they exist),
    /// `dataset_extra` added to the dataset table and `model_extra` to the model's.
    fn text_suite(dataset_extra: &str, model_extra: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.txt"), "One sentence.\nAnother one.\n").unwrap();
        let bert = dir.path().join("bert");
        std::fs::create_dir(&bert).unwrap();
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            std::fs::write(bert.join(f), "{}").unwrap();
        }
        let text = format!(
            "[suite]\nname = \"t\"\n\n[[dataset]]\nname = \"d\"\nformat = \"text\"\npath = \"s.txt\"\n\
             calibration = {{ samples = 1 }}\nevaluation = {{ samples = 1 }}\n{dataset_extra}\n\n\
             [[model]]\nname = \"m\"\nformat = \"bert\"\npath = \"bert\"\ndataset = \"d\"\n{model_extra}\n"
        );
        (dir, text)
    }

    fn parse_in(dir: &Path, text: &str) -> Result<Suite, SuiteError> {
        Suite::parse(text, &dir.join("t.toml"), dir)
    }

    #[test]
    fn a_text_dataset_feeds_a_bert_model_scored_by_embedding() {
        let (dir, text) = text_suite("max_length = 64", "");
        let suite = parse_in(dir.path(), &text).unwrap();
        let (d, m) = (&suite.datasets[0], &suite.models[0]);
        assert_eq!(
            (d.format, d.max_length, d.shape.len()),
            (DataFormat::Text, Some(64), 0)
        );
        assert_eq!((m.format, m.metric), (ModelFormat::Bert, Metric::Embedding));
        assert_eq!(m.path, dir.path().join("bert"));
    }

    #[test]
    fn text_and_image_keys_do_not_mix() {
        let (dir, text) = text_suite("shape = [1, 2]", "");
        let e = parse_in(dir.path(), &text).unwrap_err().to_string();
        assert!(
            e.contains(":10:")
                && e.contains("dataset[0].shape")
                && e.contains("text datasets take no"),
            "{e}"
        );
        let (dir, text) = text_suite("", "metric = \"top1\"");
        let e = parse_in(dir.path(), &text).unwrap_err().to_string();
        assert!(
            e.contains("model[0].metric") && e.contains("does not apply to bert"),
            "{e}"
        );
        let (dir, text) = text_suite("", "input = \"x\"");
        let e = parse_in(dir.path(), &text).unwrap_err().to_string();
        assert!(e.contains("model[0].input"), "{e}");
        // An image dataset without a shape, and `tokenizer` on it.
        let images = "[suite]\nname = \"t\"\n[[dataset]]\nname = \"d\"\nformat = \"csv\"\npath = \"s.txt\"\n\
                      calibration = { samples = 1 }\nevaluation = { samples = 1 }\n";
        let e = parse_in(dir.path(), images).unwrap_err().to_string();
        assert!(
            e.contains("dataset[0].shape") && e.contains("missing"),
            "{e}"
        );
        let e = parse_in(
            dir.path(),
            &format!("{images}shape = [1]\ntokenizer = \"s.txt\"\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("dataset[0].tokenizer") && e.contains("text datasets only"),
            "{e}"
        );
    }

    #[test]
    fn a_bert_path_must_be_a_model_folder() {
        let (dir, text) = text_suite("", "");
        let text = text.replace("path = \"bert\"", "path = \"s.txt\"");
        let e = parse_in(dir.path(), &text).unwrap_err().to_string();
        assert!(
            e.contains("model[0].path") && e.contains("config.json not found"),
            "{e}"
        );
        // A bert model reading an image dataset.
        let (dir, text) = text_suite("", "");
        let text = text.replace("format = \"text\"", "format = \"csv\"\nshape = [1]");
        let e = parse_in(dir.path(), &text).unwrap_err().to_string();
        assert!(
            e.contains("model[0].dataset") && e.contains("not `format = \"text\"`"),
            "{e}"
        );
    }

    #[test]
    fn key_before_finds_the_key_of_a_value() {
        let t = "[target]\nbatch = \"four\"\ncalibration = { samples = -1 }\n";
        assert_eq!(key_before(t, t.find("\"four").unwrap()), Some("batch"));
        assert_eq!(key_before(t, t.find("-1").unwrap()), Some("samples"));
        assert_eq!(key_before(t, t.find("batch").unwrap()), None);
    }

    #[test]
    fn line_col_counts_from_one() {
        let t = "a\nbc\nd";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 2));
        assert_eq!(line_col(t, 5), (3, 1));
    }
}
