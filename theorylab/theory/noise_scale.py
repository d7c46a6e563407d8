"""The empirical model of large-batch training (McCandlish, Kaplan, Amodei & OpenAI Dota Team 2018,
"An empirical model of large-batch training", arXiv:1812.06162).

For a quadratic model of the loss around the current parameters, with gradient ``G``, Hessian ``H``
and per-example gradient covariance ``Sigma``, one SGD step with batch ``B`` at its best step size
lowers the loss by ``dL_max / (1 + B_noise / B)`` with the noise scale
``B_noise = tr(H Sigma) / (G^T H G)`` (their eq. 2.8).  Summing over the steps of a training run,
the steps ``S`` and examples ``E = B S`` to reach a target loss trade off as
``S = S_min (1 + B_crit / B)`` (eq. 2.11, with ``E_min = S_min B_crit``): each step at noise scale ``B_noise`` costs
``1 + B_noise / B`` times the steps of a noise-free one, so ``B_crit`` is ``B_noise`` averaged over
the steps of the run, and, where ``B_noise`` varies slowly with the loss, the noise scale around
the target loss.  ``B_simple = tr(Sigma) / |G|^2`` is their proxy for ``B_noise``
when ``H`` is unknown (equal to it only if ``H`` is a multiple of the identity).
"""
from __future__ import annotations

import numpy as np


def steps_to_target(batch_size: float | np.ndarray, *, s_min: float, b_crit: float) -> np.ndarray:
    """``S(B) = S_min (1 + B_crit / B)``: optimisation steps to reach a target loss (eq. 2.11)."""
    b = np.asarray(batch_size, dtype=np.float64)
    if np.any(b <= 0) or not (s_min > 0 and b_crit >= 0):
        raise ValueError("need batch sizes > 0, s_min > 0 and b_crit >= 0")
    return s_min * (1.0 + b_crit / b)


def critical_batch_size(noise_scales: np.ndarray) -> float:
    """``B_crit`` predicted from noise scales ``B_noise`` measured at steps of a run: their mean.

    Each step at noise scale ``b`` takes ``1 + b/B`` times the steps of a noise-free step, so
    ``S(B) = sum_t (1 + b_t / B) = S_min (1 + mean_t(b_t) / B)``.
    """
    b = np.asarray(noise_scales, dtype=np.float64)
    if b.size == 0 or np.any(~np.isfinite(b)):
        raise ValueError("need at least one finite noise scale")
    return float(b.mean())
