//! Inputs of the PTQ refinements (GPTQ, AdaRound, bias correction): per quantizable layer, statistics of the
//! rows its GEMM multiplies, gathered while the FP32 model runs on the calibration split. Rows are in the
//! layer's float weight row order (`(c, ky, kx)` for a convolution, the input features for a dense layer);
//! the quantizer permutes them with the weights when a layer runs channels-last.
//!
//! Memory: a Hessian is `k x k` f64 (the MNIST CNN's first dense layer, k = 3136: 79 MB), a row reservoir
//! holds at most [`RESERVOIR_ROWS`] rows, a mean `k` values; all independent of the number of samples.

use std::collections::HashMap;

use kernels::frame::conv::im2col;
use ndarray::{Array1, Array2, ArrayD, ArrayView2};
use strategies::ptq::{HessianAccumulator, MeanAccumulator, PtqError, RowReservoir};

use super::QuantError;
use super::strategy::Refinement;
use crate::exec::reference::Fp32Executor;
use crate::ir::{Graph, Op, Tensor};

/// Rows kept per layer for AdaRound.
pub const RESERVOIR_ROWS: usize = 2048;

/// What one layer's refinements need.
#[derive(Default)]
struct Accumulators {
    hessian: Option<HessianAccumulator>,
    reservoir: Option<RowReservoir>,
    mean: Option<MeanAccumulator>,
}

/// Per layer (node name): the calibration statistics, finished.
#[derive(Default)]
pub struct LayerInputs {
    pub hessian: Option<Array2<f64>>,
    pub rows: Option<Array2<f32>>,
    pub mean: Option<Array1<f64>>,
    /// Per-output-channel weight steps learned by quantization-aware training.
    pub weight_scales: Option<Vec<f32>>,
}

/// Statistics of every quantizable layer's GEMM rows.
#[derive(Default)]
pub struct RefineData {
    layers: HashMap<String, LayerInputs>,
}

fn ptq(node: &str, e: PtqError) -> QuantError {
    QuantError::Unsupported(format!("refinement statistics of layer `{node}`: {e}"))
}

