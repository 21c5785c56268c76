//! The loop nest around a GEMM micro-kernel: cache blocking (rows by `mc`, depth by `kc`), the walk over packed
//! B panels and register tiles, and the rayon split. A kernel family supplies only the tile function; packing
//! layouts are the kernel's own (see [`crate::frame::pack`]).
//!
//! Loop order inside one task: row block (`mc`) > depth block (`kc`) > B panel (`nr` columns) > register tile
//! (`mr` rows). A panel's depth block stays in L1 while the row tiles stream past it; the row block of A stays
//! in L2 across panels. Depth blocks accumulate into C in order, so per-element summation order is the plain
//! `p = 0..k` order whatever `kc` is.
//!
//! Threading: with more than one thread in the current rayon pool and at least [`PAR_MIN_MACS`] multiply-adds,
//! rows are split when there are at least two register tiles per thread; otherwise, when there are at least two
//! B panels per thread (few rows, e.g. `m = 1`), columns are split, each task filling a private block that is
//! copied into C afterwards. With one thread everything runs inline.

use std::ops::Range;

use rayon::prelude::*;

/// Register tile and cache blocks of a packed-B kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// Rows of the register tile.
    pub mr: usize,
    /// Columns of one packed B panel (the register tile's width).
    pub nr: usize,
    /// Depth of one k block.
    pub kc: usize,
    /// Rows of one cache block; a multiple of `mr`.
    pub mc: usize,
}

/// One micro-kernel call: `C[i0 .. i0+rows, panel*nr .. panel*nr+cols] (+)= A[i0.., p0 .. p0+kc] * B[p0 .. p0+kc,
/// panel]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// First row of A and C.
    pub i0: usize,
    /// Rows in this tile, `1..=mr`.
    pub rows: usize,
    /// Index of the packed B panel; its first column is `panel * nr`.
    pub panel: usize,
    /// Valid columns of the panel, `1..=nr` (the rest is zero padding and must not be stored).
    pub cols: usize,
    /// First depth index of this k block.
    pub p0: usize,
    /// Depth of this k block; 0 only when `k == 0` (then the tile stores zeros).
    pub kc: usize,
    /// First k block: overwrite C instead of accumulating into it.
    pub first: bool,
    /// Last k block: apply any epilogue (e.g. per-column scales) before storing.
    pub last: bool,
}

/// Below this many multiply-adds the kernels never fork rayon tasks.
pub const PAR_MIN_MACS: usize = 1 << 16;

/// Runs `tile` over every register tile of an `m x n` (depth `k`) product. `tile(t, c_tile, ldc)` gets C starting
/// at the tile's top-left element, with row stride `ldc`; it reads A and the packed B itself.
///
/// # Panics
/// If `c` is shorter than `(m - 1) * ldc + n` or `ldc < n` (when `m, n > 0`).
#[allow(clippy::too_many_arguments)]
pub fn drive<C, F>(blk: Blocking, m: usize, n: usize, k: usize, c: &mut [C], ldc: usize, tile: F)
where
    C: Copy + Default + Send,
    F: Fn(&Tile, &mut [C], usize) + Sync,
{
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n, "gemm: ldc ({ldc}) < n ({n})");
    let needed = (m - 1) * ldc + n;
    assert!(
        c.len() >= needed,
        "gemm: c has {} elements, an {m}x{n} result with ldc {ldc} needs {needed}",
        c.len()
    );
    let c = &mut c[..needed];
    let panels = n.div_ceil(blk.nr);
    let threads = rayon::current_num_threads();
    let parallel = threads > 1 && m.saturating_mul(n).saturating_mul(k.max(1)) >= PAR_MIN_MACS;

    if parallel && m >= 2 * blk.mr * threads {
        let chunk_rows = m.div_ceil(4 * threads).next_multiple_of(blk.mr);
        c.par_chunks_mut(chunk_rows * ldc)
            .enumerate()
            .for_each(|(ci, cc)| {
                let r0 = ci * chunk_rows;
                let rows = chunk_rows.min(m - r0);
                run_block(&blk, r0, rows, 0..panels, n, k, cc, ldc, 0, &tile);
            });
    } else if parallel && panels >= 2 * threads {
        let per_task = panels.div_ceil(2 * threads);
        let blocks: Vec<(usize, usize, Vec<C>)> = (0..panels.div_ceil(per_task))
            .into_par_iter()
            .map(|g| {
                let panel_range = g * per_task..((g + 1) * per_task).min(panels);
                let j0 = panel_range.start * blk.nr;
                let width = (panel_range.end * blk.nr).min(n) - j0;
                let mut local = vec![C::default(); m * width];
                run_block(&blk, 0, m, panel_range, n, k, &mut local, width, j0, &tile);
                (j0, width, local)
            })
            .collect();
        for (j0, width, local) in blocks {
            for (i, row) in local.chunks_exact(width).enumerate() {
                c[i * ldc + j0..i * ldc + j0 + width].copy_from_slice(row);
            }
        }
    } else {
        run_block(&blk, 0, m, 0..panels, n, k, c, ldc, 0, &tile);
    }
}

