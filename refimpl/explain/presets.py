"""Named conventions: each preset bundles the rule options that reproduce one library's numbers.

The paper's rules leave details open that the libraries settle differently (README, section
"Verifying other implementations"):
the bias in the alpha-beta and z+ denominators, how negative inputs are split, the stabilizer
and its default epsilon, the gamma variant, what sensitivity returns and how the output
relevance is seeded. A :class:`Preset` names one library's choices, so that::

    preset("zennit").rule("lrp-alpha-beta")          # Zennit's AlphaBeta(2, 1) on a dense layer
    explain(net, x, "lrp-epsilon", preset="captum")  # Captum's EpsilonRule, seeded with f(x)

give that library's relevances on dense ReLU nets. Options given by the caller win over the
preset's. ``paper`` is the default and is what refimpl's rule classes do without options.
Zennit's and Captum's presets are checked against the real libraries
(``tests/test_peers_torch.py``); iNNvestigate's and the LRP Toolbox's against line-by-line
NumPy transcriptions of their source (``tests/test_presets.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .gradient import SENSITIVITY_OUTPUTS
from .output import SEEDS
from .rules import CHOICE_OPTIONS, RULES, Rule, all_choices, make_rule, option_choices

ALPHA_BETA_FORMS = ("alpha-beta", "alpha-only")


@dataclass(frozen=True)
class Preset:
    """One library's conventions.

    Attributes
    ----------
    name : str
        Preset name (``paper``, ``zennit``, ...).
    library : str
        The library and version the options were read from and tested against.
    rules : dict of str to dict
        Per rule name (:data:`~refimpl.explain.rules.RULES`), the options that give the
        library's version of that rule (its defaults included, e.g. Zennit's alpha=2, beta=1).
    missing : dict of str to str
        Rules the library does not have, with the reason shown in the error.
    fixed : dict of str to dict
        Options the library does not let vary (Captum has only alpha=1, beta=0).
    realized_by : dict of str to str
        Rules that refimpl computes with another rule class: iNNvestigate's LRP-0 divides by
        ``z`` with an exact zero replaced by 1e-7, which is refimpl's epsilon rule with the
        ``zero_only`` stabilizer.
    sensitivity : str or None
        What sensitivity (eq. 4.1) returns: ``squared`` (paper), ``raw`` or ``abs``; ``None`` if
        the library has no sensitivity method.
    seed : str
        Output relevance: ``logit`` (``R_L = f(x) onehot(c)``) or ``onehot`` (``R_L = onehot(c)``,
        so every relevance is divided by ``f(x)``).
    alpha_beta : str
        ``alpha-beta``: both parameters, ``alpha - beta = 1``; ``alpha-only``: the library takes
        ``alpha`` and sets its own ``beta = 1 - alpha`` (added, not subtracted), which is the
        paper's rule with ``beta = alpha - 1``.
    zero_denominator : str
        What the library does with a zero denominator (documentation; refimpl drops the share
        and books it in the relevance budget).
    notes : tuple of str
        Differences that no option reproduces.
    """

    name: str
    library: str
    rules: dict[str, dict] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, dict] = field(default_factory=dict)
    realized_by: dict[str, str] = field(default_factory=dict)
    sensitivity: str | None = "squared"
    seed: str = "logit"
    alpha_beta: str = "alpha-beta"
    zero_denominator: str = "dropped and booked in the relevance budget"
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        unknown = sorted((set(self.rules) | set(self.missing) | set(self.fixed)) - set(RULES))
        if unknown:
            raise ValueError(f"preset {self.name!r} names unknown rules {unknown}")
        if self.sensitivity is not None and self.sensitivity not in SENSITIVITY_OUTPUTS:
            raise ValueError(f"sensitivity must be one of {SENSITIVITY_OUTPUTS}")
        if self.seed not in SEEDS:
            raise ValueError(f"seed must be one of {SEEDS}, got {self.seed!r}")
        if self.alpha_beta not in ALPHA_BETA_FORMS:
            raise ValueError(f"alpha_beta must be one of {ALPHA_BETA_FORMS}")
        for name in set(self.rules) - set(self.missing):
            self.rule(name)  # a typo in an option fails here, not when the rule is first used

    def options(self, name: str, **overrides) -> dict:
        """The options of rule ``name`` under this preset, ``overrides`` winning."""
        if name not in RULES:
            raise ValueError(f"unknown LRP rule {name!r}; known rules: {sorted(RULES)}")
        if name in self.missing:
            raise ValueError(f"{self.library} has no {name} rule: {self.missing[name]}")
        overrides = dict(overrides)
        if name == "lrp-alpha-beta" and self.alpha_beta == "alpha-only":
            if "beta" in overrides:
                raise ValueError(
                    f"{self.library} takes alpha only (its own beta is 1 - alpha); give alpha, "
                    f"not beta={overrides['beta']!r}"
                )
            if "alpha" in overrides:
                if not overrides["alpha"] >= 1:
                    raise ValueError(
                        f"{self.library} accepts alpha={overrides['alpha']!r} (its beta = 1 - "
                        "alpha > 0 then), which is outside the paper's beta = alpha - 1 >= 0: "
                        "alpha must be >= 1"
                    )
                overrides["beta"] = overrides["alpha"] - 1.0
        for key, value in self.fixed.get(name, {}).items():
            if key in overrides and overrides[key] != value:
                raise ValueError(
                    f"{self.library} fixes {key}={value!r} for {name}, got {key}={overrides[key]!r}"
                )
        return {**self.rules.get(name, {}), **overrides}

    def full_options(self, name: str, **overrides) -> dict:
        """Every option of the rule class that realizes ``name``: its defaults, then the preset's
        options, then ``overrides``."""
        cls = RULES[self.realized_by.get(name, name)]
        return {**{f.name: f.default for f in fields(cls)}, **self.options(name, **overrides)}

    def rule(self, name: str, **overrides) -> Rule:
        """Rule ``name`` as this library computes it on a dense layer."""
        return make_rule(self.realized_by.get(name, name), **self.options(name, **overrides))

    def sensitivity_output(self) -> str:
        """What this library's sensitivity returns; raises if it has none."""
        if self.sensitivity is None:
            raise ValueError(f"{self.library} has no sensitivity method")
        return self.sensitivity


