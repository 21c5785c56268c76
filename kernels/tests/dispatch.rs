//! The dispatch point: `select` honours explicit requests, inherits from lower tiers, refuses ISAs this CPU
//! lacks, and every registered kernel is listed for `harness info`.

use kernels::registry::available_kernels;
use kernels::{Isa, KernelError, KernelSet, select};

/// Every op's kernel in the set, so a new op is covered by these tests as soon as `KernelSet::all` lists it.
fn kernels_of(set: &KernelSet) -> Vec<(&'static str, Isa)> {
    set.all().iter().map(|(_, k)| (k.name(), k.isa())).collect()
}

#[test]
fn scalar_request_gets_the_reference_kernels() {
    let set = select(Some(Isa::Scalar)).unwrap();
    assert_eq!(set.isa_requested, Isa::Scalar);
    for (name, isa) in kernels_of(&set) {
        assert!(name.starts_with("scalar_"), "{name}");
        assert_eq!(isa, Isa::Scalar);
    }
}

#[test]
fn generic_request_gets_the_generic_kernels() {
    let set = select(Some(Isa::Generic)).unwrap();
    for (name, _) in kernels_of(&set) {
        assert!(name.starts_with("generic_"), "{name}");
    }
    let described = set.describe();
    assert!(
        described.contains("isa=generic") && described.contains(set.gemm_u8i8.name()),
        "{described}"
    );
}

#[test]
fn default_selection_works() {
    // Follows QH_ISA when the environment sets it; either way the result is runnable here.
    if let Err(e) = kernels::knobs::isa_override() {
        eprintln!("QH_ISA is malformed here ({e}); select(None) must refuse it");
        assert!(matches!(select(None), Err(KernelError::InvalidKnob { .. })));
        return;
    }
    let set = select(None).unwrap();
    assert!(set.isa_requested.is_available());
    for (name, isa) in kernels_of(&set) {
        assert!(
            isa >= Isa::Generic || set.isa_requested == Isa::Scalar,
            "{name}"
        );
        assert!(isa <= set.isa_requested && isa.is_available(), "{name}");
    }
}

#[test]
fn every_available_isa_selects_kernels_at_or_below_it() {
    for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
        let set = select(Some(isa)).unwrap();
        assert_eq!(set.isa_requested, isa);
        for (name, kisa) in kernels_of(&set) {
            assert!(
                kisa <= isa && (isa == Isa::Scalar || kisa >= Isa::Generic),
                "{isa}: {name}"
            );
        }
    }
}

#[test]
fn forcing_an_unavailable_isa_is_an_error() {
    let Some(&missing) = Isa::ALL.iter().find(|i| !i.is_available()) else {
        eprintln!(
            "skip: every ISA is available on this CPU (the error path is unit-tested in isa.rs)"
        );
        return;
    };
    match select(Some(missing)) {
        Err(KernelError::IsaUnavailable {
            isa,
            source_of_request,
        }) => {
            assert_eq!(isa, missing);
            assert_eq!(source_of_request, "explicit");
        }
        other => panic!("expected IsaUnavailable, got {other:?}"),
    }
}

#[test]
fn available_kernels_lists_every_op() {
    let rows = available_kernels();
    for op in ["gemm_u8i8", "gemm_f32", "gemm_f32w8"] {
        let names: Vec<_> = rows.iter().filter(|r| r.0 == op).map(|r| r.1).collect();
        assert!(
            names.iter().any(|n| n.starts_with("scalar_")),
            "{op}: {names:?}"
        );
        assert!(
            names.iter().any(|n| n.starts_with("generic_")),
            "{op}: {names:?}"
        );
    }
    for (_, name, isa, supported) in rows {
        assert!(name.starts_with(isa.name()), "{name}");
        assert_eq!(supported, isa.is_available());
    }
}
