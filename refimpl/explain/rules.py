"""LRP rules for a dense layer, each a small class citing its equation.

A rule says how the relevance ``R_k`` of a layer's outputs is redistributed onto its inputs
``a_j``. Every rule here has the same form (eq. 4.7-4.8 with rule-specific contributions)::

    R_j = sum_t mult_t sum_k  c^t_jk / (sum_j' c^t_j'k + bias^t_k [+ stabilizer])  R_k  [mask^t_k]

made of one or more *terms* ``t`` (alpha-beta has a positive and a negative one). A rule only
lists its terms (:class:`Term`); :func:`refimpl.explain.propagate.propagate_linear` does the
arithmetic once for all rules and every linear layer, and books every bit of relevance that a
bias, a stabilizer or a zero denominator absorbs. Contributions are never materialized as
``(n, J, K)`` arrays: a term's contributions are sums of products ``g_j h_jk`` of an input factor
``g`` and a *named* transform ``h`` of the layer's weights (``"w+"``, ``"w^2"``, ...; see
:mod:`refimpl.explain.prepared`), which the engine prepares once and applies through the layer's
``linear``/``linear_T``. So the same rule object serves any linear layer.

Options follow the paper by default; :mod:`refimpl.explain.presets` names the values that
reproduce each peer (README, "Verifying other implementations").

- ``bias``: ``"none"`` (no bias in the denominator: conservative), ``"split"`` (``b+`` in the
  positive and ``b-`` in the negative denominator), ``"full"`` (``b`` in every denominator).
- ``inputs`` (sign handling for alpha-beta, z+ and the original gamma rule): ``"nonnegative"``
  (the paper: inputs are ReLU outputs, a negative one raises), ``"split"`` (split on the sign of
  each contribution ``a_j w_jk``), ``"weights"`` (split the weights only: ``a_j w_jk^+``).
- ``eps``/``stabilizer``: an optional :class:`~refimpl.explain.stabilizer.Stabilizer` on every
  denominator (required by :class:`Epsilon`, off by default elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np

from .._checks import as_float_array, check_finite, check_positive
from .prepared import ONES, Transform
from .stabilizer import KINDS, Stabilizer

BIAS_OPTIONS = ("none", "split", "full")
INPUT_OPTIONS = ("nonnegative", "split", "weights")
CHOICE_OPTIONS = ("bias", "inputs", "variant", "stabilizer_kind")  # rule options with fixed values


def choice(default: str, choices: tuple[str, ...], label: str | None = None) -> Any:
    """A rule option with a fixed set of values, declared once (dataclass field metadata).

    Validation (:meth:`Rule._check_options`), the command line's ``choices``, verify's
    diagnosis (the conventions it tries) and the option table of the docs all read it from
    here (:func:`option_choices`, :func:`choices_by_rule`, :func:`all_choices`). ``label`` names
    the option in error messages when it differs from the field name.
    """
    if default not in choices:
        raise ValueError(f"default {default!r} is not among the choices {choices}")
    return field(default=default, metadata={"choices": tuple(choices), "label": label})


def option_choices(rule: Rule | type[Rule], name: str) -> tuple[str, ...] | None:
    """The values option ``name`` of ``rule`` takes, or None (no such option, or not a choice)."""
    for f in fields(rule):
        if f.name == name:
            return f.metadata.get("choices")
    return None


ALPHA_BETA_ULPS = 4  # |alpha - beta - 1| accepted: this many ulps of max(|alpha|, |beta|, 1)


def alpha_beta_sum_error(alpha: float, beta: float, dtype=np.float64) -> str | None:
    """Why ``alpha - beta = 1`` (eq. 4.10-4.13) fails in ``dtype``, or None if it holds.

    Holds when ``alpha - beta`` is within ``ALPHA_BETA_ULPS`` ulps of ``max(|alpha|, |beta|, 1)``
    of 1, which is all that floating point can tell apart (1.4 - 0.4 = 0.9999999999999999 passes);
    fails when the parameters are so large that ``alpha - beta = 1`` is not representable.
    """
    dt = np.dtype(dtype)
    a, b = dt.type(alpha), dt.type(beta)
    ulp = float(np.spacing(max(abs(a), abs(b), dt.type(1))))
    if ALPHA_BETA_ULPS * ulp >= 0.5:
        return (
            f"alpha={alpha!r} and beta={beta!r} are too large: at this magnitude {dt} numbers are "
            f"{ulp:g} apart, so alpha - beta = 1 cannot be represented (eq. 4.10-4.13); use "
            f"alpha < {2.0 ** (np.finfo(dt).nmant - 3):g}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        diff = float(a) - float(b)
    if not abs(diff - 1) <= ALPHA_BETA_ULPS * ulp:
        return (
            f"alpha - beta must equal 1 (eq. 4.10-4.13), got alpha={alpha}, beta={beta} "
            f"(alpha - beta = {diff!r} in {dt})"
        )
    return None


@dataclass(frozen=True)
class Term:
    """One normalized share: ``R_j += mult sum_k c_jk / (z_k + bias_k) R_k`` over masked ``k``.

    ``c_jk = sum_m g_m[:, j] h_m[j, k]``; ``z_k = sum_j c_jk``.

    Attributes
    ----------
    parts : tuple of (g, transform)
        Input factors ``g`` (the layer input's shape, or 1 along the batch axis, or ``ONES``:
        ones, for rules that ignore the input) and the name of the weight transform ``h``
        (``"w"``, ``"w+"``, ``"w-"``, ``"w^2"``, ``"1"``, ...).
    bias : transform name, optional
        Of the layer's bias (``"b"``, ``"b+"``, ...), added to the denominator; the relevance it
        takes is reported as absorbed by biases. Ignored when the layer has no bias.
    mult : float
        ``1``, ``alpha`` or ``-beta``.
    mask : ndarray of bool, the layer output's shape, optional
        The output units this term serves (the generalized gamma rule branches on ``sign(z)``).
    forward_z : bool
        The denominator ``z + bias`` is the layer's forward pre-activation (``parts`` is
        ``((a, "w"),)`` and ``bias`` is ``"b"``): the engine reuses it instead of recomputing.
    """

    parts: tuple[tuple[np.ndarray, Transform], ...]
    bias: Transform | None = None
    mult: float = 1.0
    mask: np.ndarray | None = None
    forward_z: bool = False


def _pos(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def _neg(x: np.ndarray) -> np.ndarray:
    return np.minimum(x, 0)


def _check_nonnegative(a: np.ndarray, rule: str) -> None:
    if a.size and a.min() < 0:
        raise ValueError(
            f"{rule} with inputs='nonnegative' (the paper's assumption, eq. 4.10-4.13) got a "
            f"negative input ({a.min():.6g}); use inputs='split' or 'weights', or another rule "
            "for this layer (e.g. z^B on pixels)"
        )


@dataclass(frozen=True)
class Rule:
    """Base class: ``terms(a, layer)`` lists the terms; ``stabilizer`` is applied to each.

    ``a`` is the layer's input and ``layer`` a :class:`refimpl.explain.propagate.LinearStep`
    (``has_bias``, ``z_forward()``, ``linear(g, transform)``).
    """

    name = "rule"

    def terms(self, a: np.ndarray, layer) -> list[Term]:
        raise NotImplementedError

    @cached_property  # rules are frozen: built (and validated) once per rule object
    def stabilizer(self) -> Stabilizer | None:
        eps = getattr(self, "eps", 0.0)
        return Stabilizer(eps, getattr(self, "stabilizer_kind", "signed")) if eps else None

    def _check_options(self) -> None:
        """Raise now, at construction, if ``eps``, ``stabilizer_kind`` or an option with fixed
        values (:func:`choice`) is invalid."""
        self.stabilizer  # noqa: B018 - building the Stabilizer validates its options
        for f in fields(self):
            allowed = f.metadata.get("choices")
            value = getattr(self, f.name)
            if allowed and value not in allowed:
                label = f.metadata.get("label") or f.name
                raise ValueError(f"{label} must be one of {allowed}, got {value!r}")

    @property
    def conservative(self) -> bool:
        """True if, with non-zero denominators, the rule conserves relevance exactly."""
        return False

    def describe(self) -> str:
        """The rule and its options, as printed in a rule-map table."""
        return self._description

    @cached_property
    def _description(self) -> str:
        opts = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.name}({opts})"


def _epsilon_terms(a, bias: str) -> list[Term]:
    full = bias == "full"
    return [Term(((a, "w"),), bias="b" if full else None, forward_z=full)]


@dataclass(frozen=True)
class LRP0(Rule):
    """LRP-0, eq. 4.7-4.8 with messages ``R_{j<-k} = a_j w_jk R_k / z_k``, summed over ``k``.

    ``z_k = sum_j a_j w_jk + b_k`` includes the bias (``bias="full"``, every peer) unless
    ``bias="none"``. For ReLU nets it equals gradient x input. A zero ``z_k`` drops ``R_k``.
    """

    bias: str = choice("full", ("full", "none"))
    name = "lrp-0"

    def __post_init__(self):
        self._check_options()

    def terms(self, a, layer):
        return _epsilon_terms(a, self.bias)

    @property
    def conservative(self):
        return self.bias == "none"


@dataclass(frozen=True)
class Epsilon(Rule):
    """LRP-epsilon: ``R_j = sum_k a_j w_jk / (z_k + eps sign(z_k)) R_k`` (stabilized eq. 4.7-4.8).

    ``stabilizer_kind`` picks how eps enters (see :class:`Stabilizer`); eps -> 0 gives LRP-0.
    """

    eps: float = 1e-6
    stabilizer_kind: str = choice("signed", KINDS, "stabilizer")
    bias: str = choice("full", ("full", "none"))
    name = "lrp-epsilon"

    def __post_init__(self):
        check_positive(self.eps, "eps")
        self._check_options()

    def terms(self, a, layer):
        return _epsilon_terms(a, self.bias)


def _signed_terms(a, has_bias, bias, inputs, rule_name, beta_needed):
    """Positive and negative parts of the contributions ``a_j w_jk`` (alpha-beta, z+)."""
    if inputs == "nonnegative":
        _check_nonnegative(a, rule_name)
    if inputs == "split":
        ap, an = _pos(a), _neg(a)
        pos_parts, neg_parts = ((ap, "w+"), (an, "w-")), ((ap, "w-"), (an, "w+"))
    else:
        pos_parts, neg_parts = ((a, "w+"),), ((a, "w-"),)
    if not has_bias or bias == "none":
        bp = bn = None
    elif bias == "split":
        bp, bn = "b+", "b-"
    else:
        bp = bn = "b"
    return (pos_parts, bp), ((neg_parts, bn) if beta_needed else None)


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """Alpha-beta rule, eq. 4.10-4.13 (``alpha - beta = 1``, ``beta >= 0``)::

        R_j = sum_k (alpha a_j w+_jk / sum_j a_j w+_jk - beta a_j w-_jk / sum_j a_j w-_jk) R_k

    The positive share of ``R_k`` is ``alpha R_k`` and the negative ``-beta R_k`` (eq. 4.12-4.13),
    so relevance is conserved when both denominators are non-zero. ``alpha - beta = 1`` is
    checked up to a few ulps (:func:`alpha_beta_sum_error`); alpha=1, beta=0 equals z+.
    """

    alpha: float = 1.0
    beta: float = 0.0
    bias: str = choice("none", BIAS_OPTIONS)
    inputs: str = choice("nonnegative", INPUT_OPTIONS)
    eps: float = 0.0
    stabilizer_kind: str = choice("signed", KINDS, "stabilizer")
    name = "lrp-alpha-beta"

    def __post_init__(self):
        check_finite(self.alpha, "alpha")
        check_finite(self.beta, "beta")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0 (eq. 4.10-4.13), got beta={self.beta}")
        problem = alpha_beta_sum_error(self.alpha, self.beta)
        if problem:
            raise ValueError(problem)
        self._check_options()

    def terms(self, a, layer):
        if a.dtype != np.float64:  # e.g. alpha = 1e8 in float32: alpha and beta round together
            problem = alpha_beta_sum_error(self.alpha, self.beta, a.dtype)
            if problem:
                raise ValueError(f"{problem}; the net computes in {a.dtype}")
        (pp, bp), neg = _signed_terms(
            a, layer.has_bias, self.bias, self.inputs, self.name, self.beta != 0
        )
        terms = [Term(pp, bias=bp, mult=self.alpha)]
        if neg is not None:
            terms.append(Term(neg[0], bias=neg[1], mult=-self.beta))
        return terms

    @property
    def conservative(self):
        return self.bias == "none" and not self.eps


@dataclass(frozen=True)
class ZPlus(Rule):
    """z+ rule (deep Taylor, root point on the positive orthant; alpha=1, beta=0 of eq. 4.10)::

    R_j = sum_k a_j w+_jk / sum_j a_j w+_jk R_k,   a_j >= 0
    """

    bias: str = choice("none", BIAS_OPTIONS)
    inputs: str = choice("nonnegative", INPUT_OPTIONS)
    eps: float = 0.0
    stabilizer_kind: str = choice("signed", KINDS, "stabilizer")
    name = "lrp-zplus"

    def __post_init__(self):
        self._check_options()

    def terms(self, a, layer):
        (pp, bp), _ = _signed_terms(a, layer.has_bias, self.bias, self.inputs, self.name, False)
        return [Term(pp, bias=bp)]

    @property
    def conservative(self):
        return self.bias == "none" and not self.eps


@dataclass(frozen=True)
class ZB(Rule):
    """z^B rule (deep Taylor, root point in the box ``l <= x <= h``), for the pixel layer::

        R_i = sum_j  q_ij / sum_i q_ij  R_j,   q_ij = x_i w_ij - l_i w+_ij - h_i w-_ij

    ``low``/``high``: scalars or per-feature arrays; defaults -1 and 1 match refimpl's pixel
    scaling. Inputs outside the box raise. No bias.
    """

    low: float | np.ndarray = -1.0
    high: float | np.ndarray = 1.0
    eps: float = 0.0
    stabilizer_kind: str = choice("signed", KINDS, "stabilizer")
    name = "lrp-zb"

    def __post_init__(self):
        low = as_float_array(self.low, "low")
        high = as_float_array(self.high, "high")
        if low.ndim > 1 or high.ndim > 1:
            raise ValueError("low and high must be scalars or 1-d per-feature arrays")
        if np.any(low > high):
            raise ValueError("low must be <= high for every feature")
        self._check_options()

    def bounds(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``low`` and ``high`` broadcast to ``(1, J)``; raise if ``x`` leaves the box."""
        shape = (1, *x.shape[1:])
        try:
            low = np.broadcast_to(np.asarray(self.low, dtype=x.dtype), shape)
            high = np.broadcast_to(np.asarray(self.high, dtype=x.dtype), shape)
        except ValueError:
            raise ValueError(
                f"z^B bounds must be scalars or have {x.shape[1]} entries (one per input), got "
                f"shapes {np.shape(self.low)} and {np.shape(self.high)}"
            ) from None
        outside = (x < low) | (x > high)
        if outside.any():
            at = tuple(int(i) for i in np.argwhere(outside)[0])
            box = (0, *at[1:])
            raise ValueError(
                f"z^B needs low <= a <= high for the layer's inputs a; a[{', '.join(map(str, at))}]"
                f" = {x[at]:.6g} lies outside [{low[box]:.6g}, {high[box]:.6g}] "
                f"({int(outside.sum())} value(s) outside)"
            )
        return low, high

    def terms(self, a, layer):
        low, high = self.bounds(a)
        # q_ij = x w - l w+ - h w- = (x - l) w+ + (x - h) w-: exact zeros on the box's faces
        return [Term(((a - low, "w+"), (a - high, "w-")))]

    @property
    def conservative(self):
        return not self.eps

    def describe(self):
        def show(v):
            return f"{float(v):g}" if np.ndim(v) == 0 else f"array{np.shape(v)}"

        return f"{self.name}(low={show(self.low)}, high={show(self.high)}, eps={self.eps!r})"


