"""Simple Taylor decomposition (eq. 4.2-4.3) at a root point, given or searched.

``f(x) = f(x~) + sum_i df/dx_i|_{x=x~} (x_i - x~_i) + higher-order terms`` (eq. 4.2), and the
relevance is the first-order part, ``R_i = df/dx_i|_{x~} (x_i - x~_i)`` (eq. 4.3). The result
reports ``f(x~)`` and the residual ``f(x) - sum_i R_i`` (``f(x~)`` plus the higher-order terms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._checks import check_int, check_positive
from ..nn.layers import Dense, Flatten, LeakyReLU, ReLU
from ..nn.network import Sequential
from .gradient import _prepare, class_gradient

ROOTS = ("limit", "search")
DIRECTIONS = ("segment", "gradient")
MISSING_ROOT = ("raise", "zero")


@dataclass
class TaylorResult:
    """Relevance ``R`` (eq. 4.3), the root point, ``f(root)``, ``f(x)`` and the residual.

    ``found[i]`` is False for a sample whose root search failed (``missing_root="zero"``): its
    ``R`` is 0, its ``root`` is ``x`` itself, so ``f_root = f`` and the residual is all of ``f``;
    ``failures[i]`` says why.
    """

    R: np.ndarray
    root: np.ndarray
    f_root: np.ndarray
    f: np.ndarray
    target: np.ndarray
    found: np.ndarray = field(default=None)  # type: ignore[assignment]
    failures: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.found is None:
            self.found = np.ones(len(self.f), dtype=bool)

    @property
    def residual(self) -> np.ndarray:
        """``f(x) - sum_i R_i``: ``f(x~)`` plus the higher-order terms of eq. 4.2."""
        return self.f - self.R.reshape(len(self.f), -1).sum(axis=1)


def is_positively_homogeneous(net: Sequential) -> bool:
    """True for bias-free nets of dense, ReLU, LeakyReLU and Flatten layers: ``f(tx) = t f(x)``
    for ``t >= 0``."""
    for layer in net.layers:
        if isinstance(layer, Dense):
            if layer.b is not None:
                return False
        elif not isinstance(layer, (ReLU, LeakyReLU, Flatten)):
            return False
    return True


def taylor_relevance(
    net: Sequential, x: np.ndarray, root: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First-order terms, eq. 4.3: ``R_i = df_c/dx_i|_{x~} (x_i - x~_i)``; also ``f_c(x~)``."""
    f_root, g = class_gradient(net, root, c)
    return g * (x - root), f_root


def taylor(
    net: Sequential,
    x,
    *,
    root="limit",
    target="predicted",
    direction: str = "segment",
    reference=None,
    max_distance: float | None = None,
    grid: int = 64,
    tol: float = 1e-10,
    missing_root: str = "raise",
) -> TaylorResult:
    """Simple Taylor decomposition (eq. 4.2-4.3) of ``f_c`` at a root point.

    Parameters
    ----------
    net : Sequential
    x : ndarray (n, *input_shape)
    root : "limit", "search" or ndarray (n, *input_shape)
        ``"limit"``: ``x~ = lim_{eps->0} eps x`` for positively homogeneous nets (eq. 4.4-4.6),
        which gives gradient x input exactly; other nets raise. ``"search"``: the root nearest to
        ``x`` along ``direction``, found by a scan and bisection. An array: that root point.
    target : "predicted", int or int array
    direction : {"segment", "gradient"}
        For ``"search"``: the segment from ``x`` to ``reference`` (default: the origin), or the
        ray ``x - t sign(f(x)) grad f(x) / ||grad f(x)||``, ``0 <= t <= max_distance``.
    reference : ndarray, optional
        End of the segment, one point ``input_shape`` or one per sample ``(n, *input_shape)``.
    max_distance : float, optional
        Length of the searched ray (default ``2 sqrt(d)``, the diagonal of the [-1, 1] box).
    grid : int
        Scan points before bisection; the root found is the first sign change of ``f`` from
        ``x`` on, at this resolution.
    tol : float
        Bisection stops when ``|f(x~)| <= tol max(1, |f(x)|)``.
    missing_root : {"raise", "zero"}
        For ``"search"``, samples with no root on their line: raise ``ValueError`` naming them
        (default), or give them ``R = 0`` and ``found = False`` (the others are explained as
        usual; ``TaylorResult.failures`` says why each failed).

    Returns
    -------
    TaylorResult
        ``R``, ``root``, ``f_root``, ``f``, ``residual``, ``found`` and ``failures``.
    """
    if missing_root not in MISSING_ROOT:
        raise ValueError(f"missing_root must be one of {MISSING_ROOT}, got {missing_root!r}")
    x, c = _prepare(net, x, target)
    if isinstance(root, str):
        if root not in ROOTS:
            raise ValueError(f"root must be one of {ROOTS} or an array, got {root!r}")
        if root == "limit":
            if not is_positively_homogeneous(net):
                raise ValueError(
                    "root='limit' (x~ = eps x, eps -> 0) is a root point only for "
                    "positively homogeneous nets (ReLU, no biases, eq. 4.4); use "
                    "root='search' or give a root point"
                )
            f, g = class_gradient(net, x, c)
            zero = np.zeros_like(x)
            return TaylorResult(g * x, zero, np.zeros_like(f), f, c)
        search = {"reference": reference, "max_distance": max_distance, "grid": grid, "tol": tol}
        if missing_root == "raise":
            root_point, failures = search_root(net, x, c, direction=direction, **search), {}
        else:
            root_point, failures = _search(net, x, c, direction=direction, **search)
    else:
        root_point = net.check_input(_broadcast(root, x.shape, "root"), "root")
        failures = {}
    f, _ = class_gradient(net, x, c)
    R, f_root = taylor_relevance(net, x, root_point, c)
    found = np.ones(len(x), dtype=bool)
    found[list(failures)] = False
    R[~found] = 0.0  # root = x there: the first-order terms vanish exactly
    return TaylorResult(R, root_point, f_root, f, c, found, failures)


