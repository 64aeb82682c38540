"""The ``refimpl`` command line: one subcommand per job, each with ``--help``."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence

import numpy as np

from . import __version__
from ._malloc import tune_malloc

DEFAULT_ARCH = "784-512-256-10"


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the dense ReLU classifier on MNIST and write a model file",
        description="Train a dense ReLU classifier (paper eq. 2.7) on real MNIST digits with "
        "softmax cross-entropy and Adam, report held-out accuracy, and write a model file.",
    )
    p.add_argument("--arch", default=DEFAULT_ARCH, help="layer widths (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=80, help="training epochs (default: %(default)s)")
    p.add_argument(
        "--batch-size", type=int, default=128, help="minibatch size (default: %(default)s)"
    )
    p.add_argument(
        "--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)"
    )
    p.add_argument(
        "--lr-decay",
        type=float,
        default=0.95,
        help="learning-rate factor per epoch (default: %(default)s)",
    )
    p.add_argument(
        "--shift",
        type=int,
        default=2,
        help="random-shift augmentation in pixels, 0 disables (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for init, shuffling, augmentation")
    p.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="floating-point type of training and of the saved model (default: %(default)s)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="directory with the MNIST IDX files (default: search, see README)",
    )
    p.add_argument("--no-download", action="store_true", help="never try to download MNIST")
    p.add_argument(
        "--out", default="classifier.npz", help="model file to write (default: %(default)s)"
    )
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from .data.mnist import load_mnist, scale_pixels
    from .nn.modelfile import save_model
    from .nn.network import mlp, parse_sizes
    from .nn.train import evaluate, train_classifier

    sizes = parse_sizes(args.arch)
    _check_train_options(args)
    _check_outputs(args, "out")
    data = load_mnist(args.data, download=not args.no_download)
    x_train = scale_pixels(data.x_train, args.dtype)
    x_test = scale_pixels(data.x_test, args.dtype)
    if sizes[0] != x_train.shape[1] or sizes[-1] != 10:
        raise ValueError(
            f"--arch must start with {x_train.shape[1]} and end with 10, got {args.arch}"
        )
    net = mlp(sizes, rng=args.seed, dtype=args.dtype)
    print(
        f"training {args.arch} ReLU classifier, {args.epochs} epochs, seed {args.seed}, "
        f"{args.dtype}, on {len(x_train):,} digits; held out: {data.held_out_name}"
    )
    start = time.perf_counter()
    train_classifier(
        net,
        x_train,
        data.y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_decay=args.lr_decay,
        shift=args.shift,
        x_val=x_test,
        y_val=data.y_test,
        rng=args.seed,
    )
    seconds = time.perf_counter() - start
    loss, acc = evaluate(net, x_test, data.y_test)
    print(
        f"accuracy on the {data.held_out_name}: {acc:.2%} (loss {loss:.4f}), "
        f"trained in {seconds:.1f} s"
    )
    meta = {
        "refimpl_version": __version__,
        "task": "MNIST classifier",
        "data_source": data.source,
        "train_size": len(x_train),
        "held_out": data.held_out_name,
        "held_out_accuracy": acc,
        "held_out_loss": loss,
        "epochs": args.epochs,
        "seed": args.seed,
        "dtype": args.dtype,
        "lr": args.lr,
        "lr_decay": args.lr_decay,
        "batch_size": args.batch_size,
        "shift": args.shift,
        "train_seconds": round(seconds, 1),
        "input_scaling": "pixels 0..255 mapped linearly to [-1, 1]",
    }
    out = save_model(args.out, net, meta)
    print(f"wrote {out}")
    return 0


def _check_train_options(args: argparse.Namespace) -> None:
    """Every training option, before the data is loaded and minutes are spent."""
    from ._checks import check_int, check_positive

    check_int(args.epochs, "--epochs", low=1)
    check_int(args.batch_size, "--batch-size", low=1)
    check_int(args.shift, "--shift", low=0)
    check_positive(args.lr, "--lr")
    if not (0 < check_positive(args.lr_decay, "--lr-decay") <= 1):
        raise ValueError(f"--lr-decay must be in (0, 1], got {args.lr_decay!r}")


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="print a model file's architecture and parameter counts",
        description="Load and validate a model file; print its layers, output "
        "shapes, parameter counts and stored metadata.",
    )
    p.add_argument("model", help="model file (.npz)")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from .nn.modelfile import load_model_with_meta

    model, meta = load_model_with_meta(args.model)
    print(f"{args.model}: {type(model).__name__}")
    print(model.summary())
    if args.json:
        print(json.dumps(meta, indent=2))
    else:
        for key, value in meta.items():
            print(f"  {key}: {value}")
    return 0


def _add_explain(sub: argparse._SubParsersAction) -> None:
    from .explain.methods import METHODS

    p = sub.add_parser(
        "explain",
        help="compute reference relevances for inputs (sensitivity, Taylor, LRP rules)",
        description="Explain the logit f_c(x) of a model for every input sample and write the "
        "relevances (same shape as the input) to a .npy file. Methods: sensitivity (eq. 4.1), "
        "gradient_x_input (4.5-4.6), taylor (4.2-4.3), one LRP rule on every dense layer "
        "(lrp-0, lrp-epsilon, lrp-alpha-beta (4.10-4.13), lrp-zplus, lrp-zb, lrp-w2, lrp-flat, "
        "lrp-gamma), or 'lrp' with a per-layer --rules map.",
        epilog="example: refimpl explain classifier.npz digits.npy --method lrp "
        "--rules first=lrp-zb middle=lrp-alpha-beta:alpha=2:beta=1 last=lrp-epsilon:eps=0.25 "
        "--out R.npy --budget --heatmap R.png",
    )
    p.add_argument("model", help="model file (.npz), or an ONNX graph (.onnx, extra [onnx])")
    p.add_argument("input", help=".npy array of shape (n, *input_shape), one sample, or images")
    p.add_argument(
        "--method",
        required=True,
        choices=METHODS,
        metavar="NAME",
        help="one of: " + ", ".join(METHODS),
    )
    p.add_argument(
        "--target",
        default="predicted",
        help="'predicted' (default), a class index, or a .npy file of one index per sample: "
        "the logit that is explained",
    )
    _add_preset_option(p)
    p.add_argument("--out", required=True, help="output .npy file for the relevances")
    p.add_argument(
        "--budget",
        action="store_true",
        help="print the relevance budget (LRP): per-layer sums, absorbed, dropped",
    )
    p.add_argument(
        "--heatmap", metavar="PNG", help="also save heatmaps (red +, blue -) of the first 64"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=1024,
        help="explain this many samples at a time, streaming input and output with bounded "
        "memory and a progress line (default: %(default)s)",
    )
    p.add_argument("--image-shape", help="HxW for heatmaps (default: from the input, or square)")
    _add_method_options(p)
    p.set_defaults(func=_cmd_explain)


def _add_method_options(p: argparse.ArgumentParser) -> None:
    """Rule, rule-map, sensitivity and Taylor options shared by explain and verify; the
    choices come from where the options are declared."""
    from .explain.gradient import SENSITIVITY_OUTPUTS
    from .explain.output import SEEDS
    from .explain.rules import all_choices
    from .explain.taylor import DIRECTIONS, ROOTS

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


def _add_preset_option(p: argparse.ArgumentParser) -> None:
    from .explain.presets import PRESETS

    p.add_argument(
        "--preset",
        default="paper",
        choices=list(PRESETS),
        help="a library's conventions for rule options, output seeding and sensitivity output "
        "(default: %(default)s; README, 'Verifying other implementations')",
    )


def parse_rule_map(items: Sequence[str], preset: str = "paper"):
    """Parse ``WHERE=RULE[:K=V...]`` items into a RuleMap (rules as ``preset`` defines them)."""
    from .explain.lrp import RuleMap
    from .explain.presets import preset as get_preset

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


def _load_input(path: str, net, check: bool = True) -> tuple[np.ndarray, tuple[int, ...]]:
    """Load INPUT.npy as a batch for ``net``; return it and the shape to give the relevances.

    With ``check=False`` the file is memory-mapped and returned unchecked (its shape only), to
    be checked batch by batch as it is read.
    """
    from .files import load_npy

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


def _cmd_explain(args: argparse.Namespace) -> int:
    from ._checks import check_int
    from .atomic import atomic_write
    from .explain.output import check_explainable
    from .explain.stream import BatchSummary, Progress, explain_batches

    check_int(args.batch_size, "--batch-size", low=1)
    _check_outputs(args, "out", "heatmap")
    net = _load_net(args.model)
    check_explainable(net)
    x, shape = _load_input(args.input, net, check=False)  # each batch is checked when read
    target, options, rules = _method_request(args, len(x))
    image_shape = _image_shape(args.image_shape, shape) if args.heatmap else None
    if args.method == "taylor" and options.get("root") == "search":
        options["missing_root"] = "zero"  # report the samples without a root, explain the rest
    progress = Progress("explain") if args.batch_size < len(x) else None
    summary, drawn = BatchSummary(), []
    batches = explain_batches(
        net,
        x,
        args.method,
        batch_size=args.batch_size,
        target=target,
        rules=rules,
        preset=args.preset,
        progress=progress,
        what=f"input {args.input!r}",
        **options,
    )
    with atomic_write(args.out, "--out") as f:
        for start, result in batches:
            xb = np.asarray(x[start : start + len(result.f)])
            if start == 0:  # the header needs the dtype of the relevances
                _write_npy_header(f, shape, result.R.dtype)
            f.write(np.ascontiguousarray(result.R).tobytes())
            summary.add(start, xb, result)
            if args.heatmap and start < HEATMAP_SAMPLES:
                drawn.append((xb, result.R))
    _print_explanation(args, net, summary, rules, options)
    print(f"wrote {args.out}")
    if args.heatmap:
        xs, Rs = (np.concatenate(v)[:HEATMAP_SAMPLES] for v in zip(*drawn, strict=True))
        if len(x) > HEATMAP_SAMPLES:
            print(f"heatmap: the first {HEATMAP_SAMPLES} of {len(x):,} samples")
        _save_heatmap(args.heatmap, xs, Rs, image_shape)
    return 0


HEATMAP_SAMPLES = 64  # explain --heatmap draws at most this many samples (the first ones)


def _write_npy_header(f, shape: tuple[int, ...], dtype) -> None:
    """The .npy header of a C-order array of ``shape`` and ``dtype``, data to follow."""
    from numpy.lib import format as npy_format

    header = {"descr": npy_format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
    npy_format.write_array_header_1_0(f, {**header, "shape": tuple(shape)})  # as np.save


def _print_explanation(args, net, summary, rules, options) -> None:
    """What was explained, per sample f(x) and sum R, and the budget (or what applies)."""
    from .explain.presets import preset
    from .explain.rules import RULES

    f_x, R_sum, budget = summary.get("f"), summary.get("R_sum"), summary.budget
    target = summary.get("target")
    print(f"{args.method}: {len(f_x)} sample(s), target {_describe_target(target)}")
    if rules is not None:
        print(rules.table(net))
    elif args.method in RULES:
        print(f"rule on every dense layer: {budget.layers[0][1]}")
    if budget is not None and options.get("seed", preset(args.preset).seed) == "onehot":
        print("output seeded with 1 (one-hot), not f(x): each sample's sum R is relative to 1")
    for i in range(min(len(f_x), 10)):
        print(f"  sample {i}: f(x) = {f_x[i]:.6g}, sum R = {R_sum[i]:.6g}")
    if args.method == "taylor":
        _print_taylor(summary, args.budget)
    elif args.budget and budget is None:
        print(
            f"note: --budget is the LRP relevance budget; {args.method} has none (sum R above "
            "is compared with f(x) as is)"
        )
    if args.budget and budget is not None:
        print(budget.table(0 if len(f_x) == 1 else None))


_ROOT_HINT = "try another --direction, --root-reference or --max-distance"


def _print_taylor(summary, detail: bool) -> None:
    """Taylor's account of f(x) (eq. 4.2): f(root) + sum R + higher-order terms."""
    f, f_root, residual = summary.get("f"), summary.get("f_root"), summary.get("residual")
    ok, dist = summary.get("found"), summary.get("root_distance")
    if ok.any():
        print(
            f"  taylor: max |f(root)| = {np.abs(f_root[ok]).max():.3g}, "
            f"max |residual| = {np.abs(residual[ok]).max():.3g}"
        )
    if detail:
        print(
            "  sample  f(x)  f(root)  sum R  residual  |x - root|  (f(x) = f(root) + sum R + "
            "higher-order terms, eq. 4.2)"
        )
        for i in range(min(len(ok), 10)):
            print(
                f"  {i:6d}  {f[i]:.6g}  {f_root[i]:.3g}  {f[i] - residual[i]:.6g}  "
                f"{residual[i]:.3g}  {dist[i]:.4g}" + ("" if ok[i] else "  (no root)")
            )
    if summary.failures:
        from .explain.taylor import describe_root_failures

        print(
            f"warning: {describe_root_failures(summary.failures, _ROOT_HINT)}. "
            "Their relevances are written as 0 "
            f"(samples {sorted(summary.failures)[:20]}); the other "
            f"{int(ok.sum())} sample(s) are explained.",
            file=sys.stderr,
        )


