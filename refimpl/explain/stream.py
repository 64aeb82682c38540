"""Explain many inputs in batches with bounded memory (``refimpl explain --batch-size``).

:func:`explain_batches` runs :func:`refimpl.explain.methods.explain` on consecutive slices of
``x`` (a NumPy array or a read-only memory map) and yields each batch's result; only one batch of
inputs and relevances is in memory at a time. :class:`BatchSummary` keeps what is printed
afterwards (per sample ``f(x)`` and ``sum R``, the LRP budget or Taylor's ``f(root)``,
residual, root distance and failures) at a few numbers per sample.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .._checks import check_int
from ..nn.network import Sequential
from .lrp import Explanation, RelevanceBudget
from .methods import explain
from .taylor import TaylorResult


def explain_batches(
    net: Sequential,
    x,
    method: str,
    *,
    batch_size: int | None = None,
    target="predicted",
    progress: Callable[[int, int], None] | None = None,
    what: str = "x",
    **kwargs,
) -> Iterator[tuple[int, Explanation | TaylorResult]]:
    """Yield ``(start, result)`` for ``x[start:start + batch_size]``, batch after batch.

    Parameters
    ----------
    net : Sequential
    x : ndarray or memmap (n, *input_shape)
        Each batch is read (and checked) when its turn comes.
    method : str
        As :func:`refimpl.explain.methods.explain`; ``kwargs`` are its options.
    batch_size : int, optional
        Samples per batch (default: all at once).
    target : "predicted", int or int array (n,)
        An array is sliced with the batch.
    progress : callable(done, total), optional
        Called after every batch.
    what : str
        The input's name in error messages.
    """
    n = len(x)
    size = n if batch_size is None else check_int(batch_size, "batch_size", low=1)
    per_sample = isinstance(target, np.ndarray) and target.ndim == 1
    if per_sample and len(target) != n:
        raise ValueError(f"target must hold {n} indices (one per sample), got {len(target)}")
    for start in range(0, n, size):
        stop = min(n, start + size)
        xb = net.check_input(np.asarray(x[start:stop]), what)
        tb = target[start:stop] if per_sample else target
        yield start, explain(net, xb, method, target=tb, **kwargs)
        if progress is not None:
            progress(stop, n)


@dataclass
class BatchSummary:
    """Per-sample numbers of every batch, concatenated (see the module docstring)."""

    f: list[np.ndarray] = field(default_factory=list)
    R_sum: list[np.ndarray] = field(default_factory=list)
    target: list[np.ndarray] = field(default_factory=list)
    budgets: list[RelevanceBudget] = field(default_factory=list)
    f_root: list[np.ndarray] = field(default_factory=list)
    residual: list[np.ndarray] = field(default_factory=list)
    root_distance: list[np.ndarray] = field(default_factory=list)
    found: list[np.ndarray] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)

    def add(self, start: int, x: np.ndarray, result: Explanation | TaylorResult) -> None:
        """Keep batch ``x[start:...]``'s numbers (``x`` its inputs, for Taylor's distances)."""
        n = len(result.f)
        self.f.append(result.f)
        self.R_sum.append(result.R.reshape(n, -1).sum(axis=1))
        if result.target is not None:
            self.target.append(np.asarray(result.target))
        if isinstance(result, TaylorResult):
            self.f_root.append(result.f_root)
            self.residual.append(result.residual)
            self.root_distance.append(np.linalg.norm((x - result.root).reshape(n, -1), axis=1))
            self.found.append(result.found)
            self.failures.update({start + i: why for i, why in result.failures.items()})
        elif result.budget is not None:
            self.budgets.append(result.budget)

    def get(self, name: str) -> np.ndarray | None:
        """One per-sample field over all batches, or None if no batch had it."""
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else None

    @property
    def budget(self) -> RelevanceBudget | None:
        return RelevanceBudget.concatenate(self.budgets) if self.budgets else None


class Progress:
    """``label: done/total samples (percent), elapsed, ETA`` on stderr after each batch.

    On a terminal the line is rewritten in place; otherwise a line is printed at most once a
    second (and at the end).
    """

    def __init__(self, label: str, stream=None, interval: float = 1.0) -> None:
        self.label, self.stream, self.interval = label, stream or sys.stderr, interval
        self.start = time.perf_counter()
        self.last = -np.inf

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < self.interval and not self._tty():
            return
        self.last = now
        elapsed = now - self.start
        eta = elapsed / done * (total - done) if done else float("nan")
        line = (
            f"{self.label}: {done:,}/{total:,} samples ({100 * done / total:.0f} %), "
            f"{elapsed:.1f} s elapsed, ETA {eta:.1f} s"
        )
        end = "\n" if done >= total or not self._tty() else ""
        print(("\r" if self._tty() else "") + line, end=end, file=self.stream, flush=True)

    def _tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())
