#!/usr/bin/env python3
"""Per-op ONNX parity fixtures: one tiny model per op and variant, run by ONNX Runtime on seeded inputs.

For every case this writes `suites/data/onnx_ops/<Op>/<variant>/`:

    model.onnx          the model, built with onnx.helper and checked with onnx.checker
    r<k>.in.<name>.npy  the inputs of run k (runs differ in the dynamic batch dimension `N`)
    r<k>.out.<name>.npy ONNX Runtime's outputs for run k
    case.toml           opset, runs, inputs, outputs, the tolerance (atol, rtol) and why it is what it is,
                        and optionally the op types the harness must import the model into

`harness/tests/onnx_ops.rs` loads every folder, runs the harness's FP32 executor and compares: element-wise
`|ours - ort| <= atol + rtol * |ort|`; integer and boolean outputs must match exactly.

ONNX Runtime runs with graph optimizations off (each op is its own kernel, so the reference is the op's
semantics, not a fused rewrite) and one intra-op thread. Inputs are seeded (`numpy.random.default_rng`),
so rerunning the script reproduces the files bit for bit with the same onnx / onnxruntime / numpy versions
(made with onnx 1.23, onnxruntime 1.32, numpy 2.4). The models and data are generated here and carry the
repository's licence.

    python3 scripts/make_onnx_fixtures.py            # rewrites suites/data/onnx_ops/
    python3 scripts/make_onnx_fixtures.py --only Conv,Resize

Needs `pip install onnx onnxruntime numpy`.
"""

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "suites" / "data" / "onnx_ops"
EPS = float(np.finfo(np.float32).eps)

# ---------------------------------------------------------------------------------------------------------
# Tolerances: named levels, each with the reason written into case.toml beside the numbers.

EXACT = ("exact", "data movement, comparisons, integer arithmetic or one correctly rounded f32 operation: "
         "both sides compute the same IEEE result")
ROUNDING = ("rounding", "two or three f32 operations whose order may differ between the implementations "
            "(e.g. x*(1/6) against x/6): a few ulp, 4 eps relative plus a 1e-7 floor near zero")
TRANSCENDENTAL = ("transcendental", "ONNX Runtime evaluates exp / log / tanh / logistic / erf / pow with "
                  "vectorized polynomial approximations accurate to a few ulp, the harness with libm or an "
                  "f64 series rounded once: 1e-6 relative (about 8 ulp) plus a 1e-7 floor near zero")
ACCUMULATE = ("accumulate", "a sum of k terms evaluated in another order (blocked GEMM, pairwise or f64 "
              "sums): the kernels crate's f32 GEMM budget, 64 * eps * sqrt(k) * max|y| "
              "(kernels::testing::tolerance::f32_gemm_max_diff), floored at 4 eps")


def tolerance(level, expected, k=None):
    name, why = level
    if name == "exact":
        return 0.0, 0.0, name, why
    if name == "rounding":
        return 1e-7, 4 * EPS, name, why
    if name == "transcendental":
        return 1e-7, 1e-6, name, why
    assert k is not None, "accumulate needs k"
    max_abs = max((float(np.abs(y).max()) if y.size and y.dtype == np.float32 else 0.0) for y in expected)
    atol = max(64 * EPS * math.sqrt(max(k, 1)) * max_abs, 4 * EPS)
    return atol, 0.0, f"{name} (k = {k})", why


# ---------------------------------------------------------------------------------------------------------
# Case builder

DTYPES = {
    "f32": (TensorProto.FLOAT, np.float32),
    "i64": (TensorProto.INT64, np.int64),
    "i32": (TensorProto.INT32, np.int32),
    "bool": (TensorProto.BOOL, np.bool_),
}

CASES = []


def uniform(lo=-1.0, hi=1.0):
    return lambda rng, shape: rng.uniform(lo, hi, size=shape).astype(np.float32)


def away_from_zero(lo=0.5, hi=2.0):
    """Magnitudes in [lo, hi] with random signs (safe divisors)."""
    def gen(rng, shape):
        mag = rng.uniform(lo, hi, size=shape)
        return (mag * rng.choice([-1.0, 1.0], size=shape)).astype(np.float32)
    return gen


def ints(lo, hi):
    return lambda rng, shape: rng.integers(lo, hi, size=shape, dtype=np.int64)


def bools(rng, shape):
    return rng.integers(0, 2, size=shape).astype(np.bool_)


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


class Input:
    def __init__(self, name, shape, dtype="f32", gen=None):
        self.name, self.shape, self.dtype = name, shape, dtype
        self.gen = gen or (uniform() if dtype == "f32" else ints(-5, 6) if dtype in ("i64", "i32") else bools)


def case(op, variant, nodes, inputs, outputs, *, inits=(), opset=17, batches=(2,), level=EXACT, k=None,
         expect_ops=None, value_info=()):
    """outputs: list of (name, dtype, shape or None); shapes may use 'N' (the dynamic batch)."""
    CASES.append(dict(op=op, variant=variant, nodes=nodes, inputs=inputs, outputs=outputs,
                      inits=list(inits), opset=opset, batches=list(batches), level=level, k=k,
                      expect_ops=expect_ops, value_info=list(value_info)))


def node(op_type, inputs, outputs, **attrs):
    return helper.make_node(op_type, inputs, outputs, name=f"{op_type.lower()}_{outputs[0]}", **attrs)


def tvi(name, dtype, shape):
    return helper.make_tensor_value_info(name, DTYPES[dtype][0], shape)


