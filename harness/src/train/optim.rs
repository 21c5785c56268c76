//! Optimizers (SGD with momentum, Adam) and learning-rate schedules.
//!
//! Weight decay applies to weights (parameters of rank >= 2) only, never to biases or quantizer steps: as an
//! L2 term added to the gradient for SGD, decoupled (AdamW) for Adam. Quantizer steps train at
//! `lr * step_lr_scale`.

use super::graph::{Grads, ParamKind, TrainableGraph};
use super::real::Real;

/// The update rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    Sgd { momentum: f64, nesterov: bool },
    Adam { beta1: f64, beta2: f64, eps: f64 },
}

impl OptimizerKind {
    /// Adam with the usual defaults (0.9, 0.999, 1e-8).
    pub fn adam() -> Self {
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// SGD with momentum 0.9.
    pub fn sgd() -> Self {
        OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: false,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd { .. } => "sgd",
            OptimizerKind::Adam { .. } => "adam",
        }
    }
}

/// How the learning rate moves over the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    Constant,
    /// Cosine decay from `lr` to `lr * final_fraction` over all steps of the run.
    Cosine {
        final_fraction: f64,
    },
}

impl LrSchedule {
    /// The learning rate at `step` of `total` (0-based).
    pub fn at(&self, lr: f64, step: usize, total: usize) -> f64 {
        match *self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine { final_fraction } => {
                let t = if total <= 1 {
                    0.0
                } else {
                    step as f64 / (total - 1) as f64
                };
                let lo = lr * final_fraction;
                lo + 0.5 * (lr - lo) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub weight_decay: f64,
    pub schedule: LrSchedule,
    /// Learning-rate multiplier of quantizer step sizes.
    pub step_lr_scale: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::adam(),
            lr: 1e-3,
            weight_decay: 0.0,
            schedule: LrSchedule::Constant,
            step_lr_scale: 1.0,
        }
    }
}

/// Optimizer state: one or two moment buffers per trainable tensor.
#[derive(Clone, Debug)]
pub struct Optimizer<T> {
    config: OptimizerConfig,
    first: Vec<Vec<T>>,
    second: Vec<Vec<T>>,
    steps: u64,
}

impl<T: Real> Optimizer<T> {
    pub fn new(config: OptimizerConfig) -> Self {
        Optimizer {
            config,
            first: Vec::new(),
            second: Vec::new(),
            steps: 0,
        }
    }

    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// One update of every trainable tensor of `model` at learning rate `lr`.
    pub fn step(&mut self, model: &mut TrainableGraph<T>, grads: &Grads<T>, lr: f64) {
        self.steps += 1;
        let cfg = self.config;
        let t = self.steps as f64;
        let (first, second) = (&mut self.first, &mut self.second);
        model.apply_update(grads, |i, w, g, kind| {
            if first.len() <= i {
                first.resize(i + 1, Vec::new());
                second.resize(i + 1, Vec::new());
            }
            if first[i].len() != w.len() {
                first[i] = vec![T::ZERO; w.len()];
                second[i] = vec![T::ZERO; w.len()];
            }
            let lr = match kind {
                ParamKind::Step => lr * cfg.step_lr_scale,
                _ => lr,
            };
            let wd = if kind == ParamKind::Weight {
                cfg.weight_decay
            } else {
                0.0
            };
            match cfg.kind {
                OptimizerKind::Sgd { momentum, nesterov } => {
                    let (mu, lr_t, wd_t) =
                        (T::from_f64(momentum), T::from_f64(lr), T::from_f64(wd));
                    for ((w, &g), v) in w.iter_mut().zip(g).zip(first[i].iter_mut()) {
                        let g = g + wd_t * *w;
                        *v = mu * *v + g;
                        let d = if nesterov { g + mu * *v } else { *v };
                        *w -= lr_t * d;
                    }
                }
                OptimizerKind::Adam { beta1, beta2, eps } => {
                    let c1 = 1.0 / (1.0 - beta1.powf(t));
                    let c2 = 1.0 / (1.0 - beta2.powf(t));
                    let (b1, b2) = (T::from_f64(beta1), T::from_f64(beta2));
                    let (one_b1, one_b2) = (T::from_f64(1.0 - beta1), T::from_f64(1.0 - beta2));
                    let (c1, c2, eps) = (T::from_f64(c1), T::from_f64(c2), T::from_f64(eps));
                    let (lr_t, decay) = (T::from_f64(lr), T::from_f64(1.0 - lr * wd));
                    for (((w, &g), m), v) in w
                        .iter_mut()
                        .zip(g)
                        .zip(first[i].iter_mut())
                        .zip(second[i].iter_mut())
                    {
                        *m = b1 * *m + one_b1 * g;
                        *v = b2 * *v + one_b2 * g * g;
                        *w = *w * decay - lr_t * (*m * c1) / ((*v * c2).sqrt() + eps);
                    }
                }
            }
        });
    }
}
