"""Inverse-vector products ``(A + lambda I)^{-1} b`` by conjugate gradients, with a residual report.

Conjugate gradients (Hestenes & Stiefel 1952) solve ``M x = b`` for symmetric positive definite
``M = A + lambda I`` with one product per iteration; after ``k`` iterations the error in the
``M``-norm is at most ``2 ((sqrt(kappa) - 1) / (sqrt(kappa) + 1))^k`` times the initial one
(``kappa`` the condition number), so damping ``lambda > 0`` both regularises and speeds up the
solve.  This is the inverse-Hessian-vector product of influence functions (Koh & Liang 2017,
"Understanding black-box predictions via influence functions", with damping for non-convex
models) and of Newton / natural-gradient steps.

With a ``preconditioner`` ``C ~ M^{-1}`` (symmetric positive definite: the inverse of damped K-FAC,
``kfac(...).inverse(damping)``, Martens & Grosse 2015) it runs preconditioned CG, whose rate depends on the
condition number of ``C M`` instead.

The iteration stops when the recursive residual ``||b - M x_k||`` drops below ``tol ||b||``, at
``max_iter``, or when it meets a direction of non-positive curvature ``p^T M p <= 0`` (``M`` is not
positive definite: the Hessian of a non-convex loss away from a minimum; increase the damping).  The
result reports the true residual, recomputed with one extra product, next to the recursive
history, and says why it stopped.  Dot products are accumulated in float64.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from theorylab.curvature.operators import CurvatureOperator, LinearOperator, as_operator
from theorylab.plotting import MEASURED, axes_or_new
from theorylab.provenance import Stopwatch, make_meta
from theorylab.results import Result, result_class

STATUSES = ("converged", "max_iter", "negative_curvature", "zero_rhs")


@result_class
class SolveResult(Result):
    """``solution`` of ``(A + damping I) x = b`` and how well it solves it.

    ``residual_norm = ||b - (A + damping I) x||`` (recomputed), ``relative_residual`` its ratio to
    ``||b||``, ``residual_history`` the recursive residual norms of the iterations (the first is
    that of ``x0``); ``status`` is one of "converged", "max_iter", "negative_curvature" (CG met
    ``p^T M p <= 0``: the damped operator is not positive definite) or "zero_rhs".
    """

    solution: np.ndarray
    residual_norm: float
    relative_residual: float
    residual_history: np.ndarray
    iterations: int
    converged: bool
    status: str
    damping: float
    tol: float
    num_matvecs: int

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        norm_b = self.residual_norm / self.relative_residual if self.relative_residual > 0 else 1.0
        ax.semilogy(np.arange(len(self.residual_history)), self.residual_history / norm_b, color=MEASURED,
                    label="recursive residual / ||b||")
        ax.axhline(self.tol, color="0.5", linestyle="--", label="tol")
        ax.set(xlabel="CG iteration", ylabel="relative residual", title=f"CG ({self.status})")
        ax.legend()
        return ax


def _dot(a: Tensor, b: Tensor) -> float:
    return float(torch.dot(a.to(torch.float64), b.to(torch.float64)))


def _as_vector(op: LinearOperator, b: Any, name: str) -> Tensor:
    if isinstance(b, dict):
        if not isinstance(op, CurvatureOperator):
            raise ValueError(f"{name} is a dict, but a {type(op).__name__} has no parameter names")
        b = op.flatten(b)
    b = torch.as_tensor(b)
    if b.shape != (op.shape[0],):
        raise ValueError(f"{name} must be a vector of length {op.shape[0]}, got shape {tuple(b.shape)}")
    if not torch.isfinite(b).all():
        raise ValueError(f"{name} has non-finite entries")
    return b.to(device=op.device, dtype=op.dtype)


def solve(op: LinearOperator | Tensor | np.ndarray, b: Tensor | np.ndarray | dict[str, Tensor], *,
          damping: float = 0.0, tol: float = 1e-8, max_iter: int | None = None,
          x0: Tensor | np.ndarray | dict[str, Tensor] | None = None,
          preconditioner: LinearOperator | None = None) -> SolveResult:
    """``(op + damping I)^{-1} b`` by (preconditioned) conjugate gradients (see the module docstring).

    ``b`` and ``x0`` are flat vectors (or parameter-shaped dicts for curvature operators);
    ``max_iter`` defaults to ``10 P``; ``preconditioner`` a symmetric positive definite operator
    approximating ``(op + damping I)^{-1}``.  ``num_matvecs`` counts the products with ``op``.
    """
    with Stopwatch() as clock:
        op = as_operator(op)
        if not (isinstance(damping, (int, float)) and not isinstance(damping, bool) and math.isfinite(damping)
                and damping >= 0):
            raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
        if not (isinstance(tol, (int, float)) and tol > 0):
            raise ValueError(f"tol must be a positive number, got {tol!r}")
        size = op.shape[0]
        if max_iter is None:
            max_iter = 10 * size
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
        b = _as_vector(op, b, "b")
        if preconditioner is not None and (not isinstance(preconditioner, LinearOperator)
                                           or preconditioner.shape != op.shape):
            raise ValueError(f"preconditioner must be a LinearOperator of shape {op.shape}")
        start_matvecs = op.num_matvecs

        def precondition(r: Tensor) -> Tensor:
            return r if preconditioner is None else preconditioner @ r

        def apply(v: Tensor) -> Tensor:
            return op @ v + damping * v

        x = torch.zeros_like(b) if x0 is None else _as_vector(op, x0, "x0").clone()
        norm_b = math.sqrt(_dot(b, b))
        r = b - apply(x) if x0 is not None else b.clone()
        z = precondition(r)
        rz = _dot(r, z)
        history = [math.sqrt(_dot(r, r))]
        status = "zero_rhs" if norm_b == 0 else "max_iter"
        p = z.clone()
        iterations = 0
        while norm_b > 0 and iterations < max_iter:
            if history[-1] <= tol * norm_b:
                status = "converged"
                break
            mp = apply(p)
            curvature = _dot(p, mp)
            if curvature <= 0:
                status = "negative_curvature"
                break
            step = rz / curvature
            x = x + step * p
            r = r - step * mp
            z = precondition(r)
            rz_new = _dot(r, z)
            history.append(math.sqrt(_dot(r, r)))
            p = z + (rz_new / rz) * p
            rz = rz_new
            iterations += 1
        else:
            if norm_b > 0 and history[-1] <= tol * norm_b:
                status = "converged"
        true_residual = b - apply(x)
        residual_norm = math.sqrt(_dot(true_residual, true_residual))
    used = op.num_matvecs - start_matvecs
    return SolveResult(solution=x.detach().to(torch.float64).cpu().numpy(), residual_norm=residual_norm,
                       relative_residual=residual_norm / norm_b if norm_b > 0 else 0.0,
                       residual_history=np.array(history), iterations=iterations,
                       converged=status in ("converged", "zero_rhs"), status=status, damping=float(damping),
                       tol=float(tol), num_matvecs=used,
                       meta=make_meta(dtype=op.dtype, device=op.device, wall_time_s=clock.seconds, num_matvecs=used))
