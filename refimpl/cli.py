"""The ``refimpl`` command line: one subcommand per job, each with ``--help``."""

from __future__ import annotations

import argparse
import json
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
    from .mnist import load_mnist, scale_pixels
    from .modelfile import save_model
    from .network import mlp, parse_sizes
    from .train import evaluate, train_classifier

    sizes = parse_sizes(args.arch)
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
    from .modelfile import load_model_with_meta

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
    p.add_argument("--heatmap", metavar="PNG", help="also save heatmaps (red +, blue -)")
    p.add_argument("--image-shape", help="HxW for heatmaps (default: from the input, or square)")
    _add_method_options(p)
    p.set_defaults(func=_cmd_explain)


def _add_method_options(p: argparse.ArgumentParser) -> None:
    """Rule, rule-map, sensitivity and Taylor options shared by explain and verify."""
    rules = p.add_argument_group("LRP rule options (for a single rule; see --rules for maps)")
    rules.add_argument("--eps", type=float, help="stabilizer epsilon (> 0)")
    rules.add_argument(
        "--stabilizer",
        dest="stabilizer_kind",
        choices=("signed", "unsigned", "zero_only", "relative"),
        help="how eps enters the denominator (default signed: z + eps sign(z))",
    )
    rules.add_argument("--alpha", type=float, help="alpha of the alpha-beta rule")
    rules.add_argument("--beta", type=float, help="beta of the alpha-beta rule")
    rules.add_argument(
        "--bias",
        choices=("none", "split", "full", "squared", "raw"),
        help="bias handling in the denominators (rule-specific values)",
    )
    rules.add_argument(
        "--inputs",
        choices=("nonnegative", "split", "weights"),
        help="handling of negative inputs (alpha-beta, z+, gamma)",
    )
    rules.add_argument("--gamma", type=float, help="gamma of the gamma rule (>= 0)")
    rules.add_argument("--gamma-variant", dest="variant", choices=("original", "generalized"))
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
        choices=("logit", "onehot"),
        help="LRP output relevance: f(x) onehot(c) (logit, the paper) or onehot(c) (as Zennit is "
        "usually called); default: the preset's",
    )
    other = p.add_argument_group("gradient and Taylor options")
    other.add_argument(
        "--sensitivity-output",
        dest="output",
        choices=("squared", "raw", "abs"),
        help="sensitivity: (df/dx)^2 (eq. 4.1), raw df/dx, or |df/dx|; default: the preset's "
        "(paper: squared)",
    )
    other.add_argument(
        "--root",
        choices=("limit", "search"),
        help="taylor: root point (default limit, for homogeneous nets)",
    )
    other.add_argument(
        "--direction",
        choices=("segment", "gradient"),
        help="taylor search: toward the origin (segment) or down the gradient",
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


def _load_input(path: str, net) -> tuple[np.ndarray, tuple[int, ...]]:
    """Load INPUT.npy as a batch for ``net``; return it and the shape to give the relevances."""
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"input file {path!r} does not exist") from None
    except (ValueError, OSError) as exc:
        raise ValueError(f"input {path!r} is not a readable .npy array ({exc})") from None
    d = int(np.prod(net.input_shape))
    if x.ndim == 0 or x.size % d or x.size == 0:
        raise ValueError(
            f"input {path!r} has shape {x.shape}; expected (n, "
            f"{', '.join(map(str, net.input_shape))}) or anything of n x {d} values"
        )
    # one sample, a batch, or images: any array of n x d values is n samples
    return net.check_input(x.reshape(-1, *net.input_shape), f"input {path!r}"), x.shape


