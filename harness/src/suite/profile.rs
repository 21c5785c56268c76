//! Hardware target profiles: what a back end can run, as data (`suites/profiles/*.toml`).
//!
//! A `[[target]]` may name one (`profile = "fbgemm"`); the runner and the search then only propose the
//! suite's strategies the profile allows (FP32, the baseline, always). A profile is looked up as
//! `<suite folder>/profiles/<name>.toml` first, then among the profiles compiled into the binary (the
//! repository's `suites/profiles/`); a value ending in `.toml` is a path relative to the suite file.
//!
//! Strategies carry one scheme for weights and activations. A profile says, for each, whether the back end
//! takes a zero point; a symmetric strategy is runnable everywhere (zero point 0), an affine one only where
//! both weights and activations may carry zero points (weight-only strategies: weights only).

use std::path::Path;

use serde::Deserialize;
use strategies::pow2::ScaleConstraint;
use strategies::{Granularity, Scheme};

use crate::quant::strategy::{
    ActMode, FloatFormat, LayerPrecision, MixedPrecision, Quantizer, Refinement, Strategy,
};

/// The profiles shipped in `suites/profiles/`, compiled in: `(name, text)`.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "fbgemm",
        include_str!("../../../suites/profiles/fbgemm.toml"),
    ),
    (
        "tensorrt",
        include_str!("../../../suites/profiles/tensorrt.toml"),
    ),
    (
        "arm-tvm",
        include_str!("../../../suites/profiles/arm-tvm.toml"),
    ),
    (
        "int4-weight-only",
        include_str!("../../../suites/profiles/int4-weight-only.toml"),
    ),
    ("bf16", include_str!("../../../suites/profiles/bf16.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    profile: ProfileSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileSpec {
    name: String,
    #[serde(default)]
    description: String,
    /// The ISA that times this back end here when the target leaves `isa` out (`auto`: the best one).
    #[serde(default)]
    isa: Option<String>,
    /// Integer weight widths the back end runs (empty: no integer strategies).
    #[serde(default)]
    weight_bits: Vec<u32>,
    /// `static`, `dynamic`, `weight-only`.
    #[serde(default)]
    activations: Vec<String>,
    /// Weight granularities: `tensor`, `channel`, `group` (any group size) or `group:G`.
    #[serde(default)]
    granularity: Vec<String>,
    #[serde(default)]
    weight_zero_point: bool,
    #[serde(default)]
    activation_zero_point: bool,
    /// `uniform`, `log`.
    #[serde(default = "uniform")]
    quantizer: Vec<String>,
    /// `float`, `pow2`.
    #[serde(default = "float_scale")]
    scale: Vec<String>,
    /// Whole-model float formats: `fp16`, `bf16`.
    #[serde(default)]
    floats: Vec<String>,
    /// Per-layer precision maps (layers at other allowed widths or left in FP32).
    #[serde(default = "yes")]
    mixed: bool,
    /// Offline refinements change the weights, not the format: all are allowed unless listed.
    #[serde(default)]
    refinement: Option<Vec<String>>,
}

fn uniform() -> Vec<String> {
    vec!["uniform".into()]
}
fn float_scale() -> Vec<String> {
    vec!["float".into()]
}
fn yes() -> bool {
    true
}

/// What a back end runs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// `None`: `auto`.
    pub isa: Option<kernels::Isa>,
    pub weight_bits: Vec<u32>,
    pub activations: Vec<ActMode>,
    /// `PerGroup(0)` stands for any group size.
    pub granularity: Vec<Granularity>,
    pub weight_zero_point: bool,
    pub activation_zero_point: bool,
    pub quantizer: Vec<Quantizer>,
    pub scale: Vec<ScaleConstraint>,
    pub floats: Vec<FloatFormat>,
    pub mixed: bool,
    /// `None`: every refinement.
    pub refinement: Option<Vec<Refinement>>,
}

