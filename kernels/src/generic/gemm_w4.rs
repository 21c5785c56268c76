//! Portable group-wise int4 weight-only GEMM. B is packed in panels of [`NR`] columns, k-major: row `p` of a
//! panel is `NR / 2` bytes, column `2t` in the low nibble of byte `t` and `2t + 1` in the high one; scales and
//! zero points are regrouped per panel (`[panel][group][NR]`, zero padded). The blocking's `kc` is a multiple
//! of every group size, so a depth block holds whole groups.
//!
//! - `gemm`: the tile dequantizes one panel row at a time (`(q - zp) as f32 * scale`, as the reference does) and
//!   multiplies and adds in `f32` in `p` order from 0.0: results identical to the scalar reference.
//! - `gemm_dyn_i8`: rows are quantized up front ([`int4::quantize_rows_dyn_i8`]); per group the tile sums
//!   `a_q * (q - zp)` exactly (integers below `2^24`, in `f32` lanes), then adds `dot as f32 * scale` to an
//!   `f32` accumulator in group order and multiplies by the row scale after the last block: again the
//!   reference's operations in its order.

use crate::formats::int4;
use crate::frame::gemm::{Blocking, Tile, assert_a, drive};
use crate::isa::Isa;
use crate::reference::gemm_w4::assert_packed_w4;
use crate::{GemmW4, Kernel, PackedW4};

/// Register-tile rows.
pub const MR: usize = 4;
/// Register-tile columns, and packed panel width.
pub const NR: usize = 16;
const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: 512,
    mc: 64,
};
const _: () = assert!(
    BLOCKING.kc.is_multiple_of(128),
    "a depth block must hold whole groups"
);

/// The portable int4 weight-only GEMM.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenericGemmW4;

/// The registered instance.
pub static GENERIC_GEMM_W4: GenericGemmW4 = GenericGemmW4;

impl Kernel for GenericGemmW4 {
    fn name(&self) -> &'static str {
        "generic_gemm_w4_f32_4x16"
    }

    fn isa(&self) -> Isa {
        Isa::Generic
    }
}

/// One panel's packed nibbles and per-group parameters.
struct Panel<'a> {
    /// `k x NR/2` bytes.
    data: &'a [u8],
    /// `groups x NR`.
    scales: &'a [f32],
    /// `groups x NR`.
    zero_points: &'a [u8],
    group: usize,
}

impl<'a> Panel<'a> {
    fn new(b: &'a PackedW4, panel: usize) -> Panel<'a> {
        let groups = int4::group_count(b.k, b.group);
        Panel {
            data: &b.data[panel * b.k * NR / 2..][..b.k * NR / 2],
            scales: &b.scales[panel * groups * NR..][..groups * NR],
            zero_points: &b.zero_points[panel * groups * NR..][..groups * NR],
            group: b.group,
        }
    }

    /// `q - zp` of row `p`.
    #[inline(always)]
    fn centered(&self, p: usize) -> [i32; NR] {
        let row = &self.data[p * NR / 2..][..NR / 2];
        let zp = &self.zero_points[(p / self.group) * NR..][..NR];
        std::array::from_fn(|j| ((row[j / 2] >> (4 * (j % 2))) & 0x0F) as i32 - zp[j] as i32)
    }

    #[inline(always)]
    fn scales(&self, g: usize) -> &[f32] {
        &self.scales[g * NR..][..NR]
    }
}

impl GenericGemmW4 {
    fn check(&self, m: usize, a: &[f32], lda: usize, b: &PackedW4, c: &[f32], ldc: usize) {
        let (k, n) = (b.k, b.n);
        let panels = n.div_ceil(NR);
        assert_packed_w4(
            self.name(),
            b,
            panels * NR * k,
            panels * int4::group_count(k, b.group) * NR,
        );
        assert_a(self.name(), m, k, a, lda);
        crate::reference::gemm_f32::assert_c(self.name(), m, n, c.len(), ldc);
    }
}

impl GemmW4 for GenericGemmW4 {
    fn pack_b(
        &self,
        q: &[u8],
        k: usize,
        n: usize,
        group: usize,
        scales: &[f32],
        zero_points: &[u8],
    ) -> PackedW4 {
        int4::assert_pack_args(self.name(), q, k, n, group, scales, zero_points);
        let (panels, groups) = (n.div_ceil(NR), int4::group_count(k, group));
        let mut data = vec![0u8; panels * k * NR / 2];
        let mut pscales = vec![0f32; panels * groups * NR];
        let mut pzps = vec![0u8; panels * groups * NR];
        for j in 0..n {
            let (panel, jj) = (j / NR, j % NR);
            for p in 0..k {
                data[(panel * k + p) * NR / 2 + jj / 2] |= q[p * n + j] << (4 * (jj % 2));
            }
            for g in 0..groups {
                pscales[(panel * groups + g) * NR + jj] = scales[g * n + j];
                pzps[(panel * groups + g) * NR + jj] = zero_points[g * n + j];
            }
        }
        PackedW4 {
            k,
            n,
            group,
            data,
            scales: pscales,
            zero_points: pzps,
            sums: Vec::new(),
            kernel: self.name(),
        }
    }

