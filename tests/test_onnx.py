"""refimpl.interop.onnx.load_onnx: ONNX graphs of dense layers and activations (extra [onnx]).

Graphs built with ``onnx.helper`` for every supported op and attribute variant are imported and
run; the output must equal a NumPy forward pass written from the ONNX operator definitions with
the same weights, and so must onnx's own reference runtime (``onnx.reference``), which checks the
NumPy twin itself. Refusals are checked by message. Then PyTorch models exported by
``torch.onnx.export`` (TorchScript and dynamo exporters) must import to the network that
``from_torch`` makes of the same module: same parameters, outputs and LRP relevances.

Tolerances: float64 ``1e-12`` times ``scale = max(1, max |y_ref|)`` (different summation orders
and ``alpha`` folded into the weights differ by a few ulps of the largest partial sum), float32
``1e-5`` times ``scale``; relevances ``1e-10`` times ``max |R|`` (float64). A wrong layout, a
missing bias, a wrong ``alpha``/``beta`` or activation is off by O(scale).
"""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest

from .extras import import_extra

onnx = import_extra("onnx", "onnx")  # skips with a message, or fails in CI (tests/extras.py)

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from refimpl.explain.lrp import lrp  # noqa: E402
from refimpl.explain.rules import AlphaBeta, Epsilon, ZPlus  # noqa: E402
from refimpl.interop.onnx import load_onnx  # noqa: E402
from refimpl.nn.layers import (  # noqa: E402
    Dense,
    Flatten,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Tanh,
)

ELEM = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float64, np.float32]


def make_model(nodes, inits, sample_shape, *, dtype=np.float64, batch="n", elem=None, opset=17):
    """A one-input, one-output model: input ``x`` of shape (batch, *sample_shape), output ``y``."""
    elem = ELEM[dtype] if elem is None else elem
    x = helper.make_tensor_value_info("x", elem, [batch, *sample_shape])
    y = helper.make_tensor_value_info("y", elem, [batch, None])  # the checker needs a shape
    init = [numpy_helper.from_array(np.asarray(v), name) for name, v in inits.items()]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def const_node(name, value):
    """A Constant node that outputs ``value`` under ``name``."""
    return helper.make_node(
        "Constant", [], [name], name=f"const_{name}", value=numpy_helper.from_array(value)
    )


def check_forward(model, x, ref, dtype):
    """Import ``model``; its output and onnx's reference runtime must both equal ``ref``."""
    net = load_onnx(model)
    assert net.dtype == dtype
    y = net(x)
    assert y.dtype == dtype
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(y, ref, rtol=0, atol=RTOL[dtype] * scale)
    (y_onnx,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_allclose(y_onnx, ref, rtol=0, atol=RTOL[dtype] * scale)
    return net


def rand(rng, shape, dtype):
    return rng.normal(size=shape).astype(dtype)


# --- each supported op and attribute variant ---------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("trans_b", "alpha", "beta", "c_shape"),
    [
        (0, 1.0, 1.0, (3,)),
        (1, 1.0, 1.0, (3,)),
        (1, 1.0, 1.0, (1, 3)),
        (0, 0.5, 2.0, (1, 3)),
        (1, -1.5, 0.25, (3,)),
        (0, 2.0, 1.0, None),
        (1, 1.0, 3.0, ()),
    ],
)
def test_gemm(dtype, trans_b, alpha, beta, c_shape):
    rng = np.random.default_rng(0)
    W, x = rand(rng, (4, 3), dtype), rand(rng, (5, 4), dtype)
    inits = {"B": W.T.copy() if trans_b else W}
    inputs = ["x", "B"]
    ref = dtype(alpha) * (x @ W)
    if c_shape is not None:
        inits["C"] = rand(rng, c_shape, dtype)
        inputs.append("C")
        ref = ref + dtype(beta) * inits["C"]
    node = helper.make_node(
        "Gemm", inputs, ["y"], name="fc", alpha=alpha, beta=beta, transA=0, transB=trans_b
    )
    net = check_forward(make_model([node], inits, [4], dtype=dtype), x, ref, dtype)
    assert [type(layer) for layer in net.layers] == [Dense]
    assert (net.layers[0].b is not None) == (c_shape is not None)
    if alpha == 1.0:  # a transpose, not a computation: bit for bit
        np.testing.assert_array_equal(net.layers[0].W, W)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", ["first", "second", "row", "none"])
