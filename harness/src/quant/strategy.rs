//! A quantization strategy as one value: what the suite's space expands to, what a trial runs, and what a
//! result row describes (through [`Strategy::name`] and the per-field accessors).

use std::fmt;

use strategies::calib::CalibrationMethod;
use strategies::pow2::ScaleConstraint;
use strategies::{Granularity, Scheme};

/// How activations are handled by the quantized layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActMode {
    /// Calibrated ahead of time; values stay u8 between quantized layers, requantized in integers.
    Static,
    /// Scale and zero point computed from each batch at run time (like ONNX Runtime's `quantize_dynamic`).
    Dynamic,
    /// Activations stay f32; only weights are quantized.
    WeightOnly,
}

impl ActMode {
    pub fn name(self) -> &'static str {
        match self {
            ActMode::Static => "static",
            ActMode::Dynamic => "dynamic",
            ActMode::WeightOnly => "weightonly",
        }
    }
}

/// How activation ranges are chosen from calibration data (static mode): a [`CalibrationMethod`] held in a
/// form that can be compared, hashed and sorted (parameters in fixed point: momentum and percentile in
/// millionths).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Calibration {
    MinMax,
    MovingAverage { momentum_ppm: u32 },
    Percentile { percent_ppm: u32 },
    Kl,
    Mse,
}

impl Calibration {
    pub fn method(self) -> CalibrationMethod {
        match self {
            Calibration::MinMax => CalibrationMethod::MinMax,
            Calibration::MovingAverage { momentum_ppm } => CalibrationMethod::MovingAverage {
                momentum: momentum_ppm as f64 / 1e6,
            },
            Calibration::Percentile { percent_ppm } => {
                CalibrationMethod::Percentile(percent_ppm as f64 / 1e6)
            }
            Calibration::Kl => CalibrationMethod::Kl,
            Calibration::Mse => CalibrationMethod::Mse,
        }
    }

    pub fn from_method(m: CalibrationMethod) -> Self {
        let ppm = |v: f64| (v * 1e6).round() as u32;
        match m {
            CalibrationMethod::MinMax => Calibration::MinMax,
            CalibrationMethod::MovingAverage { momentum } => Calibration::MovingAverage {
                momentum_ppm: ppm(momentum),
            },
            CalibrationMethod::Percentile(p) => Calibration::Percentile {
                percent_ppm: ppm(p),
            },
            CalibrationMethod::Kl => Calibration::Kl,
            CalibrationMethod::Mse => Calibration::Mse,
        }
    }

    /// `minmax`, `ema0.01`, `p99.99`, `kl`, `mse`.
    pub fn name(self) -> String {
        self.method().name()
    }
}

/// How weight values map to integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quantizer {
    /// Evenly spaced levels (scale and zero point).
    #[default]
    Uniform,
    /// Power-of-two levels (sign + exponent codes), decoded exactly into int8 weights to run on the int8
    /// kernels.
    Log,
}

/// How each weight slice's clipping range is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WeightRange {
    #[default]
    MinMax,
    /// The clipping that minimizes the squared quantization error of the slice.
    Mse,
}

/// A post-training refinement applied after the weights' grid is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refinement {
    #[default]
    None,
    /// Bias absorbs the mean output error of quantized weights over the calibration data.
    BiasCorrection,
    /// GPTQ: weights quantized row by row with second-order error compensation from calibration inputs.
    Gptq,
    /// AdaRound: each weight's rounding direction learned on calibration inputs.
    AdaRound,
    /// Quantization-aware training: fake-quantized fine-tuning with learned step sizes (LSQ); weights,
    /// weight steps and activation ranges come from training.
    Qat,
    /// Cross-layer equalization ([`crate::ir::equalize`]): the FP32 weights of consecutive layers rescaled
    /// so that each channel's ranges match, then calibration and round-to-nearest on the equalized model.
    Cle,
}

impl Refinement {
    pub fn name(self) -> &'static str {
        match self {
            Refinement::None => "none",
            Refinement::BiasCorrection => "biascorr",
            Refinement::Gptq => "gptq",
            Refinement::AdaRound => "adaround",
            Refinement::Qat => "qat",
            Refinement::Cle => "cle",
        }
    }
}

