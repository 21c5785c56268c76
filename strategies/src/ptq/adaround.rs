//! AdaRound (Nagel, Amjad, van Baalen, Louizos and Blankevoort 2020, "Up or Down? Adaptive Rounding for
//! Post-Training Quantization"), for one `[k, n]` weight with fixed quantization parameters.
//!
//! Each weight is `floor(w / s)` or one more; which one is learned. The soft weight is
//!
//! `W~ = s * (clamp(floor(W / s) + h(V) + z, qmin, qmax) - z)`, `h(V) = clamp(sigmoid(V) (zeta - gamma) + gamma, 0, 1)`
//!
//! (the rectified sigmoid, `zeta = 1.1`, `gamma = -0.1`), and `V` minimizes, over mini-batches `X_b` of the
//! calibration rows,
//!
//! `||X_b W - X_b W~||^2 / (|b| * e_rtn) + lambda * mean(1 - |2 h(V) - 1|^beta)`
//!
//! where `e_rtn` is round-to-nearest's mean squared output error per row on the calibration rows, so the
//! reconstruction term reads 1 at the round-to-nearest point whatever the data's scale (the paper's `lambda`
//! is tied to its unnormalized loss; this one is not). The regularizer is off for the first `warmup` fraction
//! of the iterations, then `beta` decays linearly from `beta_start` to `beta_end` (the paper's schedule, as
//! BRECQ's `LinearTempDecay` implements it). `V` starts where `h(V)` reproduces `W` exactly (`h = frac(W / s)`)
//! and is trained by Adam written out here; afterwards each weight rounds up where `h(V) >= 0.5` (`V >= 0`).
//!
//! Weights with `w / s` an exact integer are already exact and are not trained (rounding them up would leave
//! the floor/ceil pair). Every result is `floor(w / s) + z` or `ceil(w / s) + z`, clamped to the integer range.
//!
//! The objective is the layer's own output on float inputs (the paper's layer-wise variant); the caller picks
//! `X` (e.g. [`super::RowReservoir`] rows of the float model's layer input).

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, Axis};

use super::rng::SplitMix64;
use super::{
    PtqError, QuantizedWeights, check_finite, check_params, quantize_value, shape_mismatch,
};
use crate::scheme::QParams;

const OP: &str = "adaround";
/// Rectified-sigmoid stretch (the paper's `zeta` and `gamma`).
const ZETA: f32 = 1.1;
const GAMMA: f32 = -0.1;

/// AdaRound's optimization settings.
///
/// [`Default`]: 500 Adam steps of 128 rows, step size 0.2, `lambda = 10`, `beta` 20 -> 2 after a 20 % warm-up,
/// seed 0. The step size and `lambda` were chosen by a sweep on synthetic 4-bit layers (32x16 to 288x64,
/// correlated inputs, held-out rows): `lambda` 0.01 .. 0.1 gave 0.9 .. 1.0x round-to-nearest's output error,
/// 3 .. 30 gave 0.46 .. 0.53x, step sizes 0.05 .. 0.5 within a few percent of each other. (The paper's
/// `lambda = 0.01` weighs a regularizer *summed* over weights against an unnormalized loss; here the
/// regularizer is a mean and the loss is relative to round-to-nearest's, so the values do not transfer.) The
/// work per step is two `[batch_rows, k] x [k, n]` GEMMs: measured 0.3 s for a 288x64 layer and 6 to 7.5 s
/// for 3136x128 (wall time on this 2-core machine while other builds ran; about 4.7 s of CPU time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaRoundConfig {
    /// Adam steps.
    pub iterations: usize,
    /// Calibration rows per step (mini-batches of a shuffled order; all rows when there are fewer).
    pub batch_rows: usize,
    /// Adam's step size on `V`.
    pub learning_rate: f32,
    /// Weight of the rounding regularizer (`lambda`).
    pub reg_weight: f32,
    /// Regularizer exponent at the end of the warm-up and at the last iteration.
    pub beta_start: f32,
    pub beta_end: f32,
    /// Fraction of the iterations without the regularizer.
    pub warmup: f32,
    /// Seed of the mini-batch order.
    pub seed: u64,
}

impl Default for AdaRoundConfig {
    fn default() -> Self {
        AdaRoundConfig {
            iterations: 500,
            batch_rows: 128,
            learning_rate: 0.2,
            reg_weight: 10.0,
            beta_start: 20.0,
            beta_end: 2.0,
            warmup: 0.2,
            seed: 0,
        }
    }
}

