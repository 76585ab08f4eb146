#!/usr/bin/env python3
"""Cross-checks `snipjit run` against onnxruntime on a diverse set of ONNX models.

Each model is built with onnx.helper (every op the importer supports, numpy
broadcasting, dynamic dims via dim_param, odd sizes, 3D/4D attention with different
layouts, scales and masks, Gemm, shape-computation chains), fed random inputs saved as
.npy, run by onnxruntime and by the snipjit CLI, and every output is compared:
float outputs with rtol 1e-4 / atol 1e-5 (looser where a model says so), integer and
bool outputs exactly. One PASS/FAIL line per model, then `N passed, M failed`.

Usage:
    python3 -m venv /work/venv && /work/venv/bin/pip install onnx onnxruntime numpy
    /work/venv/bin/python scripts/ort_crosscheck.py [SNIPJIT_BIN] [--filter SUBSTR]
        [--keep DIR] [--verbose]

SNIPJIT_BIN defaults to target/release/snipjit in the repository.
Exit status: 0 if every model passed, 1 otherwise.
"""

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

F32, F16, I32, I64, BOOL, U8, I8 = TP.FLOAT, TP.FLOAT16, TP.INT32, TP.INT64, TP.BOOL, TP.UINT8, TP.INT8
NP = {F32: np.float32, F16: np.float16, I32: np.int32, I64: np.int64, BOOL: np.bool_, U8: np.uint8, I8: np.int8}

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Case:
    """A model, concrete inputs, and the tolerance for its float outputs."""

    def __init__(self, name, model, inputs, rtol=1e-4, atol=1e-5):
        self.name, self.model, self.inputs, self.rtol, self.atol = name, model, inputs, rtol, atol


def vi(name, elem, shape):
    """A value info; shape entries are ints, dim_param strings, or None (unknown)."""
    return helper.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs, outputs, inits=(), opset=18):
    """inputs/outputs: lists of (name, elem, shape); output shape may be None."""
    g = helper.make_graph(
        nodes,
        "g",
        [vi(*i) for i in inputs],
        [vi(*o) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in inits],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="ort_crosscheck")
    m.ir_version = 8
    # Fills the output shapes left open above (the checker wants one) and checks types.
    m = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    onnx.checker.check_model(m)
    return m


def node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, name=f"{op.lower()}_{outs[0]}", **attrs)


rng = np.random.default_rng(1234)


def rand(shape, dtype=np.float32, kind="normal"):
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        lo, hi = (-20, 20) if dtype in (np.int8, np.int32, np.int64) else (0, 40)
        if kind == "nonzero":
            v = rng.integers(1, hi, shape)
            return (v * np.where(rng.random(shape) < 0.5, -1, 1) if lo < 0 else v).astype(dtype)
        return rng.integers(lo, hi, shape).astype(dtype)
    if kind == "positive":
        return (rng.random(shape) * 4 + 0.05).astype(dtype)
    if kind == "nonzero":
        v = rng.random(shape) * 3 + 0.25
        return (v * np.where(rng.random(shape) < 0.5, -1, 1)).astype(dtype)
    if kind == "wide":
        return (rng.standard_normal(shape) * 4).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- model set


def unary_cases():
    cases = []
    ops = [
        ("Abs", {}, "wide"), ("Neg", {}, "wide"), ("Relu", {}, "wide"), ("Exp", {}, "normal"),
        ("Log", {}, "positive"), ("Sqrt", {}, "positive"), ("Reciprocal", {}, "nonzero"),
        ("Erf", {}, "wide"), ("Tanh", {}, "wide"), ("Sigmoid", {}, "wide"), ("HardSwish", {}, "wide"),
        ("Mish", {}, "wide"), ("Softplus", {}, "wide"), ("Floor", {}, "wide"), ("Ceil", {}, "wide"),
        ("Round", {}, "wide"), ("Sign", {}, "wide"), ("Elu", {"alpha": 0.7}, "wide"),
        ("LeakyRelu", {"alpha": 0.2}, "wide"), ("HardSigmoid", {}, "wide"),
        ("HardSigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5}, "wide"),
        ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, "wide"),
        ("Identity", {}, "wide"),
    ]
    for i, (op, attrs, kind) in enumerate(ops):
        m = model([node(op, ["x"], ["y"], **attrs)], [("x", F32, ["N", 37])], [("y", F32, None)])
        cases.append(Case(f"unary_{op}_{i}", m, {"x": rand((3, 37), kind=kind)}))
    for approx in ["none", "tanh"]:
        m = model(
            [node("Gelu", ["x"], ["y"], approximate=approx)], [("x", F32, ["N", 19])], [("y", F32, None)], opset=20
        )
        cases.append(Case(f"unary_Gelu_{approx}", m, {"x": rand((5, 19), kind="wide")}))
    # Integer unaries.
    m = model(
        [node("Abs", ["x"], ["a"]), node("Neg", ["a"], ["n"]), node("Sign", ["n"], ["y"]), node("Relu", ["x"], ["r"])],
        [("x", I32, ["N"])],
        [("y", I32, None), ("r", I32, None)],
    )
    cases.append(Case("unary_int32_abs_neg_sign_relu", m, {"x": rand((23,), np.int32)}))
    return cases


