//! The percentile rule: the range that covers `P` % of the observed mass, read off the histogram with linear
//! interpolation inside a bin (values are taken as uniform within a bin clipped to the exact extent, so the
//! answer is within one bin width of the sample quantile, and `P = 100` gives the exact extent).
//!
//! Symmetric ranges take `T` = the `P`-th percentile of `|x|`. Affine ranges over data of both signs clip both
//! tails equally in mass, `(100 − P)/2` % each, so a heavy tail on one side does not decide the other side's
//! threshold; data of one sign has one tail, which gets all `100 − P` %.

use super::histogram::{Piece, StreamingHistogram};
use super::{CalibError, sided, with_zero};

/// The range covering `percent` % of the observed mass (`0 < percent <= 100`).
pub fn percentile_range(
    hist: &StreamingHistogram,
    percent: f64,
    symmetric: bool,
) -> Result<(f32, f32), CalibError> {
    if !(percent > 0.0 && percent <= 100.0) {
        return Err(CalibError::BadMethod {
            token: format!("p{percent}"),
            reason: "the percentile must be in (0, 100]".to_string(),
        });
    }
    let (Some(min), Some(max)) = (hist.min(), hist.max()) else {
        return Err(CalibError::NoData);
    };
    let (min, max) = (min as f64, max as f64);
    let q = percent / 100.0;
    if symmetric {
        let view = hist.folded_view();
        let bins: Vec<Piece> = view
            .counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c != 0)
            .map(|(k, &c)| Piece {
                lo: (k as f64 * view.width).min(view.hi),
                hi: ((k + 1) as f64 * view.width).min(view.hi),
                count: c as f64,
            })
            .collect();
        Ok(sided(quantile(&bins, q), min, max))
    } else {
        let pieces = hist.signed_view().pieces;
        let (lo, hi) = if min < 0.0 && max > 0.0 {
            let tail = (1.0 - q) / 2.0;
            (quantile(&pieces, tail), quantile(&pieces, 1.0 - tail))
        } else if min >= 0.0 {
            (0.0, quantile(&pieces, q))
        } else {
            (quantile(&pieces, 1.0 - q), 0.0)
        };
        Ok(with_zero(lo, hi))
    }
}

/// The value below which a fraction `q` of the mass of sorted, disjoint pieces lies.
fn quantile(pieces: &[Piece], q: f64) -> f64 {
    let total: f64 = pieces.iter().map(|p| p.count).sum();
    let target = q.clamp(0.0, 1.0) * total;
    let mut below = 0.0;
    for p in pieces {
        if below + p.count >= target {
            let f = ((target - below) / p.count).clamp(0.0, 1.0);
            return p.lo + f * (p.hi - p.lo);
        }
        below += p.count;
    }
    pieces.last().map_or(0.0, |p| p.hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_inside_bins() {
        let pieces = [
            Piece {
                lo: 0.0,
                hi: 1.0,
                count: 2.0,
            },
            Piece {
                lo: 1.0,
                hi: 2.0,
                count: 2.0,
            },
        ];
        assert_eq!(quantile(&pieces, 0.0), 0.0);
        assert_eq!(quantile(&pieces, 0.25), 0.5);
        assert_eq!(quantile(&pieces, 0.75), 1.5);
        assert_eq!(quantile(&pieces, 1.0), 2.0);
    }
}
