//! Export of quantized models, on the real MNIST CNN and real digits:
//! - the QDQ ONNX export runs in ONNX Runtime with the same top-1 as our executor (within 0.1 point) on
//!   held-out digits (skipped, saying so, when `python3 -c "import onnxruntime"` fails);
//! - the `.qhq` artifact loads back and gives bit-identical logits without recalibrating;
//! - `harness quantize` / `harness infer` do the same from the command line, with clear input errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{argmax_rows, first_f32};
use harness::data::{LabelColumn, load_csv, read_npy_f32, write_npy};
use harness::exec::Fp32Executor;
use harness::ir::{Graph, Tensor};
use harness::quant::refine::RefineData;
use harness::quant::serialize::serialize_quantized;
use harness::quant::{ActMode, ActivationRanges, Calibration, QuantizedModel, Strategy};
use ndarray::{ArrayD, Axis, IxDyn, s};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_path() -> PathBuf {
    root().join("suites/data/ccexam_mnist_cnn/ccexam_mnist_cnn.onnx")
}

fn graph() -> Graph {
    harness::onnx::load_model(&model_path()).unwrap()
}

/// mnist_5k (sorted by class) normalised as the model expects: every 10th digit for calibration (500), the other
/// 4500 held out.
fn digits() -> (ArrayD<f32>, ArrayD<f32>, Vec<i64>) {
    let raw = load_csv(
        &root().join("suites/data/mnist_5k/mnist_5k.csv.gz"),
        LabelColumn::Last,
    )
    .unwrap();
    let pick = |rows: &[usize]| {
        let x = raw
            .features
            .select(Axis(0), rows)
            .mapv(|v| (v / 255.0 - 0.1307) / 0.3081);
        x.into_shape_with_order(IxDyn(&[rows.len(), 1, 28, 28]))
            .unwrap()
    };
    let calib: Vec<usize> = (0..raw.len()).step_by(10).collect();
    let eval: Vec<usize> = (0..raw.len()).filter(|i| i % 10 != 0).collect();
    let labels = eval.iter().map(|&i| raw.labels[i]).collect();
    (pick(&calib), pick(&eval), labels)
}

/// The 100 reference digits of the model's folder.
fn reference_images() -> ArrayD<f32> {
    let (shape, data) =
        read_npy_f32(&root().join("suites/data/ccexam_mnist_cnn/reference/input_f32.npy")).unwrap();
    ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap()
}

fn top1(pred: &[usize], labels: &[i64]) -> f64 {
    pred.iter()
        .zip(labels)
        .filter(|(p, l)| **p as i64 == **l)
        .count() as f64
        / labels.len() as f64
}

/// Builds `name` on `graph`, calibrated (and refined) on `calib` in batches of 100.
fn build(graph: &Graph, name: &str, calib: &ArrayD<f32>) -> QuantizedModel {
    let kernels = kernels::select(None).unwrap();
    let strategy: Strategy = name.parse().unwrap();
    let l = match strategy {
        Strategy::Float(f) => return QuantizedModel::build_float(graph, f, kernels).unwrap(),
        Strategy::Linear(l) => l,
        Strategy::Fp32 => panic!("fp32"),
    };
    let exec = Fp32Executor::new(graph, kernels).unwrap();
    let input = graph.inputs[0].name.as_str();
    let n = calib.shape()[0];
    let batches = || {
        (0..n).step_by(100).map(|s0| {
            calib
                .slice(s![s0..(s0 + 100).min(n), .., .., ..])
                .to_owned()
                .into_dyn()
        })
    };
    let ranges = (l.act == ActMode::Static).then(|| {
        let rule = (
            l.calibration.unwrap_or(Calibration::MinMax),
            l.scheme == strategies::Scheme::Symmetric,
        );
        ActivationRanges::observe_rules(&exec, input, batches(), &[rule]).unwrap()
    });
    let refine = (l.refinement != harness::quant::Refinement::None)
        .then(|| RefineData::collect(&exec, graph, input, batches(), &[l.refinement], 7).unwrap());
    // A `-mix.<name>` strategy here takes one fixed map: the first conv at 8 bits, the first dense layer in FP32.
    let map = l.mixed.map(|m| harness::quant::strategy::MixedPrecision {
        name: m.name.to_string(),
        layers: [
            (
                "Conv_1".to_string(),
                harness::quant::strategy::LayerPrecision::Bits(8),
            ),
            (
                "Gemm_8".to_string(),
                harness::quant::strategy::LayerPrecision::Fp32,
            ),
        ]
        .into_iter()
        .collect(),
    });
    QuantizedModel::build_full(
        graph,
        l,
        map.as_ref(),
        ranges.as_ref(),
        refine.as_ref(),
        kernels,
    )
    .unwrap()
}

