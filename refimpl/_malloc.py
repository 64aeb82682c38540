"""Keep glibc from returning large NumPy temporaries to the OS after every step.

With glibc's defaults, arrays above the mmap threshold are mapped and unmapped on every
allocation, and each training step pays page faults for them: on the 2-core development machines
training ran 1.5x slower in float64 (``benchmarks/bench_train.py``). Raising
the mmap and trim thresholds, as ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` in the
environment would, removes that. It changes speed only, never results; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_MAX = 32 * 1024 * 1024  # glibc's largest accepted mmap threshold on 64-bit systems


def tune_malloc() -> bool:
    """Raise glibc's mmap/trim thresholds for this process; return whether it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    )
