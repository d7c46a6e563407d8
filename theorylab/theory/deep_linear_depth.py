"""Learning times of deep linear networks (Saxe, McClelland & Ganguli 2014, "Exact solutions to the nonlinear
dynamics of learning in deep linear neural networks", ICLR, Sec. 5 on deeper networks).

With whitened inputs and decoupled, balanced initial conditions, a network of ``D`` weight matrices learns each
mode of ``Sigma_yx`` (singular value ``s``) alone: every layer carries ``a = u^(1/D)`` of the mode strength ``u``,
and gradient flow with time constant ``tau = 1 / lr`` gives

    tau du/dt = D u^(2 - 2/D) (s - u)

(``D = 2``: ``2 u (s - u)``, :mod:`theorylab.theory.deep_linear`).  The time to go from ``u0`` to ``uf`` is
``(tau / D) int du / (u^(2-2/D) (s - u))``.  With the learning rate scaled like ``1/D`` (the curvature at the
solution grows like ``D``), a network started at ``u0 = O(1)`` (orthogonal, or pretrained, layers) learns in a
time that converges as ``D`` grows: depth-independent learning.  Started from small random weights, the mode
strength begins near ``u0 ~ scale^D`` and the plateau before learning lengthens with depth.
"""
from __future__ import annotations

import scipy.integrate


def deep_mode_learning_time(s: float, *, depth: int, u0: float, uf: float, tau: float = 1.0) -> float:
    """``(tau / D) |int_{u0}^{uf} du / (u^(2-2/D) (s - u))|``: the time for a mode of a depth-``D`` linear network
    (decoupled, balanced) to move from ``u0`` to ``uf`` towards ``s`` (Saxe et al. 2014)."""
    if depth < 1 or not (s > 0 and u0 > 0 and uf > 0 and tau > 0):
        raise ValueError("need depth >= 1 and s, u0, uf, tau > 0")
    if not (u0 < uf < s or s < uf < u0):
        raise ValueError(f"uf must lie between u0 and s: u0={u0}, uf={uf}, s={s}")
    value, _ = scipy.integrate.quad(lambda u: 1.0 / (u ** (2.0 - 2.0 / depth) * (s - u)), u0, uf, epsabs=0.0,
                                    epsrel=1e-10, limit=200)
    return tau / depth * abs(value)