fn onnxruntime_missing() -> Option<String> {
    match Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Some(format!("python3: {e}")),
    }
}

#[test]
fn qdq_export_gives_the_same_top1_in_onnx_runtime() {
    if let Some(why) = onnxruntime_missing() {
        eprintln!(
            "skipped: onnxruntime is not importable by python3 ({why}); `pip install onnxruntime onnx numpy` runs this test"
        );
        return;
    }
    let graph = graph();
    let (calib, eval, labels) = digits();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eval_f32.npy");
    write_npy(
        &input,
        eval.shape(),
        &eval.iter().copied().collect::<Vec<_>>(),
    )
    .unwrap();
    // Symmetric per-channel (ONNX Runtime keeps the Relu before Q, zero point 128, and runs the convolutions in
    // float on dequantized values) and affine per-tensor (it fuses every layer into QLinearConv / QGemm).
    for name in [
        "w8-static-channel-sym-minmax",
        "w8-static-tensor-affine-minmax",
    ] {
        let q = build(&graph, name, &calib);
        let ours = argmax_rows(&first_f32(q.run(&[("input", eval.clone())]).unwrap()));
        let model = dir.path().join(format!("{name}.onnx"));
        harness::onnx::qdq::save_qdq(&q, &model).unwrap();
        let out = dir.path().join(format!("{name}_ort.npy"));
        let run = Command::new("python3")
            .arg(root().join("scripts/check_qdq.py"))
            .args([&model, &input, &out])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{name}: check_qdq.py failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let (shape, data) = read_npy_f32(&out).unwrap();
        let ort = argmax_rows(&ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap());
        let (t_ours, t_ort) = (top1(&ours, &labels), top1(&ort, &labels));
        let agree = ours.iter().zip(&ort).filter(|(a, b)| a == b).count();
        eprintln!(
            "{name}: top-1 harness {:.2} %, ONNX Runtime {:.2} %, same class on {agree}/{} held-out digits; ORT: {}",
            100.0 * t_ours,
            100.0 * t_ort,
            ours.len(),
            String::from_utf8_lossy(&run.stdout).trim()
        );
        assert!(
            (t_ours - t_ort).abs() <= 0.001,
            "{name}: top-1 {t_ours} (harness) vs {t_ort} (ONNX Runtime)"
        );
    }
}

#[test]
fn qdq_export_refuses_what_it_cannot_express() {
    let graph = graph();
    let calib = reference_images();
    for (name, says) in [
        ("w4-weightonly-group32-sym", "per-group"),
        ("bf16", "float model"),
        ("w8-dynamic-tensor-sym", "DynamicQuantizeLinear"),
    ] {
        let q = build(&graph, name, &calib);
        let e = harness::onnx::qdq::export_qdq(&q).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains(says), "{name}: {e}");
    }
}

