"""``refimpl explain`` (streamed in batches) and ``refimpl heatmap``."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..files import load_npy
from .common import (
    add_method_options,
    add_preset_option,
    check_outputs,
    describe_target,
    load_input,
    load_net,
    method_request,
    parse_image_shape,
    save_heatmap,
)


def _add_explain(sub: argparse._SubParsersAction) -> None:
    from ..explain.methods import METHODS

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
    add_preset_option(p)
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
    add_method_options(p)
    p.set_defaults(func=_cmd_explain)


def _cmd_explain(args: argparse.Namespace) -> int:
    from .._checks import check_int
    from ..atomic import atomic_write
    from ..explain.output import check_explainable
    from ..explain.stream import BatchSummary, Progress, explain_batches

    check_int(args.batch_size, "--batch-size", low=1)
    check_outputs(args, "out", "heatmap")
    net = load_net(args.model)
    check_explainable(net)
    x, shape = load_input(args.input, net, check=False)  # each batch is checked when read
    target, options, rules = method_request(args, len(x))
    image_shape = parse_image_shape(args.image_shape, shape) if args.heatmap else None
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
        save_heatmap(args.heatmap, xs, Rs, image_shape)
    return 0


HEATMAP_SAMPLES = 64  # explain --heatmap draws at most this many samples (the first ones)


def _write_npy_header(f, shape: tuple[int, ...], dtype) -> None:
    """The .npy header of a C-order array of ``shape`` and ``dtype``, data to follow."""
    from numpy.lib import format as npy_format

    header = {"descr": npy_format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
    npy_format.write_array_header_1_0(f, {**header, "shape": tuple(shape)})  # as np.save


def _print_explanation(args, net, summary, rules, options) -> None:
    """What was explained, per sample f(x) and sum R, and the budget (or what applies)."""
    from ..explain.presets import preset
    from ..explain.rules import RULES

    f_x, R_sum, budget = summary.get("f"), summary.get("R_sum"), summary.budget
    target = summary.get("target")
    print(f"{args.method}: {len(f_x)} sample(s), target {describe_target(target)}")
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
        from ..explain.taylor import describe_root_failures

        print(
            f"warning: {describe_root_failures(summary.failures, _ROOT_HINT)}. "
            "Their relevances are written as 0 "
            f"(samples {sorted(summary.failures)[:20]}); the other "
            f"{int(ok.sum())} sample(s) are explained.",
            file=sys.stderr,
        )


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
    from ..explain.heatmap import save_heatmaps, symmetric_limit

    check_outputs(args, "out")
    R = load_npy(args.relevance, "relevance")
    if R.ndim == 0 or R.size == 0:
        raise ValueError(
            f"relevance {args.relevance!r} has shape {R.shape}; expected (n, d), (n, h, w) or "
            "one map (d,)"
        )
    image_shape = parse_image_shape(args.image_shape, R.shape)
    R = R.reshape(len(R), -1) if R.ndim > 1 else R[None]
    x = None if args.input is None else load_npy(args.input, "input")
    scale = symmetric_limit(R) if args.shared_scale else None
    out = save_heatmaps(R, args.out, image_shape=image_shape, images=x, scale=scale)
    print(f"wrote {out}")
    return 0
