//! Instruction-set tiers, CPU detection, and the precedence that turns a request into one ISA:
//! explicit (suite or CLI) > the `QH_ISA` knob > the best ISA this CPU supports. Forcing an ISA the CPU lacks is
//! an error, never a silent fallback; which kernel then serves each op is [`crate::registry`]'s job.

use std::fmt;
use std::str::FromStr;

use crate::error::KernelError;
use crate::knobs;

/// Instruction-set tiers, ordered: a kernel of tier `t` may serve any request for a tier `>= t` (the registry
/// picks the best registered kernel at or below the resolved tier).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Naive scalar loops: the reference oracles, run as kernels.
    Scalar,
    /// Portable Rust written for auto-vectorization with the baseline target features (SSE2 on x86_64).
    Generic,
    /// AVX2 + FMA.
    Avx2,
    /// AVX-512 F/BW/VL + VNNI.
    Avx512Vnni,
    /// [`Isa::Avx512Vnni`] + AVX-512 BF16.
    Avx512Bf16,
}

impl Isa {
    /// Every tier, lowest first.
    pub const ALL: [Isa; 5] = [
        Isa::Scalar,
        Isa::Generic,
        Isa::Avx2,
        Isa::Avx512Vnni,
        Isa::Avx512Bf16,
    ];

    /// The lowercase name used in suites, `QH_ISA`, kernel names and result rows.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Generic => "generic",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Avx512Bf16 => "avx512bf16",
        }
    }

    /// Whether this CPU (and OS) can run code of this tier. `Scalar` and `Generic` always can.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar | Isa::Generic => true,
            Isa::Avx2 => detect::avx2(),
            Isa::Avx512Vnni => detect::avx512vnni(),
            Isa::Avx512Bf16 => detect::avx512bf16(),
        }
    }

    /// The highest tier [`Isa::is_available`] accepts.
    pub fn detect_best() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|i| i.is_available())
            .unwrap_or(Isa::Generic)
    }

    /// Which build of a plain Rust loop compiled three times ([`LoopBuild`]) to run under this tier as a cap:
    /// the widest that the tier allows and this CPU runs.
    pub fn loop_build(self) -> LoopBuild {
        if self >= Isa::Avx512Vnni && Isa::Avx512Vnni.is_available() {
            LoopBuild::Avx512
        } else if self >= Isa::Avx2 && Isa::Avx2.is_available() {
            LoopBuild::Avx2
        } else {
            LoopBuild::Baseline
        }
    }
}

/// The builds of a loop that is written once in plain Rust and compiled for the x86_64 baseline (SSE2), with
/// `#[target_feature(enable = "avx2,fma")]`, and with `#[target_feature(enable = "avx512f,avx512bw,avx512vl")]`
/// (the features [`Isa::Avx2`] and [`Isa::Avx512Vnni`] guarantee). The same IEEE and integer operations in every
/// build (Rust never contracts `a * b + c` into an FMA), only wider: for the elementwise and depthwise loops
/// around the GEMM kernels, whose results must not depend on the tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopBuild {
    Baseline,
    Avx2,
    Avx512,
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = KernelError;

    /// Accepts the names of [`Isa::name`], case-insensitively, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Isa, KernelError> {
        let t = s.trim();
        Isa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| KernelError::UnknownIsa {
                given: s.to_owned(),
            })
    }
}

/// `scalar, generic, ...`: for error messages.
pub(crate) fn valid_names() -> String {
    Isa::ALL.map(Isa::name).join(", ")
}

