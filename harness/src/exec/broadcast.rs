//! Numpy broadcasting over any number of operands as runs: the output is visited in row-major order, in
//! runs over its innermost (coalesced) dimension, with each operand's offset at the start of the run and a
//! stride of 0 (broadcast) or 1 (contiguous) inside it. Elementwise ops then work on plain slices.

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::ops::{OpError, broadcast_shapes, checked_elements};

/// Where each operand's elements come from for every run of the output.
pub struct Plan<const N: usize> {
    /// The broadcast output shape.
    pub shape: Vec<usize>,
    /// Outer (coalesced) dimensions, outermost first.
    dims: Vec<usize>,
    /// Per outer dimension, each operand's element stride (0 where it is broadcast).
    strides: Vec<[usize; N]>,
    /// Length of every run.
    pub inner: usize,
    /// Each operand's stride inside a run: 0 or 1.
    pub inner_strides: [usize; N],
}

impl<const N: usize> Plan<N> {
    /// The plan for operands of these (row-major) shapes.
    pub fn new(shapes: [&[usize]; N]) -> Result<Self, OpError> {
        let mut out: Vec<usize> = Vec::new();
        for s in shapes {
            out = broadcast_shapes(&out, s).map_err(|_| broadcast_error(&shapes))?;
        }
        checked_elements("broadcast", &out)?;
        let rank = out.len();
        let mut per_dim = vec![[0usize; N]; rank];
        for (k, s) in shapes.iter().enumerate() {
            let offset = rank - s.len();
            let mut acc = 1;
            for (i, &d) in s.iter().enumerate().rev() {
                per_dim[offset + i][k] = if d == 1 { 0 } else { acc };
                acc *= d;
            }
        }
        let mut dims: Vec<usize> = Vec::with_capacity(rank);
        let mut strides: Vec<[usize; N]> = Vec::with_capacity(rank);
        for (&d, st) in out.iter().zip(&per_dim) {
            if d == 1 {
                continue;
            }
            // Merge into the previous dimension when every operand walks both as one.
            if let (Some(last_d), Some(last_s)) = (dims.last_mut(), strides.last_mut())
                && (0..N).all(|k| last_s[k] == st[k] * d)
            {
                *last_d *= d;
                *last_s = *st;
                continue;
            }
            dims.push(d);
            strides.push(*st);
        }
        let (inner, inner_strides) = match (dims.pop(), strides.pop()) {
            (Some(d), Some(s)) => (d, s),
            _ => (1, [0; N]),
        };
        Ok(Plan {
            shape: out,
            dims,
            strides,
            inner,
            inner_strides,
        })
    }

    /// Number of output elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f(operand offsets)` for each run, in output order (the output offset of run `r` is
    /// `r * inner`).
    pub fn for_each_run(&self, mut f: impl FnMut([usize; N])) {
        if self.is_empty() {
            return;
        }
        let mut idx = vec![0usize; self.dims.len()];
        let mut offs = [0usize; N];
        loop {
            f(offs);
            let mut d = self.dims.len();
            loop {
                if d == 0 {
                    return;
                }
                d -= 1;
                idx[d] += 1;
                for (o, s) in offs.iter_mut().zip(&self.strides[d]) {
                    *o += s;
                }
                if idx[d] < self.dims[d] {
                    break;
                }
                for (o, s) in offs.iter_mut().zip(&self.strides[d]) {
                    *o -= s * self.dims[d];
                }
                idx[d] = 0;
            }
        }
    }
}

fn broadcast_error(shapes: &[&[usize]]) -> OpError {
    if let [a, b] = shapes {
        return OpError::Broadcast {
            a: a.to_vec(),
            b: b.to_vec(),
        };
    }
    OpError::Shape(format!("shapes {shapes:?} do not broadcast together"))
}

/// `f(a, b)` elementwise with broadcasting.
pub fn zip2<A: Copy, B: Copy, O>(
    a: ArrayViewD<A>,
    b: ArrayViewD<B>,
    f: impl Fn(A, B) -> O,
) -> Result<ArrayD<O>, OpError> {
    let plan = Plan::new([a.shape(), b.shape()])?;
    let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
    let (sa, sb) = (
        a.as_slice().expect("standard layout"),
        b.as_slice().expect("standard layout"),
    );
    let mut out = Vec::with_capacity(plan.len());
    let len = plan.inner;
    plan.for_each_run(|[oa, ob]| match plan.inner_strides {
        [1, 1] => out.extend(
            sa[oa..oa + len]
                .iter()
                .zip(&sb[ob..ob + len])
                .map(|(&x, &y)| f(x, y)),
        ),
        [1, 0] => {
            let y = sb[ob];
            out.extend(sa[oa..oa + len].iter().map(|&x| f(x, y)));
        }
        [0, 1] => {
            let x = sa[oa];
            out.extend(sb[ob..ob + len].iter().map(|&y| f(x, y)));
        }
        _ => {
            let (x, y) = (sa[oa], sb[ob]);
            out.extend((0..len).map(|_| f(x, y)));
        }
    });
    Ok(ArrayD::from_shape_vec(IxDyn(&plan.shape), out).expect("plan length"))
}

