"""Two low-rank recovery algorithms whose convergence theory makes testable predictions.

* :func:`subgradient_recovery`: the sub-gradient method on the l1 loss of symmetric matrix sensing,
  ``f(U) = (1/m) sum_i |<A_i, U U^T> - y_i|`` (or the l2 loss ``(1/2m) sum_i (...)^2``, for comparison), with
  geometrically decaying steps ``eta_t = eta_0 rho^t`` from a small random ``U_0 = alpha G / sqrt(d)``
  (Ma & Fattahi 2023, "Global convergence of sub-gradient method for robust matrix recovery: small
  initialization, noisy measurements, and over-parameterization", JMLR 24(96)).  ``U`` may have more columns
  than the rank of the target (over-parameterisation).
* :func:`alternating_minimization`: matrix completion by alternating least squares on the observed entries,
  ``min_{U, V} sum_{(i,j) observed} (U_i . V_j - M_ij)^2``, each half-step solved exactly or approximately by a
  few conjugate-gradient iterations warm-started at the current factor (the "robust" alternating minimisation
  of Gu, Song, Yin & Zhang 2023, "Low rank matrix completion via robust alternating minimization in nearly
  linear time", whose analysis allows approximate updates).

Both return the relative error ``||X_t - X_*||_F / ||X_*||_F`` after every iteration.
"""
from __future__ import annotations

from typing import Literal

import numpy as np


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (value > 0 and np.isfinite(value)):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def subgradient_recovery(sensing: np.ndarray, y: np.ndarray, target: np.ndarray, *, rank: int, init_scale: float,
                         lr: float, decay: float, steps: int, loss: Literal["l1", "l2"] = "l1",
                         seed: int = 0) -> np.ndarray:
    """Relative errors of ``U_t U_t^T`` after each step of the (sub)gradient method (module docstring).

    ``sensing`` holds the ``m`` symmetric ``d x d`` measurement matrices ``A_i`` (shape ``(m, d, d)``).
    """
    m, d, _ = sensing.shape
    if y.shape != (m,) or target.shape != (d, d):
        raise ValueError(f"need y of shape ({m},) and a ({d}, {d}) target, got {y.shape} and {target.shape}")
    if loss not in ("l1", "l2"):
        raise ValueError(f"loss must be 'l1' or 'l2', got {loss!r}")
    if rank < 1 or steps < 1 or not 0 < decay <= 1:
        raise ValueError(f"need rank >= 1, steps >= 1 and decay in (0, 1], got {rank}, {steps}, {decay}")
    _check_positive(init_scale=init_scale, lr=lr)
    flat = sensing.reshape(m, d * d)
    u = init_scale * np.random.default_rng(seed).standard_normal((d, rank)) / np.sqrt(d)
    scale = np.linalg.norm(target)
    errors = np.empty(steps)
    for t in range(steps):
        residual = flat @ (u @ u.T).ravel() - y
        weights = np.sign(residual) if loss == "l1" else residual
        grad = 2.0 * (flat.T @ weights).reshape(d, d) @ u / m   # A_i symmetric: d/dU <A_i, U U^T> = 2 A_i U
        u = u - lr * decay ** t * grad
        errors[t] = np.linalg.norm(u @ u.T - target) / scale
    return errors


def _solve_rows(fixed: np.ndarray, values: np.ndarray, mask: np.ndarray, start: np.ndarray,
                iterations: int | None) -> np.ndarray:
    """For every row i: ``argmin_w sum_{j observed} (w . fixed_j - values_ij)^2``, exactly (``iterations`` None)
    or by ``iterations`` conjugate-gradient steps on the normal equations from ``start`` (all rows at once)."""
    weights = mask.astype(np.float64)
    k = fixed.shape[1]
    outer = (fixed[:, :, None] * fixed[:, None, :]).reshape(len(fixed), k * k)
    gram = (weights @ outer).reshape(len(weights), k, k)             # rows x r x r
    rhs = (weights * values) @ fixed                                 # rows x r
    if iterations is None:
        return np.linalg.solve(gram, rhs[..., None])[..., 0]
    w = start.copy()
    r = rhs - np.einsum("ikl,il->ik", gram, w)
    direction = r.copy()
    for _ in range(iterations):
        rr = np.einsum("ik,ik->i", r, r)
        g_dir = np.einsum("ikl,il->ik", gram, direction)
        curvature = np.einsum("ik,ik->i", direction, g_dir)
        step = np.divide(rr, curvature, out=np.zeros_like(rr), where=curvature > 0)
        w = w + step[:, None] * direction
        r = r - step[:, None] * g_dir
        beta = np.divide(np.einsum("ik,ik->i", r, r), rr, out=np.zeros_like(rr), where=rr > 0)
        direction = r + beta[:, None] * direction
    return w


def alternating_minimization(target: np.ndarray, mask: np.ndarray, *, rank: int, iterations: int,
                             solver_steps: int | None = None, seed: int = 0) -> np.ndarray:
    """Relative errors of ``U_t V_t^T`` after each round of alternating least squares on the entries where
    ``mask`` is True; ``solver_steps`` conjugate-gradient steps per half-step (None: exact solves).  ``U_0`` is
    the top-``rank`` left singular space of the rescaled observed matrix (the spectral initialisation)."""
    if target.shape != mask.shape or mask.dtype != bool:
        raise ValueError("mask must be a boolean array of the target's shape")
    if rank < 1 or iterations < 1 or (solver_steps is not None and solver_steps < 1):
        raise ValueError("need rank >= 1, iterations >= 1 and solver_steps >= 1 (or None)")
    if not (mask.any(axis=0).all() and mask.any(axis=1).all()):
        raise ValueError("every row and every column needs an observed entry")
    observed = np.where(mask, target, 0.0) / mask.mean()
    u = np.linalg.svd(observed)[0][:, :rank]
    v = np.random.default_rng(seed).standard_normal((target.shape[1], rank)) * 1e-3
    scale = np.linalg.norm(target)
    errors = np.empty(iterations)
    for t in range(iterations):
        v = _solve_rows(u, target.T, mask.T, v, solver_steps)
        u = _solve_rows(v, target, mask, u, solver_steps)
        errors[t] = np.linalg.norm(u @ v.T - target) / scale
    return errors