#[test]
fn artifact_loads_back_bit_exactly_without_calibration() {
    let graph = graph();
    let x = reference_images();
    let (calib, eval) = (
        x.slice(s![..50, .., .., ..]).to_owned().into_dyn(),
        x.slice(s![50.., .., .., ..]).to_owned().into_dyn(),
    );
    let dir = tempfile::tempdir().unwrap();
    let kernels = kernels::select(None).unwrap();
    for name in [
        "w8-static-channel-sym-minmax",
        "w8-static-tensor-affine-p99.99",
        "w4-static-channel-sym-minmax-log",
        "w4-static-group32-sym-minmax",
        "w8-static-channel-sym-minmax-biascorr",
        "w8-dynamic-channel-affine",
        "w4-dynamic-group32-sym",
        "w8-weightonly-tensor-sym",
        "w4-weightonly-group32-affine",
        "w3-weightonly-channel-sym",
        "w4-static-channel-sym-minmax-mix.conv8-fc32",
        "bf16",
        "fp16",
    ] {
        let q = build(&graph, name, &calib);
        let path = dir.path().join(format!("{name}.qhq"));
        let bytes = q.save(&path).unwrap();
        let loaded = QuantizedModel::load_with(&path, kernels).unwrap();
        assert_eq!(loaded.strategy(), q.strategy(), "{name}");
        assert_eq!(loaded.kernel_names(), q.kernel_names(), "{name}");
        assert_eq!(loaded.signature(), q.signature(), "{name}");
        let a = first_f32(q.run(&[("input", eval.clone())]).unwrap());
        let b = first_f32(loaded.run(&[("input", eval.clone())]).unwrap());
        assert!(
            a.iter().zip(&b).all(|(u, v)| u.to_bits() == v.to_bits()),
            "{name}: loaded model's logits differ"
        );
        // The constants' container (the size a result row reports) is unchanged by the round trip, and the
        // artifact adds only the plan and the graph's structure to it.
        let size = serialize_quantized(&q);
        assert_eq!(serialize_quantized(&loaded), size, "{name}");
        assert!(
            (bytes as usize) < size.len() + 4096,
            "{name}: artifact {bytes} bytes vs {} of constants",
            size.len()
        );
    }
}

#[test]
fn artifact_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let kernels = kernels::select(None).unwrap();
    let bad = dir.path().join("bad.qhq");
    std::fs::write(&bad, b"not a model").unwrap();
    let e = QuantizedModel::load_with(&bad, kernels)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("bad.qhq") && e.contains("QHQM"), "{e}");
    // The size-only container (version 1) is not loadable.
    let graph = graph();
    let q = build(&graph, "w8-weightonly-channel-sym", &reference_images());
    let v1 = dir.path().join("v1.qhq");
    std::fs::write(&v1, serialize_quantized(&q)).unwrap();
    let e = QuantizedModel::load_with(&v1, kernels)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("version 1"), "{e}");
    // A truncated artifact.
    let bytes = q.to_artifact_bytes().unwrap();
    let cut = dir.path().join("cut.qhq");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let e = QuantizedModel::load_with(&cut, kernels)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
}

