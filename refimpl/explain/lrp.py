"""Layer-wise relevance propagation through a network (eq. 4.7-4.9), with a relevance budget.

Relevance starts at the output as ``R_L = f(x) onehot(c)`` (or a vector given by the caller),
passes every linear layer (dense) by that layer's rule (:mod:`refimpl.explain.rules`, through
:func:`refimpl.explain.propagate.propagate_linear`), every elementwise activation unchanged and
every reshape (Flatten) reshaped; a layer of any other kind is refused by name. Conservation
(eq. 4.9) ``sum_i R_i = f(x)`` holds when no relevance is absorbed; the :class:`RelevanceBudget`
reports, layer by layer, what biases and stabilizers absorbed and what zero denominators
dropped, so that always ``sum_i R_i + absorbed + dropped = f(x)`` (up to rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._table import format_table
from ..nn.layers import Layer
from ..nn.network import Sequential
from .output import check_explainable, output_relevance, target_indices
from .pooling import MaxPoolRule, WinnerTakesAll
from .prepared import PreparedParameters, prepared_for
from .propagate import LayerBudget, batch_sum, propagate_linear
from .rules import ZB, Rule

PASS_THROUGH = ("elementwise", "reshape")
OWN_RULE = ("max",)  # layers with rules of their own (refimpl.explain.pooling)


def linear_layers(net: Sequential) -> list[int]:
    """Indices in ``net.layers`` of the layers that take an LRP rule (``relevance == "linear"``).

    Raises ``ValueError`` naming a layer whose ``relevance`` kind the engine does not know.
    """
    out = []
    for i, layer in enumerate(net.layers):
        kind = getattr(layer, "relevance", None)
        if kind == "linear":
            out.append(i)
        elif kind not in PASS_THROUGH + OWN_RULE:
            raise ValueError(
                f"layer {i} ({layer!r}) declares no way for relevance to pass it (relevance="
                f"{kind!r}; known: 'linear', {', '.join(map(repr, PASS_THROUGH + OWN_RULE))}): "
                "LRP refuses it rather than passing relevance silently"
            )
    return out


class RuleMap:
    """Which rule each linear layer uses, e.g. z^B first, alpha-beta in the middle, epsilon last.

    Parameters
    ----------
    default : Rule, optional
        For every linear layer not otherwise assigned.
    first, middle, last : Rule, optional
        For the first, the inner, and the last linear layer, counting every layer that takes a
        rule (for a single one, ``first`` wins over ``last``).
    layers : dict of int to Rule, optional
        By index in ``net.layers``; wins over everything else.
    types : dict of str or Layer class to Rule, optional
        By layer type (``"dense"`` or ``Dense``): after index and position, before ``default``.
    """

    def __init__(
        self,
        default: Rule | None = None,
        *,
        first: Rule | None = None,
        middle: Rule | None = None,
        last: Rule | None = None,
        layers: dict[int, Rule] | None = None,
        types: dict[str | type, Rule] | None = None,
    ):
        for name, rule in (
            ("default", default),
            ("first", first),
            ("middle", middle),
            ("last", last),
            *(((f"layers[{k}]", v) for k, v in (layers or {}).items())),
            *(((f"types[{k!r}]", v) for k, v in (types or {}).items())),
        ):
            if rule is not None and not isinstance(rule, (Rule, MaxPoolRule)):
                raise TypeError(f"{name} must be an LRP Rule, got {type(rule).__name__}")
        self.default, self.first, self.middle, self.last = default, first, middle, last
        self.layers = dict(layers or {})
        self.types = {}
        for key, rule in (types or {}).items():
            if isinstance(key, type) and issubclass(key, Layer):
                key = key.type_name
            if not isinstance(key, str):
                raise TypeError(
                    f"types keys must be layer type names or Layer classes, got {key!r}"
                )
            self.types[key] = rule

    @classmethod
    def of(cls, rules) -> RuleMap:
        """A RuleMap from a RuleMap, a single Rule (every layer), or a dict by layer index."""
        if isinstance(rules, RuleMap):
            return rules
        if isinstance(rules, Rule):
            return cls(rules)
        if isinstance(rules, dict):
            return cls(layers=rules)
        raise TypeError(
            f"rules must be a Rule, a RuleMap or a dict of layer index to Rule, "
            f"got {type(rules).__name__}"
        )

    def resolve(self, net: Sequential) -> dict[int, Rule | MaxPoolRule]:
        """The rule of every linear layer (and max-pooling layer), by index in ``net.layers``."""
        linear = linear_layers(net)
        own = [i for i, layer in enumerate(net.layers) if layer.relevance in OWN_RULE]
        bad = sorted(set(self.layers) - set(linear) - set(own))
        if bad:
            raise ValueError(
                f"rules given for layer(s) {bad}, which are not dense layers (or other linear "
                f"layers) and take no rule; the linear layers are {linear}"
            )
        out: dict[int, Rule | MaxPoolRule] = {}
        for pos, i in enumerate(linear):
            if i in self.layers:
                rule = self.layers[i]
            elif pos == 0 and self.first is not None:
                rule = self.first
            elif pos == len(linear) - 1 and self.last is not None:
                rule = self.last
            elif 0 < pos < len(linear) - 1 and self.middle is not None:
                rule = self.middle
            else:
                rule = self.types.get(net.layers[i].type_name, self.default)
            if rule is None:
                kind = "dense layer" if net.layers[i].type_name == "dense" else "layer"
                raise ValueError(f"no rule for {kind} {i} ({net.layers[i]!r}); give a default")
            if not isinstance(rule, Rule):
                raise TypeError(
                    f"layer {i} ({net.layers[i]!r}) is linear: it takes an LRP Rule, not "
                    f"{rule.describe()}"
                )
            out[i] = rule
        for i in own:  # max pooling: by index or type, else winner-take-all (the gradient)
            rule = self.layers.get(i, self.types.get(net.layers[i].type_name, WinnerTakesAll()))
            if not isinstance(rule, MaxPoolRule):
                raise TypeError(
                    f"layer {i} ({net.layers[i]!r}) takes a max-pooling rule (WinnerTakesAll or "
                    f"MaxAsAverage, refimpl.explain.pooling), not {rule.describe()}"
                )
            out[i] = rule
        return out

    def table(self, net: Sequential) -> str:
        """A printable table: layer index, layer, rule."""
        rules = self.resolve(net)
        rows = [("#", "layer", "rule")]
        for i, layer in enumerate(net.layers):
            rows.append(
                (str(i), repr(layer), rules[i].describe() if i in rules else "pass-through")
            )
        return format_table(rows)


@dataclass
class RelevanceBudget:
    """Where the explained output ``f(x)`` went, per sample.

    Attributes
    ----------
    f : ndarray (n,)
        Total output relevance ``sum_k R_L,k`` (the explained logit ``f(x)`` by default).
    relevance : ndarray (n,)
        ``sum_i R_i`` at the input.
    layers : list of (int, str, LayerBudget)
        Layer index, rule description and budget of every linear layer, output to input.
    """

    f: np.ndarray
    relevance: np.ndarray
    layers: list[tuple[int, str, LayerBudget]]

    @classmethod
    def concatenate(cls, parts: list[RelevanceBudget]) -> RelevanceBudget:
        """The budget of consecutive batches explained one after the other, as one batch."""
        first = parts[0]

        def cat(get):
            return np.concatenate([get(b) for b in parts])

        layers = [
            (
                i,
                rule,
                LayerBudget(
                    *(
                        cat(lambda b, k=k, f=f: getattr(b.layers[k][2], f))
                        for f in ("relevance_out", "relevance_in", "bias", "stabilizer", "dropped")
                    )
                ),
            )
            for k, (i, rule, _) in enumerate(first.layers)
        ]
        return cls(cat(lambda b: b.f), cat(lambda b: b.relevance), layers)

    @property
    def bias(self) -> np.ndarray:
        return sum((lb.bias for _, _, lb in self.layers), np.zeros_like(self.f))

    @property
    def stabilizer(self) -> np.ndarray:
        return sum((lb.stabilizer for _, _, lb in self.layers), np.zeros_like(self.f))

    @property
    def dropped(self) -> np.ndarray:
        return sum((lb.dropped for _, _, lb in self.layers), np.zeros_like(self.f))

    def closure_error(self) -> np.ndarray:
        """``f - (sum_i R_i + bias + stabilizer + dropped)``: zero up to rounding."""
        return self.f - (self.relevance + self.bias + self.stabilizer + self.dropped)

    def table(self, sample: int | None = None) -> str:
        """Per-layer sums (of one sample, or summed over the batch) as a printable table."""
        pick = (lambda v: float(v.sum())) if sample is None else (lambda v: float(v[sample]))
        rows = [("layer", "rule", "R out", "R in", "bias", "stabilizer", "dropped")]
        for i, rule, lb in self.layers:
            rows.append(
                (
                    str(i),
                    rule.split("(")[0],
                    *(
                        f"{pick(v):.6g}"
                        for v in (
                            lb.relevance_out,
                            lb.relevance_in,
                            lb.bias,
                            lb.stabilizer,
                            lb.dropped,
                        )
                    ),
                )
            )
        what = "all samples" if sample is None else f"sample {sample}"
        lines = [
            format_table(rows),
            "",
            f"budget ({what}): f(x) = {pick(self.f):.10g}",
            f"  sum_i R_i              {pick(self.relevance):.10g}",
            f"  absorbed by biases     {pick(self.bias):.10g}",
            f"  absorbed by stabilizer {pick(self.stabilizer):.10g}",
            f"  dropped (zero denom.)  {pick(self.dropped):.10g}",
            f"  closure error          {pick(self.closure_error()):.3g}",
        ]
        return "\n".join(lines)


@dataclass
class Explanation:
    """Result of an explanation: input relevance and, for LRP, where relevance went."""

    R: np.ndarray
    f: np.ndarray
    target: np.ndarray | None = None
    layers: list[np.ndarray] | None = None
    budget: RelevanceBudget | None = None


def lrp(
    net: Sequential,
    x,
    rules,
    *,
    target="predicted",
    R_out=None,
    seed: str = "logit",
    keep_layers: bool = False,
    prepared: PreparedParameters | None = None,
) -> Explanation:
    """Layer-wise relevance propagation (eq. 4.7-4.9) with a rule per linear layer.

    Parameters
    ----------
    net : Sequential
        Outputs logits (no final LogSoftmax).
    x : ndarray (n, *input_shape)
    rules : Rule, RuleMap or dict of layer index to Rule
    target : "predicted", int or int array (n,)
        Explained class; the output relevance is its logit ``f(x)``.
    R_out : ndarray (n, C), optional
        Start from this output relevance instead.
    seed : {"logit", "onehot"}
        ``R_L = f(x) onehot(c)`` (the paper) or ``onehot(c)`` (Zennit's usual call).
    keep_layers : bool
        Also return the relevance at every layer's input (``layers[i]`` enters ``net.layers[i]``,
        ``layers[-1]`` is the output relevance).
    prepared : PreparedParameters, optional
        Transformed parameters (``w+``, ...) to reuse across calls (a snapshot:
        :mod:`refimpl.explain.prepared`); by default the one of an enclosing
        :func:`~refimpl.explain.prepared.shared_parameters` block, else a fresh one per call.

    Returns
    -------
    Explanation
        ``R`` of ``x``'s shape, ``f`` (n,) (the explained logit, or ``sum R_out``), and the
        :class:`RelevanceBudget` (its ``f`` is the total output relevance: 1 when seeded with
        ``onehot``).
    """
    check_explainable(net)
    x = net.check_input(x)
    rule_of = RuleMap.of(rules).resolve(net)
    prepared = prepared_for(net) if prepared is None else prepared
    acts = net.activations(x)
    c = None if R_out is not None else target_indices(acts[-1], target)
    R = output_relevance(acts[-1], target, R_out, seed, c=c)
    total = R.sum(axis=1)
    f = total if c is None else acts[-1][np.arange(len(c)), c]
    kept = [R]
    books = []
    for i in reversed(range(len(net.layers))):
        if isinstance(rule_of.get(i), MaxPoolRule):
            R, lb = rule_of[i].propagate(net.layers[i], acts[i], R, prepared)
            books.append((i, rule_of[i].describe(), lb))
        elif i in rule_of:  # acts[i + 1] is the layer's forward output: its pre-activation z
            R, lb = _propagate_layer(net, i, rule_of[i], acts[i], acts[i + 1], R, prepared)
            books.append((i, rule_of[i].describe(), lb))
        else:  # elementwise or reshape: relevance passes unchanged, in the layer input's shape
            R = R.reshape(acts[i].shape)
        if keep_layers:
            kept.insert(0, R)
    budget = RelevanceBudget(total, batch_sum(R), books)
    return Explanation(R, f, c, kept if keep_layers else None, budget)


def _propagate_layer(net: Sequential, i: int, rule: Rule, a, z, R, prepared):
    """``propagate_linear`` at layer ``i``; its errors name the layer (and where z^B belongs)."""
    layer = net.layers[i]
    try:
        return propagate_linear(rule, layer, a, R, z=z, prepared=prepared)
    except ValueError as exc:
        where = "the pixels" if i == 0 else f"the activations of layer {i - 1}"
        msg = f"LRP at layer {i} ({layer!r}, rule {rule.name}, whose inputs are {where}): {exc}"
        first = linear_layers(net)[0]
        if isinstance(rule, ZB) and i != first:
            msg += (
                f"; z^B is meant for the first linear layer (layer {first}, the pixels), where "
                "the input box [low, high] is known: use another rule here, e.g. with a RuleMap "
                "(first=ZB(), middle=..., last=...)"
            )
        raise ValueError(msg) from None
