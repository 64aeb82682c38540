"""A small GAN (paper sec. 2.4) and an autoencoder decoder: two code-to-image maps ``g(z)``.

Both expose the same interface, :class:`CodeModel` — ``z_dim``, ``generate(z)``, ``forward(z)``
and ``backward(cache, dx) -> dz`` — so activation maximization in code space (eq. 3.3) works
with either. The networks are :class:`refimpl.nn.network.Sequential` stacks of the same dense
layers as the classifier, with hand-written backward passes.

GAN training (eq. 2.10, the usual non-saturating form): the discriminator ``D`` minimizes the
binary cross-entropy of real images (label ``real_label`` = 0.9, label smoothing) and generated
images (label 0); the generator minimizes ``-log D(g(z))``. Every pass keeps its own cache: the
real and the fake pass through ``D`` never share activations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .._checks import check_int
from ..nn.layers import Dense, LeakyReLU, Tanh, log_softmax
from ..nn.losses import binary_cross_entropy_with_logits
from ..nn.modelfile import ModelFileError, decode_model, encode_model, register_kind
from ..nn.network import Sequential, mlp
from ..nn.optim import Adam


class CodeModel:
    """A map ``g`` from codes ``z`` (n, z_dim) to images (n, d), with its backward pass."""

    generator: Sequential

    @property
    def z_dim(self) -> int:
        return self.generator.input_shape[0]

    def generate(self, z: np.ndarray) -> np.ndarray:
        """``g(z)`` for a batch of codes."""
        return self.generator(self.generator.check_input(z, "z"))

    def forward(self, z: np.ndarray):
        """``g(z)`` and the cache for :meth:`backward`."""
        return self.generator.forward(z)

    def backward(self, cache, dx: np.ndarray) -> np.ndarray:
        """``dz`` for an upstream gradient ``dx`` with respect to the images."""
        return self.generator.backward(cache, dx)[0]

    def sample_codes(self, n: int, rng) -> np.ndarray:
        """Codes from the prior ``N(0, I)``."""
        rng = np.random.default_rng(rng)
        return rng.standard_normal((check_int(n, "n", low=1), self.z_dim)).astype(
            self.generator.dtype
        )

    def sample(self, n: int, rng=0) -> np.ndarray:
        """``n`` images ``g(z)``, ``z ~ N(0, I)``."""
        return self.generate(self.sample_codes(n, rng))


def _leaky_mlp(sizes, rng, out_activation, slope=0.2) -> Sequential:
    layers = []
    rng = np.random.default_rng(rng)
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        W = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / ((1 + slope**2) * n_in))
        layers.append(Dense(W, np.zeros(n_out)))
        if i < len(sizes) - 2:
            layers.append(LeakyReLU(slope))
    if out_activation is not None:
        layers.append(out_activation)
    return Sequential(layers)


class GAN(CodeModel):
    """Generator ``g: z -> x`` (tanh output in [-1, 1]) and discriminator ``D: x -> logit``.

    Parameters
    ----------
    generator : Sequential
        ``z_dim -> d``.
    discriminator : Sequential
        ``d -> 1`` (a logit).
    """

    def __init__(self, generator: Sequential, discriminator: Sequential):
        if generator.output_shape != discriminator.input_shape:
            raise ValueError(
                f"generator output {generator.output_shape} must match discriminator input "
                f"{discriminator.input_shape}"
            )
        if discriminator.output_shape != (1,):
            raise ValueError(
                f"discriminator must output one logit, got {discriminator.output_shape}"
            )
        self.generator = generator
        self.discriminator = discriminator

    @classmethod
    def build(
        cls, z_dim: int = 32, hidden_g=(256, 512), hidden_d=(512, 256), d: int = 784, rng=0
    ) -> GAN:
        """The MNIST recipe: G z-256-512-784 (LeakyReLU 0.2, tanh), D 784-512-256-1."""
        rng = np.random.default_rng(rng)
        g = _leaky_mlp([check_int(z_dim, "z_dim", low=1), *hidden_g, d], rng, Tanh())
        disc = _leaky_mlp([d, *hidden_d, 1], rng, None)
        return cls(g, disc)

    def summary(self) -> str:
        return (
            "generator:\n"
            + self.generator.summary()
            + "\ndiscriminator:\n"
            + self.discriminator.summary()
        )


class Decoder(CodeModel):
    """The decoder of an autoencoder, used as ``g`` (the encoder is kept for class code means)."""

    def __init__(self, decoder: Sequential, encoder: Sequential):
        if (
            encoder.output_shape != decoder.input_shape
            or decoder.output_shape != encoder.input_shape
        ):
            raise ValueError(
                f"encoder {encoder.input_shape}->{encoder.output_shape} and decoder "
                f"{decoder.input_shape}->{decoder.output_shape} do not fit"
            )
        self.generator = decoder
        self.encoder = encoder

    @classmethod
    def build(cls, z_dim: int = 32, hidden=(512, 256), d: int = 784, rng=0) -> Decoder:
        rng = np.random.default_rng(rng)
        enc = mlp([d, *hidden, z_dim], rng=rng)
        dec = mlp([z_dim, *reversed(hidden), d], rng=rng)
        dec.layers.append(Tanh())
        return cls(Sequential(dec.layers), enc)

    def encode(self, x: np.ndarray) -> np.ndarray:
        return self.encoder(self.encoder.check_input(x))

    def summary(self) -> str:
        return "decoder (g):\n" + self.generator.summary() + "\nencoder:\n" + self.encoder.summary()


@dataclass
class GanHistory:
    """Per-epoch mean losses of the discriminator and the generator."""

    d_loss: list[float] = field(default_factory=list)
    g_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def discriminator_step(gan: GAN, x_real: np.ndarray, z: np.ndarray, real_label: float):
    """Loss and parameter gradients of D on one real and one fake batch (separate caches)."""
    d = gan.discriminator
    fake, _ = gan.generator.forward(z)
    logit_real, cache_real = d.forward(x_real)
    logit_fake, cache_fake = d.forward(fake)
    loss_real, dl_real = binary_cross_entropy_with_logits(logit_real, real_label)
    loss_fake, dl_fake = binary_cross_entropy_with_logits(logit_fake, 0.0)
    _, g_real = d.backward(cache_real, dl_real)
    _, g_fake = d.backward(cache_fake, dl_fake)
    return loss_real + loss_fake, [a + b for a, b in zip(g_real, g_fake, strict=True)]


def generator_step(gan: GAN, z: np.ndarray):
    """Non-saturating generator loss ``-mean log D(g(z))`` and its gradients w.r.t. g's params."""
    fake, cache_g = gan.generator.forward(z)
    logit, cache_d = gan.discriminator.forward(fake)
    loss, dlogit = binary_cross_entropy_with_logits(logit, 1.0)
    dfake, _ = gan.discriminator.backward(cache_d, dlogit)
    _, grads = gan.generator.backward(cache_g, dfake)
    return loss, grads


