//! The dense f64 factorizations GPTQ needs: a blocked Cholesky factorization and a blocked inverse of a lower
//! triangular matrix, with the `O(k^3)` work in ndarray's GEMM (matrixmultiply, which picks AVX2/FMA or
//! AVX-512 at run time): for `k = 3136` (a 7x7x64 flattened feature map) both take about 2 s on one core.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};

/// Block size of the blocked algorithms: the unblocked parts are `O(k * BLOCK^2)`.
const BLOCK: usize = 64;

/// A Cholesky pivot that is not positive (or not finite): `(column, pivot)`.
pub(crate) type PivotFailure = (usize, f64);

/// Factors the symmetric positive definite `a` in place as `L L^T` (lower `L`; only the lower triangle of `a`
/// is read, the upper one is zeroed).
pub(crate) fn cholesky_lower(mut a: ArrayViewMut2<f64>) -> Result<(), PivotFailure> {
    let k = a.nrows();
    debug_assert_eq!(k, a.ncols());
    for j0 in (0..k).step_by(BLOCK) {
        let j1 = (j0 + BLOCK).min(k);
        // The diagonal block has had every earlier block's update: factor it unblocked.
        for j in j0..j1 {
            let mut d = a[[j, j]];
            for l in j0..j {
                d -= a[[j, l]] * a[[j, l]];
            }
            if !(d > 0.0 && d.is_finite()) {
                return Err((j, d));
            }
            let d = d.sqrt();
            a[[j, j]] = d;
            for i in j + 1..j1 {
                let mut v = a[[i, j]];
                for l in j0..j {
                    v -= a[[i, l]] * a[[j, l]];
                }
                a[[i, j]] = v / d;
            }
        }
        if j1 == k {
            break;
        }
        // Panel: L21 = A21 L11^-T.
        let l11_inv = lower_inverse(a.slice(s![j0..j1, j0..j1]));
        let a21 = a.slice(s![j1.., j0..j1]).to_owned();
        let mut l21 = Array2::zeros(a21.raw_dim());
        general_mat_mul(1.0, &a21, &l11_inv.t(), 0.0, &mut l21);
        a.slice_mut(s![j1.., j0..j1]).assign(&l21);
        // Trailing update A22 -= L21 L21^T, lower block columns only.
        for c0 in (j1..k).step_by(BLOCK) {
            let c1 = (c0 + BLOCK).min(k);
            let lhs = l21.slice(s![c0 - j1.., ..]);
            let rhs = l21.slice(s![c0 - j1..c1 - j1, ..]);
            general_mat_mul(
                -1.0,
                &lhs,
                &rhs.t(),
                1.0,
                &mut a.slice_mut(s![c0.., c0..c1]),
            );
        }
    }
    for i in 0..k {
        a.slice_mut(s![i, i + 1..]).fill(0.0);
    }
    Ok(())
}

/// The inverse of a lower triangular matrix with a non-zero diagonal (lower triangular too), by the block
/// identity `[[A, 0], [B, C]]^-1 = [[A^-1, 0], [-C^-1 B A^-1, C^-1]]`.
pub(crate) fn lower_inverse(l: ArrayView2<f64>) -> Array2<f64> {
    let k = l.nrows();
    if k <= BLOCK {
        return lower_inverse_unblocked(l);
    }
    let h = (k / 2).div_ceil(BLOCK) * BLOCK;
    let a_inv = lower_inverse(l.slice(s![..h, ..h]));
    let c_inv = lower_inverse(l.slice(s![h.., h..]));
    let b_a_inv = l.slice(s![h.., ..h]).dot(&a_inv);
    let mut out = Array2::zeros((k, k));
    out.slice_mut(s![..h, ..h]).assign(&a_inv);
    general_mat_mul(
        -1.0,
        &c_inv,
        &b_a_inv,
        0.0,
        &mut out.slice_mut(s![h.., ..h]),
    );
    out.slice_mut(s![h.., h..]).assign(&c_inv);
    out
}

/// Row by row: `X[i, ..i] = -(L[i, ..i] X[..i, ..i]) / L[i, i]`, `X[i, i] = 1 / L[i, i]`.
fn lower_inverse_unblocked(l: ArrayView2<f64>) -> Array2<f64> {
    let k = l.nrows();
    let mut x = Array2::<f64>::zeros((k, k));
    let mut row = vec![0.0f64; k];
    for i in 0..k {
        row[..i].fill(0.0);
        for c in 0..i {
            let coef = l[[i, c]];
            if coef != 0.0 {
                for (r, &xv) in row[..=c].iter_mut().zip(x.slice(s![c, ..=c])) {
                    *r += coef * xv;
                }
            }
        }
        let d = 1.0 / l[[i, i]];
        for (dst, &r) in x.slice_mut(s![i, ..i]).iter_mut().zip(&row[..i]) {
            *dst = -r * d;
        }
        x[[i, i]] = d;
    }
    x
}