def test_matmul_with_and_without_add(dtype, bias):
    rng = np.random.default_rng(1)
    W, c, x = rand(rng, (4, 3), dtype), rand(rng, (3,), dtype), rand(rng, (5, 4), dtype)
    inits = {"W": W}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z" if bias != "none" else "y"], name="mm")]
    if bias != "none":
        inits["c"] = c.reshape(1, 3) if bias == "row" else c
        add_inputs = ["c", "z"] if bias == "first" else ["z", "c"]
        nodes.append(helper.make_node("Add", add_inputs, ["y"], name="bias"))
    ref = x @ W + (0 if bias == "none" else c)
    net = check_forward(make_model(nodes, inits, [4], dtype=dtype), x, ref, dtype)
    assert [type(layer) for layer in net.layers] == [Dense]
    np.testing.assert_array_equal(net.layers[0].W, W)
    if bias == "none":
        assert net.layers[0].b is None
    else:
        np.testing.assert_array_equal(net.layers[0].b, c)


def _log_softmax(z):
    s = z - z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 1])
def test_a_chain_of_every_supported_op(dtype, axis):
    """Flatten, Gemm, LeakyRelu, MatMul+Add, Tanh, Gemm, Sigmoid, Dropout, Identity, Relu,
    MatMul (weights from a Constant node), LogSoftmax."""
    rng = np.random.default_rng(2)
    W1, b1 = rand(rng, (6, 5), dtype), rand(rng, (5,), dtype)
    W2, b2 = rand(rng, (5, 4), dtype), rand(rng, (4,), dtype)
    W3, b3 = rand(rng, (4, 4), dtype), rand(rng, (4,), dtype)
    W4 = rand(rng, (4, 3), dtype)
    x = rand(rng, (7, 2, 3), dtype)
    inits = {"W1t": W1.T.copy(), "b1": b1, "W2": W2, "b2": b2, "W3": W3, "b3": b3}
    inits["ratio"] = np.array(0.5, dtype)
    inits["training"] = np.array(False)
    mk = helper.make_node
    nodes = [
        mk("Flatten", ["x"], ["f"], name="flat", axis=1),
        mk("Gemm", ["f", "W1t", "b1"], ["z1"], name="fc1", transB=1),
        mk("LeakyRelu", ["z1"], ["a1"], name="leaky", alpha=0.2),
        mk("MatMul", ["a1", "W2"], ["m2"], name="mm2"),
        mk("Add", ["m2", "b2"], ["z2"], name="add2"),
        mk("Tanh", ["z2"], ["a2"], name="tanh"),
        mk("Gemm", ["a2", "W3", "b3"], ["z3"], name="fc3"),
        mk("Sigmoid", ["z3"], ["a3"], name="sigmoid"),
        mk("Dropout", ["a3", "ratio", "training"], ["d3", "mask"], name="drop"),
        mk("Identity", ["d3"], ["i3"], name="id"),
        mk("Relu", ["i3"], ["r3"], name="relu"),
        const_node("W4", W4),
        mk("MatMul", ["r3", "W4"], ["z4"], name="mm4"),
        mk("LogSoftmax", ["z4"], ["y"], name="lsm", axis=axis),
    ]
    z1 = x.reshape(7, 6) @ W1 + b1
    a1 = np.where(z1 > 0, z1, dtype(np.float32(0.2)) * z1)  # ONNX float attributes are float32
    a2 = np.tanh(a1 @ W2 + b2)
    a3 = 1 / (1 + np.exp(-(a2 @ W3 + b3)))
    ref = _log_softmax(np.maximum(a3, 0) @ W4)
    net = check_forward(make_model(nodes, inits, [2, 3], dtype=dtype), x, ref, dtype)
    types = [Flatten, Dense, LeakyReLU, Dense, Tanh, Dense, Sigmoid, ReLU, Dense, LogSoftmax]
    assert [type(layer) for layer in net.layers] == types
    assert net.input_shape == (2, 3)
    assert net.layers[2].slope == float(np.float32(0.2))
    assert net.layers[8].b is None


@pytest.mark.parametrize("alpha", [None, 0.0, 0.3])
def test_leaky_relu_alpha(alpha):
    rng = np.random.default_rng(3)
    W, x = rand(rng, (4, 3), np.float64), rand(rng, (6, 4), np.float64)
    kw = {} if alpha is None else {"alpha": alpha}
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["z"], name="mm"),
        helper.make_node("LeakyRelu", ["z"], ["y"], name="leaky", **kw),
    ]
    z = x @ W
    slope = np.float64(np.float32(0.01 if alpha is None else alpha))  # attributes are float32
    ref = np.where(z > 0, z, slope * z)
    net = check_forward(make_model(nodes, {"W": W}, [4]), x, ref, np.float64)
    assert net.layers[1].slope == slope


