#!/usr/bin/env python3
"""ONNX Runtime as the peer for single GEMMs: the same shapes as `harness bench`, the same CSV columns.

Each case is a one-op ONNX model built with onnx.helper, weights as constant initializers (so ORT prepacks
them once, untimed), run by ORT's CPU provider with one intra-op thread, sequential execution and all graph
optimizations on. Per dtype:

    int8     MatMulInteger        u8 activations x s8 weights -> i32 (no zero points, like our kernel)
    dynint8  DynamicQuantizeLinear + MatMulInteger + Cast + Mul: f32 in, f32 out, exactly what
             onnxruntime.quantization.quantize_dynamic emits; ORT fuses it (the `kernel` column names the
             ops left after optimization, e.g. ort_DynamicQuantizeMatMul)
    int4     MatMulNBits (com.microsoft), 4-bit weights, block 32, symmetric, accuracy_level 4 (int8 compute)
    int4f32  the same at accuracy_level 1 (f32 compute)
    f32      MatMul

Timing: inputs and outputs bound once (IOBinding), warm-up, then runs until both --repeats runs and
--min-time-ms have passed; median and minimum per run. `gops = 2*m*k*n / median_ns`; the peak uses the clock
given with --clock-ghz (take it from `harness bench --print-clock`) and ORT's best ISA on this machine
(AVX-512 VNNI on Zen 4: 128 int8 ops and 32 f32 flops per cycle; see harness/src/bench/peaks.rs).
Every run also pays ORT's fixed per-call cost (measured on a one-element Identity model and printed on
stderr); it matters only for the smallest shapes.

    python3 scripts/peer_ort.py --clock-ghz 3.66 > ort.csv
    python3 scripts/peer_ort.py --dtype int8,f32 --shapes 256x1024x1024,1x768x768 --clock-ghz 3.66
    python3 scripts/peer_ort.py --compare ours.csv ort.csv     # side-by-side table, ours / ORT

Needs `pip install onnxruntime onnx numpy`.
"""

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

DEFAULT_SHAPES = "1x768x768,16x768x3072,128x768x768,256x1024x1024,1024x1024x1024,3136x576x64"

# The columns of `harness bench` (harness/src/bench/mod.rs, BenchRow), in order.
COLUMNS = [
    "op", "dtype", "isa", "isa_requested", "kernel", "m", "k", "n", "threads", "runs", "median_ns", "min_ns",
    "gops", "peak_gops", "peak_fraction", "ops_per_cycle", "clock_ghz", "cpu", "git_commit", "harness_version",
]

OPSET = 21


def parse_shapes(text):
    shapes = []
    for s in text.split(","):
        dims = s.strip().lower().split("x")
        try:
            m, k, n = (int(d) for d in dims)
        except ValueError:
            sys.exit(f"error: bad shape `{s}` in --shapes: expected MxKxN, e.g. 256x1024x1024")
        if min(m, k, n) <= 0:
            sys.exit(f"error: bad shape `{s}` in --shapes: dimensions must be positive")
        shapes.append((m, k, n))
    return shapes


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return "unknown"


def model(nodes, inputs, outputs, initializers, ms_domain=False):
    opsets = [helper.make_opsetid("", OPSET)]
    if ms_domain:
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    graph = helper.make_graph(nodes, "gemm", inputs, outputs, initializers)
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = 10
    return m


def build_int8(m, k, n, rng):
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    b = rng.integers(-128, 128, size=(k, n), dtype=np.int8)
    g = model(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])],
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])],
        [numpy_helper.from_array(b, "B")],
    )
    return g, a, np.int32


def build_dynint8(m, k, n, rng):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.integers(-127, 128, size=(k, n), dtype=np.int8)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["A"], ["A_q", "A_scale", "A_zp"]),
        helper.make_node("Mul", ["A_scale", "B_scale"], ["scales"]),
        helper.make_node("MatMulInteger", ["A_q", "B", "A_zp", "B_zp"], ["Y_i32"]),
        helper.make_node("Cast", ["Y_i32"], ["Y_f32"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["Y_f32", "scales"], ["Y"]),
    ]
    inits = [
        numpy_helper.from_array(b, "B"),
        numpy_helper.from_array(np.array(0.02, dtype=np.float32), "B_scale"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), "B_zp"),
    ]
    g = model(
        nodes,
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])],
        inits,
    )
    return g, a, np.float32