_ZENNIT_EPS = 1e-6
_CAPTUM_EPS = 1e-9
_INNV_SAFE = {"eps": 1e-7, "stabilizer_kind": "zero_only"}  # safe_divide: an exact 0 -> 1e-7
_TOOLBOX_EPS = 1e-16

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="paper",
            library="Montavon et al. 2017 (refimpl's defaults)",
            notes=(
                "alpha-beta and z+ have no bias and assume a >= 0 (eq. 4.10-4.13): a negative "
                "input raises; use inputs='split' or z^B on pixels",
            ),
        ),
        Preset(
            name="zennit",
            library="Zennit 0.5.1",
            rules={
                "lrp-0": {},
                "lrp-epsilon": {"eps": _ZENNIT_EPS},
                "lrp-alpha-beta": {
                    "alpha": 2.0,
                    "beta": 1.0,
                    "bias": "split",
                    "inputs": "split",
                    "eps": _ZENNIT_EPS,
                },
                "lrp-zplus": {"bias": "split", "inputs": "split", "eps": _ZENNIT_EPS},
                "lrp-zb": {"eps": _ZENNIT_EPS},
                "lrp-w2": {"bias": "squared", "eps": _ZENNIT_EPS},
                "lrp-flat": {"eps": _ZENNIT_EPS},
                "lrp-gamma": {
                    "gamma": 0.25,
                    "variant": "generalized",
                    "bias": "full",
                    "eps": _ZENNIT_EPS,
                },
            },
            sensitivity="raw",
            seed="onehot",
            zero_denominator="stabilized: every denominator gets eps sign(d), sign(0) = +1; "
            "Epsilon(epsilon=0) (LRP-0) divides by zero",
            notes=(
                "AlphaBeta checks alpha - beta == 1 by exact float equality: (1.4, 0.4) is refused",
                "the built-in composites put ZPlus/AlphaBeta/ZBox on convolutions only; map rules "
                "to Linear layers explicitly (e.g. NameMapComposite)",
                "relevance passes ReLU by the gradient unless the activation gets the Pass rule, "
                "as the composites do; with Pass it passes unchanged, as in refimpl",
            ),
        ),
        Preset(
            name="captum",
            library="Captum 0.9.0",
            rules={
                "lrp-0": {},
                "lrp-epsilon": {"eps": _CAPTUM_EPS},
                "lrp-alpha-beta": {"bias": "full", "inputs": "weights", "eps": _CAPTUM_EPS},
                "lrp-zplus": {"bias": "full", "inputs": "weights", "eps": _CAPTUM_EPS},
                "lrp-gamma": {
                    "gamma": 0.25,
                    "variant": "original",
                    "bias": "raw",
                    "inputs": "weights",
                    "eps": _CAPTUM_EPS,
                },
            },
            missing={
                "lrp-zb": "Captum has no z^B rule",
                "lrp-w2": "Captum has no w^2 rule",
                "lrp-flat": "Captum has no flat rule",
            },
            fixed={"lrp-alpha-beta": {"alpha": 1.0, "beta": 0.0}},
            sensitivity="abs",
            seed="logit",
            zero_denominator="stabilized: eps sign(d) with sign(0) = +1, eps 1e-9 on every rule "
            "but LRP-0 (EpsilonRule(epsilon=0)), which divides by an exact zero",
            notes=(
                "only Alpha1_Beta0_Rule: alpha-beta with other parameters does not exist",
                "Alpha1_Beta0_Rule and GammaRule keep the raw bias b (set_bias_to_zero=False) and "
                "clamp the weights only, whatever the sign of the input",
                "LRP.attribute returns relevances multiplied by the output f(x) after a pass "
                "seeded with 1: the same as seeding with f(x)",
            ),
        ),
        Preset(
            name="innvestigate",
            library="iNNvestigate 2.1",
            rules={
                "lrp-0": dict(_INNV_SAFE),
                "lrp-epsilon": {"eps": 1e-7},
                "lrp-alpha-beta": {"bias": "full", "inputs": "split", **_INNV_SAFE},
                "lrp-zplus": {"bias": "none", "inputs": "split", **_INNV_SAFE},
                "lrp-zb": {"low": -1.0, "high": 1.0, **_INNV_SAFE},
                "lrp-w2": {"bias": "none", **_INNV_SAFE},
                "lrp-flat": dict(_INNV_SAFE),
            },
            realized_by={"lrp-0": "lrp-epsilon"},
            missing={"lrp-gamma": "iNNvestigate 2.x has no gamma rule (issue #245)"},
            sensitivity="raw",
            seed="logit",
            zero_denominator="an exact zero is replaced by 1e-7 (safe_divide), so the share is "
            "multiplied by 1e7 instead of dropped; the epsilon rule divides plainly",
            notes=(
                "AlphaBeta puts the full bias b in both denominators (b+ and b- in each), so it "
                "does not conserve even without stabilizers (issues #273, #116)",
                "ZPlusFast is z+ with inputs='weights' (negative inputs are not clipped)",
                "alpha - beta == 1 is checked by exact float equality, alpha >= 1",
                "Keras computes in float32 unless floatx is set to float64",
            ),
        ),
        Preset(
            name="toolbox",
            library="LRP Toolbox (Python modules)",
            rules={
                "lrp-0": {"eps": _TOOLBOX_EPS},
                "lrp-epsilon": {"eps": 0.01},
                "lrp-alpha-beta": {
                    "alpha": 2.0,
                    "beta": 1.0,
                    "bias": "split",
                    "inputs": "split",
                    "eps": _TOOLBOX_EPS,
                },
                "lrp-zplus": {"bias": "split", "inputs": "split", "eps": _TOOLBOX_EPS},
                "lrp-w2": {"bias": "none"},
                "lrp-flat": {},
            },
            realized_by={"lrp-0": "lrp-epsilon"},
            missing={
                "lrp-zb": "the Python LRP Toolbox has no z^B rule",
                "lrp-gamma": "the LRP Toolbox has no gamma rule",
            },
            sensitivity=None,
            seed="logit",
            alpha_beta="alpha-only",
            zero_denominator="LRP-0 adds 1e-16 sign(z); alpha-beta adds +1e-16 to the positive "
            "and -2e-16 to the negative denominator, so an empty share is lost; w^2 divides "
            "plainly (NaN on an all-zero weight column)",
            notes=(
                "alphabeta takes alpha only and uses beta = 1 - alpha, added: the paper's rule "
                "with beta = alpha - 1; alpha < 1 is accepted there and refused here",
                "epsilon has no default; its demo uses 0.01 (the preset's default)",
                "z+ is alphabeta with alpha = 1",
                "the negative denominator is computed as Y - Zsp = z- + b- - 2e-16, where the "
                "preset subtracts 1e-16 (eps sign(d)): the 1e-16 difference and the cancellation "
                "in Y - Zsp are below the rounding of the layer output and are not reproduced "
                "bit for bit (tests/test_presets.py pins the empty-share cases)",
            ),
        ),
    )
}


