"""The published fitting procedure of Hoffmann et al. 2022 (approach 3), as a reference baseline.

``log L = LSE(a - alpha log N, b - beta log D, e)`` with Huber(delta) on the log-loss residuals,
minimised by scipy's L-BFGS-B with its *default* stopping rule and *finite-difference* gradients
from each of a grid of starts (Hoffmann et al. 2022, appendix D.2; the replication code of
Besiroglu et al. 2024 does the same).  With the summed loss the best start reaches the optimum
(slowly: ~230 s for the 4,500-start grid); with the mean loss (objective ~4e-6) the stopping rule
and the gradient noise end the runs early and the best start lands near alpha 0.38, beta 0.31 --
the biased published estimates.  theorylab's own optimisers (:mod:`theorylab.fits.optimize`) use
exact gradients and objective-scaled tolerances instead; this module exists for comparisons.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp


def hoffmann_objective(x: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray,
                       delta: float, reduction: Literal["sum", "mean"]) -> float:
    """Huber loss of the log-sum-exp law at ``x = (e, a, b, alpha, beta)``."""
    e, a, b, alpha, beta = x
    pred = logsumexp([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)], axis=0)
    r = np.abs(pred - log_loss)
    h = np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta))
    return float(h.sum() if reduction == "sum" else h.mean())


def hoffmann_fit(N: np.ndarray, D: np.ndarray, loss: np.ndarray, starts: np.ndarray, *, delta: float = 1e-3,
                 reduction: Literal["sum", "mean"] = "sum") -> tuple[np.ndarray, float, np.ndarray]:
    """Best of scipy L-BFGS-B runs (default tolerances, numerical gradients) from ``starts``.

    ``starts`` rows are ``(e, a, b, alpha, beta)`` (see :func:`theorylab.fits.forms.hoffmann_grid`).
    Returns the natural parameters ``(E, A, B, alpha, beta)``, the objective and all objectives.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    args = (np.log(N), np.log(D), np.log(loss), delta, reduction)
    runs = [minimize(hoffmann_objective, x0, args=args, method="L-BFGS-B") for x0 in np.atleast_2d(starts)]
    values = np.array([r.fun for r in runs])
    best = runs[int(np.argmin(values))].x
    params = np.concatenate([np.exp(best[:3]), best[3:]])
    return params, float(values.min()), values
