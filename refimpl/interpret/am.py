"""Activation maximization (paper sec. 3): prototypes of a class, three ways.

One optimization loop (:func:`maximize`) over composable objective terms, each a small class
whose ``__call__(v) -> (value (n,), gradient (n, d))`` cites its equation:

- eq. 3.1: ``max_x log p(w_c|x) - lambda ||x||^2``       -> ``[ClassScore, L2Penalty]``
- eq. 3.2: ``max_x log p(w_c|x) + beta log p(x)``        -> ``[ClassScore, ExpertPrior]``
- eq. 3.3: ``max_z log p(w_c|g(z)) - lambda ||z||^2``     -> ``[ThroughGenerator(ClassScore),
  L2Penalty]``

``ClassScore`` is the log-softmax ``log p(w_c|x)`` (paper) or the raw logit (as some tools do).
``L2Penalty`` takes an optional reference (``lambda ||x - x_ref||^2``: the data mean, or a class
code mean in code space). Pixel-space runs are projected onto the pixel box after every step;
``method="lbfgs"`` uses scipy's L-BFGS-B with the box as bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from .._checks import as_float_array, check_int, check_positive, check_result
from ..explain.output import target_indices
from ..nn.layers import log_softmax
from ..nn.network import Sequential


@dataclass
class ClassScore:
    """Class term of eq. 3.1-3.3: ``log p(w_c|x)`` (``kind="log_softmax"``) or the logit ``f_c(x)``.

    Gradient by backpropagation through the classifier: ``d/dx log p(w_c|x) = J^T (e_c - p)``.
    """

    classifier: Sequential
    c: np.ndarray | int
    kind: str = "log_softmax"

    def __post_init__(self):
        if self.kind not in ("log_softmax", "logit"):
            raise ValueError(f"kind must be 'log_softmax' or 'logit', got {self.kind!r}")

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z, caches = self.classifier.forward(x, check=True)
        c = target_indices(z, self.c)
        rows = np.arange(len(c))
        seed = np.zeros_like(z)
        seed[rows, c] = 1.0
        if self.kind == "logit":
            value = z[rows, c]
        else:
            logp = log_softmax(z)
            value = logp[rows, c]
            seed -= np.exp(logp)
        grad, _ = self.classifier.backward(caches, seed)
        return value, grad


@dataclass
class L2Penalty:
    """Regularizer of eq. 3.1 and 3.3: ``-lambda ||v - v_ref||^2`` (``v_ref`` = 0 in the paper)."""

    lam: float
    ref: np.ndarray | None = None

    def __post_init__(self):
        check_positive(self.lam, "lambda", allow_zero=True)

    def __call__(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diff = v if self.ref is None else v - self.ref
        return -self.lam * (diff * diff).sum(axis=1), -2.0 * self.lam * diff


@dataclass
class ExpertPrior:
    """Expert term of eq. 3.2: ``beta log p(x)`` with a density model (the Gaussian RBM)."""

    expert: object
    beta: float

    def __post_init__(self):
        check_positive(self.beta, "beta", allow_zero=True)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.beta * self.expert.log_density(x), self.beta * self.expert.grad_log_density(x)


@dataclass
class ThroughGenerator:
    """Eq. 3.3: evaluate ``term`` on ``g(z)`` and backpropagate its gradient to the code ``z``."""

    generator: object  # a refimpl.interpret.gan.CodeModel
    term: Callable

    def __call__(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, cache = self.generator.forward(z)
        value, dx = self.term(x)
        return value, self.generator.backward(cache, dx)


@np.errstate(over="ignore", invalid="ignore")  # overflow is checked and named, not warned
def objective(terms: Sequence[Callable], v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the terms' values (n,) and gradients (n, d); raise if either is not finite."""
    total, grad = None, None
    for term in terms:
        val, g = term(v)
        total = val if total is None else total + val
        grad = g if grad is None else grad + g
    cause = "the terms overflow {dtype} (starting point, weights or lambda/beta too large)"
    check_result(total, "the AM objective", cause)
    check_result(grad, "the gradient of the AM objective", cause)
    return total, grad


@dataclass
class AMResult:
    """Prototypes ``x`` (pixel space), codes ``z`` (code space only) and the objective history."""

    x: np.ndarray
    history: list[np.ndarray] = field(default_factory=list)
    z: np.ndarray | None = None


