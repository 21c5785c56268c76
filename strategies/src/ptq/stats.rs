//! Streaming calibration statistics of one layer's input rows, in memory that does not grow with the number of
//! rows: the GPTQ Hessian proxy, the input mean, and a uniform sub-sample of rows.
//!
//! Every accumulator checks a batch (width, finiteness) before folding it in, so a rejected batch leaves it as
//! it was; sums are kept in f64.

use ndarray::{Array1, Array2, ArrayView2, Axis, linalg::general_mat_mul};

use super::rng::SplitMix64;
use super::{PtqError, check_finite, shape_mismatch};

fn check_batch(op: &'static str, x_rows: ArrayView2<f32>, k: usize) -> Result<(), PtqError> {
    if x_rows.ncols() != k {
        return Err(shape_mismatch(
            op,
            "x_rows",
            x_rows.shape(),
            "the accumulator's width",
            &[k],
        ));
    }
    check_finite(op, "x_rows", x_rows)
}

/// Accumulates `X^T X` over batches of input rows and hands out the GPTQ Hessian proxy `H = 2 X^T X / N`
/// (Frantar et al. 2022, eq. 1, averaged over the `N` rows as the reference implementation does; the scale of
/// `H` does not change GPTQ, whose dampening is relative).
///
/// Memory: `k * k` f64 (78 MB for `k = 3136`). Each batch costs one f64 GEMM.
#[derive(Clone, Debug)]
pub struct HessianAccumulator {
    xtx: Array2<f64>,
    rows: u64,
}

impl HessianAccumulator {
    /// An empty accumulator for rows of `k` features.
    pub fn new(k: usize) -> Self {
        HessianAccumulator {
            xtx: Array2::zeros((k, k)),
            rows: 0,
        }
    }

    /// Features per row.
    pub fn k(&self) -> usize {
        self.xtx.nrows()
    }

    /// Rows folded in so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Folds in a batch of rows (`[batch, k]`).
    pub fn add(&mut self, x_rows: ArrayView2<f32>) -> Result<(), PtqError> {
        check_batch("HessianAccumulator::add", x_rows, self.k())?;
        if x_rows.nrows() == 0 {
            return Ok(());
        }
        let x = x_rows.mapv(f64::from);
        general_mat_mul(1.0, &x.t(), &x, 1.0, &mut self.xtx);
        self.rows += x_rows.nrows() as u64;
        Ok(())
    }

    /// Adds another accumulator's rows (e.g. one filled by another thread or shard).
    pub fn merge(&mut self, other: &HessianAccumulator) -> Result<(), PtqError> {
        if other.k() != self.k() {
            return Err(shape_mismatch(
                "HessianAccumulator::merge",
                "other",
                &[other.k(), other.k()],
                "self",
                &[self.k(), self.k()],
            ));
        }
        self.xtx += &other.xtx;
        self.rows += other.rows;
        Ok(())
    }

    /// `H = 2 X^T X / N`, `[k, k]`.
    pub fn hessian(&self) -> Result<Array2<f64>, PtqError> {
        if self.rows == 0 {
            return Err(PtqError::NoSamples {
                op: "HessianAccumulator::hessian",
            });
        }
        Ok(&self.xtx * (2.0 / self.rows as f64))
    }
}

/// Accumulates the mean input row `E[x]` (`[k]`), for bias correction.
#[derive(Clone, Debug)]
pub struct MeanAccumulator {
    sum: Array1<f64>,
    rows: u64,
}

impl MeanAccumulator {
    /// An empty accumulator for rows of `k` features.
    pub fn new(k: usize) -> Self {
        MeanAccumulator {
            sum: Array1::zeros(k),
            rows: 0,
        }
    }

    /// Features per row.
    pub fn k(&self) -> usize {
        self.sum.len()
    }

    /// Rows folded in so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Folds in a batch of rows (`[batch, k]`).
    pub fn add(&mut self, x_rows: ArrayView2<f32>) -> Result<(), PtqError> {
        check_batch("MeanAccumulator::add", x_rows, self.k())?;
        for row in x_rows.axis_iter(Axis(0)) {
            self.sum.zip_mut_with(&row, |s, &v| *s += f64::from(v));
        }
        self.rows += x_rows.nrows() as u64;
        Ok(())
    }

    /// `E[x]`, `[k]`.
    pub fn mean(&self) -> Result<Array1<f64>, PtqError> {
        if self.rows == 0 {
            return Err(PtqError::NoSamples {
                op: "MeanAccumulator::mean",
            });
        }
        Ok(&self.sum / self.rows as f64)
    }
}

/// A uniform random sample of at most `capacity` input rows out of all rows seen (reservoir sampling,
/// Vitter's algorithm R), for AdaRound: bounded memory however many calibration rows stream past, and the same
/// sample for the same seed and row order, whatever the batch sizes.
#[derive(Clone, Debug)]
pub struct RowReservoir {
    k: usize,
    capacity: usize,
    data: Vec<f32>,
    held: usize,
    seen: u64,
    rng: SplitMix64,
}

impl RowReservoir {
    /// An empty reservoir of up to `capacity` rows of `k` features.
    pub fn new(k: usize, capacity: usize, seed: u64) -> Self {
        RowReservoir {
            k,
            capacity,
            data: Vec::new(),
            held: 0,
            seen: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// Rows offered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Offers a batch of rows (`[batch, k]`).
    pub fn add(&mut self, x_rows: ArrayView2<f32>) -> Result<(), PtqError> {
        check_batch("RowReservoir::add", x_rows, self.k)?;
        for row in x_rows.axis_iter(Axis(0)) {
            if self.held < self.capacity {
                self.data.extend(row.iter());
                self.held += 1;
            } else {
                let j = self.rng.below(self.seen + 1);
                if j < self.capacity as u64 {
                    let at = j as usize * self.k;
                    for (d, &v) in self.data[at..at + self.k].iter_mut().zip(row.iter()) {
                        *d = v;
                    }
                }
            }
            self.seen += 1;
        }
        Ok(())
    }

    /// The sampled rows, `[min(seen, capacity), k]`, in reservoir order.
    pub fn rows(&self) -> Array2<f32> {
        Array2::from_shape_vec((self.held, self.k), self.data.clone())
            .expect("the reservoir holds `held` rows of `k` values")
    }
}
