"""Exact learning dynamics of a two-layer linear network (Saxe, McClelland & Ganguli 2014).

Setting ("Exact solutions to the nonlinear dynamics of learning in deep linear neural networks",
ICLR 2014): whitened inputs (``Sigma_xx = I``), input-output correlation
``Sigma_yx = U S V^T``, network ``W2 W1`` trained by gradient flow on
``(1/2) E|y - W2 W1 x|^2`` with time constant ``tau = 1 / lr``.  From *decoupled* initial conditions
(``W1 = R diag(a0) V^T``, ``W2 = U diag(a0) R^T`` with ``R`` orthogonal, balanced layers) every mode
``alpha`` evolves alone, its strength ``u = a_alpha b_alpha`` obeying (Saxe et al. 2014)::

    tau du/dt = 2 u (s - u)

with ``s`` the mode's singular value: a sigmoid from ``u0`` to ``s`` whose time scale is ``tau / s``, so
modes are learned in the order of their singular values.
"""
from __future__ import annotations

import numpy as np
import sympy as sp


def _check(s: float, u0: float, tau: float) -> None:
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"the singular value s must be a finite number > 0, got {s}")
    if not (np.isfinite(u0) and 0 < u0 < s):
        raise ValueError(f"the initial mode strength u0 must be in (0, s) = (0, {s}), got {u0}")
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a finite number > 0, got {tau}")


def saxe_mode_strength(t: float | np.ndarray, s: float, *, u0: float, tau: float = 1.0) -> np.ndarray:
    """Mode strength ``u(t) = s e^(2st/tau) / (e^(2st/tau) - 1 + s/u0)`` (Saxe et al. 2014, the closed-form solution).

    The solution of ``tau du/dt = 2u(s - u)`` with ``u(0) = u0``; ``t`` in the units of ``tau``
    (for gradient descent with step ``lr`` on ``(1/2)|y - W2 W1 x|^2``, ``t`` = steps and ``tau = 1/lr``).
    """
    _check(s, u0, tau)
    t = np.asarray(t, dtype=np.float64)
    # written with e^(-2st/tau) so that large t does not overflow
    decay = np.exp(-2.0 * s * t / tau)
    return s / (1.0 + (s / u0 - 1.0) * decay)


def saxe_learning_time(s: float, *, u0: float, uf: float, tau: float = 1.0) -> float:
    """Time for a mode to grow from ``u0`` to ``uf``: ``(tau / 2s) ln[uf (s - u0) / (u0 (s - uf))]``.

    Saxe et al. 2014: for small ``u0`` it is ``~ (tau / s) ln(s / u0)``, i.e. ``O(tau / s)``.
    """
    _check(s, u0, tau)
    if not (np.isfinite(uf) and u0 < uf < s):
        raise ValueError(f"the final strength uf must be in (u0, s) = ({u0}, {s}), got {uf}")
    return tau / (2.0 * s) * float(np.log(uf * (s - u0) / (u0 * (s - uf))))


def saxe_mode_strength_symbolic() -> sp.Expr:
    """:func:`saxe_mode_strength` as a sympy expression in ``t, s, u0, tau`` (Saxe et al. 2014)."""
    t, s, u0, tau = sp.symbols("t s u_0 tau", positive=True)
    e = sp.exp(2 * s * t / tau)
    return s * e / (e - 1 + s / u0)
