//! What `harness bench` can time: one [`Dtype`] per GEMM flavour, each backed by one kernel table of the
//! registry. A dtype plugs in with one arm of [`family`] (its registry table, its field of
//! [`KernelSet`], and a `prepare` function that builds seeded inputs and packs the weights) plus its
//! arithmetic in [`Dtype::arith`]. Dtypes whose op has no kernels in this build are refused with exit code 2.
//!
//! Weights are packed once when the workload is built (packing is not timed); inputs come from the kernels
//! crate's seeded generator, so a run is reproducible. Every run overwrites the same output buffer (hot
//! caches, as a layer that runs repeatedly sees them).

use std::hint::black_box;

use kernels::formats::{bf16, f16};
use kernels::registry::{self, KernelSet};
use kernels::testing::Rng;
use kernels::{
    GemmBf16, GemmF16W, GemmF32, GemmF32DynI8, GemmF32W8, GemmU8I8, GemmW4, Isa, Kernel,
};

use super::Shape;
use super::peaks::Arith;
use crate::error::Error;

/// The GEMM flavours, by the name `--dtype` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// u8 activations x s8 weights, i32 accumulation (`GemmU8I8`).
    Int8,
    /// 4-bit weights in groups of [`W4_GROUP`] rows (symmetric), activations quantized to int8 per row at
    /// run time, integer dot products (`GemmW4::gemm_dyn_i8`; ONNX Runtime's MatMulNBits accuracy level 4).
    Int4,
    /// The same 4-bit weights with f32 activations and f32 arithmetic (`GemmW4::gemm`).
    Int4F32,
    /// bf16 activations and weights, f32 accumulation (`GemmBf16`).
    Bf16,
    /// f32 activations x f16 weights widened in registers (`GemmF16W`).
    F16,
    /// f32 everywhere (`GemmF32`).
    F32,
    /// f32 activations x int8 weights converted on the fly (`GemmF32W8`).
    F32W8,
    /// f32 activations quantized to u8 at run time (per tensor), fused with the int8 GEMM, f32 out
    /// (`GemmF32DynI8`; ONNX Runtime's DynamicQuantizeLinear + MatMulInteger).
    DynInt8,
}

impl Dtype {
    pub const ALL: [Dtype; 8] = [
        Dtype::Int8,
        Dtype::Int4,
        Dtype::Int4F32,
        Dtype::Bf16,
        Dtype::F16,
        Dtype::F32,
        Dtype::F32W8,
        Dtype::DynInt8,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dtype::Int8 => "int8",
            Dtype::Int4 => "int4",
            Dtype::Int4F32 => "int4f32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
            Dtype::F32 => "f32",
            Dtype::F32W8 => "f32w8",
            Dtype::DynInt8 => "dynint8",
        }
    }

    /// The arithmetic of the inner loop, which picks the peak (see [`super::peaks`]).
    pub fn arith(self) -> Arith {
        match self {
            Dtype::Int8 | Dtype::DynInt8 | Dtype::Int4 => Arith::Int8,
            Dtype::F32 | Dtype::F32W8 | Dtype::F16 | Dtype::Int4F32 => Arith::F32,
            Dtype::Bf16 => Arith::Bf16,
        }
    }

    pub fn parse(s: &str) -> Result<Dtype, Error> {
        let t = s.trim();
        Dtype::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "unknown --dtype `{s}`; valid: {}",
                    Dtype::ALL.map(Dtype::name).join(", ")
                ))
            })
    }

    /// Whether this build registers kernels for the dtype's op.
    pub fn is_built(self) -> bool {
        family(self).is_some()
    }

    /// The dtype's kernel family, or a usage error naming the dtypes this build has.
    pub(crate) fn family(self) -> Result<Box<dyn AnyFamily>, Error> {
        family(self).ok_or_else(|| {
            let built: Vec<_> = Dtype::ALL
                .into_iter()
                .filter(|d| d.is_built())
                .map(Dtype::name)
                .collect();
            Error::Usage(format!(
                "--dtype {}: no kernels for this op are registered in this build; built: {}",
                self.name(),
                built.join(", ")
            ))
        })
    }
}