/// `f(a, b, c)` elementwise with broadcasting.
pub fn zip3<A: Copy, B: Copy, C: Copy, O>(
    a: ArrayViewD<A>,
    b: ArrayViewD<B>,
    c: ArrayViewD<C>,
    f: impl Fn(A, B, C) -> O,
) -> Result<ArrayD<O>, OpError> {
    let plan = Plan::new([a.shape(), b.shape(), c.shape()])?;
    let (a, b, c) = (
        a.as_standard_layout(),
        b.as_standard_layout(),
        c.as_standard_layout(),
    );
    let (sa, sb, sc) = (
        a.as_slice().expect("standard layout"),
        b.as_slice().expect("standard layout"),
        c.as_slice().expect("standard layout"),
    );
    let mut out = Vec::with_capacity(plan.len());
    let [ia, ib, ic] = plan.inner_strides;
    plan.for_each_run(|[oa, ob, oc]| {
        out.extend((0..plan.inner).map(|i| f(sa[oa + i * ia], sb[ob + i * ib], sc[oc + i * ic])));
    });
    Ok(ArrayD::from_shape_vec(IxDyn(&plan.shape), out).expect("plan length"))
}

/// `acc = f(acc, other)` (or `f(other, acc)` when `acc_is_rhs`) in place; `other` must broadcast to `acc`'s
/// shape, which must be the output shape.
pub fn zip2_assign<T: Copy>(
    acc: &mut ArrayD<T>,
    other: ArrayViewD<T>,
    acc_is_rhs: bool,
    f: impl Fn(T, T) -> T,
) -> Result<(), OpError> {
    let plan = Plan::new([acc.shape(), other.shape()])?;
    if plan.shape != acc.shape() {
        return Err(OpError::Broadcast {
            a: acc.shape().to_vec(),
            b: other.shape().to_vec(),
        });
    }
    if !acc.is_standard_layout() {
        *acc = acc.as_standard_layout().into_owned();
    }
    let other = other.as_standard_layout();
    let so = other.as_slice().expect("standard layout");
    let dst = acc.as_slice_mut().expect("standard layout");
    let len = plan.inner;
    let mut start = 0;
    let g = |x: T, y: T| if acc_is_rhs { f(y, x) } else { f(x, y) };
    plan.for_each_run(|[_, ob]| {
        let run = &mut dst[start..start + len];
        start += len;
        if plan.inner_strides[1] == 1 {
            for (d, &y) in run.iter_mut().zip(&so[ob..ob + len]) {
                *d = g(*d, y);
            }
        } else {
            let y = so[ob];
            for d in run {
                *d = g(*d, y);
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::*;

    fn iota(shape: &[usize]) -> ArrayD<i64> {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n as i64).collect()).unwrap()
    }

    /// Against ndarray's own broadcasting, on shapes that coalesce in different ways.
    #[test]
    fn matches_ndarray_broadcasting() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[2, 3, 4], &[2, 3, 4]),
            (&[2, 3, 4], &[4]),
            (&[2, 3, 4], &[3, 1]),
            (&[2, 1, 4], &[3, 1]),
            (&[1, 3, 1, 5], &[2, 1, 4, 1]),
            (&[], &[2, 2]),
            (&[2, 0, 3], &[3]),
            (&[2, 3, 1, 1], &[2, 3, 4, 5]),
        ];
        for (sa, sb) in cases {
            let (a, b) = (iota(sa), iota(sb).mapv(|v| v * 100));
            let got = zip2(a.view(), b.view(), |x, y| x + y).unwrap();
            let shape = broadcast_shapes(sa, sb).unwrap();
            let want = &a.broadcast(IxDyn(&shape)).unwrap() + &b.broadcast(IxDyn(&shape)).unwrap();
            assert_eq!(got, want, "{sa:?} {sb:?}");
            let got = zip2(b.view(), a.view(), |x, y| x - y).unwrap();
            assert_eq!(
                got,
                want.mapv(|_| 0) + &b.broadcast(IxDyn(&shape)).unwrap()
                    - &a.broadcast(IxDyn(&shape)).unwrap()
            );
            let c = iota(&[1]);
            let got3 = zip3(a.view(), b.view(), c.view(), |x, y, z| x + y + z).unwrap();
            assert_eq!(got3, want);
            if shape == *sa {
                let mut acc = a.clone();
                zip2_assign(&mut acc, b.view(), false, |x, y| x - y).unwrap();
                assert_eq!(acc, &a - &b.broadcast(IxDyn(&shape)).unwrap());
                let mut acc = a.clone();
                zip2_assign(&mut acc, b.view(), true, |x, y| x - y).unwrap();
                assert_eq!(acc, &b.broadcast(IxDyn(&shape)).unwrap() - &a);
            }
        }
        assert!(zip2(iota(&[2, 3]).view(), iota(&[4]).view(), |x, y| x + y).is_err());
    }
}