def build_int4(m, k, n, rng, block=32, accuracy_level=4):
    a = rng.standard_normal((m, k)).astype(np.float32)
    blocks = (k + block - 1) // block
    # Nibbles 0..15 per (column, row), rows padded to whole blocks; two per byte, the even row in the low nibble.
    q = rng.integers(0, 16, size=(n, blocks * block), dtype=np.uint8)
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8).reshape(n, blocks, block // 2)
    scales = (rng.random((n * blocks,), dtype=np.float32) * 0.01 + 0.001).astype(np.float32)
    node = helper.make_node(
        "MatMulNBits", ["A", "B", "scales"], ["Y"], domain="com.microsoft",
        K=k, N=n, bits=4, block_size=block, accuracy_level=accuracy_level,
    )
    g = model(
        [node],
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(packed, "B"), numpy_helper.from_array(scales, "scales")],
        ms_domain=True,
    )
    return g, a, np.float32


def build_f32(m, k, n, rng):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    g = model(
        [helper.make_node("MatMul", ["A", "B"], ["Y"])],
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(b, "B")],
    )
    return g, a, np.float32


# dtype -> (builder, arithmetic that sets the peak). One entry per ORT path compared against ours.
BUILDERS = {
    "int8": (build_int8, "int8"),
    "dynint8": (build_dynint8, "int8"),
    "int4": (lambda m, k, n, rng: build_int4(m, k, n, rng, accuracy_level=4), "int8"),
    "int4f32": (lambda m, k, n, rng: build_int4(m, k, n, rng, accuracy_level=1), "f32"),
    "f32": (build_f32, "f32"),
}


def session(onnx_model, optimized_path=None):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_path:
        opts.optimized_model_filepath = optimized_path
        opts.log_severity_level = 3  # not the warning that a serialized optimized model is hardware-specific
    return ort.InferenceSession(onnx_model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def ops_after_optimization(onnx_model):
    """The op types ORT actually runs for this model (after its graph fusions)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        session(onnx_model, path)
        return [node.op_type for node in onnx.load(path).graph.node]


def bound_runner(sess, a, out_dtype, out_shape):
    """A zero-argument callable running `sess` once on bound, preallocated input and output."""
    io = sess.io_binding()
    io.bind_ortvalue_input(sess.get_inputs()[0].name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a)))
    out = ort.OrtValue.ortvalue_from_numpy(np.zeros(out_shape, dtype=out_dtype))
    io.bind_ortvalue_output(sess.get_outputs()[0].name, out)
    return lambda: sess.run_with_iobinding(io)


def time_adaptive(run, min_repeats, min_time_ns):
    """As harness bench: warm-up (>= 2 runs and a quarter of min_time, at most 250 ms), then timed runs until
    both min_repeats runs and min_time. Returns (runs, median_ns, min_ns) with the nearest-rank median."""
    warm = min(min_time_ns // 4, 250_000_000)
    start, warm_runs = time.perf_counter_ns(), 0
    while warm_runs < 2 or time.perf_counter_ns() - start < warm:
        run()
        warm_runs += 1
    samples, total = [], 0
    while len(samples) < max(1, min_repeats) or total < min_time_ns:
        t = time.perf_counter_ns()
        run()
        dt = time.perf_counter_ns() - t
        total += dt
        samples.append(dt)
    samples.sort()
    median = samples[max(1, -(-len(samples) // 2)) - 1]
    return len(samples), median, samples[0]


def call_overhead_ns(min_repeats, min_time_ns):
    """Median time of one bound run of a one-element Identity model: ORT's fixed cost per call from Python."""
    g = model(
        [helper.make_node("Identity", ["A"], ["Y"])],
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])],
        [],
    )
    sess = session(g)
    return time_adaptive(bound_runner(sess, np.zeros(1, np.float32), np.float32, (1,)), min_repeats, min_time_ns)[1]


