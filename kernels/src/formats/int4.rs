//! 4-bit weights for group-wise weight-only GEMM ([`crate::GemmW4`]) and the dynamic int8 activations of its
//! integer path.
//!
//! Weights are unsigned nibbles `q` in `0..=15` with, per group of `group` consecutive rows of `k` and per
//! column, an `f32` scale and a `u8` zero point in `0..=15`: `w[p][j] = (q[p][j] - zp[g][j]) * scale[g][j]`
//! with `g = p / group`. `group` is one of [`GROUPS`]; `k` need not be a multiple of it (the last group is
//! short). Symmetric quantization is `zp = 8` everywhere.
//!
//! Dynamic activations ([`quantize_row_dyn_i8`]): each row of `A` is scaled by `127 / max|a|` and rounded to
//! nearest even, giving `i8` in `-127..=127` and the row scale `max|a| / 127`. The reference and every kernel
//! use this one function, so their integer dot products are identical.

/// Supported group sizes (rows of `k` sharing one scale and zero point).
pub const GROUPS: [usize; 3] = [32, 64, 128];

/// Largest nibble value.
pub const MAX_Q: u8 = 15;

/// Number of groups along a depth of `k`.
pub fn group_count(k: usize, group: usize) -> usize {
    k.div_ceil(group)
}

/// Packs nibbles two per byte: element `2i` in the low nibble of byte `i`, element `2i + 1` in the high nibble;
/// an odd tail leaves the last high nibble zero. Values must be `<= 15`.
pub fn pack_nibbles(values: &[u8]) -> Vec<u8> {
    values
        .chunks(2)
        .map(|pair| {
            debug_assert!(pair.iter().all(|&v| v <= MAX_Q));
            pair[0] | pair.get(1).map_or(0, |&hi| hi << 4)
        })
        .collect()
}

/// The first `len` nibbles of `bytes`, inverse of [`pack_nibbles`].
pub fn unpack_nibbles(bytes: &[u8], len: usize) -> Vec<u8> {
    (0..len).map(|e| nibble(bytes, e)).collect()
}

/// Element `e` of a [`pack_nibbles`] buffer.
#[inline]
pub fn nibble(bytes: &[u8], e: usize) -> u8 {
    (bytes[e / 2] >> (4 * (e % 2))) & 0x0F
}

/// Panics unless the [`crate::GemmW4::pack_b`] arguments are consistent: `q` holds `k x n` values `<= 15`,
/// `group` is one of [`GROUPS`], `scales` and `zero_points` hold `ceil(k / group) x n` values, zero points
/// `<= 15`.
pub fn assert_pack_args(
    kernel: &str,
    q: &[u8],
    k: usize,
    n: usize,
    group: usize,
    scales: &[f32],
    zero_points: &[u8],
) {
    assert!(
        GROUPS.contains(&group),
        "{kernel}: group {group} is not one of {GROUPS:?}"
    );
    assert!(
        q.len() >= k * n,
        "{kernel}: q has {} values, {k}x{n} needs {}",
        q.len(),
        k * n
    );
    let params = group_count(k, group) * n;
    assert!(
        scales.len() >= params && zero_points.len() >= params,
        "{kernel}: {} scales and {} zero points; {k}x{n} in groups of {group} needs {params} of each",
        scales.len(),
        zero_points.len()
    );
    assert!(
        q[..k * n]
            .iter()
            .chain(&zero_points[..params])
            .all(|&v| v <= MAX_Q),
        "{kernel}: a weight or zero point exceeds {MAX_Q}"
    );
}

/// Dequantized row-major `k x n` weights (`f32`, evaluated as `(q - zp) as f32 * scale`).
pub fn dequantize(
    q: &[u8],
    k: usize,
    n: usize,
    group: usize,
    scales: &[f32],
    zero_points: &[u8],
) -> Vec<f32> {
    (0..k * n)
        .map(|e| {
            let (p, j) = (e / n, e % n);
            let g = (p / group) * n + j;
            (q[e] as i32 - zero_points[g] as i32) as f32 * scales[g]
        })
        .collect()
}

/// Quantized weights: `(q, scales, zero_points)` as [`crate::GemmW4::pack_b`] takes them.
pub type QuantizedW4 = (Vec<u8>, Vec<f32>, Vec<u8>);

