//! The serialized form of a model's constants, whose length is the `size_bytes` a result row reports.
//!
//! Container (little-endian): magic `QHQM`, format version (u32), the strategy name, then one record per
//! tensor: name, dtype tag, rank, dims (u32 each), payload. Quantized layers store int8 weights `[k, n]`,
//! their scales (f32) and zero points (i8), the bias (i32 in accumulator units for static layers, f32
//! otherwise) and, for static layers, the input and output activation parameters. The FP32 baseline is
//! written in the same container, so the size ratio compares like with like.
//!
//! Version 2 (the loadable artifact of [`super::artifact`]) writes the same records, each with its payload
//! length (u64) between the dims and the payload, so that a reader can walk records without knowing how
//! every one was packed; [`read_container`] reads it back.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};

use crate::ir::{Graph, Tensor};

use super::model::QuantizedModel;

const MAGIC: &[u8; 4] = b"QHQM";
const VERSION: u32 = 1;
/// The loadable form: records carry their payload length.
pub(crate) const VERSION_LOADABLE: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum DType {
    F32 = 1,
    I8 = 2,
    U8 = 3,
    I32 = 4,
    I64 = 5,
    /// Bits packed densely; the record name ends in the bit width (see `strategies::bits`).
    Packed = 6,
}

impl DType {
    fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            1 => DType::F32,
            2 => DType::I8,
            3 => DType::U8,
            4 => DType::I32,
            5 => DType::I64,
            6 => DType::Packed,
            _ => return None,
        })
    }
}

pub(crate) struct Writer {
    buf: Vec<u8>,
    /// Records carry their payload length (version 2).
    lengths: bool,
}

impl Writer {
    fn new(strategy: &str) -> Self {
        Self::versioned(strategy, VERSION)
    }