/// The upper triangular `U` with `U^T U = H^-1` (the upper Cholesky factor of the inverse, which GPTQ's error
/// compensation reads row by row), for a symmetric positive definite `H` (lower triangle read).
///
/// Computed without forming `H^-1`: with `J` the reversal permutation, factor `J H J = M M^T` (lower `M`);
/// then `H = V V^T` with `V = J M J` upper, so `H^-1 = V^-T V^-1` and `U = V^-1 = J M^-1 J`. One Cholesky and
/// one triangular inverse (`2k^3/3` flops), where the reference's Cholesky, `cholesky_inverse` and second
/// Cholesky cost about `k^3`. A failing pivot is reported by its column in `H`.
pub(crate) fn inverse_upper_cholesky(h: ArrayView2<f64>) -> Result<Array2<f64>, PivotFailure> {
    let k = h.nrows();
    let mut reversed = h.slice(s![..;-1, ..;-1]).to_owned();
    cholesky_lower(reversed.view_mut()).map_err(|(col, pivot)| (k - 1 - col, pivot))?;
    let m_inv = lower_inverse(reversed.view());
    Ok(m_inv.slice(s![..;-1, ..;-1]).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symmetric positive definite matrix with a spread of eigenvalues: `B B^T + 0.1 I`.
    fn spd(k: usize, seed: u64) -> Array2<f64> {
        let mut rng = crate::ptq::rng::SplitMix64::new(seed);
        let b = Array2::from_shape_fn((k, k), |_| {
            (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        });
        b.dot(&b.t()) + Array2::<f64>::eye(k) * 0.1
    }

    fn max_abs_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    /// Sizes straddle the block size, so the panel, trailing-update and recursive paths all run.
    const SIZES: [usize; 6] = [1, 2, 63, 64, 65, 150];

    /// f64 factorizations of these well-conditioned matrices reproduce them to a few thousand ulps of their
    /// largest entry (`k` ~ 150 terms per dot product, each exact to an ulp).
    const FACTOR_TOL: f64 = 1e-10;

    #[test]
    fn cholesky_reproduces_the_matrix() {
        for k in SIZES {
            let a = spd(k, k as u64);
            let mut l = a.clone();
            cholesky_lower(l.view_mut()).unwrap();
            for i in 0..k {
                for j in i + 1..k {
                    assert_eq!(l[[i, j]], 0.0);
                }
            }
            assert!(
                max_abs_diff(&l.dot(&l.t()), &a) < FACTOR_TOL * k as f64,
                "k={k}"
            );
        }
    }

    #[test]
    fn lower_inverse_is_an_inverse() {
        for k in SIZES {
            let mut l = spd(k, 7 + k as u64);
            cholesky_lower(l.view_mut()).unwrap();
            let x = lower_inverse(l.view());
            assert!(
                max_abs_diff(&x.dot(&l), &Array2::eye(k)) < FACTOR_TOL * k as f64,
                "k={k}"
            );
        }
    }

    #[test]
    fn inverse_upper_cholesky_factors_the_inverse() {
        for k in SIZES {
            let h = spd(k, 99 + k as u64);
            let u = inverse_upper_cholesky(h.view()).unwrap();
            for i in 0..k {
                assert!(u[[i, i]] > 0.0);
                for j in 0..i {
                    assert_eq!(u[[i, j]], 0.0);
                }
            }
            // U^T U H = I.
            assert!(
                max_abs_diff(&u.t().dot(&u).dot(&h), &Array2::eye(k)) < FACTOR_TOL * k as f64,
                "k={k}"
            );
        }
    }

    #[test]
    fn a_non_positive_pivot_names_its_column() {
        let mut h = Array2::<f64>::eye(4);
        h[[2, 2]] = -1.0;
        assert_eq!(inverse_upper_cholesky(h.view()).unwrap_err(), (2, -1.0));
        let mut a = Array2::<f64>::eye(70);
        a[[66, 66]] = 0.0;
        assert_eq!(cholesky_lower(a.view_mut()).unwrap_err(), (66, 0.0));
    }
}
