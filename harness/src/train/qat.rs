//! Quantization-aware training and its post-training baseline, with results in the form a quantized
//! executor takes: the FP32 graph plus per-channel weight scales and per-value activation ranges.

use std::collections::{BTreeMap, BTreeSet};

use kernels::KernelSet;

use super::TrainError;
use super::fit::{Dataset, EpochReport, TrainConfig, top1, train};
use super::graph::TrainableGraph;
use super::quant::QuantConfig;
use crate::ir;

/// What QAT (or PTQ) hands on to the quantized executor.
///
/// Weights: quantize initializer `name` per output channel (axis 0 of Conv OIHW and of a `transB` Gemm B,
/// axis 1 of a plain Gemm / MatMul B) with `weight_scales[name][c]`, symmetric, zero point 0, codes in
/// `[-(2^(bits-1) - 1), 2^(bits-1) - 1]`, round half to even. Activations: `act_ranges[value]` is a `(lo, hi)`
/// for `strategies::activation_params_u8(lo, hi, Affine)`, which gives back exactly the learned step and zero
/// point (`lo = -z * s`, `hi = (255 - z) * s`). Every runtime value has a range: learned ones (the inputs of
/// Conv / Gemm / MatMul, and the values MaxPool / Flatten / Reshape turn into them; listed in
/// `learned_ranges`) and min-max ranges observed with fake quantization on the calibration data for the rest
/// (e.g. the logits).
#[derive(Clone, Debug)]
pub struct QatResult {
    /// The fine-tuned FP32 graph (for PTQ: the input graph).
    pub graph: ir::Graph,
    pub weight_bits: u32,
    pub weight_scales: BTreeMap<String, Vec<f32>>,
    pub act_ranges: BTreeMap<String, (f32, f32)>,
    /// The values whose range comes from a quantizer (learned, or calibrated for PTQ).
    pub learned_ranges: BTreeSet<String>,
    /// One report per QAT epoch (empty for PTQ).
    pub epochs: Vec<EpochReport>,
}

/// QAT settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QatConfig {
    pub quant: QuantConfig,
    pub train: TrainConfig,
    /// Samples of the training data (the first ones) that calibrate the initial activation ranges.
    pub calibration_samples: usize,
}

/// Calibration batches of the first `samples` images of `data`.
fn calibration(data: &Dataset, samples: usize) -> impl Iterator<Item = ndarray::ArrayD<f32>> + '_ {
    let n = samples.clamp(1, data.len().max(1));
    data.batches(256)
        .take(n.div_ceil(256))
        .enumerate()
        .map(move |(i, b)| {
            let keep = (n - i * 256).min(b.shape()[0]);
            b.slice_axis(ndarray::Axis(0), (0..keep).into()).to_owned()
        })
}

fn result(
    model: &TrainableGraph<f32>,
    calib: &Dataset,
    samples: usize,
    epochs: Vec<EpochReport>,
) -> Result<QatResult, TrainError> {
    let bits = model.quant.as_ref().map_or(8, |q| q.config.weight_bits);
    let learned = model.act_ranges();
    let observed = model.observe_ranges(calibration(calib, samples))?;
    let mut act_ranges: BTreeMap<String, (f32, f32)> = observed
        .iter()
        .enumerate()
        .filter_map(|(slot, r)| r.map(|r| (model.value_name(slot).to_owned(), r)))
        .collect();
    act_ranges.extend(learned.iter().map(|(k, v)| (k.clone(), *v)));
    Ok(QatResult {
        graph: model.to_graph(),
        weight_bits: bits,
        weight_scales: model.weight_scales(),
        act_ranges,
        learned_ranges: learned.into_keys().collect(),
        epochs,
    })
}

/// Post-training quantization as a [`QatResult`]: quantizers initialised from `config` (min-max weight
/// steps for the usual baseline) and activation ranges calibrated on the first `samples` of `calib`; no
/// training.
pub fn ptq(
    graph: &ir::Graph,
    kernels: &KernelSet,
    calib: &Dataset,
    samples: usize,
    config: QuantConfig,
) -> Result<QatResult, TrainError> {
    let mut model = TrainableGraph::<f32>::new(graph, kernels)?;
    model.attach_quant(config, calibration(calib, samples))?;
    result(&model, calib, samples, Vec::new())
}

/// Quantization-aware fine-tuning of `graph` on `data`: quantizers initialised as [`ptq`] does (on the first
/// `config.calibration_samples`), then `config.train` epochs with fake quantization in the forward pass,
/// straight-through gradients for the weights and LSQ gradients for the steps.
pub fn qat(
    graph: &ir::Graph,
    kernels: &KernelSet,
    data: &Dataset,
    config: &QatConfig,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<QatResult, TrainError> {
    let mut model = TrainableGraph::<f32>::new(graph, kernels)?;
    model.attach_quant(config.quant, calibration(data, config.calibration_samples))?;
    let epochs = train(&mut model, data, None, &config.train, on_epoch)?;
    result(&model, data, config.calibration_samples, epochs)
}

/// Top-1 of the fake-quantized model a [`QatResult`] describes (its graph, weight scales and the ranges of
/// Conv / Gemm / MatMul inputs) on `data`.
pub fn fake_quant_top1(
    result: &QatResult,
    kernels: &KernelSet,
    data: &Dataset,
) -> Result<f64, TrainError> {
    let mut model = TrainableGraph::<f32>::new(&result.graph, kernels)?;
    let learned: BTreeMap<String, (f32, f32)> = result
        .act_ranges
        .iter()
        .filter(|(k, _)| result.learned_ranges.contains(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    model.attach_quant_with(result.weight_bits, &result.weight_scales, &learned)?;
    top1(&model, data, 256)
}
