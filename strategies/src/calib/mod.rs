//! Streaming activation calibrators and weight-range helpers: they turn observed float values into the clipping
//! range `[lo, hi]` (always `lo <= 0 <= hi`) that a scheme turns into a scale and a zero point.
//!
//! Activations are seen one calibration batch at a time, in memory that does not grow with the number of
//! samples; weights are fully known and searched exactly ([`weights`]). Nothing here knows the model IR.
//!
//! Files:
//! - `mod.rs` (this file): the [`Calibrator`] trait, [`CalibError`], the shared batch scan and bit-width check.
//! - [`method`]: [`CalibrationMethod`] (parse / name / factory).
//! - [`histogram`]: [`StreamingHistogram`], a fixed number of bins on a power-of-two grid anchored at zero.
//! - [`minmax`]: [`MinMaxCalibrator`] (exact running range) and [`MovingAverageCalibrator`] (per-batch range
//!   averaged with a momentum, as TensorFlow's and PyTorch's moving-average min-max observers).
//! - [`percentile`], [`kl`], [`mse`]: the histogram rules; [`HistogramCalibrator`] (in `hist_calib.rs`) binds
//!   one of them to a histogram.
//! - `grid.rs`: the integer grid a range implies (shared by `mse` and `weights`); `search.rs`: the two-sided
//!   threshold search of the affine rules.
//! - [`weights`]: [`weight_range_minmax`] and [`weight_range_mse`].
//!
//! Conventions shared by every rule:
//! - *Symmetric* ranges are `[-T, T]` restricted to the sides the data occupies (`lo = 0` when no value is
//!   negative, `hi = 0` when none is positive), so ReLU outputs get `lo == 0`; a symmetric scheme reads
//!   `T = max(|lo|, |hi|)`. The grid is `k·T/(2^(bits-1) - 1)` for `|k| <= 2^(bits-1) - 1`.
//! - *Affine* ranges satisfy `min(x, 0) <= lo <= 0 <= hi <= max(x, 0)`; the grid is `(k - z)·(hi - lo)/(2^bits - 1)`
//!   for `0 <= k < 2^bits`, with the zero point `z` rounded so that 0 is exact, as the schemes do.
//! - Non-finite inputs are an error that counts them ([`CalibError::NonFinite`]); the batch is then not folded
//!   in, and the calibrator stays as it was.
//! - Bit widths are 2..=8. Calibrators built by [`CalibrationMethod::calibrator`] check the width (and the
//!   method's parameter) lazily: `observe` and `range` report it.

use std::any::Any;
use std::fmt;

mod grid;
pub mod hist_calib;
pub mod histogram;
pub mod kl;
pub mod method;
pub mod minmax;
pub mod mse;
pub mod percentile;
mod search;
pub mod weights;

pub use hist_calib::HistogramCalibrator;
pub use histogram::{DEFAULT_BINS, StreamingHistogram};
pub use kl::kl_range;
pub use method::{CalibrationMethod, DEFAULT_MOMENTUM};
pub use minmax::{MinMaxCalibrator, MovingAverageCalibrator};
pub use mse::mse_range;
pub use percentile::percentile_range;
pub use weights::{WEIGHT_MSE_CANDIDATES, weight_range_minmax, weight_range_mse};

/// Smallest and largest supported bit widths.
pub const MIN_BITS: u32 = 2;
pub const MAX_BITS: u32 = 8;

/// The accepted method tokens, for error messages.
pub(crate) const ACCEPTED_METHODS: &str = "minmax, ema, ema:<momentum in (0, 1]>, percentile:<P in (0, 100]>, \
     kl, mse (the names ema0.01 and p99.99 parse too)";

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CalibError {
    #[error("no data observed: a calibrator needs at least one value before it can choose a range")]
    NoData,
    #[error(
        "{count} non-finite value(s) (NaN or infinity) in a batch of {len}; calibration data must be finite"
    )]
    NonFinite { count: usize, len: usize },
    #[error("bad calibration method `{token}`: {reason}; accepted: {ACCEPTED_METHODS}")]
    BadMethod { token: String, reason: String },
    #[error("bit width {0} out of range: calibrators support {MIN_BITS}..={MAX_BITS} bits")]
    BitsOutOfRange(u32),
    #[error("cannot merge a `{other}` calibrator into a `{this}` calibrator: {reason}")]
    CannotMerge {
        this: String,
        other: String,
        reason: String,
    },
}

