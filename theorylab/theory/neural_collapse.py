"""Neural collapse: the geometry of the global minimisers of unconstrained-features models.

Dang, Tran, Osher, Tran-The, Ho & Nguyen 2023 ("Neural collapse in deep linear networks: from
balanced to imbalanced data", ICML): bias-free MSE with weight decay ``lambda_W`` on the classifier
and ``lambda_H`` on the free features, ``min (1/2N) ||W H - Y||_F^2 + (lambda_W/2) ||W||_F^2 +
(lambda_H/2) ||H||_F^2``.  At a non-trivial global minimiser the features collapse to their class
means (NC1 = 0); with balanced classes the means form an orthogonal frame of equal norms (so the
centred means are a simplex ETF, Papyan, Han & Donoho 2020); with imbalanced classes they stay
orthogonal but their lengths depend on the class sizes (:func:`imbalanced_ufm_norms`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.optimize


def imbalanced_ufm_norms(class_counts: Sequence[int], *, lambda_w: float, lambda_h: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``(||w_k||, ||h_k||)`` at the global minimiser of the plain (one-layer) imbalanced model.

    ``||w_k||^2 = max(0, sqrt(n_k lambda_H / lambda_W) - N lambda_H)`` and
    ``||h_k|| = ||w_k|| sqrt(lambda_W / (n_k lambda_H))``.  With orthogonal class directions the
    objective separates over classes; for class ``k`` with ``w_k = s u`` and ``h_k = t u`` it is
    ``n_k/(2N) (s t - 1)^2 + lambda_W s^2/2 + lambda_H n_k t^2/2``, balanced at
    ``lambda_W s^2 = lambda_H n_k t^2`` and minimised at ``s t = max(0, 1 - N sqrt(lambda_W lambda_H / n_k))``.
    Classes with ``n_k <= N^2 lambda_W lambda_H`` collapse to zero (the MSE form of minority collapse).
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 2 or np.any(counts < 1):
        raise ValueError(f"class_counts must list at least 2 positive class sizes, got {list(class_counts)}")
    for name, value in (("lambda_w", lambda_w), ("lambda_h", lambda_h)):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number > 0, got {value}")
    s2 = np.maximum(0.0, np.sqrt(counts * lambda_h / lambda_w) - counts.sum() * lambda_h)
    s = np.sqrt(s2)
    return s, s * np.sqrt(lambda_w / (counts * lambda_h))


def ufm_global_objective(class_counts: Sequence[int], *, depth: int, lambda_w: float, lambda_h: float) -> float:
    """The objective at the global minimiser of the deep linear model ``W_M ... W_1 H`` (bias-free MSE, weight
    decay ``lambda_W`` on every layer and ``lambda_H`` on the features, one-hot targets).

    At the minimiser the class directions are orthogonal and every layer has the same singular value
    ``w_k`` along class ``k`` (balancedness), the features of class ``k`` are ``h_k u_k``, so the objective
    separates into ``sum_k n_k/(2N) (w_k^M h_k - 1)^2 + lambda_W M w_k^2 / 2 + lambda_H n_k h_k^2 / 2``, each
    minimised here over ``w_k, h_k >= 0`` (the zero solution included).  A critical point with a higher
    objective (some classes left at zero: depth >= 3 makes the origin a local minimum) is not the
    minimiser the collapse theorems describe.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 2 or np.any(counts < 1) or depth < 1:
        raise ValueError("need at least 2 positive class sizes and depth >= 1")
    n = counts.sum()
    total = 0.0
    for n_k in counts:
        def f(z: np.ndarray) -> float:
            w, h = np.exp(z)
            return n_k / (2 * n) * (w ** depth * h - 1) ** 2 + lambda_w * depth * w * w / 2 + lambda_h * n_k * h * h / 2

        best = n_k / (2 * n)  # the zero solution
        for start in (-2.0, 0.0, 1.0):
            res = scipy.optimize.minimize(f, [start, start], method="Nelder-Mead",
                                          options={"xatol": 1e-12, "fatol": 1e-16, "maxiter": 20000})
            best = min(best, float(res.fun))
        total += best
    return total
