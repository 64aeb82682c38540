"""The Sequential container and a builder for dense networks (paper eq. 2.7)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._checks import as_float_array, check_float_dtype, check_int, check_result
from .._table import format_table
from .init import INITIALIZERS
from .layers import ACTIVATIONS, Dense, Layer


class Sequential:
    """A chain of layers, ``f = layer_L o ... o layer_1``.

    Parameters
    ----------
    layers : sequence of Layer
        Applied in order.
    input_shape : tuple of int, optional
        Shape of one sample. Inferred from the first dense layer when omitted.
    """

    def __init__(self, layers: Sequence[Layer], input_shape: tuple[int, ...] | None = None):
        layers = list(layers)
        if not layers:
            raise ValueError("layers must hold at least one layer, got an empty sequence")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] must be a Layer, got {type(layer).__name__}")
        if input_shape is None:
            first = next((la for la in layers if isinstance(la, Dense)), None)
            if first is None:
                raise ValueError("input_shape is required when the network has no dense layer")
            input_shape = (first.W.shape[0],)
        self.layers = layers
        self.input_shape = tuple(int(d) for d in input_shape)
        self.shapes = self._chain_shapes()
        dtypes = {p.dtype for p in self.parameters()}
        if len(dtypes) > 1:
            raise ValueError(f"all parameters must share one dtype, got {sorted(map(str, dtypes))}")

    def _chain_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shapes ``[input, after layer 0, ...]``; raise where shapes do not chain."""
        shapes = [self.input_shape]
        for i, layer in enumerate(self.layers):
            try:
                shapes.append(layer.output_shape(shapes[-1]))
            except ValueError as exc:
                raise ValueError(f"layer {i} ({layer!r}) does not chain: {exc}") from None
        return shapes

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shapes[-1]

    @property
    def dtype(self) -> np.dtype:
        params = self.parameters()
        return params[0].dtype if params else np.dtype(np.float64)

    def check_input(self, x, name: str = "x") -> np.ndarray:
        """Validate a finite batch ``x`` of shape ``(n, *input_shape)``; cast to the net's dtype."""
        x = as_float_array(x, name, dtype=self.dtype)
        if x.shape[1:] != self.input_shape or x.ndim != len(self.input_shape) + 1:
            raise ValueError(
                f"{name} must have shape (n, {', '.join(map(str, self.input_shape))}), "
                f"got {x.shape}"
            )
        return x

    @np.errstate(over="ignore", invalid="ignore")  # overflow is checked and named, not warned
    def forward(self, x: np.ndarray, *, check: bool = False) -> tuple[np.ndarray, list[Any]]:
        """Run all layers; return the output and the per-layer caches for ``backward``.

        With ``check=True`` every layer's output must be finite (see :meth:`check_output`).
        """
        caches = []
        for i, layer in enumerate(self.layers):
            x, cache = layer.forward(x)
            if check:
                self.check_output(i, x)
            caches.append(cache)
        return x, caches

    @np.errstate(over="ignore", invalid="ignore")  # overflow is checked and named, not warned
    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The output ``f(x)`` for a batch ``x`` (no caches kept)."""
        for layer in self.layers:
            x, _ = layer.forward(x)
        return x

    @np.errstate(over="ignore", invalid="ignore")  # overflow is checked and named, not warned
    def activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Inputs of every layer and the output: ``[a_0 = x, a_1, ..., a_L]``, all finite.

        A layer output that is not finite (finite inputs or weights that overflow, or weights
        set to NaN after the net was built) raises ``ValueError`` naming the layer and samples.
        """
        out = [x]
        for i, layer in enumerate(self.layers):
            out.append(layer.forward(out[-1])[0])
            self.check_output(i, out[-1])
        return out

    def check_parameters(self) -> None:
        """Raise ``ValueError`` naming the first parameter array that holds NaN or inf.

        Parameters are checked when a layer is built; this catches arrays changed afterwards
        (e.g. by a diverged training run).
        """
        for name, p in self.named_parameters():
            if not np.all(np.isfinite(p)):
                bad = int(p.size - np.count_nonzero(np.isfinite(p)))
                raise ValueError(
                    f"parameter {name} holds {bad} NaN or infinite value(s) (changed after the "
                    "net was built, e.g. by a diverged training run); expected finite numbers"
                )

    def check_output(self, i: int, out: np.ndarray) -> None:
        """Raise if the output of layer ``i`` is not finite, naming the cause."""
        if np.isfinite(out.sum()):  # one pass: a NaN or inf anywhere makes the sum non-finite
            return
        if np.all(np.isfinite(out)):  # the sum of finite values overflowed
            return
        self.check_parameters()
        what = "the logits" if i == len(self.layers) - 1 else f"the output of layer {i}"
        check_result(out, f"{what} ({self.layers[i]!r})")

    @np.errstate(over="ignore", invalid="ignore")  # overflow is checked and named, not warned
    def backward(
        self, caches: list[Any], dout: np.ndarray, *, input_grad: bool = True
    ) -> tuple[np.ndarray | None, list[np.ndarray]]:
        """Backpropagate ``dout``; return the input gradient and gradients of ``parameters()``.

        With ``input_grad=False`` (training) the input gradient is not computed and ``None`` is
        returned for it: the backward pass stops at the first layer with parameters, which
        computes only its parameter gradients (for a dense layer, no ``dout @ W.T``).
        """
        if len(caches) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} caches, got {len(caches)}")
        first = 0
        if not input_grad:
            first = next((i for i, layer in enumerate(self.layers) if layer.params), 0)
        grads: list[np.ndarray] = []
        for i in range(len(self.layers) - 1, first - 1, -1):
            layer = self.layers[i]
            if i == first and not input_grad:
                g, dout = layer.backward_params(caches[i], dout), None
            else:
                dout, g = layer.backward(caches[i], dout)
            grads.extend(reversed([g[name] for name in layer.params]))
        grads.reverse()
        return dout, grads

    @np.errstate(over="ignore", invalid="ignore")  # overflow is checked and named, not warned
    def input_gradient(self, caches: list[Any], dout: np.ndarray) -> np.ndarray:
        """Backpropagate ``dout`` to the input only (no parameter gradients: faster)."""
        for layer, cache in zip(reversed(self.layers), reversed(caches), strict=True):
            dout = layer.backward_input(cache, dout)
        return dout

    def parameters(self) -> list[np.ndarray]:
        """All parameter arrays, layer by layer, in each layer's ``params`` order."""
        return [p for layer in self.layers for p in layer.params.values()]

    def named_parameters(self) -> list[tuple[str, np.ndarray]]:
        """``("layers.{i}.{name}", array)`` pairs, the names used in the model file."""
        return [
            (f"layers.{i}.{name}", p)
            for i, layer in enumerate(self.layers)
            for name, p in layer.params.items()
        ]

    def astype(self, dtype) -> Sequential:
        """Convert all parameters in place to float32 or float64; return self."""
        dtype = check_float_dtype(dtype)
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def summary(self) -> str:
        """A table of layers, output shapes and parameter counts."""
        rows = [("#", "layer", "output", "params")]
        for i, layer in enumerate(self.layers):
            n = sum(p.size for p in layer.params.values())
            rows.append((str(i), repr(layer), str(self.shapes[i + 1]), f"{n:,}"))
        total = sum(p.size for p in self.parameters())
        lines = format_table(rows).split("\n")
        lines.append(f"input {self.input_shape}, {total:,} parameters, dtype {self.dtype}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Sequential({self.layers!r})"


def mlp(
    sizes: Sequence[int],
    *,
    activation: str = "relu",
    bias: bool = True,
    init: str | None = None,
    rng: np.random.Generator | int | None = 0,
    dtype=np.float64,
    **activation_config: Any,
) -> Sequential:
    """Build a dense network ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between layers.

    The last dense layer has no activation: it outputs the logits ``f(x)`` the explanations use.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths including input and output, e.g. ``(784, 512, 256, 10)``.
    activation : {"relu", "leaky_relu", "tanh", "sigmoid"}
        Hidden activation.
    bias : bool
        Whether dense layers have biases (``False`` gives a positively homogeneous ReLU net).
    init : {"he", "glorot"}, optional
        Weight initializer; default He for (leaky) ReLU, Glorot otherwise. Biases start at zero.
    rng : Generator or int
        Random generator or seed.
    dtype : float32 or float64
    """
    sizes = [check_int(s, f"sizes[{i}]", low=1) for i, s in enumerate(sizes)]
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least input and output width, got {sizes}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if init is None:
        init = "he" if activation in ("relu", "leaky_relu") else "glorot"
    if init not in INITIALIZERS:
        raise ValueError(f"init must be one of {sorted(INITIALIZERS)}, got {init!r}")
    dtype = check_float_dtype(dtype)
    rng = np.random.default_rng(rng)
    layers: list[Layer] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        W = INITIALIZERS[init](n_in, n_out, rng, dtype)
        layers.append(Dense(W, np.zeros(n_out, dtype) if bias else None))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation](**activation_config))
    return Sequential(layers)


def parse_sizes(text: str) -> list[int]:
    """Parse an architecture string such as ``"784-512-256-10"``."""
    try:
        sizes = [int(s) for s in text.split("-")]
    except ValueError:
        raise ValueError(f"architecture must look like 784-512-256-10, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"architecture needs >= 2 positive widths, got {text!r}")
    return sizes