def search_root(
    net: Sequential,
    x: np.ndarray,
    c: np.ndarray,
    *,
    direction: str = "segment",
    reference=None,
    max_distance: float | None = None,
    grid: int = 64,
    tol: float = 1e-10,
    max_iter: int = 200,
) -> np.ndarray:
    """A root ``f_c(x~) = 0`` along a line from ``x``, vectorized over the batch.

    The line is ``x + t v``, ``t in [0, 1]``: ``v = reference - x`` (segment) or
    ``v = -sign(f(x)) max_distance grad f / ||grad f||`` (down the gradient when ``f(x) > 0``, up
    it when ``f(x) < 0``). A scan at ``grid`` points finds the first sign change of ``f``, and
    bisection narrows it until ``|f(x~)| <= tol max(1, |f(x)|)``. Raises ``ValueError`` naming
    the samples with no sign change on the line, or where the tolerance cannot be met.
    """
    root, failures = _search(
        net,
        x,
        c,
        direction=direction,
        reference=reference,
        max_distance=max_distance,
        grid=grid,
        tol=tol,
        max_iter=max_iter,
    )
    if failures:
        raise ValueError(describe_root_failures(failures))
    return root


def describe_root_failures(
    failures: dict[int, str], hint: str = "try another direction, reference or max_distance"
) -> str:
    """One line per kind of failure, naming its samples (at most 20 each)."""
    by_reason: dict[str, list[int]] = {}
    for i, reason in failures.items():
        by_reason.setdefault(reason.split(":")[0], []).append(i)
    parts = []
    for reason, samples in by_reason.items():
        shown = ", ".join(map(str, samples[:20])) + (" ..." if len(samples) > 20 else "")
        parts.append(f"{reason} for sample(s) {shown} (e.g. {failures[samples[0]]})")
    return f"root search failed for {len(failures)} sample(s): " + "; ".join(parts) + f"; {hint}"


