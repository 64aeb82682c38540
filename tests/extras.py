"""Optional extras in tests: skip with a message when missing, unless CI requires them.

``REFIMPL_REQUIRE_EXTRAS=1`` (set by ``.ci/run`` after installing ``.[torch,onnx]``) turns a
missing extra into an import error, so that the cross-checks cannot be skipped silently there.
"""

from __future__ import annotations

import importlib
import os

import pytest


def import_extra(module: str, extra: str):
    """Import ``module`` from the optional extra ``extra``, or skip the test module."""
    if os.environ.get("REFIMPL_REQUIRE_EXTRAS") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(
        module, reason=f"needs the optional extra [{extra}]: pip install '.[{extra}]'"
    )