/// How the kernel is chosen: by the one dispatch point ([`kernels::select`]), or by name (`--kernel`).
#[derive(Clone, Copy)]
pub enum Pick<'a> {
    Dispatch(&'a KernelSet),
    Named(&'a str),
}

/// A prepared case: packed weights and inputs, and the closure that runs the kernel once.
pub struct Workload {
    pub kernel: &'static str,
    pub isa: Isa,
    run: Box<dyn FnMut() + Send>,
}

impl Workload {
    fn new<K: Kernel + ?Sized>(kernel: &K, run: impl FnMut() + Send + 'static) -> Workload {
        Workload {
            kernel: kernel.name(),
            isa: kernel.isa(),
            run: Box::new(run),
        }
    }

    /// Runs the kernel once.
    pub fn run(&mut self) {
        (self.run)()
    }
}

/// One dtype's kernels, type-erased so that [`family`] can return any of them.
pub(crate) trait AnyFamily {
    /// `(name, isa)` of every registered kernel, lowest ISA first.
    fn kernels(&self) -> Vec<(&'static str, Isa)>;
    /// The kernel `pick` designates: `(name, isa)`, or a usage error.
    fn choose(&self, dtype: Dtype, pick: Pick) -> Result<(&'static str, Isa), Error>;
    /// Builds the workload (seeded inputs, packed weights) for `shape`.
    fn workload(
        &self,
        dtype: Dtype,
        pick: Pick,
        shape: Shape,
        seed: u64,
    ) -> Result<Workload, Error>;
}

struct Family<K: ?Sized + 'static> {
    table: fn() -> &'static [&'static K],
    dispatched: fn(&KernelSet) -> &'static K,
    prepare: fn(&'static K, Shape, &mut Rng) -> Workload,
}

impl<K: Kernel + ?Sized + 'static> Family<K> {
    fn pick(&self, dtype: Dtype, pick: Pick) -> Result<&'static K, Error> {
        match pick {
            Pick::Dispatch(set) => Ok((self.dispatched)(set)),
            Pick::Named(name) => {
                let table = (self.table)();
                let k = table
                    .iter()
                    .copied()
                    .find(|k| k.name() == name.trim())
                    .ok_or_else(|| {
                        let names: Vec<_> = table.iter().map(|k| k.name()).collect();
                        Error::Usage(format!(
                            "--kernel {name}: no such kernel for --dtype {}; registered: {}",
                            dtype.name(),
                            names.join(", ")
                        ))
                    })?;
                if !k.isa().is_available() {
                    return Err(Error::Usage(format!(
                        "--kernel {name} needs ISA `{}`, which this CPU ({}) lacks",
                        k.isa(),
                        kernels::isa::cpu_model()
                    )));
                }
                Ok(k)
            }
        }
    }
}

impl<K: Kernel + ?Sized + 'static> AnyFamily for Family<K> {
    fn kernels(&self) -> Vec<(&'static str, Isa)> {
        (self.table)().iter().map(|k| (k.name(), k.isa())).collect()
    }

    fn choose(&self, dtype: Dtype, pick: Pick) -> Result<(&'static str, Isa), Error> {
        self.pick(dtype, pick).map(|k| (k.name(), k.isa()))
    }

    fn workload(
        &self,
        dtype: Dtype,
        pick: Pick,
        shape: Shape,
        seed: u64,
    ) -> Result<Workload, Error> {
        let k = self.pick(dtype, pick)?;
        Ok((self.prepare)(k, shape, &mut Rng::new(seed)))
    }
}