@dataclass(frozen=True)
class WSquare(Rule):
    """w^2 rule (deep Taylor, unbounded inputs): ``R_i = sum_j w_ij^2 / sum_i w_ij^2 R_j``.

    ``bias="squared"`` adds ``b_j^2`` to the denominator, as Zennit does (not conservative).
    """

    bias: str = choice("none", ("none", "squared"))
    eps: float = 0.0
    stabilizer_kind: str = choice("signed", KINDS, "stabilizer")
    name = "lrp-w2"

    def __post_init__(self):
        self._check_options()

    def terms(self, a, layer):
        use_b = layer.has_bias and self.bias == "squared"
        return [Term(((ONES, "w^2"),), bias="b^2" if use_b else None)]

    @property
    def conservative(self):
        return self.bias == "none" and not self.eps


@dataclass(frozen=True)
class Flat(Rule):
    """Flat rule: every input gets an equal share, ``R_i = sum_j R_j / J`` (``w = 1``, no bias)."""

    eps: float = 0.0
    stabilizer_kind: str = choice("signed", KINDS, "stabilizer")
    name = "lrp-flat"

    def __post_init__(self):
        self._check_options()

    def terms(self, a, layer):
        return [Term(((ONES, "1"),))]

    @property
    def conservative(self):
        return not self.eps