def build(c):
    graph = helper.make_graph(
        c["nodes"], f"{c['op']}_{c['variant']}",
        [tvi(i.name, i.dtype, i.shape) for i in c["inputs"]],
        [tvi(n, d, s) for n, d, s in c["outputs"]],
        initializer=c["inits"], value_info=c["value_info"])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", c["opset"])],
                              producer_name="make_onnx_fixtures.py")
    model.ir_version = 8 if c["opset"] <= 17 else 9 if c["opset"] <= 20 else 10
    # Output shapes left as None are filled in by ONNX shape inference.
    if any(shape is None for _, _, shape in c["outputs"]):
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    missing = [o.name for o in model.graph.output if not o.type.tensor_type.HasField("shape")]
    assert not missing, f"give the shapes of outputs {missing}: shape inference cannot"
    onnx.checker.check_model(model, full_check=True)
    return model


SYMBOLIC = {"H": 6, "W": 5}


def concrete(shape, batch):
    return [batch if d == "N" else SYMBOLIC.get(d, d) for d in shape]


def write(c, seed):
    folder = OUT / c["op"] / c["variant"]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model = build(c)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    expected = []
    for r, batch in enumerate(c["batches"]):
        feeds = {}
        for i in c["inputs"]:
            a = np.asarray(i.gen(rng, concrete(i.shape, batch)), dtype=DTYPES[i.dtype][1])
            feeds[i.name] = a
            np.save(folder / f"r{r}.in.{i.name}.npy", a)
        outs = sess.run([n for n, _, _ in c["outputs"]], feeds)
        for (name, _, _), y in zip(c["outputs"], outs):
            np.save(folder / f"r{r}.out.{name}.npy", y)
            expected.append(y)
    atol, rtol, level, why = tolerance(c["level"], expected, c["k"])
    lines = [
        f'op = "{c["op"]}"',
        f'variant = "{c["variant"]}"',
        f"opset = {c['opset']}",
        f"runs = {len(c['batches'])}",
        "inputs = [" + ", ".join(f'"{i.name}"' for i in c["inputs"]) + "]",
        "outputs = [" + ", ".join(f'"{n}"' for n, _, _ in c["outputs"]) + "]",
        f'tolerance = "{level}"',
        f"atol = {atol:.3e}",
        f"rtol = {rtol:.3e}",
        f'why = "{why}"',
    ]
    if c["expect_ops"] is not None:
        lines.append("expect_ops = [" + ", ".join(f'"{o}"' for o in c["expect_ops"]) + "]")
    (folder / "case.toml").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------------------
# The cases

def rnd(rng_seed, shape, lo=-1.0, hi=1.0):
    return np.random.default_rng(rng_seed).uniform(lo, hi, size=shape).astype(np.float32)


