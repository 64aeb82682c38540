"""Verification of other implementations (``refimpl verify``): the reference comparison with its
rounding allowance (:mod:`.comparison`), the diagnosis of conventions (:mod:`.diagnosis`), the
report (:mod:`.report`), the entry point :func:`verify` (:mod:`.check`) and the conformance set
(:mod:`.conformance`)."""

from .check import verify
from .comparison import DEFAULT_RTOL, Comparison, compare
from .report import Report

__all__ = ["DEFAULT_RTOL", "Comparison", "Report", "compare", "verify"]
