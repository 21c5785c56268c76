//! Packing of the right-hand side into column panels. A kernel picks the layout its micro-kernel streams;
//! panels are `nr` columns wide, the last one zero-padded, so micro-kernels never branch on ragged `n`.

/// Panels stored k-major: element `B[p][jp*nr + t]` lands at `(jp*k + p)*nr + t`. For micro-kernels that
/// broadcast one A value against a row of `nr` B values.
pub fn pack_k_major<T: Copy + Default>(b: &[T], k: usize, n: usize, nr: usize) -> Vec<T> {
    assert_b(b, k, n);
    let panels = n.div_ceil(nr);
    let mut out = vec![T::default(); panels * k * nr];
    for (jp, panel) in out
        .chunks_exact_mut((k * nr).max(1))
        .take(panels)
        .enumerate()
    {
        let j0 = jp * nr;
        let cols = nr.min(n - j0);
        for (p, dst) in panel.chunks_exact_mut(nr).enumerate() {
            dst[..cols].copy_from_slice(&b[p * n + j0..p * n + j0 + cols]);
        }
    }
    out
}

/// Panels stored column by column: element `B[p][jp*nr + t]` lands at `(jp*nr + t)*k + p`, i.e. B transposed
/// with `n` padded to a multiple of `nr`. For micro-kernels that take dot products along k.
pub fn pack_n_major<T: Copy + Default>(b: &[T], k: usize, n: usize, nr: usize) -> Vec<T> {
    assert_b(b, k, n);
    let padded_n = n.div_ceil(nr) * nr;
    let mut out = vec![T::default(); padded_n * k];
    if k == 0 {
        return out;
    }
    for (j, col) in out.chunks_exact_mut(k).take(n).enumerate() {
        for (p, dst) in col.iter_mut().enumerate() {
            *dst = b[p * n + j];
        }
    }
    out
}

fn assert_b<T>(b: &[T], k: usize, n: usize) {
    assert!(
        b.len() >= k * n,
        "pack_b: b has {} elements, {k}x{n} needs {}",
        b.len(),
        k * n
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_place_every_element() {
        let (k, n, nr) = (3, 5, 4);
        let b: Vec<i32> = (1..=15).collect();
        let km = pack_k_major(&b, k, n, nr);
        let nm = pack_n_major(&b, k, n, nr);
        assert_eq!(km.len(), 2 * k * nr);
        assert_eq!(nm.len(), 8 * k);
        for p in 0..k {
            for j in 0..n {
                let (jp, t) = (j / nr, j % nr);
                assert_eq!(km[(jp * k + p) * nr + t], b[p * n + j]);
                assert_eq!(nm[(jp * nr + t) * k + p], b[p * n + j]);
            }
        }
        // Padding columns are zero.
        assert!((0..k).all(|p| (1..nr).all(|t| km[(k + p) * nr + t] == 0)));
        assert!(nm[5 * k..].iter().all(|&v| v == 0));
    }
}
