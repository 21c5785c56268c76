#!/usr/bin/env python3
"""Runs every ONNX model of a directory in ONNX Runtime, in one process (harness/tests/onnx_export_roundtrip.rs).

Usage: run_onnx_dir.py DIR

Each case is a sub-directory DIR/<case>/ holding model.onnx and inputs r<run>.in.<name>.npy (run 0, 1, ...; the
name is the graph input's). Every run's outputs are written as DIR/<case>/r<run>.ort.<name>.npy, in the dtype
ONNX Runtime returns. One JSON object goes to stdout: {"onnxruntime": version, "cases": {case: "ok" or the
error}}; a case whose model fails the ONNX checker, does not load or does not run is an error there, and the
other cases still run. Exit code 2 when onnxruntime or numpy is missing, else 0.
"""

import json
import os
import re
import sys


def run_case(ort, np, onnx, path):
    model = os.path.join(path, "model.onnx")
    if onnx is not None:
        onnx.checker.check_model(onnx.load(model), full_check=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    runs = {}
    for f in os.listdir(path):
        m = re.fullmatch(r"r(\d+)\.in\.(.+)\.npy", f)
        if m:
            runs.setdefault(int(m.group(1)), {})[m.group(2)] = np.load(os.path.join(path, f))
    if not runs:
        raise RuntimeError("no inputs r<run>.in.<name>.npy")
    names = [o.name for o in sess.get_outputs()]
    for run, feeds in sorted(runs.items()):
        for y, name in zip(sess.run(None, feeds), names):
            np.save(os.path.join(path, f"r{run}.ort.{name}.npy"), y)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 1
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:  # the Rust test skips on this
        print(f"skipped: {e}", file=sys.stderr)
        return 2
    try:
        import onnx
    except ImportError:
        onnx = None
    root = sys.argv[1]
    cases = {}
    for case in sorted(os.listdir(root)):
        path = os.path.join(root, case)
        if not os.path.isdir(path):
            continue
        try:
            run_case(ort, np, onnx, path)
            cases[case] = "ok"
        except Exception as e:  # noqa: BLE001 - reported per case
            cases[case] = f"{type(e).__name__}: {e}"
    print(json.dumps({"onnxruntime": ort.__version__, "checker": onnx is not None, "cases": cases}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