/// THE table of dtypes: one arm each. `None` = no kernels for that op in this build.
fn family(dtype: Dtype) -> Option<Box<dyn AnyFamily>> {
    match dtype {
        Dtype::Int8 => Some(Box::new(Family::<dyn GemmU8I8> {
            table: registry::gemm_u8i8_kernels,
            dispatched: |set| set.gemm_u8i8,
            prepare: prepare_int8,
        })),
        Dtype::F32 => Some(Box::new(Family::<dyn GemmF32> {
            table: registry::gemm_f32_kernels,
            dispatched: |set| set.gemm_f32,
            prepare: prepare_f32,
        })),
        Dtype::F32W8 => Some(Box::new(Family::<dyn GemmF32W8> {
            table: registry::gemm_f32w8_kernels,
            dispatched: |set| set.gemm_f32_w8,
            prepare: prepare_f32w8,
        })),
        Dtype::Bf16 => Some(Box::new(Family::<dyn GemmBf16> {
            table: registry::gemm_bf16_kernels,
            dispatched: |set| set.gemm_bf16,
            prepare: prepare_bf16,
        })),
        Dtype::F16 => Some(Box::new(Family::<dyn GemmF16W> {
            table: registry::gemm_f16w_kernels,
            dispatched: |set| set.gemm_f16w,
            prepare: prepare_f16,
        })),
        Dtype::Int4 => Some(Box::new(Family::<dyn GemmW4> {
            table: registry::gemm_w4_kernels,
            dispatched: |set| set.gemm_w4,
            prepare: prepare_int4,
        })),
        Dtype::Int4F32 => Some(Box::new(Family::<dyn GemmW4> {
            table: registry::gemm_w4_kernels,
            dispatched: |set| set.gemm_w4,
            prepare: prepare_int4_f32,
        })),
        Dtype::DynInt8 => Some(Box::new(Family::<dyn GemmF32DynI8> {
            table: registry::gemm_f32_dyn_i8_kernels,
            dispatched: |set| set.gemm_f32_dyn_i8,
            prepare: prepare_dynint8,
        })),
    }
}

fn prepare_int8(k: &'static dyn GemmU8I8, s: Shape, rng: &mut Rng) -> Workload {
    let a = rng.u8s(s.m * s.k);
    let b = k.pack_b(&rng.i8s(s.k * s.n), s.k, s.n);
    let mut c = vec![0i32; s.m * s.n];
    Workload::new(k, move || {
        k.gemm(s.m, &a, s.k, &b, &mut c, s.n);
        black_box(&mut c);
    })
}

fn prepare_f32(k: &'static dyn GemmF32, s: Shape, rng: &mut Rng) -> Workload {
    let a = rng.f32s(s.m * s.k);
    let b = k.pack_b(&rng.f32s(s.k * s.n), s.k, s.n);
    let mut c = vec![0f32; s.m * s.n];
    Workload::new(k, move || {
        k.gemm(s.m, &a, s.k, &b, &mut c, s.n);
        black_box(&mut c);
    })
}

fn prepare_f32w8(k: &'static dyn GemmF32W8, s: Shape, rng: &mut Rng) -> Workload {
    let a = rng.f32s(s.m * s.k);
    let b = k.pack_b(&rng.i8s(s.k * s.n), s.k, s.n);
    // Per-channel parameters, as a per-channel weight-only layer has them.
    let scales: Vec<f32> = (0..s.n)
        .map(|_| 0.001 + rng.f32_unit().abs() * 0.01)
        .collect();
    let zero_points: Vec<i32> = (0..s.n).map(|j| (j % 7) as i32 - 3).collect();
    let mut c = vec![0f32; s.m * s.n];
    Workload::new(k, move || {
        k.gemm(s.m, &a, s.k, &b, &scales, &zero_points, &mut c, s.n);
        black_box(&mut c);
    })
}

fn prepare_dynint8(k: &'static dyn GemmF32DynI8, s: Shape, rng: &mut Rng) -> Workload {
    let a = rng.f32s(s.m * s.k);
    let b = k.pack_b(&rng.i8s(s.k * s.n), s.k, s.n);
    // Per-channel symmetric weights, no bias, no ReLU: the bare fused path.
    let scales: Vec<f32> = (0..s.n)
        .map(|_| 0.001 + rng.f32_unit().abs() * 0.01)
        .collect();
    let zero_points = vec![0i32; s.n];
    let mut c = vec![0f32; s.m * s.n];
    Workload::new(k, move || {
        black_box(k.gemm(
            s.m,
            &a,
            s.k,
            &b,
            &scales,
            &zero_points,
            None,
            false,
            &mut c,
            s.n,
        ));
        black_box(&mut c);
    })
}

