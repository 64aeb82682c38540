"""The GAN and the decoder: backward passes against finite differences, separate caches,
model files, the classifier-based score, determinism and bad parameters."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.interpret.gan import (
    GAN,
    Decoder,
    classifier_score,
    discriminator_step,
    generator_step,
    train_autoencoder,
    train_gan,
)
from refimpl.nn.layers import Dense
from refimpl.nn.losses import binary_cross_entropy_with_logits
from refimpl.nn.modelfile import load_model, save_model
from refimpl.nn.network import Sequential

from .fd import numeric_grad

ATOL, RTOL = 1e-6, 1e-5  # as tests/test_layers.py (central differences, step 1e-6)


def tiny_gan(seed=0):
    gan = GAN.build(z_dim=3, hidden_g=(5,), hidden_d=(6,), d=4, rng=seed)
    for net in (gan.generator, gan.discriminator):
        for p in net.parameters():
            p += np.random.default_rng(seed + 1).normal(0, 0.3, p.shape)
    return gan


@pytest.mark.parametrize("seed", range(5))
def test_discriminator_step_gradients_match_finite_differences(seed):
    gan = tiny_gan(seed)
    rng = np.random.default_rng(seed)
    x, z = rng.uniform(-1, 1, (4, 4)), rng.normal(size=(4, 3))

    def loss():
        return discriminator_step(gan, x, z, 0.9)[0]

    _, grads = discriminator_step(gan, x, z, 0.9)
    for p, g in zip(gan.discriminator.parameters(), grads, strict=True):
        np.testing.assert_allclose(g, numeric_grad(loss, p), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("seed", range(5))
def test_generator_step_gradients_match_finite_differences(seed):
    gan = tiny_gan(seed)
    z = np.random.default_rng(seed).normal(size=(4, 3))

    def loss():
        return generator_step(gan, z)[0]

    _, grads = generator_step(gan, z)
    for p, g in zip(gan.generator.parameters(), grads, strict=True):
        np.testing.assert_allclose(g, numeric_grad(loss, p), atol=ATOL, rtol=RTOL)


def test_discriminator_real_and_fake_passes_keep_separate_caches():
    """The known NumPy-GAN bug reuses the fake pass's activations for the real pass."""
    gan = tiny_gan(3)
    rng = np.random.default_rng(0)
    x, z = rng.uniform(-1, 1, (5, 4)), rng.normal(size=(5, 3))
    d = gan.discriminator
    fake = gan.generate(z)
    total = []
    for images, label in ((x, 0.9), (fake, 0.0)):
        logit, cache = d.forward(images)
        _, dl = binary_cross_entropy_with_logits(logit, label)
        total.append(d.backward(cache, dl)[1])
    _, grads = discriminator_step(gan, x, z, 0.9)
    for g, a, b in zip(grads, *total, strict=True):
        np.testing.assert_allclose(g, a + b, rtol=1e-13, atol=1e-15)


def test_decoder_backward_matches_finite_differences():
    model = Decoder.build(z_dim=3, hidden=(5,), d=4, rng=1)
    z = np.random.default_rng(2).normal(size=(3, 3))
    up = np.random.default_rng(3).normal(size=(3, 4))
    _, cache = model.forward(z)
    dz = model.backward(cache, up)
    np.testing.assert_allclose(
        dz, numeric_grad(lambda: float((up * model.generate(z)).sum()), z), atol=ATOL, rtol=RTOL
    )


@pytest.mark.parametrize("kind", ["gan", "decoder"])
def test_model_file_round_trip(tmp_path, kind):
    model = tiny_gan(1) if kind == "gan" else Decoder.build(z_dim=3, hidden=(5,), d=4, rng=1)
    save_model(tmp_path / "m.npz", model)
    loaded = load_model(tmp_path / "m.npz")
    assert type(loaded) is type(model)
    z = model.sample_codes(3, 0)
    np.testing.assert_array_equal(loaded.generate(z), model.generate(z))
    other = model.discriminator if kind == "gan" else model.encoder
    other2 = loaded.discriminator if kind == "gan" else loaded.encoder
    for p, q in zip(other.parameters(), other2.parameters(), strict=True):
        np.testing.assert_array_equal(p, q)


