"""Run Zennit or Captum on a refimpl network, one rule per Linear layer (extra ``[torch]``).

This is how refimpl's presets are cross-checked (tests/test_peers_torch.py,
benchmarks/crosscheck_mnist.py), written once for users who want to do the same. Two things
matter on dense nets: Zennit's built-in composites put ZPlus/AlphaBeta/ZBox on convolutions
only, so every Linear layer gets its rule from an explicit module map, and ReLU gets Zennit's
``Pass`` rule (as the composites do; without it relevance passes ReLU by the gradient). Zennit
is seeded with one-hot of the target (its usual call); Captum's ``LRP.attribute`` multiplies by
the explained output, which is the same as seeding with ``f(x)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..nn.network import Sequential
from .torch import import_torch, to_torch

# refimpl method -> a factory of the peer's rule with the peer's defaults
ZENNIT_RULES: dict[str, Callable] = {
    "lrp-0": lambda r: r.Epsilon(epsilon=0.0),
    "lrp-epsilon": lambda r: r.Epsilon(),
    "lrp-zplus": lambda r: r.ZPlus(),
    "lrp-alpha-beta": lambda r: r.AlphaBeta(alpha=2.0, beta=1.0),
    "lrp-gamma": lambda r: r.Gamma(gamma=0.25),
    "lrp-w2": lambda r: r.WSquare(),
    "lrp-flat": lambda r: r.Flat(),
}
CAPTUM_RULES: dict[str, Callable] = {
    "lrp-0": lambda r: r.EpsilonRule(epsilon=0.0),
    "lrp-epsilon": lambda r: r.EpsilonRule(),
    "lrp-gamma": lambda r: r.GammaRule(),
    "lrp-zplus": lambda r: r.Alpha1_Beta0_Rule(),
    "lrp-alpha-beta": lambda r: r.Alpha1_Beta0_Rule(),
}


def zennit_rule(method: str):
    """A fresh Zennit rule for refimpl ``method`` (``ZENNIT_RULES``), with Zennit's defaults."""
    from zennit import rules

    return _lookup(ZENNIT_RULES, method, "Zennit")(rules)


def captum_rule(method: str):
    """A fresh Captum rule for refimpl ``method`` (``CAPTUM_RULES``), with Captum's defaults."""
    from captum.attr._utils import lrp_rules

    return _lookup(CAPTUM_RULES, method, "Captum")(lrp_rules)


def _lookup(table: dict, method: str, library: str) -> Callable:
    if method not in table:
        raise ValueError(f"{library} has no counterpart of {method!r} here; it has {sorted(table)}")
    return table[method]


def _inputs(net: Sequential, x, target, torch):
    """``x`` as a tensor of the net's dtype, and one class index per sample."""
    x = np.ascontiguousarray(np.asarray(x, dtype=net.dtype))
    xt = torch.from_numpy(x).requires_grad_(True)
    if target is None:
        return xt, None
    if isinstance(target, str) and target == "predicted":
        target = net(x).argmax(axis=1)
    return xt, np.array(np.broadcast_to(np.asarray(target, dtype=np.int64), (len(x),)))


def zennit_relevance(
    net: Sequential, x: np.ndarray, target, rule_for_linear: Callable, first=None, R_out=None
) -> np.ndarray:
    """Zennit's relevance with ``rule_for_linear()`` on every Linear and Conv2d (``first()`` on
    the first), ``Pass`` on ReLU, the gradient through max pooling, seeded with one-hot of
    ``target`` (``"predicted"``, one class index, or one per sample) or with ``R_out``. ``x`` is
    cast to the net's dtype."""
    torch = import_torch()
    from zennit.attribution import Gradient
    from zennit.core import Composite
    from zennit.rules import Pass

    model = to_torch(net)
    linear = (torch.nn.Linear, torch.nn.Conv2d)
    linears = [name for name, m in model.named_modules() if isinstance(m, linear)]

    def module_map(ctx, name, module):
        if isinstance(module, linear):
            return first() if (first is not None and name == linears[0]) else rule_for_linear()
        if isinstance(module, torch.nn.ReLU):
            return Pass()
        return None  # the Sequential container itself: no rule, or the result is wrong

    xt, target = _inputs(net, x, target, torch)
    if R_out is None:
        seed = torch.eye(net.output_shape[0], dtype=xt.dtype)[torch.from_numpy(target)]
    else:
        seed = torch.from_numpy(np.asarray(R_out, dtype=net.dtype))
    with Gradient(model=model, composite=Composite(module_map=module_map)) as attributor:
        _, R = attributor(xt, seed)
    return R.detach().numpy()


def captum_relevance(
    net: Sequential, x: np.ndarray, target, rule_for_linear: Callable, *, seeded_with_one=False
):
    """Captum's ``LRP.attribute`` with ``rule_for_linear()`` set on every Linear and Conv2d layer
    (``target`` and ``x`` as for :func:`zennit_relevance`).

    With ``seeded_with_one`` also return Captum's own pass seeded with 1 at the target, before
    ``attribute`` multiplies it by ``f(x)`` (the first Linear rule's ``relevance_input``).
    """
    torch = import_torch()
    from captum.attr import LRP

    model = to_torch(net)
    rules = []
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            m.rule = rule_for_linear()
            rules.append(m.rule)
    xt, target = _inputs(net, x, target, torch)
    R = LRP(model).attribute(xt, target=torch.from_numpy(target)).detach().numpy()
    if seeded_with_one:
        return R, rules[0].relevance_input[xt.device].numpy()
    return R