def _parse_target(text: str, n: int):
    """``predicted``, a class index, or a .npy file of one class index per sample."""
    if text == "predicted":
        return text
    if text.endswith(".npy"):
        t = _load_npy(text, "target")
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


def _method_request(args: argparse.Namespace, n: int):
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
        return _load_npy(text, "--root-reference")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"--root-reference must be a number or a .npy file, got {text!r}"
        ) from None
    if not np.isfinite(value):
        raise ValueError(f"--root-reference must be finite, got {text!r}")
    return value


def _check_outputs(args: argparse.Namespace, *names: str) -> None:
    """Check every output path given in ``args`` before any work starts."""
    from .files import check_output_path

    for name in names:
        path = getattr(args, name, None)
        if path is not None:
            check_output_path(path, "--" + name.replace("_", "-"))


def _load_net(path: str):
    """A refimpl model file (.npz), or an ONNX graph (.onnx, needs the extra [onnx])."""
    if path.endswith(".onnx"):
        from .interop.onnx import load_onnx

        return load_onnx(path)
    from .nn.modelfile import load_model

    return load_model(path)


def _describe_target(c) -> str:
    if c is None:
        return "given R_out"
    c = np.asarray(c)
    return str(c[:10].tolist()) + (" ..." if c.size > 10 else "")