def _cmd_explain(args: argparse.Namespace) -> int:
    from .atomic import atomic_write
    from .explain.methods import GRADIENT_METHODS, explain
    from .explain.output import check_explainable
    from .explain.presets import preset
    from .explain.rules import RULES

    net = _load_net(args.model)
    check_explainable(net)
    x, shape = _load_input(args.input, net)
    target, options, rules = _method_request(args, len(x))
    if args.budget and args.method in GRADIENT_METHODS:
        raise ValueError(f"--budget applies to LRP methods, not {args.method!r}")
    result = explain(net, x, args.method, target=target, rules=rules, preset=args.preset, **options)
    with atomic_write(args.out) as f:
        np.save(f, result.R.reshape(shape))
    f_x = result.f
    R_sum = result.R.reshape(len(f_x), -1).sum(axis=1)
    print(f"{args.method}: {len(f_x)} sample(s), target {_describe_target(result.target)}")
    if rules is not None:
        print(rules.table(net))
    elif args.method in RULES:
        print(f"rule on every dense layer: {result.budget.layers[0][1]}")
    if result.budget is not None and options.get("seed", preset(args.preset).seed) == "onehot":
        print("output seeded with 1 (one-hot), not f(x): each sample's sum R is relative to 1")
    for i in range(min(len(f_x), 10)):
        print(f"  sample {i}: f(x) = {f_x[i]:.6g}, sum R = {R_sum[i]:.6g}")
    if hasattr(result, "residual"):
        print(
            f"  taylor: max |f(root)| = {np.abs(result.f_root).max():.3g}, "
            f"max |residual| = {np.abs(result.residual).max():.3g}"
        )
    if args.budget:
        print(result.budget.table(0 if len(f_x) == 1 else None))
    print(f"wrote {args.out}")
    if args.heatmap:
        _save_heatmap(args, x, result.R, shape)
    return 0


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


def _load_net(path: str):
    """A refimpl model file (.npz), or an ONNX graph (.onnx, needs the extra [onnx])."""
    if path.endswith(".onnx"):
        from .interop.onnx import load_onnx

        return load_onnx(path)
    from .modelfile import load_model

    return load_model(path)


def _describe_target(c) -> str:
    if c is None:
        return "given R_out"
    c = np.asarray(c)
    return str(c[:10].tolist()) + (" ..." if c.size > 10 else "")


def _save_heatmap(args, x, R, shape) -> None:
    from .heatmap import save_heatmaps

    out = save_heatmaps(
        R, args.heatmap, image_shape=_image_shape(args.image_shape, shape), images=x
    )
    print(f"wrote {out}")


def _image_shape(text: str | None, array_shape: tuple[int, ...]) -> tuple[int, int]:
    """``HxW`` from ``--image-shape``, else the last two axes of a 3-d array, else a square."""
    if text is not None:
        try:
            h, w = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise ValueError(f"--image-shape must look like 28x28, got {text!r}") from None
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
    from .heatmap import save_heatmaps, symmetric_limit

    R = _load_npy(args.relevance, "relevance")
    image_shape = _image_shape(args.image_shape, R.shape)
    R = R.reshape(len(R), -1) if R.ndim > 1 else R[None]
    x = None if args.input is None else _load_npy(args.input, "input")
    scale = symmetric_limit(R) if args.shared_scale else None
    out = save_heatmaps(R, args.out, image_shape=image_shape, images=x, scale=scale)
    print(f"wrote {out}")
    return 0


def _load_npy(path: str, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file {path!r} does not exist") from None
    except (ValueError, OSError) as exc:
        raise ValueError(f"{what} {path!r} is not a readable .npy array ({exc})") from None


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
    p.add_argument("--beta", type=float, default=0.05, help="expert weight beta of eq. 3.2")
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
    from .am_report import AMSettings, ensure_models, measure, report, run_variants, save_grid
    from .mnist import load_mnist

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
    data = load_mnist(args.data, download=not args.no_download)
    models = ensure_models(args.workdir, data, seed=args.seed, classifier_path=args.classifier)
    results = run_variants(models, data, settings, seed=args.seed)
    table = report(measure(results, models, data))
    print(table)
    if args.table:
        from .atomic import atomic_write

        with atomic_write(args.table) as f:
            f.write((table + "\n").encode())
        print(f"wrote {args.table}")
    print(f"wrote {save_grid(results, args.out)}")
    return 0


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
        "that explains the difference. Exit status: 0 match, 1 mismatch, 2 usage error, 3 "
        "internal error.",
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
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--no-diagnosis", action="store_true", help="on a mismatch, do not search conventions"
    )
    _add_method_options(p)
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    from .explain.output import check_explainable
    from .verify import verify

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
    from .conformance import export_conformance

    manifest = export_conformance(
        args.dir, overwrite=args.force, progress=lambda line: print(line, file=sys.stderr)
    )
    print(f"wrote {manifest}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        print(f"refimpl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - verify's 1 must mean "mismatch", never "crashed"
        if args.command != "verify":
            raise
        print(f"refimpl verify: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
