//! Min-max calibrators: the exact running range, and its moving average over batches.
//!
//! [`MovingAverageCalibrator`] follows TensorFlow's moving-average quantization ranges and PyTorch's
//! `MovingAverageMinMaxObserver`: the first batch sets `min` and `max`, each later batch moves them by
//! `momentum·(batch_min − min)` (PyTorch's `averaging_constant`, default 0.01; TensorFlow's `ema_decay` is
//! `1 − momentum`). Per-batch statistics make it depend on batch size and order; it cannot be merged.

use std::any::Any;

use super::method::CalibrationMethod;
use super::{CalibError, Calibrator, batch_extent, cannot_merge, check_bits, sided, with_zero};

/// The range a calibrator reports for an extent `[min, max]`.
fn extent_range(min: f64, max: f64, symmetric: bool) -> (f32, f32) {
    if symmetric {
        sided(min.abs().max(max.abs()), min, max)
    } else {
        with_zero(min, max)
    }
}

/// Exact running minimum and maximum.
#[derive(Clone, Debug, PartialEq)]
pub struct MinMaxCalibrator {
    bits: u32,
    symmetric: bool,
    min: f32,
    max: f32,
    count: u64,
}

impl MinMaxCalibrator {
    /// `bits` is checked by `observe` and `range`; it does not change a min-max range.
    pub fn new(bits: u32, symmetric: bool) -> Self {
        MinMaxCalibrator {
            bits,
            symmetric,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            count: 0,
        }
    }

    /// `(min, max)` of everything observed.
    pub fn extent(&self) -> Option<(f32, f32)> {
        (self.count > 0).then_some((self.min, self.max))
    }
}

impl Calibrator for MinMaxCalibrator {
    fn observe(&mut self, batch: &[f32]) -> Result<(), CalibError> {
        check_bits(self.bits)?;
        if let Some((lo, hi)) = batch_extent(batch)? {
            self.min = self.min.min(lo);
            self.max = self.max.max(hi);
            self.count += batch.len() as u64;
        }
        Ok(())
    }

    fn range(&self) -> Result<(f32, f32), CalibError> {
        check_bits(self.bits)?;
        let (min, max) = self.extent().ok_or(CalibError::NoData)?;
        Ok(extent_range(min as f64, max as f64, self.symmetric))
    }

    fn count(&self) -> u64 {
        self.count
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>()
    }

    fn method(&self) -> CalibrationMethod {
        CalibrationMethod::MinMax
    }

    fn merge(&mut self, other: &dyn Calibrator) -> Result<(), CalibError> {
        let Some(o) = other.as_any().downcast_ref::<MinMaxCalibrator>() else {
            return Err(cannot_merge(self, other, "different methods"));
        };
        if (o.bits, o.symmetric) != (self.bits, self.symmetric) {
            return Err(cannot_merge(self, other, "different bit widths or schemes"));
        }
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.count += o.count;
        Ok(())
    }

    fn clone_box(&self) -> Box<dyn Calibrator + Send> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Per-batch minimum and maximum, exponentially averaged.
#[derive(Clone, Debug, PartialEq)]
pub struct MovingAverageCalibrator {
    bits: u32,
    symmetric: bool,
    momentum: f64,
    min: f64,
    max: f64,
    count: u64,
}

impl MovingAverageCalibrator {
    /// `momentum` in `(0, 1]` (1 keeps only the last batch); it and `bits` are checked by `observe`/`range`.
    pub fn new(momentum: f64, bits: u32, symmetric: bool) -> Self {
        MovingAverageCalibrator {
            bits,
            symmetric,
            momentum,
            min: 0.0,
            max: 0.0,
            count: 0,
        }
    }

    fn check(&self) -> Result<(), CalibError> {
        check_bits(self.bits)?;
        self.method().validate()
    }
}

impl Calibrator for MovingAverageCalibrator {
    fn observe(&mut self, batch: &[f32]) -> Result<(), CalibError> {
        self.check()?;
        let Some((lo, hi)) = batch_extent(batch)? else {
            return Ok(());
        };
        let (lo, hi) = (lo as f64, hi as f64);
        if self.count == 0 {
            (self.min, self.max) = (lo, hi);
        } else {
            self.min += self.momentum * (lo - self.min);
            self.max += self.momentum * (hi - self.max);
        }
        self.count += batch.len() as u64;
        Ok(())
    }

    fn range(&self) -> Result<(f32, f32), CalibError> {
        self.check()?;
        if self.count == 0 {
            return Err(CalibError::NoData);
        }
        Ok(extent_range(self.min, self.max, self.symmetric))
    }

    fn count(&self) -> u64 {
        self.count
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>()
    }

    fn method(&self) -> CalibrationMethod {
        CalibrationMethod::MovingAverage {
            momentum: self.momentum,
        }
    }

    fn merge(&mut self, other: &dyn Calibrator) -> Result<(), CalibError> {
        Err(cannot_merge(
            self,
            other,
            "a moving average depends on batch order",
        ))
    }

    fn clone_box(&self) -> Box<dyn Calibrator + Send> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minmax_is_exact_and_merges() {
        let mut a = MinMaxCalibrator::new(8, false);
        a.observe(&[1.0, 2.0]).unwrap();
        a.observe(&[]).unwrap();
        let mut b = MinMaxCalibrator::new(8, false);
        b.observe(&[-3.0]).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a.range(), Ok((-3.0, 2.0)));
        assert_eq!(a.count(), 3);
        let mut s = MinMaxCalibrator::new(8, true);
        s.observe(&[0.5, 2.0]).unwrap();
        assert_eq!(s.range(), Ok((0.0, 2.0)));
        s.observe(&[-0.5]).unwrap();
        assert_eq!(s.range(), Ok((-2.0, 2.0)));
        assert!(a.merge(&s).is_err());
    }

    #[test]
    fn moving_average_follows_the_momentum() {
        let mut c = MovingAverageCalibrator::new(0.5, 8, false);
        c.observe(&[-1.0, 1.0]).unwrap();
        c.observe(&[-3.0, 5.0]).unwrap();
        assert_eq!(c.range(), Ok((-2.0, 3.0)));
        c.observe(&[0.5, 1.0]).unwrap();
        // min: -2 + 0.5·(0.5 + 2) = -0.75; max: 3 + 0.5·(1 − 3) = 2.
        assert_eq!(c.range(), Ok((-0.75, 2.0)));
        let other = c.clone();
        assert!(matches!(
            c.merge(&other),
            Err(CalibError::CannotMerge { .. })
        ));
        let bad = MovingAverageCalibrator::new(0.0, 8, false);
        assert!(matches!(bad.range(), Err(CalibError::BadMethod { .. })));
    }
}
