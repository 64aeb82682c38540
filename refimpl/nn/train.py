"""Minibatch training and evaluation of a classifier (softmax cross-entropy on the logits)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .._checks import check_int, check_positive
from .losses import softmax_cross_entropy
from .network import Sequential
from .optim import SGD, Adam


def random_shift(
    x: np.ndarray,
    max_shift: int,
    rng: np.random.Generator,
    image_shape: tuple[int, int],
    fill: float,
) -> np.ndarray:
    """Translate each flattened image by its own random offset in ``[-max_shift, max_shift]^2``.

    Vacated pixels take the value ``fill`` (the background). Vectorized over the batch.
    """
    n = x.shape[0]
    h, w = image_shape
    s = max_shift
    padded = np.full((n, h + 2 * s, w + 2 * s), fill, dtype=x.dtype)
    padded[:, s : s + h, s : s + w] = x.reshape(n, h, w)
    dy, dx = rng.integers(0, 2 * s + 1, size=(2, n))
    rows = dy[:, None, None] + np.arange(h)[None, :, None]
    cols = dx[:, None, None] + np.arange(w)[None, None, :]
    return padded[np.arange(n)[:, None, None], rows, cols].reshape(n, h * w)


def evaluate(
    net: Sequential, x: np.ndarray, y: np.ndarray, batch_size: int = 1000
) -> tuple[float, float]:
    """Mean softmax cross-entropy and accuracy of ``net`` on ``(x, y)``."""
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        z = net(x[start : start + batch_size])
        yb = y[start : start + batch_size]
        loss, _ = softmax_cross_entropy(z, yb)
        total_loss += loss * len(yb)
        correct += int((z.argmax(axis=1) == yb).sum())
    return total_loss / len(x), correct / len(x)


@dataclass
class History:
    """Per-epoch training record."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def train_classifier(
    net: Sequential,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: str = "adam",
    lr: float = 1e-3,
    lr_decay: float = 1.0,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    shift: int = 0,
    image_shape: tuple[int, int] = (28, 28),
    fill: float = -1.0,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    rng: np.random.Generator | int | None = 0,
    log: Callable[[str], None] | None = print,
) -> History:
    """Train ``net`` in place by minibatch gradient descent on softmax cross-entropy.

    Parameters
    ----------
    net : Sequential
        Maps ``(n, d)`` inputs to ``(n, C)`` logits.
    x, y : ndarray
        Training inputs (cast to the net's dtype) and integer labels.
    epochs, batch_size : int
    optimizer : {"adam", "sgd"}
    lr : float
        Initial learning rate, multiplied by ``lr_decay`` after every epoch.
    shift : int
        Random-shift augmentation: each image moves by up to ``shift`` pixels in each direction
        (0 disables it); vacated pixels are set to ``fill``.
    x_val, y_val : ndarray, optional
        Evaluated after every epoch.
    rng : Generator or int
        Seed for shuffling and augmentation.
    log : callable, optional
        Receives one progress line per epoch (epoch, loss, accuracy, samples/s).

    Returns
    -------
    History
    """
    x = net.check_input(x)
    y = np.asarray(y)
    if y.shape != (len(x),):
        raise ValueError(f"y must have shape ({len(x)},), got {y.shape}")
    epochs = check_int(epochs, "epochs", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    shift = check_int(shift, "shift", low=0)
    lr_decay = check_positive(lr_decay, "lr_decay")
    if x_val is not None:
        x_val = net.check_input(x_val, "x_val")
    rng = np.random.default_rng(rng)
    params = net.parameters()
    if optimizer == "adam":
        opt = Adam(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")

    history = History()
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(len(x))
        total = 0.0
        for b in range(0, len(x), batch_size):
            idx = order[b : b + batch_size]
            xb = x[idx]
            if shift:
                xb = random_shift(xb, shift, rng, image_shape, fill)
            z, caches = net.forward(xb)
            loss, dz = softmax_cross_entropy(z, y[idx])
            _, grads = net.backward(caches, dz, input_grad=False)
            opt.step(grads)
            total += loss * len(idx)
        opt.lr *= lr_decay
        seconds = time.perf_counter() - start
        history.epoch.append(epoch)
        history.train_loss.append(total / len(x))
        history.seconds.append(seconds)
        line = (
            f"epoch {epoch:3d}/{epochs}  train loss {total / len(x):.4f}  "
            f"{len(x) / seconds:,.0f} samples/s"
        )
        if x_val is not None:
            vl, va = evaluate(net, x_val, y_val)
            history.val_loss.append(vl)
            history.val_accuracy.append(va)
            line += f"  held-out loss {vl:.4f}  accuracy {va:.2%}"
        if log:
            log(line)
    return history