def measure(args):
    shapes = parse_shapes(args.shapes)
    dtypes = [d.strip() for d in args.dtype.split(",")]
    for d in dtypes:
        if d not in BUILDERS:
            sys.exit(f"error: unknown --dtype `{d}`; valid: {', '.join(BUILDERS)}")
    if not args.clock_ghz or args.clock_ghz <= 0:
        sys.exit("error: --clock-ghz is required (e.g. from `harness bench --print-clock`)")
    ops_per_cycle = {"int8": args.int8_ops_per_cycle, "f32": args.f32_ops_per_cycle}
    min_time_ns = args.min_time_ms * 1_000_000
    cpu = cpu_model()
    overhead = call_overhead_ns(args.repeats, min_time_ns)
    log = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    log(f"peer: onnxruntime {ort.__version__}, clock {args.clock_ghz:.3f} GHz, per-call overhead {overhead} ns")
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(COLUMNS)
    rng = np.random.default_rng(args.seed)
    for dtype in dtypes:
        build, arith = BUILDERS[dtype]
        for m, k, n in shapes:
            g, a, out_dtype = build(m, k, n, rng)
            kernel = "ort_" + "+".join(ops_after_optimization(g))
            sess = session(g)
            runs, median, best = time_adaptive(bound_runner(sess, a, out_dtype, (m, n)), args.repeats, min_time_ns)
            gops = 2.0 * m * k * n / max(median, 1)
            opc = ops_per_cycle[arith]
            peak = args.clock_ghz * opc * 1
            writer.writerow([
                "gemm", dtype, "ort", "ort", kernel, m, k, n, 1, runs, median, best,
                round(gops, 3), round(peak, 3), round(gops / peak, 4), opc, round(args.clock_ghz, 3), cpu,
                "-", f"onnxruntime {ort.__version__}",
            ])
            sys.stdout.flush()
            log(f"peer {dtype} {kernel} {m}x{k}x{n}: median {median / 1e3:.1f} us, {gops:.1f} GOPS, "
                f"{100 * gops / peak:.1f} % of {peak:.1f}")


# The ORT row each of our dtypes is compared with: itself where ORT has the same path, else ORT's FP32 MatMul
# (ORT's CPU provider has no bf16 or f16-weight GEMM, and no f32 x int8-weight one).
PEER_DTYPE = {"int8": "int8", "dynint8": "dynint8", "int4": "int4", "int4f32": "int4f32", "f32": "f32",
              "bf16": "f32", "f16": "f32", "f32w8": "f32"}


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def compare(ours_path, peer_path):
    """Markdown table: one line per row of ours, with the matching ORT row and the ratio of GOPS."""
    peer = {}
    for r in read_rows(peer_path):
        peer[(r["dtype"], r["m"], r["k"], r["n"], r["threads"])] = r
    header = ["shape", "dtype", "ours: kernel", "GOPS", "% peak", "ORT: op", "GOPS", "% peak", "ours / ORT"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ratios = {}
    for r in read_rows(ours_path):
        key = (PEER_DTYPE.get(r["dtype"], r["dtype"]), r["m"], r["k"], r["n"], r["threads"])
        p = peer.get(key)
        shape = f"{r['m']}x{r['k']}x{r['n']}"
        ours = float(r["gops"])
        cells = [shape, r["dtype"], r["kernel"], f"{ours:.1f}", f"{100 * float(r['peak_fraction']):.0f}"]
        if p is None:
            cells += ["(none)", "-", "-", "-"]
        else:
            theirs = float(p["gops"])
            ratio = ours / theirs if theirs > 0 else float("nan")
            ratios.setdefault(r["dtype"], []).append(ratio)
            peer_name = p["kernel"] + ("" if key[0] == r["dtype"] else " (f32)")
            cells += [peer_name, f"{theirs:.1f}", f"{100 * float(p['peak_fraction']):.0f}", f"{ratio:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    if ratios:
        lines.append("")
    for dtype, rs in ratios.items():
        lines.append(f"{dtype}: geometric mean of ours / ORT over {len(rs)} shapes: {statistics.geometric_mean(rs):.2f}x")
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--dtype", default="int8,dynint8,int4,int4f32,f32", help="comma list of: " + ", ".join(BUILDERS))
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma list of MxKxN")
    p.add_argument("--clock-ghz", type=float, help="core clock for the peak columns (harness bench --print-clock)")
    p.add_argument("--repeats", type=int, default=10, help="minimum timed runs per case")
    p.add_argument("--min-time-ms", type=int, default=500, help="minimum total timed time per case")
    p.add_argument("--int8-ops-per-cycle", type=int, default=128,
                   help="peak int8 ops/cycle of ORT's kernels here (Zen 4 AVX-512 VNNI: 128)")
    p.add_argument("--f32-ops-per-cycle", type=int, default=32,
                   help="peak f32 flops/cycle of ORT's kernels here (Zen 4 FMA: 32)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.add_argument("--compare", nargs=2, metavar=("OURS_CSV", "PEER_CSV"),
                   help="print the side-by-side table of two CSVs instead of measuring")
    args = p.parse_args()
    if args.compare:
        compare(*args.compare)
    else:
        measure(args)


if __name__ == "__main__":
    main()
