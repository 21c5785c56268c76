//! Fake quantization with learned step sizes (LSQ, Esser et al. 2019, "Learned Step Size Quantization").
//!
//! One quantizer maps `x` to `x_hat = clamp(round(x / s), -q_n, q_p) * s` (round half to even, as the
//! strategies crate quantizes). In the backward pass:
//! - `x` gets the straight-through gradient: `dx = dx_hat` where `-q_n <= x / s <= q_p`, else 0;
//! - the step gets LSQ's gradient `ds = g * sum(dx_hat * d x_hat / d s)` with `d x_hat / d s = q - x / s`
//!   inside the range and `q` (`-q_n` or `q_p`) where clipped, scaled by `g = 1 / sqrt(N * q_p)`, `N` the
//!   number of values sharing the step (a weight channel's elements; an activation's features per sample).
//!
//! Weights: per output channel, symmetric, `q_n = q_p = 2^(bits-1) - 1` (the strategies crate's restricted
//! symmetric range, zero point 0). Activations at the inputs of Conv / Gemm / MatMul: per tensor, affine `u8`
//! with an integer zero point `z` fixed at calibration (`q_n = z`, `q_p = 255 - z`), so that
//! `clamp(round(x / s) + z, 0, 255)` is exactly the deployed `u8` code. Only the step of an activation is
//! learned; its zero point stays at the calibrated value (0 after a ReLU, where most Conv / Gemm inputs are).

use super::real::Real;

/// How the weight step sizes start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StepInit {
    /// `max|w| / q_p` per channel: what min-max post-training quantization uses.
    #[default]
    MinMax,
    /// `2 * mean|w| / sqrt(q_p)` per channel: LSQ's initialisation.
    Lsq,
}

impl StepInit {
    pub fn name(self) -> &'static str {
        match self {
            StepInit::MinMax => "minmax",
            StepInit::Lsq => "lsq",
        }
    }
}

/// What to fake-quantize and how.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantConfig {
    /// Weight bits, 2..=8 (per-channel symmetric).
    pub weight_bits: u32,
    /// Fake-quantize the inputs of Conv / Gemm / MatMul as `u8` (per-tensor affine).
    pub quantize_activations: bool,
    pub weight_init: StepInit,
    /// Learn the step sizes (LSQ); otherwise they stay at their initial values and only the weights train.
    pub learn_steps: bool,
}

impl Default for QuantConfig {
    fn default() -> Self {
        QuantConfig {
            weight_bits: 8,
            quantize_activations: true,
            weight_init: StepInit::MinMax,
            learn_steps: true,
        }
    }
}

/// `q_p` of symmetric `bits`-bit weights: `2^(bits-1) - 1`.
pub fn weight_qmax(bits: u32) -> i32 {
    (1i32 << (bits - 1)) - 1
}

/// Smallest step a quantizer keeps (a step must stay positive while it is learned).
pub(crate) const MIN_STEP: f64 = 1e-12;

/// `x_hat = clamp(round(x / s), -q_n, q_p) * s`, elementwise.
pub fn fake_quant<T: Real>(x: &[T], s: T, qn: T, qp: T, out: &mut [T]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v / s).round_ties_even().max(-qn).min(qp) * s;
    }
}

/// Backward of [`fake_quant`] for one step: adds the straight-through gradient to `dx` and returns
/// `sum(dy * d x_hat / d s)` (without LSQ's scale `g`).
pub fn fake_quant_backward<T: Real>(x: &[T], s: T, qn: T, qp: T, dy: &[T], dx: &mut [T]) -> T {
    let mut ds = T::ZERO;
    for ((&v, &g), d) in x.iter().zip(dy).zip(dx.iter_mut()) {
        let (pass, dstep) = element_grad(v, s, qn, qp, g);
        *d += pass;
        ds += dstep;
    }
    ds
}

/// One element's `(dx, dy * d x_hat / d s)`.
#[inline]
fn element_grad<T: Real>(v: T, s: T, qn: T, qp: T, g: T) -> (T, T) {
    let r = v / s;
    if r < -qn {
        (T::ZERO, g * -qn)
    } else if r > qp {
        (T::ZERO, g * qp)
    } else {
        (g, g * (r.round_ties_even() - r))
    }
}

/// LSQ's gradient scale `1 / sqrt(n * q_p)`.
pub fn lsq_grad_scale(n: usize, qp: f64) -> f64 {
    1.0 / (n.max(1) as f64 * qp.max(1.0)).sqrt()
}

/// Per-channel symmetric weight quantizer of one parameter.
#[derive(Clone, Debug)]
pub(crate) struct WeightQuant<T> {
    pub param: usize,
    /// The axis of the parameter that holds output channels.
    pub axis: usize,
    pub steps: Vec<T>,
    pub qmax: i32,
}

impl<T: Real> WeightQuant<T> {
    /// Initial steps of `w` along `axis`.
    pub fn new(
        param: usize,
        w: &ndarray::ArrayD<T>,
        axis: usize,
        bits: u32,
        init: StepInit,
    ) -> Self {
        let qmax = weight_qmax(bits);
        let qp = f64::from(qmax);
        let steps = w
            .axis_iter(ndarray::Axis(axis))
            .map(|ch| {
                let n = ch.len().max(1) as f64;
                let s = match init {
                    StepInit::MinMax => ch.iter().fold(0.0f64, |m, v| m.max(v.to_f64().abs())) / qp,
                    StepInit::Lsq => {
                        2.0 * ch.iter().map(|v| v.to_f64().abs()).sum::<f64>() / n / qp.sqrt()
                    }
                };
                T::from_f64(s.max(MIN_STEP))
            })
            .collect();
        WeightQuant {
            param,
            axis,
            steps,
            qmax,
        }
    }

