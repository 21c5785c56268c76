//! Data in memory ([`Dataset`]), the mini-batch training loop ([`train`]) and top-1 evaluation ([`top1`]).
//!
//! Batches are drawn from one `StdRng` seeded with [`TrainConfig::seed`], reshuffled every epoch; the last
//! partial batch of an epoch is kept. Parallelism is inside the ops (per image on the rayon pool).

use std::time::Instant;

use ndarray::{ArrayD, Axis, IxDyn};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::TrainError;
use super::graph::TrainableGraph;
use super::ops;
use super::optim::{Optimizer, OptimizerConfig};
use super::real::Real;
use crate::data::{Normalize, RawData};

/// Labelled samples in memory: `images` is `[n, sample_shape...]`, normalised; labels are class indices.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub images: ArrayD<f32>,
    pub labels: Vec<usize>,
}

impl Dataset {
    /// Reshapes each row of `raw` to `sample_shape` (e.g. `[1, 28, 28]`) and normalises it.
    pub fn from_raw(
        raw: &RawData,
        sample_shape: &[usize],
        normalize: &Normalize,
    ) -> Result<Self, TrainError> {
        let per: usize = sample_shape.iter().product();
        if per != raw.features_per_sample() {
            return Err(TrainError::Data(format!(
                "{}: {} values per sample do not make shape {sample_shape:?}",
                raw.source.display(),
                raw.features_per_sample()
            )));
        }
        let labels = raw
            .labels
            .iter()
            .map(|&l| {
                usize::try_from(l).map_err(|_| {
                    TrainError::Data(format!(
                        "{}: label {l} is not a class index",
                        raw.source.display()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut features = raw.features.clone();
        normalize.apply(&mut features);
        let mut shape = vec![raw.len()];
        shape.extend_from_slice(sample_shape);
        let images = features
            .into_dyn()
            .into_shape_with_order(IxDyn(&shape))
            .expect("element count checked");
        Ok(Dataset { images, labels })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The samples at `indices`, in that order.
    pub fn batch(&self, indices: &[usize]) -> (ArrayD<f32>, Vec<usize>) {
        (
            self.images.select(Axis(0), indices),
            indices.iter().map(|&i| self.labels[i]).collect(),
        )
    }

    /// The samples at `indices` as a new data set.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let (images, labels) = self.batch(indices);
        Dataset { images, labels }
    }

    /// Consecutive batches of at most `size` images, in order (for calibration and evaluation).
    pub fn batches(&self, size: usize) -> impl Iterator<Item = ArrayD<f32>> + '_ {
        let (n, size) = (self.len(), size.max(1));
        (0..n).step_by(size).map(move |s| {
            self.images
                .slice_axis(Axis(0), (s..(s + size).min(n)).into())
                .to_owned()
        })
    }
}

/// What [`train`] does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            batch_size: 64,
            optimizer: OptimizerConfig::default(),
            seed: 0,
        }
    }
}

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    pub epochs: usize,
    /// Mean training loss over the epoch's batches (as the weights moved).
    pub loss: f64,
    /// Training top-1 over the epoch (as the weights moved).
    pub train_top1: f64,
    /// Top-1 on the evaluation set after the epoch, when one was given.
    pub eval_top1: Option<f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Wall time of the epoch (training and evaluation).
    pub seconds: f64,
}

impl std::fmt::Display for EpochReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "epoch {}/{}: loss {:.4}, train top-1 {:.2} %",
            self.epoch,
            self.epochs,
            self.loss,
            100.0 * self.train_top1
        )?;
        if let Some(e) = self.eval_top1 {
            write!(f, ", eval top-1 {:.2} %", 100.0 * e)?;
        }
        write!(f, ", lr {:.2e}, {:.1} s", self.lr, self.seconds)
    }
}

/// Trains `model` on `data` for `config.epochs` epochs of seeded shuffled mini-batches (fake-quantized when
/// quantizers are attached), calling `on_epoch` after each.
pub fn train<T: Real>(
    model: &mut TrainableGraph<T>,
    data: &Dataset,
    eval: Option<&Dataset>,
    config: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<Vec<EpochReport>, TrainError> {
    if data.is_empty() || config.batch_size == 0 {
        return Err(TrainError::Config(format!(
            "nothing to train on: {} samples, batch size {}",
            data.len(),
            config.batch_size
        )));
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut optimizer = Optimizer::<T>::new(config.optimizer);
    let mut order: Vec<usize> = (0..data.len()).collect();
    let per_epoch = data.len().div_ceil(config.batch_size);
    let total = per_epoch * config.epochs;
    let mut reports = Vec::with_capacity(config.epochs);
    let mut step = 0;
    for epoch in 1..=config.epochs {
        let start = Instant::now();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct, mut lr) = (0.0, 0usize, config.optimizer.lr);
        for idx in order.chunks(config.batch_size) {
            let (x, y) = data.batch(idx);
            let tape = model.forward(x.mapv(T::from_f32))?;
            let (loss, dlogits) = ops::softmax_cross_entropy(tape.output().view(), &y)
                .map_err(|e| TrainError::Graph(format!("loss: {e}")))?;
            if !loss.is_finite() {
                return Err(TrainError::Diverged { epoch, step, loss });
            }
            let pred = ops::argmax_rows(tape.output().view()).expect("logits are 2-D");
            correct += pred.iter().zip(&y).filter(|(p, y)| p == y).count();
            loss_sum += loss * idx.len() as f64;
            let grads = model.backward(&tape, dlogits)?;
            drop(tape);
            lr = config
                .optimizer
                .schedule
                .at(config.optimizer.lr, step, total);
            optimizer.step(model, &grads, lr);
            step += 1;
        }
        let eval_top1 = eval.map(|e| top1(model, e, 256)).transpose()?;
        let report = EpochReport {
            epoch,
            epochs: config.epochs,
            loss: loss_sum / data.len() as f64,
            train_top1: correct as f64 / data.len() as f64,
            eval_top1,
            lr,
            seconds: start.elapsed().as_secs_f64(),
        };
        on_epoch(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// Top-1 accuracy of `model` (fake-quantized when quantizers are attached) on `data`, in batches of `batch`.
pub fn top1<T: Real>(
    model: &TrainableGraph<T>,
    data: &Dataset,
    batch: usize,
) -> Result<f64, TrainError> {
    if data.is_empty() {
        return Err(TrainError::Config("top-1 of an empty data set".into()));
    }
    let mut correct = 0;
    for (i, x) in data.batches(batch).enumerate() {
        let logits = model.predict(x.mapv(T::from_f32))?;
        let pred = ops::argmax_rows(logits.view())
            .map_err(|e| TrainError::Graph(format!("logits: {e}")))?;
        let labels = &data.labels[i * batch.max(1)..];
        correct += pred.iter().zip(labels).filter(|(p, y)| p == y).count();
    }
    Ok(correct as f64 / data.len() as f64)
}
