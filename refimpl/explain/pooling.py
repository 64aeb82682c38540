"""Relevance through max pooling: the conventions the libraries use, each a named rule.

A max-pooling layer is not linear, so it has rules of its own (a :class:`RuleMap` gives one by
layer index or by type ``"max_pool2d"``; the default is :class:`WinnerTakesAll`):

- :class:`WinnerTakesAll` ``ties="first"``: each window's relevance goes to its maximum, to the
  first one in row-major order on ties. This is the gradient, and what Zennit and Captum do
  (Captum's own test: ``[[1, 2], [5, 6]]`` pooled 2x2 gives ``[[0, 0], [0, 6]]``).
- :class:`WinnerTakesAll` ``ties="split"``: split evenly among tied maxima (the LRP Toolbox).
- :class:`MaxAsAverage`: as if the layer were average pooling over the same windows, with a
  linear rule (the tutorials' advice for smoother maps).

Winner-take-all conserves each window's relevance exactly (overlapping windows add up).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..nn.pool import MaxPool2d
from .propagate import LayerBudget, batch_sum, propagate_linear
from .rules import LRP0, Rule


class MaxPoolRule:
    """Base class of the max-pooling rules: ``propagate(layer, a, R) -> (R_in, LayerBudget)``."""

    name = "max-pool rule"

    def propagate(self, layer: MaxPool2d, a: np.ndarray, R: np.ndarray, prepared=None):
        raise NotImplementedError

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{self.name}({opts})"


@dataclass(frozen=True)
class WinnerTakesAll(MaxPoolRule):
    """Each window's ``R_k`` to its maximum: ``R_j = sum_k [j = argmax_k] R_k``.

    ``ties="first"``: the first maximum in row-major order (the gradient; Zennit, Captum);
    ``ties="split"``: ``R_k / m`` to each of the ``m`` tied maxima (LRP Toolbox).
    """

    ties: str = "first"
    name = "max-winner"

    def __post_init__(self):
        if self.ties not in ("first", "split"):
            raise ValueError(f"ties must be one of ('first', 'split'), got {self.ties!r}")

    def propagate(self, layer, a, R, prepared=None):
        w = layer.windows(a)  # (n, C, Ho, Wo, kh kw)
        if self.ties == "first":
            winners = np.arange(w.shape[-1]) == w.argmax(axis=-1)[..., None]
            cols = winners * R[..., None]
        else:
            tied = w == w.max(axis=-1, keepdims=True)
            cols = tied * (R / tied.sum(axis=-1))[..., None]
        R_in = layer.spread(cols, a.shape[1:])
        zero = np.zeros(len(a), dtype=R.dtype)
        return R_in, LayerBudget(batch_sum(R), batch_sum(R_in), zero, zero.copy(), zero.copy())


@dataclass(frozen=True)
class MaxAsAverage(MaxPoolRule):
    """As average pooling over the same windows, with ``rule`` (a linear rule; LRP-0 default):
    every input of a window shares its relevance in proportion to its value."""

    rule: Rule = field(default_factory=LRP0)
    name = "max-as-average"

    def __post_init__(self):
        if not isinstance(self.rule, Rule):
            raise TypeError(f"rule must be a linear LRP Rule, got {type(self.rule).__name__}")

    def propagate(self, layer, a, R, prepared=None):
        return propagate_linear(self.rule, layer.as_average(), a, R, prepared=prepared)