fn prepare_bf16(k: &'static dyn GemmBf16, s: Shape, rng: &mut Rng) -> Workload {
    // Activations already representable in bf16, as the output of a bf16 layer is.
    let a: Vec<f32> = rng
        .f32s(s.m * s.k)
        .into_iter()
        .map(bf16::round_f32)
        .collect();
    let b = k.pack_b(&rng.f32s(s.k * s.n), s.k, s.n);
    let mut c = vec![0f32; s.m * s.n];
    Workload::new(k, move || {
        k.gemm(s.m, &a, s.k, &b, &mut c, s.n);
        black_box(&mut c);
    })
}

fn prepare_f16(k: &'static dyn GemmF16W, s: Shape, rng: &mut Rng) -> Workload {
    let a = rng.f32s(s.m * s.k);
    let b = k.pack_b(&f16::from_f32_slice(&rng.f32s(s.k * s.n)), s.k, s.n);
    let mut c = vec![0f32; s.m * s.n];
    Workload::new(k, move || {
        k.gemm(s.m, &a, s.k, &b, &mut c, s.n);
        black_box(&mut c);
    })
}

/// Rows of `k` per int4 scale: 32, as ONNX Runtime's MatMulNBits block in `scripts/peer_ort.py`.
pub const W4_GROUP: usize = 32;

/// Seeded f32 activations and symmetric int4 weights (zero point 8) packed for `k`.
fn w4_inputs(k: &'static dyn GemmW4, s: Shape, rng: &mut Rng) -> (Vec<f32>, kernels::PackedW4) {
    let a = rng.f32s(s.m * s.k);
    let q: Vec<u8> = (0..s.k * s.n).map(|_| rng.below(16) as u8).collect();
    let groups = s.k.div_ceil(W4_GROUP) * s.n;
    let scales: Vec<f32> = (0..groups)
        .map(|_| 0.001 + rng.f32_unit().abs() * 0.01)
        .collect();
    let b = k.pack_b(&q, s.k, s.n, W4_GROUP, &scales, &vec![8u8; groups]);
    (a, b)
}

fn prepare_int4(k: &'static dyn GemmW4, s: Shape, rng: &mut Rng) -> Workload {
    let (a, b) = w4_inputs(k, s, rng);
    let mut c = vec![0f32; s.m * s.n];
    Workload::new(k, move || {
        k.gemm_dyn_i8(s.m, &a, s.k, &b, &mut c, s.n);
        black_box(&mut c);
    })
}

fn prepare_int4_f32(k: &'static dyn GemmW4, s: Shape, rng: &mut Rng) -> Workload {
    let (a, b) = w4_inputs(k, s, rng);
    let mut c = vec![0f32; s.m * s.n];
    Workload::new(k, move || {
        k.gemm(s.m, &a, s.k, &b, &mut c, s.n);
        black_box(&mut c);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in Dtype::ALL {
            assert_eq!(Dtype::parse(d.name()).unwrap(), d);
            assert_eq!(Dtype::parse(&d.name().to_uppercase()).unwrap(), d);
        }
        assert!(Dtype::parse("int9").is_err());
    }

    #[test]
    fn built_dtypes_pick_by_dispatch_and_by_name() {
        let set = kernels::select(Some(Isa::Generic)).unwrap();
        for d in Dtype::ALL.into_iter().filter(|d| d.is_built()) {
            let fam = d.family().unwrap();
            let (name, isa) = fam.choose(d, Pick::Dispatch(&set)).unwrap();
            assert_eq!(isa, Isa::Generic, "{name}");
            assert_eq!(fam.choose(d, Pick::Named(name)).unwrap().0, name);
            assert!(fam.choose(d, Pick::Named("nope")).is_err());
            let mut w = fam
                .workload(d, Pick::Dispatch(&set), Shape { m: 3, k: 5, n: 7 }, 1)
                .unwrap();
            w.run();
        }
        assert!(Dtype::Int8.is_built() && Dtype::F32.is_built());
    }
}