def clip_cases():
    cases = []
    variants = {
        "both": (["x", "lo", "hi"], [("lo", np.float32(-0.5)), ("hi", np.float32(1.25))]),
        "min_only": (["x", "lo"], [("lo", np.float32(0.0))]),
        "max_only": (["x", "", "hi"], [("hi", np.float32(6.0))]),
        "none": (["x"], []),
    }
    for name, (ins, inits) in variants.items():
        m = model([node("Clip", ins, ["y"])], [("x", F32, ["N", 17])], [("y", F32, None)], inits)
        cases.append(Case(f"clip_{name}", m, {"x": rand((4, 17), kind="wide")}))
    # Relu6 spelled with Constant nodes for the bounds.
    m = model(
        [
            helper.make_node("Constant", [], ["z"], value_float=0.0),
            helper.make_node("Constant", [], ["six"], value=numpy_helper.from_array(np.array(6.0, np.float32))),
            node("Clip", ["x", "z", "six"], ["y"]),
        ],
        [("x", F32, [2, "C"])],
        [("y", F32, None)],
    )
    cases.append(Case("clip_relu6_constant_nodes", m, {"x": rand((2, 33), kind="wide")}))
    return cases


def binary_cases():
    cases = []
    shapes = [((2, 1, 5), (3, 1)), ((7,), (4, 7)), ((1,), (3, 9)), ((2, 3, 1, 6), (1, 3, 4, 1))]
    arith = [("Add", "normal"), ("Sub", "normal"), ("Mul", "normal"), ("Div", "nonzero"), ("Max", "normal"),
             ("Min", "normal"), ("PRelu", "normal")]
    for op, kind in arith:
        for j, (sa, sb) in enumerate(shapes):
            if op == "PRelu" and len(sb) > len(sa):
                sa, sb = sb, sa  # PRelu's slope broadcasts to X one way only
            if op == "PRelu" and np.broadcast_shapes(sa, sb) != sa:
                continue
            m = model([node(op, ["a", "b"], ["y"])], [("a", F32, list(sa)), ("b", F32, list(sb))], [("y", F32, None)])
            cases.append(Case(f"binary_{op}_{j}", m, {"a": rand(sa), "b": rand(sb, kind=kind)}))
    # Pow: positive base; float exponent and an int64 scalar exponent initializer.
    m = model([node("Pow", ["a", "b"], ["y"])], [("a", F32, ["N", 8]), ("b", F32, [8])], [("y", F32, None)])
    cases.append(Case("binary_Pow_float", m, {"a": rand((3, 8), kind="positive"), "b": rand((8,))}))
    m = model([node("Pow", ["a", "e"], ["y"])], [("a", F32, ["N", 8])], [("y", F32, None)], [("e", np.int64(3))])
    cases.append(Case("binary_Pow_int_exponent", m, {"a": rand((5, 8))}))
    # Dynamic dims on both sides with symbols.
    m = model(
        [node("Add", ["a", "b"], ["s"]), node("Mul", ["s", "a"], ["y"])],
        [("a", F32, ["B", "S", 16]), ("b", F32, ["B", 1, 16])],
        [("y", F32, ["B", "S", 16])],
    )
    cases.append(Case("binary_dynamic_symbols", m, {"a": rand((2, 11, 16)), "b": rand((2, 1, 16))}))
    # Integer arithmetic.
    m = model(
        [node("Add", ["a", "b"], ["s"]), node("Mul", ["s", "b"], ["p"]), node("Sub", ["p", "a"], ["y"]),
         node("Max", ["y", "a"], ["mx"])],
        [("a", I64, [4, "N"]), ("b", I64, ["N"])],
        [("y", I64, None), ("mx", I64, None)],
    )
    cases.append(Case("binary_int64_arith", m, {"a": rand((4, 9), np.int64), "b": rand((9,), np.int64)}))
    m = model([node("Div", ["a", "b"], ["y"])], [("a", I32, [13]), ("b", I32, [13])], [("y", I32, None)])
    cases.append(Case("binary_int32_div_truncates", m, {"a": rand((13,), np.int32), "b": rand((13,), np.int32, "nonzero")}))
    # Mod with fmod=1 on floats and ints.
    m = model([node("Mod", ["a", "b"], ["y"], fmod=1)], [("a", F32, [3, 10]), ("b", F32, [10])], [("y", F32, None)])
    cases.append(Case("binary_Mod_fmod_f32", m, {"a": rand((3, 10), kind="wide"), "b": rand((10,), kind="nonzero")}))
    m = model([node("Mod", ["a", "b"], ["y"], fmod=1)], [("a", I32, [12]), ("b", I32, [12])], [("y", I32, None)])
    cases.append(Case("binary_Mod_fmod_i32", m, {"a": rand((12,), np.int32), "b": rand((12,), np.int32, "nonzero")}))
    return cases


