//! A fixed-size streaming histogram whose memory does not depend on the number of observed values.
//!
//! Grid: bin `i` (any integer) covers `[i·w, (i + 1)·w)` with `w = 2^e`, so zero is always a bin edge and
//! positive and negative values never share a bin. The histogram keeps `bins` consecutive counters starting at
//! bin `start`, plus the exact minimum, maximum and count.
//!
//! Growth: `e` is always the *smallest* exponent for which `[min, max]` spans at most `bins` bins (bounded below
//! so that bin indices stay under `2^41`, see `REL_EXP`). When a batch falls outside the window, `e` grows by
//! an integer `k` and bin `i` merges into bin `floor(i / 2^k)`: every old bin lies inside exactly one new bin, so
//! growing adds no error (no proportional splitting, no stored samples), and moving the window without growing
//! is exact too. Because "fits" is monotone in `e` and the data only grows, the exponent reached after any
//! sequence of batches (or of [`merge`](StreamingHistogram::merge)s) equals the one a single batch of all the
//! data would choose: streaming and one-shot histograms have the same counts bin for bin; only the window
//! offset (which bins are empty padding) may differ, and no rule looks at padding.
//!
//! Cost of the choice: the resolution is between `span/bins` and `2·span/bins`, so on average 3/4 of the bins
//! are in use, and one far outlier coarsens the bins over the bulk of the data (as with any fixed-bin
//! histogram, TensorRT's included).

use super::{CalibError, batch_extent};

/// The default number of bins (TensorRT's entropy calibrator uses 2048 as well).
pub const DEFAULT_BINS: usize = 2048;

/// Lower bound of the bin exponent, below every `f32` subnormal.
const MIN_EXP: i32 = -200;
/// Bins are never finer than `2^-REL_EXP · max|x|`, far below `f32` resolution; this keeps bin indices of data
/// far from zero below `2^41` (constant data would otherwise ask for an unbounded resolution).
const REL_EXP: i32 = 40;

#[derive(Clone, Debug, PartialEq)]
pub struct StreamingHistogram {
    counts: Vec<u64>,
    /// Bin width is `2^exp`.
    exp: i32,
    /// Global index of `counts[0]`.
    start: i64,
    min: f32,
    max: f32,
    count: u64,
    /// Values exactly 0 (also counted in their bin): every quantizer represents them exactly, so the KL rule
    /// leaves them out of the distribution it compares (a ReLU's zeros would otherwise dominate it).
    zeros: u64,
}

impl Default for StreamingHistogram {
    fn default() -> Self {
        Self::new(DEFAULT_BINS)
    }
}

