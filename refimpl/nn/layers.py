"""Layers with hand-written forward and backward passes (paper eq. 2.7).

Every layer has the same two methods, short enough to check by eye side by side:

- ``forward(a) -> (out, cache)``: ``cache`` holds what backward needs. Caches are returned, never
  stored on the layer, so two passes through one layer (e.g. a GAN discriminator on real and on
  fake images) cannot overwrite each other.
- ``backward(cache, dout) -> (da, grads)``: ``da`` is the gradient with respect to the input and
  ``grads`` maps each parameter name to its gradient (empty for activations).

Layers hold no explanation logic: how relevance passes a layer lives in the explanation modules.
A layer only declares what kind of map it is (``relevance``): ``"linear"`` (it offers
``linear(x, P)``, its map with parameters ``P`` and without bias, the adjoint
``linear_T(s, P, input_shape)`` and ``add_bias``/``bias_dot`` for its bias), ``"elementwise"``
(activations: relevance passes unchanged), ``"reshape"`` (Flatten), or ``None`` (the engine
refuses it by name). :class:`refimpl.nn.conv.Conv2d` is a linear layer too.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.special import expit

from .._checks import as_float_array, check_float_dtype, check_positive


class Layer:
    """Base class. Subclasses set ``type_name`` (the model-file name) and implement the passes."""

    type_name: ClassVar[str] = ""
    relevance: ClassVar[str | None] = None
    params: dict[str, np.ndarray]

    def __init__(self) -> None:
        self.params = {}

    def forward(self, a: np.ndarray) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def backward(self, cache: Any, dout: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError

    def backward_input(self, cache: Any, dout: np.ndarray) -> np.ndarray:
        """Only the input gradient of :meth:`backward` (layers with parameters skip theirs)."""
        return self.backward(cache, dout)[0]

    @property
    def linear_params(self) -> dict[str, np.ndarray]:
        """The arrays of a linear layer's map that LRP transforms (``"W"``, optional ``"b"``):
        its parameters, or a fixed kernel for layers without any (average and sum pooling)."""
        return self.params

    def backward_params(self, cache: Any, dout: np.ndarray) -> dict[str, np.ndarray]:
        """Only the parameter gradients of :meth:`backward` (dense layers skip the input's)."""
        return self.backward(cache, dout)[1]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one sample's output for one sample's input shape; raise if incompatible."""
        return input_shape

    def config(self) -> dict[str, Any]:
        """JSON-serializable hyperparameters (everything but the arrays)."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any], params: dict[str, np.ndarray]) -> Layer:
        """Build the layer from ``config()`` and its arrays (used by the model file)."""
        if params:
            raise ValueError(f"layer {cls.type_name!r} takes no arrays, got {sorted(params)}")
        return cls(**config)

    def astype(self, dtype) -> Layer:
        """Convert the parameters in place to ``dtype`` (float32 or float64); return self."""
        dtype = check_float_dtype(dtype)
        for name, value in self.params.items():
            self.params[name] = value.astype(dtype, copy=False)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class WeightBias:
    """``W`` and the optional ``b`` of a layer's ``params`` (dense and conv layers)."""

    params: dict[str, np.ndarray]

    @property
    def W(self) -> np.ndarray:
        return self.params["W"]

    @property
    def b(self) -> np.ndarray | None:
        return self.params.get("b")


class Dense(WeightBias, Layer):
    """Affine layer, eq. 2.7: ``z_k = sum_j a_j w_jk + b_k``, batched as ``z = a @ W + b``.

    Parameters
    ----------
    W : ndarray, shape (in, out)
        Weights, laid out (in, out) as in the paper (PyTorch stores (out, in)).
    b : ndarray, shape (out,), optional
        Bias. ``None`` makes a bias-free layer (needed for positively homogeneous nets, eq. 4.4).
    """

    type_name = "dense"
    relevance = "linear"

    def __init__(self, W: np.ndarray, b: np.ndarray | None = None) -> None:
        super().__init__()
        W = as_float_array(W, "W", ndim=2)
        self.params["W"] = W
        if b is not None:
            b = as_float_array(b, "b", ndim=1, dtype=W.dtype)
            if b.shape != (W.shape[1],):
                raise ValueError(
                    f"b must have shape ({W.shape[1]},) to match W {W.shape}, got {b.shape}"
                )
            self.params["b"] = b

    def forward(self, a):
        z = a @ self.W
        if self.b is not None:
            z += self.b
        return z, a

    def backward(self, cache, dout):
        a = cache
        grads = {"W": a.T @ dout}
        if self.b is not None:
            grads["b"] = dout.sum(axis=0)
        return dout @ self.W.T, grads

    def backward_input(self, cache, dout):
        return dout @ self.W.T

    def backward_params(self, cache, dout):
        grads = {"W": cache.T @ dout}
        if self.b is not None:
            grads["b"] = dout.sum(axis=0)
        return grads

    @staticmethod
    def linear(x: np.ndarray, W: np.ndarray) -> np.ndarray:
        """The layer's map without bias, with weights ``W`` (any transform of them): ``x @ W``."""
        return x @ W

    @staticmethod
    def linear_T(s: np.ndarray, W: np.ndarray, input_shape: tuple[int, ...] | None = None):
        """The adjoint of :meth:`linear`: ``s @ W.T`` (``input_shape``, one input sample's shape,
        is implied by ``W`` here; layers whose output size does not fix it use it)."""
        return s @ W.T

    @staticmethod
    def add_bias(z: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``z + b``, the bias (or a transform of it) broadcast over the outputs."""
        return z + b

    @staticmethod
    def bias_dot(s: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per sample ``sum_k s_k b_k``: the relevance a bias (transform) takes, shape ``(n,)``."""
        return s @ b

    def output_shape(self, input_shape):
        if input_shape != (self.W.shape[0],):
            raise ValueError(
                f"dense layer with W of shape {self.W.shape} needs input shape "
                f"({self.W.shape[0]},), got {input_shape}"
            )
        return (self.W.shape[1],)

    def config(self):
        return {"bias": self.b is not None}

    @classmethod
    def from_config(cls, config, params):
        bias = config.get("bias", True)
        if not isinstance(bias, bool):
            raise ValueError(f"dense layer 'bias' must be true or false, got {bias!r}")
        extra = set(config) - {"bias"}
        if extra:
            raise ValueError(f"dense layer has unknown config key(s) {sorted(extra)}")
        expected = {"W", "b"} if bias else {"W"}
        if set(params) != expected:
            raise ValueError(
                f"dense layer (bias={bias}) needs arrays {sorted(expected)}, got {sorted(params)}"
            )
        return cls(params["W"], params.get("b"))

    def __repr__(self) -> str:
        n_in, n_out = self.W.shape
        return f"Dense({n_in} -> {n_out}, bias={self.b is not None})"


class ReLU(Layer):
    """Rectifier, eq. 2.7: ``a_k = max(0, z_k)``; derivative 1 where ``z > 0``, else 0."""

    type_name = "relu"
    relevance = "elementwise"

    def forward(self, z):
        return np.maximum(z, 0), z > 0

    def backward(self, cache, dout):
        return dout * cache, {}


class LeakyReLU(Layer):
    """Leaky rectifier: ``a = z`` where ``z > 0``, else ``slope * z`` (``slope`` >= 0)."""

    type_name = "leaky_relu"
    relevance = "elementwise"

    def __init__(self, slope: float = 0.01) -> None:
        super().__init__()
        self.slope = check_positive(slope, "slope", allow_zero=True)

    def forward(self, z):
        scale = np.where(z > 0, 1.0, self.slope).astype(z.dtype, copy=False)
        return z * scale, scale

    def backward(self, cache, dout):
        return dout * cache, {}

    def config(self):
        return {"slope": self.slope}


class Tanh(Layer):
    """Hyperbolic tangent: ``a = tanh(z)``, ``da/dz = 1 - a^2``."""

    type_name = "tanh"
    relevance = "elementwise"

    def forward(self, z):
        a = np.tanh(z)
        return a, a

    def backward(self, cache, dout):
        return dout * (1.0 - cache * cache), {}


class Sigmoid(Layer):
    """Logistic sigmoid: ``a = 1 / (1 + exp(-z))``, ``da/dz = a (1 - a)``; stable for any ``z``."""

    type_name = "sigmoid"
    relevance = "elementwise"

    def forward(self, z):
        a = expit(z)
        return a, a

    def backward(self, cache, dout):
        return dout * cache * (1.0 - cache), {}


class LogSoftmax(Layer):
    """Log-softmax over the last axis: ``y_c = z_c - log sum_c' exp(z_c')``, stable for finite z.

    Backward: ``dz = dy - softmax(z) * sum_c dy_c``.
    """

    type_name = "log_softmax"

    def forward(self, z):
        y = log_softmax(z)
        return y, y

    def backward(self, cache, dout):
        p = np.exp(cache)
        return dout - p * dout.sum(axis=-1, keepdims=True), {}


class Flatten(Layer):
    """Flatten each sample: ``(n, d_1, ..., d_k) -> (n, d_1 * ... * d_k)`` (row-major, C order).

    The order is NumPy's and PyTorch's ``nn.Flatten()``: the last axis varies fastest. Backward
    reshapes the gradient back to the input's per-sample shape, kept in the cache. Forward
    returns a view of the input when NumPy can make one (no copy).
    """

    type_name = "flatten"
    relevance = "reshape"

    def forward(self, a):
        shape = a.shape[1:]
        return a.reshape(a.shape[0], int(np.prod(shape, dtype=np.int64))), shape

    def backward(self, cache, dout):
        return dout.reshape(dout.shape[0], *cache), {}

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape, dtype=np.int64)),)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """``log p(w_c | x) = z_c - log sum_c' exp(z_c')``, computed after subtracting ``max_c z_c``."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.type_name: cls for cls in (Dense, ReLU, LeakyReLU, Tanh, Sigmoid, LogSoftmax, Flatten)
}
ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
}
