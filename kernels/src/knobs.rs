//! Every environment override this crate reads, declared once and documented here; [`all`] lists them for
//! `harness info`. Nothing else in the crate calls `std::env`.

use crate::error::KernelError;
use crate::isa::Isa;

/// Forces the ISA when no explicit request (suite or CLI) is given. Values: the names of [`Isa::name`],
/// case-insensitive; empty or unset means "detect". Forcing an ISA the CPU lacks is an error at selection time.
pub const QH_ISA: &str = "QH_ISA";

/// `(name, description)` of every knob, for listing.
pub fn all() -> &'static [(&'static str, &'static str)] {
    &[(
        QH_ISA,
        "force the kernel ISA when the suite/CLI does not: scalar | generic | avx2 | avx512vnni | avx512bf16 \
         (case-insensitive; unset or empty = best detected; an ISA this CPU lacks is an error)",
    )]
}

/// The ISA forced by [`QH_ISA`], if set to a non-empty value.
pub fn isa_override() -> Result<Option<Isa>, KernelError> {
    parse_isa_override(std::env::var(QH_ISA))
}

fn parse_isa_override(
    value: Result<String, std::env::VarError>,
) -> Result<Option<Isa>, KernelError> {
    match value {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(raw)) => Err(KernelError::InvalidKnob {
            name: QH_ISA,
            value: raw.to_string_lossy().into_owned(),
            reason: "not valid UTF-8".to_owned(),
        }),
        Ok(s) if s.trim().is_empty() => Ok(None),
        Ok(s) => s
            .parse::<Isa>()
            .map(Some)
            .map_err(|e| KernelError::InvalidKnob {
                name: QH_ISA,
                value: s,
                reason: e.to_string(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_without_touching_the_process_environment() {
        assert_eq!(
            parse_isa_override(Err(std::env::VarError::NotPresent)).unwrap(),
            None
        );
        assert_eq!(parse_isa_override(Ok("  ".into())).unwrap(), None);
        assert_eq!(
            parse_isa_override(Ok("AVX2".into())).unwrap(),
            Some(Isa::Avx2)
        );
        let err = parse_isa_override(Ok("neon".into())).unwrap_err();
        assert!(matches!(err, KernelError::InvalidKnob { name: QH_ISA, .. }));
        assert!(err.to_string().contains("avx512vnni"), "{err}");
    }

    #[test]
    fn every_knob_is_listed_once() {
        let names: Vec<_> = all().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, [QH_ISA]);
    }
}
