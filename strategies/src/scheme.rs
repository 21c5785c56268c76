//! Linear quantization schemes: how a float range becomes a scale and a zero point, for weights (`i8`,
//! per tensor or per output channel) and activations (`u8`, per tensor).
//!
//! Rounding follows ONNX `QuantizeLinear`: round half to even, then saturate.

use std::fmt;
use std::str::FromStr;

use ndarray::{Array2, ArrayView2, Axis};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchemeError {
    #[error("unknown scheme `{0}`; expected `symmetric` or `affine`")]
    UnknownScheme(String),
    #[error("unknown granularity `{0}`; expected `tensor` or `channel`")]
    UnknownGranularity(String),
    #[error("non-finite value in weight tensor: cannot choose a scale")]
    NonFinite,
}

/// How a range maps to integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Zero point fixed at the middle of the integer range; scale from the largest magnitude.
    Symmetric,
    /// Scale and zero point fitted to `[min, max]` (the range always includes 0, so 0 is exact).
    Affine,
}

impl Scheme {
    /// The short name used in strategy names and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Symmetric => "sym",
            Scheme::Affine => "affine",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheme {
    type Err = SchemeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "symmetric" | "sym" => Ok(Scheme::Symmetric),
            "affine" | "asymmetric" | "asym" => Ok(Scheme::Affine),
            _ => Err(SchemeError::UnknownScheme(s.to_string())),
        }
    }
}

/// Which elements share one scale and zero point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    PerTensor,
    /// One pair per output channel (a column of the `[k, n]` weight matrix).
    PerChannel,
}

impl Granularity {
    pub fn name(self) -> &'static str {
        match self {
            Granularity::PerTensor => "tensor",
            Granularity::PerChannel => "channel",
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Granularity {
    type Err = SchemeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tensor" | "per-tensor" => Ok(Granularity::PerTensor),
            "channel" | "per-channel" => Ok(Granularity::PerChannel),
            _ => Err(SchemeError::UnknownGranularity(s.to_string())),
        }
    }
}

/// Weight quantization parameters: one entry (per tensor) or one per output channel.
#[derive(Clone, Debug, PartialEq)]
pub struct QParams {
    pub scales: Vec<f32>,
    pub zero_points: Vec<i32>,
}

/// Activation quantization parameters for `u8` values: `x = (q - zero_point) * scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActParams {
    pub scale: f32,
    pub zero_point: i32,
}

/// The smallest scale we hand out: a tensor of zeros still needs a positive, finite scale.
const MIN_SCALE: f32 = f32::MIN_POSITIVE * 1e6;

fn round_half_even(x: f32) -> f32 {
    x.round_ties_even()
}

/// Chooses `i8` weight parameters for `w` (`[k, n]`, output channels along `n`).
///
/// Symmetric uses the restricted range `[-127, 127]` with zero point 0 (so that `-w` quantizes to `-q`, as
/// symmetric back ends expect); affine maps `[min(w, 0), max(w, 0)]` onto `[-128, 127]`.
pub fn weight_params_i8(
    w: ArrayView2<f32>,
    scheme: Scheme,
    granularity: Granularity,
) -> Result<QParams, SchemeError> {
    if w.iter().any(|v| !v.is_finite()) {
        return Err(SchemeError::NonFinite);
    }
    let ranges: Vec<(f32, f32)> = match granularity {
        Granularity::PerTensor => vec![range_of(w.iter())],
        Granularity::PerChannel => w.axis_iter(Axis(1)).map(|c| range_of(c.iter())).collect(),
    };
    let (mut scales, mut zero_points) = (Vec::new(), Vec::new());
    for (lo, hi) in ranges {
        let (s, z) = match scheme {
            Scheme::Symmetric => ((lo.abs().max(hi.abs()) / 127.0).max(MIN_SCALE), 0),
            Scheme::Affine => {
                let s = ((hi - lo) / 255.0).max(MIN_SCALE);
                let z = (-128.0 - round_half_even(lo / s)).clamp(-128.0, 127.0) as i32;
                (s, z)
            }
        };
        scales.push(s);
        zero_points.push(z);
    }
    Ok(QParams {
        scales,
        zero_points,
    })
}