impl RefineData {
    /// Runs `exec` over `batches` of `input`, accumulating for every Conv / Gemm / MatMul what `refinements`
    /// need (GPTQ: the Hessian `2 X^T X / N`; AdaRound: a reservoir of rows; bias correction: the mean row).
    pub fn collect<I>(
        exec: &Fp32Executor,
        graph: &Graph,
        input: &str,
        batches: I,
        refinements: &[Refinement],
        seed: u64,
    ) -> Result<Self, QuantError>
    where
        I: IntoIterator<Item = ArrayD<f32>>,
    {
        let need_h = refinements.contains(&Refinement::Gptq);
        let need_rows = refinements.contains(&Refinement::AdaRound);
        let need_mean = refinements.contains(&Refinement::BiasCorrection);
        // Value name -> the layers reading it.
        let mut readers: HashMap<&str, Vec<&crate::ir::Node>> = HashMap::new();
        for node in &graph.nodes {
            if matches!(node.op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul) {
                readers
                    .entry(node.inputs[0].as_str())
                    .or_default()
                    .push(node);
            }
        }
        let mut acc: HashMap<String, Accumulators> = HashMap::new();
        let mut feed = |name: &str, x: &ArrayD<f32>| -> Result<(), QuantError> {
            let Some(nodes) = readers.get(name) else {
                return Ok(());
            };
            for node in nodes {
                let Some(rows) = layer_rows(node, x)? else {
                    continue;
                };
                let k = rows.ncols();
                let a = acc
                    .entry(node.name.clone())
                    .or_insert_with(|| Accumulators {
                        hessian: need_h.then(|| HessianAccumulator::new(k)),
                        reservoir: need_rows.then(|| RowReservoir::new(k, RESERVOIR_ROWS, seed)),
                        mean: need_mean.then(|| MeanAccumulator::new(k)),
                    });
                let r = rows.view();
                let result = (|| -> Result<(), PtqError> {
                    if let Some(h) = &mut a.hessian {
                        h.add(r)?;
                    }
                    if let Some(s) = &mut a.reservoir {
                        s.add(r)?;
                    }
                    if let Some(m) = &mut a.mean {
                        m.add(r)?;
                    }
                    Ok(())
                })();
                result.map_err(|e| ptq(&node.name, e))?;
            }
            Ok(())
        };
        for batch in batches {
            feed(input, &batch)?;
            let mut failure: Option<QuantError> = None;
            exec.run_observed(&[(input, batch)], &mut |name: &str, t: &Tensor| {
                if let (Tensor::F32(a), None) = (t, &failure)
                    && let Err(e) = feed(name, a)
                {
                    failure = Some(e);
                }
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
        }
        let mut layers = HashMap::new();
        for (name, a) in acc {
            let inputs = LayerInputs {
                hessian: a
                    .hessian
                    .map(|h| h.hessian())
                    .transpose()
                    .map_err(|e| ptq(&name, e))?,
                rows: a.reservoir.map(|r| r.rows()),
                mean: a
                    .mean
                    .map(|m| m.mean())
                    .transpose()
                    .map_err(|e| ptq(&name, e))?,
                weight_scales: None,
            };
            layers.insert(name, inputs);
        }
        Ok(RefineData { layers })
    }

    /// Learned weight steps per layer: `scales` is keyed by weight initializer, as QAT reports them.
    pub fn from_weight_scales(
        graph: &Graph,
        scales: &std::collections::BTreeMap<String, Vec<f32>>,
    ) -> Self {
        let layers = graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul))
            .filter_map(|n| {
                let s = scales.get(n.inputs.get(1)?)?;
                Some((
                    n.name.clone(),
                    LayerInputs {
                        weight_scales: Some(s.clone()),
                        ..Default::default()
                    },
                ))
            })
            .collect();
        RefineData { layers }
    }

    /// The statistics of layer `node`, if it was seen.
    pub fn layer(&self, node: &str) -> Option<&LayerInputs> {
        self.layers.get(node)
    }
}

/// The GEMM rows of one batch of `node`'s input: im2col rows for a convolution (one per output pixel, columns
/// `(c, ky, kx)`), the flattened leading dimensions for Gemm / MatMul. `None` for layouts the quantizer does
/// not lower this way (grouped convolutions, transposed A).
fn layer_rows(node: &crate::ir::Node, x: &ArrayD<f32>) -> Result<Option<Array2<f32>>, QuantError> {
    let x = x.as_standard_layout();
    let data = x.as_slice().expect("standard layout");
    match &node.op {
        Op::Conv(attrs) if attrs.group == 1 => {
            let &[n, c, h, w] = x.shape() else {
                return Ok(None);
            };
            let g = attrs.geometry(c, h, w);
            let (pixels, k) = (g.out_h() * g.out_w(), g.k());
            let mut rows = vec![0f32; n * pixels * k];
            for (img, out) in data
                .chunks_exact(c * h * w)
                .zip(rows.chunks_exact_mut(pixels * k))
            {
                im2col(img, &g, 0.0, out);
            }
            Ok(Some(
                Array2::from_shape_vec((n * pixels, k), rows).expect("sized"),
            ))
        }
        Op::Gemm(attrs) if !attrs.trans_a => {
            let k = *x.shape().last().unwrap_or(&0);
            if k == 0 {
                return Ok(None);
            }
            let flat = data.len() / k;
            Ok(Some(
                ArrayView2::from_shape((flat, k), data)
                    .expect("sized")
                    .to_owned(),
            ))
        }
        Op::MatMul => {
            let k = *x.shape().last().unwrap_or(&0);
            if k == 0 {
                return Ok(None);
            }
            Ok(Some(
                ArrayView2::from_shape((data.len() / k, k), data)
                    .expect("sized")
                    .to_owned(),
            ))
        }
        _ => Ok(None),
    }
}
