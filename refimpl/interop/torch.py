"""Exact conversion between a PyTorch ``nn.Sequential`` and a refimpl :class:`Sequential`.

Needs the optional extra ``[torch]``. Weights are copied, never rounded: a float64 module gives
a float64 network and back, bit for bit. PyTorch stores a linear layer's weight as
``(out, in)``; refimpl's :class:`~refimpl.nn.layers.Dense` uses the paper's ``(in, out)``
(eq. 2.7, ``z = a @ W + b``), so ``W = weight.T``.
"""

from __future__ import annotations

import numpy as np

from ..nn.batchnorm import BatchNorm2d
from ..nn.conv import Conv2d
from ..nn.layers import Dense, Flatten, Layer, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Tanh
from ..nn.network import Sequential
from ..nn.pool import AvgPool2d, MaxPool2d

SPATIAL = (Conv2d, MaxPool2d, AvgPool2d, BatchNorm2d)  # layers whose input shape must be given


def import_torch():
    """Import ``torch``, or raise an ImportError that names the extra to install."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "PyTorch is not installed; install refimpl's optional extra: pip install '.[torch]' "
            "(see the README, section 'Cross-checks')"
        ) from exc
    return torch


def _modules(module, torch) -> list:
    """The leaf modules of (nested) ``nn.Sequential`` containers, in order."""
    nn = torch.nn
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _modules(child, torch)]
    return [module]


def _to_numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _layer_from_torch(m, i: int, torch) -> Layer | None:
    nn = torch.nn
    if isinstance(m, nn.Linear):
        if m.weight.dtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"module {i} (Linear) has dtype {m.weight.dtype}; expected float32 or float64"
            )
        return Dense(_to_numpy(m.weight).T, None if m.bias is None else _to_numpy(m.bias))
    spatial = _spatial_from_torch(m, i, torch)
    if spatial is not None:
        return spatial
    if isinstance(m, nn.ReLU):
        return ReLU()
    if isinstance(m, nn.LeakyReLU):
        return LeakyReLU(float(m.negative_slope))
    if isinstance(m, nn.Tanh):
        return Tanh()
    if isinstance(m, nn.Sigmoid):
        return Sigmoid()
    if isinstance(m, nn.LogSoftmax):
        if m.dim not in (-1, 1):
            raise ValueError(f"module {i} is LogSoftmax(dim={m.dim}); only dim=1 or -1 converts")
        return LogSoftmax()
    if isinstance(m, nn.Flatten):
        if (m.start_dim, m.end_dim) != (1, -1):
            raise ValueError(
                f"module {i} is Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}); only "
                "Flatten(start_dim=1, end_dim=-1), which flattens each whole sample, converts"
            )
        return Flatten()
    if isinstance(m, nn.Dropout) and m.training and m.p > 0:
        raise ValueError(
            f"module {i} is Dropout(p={m.p}) in training mode, which is random; call "
            "module.eval() first (at inference Dropout is the identity)"
        )
    if isinstance(m, (nn.Identity, nn.Dropout)):
        return None  # identity at inference (Dropout in eval mode)
    raise ValueError(
        f"module {i} ({type(m).__name__}) cannot be converted; supported: Linear, Conv2d, "
        "MaxPool2d, AvgPool2d, BatchNorm2d (eval mode), ReLU, LeakyReLU, Tanh, Sigmoid, "
        "LogSoftmax, Flatten(start_dim=1, end_dim=-1), Identity, Dropout"
    )


def _as_pair(value, what: str, i: int, name: str) -> tuple[int, int]:
    if isinstance(value, str):
        raise ValueError(f"module {i} ({name}) has {what}={value!r}; only integer values convert")
    return (value, value) if isinstance(value, int) else tuple(int(v) for v in value)


def _spatial_from_torch(m, i: int, torch) -> Layer | None:
    """Conv2d, MaxPool2d, AvgPool2d and BatchNorm2d (eval mode), exactly; None for others."""
    nn = torch.nn
    name = type(m).__name__
    if isinstance(m, nn.Conv2d):
        if _as_pair(m.dilation, "dilation", i, name) != (1, 1) or m.groups != 1:
            raise ValueError(
                f"module {i} (Conv2d) has dilation {m.dilation}, groups {m.groups}; "
                "only dilation 1 and groups 1 convert"
            )
        if m.padding_mode != "zeros":
            raise ValueError(
                f"module {i} (Conv2d) pads with {m.padding_mode!r}; only zeros convert"
            )
        return Conv2d(
            _to_numpy(m.weight),
            None if m.bias is None else _to_numpy(m.bias),
            _as_pair(m.stride, "stride", i, name),
            _as_pair(m.padding, "padding", i, name),
        )
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        if m.ceil_mode:
            raise ValueError(f"module {i} ({name}) has ceil_mode=True; only floor mode converts")
        if isinstance(m, nn.MaxPool2d) and (
            _as_pair(m.dilation, "dilation", i, name) != (1, 1) or m.return_indices
        ):
            raise ValueError(
                f"module {i} (MaxPool2d) has dilation {m.dilation} or "
                "return_indices; only dilation 1 without indices converts"
            )
        if isinstance(m, nn.AvgPool2d) and (not m.count_include_pad or m.divisor_override):
            raise ValueError(
                f"module {i} (AvgPool2d) excludes padding from the count or "
                "overrides the divisor; only the default (padding counted) converts"
            )
        cls = MaxPool2d if isinstance(m, nn.MaxPool2d) else AvgPool2d
        return cls(
            _as_pair(m.kernel_size, "kernel_size", i, name),
            _as_pair(m.stride, "stride", i, name),
            _as_pair(m.padding, "padding", i, name),
        )
    if isinstance(m, nn.BatchNorm2d):
        if m.training or m.running_mean is None:
            raise ValueError(
                f"module {i} (BatchNorm2d) is in training mode or keeps no running "
                "statistics; call module.eval() first (inference mode converts)"
            )
        mean, var = _to_numpy(m.running_mean), _to_numpy(m.running_var)
        weight = _to_numpy(m.weight) if m.affine else np.ones_like(mean)
        bias = _to_numpy(m.bias) if m.affine else np.zeros_like(mean)
        return BatchNorm2d(weight, bias, mean, var, float(m.eps))
    return None


def from_torch(module, input_shape: tuple[int, ...] | None = None) -> Sequential:
    """Convert a PyTorch ``nn.Sequential`` (or a single module) to a refimpl network, exactly.

    Parameters
    ----------
    module : torch.nn.Module
        An ``nn.Sequential`` (nested ones are flattened) of Linear, Conv2d (dilation 1, one
        group, zero padding), MaxPool2d and AvgPool2d (floor mode; AvgPool2d counting padding),
        BatchNorm2d in eval mode, ReLU, LeakyReLU, Tanh, Sigmoid, LogSoftmax,
        ``Flatten(start_dim=1, end_dim=-1)``, and Identity/Dropout (dropped: identity at
        inference).
    input_shape : tuple of int, optional
        Shape of one sample, e.g. ``(1, 28, 28)``. Required when the first converted module is
        Flatten, a convolution, pooling or batch norm (their weights do not say the image size);
        otherwise
        inferred from the first Linear layer, and checked when given.

    Returns
    -------
    Sequential
        Same dtype as the module's parameters; ``W = weight.T``.

    Raises
    ------
    ValueError
        Naming the first module that has no refimpl counterpart, or when ``input_shape`` is
        missing or does not chain.
    """
    torch = import_torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if input_shape is not None:
        input_shape = _check_shape(input_shape)
    layers = [_layer_from_torch(m, i, torch) for i, m in enumerate(_modules(module, torch))]
    layers = [layer for layer in layers if layer is not None]
    if not any(isinstance(layer, Dense) for layer in layers):
        raise ValueError("module has no Linear layer; nothing to convert")
    if input_shape is None and isinstance(layers[0], (Flatten, *SPATIAL)):
        raise ValueError(
            f"input_shape is required when the module starts with {type(layers[0]).__name__}: "
            "give the shape of one sample, e.g. from_torch(module, input_shape=(1, 28, 28))"
        )
    return Sequential(layers, input_shape=input_shape)


def _check_shape(input_shape) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints, or a ValueError/TypeError naming it."""
    try:
        dims = tuple(input_shape)
    except TypeError:
        raise TypeError(
            f"input_shape must be a tuple of positive integers, got {input_shape!r}"
        ) from None
    if not dims or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in dims
    ):
        raise ValueError(f"input_shape must be a tuple of positive integers, got {input_shape!r}")
    return tuple(int(d) for d in dims)


