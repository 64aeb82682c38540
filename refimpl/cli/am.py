"""``refimpl am``: activation maximization three ways (eq. 3.1-3.3), measured."""

from __future__ import annotations

import argparse

from .common import check_outputs, check_workdir


def _add_am(sub: argparse._SubParsersAction) -> None:
    from ..interpret.am_report import AM_CHOICES  # the choices, as AMSettings validates them

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
        choices=AM_CHOICES["code_ref"],
        default="class-mean",
        help="eq. 3.3 regularizer toward class code means, or ||z||^2 (paper)",
    )
    p.add_argument(
        "--class-term",
        dest="kind",
        choices=AM_CHOICES["kind"],
        default="logit",
        help="the raw logit (default: sharper prototypes) or log p(w_c|x) (paper)",
    )
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    p.add_argument("--lr", type=float, default=0.05, help="initial step size (gradient ascent)")
    p.add_argument("--method", choices=AM_CHOICES["method"], default="gradient")
    p.add_argument(
        "--init",
        choices=AM_CHOICES["init"],
        default="mean",
        help="pixel-space start: the training mean (default), black or grey",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="directory with the MNIST IDX files")
    p.add_argument("--no-download", action="store_true", help="never try to download MNIST")
    p.set_defaults(func=_cmd_am)


def _cmd_am(args: argparse.Namespace) -> int:
    from ..data.mnist import load_mnist
    from ..interpret.am_report import (
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
    check_outputs(args, "out", "table")
    check_workdir(args.workdir)
    if args.classifier is not None:
        from ..files import check_input_file

        check_input_file(args.classifier, "--classifier")
    data = load_mnist(args.data, download=not args.no_download)
    models = ensure_models(args.workdir, data, seed=args.seed, classifier_path=args.classifier)
    results = run_variants(models, data, settings, seed=args.seed)
    table = report(measure(results, models, data))
    print(table)
    if args.table:
        from ..atomic import atomic_write

        with atomic_write(args.table, "--table") as f:
            f.write((table + "\n").encode())
        print(f"wrote {args.table}")
    print(f"wrote {save_grid(results, args.out)}")
    return 0