@pytest.mark.parametrize(
    ("target", "allowzero", "batch", "source"),
    [
        ([-1, 12], 0, "n", "initializer"),
        ([-1, 12], 1, "n", "constant"),  # what the dynamo exporter emits for a dynamic batch
        ([0, -1], 0, "n", "initializer"),
        ([0, 12], 0, "n", "constant"),
        ([5, 12], 1, 5, "initializer"),  # what the dynamo exporter emits for a static batch
        ([5, -1], 0, 5, "constant"),
    ],
)
def test_reshape_that_flattens_each_sample(target, allowzero, batch, source):
    rng = np.random.default_rng(4)
    W, x = rand(rng, (12, 3), np.float64), rand(rng, (5, 2, 3, 2), np.float64)
    shape = np.array(target, dtype=np.int64)
    inits = {"W": W}
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["f"], name="flat", allowzero=allowzero),
        helper.make_node("MatMul", ["f", "W"], ["y"], name="mm"),
    ]
    if source == "initializer":
        inits["shape"] = shape
    else:
        nodes.insert(0, const_node("shape", shape))
    model = make_model(nodes, inits, [2, 3, 2], batch=batch)
    net = check_forward(model, x, x.reshape(5, 12) @ W, np.float64)
    assert [type(layer) for layer in net.layers] == [Flatten, Dense]
    assert net.input_shape == (2, 3, 2)
    if batch == "n":  # a symbolic batch: any batch size
        assert net(x[:2]).shape == (2, 3)


@pytest.mark.parametrize("axis", [1, -2])
def test_flatten_axis_one_counted_from_either_end(axis):
    rng = np.random.default_rng(8)
    W, x = rand(rng, (12, 2), np.float64), rand(rng, (3, 3, 4), np.float64)
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=axis),
        helper.make_node("MatMul", ["f", "W"], ["y"]),
    ]
    net = check_forward(make_model(nodes, {"W": W}, [3, 4]), x, x.reshape(3, 12) @ W, np.float64)
    assert [type(layer) for layer in net.layers] == [Flatten, Dense]


def test_initializers_listed_as_graph_inputs_are_constants():
    """Older exporters (IR < 4, keep_initializers_as_inputs) list weights among the inputs."""
    rng = np.random.default_rng(5)
    W, x = rand(rng, (4, 3), np.float64), rand(rng, (2, 4), np.float64)
    model = make_model([helper.make_node("MatMul", ["x", "W"], ["y"])], {"W": W}, [4])
    model.graph.input.append(helper.make_tensor_value_info("W", TensorProto.DOUBLE, [4, 3]))
    check_forward(model, x, x @ W, np.float64)


def test_load_from_a_file(tmp_path):
    rng = np.random.default_rng(6)
    W, x = rand(rng, (4, 3), np.float32), rand(rng, (2, 4), np.float32)
    model = make_model(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], {"W": W}, [4], dtype=np.float32
    )
    onnx.save(model, tmp_path / "m.onnx")
    for source in (tmp_path / "m.onnx", str(tmp_path / "m.onnx")):
        net = load_onnx(source)
        assert net.dtype == np.float32
        np.testing.assert_array_equal(net.layers[0].W, W)
        scale = max(1.0, float(np.abs(x @ W).max()))
        np.testing.assert_allclose(net(x), x @ W, rtol=0, atol=RTOL[np.float32] * scale)


def test_explain_and_verify_commands_take_an_onnx_model(tmp_path, capsys):
    from refimpl.cli import main
    from refimpl.explain.methods import explain

    rng = np.random.default_rng(7)
    W1, b1, W2 = (
        rand(rng, (5, 4), np.float64),
        rand(rng, (4,), np.float64),
        rand(rng, (4, 3), np.float64),
    )
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("MatMul", ["a", "W2"], ["y"]),
    ]
    onnx.save(make_model(nodes, {"W1": W1, "b1": b1, "W2": W2}, [5]), tmp_path / "m.onnx")
    x = rng.uniform(-1, 1, (3, 5))
    np.save(tmp_path / "x.npy", x)
    base = [str(tmp_path / "m.onnx"), str(tmp_path / "x.npy")]
    out = str(tmp_path / "R.npy")
    assert main(["explain", *base, "--method", "lrp-epsilon", "--out", out]) == 0
    net = load_onnx(tmp_path / "m.onnx")
    np.testing.assert_array_equal(np.load(out), explain(net, x, "lrp-epsilon").R)
    assert main(["verify", *base, out, "--method", "lrp-epsilon"]) == 0
    assert "MATCH" in capsys.readouterr().out


