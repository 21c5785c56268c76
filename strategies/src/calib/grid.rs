//! The integer grid a clipping range implies, and the squared error of rounding onto it.
//!
//! A grid is `k·step` for integer `k` in `[kmin, kmax]` (`kmin <= 0 <= kmax`, so 0 is exact); values round
//! half to even and saturate, as ONNX `QuantizeLinear` and the schemes do. The calibrators model the grid in
//! `f64`; the schemes compute the same grid in `f32`, which moves it by far less than a step.

use super::histogram::Piece;

/// Rounds half to even without a libm call (`round_ties_even` and `floor` are calls on baseline x86-64, and
/// the MSE rules round millions of times): adding and removing 1.5·2^52 is exact for `|x| < 2^51`.
pub(crate) fn round_even(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    (x + MAGIC) - MAGIC
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Grid {
    pub step: f64,
    pub kmin: f64,
    pub kmax: f64,
}

impl Grid {
    /// `[-t, t]` on the restricted symmetric range `|k| <= 2^(bits-1) - 1`.
    pub fn symmetric(t: f64, bits: u32) -> Grid {
        let m = ((1u32 << (bits - 1)) - 1) as f64;
        Grid {
            step: t / m,
            kmin: -m,
            kmax: m,
        }
    }

    /// `[lo, hi]` (`lo <= 0 <= hi`) on `2^bits` levels, the zero point rounded so that 0 is a level.
    pub fn affine(lo: f64, hi: f64, bits: u32) -> Grid {
        let levels = ((1u32 << bits) - 1) as f64;
        let step = (hi - lo) / levels;
        if step <= 0.0 {
            return Grid {
                step: 0.0,
                kmin: 0.0,
                kmax: 0.0,
            };
        }
        let z = (-lo / step).round_ties_even().clamp(0.0, levels);
        Grid {
            step,
            kmin: -z,
            kmax: levels - z,
        }
    }

    /// Quantize then dequantize.
    pub fn qdq(&self, x: f64) -> f64 {
        if self.step == 0.0 {
            return 0.0;
        }
        // Clamping to the integer bounds first gives the same result and keeps the argument small.
        round_even((x / self.step).clamp(self.kmin, self.kmax)) * self.step
    }

    /// `∫ r(s)² ds` over `[-step/2, x]`, where `r` is the rounding error inside the grid: `r` has period
    /// `step` and equals `s` on `[-step/2, step/2]`, so each whole period adds `step³/12` and the partial one
    /// (of length `f`) adds `((f - step/2)³ + (step/2)³)/3`.
    fn rounding_antiderivative(&self, x: f64) -> f64 {
        let s = self.step;
        let t = x / s + 0.5;
        // `n` is `floor(t)`, or `t - 1` when `t` is an integer (a tie of the rounding); then `f = s`, and the
        // formula gives the same value as `(t, f = 0)` since the antiderivative is continuous.
        let n = round_even(t - 0.5);
        let f = (t - n) * s;
        n * s * s * s / 12.0 + ((f - s / 2.0).powi(3) + (s / 2.0).powi(3)) / 3.0
    }

    /// `∫_u^v (x - qdq(x))² dx` for `u <= v`: clipping error outside the grid, rounding error inside.
    pub fn sq_error_integral(&self, u: f64, v: f64) -> f64 {
        let (l, h) = (self.kmin * self.step, self.kmax * self.step);
        let mut e = 0.0;
        if u < l {
            let b = v.min(l);
            e += ((l - u).powi(3) - (l - b).powi(3)) / 3.0;
        }
        if v > h {
            let a = u.max(h);
            e += ((v - h).powi(3) - (a - h).powi(3)) / 3.0;
        }
        let (a, b) = (u.max(l), v.min(h));
        if b > a && self.step > 0.0 {
            e += self.rounding_antiderivative(b) - self.rounding_antiderivative(a);
        }
        e
    }

    /// Expected squared error of a piece whose values are spread uniformly over `[lo, hi]`, times its count.
    /// Pieces narrower than a millionth of a step (point masses) are evaluated at their midpoint, where the
    /// integral would cancel catastrophically.
    pub fn piece_error(&self, p: &Piece) -> f64 {
        let width = p.hi - p.lo;
        if width <= self.step * 1e-6 || width <= f64::MIN_POSITIVE {
            let m = 0.5 * (p.lo + p.hi);
            let d = m - self.qdq(m);
            p.count * d * d
        } else {
            p.count * self.sq_error_integral(p.lo, p.hi) / width
        }
    }

    /// Total expected squared error over pieces.
    pub fn error(&self, pieces: &[Piece]) -> f64 {
        pieces.iter().map(|p| self.piece_error(p)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The closed-form integral agrees with a fine midpoint sum on intervals that straddle levels and both
    /// clipping edges.
    #[test]
    fn integral_matches_numeric_quadrature() {
        let grids = [
            Grid::symmetric(1.0, 3),
            Grid::affine(-0.3, 2.0, 4),
            Grid::affine(0.0, 1.0, 2),
        ];
        let intervals = [
            (-2.0, 2.5),
            (0.01, 0.37),
            (-0.4, -0.1),
            (0.9, 1.7),
            (0.5, 0.5001),
        ];
        for g in grids {
            for (u, v) in intervals {
                let n = 200_000;
                let dx = (v - u) / n as f64;
                let numeric: f64 = (0..n)
                    .map(|i| {
                        let x = u + (i as f64 + 0.5) * dx;
                        (x - g.qdq(x)).powi(2) * dx
                    })
                    .sum();
                let exact = g.sq_error_integral(u, v);
                assert!(
                    (exact - numeric).abs() <= 1e-6 * numeric.max(1e-9),
                    "{g:?} on [{u}, {v}]: {exact} vs {numeric}"
                );
            }
        }
    }

    #[test]
    fn affine_grid_keeps_zero_exact() {
        let g = Grid::affine(-1.0, 3.0, 8);
        assert_eq!(g.qdq(0.0), 0.0);
        assert_eq!(g.kmax - g.kmin, 255.0);
        assert!((g.kmin * g.step + 1.0).abs() <= g.step / 2.0);
        let s = Grid::symmetric(2.0, 8);
        assert_eq!((s.kmin, s.kmax), (-127.0, 127.0));
        assert_eq!(s.qdq(5.0), 2.0);
        assert_eq!(Grid::affine(0.0, 0.0, 8).qdq(3.0), 0.0);
    }
}
