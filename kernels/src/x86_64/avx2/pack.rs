//! The k-groups-of-4 B layout shared by the x86 int8 kernels: panels of `nr` columns; inside a panel, for each
//! group of 4 consecutive depths, each column's 4 values are contiguous, so one 32-bit lane (`i8`, for VNNI's
//! `vpdpbusd`) or one 64-bit lane (`i16`, for AVX2's `vpmaddwd`) holds them. Element `B[p][jp*nr + t]` lands at
//! `((jp * groups + p/4) * nr + t) * 4 + p%4`, `groups = ceil(k/4)`. Depth and columns are zero-padded, so
//! micro-kernels never branch on ragged `k` or `n` when reading B.

/// Packs row-major `b` (`k x n`) into the k-groups-of-4 layout, converting each value with `T::from`.
///
/// # Panics
/// If `b` is shorter than `k * n` or `nr == 0`.
pub fn pack_k4<T: Copy + Default + From<i8>>(b: &[i8], k: usize, n: usize, nr: usize) -> Vec<T> {
    assert!(nr > 0, "pack_k4: nr must be positive");
    assert!(
        b.len() >= k * n,
        "pack_k4: b has {} elements, {k}x{n} needs {}",
        b.len(),
        k * n
    );
    let groups = k.div_ceil(4);
    let panels = n.div_ceil(nr);
    let mut out = vec![T::default(); panels * groups * nr * 4];
    for p in 0..k {
        let (g, r) = (p / 4, p % 4);
        for (j, &v) in b[p * n..p * n + n].iter().enumerate() {
            let (jp, t) = (j / nr, j % nr);
            out[((jp * groups + g) * nr + t) * 4 + r] = T::from(v);
        }
    }
    out
}

/// Number of elements [`pack_k4`] produces.
pub fn packed_len_k4(k: usize, n: usize, nr: usize) -> usize {
    n.div_ceil(nr) * k.div_ceil(4) * nr * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_every_element_and_pads_with_zeros() {
        let (k, n, nr) = (6, 5, 4);
        let b: Vec<i8> = (1..=30).collect();
        let packed: Vec<i16> = pack_k4(&b, k, n, nr);
        assert_eq!(packed.len(), packed_len_k4(k, n, nr));
        assert_eq!(packed.len(), 2 * 2 * 4 * 4);
        for p in 0..k {
            for j in 0..n {
                let (jp, t) = (j / nr, j % nr);
                assert_eq!(
                    packed[((jp * 2 + p / 4) * nr + t) * 4 + p % 4],
                    b[p * n + j] as i16
                );
            }
        }
        let nonzero = packed.iter().filter(|&&v| v != 0).count();
        assert_eq!(nonzero, k * n);
    }

    #[test]
    fn empty_depth_packs_nothing() {
        assert!(pack_k4::<i8>(&[], 0, 7, 16).is_empty());
    }
}