def compare_logic_cases():
    cases = []
    for op in ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"]:
        m = model([node(op, ["a", "b"], ["y"])], [("a", F32, ["N", 6]), ("b", F32, [6])], [("y", BOOL, None)])
        a = rand((5, 6)).round()
        cases.append(Case(f"cmp_{op}_f32", m, {"a": a, "b": rand((6,)).round()}))
        m = model([node(op, ["a", "b"], ["y"])], [("a", I64, [7]), ("b", I64, [1])], [("y", BOOL, None)])
        cases.append(Case(f"cmp_{op}_i64", m, {"a": rand((7,), np.int64), "b": np.array([3], np.int64)}))
    m = model(
        [node("And", ["p", "q"], ["a"]), node("Or", ["a", "p"], ["o"]), node("Xor", ["o", "q"], ["x"]),
         node("Not", ["x"], ["y"])],
        [("p", BOOL, ["N", 1]), ("q", BOOL, [5])],
        [("y", BOOL, None), ("a", BOOL, None)],
    )
    cases.append(Case("logic_and_or_xor_not", m, {"p": rand((4, 1), np.bool_), "q": rand((5,), np.bool_)}))
    # Where with a computed mask and a broadcast fill.
    m = model(
        [node("Greater", ["x", "t"], ["c"]), node("Where", ["c", "x", "fill"], ["y"])],
        [("x", F32, ["B", 9]), ("t", F32, [9])],
        [("y", F32, None)],
        [("fill", np.float32(-3.0))],
    )
    cases.append(Case("where_computed_mask", m, {"x": rand((3, 9)), "t": rand((9,))}))
    m = model(
        [node("Where", ["c", "a", "b"], ["y"])],
        [("c", BOOL, [1, "S"]), ("a", F32, ["H", 1]), ("b", F32, ["H", "S"])],
        [("y", F32, None)],
    )
    cases.append(Case("where_three_way_broadcast", m, {"c": rand((1, 13), np.bool_), "a": rand((4, 1)), "b": rand((4, 13))}))
    return cases


def variadic_cases():
    cases = []
    for op in ["Max", "Min", "Sum", "Mean"]:
        m = model(
            [node(op, ["a", "b", "c"], ["y"]), node(op, ["a"], ["one"])],
            [("a", F32, ["N", 5]), ("b", F32, [5]), ("c", F32, [1, 5])],
            [("y", F32, None), ("one", F32, None)],
        )
        cases.append(Case(f"variadic_{op}", m, {"a": rand((3, 5)), "b": rand((5,)), "c": rand((1, 5))}))
    return cases


def cast_cases():
    cases = []
    m = model(
        [node("Cast", ["x"], ["i"], to=I32), node("Cast", ["i"], ["f"], to=F32), node("Cast", ["x"], ["b"], to=BOOL),
         node("Cast", ["x"], ["l"], to=I64)],
        [("x", F32, ["N"])],
        [("i", I32, None), ("f", F32, None), ("b", BOOL, None), ("l", I64, None)],
    )
    x = rand((31,), kind="wide")
    x[:3] = [0.0, -0.0, 2.5]
    cases.append(Case("cast_f32_int_bool", m, {"x": x}))
    m = model(
        [node("CastLike", ["x", "like"], ["y"]), node("Add", ["y", "y"], ["z"])],
        [("x", I64, [6]), ("like", F32, [1])],
        [("z", F32, None)],
    )
    cases.append(Case("castlike_i64_to_f32", m, {"x": rand((6,), np.int64), "like": rand((1,))}))
    # f16 round trip: ORT computes in f16 too.
    m = model(
        [node("Cast", ["x"], ["h"], to=F16), node("Add", ["h", "h"], ["s"]), node("Cast", ["s"], ["y"], to=F32)],
        [("x", F32, ["N", 7])],
        [("y", F32, None)],
    )
    cases.append(Case("cast_f16_roundtrip", m, {"x": rand((3, 7))}, rtol=1e-3, atol=1e-3))
    m = model(
        [node("Cast", ["x"], ["u"], to=U8), node("Cast", ["u"], ["y"], to=I32)],
        [("x", I32, [10])],
        [("y", I32, None)],
    )
    cases.append(Case("cast_i32_u8_i32", m, {"x": rng.integers(0, 255, (10,)).astype(np.int32)}))
    return cases


