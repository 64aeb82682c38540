"""Download the four MNIST IDX files and verify their checksums (see ``refimpl.data.fetch``).

Usage: ``python data_scripts/fetch_mnist.py [--dest DIR] [--mirror URL ...] [--timeout S]``.
By default the files go to the user cache directory, where ``refimpl.data.mnist.load_mnist`` looks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refimpl.data.fetch import DEFAULT_TIMEOUT, MIRRORS, default_cache_dir, fetch_mnist


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    argparse.Namespace
        With ``dest`` (Path), ``mirror`` (list of str) and ``timeout`` (float).
    """
    parser = argparse.ArgumentParser(
        description="Download MNIST (4 IDX .gz files), verify MD5 and SHA-256, write atomically. "
        "Files already present with matching checksums are skipped.",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=default_cache_dir(),
        help="target directory (default: %(default)s, where refimpl.data.mnist.load_mnist looks)",
    )
    parser.add_argument(
        "--mirror",
        action="append",
        metavar="URL",
        help="base URL ending with '/', tried in the order given; repeatable "
        f"(default: {' '.join(MIRRORS)})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds allowed for connecting and for each read (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the download; return the exit status (0 on success, 1 on failure).

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status.
    """
    args = parse_args(argv)
    try:
        paths = fetch_mnist(args.dest, mirrors=args.mirror or MIRRORS, timeout=args.timeout)
    except (OSError, ValueError) as exc:
        print(f"fetch_mnist: error: {exc}", file=sys.stderr)
        return 1
    print(f"MNIST ready in {paths[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