/// Linear integer quantization of Conv / Gemm / MatMul weights (and, unless weight-only, activations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinearStrategy {
    /// 2..=8.
    pub weight_bits: u32,
    pub act: ActMode,
    pub granularity: Granularity,
    pub scheme: Scheme,
    /// `Some` exactly when `act` is [`ActMode::Static`].
    pub calibration: Option<Calibration>,
    pub quantizer: Quantizer,
    pub scale: ScaleConstraint,
    pub weight_range: WeightRange,
    pub refinement: Refinement,
    /// A per-layer precision map (an index into the suite's maps, see [`MixedPrecision`]); layers it does not
    /// list take `weight_bits`.
    pub mixed: Option<MixedId>,
}

/// A [`MixedPrecision`] map of the suite: its index there and its name (interned once per suite load, so
/// that strategies stay `Copy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MixedId {
    pub index: u16,
    pub name: &'static str,
}

/// The precision of one layer in a mixed-precision map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerPrecision {
    /// Integer weights of this many bits (2..=8), with the strategy's other choices.
    Bits(u32),
    /// Left in FP32 (f32 weights on the f32 GEMM; activations dequantized into it and quantized after it).
    Fp32,
}

/// A named per-layer precision map, e.g. first and last layers at 8 bits, one layer left in FP32.
#[derive(Clone, Debug, PartialEq)]
pub struct MixedPrecision {
    pub name: String,
    /// Layer (node) name to precision.
    pub layers: std::collections::BTreeMap<String, LayerPrecision>,
}

impl MixedPrecision {
    /// `Conv_1=8;Gemm_10=fp32`, for result rows.
    pub fn describe(&self) -> String {
        self.layers
            .iter()
            .map(|(l, p)| match p {
                LayerPrecision::Bits(b) => format!("{l}={b}"),
                LayerPrecision::Fp32 => format!("{l}=fp32"),
            })
            .collect::<Vec<_>>()
            .join(";")
    }
}

impl LinearStrategy {
    /// The common case: uniform levels, float scales, min-max weight ranges, no refinement.
    pub fn uniform(
        weight_bits: u32,
        act: ActMode,
        granularity: Granularity,
        scheme: Scheme,
        calibration: Option<Calibration>,
    ) -> Self {
        LinearStrategy {
            weight_bits,
            act,
            granularity,
            scheme,
            calibration,
            quantizer: Quantizer::Uniform,
            scale: ScaleConstraint::Float,
            weight_range: WeightRange::MinMax,
            refinement: Refinement::None,
            mixed: None,
        }
    }
}

/// A 16-bit float format for the whole model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FloatFormat {
    /// IEEE binary16 weights widened in registers; activations and arithmetic in f32.
    Fp16,
    /// bfloat16 weights and activations, products summed in f32 (`vdpbf16ps`).
    Bf16,
    /// One layer left in FP32 inside a quantized model (a mixed-precision map); the whole-model FP32
    /// baseline is [`Strategy::Fp32`].
    Fp32,
}

impl FloatFormat {
    pub fn name(self) -> &'static str {
        match self {
            FloatFormat::Fp16 => "fp16",
            FloatFormat::Bf16 => "bf16",
            FloatFormat::Fp32 => "fp32",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    /// The unquantized model: the baseline every row is compared with.
    Fp32,
    /// The whole model in a 16-bit float format.
    Float(FloatFormat),
    Linear(LinearStrategy),
}

impl Strategy {
    /// Short canonical name, e.g. `fp32`, `bf16`, `w8-static-channel-sym-minmax`, `w4-dynamic-group32-sym`,
    /// `w4-static-channel-sym-kl-log-pow2-wmse-gptq` (optional parts only when not the default).
    pub fn name(&self) -> String {
        match self {
            Strategy::Fp32 => "fp32".to_string(),
            Strategy::Float(f) => f.name().to_string(),
            Strategy::Linear(s) => {
                let mut name = format!(
                    "w{}-{}-{}-{}",
                    s.weight_bits,
                    s.act.name(),
                    s.granularity.name(),
                    s.scheme.name()
                );
                if let Some(c) = s.calibration {
                    name.push('-');
                    name.push_str(&c.name());
                }
                if s.quantizer == Quantizer::Log {
                    name.push_str("-log");
                }
                if s.scale == ScaleConstraint::PowerOfTwo {
                    name.push_str("-pow2");
                }
                if s.weight_range == WeightRange::Mse {
                    name.push_str("-wmse");
                }
                if s.refinement != Refinement::None {
                    name.push('-');
                    name.push_str(s.refinement.name());
                }
                if let Some(m) = s.mixed {
                    name.push_str("-mix.");
                    name.push_str(m.name);
                }
                name
            }
        }
    }

