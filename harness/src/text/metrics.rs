//! Fidelity of a candidate's sentence embeddings to the FP32 reference's, row by row over the same sentences:
//! - cosine similarity of each candidate row to its reference row, as the mean and the minimum over sentences;
//! - nearest-neighbour agreement: for each sentence, its nearest neighbour (highest cosine) among the *other*
//!   sentences, found with the reference embeddings and with the candidate's; the share of sentences where
//!   the two agree. Ties go to the lowest index in both.
//!
//! Rows need not be normalised; a zero row has cosine 0 to everything. Sums are in f64.

use ndarray::ArrayView2;

use super::TextError;

/// Fidelity of one candidate to the reference; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbeddingMetrics {
    pub mean_cosine: f64,
    pub min_cosine: f64,
    /// Fraction of sentences (0 to 1) whose nearest neighbour is unchanged; `None` for fewer than 3
    /// sentences, where the neighbour is forced.
    pub neighbour_agreement: Option<f64>,
    pub sentences: usize,
}

/// Cosine of `a` and `b` in f64 (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// Per-sentence cosine of `candidate` to `reference` (`[sentences, dim]` both).
pub fn row_cosines(
    reference: ArrayView2<f32>,
    candidate: ArrayView2<f32>,
) -> Result<Vec<f64>, TextError> {
    check_shapes(reference, candidate)?;
    Ok(reference
        .rows()
        .into_iter()
        .zip(candidate.rows())
        .map(|(r, c)| cosine(&r.to_vec(), &c.to_vec()))
        .collect())
}

/// For each row, the index of its most similar other row (`None` for a single row).
pub fn nearest_neighbours(embeddings: ArrayView2<f32>) -> Vec<Option<usize>> {
    let rows: Vec<Vec<f32>> = embeddings.rows().into_iter().map(|r| r.to_vec()).collect();
    (0..rows.len())
        .map(|i| {
            let mut best: Option<(usize, f64)> = None;
            for (j, row) in rows.iter().enumerate() {
                if j == i {
                    continue;
                }
                let s = cosine(&rows[i], row);
                if best.is_none_or(|(_, b)| s > b) {
                    best = Some((j, s));
                }
            }
            best.map(|(j, _)| j)
        })
        .collect()
}

/// Mean and minimum cosine and nearest-neighbour agreement of `candidate` to `reference`.
pub fn embedding_metrics(
    reference: ArrayView2<f32>,
    candidate: ArrayView2<f32>,
) -> Result<EmbeddingMetrics, TextError> {
    let cos = row_cosines(reference, candidate)?;
    let n = cos.len();
    let neighbour_agreement = (n >= 3).then(|| {
        let r = nearest_neighbours(reference);
        let c = nearest_neighbours(candidate);
        r.iter().zip(&c).filter(|(a, b)| a == b).count() as f64 / n as f64
    });
    Ok(EmbeddingMetrics {
        mean_cosine: cos.iter().sum::<f64>() / n as f64,
        min_cosine: cos.iter().copied().fold(f64::INFINITY, f64::min),
        neighbour_agreement,
        sentences: n,
    })
}

fn check_shapes(reference: ArrayView2<f32>, candidate: ArrayView2<f32>) -> Result<(), TextError> {
    if reference.dim() != candidate.dim() {
        return Err(TextError::Embeddings(format!(
            "reference shape {:?} and candidate shape {:?} differ",
            reference.shape(),
            candidate.shape()
        )));
    }
    if reference.nrows() == 0 {
        return Err(TextError::Embeddings("no sentences to compare".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn identical_embeddings_agree_fully() {
        let e = array![[1.0f32, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]];
        let m = embedding_metrics(e.view(), e.view()).unwrap();
        assert!((m.mean_cosine - 1.0).abs() < 1e-12 && (m.min_cosine - 1.0).abs() < 1e-12);
        assert_eq!(m.neighbour_agreement, Some(1.0));
        assert_eq!(
            nearest_neighbours(e.view()),
            vec![Some(1), Some(0), Some(3), Some(2)]
        );
    }

    #[test]
    fn scaled_rows_keep_cosine_and_a_swap_breaks_neighbours() {
        let r = array![[1.0f32, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]];
        let scaled = r.mapv(|v| v * 3.0);
        assert!(
            (embedding_metrics(r.view(), scaled.view())
                .unwrap()
                .min_cosine
                - 1.0)
                .abs()
                < 1e-9
        );
        // Row 3 moves next to rows 0 and 1: only its own neighbour changes (2 -> 1).
        let c = array![[1.0f32, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.2]];
        let m = embedding_metrics(r.view(), c.view()).unwrap();
        assert!(m.min_cosine < 0.4);
        assert_eq!(m.neighbour_agreement, Some(0.75));
    }

    #[test]
    fn mismatched_or_empty_inputs_are_errors() {
        let a = array![[1.0f32, 0.0]];
        let b = array![[1.0f32, 0.0, 0.0]];
        assert!(embedding_metrics(a.view(), b.view()).is_err());
        let e = ndarray::Array2::<f32>::zeros((0, 2));
        assert!(embedding_metrics(e.view(), e.view()).is_err());
        assert_eq!(
            embedding_metrics(a.view(), a.view())
                .unwrap()
                .neighbour_agreement,
            None
        );
    }
}
