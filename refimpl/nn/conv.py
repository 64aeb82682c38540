"""2-d convolution (cross-correlation, as PyTorch's ``nn.Conv2d``) with hand-written passes.

``z[n, o, p, q] = sum_{c, i, j} x_pad[n, c, p s_h + i, q s_w + j] W[o, c, i, j] + b[o]``

with ``x_pad`` the input zero-padded by ``padding`` on each side, stride ``s``, dilation 1 and
one group. Inputs are ``(n, C, H, W)``; weights ``(out_channels, in_channels, kh, kw)`` (PyTorch's
layout). The forward pass is one matrix product of the im2col patches (a strided view of the
padded input, copied once into ``(n Ho Wo, C kh kw)``) with the flattened weights; the adjoint
scatters the patch gradients back with one strided addition per kernel offset (``kh kw``
additions, each over the whole batch). For LRP the layer is ``"linear"``: ``linear(x, P)`` is
the convolution with weights ``P`` and no bias, ``linear_T`` its adjoint, so every rule of
:mod:`refimpl.explain.rules` applies unchanged.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._checks import as_float_array, check_int
from .layers import Layer, WeightBias


def _pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints (``stride=2`` or ``stride=(2, 1)``)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return check_int(value[0], name, low=0), check_int(value[1], name, low=0)
    v = check_int(value, name, low=0)
    return v, v


def patches(x: np.ndarray, kernel, stride, padding) -> np.ndarray:
    """The strided view ``(n, C, Ho, Wo, kh, kw)`` of ``x`` zero-padded (a copy only to pad)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def scatter_patches(cols: np.ndarray, input_shape, stride, padding) -> np.ndarray:
    """The adjoint of :func:`patches`: add ``cols`` (n, C, Ho, Wo, kh, kw) back into the
    input ``(n, C, H, W)`` (one strided addition per kernel offset; padding cut off)."""
    n, C, Ho, Wo, kh, kw = cols.shape
    (sh, sw), (ph, pw) = stride, padding
    H, Wd = input_shape[-2:]
    out = np.zeros((n, C, H + 2 * ph, Wd + 2 * pw), dtype=cols.dtype)
    for i in range(kh):  # one strided addition per kernel offset, over the whole batch
        for j in range(kw):
            out[:, :, i : i + sh * Ho : sh, j : j + sw * Wo : sw] += cols[:, :, :, :, i, j]
    return out[:, :, ph : ph + H, pw : pw + Wd]


def smallest_input(out_hw, kernel, stride, padding) -> tuple[int, int]:
    """The smallest (H, W) whose output is ``out_hw`` (the default input size of an adjoint)."""
    return tuple(
        (o - 1) * s + k - 2 * p for o, k, s, p in zip(out_hw, kernel, stride, padding, strict=True)
    )


