"""Test risk of isotropic linear regression in high dimension: ridgeless, ridge, and gradient descent.

Setting (Hastie, Montanari, Rosset & Tibshirani 2019, "Surprises in high-dimensional ridgeless
least squares interpolation"): ``n`` samples ``x ~ N(0, I_p)``, ``y = x . beta + eps``,
``|beta|^2 = r2`` (the signal), ``Var eps = sigma2`` (the noise), ``gamma = p / n``.  The risk is the
*excess* test risk ``E_x (x . (beta_hat - beta))^2 = |beta_hat - beta|^2`` in the limit
``n, p -> inf`` with ``p / n -> gamma``; a test MSE on noisy labels adds ``sigma2``.
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp
from scipy import integrate

from theorylab.theory.marchenko_pastur import mp_atom, mp_edges, mp_stieltjes


def _check(gamma: float, signal: float, noise: float) -> None:
    if not (np.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma = p/n must be a finite number > 0, got {gamma}")
    if not (np.isfinite(signal) and signal >= 0):
        raise ValueError(f"signal r^2 must be a finite number >= 0, got {signal}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise sigma^2 must be a finite number >= 0, got {noise}")


def ridgeless_risk(gamma: float | np.ndarray, *, signal: float = 1.0, noise: float = 0.0) -> np.ndarray:
    """Excess test risk of the minimum-norm least-squares interpolator (ridgeless regression).

    Hastie et al. 2019 (isotropic features, ridgeless limit)::

        gamma < 1:  R = sigma2 gamma / (1 - gamma)
        gamma > 1:  R = r2 (1 - 1/gamma) + sigma2 / (gamma - 1)

    ``R = inf`` at ``gamma = 1`` when ``sigma2 > 0`` (the double-descent peak).
    """
    g = np.asarray(gamma, dtype=np.float64)
    if g.size == 0:
        raise ValueError("gamma is empty")
    for value in g.ravel():
        _check(float(value), signal, noise)
    with np.errstate(divide="ignore", invalid="ignore"):
        under = noise * g / (1.0 - g)
        over = signal * (1.0 - 1.0 / g) + noise / (g - 1.0)
    at_one = np.inf if noise > 0 else 0.0
    return np.where(g < 1, under, np.where(g > 1, over, at_one))


def ridgeless_risk_finite(n: int, p: int, *, signal: float = 1.0, noise: float = 0.0) -> float:
    """Exact expected excess risk of min-norm least squares at finite ``n, p`` (Gaussian design).

    Belkin, Hsu & Xu 2020 ("Two models of double descent for weak features", SIAM J. Math. Data
    Sci.; Gaussian design), from the inverse-Wishart mean ``E (X^T X)^-1 = I / (n - p - 1)``, for ``beta``
    uniform on the sphere of radius ``sqrt(r2)``::

        p <= n - 2:  R = sigma2 p / (n - p - 1)
        p >= n + 2:  R = r2 (1 - n/p) + sigma2 n / (p - n - 1)

    (infinite in between when ``sigma2 > 0``).  Tends to :func:`ridgeless_risk` as ``n, p -> inf``.
    """
    if n < 1 or p < 1:
        raise ValueError(f"n and p must be >= 1, got n={n}, p={p}")
    _check(p / n, signal, noise)
    if p <= n - 2:
        return noise * p / (n - p - 1)
    if p >= n + 2:
        return signal * (1.0 - n / p) + noise * n / (p - n - 1)
    return math.inf if noise > 0 else (signal * (1.0 - n / p) if p > n else 0.0)


def ridgeless_finite_size_correction(n: int, p: int, *, noise: float = 0.0) -> float:
    """``|R_{n,p} - R_inf|``: how far the exact finite-``n`` risk (:func:`ridgeless_risk_finite`) lies
    above its ``n, p -> inf`` limit (:func:`ridgeless_risk`) at the same ``gamma = p/n``.

    Only the noise term differs (Belkin, Hsu & Xu 2020 against Hastie et al. 2019)::

        p <= n - 2:  sigma2 p / ((n - p)(n - p - 1))
        p >= n + 2:  sigma2 n / ((p - n)(p - n - 1))

    It is O(1/|n - p|) relative to the risk, and written out here, not as a difference of the two
    risks, so that it bounds the finite-size effect independently of either formula.
    """
    if n < 1 or p < 1:
        raise ValueError(f"n and p must be >= 1, got n={n}, p={p}")
    _check(p / n, 0.0, noise)
    if p <= n - 2:
        return noise * p / ((n - p) * (n - p - 1))
    if p >= n + 2:
        return noise * n / ((p - n) * (p - n - 1))
    return math.inf if noise > 0 else 0.0


def ridge_risk(gamma: float, ridge: float, *, signal: float = 1.0, noise: float = 0.0) -> float:
    """Excess test risk of ridge regression ``beta_hat = (X^T X / n + lam I)^-1 X^T y / n``.

    Hastie et al. 2019 (isotropic ridge, after Dobriban & Wager 2018)::

        R(lam) = r2 lam^2 m'(-lam) + sigma2 gamma (m(-lam) - lam m'(-lam)),

    ``m`` the Marchenko-Pastur Stieltjes transform (:func:`mp_stieltjes`), ``m'(-lam) = E[(x + lam)^-2]``.
    The first term is the bias, the second the variance.  Finite for every ``gamma`` when ``lam > 0``.
    """
    _check(gamma, signal, noise)
    if not (np.isfinite(ridge) and ridge > 0):
        raise ValueError(f"ridge must be a finite number > 0 (use ridgeless_risk for 0), got {ridge}")
    t, b = float(ridge), 1.0 - gamma + ridge
    root = math.sqrt(b * b + 4.0 * gamma * t)
    m = mp_stieltjes(-t, gamma)
    # m'(-t) = E[(x + t)^-2] = -d/dt m(-t), differentiated in closed form
    dm_dt = (((b + 2.0 * gamma) / root - 1.0) * t - (root - b)) / (2.0 * gamma * t * t)
    m_prime = -dm_dt
    return signal * t * t * m_prime + noise * gamma * (m - t * m_prime)


def optimal_ridge(gamma: float, *, signal: float = 1.0, noise: float = 0.0) -> float:
    """The risk-minimising ridge ``lam* = gamma sigma2 / r2`` (Dobriban & Wager 2018;
    Hastie et al. 2019): with it the risk is monotone in ``gamma`` (no double descent)."""
    _check(gamma, signal, noise)
    if signal <= 0 or noise <= 0:
        raise ValueError("the optimal ridge needs signal > 0 and noise > 0")
    return gamma * noise / signal


def gd_risk(steps: int | np.ndarray, gamma: float, *, lr: float, signal: float = 1.0, noise: float = 0.0,
            init_norm2: float = 0.0) -> np.ndarray:
    """Excess test risk of gradient descent on ``|X w - y|^2 / (2n)`` after ``steps`` steps.

    The linear-student dynamics of Advani & Saxe 2017 ("High-dimensional dynamics of generalization
    error in neural networks"), written here for discrete steps: in the eigenbasis of
    ``X^T X / n`` (eigenvalues ``lam`` Marchenko-Pastur distributed) each mode of the error contracts by
    ``(1 - lr lam)`` per step, and the noise enters with weight ``(1 - (1 - lr lam)^k)^2 / lam``, so::

        R(k) = (r2 + s0) E[(1 - lr lam)^(2k)] + sigma2 gamma E_{lam > 0}[(1 - (1 - lr lam)^k)^2 / lam],

    where ``s0 = E|w_0|^2`` (``init_norm2``, isotropic initial weights), and the first expectation includes the
    atom at ``lam = 0`` (mass ``1 - 1/gamma`` for ``gamma > 1``: directions GD never moves, where the
    initial weights stay forever -- why small initial weights are needed).  As ``k -> inf`` with
    ``init_norm2 = 0`` this is :func:`ridgeless_risk`; the continuous-time limit is ``lr -> 0`` at ``t = lr k``.
    """
    _check(gamma, signal, noise)
    if not (np.isfinite(init_norm2) and init_norm2 >= 0):
        raise ValueError(f"init_norm2 (E|w_0|^2) must be a finite number >= 0, got {init_norm2}")
    low, high = mp_edges(gamma)
    if not (np.isfinite(lr) and 0 < lr < 2.0 / high):
        raise ValueError(f"lr must be in (0, 2/lam_+) = (0, {2.0 / high:.4g}) for GD to be stable, got {lr}")
    k = np.asarray(steps, dtype=np.float64)
    if np.any(k < 0):
        raise ValueError("steps must be >= 0")

    # quadrature in the angle theta of lam = low + (high - low)(1 - cos theta)/2, where the MP weight
    # rho(lam) dlam = (high - low)^2 sin^2(theta) / (8 pi gamma lam) dtheta has no square-root edges
    def weight(theta: float) -> tuple[float, float]:
        lam = low + (high - low) * (1.0 - math.cos(theta)) / 2.0
        w = (high - low) ** 2 * math.sin(theta) ** 2 / (8.0 * math.pi * gamma)
        return lam, w

    def one(kk: float) -> float:
        def bias(theta: float) -> float:
            lam, w = weight(theta)
            return w / lam * (1.0 - lr * lam) ** (2 * kk) if lam > 0 else 0.0

        def variance(theta: float) -> float:
            lam, w = weight(theta)
            return w / lam ** 2 * (1.0 - (1.0 - lr * lam) ** kk) ** 2 if lam > 0 else 0.0

        b, _ = integrate.quad(bias, 0.0, math.pi, limit=200)
        v, _ = integrate.quad(variance, 0.0, math.pi, limit=200)
        return (signal + init_norm2) * (b + mp_atom(gamma)) + noise * gamma * v

    return np.vectorize(one, otypes=[np.float64])(k)


def ridgeless_risk_symbolic() -> sp.Piecewise:
    """:func:`ridgeless_risk` as a sympy ``Piecewise`` in ``gamma, r2, sigma2`` (Hastie et al. 2019)."""
    gamma, r2, sigma2 = sp.symbols("gamma r2 sigma2", positive=True)
    return sp.Piecewise((sigma2 * gamma / (1 - gamma), gamma < 1),
                        (r2 * (1 - 1 / gamma) + sigma2 / (gamma - 1), True))
