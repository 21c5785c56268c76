//! Calibration: activation ranges observed while the FP32 model runs on the calibration split.
//!
//! Observers are streaming (memory independent of the number of calibration samples): one per value.

use std::collections::HashMap;

use ndarray::ArrayD;
use strategies::MinMaxObserver;

use crate::exec::reference::Fp32Executor;
use crate::ir::Tensor;

use super::QuantError;

/// Observed `(min, max)` of every f32 value in the graph (inputs and node outputs).
#[derive(Clone, Debug, Default)]
pub struct ActivationRanges {
    observers: HashMap<String, MinMaxObserver>,
}

impl ActivationRanges {
    /// Runs `exec` over `batches` of the input named `input`, observing every value.
    pub fn observe<I>(exec: &Fp32Executor, input: &str, batches: I) -> Result<Self, QuantError>
    where
        I: IntoIterator<Item = ArrayD<f32>>,
    {
        let mut ranges = ActivationRanges::default();
        for batch in batches {
            ranges
                .observers
                .entry(input.to_string())
                .or_default()
                .update(
                    batch
                        .as_slice()
                        .unwrap_or(&batch.iter().copied().collect::<Vec<_>>()),
                );
            let mut observe = |name: &str, t: &Tensor| {
                if let Tensor::F32(a) = t {
                    let obs = ranges.observers.entry(name.to_string()).or_default();
                    match a.as_slice() {
                        Some(s) => obs.update(s),
                        None => obs.update(&a.iter().copied().collect::<Vec<_>>()),
                    }
                }
            };
            exec.run_observed(&[(input, batch)], &mut observe)?;
        }
        Ok(ranges)
    }

    /// The observed range of `value`.
    pub fn get(&self, value: &str) -> Result<(f32, f32), QuantError> {
        self.observers
            .get(value)
            .and_then(MinMaxObserver::range)
            .ok_or_else(|| QuantError::NoRange {
                value: value.to_string(),
            })
    }
}
