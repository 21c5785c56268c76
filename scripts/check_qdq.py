#!/usr/bin/env python3
"""Runs an ONNX model (e.g. the QDQ export of `harness quantize --qdq`) in ONNX Runtime on a .npy input and
writes the first output as .npy; prints one JSON line describing the run.

Usage: check_qdq.py MODEL.onnx INPUT.npy OUTPUT.npy [--input NAME] [--labels LABELS.npy]

The JSON line holds: the QuantizeLinear / DequantizeLinear counts of the file, the op types of the graph ONNX
Runtime actually ran after its optimizations (QLinearConv / QGemm etc. when it fused the QDQ groups into int8
kernels), and the top-1 accuracy when --labels is given. Exit code 2 when onnxruntime or numpy is missing.
"""

import argparse
import collections
import json
import os
import sys
import tempfile


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--input-name", dest="input_name")
    p.add_argument("--labels")
    args = p.parse_args()
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:  # the Rust test skips on this
        print(f"skipped: {e}", file=sys.stderr)
        return 2

    report = {"onnxruntime": ort.__version__}
    try:
        import onnx

        m = onnx.load(args.model)
        onnx.checker.check_model(m)
        ops = collections.Counter(n.op_type for n in m.graph.node)
        report["file_ops"] = dict(sorted(ops.items()))
        report["opset"] = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")][0]
        report["checker"] = "ok"
    except ImportError:
        report["checker"] = "onnx not installed"

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        optimized = os.path.join(tmp, "optimized.onnx")
        so.optimized_model_filepath = optimized
        sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
        name = args.input_name or sess.get_inputs()[0].name
        x = np.load(args.input).astype(np.float32)
        y = sess.run(None, {name: x})[0]
        try:
            import onnx

            ran = collections.Counter(n.op_type for n in onnx.load(optimized).graph.node)
            report["ran_ops"] = dict(sorted(ran.items()))
        except Exception as e:  # noqa: BLE001 - informational only
            report["ran_ops"] = f"unavailable: {e}"
    np.save(args.output, y.astype(np.float32))
    report["output_shape"] = list(y.shape)
    if args.labels:
        labels = np.load(args.labels)
        report["top1"] = float((y.argmax(axis=1) == labels).mean())
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