def _save_heatmap(path: str, x, R, image_shape: tuple[int, int]) -> None:
    from .explain.heatmap import save_heatmaps

    print(f"wrote {save_heatmaps(R, path, image_shape=image_shape, images=x)}")


def _image_shape(text: str | None, array_shape: tuple[int, ...]) -> tuple[int, int]:
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


def _add_heatmap(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "heatmap",
        help="draw relevances (.npy) as heatmaps (PNG)",
        description="Draw relevance maps as the paper does: red relevance, blue "
        "counter-relevance, a color scale symmetric around zero; one image per sample.",
    )
    p.add_argument("relevance", help=".npy relevances (n, d) or (n, h, w)")
    p.add_argument("--input", help=".npy inputs, drawn above the heatmaps")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--image-shape", help="HxW (default: from the array, or square)")
    p.add_argument(
        "--shared-scale",
        action="store_true",
        help="one color scale for all images (default: each its own max |R|)",
    )
    p.set_defaults(func=_cmd_heatmap)


def _cmd_heatmap(args: argparse.Namespace) -> int:
    from .explain.heatmap import save_heatmaps, symmetric_limit

    _check_outputs(args, "out")
    R = _load_npy(args.relevance, "relevance")
    if R.ndim == 0 or R.size == 0:
        raise ValueError(
            f"relevance {args.relevance!r} has shape {R.shape}; expected (n, d), (n, h, w) or "
            "one map (d,)"
        )
    image_shape = _image_shape(args.image_shape, R.shape)
    R = R.reshape(len(R), -1) if R.ndim > 1 else R[None]
    x = None if args.input is None else _load_npy(args.input, "input")
    scale = symmetric_limit(R) if args.shared_scale else None
    out = save_heatmaps(R, args.out, image_shape=image_shape, images=x, scale=scale)
    print(f"wrote {out}")
    return 0


