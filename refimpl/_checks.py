"""Validation helpers for the public boundary: clear errors naming the argument and the value."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def as_float_array(x, name: str, *, ndim: int | None = None, dtype=None) -> np.ndarray:
    """Return ``x`` as a finite floating-point array, or raise naming ``name``.

    Parameters
    ----------
    x : array_like
        The value to check.
    name : str
        The argument's name, used in the error message.
    ndim : int, optional
        Required number of dimensions.
    dtype : numpy dtype, optional
        Convert to this float dtype (float32 or float64). By default floats keep their dtype and
        integers/bools become float64.
    """
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.integer)
        or arr.dtype == bool
    ):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if arr.dtype != bool and not _all_finite(arr):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); expected finite numbers")
    target = check_float_dtype(dtype, "dtype") if dtype is not None else None
    if target is None and arr.dtype not in FLOAT_DTYPES:
        target = np.dtype(np.float64)
    if target is not None and arr.dtype != target:
        with np.errstate(over="ignore"):
            cast = arr.astype(target)
        if not np.all(np.isfinite(cast)):
            big = float(np.max(np.abs(arr)))
            raise ValueError(
                f"{name} has values up to {big:.6g} in magnitude, which overflow {target} "
                f"(largest finite {np.finfo(target).max:.6g}); rescale {name} or use float64"
            )
        arr = cast
    return arr


def _all_finite(arr: np.ndarray) -> bool:
    """Whether every value is finite, in one pass when it is: a NaN or inf makes the sum
    non-finite; a sum that overflows from finite values is looked at closely."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = arr.sum()
    return bool(np.isfinite(total)) or bool(np.all(np.isfinite(arr)))


def nonfinite_rows(arr: np.ndarray) -> np.ndarray:
    """Indices of the samples (first axis) of ``arr`` that hold a NaN or an infinity."""
    flat = arr.reshape(len(arr), -1) if arr.ndim > 1 else arr.reshape(-1, 1)
    return np.flatnonzero(~np.isfinite(flat).all(axis=1))


def describe_samples(rows: np.ndarray, n: int | None = None, limit: int = 10) -> str:
    """``"sample 3"`` or ``"samples 3, 7, ... (12 of 64)"`` for a list of sample indices."""
    rows = [int(r) for r in rows]
    shown = ", ".join(map(str, rows[:limit])) + (", ..." if len(rows) > limit else "")
    of = f" ({len(rows)} of {n})" if n is not None and len(rows) > 1 else ""
    return f"sample{'s' if len(rows) > 1 else ''} {shown}{of}"


OVERFLOW = "inputs or weights too large for {dtype}"


def check_result(
    arr: np.ndarray, what: str, cause: str | Callable[[], str] = OVERFLOW
) -> np.ndarray:
    """Return ``arr`` if it is finite, else raise naming ``what``, the samples and the ``cause``.

    Used on computed quantities (activations, gradients, relevances) so that finite inputs that
    overflow give a clear error instead of NaN or inf in a result. ``cause`` is formatted only
    when the check fails: a callable is called, and ``{dtype}`` becomes ``arr``'s dtype.
    """
    if np.all(np.isfinite(arr)):
        return arr
    cause = (cause() if callable(cause) else cause).replace("{dtype}", str(arr.dtype))
    rows = nonfinite_rows(arr) if np.ndim(arr) else np.array([0])
    kinds = "NaN" if np.isnan(arr).any() else "inf"
    if kinds == "NaN" and np.isinf(arr).any():
        kinds = "NaN and inf"
    where = describe_samples(rows, len(arr) if np.ndim(arr) else None)
    raise ValueError(f"{what} is not finite ({kinds}) for {where}: {cause}")


def check_float_dtype(dtype, name: str = "dtype") -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise ``ValueError``."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got {dt}")
    return dt


def _as_real(value, name: str) -> float:
    """``value`` as float if it is a real scalar (not a bool or a string), else ``TypeError``."""
    if isinstance(value, (bool, np.bool_, str, bytes)) or np.ndim(value) != 0:
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}") from exc


def check_finite(value, name: str) -> float:
    """Return ``value`` as float if it is a finite real number, else raise."""
    v = _as_real(value, name)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def check_positive(value, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as float if it is finite and > 0 (or >= 0), else raise ``ValueError``."""
    v = _as_real(value, name)
    ok = np.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return v


def check_int(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as int if it is an integer in ``[low, high]``, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v