def conv_cases():
    x = Input("x", ["N", 3, 8, 8])
    case("Conv", "basic_bias_opset11", [node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
         [x], [("y", "f32", ["N", 4, 8, 8])], inits=[const("w", rnd(1, [4, 3, 3, 3])), const("b", rnd(2, [4]))],
         opset=11, batches=[1, 3], level=ACCUMULATE, k=28)
    case("Conv", "strides_dilations_asymmetric_pads",
         [node("Conv", ["x", "w"], ["y"], strides=[2, 1], dilations=[2, 2], pads=[1, 0, 2, 1])],
         [Input("x", ["N", 3, 9, 8])], [("y", "f32", None)], inits=[const("w", rnd(3, [5, 3, 3, 2]))],
         level=ACCUMULATE, k=18)
    case("Conv", "grouped", [node("Conv", ["x", "w", "b"], ["y"], group=2, pads=[1, 1, 1, 1])],
         [Input("x", ["N", 4, 7, 6])], [("y", "f32", None)],
         inits=[const("w", rnd(4, [6, 2, 3, 3])), const("b", rnd(5, [6]))], level=ACCUMULATE, k=19)
    case("Conv", "depthwise", [node("Conv", ["x", "w", "b"], ["y"], group=6, strides=[2, 1], pads=[2, 2, 2, 2])],
         [Input("x", ["N", 6, 9, 7])], [("y", "f32", None)],
         inits=[const("w", rnd(6, [6, 1, 5, 5])), const("b", rnd(7, [6]))], level=ACCUMULATE, k=26)
    case("Conv", "auto_pad_same_upper_stride2",
         [node("Conv", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_UPPER")],
         [Input("x", ["N", 2, 7, 8])], [("y", "f32", None)], inits=[const("w", rnd(8, [3, 2, 4, 3]))],
         level=ACCUMULATE, k=24)
    case("Conv", "auto_pad_same_lower", [node("Conv", ["x", "w"], ["y"], auto_pad="SAME_LOWER")],
         [Input("x", ["N", 2, "H", "W"])], [("y", "f32", None)], inits=[const("w", rnd(9, [3, 2, 2, 4]))],
         level=ACCUMULATE, k=16)
    case("Conv", "auto_pad_valid", [node("Conv", ["x", "w"], ["y"], auto_pad="VALID", strides=[2, 2])],
         [Input("x", ["N", 2, 7, 7])], [("y", "f32", None)], inits=[const("w", rnd(10, [3, 2, 3, 3]))],
         level=ACCUMULATE, k=18)
    case("Conv", "runtime_weights", [node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
         [Input("x", [2, 3, 5, 5]), Input("w", [4, 3, 3, 3])], [("y", "f32", None)], level=ACCUMULATE, k=27)

    case("ConvTranspose", "stride2_pads_output_padding",
         [node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])],
         [Input("x", ["N", 3, 4, 5])], [("y", "f32", None)],
         inits=[const("w", rnd(11, [3, 2, 3, 3])), const("b", rnd(12, [2]))], level=ACCUMULATE, k=28)
    case("ConvTranspose", "grouped_asymmetric",
         [node("ConvTranspose", ["x", "w"], ["y"], group=2, strides=[1, 2], pads=[0, 1, 1, 0])],
         [Input("x", ["N", 4, 3, 4])], [("y", "f32", None)], inits=[const("w", rnd(13, [4, 3, 2, 3]))],
         level=ACCUMULATE, k=12)
    for auto_pad, shape in [("NOTSET", [9, 10]), ("SAME_UPPER", [9, 10]), ("SAME_UPPER", None),
                            ("SAME_LOWER", None)]:
        attrs = dict(strides=[2, 2], auto_pad=auto_pad)
        if shape:
            attrs["output_shape"] = shape
        case("ConvTranspose", f"{auto_pad.lower()}_{'output_shape' if shape else 'no_output_shape'}",
             [node("ConvTranspose", ["x", "w"], ["y"], **attrs)],
             [Input("x", ["N", 2, 4, 5])], [("y", "f32", ["N", 3, "oh", "ow"])],
             inits=[const("w", rnd(14, [2, 3, 3, 3]))], level=ACCUMULATE, k=18)

    # BatchNormalization folded into the Conv before it (with and without a conv bias), and alone.
    bn = lambda s: [const(f"bn_s{s}", rnd(20 + s, [4], 0.5, 1.5)), const(f"bn_b{s}", rnd(30 + s, [4])),
                    const(f"bn_m{s}", rnd(40 + s, [4])), const(f"bn_v{s}", rnd(50 + s, [4], 0.2, 2.0))]
    case("BatchNormalization", "folded_into_conv_opset11",
         [node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
          node("BatchNormalization", ["c", "bn_s0", "bn_b0", "bn_m0", "bn_v0"], ["y"], epsilon=1e-3)],
         [x], [("y", "f32", None)], inits=[const("w", rnd(15, [4, 3, 3, 3])), const("b", rnd(16, [4]))] + bn(0),
         opset=11, level=ACCUMULATE, k=28, expect_ops=["Conv"])
    case("BatchNormalization", "folded_into_conv_no_bias",
         [node("Conv", ["x", "w"], ["c"]),
          node("BatchNormalization", ["c", "bn_s1", "bn_b1", "bn_m1", "bn_v1"], ["y"])],
         [x], [("y", "f32", None)], inits=[const("w", rnd(17, [4, 3, 1, 1]))] + bn(1), opset=15,
         level=ACCUMULATE, k=4, expect_ops=["Conv"])
    case("BatchNormalization", "standalone",
         [node("BatchNormalization", ["x", "bn_s2", "bn_b2", "bn_m2", "bn_v2"], ["y"], epsilon=1e-2)],
         [Input("x", ["N", 4, 3, 5])], [("y", "f32", None)], inits=bn(2), opset=15, level=ROUNDING,
         expect_ops=["BatchNormalization"])
    case("Add", "conv_bias_folded",
         [node("Conv", ["x", "w"], ["c"]), node("Add", ["c", "cb"], ["y"])],
         [x], [("y", "f32", None)], inits=[const("w", rnd(18, [4, 3, 1, 1])), const("cb", rnd(19, [1, 4, 1, 1]))],
         level=ACCUMULATE, k=4, expect_ops=["Conv"])


def gemm_cases():
    case("Gemm", "transA_transB_alpha_beta",
         [node("Gemm", ["a", "b", "c"], ["y"], transA=1, transB=1, alpha=0.5, beta=-2.0)],
         [Input("a", [6, 4])], [("y", "f32", None)], inits=[const("b", rnd(60, [5, 6])), const("c", rnd(61, [5]))],
         batches=[0], level=ACCUMULATE, k=7)
    case("Gemm", "dynamic_rows_c_matrix", [node("Gemm", ["a", "b", "c"], ["y"])],
         [Input("a", ["N", 8]), Input("c", ["N", 3])], [("y", "f32", None)], inits=[const("b", rnd(62, [8, 3]))],
         batches=[1, 4], level=ACCUMULATE, k=9)
    case("Gemm", "no_c_opset11", [node("Gemm", ["a", "b"], ["y"], transB=1)],
         [Input("a", ["N", 8])], [("y", "f32", None)], inits=[const("b", rnd(63, [3, 8]))], opset=11,
         level=ACCUMULATE, k=8)
    case("MatMul", "weights_2d", [node("MatMul", ["a", "w"], ["y"])],
         [Input("a", ["N", 3, 8])], [("y", "f32", None)], inits=[const("w", rnd(64, [8, 5]))], batches=[1, 2],
         level=ACCUMULATE, k=8)
    case("MatMul", "batched_runtime", [node("MatMul", ["a", "b"], ["y"])],
         [Input("a", ["N", 3, 4, 6]), Input("b", ["N", 3, 6, 5])], [("y", "f32", None)], level=ACCUMULATE, k=6)
    case("MatMul", "broadcast_batch", [node("MatMul", ["a", "b"], ["y"])],
         [Input("a", [2, 1, 3, 4]), Input("b", [3, 4, 5])], [("y", "f32", None)], batches=[0],
         level=ACCUMULATE, k=4)
    case("MatMul", "vector_operands", [node("MatMul", ["v", "b"], ["y"]), node("MatMul", ["b", "u"], ["z"])],
         [Input("v", [4]), Input("b", [2, 4, 4]), Input("u", [4])], [("y", "f32", None), ("z", "f32", None)],
         batches=[0], level=ACCUMULATE, k=4)


def elementwise_cases():
    bcast = [Input("a", ["N", 3, 4, 5]), Input("b", [3, 1, 5], gen=away_from_zero())]
    for op in ["Add", "Sub", "Mul", "Div"]:
        case(op, "broadcast", [node(op, ["a", "b"], ["y"])], bcast, [("y", "f32", None)], batches=[1, 2])
        case(op, "scalar_first", [node(op, ["s", "a"], ["y"])],
             [Input("a", ["N", 6], gen=away_from_zero())], [("y", "f32", None)], inits=[const("s", np.float32(1.75))])
        case(op, "int64", [node(op, ["a", "b"], ["y"])],
             [Input("a", ["N", 4], "i64", ints(-20, 21)), Input("b", [4], "i64", lambda r, s: r.choice([-3, -2, 2, 5], s))],
             [("y", "i64", None)])
    case("Pow", "tensor_exponent", [node("Pow", ["a", "b"], ["y"])],
         [Input("a", ["N", 5], gen=uniform(0.1, 3.0)), Input("b", [5], gen=uniform(-2.0, 2.0))],
         [("y", "f32", None)], level=TRANSCENDENTAL)
    case("Pow", "square_cube", [node("Pow", ["a", "two"], ["y"]), node("Pow", ["a", "three"], ["z"])],
         [Input("a", ["N", 5], gen=uniform(-3.0, 3.0))], [("y", "f32", None), ("z", "f32", None)],
         inits=[const("two", np.float32(2.0)), const("three", np.float32(3.0))], level=TRANSCENDENTAL)
    case("Pow", "int_exponent", [node("Pow", ["a", "e"], ["y"])],
         [Input("a", ["N", 4], gen=uniform(-2.0, 2.0))], [("y", "f32", None)],
         inits=[const("e", np.array([0, 1, 3, -2], dtype=np.int64))], level=TRANSCENDENTAL)

    positive = uniform(0.05, 4.0)
    wide = uniform(-4.0, 4.0)
    for op, gen, level in [("Sqrt", positive, EXACT), ("Reciprocal", away_from_zero(0.1, 4.0), EXACT),
                           ("Exp", wide, TRANSCENDENTAL), ("Log", positive, TRANSCENDENTAL),
                           ("Erf", wide, TRANSCENDENTAL), ("Tanh", wide, TRANSCENDENTAL),
                           ("Sigmoid", uniform(-9.0, 9.0), TRANSCENDENTAL), ("Relu", wide, EXACT),
                           ("Neg", wide, EXACT), ("Abs", wide, EXACT), ("Floor", wide, EXACT), ("Ceil", wide, EXACT)]:
        case(op, "basic", [node(op, ["x"], ["y"])], [Input("x", ["N", 3, 7], gen=gen)], [("y", "f32", None)],
             level=level, batches=[1, 2])
    case("HardSigmoid", "default", [node("HardSigmoid", ["x"], ["y"])], [Input("x", ["N", 20], gen=wide)],
         [("y", "f32", None)], level=ROUNDING)
    case("HardSigmoid", "alpha_beta", [node("HardSigmoid", ["x"], ["y"], alpha=0.3, beta=0.4)],
         [Input("x", ["N", 20], gen=wide)], [("y", "f32", None)], level=ROUNDING)
    case("HardSwish", "opset14", [node("HardSwish", ["x"], ["y"])], [Input("x", ["N", 30], gen=uniform(-5, 5))],
         [("y", "f32", None)], opset=14, level=ROUNDING)
    case("LeakyRelu", "default", [node("LeakyRelu", ["x"], ["y"])], [Input("x", ["N", 20], gen=wide)],
         [("y", "f32", None)])
    case("LeakyRelu", "alpha", [node("LeakyRelu", ["x"], ["y"], alpha=0.2)], [Input("x", ["N", 20], gen=wide)],
         [("y", "f32", None)], level=ROUNDING)
    case("Clip", "inputs_opset11", [node("Clip", ["x", "lo", "hi"], ["y"])], [Input("x", ["N", 20], gen=wide)],
         [("y", "f32", None)], inits=[const("lo", np.float32(-1.5)), const("hi", np.float32(2.0))], opset=11)
    case("Clip", "max_only_opset13", [node("Clip", ["x", "", "hi"], ["y"])], [Input("x", ["N", 20], gen=wide)],
         [("y", "f32", None)], inits=[const("hi", np.float32(0.5))], opset=13)
    case("Clip", "attributes_opset10", [node("Clip", ["x"], ["y"], min=-0.5, max=1.0)],
         [Input("x", ["N", 20], gen=wide)], [("y", "f32", None)], opset=10)

    three = [Input("a", ["N", 3, 4]), Input("b", [4]), Input("c", ["N", 1, 4])]
    for op, level in [("Max", EXACT), ("Min", EXACT), ("Sum", ROUNDING), ("Mean", ROUNDING)]:
        case(op, "three_broadcast", [node(op, ["a", "b", "c"], ["y"])], three, [("y", "f32", None)], level=level)
        case(op, "single", [node(op, ["a"], ["y"])], [Input("a", ["N", 5])], [("y", "f32", None)])

    cmp_in = [Input("a", ["N", 3, 4], gen=lambda r, s: r.integers(-2, 3, s).astype(np.float32)),
              Input("b", [4], gen=lambda r, s: r.integers(-2, 3, s).astype(np.float32))]
    for op in ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]:
        case(op, "broadcast", [node(op, ["a", "b"], ["y"])], cmp_in, [("y", "bool", None)])
    case("Equal", "int64", [node("Equal", ["a", "b"], ["y"])],
         [Input("a", ["N", 6], "i64", ints(0, 3)), Input("b", ["N", 6], "i64", ints(0, 3))], [("y", "bool", None)])
    for op in ["And", "Or", "Xor"]:
        case(op, "broadcast", [node(op, ["a", "b"], ["y"])], [Input("a", ["N", 2, 3], "bool"), Input("b", [3], "bool")],
             [("y", "bool", None)])
    case("Not", "of_comparison", [node("Greater", ["a", "b"], ["g"]), node("Not", ["g"], ["y"])],
         [Input("a", ["N", 8]), Input("b", ["N", 8])], [("y", "bool", None)])
    case("Not", "bool_input", [node("Not", ["a"], ["y"])], [Input("a", ["N", 8], "bool")], [("y", "bool", None)])
    case("Where", "broadcast_condition",
         [node("Less", ["a", "b"], ["c"]), node("Where", ["c", "a", "z"], ["y"])],
         [Input("a", ["N", 3, 4]), Input("b", [4]), Input("z", ["N", 1, 4])], [("y", "f32", None)])
    case("Where", "int64", [node("Where", ["c", "a", "b"], ["y"])],
         [Input("c", ["N", 5], "bool"), Input("a", ["N", 5], "i64"), Input("b", [1], "i64")], [("y", "i64", None)])
    for to, name in [(TensorProto.INT32, "i32"), (TensorProto.INT64, "i64"), (TensorProto.BOOL, "bool")]:
        case("Cast", f"f32_to_{name}", [node("Cast", ["x"], ["y"], to=to)],
             [Input("x", ["N", 12], gen=lambda r, s: (r.uniform(-5, 5, s) * r.integers(0, 2, s)).astype(np.float32))],
             [("y", name, None)])
    case("Cast", "f32_to_i64_opset21", [node("Cast", ["x"], ["y"], to=TensorProto.INT64)],
         [Input("x", ["N", 12], gen=uniform(-9, 9))], [("y", "i64", None)], opset=21)
    case("Cast", "i64_to_f32", [node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], [Input("x", ["N", 6], "i64")],
         [("y", "f32", None)])
    case("Cast", "bool_to_f32_and_back", [node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
                                          node("Cast", ["f"], ["y"], to=TensorProto.BOOL)],
         [Input("x", ["N", 6], "bool")], [("f", "f32", None), ("y", "bool", None)])


def norm_cases():
    case("Softmax", "legacy_axis1_opset11", [node("Softmax", ["x"], ["y"])], [Input("x", ["N", 3, 4], gen=uniform(-3, 3))],
         [("y", "f32", None)], opset=11, level=TRANSCENDENTAL)
    case("Softmax", "axis1_opset13", [node("Softmax", ["x"], ["y"], axis=1)],
         [Input("x", ["N", 3, 4], gen=uniform(-3, 3))], [("y", "f32", None)], opset=13, level=TRANSCENDENTAL)
    case("Softmax", "last_axis", [node("Softmax", ["x"], ["y"])], [Input("x", ["N", 2, 7], gen=uniform(-8, 8))],
         [("y", "f32", None)], level=TRANSCENDENTAL, batches=[1, 3])
    case("LayerNormalization", "last_axis_scale_bias",
         [node("LayerNormalization", ["x", "g", "b"], ["y"], epsilon=1e-3)],
         [Input("x", ["N", 3, 8])], [("y", "f32", None)], inits=[const("g", rnd(70, [8])), const("b", rnd(71, [8]))],
         level=ACCUMULATE, k=8)
    case("LayerNormalization", "two_axes_scale_only", [node("LayerNormalization", ["x", "g"], ["y"], axis=-2)],
         [Input("x", ["N", 3, 4, 5], gen=uniform(-2, 3))], [("y", "f32", None)], inits=[const("g", rnd(72, [4, 5]))],
         level=ACCUMULATE, k=20)


def pool_cases():
    x = Input("x", ["N", 2, 7, 8])
    case("MaxPool", "pads_strides", [node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
         [x], [("y", "f32", None)])
    case("MaxPool", "ceil_dilations", [node("MaxPool", ["x"], ["y"], kernel_shape=[2, 3], strides=[2, 2], dilations=[2, 1], ceil_mode=1)],
         [x], [("y", "f32", None)])
    case("MaxPool", "auto_pad_same_upper", [node("MaxPool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER")],
         [x], [("y", "f32", None)])
    case("AveragePool", "exclude_pad", [node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
         [x], [("y", "f32", None)], level=ACCUMULATE, k=9)
    case("AveragePool", "include_pad_ceil",
         [node("AveragePool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 1, 1], count_include_pad=1, ceil_mode=1)],
         # ONNX shape inference says width 4; ONNX Runtime (and the harness) drop the window that would start
         # in the end padding and give 3, so the output shape is left symbolic.
         [x], [("y", "f32", ["N", 2, "oh", "ow"])], level=ACCUMULATE, k=6)
    case("AveragePool", "dilations_opset19",
         [node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 1], pads=[1, 0, 0, 1])],
         [x], [("y", "f32", None)], opset=19, level=ACCUMULATE, k=4)
    case("AveragePool", "plain_2x2", [node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
         [x], [("y", "f32", None)], level=ACCUMULATE, k=4)
    case("GlobalAveragePool", "basic", [node("GlobalAveragePool", ["x"], ["y"])], [x], [("y", "f32", None)],
         level=ACCUMULATE, k=56, batches=[1, 2])
    case("GlobalMaxPool", "basic", [node("GlobalMaxPool", ["x"], ["y"])], [x], [("y", "f32", None)], batches=[1, 2])


def reduce_cases():
    x = Input("x", ["N", 3, 4, 5])
    for op in ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2"]:
        level = EXACT if op in ("ReduceMax", "ReduceMin") else ACCUMULATE
        attr_opset = 11 if op != "ReduceSum" else 11
        case(op, "axes_attribute_opset11", [node(op, ["x"], ["y"], axes=[1, -1])], [x], [("y", "f32", None)],
             opset=attr_opset, level=level, k=15)
        case(op, "axes_input_opset18_no_keepdims", [node(op, ["x", "axes"], ["y"], keepdims=0)], [x],
             [("y", "f32", None)], inits=[const("axes", np.array([2], dtype=np.int64))], opset=18, level=level, k=4)
        case(op, "all_axes", [node(op, ["x"], ["y"])], [x], [("y", "f32", None)], opset=18, level=level, k=120)
    case("ReduceSum", "axes_input_opset13", [node("ReduceSum", ["x", "axes"], ["y"])], [x], [("y", "f32", None)],
         inits=[const("axes", np.array([0, 2], dtype=np.int64))], opset=13, level=ACCUMULATE, k=8)
    case("ReduceSum", "noop_with_empty_axes", [node("ReduceSum", ["x"], ["y"], noop_with_empty_axes=1)], [x],
         [("y", "f32", None)], opset=13, expect_ops=["Identity"])
    case("ReduceSum", "int64", [node("ReduceSum", ["x", "axes"], ["y"])], [Input("x", ["N", 4], "i64")],
         [("y", "i64", None)], inits=[const("axes", np.array([1], dtype=np.int64))], opset=13)


def shape_cases():
    x = Input("x", ["N", 3, 4])
    case("Flatten", "axis2", [node("Flatten", ["x"], ["y"], axis=2)], [Input("x", ["N", 3, 4, 2])], [("y", "f32", None)])
    case("Flatten", "axis0", [node("Flatten", ["x"], ["y"], axis=0)], [x], [("y", "f32", None)])
    case("Reshape", "zero_and_minus_one", [node("Reshape", ["x", "s"], ["y"])], [x], [("y", "f32", None)],
         inits=[const("s", np.array([0, -1, 2], dtype=np.int64))])
    case("Reshape", "runtime_shape_chain",  # x.view(x.size(0), -1) as torch exports it
         [node("Shape", ["x"], ["s"]), node("Gather", ["s", "zero"], ["n"], axis=0),
          node("Unsqueeze", ["n", "ax0"], ["n1"]), node("Concat", ["n1", "m1"], ["t"], axis=0),
          node("Reshape", ["x", "t"], ["y"])],
         [x], [("y", "f32", ["N", 12])],
         inits=[const("zero", np.array(0, dtype=np.int64)), const("ax0", np.array([0], dtype=np.int64)),
                const("m1", np.array([-1], dtype=np.int64))], batches=[1, 3], opset=13)
    # (the output shape is given: shape inference does not follow the runtime shape chain)
    case("Reshape", "constant_shape_chain_folded",  # Shape -> Gather -> Concat on a constant folds at import
         [node("Shape", ["w"], ["s"]), node("Gather", ["s", "idx"], ["d"], axis=0),
          node("Concat", ["m1", "d"], ["t"], axis=0), node("Reshape", ["x", "t"], ["r"]),
          node("MatMul", ["r", "w"], ["y"])],
         [Input("x", ["N", 2, 6])], [("y", "f32", None)],
         inits=[const("w", rnd(80, [6, 3])), const("idx", np.array([0], dtype=np.int64)),
                const("m1", np.array([-1], dtype=np.int64))], level=ACCUMULATE, k=6, expect_ops=["Reshape", "MatMul"])
    case("Reshape", "opset21_chain",  # the shape ops at their opset-21 versions
         [node("Unsqueeze", ["x", "ax1"], ["u"]), node("Transpose", ["u"], ["t"], perm=[0, 2, 1, 3]),
          node("Flatten", ["t"], ["f"], axis=2), node("Reshape", ["f", "s"], ["r"]),
          node("Cast", ["r"], ["c"], to=TensorProto.FLOAT), node("Identity", ["c"], ["i"]),
          node("Squeeze", ["i", "ax2"], ["y"])],
         [x], [("y", "f32", None)],
         inits=[const("ax1", np.array([1], dtype=np.int64)), const("s", np.array([0, -1, 1], dtype=np.int64)),
                const("ax2", np.array([2], dtype=np.int64))], opset=21, batches=[1, 2])
    case("Transpose", "perm", [node("Transpose", ["x"], ["y"], perm=[2, 0, 1])], [x], [("y", "f32", None)])
    case("Transpose", "default_reverse", [node("Transpose", ["x"], ["y"])], [x], [("y", "f32", None)])
    case("Concat", "three_inputs", [node("Concat", ["a", "b", "c"], ["y"], axis=-1)],
         [Input("a", ["N", 2, 1]), Input("b", ["N", 2, 3]), Input("c", ["N", 2, 2])], [("y", "f32", None)])
    case("Concat", "int64_axis0", [node("Concat", ["a", "b"], ["y"], axis=0)],
         [Input("a", ["N", 3], "i64"), Input("b", [1, 3], "i64")], [("y", "i64", None)])
    case("Slice", "axes_negative_steps_opset13", [node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])],
         [Input("x", ["N", 6, 7])], [("y", "f32", None)],
         inits=[const("st", np.array([-1, 1], dtype=np.int64)), const("en", np.array([-100, 6], dtype=np.int64)),
                const("ax", np.array([2, -2], dtype=np.int64)), const("sp", np.array([-2, 2], dtype=np.int64))], opset=13)
    case("Slice", "clamped_no_axes_opset11", [node("Slice", ["x", "st", "en"], ["y"])], [x], [("y", "f32", None)],
         inits=[const("st", np.array([0, 1, -3], dtype=np.int64)),
                const("en", np.array([1000, 2**62, 3], dtype=np.int64))], opset=11)
    case("Slice", "attributes_opset9", [node("Slice", ["x"], ["y"], starts=[1, 0], ends=[3, -1], axes=[1, 2])],
         [x], [("y", "f32", None)], opset=9)
    case("Split", "attribute_sizes_opset11", [node("Split", ["x"], ["a", "b"], axis=1, split=[1, 2])],
         [x], [("a", "f32", None), ("b", "f32", None)], opset=11)
    case("Split", "input_sizes_opset13", [node("Split", ["x", "sz"], ["a", "b", "c"], axis=-1)],
         [x], [("a", "f32", None), ("b", "f32", None), ("c", "f32", None)],
         inits=[const("sz", np.array([2, 1, 1], dtype=np.int64))], opset=13)
    case("Split", "equal_opset13", [node("Split", ["x"], ["a", "b"], axis=2)], [x],
         [("a", "f32", None), ("b", "f32", None)], opset=13)
    case("Split", "num_outputs_uneven_opset18", [node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3)],
         [Input("x", ["N", 7])], [("a", "f32", None), ("b", "f32", None), ("c", "f32", None)], opset=18)
    case("Squeeze", "attribute_opset11", [node("Squeeze", ["x"], ["y"], axes=[1, -1])], [Input("x", ["N", 1, 3, 1])],
         [("y", "f32", None)], opset=11)
    case("Squeeze", "input_opset13", [node("Squeeze", ["x", "ax"], ["y"])], [Input("x", ["N", 1, 3, 1])],
         [("y", "f32", None)], inits=[const("ax", np.array([3], dtype=np.int64))], opset=13)
    case("Squeeze", "all_ones", [node("Squeeze", ["x"], ["y"])], [Input("x", [1, 3, 1, 2])], [("y", "f32", None)],
         opset=13, batches=[0])
    case("Unsqueeze", "attribute_opset11", [node("Unsqueeze", ["x"], ["y"], axes=[0, 3])], [x], [("y", "f32", None)],
         opset=11)
    case("Unsqueeze", "input_opset13", [node("Unsqueeze", ["x", "ax"], ["y"])], [x], [("y", "f32", None)],
         inits=[const("ax", np.array([-1, 1], dtype=np.int64))], opset=13)
    case("Gather", "axis0_matrix_indices", [node("Gather", ["x", "i"], ["y"])], [Input("x", [5, 3])],
         [("y", "f32", None)], inits=[const("i", np.array([[0, -1], [2, 2]], dtype=np.int64))], batches=[0])
    case("Gather", "axis1_runtime_indices", [node("Gather", ["x", "i"], ["y"], axis=1)],
         [Input("x", ["N", 4, 3]), Input("i", [5], "i64", ints(-4, 4))], [("y", "f32", None)])
    case("Gather", "scalar_index_int32", [node("Gather", ["x", "i"], ["y"], axis=-1)], [x], [("y", "f32", None)],
         inits=[const("i", np.array(2, dtype=np.int32))])
    case("Shape", "basic", [node("Shape", ["x"], ["y"])], [x], [("y", "i64", None)], batches=[1, 5])
    case("Shape", "start_end_opset15", [node("Shape", ["x"], ["y"], start=-2, end=3)], [Input("x", ["N", 2, 3, 4])],
         [("y", "i64", None)], opset=15)
    case("Expand", "constant_shape", [node("Expand", ["x", "s"], ["y"])], [Input("x", [3, 1])],
         [("y", "f32", None)], inits=[const("s", np.array([2, 1, 4], dtype=np.int64))], batches=[0])
    case("Expand", "shape_of_other_input", [node("Shape", ["z"], ["s"]), node("Expand", ["x", "s"], ["y"])],
         [Input("x", [1, 3]), Input("z", ["N", 3])], [("y", "f32", None)], batches=[1, 4])
    case("Tile", "repeats", [node("Tile", ["x", "r"], ["y"])], [x], [("y", "f32", None)],
         inits=[const("r", np.array([1, 2, 3], dtype=np.int64))])
    case("Tile", "int64", [node("Tile", ["x", "r"], ["y"])], [Input("x", ["N", 2], "i64")], [("y", "i64", None)],
         inits=[const("r", np.array([2, 1], dtype=np.int64))])
    case("Identity", "to_output_and_inside", [node("Identity", ["x"], ["i"]), node("Relu", ["i"], ["r"]),
                                               node("Identity", ["r"], ["y"])], [x], [("y", "f32", None)],
         expect_ops=["Relu"])
    case("Identity", "dropout_inference", [node("Dropout", ["x", "ratio"], ["y"])], [x], [("y", "f32", None)],
         inits=[const("ratio", np.float32(0.3))], opset=13, expect_ops=["Identity"])


def constant_cases():
    case("Constant", "tensor_float_ints",
         [helper.make_node("Constant", [], ["c"], value=const("", rnd(90, [3, 4]))),
          helper.make_node("Constant", [], ["f"], value_float=2.5),
          helper.make_node("Constant", [], ["s"], value_ints=[0, -1]),
          node("Add", ["x", "c"], ["a"]), node("Mul", ["a", "f"], ["m"]), node("Reshape", ["m", "s"], ["y"])],
         [Input("x", ["N", 3, 4])], [("y", "f32", None)], opset=13)
    case("ConstantOfShape", "float_value_runtime_shape",
         [node("Shape", ["x"], ["s"]), node("ConstantOfShape", ["s"], ["y"], value=const("", np.array([0.5], dtype=np.float32)))],
         [Input("x", ["N", 3])], [("y", "f32", None)], batches=[1, 2])
    case("ConstantOfShape", "shape_slice_opset21",
         [node("Shape", ["x"], ["s"], start=1), node("ConstantOfShape", ["s"], ["o"], value=const("", np.array([1.5], dtype=np.float32))),
          node("Add", ["x", "o"], ["y"])],
         [Input("x", ["N", 3, 4])], [("y", "f32", None)], opset=21, batches=[1, 2])
    case("ConstantOfShape", "int64_value",
         [node("Shape", ["x"], ["s"]), node("ConstantOfShape", ["s"], ["y"], value=const("", np.array([7], dtype=np.int64)))],
         [Input("x", ["N", 2])], [("y", "i64", None)])
    case("ConstantOfShape", "default_zero", [node("ConstantOfShape", ["s"], ["y"])], [Input("s", [2], "i64", ints(1, 4))],
         [("y", "f32", None)], batches=[0])
    case("Range", "float_runtime", [node("Range", ["a", "b", "d"], ["y"])],
         [Input("a", [], gen=lambda r, s: np.float32(r.uniform(-2, 0))), Input("b", [], gen=lambda r, s: np.float32(r.uniform(1, 3))),
          Input("d", [], gen=lambda r, s: np.float32(r.uniform(0.1, 0.4)))], [("y", "f32", None)], batches=[0, 0])
    case("Range", "int64_negative_delta", [node("Range", ["a", "b", "d"], ["y"])],
         [Input("a", [], "i64", lambda r, s: np.int64(r.integers(5, 10))), Input("b", [], "i64", lambda r, s: np.int64(r.integers(-5, 0))),
          Input("d", [], "i64", lambda r, s: np.int64(-r.integers(1, 3)))], [("y", "i64", None)], batches=[0, 0])


def resize_cases():
    x = Input("x", ["N", 2, 3, 4])
    empty = const("roi", np.array([], dtype=np.float32))

    def scales(v):
        return const("scales", np.array(v, dtype=np.float32))

    def sizes(v):
        return const("sizes", np.array(v, dtype=np.int64))

    case("Resize", "nearest_asymmetric_floor_scales_opset11",
         [node("Resize", ["x", "roi", "scales"], ["y"], mode="nearest", coordinate_transformation_mode="asymmetric",
               nearest_mode="floor")], [x], [("y", "f32", None)], inits=[empty, scales([1, 1, 2, 3])], opset=11)
    case("Resize", "nearest_half_pixel_sizes_down",
         [node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest")], [Input("x", ["N", 2, 7, 9])],
         [("y", "f32", None)], inits=[sizes([1, 2, 4, 5])], batches=[1], opset=13)
    case("Resize", "nearest_round_prefer_ceil_tf_half_pixel_opset11",
         [node("Resize", ["x", "roi", "scales"], ["y"], mode="nearest", nearest_mode="round_prefer_ceil",
               coordinate_transformation_mode="tf_half_pixel_for_nn")], [x], [("y", "f32", None)],
         inits=[empty, scales([1, 1, 1.5, 2.5])], opset=11)
    case("Resize", "linear_half_pixel_scales", [node("Resize", ["x", "", "scales"], ["y"], mode="linear")],
         [x], [("y", "f32", None)], inits=[scales([1, 1, 2, 1.5])], opset=13, level=ROUNDING)
    case("Resize", "linear_align_corners_sizes",
         [node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear", coordinate_transformation_mode="align_corners")],
         [x], [("y", "f32", None)], inits=[sizes([2, 2, 5, 7])], batches=[2], opset=13, level=ROUNDING)
    case("Resize", "linear_pytorch_half_pixel_down",
         [node("Resize", ["x", "", "scales"], ["y"], mode="linear", coordinate_transformation_mode="pytorch_half_pixel")],
         [Input("x", ["N", 2, 8, 9])], [("y", "f32", None)], inits=[scales([1, 1, 0.5, 0.4])], opset=13, level=ROUNDING)
    case("Resize", "axes_sizes_opset18",
         [node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear", axes=[2, 3])],
         [x], [("y", "f32", None)], inits=[sizes([6, 6])], opset=18, level=ROUNDING)
    case("Resize", "nearest_half_pixel_symmetric_opset19",
         [node("Resize", ["x", "", "scales"], ["y"], mode="nearest", coordinate_transformation_mode="half_pixel_symmetric")],
         [x], [("y", "f32", None)], inits=[scales([1, 1, 1.7, 2.2])], opset=19)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated op names to regenerate")
    args = parser.parse_args()
    for make in [conv_cases, gemm_cases, elementwise_cases, norm_cases, pool_cases, reduce_cases, shape_cases,
                 constant_cases, resize_cases]:
        make()
    only = set(args.only.split(",")) if args.only else None
    if only is None and OUT.exists():
        for sub in OUT.iterdir():  # keep README.md
            if sub.is_dir():
                shutil.rmtree(sub)
    for seed, c in enumerate(CASES):
        if only is None or c["op"] in only:
            try:
                write(c, seed)
            except Exception as e:
                raise SystemExit(f"{c['op']}/{c['variant']}: {e}") from e
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"{len(CASES)} cases, {len({c['op'] for c in CASES})} ops, {total / 1024:.0f} KiB in {OUT}")


if __name__ == "__main__":
    main()