/// Round-to-nearest group-wise quantization of row-major `w` (`k x n`): symmetric (`zp = 8`, scale
/// `max|w| / 7`) or affine (scale `(max - min) / 15` over the group, `zp` the rounded `-min / scale`). For
/// tests and benchmarks; the strategies crate owns the quantizers models use.
pub fn quantize_groupwise(
    w: &[f32],
    k: usize,
    n: usize,
    group: usize,
    symmetric: bool,
) -> QuantizedW4 {
    let groups = group_count(k, group);
    let mut scales = vec![0f32; groups * n];
    let mut zps = vec![8u8; groups * n];
    let mut q = vec![0u8; k * n];
    for g in 0..groups {
        let rows = g * group..((g + 1) * group).min(k);
        for j in 0..n {
            let col = || rows.clone().map(|p| w[p * n + j]);
            let (lo, hi) = col().fold((0f32, 0f32), |(lo, hi), v| (lo.min(v), hi.max(v)));
            let (scale, zp) = if symmetric {
                (lo.abs().max(hi) / 7.0, 8u8)
            } else {
                let s = (hi - lo) / 15.0;
                let zp = if s > 0.0 {
                    (-lo / s).round().clamp(0.0, 15.0) as u8
                } else {
                    8
                };
                (s, zp)
            };
            let scale = if scale > 0.0 { scale } else { 1.0 };
            scales[g * n + j] = scale;
            zps[g * n + j] = zp;
            for p in rows.clone() {
                let v = (w[p * n + j] / scale).round_ties_even() + zp as f32;
                q[p * n + j] = v.clamp(0.0, 15.0) as u8;
            }
        }
    }
    (q, scales, zps)
}

/// Dynamically quantizes one activation row: writes `round_ties_even(x * 127 / max|x|)` (in `-127..=127`) to
/// `out` and returns the row scale `max|x| / 127` (0 for an all-zero row, whose codes are all 0). Activations
/// must be finite.
pub fn quantize_row_dyn_i8(x: &[f32], out: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        out[..x.len()].fill(0);
        return 0.0;
    }
    let inv = 127.0 / amax;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    amax / 127.0
}

/// [`quantize_row_dyn_i8`] over the `m` rows of `a` (row-major, leading dimension `lda`): returns the codes,
/// row-major with leading dimension `ld_out >= k` (the padding is zero), and the `m` row scales.
pub fn quantize_rows_dyn_i8(
    a: &[f32],
    m: usize,
    k: usize,
    lda: usize,
    ld_out: usize,
) -> (Vec<i8>, Vec<f32>) {
    let mut codes = vec![0i8; m * ld_out];
    let scales = (0..m)
        .map(|i| {
            quantize_row_dyn_i8(
                &a[i * lda..i * lda + k],
                &mut codes[i * ld_out..i * ld_out + k],
            )
        })
        .collect();
    (codes, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibbles_round_trip_exactly() {
        for len in [0usize, 1, 2, 7, 32, 33] {
            let v: Vec<u8> = (0..len).map(|i| (i * 7 % 16) as u8).collect();
            let packed = pack_nibbles(&v);
            assert_eq!(packed.len(), len.div_ceil(2));
            assert_eq!(unpack_nibbles(&packed, len), v);
        }
        assert_eq!(pack_nibbles(&[0x3, 0xA]), [0xA3]);
    }

    #[test]
    fn dynamic_rows_use_the_full_range() {
        let mut q = [0i8; 4];
        let s = quantize_row_dyn_i8(&[0.5, -1.0, 0.25, 0.0], &mut q);
        assert_eq!(q, [64, -127, 32, 0]); // 63.5 ties to even 64; 31.75 rounds to 32
        assert_eq!(s, 1.0 / 127.0);
        assert_eq!(quantize_row_dyn_i8(&[0.0; 4], &mut q), 0.0);
        assert_eq!(q, [0; 4]);
    }

    #[test]
    fn groupwise_quantization_round_trips_within_half_a_step() {
        let (k, n, group) = (70, 5, 32);
        let mut rng = crate::testing::Rng::new(3);
        let w = rng.f32s(k * n);
        for symmetric in [true, false] {
            let (q, s, zp) = quantize_groupwise(&w, k, n, group, symmetric);
            let d = dequantize(&q, k, n, group, &s, &zp);
            for e in 0..k * n {
                let scale = s[(e / n / group) * n + e % n];
                // Affine zero points are rounded, which can clip the group's extreme by up to another half step.
                let steps = if symmetric { 1.0 } else { 2.0 };
                let budget =
                    crate::testing::tolerance::quant_roundtrip_max_diff(steps * scale, w[e].abs());
                assert!(
                    (w[e] - d[e]).abs() <= budget,
                    "{symmetric} {e}: {} vs {}",
                    w[e],
                    d[e]
                );
            }
        }
    }
}