def _search(
    net: Sequential,
    x: np.ndarray,
    c: np.ndarray,
    *,
    direction: str,
    reference,
    max_distance: float | None,
    grid: int,
    tol: float,
    max_iter: int = 200,
) -> tuple[np.ndarray, dict[int, str]]:
    """:func:`search_root` for every sample that has a root; ``x`` itself and a reason (in
    ``failures``, by sample) for those that have none."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    grid = check_int(grid, "grid", low=2)
    tol = check_positive(tol, "tol")
    if reference is not None and direction != "segment":
        raise ValueError("reference is the end of the segment: it needs direction='segment'")
    if max_distance is not None and direction != "gradient":
        raise ValueError("max_distance is the length of the ray: it needs direction='gradient'")
    shape = x.shape
    n = shape[0]
    failures: dict[int, str] = {}
    f0, g = class_gradient(net, x, c)
    if direction == "segment":
        ref = (
            np.zeros_like(x)
            if reference is None
            else net.check_input(_broadcast(reference, shape, "reference"), "reference")
        )
        x, g = x.reshape(n, -1), g.reshape(n, -1)  # search on flat vectors
        v = ref.reshape(n, -1) - x
    else:
        x, g = x.reshape(n, -1), g.reshape(n, -1)  # search on flat vectors
        d = x.shape[1]
        dist = (
            2 * np.sqrt(d) if max_distance is None else check_positive(max_distance, "max_distance")
        )
        norm = np.linalg.norm(g, axis=1, keepdims=True)
        for i in np.flatnonzero(norm[:, 0] == 0):
            failures[int(i)] = "grad f is zero: no gradient direction to search along"
        v = -np.where(f0 >= 0, 1.0, -1.0)[:, None] * dist * g / np.where(norm == 0, 1.0, norm)
    rows = np.arange(n)

    def f_at(t: np.ndarray) -> np.ndarray:  # t of shape (n, m) -> f(x + t v), shape (n, m)
        pts = x[:, None, :] + t[:, :, None] * v[:, None, :]
        cc = np.repeat(c, t.shape[1])
        return net(pts.reshape(-1, *shape[1:]))[np.arange(cc.size), cc].reshape(t.shape)

    ts = np.broadcast_to(np.linspace(0.0, 1.0, grid), (n, grid))
    fs = f_at(ts)
    scale = tol * np.maximum(1.0, np.abs(f0))
    hit = np.abs(fs) <= scale[:, None]
    candidate = hit.copy()
    candidate[:, :-1] |= np.sign(fs[:, :-1]) * np.sign(fs[:, 1:]) < 0
    for i in np.flatnonzero(~candidate.any(axis=1)):
        failures.setdefault(
            int(i),
            f"no root of f on the search line: f keeps its sign from x (f = {f0[i]:.6g}) to the "
            f"end of the line (f = {fs[i, -1]:.6g})",
        )
    first = candidate.argmax(axis=1)
    found = hit[rows, first]
    found[list(failures)] = True  # nothing to bisect there
    t = ts[rows, first].copy()
    lo, hi = t.copy(), ts[rows, np.minimum(first + 1, grid - 1)].copy()
    f_lo = fs[rows, first]
    for _ in range(max_iter):
        if found.all():
            break
        mid = 0.5 * (lo + hi)
        f_mid = f_at(mid[:, None])[:, 0]
        newly = ~found & (np.abs(f_mid) <= scale)
        t[newly] = mid[newly]
        found |= newly
        same = np.sign(f_mid) == np.sign(f_lo)
        lo, f_lo = np.where(same, mid, lo), np.where(same, f_mid, f_lo)
        hi = np.where(same, hi, mid)
    if not found.all():
        bad = np.flatnonzero(~found)
        f_end = f_at(lo[bad, None])[:, 0]
        for i, fe in zip(bad, f_end, strict=True):
            failures[int(i)] = (
                f"no convergence: bisection did not reach |f(x~)| <= tol max(1, |f(x)|) (best "
                f"|f| = {abs(fe):.3g}, tol = {tol:g}); f may jump there or tol is below what "
                "this dtype resolves"
            )
    t[list(failures)] = 0.0  # the root of a failed sample is x itself
    return (x + t[:, None] * v).reshape(shape), dict(sorted(failures.items()))


def _broadcast(value, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``value`` (a scalar, one sample or one per sample, in any shape of that many values)
    broadcast to the batch shape ``shape``."""
    v = np.asarray(value, dtype=float)
    d = int(np.prod(shape[1:]))
    if v.ndim and v.size == d:
        v = v.reshape(shape[1:])
    elif v.ndim and v.size == shape[0] * d:
        v = v.reshape(shape)
    try:
        return np.broadcast_to(v, shape)
    except ValueError:
        raise ValueError(
            f"{name} must have shape {shape[1:]} (one point) or {shape} (one per sample), "
            f"got {np.shape(value)}"
        ) from None
