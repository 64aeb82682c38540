"""Batch normalization over channels in inference mode, and its merge into the layer before it.

``y[n, c, h, w] = (x[n, c, h, w] - mean_c) / sqrt(var_c + eps) gamma_c + beta_c`` with the
running statistics ``mean``, ``var`` fixed (PyTorch's ``nn.BatchNorm2d`` in ``eval()`` mode). It is
a per-channel affine map ``y = s x + t`` (``s = gamma / sqrt(var + eps)``, ``t = beta - mean s``),
so for LRP it is a linear layer (``linear_params``: ``W = s``, ``b = t``) that takes any rule,
as Captum treats it (epsilon rule, the bias absorbing its share). :func:`merge_batch_norm` is
Zennit's canonizer instead: it folds each batch norm into the preceding conv layer
(``W' = W s``, ``b' = (b - mean) s + beta``), exactly on the forward pass.
"""

from __future__ import annotations

import copy

import numpy as np

from .._checks import as_float_array, check_positive
from .conv import ChannelBias, Conv2d
from .layers import Layer
from .network import Sequential


class BatchNorm2d(ChannelBias, Layer):
    """Inference-mode batch norm over the channels of ``(n, C, H, W)`` inputs (module docstring).

    Parameters
    ----------
    weight, bias : ndarray (C,)
        ``gamma`` and ``beta`` (the trainable parameters).
    running_mean, running_var : ndarray (C,)
        The fixed statistics; ``running_var >= 0``.
    eps : float
        Added to the variance (> 0; PyTorch's default 1e-5).
    """

    type_name = "batch_norm2d"
    relevance = "linear"

    def __init__(self, weight, bias, running_mean, running_var, eps: float = 1e-5) -> None:
        super().__init__()
        weight = as_float_array(weight, "weight", ndim=1)
        C = weight.shape[0]
        arrays = {"bias": bias, "running_mean": running_mean, "running_var": running_var}
        for name, value in arrays.items():
            arrays[name] = as_float_array(value, name, ndim=1, dtype=weight.dtype)
            if arrays[name].shape != (C,):
                raise ValueError(
                    f"{name} must have shape ({C},) as weight, got {arrays[name].shape}"
                )
        if np.any(arrays["running_var"] < 0):
            raise ValueError("running_var must be >= 0 (a variance)")
        self.params["weight"], self.params["bias"] = weight, arrays["bias"]
        self.running_mean, self.running_var = arrays["running_mean"], arrays["running_var"]
        self.eps = check_positive(eps, "eps")
        self._affine_of: tuple | None = None

    def astype(self, dtype) -> BatchNorm2d:
        """Convert the parameters and the running statistics to ``dtype``; return self."""
        super().astype(dtype)
        self.running_mean = self.running_mean.astype(self.params["weight"].dtype, copy=False)
        self.running_var = self.running_var.astype(self.params["weight"].dtype, copy=False)
        return self

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(s, t)`` of ``y = s x + t``; the same arrays until a value changes (the four
        per-channel vectors are compared by value, so in-place updates are seen)."""
        key = (self.params["weight"], self.params["bias"], self.running_mean, self.running_var)
        old = self._affine_of
        if old is None or not all(np.array_equal(a, b) for a, b in zip(key, old[0], strict=True)):
            s = key[0] / np.sqrt(key[3] + self.eps)
            self._affine_of = (tuple(a.copy() for a in key), {"W": s, "b": key[1] - key[2] * s})
        return self._affine_of[1]["W"], self._affine_of[1]["b"]

    @property
    def linear_params(self) -> dict[str, np.ndarray]:
        self.affine()
        return self._affine_of[1]

    @staticmethod
    def linear(x: np.ndarray, W: np.ndarray) -> np.ndarray:
        """``x`` scaled per channel by ``W`` (C,), no shift."""
        return x * W[:, None, None]

    @staticmethod
    def linear_T(s: np.ndarray, W: np.ndarray, input_shape=None) -> np.ndarray:
        """The adjoint of a diagonal map is itself."""
        return s * W[:, None, None]

    def forward(self, x):
        s, t = self.affine()
        return x * s[:, None, None] + t[:, None, None], x

    def backward(self, cache, dout):
        s, _ = self.affine()
        xhat = (cache - self.running_mean[:, None, None]) / np.sqrt(self.running_var + self.eps)[
            :, None, None
        ]
        grads = {"weight": (dout * xhat).sum(axis=(0, 2, 3)), "bias": dout.sum(axis=(0, 2, 3))}
        return dout * s[:, None, None], grads

    def output_shape(self, input_shape):
        C = self.params["weight"].shape[0]
        if len(input_shape) != 3 or input_shape[0] != C:
            raise ValueError(
                f"batch_norm2d over {C} channels needs input shape ({C}, H, W), got {input_shape}"
            )
        return input_shape

    def __repr__(self) -> str:
        return f"BatchNorm2d({self.params['weight'].shape[0]}, eps={self.eps:g})"


def merge_batch_norm(net: Sequential) -> Sequential:
    """A copy of ``net`` with every batch norm folded into the conv layer before it.

    ``W' = W s`` per output channel, ``b' = (b - mean) s + beta`` (a missing ``b`` is 0): the
    forward pass is the same up to rounding. A batch norm that does not directly follow such a
    layer is refused by name.
    """
    layers: list[Layer] = []
    for i, layer in enumerate(net.layers):
        if not isinstance(layer, BatchNorm2d):
            layers.append(copy.deepcopy(layer))
            continue
        prev = layers[-1] if layers else None
        if not isinstance(prev, Conv2d):
            raise ValueError(
                f"layer {i} ({layer!r}) does not follow a conv layer, so it cannot be merged "
                f"(it follows {prev!r})"
            )
        s, t = layer.affine()
        b = prev.b if prev.b is not None else np.zeros_like(s)
        layers[-1] = Conv2d(prev.W * s[:, None, None, None], b * s + t, prev.stride, prev.padding)
    return Sequential(layers, input_shape=net.input_shape)