    /// Channel of flat element `i` of a standard-layout tensor of `shape`.
    fn channel_fn(&self, shape: &[usize]) -> impl Fn(usize) -> usize + use<T> {
        let inner: usize = shape[self.axis + 1..].iter().product();
        let dim = shape[self.axis];
        move |i| (i / inner.max(1)) % dim.max(1)
    }

    pub fn apply(&self, w: &ndarray::ArrayD<T>) -> ndarray::ArrayD<T> {
        let w = w.as_standard_layout();
        let src = w.as_slice().expect("standard layout");
        let ch = self.channel_fn(w.shape());
        let q = T::from_f64(f64::from(self.qmax));
        let out: Vec<T> = src
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let s = self.steps[ch(i)];
                (v / s).round_ties_even().max(-q).min(q) * s
            })
            .collect();
        ndarray::ArrayD::from_shape_vec(w.raw_dim(), out).expect("same shape")
    }

    /// Straight-through gradient into `dw` (added) and the LSQ gradient of every step.
    pub fn backward(
        &self,
        w: &ndarray::ArrayD<T>,
        dw_hat: &ndarray::ArrayD<T>,
        dw: &mut ndarray::ArrayD<T>,
    ) -> Vec<T> {
        let w = w.as_standard_layout();
        let dw_hat = dw_hat.as_standard_layout();
        let (src, g) = (
            w.as_slice().expect("standard"),
            dw_hat.as_slice().expect("standard"),
        );
        let ch = self.channel_fn(w.shape());
        let q = T::from_f64(f64::from(self.qmax));
        let mut ds = vec![T::ZERO; self.steps.len()];
        let dws = dw
            .as_slice_mut()
            .expect("gradient arrays are standard layout");
        for (i, ((&v, &gi), d)) in src.iter().zip(g).zip(dws.iter_mut()).enumerate() {
            let c = ch(i);
            let (pass, dstep) = element_grad(v, self.steps[c], q, q, gi);
            *d += pass;
            ds[c] += dstep;
        }
        let per_channel = w.len() / self.steps.len().max(1);
        let scale = T::from_f64(lsq_grad_scale(per_channel, f64::from(self.qmax)));
        ds.iter_mut().for_each(|d| *d *= scale);
        ds
    }
}

/// Per-tensor affine `u8` activation quantizer of one value.
#[derive(Clone, Debug)]
pub(crate) struct ActQuant<T> {
    /// The value slot it quantizes.
    pub slot: usize,
    pub step: T,
    pub zero_point: i32,
}

impl<T: Real> ActQuant<T> {
    /// From a calibrated range, as `strategies::activation_params_u8` (affine) chooses it.
    pub fn from_range(slot: usize, lo: f32, hi: f32) -> Self {
        let p = strategies::activation_params_u8(lo, hi, strategies::Scheme::Affine);
        ActQuant {
            slot,
            step: T::from_f32(p.scale).max(T::from_f64(MIN_STEP)),
            zero_point: p.zero_point,
        }
    }

    pub fn bounds(&self) -> (T, T) {
        (
            T::from_f64(f64::from(self.zero_point)),
            T::from_f64(f64::from(255 - self.zero_point)),
        )
    }

    /// The range the deployed `u8` quantizer needs to reproduce this one: `(-z * s, (255 - z) * s)`.
    pub fn range(&self) -> (f32, f32) {
        let s = self.step.to_f64();
        (
            (-f64::from(self.zero_point) * s) as f32,
            (f64::from(255 - self.zero_point) * s) as f32,
        )
    }

    pub fn apply(&self, x: &ndarray::ArrayD<T>) -> ndarray::ArrayD<T> {
        let (qn, qp) = self.bounds();
        let x = x.as_standard_layout();
        let mut out = ndarray::ArrayD::<T>::zeros(x.raw_dim());
        fake_quant(
            x.as_slice().expect("standard"),
            self.step,
            qn,
            qp,
            out.as_slice_mut().expect("fresh"),
        );
        out
    }

    /// Straight-through gradient into `dx` (added) and the LSQ gradient of the step; `batch` is the number
    /// of samples in `x` (LSQ's `N` is the number of features per sample).
    pub fn backward(
        &self,
        x: &ndarray::ArrayD<T>,
        dx_hat: &ndarray::ArrayD<T>,
        dx: &mut ndarray::ArrayD<T>,
        batch: usize,
    ) -> T {
        let (qn, qp) = self.bounds();
        let x = x.as_standard_layout();
        let g = dx_hat.as_standard_layout();
        let ds = fake_quant_backward(
            x.as_slice().expect("standard"),
            self.step,
            qn,
            qp,
            g.as_slice().expect("standard"),
            dx.as_slice_mut()
                .expect("gradient arrays are standard layout"),
        );
        let features = x.len() / batch.max(1);
        ds * T::from_f64(lsq_grad_scale(features, qp.to_f64()))
    }
}