def to_torch(net: Sequential):
    """Convert a refimpl network to a PyTorch ``nn.Sequential``, exactly (same dtype).

    Dense becomes ``nn.Linear`` with ``weight = W.T``; activations and Flatten map to their
    ``nn`` twins. The per-sample input shape is not part of an ``nn.Sequential``: pass
    ``net.input_shape`` to :func:`from_torch` to convert back.
    """
    torch = import_torch()
    nn = torch.nn
    if not isinstance(net, Sequential):
        raise TypeError(f"net must be a refimpl Sequential, got {type(net).__name__}")
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[net.dtype]
    modules = []
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Dense):
            n_in, n_out = layer.W.shape
            lin = nn.Linear(n_in, n_out, bias=layer.b is not None, dtype=dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.W.T)))
                if layer.b is not None:
                    lin.bias.copy_(torch.from_numpy(layer.b))
            modules.append(lin)
        elif isinstance(layer, SPATIAL):
            modules.append(_spatial_to_torch(layer, nn, torch, dtype))
        elif isinstance(layer, LeakyReLU):
            modules.append(nn.LeakyReLU(layer.slope))
        elif type(layer) in _SIMPLE:
            modules.append(_SIMPLE[type(layer)](nn))
        else:
            raise ValueError(f"layer {i} ({layer!r}) has no PyTorch counterpart here")
    return nn.Sequential(*modules)


