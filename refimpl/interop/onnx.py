"""Import an ONNX graph of dense layers and activations as a refimpl :class:`Sequential`.

Needs the optional extra ``[onnx]`` (``pip install '.[onnx]'``). The graph must be a single
chain from one input to one output, made of these operators (default domain ``ai.onnx``):

=========================  ===========================================================
ONNX operator              refimpl layer
=========================  ===========================================================
Gemm                       :class:`~refimpl.nn.layers.Dense`, ``Y = alpha A B' + beta C``
                           (``transA = 0``; ``B' = B`` or ``B^T`` for ``transB = 1``):
                           ``W = alpha B'``, ``b = beta C`` (eq. 2.7, ``z = a @ W + b``)
MatMul, then Add           Dense with bias: ``z = a @ B + c`` (``c`` either Add operand)
MatMul alone               Dense without bias
Relu, LeakyRelu (alpha)    ReLU, LeakyReLU(slope = alpha)
Tanh, Sigmoid              Tanh, Sigmoid
LogSoftmax (axis -1 or 1)  LogSoftmax (over the features of a ``(batch, features)`` input)
Flatten (axis = 1)         :class:`~refimpl.nn.layers.Flatten`
Reshape to (batch, -1)     Flatten: the shape ``[-1, d]``, ``[0, -1]``, ``[0, d]`` or
                           ``[N, d]``/``[N, -1]`` with ``N`` the graph's static batch size,
                           ``d`` the per-sample size (what ``torch.onnx.export(...,
                           dynamo=True)`` emits for ``nn.Flatten``)
Identity, Dropout          dropped (identity at inference)
=========================  ===========================================================

Weights, biases and reshape targets are constants: graph initializers or ``Constant`` nodes
(read with ``onnx.numpy_helper``). The dtype (float32 or float64) is kept: the arrays are copied,
not rounded (``alpha`` and ``beta`` other than 1 scale them once, in that dtype). Everything
else is refused with a ``ValueError`` naming the operator and the node, so that an imported
network never computes something other than the graph.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..nn.layers import Dense, Flatten, Layer, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Tanh
from ..nn.network import Sequential

SUPPORTED_OPS = (
    "Gemm",
    "MatMul",
    "Add",
    "Relu",
    "LeakyRelu",
    "Tanh",
    "Sigmoid",
    "LogSoftmax",
    "Flatten",
    "Reshape",
    "Identity",
    "Dropout",
    "Constant",
)
CONV_AND_POOLING_OPS = (
    "Conv",
    "ConvTranspose",
    "ConvInteger",
    "QLinearConv",
    "DeformConv",
    "MaxPool",
    "AveragePool",
    "LpPool",
    "MaxUnpool",
    "MaxRoiPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
)
_ACTIVATIONS = {"Relu": ReLU, "Tanh": Tanh, "Sigmoid": Sigmoid}


def import_onnx():
    """Import ``onnx``, or raise an ImportError that names the extra to install."""
    try:
        import onnx
        from onnx import numpy_helper  # noqa: F401  (a submodule, imported for onnx.numpy_helper)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "onnx is not installed; install refimpl's optional extra: pip install '.[onnx]'"
        ) from exc
    return onnx


def load_onnx(source) -> Sequential:
    """Load an ONNX model of dense layers and activations as a refimpl network.

    Parameters
    ----------
    source : str, PathLike or onnx.ModelProto
        An ``.onnx`` file, or a model already in memory.

    Returns
    -------
    Sequential
        With the graph's dtype (float32 or float64) and the per-sample input shape of the graph
        input (its first dimension, the batch, may be symbolic).

    Raises
    ------
    FileNotFoundError
        When the path does not exist.
    ValueError
        When the file is not a readable ONNX model (naming the path), fails
        ``onnx.checker.check_model``, is not a single chain from one input to one output, or holds
        an operator or attribute refimpl does not support (naming the op type and the node).
    TypeError
        When ``source`` is neither a path nor a ``ModelProto``.

    Notes
    -----
    See the module docstring for the operators and how each maps to a layer. Convolution and
    pooling are not supported yet.
    """
    onnx = import_onnx()
    if isinstance(source, onnx.ModelProto):
        model, where = source, "ONNX model"
    elif isinstance(source, (str, os.PathLike)):
        from ..files import check_input_file

        path = check_input_file(source, "ONNX", expected="an .onnx model file")
        where = f"ONNX file {str(path)!r}"
        try:
            model = onnx.load(path)
        except Exception as exc:  # protobuf raises DecodeError, RuntimeError, ... on bad bytes
            raise ValueError(
                f"{where} is not a readable ONNX model ({type(exc).__name__}: {exc})"
            ) from None
    else:
        raise TypeError(f"source must be a path or an onnx.ModelProto, got {type(source).__name__}")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError, or a protobuf error
        raise ValueError(
            f"{where} is not a valid ONNX model: onnx.checker.check_model says "
            f"{type(exc).__name__}: {str(exc).strip()}"
        ) from None
    try:
        return _GraphReader(model.graph, onnx).read()
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _node_name(i: int, node) -> str:
    return f"node {i} {node.name!r} ({node.op_type})" if node.name else f"node {i} ({node.op_type})"


class _GraphReader:
    """Walks the chain of a graph node by node and builds the layers."""

    def __init__(self, graph, onnx) -> None:
        self.graph = graph
        self.onnx = onnx
        self.consts: dict[str, np.ndarray] = {
            init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer
        }
        self.dtype: np.dtype | None = None
        self.layers: list[Layer] = []
        self.shape: tuple[int, ...] = ()  # per-sample shape of the current value
        self.batch: int | None = None  # the graph input's static batch size, if any
        self.pending_matmul = False  # the last layer is a bias-free Dense from a MatMul

    # --- the graph's input and output -------------------------------------------------------

    def _graph_input(self) -> tuple[str, np.dtype, tuple[int, ...], int | None]:
        """Name, dtype, per-sample shape and static batch size (None if symbolic) of the input."""
        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise ValueError(
                f"the graph has {len(inputs)} inputs {[i.name for i in inputs]} (initializers "
                "not counted); refimpl imports a single chain with exactly one input"
            )
        if len(self.graph.output) != 1:
            raise ValueError(
                f"the graph has {len(self.graph.output)} outputs "
                f"{[o.name for o in self.graph.output]}; refimpl imports a single chain with "
                "exactly one output"
            )
        value = inputs[0]
        if not value.type.HasField("tensor_type"):
            raise ValueError(f"graph input {value.name!r} is not a tensor")
        ttype = value.type.tensor_type
        dtype = self._float_dtype(ttype.elem_type, f"graph input {value.name!r}")
        if not ttype.HasField("shape"):  # the checker requires it; kept for clarity
            raise ValueError(f"graph input {value.name!r} has no shape")
        dims = list(ttype.shape.dim)
        if len(dims) < 2:
            raise ValueError(
                f"graph input {value.name!r} has rank {len(dims)}; expected a batch dimension "
                "followed by the sample's dimensions"
            )
        shape = []
        for k, dim in enumerate(dims[1:], start=1):
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                what = dim.dim_param if dim.HasField("dim_param") else "unknown"
                raise ValueError(
                    f"graph input {value.name!r} has a symbolic or unknown dimension {k} "
                    f"({what!r}); only the batch dimension (0) may be symbolic"
                )
            shape.append(int(dim.dim_value))
        batch = int(dims[0].dim_value) if dims[0].HasField("dim_value") else None
        return value.name, dtype, tuple(shape), batch or None

    def _float_dtype(self, elem_type: int, what: str) -> np.dtype:
        tp = self.onnx.TensorProto
        if elem_type not in (tp.FLOAT, tp.DOUBLE):
            name = tp.DataType.Name(elem_type) if elem_type in tp.DataType.values() else elem_type
            raise ValueError(
                f"{what} has element type {name}; refimpl imports float32 (FLOAT) or float64 "
                "(DOUBLE) graphs"
            )
        return np.dtype(np.float32 if elem_type == tp.FLOAT else np.float64)

    # --- the walk ---------------------------------------------------------------------------

    def read(self) -> Sequential:
        current, self.dtype, self.shape, self.batch = self._graph_input()
        input_shape = self.shape
        for i, node in enumerate(self.graph.node):
            where = _node_name(i, node)
            if node.domain not in ("", "ai.onnx"):
                raise ValueError(
                    f"{where} is in domain {node.domain!r}; refimpl supports only the default "
                    f"ONNX domain, ops {', '.join(SUPPORTED_OPS)}"
                )
            if node.op_type == "Constant":
                self._constant(node, where)
                continue
            dynamic = [name for name in node.input if name and name not in self.consts]
            if not dynamic:
                if node.op_type == "Identity":  # an alias of a constant
                    self.consts[node.output[0]] = self.consts[node.input[0]]
                    continue
                raise ValueError(
                    f"{where} computes from constants only; refimpl does not fold constants "
                    "(export with constant folding, e.g. torch.onnx.export(..., "
                    "do_constant_folding=True))"
                )
            if dynamic != [current] or list(node.input).count(current) != 1:
                raise ValueError(
                    f"{where} reads {dynamic}, but the only value it may read besides constants "
                    f"is {current!r}, the output of the previous node: the graph is not a "
                    "single chain (branching, skip connections or several inputs are not "
                    "supported)"
                )
            try:
                self._node(node, where, current)
            except ValueError as exc:
                msg = str(exc)
                raise ValueError(msg if msg.startswith(where) else f"{where}: {msg}") from None
            current = node.output[0]
        output = self.graph.output[0].name
        if current != output:
            raise ValueError(
                f"the graph output {output!r} is not the end of the chain ({current!r}): the "
                "graph is not a single chain"
            )
        if not any(isinstance(layer, Dense) for layer in self.layers):
            raise ValueError("the graph has no Gemm or MatMul node; nothing to import")
        return Sequential(self.layers, input_shape=input_shape)

    def _constant(self, node, where: str) -> None:
        if len(node.attribute) != 1:
            raise ValueError(f"{where} must have exactly one value attribute")
        attr = node.attribute[0]
        if attr.name not in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            raise ValueError(f"{where} holds a {attr.name!r} constant; not supported")
        value = self.onnx.helper.get_attribute_value(attr)
        if attr.name == "value":
            value = self.onnx.numpy_helper.to_array(value)
        self.consts[node.output[0]] = np.asarray(value)

    def _node(self, node, where: str, current: str) -> None:
        op = node.op_type
        attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op != "Dropout" and len([o for o in node.output if o]) != 1:
            raise ValueError(f"{where} has {len(node.output)} outputs; expected one")
        if op == "Gemm":
            self._gemm(node, attrs, current)
        elif op == "MatMul":
            self._matmul(node, current)
        elif op == "Add":
            self._add(node, current)
            return  # keeps the layer list and shape; the bias is added to the last Dense
        elif op in _ACTIVATIONS:
            self._check_attrs(attrs, set())
            self._append(_ACTIVATIONS[op]())
        elif op == "LeakyRelu":
            self._check_attrs(attrs, {"alpha"})
            # a float attribute is float32; so is its default 0.01
            self._append(LeakyReLU(float(np.float32(attrs.get("alpha", 0.01)))))
        elif op == "LogSoftmax":
            self._check_attrs(attrs, {"axis"})
            axis = int(attrs.get("axis", -1))
            if axis not in (-1, 1) or len(self.shape) != 1:
                raise ValueError(
                    f"LogSoftmax with axis={axis} on per-sample shape {self.shape}; refimpl "
                    "supports LogSoftmax over the features of a (batch, features) input "
                    "(axis -1 or 1)"
                )
            self._append(LogSoftmax())
        elif op == "Flatten":
            self._check_attrs(attrs, {"axis"})
            axis = int(attrs.get("axis", 1))
            if axis not in (1, -len(self.shape)):  # -len(shape) is axis 1 counted from the end
                raise ValueError(
                    f"Flatten with axis={axis}; refimpl supports axis=1 only (flatten each "
                    "sample, keep the batch dimension)"
                )
            self._append(Flatten())
        elif op == "Reshape":
            self._reshape(node, attrs)
        elif op == "Identity":
            pass
        elif op == "Dropout":
            self._dropout(node, attrs, where)
        elif op in CONV_AND_POOLING_OPS:
            raise ValueError(
                f"{where}: convolution and pooling are not supported yet; refimpl imports "
                f"graphs of {', '.join(SUPPORTED_OPS)}"
            )
        else:
            raise ValueError(
                f"{where}: unsupported op {op!r}; refimpl imports graphs of "
                f"{', '.join(SUPPORTED_OPS)} (in a single chain)"
            )
        if op not in ("MatMul", "Identity", "Dropout"):
            self.pending_matmul = False

    def _check_attrs(self, attrs: dict[str, Any], allowed: set[str]) -> None:
        extra = sorted(set(attrs) - allowed)
        if extra:
            raise ValueError(f"unsupported attribute(s) {extra}")

    def _append(self, layer: Layer) -> None:
        self.shape = layer.output_shape(self.shape)
        self.layers.append(layer)

    def _weight(self, name: str, what: str) -> np.ndarray:
        value = np.asarray(self.consts[name])
        if value.dtype != self.dtype:
            if value.dtype.kind != "f":
                raise ValueError(
                    f"{what} {name!r} has dtype {value.dtype}; refimpl imports float32 or "
                    "float64 graphs"
                )
            raise ValueError(
                f"{what} {name!r} has dtype {value.dtype}, but the graph input is {self.dtype}"
            )
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{what} {name!r} contains NaN or inf")
        return value

    def _bias(self, c: np.ndarray, n_out: int, name: str) -> np.ndarray:
        """A bias that broadcasts over the batch: shape (), (1,), (n_out,), (1, 1) or (1, n_out)."""
        flat = c[0] if c.ndim == 2 and c.shape[0] == 1 else c
        if flat.ndim > 1 or flat.shape not in ((), (1,), (n_out,)):
            raise ValueError(
                f"bias {name!r} has shape {c.shape}; expected ({n_out},) or (1, {n_out}) (one "
                "value per output unit, the same for every sample)"
            )
        return np.broadcast_to(flat, (n_out,)).copy()

    def _gemm(self, node, attrs, current: str) -> None:
        self._check_attrs(attrs, {"alpha", "beta", "transA", "transB"})
        if int(attrs.get("transA", 0)) != 0:
            raise ValueError(
                f"transA={attrs['transA']}; refimpl supports Gemm with transA=0 (the input's "
                "rows are the samples)"
            )
        trans_b = int(attrs.get("transB", 0))
        if trans_b not in (0, 1):
            raise ValueError(f"transB={trans_b}; expected 0 or 1")
        if node.input[0] != current:
            raise ValueError("the activations must be input A (the first input) and B, C constants")
        B = self._weight(node.input[1], "weight B")
        if B.ndim != 2:
            raise ValueError(f"weight B {node.input[1]!r} has shape {B.shape}; expected 2-D")
        W = B.T if trans_b else B
        alpha = float(attrs.get("alpha", 1.0))
        beta = float(attrs.get("beta", 1.0))
        W = np.array(W * self.dtype.type(alpha) if alpha != 1.0 else W, order="C")
        b = None
        if len(node.input) > 2 and node.input[2]:
            c = self._weight(node.input[2], "bias C")
            b = self._bias(c, W.shape[1], node.input[2])
            if beta != 1.0:
                b = b * self.dtype.type(beta)
        self._append(Dense(W, b))

    def _matmul(self, node, current: str) -> None:
        if node.input[0] != current:
            raise ValueError(
                "the activations must be the first input and the weight matrix the second "
                "(z = a @ W)"
            )
        W = self._weight(node.input[1], "weight")
        if W.ndim != 2:
            raise ValueError(f"weight {node.input[1]!r} has shape {W.shape}; expected 2-D")
        self._append(Dense(np.array(W, order="C")))
        self.pending_matmul = True

    def _add(self, node, current: str) -> None:
        last = self.layers[-1] if self.layers else None
        if not (self.pending_matmul and isinstance(last, Dense) and last.b is None):
            raise ValueError(
                "Add is supported only as the bias of the MatMul just before it (MatMul + Add "
                "= a dense layer)"
            )
        other = node.input[1] if node.input[0] == current else node.input[0]
        c = self._weight(other, "bias")
        bias = self._bias(c, last.W.shape[1], other)
        self.layers[-1] = Dense(last.W, bias)
        self.pending_matmul = False

    def _reshape(self, node, attrs) -> None:
        self._check_attrs(attrs, {"allowzero"})
        target = np.asarray(self.consts[node.input[1]])
        if target.dtype.kind not in "iu":
            raise ValueError(f"the shape {node.input[1]!r} has dtype {target.dtype}")
        target = [int(t) for t in target.reshape(-1)]
        allowzero = int(attrs.get("allowzero", 0))
        d = int(np.prod(self.shape, dtype=np.int64))
        ok = len(target) == 2 and (
            (target[0] == -1 and target[1] == d)
            or (
                (
                    (target[0] == 0 and allowzero == 0)
                    or (self.batch is not None and target[0] == self.batch)
                )
                and target[1] in (-1, d)
            )
        )
        if not ok:
            raise ValueError(
                f"Reshape to {target} (allowzero={allowzero}) of per-sample shape {self.shape}; "
                f"refimpl supports only flattening each sample: [-1, {d}], [0, -1] or [0, {d}]"
                + (f", [{self.batch}, -1] or [{self.batch}, {d}]" if self.batch is not None else "")
            )
        self._append(Flatten())

    def _dropout(self, node, attrs, where: str) -> None:
        self._check_attrs(attrs, {"seed", "is_test", "ratio"})
        if "is_test" in attrs and not attrs["is_test"]:
            raise ValueError(f"{where} is in training mode (is_test=0)")
        if len(node.input) > 2 and node.input[2]:
            training = np.asarray(self.consts[node.input[2]])
            if training.size != 1 or bool(training.reshape(-1)[0]):
                raise ValueError(f"{where} is in training mode (training_mode is not false)")
