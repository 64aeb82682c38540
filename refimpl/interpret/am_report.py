"""``refimpl am``: train or load the models, run the three AM variants for every digit, measure
the prototypes and draw the grid (rows: eq. 3.1, 3.2, 3.3; columns: digits 0-9)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import check_int, check_positive
from .._figures import pyplot, save_png
from ..data.mnist import MnistData, scale_pixels
from ..nn.modelfile import load_model, save_model
from ..nn.network import mlp
from ..nn.train import evaluate, train_classifier
from .am import AMResult, am_code, am_expert, am_l2
from .am_quality import QualityRow, prototype_quality, quality_table
from .gan import GAN, class_code_means, classifier_score, train_gan
from .grbm import GaussianRBM, train_grbm

# the values of AMSettings' fixed-choice options, read by its validation and by `refimpl am`
AM_CHOICES = {
    "code_ref": ("class-mean", "paper"),
    "kind": ("log_softmax", "logit"),
    "method": ("gradient", "lbfgs"),
    "init": ("mean", "black", "grey"),
}


@dataclass
class AMSettings:
    """Objective weights and optimizer settings of the three variants (tuned on MNIST)."""

    lam: float = 0.05  # eq. 3.1
    beta: float = 0.03  # eq. 3.2 (README Interpretation: 0.05 and 0.1 lose the "1")
    code_lam: float = 0.01  # eq. 3.3
    code_ref: str = "class-mean"  # or "paper": lambda ||z||^2
    kind: str = "logit"  # the raw logit keeps pushing where log p(w_c|x) saturates
    steps: int = 1000
    lr: float = 0.05
    method: str = "gradient"
    init: str = "mean"  # pixel-space start: the data mean, "black" (-1) or "grey" (0)

    def __post_init__(self) -> None:
        """Validate every setting at once, before any model is trained."""
        for name in ("lam", "beta", "code_lam"):
            check_positive(getattr(self, name), name, allow_zero=True)
        check_positive(self.lr, "lr")
        check_int(self.steps, "steps", low=1)
        for name, allowed in AM_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")


def _train_or_load(path: Path, train: Callable, log) -> object:
    if path.exists():
        log(f"loading {path}")
        return load_model(path)
    model = train()
    save_model(path, model)
    log(f"wrote {path}")
    return model


def ensure_models(
    workdir: str | os.PathLike, data: MnistData, *, seed: int = 0, classifier_path=None, log=print
) -> dict:
    """Load the four models from ``workdir`` (or given paths), training the missing ones."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    x = scale_pixels(data.x_train)
    xt = scale_pixels(data.x_test)

    def classifier(sizes, s, epochs):
        def train():
            log(f"training classifier {'-'.join(map(str, sizes))} (seed {s})")
            net = mlp(sizes, rng=s)
            train_classifier(
                net, x, data.y_train, epochs=epochs, lr_decay=0.96, shift=2, rng=s, log=log
            )
            log(f"  held-out accuracy {evaluate(net, xt, data.y_test)[1]:.2%}")
            return net

        return train

    models = {
        "classifier": _train_or_load(
            Path(classifier_path or work / "classifier.npz"),
            classifier([784, 512, 256, 10], seed, 80),
            log,
        ),
        "second": _train_or_load(
            work / "classifier2.npz", classifier([784, 512, 256, 10], seed + 1, 80), log
        ),
    }

    def rbm():
        log("training Gaussian RBM (500 hidden, CD-5, 25 epochs)")
        model = GaussianRBM.from_data(x, n_hidden=500, sigma=0.5, rng=seed)
        train_grbm(model, x, epochs=25, k=5, rng=seed, log=log)
        return model

    def gan():
        log("training GAN (z=32)")
        model = GAN.build(rng=seed)
        train_gan(model, x, epochs=40, rng=seed, log=log)
        return model

    models["expert"] = _train_or_load(work / "grbm.npz", rbm, log)
    models["gan"] = _train_or_load(work / "gan.npz", gan, log)
    score, counts = classifier_score(models["classifier"], models["gan"].sample(1000, rng=seed))
    log(f"GAN classifier score {score:.2f} on 1,000 samples; class counts {counts.tolist()}")
    return models


def run_variants(
    models: dict, data: MnistData, settings: AMSettings, seed: int = 0
) -> dict[str, AMResult]:
    """Prototypes of digits 0-9 by eq. 3.1, 3.2 and 3.3."""
    clf, s = models["classifier"], settings
    x = scale_pixels(data.x_train)
    starts = {
        "mean": x.mean(axis=0),
        "black": np.full(x.shape[1], -1.0),
        "grey": np.zeros(x.shape[1]),
    }
    x0 = starts[s.init]
    opts = {"steps": s.steps, "lr": s.lr, "method": s.method, "kind": s.kind}
    z_ref = None
    if s.code_ref == "class-mean":
        z_ref = class_code_means(models["gan"], clf, n=5000, rng=seed)
    return {
        "l2 (eq. 3.1)": am_l2(clf, lam=s.lam, x0=x0, **opts),
        "expert (eq. 3.2)": am_expert(clf, models["expert"], beta=s.beta, x0=x0, **opts),
        "code space (eq. 3.3)": am_code(
            clf, models["gan"], lam=s.code_lam, z_ref=z_ref, z0=z_ref, **opts
        ),
    }


def measure(results: dict[str, AMResult], models: dict, data: MnistData) -> list[QualityRow]:
    x = scale_pixels(data.x_train)
    c = np.arange(10)
    return [
        prototype_quality(name, r.x, c, models["classifier"], models["second"], models["expert"], x)
        for name, r in results.items()
    ]


def save_grid(results: dict[str, AMResult], path: str | os.PathLike) -> Path:
    """Rows: the variants; columns: digits 0-9; grey scale from -1 (black) to 1 (white)."""
    plt = pyplot()
    fig, axes = plt.subplots(
        len(results), 10, figsize=(12, 1.35 * len(results) + 0.3), squeeze=False
    )
    for row, (name, r) in enumerate(results.items()):
        for c in range(10):
            ax = axes[row, c]
            ax.imshow(r.x[c].reshape(28, 28), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(str(c))
        axes[row, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def report(rows: list[QualityRow]) -> str:
    return quality_table(rows)