/// The available tiers' names: for error messages.
pub(crate) fn available_names() -> String {
    Isa::ALL
        .into_iter()
        .filter(|i| i.is_available())
        .map(Isa::name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The CPU features of interest to this crate's kernels that this CPU has, in a fixed order; recorded in result
/// rows. Empty on non-x86_64 targets.
pub fn cpu_features() -> Vec<&'static str> {
    detect::features()
}

/// The CPU's `model name` from `/proc/cpuinfo`, or `"unknown"`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
        })
        .filter(|model| !model.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Resolves a request to one ISA. Precedence: `explicit` (from a suite or the CLI) > the `QH_ISA` knob >
/// [`Isa::detect_best`]. A forced ISA the CPU lacks is [`KernelError::IsaUnavailable`]; a malformed `QH_ISA` is
/// [`KernelError::InvalidKnob`].
pub fn resolve(explicit: Option<Isa>) -> Result<Isa, KernelError> {
    let from_env = match explicit {
        Some(_) => None, // An explicit request wins; a malformed QH_ISA must not fail it.
        None => knobs::isa_override()?,
    };
    resolve_with(explicit, from_env, Isa::is_available)
}

/// [`resolve`] with the environment and the CPU injected, so the precedence and the error path are testable on
/// any machine.
pub(crate) fn resolve_with(
    explicit: Option<Isa>,
    from_env: Option<Isa>,
    is_available: impl Fn(Isa) -> bool,
) -> Result<Isa, KernelError> {
    let forced = explicit
        .map(|isa| (isa, "explicit"))
        .or(from_env.map(|isa| (isa, knobs::QH_ISA)));
    match forced {
        Some((isa, _)) if is_available(isa) => Ok(isa),
        Some((isa, source)) => Err(KernelError::IsaUnavailable {
            isa,
            source_of_request: source.to_owned(),
        }),
        None => Ok(Isa::ALL
            .into_iter()
            .rev()
            .find(|&i| is_available(i))
            .unwrap_or(Isa::Generic)),
    }
}

#[cfg(target_arch = "x86_64")]
mod detect {
    //! CPUID probes, each declared once.

    pub fn avx2() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    pub fn avx512vnni() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    }

    pub fn avx512bf16() -> bool {
        avx512vnni() && is_x86_feature_detected!("avx512bf16")
    }

    pub fn features() -> Vec<&'static str> {
        // `is_x86_feature_detected!` needs literals, hence one line per feature.
        let probes: [(&'static str, bool); 15] = [
            ("sse4.1", is_x86_feature_detected!("sse4.1")),
            ("ssse3", is_x86_feature_detected!("ssse3")),
            ("avx", is_x86_feature_detected!("avx")),
            ("avx2", is_x86_feature_detected!("avx2")),
            ("fma", is_x86_feature_detected!("fma")),
            ("f16c", is_x86_feature_detected!("f16c")),
            ("bmi2", is_x86_feature_detected!("bmi2")),
            ("avx512f", is_x86_feature_detected!("avx512f")),
            ("avx512bw", is_x86_feature_detected!("avx512bw")),
            ("avx512vl", is_x86_feature_detected!("avx512vl")),
            ("avx512dq", is_x86_feature_detected!("avx512dq")),
            ("avx512vnni", is_x86_feature_detected!("avx512vnni")),
            ("avx512bf16", is_x86_feature_detected!("avx512bf16")),
            ("avx512fp16", is_x86_feature_detected!("avx512fp16")),
            ("avxvnni", is_x86_feature_detected!("avxvnni")),
        ];
        probes
            .into_iter()
            .filter_map(|(name, has)| has.then_some(name))
            .collect()
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod detect {
    //! No x86 tiers off x86_64.

    pub fn avx2() -> bool {
        false
    }

    pub fn avx512vnni() -> bool {
        false
    }

    pub fn avx512bf16() -> bool {
        false
    }

    pub fn features() -> Vec<&'static str> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_case_insensitively() {
        for isa in Isa::ALL {
            assert_eq!(isa.name().parse::<Isa>().unwrap(), isa);
            assert_eq!(isa.name().to_uppercase().parse::<Isa>().unwrap(), isa);
            assert_eq!(isa.to_string(), isa.name());
        }
    }

    #[test]
    fn unknown_name_lists_valid_names() {
        let msg = "sse9".parse::<Isa>().unwrap_err().to_string();
        for isa in Isa::ALL {
            assert!(msg.contains(isa.name()), "{msg}");
        }
    }

    #[test]
    fn precedence_explicit_then_env_then_best() {
        let only_avx2 = |i: Isa| i <= Isa::Avx2;
        assert_eq!(
            resolve_with(Some(Isa::Scalar), Some(Isa::Generic), only_avx2).unwrap(),
            Isa::Scalar
        );
        assert_eq!(
            resolve_with(None, Some(Isa::Generic), only_avx2).unwrap(),
            Isa::Generic
        );
        assert_eq!(resolve_with(None, None, only_avx2).unwrap(), Isa::Avx2);
    }

    #[test]
    fn forcing_an_unavailable_isa_names_its_source() {
        let only_generic = |i: Isa| i <= Isa::Generic;
        let err = resolve_with(Some(Isa::Avx2), None, only_generic).unwrap_err();
        assert!(
            matches!(&err, KernelError::IsaUnavailable { isa: Isa::Avx2, source_of_request } if source_of_request == "explicit"),
            "{err:?}"
        );
        let err = resolve_with(None, Some(Isa::Avx512Vnni), only_generic).unwrap_err();
        assert!(
            matches!(&err, KernelError::IsaUnavailable { isa: Isa::Avx512Vnni, source_of_request } if source_of_request == knobs::QH_ISA),
            "{err:?}"
        );
        assert!(err.to_string().contains("available ISAs"), "{err}");
    }

    #[test]
    fn detect_best_is_available() {
        assert!(Isa::detect_best().is_available());
        assert!(Isa::detect_best() >= Isa::Generic);
        assert!(!cpu_model().is_empty());
    }
}