/// A streaming range estimator for one tensor: feed it calibration batches, then ask for the clipping range.
///
/// Implementations keep a bounded state ([`memory_bytes`](Calibrator::memory_bytes) does not depend on how many
/// values were observed) and are `Clone` (through [`clone_box`](Calibrator::clone_box)) and `Send`, so one
/// calibrator per tensor can live in a worker thread.
pub trait Calibrator: fmt::Debug + Send {
    /// Folds one batch in. An empty batch is a no-op; a batch with NaN or infinities is rejected whole.
    fn observe(&mut self, batch: &[f32]) -> Result<(), CalibError>;

    /// The clipping range `[lo, hi]`, `lo <= 0 <= hi`.
    fn range(&self) -> Result<(f32, f32), CalibError>;

    /// Number of values observed.
    fn count(&self) -> u64;

    /// Bytes this calibrator holds (its struct plus its heap buffers); constant once built.
    fn memory_bytes(&self) -> usize;

    /// The method this calibrator implements.
    fn method(&self) -> CalibrationMethod;

    /// Folds in another calibrator of the same kind that observed disjoint data (parallel calibration).
    /// Merging is exact for min-max and the histogram rules; a moving average depends on batch order and
    /// cannot be merged.
    fn merge(&mut self, other: &dyn Calibrator) -> Result<(), CalibError>;

    fn clone_box(&self) -> Box<dyn Calibrator + Send>;

    fn as_any(&self) -> &dyn Any;
}

impl Clone for Box<dyn Calibrator + Send> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// `Ok` for 2..=8 bits.
pub fn check_bits(bits: u32) -> Result<(), CalibError> {
    if (MIN_BITS..=MAX_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(CalibError::BitsOutOfRange(bits))
    }
}

/// `(min, max)` of a batch, `None` when it is empty, or the count of non-finite values.
pub(crate) fn batch_extent(batch: &[f32]) -> Result<Option<(f32, f32)>, CalibError> {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    let mut bad = 0usize;
    for &v in batch {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        } else {
            bad += 1;
        }
    }
    if bad > 0 {
        return Err(CalibError::NonFinite {
            count: bad,
            len: batch.len(),
        });
    }
    Ok((!batch.is_empty()).then_some((lo, hi)))
}

/// The symmetric range `[-t, t]` restricted to the sides the data `[min, max]` occupies.
pub(crate) fn sided(t: f64, min: f64, max: f64) -> (f32, f32) {
    let t = t as f32;
    (
        if min < 0.0 { -t } else { 0.0 },
        if max > 0.0 { t } else { 0.0 },
    )
}

/// `[min(lo, 0), max(hi, 0)]` as `f32`.
pub(crate) fn with_zero(lo: f64, hi: f64) -> (f32, f32) {
    ((lo.min(0.0)) as f32, (hi.max(0.0)) as f32)
}

/// The error for a calibrator of one kind asked to merge another.
pub(crate) fn cannot_merge(
    this: &dyn Calibrator,
    other: &dyn Calibrator,
    reason: &str,
) -> CalibError {
    CalibError::CannotMerge {
        this: this.method().name(),
        other: other.method().name(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_extent_counts_non_finite() {
        assert_eq!(batch_extent(&[]), Ok(None));
        assert_eq!(batch_extent(&[1.0, -2.0, 0.5]), Ok(Some((-2.0, 1.0))));
        let err = batch_extent(&[1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY]).unwrap_err();
        assert_eq!(err, CalibError::NonFinite { count: 3, len: 4 });
        assert!(err.to_string().contains("3 non-finite"), "{err}");
    }

    #[test]
    fn sided_keeps_zero_on_empty_sides() {
        assert_eq!(sided(2.0, 0.0, 5.0), (0.0, 2.0));
        assert_eq!(sided(2.0, -1.0, 5.0), (-2.0, 2.0));
        assert_eq!(sided(2.0, -1.0, -0.5), (-2.0, 0.0));
        assert_eq!(check_bits(1), Err(CalibError::BitsOutOfRange(1)));
        assert_eq!(check_bits(9), Err(CalibError::BitsOutOfRange(9)));
        assert!(check_bits(2).is_ok() && check_bits(8).is_ok());
    }
}