def reduce_cases():
    cases = []
    x = rand((3, 5, 7))
    for op in ["ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean", "ReduceProd"]:
        xin = (x * 0.5 + 1.0).astype(np.float32) if op == "ReduceProd" else x
        # Opset 13: axes attribute (ReduceSum: input).
        if op == "ReduceSum":
            n13 = [node(op, ["x", "ax"], ["y"], keepdims=1), node(op, ["x", "ax2"], ["z"], keepdims=0)]
        else:
            n13 = [node(op, ["x"], ["y"], axes=[-1], keepdims=1), node(op, ["x"], ["z"], axes=[0, 2], keepdims=0)]
        inits = [("ax", np.array([-1], np.int64)), ("ax2", np.array([0, 2], np.int64))] if op == "ReduceSum" else []
        m = model(n13, [("x", F32, ["N", 5, 7])], [("y", F32, None), ("z", F32, None)], inits, opset=13)
        cases.append(Case(f"reduce_{op}_opset13", m, {"x": xin}))
        # Opset 18: axes input, all-axes default, noop_with_empty_axes.
        m = model(
            [node(op, ["x", "ax"], ["y"], keepdims=0), node(op, ["x"], ["all"]),
             node(op, ["x"], ["noop"], noop_with_empty_axes=1)],
            [("x", F32, ["N", 5, 7])],
            [("y", F32, None), ("all", F32, None), ("noop", F32, None)],
            [("ax", np.array([1], np.int64))],
        )
        cases.append(Case(f"reduce_{op}_opset18", m, {"x": xin}, rtol=2e-4 if op == "ReduceProd" else 1e-4))
    return cases


def softmax_matmul_gemm_cases():
    cases = []
    for axis in [-1, 1, 0]:
        m = model([node("Softmax", ["x"], ["y"], axis=axis)], [("x", F32, [2, "S", 19])], [("y", F32, None)])
        cases.append(Case(f"softmax_axis{axis}", m, {"x": rand((2, 5, 19), kind="wide")}))
    mm = [
        ("2d", (5, 17), (17, 3)),
        ("batched", (2, 3, 4, 9), (2, 3, 9, 5)),
        ("broadcast_batch", (2, 1, 4, 9), (3, 9, 6)),
        ("vec_mat", (9,), (9, 4)),
        ("mat_vec", (3, 9), (9,)),
    ]
    for name, sa, sb in mm:
        m = model([node("MatMul", ["a", "b"], ["y"])], [("a", F32, list(sa)), ("b", F32, list(sb))], [("y", F32, None)])
        cases.append(Case(f"matmul_{name}", m, {"a": rand(sa), "b": rand(sb)}))
    m = model(
        [node("MatMul", ["a", "w"], ["y"])], [("a", F32, ["B", "S", 24])], [("y", F32, None)], [("w", rand((24, 10)))]
    )
    cases.append(Case("matmul_dynamic_weights", m, {"a": rand((2, 7, 24))}))
    gemms = [
        ("plain", {}, (4, 6), (6, 5), None),
        ("transB_bias", {"transB": 1}, (4, 6), (5, 6), (5,)),
        ("transA_alpha_beta", {"transA": 1, "alpha": 0.5, "beta": 2.0}, (6, 4), (6, 5), (4, 5)),
        ("both_trans_bias_col", {"transA": 1, "transB": 1, "alpha": -1.5}, (6, 4), (5, 6), (4, 1)),
        ("beta0", {"beta": 0.0}, (3, 2), (2, 4), (1, 4)),
        ("scalar_bias", {"alpha": 2.0, "beta": -1.0}, (3, 2), (2, 4), ()),
    ]
    for name, attrs, sa, sb, sc in gemms:
        ins = ["a", "b"] + (["c"] if sc is not None else [])
        inits = [("c", rand(sc))] if sc is not None else []
        m = model([node("Gemm", ins, ["y"], **attrs)], [("a", F32, list(sa)), ("b", F32, list(sb))], [("y", F32, None)], inits)
        cases.append(Case(f"gemm_{name}", m, {"a": rand(sa), "b": rand(sb)}))
    m = model(
        [node("Gemm", ["x", "w", "bias"], ["h"], transB=1), node("Relu", ["h"], ["y"])],
        [("x", F32, ["N", 12])],
        [("y", F32, None)],
        [("w", rand((8, 12))), ("bias", rand((8,)))],
    )
    cases.append(Case("gemm_dynamic_batch_relu", m, {"x": rand((5, 12))}))
    return cases