impl Profile {
    /// Parses profile text; errors are one line naming the key.
    pub fn parse(text: &str) -> Result<Profile, String> {
        let file: ProfileFile =
            toml::from_str(text).map_err(|e| e.message().trim().replace('\n', " "))?;
        let p = file.profile;
        let each = |key: &str, values: &[String], f: &dyn Fn(&str) -> Option<()>| {
            values
                .iter()
                .try_for_each(|v| f(v).ok_or_else(|| format!("profile.{key}: unknown value `{v}`")))
        };
        let isa = match p.isa.as_deref() {
            None | Some("auto") => None,
            Some(s) => Some(
                s.parse::<kernels::Isa>()
                    .map_err(|e| format!("profile.isa: {e}"))?,
            ),
        };
        if let Some(b) = p.weight_bits.iter().find(|b| !(2..=8).contains(*b)) {
            return Err(format!("profile.weight_bits: {b} is not 2 to 8"));
        }
        let act = |s: &str| match s {
            "static" => Some(ActMode::Static),
            "dynamic" => Some(ActMode::Dynamic),
            "weight-only" => Some(ActMode::WeightOnly),
            _ => None,
        };
        each("activations", &p.activations, &|s| act(s).map(|_| ()))?;
        let gran = |s: &str| match s {
            "group" => Some(Granularity::PerGroup(0)),
            other => other.parse::<Granularity>().ok(),
        };
        each("granularity", &p.granularity, &|s| gran(s).map(|_| ()))?;
        let quant = |s: &str| match s {
            "uniform" => Some(Quantizer::Uniform),
            "log" => Some(Quantizer::Log),
            _ => None,
        };
        each("quantizer", &p.quantizer, &|s| quant(s).map(|_| ()))?;
        let scale = |s: &str| match s {
            "float" => Some(ScaleConstraint::Float),
            "pow2" => Some(ScaleConstraint::PowerOfTwo),
            _ => None,
        };
        each("scale", &p.scale, &|s| scale(s).map(|_| ()))?;
        let float = |s: &str| match s {
            "fp16" => Some(FloatFormat::Fp16),
            "bf16" => Some(FloatFormat::Bf16),
            _ => None,
        };
        each("floats", &p.floats, &|s| float(s).map(|_| ()))?;
        let refine = |s: &str| match s {
            "none" => Some(Refinement::None),
            "gptq" => Some(Refinement::Gptq),
            "adaround" => Some(Refinement::AdaRound),
            "bias-correction" => Some(Refinement::BiasCorrection),
            "qat" => Some(Refinement::Qat),
            "cle" => Some(Refinement::Cle),
            _ => None,
        };
        if let Some(r) = &p.refinement {
            each("refinement", r, &|s| refine(s).map(|_| ()))?;
        }
        Ok(Profile {
            name: p.name,
            description: p.description,
            isa,
            weight_bits: p.weight_bits,
            activations: p.activations.iter().filter_map(|s| act(s)).collect(),
            granularity: p.granularity.iter().filter_map(|s| gran(s)).collect(),
            weight_zero_point: p.weight_zero_point,
            activation_zero_point: p.activation_zero_point,
            quantizer: p.quantizer.iter().filter_map(|s| quant(s)).collect(),
            scale: p.scale.iter().filter_map(|s| scale(s)).collect(),
            floats: p.floats.iter().filter_map(|s| float(s)).collect(),
            mixed: p.mixed,
            refinement: p
                .refinement
                .map(|r| r.iter().filter_map(|s| refine(s)).collect()),
        })
    }

