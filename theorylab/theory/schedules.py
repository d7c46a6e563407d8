"""The last-iterate bound of a learning-rate schedule (Defazio, Cutkosky, Mehta & Mishchenko 2023, "When,
why and how much? Adaptive learning rate scheduling by refinement", arXiv:2310.07831: their bound for any
schedule).

For a convex function, SGD ``x_{t+1} = x_t - eta_t g_t`` (``t = 1 .. T``), ``D = ||x_1 - x_*||`` and gradient
norms ``||g_t||``, the last iterate satisfies

    E f(x_T) - f_*  <=  (D^2 + sum_t eta_t^2 ||g_t||^2) / (2 sum_t eta_t)
                       + 1/2 sum_{k=1}^{T-1} eta_k / (sum_{t>k} eta_t)
                             * (sum_{t>=k} eta_t^2 ||g_t||^2) / (sum_{t>=k} eta_t).

With constant gradient norms ``G`` the schedule that minimises it is the linear decay
``eta_t ~ 1 - t/T`` (their worst-case corollary), with value ``~ 2 D G / sqrt(T)``; the cosine schedule's bound is a
few percent higher at its best peak step.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def last_iterate_bound(lrs: Sequence[float] | np.ndarray, *, distance: float = 1.0,
                       grad_norms: float | Sequence[float] | np.ndarray = 1.0) -> float:
    """The bound on ``E f(x_T) - f_*`` of Defazio et al. 2023 (module docstring) for step sizes ``lrs``.

    ``distance`` is ``D = ||x_1 - x_*||``; ``grad_norms`` one norm for every step or a constant ``G``.
    """
    eta = np.asarray(lrs, dtype=np.float64)
    if eta.ndim != 1 or eta.size < 2 or not np.all(np.isfinite(eta)) or np.any(eta < 0):
        raise ValueError("lrs must be a 1-D array of at least 2 finite step sizes >= 0")
    if not np.all(np.cumsum(eta[::-1])[1:] > 0):
        raise ValueError("every tail sum of the step sizes but the last must be > 0")
    g2 = np.broadcast_to(np.asarray(grad_norms, dtype=np.float64) ** 2, eta.shape)
    if not (distance >= 0 and np.isfinite(distance)) or not np.all(np.isfinite(g2)):
        raise ValueError("distance and grad_norms must be finite and >= 0")
    tail = np.cumsum(eta[::-1])[::-1]                 # sum_{t >= k} eta_t
    weighted = np.cumsum((eta ** 2 * g2)[::-1])[::-1]  # sum_{t >= k} eta_t^2 |g_t|^2
    first = (distance ** 2 + weighted[0]) / (2.0 * tail[0])
    k = np.arange(eta.size - 1)
    second = 0.5 * np.sum(eta[k] / tail[k + 1] * weighted[k] / tail[k])
    return float(first + second)