def shape_cases():
    cases = []
    m = model(
        [node("Transpose", ["x"], ["t"], perm=[0, 2, 1, 3]), node("Transpose", ["t"], ["y"])],
        [("x", F32, ["B", 3, "S", 5])],
        [("t", F32, None), ("y", F32, None)],
    )
    cases.append(Case("transpose_perm_and_default", m, {"x": rand((2, 3, 4, 5))}))
    m = model(
        [node("Reshape", ["x", "s1"], ["r"]), node("Reshape", ["r", "s2"], ["y"])],
        [("x", F32, ["B", 6, 4])],
        [("r", F32, None), ("y", F32, None)],
        [("s1", np.array([0, -1], np.int64)), ("s2", np.array([0, 3, 2, 4], np.int64))],
    )
    cases.append(Case("reshape_zero_and_minus1", m, {"x": rand((3, 6, 4))}))
    m = model(
        [node("Reshape", ["x", "s"], ["y"], allowzero=1)],
        [("x", F32, [2, 0, 3])],
        [("y", F32, None)],
        [("s", np.array([3, 0, 2], np.int64))],
    )
    cases.append(Case("reshape_allowzero_empty", m, {"x": np.zeros((2, 0, 3), np.float32)}))
    m = model(
        [node("Expand", ["x", "s"], ["y"]), node("Expand", ["x", "s2"], ["z"])],
        [("x", F32, [3, 1])],
        [("y", F32, None), ("z", F32, None)],
        [("s", np.array([2, 3, 4], np.int64)), ("s2", np.array([1, 1], np.int64))],
    )
    cases.append(Case("expand_bidirectional", m, {"x": rand((3, 1))}))
    m = model(
        [node("Unsqueeze", ["x", "a0"], ["u"]), node("Squeeze", ["u", "a1"], ["s"]),
         node("Concat", ["u", "u", "v"], ["c"], axis=1), node("Squeeze", ["w"], ["sq_all"])],
        [("x", F32, ["N", 4]), ("v", F32, [1, "K", 4, 1]), ("w", F32, [1, 3, 1])],
        [("s", F32, None), ("c", F32, None), ("sq_all", F32, None)],
        [("a0", np.array([0, -1], np.int64)), ("a1", np.array([0], np.int64))],
    )
    cases.append(Case("unsqueeze_squeeze_concat", m, {"x": rand((3, 4)), "v": rand((1, 2, 4, 1)), "w": rand((1, 3, 1))}))
    # Dynamic flatten: reshape(x, concat(shape(x)[0:1], [-1])).
    m = model(
        [node("Shape", ["x"], ["s"]), node("Gather", ["s", "i0"], ["n"], axis=0),
         node("Concat", ["n", "m1"], ["tgt"], axis=0), node("Reshape", ["x", "tgt"], ["y"])],
        [("x", F32, ["N", 3, 5])],
        [("y", F32, None), ("s", I64, None)],
        [("i0", np.array([0], np.int64)), ("m1", np.array([-1], np.int64))],
    )
    cases.append(Case("shape_gather_concat_reshape", m, {"x": rand((4, 3, 5))}))
    # Heads split driven by a computed shape: [B, S, H*D] -> [B, S, H, D] -> transpose.
    m = model(
        [node("Shape", ["x"], ["s"]), node("Gather", ["s", "i01"], ["bs"], axis=0),
         node("Concat", ["bs", "hd"], ["tgt"], axis=0), node("Reshape", ["x", "tgt"], ["r"]),
         node("Transpose", ["r"], ["y"], perm=[0, 2, 1, 3])],
        [("x", F32, ["B", "S", 12])],
        [("y", F32, None)],
        [("i01", np.array([0, 1], np.int64)), ("hd", np.array([3, 4], np.int64))],
    )
    cases.append(Case("shape_driven_head_split", m, {"x": rand((2, 5, 12))}))
    m = model(
        [node("Gather", ["x", "i"], ["g0"], axis=1), node("Gather", ["x", "j"], ["g1"], axis=0),
         node("Gather", ["x", "k"], ["g2"], axis=-1)],
        [("x", F32, [4, 5, 6])],
        [("g0", F32, None), ("g1", F32, None), ("g2", F32, None)],
        [("i", np.array([[0, 4], [2, -1]], np.int64)), ("j", np.array(3, np.int64)), ("k", np.array([5, 0, 5], np.int32))],
    )
    cases.append(Case("gather_axes_and_negative_indices", m, {"x": rand((4, 5, 6))}))
    m = model(
        [node("Gather", ["table", "ids"], ["emb"], axis=0)],
        [("ids", I64, ["B", "S"])],
        [("emb", F32, None)],
        [("table", rand((10, 8)))],
    )
    cases.append(Case("gather_embedding_dynamic_ids", m, {"ids": rng.integers(0, 10, (2, 7)).astype(np.int64)}))
    return cases