    /// Finds `name` (see the module doc) relative to the suite folder `base`, then among the built-ins.
    pub fn resolve(name: &str, base: &Path) -> Result<Profile, String> {
        let path = if name.ends_with(".toml") {
            base.join(name)
        } else {
            base.join("profiles").join(format!("{name}.toml"))
        };
        if path.is_file() {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            return Profile::parse(&text).map_err(|e| format!("{}: {e}", path.display()));
        }
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => Profile::parse(text).map_err(|e| format!("built-in `{name}`: {e}")),
            None => Err(format!(
                "no profile `{name}` ({} not found; built-in: {})",
                path.display(),
                BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// True when the back end runs `strategy` (FP32 always). `mixed` holds the suite's precision maps.
    pub fn allows(&self, strategy: &Strategy, mixed: &[MixedPrecision]) -> bool {
        let l = match strategy {
            Strategy::Fp32 => return true,
            Strategy::Float(f) => return self.floats.contains(f),
            Strategy::Linear(l) => l,
        };
        let granularity_ok = self.granularity.iter().any(|g| match (g, l.granularity) {
            (Granularity::PerGroup(0), Granularity::PerGroup(_)) => true,
            (a, b) => *a == b,
        });
        let scheme_ok = l.scheme == Scheme::Symmetric
            || (self.weight_zero_point
                && (l.act == ActMode::WeightOnly || self.activation_zero_point));
        let refinement_ok = self
            .refinement
            .as_ref()
            .is_none_or(|r| r.contains(&l.refinement));
        let mixed_ok = match l.mixed {
            None => true,
            Some(id) => {
                self.mixed
                    && mixed.get(id.index as usize).is_some_and(|m| {
                        m.layers.values().all(|p| match p {
                            LayerPrecision::Bits(b) => self.weight_bits.contains(b),
                            LayerPrecision::Fp32 => true,
                        })
                    })
            }
        };
        self.weight_bits.contains(&l.weight_bits)
            && self.activations.contains(&l.act)
            && granularity_ok
            && scheme_ok
            && self.quantizer.contains(&l.quantizer)
            && self.scale.contains(&l.scale)
            && refinement_ok
            && mixed_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::strategy::{Calibration, LinearStrategy};

    fn lin(bits: u32, act: ActMode, g: Granularity, scheme: Scheme) -> Strategy {
        let cal = (act == ActMode::Static).then_some(Calibration::MinMax);
        Strategy::Linear(LinearStrategy::uniform(bits, act, g, scheme, cal))
    }

    #[test]
    fn builtin_profiles_parse_and_filter_like_their_back_ends() {
        let get = |n: &str| Profile::resolve(n, Path::new("/nonexistent")).unwrap();
        let fbgemm = get("fbgemm");
        let trt = get("tensorrt");
        let arm = get("arm-tvm");
        let int4 = get("int4-weight-only");
        let bf16 = get("bf16");
        let s8c = lin(
            8,
            ActMode::Static,
            Granularity::PerChannel,
            Scheme::Symmetric,
        );
        let a8c = lin(8, ActMode::Static, Granularity::PerChannel, Scheme::Affine);
        let s8t = lin(
            8,
            ActMode::Static,
            Granularity::PerTensor,
            Scheme::Symmetric,
        );
        let w4g = lin(
            4,
            ActMode::WeightOnly,
            Granularity::PerGroup(32),
            Scheme::Symmetric,
        );
        let pow2 = match s8t {
            Strategy::Linear(l) => Strategy::Linear(LinearStrategy {
                scale: ScaleConstraint::PowerOfTwo,
                ..l
            }),
            _ => unreachable!(),
        };
        let bf = Strategy::Float(FloatFormat::Bf16);
        for p in [&fbgemm, &trt, &arm, &int4, &bf16] {
            assert!(p.allows(&Strategy::Fp32, &[]), "{}", p.name);
        }
        assert!(fbgemm.allows(&s8c, &[]) && fbgemm.allows(&s8t, &[]));
        assert!(!fbgemm.allows(&a8c, &[]), "FBGEMM weights are symmetric");
        assert!(!fbgemm.allows(&w4g, &[]) && !fbgemm.allows(&pow2, &[]));
        assert!(trt.allows(&s8c, &[]) && !trt.allows(&s8t, &[]) && !trt.allows(&a8c, &[]));
        assert!(arm.allows(&pow2, &[]) && !arm.allows(&s8t, &[]) && !arm.allows(&s8c, &[]));
        assert!(int4.allows(&w4g, &[]) && !int4.allows(&s8c, &[]));
        assert!(bf16.allows(&bf, &[]) && !bf16.allows(&s8c, &[]) && !fbgemm.allows(&bf, &[]));
    }

    #[test]
    fn bad_profiles_name_the_key() {
        let e =
            Profile::parse("[profile]\nname = \"x\"\nactivations = [\"sometimes\"]\n").unwrap_err();
        assert!(
            e.contains("profile.activations") && e.contains("sometimes"),
            "{e}"
        );
        let e = Profile::parse("[profile]\nname = \"x\"\nbitz = [8]\n").unwrap_err();
        assert!(e.contains("bitz"), "{e}");
        assert!(
            Profile::resolve("nope", Path::new("/x"))
                .unwrap_err()
                .contains("fbgemm")
        );
    }
}
