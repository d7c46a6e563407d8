"""Convergence rates of gradient descent in over-parameterized matrix sensing.

Xiong, Ding & Du 2024 ("How over-parameterization slows down gradient descent in matrix sensing:
the curses of symmetry and initialization", ICLR 2024, abstract and main theorems): to recover a
rank-``r`` matrix ``M*`` from near-isotropic measurements,

* symmetric ``X X^T`` with ``k = r`` columns converges linearly, ``exp(-Omega(T))``;
* symmetric ``X X^T`` with ``k > r`` is slowed to ``Omega(1/T^2)`` (a lower bound, met by GD);
* asymmetric ``F G^T`` with ``k > r`` converges linearly again, at ``exp(-Omega(alpha^2 T))`` for an
  initialisation of scale ``alpha``.

The mechanism, worked out here for the loss ``(1/4)|F G^T - M*|_F^2`` (identity sensing, to which
near-isotropic sensing is close) once the rank-``r`` part is fitted: an excess direction carries
factor entries ``f, g`` whose product ``p = f g`` is all the remaining error, and gradient flow
``df/dt = -lr p g``, ``dg/dt = -lr p f`` conserves the imbalance ``Delta = f^2 - g^2``.  So
``dp/dt = -lr p (f^2 + g^2) = -lr p sqrt(Delta^2 + 4 p^2)``, solved exactly by :func:`excess_product`:
symmetric factors (``F = G``, ``Delta = 0``) give ``p ~ 1 / (2 lr t)`` -- an error ``p^2 ~ 1/T^2`` --
while an imbalance ``Delta ~ alpha^2`` left by the random initialisation gives ``p ~ Delta e^(-lr Delta t)``.
"""
from __future__ import annotations

import numpy as np


def excess_product(t: float | np.ndarray, *, lr: float, p0: float, imbalance: float = 0.0) -> np.ndarray:
    """Product ``p(t) = f g`` of one excess direction under gradient flow (time ``t`` in steps).

    Exact solution of ``dp/dt = -lr p sqrt(Delta^2 + 4 p^2)`` with ``p(0) = p0``::

        Delta = 0:  p(t) = p0 / (1 + 2 lr p0 t)                       (symmetric: polynomial)
        Delta > 0:  p(t) = Delta / (2 sinh(asinh(Delta / (2 p0)) + lr Delta t))   (exponential)

    The slow-down of Xiong et al. 2024 (``Omega(1/T^2)`` lower bound) is the first case, their
    ``exp(-Omega(alpha^2 T))`` rate the second with ``Delta ~ alpha^2``.
    """
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if not (np.isfinite(p0) and p0 > 0):
        raise ValueError(f"p0 (the initial excess product) must be a finite number > 0, got {p0}")
    if not (np.isfinite(imbalance) and imbalance >= 0):
        raise ValueError(f"imbalance |f^2 - g^2| must be a finite number >= 0, got {imbalance}")
    t = np.asarray(t, dtype=np.float64)
    if np.any(t < 0):
        raise ValueError("t must be >= 0")
    if imbalance == 0:
        return p0 / (1.0 + 2.0 * lr * p0 * t)
    return imbalance / (2.0 * np.sinh(np.arcsinh(imbalance / (2.0 * p0)) + lr * imbalance * t))


def symmetric_overparam_tail(t: float | np.ndarray, *, lr: float, excess_rank: int) -> np.ndarray:
    """Late-time error ``|X X^T - M*|_F^2 ~ (k - r) / (4 lr^2 t^2)`` of symmetric over-parameterized GD.

    The ``t -> inf`` limit of ``(k - r) excess_product(t)^2`` with ``Delta = 0``: every one of the
    ``k - r`` excess directions contributes ``1 / (2 lr t)^2``, whatever its initial size.  The ``1/T^2``
    rate is Xiong et al. 2024; the constant is derived for the loss ``(1/4)|X X^T - M*|_F^2``.
    """
    if excess_rank < 1:
        raise ValueError(f"excess_rank = k - r must be >= 1 (k > r), got {excess_rank}")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    t = np.asarray(t, dtype=np.float64)
    if np.any(t <= 0):
        raise ValueError("t must be > 0")
    return excess_rank / (4.0 * lr * lr * t * t)


def asymmetric_rate_exponent_bound() -> float:
    """``2``: asymmetric over-parameterized GD converges at ``exp(-Omega(alpha^2 T))`` (Xiong et al. 2024),
    so its linear rate is at least ``c alpha^2``: the exponent ``s`` of ``rate ~ alpha^s`` as
    ``alpha -> 0`` is at most 2 (a bound: ``Omega`` hides the constant and allows faster rates)."""
    return 2.0
