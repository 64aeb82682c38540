"""What the subcommands share: loading inputs, models and targets, the rule and method options,
and checking outputs before any work."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from ..files import load_npy


def add_method_options(p: argparse.ArgumentParser) -> None:
    """Rule, rule-map, sensitivity and Taylor options shared by explain and verify; the
    choices come from where the options are declared."""
    from ..explain.gradient import SENSITIVITY_OUTPUTS
    from ..explain.output import SEEDS
    from ..explain.rules import all_choices
    from ..explain.taylor import DIRECTIONS, ROOTS

    rules = p.add_argument_group("LRP rule options (for a single rule; see --rules for maps)")
    rules.add_argument("--eps", type=float, help="stabilizer epsilon (> 0)")
    rules.add_argument(
        "--stabilizer",
        dest="stabilizer_kind",
        choices=all_choices("stabilizer_kind"),
        help="how eps enters the denominator (default signed: z + eps sign(z))",
    )
    rules.add_argument("--alpha", type=float, help="alpha of the alpha-beta rule")
    rules.add_argument("--beta", type=float, help="beta of the alpha-beta rule")
    rules.add_argument(
        "--bias",
        choices=all_choices("bias"),
        help="bias handling in the denominators (rule-specific values)",
    )
    rules.add_argument(
        "--inputs",
        choices=all_choices("inputs"),
        help="handling of negative inputs (alpha-beta, z+, gamma)",
    )
    rules.add_argument("--gamma", type=float, help="gamma of the gamma rule (>= 0)")
    rules.add_argument("--gamma-variant", dest="variant", choices=all_choices("variant"))
    rules.add_argument("--low", type=float, help="z^B lower bound (scalar)")
    rules.add_argument("--high", type=float, help="z^B upper bound (scalar)")
    rules.add_argument(
        "--rules",
        nargs="+",
        metavar="WHERE=RULE[:K=V...]",
        help="rule map for --method lrp: WHERE is first, middle, last, default or "
        "a layer index; e.g. first=lrp-zb middle=lrp-alpha-beta:alpha=2:beta=1",
    )
    rules.add_argument(
        "--output-seed",
        dest="seed",
        choices=SEEDS,
        help="LRP output relevance: f(x) onehot(c) (logit, the paper) or onehot(c) (as Zennit is "
        "usually called); default: the preset's",
    )
    other = p.add_argument_group("gradient and Taylor options")
    other.add_argument(
        "--sensitivity-output",
        dest="output",
        choices=SENSITIVITY_OUTPUTS,
        help="sensitivity: (df/dx)^2 (eq. 4.1), raw df/dx, or |df/dx|; default: the preset's "
        "(paper: squared)",
    )
    other.add_argument(
        "--root",
        choices=ROOTS,
        help="taylor: root point (default limit, for homogeneous nets)",
    )
    other.add_argument(
        "--direction",
        choices=DIRECTIONS,
        help="taylor search: along the segment to --root-reference (default the origin), or "
        "down the gradient for --max-distance",
    )
    other.add_argument(
        "--root-reference",
        dest="reference",
        metavar="VALUE|NPY",
        help="taylor search, segment: its end, a number for every input value (e.g. -1, a black "
        "image in [-1, 1] pixels) or a .npy of one point or one per sample (default: 0)",
    )
    other.add_argument(
        "--max-distance",
        dest="max_distance",
        type=float,
        help="taylor search, gradient: length of the ray (default 2 sqrt(d))",
    )


_OPTION_NAMES = (
    "eps",
    "stabilizer_kind",
    "alpha",
    "beta",
    "bias",
    "inputs",
    "gamma",
    "variant",
    "low",
    "high",
    "output",
    "root",
    "direction",
    "reference",
    "max_distance",
)


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def add_preset_option(p: argparse.ArgumentParser) -> None:
    from ..explain.presets import PRESETS

    p.add_argument(
        "--preset",
        default="paper",
        choices=list(PRESETS),
        help="a library's conventions for rule options, output seeding and sensitivity output "
        "(default: %(default)s; README, 'Verifying other implementations')",
    )


def parse_rule_map(items: Sequence[str], preset: str = "paper"):
    """Parse ``WHERE=RULE[:K=V...]`` items into a RuleMap (rules as ``preset`` defines them)."""
    from ..explain.lrp import RuleMap
    from ..explain.presets import preset as get_preset

    kwargs: dict = {}
    layers: dict = {}
    for item in items:
        where, sep, spec = item.partition("=")
        if not sep or not spec:
            raise ValueError(f"--rules item must look like WHERE=RULE[:K=V...], got {item!r}")
        name, *opts = spec.split(":")
        options = {}
        for opt in opts:
            key, sep, value = opt.partition("=")
            if not sep:
                raise ValueError(f"rule option must look like K=V, got {opt!r} in {item!r}")
            options[key] = _parse_value(value)
        rule = get_preset(preset).rule(name, **options)
        if where in ("first", "middle", "last", "default"):
            kwargs[where] = rule
        elif where.isdigit():
            layers[int(where)] = rule
        else:
            raise ValueError(
                f"--rules WHERE must be first, middle, last, default or a layer "
                f"index, got {where!r}"
            )
    return RuleMap(kwargs.pop("default", None), layers=layers, **kwargs)


def load_input(path: str, net, check: bool = True) -> tuple[np.ndarray, tuple[int, ...]]:
    """Load INPUT.npy as a batch for ``net``; return it and the shape to give the relevances.

    With ``check=False`` the file is memory-mapped and returned unchecked (its shape only), to
    be checked batch by batch as it is read.
    """
    from ..files import load_npy

    x = load_npy(path, "input", mmap=not check)
    d = int(np.prod(net.input_shape))
    if x.ndim == 0 or x.size % d or x.size == 0:
        raise ValueError(
            f"input {path!r} has shape {x.shape}; expected (n, "
            f"{', '.join(map(str, net.input_shape))}) or anything of n x {d} values"
        )
    # one sample, a batch, or images: any array of n x d values is n samples
    x_batch = x.reshape(-1, *net.input_shape)
    return (net.check_input(x_batch, f"input {path!r}") if check else x_batch), x.shape


def _parse_target(text: str, n: int):
    """``predicted``, a class index, or a .npy file of one class index per sample."""
    if text == "predicted":
        return text
    if text.endswith(".npy"):
        t = load_npy(text, "target")
        if not np.issubdtype(t.dtype, np.integer) or t.shape != (n,):
            raise ValueError(
                f"--target file {text!r} must hold {n} integer class indices (one per sample), "
                f"got dtype {t.dtype} and shape {t.shape}"
            )
        return t
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"--target must be 'predicted', a class index or a .npy file of indices, got {text!r}"
        ) from None


def method_request(args: argparse.Namespace, n: int):
    """Target, single-rule options and rule map from explain/verify arguments."""
    target = _parse_target(args.target, n)
    options = {k: getattr(args, k) for k in _OPTION_NAMES if getattr(args, k) is not None}
    _check_taylor_options(args.method, options)
    if "reference" in options:
        options["reference"] = _parse_reference(options["reference"])
    rules = None
    if args.rules:
        if args.method != "lrp":
            raise ValueError("--rules needs --method lrp")
        if options:
            raise ValueError(
                f"with --rules give options per rule (RULE:K=V), not {sorted(options)}"
            )
        rules = parse_rule_map(args.rules, args.preset)
    if args.seed is not None:
        options["seed"] = args.seed
    return target, options, rules


_SEARCH_OPTIONS = {
    "direction": "--direction",
    "reference": "--root-reference",
    "max_distance": "--max-distance",
}


def _check_taylor_options(method: str, options: dict) -> None:
    """The root search's options need ``--method taylor --root search`` (and the right line)."""
    given = [flag for key, flag in _SEARCH_OPTIONS.items() if key in options]
    if not given:
        return
    if method != "taylor" or options.get("root") != "search":
        raise ValueError(
            f"{', '.join(given)} set(s) the root search: it needs --method taylor --root search"
        )
    direction = options.get("direction", "segment")
    if "reference" in options and direction != "segment":
        raise ValueError(
            "--root-reference is the end of the segment: it needs --direction segment (the default)"
        )
    if "max_distance" in options and direction != "gradient":
        raise ValueError(
            "--max-distance is the length of the ray down the gradient: it needs "
            "--direction gradient"
        )


