"""Gaussian-Bernoulli RBM: the density "expert" of paper sec. 2.3 (eq. 2.8-2.9).

Activation maximization with an expert maximizes ``log p(w_c | x) + beta log p(x)``; this module
supplies ``log p(x)`` and its gradient. The RBM models standardized data
``u = (x - mean) / std`` (per-pixel ``mean`` and ``std``, fixed when the model is built), with
``d`` Gaussian visible units ``u``, ``h`` binary hidden units, weights ``W`` (d, h), hidden biases
``b`` (h,), visible means ``c`` (d,) and a fixed noise level ``sigma``:

- energy:            ``E(u, h) = ||u - c||^2 / (2 sigma^2) - u^T W h / sigma^2 - b^T h``
- hidden given u:    ``p(h_j = 1 | u) = sigmoid(w_j^T u / sigma^2 + b_j)``
- visible given h:   ``p(u | h) = N(c + W h, sigma^2 I)``
- free energy:       ``F(u) = ||u - c||^2 / (2 sigma^2) - sum_j softplus(w_j^T u / sigma^2 + b_j)``
- log-density:       ``log p(x) = -F(u) - sum_i log std_i - log Z``

``-F(u)`` is the paper's eq. 2.8-2.9, ``sum_j f_j(x) - lambda ||x - c||^2 + const`` with
``f_j(x) = log(1 + exp(w_j^T x + b_j))``, written for ``u`` with the paper's ``w_j`` equal to our
``w_j / sigma^2`` and ``lambda = 1 / (2 sigma^2)``. The partition function ``Z`` is intractable
and never computed: :meth:`GaussianRBM.log_density` is unnormalized (exact up to the constant
``-log Z``), which is all activation maximization and comparisons within one model need.

Every public method takes and returns pixel-space ``x`` (``(n, d)`` batches); the standardization
is applied inside, so gradients are ``d log p / dx`` in pixel space. Parameters are float64.
Training is contrastive divergence (CD-k, :func:`train_grbm`); the recipe that works on MNIST
is 500 hidden units, CD-5, lr 1e-3, momentum 0.5 -> 0.9, weight decay 1e-4, sigma 0.5. The
kind ``"grbm"`` is registered with :mod:`refimpl.nn.modelfile` on import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

from .._checks import as_float_array, check_int, check_positive, check_result
from .._table import format_table
from ..nn import modelfile
from ..nn.optim import SGD

STD_ABS_FLOOR = 1e-6
"""Absolute lower bound of the standardization ``std`` built by :meth:`GaussianRBM.from_data`."""

RngLike = np.random.Generator | int | None


class GaussianRBM:
    """Gaussian-Bernoulli RBM on standardized inputs ``u = (x - mean) / std`` (eq. 2.8-2.9).

    Parameters
    ----------
    W : array_like, shape (d, h)
        Weights; column ``w_j`` connects all visible units to hidden unit ``j``.
    b : array_like, shape (h,)
        Hidden biases.
    c : array_like, shape (d,)
        Visible means (in standardized units).
    sigma : float
        Standard deviation of the visible units given the hidden ones; fixed, > 0.
    mean, std : array_like, shape (d,)
        The fixed standardization ``u = (x - mean) / std``; ``std`` > 0.

    Notes
    -----
    Energy ``E(u, h) = ||u - c||^2 / (2 sigma^2) - u^T W h / sigma^2 - b^T h`` and
    ``p(u, h) = exp(-E(u, h)) / Z``. Summing out ``h`` gives the free energy ``F(u)`` and the
    paper's log-density, eq. 2.8-2.9; see the module docstring.
    """

    def __init__(
        self,
        W: np.ndarray,
        b: np.ndarray,
        c: np.ndarray,
        sigma: float,
        mean: np.ndarray,
        std: np.ndarray,
    ) -> None:
        W = as_float_array(W, "W", ndim=2, dtype=np.float64).copy()
        d, h = W.shape
        if d < 1 or h < 1:
            raise ValueError(
                f"W must have shape (n_visible, n_hidden) with both >= 1, got {W.shape}"
            )
        self.W = W
        self.b = _vector(b, "b", h)
        self.c = _vector(c, "c", d)
        self.sigma = check_positive(sigma, "sigma")
        self.mean = _vector(mean, "mean", d)
        self.std = _vector(std, "std", d)
        if np.any(self.std <= 0):
            bad = int(np.argmin(self.std))
            raise ValueError(f"std must be > 0 everywhere, got std[{bad}] = {self.std[bad]!r}")

    @classmethod
    def from_data(
        cls,
        x: np.ndarray,
        n_hidden: int,
        sigma: float = 0.5,
        rng: RngLike = 0,
        std_floor: float = 0.1,
    ) -> GaussianRBM:
        """A fresh RBM for data ``x``: small random weights and the standardization of ``x``.

        Parameters
        ----------
        x : array_like, shape (n, d)
            Training data in pixel space (n >= 1).
        n_hidden : int
            Number of hidden units ``h`` >= 1.
        sigma : float
            Visible noise level (> 0); the README's recipe uses 0.5.
        rng : Generator or int or None
            Random generator or seed for the weights.
        std_floor : float
            Relative floor of the standardization, in (0, 1].

        Returns
        -------
        GaussianRBM
            ``W ~ N(0, 0.01^2)`` entrywise (standard deviation 0.01), ``b = 0``, ``c = 0``,
            ``mean`` the per-pixel mean of ``x`` and
            ``std_i = max(s_i, std_floor * max_k s_k, STD_ABS_FLOOR)`` with ``s_i`` the per-pixel
            standard deviation. The floor keeps near-constant pixels (MNIST's border) from
            producing huge standardized values; such pixels then cost
            ``(x_i - mean_i)^2 / (2 sigma^2 std_i^2)`` in log-density when they deviate.
        """
        x = as_float_array(x, "x", ndim=2, dtype=np.float64)
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"x must have shape (n, d) with n, d >= 1, got {x.shape}")
        n_hidden = check_int(n_hidden, "n_hidden", low=1)
        std_floor = check_positive(std_floor, "std_floor")
        if std_floor > 1:
            raise ValueError(f"std_floor must be in (0, 1], got {std_floor!r}")
        s = x.std(axis=0)
        floor = max(std_floor * float(s.max()), STD_ABS_FLOOR)
        W = np.random.default_rng(rng).normal(0.0, 0.01, (x.shape[1], n_hidden))
        zeros_h, zeros_d = np.zeros(n_hidden), np.zeros(x.shape[1])
        return cls(W, zeros_h, zeros_d, sigma, x.mean(axis=0), np.maximum(s, floor))

    @property
    def n_visible(self) -> int:
        return self.W.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.W.shape[1]

    def parameters(self) -> dict[str, np.ndarray]:
        """The trainable arrays ``{"W", "b", "c"}`` (references, updated in place by training)."""
        return {"W": self.W, "b": self.b, "c": self.c}

    # --- the equations, in standardized space u --------------------------------------------

    def _energy(self, u: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Energy behind eq. 2.8: ``E(u, h) = ||u-c||^2/(2 sigma^2) - u^T W h/sigma^2 - b^T h``."""
        s2 = self.sigma**2
        quadratic = ((u - self.c) ** 2).sum(axis=1) / (2 * s2)
        return quadratic - np.einsum("ni,ij,nj->n", u, self.W, h) / s2 - h @ self.b

    def _hidden_input(self, u: np.ndarray) -> np.ndarray:
        """Input of hidden unit ``j`` (the argument of eq. 2.9): ``w_j^T u / sigma^2 + b_j``."""
        return u @ self.W / self.sigma**2 + self.b

    def _visible_mean(self, h: np.ndarray) -> np.ndarray:
        """Mean of ``p(u | h) = N(c + W h, sigma^2 I)``, the visible conditional: ``c + W h``."""
        return h @ self.W.T + self.c

    def _free_energy(self, u: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Free energy (eq. 2.8-2.9 up to sign): ``F(u) = ||u-c||^2/(2 sigma^2) - sum_j sp(a_j)``.

        ``a = _hidden_input(u)`` and ``sp(a) = softplus(a) = log(1 + e^a)``, computed as
        ``np.logaddexp(0, a)``, which neither overflows nor loses precision for large ``|a|``.
        """
        quadratic = ((u - self.c) ** 2).sum(axis=1) / (2 * self.sigma**2)
        return quadratic - np.logaddexp(0.0, a).sum(axis=1)

    def _free_energy_grad_u(self, u: np.ndarray, p: np.ndarray) -> np.ndarray:
        """``dF/du = (u - c) / sigma^2 - W p / sigma^2`` with ``p = sigmoid(a)``, eq. 2.8-2.9."""
        return (u - self.c - p @ self.W.T) / self.sigma**2

    def _free_energy_grad_params(self, u: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
        """Gradient of the batch mean of ``F(u)`` (eq. 2.8-2.9) with respect to W, b, c.

        Notes
        -----
        With ``p_nj = sigmoid(a_nj)`` and ``n`` samples::

            dF/dW = -u^T p / (n sigma^2),  dF/db = -mean_n p_n,  dF/dc = -mean_n (u_n - c) / sigma^2
        """
        n, s2 = u.shape[0], self.sigma**2
        return {
            "W": -(u.T @ p) / (n * s2),
            "b": -p.mean(axis=0),
            "c": -(u - self.c).mean(axis=0) / s2,
        }

    # --- public API, in pixel space x -------------------------------------------------------

    def standardize(self, x: np.ndarray, name: str = "x") -> np.ndarray:
        """Validate a batch ``x`` of shape ``(n, d)`` and return ``u = (x - mean) / std``."""
        x = as_float_array(x, name, ndim=2, dtype=np.float64)
        if x.shape[1] != self.n_visible:
            raise ValueError(f"{name} must have shape (n, {self.n_visible}), got {x.shape}")
        return (x - self.mean) / self.std

    def _check_hidden(self, h: np.ndarray) -> np.ndarray:
        """Validate a batch of binary hidden states of shape ``(n, n_hidden)``."""
        h = as_float_array(h, "h", ndim=2, dtype=np.float64)
        if h.shape[1] != self.n_hidden:
            raise ValueError(f"h must have shape (n, {self.n_hidden}), got {h.shape}")
        if not np.all((h == 0) | (h == 1)):
            raise ValueError("h must hold binary hidden states (only 0 and 1)")
        return h

    def energy(self, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Energy ``E(u, h)`` of each pair ``(x_n, h_n)``, shape ``(n,)`` (see ``_energy``)."""
        u = self.standardize(x)
        h = self._check_hidden(h)
        if h.shape[0] != u.shape[0]:
            raise ValueError(f"h must have {u.shape[0]} rows like x, got {h.shape[0]}")
        return self._energy(u, h)

    @np.errstate(over="ignore", invalid="ignore")  # overflow is checked and named, not warned
    def free_energy(self, x: np.ndarray) -> np.ndarray:
        """Free energy ``F(u)`` of each row of ``x``, shape ``(n,)`` (eq. 2.8-2.9)."""
        u = self.standardize(x)
        return self._finite(self._free_energy(u, self._hidden_input(u)), "the free energy F(x)")

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """Unnormalized ``log p(x) = -F(u) - sum_i log std_i``, shape ``(n,)`` (eq. 2.8-2.9).

        The constant ``-log Z`` is not computed (intractable), so values are comparable within
        one model only. ``-sum_i log std_i`` is the Jacobian of the standardization, which makes
        this a density over pixel-space ``x``.
        """
        return -self.free_energy(x) - np.log(self.std).sum()

    @np.errstate(over="ignore", invalid="ignore")  # overflow is checked and named, not warned
    def grad_log_density(self, x: np.ndarray) -> np.ndarray:
        """``d log p(x) / dx`` in pixel space, shape ``(n, d)`` (gradient of eq. 2.8-2.9).

        Notes
        -----
        ``d log p / dx = -(dF/du) / std = (c + W sigmoid(a) - u) / (sigma^2 std)``, by the chain
        rule through ``u = (x - mean) / std``.
        """
        u = self.standardize(x)
        p = expit(self._hidden_input(u))
        return self._finite(-self._free_energy_grad_u(u, p) / self.std, "d log p(x) / dx")

    def _finite(self, value: np.ndarray, what: str) -> np.ndarray:
        """``value`` if finite; else name the NaN parameter, or the samples that overflow."""
        if np.all(np.isfinite(value)):
            return value
        for name, p in self.parameters().items():
            if not np.all(np.isfinite(p)):
                raise ValueError(
                    f"the RBM's {name} holds NaN or inf (changed after the model was built, e.g. "
                    "by a diverged training run); expected finite numbers"
                )
        return check_result(value, what)

    def free_energy_grads(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Exact gradient of ``mean_n F(u_n)`` with respect to ``W``, ``b`` and ``c``.

        Returns
        -------
        dict
            ``{"W": -u^T p / (n sigma^2), "b": -mean_n p_n, "c": -mean_n (u_n - c) / sigma^2}``
            with ``u`` the standardized rows of ``x`` and ``p = sigmoid(u W / sigma^2 + b)``.
            CD's positive (data) and negative (model sample) phases are this gradient at the
            data and at the Gibbs samples (eq. 2.8-2.9).
        """
        u = self.standardize(x)
        return self._free_energy_grad_params(u, expit(self._hidden_input(u)))

    def hidden_probability(self, x: np.ndarray) -> np.ndarray:
        """``p(h_j = 1 | u) = sigmoid(w_j^T u / sigma^2 + b_j)``, shape ``(n, h)`` (eq. 2.9)."""
        return expit(self._hidden_input(self.standardize(x)))

    def sample_hidden(self, x: np.ndarray, rng: RngLike = None) -> np.ndarray:
        """Draw ``h ~ p(h | u)``: independent Bernoulli units, float 0/1 array of shape (n, h)."""
        p = self.hidden_probability(x)
        return (np.random.default_rng(rng).random(p.shape) < p).astype(np.float64)

    def visible_mean(self, h: np.ndarray) -> np.ndarray:
        """Mean of ``p(x | h)`` in pixel space: ``mean + std * (c + W h)``, shape (n, d)."""
        return self.mean + self.std * self._visible_mean(self._check_hidden(h))

    def sample_visible(self, h: np.ndarray, rng: RngLike = None) -> np.ndarray:
        """Draw ``u ~ N(c + W h, sigma^2 I)`` and return ``x = mean + std * u``, shape (n, d)."""
        m = self._visible_mean(self._check_hidden(h))
        u = m + self.sigma * np.random.default_rng(rng).standard_normal(m.shape)
        return self.mean + self.std * u

    def gibbs(self, x: np.ndarray, k: int, rng: RngLike = None) -> np.ndarray:
        """Run ``k`` >= 1 steps of block Gibbs sampling ``x -> h -> x`` from ``x``; return x_k."""
        k = check_int(k, "k", low=1)
        rng = np.random.default_rng(rng)
        u = self.standardize(x)
        for _ in range(k):
            u = self._gibbs_step(u, rng)[0]
        return self.mean + self.std * u

    def _gibbs_step(self, u: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """One step ``u -> h ~ p(h|u) -> u' ~ p(u|h)``; return ``(u', m, p')``.

        ``m = c + W h`` is the mean ``u'`` was drawn around and ``p' = p(h = 1 | u')`` (what the
        next step, or CD's negative phase, needs).
        """
        p = expit(self._hidden_input(u))
        h = (rng.random(p.shape) < p).astype(u.dtype)
        m = self._visible_mean(h)
        u_next = m + self.sigma * rng.standard_normal(m.shape)
        return u_next, m, expit(self._hidden_input(u_next))

    def summary(self) -> str:
        """A table of the arrays, then sizes, sigma and the parameter count."""
        rows = [("array", "shape", "role")]
        roles = {
            "W": "weights",
            "b": "hidden biases",
            "c": "visible means (standardized)",
            "mean": "standardization mean (fixed)",
            "std": "standardization std (fixed)",
        }
        for name, role in roles.items():
            rows.append((name, str(getattr(self, name).shape), role))
        n_params = sum(p.size for p in self.parameters().values())
        lines = format_table(rows).split("\n")
        lines.append(
            f"Gaussian-Bernoulli RBM: {self.n_visible} visible -> {self.n_hidden} hidden, "
            f"sigma {self.sigma:g}, {n_params:,} trainable parameters "
            f"(+ {2 * self.n_visible:,} fixed), dtype float64"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"GaussianRBM({self.n_visible} -> {self.n_hidden}, sigma={self.sigma:g})"


def _vector(v: np.ndarray, name: str, size: int) -> np.ndarray:
    """A float64 copy of ``v`` if it has shape ``(size,)``, else raise naming ``name``."""
    v = as_float_array(v, name, ndim=1, dtype=np.float64)
    if v.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {v.shape}")
    return v.copy()


# --- training ------------------------------------------------------------------------------


@dataclass
class GRBMHistory:
    """Per-epoch record of :func:`train_grbm`.

    ``reconstruction_error`` is the mean squared difference, per standardized pixel, between
    ``u`` and the mean ``c + W h`` of its first Gibbs step (``h ~ p(h | u)``); ``free_energy`` is
    the mean ``F(u)`` of the training data, both measured during the epoch (before each update).
    """

    epoch: list[int] = field(default_factory=list)
    reconstruction_error: list[float] = field(default_factory=list)
    free_energy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    samples_per_second: list[float] = field(default_factory=list)


def train_grbm(
    rbm: GaussianRBM,
    x: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 100,
    k: int = 5,
    lr: float = 1e-3,
    momentum: tuple[float, float] = (0.5, 0.9),
    momentum_switch: int = 5,
    weight_decay: float = 1e-4,
    rng: RngLike = 0,
    log: Callable[[str], object] | None = print,
) -> GRBMHistory:
    """Train ``rbm`` in place by CD-k with momentum and weight decay on ``W``.

    Parameters
    ----------
    rbm : GaussianRBM
    x : array_like, shape (n, d)
        Training data in pixel space (standardized with the RBM's fixed ``mean`` and ``std``).
    epochs, batch_size : int
        Passes over ``x`` (reshuffled each epoch) and minibatch size.
    k : int
        Gibbs steps per negative phase (CD-k).
    lr : float
        Learning rate.
    momentum : (float, float)
        Momentum for the first ``momentum_switch`` epochs, then for the rest; each in [0, 1).
    weight_decay : float
        L2 penalty on ``W`` only (the gradient gets ``+ weight_decay * W``).
    rng : Generator or int or None
        Seed for shuffling and sampling.
    log : callable or None
        Receives one line per epoch: reconstruction error, mean free energy, samples/s.

    Returns
    -------
    GRBMHistory

    Notes
    -----
    The gradient of the negative log-likelihood of a batch is
    ``d(-log p)/dtheta = <dF/dtheta>_data - <dF/dtheta>_model``. CD-k estimates the model term
    at samples ``u_k`` reached by ``k`` Gibbs steps started at the data, using ``p(h | u_k)``
    (not a sampled ``h``) for the hidden statistics. Each parameter then moves by
    ``v <- mu v - lr (g + weight_decay W)``, ``theta <- theta + v`` (heavy-ball SGD,
    refimpl.nn.optim).

    Raises
    ------
    FloatingPointError
        If the parameters become NaN or infinite (training diverged; lower ``lr``).
    """
    if not isinstance(rbm, GaussianRBM):
        raise TypeError(f"rbm must be a GaussianRBM, got {type(rbm).__name__}")
    u_all = rbm.standardize(x)
    if len(u_all) < 1:
        raise ValueError("x must hold at least one sample, got 0 rows")
    epochs = check_int(epochs, "epochs", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    k = check_int(k, "k", low=1)
    momentum_switch = check_int(momentum_switch, "momentum_switch", low=0)
    mu = _check_momentum(momentum)
    rng = np.random.default_rng(rng)
    opt_w = SGD([rbm.W], lr=lr, momentum=mu[0], weight_decay=weight_decay)
    opt_bc = SGD([rbm.b, rbm.c], lr=lr, momentum=mu[0])

    history = GRBMHistory()
    n = len(u_all)
    for epoch in range(1, epochs + 1):
        opt_w.momentum = opt_bc.momentum = mu[0] if epoch <= momentum_switch else mu[1]
        start = time.perf_counter()
        recon = free = 0.0
        order = rng.permutation(n)
        for first in range(0, n, batch_size):
            u = u_all[order[first : first + batch_size]]
            grads, batch_recon, batch_free = _cd_gradient(rbm, u, k, rng)
            opt_w.step([grads["W"]])
            opt_bc.step([grads["b"], grads["c"]])
            recon += batch_recon
            free += batch_free
        seconds = time.perf_counter() - start
        if not all(np.all(np.isfinite(p)) for p in rbm.parameters().values()):
            raise FloatingPointError(
                f"GRBM training diverged in epoch {epoch}: parameters are NaN or inf; lower lr "
                f"(got {lr!r})"
            )
        history.epoch.append(epoch)
        history.reconstruction_error.append(recon / (n * rbm.n_visible))
        history.free_energy.append(free / n)
        history.seconds.append(seconds)
        history.samples_per_second.append(n / seconds)
        if log:
            log(
                f"epoch {epoch:3d}/{epochs}  reconstruction error "
                f"{history.reconstruction_error[-1]:.4f}  mean free energy "
                f"{history.free_energy[-1]:.2f}  {n / seconds:,.0f} samples/s"
            )
    return history


def _cd_gradient(
    rbm: GaussianRBM, u: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], float, float]:
    """CD-k estimate of ``d(-mean log p)/d(W, b, c)`` for a standardized batch ``u``.

    Returns the gradients (positive phase minus negative phase of ``_free_energy_grad_params``),
    the batch's summed squared reconstruction error and its summed free energy.
    """
    a = rbm._hidden_input(u)
    positive = rbm._free_energy_grad_params(u, expit(a))
    free = float(rbm._free_energy(u, a).sum())
    u_k, m, p_k = rbm._gibbs_step(u, rng)
    recon = float(((u - m) ** 2).sum())
    for _ in range(k - 1):
        u_k, _, p_k = rbm._gibbs_step(u_k, rng)
    negative = rbm._free_energy_grad_params(u_k, p_k)
    return {name: positive[name] - negative[name] for name in positive}, recon, free


def _check_momentum(momentum: tuple[float, float]) -> tuple[float, float]:
    """Return ``momentum`` as two floats in [0, 1), else raise naming the value."""
    if not isinstance(momentum, (tuple, list)) or len(momentum) != 2:
        raise TypeError(f"momentum must be a pair (initial, final), got {momentum!r}")
    values = tuple(check_positive(m, "momentum", allow_zero=True) for m in momentum)
    if max(values) >= 1:
        raise ValueError(f"momentum values must be in [0, 1), got {momentum!r}")
    return values


# --- model file ----------------------------------------------------------------------------

_ARRAYS = ("W", "b", "c", "mean", "std")


def _grbm_to_spec(rbm: GaussianRBM, prefix: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Spec and arrays of ``rbm`` for the model file (kind ``"grbm"``)."""
    spec = {
        "kind": "grbm",
        "sigma": rbm.sigma,
        "n_visible": rbm.n_visible,
        "n_hidden": rbm.n_hidden,
    }
    return spec, {prefix + name: getattr(rbm, name) for name in _ARRAYS}


def _grbm_from_spec(spec: dict, arrays: modelfile._ArrayPool, prefix: str) -> GaussianRBM:
    """Rebuild a GaussianRBM from its spec and arrays; raise ``ModelFileError`` if invalid."""
    where = prefix or "grbm"
    params = arrays.take_prefix(prefix)
    if set(params) != set(_ARRAYS):
        raise modelfile.ModelFileError(
            f"{where}: needs arrays {sorted(_ARRAYS)}, got {sorted(params)}"
        )
    sizes = {}
    for key in ("n_visible", "n_hidden"):
        value = spec.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise modelfile.ModelFileError(
                f"{where}: {key} must be a positive integer, got {value!r}"
            )
        sizes[key] = value
    sigma = spec.get("sigma")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise modelfile.ModelFileError(f"{where}: sigma must be a number > 0, got {sigma!r}")
    d, h = sizes["n_visible"], sizes["n_hidden"]
    expected = {"W": (d, h), "b": (h,), "c": (d,), "mean": (d,), "std": (d,)}
    for name, shape in expected.items():
        if params[name].shape != shape:
            raise modelfile.ModelFileError(
                f"{where}: array {name!r} must have shape {shape} (n_visible={d}, "
                f"n_hidden={h}), got {params[name].shape}"
            )
    try:
        return GaussianRBM(**{name: params[name] for name in _ARRAYS}, sigma=float(sigma))
    except (ValueError, TypeError) as exc:
        raise modelfile.ModelFileError(f"{where}: {exc}") from None


modelfile.register_kind("grbm", GaussianRBM, _grbm_to_spec, _grbm_from_spec)