def _spatial_to_torch(layer, nn, torch, dtype):
    """The PyTorch twin of a conv, pooling or batch-norm layer (same numbers)."""
    if isinstance(layer, Conv2d):
        K, C, kh, kw = layer.W.shape
        conv = nn.Conv2d(
            C,
            K,
            (kh, kw),
            stride=layer.stride,
            padding=layer.padding,
            bias=layer.b is not None,
            dtype=dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(layer.W))
            if layer.b is not None:
                conv.bias.copy_(torch.from_numpy(layer.b))
        return conv
    if isinstance(layer, (MaxPool2d, AvgPool2d)):
        cls = nn.MaxPool2d if isinstance(layer, MaxPool2d) else nn.AvgPool2d
        return cls(layer.kernel_size, layer.stride, layer.padding)
    C = layer.params["weight"].shape[0]
    bn = nn.BatchNorm2d(C, eps=layer.eps, dtype=dtype)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(layer.params["weight"]))
        bn.bias.copy_(torch.from_numpy(layer.params["bias"]))
        bn.running_mean.copy_(torch.from_numpy(layer.running_mean))
        bn.running_var.copy_(torch.from_numpy(layer.running_var))
    return bn.eval()


_SIMPLE = {
    ReLU: lambda nn: nn.ReLU(),
    Tanh: lambda nn: nn.Tanh(),
    Sigmoid: lambda nn: nn.Sigmoid(),
    LogSoftmax: lambda nn: nn.LogSoftmax(dim=-1),
    Flatten: lambda nn: nn.Flatten(start_dim=1, end_dim=-1),
}