/// `2^e` for `e` in the `f64` normal range.
fn pow2(e: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// `floor(i / 2^shift)`.
fn floor_shift(i: i64, shift: u32) -> i64 {
    if shift >= 63 {
        if i < 0 { -1 } else { 0 }
    } else {
        i >> shift
    }
}

/// Global index of the bin holding `v` at exponent `e` (exact: `v·2^-e` is exact in `f64`).
fn index_of(v: f32, e: i32) -> i64 {
    (v as f64 * pow2(-e)).floor() as i64
}

/// Whether `[min, max]` spans at most `bins` bins of width `2^e`.
fn fits(min: f32, max: f32, e: i32, bins: usize) -> bool {
    let p = pow2(-e);
    (max as f64 * p).floor() - (min as f64 * p).floor() <= (bins - 1) as f64
}

/// The exponent floor that keeps indices of `[min, max]` below `2^(REL_EXP + 1)`; monotone in `max|x|`.
fn exp_floor(min: f32, max: f32) -> i32 {
    let m = (min as f64).abs().max((max as f64).abs());
    if m == 0.0 {
        return MIN_EXP;
    }
    let log2 = ((m.to_bits() >> 52) & 0x7ff) as i32 - 1023; // exact floor(log2 m); m is a normal f64
    (log2 - REL_EXP).max(MIN_EXP)
}

/// The smallest `e >= floor` for which `[min, max]` fits in `bins` bins.
fn min_exponent(min: f32, max: f32, floor: i32, bins: usize) -> i32 {
    let span = max as f64 - min as f64;
    let mut e = floor;
    if span > 0.0 {
        // Any fitting `e` has `2^e > span / bins`, so this estimate is below the answer; count up from it.
        let estimate = (span / (bins - 1) as f64).log2().ceil() as i32 - 2;
        e = e.max(estimate);
    }
    while !fits(min, max, e, bins) {
        e += 1;
    }
    e
}

impl StreamingHistogram {
    /// An empty histogram with `bins` counters (allocated now; the size never changes).
    ///
    /// # Panics
    /// If `bins < 2`.
    pub fn new(bins: usize) -> Self {
        assert!(bins >= 2, "a histogram needs at least 2 bins, got {bins}");
        StreamingHistogram {
            counts: vec![0; bins],
            exp: MIN_EXP,
            start: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            count: 0,
            zeros: 0,
        }
    }

    /// Values observed that were exactly zero.
    pub fn zeros(&self) -> u64 {
        self.zeros
    }

    /// Number of counters.
    pub fn bins(&self) -> usize {
        self.counts.len()
    }

    /// Number of values observed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Exact minimum observed, `None` before any value.
    pub fn min(&self) -> Option<f32> {
        (self.count > 0).then_some(self.min)
    }

    /// Exact maximum observed, `None` before any value.
    pub fn max(&self) -> Option<f32> {
        (self.count > 0).then_some(self.max)
    }

    /// The bin width, a power of two.
    pub fn bin_width(&self) -> f64 {
        pow2(self.exp)
    }

    /// Bytes held: the struct and its counters. Fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.counts.capacity() * size_of::<u64>()
    }

    /// `[i·w, (i + 1)·w)`, the values bin `i` holds.
    pub fn bin_bounds(&self, i: i64) -> (f64, f64) {
        let w = self.bin_width();
        (i as f64 * w, (i + 1) as f64 * w)
    }

    /// The non-empty bins as `(global index, count)`, in increasing order.
    pub fn nonempty_bins(&self) -> impl Iterator<Item = (i64, u64)> + Clone + '_ {
        let start = self.start;
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c != 0)
            .map(move |(j, &c)| (start + j as i64, c))
    }

    /// Folds one batch in. A batch with non-finite values is rejected whole (the histogram is unchanged).
    pub fn observe(&mut self, batch: &[f32]) -> Result<(), CalibError> {
        let Some((lo, hi)) = batch_extent(batch)? else {
            return Ok(());
        };
        self.fit(lo, hi, self.exp);
        let inv = pow2(-self.exp);
        let start = self.start as f64;
        let last = self.counts.len() - 1;
        for &v in batch {
            // Exact: `v·inv` has at most 24 significant bits and the difference is below `bins`.
            let t = v as f64 * inv - start;
            self.counts[(t as usize).min(last)] += 1;
            self.zeros += (v == 0.0) as u64;
        }
        self.count += batch.len() as u64;
        Ok(())
    }

    /// Folds in a histogram of other values, as if this one had observed them too (exact, see the module docs).
    pub fn merge(&mut self, other: &StreamingHistogram) -> Result<(), CalibError> {
        if other.bins() != self.bins() {
            return Err(CalibError::CannotMerge {
                this: format!("{}-bin histogram", self.bins()),
                other: format!("{}-bin histogram", other.bins()),
                reason: "bin counts differ".to_string(),
            });
        }
        if other.count == 0 {
            return Ok(());
        }
        self.fit(other.min, other.max, self.exp.max(other.exp));
        let shift = (self.exp - other.exp) as u32;
        for (i, c) in other.nonempty_bins() {
            self.counts[(floor_shift(i, shift) - self.start) as usize] += c;
        }
        self.count += other.count;
        self.zeros += other.zeros;
        Ok(())
    }

    /// Grows the grid (exponent at least `floor`) and moves the window so that `[lo, hi]` and everything seen
    /// so far fit, then records the new extent.
    fn fit(&mut self, lo: f32, hi: f32, floor: i32) {
        let (min, max) = if self.count == 0 {
            (lo, hi)
        } else {
            (self.min.min(lo), self.max.max(hi))
        };
        let n = self.counts.len() as i64;
        let exp = min_exponent(min, max, floor.max(exp_floor(min, max)), self.counts.len());
        let (a, b) = (index_of(min, exp), index_of(max, exp));
        if exp != self.exp || a < self.start || b >= self.start + n {
            // Centre the data in the window, leaving room to grow both ways without moving again.
            self.regrid(exp, a - (n - (b - a + 1)) / 2);
        }
        self.min = min;
        self.max = max;
    }

    /// Re-bins to width `2^exp` (`exp >= self.exp`) with the window starting at `start`; bins merge exactly.
    fn regrid(&mut self, exp: i32, start: i64) {
        debug_assert!(exp >= self.exp);
        let shift = (exp - self.exp) as u32;
        let mut next = vec![0u64; self.counts.len()];
        for (i, c) in self.nonempty_bins() {
            next[(floor_shift(i, shift) - start) as usize] += c;
        }
        self.counts = next;
        self.exp = exp;
        self.start = start;
    }

    /// The dense analysis view of the signed values (see [`DenseView`]).
    pub(crate) fn signed_view(&self) -> DenseView {
        let (min, max) = (self.min as f64, self.max as f64);
        let w = self.bin_width();
        let pieces = self
            .nonempty_bins()
            .map(|(i, c)| Piece {
                lo: (i as f64 * w).max(min),
                hi: ((i + 1) as f64 * w).min(max),
                count: c as f64,
            })
            .collect();
        DenseView::build(
            self,
            self.nonempty_bins(),
            pieces,
            min.min(0.0),
            max.max(0.0),
        )
    }

    /// The dense analysis view of `|x|`: bin `i >= 0` holds bins `i` and `-1 - i` of the signed grid, since
    /// `[-(i + 1)·w, -i·w)` mirrors onto `(i·w, (i + 1)·w]`.
    pub(crate) fn folded_view(&self) -> DenseView {
        let (min, max) = (self.min as f64, self.max as f64);
        let w = self.bin_width();
        let fold = |i: i64| if i < 0 { -1 - i } else { i };
        let mut pieces: Vec<Piece> = self
            .nonempty_bins()
            .map(|(i, c)| {
                let (lo, hi) = ((i as f64 * w).max(min), ((i + 1) as f64 * w).min(max));
                let (lo, hi) = if i < 0 { (-hi, -lo) } else { (lo, hi) };
                Piece {
                    lo,
                    hi,
                    count: c as f64,
                }
            })
            .collect();
        pieces.sort_by(|p, q| p.lo.total_cmp(&q.lo));
        let mut folded: Vec<(i64, u64)> = self.nonempty_bins().map(|(i, c)| (fold(i), c)).collect();
        folded.sort_unstable_by_key(|&(i, _)| i);
        DenseView::build(
            self,
            folded.into_iter(),
            pieces,
            0.0,
            (-min).max(max).max(0.0),
        )
    }
}