@dataclass(frozen=True)
class Gamma(Rule):
    """Gamma rule (Montavon et al. 2019, the LRP overview; not in the 2017 paper)::

        R_j = sum_k a_j (w_jk + gamma w+_jk) / sum_j a_j (w_jk + gamma w+_jk) R_k

    ``variant="original"``: as written, for ``a >= 0`` (``inputs`` as in :class:`AlphaBeta`), with
    the bias treated as a weight of a constant input 1: ``b + gamma b+`` (``bias="full"``), plain
    ``b`` (``bias="raw"``, Captum) or none. ``variant="generalized"`` (Zennit): split inputs by
    sign and branch on the sign of ``z_k = sum_j a_j w_jk + b_k``; for ``z_k > 0`` the
    contributions are ``a+ (w + gamma w+) + a- (w + gamma w-)`` with bias ``b + gamma b+``, for
    ``z_k < 0`` ``a+ (w + gamma w-) + a- (w + gamma w+)`` with ``b + gamma b-``; a unit with
    ``z_k = 0`` passes no relevance (booked as dropped). With ``bias="none"`` the bias is left
    out everywhere, also from the ``z_k`` that picks the branch (Zennit's ``zero_params='bias'``
    still branches on ``z_k + b_k``: a difference pinned in tests/test_peers_torch.py).
    """

    gamma: float = 0.25
    variant: str = choice("original", ("original", "generalized"))
    bias: str = choice("full", ("full", "raw", "none"))
    inputs: str = choice("nonnegative", ("nonnegative", "weights"))
    eps: float = 0.0
    stabilizer_kind: str = choice("signed", KINDS, "stabilizer")
    name = "lrp-gamma"

    def __post_init__(self):
        check_positive(self.gamma, "gamma", allow_zero=True)
        self._check_options()

    def _bias(self, layer, sign: str):
        if not layer.has_bias or self.bias == "none":
            return None
        return "b" if self.bias == "raw" else (f"b+gb{sign}", self.gamma)

    def terms(self, a, layer):
        g = self.gamma
        up, down = ("w+gw+", g), ("w+gw-", g)
        if self.variant == "original":
            if self.inputs == "nonnegative":
                _check_nonnegative(a, self.name)
            return [Term(((a, up),), bias=self._bias(layer, "+"))]
        ap, an = _pos(a), _neg(a)
        z = layer.z_forward() if self.bias != "none" else layer.linear(a, "w")
        return [
            Term(((ap, up), (an, down)), bias=self._bias(layer, "+"), mask=z > 0),
            Term(((ap, down), (an, up)), bias=self._bias(layer, "-"), mask=z < 0),
        ]

    @property
    def conservative(self):
        return self.bias == "none" and not self.eps


RULES: dict[str, type[Rule]] = {
    cls.name: cls for cls in (LRP0, Epsilon, AlphaBeta, ZPlus, ZB, WSquare, Flat, Gamma)
}


def choices_by_rule(name: str) -> dict[str, tuple[str, ...]]:
    """``{rule name: values}`` of option ``name`` over every rule that has it as a choice."""
    out = {}
    for rule_name, cls in RULES.items():
        allowed = option_choices(cls, name)
        if allowed:
            out[rule_name] = allowed
    return out


def all_choices(name: str) -> tuple[str, ...]:
    """Every value option ``name`` takes in some rule (in order of first appearance)."""
    return tuple(dict.fromkeys(v for values in choices_by_rule(name).values() for v in values))


def make_rule(name: str, **options) -> Rule:
    """Build a rule by name (``RULES``) with keyword options, naming any option it does not take."""
    if name not in RULES:
        raise ValueError(f"unknown LRP rule {name!r}; known rules: {sorted(RULES)}")
    cls = RULES[name]
    accepted = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"rule {name!r} takes no option(s) {unknown}; it takes {sorted(accepted)}")
    return cls(**options)
