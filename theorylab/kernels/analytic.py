"""Infinite-width kernels of a fully connected network: the NNGP kernel and the NTK.

The network is :class:`theorylab.models.MLP` in NTK parametrization with ``depth`` hidden layers,
weight variance ``sw^2 = weight_var`` and bias variance ``sb^2 = bias_var`` (the same names and
defaults as ``MLP(..., parametrization="ntk")``: ``weight_var=1``, ``bias_var=0``):
``h^1 = sw/sqrt(d) W^1 x + sb b^1``, ``h^{l+1} = sw/sqrt(n) W^{l+1} phi(h^l) + sb b^{l+1}`` and
``f = h^{depth+1}``, every entry of ``W``, ``b`` standard normal.  As the width ``n -> inf``
(Neal 1996; Lee et al. 2018, Eq. 4; Jacot et al. 2018, Theorem 1; Arora et al. 2019, Eqs. 9-11):

    Sigma^1(x, x')       = sw^2 x.x' / d + sb^2,                  Theta^1 = Sigma^1
    Sigma^{l+1}(x, x')   = sw^2 E[phi(u) phi(v)] + sb^2
    SigmaDot^{l+1}(x,x') = sw^2 E[phi'(u) phi'(v)]
    Theta^{l+1}(x, x')   = Sigma^{l+1}(x, x') + Theta^l(x, x') SigmaDot^{l+1}(x, x')

with ``(u, v) ~ N(0, [[Sigma^l(x,x), Sigma^l(x,x')], [Sigma^l(x,x'), Sigma^l(x',x')]])``.  The
network output has covariance ``Sigma^{depth+1}`` (the NNGP kernel) and every output has tangent
kernel ``Theta^{depth+1}`` (``Theta_ij = delta_ij Theta``: compare with ``empirical_ntk(reduction="mean")``).

Closed-form Gaussian expectations (with ``cos t = S12 / sqrt(S11 S22)``):

* ReLU (Cho & Saul 2009): ``E[phi(u)phi(v)] = sqrt(S11 S22) (sin t + (pi - t) cos t) / (2 pi)``,
  ``E[phi'(u)phi'(v)] = (pi - t) / (2 pi)``;
* erf (Williams 1997): ``E[phi(u)phi(v)] = (2/pi) arcsin(2 S12 / sqrt((1 + 2 S11)(1 + 2 S22)))``,
  ``E[phi'(u)phi'(v)] = (4/pi) / sqrt((1 + 2 S11)(1 + 2 S22) - 4 S12^2)``.

For ``x2=None`` the variances ``S(x, x)`` are read off the diagonal of the one kernel matrix, so a
diagonal entry has ``cos t = 1`` exactly and comes out exact (variances and cross terms from two
separate computations differ by rounding, and ``arccos(1 - ulp)`` is already 1.5e-8).
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

AnalyticActivation = Literal["relu", "erf"]
ACTIVATIONS: tuple[str, ...] = ("relu", "erf")


def analytic_ntk(x1: Tensor | np.ndarray, x2: Tensor | np.ndarray | None = None, *, depth: int,
                 activation: AnalyticActivation = "relu", weight_var: float = 1.0,
                 bias_var: float = 0.0) -> Tensor:
    """The infinite-width NTK ``Theta^{depth+1}(x1, x2)`` per output, ``(N1, N2)`` float64."""
    return _kernels(x1, x2, depth=depth, activation=activation, weight_var=weight_var, bias_var=bias_var)[1]


def analytic_nngp(x1: Tensor | np.ndarray, x2: Tensor | np.ndarray | None = None, *, depth: int,
                  activation: AnalyticActivation = "relu", weight_var: float = 1.0,
                  bias_var: float = 0.0) -> Tensor:
    """The infinite-width NNGP kernel ``Sigma^{depth+1}(x1, x2)`` (output covariance), ``(N1, N2)`` float64."""
    return _kernels(x1, x2, depth=depth, activation=activation, weight_var=weight_var, bias_var=bias_var)[0]


def _as_matrix(name: str, x: Tensor | np.ndarray) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, d) with N >= 1 (extra dimensions are flattened), "
                         f"got {arr.shape}")
    return arr.reshape(arr.shape[0], -1).astype(np.float64)


def _kernels(x1, x2, *, depth, activation, weight_var, bias_var) -> tuple[Tensor, Tensor]:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS} (closed forms exist for these), got {activation!r}")
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth (number of hidden layers) must be an integer >= 0, got {depth!r}")
    if not (weight_var > 0 and math.isfinite(weight_var)) or not (bias_var >= 0 and math.isfinite(bias_var)):
        raise ValueError(f"need weight_var > 0 and bias_var >= 0, got {weight_var}, {bias_var}")
    a = _as_matrix("x1", x1)
    b = a if x2 is None else _as_matrix("x2", x2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x1 and x2 must have the same number of features, got {a.shape[1]} and {b.shape[1]}")
    d = a.shape[1]
    symmetric = x2 is None
    cross = weight_var * (a @ b.T) / d + bias_var          # Sigma^1(x1, x2)
    diag1 = diag2 = np.diagonal(cross).copy() if symmetric else None
    if not symmetric:
        diag1 = weight_var * np.einsum("ij,ij->i", a, a) / d + bias_var
        diag2 = weight_var * np.einsum("ij,ij->i", b, b) / d + bias_var
    ntk = cross.copy()
    for _ in range(depth):
        e_phi, e_dphi = _expectations(activation, cross, diag1, diag2)
        cross = weight_var * e_phi + bias_var
        ntk = cross + ntk * weight_var * e_dphi
        if symmetric:
            diag1 = diag2 = np.diagonal(cross).copy()
        else:
            diag1 = weight_var * _diag(activation, diag1) + bias_var
            diag2 = weight_var * _diag(activation, diag2) + bias_var
    return torch.from_numpy(cross), torch.from_numpy(ntk)


def _diag(activation: str, s: np.ndarray) -> np.ndarray:
    """``E[phi(u)^2]`` for ``u ~ N(0, s)``."""
    if activation == "relu":
        return s / 2.0
    return (2.0 / math.pi) * np.arcsin(2.0 * s / (1.0 + 2.0 * s))


def _expectations(activation: str, s12: np.ndarray, s11: np.ndarray, s22: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``E[phi(u)phi(v)]`` and ``E[phi'(u)phi'(v)]`` for ``Cov(u, v) = s12``, ``Var u = s11``, ``Var v = s22``."""
    s11, s22 = s11[:, None], s22[None, :]
    if activation == "relu":
        norms = np.sqrt(s11 * s22)
        cos = np.clip(s12 / np.where(norms > 0, norms, 1.0), -1.0, 1.0)
        t = np.arccos(cos)
        e_dphi = 0.5 - t / (2 * math.pi)                    # (pi - t) / (2 pi), exactly 1/2 at t = 0
        e_phi = norms * (np.sin(t) / (2 * math.pi) + e_dphi * cos)
        return e_phi, e_dphi
    denom = (1.0 + 2.0 * s11) * (1.0 + 2.0 * s22)
    e_phi = (2.0 / math.pi) * np.arcsin(np.clip(2.0 * s12 / np.sqrt(denom), -1.0, 1.0))
    e_dphi = (4.0 / math.pi) / np.sqrt(denom - 4.0 * s12 ** 2)
    return e_phi, e_dphi