    fn gemm(&self, m: usize, a: &[f32], lda: usize, b: &PackedW4, c: &mut [f32], ldc: usize) {
        self.check(m, a, lda, b, c, ldc);
        drive(BLOCKING, m, b.n, b.k, c, ldc, |t, ct, ldc| {
            let panel = Panel::new(b, t.panel);
            match t.rows {
                4 => tile_f32::<4>(a, lda, &panel, t, ct, ldc),
                3 => tile_f32::<3>(a, lda, &panel, t, ct, ldc),
                2 => tile_f32::<2>(a, lda, &panel, t, ct, ldc),
                _ => tile_f32::<1>(a, lda, &panel, t, ct, ldc),
            }
        });
    }

    fn gemm_dyn_i8(
        &self,
        m: usize,
        a: &[f32],
        lda: usize,
        b: &PackedW4,
        c: &mut [f32],
        ldc: usize,
    ) {
        self.check(m, a, lda, b, c, ldc);
        let (aq, a_scales) = int4::quantize_rows_dyn_i8(a, m, b.k, lda, b.k);
        let q = Quantized {
            codes: &aq,
            scales: &a_scales,
            k: b.k,
        };
        drive(BLOCKING, m, b.n, b.k, c, ldc, |t, ct, ldc| {
            let panel = Panel::new(b, t.panel);
            match t.rows {
                4 => tile_dyn::<4>(&q, &panel, t, ct, ldc),
                3 => tile_dyn::<3>(&q, &panel, t, ct, ldc),
                2 => tile_dyn::<2>(&q, &panel, t, ct, ldc),
                _ => tile_dyn::<1>(&q, &panel, t, ct, ldc),
            }
        });
    }
}

/// `R x NR` tile of the f32 path over one depth block.
#[inline(always)]
fn tile_f32<const R: usize>(
    a: &[f32],
    lda: usize,
    panel: &Panel,
    t: &Tile,
    c: &mut [f32],
    ldc: usize,
) {
    let mut acc = [[0f32; NR]; R];
    if !t.first {
        for (r, acc_row) in acc.iter_mut().enumerate() {
            acc_row[..t.cols].copy_from_slice(&c[r * ldc..r * ldc + t.cols]);
        }
    }
    for p in t.p0..t.p0 + t.kc {
        let centered = panel.centered(p);
        let scales = panel.scales(p / panel.group);
        let w: [f32; NR] = std::array::from_fn(|j| centered[j] as f32 * scales[j]);
        for r in 0..R {
            let av = a[(t.i0 + r) * lda + p];
            for j in 0..NR {
                acc[r][j] += av * w[j];
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        c[r * ldc..r * ldc + t.cols].copy_from_slice(&acc_row[..t.cols]);
    }
}

/// Dynamically quantized activations: `codes` row-major with leading dimension `k`.
struct Quantized<'a> {
    codes: &'a [i8],
    scales: &'a [f32],
    k: usize,
}

/// `R x NR` tile of the int8-activation path over one depth block (whole groups). Before the last block C holds
/// the partial group sums, not yet multiplied by the row scale.
#[inline(always)]
fn tile_dyn<const R: usize>(q: &Quantized, panel: &Panel, t: &Tile, c: &mut [f32], ldc: usize) {
    let mut acc = [[0f32; NR]; R];
    if !t.first {
        for (r, acc_row) in acc.iter_mut().enumerate() {
            acc_row[..t.cols].copy_from_slice(&c[r * ldc..r * ldc + t.cols]);
        }
    }
    let end = t.p0 + t.kc;
    let mut g0 = t.p0;
    while g0 < end {
        let g1 = (g0 + panel.group).min(end);
        // Integer sums in `f32` lanes: every product (`|.| <= 127 * 15`) and partial sum (`< 128 * 1905 <
        // 2^24`) is an exactly representable integer, so this is the reference's exact `i32` dot, and it
        // vectorizes on SSE2 (which lacks a 32-bit integer multiply).
        let mut dot = [[0f32; NR]; R];
        for p in g0..g1 {
            let w = panel.centered(p).map(|v| v as f32);
            for (r, dot_r) in dot.iter_mut().enumerate() {
                let av = q.codes[(t.i0 + r) * q.k + p] as f32;
                for j in 0..NR {
                    dot_r[j] += av * w[j];
                }
            }
        }
        let scales = panel.scales(g0 / panel.group);
        for (acc_r, dot_r) in acc.iter_mut().zip(&dot) {
            for j in 0..NR {
                acc_r[j] += dot_r[j] * scales[j];
            }
        }
        g0 = g1;
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let dst = &mut c[r * ldc..r * ldc + t.cols];
        let row_scale = q.scales[t.i0 + r];
        for (d, &v) in dst.iter_mut().zip(acc_row) {
            *d = if t.last { v * row_scale } else { v };
        }
    }
}