def misc_cases():
    cases = []
    m = model(
        [helper.make_node("Dropout", ["x", "ratio", "train"], ["d", "mask"], name="drop"),
         node("Identity", ["d"], ["i"]),
         helper.make_node("Constant", [], ["k"], value_floats=[1.0, 2.0, 3.0]),
         helper.make_node("Constant", [], ["two"], value_int=2),
         node("Add", ["i", "k"], ["y"]), node("Mul", ["ii", "two"], ["z"])],
        [("x", F32, ["N", 3]), ("ii", I64, [4])],
        [("y", F32, None), ("z", I64, None)],
        [("ratio", np.float32(0.3)), ("train", np.bool_(False))],
    )
    cases.append(Case("dropout_identity_constants", m, {"x": rand((2, 3)), "ii": rand((4,), np.int64)}))
    # A long elementwise chain with scalar constants (a tokenizer-friendly region).
    m = model(
        [node("Mul", ["x", "c2"], ["a"]), node("Add", ["a", "b"], ["s"]), node("Sigmoid", ["s"], ["g"]),
         node("Mul", ["s", "g"], ["silu"]), node("Sub", ["silu", "c1"], ["t"]), node("Abs", ["t"], ["ab"]),
         node("Sqrt", ["ab"], ["sq"]), node("Div", ["sq", "c2"], ["y"])],
        [("x", F32, ["N", "C"]), ("b", F32, ["C"])],
        [("y", F32, None)],
        [("c2", np.float32(2.0)), ("c1", np.array([1.0], np.float32))],
    )
    cases.append(Case("elementwise_chain_scalars", m, {"x": rand((7, 45)), "b": rand((45,))}))
    # Layer norm spelled out with reductions.
    m = model(
        [node("ReduceMean", ["x", "ax"], ["mu"]), node("Sub", ["x", "mu"], ["d"]), node("Mul", ["d", "d"], ["d2"]),
         node("ReduceMean", ["d2", "ax"], ["var"]), node("Add", ["var", "eps"], ["ve"]), node("Sqrt", ["ve"], ["sd"]),
         node("Div", ["d", "sd"], ["n"]), node("Mul", ["n", "gamma"], ["ng"]), node("Add", ["ng", "beta"], ["y"])],
        [("x", F32, ["B", "S", 32])],
        [("y", F32, None)],
        [("ax", np.array([-1], np.int64)), ("eps", np.float32(1e-5)), ("gamma", rand((32,))), ("beta", rand((32,)))],
    )
    cases.append(Case("layernorm_decomposed", m, {"x": rand((2, 9, 32))}))
    return cases