/// A piece of the observed distribution: `count` values spread over `[lo, hi]` (a bin clipped to the exact
/// extent of the data; `lo == hi` for a point mass such as constant data).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Piece {
    pub lo: f64,
    pub hi: f64,
    pub count: f64,
}

/// Dense counts over `[first·width, (first + counts.len())·width)`, a range that always contains 0 (threshold
/// candidates are its bin edges), plus the fine [`Piece`]s for error integrals.
///
/// `width` is the histogram's bin width, doubled as often as needed to keep the dense range within
/// `2·bins` bins (only data far from zero, whose range must still include 0, needs that); doubling merges bins
/// exactly, as in the histogram itself.
#[derive(Clone, Debug)]
pub(crate) struct DenseView {
    pub width: f64,
    pub first: i64,
    pub counts: Vec<u64>,
    /// Fine pieces, sorted by `lo`.
    pub pieces: Vec<Piece>,
    /// The extent of the values including 0: `[min(x, 0), max(x, 0)]` (in `|x|` for the folded view).
    pub lo: f64,
    pub hi: f64,
}

impl DenseView {
    fn build(
        hist: &StreamingHistogram,
        bins: impl Iterator<Item = (i64, u64)> + Clone,
        pieces: Vec<Piece>,
        lo: f64,
        hi: f64,
    ) -> DenseView {
        let limit = 2 * hist.bins() as i64;
        let (first, last) = bins
            .clone()
            .fold((0i64, 0i64), |(a, b), (i, _)| (a.min(i), b.max(i + 1)));
        let mut shift = 0u32;
        while floor_shift(last - 1, shift) + 1 - floor_shift(first, shift) > limit {
            shift += 1;
        }
        let dense_first = floor_shift(first, shift);
        let len = (floor_shift(last - 1, shift) + 1 - dense_first) as usize;
        let mut counts = vec![0u64; len];
        for (i, c) in bins {
            counts[(floor_shift(i, shift) - dense_first) as usize] += c;
        }
        DenseView {
            width: hist.bin_width() * pow2(shift as i32),
            first: dense_first,
            counts,
            pieces,
            lo,
            hi,
        }
    }

