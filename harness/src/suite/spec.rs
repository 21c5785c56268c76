//! The suite file's schema, exactly as written in TOML.
//!
//! Every table denies unknown keys, so a typo is an error that names the key and its line. Values that are
//! checked after parsing (paths, references between tables, sample counts) keep their source span
//! (`toml::Spanned`) so that those errors can name the line too.

use serde::Deserialize;
use toml::Spanned;

use crate::data::Normalize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteFile {
    pub suite: SuiteMeta,
    #[serde(default, rename = "dataset")]
    pub datasets: Vec<DatasetSpec>,
    #[serde(default, rename = "model")]
    pub models: Vec<ModelSpec>,
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetSpec>,
    #[serde(default)]
    pub space: SpaceSpec,
    #[serde(default)]
    pub measure: MeasureSpec,
    #[serde(default)]
    pub search: SearchSpec,
    #[serde(default)]
    pub qat: QatSpec,
}

/// Quantization-aware training (`refinement = "qat"`): fine-tunes on the calibration split (disjoint from
/// evaluation), starting from min-max quantizers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QatSpec {
    #[serde(default = "default_qat_epochs")]
    pub epochs: usize,
    /// Adam's learning rate for the weights (step sizes use the trainer's own multiplier).
    #[serde(default = "default_qat_lr")]
    pub learning_rate: f64,
    #[serde(default = "default_qat_batch")]
    pub batch: usize,
}

impl Default for QatSpec {
    fn default() -> Self {
        QatSpec {
            epochs: default_qat_epochs(),
            learning_rate: default_qat_lr(),
            batch: default_qat_batch(),
        }
    }
}

