"""Named transforms of a layer's parameters (``"w+"``, ``"w^2"``, ...), computed once and reused.

An LRP rule does not compute ``max(W, 0)``: it names the transform (see
:class:`refimpl.explain.rules.Term`) and the engine looks it up here. The same names apply to any
linear layer's parameters (a dense matrix now, a convolution kernel next), elementwise:

========================  ===============================  ==================================
name                      weight ``w`` (bias ``b`` alike)  used by
========================  ===============================  ==================================
``"w"`` / ``"b"``         the parameter itself             LRP-0, epsilon, alpha-beta (split)
``"w+"`` / ``"b+"``       ``max(w, 0)``                    alpha-beta, z+, z^B
``"w-"`` / ``"b-"``       ``min(w, 0)``                    alpha-beta, z^B
``"w^2"`` / ``"b^2"``     ``w * w``                        w^2
``"1"``                   ones of the weight's shape       flat
``("w+gw+", gamma)``      ``w + gamma max(w, 0)``          gamma (and ``"b+gb+"``)
``("w+gw-", gamma)``      ``w + gamma min(w, 0)``          generalized gamma (and ``"b+gb-"``)
========================  ===============================  ==================================

:class:`PreparedParameters` holds the transformed arrays. It is explicit: ``lrp`` makes a fresh one
per call unless given one, so by default nothing can be stale. Pass one ``prepared`` to many calls
(``verify``'s diagnosis, the conformance export, a loop over batches) to compute each transform
once. It is a **snapshot**: an entry is recomputed when the layer's parameter array is replaced
(``layer.params["W"] = new`` or ``net.astype(...)``), but not when an array is changed in place;
call :meth:`PreparedParameters.clear` after in-place changes (e.g. a training step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

Transform = str | tuple[str, float]

ONES = "ones"
"""Input factor of rules that ignore the input (w^2, flat): ones of the layer input's shape. The
contributions ``linear(ones, h)`` then depend on the parameters only and are prepared too."""

_ELEMENTWISE: dict[str, Callable[..., np.ndarray]] = {
    "": lambda p: p,
    "+": lambda p: np.maximum(p, 0),
    "-": lambda p: np.minimum(p, 0),
    "^2": lambda p: p * p,
    "+g+": lambda p, gamma: p + gamma * np.maximum(p, 0),
    "+g-": lambda p, gamma: p + gamma * np.minimum(p, 0),
}
_PARAM = {"w": "W", "b": "b"}


def parse_transform(t: Transform) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """``(parameter name, function)`` of a transform name such as ``"w+"`` or ``("b+gb-", 0.5)``."""
    name, args = (t[0], t[1:]) if isinstance(t, tuple) else (t, ())
    if name == "1":
        return "W", np.ones_like
    param, rest = _PARAM.get(name[:1]), name[1:]
    if param is not None and rest in ("+gw+", "+gw-", "+gb+", "+gb-"):
        rest = rest[:2] + rest[3]  # "+gw+" -> "+g+"
    fn = _ELEMENTWISE.get(rest) if param is not None else None
    if fn is None or (rest in ("+g+", "+g-")) != bool(args):
        raise ValueError(
            f"unknown parameter transform {t!r}; known: w, w+, w-, w^2, 1, "
            "('w+gw+', gamma), ('w+gw-', gamma) and the same for b"
        )
    return param, (lambda p: fn(p, *args)) if args else fn


class PreparedParameters:
    """Transformed parameters per (layer, transform), computed on first use and then reused.

    A snapshot of the parameters (module docstring): replaced arrays are noticed, in-place
    changes are not; :meth:`clear` forgets everything.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[int, Any], tuple[Any, str, np.ndarray, np.ndarray]] = {}

    def get(self, layer, t: Transform) -> np.ndarray:
        """``t`` applied to ``layer``'s parameter (``layer.linear_params``), cached."""
        key = (id(layer), t)
        hit = self._cache.get(key)
        if hit is not None:
            owner, param, source, value = hit
            if owner is layer and layer.linear_params.get(param) is source:
                return value
        param, fn = parse_transform(t)
        source = layer.linear_params[param]
        value = fn(source)
        self._cache[key] = (layer, param, source, value)
        return value

    def linear_of_ones(self, layer, t: Transform, shape: tuple[int, ...], dtype) -> np.ndarray:
        """``layer.linear(ones((1, *shape)), t(W))``, cached like the transforms."""
        key = (id(layer), t, ONES, shape, np.dtype(dtype).str)
        W = self.get(layer, t)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is layer and hit[2] is W:
            return hit[3]
        value = layer.linear(np.ones((1, *shape), dtype=dtype), W)
        self._cache[key] = (layer, "", W, value)
        return value

    def clear(self) -> None:
        """Forget every transformed array (after parameters were changed in place)."""
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)


_SCOPE: ContextVar[dict[int, tuple[Any, PreparedParameters]] | None] = ContextVar(
    "refimpl_shared_parameters", default=None
)


@contextmanager
def shared_parameters(*nets) -> Iterator[None]:
    """Within the block, every LRP call on one of ``nets`` reuses one PreparedParameters per net.

    ``verify`` (its reference, rounding estimate and the ~125 candidates of its diagnosis) and
    the conformance export run many explanations of the same net: the transforms are computed
    once. The scope is the block: parameters must not change inside it, and nothing is kept
    after it (other nets, e.g. the perturbed copies of the rounding estimate, get a fresh cache).
    """
    outer = _SCOPE.get() or {}
    token = _SCOPE.set({**outer, **{id(net): (net, PreparedParameters()) for net in nets}})
    try:
        yield
    finally:
        _SCOPE.reset(token)


def prepared_for(net) -> PreparedParameters:
    """The PreparedParameters :func:`shared_parameters` holds for ``net``, else a fresh one."""
    hit = (_SCOPE.get() or {}).get(id(net))
    return hit[1] if hit is not None and hit[0] is net else PreparedParameters()
