"""The ``refimpl`` command line: one subcommand per job, each with ``--help``.

Each subcommand lives in a module of its own (:mod:`.train`, :mod:`.explain`, :mod:`.am`,
:mod:`.check`); :mod:`.common` holds what they share. This module builds the parser and runs
the command, mapping errors to exit codes."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from .. import __version__
from .._malloc import tune_malloc
from .am import _add_am
from .check import _add_conformance, _add_verify
from .explain import _add_explain, _add_heatmap
from .train import _add_info, _add_train


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
