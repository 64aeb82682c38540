"""``refimpl verify`` and ``refimpl conformance export``."""

from __future__ import annotations

import argparse
import json
import sys

from ..files import load_npy
from .common import add_method_options, add_preset_option, load_input, load_net, method_request


def _add_verify(sub: argparse._SubParsersAction) -> None:
    from ..explain.methods import METHODS

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
    add_preset_option(p)
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
    add_method_options(p)
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    from ..explain.output import check_explainable
    from ..verify.check import verify

    net = load_net(args.model)
    check_explainable(net)
    x, _ = load_input(args.input, net)
    R = load_npy(args.candidate, "candidate")
    target, options, rules = method_request(args, len(x))
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
    from ..verify.conformance import export_conformance

    manifest = export_conformance(
        args.dir, overwrite=args.force, progress=lambda line: print(line, file=sys.stderr)
    )
    print(f"wrote {manifest}")
    return 0