/// Rows `r0 .. r0+rows` and the given panels; `c` starts at row `r0`, column `c_col0`.
#[allow(clippy::too_many_arguments)]
fn run_block<C, F>(
    blk: &Blocking,
    r0: usize,
    rows: usize,
    panels: Range<usize>,
    n: usize,
    k: usize,
    c: &mut [C],
    ldc: usize,
    c_col0: usize,
    tile: &F,
) where
    F: Fn(&Tile, &mut [C], usize),
{
    let k_blocks = if k == 0 { 1 } else { k.div_ceil(blk.kc) };
    for ic in (0..rows).step_by(blk.mc) {
        let block_rows = blk.mc.min(rows - ic);
        for kb in 0..k_blocks {
            let p0 = kb * blk.kc;
            let kc = blk.kc.min(k - p0);
            for panel in panels.clone() {
                let j0 = panel * blk.nr;
                let cols = blk.nr.min(n - j0);
                for ir in (0..block_rows).step_by(blk.mr) {
                    let local_row = ic + ir;
                    let t = Tile {
                        i0: r0 + local_row,
                        rows: blk.mr.min(block_rows - ir),
                        panel,
                        cols,
                        p0,
                        kc,
                        first: kb == 0,
                        last: kb + 1 == k_blocks,
                    };
                    tile(&t, &mut c[local_row * ldc + j0 - c_col0..], ldc);
                }
            }
        }
    }
}

/// Panics unless `a` (row-major, `m x k`, leading dimension `lda`) is large enough: the kernels' guard against
/// programming errors (callers validate shapes).
pub fn assert_a<T>(kernel: &str, m: usize, k: usize, a: &[T], lda: usize) {
    if m == 0 {
        return;
    }
    assert!(lda >= k, "{kernel}: lda ({lda}) < k ({k})");
    let needed = (m - 1) * lda + k;
    assert!(
        a.len() >= needed,
        "{kernel}: a has {} elements, {m}x{k} with lda {lda} needs {needed}",
        a.len()
    );
}

/// Panics unless `b` was packed by `kernel`, for `k` rows, with `data` of `len` elements.
pub fn assert_packed<T>(kernel: &str, b: &crate::PackedB<T>, len: usize) {
    assert!(
        b.kernel == kernel,
        "{kernel}: B was packed by `{}`; pack it with this kernel's pack_b",
        b.kernel
    );
    assert!(
        b.data.len() == len,
        "{kernel}: packed B has {} elements, expected {len}",
        b.data.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tile function that records coverage: every C element must be written exactly once per k block.
    fn coverage(m: usize, n: usize, k: usize, blk: Blocking) -> Vec<usize> {
        let ldc = n + 3;
        let mut c = vec![0usize; (m.max(1) - 1) * ldc + n];
        drive(blk, m, n, k, &mut c, ldc, |t, ct, ldc| {
            assert!(t.rows >= 1 && t.rows <= blk.mr && t.cols >= 1 && t.cols <= blk.nr);
            assert!(t.kc <= blk.kc && t.p0 + t.kc <= k.max(t.p0));
            for r in 0..t.rows {
                for j in 0..t.cols {
                    ct[r * ldc + j] = if t.first { 1 } else { ct[r * ldc + j] + 1 };
                }
            }
        });
        (0..m)
            .flat_map(|i| c[i * ldc..i * ldc + n].to_vec())
            .collect()
    }

    #[test]
    fn every_element_is_visited_once_per_k_block() {
        let blk = Blocking {
            mr: 4,
            nr: 8,
            kc: 16,
            mc: 8,
        };
        for (m, n, k) in [
            (1, 1, 0usize),
            (1, 200, 33),
            (7, 9, 16),
            (13, 17, 40),
            (200, 40, 90),
            (3, 64, 5),
        ] {
            let want = if k == 0 { 1 } else { k.div_ceil(blk.kc) };
            assert!(
                coverage(m, n, k, blk).iter().all(|&v| v == want),
                "{m}x{n}x{k}"
            );
        }
    }

    #[test]
    fn threaded_splits_cover_everything() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let blk = Blocking {
            mr: 4,
            nr: 4,
            kc: 64,
            mc: 16,
        };
        pool.install(|| {
            // Row split, column split, and inline.
            for (m, n, k) in [(100, 30, 70usize), (1, 300, 300), (2, 5, 10_000)] {
                let want = k.div_ceil(blk.kc);
                assert!(
                    coverage(m, n, k, blk).iter().all(|&v| v == want),
                    "{m}x{n}x{k}"
                );
            }
        });
    }
}
