//! Seeded, stratified, disjoint calibration / evaluation splits of a labelled data set.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::DataError;

/// Sample indices of the two disjoint sides of a split, each sorted ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub calibration: Vec<usize>,
    pub evaluation: Vec<usize>,
}

/// Splits `labels.len()` samples into `calibration` and `evaluation` index sets of exactly those
/// sizes, disjoint, with each class contributing in proportion to its frequency (largest-remainder
/// rounding, ties to the smaller label). Within each class, samples are drawn after a shuffle by
/// one `StdRng` seeded from `seed` (classes visited in ascending label order), so the same inputs
/// and seed always give the same split.
pub fn stratified_split(
    labels: &[i64],
    calibration: usize,
    evaluation: usize,
    seed: u64,
) -> Result<Split, DataError> {
    if calibration == 0 {
        return Err(DataError::ZeroSplit {
            which: "calibration",
        });
    }
    if evaluation == 0 {
        return Err(DataError::ZeroSplit {
            which: "evaluation",
        });
    }
    let n = labels.len();
    let too_large = || DataError::SplitTooLarge {
        calibration,
        evaluation,
        available: n,
    };
    if calibration.checked_add(evaluation).ok_or_else(too_large)? > n {
        return Err(too_large());
    }

    let mut classes: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        classes.entry(label).or_default().push(i);
    }
    let sizes: Vec<usize> = classes.values().map(Vec::len).collect();
    let cal_shares = apportion(calibration, &sizes, n);
    let eval_shares = apportion(evaluation, &sizes, n);

    for ((&label, members), (&c, &e)) in classes.iter().zip(cal_shares.iter().zip(&eval_shares)) {
        if c + e > members.len() {
            return Err(DataError::ClassTooSmall {
                label,
                available: members.len(),
                calibration: c,
                evaluation: e,
            });
        }
    }

    let mut rng = StdRng::seed_from_u64(seed);
    let mut split = Split {
        calibration: Vec::with_capacity(calibration),
        evaluation: Vec::with_capacity(evaluation),
    };
    for ((_, mut members), (c, e)) in classes
        .into_iter()
        .zip(cal_shares.into_iter().zip(eval_shares))
    {
        members.shuffle(&mut rng);
        split.calibration.extend_from_slice(&members[..c]);
        split.evaluation.extend_from_slice(&members[c..c + e]);
    }
    split.calibration.sort_unstable();
    split.evaluation.sort_unstable();
    Ok(split)
}

/// Largest-remainder apportionment of `total` over classes of the given `sizes` (summing to `n`):
/// each class gets `floor(total * size / n)`, and the leftover units go one each to the classes
/// with the largest remainders (ties to the earlier class). The result sums to exactly `total`
/// and each share is within 1 of `total * size / n`.
fn apportion(total: usize, sizes: &[usize], n: usize) -> Vec<usize> {
    if n == 0 {
        return vec![0; sizes.len()];
    }
    let (total, n128) = (total as u128, n as u128);
    let mut shares = Vec::with_capacity(sizes.len());
    let mut remainders = Vec::with_capacity(sizes.len());
    for (i, &size) in sizes.iter().enumerate() {
        let exact = total * size as u128;
        // floor(total * size / n) <= total, which came from a usize.
        shares.push((exact / n128) as usize);
        remainders.push((exact % n128, i));
    }
    let given: usize = shares.iter().sum();
    let leftover = (total as usize).saturating_sub(given);
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take(leftover) {
        shares[i] += 1;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::apportion;

    #[test]
    fn apportion_is_exact_and_within_one() {
        let sizes = [7, 3, 11, 1, 0, 5];
        let n: usize = sizes.iter().sum();
        for total in 0..=n {
            let shares = apportion(total, &sizes, n);
            assert_eq!(shares.iter().sum::<usize>(), total);
            for (&s, &size) in shares.iter().zip(&sizes) {
                let exact = total as f64 * size as f64 / n as f64;
                assert!((s as f64 - exact).abs() < 1.0, "{s} vs {exact}");
            }
        }
    }
}