def _load_npy(path: str, what: str) -> np.ndarray:
    from .files import load_npy

    return load_npy(path, what)


def _add_am(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "am",
        help="activation maximization: class prototypes three ways (eq. 3.1-3.3), measured",
        description="Build prototypes of digits 0-9 by activation maximization with an l2 "
        "regularizer (eq. 3.1), a Gaussian RBM expert (eq. 3.2) and in a GAN's code space "
        "(eq. 3.3); write the grid as PNG and print the quality table (target probability under "
        "the maximized and a second classifier, expert log-density, nearest training digit). "
        "Models missing from --workdir are trained first (a few minutes on 2 cores).",
    )
    p.add_argument("--workdir", default="am-models", help="models are loaded from / saved here")
    p.add_argument("--classifier", help="classifier model file (default: WORKDIR/classifier.npz)")
    p.add_argument("--out", default="am_prototypes.png", help="PNG grid (default: %(default)s)")
    p.add_argument("--table", help="also write the quality table to this text file")
    p.add_argument("--lam", type=float, default=0.05, help="lambda of eq. 3.1")
    p.add_argument(
        "--beta",
        type=float,
        default=0.03,
        help="expert weight beta of eq. 3.2 (default: %(default)s)",
    )
    p.add_argument("--code-lam", type=float, default=0.01, help="lambda of eq. 3.3")
    p.add_argument(
        "--code-ref",
        choices=("class-mean", "paper"),
        default="class-mean",
        help="eq. 3.3 regularizer toward class code means, or ||z||^2 (paper)",
    )
    p.add_argument(
        "--class-term",
        dest="kind",
        choices=("log_softmax", "logit"),
        default="logit",
        help="the raw logit (default: sharper prototypes) or log p(w_c|x) (paper)",
    )
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    p.add_argument("--lr", type=float, default=0.05, help="initial step size (gradient ascent)")
    p.add_argument("--method", choices=("gradient", "lbfgs"), default="gradient")
    p.add_argument(
        "--init",
        choices=("mean", "black", "grey"),
        default="mean",
        help="pixel-space start: the training mean (default), black or grey",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="directory with the MNIST IDX files")
    p.add_argument("--no-download", action="store_true", help="never try to download MNIST")
    p.set_defaults(func=_cmd_am)


