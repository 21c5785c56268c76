//! Calibration: activation ranges observed while the FP32 model runs on the calibration split.
//!
//! One streaming calibrator (from `strategies::calib`) per value and per requested (method, symmetric) pair:
//! memory is bounded by the calibrators' fixed histograms, whatever the number of calibration samples.
//!
//! The graph input is the exception: it keeps its observed min-max range under every method. It is the data
//! itself, not a learned activation, and clipping it throws away what the first layer needs: on the MNIST CNN
//! the normalised background pixel is a spike holding most of the mass, and the KL rule clipped the input
//! just above it (every stroke saturated; top-1 fell from 99.9 % to 88 %).

use std::collections::HashMap;

use ndarray::ArrayD;
use strategies::calib::{CalibError, Calibrator};

use crate::exec::reference::Fp32Executor;
use crate::ir::Tensor;

use super::QuantError;
use super::strategy::Calibration;

/// A calibration rule: the method and whether the range is symmetric (the scheme's).
pub type Rule = (Calibration, bool);

/// One value's calibrators, one per rule.
type ValueCalibrators = Vec<(Rule, Box<dyn Calibrator + Send>)>;

/// The chosen clipping range of every f32 value in the graph (inputs and node outputs), per rule.
#[derive(Default)]
pub struct ActivationRanges {
    calibrators: HashMap<String, ValueCalibrators>,
    /// Bytes held by all calibrators (constant once every value has been seen).
    memory_bytes: usize,
    /// The graph input's name and observed `(min, max)`.
    input: Option<(String, f32, f32)>,
    /// Ranges fixed from outside (learned by QAT), served for every rule.
    fixed: HashMap<String, (f32, f32)>,
}

impl std::fmt::Debug for ActivationRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivationRanges")
            .field("values", &self.calibrators.len())
            .field("memory_bytes", &self.memory_bytes)
            .finish()
    }
}

impl ActivationRanges {
    /// Ranges fixed ahead of time, e.g. the activation ranges quantization-aware training learned: every rule
    /// gets these.
    pub fn from_fixed(ranges: impl IntoIterator<Item = (String, (f32, f32))>) -> Self {
        ActivationRanges {
            fixed: ranges.into_iter().collect(),
            ..Default::default()
        }
    }

    /// Min-max ranges (affine) of every value: runs `exec` over `batches` of the input named `input`.
    pub fn observe<I>(exec: &Fp32Executor, input: &str, batches: I) -> Result<Self, QuantError>
    where
        I: IntoIterator<Item = ArrayD<f32>>,
    {
        Self::observe_rules(exec, input, batches, &[(Calibration::MinMax, false)])
    }

    /// Runs `exec` over `batches` of the input named `input`, feeding every value to one calibrator per rule
    /// (8-bit ranges).
    pub fn observe_rules<I>(
        exec: &Fp32Executor,
        input: &str,
        batches: I,
        rules: &[Rule],
    ) -> Result<Self, QuantError>
    where
        I: IntoIterator<Item = ArrayD<f32>>,
    {
        let mut ranges = ActivationRanges::default();
        let mut failure: Option<(String, CalibError)> = None;
        for batch in batches {
            let mut observe = |name: &str, values: &[f32]| {
                if failure.is_some() {
                    return;
                }
                let entry = ranges
                    .calibrators
                    .entry(name.to_string())
                    .or_insert_with(|| {
                        rules
                            .iter()
                            .map(|&(c, sym)| ((c, sym), c.method().calibrator(8, sym)))
                            .collect()
                    });
                for (_, cal) in entry.iter_mut() {
                    if let Err(e) = cal.observe(values) {
                        failure = Some((name.to_string(), e));
                        return;
                    }
                }
            };
            let (lo, hi) = batch
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            let seen = ranges.input.get_or_insert((input.to_string(), lo, hi));
            (seen.1, seen.2) = (seen.1.min(lo), seen.2.max(hi));
            match batch.as_slice() {
                Some(s) => observe(input, s),
                None => observe(input, &batch.iter().copied().collect::<Vec<_>>()),
            }
            exec.run_observed(&[(input, batch)], &mut |name: &str, t: &Tensor| {
                if let Tensor::F32(a) = t {
                    match a.as_slice() {
                        Some(s) => observe(name, s),
                        None => observe(name, &a.iter().copied().collect::<Vec<_>>()),
                    }
                }
            })?;
            if let Some((value, source)) = failure.take() {
                return Err(QuantError::Calibration { value, source });
            }
        }
        ranges.memory_bytes = ranges
            .calibrators
            .values()
            .flatten()
            .map(|(_, c)| c.memory_bytes())
            .sum();
        Ok(ranges)
    }

    /// The min-max range of `value` (affine), the first rule's when min-max was not requested.
    pub fn get(&self, value: &str) -> Result<(f32, f32), QuantError> {
        if let Some(&r) = self.fixed.get(value) {
            return Ok(r);
        }
        let cals = self
            .calibrators
            .get(value)
            .ok_or_else(|| QuantError::NoRange {
                value: value.to_string(),
            })?;
        let (_, cal) = cals
            .iter()
            .find(|((c, _), _)| *c == Calibration::MinMax)
            .or(cals.first())
            .ok_or_else(|| QuantError::NoRange {
                value: value.to_string(),
            })?;
        self.range_of(value, cal.as_ref())
    }

    /// The range `rule` chose for `value`. A symmetric min-max rule may be served by the affine min-max
    /// calibrator: symmetric schemes read `max(|lo|, |hi|)`, which both give.
    pub fn get_rule(&self, value: &str, rule: Rule) -> Result<(f32, f32), QuantError> {
        if let Some(&r) = self.fixed.get(value) {
            return Ok(r);
        }
        if let Some((name, lo, hi)) = &self.input
            && name == value
            && lo.is_finite()
            && hi.is_finite()
        {
            return Ok((lo.min(0.0), hi.max(0.0)));
        }
        let cal = self
            .calibrators
            .get(value)
            .and_then(|cals| {
                cals.iter().find(|(r, _)| *r == rule).or_else(|| {
                    (rule.0 == Calibration::MinMax)
                        .then(|| cals.iter().find(|(r, _)| r.0 == Calibration::MinMax))
                        .flatten()
                })
            })
            .ok_or_else(|| QuantError::NoRange {
                value: format!(
                    "{value} (calibration {}, symmetric {})",
                    rule.0.name(),
                    rule.1
                ),
            })?;
        self.range_of(value, cal.1.as_ref())
    }

    fn range_of(&self, value: &str, cal: &dyn Calibrator) -> Result<(f32, f32), QuantError> {
        cal.range().map_err(|source| QuantError::Calibration {
            value: value.to_string(),
            source,
        })
    }

    /// Bytes held by the calibrators: bounded by the number of values and rules, not by the samples seen.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
}
