//! [`HistogramCalibrator`]: a [`StreamingHistogram`] plus one histogram rule (percentile, KL or MSE).

use std::any::Any;

use super::histogram::{DEFAULT_BINS, StreamingHistogram};
use super::method::CalibrationMethod;
use super::{
    CalibError, Calibrator, cannot_merge, check_bits, kl_range, mse_range, percentile_range,
};

/// Streams values into a fixed-size histogram and applies the method's rule when asked for the range.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramCalibrator {
    method: CalibrationMethod,
    bits: u32,
    symmetric: bool,
    hist: StreamingHistogram,
}

impl HistogramCalibrator {
    /// A calibrator with [`DEFAULT_BINS`] bins. `method` must be `Percentile`, `Kl` or `Mse`; `bits` and the
    /// method's parameter are checked by `observe` and `range`.
    pub fn new(method: CalibrationMethod, bits: u32, symmetric: bool) -> Result<Self, CalibError> {
        Self::with_bins(method, bits, symmetric, DEFAULT_BINS)
    }

    /// As [`new`](Self::new) with `bins` bins (at least 2).
    pub fn with_bins(
        method: CalibrationMethod,
        bits: u32,
        symmetric: bool,
        bins: usize,
    ) -> Result<Self, CalibError> {
        if !method.uses_histogram() {
            return Err(CalibError::BadMethod {
                token: method.name(),
                reason: "not a histogram rule (percentile, kl or mse)".to_string(),
            });
        }
        Ok(HistogramCalibrator {
            method,
            bits,
            symmetric,
            hist: StreamingHistogram::new(bins),
        })
    }

    /// The histogram observed so far.
    pub fn histogram(&self) -> &StreamingHistogram {
        &self.hist
    }

    fn check(&self) -> Result<(), CalibError> {
        check_bits(self.bits)?;
        self.method.validate()
    }
}

impl Calibrator for HistogramCalibrator {
    fn observe(&mut self, batch: &[f32]) -> Result<(), CalibError> {
        self.check()?;
        self.hist.observe(batch)
    }

    fn range(&self) -> Result<(f32, f32), CalibError> {
        self.check()?;
        match self.method {
            CalibrationMethod::Percentile(p) => percentile_range(&self.hist, p, self.symmetric),
            CalibrationMethod::Kl => kl_range(&self.hist, self.bits, self.symmetric),
            CalibrationMethod::Mse => mse_range(&self.hist, self.bits, self.symmetric),
            CalibrationMethod::MinMax | CalibrationMethod::MovingAverage { .. } => {
                unreachable!("rejected by the constructor")
            }
        }
    }

    fn count(&self) -> u64 {
        self.hist.count()
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>() - size_of::<StreamingHistogram>() + self.hist.memory_bytes()
    }

    fn method(&self) -> CalibrationMethod {
        self.method
    }

    fn merge(&mut self, other: &dyn Calibrator) -> Result<(), CalibError> {
        let Some(o) = other.as_any().downcast_ref::<HistogramCalibrator>() else {
            return Err(cannot_merge(self, other, "different methods"));
        };
        if (o.method, o.bits, o.symmetric) != (self.method, self.bits, self.symmetric) {
            return Err(cannot_merge(
                self,
                other,
                "different methods, bit widths or schemes",
            ));
        }
        self.hist.merge(&o.hist)
    }

    fn clone_box(&self) -> Box<dyn Calibrator + Send> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
