"""Linear stability of gradient methods at a minimum: the thresholds the edge of stability and the
implicit regularisation of SGD are measured against.

* Full-batch gradient descent with step ``eta`` on a quadratic with curvature ``lambda`` is stable
  iff ``eta lambda <= 2``; near a minimum the quadratic model holds with ``lambda = lambda_max(H)``.
  Cohen, Kaur, Li, Kolter & Talwalkar 2021 ("Gradient descent on neural networks typically occurs
  at the edge of stability", ICLR) observe that the sharpness of full-batch GD rises to ``2/eta``
  and hovers there.
* SGD with batch size 1 at an interpolating minimum of the MSE is linearly stable (in mean
  square) only if ``tr(H) <= 2/eta`` (Wu & Su 2023, "The implicit regularization of dynamical
  stability in stochastic gradient descent", ICML, Theorem 3.3), a stricter condition than GD's.
"""
from __future__ import annotations

import numpy as np


def _check_lr(lr: float | np.ndarray) -> np.ndarray:
    lr = np.asarray(lr, dtype=np.float64)
    if np.any(~np.isfinite(lr)) or np.any(lr <= 0):
        raise ValueError(f"step sizes must be finite and > 0, got {lr}")
    return lr


def gd_sharpness_threshold(lr: float | np.ndarray) -> np.ndarray:
    """``2 / eta``: the largest ``lambda_max(H)`` at which full-batch GD with step ``eta`` is stable
    (the edge of stability of Cohen et al. 2021)."""
    return 2.0 / _check_lr(lr)


def sgd_trace_threshold(lr: float | np.ndarray) -> np.ndarray:
    """``2 / eta``: the largest ``tr(H)`` at which SGD with batch size 1 is stable at an interpolating
    MSE minimum (Wu & Su 2023, Theorem 3.3)."""
    return 2.0 / _check_lr(lr)