impl AdaRoundConfig {
    fn validate(&self) -> Result<(), PtqError> {
        let bad = |name: &'static str, value: f64, expected: &'static str| {
            Err(PtqError::InvalidParameter {
                op: OP,
                name,
                value,
                expected,
            })
        };
        if self.batch_rows == 0 {
            return bad("batch_rows", 0.0, ">= 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(
                "learning_rate",
                self.learning_rate.into(),
                "a finite value > 0",
            );
        }
        if !(self.reg_weight.is_finite() && self.reg_weight >= 0.0) {
            return bad("reg_weight", self.reg_weight.into(), "a finite value >= 0");
        }
        for (name, beta) in [("beta_start", self.beta_start), ("beta_end", self.beta_end)] {
            if !(beta.is_finite() && beta >= 1.0) {
                return bad(name, beta.into(), "a finite value >= 1");
            }
        }
        if !(0.0..=1.0).contains(&self.warmup) {
            return bad("warmup", self.warmup.into(), "a fraction in [0, 1]");
        }
        Ok(())
    }

    /// The regularizer exponent at iteration `t`, or `None` during the warm-up.
    fn beta(&self, t: usize) -> Option<f32> {
        let start = (self.warmup as f64 * self.iterations as f64) as usize;
        if t < start {
            return None;
        }
        let rel = (t - start) as f32 / (self.iterations - start).max(1) as f32;
        Some(self.beta_end + (self.beta_start - self.beta_end) * (1.0 - rel).max(0.0))
    }
}

