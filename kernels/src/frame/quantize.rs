//! Float <-> 8-bit conversion with ONNX `QuantizeLinear` / `DequantizeLinear` semantics:
//! `q = saturate(round_half_even(x / scale) + zero_point)`, `x = (q - zero_point) * scale`. The division is
//! done in `f32`, as the ONNX reference does. NaN quantizes to the zero point.

/// `out[i] = clamp(round_half_even(x[i] / scale) + zero_point, 0, 255)`.
///
/// # Panics
/// If `out` is shorter than `x`.
pub fn quantize_u8(x: &[f32], scale: f32, zero_point: i32, out: &mut [u8]) {
    assert!(
        out.len() >= x.len(),
        "quantize_u8: out has {} elements, x has {}",
        out.len(),
        x.len()
    );
    for (o, &v) in out.iter_mut().zip(x) {
        *o = quantize_one(v, scale, zero_point, 0, 255) as u8;
    }
}

/// `out[i] = clamp(round_half_even(x[i] / scale) + zero_point, -128, 127)`.
///
/// # Panics
/// If `out` is shorter than `x`.
pub fn quantize_i8(x: &[f32], scale: f32, zero_point: i32, out: &mut [i8]) {
    assert!(
        out.len() >= x.len(),
        "quantize_i8: out has {} elements, x has {}",
        out.len(),
        x.len()
    );
    for (o, &v) in out.iter_mut().zip(x) {
        *o = quantize_one(v, scale, zero_point, -128, 127) as i8;
    }
}

/// `out[i] = (q[i] - zero_point) * scale`.
///
/// # Panics
/// If `out` is shorter than `q`.
pub fn dequantize_u8(q: &[u8], scale: f32, zero_point: i32, out: &mut [f32]) {
    assert!(
        out.len() >= q.len(),
        "dequantize_u8: out has {} elements, q has {}",
        out.len(),
        q.len()
    );
    for (o, &v) in out.iter_mut().zip(q) {
        *o = (v as i32 - zero_point) as f32 * scale;
    }
}

/// `(min, max)` over the finite values of `x`; `(0.0, 0.0)` when there are none.
pub fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<(f32, f32)>, &v| {
            Some(acc.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
        })
        .unwrap_or((0.0, 0.0))
}

#[inline]
fn quantize_one(x: f32, scale: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
    // Round half to even by adding and removing 1.5 * 2^23 (exact for |r| < 2^22, and beyond that every
    // output saturates anyway): unlike `round_ties_even`, which is a libm call on baseline x86-64, this
    // vectorizes. NaN stays NaN through the clamp and `as i32` maps it to 0, as before.
    const MAGIC: f32 = 12_582_912.0;
    let r = (x / scale).clamp(-4_194_304.0, 4_194_304.0);
    (((r + MAGIC) - MAGIC) as i32)
        .saturating_add(zero_point)
        .clamp(lo, hi)
}
