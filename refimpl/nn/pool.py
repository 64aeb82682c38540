"""Average and sum pooling over 2-d windows, hand-written passes, as linear layers for LRP.

``z[n, c, p, q] = sum_{i, j} k_ij x_pad[n, c, p s_h + i, q s_w + j]`` per channel, with the fixed
kernel ``k = 1 / (kh kw)`` (average, PyTorch's ``nn.AvgPool2d`` with ``count_include_pad=True``:
padded zeros count) or ``k = 1`` (sum pooling, the LRP Toolbox's). No parameters are trained; the
kernel is the layer's ``linear_params["W"]``, so the engine treats pooling as a linear layer with
the layer's rule (``"w+"`` of a positive kernel is the kernel itself, ``"w-"`` is zero). Inputs
``(n, C, H, W)``; ``stride`` defaults to ``kernel_size``.
"""

from __future__ import annotations

import numpy as np

from .conv import _pair, patches, scatter_patches, smallest_input
from .layers import Layer


def _check_window(kernel_size, stride, padding) -> None:
    if min(kernel_size) < 1 or min(stride) < 1:
        raise ValueError(f"kernel_size and stride must be >= 1, got {kernel_size} and {stride}")
    if any(2 * p > k for p, k in zip(padding, kernel_size, strict=True)):
        raise ValueError(
            f"padding must be at most half the kernel size (as in PyTorch), got padding "
            f"{padding} for kernel {kernel_size}"
        )


class _Windowed(Layer):
    """A layer over 2-d windows: ``kernel_size``, ``stride`` (default: the kernel), ``padding``."""

    def __init__(self, kernel_size, stride=None, padding=0) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        _check_window(self.kernel_size, self.stride, self.padding)

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.type_name} needs input shape (C, H, W), got {input_shape}")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        H, Wd = input_shape[1] + 2 * ph, input_shape[2] + 2 * pw
        if H < kh or Wd < kw:
            raise ValueError(
                f"{self.type_name} window {kh}x{kw} is larger than the padded input {H}x{Wd} "
                f"(input shape {input_shape})"
            )
        return (input_shape[0], (H - kh) // sh + 1, (Wd - kw) // sw + 1)

    def config(self):
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
        }

    @classmethod
    def from_config(cls, config, params):
        extra = set(config) - {"kernel_size", "stride", "padding"}
        if extra:
            raise ValueError(f"{cls.type_name} layer has unknown config key(s) {sorted(extra)}")
        if "kernel_size" not in config:
            raise ValueError(f"{cls.type_name} layer needs config 'kernel_size'")
        if params:
            raise ValueError(f"layer {cls.type_name!r} takes no arrays, got {sorted(params)}")
        return cls(config["kernel_size"], config.get("stride"), config.get("padding", 0))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding})"
        )


class _Pool2d(_Windowed):
    """Pooling with a fixed kernel ``k`` (subclasses set :meth:`kernel_value`)."""

    relevance = "linear"

    def __init__(self, kernel_size, stride=None, padding=0) -> None:
        super().__init__(kernel_size, stride, padding)
        kh, kw = self.kernel_size
        self._kernel = np.full((kh, kw), self.kernel_value(kh * kw))
        self._linear_params = {"W": self._kernel}

    @staticmethod
    def kernel_value(count: int) -> float:
        raise NotImplementedError

    @property
    def linear_params(self) -> dict[str, np.ndarray]:
        return self._linear_params

    def linear(self, x: np.ndarray, W: np.ndarray) -> np.ndarray:
        """Pooling of ``x`` (n, C, H, W) with kernel ``W`` (kh, kw), per channel."""
        view = patches(x, self.kernel_size, self.stride, self.padding)
        return np.tensordot(view, W.astype(x.dtype, copy=False), axes=([4, 5], [0, 1]))

    def linear_T(self, s: np.ndarray, W: np.ndarray, input_shape=None) -> np.ndarray:
        """The adjoint: ``s`` (n, C, Ho, Wo) spread back with the kernel onto the input."""
        if input_shape is None:
            input_shape = smallest_input(s.shape[2:], self.kernel_size, self.stride, self.padding)
        cols = s[..., None, None] * W.astype(s.dtype, copy=False)
        return scatter_patches(cols, input_shape, self.stride, self.padding)

    def forward(self, x):
        return self.linear(x, self._kernel), x.shape[1:]

    def backward(self, cache, dout):
        return self.linear_T(dout, self._kernel, cache), {}


class AvgPool2d(_Pool2d):
    """Average pooling, ``z = mean of each window`` (padded zeros count, as PyTorch's default)."""

    type_name = "avg_pool2d"

    @staticmethod
    def kernel_value(count: int) -> float:
        return 1.0 / count


class SumPool2d(_Pool2d):
    """Sum pooling, ``z = sum of each window`` (the LRP Toolbox's pooling)."""

    type_name = "sum_pool2d"

    @staticmethod
    def kernel_value(count: int) -> float:
        return 1.0


class MaxPool2d(_Windowed):
    """Max pooling, ``z = max of each window`` (padding with -inf, as PyTorch's ``MaxPool2d``).

    The gradient goes to the first maximum of each window in row-major order (what autograd
    does); relevance has rules of its own (:mod:`refimpl.explain.pooling`), hence
    ``relevance = "max"``.
    """

    type_name = "max_pool2d"
    relevance = "max"

    def windows(self, x: np.ndarray) -> np.ndarray:
        """The windows ``(n, C, Ho, Wo, kh kw)`` of ``x`` padded with -inf (a copy)."""
        (ph, pw), (kh, kw) = self.padding, self.kernel_size
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
        view = patches(x, self.kernel_size, self.stride, (0, 0))
        return view.reshape(*view.shape[:4], kh * kw)

    def spread(self, cols: np.ndarray, input_shape) -> np.ndarray:
        """Add per-window values ``cols`` (n, C, Ho, Wo, kh kw) back onto the input."""
        kh, kw = self.kernel_size
        return scatter_patches(
            cols.reshape(*cols.shape[:4], kh, kw), input_shape, self.stride, self.padding
        )

    def as_average(self) -> AvgPool2d:
        """Average pooling over the same windows (built once)."""
        if getattr(self, "_average", None) is None:
            self._average = AvgPool2d(self.kernel_size, self.stride, self.padding)
        return self._average

    def forward(self, x):
        w = self.windows(x)
        first = w.argmax(axis=-1)
        z = np.take_along_axis(w, first[..., None], axis=-1)[..., 0]
        return z, (x.shape[1:], first)

    def backward(self, cache, dout):
        shape, first = cache
        kh, kw = self.kernel_size
        onehot = np.arange(kh * kw) == first[..., None]
        return self.spread(onehot * dout[..., None], shape), {}