def attention(name, layout, scale_on, mask_kind, b, s, h, d, use_div=False, kv_len=None):
    """SDPA: softmax(Q K^T * scale [+ mask | where mask]) V in several layouts."""
    kv = kv_len or s
    nodes, inits = [], []
    scale = 1.0 / math.sqrt(d)
    if layout == "3d":  # [B*H, S, D]
        ins = [("q", F32, ["BH", "S", d]), ("k", F32, ["BH", "L", d]), ("v", F32, ["BH", "L", d])]
        feeds = {"q": rand((b * h, s, d)), "k": rand((b * h, kv, d)), "v": rand((b * h, kv, d))}
        nodes.append(node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]))
        qn, kn, vn = "q", "kt", "v"
    elif layout == "bhsd":  # [B, H, S, D]
        ins = [("q", F32, ["B", h, "S", d]), ("k", F32, ["B", h, "L", d]), ("v", F32, ["B", h, "L", d])]
        feeds = {"q": rand((b, h, s, d)), "k": rand((b, h, kv, d)), "v": rand((b, h, kv, d))}
        nodes.append(node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]))
        qn, kn, vn = "q", "kt", "v"
    else:  # "bshd": [B, S, H, D] with transposes in and out (BERT-style)
        ins = [("q", F32, ["B", "S", h, d]), ("k", F32, ["B", "L", h, d]), ("v", F32, ["B", "L", h, d])]
        feeds = {"q": rand((b, s, h, d)), "k": rand((b, kv, h, d)), "v": rand((b, kv, h, d))}
        nodes += [
            node("Transpose", ["q"], ["qt"], perm=[0, 2, 1, 3]),
            node("Transpose", ["k"], ["kt"], perm=[0, 2, 3, 1]),
            node("Transpose", ["v"], ["vt"], perm=[0, 2, 1, 3]),
        ]
        qn, kn, vn = "qt", "kt", "vt"
    sc = np.float32(math.sqrt(d) if use_div else scale)
    if scale_on:
        inits.append(("scale", sc))
    op = "Div" if use_div else "Mul"
    if scale_on == "q":
        nodes.append(node(op, [qn, "scale"], ["qs"]))
        nodes.append(node("MatMul", ["qs", kn], ["scores"]))
    elif scale_on == "scores":
        nodes.append(node("MatMul", [qn, kn], ["raw"]))
        nodes.append(node(op, ["raw", "scale"], ["scores"]))
    else:
        nodes.append(node("MatMul", [qn, kn], ["scores"]))
    rank = 3 if layout == "3d" else 4
    if mask_kind == "add":
        mshape = [1, kv] if rank == 3 else [b, 1, 1, kv]
        ins.append(("mask", F32, [1, "L"] if rank == 3 else ["B", 1, 1, "L"]))
        m = np.where(rng.random(mshape) < 0.25, -10000.0, 0.0).astype(np.float32)
        feeds["mask"] = m
        nodes.append(node("Add", ["scores", "mask"], ["masked"]))
    elif mask_kind == "where":
        mshape = [s, kv] if rank == 3 else [1, 1, s, kv]
        ins.append(("mask", BOOL, ["S", "L"] if rank == 3 else [1, 1, "S", "L"]))
        keep = rng.random(mshape) < 0.8
        keep[..., 0] = True  # every row keeps at least one position
        feeds["mask"] = keep
        inits.append(("neg", np.float32(-1e9)))
        nodes.append(node("Where", ["mask", "scores", "neg"], ["masked"]))
    else:
        nodes.append(node("Identity", ["scores"], ["masked"]))
    nodes.append(node("Softmax", ["masked"], ["p"], axis=-1))
    nodes.append(node("MatMul", ["p", vn], ["o"]))
    if layout == "bshd":
        nodes.append(node("Transpose", ["o"], ["out"], perm=[0, 2, 1, 3]))
    else:
        nodes.append(node("Identity", ["o"], ["out"]))
    m = model(nodes, ins, [("out", F32, None)], inits)
    return Case(f"attention_{name}", m, feeds)


def attention_cases():
    return [
        attention("3d_scale_scores_nomask", "3d", "scores", None, 2, 17, 3, 16),
        attention("3d_scale_q_where", "3d", "q", "where", 1, 9, 4, 8),
        attention("3d_div_add_mask_cross", "3d", "scores", "add", 2, 5, 2, 32, use_div=True, kv_len=13),
        attention("bhsd_scale_scores_add", "bhsd", "scores", "add", 2, 11, 3, 16),
        attention("bhsd_scale_q_where", "bhsd", "q", "where", 1, 16, 2, 64),
        attention("bhsd_noscale_odd", "bhsd", None, None, 3, 7, 1, 5),
        attention("bshd_bert_add_mask", "bshd", "scores", "add", 2, 13, 4, 16),
        attention("bshd_div_where_cross", "bshd", "scores", "where", 1, 6, 2, 24, use_div=True, kv_len=10),
        # Several score blocks per row (K lengths past the kernel's 128-column block),
        # head sizes 80 and 128; without a scale the scores spread widely, so row maxima
        # jump by more than the kernel's rescale slack between blocks.
        attention("bshd_add_mask_long_d80", "bshd", "scores", "add", 1, 300, 2, 80),
        attention("bhsd_noscale_long_d128", "bhsd", None, None, 1, 257, 2, 128),
        attention("3d_where_cross_long", "3d", "q", "where", 2, 37, 1, 64, kv_len=521),
    ]


EDGE = np.array(
    [-100.0, -88.0, -20.0, -5.5, -2.5, -1.5, -0.5, -0.0, 0.0, 0.5, 1.5, 2.5, 3.5, 0.49999997, 5.0, 20.0, 88.0, 100.0,
     1e-30, -1e-30, 3.4e38, -3.4e38],
    np.float32,
)


