"""One entry point for every explanation method, by name (used by the command line)."""

from __future__ import annotations

from ..nn.network import Sequential
from .gradient import gradient_x_input, sensitivity
from .lrp import Explanation, RuleMap, lrp
from .presets import Preset
from .presets import preset as get_preset
from .rules import RULES
from .taylor import TaylorResult, taylor

GRADIENT_METHODS = ("sensitivity", "gradient_x_input", "taylor")
METHODS = (*GRADIENT_METHODS, *sorted(RULES), "lrp")


def explain(
    net: Sequential,
    x,
    method: str,
    *,
    target="predicted",
    rules: RuleMap | None = None,
    preset: str | Preset = "paper",
    seed: str | None = None,
    **options,
) -> Explanation | TaylorResult:
    """Explain ``f_c(x)`` with ``method`` (one of ``METHODS``).

    ``sensitivity`` takes ``output``; ``taylor`` takes ``root``, ``direction``, ``reference``,
    ``max_distance`` and ``missing_root``; an LRP rule name (``lrp-epsilon``, ...) takes that
    rule's options and is applied to every dense layer; ``lrp`` takes a ``RuleMap`` as
    ``rules``. ``preset`` (see :mod:`refimpl.explain.presets`) supplies one library's rule
    options, output seeding and sensitivity output; options given here win over it. ``seed``
    (``"logit"`` or ``"onehot"``) overrides the preset's output seeding for LRP.
    """
    conv = get_preset(preset)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}")
    if seed is not None and method not in RULES and method != "lrp":
        raise ValueError(f"seed (the output seeding of LRP) does not apply to {method!r}")
    seed = conv.seed if seed is None else seed
    if method == "lrp":
        if rules is None:
            raise ValueError("method 'lrp' needs a rule map (rules=RuleMap(...) or --rules)")
        if options:
            raise ValueError(f"method 'lrp' takes its options per rule, got {sorted(options)}")
        return lrp(net, x, rules, target=target, seed=seed)
    if rules is not None:
        raise ValueError(f"a rule map applies to method 'lrp' only, not {method!r}")
    if method in RULES:
        return lrp(net, x, conv.rule(method, **options), target=target, seed=seed)
    if method == "sensitivity":
        if "output" not in options:
            options["output"] = conv.sensitivity_output()
    allowed = {
        "sensitivity": {"output"},
        "gradient_x_input": set(),
        "taylor": {"root", "direction", "reference", "max_distance", "missing_root"},
    }[method]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"method {method!r} takes no option(s) {unknown}; it takes {sorted(allowed) or 'none'}"
        )
    fn = {"sensitivity": sensitivity, "gradient_x_input": gradient_x_input, "taylor": taylor}
    return fn[method](net, x, target=target, **options)
