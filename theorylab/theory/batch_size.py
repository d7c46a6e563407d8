"""How the largest stable learning rate grows with the batch size.

* Granziol, Zohren & Roberts 2022 ("Learning rates as a function of batch size: a random matrix theory
  approach to neural network training", JMLR 23(173), Sec. 5-6): while the sampling noise of the
  batch-B Hessian dominates its top eigenvalue, ``lambda_1(H_B) ~ 1/B``, so the largest stable learning
  rate of SGD grows linearly in ``B`` (their linear scaling rule); for adaptive methods such as Adam it
  grows like ``sqrt(B)`` (their square-root scaling rule).  Both stop at the ceiling set by the full-data
  curvature, ``2 / lambda_1(H)`` for GD.
* The mean-square stability limit of SGD on realisable least squares with isotropic Gaussian inputs
  (``x ~ N(0, I_d)``, loss ``(x.w - y)^2``, batches drawn with replacement): ``E ||w_t - w_*||^2`` contracts
  iff ``eta < B / (B + d + 1)``, from ``E[(I - eta H_B)^2] = (1 - 4 eta + 4 eta^2 (B + d + 1) / B) I`` with
  ``H_B = (2/B) sum_i x_i x_i^T`` and ``E[x x^T x x^T] = (d + 2) I``.  Its log-slope in ``B`` is
  ``1 - B / (B + d + 1)``: linear for ``B << d``, saturating at the GD limit beyond ``d``.  (The same
  second-moment argument as in Wu & Su 2023, "The implicit regularization of dynamical stability in
  stochastic gradient descent", ICML.)
"""
from __future__ import annotations

import numpy as np

_EXPONENTS = {"sgd": 1.0, "adam": 0.5}


def max_lr_batch_exponent(optimizer: str) -> float:
    """The exponent ``a`` of ``eta_max ~ B^a`` below the curvature ceiling (Granziol et al. 2022):
    1 for SGD, 1/2 for Adam."""
    if optimizer not in _EXPONENTS:
        raise ValueError(f"optimizer must be one of {sorted(_EXPONENTS)}, got {optimizer!r}")
    return _EXPONENTS[optimizer]


def sgd_mean_square_lr_limit(batch_size: float | np.ndarray, dim: int) -> np.ndarray:
    """``B / (B + d + 1)``: the largest step at which SGD on realisable least squares with ``N(0, I_d)``
    inputs and loss ``(x.w - y)^2`` is stable in mean square (module docstring)."""
    b = np.asarray(batch_size, dtype=np.float64)
    if np.any(b < 1) or dim < 1:
        raise ValueError(f"need batch sizes >= 1 and dim >= 1, got {batch_size}, {dim}")
    return b / (b + dim + 1.0)