    /// Global index one past the last dense bin.
    pub fn end(&self) -> i64 {
        self.first + self.counts.len() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(batches: &[&[f32]], bins: usize) -> StreamingHistogram {
        let mut h = StreamingHistogram::new(bins);
        for b in batches {
            h.observe(b).unwrap();
        }
        h
    }

    fn bins_of(h: &StreamingHistogram) -> Vec<(i64, u64)> {
        h.nonempty_bins().collect()
    }

    #[test]
    fn growth_in_both_directions_matches_one_shot_bin_for_bin() {
        let a: Vec<f32> = (0..100).map(|i| i as f32 * 0.01).collect();
        let b: Vec<f32> = (0..100).map(|i| -(i as f32) * 0.37).collect();
        let c: Vec<f32> = (0..100).map(|i| 3.0 + i as f32 * 1.3).collect();
        let all: Vec<f32> = [a.clone(), b.clone(), c.clone()].concat();
        let streamed = observed(&[&a, &b, &c], 64);
        let one = observed(&[&all], 64);
        assert_eq!(bins_of(&streamed), bins_of(&one));
        assert_eq!(streamed.bin_width(), one.bin_width());
        assert_eq!(
            (streamed.min(), streamed.max()),
            (Some(-36.63), Some(131.7))
        );
        assert_eq!(streamed.count(), 300);
        // The exponent is the smallest that fits: half the width would not.
        assert!(!fits(-36.63, 131.7, streamed.exp - 1, 64));
    }

    #[test]
    fn merge_equals_one_shot() {
        let a: Vec<f32> = (0..500)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3)
            .collect();
        let b: Vec<f32> = (0..500)
            .map(|i| -((i * 104729) % 977) as f32 * 0.5)
            .collect();
        let mut left = observed(&[&a], 128);
        left.merge(&observed(&[&b], 128)).unwrap();
        let one = observed(&[&[a, b].concat()], 128);
        assert_eq!(bins_of(&left), bins_of(&one));
        assert_eq!(left.min(), one.min());
        assert!(left.merge(&StreamingHistogram::new(64)).is_err());
    }

    #[test]
    fn constant_and_zero_data_and_memory() {
        let mut h = StreamingHistogram::new(16);
        let bytes = h.memory_bytes();
        h.observe(&[0.0; 10]).unwrap();
        h.observe(&[1e30; 3]).unwrap();
        h.observe(&[-1e-30; 3]).unwrap();
        assert_eq!(h.count(), 16);
        assert_eq!(h.nonempty_bins().map(|(_, c)| c).sum::<u64>(), 16);
        assert_eq!(h.memory_bytes(), bytes);
        let err = h.observe(&[1.0, f32::NAN]).unwrap_err();
        assert_eq!(err, CalibError::NonFinite { count: 1, len: 2 });
        assert_eq!(h.count(), 16, "a rejected batch is not counted");
    }

    #[test]
    fn folded_view_mirrors_negative_bins() {
        let h = observed(&[&[-0.75, -0.25, 0.25, 0.5, 1.0]], 8);
        // Span 1.75 over 8 bins: width 0.25, bins -3..=4.
        assert_eq!(h.bin_width(), 0.25);
        let f = h.folded_view();
        assert_eq!(f.first, 0);
        assert_eq!(f.counts, vec![1, 1, 2, 0, 1]);
        assert_eq!(f.hi, 1.0);
        let s = h.signed_view();
        assert_eq!((s.first, s.end()), (-3, 5));
        assert_eq!(s.counts.iter().sum::<u64>(), 5);
    }

    #[test]
    fn dense_view_coarsens_data_far_from_zero() {
        let h = observed(&[&[1000.0, 1000.5, 1001.0]], 8);
        let v = h.signed_view();
        assert!(v.counts.len() <= 16, "{}", v.counts.len());
        assert_eq!(v.first, 0);
        assert!(v.end() as f64 * v.width >= 1001.0);
        assert_eq!(v.counts.iter().sum::<u64>(), 3);
    }
}
