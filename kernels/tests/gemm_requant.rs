//! The static int8 layer ([`GemmU8I8Requant`]): every registered kernel gives exactly the bytes of the scalar
//! oracle (scalar GEMM, then the scalar epilogue). The fused kernels requantize in registers with the oracle's
//! operations in the oracle's order, so equality is exact, not within an LSB. Shapes cover 1 to 3x the register
//! tile in every dimension, depths past the fused limit (the composed fallback), extreme operands, ReLU, affine
//! weights' row term, and an output stride wider than `n`.

use kernels::registry::gemm_u8i8_requant_kernels;
use kernels::testing::{DEEP_K, Rng};
use kernels::{GemmU8I8Requant, Requant};

struct Case {
    a: Vec<u8>,
    b: Vec<i8>,
    offset: Vec<i32>,
    b_zp: Vec<i32>,
    mult: Vec<f32>,
}

/// Multipliers spread so that outputs land near the zero point, mid-range and saturated; offsets as a real layer
/// has them (bias plus zero-point terms).
fn case(rng: &mut Rng, m: usize, k: usize, n: usize, fill: Option<(u8, i8)>) -> Case {
    let (a, b) = match fill {
        Some((av, bv)) => (vec![av; m * k], vec![bv; k * n]),
        None => (rng.u8s(m * k), rng.i8s(k * n)),
    };
    let scale = 1.0 / (k.max(1) as f32 * 1000.0);
    Case {
        a,
        b,
        offset: (0..n).map(|_| rng.below(20_001) as i32 - 10_000).collect(),
        b_zp: (0..n).map(|_| rng.below(256) as i32 - 128).collect(),
        mult: (0..n).map(|j| scale * 4f32.powi((j % 6) as i32)).collect(),
    }
}

fn row_sums(a: &[u8], m: usize, k: usize) -> Vec<i32> {
    (0..m)
        .map(|i| a[i * k..(i + 1) * k].iter().map(|&v| v as i32).sum())
        .collect()
}

fn check_all(m: usize, k: usize, n: usize, c: &Case, what: &str) {
    let oracle = &kernels::reference::requant::SCALAR_GEMM_U8I8_REQUANT;
    let sums = row_sums(&c.a, m, k);
    for kernel in gemm_u8i8_requant_kernels() {
        if !kernel.isa().is_available() {
            eprintln!("skip {}: this CPU lacks {}", kernel.name(), kernel.isa());
            continue;
        }
        let packed = kernel.pack_b(&c.b, k, n);
        let oracle_packed = oracle.pack_b(&c.b, k, n);
        for relu in [false, true] {
            for zero_point_rows in [None, Some((&c.b_zp[..], &sums[..]))] {
                for out_zp in [0, 128, 255] {
                    let rq = Requant {
                        offset: &c.offset,
                        zero_point_rows,
                        mult: &c.mult,
                        out_zp,
                        relu,
                    };
                    for ldo in [n, n + 5] {
                        let len = if m == 0 { 0 } else { (m - 1) * ldo + n };
                        let mut want = vec![7u8; len];
                        let mut got = vec![7u8; len];
                        oracle.gemm_requant(m, &c.a, k, &oracle_packed, &rq, &mut want, ldo);
                        kernel.gemm_requant(m, &c.a, k, &packed, &rq, &mut got, ldo);
                        if got != want {
                            let at = got.iter().zip(&want).position(|(g, w)| g != w).unwrap();
                            panic!(
                                "{} {what} {m}x{k}x{n} relu {relu} affine {} zp {out_zp} ldo {ldo}: byte {at} is {} (oracle {})",
                                kernel.name(),
                                zero_point_rows.is_some(),
                                got[at],
                                want[at]
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn ragged_shapes_match_the_oracle_exactly() {
    let mut rng = Rng::new(2026);
    // 1 to 3x the largest registered tile (8 x 32) in m and n, k around the VNNI group of 4.
    for &m in &[1, 2, 7, 8, 9, 17, 24, 25] {
        for &n in &[1, 15, 16, 17, 32, 33, 64, 97] {
            for &k in &[1, 3, 4, 5, 9, 31, 288] {
                let c = case(&mut rng, m, k, n, None);
                check_all(m, k, n, &c, "random");
            }
        }
    }
}

#[test]
fn deep_layers_past_the_fused_limit_match_the_oracle() {
    let mut rng = Rng::new(7);
    for &(m, k, n) in &[(9, 1025, 33), (3, DEEP_K, 10), (64, 1024, 128)] {
        let c = case(&mut rng, m, k, n, None);
        check_all(m, k, n, &c, "deep");
    }
}

#[test]
fn extreme_operands_match_the_oracle() {
    let mut rng = Rng::new(11);
    for fill in [(255u8, 127i8), (255, -128), (0, -128), (255, 0)] {
        for &(m, k, n) in &[(9, 9, 32), (17, 300, 33)] {
            let c = case(&mut rng, m, k, n, Some(fill));
            check_all(m, k, n, &c, &format!("fill {fill:?}"));
        }
    }
}

#[test]
fn threads_split_rows_without_changing_bytes() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let mut rng = Rng::new(5);
    let (m, k, n) = (200, 72, 40);
    let c = case(&mut rng, m, k, n, None);
    pool.install(|| check_all(m, k, n, &c, "3 threads"));
}
