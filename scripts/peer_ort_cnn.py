#!/usr/bin/env python3
"""ONNX Runtime as the peer for a whole model: FP32, static int8 (QDQ) and dynamic int8 versions of an ONNX
classifier, measured on exactly the samples the harness uses (`harness export-split`).

For each variant it prints one CSV row: top-1 on the evaluation split, agreement with ORT's FP32, the ONNX
file's size, and per-batch latency (median / p90, one intra-op thread) at each requested batch size.

    cargo run --release -p harness -- export-split --out /tmp/split
    python3 scripts/peer_ort_cnn.py --model suites/data/ccexam_mnist_cnn/ccexam_mnist_cnn.onnx \
        --split /tmp/split/mnist-5k --batch 1 64

Needs `pip install onnxruntime onnx numpy`. Peer numbers are never written into the harness's own results.
"""

import argparse
import contextlib
import contextlib
import csv
import os
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)


class SplitReader(CalibrationDataReader):
    """Feeds the calibration split to ORT's calibrator in batches."""

    def __init__(self, input_name, samples, batch=32):
        self.batches = iter([{input_name: samples[i : i + batch]} for i in range(0, len(samples), batch)])

    def get_next(self):
        return next(self.batches, None)


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def predict(sess, x, batch=250):
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + batch]})[0].argmax(axis=1) for i in range(0, len(x), batch)])


def latency(sess, x, batch, warmup, repeats):
    """Median and p90 (nearest rank) of `repeats` timed runs on one batch, after `warmup` untimed ones."""
    name = sess.get_inputs()[0].name
    feed = {name: np.ascontiguousarray(x[:batch])}
    for _ in range(warmup):
        sess.run(None, feed)
    samples = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        sess.run(None, feed)
        samples.append(time.perf_counter_ns() - t)
    samples.sort()
    rank = lambda p: samples[min(len(samples), max(1, int(np.ceil(p * len(samples))))) - 1]
    return rank(0.5), rank(0.9)


def quantized_variants(model, input_name, calib, tmp):
    """Static QDQ (per tensor / channel; MinMax, Entropy, Percentile) and dynamic int8 versions of `model`."""
    variants = []
    methods = (
        (CalibrationMethod.MinMax, "minmax"),
        (CalibrationMethod.Entropy, "entropy"),
        (CalibrationMethod.Percentile, "percentile"),
    )
    for per_channel in (False, True):
        gran = "channel" if per_channel else "tensor"
        for method, label in methods:
            out = os.path.join(tmp, f"static_{label}_{gran}.onnx")
            quantize_static(
                model,
                out,
                SplitReader(input_name, calib),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
            )
            variants.append((f"ort-static-qdq-{gran}-{label}", out))
        out = os.path.join(tmp, f"dynamic_{gran}.onnx")
        quantize_dynamic(model, out, per_channel=per_channel, weight_type=QuantType.QInt8)
        variants.append((f"ort-dynamic-{gran}", out))
    return variants


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="FP32 ONNX model")
    ap.add_argument("--split", required=True, help="folder written by `harness export-split` for the dataset")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64], help="timed batch sizes")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()

    calib = np.load(os.path.join(args.split, "calibration_f32.npy"))
    x = np.load(os.path.join(args.split, "evaluation_f32.npy"))
    y = np.load(os.path.join(args.split, "evaluation_labels_i64.npy"))
    input_name = session(args.model).get_inputs()[0].name
    tmp = tempfile.mkdtemp(prefix="peer_ort_cnn_")
    # ORT's calibrators print progress on stdout; keep stdout for the CSV.
    with contextlib.redirect_stdout(sys.stderr):
        variants = [("fp32", args.model)] + quantized_variants(args.model, input_name, calib, tmp)

    writer = csv.writer(sys.stdout)
    writer.writerow(["runtime", "ort_version", "strategy", "batch", "threads", "eval_samples", "top1", "top1_drop",
                     "top1_agreement", "size_bytes", "latency_median_ns", "latency_p90_ns", "throughput_per_s"])
    fp32_pred, fp32_top1 = None, None
    for name, path in variants:
        sess = session(path)
        pred = predict(sess, x)
        top1 = float((pred == y).mean())
        if fp32_pred is None:
            fp32_pred, fp32_top1 = pred, top1
        agree = float((pred == fp32_pred).mean())
        for batch in args.batch:
            med, p90 = latency(sess, x, batch, args.warmup, args.repeats)
            writer.writerow(["onnxruntime", ort.__version__, name, batch, 1, len(y), f"{top1:.6f}",
                             f"{fp32_top1 - top1:.6f}", f"{agree:.6f}", os.path.getsize(path), med, p90,
                             f"{batch * 1e9 / med:.1f}"])
        sys.stdout.flush()


if __name__ == "__main__":
    main()
