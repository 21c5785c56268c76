//! Threshold searches over the bin edges of a dense view, shared by the KL and MSE rules.
//!
//! One-sided (symmetric ranges, or data of one sign): every candidate edge is tried. Two-sided (affine ranges
//! over data of both signs): the pair `(lo edge, hi edge)` is found by coordinate descent, alternately scanning
//! every `hi` edge with `lo` fixed and every `lo` edge with `hi` fixed, starting from the unclipped range, until
//! neither moves (at most [`MAX_ROUNDS`] rounds). An exhaustive pair search would cost `bins²` evaluations of an
//! `O(bins)` objective; the descent costs a few `bins`. Ties go to the less clipped range.

/// Rounds of the two-sided descent; it usually settles in two.
pub(crate) const MAX_ROUNDS: usize = 4;

/// The `k` in `lo..=hi` with the lowest cost, scanning from `hi` down (ties keep the larger `k`).
pub(crate) fn best_from_top(lo: i64, hi: i64, mut cost: impl FnMut(i64) -> f64) -> i64 {
    let (mut best, mut best_cost) = (hi, f64::INFINITY);
    for k in (lo..=hi).rev() {
        let c = cost(k);
        if c < best_cost {
            (best, best_cost) = (k, c);
        }
    }
    best
}

/// The `k` in `lo..=hi` with the lowest cost, scanning from `lo` up (ties keep the smaller `k`).
pub(crate) fn best_from_bottom(lo: i64, hi: i64, mut cost: impl FnMut(i64) -> f64) -> i64 {
    let (mut best, mut best_cost) = (lo, f64::INFINITY);
    for k in lo..=hi {
        let c = cost(k);
        if c < best_cost {
            (best, best_cost) = (k, c);
        }
    }
    best
}

/// Coordinate descent over `a` in `a_min..=a_max` (the low edge) and `b` in `b_min..=b_max` (the high edge)
/// with `b - a >= min_width`, from `(a_min, b_max)`. The caller guarantees `b_max - a_min >= min_width`.
pub(crate) fn descend(
    (a_min, a_max): (i64, i64),
    (b_min, b_max): (i64, i64),
    min_width: i64,
    mut cost: impl FnMut(i64, i64) -> f64,
) -> (i64, i64) {
    debug_assert!(b_max - a_min >= min_width);
    let (mut a, mut b) = (a_min, b_max);
    for _ in 0..MAX_ROUNDS {
        let nb = best_from_top(b_min.max(a + min_width), b_max, |b| cost(a, b));
        let na = best_from_bottom(a_min, a_max.min(nb - min_width), |a| cost(a, nb));
        if (na, nb) == (a, b) {
            break;
        }
        (a, b) = (na, nb);
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descent_finds_a_separable_minimum_and_prefers_less_clipping() {
        let cost = |a: i64, b: i64| ((a + 7) * (a + 7) + (b - 11) * (b - 11)) as f64;
        assert_eq!(descend((-20, 0), (0, 30), 1, cost), (-7, 11));
        assert_eq!(best_from_top(0, 10, |_| 1.0), 10);
        assert_eq!(best_from_bottom(-10, 0, |_| 1.0), -10);
        // The width constraint is kept.
        let (a, b) = descend((-20, 0), (0, 30), 25, cost);
        assert!(b - a >= 25, "{a} {b}");
    }
}