def _parse_reference(text: str):
    """``--root-reference``: a number for every input value, or a .npy file."""
    if text.endswith(".npy"):
        return load_npy(text, "--root-reference")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"--root-reference must be a number or a .npy file, got {text!r}"
        ) from None
    if not np.isfinite(value):
        raise ValueError(f"--root-reference must be finite, got {text!r}")
    return value


def check_outputs(args: argparse.Namespace, *names: str) -> None:
    """Check every output path given in ``args`` before any work starts."""
    from ..files import check_output_path

    for name in names:
        path = getattr(args, name, None)
        if path is not None:
            check_output_path(path, "--" + name.replace("_", "-"))


def load_net(path: str):
    """A refimpl model file (.npz), or an ONNX graph (.onnx, needs the extra [onnx])."""
    if path.endswith(".onnx"):
        from ..interop.onnx import load_onnx

        return load_onnx(path)
    from ..nn.modelfile import load_model

    return load_model(path)


def describe_target(c) -> str:
    if c is None:
        return "given R_out"
    c = np.asarray(c)
    return str(c[:10].tolist()) + (" ..." if c.size > 10 else "")


def save_heatmap(path: str, x, R, image_shape: tuple[int, int]) -> None:
    from ..explain.heatmap import save_heatmaps

    print(f"wrote {save_heatmaps(R, path, image_shape=image_shape, images=x)}")


def parse_image_shape(text: str | None, array_shape: tuple[int, ...]) -> tuple[int, int]:
    """``HxW`` from ``--image-shape``, else the last two axes of a 3-d array, else a square."""
    if text is not None:
        try:
            h, w = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise ValueError(f"--image-shape must look like 28x28, got {text!r}") from None
        if h < 1 or w < 1:
            raise ValueError(f"--image-shape must be positive, like 28x28, got {text!r}")
        return h, w
    if len(array_shape) >= 3:
        return array_shape[-2], array_shape[-1]
    d = int(np.prod(array_shape[1:])) if len(array_shape) > 1 else int(np.prod(array_shape))
    side = int(round(np.sqrt(d)))
    if side * side != d:
        raise ValueError(
            f"cannot draw {d} values per sample as a square image; give --image-shape HxW"
        )
    return side, side


def check_workdir(path: str) -> None:
    """``--workdir`` is a directory, or absent (it is made) below an existing writable one."""
    import os

    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"--workdir {path!r} exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"--workdir {path!r} is not writable")
        return
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"--workdir {path!r} cannot be made: {parent!r} is not a writable directory"
        )
