"""``refimpl train`` and ``refimpl info``."""

from __future__ import annotations

import argparse
import json
import time

from .. import __version__
from .common import check_outputs

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
    from ..data.mnist import load_mnist, scale_pixels
    from ..nn.modelfile import save_model
    from ..nn.network import mlp, parse_sizes
    from ..nn.train import evaluate, train_classifier

    sizes = parse_sizes(args.arch)
    _check_train_options(args)
    check_outputs(args, "out")
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
    from .._checks import check_int, check_positive

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
    from ..nn.modelfile import load_model_with_meta

    model, meta = load_model_with_meta(args.model)
    print(f"{args.model}: {type(model).__name__}")
    print(model.summary())
    if args.json:
        print(json.dumps(meta, indent=2))
    else:
        for key, value in meta.items():
            print(f"  {key}: {value}")
    return 0