/// `[min(x, 0), max(x, 0)]`: zero must be exactly representable (padding, ReLU outputs).
fn range_of<'a>(values: impl Iterator<Item = &'a f32>) -> (f32, f32) {
    values.fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// Quantizes `w` (`[k, n]`) with `params` (length 1 or `n`).
pub fn quantize_weights_i8(w: ArrayView2<f32>, params: &QParams) -> Array2<i8> {
    let per_channel = params.scales.len() > 1;
    let mut q = Array2::<i8>::zeros(w.raw_dim());
    for ((i, j), &v) in w.indexed_iter() {
        let c = if per_channel { j } else { 0 };
        let r = round_half_even(v / params.scales[c]) + params.zero_points[c] as f32;
        q[[i, j]] = r.clamp(-128.0, 127.0) as i8;
    }
    q
}

/// Chooses `u8` activation parameters for an observed range.
///
/// Affine maps `[min(lo, 0), max(hi, 0)]` onto `[0, 255]`. Symmetric fixes the zero point at 128 and takes the
/// scale from the largest magnitude over `[-127, 127]` (the signed range shifted by the +128 offset that lets a
/// u8 x s8 kernel run symmetric activations).
pub fn activation_params_u8(lo: f32, hi: f32, scheme: Scheme) -> ActParams {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    match scheme {
        Scheme::Symmetric => ActParams {
            scale: (lo.abs().max(hi.abs()) / 127.0).max(MIN_SCALE),
            zero_point: 128,
        },
        Scheme::Affine => {
            let scale = ((hi - lo) / 255.0).max(MIN_SCALE);
            let zero_point = round_half_even(-lo / scale).clamp(0.0, 255.0) as i32;
            ActParams { scale, zero_point }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn dequant(q: &Array2<i8>, p: &QParams) -> Array2<f32> {
        let mut out = Array2::zeros(q.raw_dim());
        for ((i, j), &v) in q.indexed_iter() {
            let c = if p.scales.len() > 1 { j } else { 0 };
            out[[i, j]] = (v as i32 - p.zero_points[c]) as f32 * p.scales[c];
        }
        out
    }

    /// Round-trip error is at most half a step (plus float slack) for every scheme and granularity.
    #[test]
    fn round_trip_within_half_step() {
        let w = array![
            [0.5f32, -2.0, 0.01],
            [-0.25, 1.0, 0.02],
            [0.125, 3.0, -0.03]
        ];
        for scheme in [Scheme::Symmetric, Scheme::Affine] {
            for gran in [Granularity::PerTensor, Granularity::PerChannel] {
                let p = weight_params_i8(w.view(), scheme, gran).unwrap();
                assert_eq!(
                    p.scales.len(),
                    if gran == Granularity::PerTensor { 1 } else { 3 }
                );
                let back = dequant(&quantize_weights_i8(w.view(), &p), &p);
                for ((i, j), &v) in w.indexed_iter() {
                    let s = p.scales[if p.scales.len() > 1 { j } else { 0 }];
                    let err = (back[[i, j]] - v).abs();
                    assert!(
                        err <= 0.5 * s * (1.0 + 1e-5),
                        "{scheme} {gran} [{i},{j}] err {err} step {s}"
                    );
                }
            }
        }
    }

    #[test]
    fn per_channel_is_finer_than_per_tensor_on_a_small_channel() {
        let w = array![[0.01f32, 3.0], [-0.02, -3.0]];
        let pt = weight_params_i8(w.view(), Scheme::Symmetric, Granularity::PerTensor).unwrap();
        let pc = weight_params_i8(w.view(), Scheme::Symmetric, Granularity::PerChannel).unwrap();
        assert!(pc.scales[0] < pt.scales[0] / 100.0);
        let q = quantize_weights_i8(w.view(), &pc);
        assert_eq!(q[[1, 0]], -127);
        assert_eq!(q[[1, 1]], -127);
    }

    #[test]
    fn affine_zero_is_exact_and_extremes_saturate_correctly() {
        let w = array![[-1.0f32, 0.0, 3.0]];
        let p = weight_params_i8(w.view(), Scheme::Affine, Granularity::PerTensor).unwrap();
        let q = quantize_weights_i8(w.view(), &p);
        assert_eq!(q[[0, 0]], -128);
        assert_eq!(q[[0, 2]], 127);
        assert_eq!(q[[0, 1]] as i32, p.zero_points[0]);
    }

    #[test]
    fn activation_params_cover_the_range_and_keep_zero_exact() {
        let a = activation_params_u8(0.0, 6.0, Scheme::Affine);
        assert_eq!(a.zero_point, 0);
        assert!((a.scale - 6.0 / 255.0).abs() < 1e-7);
        let b = activation_params_u8(-1.0, 3.0, Scheme::Affine);
        let zero_back = (b.zero_point as f32 - b.zero_point as f32) * b.scale;
        assert_eq!(zero_back, 0.0);
        assert!((255 - b.zero_point) as f32 * b.scale >= 3.0 - b.scale);
        let s = activation_params_u8(-2.0, 1.0, Scheme::Symmetric);
        assert_eq!(s.zero_point, 128);
        assert!((s.scale - 2.0 / 127.0).abs() < 1e-7);
        let z = activation_params_u8(0.0, 0.0, Scheme::Affine);
        assert!(z.scale > 0.0 && z.scale.is_finite());
    }

    #[test]
    fn non_finite_weights_are_an_error() {
        let w = array![[f32::NAN, 1.0]];
        assert_eq!(
            weight_params_i8(w.view(), Scheme::Affine, Granularity::PerTensor),
            Err(SchemeError::NonFinite)
        );
    }
}