    pub(crate) fn versioned(strategy: &str, version: u32) -> Self {
        let mut w = Writer {
            buf: Vec::new(),
            lengths: version >= VERSION_LOADABLE,
        };
        w.buf.extend_from_slice(MAGIC);
        w.buf.extend_from_slice(&version.to_le_bytes());
        w.string(strategy);
        w
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn string(&mut self, s: &str) {
        self.buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn record(
        &mut self,
        name: &str,
        dtype: DType,
        dims: &[usize],
        payload: impl IntoIterator<Item = u8>,
    ) {
        self.string(name);
        self.buf.push(dtype as u8);
        self.buf.push(dims.len() as u8);
        for &d in dims {
            self.buf.extend_from_slice(&(d as u32).to_le_bytes());
        }
        let at = self.buf.len();
        if self.lengths {
            self.buf.extend_from_slice(&[0; 8]);
        }
        self.buf.extend(payload);
        if self.lengths {
            let len = (self.buf.len() - at - 8) as u64;
            self.buf[at..at + 8].copy_from_slice(&len.to_le_bytes());
        }
    }

    fn f32s(&mut self, name: &str, dims: &[usize], values: &[f32]) {
        self.record(
            name,
            DType::F32,
            dims,
            values.iter().flat_map(|v| v.to_le_bytes()),
        );
    }

    fn tensor(&mut self, name: &str, t: &Tensor) {
        match t {
            Tensor::F32(a) => self.record(
                name,
                DType::F32,
                a.shape(),
                a.iter().flat_map(|v| v.to_le_bytes()),
            ),
            Tensor::I64(a) => self.record(
                name,
                DType::I64,
                a.shape(),
                a.iter().flat_map(|v| v.to_le_bytes()),
            ),
        }
    }
}

/// Serializes the FP32 model's constants.
pub fn serialize_fp32(graph: &Graph) -> Vec<u8> {
    let mut w = Writer::new("fp32");
    for (name, t) in &graph.initializers {
        w.tensor(name, t);
    }
    w.buf
}

/// Serializes a quantized model's constants: int8 weights, quantization parameters, biases, and the
/// float constants its unquantized nodes still read.
pub fn serialize_quantized(model: &QuantizedModel) -> Vec<u8> {
    let mut w = Writer::new(&model.strategy().name());
    write_quantized(&mut w, model);
    w.buf
}

/// The records of [`serialize_quantized`], appended to `w`.
pub(crate) fn write_quantized(w: &mut Writer, model: &QuantizedModel) {
    for l in model.linears() {
        let name = &l.name;
        // The weights as stored: integers (or log codes) packed at the strategy's bit width, or 16-bit floats.
        w.record(
            &format!("{name}.weight_q{}", l.params.bits),
            DType::Packed,
            &[l.k, l.n],
            l.stored.iter().copied(),
        );
        w.f32s(
            &format!("{name}.weight_scale"),
            &[l.params.scales.len()],
            &l.params.scales,
        );
        w.record(
            &format!("{name}.weight_zero_point"),
            DType::I8,
            &[l.params.zero_points.len()],
            l.params.zero_points.iter().map(|&z| z as i8 as u8),
        );
        match l.static_params() {
            Some((input, output, bias_q)) => {
                for (which, p) in [("input", input), ("output", output)] {
                    w.f32s(&format!("{name}.{which}_scale"), &[], &[p.scale]);
                    w.record(
                        &format!("{name}.{which}_zero_point"),
                        DType::U8,
                        &[],
                        [p.zero_point as u8],
                    );
                }
                match (bias_q, &l.bias) {
                    (Some(b), _) => w.record(
                        &format!("{name}.bias_q"),
                        DType::I32,
                        &[b.len()],
                        b.iter().flat_map(|v| v.to_le_bytes()),
                    ),
                    (None, Some(b)) => w.f32s(&format!("{name}.bias"), &[b.len()], b),
                    (None, None) => {}
                }
            }
            _ => {
                if let Some(b) = &l.bias {
                    w.f32s(&format!("{name}.bias"), &[b.len()], b);
                }
            }
        }
    }
    let mut constants: Vec<_> = model.constants.iter().collect();
    constants.sort_by(|a, b| a.0.cmp(b.0));
    for (name, t) in constants {
        w.tensor(name, t);
    }
}

/// One record of a version-2 container.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub dtype: DType,
    pub dims: Vec<usize>,
    pub payload: Vec<u8>,
}

impl Record {
    fn values<const N: usize, T>(
        &self,
        name: &str,
        from: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, String> {
        let count: usize = self.dims.iter().product();
        if self.payload.len() != count * N {
            return Err(format!(
                "record `{name}`: {} payload bytes for dims {:?} of {N}-byte values",
                self.payload.len(),
                self.dims
            ));
        }
        Ok(self
            .payload
            .chunks_exact(N)
            .map(|c| from(c.try_into().expect("N bytes")))
            .collect())
    }

    fn expect(&self, name: &str, dtype: DType) -> Result<(), String> {
        if self.dtype == dtype {
            Ok(())
        } else {
            Err(format!(
                "record `{name}` is {:?}, expected {dtype:?}",
                self.dtype
            ))
        }
    }

    pub fn f32s(&self, name: &str) -> Result<Vec<f32>, String> {
        self.expect(name, DType::F32)?;
        self.values(name, f32::from_le_bytes)
    }

    pub fn i32s(&self, name: &str) -> Result<Vec<i32>, String> {
        self.expect(name, DType::I32)?;
        self.values(name, i32::from_le_bytes)
    }

    pub fn i8s(&self, name: &str) -> Result<Vec<i8>, String> {
        self.expect(name, DType::I8)?;
        self.values(name, i8::from_le_bytes)
    }

    pub fn u8s(&self, name: &str) -> Result<Vec<u8>, String> {
        self.expect(name, DType::U8)?;
        self.values(name, u8::from_le_bytes)
    }

    /// An F32 or I64 record as a tensor.
    pub fn tensor(&self, name: &str) -> Result<Tensor, String> {
        let shape = IxDyn(&self.dims);
        let bad = |e: ndarray::ShapeError| format!("record `{name}`: {e}");
        match self.dtype {
            DType::F32 => Ok(Tensor::F32(
                ArrayD::from_shape_vec(shape, self.values(name, f32::from_le_bytes)?)
                    .map_err(bad)?,
            )),
            DType::I64 => Ok(Tensor::I64(
                ArrayD::from_shape_vec(shape, self.values(name, i64::from_le_bytes)?)
                    .map_err(bad)?,
            )),
            other => Err(format!(
                "record `{name}` is {other:?}, not a float or i64 tensor"
            )),
        }
    }
}

/// A version-2 container: its strategy name and its records by name.
#[derive(Clone, Debug)]
pub(crate) struct Container {
    pub strategy: String,
    pub records: BTreeMap<String, Record>,
}

/// Reads a version-2 container; a version-1 (size-only) container is refused, since its records cannot be
/// walked without knowing how each was packed.
pub(crate) fn read_container(bytes: &[u8]) -> Result<Container, String> {
    struct Cursor<'a> {
        bytes: &'a [u8],
        at: usize,
    }
    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
            let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
            let Some(end) = end else {
                return Err(format!(
                    "truncated at byte {} while reading {what} ({n} bytes wanted, {} left)",
                    self.at,
                    self.bytes.len() - self.at
                ));
            };
            let s = &self.bytes[self.at..end];
            self.at = end;
            Ok(s)
        }
        fn u32(&mut self, what: &str) -> Result<u32, String> {
            Ok(u32::from_le_bytes(
                self.take(4, what)?.try_into().expect("4"),
            ))
        }
        fn string(&mut self, what: &str) -> Result<String, String> {
            let len = self.u32(what)? as usize;
            let raw = self.take(len, what)?;
            String::from_utf8(raw.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
        }
    }
    let mut c = Cursor { bytes, at: 0 };
    if c.take(4, "the magic").ok() != Some(MAGIC.as_slice()) {
        return Err("not a QHQM container (the file does not start with `QHQM`)".into());
    }
    let version = c.u32("the version")?;
    if version != VERSION_LOADABLE {
        return Err(format!(
            "QHQM version {version}: only version {VERSION_LOADABLE} (written by `harness quantize`) is loadable"
        ));
    }
    let strategy = c.string("the strategy name")?;
    let mut records = BTreeMap::new();
    while c.at < bytes.len() {
        let name = c.string("a record name")?;
        let what = format!("record `{name}`");
        let head = c.take(2, &what)?;
        let dtype = DType::from_tag(head[0])
            .ok_or_else(|| format!("{what} has unknown dtype tag {}", head[0]))?;
        let dims = (0..head[1])
            .map(|_| c.u32(&what).map(|d| d as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let len = u64::from_le_bytes(c.take(8, &what)?.try_into().expect("8"));
        let len = usize::try_from(len).map_err(|_| format!("{what} is too long"))?;
        let payload = c.take(len, &what)?.to_vec();
        if records
            .insert(
                name.clone(),
                Record {
                    dtype,
                    dims,
                    payload,
                },
            )
            .is_some()
        {
            return Err(format!("record `{name}` appears twice"));
        }
    }
    Ok(Container { strategy, records })
}
