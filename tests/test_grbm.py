"""The Gaussian-Bernoulli RBM expert (paper eq. 2.8-2.9): gradients, free energy, sampling, file.

Tolerances
----------
- Finite differences (tests/fd.py, float64, step 1e-6): ``|analytic - numeric| <= 1e-6 +
  1e-5 |numeric|``, as in tests/test_layers.py. Truncation O(h^2) and round-off ~1e-10 |f| are far
  below it; a wrong derivative is off by O(1).
- Free energy against the sum over all ``2^h`` hidden states: 1e-10 absolute (+ 1e-12 relative);
  both are exact formulas, so only round-off separates them.
- Sampling: ``N`` independent draws; every empirical mean must lie within 5 standard errors of
  its expectation (a two-sided 5-sigma band: a false failure has probability < 1e-6 per number).
  Seeds are fixed, so the outcome is deterministic anyway.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import expit, logsumexp

from refimpl.cli import main
from refimpl.data.mnist import load_mnist, scale_pixels
from refimpl.interpret.grbm import GaussianRBM, train_grbm
from refimpl.nn.modelfile import (
    ModelFileError,
    _ArrayPool,
    decode_model,
    encode_model,
    load_model,
    save_model,
)

from .fd import numeric_grad

ATOL, RTOL = 1e-6, 1e-5


def close(analytic, numeric):
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL)


@st.composite
def random_rbm(draw, *, max_visible: int = 12, max_hidden: int = 10):
    """A random float64 GRBM (d 1-12, h 1-10, sigma 0.3-2, random standardization) and a batch."""
    d = draw(st.integers(1, max_visible))
    h = draw(st.integers(1, max_hidden))
    sigma = draw(st.floats(0.3, 2.0))
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(1, 4))
    rng = np.random.default_rng(seed)
    mean, std = rng.normal(0, 1, d), rng.uniform(0.2, 2.0, d)
    rbm = GaussianRBM(
        rng.normal(0, 0.5, (d, h)), rng.normal(0, 1, h), rng.normal(0, 1, d), sigma, mean, std
    )
    x = mean + std * rng.normal(0, 1.5, (n, d))
    return rbm, x, rng


def small_rbm(d: int = 5, h: int = 4, seed: int = 0) -> GaussianRBM:
    rng = np.random.default_rng(seed)
    return GaussianRBM(
        rng.normal(0, 0.5, (d, h)),
        rng.normal(0, 1, h),
        rng.normal(0, 1, d),
        0.7,
        rng.normal(0, 1, d),
        rng.uniform(0.5, 2, d),
    )


# --- gradients against finite differences ---------------------------------------------------


@given(random_rbm())
def test_grad_log_density_matches_finite_differences(case):
    rbm, x, _ = case
    numeric = numeric_grad(lambda: float(rbm.log_density(x).sum()), x)
    close(rbm.grad_log_density(x), numeric)


@given(random_rbm())
def test_free_energy_parameter_gradients_match_finite_differences(case):
    rbm, x, _ = case
    grads = rbm.free_energy_grads(x)
    assert set(grads) == {"W", "b", "c"}
    for name, param in rbm.parameters().items():
        numeric = numeric_grad(lambda: float(rbm.free_energy(x).mean()), param)
        close(grads[name], numeric)


# --- the free energy against the explicit sum over hidden states ----------------------------


def energy_twin(rbm: GaussianRBM, u: np.ndarray, h: tuple[int, ...]) -> float:
    """``E(u, h)`` written out with loops over units, for one sample ``u``."""
    s2 = rbm.sigma**2
    d, nh = rbm.W.shape
    quadratic = sum((u[i] - rbm.c[i]) ** 2 for i in range(d)) / (2 * s2)
    coupling = sum(u[i] * rbm.W[i, j] * h[j] for i in range(d) for j in range(nh)) / s2
    return quadratic - coupling - sum(rbm.b[j] * h[j] for j in range(nh))


@given(random_rbm(max_visible=6, max_hidden=8))
def test_free_energy_equals_log_sum_over_all_hidden_states(case):
    rbm, x, _ = case
    u = (x - rbm.mean) / rbm.std
    states = list(itertools.product((0, 1), repeat=rbm.n_hidden))
    for n in range(len(x)):
        energies = np.array([energy_twin(rbm, u[n], h) for h in states])
        log_marginal = logsumexp(-energies)  # log sum_h exp(-E(u, h))
        assert -rbm.free_energy(x[n : n + 1])[0] == pytest.approx(
            log_marginal, rel=1e-12, abs=1e-10
        )
        expected_log_p = log_marginal - np.log(rbm.std).sum()
        assert rbm.log_density(x[n : n + 1])[0] == pytest.approx(expected_log_p, abs=1e-10)
        hs = np.array(states[:3], dtype=float)
        np.testing.assert_allclose(
            rbm.energy(np.repeat(x[n : n + 1], len(hs), axis=0), hs),
            energies[:3],
            rtol=1e-12,
            atol=1e-10,
        )


def test_log_density_is_stable_for_huge_hidden_inputs():
    rbm = small_rbm()
    rbm.W *= 1e4  # hidden inputs of order 1e5: softplus must neither overflow nor round to 0
    x = rbm.mean + rbm.std * np.random.default_rng(1).normal(size=(3, 5))
    assert np.all(np.isfinite(rbm.log_density(x)))
    assert np.all(np.isfinite(rbm.grad_log_density(x)))


# --- Gibbs conditionals ----------------------------------------------------------------------


def test_sample_visible_has_mean_c_plus_w_h_and_variance_sigma_squared():
    rbm, n = small_rbm(), 40_000
    h = np.tile([1.0, 0.0, 1.0, 1.0], (n, 1))
    u = (rbm.sample_visible(h, rng=0) - rbm.mean) / rbm.std
    expected = rbm.c + rbm.W @ h[0]
    standard_error = rbm.sigma / np.sqrt(n)
    assert np.all(np.abs(u.mean(axis=0) - expected) < 5 * standard_error)
    # variance of a Gaussian sample variance: 2 sigma^4 / n
    assert np.all(np.abs(u.var(axis=0) - rbm.sigma**2) < 5 * rbm.sigma**2 * np.sqrt(2 / n))
    np.testing.assert_allclose(rbm.visible_mean(h[:1])[0], rbm.mean + rbm.std * expected)


def test_sample_hidden_frequencies_match_the_sigmoid():
    rbm, n = small_rbm(), 40_000
    x = np.tile(rbm.mean + rbm.std * np.array([0.5, -1.0, 0.3, 1.2, -0.4]), (n, 1))
    h = rbm.sample_hidden(x, rng=0)
    assert set(np.unique(h)) <= {0.0, 1.0}
    u = (x[0] - rbm.mean) / rbm.std
    p = expit(u @ rbm.W / rbm.sigma**2 + rbm.b)  # eq. 2.9 written out again
    np.testing.assert_allclose(rbm.hidden_probability(x[:1])[0], p, rtol=1e-14)
    assert np.all(np.abs(h.mean(axis=0) - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-12)


def test_gibbs_chain_keeps_shape_and_is_deterministic_for_a_seed():
    rbm = small_rbm()
    x = rbm.mean + rbm.std * np.random.default_rng(2).normal(size=(6, 5))
    a, b = rbm.gibbs(x, 3, rng=7), rbm.gibbs(x, 3, rng=7)
    assert a.shape == x.shape and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, rbm.gibbs(x, 3, rng=8))


# --- training --------------------------------------------------------------------------------


def _train(seed: int, logs: list[str] | None = None):
    x = np.random.default_rng(3).normal(size=(60, 7))
    rbm = GaussianRBM.from_data(x, 5, sigma=0.8, rng=seed)
    history = train_grbm(
        rbm,
        x,
        epochs=3,
        batch_size=16,
        k=2,
        lr=1e-2,
        momentum_switch=1,
        rng=seed,
        log=None if logs is None else logs.append,
    )
    return rbm, history


def test_training_is_deterministic_for_a_seed_and_logs_each_epoch():
    logs: list[str] = []
    rbm1, h1 = _train(0, logs)
    rbm2, h2 = _train(0)
    for name in ("W", "b", "c", "mean", "std"):
        np.testing.assert_array_equal(getattr(rbm1, name), getattr(rbm2, name))
    assert h1.reconstruction_error == h2.reconstruction_error and h1.epoch == [1, 2, 3]
    assert h1.free_energy == h2.free_energy
    assert len(logs) == 3 and all("reconstruction error" in line for line in logs)
    assert "mean free energy" in logs[0] and "samples/s" in logs[0]
    assert not np.array_equal(rbm1.W, _train(1)[0].W)


def test_weight_decay_acts_on_w_only():
    # same seed, one full-batch CD step from zero velocity: the CD gradients are identical, so
    # the runs differ exactly by the decay term -lr * weight_decay * W of the update
    x = np.random.default_rng(4).normal(size=(8, 3))
    base = GaussianRBM.from_data(x, 2, rng=0)
    runs = []
    for decay in (0.0, 0.5):
        rbm = GaussianRBM(base.W, base.b, base.c, base.sigma, base.mean, base.std)
        train_grbm(rbm, x, epochs=1, batch_size=8, k=1, lr=0.1, weight_decay=decay, log=None)
        runs.append(rbm)
    np.testing.assert_allclose(runs[1].W - runs[0].W, -0.1 * 0.5 * base.W, rtol=1e-9)
    np.testing.assert_array_equal(runs[1].b, runs[0].b)
    np.testing.assert_array_equal(runs[1].c, runs[0].c)


def test_from_data_standardization_and_initialization():
    x = np.random.default_rng(5).normal(size=(200, 4)) * np.array([1.0, 2.0, 0.0, 0.01])
    rbm = GaussianRBM.from_data(x, 30, rng=0)
    np.testing.assert_allclose(rbm.mean, x.mean(axis=0))
    s = x.std(axis=0)
    floor = 0.1 * s.max()
    np.testing.assert_allclose(rbm.std, np.maximum(s, floor))
    assert rbm.std[2] == floor and rbm.std[3] == floor
    assert np.all(rbm.b == 0) and np.all(rbm.c == 0)
    assert abs(rbm.W.std() - 0.01) < 0.002
    constant = GaussianRBM.from_data(np.ones((5, 3)), 2)
    assert np.all(constant.std > 0)


# --- model file ------------------------------------------------------------------------------


def test_save_load_round_trip_is_exact(tmp_path):
    rbm = small_rbm(seed=3)
    path = save_model(tmp_path / "grbm.npz", rbm, meta={"epochs": 3})
    loaded = load_model(path)
    assert isinstance(loaded, GaussianRBM) and loaded.sigma == rbm.sigma
    for name in ("W", "b", "c", "mean", "std"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(rbm, name))
    x = rbm.mean + rbm.std * np.random.default_rng(0).normal(size=(3, 5))
    np.testing.assert_array_equal(loaded.log_density(x), rbm.log_density(x))


def test_load_model_finds_grbm_without_importing_refimpl_grbm(tmp_path):
    path = save_model(tmp_path / "grbm.npz", small_rbm())
    code = (
        "import sys\n"
        "from refimpl.nn.modelfile import load_model\n"
        "assert 'refimpl.interpret.grbm' not in sys.modules\n"
        f"model = load_model({str(path)!r})\n"
        "print(type(model).__name__, model.n_visible, model.n_hidden)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["GaussianRBM", "5", "4"]


def test_nested_encoding_with_a_prefix():
    rbm = small_rbm()
    spec, arrays = encode_model(rbm, "expert.")
    assert sorted(arrays) == [f"expert.{n}" for n in ("W", "b", "c", "mean", "std")]
    pool = _ArrayPool({**arrays, "other.W": np.ones(2)}, "memory")
    loaded = decode_model(json.loads(json.dumps(spec)), pool, "expert.")
    np.testing.assert_array_equal(loaded.W, rbm.W)
    assert list(pool.arrays) == ["other.W"]


def test_info_command_prints_the_summary(tmp_path, capsys):
    path = save_model(tmp_path / "grbm.npz", small_rbm(), meta={"note": "test"})
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "GaussianRBM" in text and "5 visible -> 4 hidden" in text and "sigma 0.7" in text
    assert "29 trainable parameters" in text and "note: test" in text


def _grbm_file(path, **changes):
    rbm = small_rbm()
    spec = {
        "format": "refimpl-model",
        "version": 1,
        "kind": "grbm",
        "sigma": 0.7,
        "n_visible": 5,
        "n_hidden": 4,
    }
    arrays = {name: getattr(rbm, name) for name in ("W", "b", "c", "mean", "std")}
    for key, value in changes.items():
        if isinstance(value, np.ndarray):
            arrays[key] = value
        elif key in arrays:
            del arrays[key]
        else:
            spec[key] = value
    np.savez(path, __spec__=json.dumps(spec), **arrays)


CORRUPTIONS = {
    "missing array": ({"std": None}, r"needs arrays \['W', 'b', 'c', 'mean', 'std'\]"),
    "wrong W shape": ({"W": np.ones((4, 5))}, r"'W' must have shape \(5, 4\)"),
    "wrong c shape": ({"c": np.ones(3)}, r"'c' must have shape \(5,\)"),
    "n_hidden disagrees": ({"n_hidden": 3}, r"'W' must have shape \(5, 3\)"),
    "sigma zero": ({"sigma": 0}, "sigma must be a number > 0"),
    "sigma negative": ({"sigma": -0.5}, "sigma must be a number > 0"),
    "sigma missing": ({"sigma": None}, "sigma must be a number > 0"),
    "sigma string": ({"sigma": "0.5"}, "sigma must be a number > 0"),
    "n_visible bool": ({"n_visible": True}, "n_visible must be a positive integer"),
    "std zero": ({"std": np.array([1.0, 0.0, 1.0, 1.0, 1.0])}, "std must be > 0"),
    "nan weight": ({"W": np.full((5, 4), np.nan)}, "NaN or inf"),
    "inf mean": ({"mean": np.array([0, np.inf, 0, 0, 0])}, "NaN or inf"),
    "extra array": ({"V": np.ones(2)}, r"needs arrays .*, got \['V', 'W'"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_grbm_files_raise_model_file_error(tmp_path, case):
    changes, match = CORRUPTIONS[case]
    path = tmp_path / "bad.npz"
    _grbm_file(path, **changes)
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(path)
    assert str(path) in str(info.value)


# --- clear errors at the public boundary -----------------------------------------------------

RBM = small_rbm()
X = np.zeros((2, 5))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: RBM.log_density(np.zeros((2, 4))), ValueError, r"x must have shape \(n, 5\)"),
        (lambda: RBM.log_density(np.zeros(5)), ValueError, "x must have 2 dimensions"),
        (lambda: RBM.grad_log_density([[np.nan] * 5]), ValueError, "x contains 5 NaN"),
        (lambda: RBM.free_energy(np.full((1, 5), "a")), TypeError, "x must be a numeric"),
        (lambda: RBM.gibbs(X, 0), ValueError, r"k must be in \[1, inf\], got 0"),
        (lambda: RBM.gibbs(X, 1.5), TypeError, "k must be an integer"),
        (lambda: RBM.sample_visible(np.full((1, 4), 0.5)), ValueError, "only 0 and 1"),
        (lambda: RBM.sample_visible(np.ones((1, 3))), ValueError, r"h must have shape \(n, 4\)"),
        (lambda: RBM.energy(X, np.ones((3, 4))), ValueError, "h must have 2 rows"),
        (lambda: GaussianRBM(RBM.W, RBM.b, RBM.c, 0.0, RBM.mean, RBM.std), ValueError, "sigma"),
        (lambda: GaussianRBM(RBM.W, RBM.b, RBM.c, -1, RBM.mean, RBM.std), ValueError, "sigma"),
        (lambda: GaussianRBM(RBM.W, RBM.b[:2], RBM.c, 1, RBM.mean, RBM.std), ValueError, "b must"),
        (lambda: GaussianRBM(RBM.W, RBM.b, RBM.c, 1, RBM.mean, -RBM.std), ValueError, "std must"),
        (lambda: GaussianRBM.from_data(X, 0), ValueError, "n_hidden"),
        (lambda: GaussianRBM.from_data(X, 3, sigma=np.inf), ValueError, "sigma"),
        (lambda: GaussianRBM.from_data(X, 3, std_floor=2), ValueError, "std_floor"),
        (lambda: train_grbm(RBM, X, epochs=0), ValueError, "epochs"),
        (lambda: train_grbm(RBM, X, epochs=1, k=0), ValueError, "k must be"),
        (lambda: train_grbm(RBM, X, epochs=1, momentum=(0.5, 1.0)), ValueError, "momentum"),
        (lambda: train_grbm(RBM, X, epochs=1, momentum=0.9), TypeError, "momentum must be a pair"),
        (lambda: train_grbm(RBM, X, epochs=1, lr=0), ValueError, "lr"),
        (lambda: train_grbm(object(), X, epochs=1), TypeError, "rbm must be a GaussianRBM"),
        (lambda: train_grbm(RBM, np.zeros((0, 5)), epochs=1), ValueError, "at least one"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_divergence_is_reported():
    x = np.random.default_rng(0).normal(size=(20, 3))
    rbm = GaussianRBM.from_data(x, 2, sigma=0.1)
    with (
        np.errstate(over="ignore", invalid="ignore"),
        pytest.raises(FloatingPointError, match="diverged in epoch"),
    ):
        train_grbm(rbm, x, epochs=5, batch_size=1, lr=1e6, log=None)


def test_summary_names_sizes_sigma_and_counts():
    text = GaussianRBM.from_data(np.random.default_rng(0).normal(size=(10, 784)), 500).summary()
    assert "784 visible -> 500 hidden" in text and "sigma 0.5" in text
    assert "393,284 trainable parameters" in text and "(+ 1,568 fixed)" in text


# --- density on real MNIST -------------------------------------------------------------------


def _held_out_comparison(rbm: GaussianRBM, x: np.ndarray, rng: np.random.Generator) -> dict:
    """Mean log p of held-out digits and three kinds of non-digits of the same size."""
    noise = rng.uniform(-1, 1, x.shape)
    shuffled = rng.permuted(x, axis=1)  # each image's pixels in its own random order
    # each pixel position permuted across images: per-pixel marginals kept, correlations gone
    columns = rng.permuted(x, axis=0)
    return {
        name: float(rbm.log_density(v).mean())
        for name, v in (
            ("digits", x),
            ("noise", noise),
            ("shuffled", shuffled),
            ("columns", columns),
        )
    }


def _train_on_mnist_and_compare(n_hidden: int, **train_args) -> tuple[dict, dict]:
    """Train a GRBM on the MNIST training digits; return the comparisons before and after."""
    try:
        data = load_mnist(download=False, log=lambda line: None)
    except FileNotFoundError as exc:
        pytest.skip(f"no MNIST source found (load_mnist(download=False)): {exc}")
    x = scale_pixels(data.x_train)
    held_out = scale_pixels(data.x_test)
    rbm = GaussianRBM.from_data(x, n_hidden, sigma=0.5, rng=0)
    before = _held_out_comparison(rbm, held_out, np.random.default_rng(1))
    train_grbm(rbm, x, rng=0, log=None, **train_args)
    return before, _held_out_comparison(rbm, held_out, np.random.default_rng(1))


def _check_density(before: dict, after: dict, min_learned_margin: float) -> None:
    assert after["digits"] > after["noise"]
    assert after["digits"] > after["shuffled"]
    # beyond the standardization, which alone ranks digits above noise and shuffled digits:
    # the trained RBM separates real digits from digits with the same per-pixel marginals but
    # no pixel correlations, which the initial RBM (W ~ 0, nearly independent pixels) cannot
    assert abs(before["digits"] - before["columns"]) < 10
    assert after["digits"] - after["columns"] > min_learned_margin


def test_briefly_trained_grbm_prefers_held_out_digits_on_real_mnist():
    # 100 hidden units, CD-1, batches of 500: few, large matrix products, so it stays fast
    # (about 2-5 s on 2 cores) even when other processes compete for the cores
    before, after = _train_on_mnist_and_compare(100, epochs=4, batch_size=500, k=1, lr=5e-3)
    _check_density(before, after, min_learned_margin=300)  # measured: 539 nats


@pytest.mark.slow
def test_design_recipe_grbm_prefers_held_out_digits_on_real_mnist():
    # the recipe: 500 hidden, CD-5, lr 1e-3, momentum 0.5 -> 0.9, weight decay 1e-4,
    # sigma 0.5; 10 epochs of 8,000 digits take about 45 s on one core
    before, after = _train_on_mnist_and_compare(500, epochs=10, batch_size=100, k=5)
    _check_density(before, after, min_learned_margin=500)  # measured: 746 nats