/// Learns the rounding of `w` (`[k, n]`) on the grid of `params` (e.g. [`crate::weight_params`]'s min-max
/// parameters, any granularity) from calibration rows `x` (`[rows, k]`).
///
/// # Errors
/// Shape mismatches (`x` against `w`, `params` against `w`), non-finite values, an invalid configuration,
/// no calibration rows.
pub fn adaround(
    w: ArrayView2<f32>,
    x: ArrayView2<f32>,
    params: &QParams,
    config: &AdaRoundConfig,
) -> Result<QuantizedWeights, PtqError> {
    let (k, n) = w.dim();
    if x.ncols() != k {
        return Err(shape_mismatch(OP, "x", x.shape(), "w", w.shape()));
    }
    check_params(w, params)?;
    config.validate()?;
    check_finite(OP, "w", w)?;
    check_finite(OP, "x", x)?;
    let rows = x.nrows();
    if rows == 0 {
        return Err(PtqError::NoSamples { op: OP });
    }
    let (qmin, qmax) = params.qrange()?;
    let (qmin_f, qmax_f) = (qmin as f32, qmax as f32);

    // Per element (row-major `[k, n]`): the weight, its scale and zero point, floor(w / s), and whether it is
    // trained.
    let wv: Vec<f32> = w.iter().copied().collect();
    let elems: Vec<Elem> = w
        .indexed_iter()
        .map(|((i, j), &value)| {
            let c = params.index(i, j, n);
            let (scale, zero) = (params.scales[c], params.zero_points[c] as f32);
            let ratio = value / scale;
            let base = ratio.floor();
            Elem {
                scale,
                zero,
                base,
                trained: ratio != base,
            }
        })
        .collect();
    // h(V) = frac(w / s) at the start (frac is in (0, 1) where trained, so the logit is finite).
    let mut v: Vec<f32> = elems
        .iter()
        .zip(&wv)
        .map(|(e, &value)| {
            let p = ((value / e.scale - e.base - GAMMA) / (ZETA - GAMMA)).clamp(1e-6, 1.0 - 1e-6);
            (p / (1.0 - p)).ln()
        })
        .collect();

    // Round-to-nearest's output error: the reconstruction term's unit.
    let rtn_delta = Array2::from_shape_vec(
        (k, n),
        elems
            .iter()
            .zip(&wv)
            .map(|(e, &value)| {
                let q = quantize_value(value, e.scale, e.zero as i32, qmin, qmax);
                (q as f32 - e.zero) * e.scale - value
            })
            .collect(),
    )
    .expect("k * n elements");
    let e_rtn = mean_sq_rows(x, rtn_delta.view());
    let any_trained = elems.iter().any(|e| e.trained);
    if e_rtn > 0.0 && any_trained && config.iterations > 0 {
        let batch = config.batch_rows.min(rows);
        let mut order: Vec<usize> = (0..rows).collect();
        let mut rng = SplitMix64::new(config.seed);
        rng.shuffle(&mut order);
        let mut cursor = 0;
        let mut xb = Array2::<f32>::zeros((batch, k));
        let mut delta = Array2::<f32>::zeros((k, n));
        let mut err = Array2::<f32>::zeros((batch, n));
        let mut grad = Array2::<f32>::zeros((k, n));
        let (mut m, mut s2) = (vec![0.0f32; k * n], vec![0.0f32; k * n]);
        // sigmoid(V) of the current step, shared by the forward pass and the gradient.
        let mut sig = vec![0.0f32; k * n];
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let reg_scale = config.reg_weight / (k * n) as f32;
        let g_scale = (2.0 / (batch as f64 * e_rtn)) as f32;
        for t in 0..config.iterations {
            // Next mini-batch of a shuffled order; reshuffle when it runs out.
            for mut dst in xb.axis_iter_mut(Axis(0)) {
                if cursor == rows {
                    rng.shuffle(&mut order);
                    cursor = 0;
                }
                dst.assign(&x.row(order[cursor]));
                cursor += 1;
            }
            // delta = W~(V) - W.
            let d = delta.as_slice_mut().expect("standard layout");
            for ((((d, e), &vv), &value), sg) in
                d.iter_mut().zip(&elems).zip(&v).zip(&wv).zip(&mut sig)
            {
                *sg = sigmoid(vv);
                let h = (*sg * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0);
                *d = e.scale * ((e.base + h + e.zero).clamp(qmin_f, qmax_f) - e.zero) - value;
            }
            general_mat_mul(1.0, &xb, &delta, 0.0, &mut err);
            // d(rec)/dW~ = 2 X_b^T err / (|b| e_rtn).
            general_mat_mul(g_scale, &xb.t(), &err, 0.0, &mut grad);
            // The regularizer's factor 2 beta lambda / (k n), or none during the warm-up.
            let reg = config.beta(t).map(|beta| (beta, 2.0 * beta * reg_scale));
            // Adam with the bias corrections folded into the step size (Kingma and Ba 2015, section 2).
            let step = t as i32 + 1;
            let lr_t = config.learning_rate * (1.0 - b2.powi(step)).sqrt() / (1.0 - b1.powi(step));
            // dL/dV into `grad`, then a branch-free Adam pass the compiler vectorizes.
            let g = grad.as_slice_mut().expect("standard layout");
            for ((g, &sg), e) in g.iter_mut().zip(&sig).zip(&elems) {
                let raw = sg * (ZETA - GAMMA) + GAMMA;
                // dh/dV is zero where the rectification clips (most weights, once training has settled: the
                // regularizer's power is skipped for them) and for untrained weights (whose V never moves).
                if !(e.trained && raw > 0.0 && raw < 1.0) {
                    *g = 0.0;
                    continue;
                }
                let dh = sg * (1.0 - sg) * (ZETA - GAMMA);
                // dW~/dh = s, zero where the integer range clips.
                let pre = e.base + raw + e.zero;
                let dw = if pre > qmin_f && pre < qmax_f {
                    e.scale
                } else {
                    0.0
                };
                let mut g_h = *g * dw;
                if let Some((beta, factor)) = reg {
                    // d/dh (1 - |2h - 1|^beta) = -2 beta |2h - 1|^(beta - 1) sign(2h - 1).
                    let u = 2.0 * raw - 1.0;
                    g_h -= factor * u.abs().powf(beta - 1.0) * u.signum();
                }
                *g = g_h * dh;
            }
            for (((vv, mm), ss), &gv) in v.iter_mut().zip(&mut m).zip(&mut s2).zip(&*g) {
                *mm = b1 * *mm + (1.0 - b1) * gv;
                *ss = b2 * *ss + (1.0 - b2) * gv * gv;
                *vv -= lr_t * *mm / (ss.sqrt() + eps);
            }
        }
    }

    let values = elems
        .iter()
        .zip(&v)
        .map(|(e, &vv)| {
            let up = if e.trained && vv >= 0.0 { 1.0 } else { 0.0 };
            (e.base + up + e.zero).clamp(qmin_f, qmax_f) as i8
        })
        .collect();
    Ok(QuantizedWeights {
        values: Array2::from_shape_vec((k, n), values).expect("k * n elements"),
        params: params.clone(),
    })
}

/// The fixed quantities of one weight.
struct Elem {
    scale: f32,
    zero: f32,
    /// `floor(w / scale)`.
    base: f32,
    /// `w / scale` is not an integer: the rounding is learned.
    trained: bool,
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// `||x d||_F^2 / rows`, in f64, over row chunks so memory stays bounded.
fn mean_sq_rows(x: ArrayView2<f32>, d: ArrayView2<f32>) -> f64 {
    const CHUNK: usize = 1024;
    let mut total = 0.0f64;
    for chunk in x.axis_chunks_iter(Axis(0), CHUNK) {
        let e = chunk.dot(&d);
        total += e.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
    }
    total / x.nrows() as f64
}