def _cmd_am(args: argparse.Namespace) -> int:
    from .data.mnist import load_mnist
    from .interpret.am_report import (
        AMSettings,
        ensure_models,
        measure,
        report,
        run_variants,
        save_grid,
    )

    settings = AMSettings(
        lam=args.lam,
        beta=args.beta,
        code_lam=args.code_lam,
        code_ref=args.code_ref,
        kind=args.kind,
        steps=args.steps,
        lr=args.lr,
        method=args.method,
        init=args.init,
    )
    _check_outputs(args, "out", "table")
    _check_workdir(args.workdir)
    if args.classifier is not None:
        from .files import check_input_file

        check_input_file(args.classifier, "--classifier")
    data = load_mnist(args.data, download=not args.no_download)
    models = ensure_models(args.workdir, data, seed=args.seed, classifier_path=args.classifier)
    results = run_variants(models, data, settings, seed=args.seed)
    table = report(measure(results, models, data))
    print(table)
    if args.table:
        from .atomic import atomic_write

        with atomic_write(args.table, "--table") as f:
            f.write((table + "\n").encode())
        print(f"wrote {args.table}")
    print(f"wrote {save_grid(results, args.out)}")
    return 0


def _check_workdir(path: str) -> None:
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


def _add_verify(sub: argparse._SubParsersAction) -> None:
    from .explain.methods import METHODS

    p = sub.add_parser(
        "verify",
        help="check another implementation's relevances against the reference",
        description="Compute the reference relevances (in float64) for MODEL and INPUT with "
        "--method and compare CANDIDATE with them, per sample: max |R - R_ref| <= rtol x "
        "max |R_ref| + 32 S, S the measured spread of the result under rounding in the "
        "candidate's (or the model's, if lower) precision; errors systematically above S are a "
        "mismatch too. Prints the errors, the candidate's conservation (sum R against f(x)) and "
        "a verdict; on a mismatch it tries every preset, every single rule option and pairs of "
        "them, the output seeding, the target and the other methods, and names the convention "
        "that explains the difference with the failing samples it explains (a NaN or inf in "
        "the candidate is named as the cause instead). Exit status: 0 match, 1 mismatch, 2 "
        "usage error, 3 internal error.",
        epilog="example: refimpl verify classifier.npz digits.npy zennit_R.npy "
        "--method lrp-alpha-beta --alpha 2 --beta 1 --target labels.npy",
    )
    p.add_argument("model", help="model file (.npz), or an ONNX graph (.onnx, extra [onnx])")
    p.add_argument("input", help=".npy inputs, n x d values")
    p.add_argument("candidate", help=".npy relevances to check, n x d values")
    p.add_argument(
        "--method", required=True, choices=METHODS, metavar="NAME", help=", ".join(METHODS)
    )
    p.add_argument(
        "--target",
        default="predicted",
        help="'predicted' (default), a class index, or a .npy file of one index per sample",
    )
    _add_preset_option(p)
    p.add_argument(
        "--rtol",
        type=float,
        help="per-sample relative tolerance (default 1e-10 when both the candidate and the "
        "model are float64, else 1e-5); the rounding allowance comes on top",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the report as strict JSON (numbers that are not finite, e.g. an error that "
        "overflows, are null)",
    )
    p.add_argument(
        "--no-diagnosis", action="store_true", help="on a mismatch, do not search conventions"
    )
    _add_method_options(p)
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    from .explain.output import check_explainable
    from .verify.check import verify

    net = _load_net(args.model)
    check_explainable(net)
    x, _ = _load_input(args.input, net)
    R = _load_npy(args.candidate, "candidate")
    target, options, rules = _method_request(args, len(x))
    report = verify(
        net,
        x,
        R,
        args.method,
        target=target,
        preset=args.preset,
        rules=rules,
        rtol=args.rtol,
        diagnose_mismatch=not args.no_diagnosis,
        **options,
    )
    args.exit_code = 0 if report.passed else 1  # also when the output pipe closes early
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        print(report.text())
    return args.exit_code


def _add_conformance(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "conformance",
        help="write the conformance set that other implementations test themselves against",
        description="Conformance set: small nets (model files and plain arrays), inputs and "
        "refimpl's relevances for every rule, method and preset, with a JSON manifest of "
        "tolerances, for testing another implementation with NumPy and JSON alone.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    e = actions.add_parser(
        "export",
        help="write the set into DIR (atomically)",
        description="Write the conformance set into DIR: built in a temporary sibling "
        "directory and renamed into place; two exports are byte-identical.",
        epilog="example: refimpl conformance export conformance/",
    )
    e.add_argument("dir", help="target directory (must be empty or absent)")
    e.add_argument("--force", action="store_true", help="replace an earlier conformance set in DIR")
    e.set_defaults(func=_cmd_conformance_export)


def _cmd_conformance_export(args: argparse.Namespace) -> int:
    from .verify.conformance import export_conformance

    manifest = export_conformance(
        args.dir, overwrite=args.force, progress=lambda line: print(line, file=sys.stderr)
    )
    print(f"wrote {manifest}")
    return 0


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that reads ``-1e-3``, ``-.5``, ``-inf`` after an option as a value (so
    ``--eps -1e-3`` reaches the option's own check), not as an unknown option."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(
            r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="refimpl",
        description="NumPy reference implementation of Montavon, Samek & Mueller (2017), "
        "'Methods for interpreting and understanding deep neural networks'.",
    )
    parser.add_argument("--version", action="version", version=f"refimpl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_info(sub)
    _add_explain(sub)
    _add_heatmap(sub)
    _add_am(sub)
    _add_verify(sub)
    _add_conformance(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``refimpl`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_malloc()
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        sys.stderr.close()
        return getattr(args, "exit_code", 0)
    except (ValueError, TypeError, OSError, ImportError) as exc:  # OSError: a file's fault
        print(f"refimpl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - verify's 1 must mean "mismatch", never "crashed"
        if args.command != "verify":
            raise
        print(f"refimpl verify: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
