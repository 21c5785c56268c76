//! A quantization strategy as one value: what the suite's space expands to, what a trial runs, and what a
//! result row describes (through [`Strategy::name`] and the per-field accessors).

use std::fmt;

use strategies::{Granularity, Scheme};

/// How activations are handled by the quantized layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActMode {
    /// Calibrated ahead of time; values stay u8 between quantized layers, requantized in integers.
    Static,
    /// Scale and zero point computed from each batch at run time (like ONNX Runtime's `quantize_dynamic`).
    Dynamic,
    /// Activations stay f32; only weights are int8.
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

/// How activation ranges are chosen from calibration data (static mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Calibration {
    MinMax,
}

impl Calibration {
    pub fn name(self) -> &'static str {
        match self {
            Calibration::MinMax => "minmax",
        }
    }
}

/// Linear integer quantization of Conv / Gemm / MatMul weights (and, unless weight-only, activations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinearStrategy {
    pub weight_bits: u32,
    pub act: ActMode,
    pub granularity: Granularity,
    pub scheme: Scheme,
    /// `Some` exactly when `act` is [`ActMode::Static`].
    pub calibration: Option<Calibration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    /// The unquantized model: the baseline every row is compared with.
    Fp32,
    Linear(LinearStrategy),
}

impl Strategy {
    /// Short canonical name, e.g. `fp32`, `w8-static-channel-sym-minmax`, `w8-dynamic-tensor-affine`.
    pub fn name(&self) -> String {
        match self {
            Strategy::Fp32 => "fp32".to_string(),
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
                    name.push_str(c.name());
                }
                name
            }
        }
    }

    pub fn weight_bits(&self) -> u32 {
        match self {
            Strategy::Fp32 => 32,
            Strategy::Linear(s) => s.weight_bits,
        }
    }

    /// `fp32` for the baseline, else the activation mode.
    pub fn act_mode(&self) -> &'static str {
        match self {
            Strategy::Fp32 => "fp32",
            Strategy::Linear(s) => s.act.name(),
        }
    }

    pub fn granularity(&self) -> &'static str {
        match self {
            Strategy::Fp32 => "none",
            Strategy::Linear(s) => s.granularity.name(),
        }
    }

    pub fn scheme(&self) -> &'static str {
        match self {
            Strategy::Fp32 => "none",
            Strategy::Linear(s) => s.scheme.name(),
        }
    }

    pub fn calibration(&self) -> &'static str {
        match self {
            Strategy::Linear(LinearStrategy {
                calibration: Some(c),
                ..
            }) => c.name(),
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
        let a = Strategy::Linear(LinearStrategy {
            weight_bits: 8,
            act: ActMode::Static,
            granularity: Granularity::PerChannel,
            scheme: Scheme::Symmetric,
            calibration: Some(Calibration::MinMax),
        });
        assert_eq!(a.name(), "w8-static-channel-sym-minmax");
        let b = Strategy::Linear(LinearStrategy {
            weight_bits: 8,
            act: ActMode::WeightOnly,
            granularity: Granularity::PerTensor,
            scheme: Scheme::Affine,
            calibration: None,
        });
        assert_eq!(b.name(), "w8-weightonly-tensor-affine");
        assert_eq!(Strategy::Fp32.name(), "fp32");
        assert_eq!(b.calibration(), "none");
    }
}