    pub fn weight_bits(&self) -> u32 {
        match self {
            Strategy::Fp32 => 32,
            Strategy::Float(_) => 16,
            Strategy::Linear(s) => s.weight_bits,
        }
    }

    /// `fp32` / `fp16` / `bf16` for float models, else the activation mode.
    pub fn act_mode(&self) -> &'static str {
        match self {
            Strategy::Fp32 => "fp32",
            Strategy::Float(f) => f.name(),
            Strategy::Linear(s) => s.act.name(),
        }
    }

    pub fn granularity(&self) -> &'static str {
        match self {
            Strategy::Fp32 | Strategy::Float(_) => "none",
            Strategy::Linear(s) => s.granularity.name(),
        }
    }

    pub fn scheme(&self) -> &'static str {
        match self {
            Strategy::Fp32 | Strategy::Float(_) => "none",
            Strategy::Linear(s) => s.scheme.name(),
        }
    }

    pub fn calibration(&self) -> String {
        match self {
            Strategy::Linear(LinearStrategy {
                calibration: Some(c),
                ..
            }) => c.name(),
            _ => "none".to_string(),
        }
    }

    /// `uniform`, `log`, or `float` for float models.
    pub fn quantizer(&self) -> &'static str {
        match self {
            Strategy::Linear(s) if s.quantizer == Quantizer::Log => "log",
            Strategy::Linear(_) => "uniform",
            _ => "float",
        }
    }

    /// `float` or `pow2` scales; `none` for float models.
    pub fn scale_constraint(&self) -> &'static str {
        match self {
            Strategy::Linear(s) if s.scale == ScaleConstraint::PowerOfTwo => "pow2",
            Strategy::Linear(_) => "float",
            _ => "none",
        }
    }

    /// `minmax` or `mse` weight ranges; `none` for float models.
    pub fn weight_range(&self) -> &'static str {
        match self {
            Strategy::Linear(s) if s.weight_range == WeightRange::Mse => "mse",
            Strategy::Linear(_) => "minmax",
            _ => "none",
        }
    }

    pub fn refinement(&self) -> &'static str {
        match self {
            Strategy::Linear(s) => s.refinement.name(),
            _ => "none",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_canonical_and_distinct() {
        let a = Strategy::Linear(LinearStrategy::uniform(
            8,
            ActMode::Static,
            Granularity::PerChannel,
            Scheme::Symmetric,
            Some(Calibration::MinMax),
        ));
        assert_eq!(a.name(), "w8-static-channel-sym-minmax");
        let b = Strategy::Linear(LinearStrategy::uniform(
            8,
            ActMode::WeightOnly,
            Granularity::PerTensor,
            Scheme::Affine,
            None,
        ));
        assert_eq!(b.name(), "w8-weightonly-tensor-affine");
        assert_eq!(Strategy::Fp32.name(), "fp32");
        assert_eq!(b.calibration(), "none");
        let c = Strategy::Linear(LinearStrategy {
            quantizer: Quantizer::Log,
            scale: ScaleConstraint::PowerOfTwo,
            weight_range: WeightRange::Mse,
            refinement: Refinement::Gptq,
            ..LinearStrategy::uniform(
                4,
                ActMode::Static,
                Granularity::PerGroup(32),
                Scheme::Symmetric,
                Some(Calibration::Percentile {
                    percent_ppm: 99_990_000,
                }),
            )
        });
        assert_eq!(c.name(), "w4-static-group32-sym-p99.99-log-pow2-wmse-gptq");
        assert_eq!(Strategy::Float(FloatFormat::Bf16).name(), "bf16");
    }

    #[test]
    fn calibration_round_trips_through_the_method() {
        for token in ["minmax", "ema:0.01", "percentile:99.99", "kl", "mse"] {
            let m = CalibrationMethod::parse(token).unwrap();
            assert_eq!(Calibration::from_method(m).method(), m, "{token}");
        }
    }
}
