"""Empirical spectral densities of data Grams and weight matrices against Marchenko-Pastur.

For an ``n x p`` matrix ``X`` (a data matrix: rows are samples; or a weight matrix) the eigenvalues
of ``X^T X / n`` of a matrix with i.i.d. entries of variance ``sigma2`` follow the Marchenko-Pastur
law with ratio ``gamma = p / n`` (:mod:`theorylab.theory.marchenko_pastur`).  :func:`mp_fit`
compares the empirical spectrum with it: the Kolmogorov-Smirnov distance between the empirical and
the Marchenko-Pastur CDF, and the *outliers*, eigenvalues above the bulk edge by more than the
finite-size Tracy-Widom fluctuation (Johnstone 2001, main theorem: the top eigenvalue of a white Wishart
matrix is ``mu + s * TW1`` with ``mu = (sqrt(n - 1) + sqrt(p))^2``,
``s = (sqrt(n - 1) + sqrt(p)) (1/sqrt(n - 1) + 1/sqrt(p))^(1/3)``).  Outliers are structure that a
random matrix would not have: a planted signal, learned features (Martin & Mahoney 2021).
(For the heavy-tailed power-law exponent of weight spectra see :mod:`theorylab.representations`.)
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from theorylab.plotting import MEASURED, PREDICTED, axes_or_new
from theorylab.provenance import make_meta
from theorylab.results import Result, result_class
from theorylab.theory.marchenko_pastur import mp_atom, mp_cdf, mp_density, mp_edges

#: 99% quantile of the Tracy-Widom (beta = 1) law (Johnstone 2001, Table 1)
TW1_QUANTILE_99 = 2.0234


@result_class
class MPFit(Result):
    """Spectrum of ``X^T X / n`` against the Marchenko-Pastur law of ratio ``gamma = p / n``.

    ``eigenvalues``: all ``p`` eigenvalues (ascending; ``p - n`` of them are zero when ``p > n``);
    ``sigma2``: the entry variance used (estimated from the bulk unless given); ``ks_distance``: sup
    distance between the empirical CDF of the nonzero non-outlier eigenvalues and the continuous
    part of the MP law (renormalised);
    ``threshold``: the outlier threshold (edge plus 99% Tracy-Widom fluctuation); ``outliers``:
    eigenvalues above it, descending.
    """

    eigenvalues: np.ndarray
    n: int
    p: int
    gamma: float
    sigma2: float
    edges: tuple[float, float]
    threshold: float
    outliers: np.ndarray
    ks_distance: float

    def plot(self, ax: Any = None) -> Any:
        """Histogram of the nonzero eigenvalues with the MP density over it; outliers marked."""
        ax = axes_or_new(ax)
        nonzero = self.eigenvalues[self.eigenvalues > 1e-12 * max(self.edges[1], 1e-300)]
        bulk = nonzero[nonzero <= self.threshold]
        # the histogram is normalised to the weight of the continuous part (atom at zero left out)
        weight = len(bulk) / self.p
        counts, bins = np.histogram(bulk, bins=max(10, min(60, len(bulk) // 5)))
        width = np.diff(bins)
        ax.bar(bins[:-1], counts / (self.p * width), width=width, align="edge", color=MEASURED, alpha=0.5,
               label=f"eigenvalues of X^T X / n ({weight:.2f} of mass)")
        grid = np.linspace(self.edges[0], self.edges[1], 400)
        ax.plot(grid, mp_density(grid, self.gamma, sigma2=self.sigma2), color=PREDICTED,
                label=f"Marchenko-Pastur, gamma={self.gamma:.3g}, KS={self.ks_distance:.3f}")
        for i, value in enumerate(self.outliers):
            ax.axvline(value, color=MEASURED, ls="--", lw=1, label="outliers" if i == 0 else None)
        ax.axvline(self.threshold, color=PREDICTED, ls=":", lw=1, label="edge + TW 99%")
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density")
        ax.legend()
        return ax


def _as_matrix(matrix: np.ndarray | Tensor) -> np.ndarray:
    x = matrix.detach().cpu().double().numpy() if isinstance(matrix, Tensor) else np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or min(x.shape) < 2:
        raise ValueError(f"need a 2-d matrix with at least 2 rows and 2 columns, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the matrix contains NaN or infinite entries")
    return x


def tracy_widom_threshold(n: int, p: int, *, sigma2: float = 1.0, quantile: float = TW1_QUANTILE_99) -> float:
    """Eigenvalue of ``X^T X / n`` that a white matrix exceeds with the probability of ``quantile``.

    ``sigma2 (mu + quantile * s) / n`` with Johnstone's (2001) centring ``mu`` and scale ``s``.
    """
    if n < 2 or p < 1:
        raise ValueError(f"need n >= 2 and p >= 1, got n={n}, p={p}")
    a, b = math.sqrt(n - 1), math.sqrt(p)
    mu, s = (a + b) ** 2, (a + b) * (1 / a + 1 / b) ** (1 / 3)
    return sigma2 * (mu + quantile * s) / n


def mp_fit(matrix: np.ndarray | Tensor, *, sigma2: float | None = None, center: bool = False) -> MPFit:
    """Compare the spectrum of ``X^T X / n`` (``X`` of shape ``n x p``) with Marchenko-Pastur.

    ``sigma2=None`` estimates the entry variance from the bulk: the mean eigenvalue equals ``sigma2``
    for a white matrix, and is recomputed once without the outliers (which would inflate it).
    ``center`` subtracts the column means first (a data matrix with a nonzero mean has one outlier).
    """
    x = _as_matrix(matrix)
    if center:
        x = x - x.mean(axis=0, keepdims=True)
    n, p = x.shape
    gamma = p / n
    singular = np.linalg.svd(x, compute_uv=False)
    eig = np.sort(np.concatenate([singular ** 2 / n, np.zeros(max(0, p - n))]))
    if sigma2 is None:
        estimate = float(eig.mean())
        if estimate <= 0:
            raise ValueError("the matrix is zero: no variance to fit")
        threshold = tracy_widom_threshold(n, p, sigma2=estimate)
        estimate = float(eig[eig <= threshold].sum() / (p - np.sum(eig > threshold)))
        sigma2 = estimate
    elif not (math.isfinite(sigma2) and sigma2 > 0):
        raise ValueError(f"sigma2 must be a finite number > 0, got {sigma2}")
    threshold = tracy_widom_threshold(n, p, sigma2=sigma2)
    # the KS distance compares the nonzero bulk with the continuous part of the law (the atom at zero,
    # p - n exact zeros when p > n, would make a tie that a sup distance cannot handle)
    nonzero = np.sort(singular[: min(n, p)] ** 2 / n)
    bulk = nonzero[nonzero <= threshold]
    if len(bulk) == 0:
        raise ValueError("every nonzero eigenvalue lies above the Marchenko-Pastur edge: no bulk to fit")
    empirical = np.arange(1, len(bulk) + 1) / len(bulk)
    atom = mp_atom(gamma)
    model = (mp_cdf(bulk, gamma, sigma2=sigma2) - atom) / (1.0 - atom)
    ks = float(max(np.max(np.abs(empirical - model)), np.max(np.abs(empirical - 1 / len(bulk) - model))))
    return MPFit(eigenvalues=eig, n=n, p=p, gamma=gamma, sigma2=float(sigma2), edges=mp_edges(gamma, sigma2=sigma2),
                 threshold=threshold, outliers=np.sort(eig[eig > threshold])[::-1].copy(), ks_distance=ks,
                 meta=make_meta(dtype=torch.float64))