class ChannelBias:
    """``add_bias``/``bias_dot`` of a linear layer with one bias per channel of (n, C, H, W)."""

    @staticmethod
    def add_bias(z: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``z + b``, one bias (or transform of it) per output channel."""
        return z + b[:, None, None]

    @staticmethod
    def bias_dot(s: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per sample ``sum_{o,p,q} s[o,p,q] b[o]``, shape ``(n,)``."""
        return s.sum(axis=(2, 3)) @ b


class Conv2d(ChannelBias, WeightBias, Layer):
    """2-d convolution (cross-correlation): ``z = W * x_pad + b`` (module docstring).

    Parameters
    ----------
    W : ndarray (out_channels, in_channels, kh, kw)
    b : ndarray (out_channels,), optional
    stride : int or pair of int (>= 1)
    padding : int or pair of int (>= 0), zeros on each side
    """

    type_name = "conv2d"
    relevance = "linear"

    def __init__(self, W: np.ndarray, b: np.ndarray | None = None, stride=1, padding=0) -> None:
        super().__init__()
        W = as_float_array(W, "W", ndim=4)
        if 0 in W.shape:
            raise ValueError(f"W must have no empty axis, got shape {W.shape}")
        self.params["W"] = W
        if b is not None:
            b = as_float_array(b, "b", ndim=1, dtype=W.dtype)
            if b.shape != (W.shape[0],):
                raise ValueError(
                    f"b must have shape ({W.shape[0]},) to match W {W.shape}, got {b.shape}"
                )
            self.params["b"] = b
        self.stride = _pair(stride, "stride")
        if min(self.stride) < 1:
            raise ValueError(f"stride must be >= 1, got {stride!r}")
        self.padding = _pair(padding, "padding")

    # --- the map and its adjoint (also what LRP uses) -------------------------------------

    def _patches(self, x: np.ndarray, kh: int, kw: int) -> np.ndarray:
        return patches(x, (kh, kw), self.stride, self.padding)

    def linear(self, x: np.ndarray, W: np.ndarray) -> np.ndarray:
        """The convolution of ``x`` (n, C, H, W) with weights ``W``, no bias: (n, K, Ho, Wo)."""
        K, C, kh, kw = W.shape
        patches = self._patches(x, kh, kw)
        n, _, Ho, Wo = patches.shape[:4]
        cols = patches.transpose(0, 2, 3, 1, 4, 5).reshape(n * Ho * Wo, C * kh * kw)
        z = cols @ W.reshape(K, -1).T
        return z.reshape(n, Ho, Wo, K).transpose(0, 3, 1, 2)

    def linear_T(self, s: np.ndarray, W: np.ndarray, input_shape: tuple[int, ...] | None = None):
        """The adjoint of :meth:`linear`: ``s`` (n, K, Ho, Wo) back to the input (n, C, H, W).

        ``input_shape`` is one input sample's shape, (C, H, W) or (H, W): several input sizes give
        the same output size when the stride does not divide evenly; by default the smallest.
        """
        K, C, kh, kw = W.shape
        n, _, Ho, Wo = s.shape
        if input_shape is None:
            input_shape = smallest_input((Ho, Wo), (kh, kw), self.stride, self.padding)
        cols = (s.transpose(0, 2, 3, 1).reshape(-1, K) @ W.reshape(K, -1)).reshape(
            n, Ho, Wo, C, kh, kw
        )
        return scatter_patches(
            cols.transpose(0, 3, 1, 2, 4, 5), input_shape, self.stride, self.padding
        )

    # --- the layer's passes ----------------------------------------------------------------

    def forward(self, x):
        z = self.linear(x, self.W)
        if self.b is not None:
            z = z + self.b[:, None, None]
        return z, x

    def backward(self, cache, dout):
        return self.backward_input(cache, dout), self.backward_params(cache, dout)

    def backward_input(self, cache, dout):
        return self.linear_T(dout, self.W, cache.shape[2:])

    def backward_params(self, cache, dout):
        K, C, kh, kw = self.W.shape
        patches = self._patches(cache, kh, kw)  # (n, C, Ho, Wo, kh, kw)
        n, _, Ho, Wo = patches.shape[:4]
        cols = patches.transpose(0, 2, 3, 1, 4, 5).reshape(n * Ho * Wo, C * kh * kw)
        grads = {"W": (dout.transpose(1, 0, 2, 3).reshape(K, -1) @ cols).reshape(self.W.shape)}
        if self.b is not None:
            grads["b"] = dout.sum(axis=(0, 2, 3))
        return grads

    def output_shape(self, input_shape):
        K, C, kh, kw = self.W.shape
        if len(input_shape) != 3 or input_shape[0] != C:
            raise ValueError(
                f"conv2d layer with W of shape {self.W.shape} needs input shape ({C}, H, W), "
                f"got {input_shape}"
            )
        (sh, sw), (ph, pw) = self.stride, self.padding
        H, Wd = input_shape[1] + 2 * ph, input_shape[2] + 2 * pw
        if H < kh or Wd < kw:
            raise ValueError(
                f"conv2d kernel {kh}x{kw} is larger than the padded input {H}x{Wd} "
                f"(input shape {input_shape}, padding {self.padding})"
            )
        return (K, (H - kh) // sh + 1, (Wd - kw) // sw + 1)

    def config(self):
        return {"stride": list(self.stride), "padding": list(self.padding)}

    @classmethod
    def from_config(cls, config, params):
        extra = set(config) - {"stride", "padding"}
        if extra:
            raise ValueError(f"conv2d layer has unknown config key(s) {sorted(extra)}")
        if not {"W"} <= set(params) <= {"W", "b"}:
            raise ValueError(f"conv2d layer needs arrays ['W'] or ['W', 'b'], got {sorted(params)}")
        return cls(params["W"], params.get("b"), config.get("stride", 1), config.get("padding", 0))

    def __repr__(self) -> str:
        K, C, kh, kw = self.W.shape
        return (
            f"Conv2d({C} -> {K}, kernel {kh}x{kw}, stride {self.stride}, padding {self.padding}, "
            f"bias={self.b is not None})"
        )