# --- refusals ----------------------------------------------------------------------------------


def _dense_model(extra_nodes=(), extra_inits=None, *, sample_shape=(4,), **kw):
    """``x -> MatMul(W) -> z`` followed by ``extra_nodes`` (the last one writes ``y``)."""
    W = np.ones((4, 3))
    out = "z" if extra_nodes else "y"
    nodes = [helper.make_node("MatMul", ["x", "W"], [out], name="mm"), *extra_nodes]
    return make_model(nodes, {"W": W, **(extra_inits or {})}, list(sample_shape), **kw)


def _refusals():
    mk = helper.make_node
    image = [1, 4, 4]
    conv = make_model(
        [mk("Conv", ["x", "K"], ["y"], name="conv1")], {"K": np.ones((2, 1, 3, 3))}, image
    )
    pool = make_model([mk("MaxPool", ["x"], ["y"], name="pool1", kernel_shape=[2, 2])], {}, image)
    avg = make_model([mk("AveragePool", ["x"], ["y"], name="avg", kernel_shape=[2, 2])], {}, image)
    branch = make_model(
        [
            mk("Relu", ["x"], ["a"], name="left"),
            mk("Tanh", ["x"], ["b"], name="right"),
            mk("Add", ["a", "b"], ["y"], name="join"),
        ],
        {},
        [4],
    )
    two_in = helper.make_model(
        helper.make_graph(
            [mk("Add", ["x", "x2"], ["y"], name="add")],
            "g",
            [
                helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n", 4]),
                helper.make_tensor_value_info("x2", TensorProto.DOUBLE, ["n", 4]),
            ],
            [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n", 4])],
        )
    )
    two_out = _dense_model([mk("Relu", ["z"], ["y"], name="relu")])
    two_out.graph.output.append(helper.make_tensor_value_info("z", TensorProto.DOUBLE, ["n", 3]))
    int_model = make_model(
        [mk("MatMul", ["x", "W"], ["y"], name="mm")],
        {"W": np.ones((4, 3), np.int32)},
        [4],
        elem=TensorProto.INT32,
    )
    mixed = make_model(
        [mk("MatMul", ["x", "W"], ["y"], name="mm")], {"W": np.ones((4, 3), np.float32)}, [4]
    )
    gemm_t = make_model(
        [mk("Gemm", ["x", "W"], ["y"], name="fc", transA=1)], {"W": np.ones((4, 3))}, [4]
    )
    sample_bias = make_model(
        [mk("Gemm", ["x", "W", "C"], ["y"], name="fc")],
        {"W": np.ones((4, 3)), "C": np.ones((2, 3))},
        [4],
        batch=2,
    )
    other_domain = _dense_model([mk("Gelu", ["z"], ["y"], name="g", domain="com.microsoft")])
    other_domain.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    dead_end = _dense_model([mk("Relu", ["z"], ["y"], name="relu")])
    dead_end.graph.node.insert(1, mk("Tanh", ["z"], ["t"], name="dangling"))
    return {
        "conv": (conv, r"node 0 'conv1' \(Conv\).*convolution and pooling are not supported yet"),
        "maxpool": (pool, r"'pool1' \(MaxPool\).*convolution and pooling are not supported yet"),
        "averagepool": (avg, r"\(AveragePool\).*convolution and pooling are not supported yet"),
        "softmax": (
            _dense_model([mk("Softmax", ["z"], ["y"], name="sm")]),
            r"node 1 'sm' \(Softmax\): unsupported op 'Softmax'; refimpl imports graphs of Gemm, "
            r"MatMul, Add, Relu",
        ),
        "branching": (branch, r"node 1 'right' \(Tanh\) reads \['x'\].*not a single chain"),
        "dangling branch": (dead_end, r"'relu' \(Relu\) reads \['z'\].*not a single chain"),
        "two inputs": (two_in, r"2 inputs \['x', 'x2'\].*exactly one input"),
        "two outputs": (two_out, r"2 outputs \['y', 'z'\].*exactly one output"),
        "transA=1": (gemm_t, r"'fc' \(Gemm\): transA=1; refimpl supports Gemm with transA=0"),
        "int dtype": (int_model, r"graph input 'x' has element type INT32; refimpl imports float"),
        "mixed dtypes": (mixed, r"weight 'W' has dtype float32, but the graph input is float64"),
        "per-sample bias": (sample_bias, r"bias 'C' has shape \(2, 3\); expected \(3,\)"),
        "add without matmul": (
            _dense_model(
                [mk("Relu", ["z"], ["r"], name="relu"), mk("Add", ["r", "c"], ["y"], name="b")],
                {"c": np.ones(3)},
            ),
            r"'b' \(Add\): Add is supported only as the bias of the MatMul just before it",
        ),
        "weight first": (
            make_model([mk("MatMul", ["W", "x"], ["y"], name="mm")], {"W": np.ones((4, 4))}, [4]),
            r"'mm' \(MatMul\): the activations must be the first input",
        ),
        "reshape": (
            make_model(
                [mk("Reshape", ["x", "s"], ["y"], name="rs")],
                {"s": np.array([0, 2, 6])},
                [3, 4],
            ),
            r"'rs' \(Reshape\): Reshape to \[0, 2, 6\].*only flattening each sample",
        ),
        "reshape to several rows": (
            make_model(
                [mk("Reshape", ["x", "s"], ["y"], name="rs")], {"s": np.array([-1, 6])}, [3, 4]
            ),
            r"Reshape to \[-1, 6\]",
        ),
        "reshape fixed batch": (
            make_model(
                [mk("Reshape", ["x", "s"], ["y"], name="rs")], {"s": np.array([5, 12])}, [3, 4]
            ),
            r"Reshape to \[5, 12\]",
        ),
        "flatten axis": (
            make_model([mk("Flatten", ["x"], ["y"], name="fl", axis=2)], {}, [3, 4]),
            r"'fl' \(Flatten\): Flatten with axis=2; refimpl supports axis=1 only",
        ),
        "logsoftmax axis": (
            _dense_model([mk("LogSoftmax", ["z"], ["y"], name="lsm", axis=0)]),
            r"'lsm' \(LogSoftmax\): LogSoftmax with axis=0",
        ),
        "dropout training": (
            _dense_model(
                [mk("Dropout", ["z", "r", "t"], ["y"], name="drop")],
                {"r": np.array(0.5), "t": np.array(True)},
            ),
            r"'drop' \(Dropout\) is in training mode",
        ),
        "negative leaky alpha": (
            _dense_model([mk("LeakyRelu", ["z"], ["y"], name="lk", alpha=-0.5)]),
            r"'lk' \(LeakyRelu\): slope must be finite and >= 0, got -0.5",
        ),
        "shapes do not chain": (
            _dense_model([mk("MatMul", ["z", "W"], ["y"], name="mm2")]),
            r"'mm2' \(MatMul\): dense layer with W of shape \(4, 3\) needs input shape \(4,\), "
            r"got \(3,\)",
        ),
        "symbolic sample dim": (
            make_model([mk("Flatten", ["x"], ["y"])], {}, ["h", 4]),
            r"graph input 'x' has a symbolic or unknown dimension 1 \('h'\)",
        ),
        "other domain": (
            other_domain,
            r"'g' \(Gelu\) is in domain 'com.microsoft'",
        ),
        "constant folding": (
            make_model(
                [
                    mk("Transpose", ["Wt"], ["W"], name="tr"),
                    mk("MatMul", ["x", "W"], ["y"], name="mm"),
                ],
                {"Wt": np.ones((3, 4))},
                [4],
            ),
            r"'tr' \(Transpose\) computes from constants only",
        ),
        "no dense layer": (
            make_model([helper.make_node("Relu", ["x"], ["y"])], {}, [4]),
            "no Gemm or MatMul node",
        ),
    }


REFUSALS = _refusals()


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_unsupported_graphs_are_refused_with_a_clear_message(kind):
    model, match = REFUSALS[kind]
    with pytest.raises(ValueError, match=match) as info:
        load_onnx(model)
    assert str(info.value).startswith("ONNX model: ")


def _write_bad_file(kind, path):
    if kind == "truncated":
        W = np.random.default_rng(0).normal(size=(64, 32))
        model = make_model([helper.make_node("MatMul", ["x", "W"], ["y"])], {"W": W}, [64])
        data = model.SerializeToString()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not an ONNX model, just a text file\n")
    elif kind == "npz":
        with open(path, "wb") as f:
            np.savez(f, a=np.ones(3))


@pytest.mark.parametrize("kind", ["truncated", "random bytes", "empty", "text", "npz"])
def test_corrupt_and_non_onnx_files_raise_value_error_naming_the_path(tmp_path, kind):
    path = tmp_path / "bad.onnx"
    _write_bad_file(kind, path)
    expected = (
        r"is empty \(0 bytes\)" if kind == "empty" else r"is not a (readable|valid) ONNX model"
    )
    with pytest.raises(ValueError, match=expected) as info:
        load_onnx(path)
    assert str(path) in str(info.value)


def test_invalid_model_fails_the_checker():
    model = _dense_model()
    model.graph.node[0].input[0] = "nowhere"
    with pytest.raises(ValueError, match=r"not a valid ONNX model: onnx.checker.check_model says"):
        load_onnx(model)


def test_bad_source_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_onnx(tmp_path / "missing.onnx")
    with pytest.raises(TypeError, match="source must be a path or an onnx.ModelProto"):
        load_onnx(b"bytes")


# --- PyTorch models exported to ONNX -----------------------------------------------------------

SAMPLE = (2, 3, 4)


def _torch_module(torch, dtype):
    torch.manual_seed(0)
    nn = torch.nn
    return (
        nn.Sequential(
            nn.Flatten(),
            nn.Linear(24, 16),
            nn.ReLU(),
            nn.Linear(16, 12),
            nn.ReLU(),
            nn.Linear(12, 5),
        )
        .to(dtype)
        .eval()
    )


def _export_and_compare(tmp_path, dtype, dynamo):
    torch = import_extra("torch", "torch")
    from refimpl.interop.torch import from_torch

    tdtype = {np.float32: torch.float32, np.float64: torch.float64}[dtype]
    module = _torch_module(torch, tdtype)
    example = torch.randn(3, *SAMPLE, dtype=tdtype)
    path = tmp_path / f"exported_{'dynamo' if dynamo else 'torchscript'}.onnx"
    if dynamo:
        torch.onnx.export(module, (example,), path, dynamo=True, verbose=False)
    else:
        torch.onnx.export(module, (example,), path, dynamo=False)
    net = load_onnx(path)
    ref = from_torch(module, input_shape=SAMPLE)
    assert [type(layer) for layer in net.layers] == [type(layer) for layer in ref.layers]
    assert net.input_shape == ref.input_shape == SAMPLE and net.dtype == ref.dtype == dtype
    for p, q in zip(net.parameters(), ref.parameters(), strict=True):
        np.testing.assert_array_equal(p, q)  # Gemm(transB=1): W = weight.T, exactly
    x = np.random.default_rng(7).normal(size=(6, *SAMPLE)).astype(dtype)
    y, y_ref = net(x), ref(x)
    with torch.no_grad():
        y_torch = module(torch.from_numpy(x)).numpy()
    scale = max(1.0, float(np.abs(y_ref).max()))
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=RTOL[dtype] * scale)
    np.testing.assert_allclose(y, y_torch, rtol=0, atol=RTOL[dtype] * scale)
    if dtype is np.float64:
        rules = [Epsilon(), AlphaBeta(alpha=2, beta=1, inputs="split"), ZPlus(inputs="split")]
        for rule in rules:
            R, R_ref = lrp(net, x, rule).R, lrp(ref, x, rule).R
            assert R.shape == x.shape
            np.testing.assert_allclose(R, R_ref, rtol=0, atol=1e-10 * np.abs(R_ref).max())
    return net


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:The feature will be removed")
@pytest.mark.parametrize("dtype", DTYPES)
def test_torchscript_export_imports_as_from_torch(tmp_path, dtype):
    net = _export_and_compare(tmp_path, dtype, dynamo=False)
    assert isinstance(net.layers[0], Flatten)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dynamo_export_imports_as_from_torch(tmp_path, dtype):
    import_extra("torch", "torch")
    if os.environ.get("REFIMPL_REQUIRE_EXTRAS") == "1":  # as tests/extras.py: CI installs it
        importlib.import_module("onnxscript")
    else:
        pytest.importorskip(
            "onnxscript",
            reason="torch.onnx.export(dynamo=True) needs onnxscript: pip install onnxscript",
        )
    net = _export_and_compare(tmp_path, dtype, dynamo=True)
    assert isinstance(net.layers[0], Flatten)  # from Reshape(x, [3, 24]), allowzero=1


def test_missing_onnx_raises_import_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r"pip install '\.\[onnx\]'"):
        load_onnx("model.onnx")
