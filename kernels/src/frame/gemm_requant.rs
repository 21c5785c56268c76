//! The static int8 layer as a GEMM followed by a requantization epilogue over row blocks: how every ISA without
//! a fused kernel implements [`GemmU8I8Requant`]. Rows go through in blocks whose i32 accumulators (at most
//! [`ACC_BLOCK_BYTES`]) stay in L2, so the epilogue reads them from cache instead of memory.

use crate::{GemmU8I8, GemmU8I8Requant, Isa, Kernel, PackedB, Requant, RequantU8};

/// Accumulator bytes of one row block: a quarter of a 1 MB L2, leaving room for A's rows and the packed B.
pub const ACC_BLOCK_BYTES: usize = 256 * 1024;

/// A [`GemmU8I8`] and a [`RequantU8`] of the same ISA tier, run one after the other per row block.
pub struct ComposedGemmRequant {
    pub name: &'static str,
    pub isa: Isa,
    pub gemm: &'static dyn GemmU8I8,
    pub requant: &'static dyn RequantU8,
}

impl Kernel for ComposedGemmRequant {
    fn name(&self) -> &'static str {
        self.name
    }
    fn isa(&self) -> Isa {
        self.isa
    }
}

impl GemmU8I8Requant for ComposedGemmRequant {
    fn pack_b(&self, b: &[i8], k: usize, n: usize) -> PackedB<i8> {
        self.gemm.pack_b(b, k, n)
    }

    fn gemm_requant(
        &self,
        m: usize,
        a: &[u8],
        lda: usize,
        b: &PackedB<i8>,
        rq: &Requant<'_>,
        out: &mut [u8],
        ldo: usize,
    ) {
        compose(self.gemm, self.requant, m, a, lda, b, rq, out, ldo);
    }
}

/// `gemm` then `requant` over row blocks of at most [`ACC_BLOCK_BYTES`] of accumulators.
#[allow(clippy::too_many_arguments)]
pub fn compose(
    gemm: &dyn GemmU8I8,
    requant: &dyn RequantU8,
    m: usize,
    a: &[u8],
    lda: usize,
    b: &PackedB<i8>,
    rq: &Requant<'_>,
    out: &mut [u8],
    ldo: usize,
) {
    let n = b.n;
    check(m, n, rq, out.len(), ldo);
    if m == 0 || n == 0 {
        return;
    }
    let block = (ACC_BLOCK_BYTES / (4 * n)).max(1);
    let mut acc = vec![0i32; block.min(m) * n];
    for r0 in (0..m).step_by(block) {
        let rows = block.min(m - r0);
        let acc = &mut acc[..rows * n];
        gemm.gemm(rows, &a[r0 * lda..], lda, b, acc, n);
        let zero_point_rows = rq
            .zero_point_rows
            .map(|(b_zp, sums)| (b_zp, &sums[r0..r0 + rows]));
        if ldo == n {
            let dst = &mut out[r0 * n..(r0 + rows) * n];
            let (o, m_, z) = (rq.offset, rq.mult, rq.out_zp);
            requant.requantize(acc, rows, n, n, o, zero_point_rows, m_, z, rq.relu, dst);
        } else {
            for i in 0..rows {
                let zpr = zero_point_rows.map(|(b_zp, sums)| (b_zp, &sums[i..i + 1]));
                let dst = &mut out[(r0 + i) * ldo..(r0 + i) * ldo + n];
                let src = &acc[i * n..(i + 1) * n];
                requant.requantize(
                    src, 1, n, n, rq.offset, zpr, rq.mult, rq.out_zp, rq.relu, dst,
                );
            }
        }
    }
}

/// Panics unless the epilogue's slices and `out` fit an `m x n` result (callers validate shapes; this guards
/// against programming errors).
pub fn check(m: usize, n: usize, rq: &Requant<'_>, out_len: usize, ldo: usize) {
    assert!(
        rq.offset.len() == n && rq.mult.len() == n,
        "gemm_requant: offset and mult need n = {n} entries, got {} and {}",
        rq.offset.len(),
        rq.mult.len()
    );
    if let Some((b_zp, sums)) = rq.zero_point_rows {
        assert!(
            b_zp.len() == n && sums.len() >= m,
            "gemm_requant: b_zp needs n = {n} entries and row_sums m = {m}, got {} and {}",
            b_zp.len(),
            sums.len()
        );
    }
    if m > 0 && n > 0 {
        assert!(ldo >= n, "gemm_requant: ldo ({ldo}) < n ({n})");
        let needed = (m - 1) * ldo + n;
        assert!(
            out_len >= needed,
            "gemm_requant: out has {out_len} bytes, {m}x{n} with ldo {ldo} needs {needed}"
        );
    }
}