def edge_cases():
    """Extreme and tie inputs: saturation, overflow to inf, round-half-even, signed zeros."""
    cases = []
    for op in ["Round", "Floor", "Ceil", "Sign", "Abs", "Neg", "Relu", "Exp", "Sigmoid", "Tanh", "Erf", "Softplus",
               "Mish", "HardSwish", "Elu"]:
        m = model([node(op, ["x"], ["y"])], [("x", F32, ["N"])], [("y", F32, None)])
        cases.append(Case(f"edge_{op}", m, {"x": EDGE.copy()}))
    for approx in ["none", "tanh"]:
        m = model([node("Gelu", ["x"], ["y"], approximate=approx)], [("x", F32, ["N"])], [("y", F32, None)], opset=20)
        cases.append(Case(f"edge_Gelu_{approx}", m, {"x": EDGE.copy()}))
    m = model([node("Div", ["a", "b"], ["y"])], [("a", F32, [4]), ("b", F32, [4])], [("y", F32, None)])
    cases.append(Case("edge_div_by_zero", m, {"a": np.array([1, -1, 0, 2], np.float32), "b": np.array([0, 0, 0, -0.0], np.float32)}))
    m = model(
        [node("Softmax", ["x"], ["y"], axis=-1)], [("x", F32, [3, 4])], [("y", F32, None)]
    )
    x = np.array([[1e4, 0, -1e4, 5], [-1e9, -1e9, -1e9, -1e9], [0, 0, 0, 0]], np.float32)
    cases.append(Case("edge_softmax_large_and_equal", m, {"x": x}))
    return cases


def all_cases():
    return (
        unary_cases() + clip_cases() + binary_cases() + compare_logic_cases() + variadic_cases() + cast_cases()
        + reduce_cases() + softmax_matmul_gemm_cases() + shape_cases() + misc_cases() + attention_cases()
        + edge_cases()
    )


# ---------------------------------------------------------------- running


def compare(name, want, got, rtol, atol):
    """None if equal within tolerance, else a reason."""
    if got.shape != want.shape:
        return f"{name}: shape {got.shape} != onnxruntime {want.shape}"
    if want.dtype.kind == "f":
        if got.dtype != want.dtype:
            return f"{name}: dtype {got.dtype} != onnxruntime {want.dtype}"
        w, g = want.astype(np.float64), got.astype(np.float64)
        bad = ~np.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
        if bad.any():
            i = np.unravel_index(np.argmax(np.where(bad, np.abs(g - w), -1.0)), want.shape)
            return (f"{name}: {int(bad.sum())}/{want.size} elements differ; worst at {tuple(int(x) for x in i)}: "
                    f"snipjit {float(g[i])!r} vs onnxruntime {float(w[i])!r}")
        return None
    if got.dtype != want.dtype:
        return f"{name}: dtype {got.dtype} != onnxruntime {want.dtype}"
    bad = got != want
    if bad.any():
        i = tuple(int(x) for x in np.argwhere(bad)[0])
        return f"{name}: {int(bad.sum())}/{want.size} elements differ; first at {i}: snipjit {got[i].item()!r} vs onnxruntime {want[i].item()!r}"
    return None


def run_case(case, binary, workdir, verbose):
    """Returns (passed, reason)."""
    d = os.path.join(workdir, case.name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    onnx.save(case.model, path)
    args = [binary, "run", path]
    for name, arr in case.inputs.items():
        p = os.path.join(d, f"in_{name}.npy")
        np.save(p, arr)
        args += ["--input", f"{name}={p}"]
    outdir = os.path.join(d, "out")
    args += ["--output-dir", outdir, "--stats"]
    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        want = dict(zip(names, sess.run(names, case.inputs)))
    except Exception as e:  # the model set itself is broken: report, do not blame snipjit
        return False, f"onnxruntime failed: {e}"
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return False, "snipjit timed out after 300 s"
    if verbose:
        print("  $", " ".join(args))
        print("  stdout:", p.stdout.strip())
    if p.returncode != 0:
        msg = (p.stderr.strip() or p.stdout.strip()).splitlines()
        return False, f"snipjit exited {p.returncode}: {' | '.join(msg[-3:])}"
    problems = []
    for name in names:
        f = os.path.join(outdir, f"{name}.npy")
        if not os.path.exists(f):
            problems.append(f"{name}: no output file {f}")
            continue
        r = compare(name, want[name], np.load(f), case.rtol, case.atol)
        if r:
            problems.append(r)
    return (not problems), "; ".join(problems)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary", nargs="?", default=os.path.join(REPO, "target", "release", "snipjit"))
    ap.add_argument("--filter", default="", help="only models whose name contains this")
    ap.add_argument("--keep", default=None, help="keep models, inputs and outputs in this directory")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"snipjit binary not found: {args.binary} (cargo build --release -p snipjit-cli)")
    cases = [c for c in all_cases() if args.filter in c.name]
    workdir = args.keep or tempfile.mkdtemp(prefix="ort_crosscheck_")
    passed = failed = 0
    try:
        for case in cases:
            ok, why = run_case(case, args.binary, workdir, args.verbose)
            if ok:
                passed += 1
                print(f"PASS {case.name}")
            else:
                failed += 1
                print(f"FAIL {case.name}: {why}")
            sys.stdout.flush()
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