def train_gan(
    gan: GAN,
    x: np.ndarray,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 2e-4,
    beta1: float = 0.5,
    real_label: float = 0.9,
    rng=0,
    log: Callable[[str], None] | None = print,
) -> GanHistory:
    """Train a GAN on images ``x`` (n, d) in [-1, 1] with Adam (Adam(2e-4, beta1=0.5) recipe)."""
    x = gan.discriminator.check_input(x)
    epochs = check_int(epochs, "epochs", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    if not 0 < real_label <= 1:
        raise ValueError(f"real_label must be in (0, 1], got {real_label}")
    rng = np.random.default_rng(rng)
    opt_d = Adam(gan.discriminator.parameters(), lr=lr, beta1=beta1)
    opt_g = Adam(gan.generator.parameters(), lr=lr, beta1=beta1)
    hist = GanHistory()
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(len(x))
        d_sum = g_sum = 0.0
        steps = 0
        for b in range(0, len(x) - batch_size + 1, batch_size):
            xb = x[order[b : b + batch_size]]
            loss_d, grads_d = discriminator_step(
                gan, xb, gan.sample_codes(batch_size, rng), real_label
            )
            opt_d.step(grads_d)
            loss_g, grads_g = generator_step(gan, gan.sample_codes(batch_size, rng))
            opt_g.step(grads_g)
            d_sum, g_sum, steps = d_sum + loss_d, g_sum + loss_g, steps + 1
        seconds = time.perf_counter() - start
        hist.d_loss.append(d_sum / steps)
        hist.g_loss.append(g_sum / steps)
        hist.seconds.append(seconds)
        if log:
            log(
                f"GAN epoch {epoch:3d}/{epochs}  D loss {d_sum / steps:.4f}  "
                f"G loss {g_sum / steps:.4f}  {steps * batch_size / seconds:,.0f} samples/s"
            )
    return hist


def train_autoencoder(
    model: Decoder,
    x: np.ndarray,
    *,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    rng=0,
    log: Callable[[str], None] | None = print,
) -> list[float]:
    """Train encoder and decoder on the mean squared reconstruction error; return epoch losses."""
    x = model.encoder.check_input(x)
    rng = np.random.default_rng(rng)
    params = model.encoder.parameters() + model.generator.parameters()
    opt = Adam(params, lr=lr)
    losses = []
    for epoch in range(1, check_int(epochs, "epochs", low=1) + 1):
        start = time.perf_counter()
        order = rng.permutation(len(x))
        total = 0.0
        for b in range(0, len(x), batch_size):
            xb = x[order[b : b + batch_size]]
            z, cache_e = model.encoder.forward(xb)
            xr, cache_d = model.generator.forward(z)
            diff = xr - xb
            total += float((diff * diff).sum())
            dz, grads_d = model.generator.backward(cache_d, 2 * diff / diff.size)
            _, grads_e = model.encoder.backward(cache_e, dz)
            opt.step(grads_e + grads_d)
        losses.append(total / x.size)
        if log:
            log(
                f"autoencoder epoch {epoch:3d}  reconstruction MSE {losses[-1]:.4f}  "
                f"{len(x) / (time.perf_counter() - start):,.0f} samples/s"
            )
    return losses


def classifier_score(classifier: Sequential, images: np.ndarray) -> tuple[float, np.ndarray]:
    """``exp(mean_x KL(p(y|x) || p(y)))`` with the classifier's softmax, and the class counts.

    The "inception score" computed with an MNIST classifier: 1 for useless samples, 10 for
    confidently classified samples spread evenly over the 10 classes.
    """
    z = classifier(classifier.check_input(images))
    logp = log_softmax(z)
    p = np.exp(logp)
    log_marginal = np.log(p.mean(axis=0))
    kl = (p * (logp - log_marginal)).sum(axis=1)
    counts = np.bincount(z.argmax(axis=1), minlength=z.shape[1])
    return float(np.exp(kl.mean())), counts


def class_code_means(
    model: CodeModel, classifier: Sequential, n: int = 5000, rng=0, x=None, confidence=0.99
) -> np.ndarray:
    """Mean code of each class (C, z_dim), over codes whose image ``g(z)`` the classifier
    assigns to the class with probability >= ``confidence`` (all codes of the class if none
    does). Codes: encoder codes of ``x`` for a :class:`Decoder`, else prior samples."""
    if isinstance(model, Decoder) and x is not None:
        z = model.encode(x)
    else:
        z = model.sample_codes(n, rng)
    logits = classifier(model.generate(z))
    y = logits.argmax(axis=1)
    p = np.exp(log_softmax(logits).max(axis=1))
    n_classes = classifier.output_shape[0]
    missing = [c for c in range(n_classes) if not np.any(y == c)]
    if missing:
        raise ValueError(f"no code generated an image of class(es) {missing}; increase n")
    means = []
    for c in range(n_classes):  # C classes, not samples: the loop is over 10 rows
        sure = (y == c) & (p >= confidence)
        means.append(z[sure if sure.any() else y == c].mean(axis=0))
    return np.stack(means)


# --- model file ----------------------------------------------------------------------------


def _encode_pair(kind, first, second):
    def encode(model, prefix):
        spec = {"kind": kind}
        arrays = {}
        for name in (first, second):
            net = model.generator if name in ("generator", "decoder") else getattr(model, name)
            sub, arr = encode_model(net, f"{prefix}{name}.")
            spec[name] = sub
            arrays.update(arr)
        return spec, arrays

    return encode


def _decode_pair(cls, first, second):
    def decode(spec, arrays, prefix):
        nets = []
        for name in (first, second):
            if name not in spec:
                raise ModelFileError(f"{prefix}{cls.__name__} spec is missing {name!r}")
            nets.append(decode_model(spec[name], arrays, f"{prefix}{name}."))
        try:
            return cls(*nets)
        except ValueError as exc:
            raise ModelFileError(f"{prefix}{cls.__name__}: {exc}") from None

    return decode


register_kind(
    "gan",
    GAN,
    _encode_pair("gan", "generator", "discriminator"),
    _decode_pair(GAN, "generator", "discriminator"),
)
register_kind(
    "decoder",
    Decoder,
    _encode_pair("decoder", "decoder", "encoder"),
    _decode_pair(Decoder, "decoder", "encoder"),
)