fn default_qat_epochs() -> usize {
    3
}
fn default_qat_lr() -> f64 {
    1e-4
}
fn default_qat_batch() -> usize {
    64
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteMeta {
    pub name: Spanned<String>,
    /// Seeds the calibration / evaluation split (and every later random choice).
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// CSV or gzip CSV, no header; one sample a row with its label in one column.
    Csv,
    /// NumPy `.npy`: `path` holds the samples, `labels` the labels.
    Npy,
    /// IDX (MNIST / Fashion-MNIST), optionally gzipped: `path` holds the images, `labels` the labels.
    Idx,
    /// UTF-8 text, one sentence per line (optionally gzipped), for `bert` models: no labels; the sentences are
    /// tokenised with the model's tokenizer (or `tokenizer`) and padded per batch to the longest one.
    Text,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum LabelSpec {
    /// `"first"` or `"last"`.
    Named(String),
    /// A zero-based column index.
    Index(usize),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub samples: Spanned<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub name: Spanned<String>,
    pub format: DataFormat,
    pub path: Spanned<String>,
    /// The labels file, for `npy` and `idx`.
    #[serde(default)]
    pub labels: Option<Spanned<String>>,
    /// The label column, for `csv` (`"first"`, `"last"` or an index); default `"last"`.
    #[serde(default)]
    pub label: Option<Spanned<LabelSpec>>,
    /// The shape of one sample as the model takes it, e.g. `[1, 28, 28]` (not for `text`, whose samples are
    /// token sequences of any length).
    #[serde(default)]
    pub shape: Option<Spanned<Vec<usize>>>,
    /// `text` only: a `tokenizer.json` or `vocab.txt` (BERT uncased WordPiece) to tokenise with instead of the
    /// model folder's `tokenizer.json`.
    #[serde(default)]
    pub tokenizer: Option<Spanned<String>>,
    /// `text` only: the longest token sequence, `[CLS]` and `[SEP]` included (longer sentences are truncated);
    /// default: the tokenizer's (128 for all-MiniLM-L6-v2).
    #[serde(default)]
    pub max_length: Option<Spanned<usize>>,
    #[serde(default)]
    pub normalize: Option<Normalize>,
    pub calibration: SplitSpec,
    pub evaluation: SplitSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: Spanned<String>,
    /// `onnx`: an ONNX file; `bert`: a folder with `config.json`, `model.safetensors` and `tokenizer.json`
    /// (HF BERT encoders such as all-MiniLM-L6-v2), or `"minilm"` for the copy `scripts/fetch_minilm.sh`
    /// fetches (`$HARNESS_MINILM_DIR`, else `~/.cache/harness/minilm`).
    #[serde(default)]
    pub format: ModelFormat,
    pub path: Spanned<String>,
    pub dataset: Spanned<String>,
    /// Default: `top1` for `onnx` models, `embedding` for `bert` ones.
    #[serde(default)]
    pub metric: Option<Spanned<Metric>>,
    /// The graph input fed with the dataset's samples; default: the model's only input.
    #[serde(default)]
    pub input: Option<Spanned<String>>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    #[default]
    Onnx,
    Bert,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Classification accuracy: argmax of the first output against the label.
    #[default]
    Top1,
    /// Fidelity of the sentence embedding to FP32's on the same kernels: mean and minimum cosine over the
    /// evaluation sentences and nearest-neighbour agreement (`text::metrics`). The rows' `top1` column holds the
    /// mean cosine (FP32: 1), so `max_accuracy_drop` bounds the cosine drop.
    Embedding,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Top1 => "top1",
            Metric::Embedding => "embedding",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub name: Spanned<String>,
    /// `auto` (the best this CPU runs), or an ISA name: `scalar`, `generic`, `avx2`, `avx512vnni`, `avx512bf16`.
    #[serde(default = "default_isa")]
    pub isa: Spanned<String>,
    #[serde(default = "one")]
    pub threads: Spanned<usize>,
    /// Samples per timed inference.
    #[serde(default = "one")]
    pub batch: Spanned<usize>,
    /// A hardware profile (`suites/profiles/<name>.toml`, or a built-in one): only the strategies it runs
    /// are proposed for this target.
    #[serde(default)]
    pub profile: Option<Spanned<String>>,
}

fn default_isa() -> Spanned<String> {
    Spanned::new(0..0, "auto".to_string())
}

fn one() -> Spanned<usize> {
    Spanned::new(0..0, 1)
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum ActModeSpec {
    /// Activations calibrated ahead of time; integer from layer to layer.
    Static,
    /// Activation scale computed from each batch at run time; layer outputs in float.
    Dynamic,
    /// Weights stored in int8, activations stay float.
    WeightOnly,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum SchemeSpec {
    Symmetric,
    Affine,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum QuantizerSpec {
    /// Evenly spaced levels.
    Uniform,
    /// Power-of-two levels (sign + exponent), weights only, at most 4 bits, symmetric, tensor or channel.
    Log,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ScaleSpec {
    /// Any float scale.
    Float,
    /// Scales rounded up to powers of two (shift-only requantization).
    Pow2,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum WeightRangeSpec {
    Minmax,
    Mse,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum RefinementSpec {
    None,
    /// Second-order error compensation from calibration inputs (Frantar et al. 2022).
    Gptq,
    /// Learned rounding on calibration inputs (Nagel et al. 2020).
    Adaround,
    /// Bias absorbs the quantized weights' mean output shift (Nagel et al. 2019).
    BiasCorrection,
    /// Quantization-aware training with learned step sizes (static, per-channel, symmetric only).
    Qat,
    /// Cross-layer equalization of the FP32 weights before calibration and rounding (Nagel et al. 2019).
    Cle,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum FloatSpec {
    Fp16,
    Bf16,
}

/// One layer's precision in a map: bits (2..=8) or `"fp32"`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum LayerPrecisionSpec {
    Bits(u32),
    Named(String),
}

/// A named per-layer precision map: `layers = { "Conv_1" = 8, "Gemm_10" = "fp32" }` (node names as in the
/// model; `harness info MODEL`-style listings name them).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixedSpec {
    pub name: Spanned<String>,
    pub layers: Spanned<std::collections::BTreeMap<String, LayerPrecisionSpec>>,
}

/// The strategy space: lists whose cartesian product is swept (an FP32 baseline is always added).
/// Combinations that do not exist (log levels with affine or per-group weights) are left out of the product.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceSpec {
    /// Weight bit widths, 2..=8.
    #[serde(default = "default_bits")]
    pub weight_bits: Spanned<Vec<u32>>,
    #[serde(default = "default_acts")]
    pub activations: Vec<ActModeSpec>,
    /// `tensor`, `channel`, or `group:G` (also `group32`).
    #[serde(default = "default_granularity")]
    pub granularity: Spanned<Vec<String>>,
    #[serde(default = "default_scheme")]
    pub scheme: Vec<SchemeSpec>,
    /// Activation calibration, used by `static` activations only: `minmax`, `ema`, `ema:M`, `percentile:P`,
    /// `kl`, `mse`.
    #[serde(default = "default_calibration")]
    pub calibration: Spanned<Vec<String>>,
    #[serde(default = "default_quantizer")]
    pub quantizer: Vec<QuantizerSpec>,
    #[serde(default = "default_scale")]
    pub scale: Vec<ScaleSpec>,
    /// How each weight slice's clipping range is chosen.
    #[serde(default = "default_weight_range")]
    pub weight_range: Vec<WeightRangeSpec>,
    /// PTQ refinements: `none`, `gptq`, `adaround`, `bias-correction`, `cle` (cross-layer equalization;
    /// all uniform levels only), or `qat` (static activations, symmetric per-channel weights; settings in
    /// `[qat]`).
    #[serde(default = "default_refinement")]
    pub refinement: Vec<RefinementSpec>,
    /// Whole-model 16-bit float strategies to add (none by default).
    #[serde(default)]
    pub floats: Vec<FloatSpec>,
    /// Per-layer precision maps (`[[space.mixed]]`). When present, every point of this space's product runs
    /// once per map (its `weight_bits` is the default for unlisted layers) and not without one: put maps in
    /// their own `[[space.also]]` to sweep them beside uniform strategies.
    #[serde(default)]
    pub mixed: Vec<MixedSpec>,
    /// More spaces swept too (`[[space.also]]`), each a full space with its own lists and defaults: e.g. a
    /// calibrator x granularity x bits table plus a few log or power-of-two strategies without their product.
    #[serde(default)]
    pub also: Vec<SpaceSpec>,
}

impl Default for SpaceSpec {
    fn default() -> Self {
        SpaceSpec {
            weight_bits: default_bits(),
            activations: default_acts(),
            granularity: default_granularity(),
            scheme: default_scheme(),
            calibration: default_calibration(),
            quantizer: default_quantizer(),
            scale: default_scale(),
            weight_range: default_weight_range(),
            refinement: default_refinement(),
            floats: Vec::new(),
            mixed: Vec::new(),
            also: Vec::new(),
        }
    }
}

fn default_bits() -> Spanned<Vec<u32>> {
    Spanned::new(0..0, vec![8])
}
fn default_acts() -> Vec<ActModeSpec> {
    vec![
        ActModeSpec::Static,
        ActModeSpec::Dynamic,
        ActModeSpec::WeightOnly,
    ]
}
fn default_granularity() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec!["tensor".into(), "channel".into()])
}
fn default_scheme() -> Vec<SchemeSpec> {
    vec![SchemeSpec::Symmetric, SchemeSpec::Affine]
}
fn default_calibration() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec!["minmax".into()])
}
fn default_quantizer() -> Vec<QuantizerSpec> {
    vec![QuantizerSpec::Uniform]
}
fn default_scale() -> Vec<ScaleSpec> {
    vec![ScaleSpec::Float]
}
fn default_refinement() -> Vec<RefinementSpec> {
    vec![RefinementSpec::None]
}
fn default_weight_range() -> Vec<WeightRangeSpec> {
    vec![WeightRangeSpec::Minmax]
}

/// How speed is measured.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureSpec {
    /// Untimed runs before timing starts.
    #[serde(default = "default_warmup")]
    pub warmup: usize,
    /// Timed runs at least; median and p90 are taken over them.
    #[serde(default = "default_repeats")]
    pub repeats: Spanned<usize>,
    /// Keep timing until this many milliseconds have passed too (short trials get more runs, so their
    /// percentiles are not a handful of cold samples).
    #[serde(default = "default_min_time_ms")]
    pub min_time_ms: u64,
    /// Samples per batch when computing accuracy (does not affect the timed batch).
    #[serde(default = "default_eval_batch")]
    pub eval_batch: Spanned<usize>,
}

impl Default for MeasureSpec {
    fn default() -> Self {
        MeasureSpec {
            warmup: default_warmup(),
            repeats: default_repeats(),
            min_time_ms: default_min_time_ms(),
            eval_batch: default_eval_batch(),
        }
    }
}

fn default_warmup() -> usize {
    5
}
fn default_repeats() -> Spanned<usize> {
    Spanned::new(0..0, 30)
}
fn default_min_time_ms() -> u64 {
    300
}
fn default_eval_batch() -> Spanned<usize> {
    Spanned::new(0..0, 250)
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Lowest median latency.
    #[default]
    Latency,
    /// Fewest serialized bytes.
    Size,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    #[serde(default)]
    pub objective: Objective,
    /// Largest acceptable top-1 drop against FP32, as a fraction (0.005 = half a point).
    #[serde(default = "default_max_drop")]
    pub max_accuracy_drop: f64,
}

impl Default for SearchSpec {
    fn default() -> Self {
        SearchSpec {
            objective: Objective::default(),
            max_accuracy_drop: default_max_drop(),
        }
    }
}

fn default_max_drop() -> f64 {
    0.005
}