def effective_options(options: dict) -> dict:
    """``options`` without those that have no effect: the stabilizer kind when there is no
    epsilon, and ``inputs`` of the generalized gamma rule (which splits inputs by itself)."""
    out = dict(options)
    if "eps" in out and not out["eps"]:
        out.pop("stabilizer_kind", None)
    if out.get("variant") == "generalized":
        out.pop("inputs", None)
    return out


def preset(name: str | Preset) -> Preset:
    """A preset by name (``PRESETS``), or the preset itself."""
    if isinstance(name, Preset):
        return name
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


_ROWS = (
    ("LRP-0 (eq. 4.7-4.8)", "lrp-0"),
    ("epsilon", "lrp-epsilon"),
    ("alpha-beta (eq. 4.10-4.13)", "lrp-alpha-beta"),
    ("z+", "lrp-zplus"),
    ("z^B", "lrp-zb"),
    ("w^2", "lrp-w2"),
    ("flat", "lrp-flat"),
    ("gamma", "lrp-gamma"),
)


def _cell(p: Preset, name: str) -> str:
    """The refimpl options that give ``p``'s version of rule ``name``."""
    if name in p.missing:
        return "n/a"
    target = p.realized_by.get(name, name)
    opts = effective_options(p.full_options(name))
    shown = {k: opts[k] for k in _SHOWN if k in opts}
    if not shown.get("eps"):
        shown.pop("eps", None)
    if shown.get("stabilizer_kind") == "signed":
        del shown["stabilizer_kind"]
    text = ", ".join(f"{k}={v!r}" for k, v in shown.items())
    if target != name:
        text = f"{target}({text})"
    if name in p.fixed:
        text += " only"
    return f"`{text}`" if text else "no options"