fn harness_bin(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs the `harness` binary and fails the test with its stderr unless it succeeds.
fn harness_ok(args: &[&std::ffi::OsStr]) {
    let out = harness_bin(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cli_quantize_then_infer_matches_the_library() {
    use std::ffi::OsStr;
    let dir = tempfile::tempdir().unwrap();
    let x = reference_images();
    let calib = dir.path().join("calib.npy");
    let eval = dir.path().join("eval.npy");
    let (c, e) = (
        x.slice(s![..50, .., .., ..]).to_owned(),
        x.slice(s![50.., .., .., ..]).to_owned(),
    );
    write_npy(&calib, c.shape(), &c.iter().copied().collect::<Vec<_>>()).unwrap();
    write_npy(&eval, e.shape(), &e.iter().copied().collect::<Vec<_>>()).unwrap();
    let qhq = dir.path().join("cnn.qhq");
    let name = "w8-static-channel-sym-minmax";
    harness_ok(&[
        OsStr::new("quantize"),
        model_path().as_os_str(),
        OsStr::new("--strategy"),
        OsStr::new(name),
        OsStr::new("--calib"),
        calib.as_os_str(),
        OsStr::new("--out"),
        qhq.as_os_str(),
    ]);
    let logits_dir = dir.path().join("out");
    let input = format!("input={}", eval.display());
    harness_ok(&[
        OsStr::new("infer"),
        qhq.as_os_str(),
        OsStr::new("--input"),
        OsStr::new(&input),
        OsStr::new("--out"),
        logits_dir.as_os_str(),
    ]);
    let (shape, got) = read_npy_f32(&logits_dir.join("logits.npy")).unwrap();
    assert_eq!(shape, vec![50, 10]);
    // The same model built in process, calibrated on the same 50 digits in one batch.
    let graph = graph();
    let kernels = kernels::select(None).unwrap();
    let exec = Fp32Executor::new(&graph, kernels).unwrap();
    let ranges = ActivationRanges::observe_rules(
        &exec,
        "input",
        [c.into_dyn()],
        &[(Calibration::MinMax, true)],
    )
    .unwrap();
    let Strategy::Linear(l) = name.parse().unwrap() else {
        unreachable!()
    };
    let q = QuantizedModel::build(&graph, l, Some(&ranges), kernels).unwrap();
    let want = first_f32(q.run(&[("input", e.into_dyn())]).unwrap());
    assert_eq!(got, want.iter().copied().collect::<Vec<_>>());

    // FP32 ONNX through infer: a bare FILE for a one-input model.
    harness_ok(&[
        OsStr::new("infer"),
        model_path().as_os_str(),
        OsStr::new("--input"),
        eval.as_os_str(),
        OsStr::new("--out"),
        logits_dir.as_os_str(),
    ]);

    // Errors: an unknown input, a shape mismatch, a bad file, an unknown strategy.
    let wrong = dir.path().join("wrong.npy");
    write_npy(&wrong, &[2, 1, 27, 28], &vec![0f32; 2 * 27 * 28]).unwrap();
    let junk = dir.path().join("junk.npy");
    std::fs::write(&junk, b"junk").unwrap();
    for (args, says) in [
        (
            vec![format!("pixels={}", eval.display())],
            "no input `pixels`",
        ),
        (vec![format!("input={}", wrong.display())], "[2, 1, 27, 28]"),
        (vec![format!("input={}", junk.display())], "junk.npy"),
    ] {
        let mut argv = vec![OsStr::new("infer"), qhq.as_os_str()];
        for a in &args {
            argv.push(OsStr::new("--input"));
            argv.push(OsStr::new(a));
        }
        argv.extend([OsStr::new("--out"), logits_dir.as_os_str()]);
        let out = harness_bin(&argv);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let out = harness_bin(&[
        OsStr::new("quantize"),
        model_path().as_os_str(),
        OsStr::new("--strategy"),
        OsStr::new("w8-static-channel"),
        OsStr::new("--out"),
        qhq.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("w8-static-channel"), "{err}");
}

fn ppocr_dir() -> PathBuf {
    root().join("suites/data/ppocr_cls")
}

/// The 4 reference images of PP-OCR's text-direction classifier, then the same images turned by 180° (both
/// spatial axes flipped: the other class for this classifier): f32[8, 3, 48, 192].
fn ppocr_images() -> ArrayD<f32> {
    let (shape, data) = read_npy_f32(&ppocr_dir().join("reference/input_f32.npy")).unwrap();
    let x = ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap();
    let mut turned = x.clone();
    turned.invert_axis(Axis(2));
    turned.invert_axis(Axis(3));
    ndarray::concatenate(Axis(0), &[x.view(), turned.view()]).unwrap()
}

/// PP-OCR static int8 (hard-swish and HardSigmoid chains run as u8 tables) saved and loaded back: the loaded
/// model rebuilds the same 27 tables from the stored parameters and gives bit-identical probabilities, and
/// the saved plan names each table's chain.
#[test]
fn ppocr_static_artifact_loads_back_bit_exactly_with_its_tables() {
    let graph = harness::onnx::load_model(&ppocr_dir().join("ch_ppocr_mobile_v2.0_cls_infer.onnx"))
        .unwrap();
    let x = ppocr_images();
    let dir = tempfile::tempdir().unwrap();
    let kernels = kernels::select(None).unwrap();
    for name in [
        "w8-static-channel-affine-minmax",
        "w8-static-tensor-sym-minmax",
    ] {
        let q = build(&graph, name, &x);
        assert_eq!(q.lut_count(), 27, "{name}");
        let path = dir.path().join(format!("{name}.qhq"));
        q.save(&path).unwrap();
        let loaded = QuantizedModel::load_with(&path, kernels).unwrap();
        assert_eq!(loaded.lut_count(), 27, "{name}");
        let a = first_f32(q.run(&[("x", x.clone())]).unwrap());
        let b = first_f32(loaded.run(&[("x", x.clone())]).unwrap());
        assert!(
            a.iter().zip(&b).all(|(u, v)| u.to_bits() == v.to_bits()),
            "{name}: loaded model's probabilities differ"
        );
        // And the loaded model's float path is the original float path.
        let c = first_f32(loaded.without_luts().run(&[("x", x.clone())]).unwrap());
        assert!(
            a.iter().zip(&c).all(|(u, v)| u.to_bits() == v.to_bits()),
            "{name}: the float path differs from the tables"
        );
        assert_eq!(
            serialize_quantized(&QuantizedModel::load_with(&path, kernels).unwrap()),
            serialize_quantized(&q),
            "{name}"
        );
    }
}

/// Runs `model` in ONNX Runtime (scripts/check_qdq.py) on `x`; returns the first output and the script's
/// JSON line.
fn run_in_ort(model: &Path, x: &ArrayD<f32>, dir: &Path) -> (ArrayD<f32>, String) {
    let input = dir.join("ort_input.npy");
    write_npy(&input, x.shape(), &x.iter().copied().collect::<Vec<_>>()).unwrap();
    let out = dir.join("ort_output.npy");
    let run = Command::new("python3")
        .arg(root().join("scripts/check_qdq.py"))
        .args([model, &input, &out])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}: check_qdq.py failed: {}",
        model.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let (shape, data) = read_npy_f32(&out).unwrap();
    (
        ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap(),
        String::from_utf8_lossy(&run.stdout).trim().to_string(),
    )
}

/// The f32 initializer `name` of an exported model, as one value.
fn scalar_initializer(model: &harness::onnx::proto::ModelProto, name: &str) -> f32 {
    let t = model
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no initializer {name}"));
    f32::from_le_bytes(t.raw_data[..4].try_into().unwrap())
}

/// PP-OCR's text-direction classifier (depthwise and grouped convolutions, HardSigmoid, squeeze-excite blocks,
/// a legacy opset-11 Softmax) quantized static int8, per channel and per tensor, exported as QDQ: in ONNX
/// Runtime on the 4 reference inputs and the same turned by 180°, every class equals the harness's quantized
/// class and every probability is within half a step of the logits' u8 grid.
///
/// Bound: both runtimes compute every layer from the same integers, scales and zero points, but round the
/// requantization differently (ORT's fused QLinearConv / QLinearMatMul vs our multiplier), so a value may
/// land one u8 step apart and move the next layer by a fraction of its step; by the logits each may be a
/// step `s` apart. For two classes `dp0 = p0 p1 (d0 - d1)` with `p0 p1 <= 1/4` and `|d0 - d1| <= 2 s`, so
/// `|dp| <= s / 2`.
#[test]
fn ppocr_qdq_export_matches_the_harness_in_onnx_runtime() {
    if let Some(why) = onnxruntime_missing() {
        eprintln!(
            "SKIPPED: onnxruntime is not importable by python3 ({why}); `pip install onnxruntime onnx numpy` runs this test"
        );
        return;
    }
    let graph = harness::onnx::load_model(&ppocr_dir().join("ch_ppocr_mobile_v2.0_cls_infer.onnx"))
        .unwrap();
    // The logits: the classifier's MatMul (its bias Add runs in float on the dequantized product).
    let logits_value = graph
        .nodes
        .iter()
        .find(|n| n.op.op_type() == "MatMul")
        .unwrap()
        .outputs[0]
        .clone();
    let x = ppocr_images();
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "w8-static-channel-sym-minmax",
        "w8-static-tensor-sym-minmax",
        "w8-static-tensor-affine-minmax",
    ] {
        // Calibrated on the 8 images it is run on.
        let q = build(&graph, name, &x);
        let ours = first_f32(q.run(&[("x", x.clone())]).unwrap());
        let proto = harness::onnx::qdq::export_qdq(&q).unwrap();
        // Depthwise and grouped convolutions stay grouped Convs, their weights dequantized per channel.
        let g = proto.graph.as_ref().unwrap();
        let grouped = g
            .node
            .iter()
            .filter(|n| {
                n.op_type == "Conv" && n.attribute.iter().any(|a| a.name == "group" && a.i > 1)
            })
            .count();
        assert!(grouped >= 10, "{name}: {grouped} grouped convolutions");
        let model = dir.path().join(format!("{name}.onnx"));
        std::fs::write(&model, prost::Message::encode_to_vec(&proto)).unwrap();
        let (ort, report) = run_in_ort(&model, &x, dir.path());
        assert_eq!(ort.shape(), ours.shape(), "{name}");
        let (c_ours, c_ort) = (argmax_rows(&ours), argmax_rows(&ort));
        let diff = ours
            .iter()
            .zip(&ort)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let step = scalar_initializer(&proto, &format!("{logits_value}.scale"));
        // The logit margin `ln(p0 / p1) = d0 - d1` of each image, in logit steps, harness minus ORT.
        let margin = |p: &ArrayD<f32>| -> Vec<f32> {
            p.axis_iter(Axis(0))
                .map(|r| (r[0].ln() - r[1].ln()) / step)
                .collect()
        };
        let steps: Vec<f32> = margin(&ours)
            .iter()
            .zip(margin(&ort))
            .map(|(a, b)| a - b)
            .collect();
        eprintln!(
            "{name}: {grouped} grouped convs; classes harness {c_ours:?}, ONNX Runtime {c_ort:?}; max |prob diff| {diff:.2e}; margin differences in logit steps ({step:.3e}) {steps:.2?}; {report}"
        );
        assert_eq!(c_ours, c_ort, "{name}: classes");
        // Each logit at most one step apart: margins at most 2 steps, probabilities at most s / 2 (2e-6 steps
        // of float rounding in the Softmax and the logarithm).
        assert!(
            steps.iter().all(|d| d.abs() <= 2.0 + 2e-3),
            "{name}: margin differences {steps:?} steps"
        );
        assert!(
            diff <= step / 2.0,
            "{name}: max |prob diff| {diff} > half a logit step {step}"
        );
    }
}

/// A one-node graph over f32 input `x` (and initializers), output `y`.
fn one_node(opset: i64, op: harness::ir::Op, extra: &[(&str, Tensor)]) -> Graph {
    use harness::ir::{Dim, Node, ValueInfo};
    let info = |name: &str| ValueInfo {
        name: name.to_string(),
        shape: vec![Dim::Fixed(2), Dim::Fixed(3)],
    };
    Graph {
        name: "one".into(),
        opset,
        inputs: vec![info("x")],
        outputs: vec![info("y")],
        initializers: extra
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
        nodes: vec![Node {
            name: "the_node".into(),
            op,
            inputs: std::iter::once("x")
                .chain(extra.iter().map(|(n, _)| *n))
                .map(String::from)
                .collect(),
            outputs: vec!["y".into()],
        }],
    }
}

/// IR nodes whose meaning the graph's opset cannot express, and a graph whose types contradict each other,
/// are errors that name the node, the op and the reason, not files ONNX Runtime refuses or misreads.
#[test]
fn exporting_a_node_without_an_onnx_form_is_an_error_naming_it() {
    use harness::ir::{Op, UnaryOp};
    let cond = Tensor::F32(ArrayD::zeros(IxDyn(&[2, 3])));
    let other = Tensor::F32(ArrayD::zeros(IxDyn(&[2, 3])));
    for (graph, says) in [
        (
            one_node(13, Op::Unary(UnaryOp::HardSwish), &[]),
            "(HardSwish): no ONNX form in opset 13: HardSwish is in the default domain from opset 14",
        ),
        (
            one_node(
                16,
                Op::LayerNormalization {
                    axis: -1,
                    epsilon: 1e-5,
                },
                &[],
            ),
            "(LayerNormalization): no ONNX form in opset 16",
        ),
        (
            one_node(
                11,
                Op::Softmax {
                    axis: 0,
                    legacy: false,
                },
                &[],
            ),
            "(Softmax): no ONNX form in opset 11",
        ),
        (
            one_node(
                14,
                Op::Shape {
                    start: 1,
                    end: None,
                },
                &[],
            ),
            "(Shape): no ONNX form in opset 14: Shape takes start / end from opset 15",
        ),
        (
            one_node(
                13,
                Op::Split {
                    axis: 0,
                    sizes: None,
                    parts: 2,
                    index: 2,
                },
                &[],
            ),
            "(Split): no ONNX form in opset 13: output 2 of a Split into 2 parts",
        ),
        // Where's condition must be bool; `a` is an f32 initializer.
        (
            {
                let mut g = one_node(13, Op::Where, &[("a", cond), ("b", other)]);
                g.nodes[0].inputs = vec!["a".into(), "x".into(), "b".into()];
                g
            },
            "value \"a\" must be bool, but the graph already makes it float",
        ),
    ] {
        let err = harness::onnx::export_model(&graph).unwrap_err().to_string();
        assert!(
            err.contains("node \"the_node\"") && err.contains(says),
            "{err}"
        );
    }
    // A legacy (opset 11) Softmax over a non-last axis, in opset 13: Flatten, Softmax, Reshape.
    let g = one_node(
        13,
        Op::Softmax {
            axis: 1,
            legacy: true,
        },
        &[],
    );
    let ops: Vec<String> = harness::onnx::export_model(&g)
        .unwrap()
        .graph
        .unwrap()
        .node
        .into_iter()
        .map(|n| n.op_type)
        .collect();
    assert_eq!(ops, ["Shape", "Flatten", "Softmax", "Reshape"]);
}

/// `harness quantize --out --qdq` on PP-OCR: the `.qhq` (whose embedded graph holds HardSigmoid, Clip, Div
/// and the other unquantized nodes) runs through `harness infer`, and the QDQ file in ONNX Runtime gives the
/// same classes on the 8 images, within the two logit steps of the library test above.
#[test]
fn cli_quantize_writes_a_ppocr_qdq_model_onnx_runtime_runs() {
    use std::ffi::OsStr;
    if let Some(why) = onnxruntime_missing() {
        eprintln!(
            "SKIPPED: onnxruntime is not importable by python3 ({why}); `pip install onnxruntime onnx numpy` runs this test"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let x = ppocr_images();
    let images = dir.path().join("images.npy");
    write_npy(&images, x.shape(), &x.iter().copied().collect::<Vec<_>>()).unwrap();
    let (qhq, qdq) = (dir.path().join("cls.qhq"), dir.path().join("cls.qdq.onnx"));
    let model = ppocr_dir().join("ch_ppocr_mobile_v2.0_cls_infer.onnx");
    harness_ok(&[
        OsStr::new("quantize"),
        model.as_os_str(),
        OsStr::new("--strategy"),
        OsStr::new("w8-static-channel-sym-minmax"),
        OsStr::new("--calib"),
        images.as_os_str(),
        OsStr::new("--out"),
        qhq.as_os_str(),
        OsStr::new("--qdq"),
        qdq.as_os_str(),
    ]);
    let probs_dir = dir.path().join("out");
    let input = format!("x={}", images.display());
    harness_ok(&[
        OsStr::new("infer"),
        qhq.as_os_str(),
        OsStr::new("--input"),
        OsStr::new(&input),
        OsStr::new("--out"),
        probs_dir.as_os_str(),
    ]);
    let (shape, data) =
        read_npy_f32(&probs_dir.join("save_infer_model_scale_0.tmp_1.npy")).unwrap();
    let ours = ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap();
    let (ort, _) = run_in_ort(&qdq, &x, dir.path());
    assert_eq!(argmax_rows(&ours), argmax_rows(&ort));
    let diff = ours
        .iter()
        .zip(&ort)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    // Half a step of the classifier MatMul's output (the logits before their bias), as the library test.
    let proto = harness::onnx::decode_model(&std::fs::read(&qdq).unwrap(), &qdq).unwrap();
    let step = scalar_initializer(&proto, "linear_1.tmp_0.scale");
    assert!(
        diff <= step / 2.0,
        "max |prob diff| {diff}, logit step {step}"
    );
}
