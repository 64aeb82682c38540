"""What is explained: the pre-softmax logit ``f(x)`` of a class, never the softmax (sec. 4)."""

from __future__ import annotations

import numpy as np

from ..nn.layers import LogSoftmax
from ..nn.network import Sequential

SEEDS = ("logit", "onehot")


def check_explainable(net: Sequential) -> None:
    """Refuse nets whose output is not logits (a final LogSoftmax) or is not a vector."""
    if not isinstance(net, Sequential):
        raise TypeError(f"net must be a refimpl Sequential, got {type(net).__name__}")
    if any(isinstance(layer, LogSoftmax) for layer in net.layers):
        raise ValueError(
            "the net contains a LogSoftmax layer: explanations start from the logits f(x), "
            "never from (log-)softmax outputs; remove the LogSoftmax layer"
        )
    if len(net.output_shape) != 1:
        raise ValueError(f"the net's output must be a vector of logits, got {net.output_shape}")


def target_indices(logits: np.ndarray, target) -> np.ndarray:
    """Explained class per sample: ``"predicted"`` (argmax), an int, or one int per sample."""
    n, n_out = logits.shape
    if isinstance(target, str):
        if target != "predicted":
            raise ValueError(
                f"target must be 'predicted', a class index or an array, got {target!r}"
            )
        return logits.argmax(axis=1)
    if type(target) is int:  # the common call: one class for the batch
        if not 0 <= target < n_out:
            raise ValueError(f"target must lie in [0, {n_out}), got {target}")
        return np.full(n, target, dtype=np.intp)
    t = np.asarray(target)
    if t.dtype == bool or not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"target must be an integer class index, got {target!r}")
    t = np.broadcast_to(t, (n,)) if t.ndim == 0 else t
    if t.shape != (n,):
        raise ValueError(f"target must be one index or {n} indices (one per sample), got {t.shape}")
    if t.min() < 0 or t.max() >= n_out:
        raise ValueError(
            f"target must lie in [0, {n_out}), got {t.min() if t.min() < 0 else t.max()}"
        )
    return t.astype(np.intp)


def output_relevance(
    logits: np.ndarray, target="predicted", R_out=None, seed: str = "logit", *, c=None
) -> np.ndarray:
    """Relevance at the output: ``R_L = f(x) onehot(c)`` (the logit of class c), or ``R_out``.

    Parameters
    ----------
    logits : ndarray (n, C)
    target : "predicted", int or int array (n,)
        Ignored when ``R_out`` is given.
    R_out : ndarray (n, C), optional
        A relevance vector chosen by the caller.
    seed : {"logit", "onehot"}
        ``logit`` (the paper, Captum): ``R_L = f(x) onehot(c)``; ``onehot`` (Zennit's usual
        call, ``attr_output=eye[c]``): ``R_L = onehot(c)``, so relevances are divided by f(x).
    c : ndarray (n,), optional
        ``target_indices(logits, target)``, when the caller has it already.
    """
    if seed not in SEEDS:
        raise ValueError(f"seed must be one of {SEEDS}, got {seed!r}")
    if R_out is not None:
        R_out = np.asarray(R_out, dtype=logits.dtype)
        if R_out.shape != logits.shape:
            raise ValueError(
                f"R_out must have the output's shape {logits.shape}, got {R_out.shape}"
            )
        if not np.all(np.isfinite(R_out)):
            raise ValueError("R_out contains NaN or inf")
        return R_out
    c = target_indices(logits, target) if c is None else c
    R = np.zeros_like(logits)
    rows = np.arange(len(c))
    R[rows, c] = logits[rows, c] if seed == "logit" else 1.0
    return R