_SHOWN = ("alpha", "beta", "gamma", "variant", "bias", "inputs", "eps", "stabilizer_kind")


_CHECKED = {
    "paper": "slow twins and the property suite (tests/test_rules.py, test_lrp_properties.py)",
    "zennit": "the real Zennit, random nets, float64 and float32 (tests/test_peers_torch.py)",
    "captum": "the real Captum, random nets, float64 and float32 (tests/test_peers_torch.py)",
    "innvestigate": "a line-by-line transcription of its source (tests/test_presets.py)",
    "toolbox": "a line-by-line transcription of its source (tests/test_presets.py)",
}


def _choices_cell(rule: str) -> str:
    """The values of ``rule``'s options with fixed choices, as declared (rules.choice)."""
    parts = []
    for name in CHOICE_OPTIONS:
        values = option_choices(RULES[rule], name)
        if values and name != "stabilizer_kind":  # the same for every rule: a row of its own
            parts.append(f"{name}: {' / '.join(values)}")
    return "; ".join(parts) or "-"


def preset_table() -> str:
    """Markdown table, rule x library, of the refimpl options that reproduce each library, with
    the values each option takes (read from the rules' declarations)."""
    names = list(PRESETS)
    header = (
        "| rule | option values | "
        + " | ".join(f"`{n}`: {PRESETS[n].library}" for n in names)
        + " |"
    )
    lines = [header, "|" + " --- |" * (len(names) + 2)]
    for label, rule in _ROWS:
        cells = " | ".join(_cell(PRESETS[n], rule) for n in names)
        lines.append(f"| {label} | {_choices_cell(rule)} | {cells} |")
    kinds = " / ".join(all_choices("stabilizer_kind"))
    lines.append(f"| stabilizer (with eps > 0) | stabilizer_kind: {kinds} |" + " |" * len(names))
    extra = (
        ("sensitivity (eq. 4.1)", lambda p: f"`{p.sensitivity}`" if p.sensitivity else "n/a"),
        ("output seed", lambda p: f"`{p.seed}`"),
        ("alpha-beta parameters", lambda p: f"`{p.alpha_beta}`"),
        ("zero denominator", lambda p: p.zero_denominator),
        ("checked against", lambda p: _CHECKED[p.name]),
    )
    for label, get in extra:
        lines.append(f"| {label} | | " + " | ".join(get(PRESETS[n]) for n in names) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(preset_table(), end="")