def maximize(
    terms: Sequence[Callable],
    v0: np.ndarray,
    *,
    steps: int = 500,
    lr: float = 0.1,
    decay: float = 0.995,
    box: tuple[float, float] | None = (-1.0, 1.0),
    method: str = "gradient",
    log: Callable[[str], None] | None = None,
    every: int = 100,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Gradient ascent on ``sum(terms)`` from ``v0``, one independent problem per row.

    ``method="gradient"``: ``v <- proj_box(v + lr_t grad)``, ``lr_t = lr decay^t``.
    ``method="lbfgs"``: scipy's L-BFGS-B on ``-sum_n objective_n`` with ``box`` as bounds (rows
    are independent, so the joint problem separates). Returns the maximizer and the history of
    objective values (one (n,) array every ``every`` steps, and the last).
    """
    v = as_float_array(v0, "v0", ndim=2).copy()
    steps = check_int(steps, "steps", low=1)
    check_positive(lr, "lr")
    history = []
    if method == "lbfgs":
        shape = v.shape

        def f(flat):
            val, g = objective(terms, flat.reshape(shape))
            history.append(val)
            return -float(val.sum()), -g.ravel()

        bounds = None if box is None else [box] * v.size
        res = minimize(
            f, v.ravel(), jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": steps}
        )
        v = res.x.reshape(shape)
        history.append(objective(terms, v)[0])
        return v, history[:: max(1, every)] + [history[-1]]
    if method != "gradient":
        raise ValueError(f"method must be 'gradient' or 'lbfgs', got {method!r}")
    step = lr
    for t in range(steps):
        val, g = objective(terms, v)
        if t % every == 0:
            history.append(val)
            if log:
                log(f"  AM step {t:4d}: objective mean {val.mean():.4f}")
        v += step * g
        if box is not None:
            np.clip(v, box[0], box[1], out=v)
        step *= decay
    history.append(objective(terms, v)[0])
    return v, history


def _classes(classifier: Sequential, classes) -> np.ndarray:
    n_out = classifier.output_shape[0]
    c = np.arange(n_out) if classes is None else np.atleast_1d(np.asarray(classes))
    if c.dtype == bool or not np.issubdtype(c.dtype, np.integer) or c.min() < 0 or c.max() >= n_out:
        raise ValueError(f"classes must be integers in [0, {n_out}), got {classes!r}")
    return c


def _start(v0, shape: tuple[int, int], name: str) -> np.ndarray:
    """Starting points: zeros, one point for every class, or one row per class."""
    if v0 is None:
        return np.zeros(shape)
    v0 = as_float_array(v0, name)
    if v0.shape not in (shape[1:], shape):
        raise ValueError(f"{name} must have shape {shape[1:]} or {shape}, got {v0.shape}")
    return np.broadcast_to(v0, shape)


def am_l2(
    classifier: Sequential,
    classes=None,
    *,
    lam: float = 0.01,
    ref=None,
    x0=None,
    kind: str = "log_softmax",
    **opts,
) -> AMResult:
    """Eq. 3.1: ``max_x log p(w_c|x) - lambda ||x - x_ref||^2`` per class, in the pixel box."""
    c = _classes(classifier, classes)
    x0 = _start(x0, (len(c), classifier.input_shape[0]), "x0")
    terms = [ClassScore(classifier, c, kind), L2Penalty(lam, ref)]
    x, hist = maximize(terms, x0, **opts)
    return AMResult(x, hist)


def am_expert(
    classifier: Sequential,
    expert,
    classes=None,
    *,
    beta: float = 0.05,
    x0=None,
    kind: str = "log_softmax",
    **opts,
) -> AMResult:
    """Eq. 3.2: ``max_x log p(w_c|x) + beta log p(x)`` with a density expert, in the pixel box."""
    c = _classes(classifier, classes)
    x0 = _start(x0, (len(c), classifier.input_shape[0]), "x0")
    x, hist = maximize([ClassScore(classifier, c, kind), ExpertPrior(expert, beta)], x0, **opts)
    return AMResult(x, hist)


def am_code(
    classifier: Sequential,
    generator,
    classes=None,
    *,
    lam: float = 0.01,
    z_ref=None,
    z0=None,
    kind: str = "log_softmax",
    **opts,
) -> AMResult:
    """Eq. 3.3: ``max_z log p(w_c|g(z)) - lambda ||z - z_ref||^2``; prototypes ``x = g(z)``.

    ``z_ref=None`` is the paper (``lambda ||z||^2``); a (C, z_dim) array of class code means
    keeps prototypes crisp (README, Interpretation).
    """
    c = _classes(classifier, classes)
    shape = (len(c), generator.z_dim)
    z0 = _start(z0, shape, "z0")
    if z_ref is not None:
        z_ref = as_float_array(z_ref, "z_ref")
        if z_ref.ndim == 2:  # class code means, one row per class
            z_ref = z_ref[c]
    terms = [ThroughGenerator(generator, ClassScore(classifier, c, kind)), L2Penalty(lam, z_ref)]
    opts.setdefault("box", None)
    z, hist = maximize(terms, z0, **opts)
    return AMResult(generator.generate(z), hist, z)
