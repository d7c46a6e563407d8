"""Kernel regression and the linearised network: what a network in the kernel regime predicts.

Linearising the network around its initialisation, ``f_lin(x; theta) = f_0(x) + J_0(x)(theta - theta_0)``
(Lee et al. 2019, "Wide neural networks of any depth evolve as linear models under gradient
descent", Eqs. 5-9), full-batch gradient descent with step ``eta`` on the mean squared error
``L = (1 / (N O)) sum_i ||f(x_i) - y_i||^2`` (``torch.nn.MSELoss()``) moves the training
residual ``r_t = f_t(X) - Y`` and the test predictions exactly as

    r_{t+1} = (I - c Theta) r_t,            c = 2 eta / (N O),
    f_t(X*) = f_0(X*) - c Theta(X*, X) sum_{s < t} r_s,

with ``Theta`` the NTK at initialisation (the full ``(N O) x (N O)`` kernel, or a per-output
``N x N`` kernel applied to every output when ``Theta_ij = delta_ij Theta``, as at infinite
width).  With ``Theta = V diag(lambda) V^T`` the sum is closed-form:
``sum_{s<t} r_s = V diag((1 - (1 - c lambda)^t) / (c lambda)) V^T r_0``.  As ``t -> inf`` (and
``0 < c lambda < 2``) this is kernel regression started from ``f_0``:
``f_inf(X*) = f_0(X*) + Theta(X*, X) Theta^{-1} (Y - f_0(X))``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from theorylab.kernels.empirical import KernelLike, kernel_tensor


def _prepare(k_train: KernelLike, k_test_train: KernelLike, y_train: Tensor, f0_train: Tensor | None,
             f0_test: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor, int, bool]:
    """Flatten to an (M, M) system, M = N (per-output kernel) or N O (full kernel)."""
    k_train = kernel_tensor(k_train).detach().to(torch.float64)
    k_test_train = kernel_tensor(k_test_train).detach().to(torch.float64)
    y = torch.as_tensor(y_train).detach().to(torch.float64)
    n = k_train.shape[0]
    if y.shape[:1] != (n,):
        raise ValueError(f"y_train must have {n} rows (one per kernel row), got shape {tuple(y.shape)}")
    y = y.reshape(n, -1)
    n_out = y.shape[1]
    f0_train = torch.zeros_like(y) if f0_train is None else torch.as_tensor(f0_train).detach().to(torch.float64).reshape(n, -1)
    if f0_train.shape != y.shape:
        raise ValueError(f"f0_train must have the shape of y_train {tuple(y.shape)}, got {tuple(f0_train.shape)}")
    n_test = k_test_train.shape[0]
    f0_test = (torch.zeros(n_test, n_out, dtype=torch.float64) if f0_test is None
               else torch.as_tensor(f0_test).detach().to(torch.float64).reshape(n_test, -1))
    if f0_test.shape != (n_test, n_out):
        raise ValueError(f"f0_test must have shape {(n_test, n_out)}, got {tuple(f0_test.shape)}")
    full = k_train.dim() == 4
    if full:
        if k_train.shape != (n, n, n_out, n_out) or k_test_train.shape != (n_test, n, n_out, n_out):
            raise ValueError(f"full kernels must have shapes {(n, n, n_out, n_out)} and {(n_test, n, n_out, n_out)}, "
                             f"got {tuple(k_train.shape)} and {tuple(k_test_train.shape)}")
        k_train = k_train.permute(0, 2, 1, 3).reshape(n * n_out, n * n_out)
        k_test_train = k_test_train.permute(0, 2, 1, 3).reshape(n_test * n_out, n * n_out)
        residual = (f0_train - y).reshape(-1, 1)
    else:
        if k_train.shape != (n, n) or k_test_train.shape != (n_test, n):
            raise ValueError(f"per-output kernels must have shapes {(n, n)} and {(n_test, n)} (test x train), "
                             f"got {tuple(k_train.shape)} and {tuple(k_test_train.shape)}")
        residual = f0_train - y
    return k_train, k_test_train, residual, f0_test, n_out, full


def linearized_gd(k_train: KernelLike, k_test_train: KernelLike, y_train: Tensor, *, lr: float, steps: int,
                  f0_train: Tensor | None = None, f0_test: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Train and test predictions ``(f_t(X), f_t(X*))`` of the linearised network after ``steps`` GD steps.

    Exact for the linearised model under full-batch GD on ``torch.nn.MSELoss()`` (mean over samples
    and outputs) with step ``lr``; ``k_train`` is (N, N) or (N, N, O, O) and ``k_test_train``
    (N*, N) or (N*, N, O, O) -- the NTK at initialisation.  ``f0_*`` are the network outputs at
    initialisation (zero if omitted).  Returns float64 tensors (N, O) and (N*, O).
    """
    if not (lr > 0 and math.isfinite(lr)) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"need lr > 0 and an integer steps >= 0, got lr={lr}, steps={steps}")
    k, k_star, r0, f0_test, n_out, full = _prepare(k_train, k_test_train, y_train, f0_train, f0_test)
    n = y_train.shape[0]
    c = 2.0 * lr / (n * n_out)
    lam, vecs = torch.linalg.eigh((k + k.T) / 2)
    z = c * lam
    decay = (1.0 - z) ** steps
    small = z.abs() < 1e-12
    summed = torch.where(small, torch.full_like(z, float(steps)), (1.0 - decay) / torch.where(small, 1.0, z))
    proj = vecs.T @ r0
    r_t = vecs @ (decay[:, None] * proj)
    cumulative = vecs @ (summed[:, None] * proj)          # sum_{s<t} r_s
    f_test = f0_test.reshape(-1, 1 if full else n_out) - c * (k_star @ cumulative)
    y = torch.as_tensor(y_train).detach().to(torch.float64).reshape(n, -1)
    return (r_t.reshape(n, n_out) + y), f_test.reshape(-1, n_out)


def kernel_regression(k_train: KernelLike, k_test_train: KernelLike, y_train: Tensor, *, ridge: float = 0.0,
                      f0_train: Tensor | None = None, f0_test: Tensor | None = None) -> Tensor:
    """Kernel (ridge) regression ``f0(X*) + K(X*, X) (K + ridge I)^{-1} (Y - f0(X))``, shape (N*, O).

    With ``ridge=0`` this is the infinite-time limit of :func:`linearized_gd` (``K`` must then be
    invertible).  Kernels as in :func:`linearized_gd`.
    """
    if not (ridge >= 0 and math.isfinite(ridge)):
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    k, k_star, r0, f0_test, n_out, full = _prepare(k_train, k_test_train, y_train, f0_train, f0_test)
    system = k + ridge * torch.eye(k.shape[0], dtype=k.dtype)
    try:
        alpha = torch.linalg.solve(system, -r0)
    except torch.linalg.LinAlgError as exc:
        raise ValueError("the training kernel is singular: use ridge > 0") from exc
    return (f0_test.reshape(-1, 1 if full else n_out) + k_star @ alpha).reshape(-1, n_out)