def test_training_is_deterministic_and_moves_the_losses():
    x = np.random.default_rng(0).uniform(-1, 1, (64, 4))
    runs = []
    for _ in range(2):
        gan = tiny_gan(2)
        hist = train_gan(gan, x, epochs=3, batch_size=16, rng=5, log=None)
        runs.append((gan, hist))
    (g1, h1), (g2, _) = runs
    assert len(h1.d_loss) == 3 and np.all(np.isfinite(h1.d_loss + h1.g_loss))
    for p, q in zip(g1.generator.parameters(), g2.generator.parameters(), strict=True):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(g1.sample(4, rng=1), g2.sample(4, rng=1))
    assert np.all(np.abs(g1.sample(50, rng=0)) <= 1)  # tanh output in the pixel box


def test_autoencoder_training_reduces_reconstruction_error():
    rng = np.random.default_rng(0)
    x = np.tanh(rng.normal(size=(200, 3)) @ rng.normal(size=(3, 8)))  # 3-d structure in 8-d
    model = Decoder.build(z_dim=3, hidden=(16,), d=8, rng=0)
    losses = train_autoencoder(model, x, epochs=30, batch_size=32, lr=3e-3, rng=0, log=None)
    assert losses[-1] < 0.3 * losses[0]


def test_classifier_score_extremes():
    confident = Sequential([Dense(100.0 * np.eye(10))])
    images = np.eye(10)[np.arange(1000) % 10]
    score, counts = classifier_score(confident, images)
    assert score == pytest.approx(10.0, rel=1e-6)
    np.testing.assert_array_equal(counts, np.full(10, 100))
    useless = Sequential([Dense(np.zeros((10, 10)))])
    assert classifier_score(useless, images)[0] == pytest.approx(1.0, abs=1e-12)
    one_class = Sequential([Dense(np.zeros((10, 10)), np.eye(10)[3] * 100)])
    assert classifier_score(one_class, images)[0] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"epochs": 0}, "epochs"), ({"real_label": 1.5}, "real_label"), ({"batch_size": 0}, "batch")],
)
def test_bad_training_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_gan(tiny_gan(), np.zeros((8, 4)), log=None, **kwargs)


def test_mismatched_networks_are_refused():
    g = GAN.build(z_dim=3, hidden_g=(5,), hidden_d=(6,), d=4)
    with pytest.raises(ValueError, match="must match discriminator input"):
        GAN(g.generator, Sequential([Dense(np.ones((5, 1)))]))
    with pytest.raises(ValueError, match="one logit"):
        GAN(g.generator, Sequential([Dense(np.ones((4, 2)))]))


def test_class_code_means_average_confidently_classified_codes():
    from refimpl.interpret.gan import class_code_means

    model = Decoder(Sequential([Dense(np.eye(3))]), Sequential([Dense(np.eye(3))]))
    classifier = Sequential([Dense(10.0 * np.eye(3))])
    x = np.array([[1.0, 0, 0], [0.6, 0.5, 0], [0, 1, 0], [0, 0, 1], [0, 0.45, 0.5]])
    means = class_code_means(model, classifier, x=x, confidence=0.99)
    # class 0: only [1, 0, 0] is confident (p = 0.9999); [0.6, 0.5, 0] has p = 0.73
    np.testing.assert_allclose(means, np.eye(3), atol=1e-15)
    loose = class_code_means(model, classifier, x=x, confidence=0.0)
    np.testing.assert_allclose(loose[0], [0.8, 0.25, 0.0], rtol=1e-15)
    with pytest.raises(ValueError, match=r"class\(es\) \[1\]"):
        class_code_means(model, classifier, x=x[[0, 3]])
