"""The Marchenko-Pastur law and the spiked-covariance outlier (BBP transition).

Convention used throughout theorylab: ``X`` is an ``n x p`` matrix with i.i.d. entries of mean 0
and variance ``sigma2`` (``n`` samples, ``p`` features) and ``gamma = p / n``.  The eigenvalues of
the ``p x p`` sample covariance ``X^T X / n`` follow, as ``n, p -> inf`` with ``p / n -> gamma``,
the Marchenko-Pastur law (Marchenko & Pastur 1967; Bai & Silverstein 2010, Ch. 3)

    rho(lam) = sqrt((lam_+ - lam)(lam - lam_-)) / (2 pi sigma2 gamma lam)   on [lam_-, lam_+],
    lam_+- = sigma2 (1 +- sqrt(gamma))^2,

plus an atom of mass ``1 - 1/gamma`` at zero when ``gamma > 1``.  (With ``W`` of shape ``N x M``,
``Q = N / M``, the eigenvalues of ``W^T W / N`` are the case ``gamma = 1/Q``.)
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp


def _check(gamma: float, sigma2: float) -> None:
    if not (np.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma = p/n must be a finite number > 0, got {gamma}")
    if not (np.isfinite(sigma2) and sigma2 > 0):
        raise ValueError(f"sigma2 (the entry variance) must be a finite number > 0, got {sigma2}")


def mp_edges(gamma: float, *, sigma2: float = 1.0) -> tuple[float, float]:
    """The edges ``(lam_-, lam_+) = sigma2 (1 -+ sqrt(gamma))^2`` of the Marchenko-Pastur bulk.

    Marchenko & Pastur 1967; Bai & Silverstein 2010, Ch. 3.
    """
    _check(gamma, sigma2)
    root = math.sqrt(gamma)
    return sigma2 * (1.0 - root) ** 2, sigma2 * (1.0 + root) ** 2


def mp_atom(gamma: float) -> float:
    """The mass ``max(0, 1 - 1/gamma)`` of the Marchenko-Pastur law at zero (rank deficiency, p > n)."""
    _check(gamma, 1.0)
    return max(0.0, 1.0 - 1.0 / gamma)


def mp_density(lam: np.ndarray | float, gamma: float, *, sigma2: float = 1.0) -> np.ndarray:
    """Density of the continuous part of the Marchenko-Pastur law (zero outside the bulk).

    ``rho(lam) = sqrt((lam_+ - lam)(lam - lam_-)) / (2 pi sigma2 gamma lam)``; it integrates to
    ``min(1, 1/gamma)`` (the rest is the atom at zero).  Marchenko & Pastur 1967;
    Bai & Silverstein 2010, Ch. 3.
    """
    low, high = mp_edges(gamma, sigma2=sigma2)
    lam = np.asarray(lam, dtype=np.float64)
    inside = (lam > low) & (lam < high) & (lam > 0)
    safe = np.where(inside, lam, 1.0)
    value = np.sqrt(np.clip((high - safe) * (safe - low), 0.0, None)) / (2 * np.pi * sigma2 * gamma * safe)
    return np.where(inside, value, 0.0)


def mp_cdf(lam: np.ndarray | float, gamma: float, *, sigma2: float = 1.0, grid: int = 20001) -> np.ndarray:
    """Cumulative distribution function of the Marchenko-Pastur law, atom at zero included.

    The density is integrated in the angle ``theta`` of ``lam = lam_- + (lam_+ - lam_-)(1 - cos theta)/2``,
    where the integrand ``(lam_+ - lam_-)^2 sin^2(theta) / (8 pi sigma2 gamma lam)`` is smooth (no
    square-root edges), by the cumulative trapezoidal rule on ``grid`` points; the error is below
    1e-7 for the default grid.
    """
    low, high = mp_edges(gamma, sigma2=sigma2)
    if grid < 101:
        raise ValueError(f"grid must be >= 101 points, got {grid}")
    theta = np.linspace(0.0, np.pi, grid)
    x = low + (high - low) * (1.0 - np.cos(theta)) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        integrand = (high - low) ** 2 * np.sin(theta) ** 2 / (8.0 * np.pi * sigma2 * gamma * x)
    if low == 0.0:  # gamma = 1: sin^2(theta) / lam -> 4 / lam_+ at theta = 0
        integrand[0] = (high - low) ** 2 * 4.0 / high / (8.0 * np.pi * sigma2 * gamma)
    cumulative = np.concatenate([[0.0], np.cumsum((integrand[1:] + integrand[:-1]) / 2.0 * np.diff(theta))])
    lam = np.asarray(lam, dtype=np.float64)
    inside = np.clip((2.0 * (lam - low) / (high - low)) if high > low else 0.0, 0.0, 2.0)
    part = np.interp(np.arccos(1.0 - inside), theta, cumulative)
    return np.where(lam < 0, 0.0, mp_atom(gamma) + part)


def mp_stieltjes(z: float, gamma: float) -> float:
    """Stieltjes transform ``m(z) = E[1 / (lam - z)]`` of the Marchenko-Pastur law (``sigma2 = 1``), real ``z < 0``.

    ``m(z) = (1 - gamma - z - sqrt((1 - gamma - z)^2 - 4 gamma z)) / (2 gamma z)`` (Hastie, Montanari,
    Rosset & Tibshirani 2019; Bai & Silverstein 2010, Ch. 3); on the negative axis
    the branch is the real positive one, ``m(-t) = (sqrt((1 - gamma + t)^2 + 4 gamma t) - (1 - gamma + t)) / (2 gamma t)``.
    """
    _check(gamma, 1.0)
    if not (np.isfinite(z) and z < 0):
        raise ValueError(f"z must be a finite number < 0 (off the support, on the negative axis), got {z}")
    t = -float(z)
    b = 1.0 - gamma + t
    return (math.sqrt(b * b + 4.0 * gamma * t) - b) / (2.0 * gamma * t)


def spiked_outlier(theta: float, gamma: float) -> float:
    """Limit of the top sample-covariance eigenvalue for population covariance ``I + theta v v^T``.

    Baik, Ben Arous & Peche 2005; Baik & Silverstein 2006; Paul 2007: if
    ``theta > sqrt(gamma)`` an outlier separates from the bulk at ``(1 + theta)(1 + gamma/theta)``;
    otherwise the top eigenvalue sticks to the bulk edge ``(1 + sqrt(gamma))^2``.
    """
    _check(gamma, 1.0)
    if not (np.isfinite(theta) and theta >= 0):
        raise ValueError(f"theta (the spike strength) must be a finite number >= 0, got {theta}")
    if theta <= math.sqrt(gamma):
        return (1.0 + math.sqrt(gamma)) ** 2
    return (1.0 + theta) * (1.0 + gamma / theta)


def mp_density_symbolic() -> sp.Expr:
    """The Marchenko-Pastur density as a sympy expression in ``lam, gamma, sigma2`` (inside the bulk)."""
    lam, gamma, sigma2 = sp.symbols("lambda gamma sigma2", positive=True)
    low = sigma2 * (1 - sp.sqrt(gamma)) ** 2
    high = sigma2 * (1 + sp.sqrt(gamma)) ** 2
    return sp.sqrt((high - lam) * (lam - low)) / (2 * sp.pi * sigma2 * gamma * lam)
