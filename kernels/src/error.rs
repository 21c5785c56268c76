//! Typed errors of the kernels crate: ISA requests that cannot be honoured, malformed environment knobs and
//! invalid quantization parameters. Every message says what to do next.

use crate::isa::{self, Isa};

/// Everything the kernels crate can refuse. Shape mismatches are not here: kernels take pre-validated input and
/// treat a bad shape as a programming error (panic), see the crate docs.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// An ISA name that is not one of [`Isa::ALL`].
    #[error("unknown ISA `{given}`; valid names are: {valid}", valid = isa::valid_names())]
    UnknownIsa { given: String },

    /// A forced ISA (explicit request or the `QH_ISA` knob) that this CPU cannot run.
    #[error(
        "ISA `{isa}` was forced via {source_of_request} but this CPU ({model}) lacks it; detected features: \
         [{features}]; available ISAs: {available}. Request one of those, or unset the override",
        model = isa::cpu_model(),
        features = isa::cpu_features().join(" "),
        available = isa::available_names(),
    )]
    IsaUnavailable { isa: Isa, source_of_request: String },

    /// An environment knob (see [`crate::knobs`]) holding a value that does not parse.
    #[error("environment variable {name}={value:?} is invalid: {reason}; fix or unset it")]
    InvalidKnob {
        name: &'static str,
        value: String,
        reason: String,
    },

    /// A requantization scale that cannot become a fixed-point multiplier.
    #[error(
        "requantization scale {real} is invalid: it must be finite and >= 0 \
         (it is usually input_scale * weight_scale / output_scale; check the calibration that produced it)"
    )]
    InvalidScale { real: f64 },
}
