//! The serialized form of a model's constants, whose length is the `size_bytes` a result row reports.
//!
//! Container (little-endian): magic `QHQM`, format version (u32), the strategy name, then one record per
//! tensor: name, dtype tag, rank, dims (u32 each), payload. Quantized layers store int8 weights `[k, n]`,
//! their scales (f32) and zero points (i8), the bias (i32 in accumulator units for static layers, f32
//! otherwise) and, for static layers, the input and output activation parameters. The FP32 baseline is
//! written in the same container, so the size ratio compares like with like.

use crate::ir::{Graph, Tensor};

use super::model::QuantizedModel;

const MAGIC: &[u8; 4] = b"QHQM";
const VERSION: u32 = 1;

#[derive(Clone, Copy)]
#[repr(u8)]
enum DType {
    F32 = 1,
    I8 = 2,
    U8 = 3,
    I32 = 4,
    I64 = 5,
    /// Bits packed densely; the record name ends in the bit width (see `strategies::bits`).
    Packed = 6,
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn new(strategy: &str) -> Self {
        let mut w = Writer { buf: Vec::new() };
        w.buf.extend_from_slice(MAGIC);
        w.buf.extend_from_slice(&VERSION.to_le_bytes());
        w.string(strategy);
        w
    }

    fn string(&mut self, s: &str) {
        self.buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn record(
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
        self.buf.extend(payload);
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
    w.buf
}
