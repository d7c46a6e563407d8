"""Lanczos with full reorthogonalization, and extremal eigenvalues of symmetric operators.

For a symmetric ``H`` and a unit start vector ``q_0``, ``m`` Lanczos steps build an orthonormal
basis ``Q = [q_0 .. q_{m-1}]`` of the Krylov space ``K_m(H, q_0)`` and a tridiagonal
``T = Q^T H Q`` (diagonal ``alpha``, off-diagonal ``beta``) with

    H Q = Q T + beta_m q_m e_m^T                          (Golub & Van Loan 2013)

Eigenpairs ``(theta_i, s_i)`` of ``T`` give Ritz pairs ``(theta_i, Q s_i)`` whose residual is
``||H Q s_i - theta_i Q s_i|| = |beta_m s_i[m-1]|``.  In floating point the basis loses
orthogonality as Ritz values converge, and converged eigenvalues reappear as spurious copies
("ghosts", Paige 1976); here every new vector is orthogonalised against the whole stored basis
twice (Giraud et al. 2005, "twice is enough"), as two matrix products, and ``alpha``/``beta`` are
kept in float64.  ``beta ~ 0`` (an invariant subspace: the Ritz pairs are exact) ends a run.

Single-vector Lanczos sees only one direction of each eigenspace, so a repeated eigenvalue is
found once.  :func:`top_eigenvalues` therefore locks converged Ritz vectors and restarts in their
orthogonal complement, and ends with a check run in the complement of everything locked: a
missed copy shows up there as a Ritz value that still belongs to the top ``k``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from theorylab.curvature.operators import LinearOperator, as_operator
from theorylab.plotting import MEASURED, axes_or_new
from theorylab.provenance import Stopwatch, make_meta
from theorylab.results import Result, result_class

Which = Literal["LA", "SA", "LM"]
WHICH: tuple[str, ...] = ("LA", "SA", "LM")


@dataclass(frozen=True)
class LanczosDecomposition:
    """``m`` Lanczos steps: ``alpha`` (m,), ``beta`` (m,) in float64 and the basis ``(P, m)``.

    ``beta[j]`` couples ``q_j`` and ``q_{j+1}``; ``beta[-1]`` is the residual norm ``beta_m``
    (0 after a breakdown, when the Krylov space is invariant and every Ritz pair exact).
    """

    alpha: np.ndarray
    beta: np.ndarray
    basis: Tensor
    breakdown: bool
    num_matvecs: int

    @property
    def num_steps(self) -> int:
        return len(self.alpha)

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values (ascending), eigenvectors of ``T`` (columns) and Ritz residual norms."""
        theta, s = _eigh_tridiagonal(self.alpha, self.beta[:-1])
        return theta, s, np.abs(self.beta[-1] * s[-1, :])


def _eigh_tridiagonal(alpha: np.ndarray, offdiag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(alpha) == 1:
        return alpha.copy(), np.ones((1, 1))
    return scipy.linalg.eigh_tridiagonal(alpha, offdiag)


SQRT_HALF = 0.5 ** 0.5  # the DGKS threshold: repeat the projection if it removed more than 29% of w


def _dot64(a: Tensor, b: Tensor) -> float:
    return float(torch.dot(a.to(torch.float64), b.to(torch.float64)))


class _Krylov:
    """A Lanczos run on ``op``, optionally in the orthogonal complement of ``deflation`` (P, l)."""

    def __init__(self, op: LinearOperator, start: Tensor, *, max_steps: int, reorthogonalize: bool = True,
                 deflation: Tensor | None = None):
        self.op, self.reorthogonalize, self.deflation = op, reorthogonalize, deflation
        self.max_steps = max_steps
        # one contiguous row per Lanczos vector: the projections read a contiguous (j, P) block;
        # the storage doubles as needed, so memory follows the steps taken, not max_steps
        self.rows = torch.empty(min(max_steps, 32), op.shape[0], dtype=op.dtype, device=op.device)
        self.alpha: list[float] = []
        self.beta: list[float] = []
        self.breakdown = False
        self.norm_estimate = 0.0
        self.eps = torch.finfo(op.dtype).eps
        q = self._project(start.to(dtype=op.dtype, device=op.device).clone(), 0)
        norm = float(torch.linalg.vector_norm(q))
        if norm == 0.0:
            raise ValueError("the start vector is zero (in the complement of the locked vectors)")
        self.rows[0] = q / norm

    def _project(self, w: Tensor, j: int) -> Tensor:
        """Remove from ``w`` its components along the deflation space and ``q_0 .. q_{j-1}``, twice."""
        for _ in range(2):
            if self.deflation is not None:
                w = w - self.deflation @ (self.deflation.T @ w)
            if j > 0:
                w = w - (self.rows[:j] @ w) @ self.rows[:j]
        return w

    @property
    def num_steps(self) -> int:
        return len(self.alpha)

    @property
    def done(self) -> bool:
        return self.breakdown or self.num_steps >= self.max_steps

    def step(self) -> None:
        j = self.num_steps
        q = self.rows[j]
        w = self.op @ q
        alpha = _dot64(q, w)
        w = w - alpha * q  # the three-term recurrence ...
        if j > 0:
            w = w - self.beta[-1] * self.rows[j - 1]
        if self.reorthogonalize:
            # ... then classical Gram-Schmidt against q_0 .. q_j (its coefficient on q_j corrects
            # alpha), repeated only when it cancelled much of w: Daniel, Gragg, Kaufman & Stewart
            # 1976; "twice is enough" (Giraud, Langou & Rozloznik 2005)
            for _ in range(2):
                before = torch.linalg.vector_norm(w)
                if self.deflation is not None:
                    w = w - self.deflation @ (self.deflation.T @ w)
                coefficients = self.rows[:j + 1] @ w
                alpha += float(coefficients[j])
                w = w - coefficients @ self.rows[:j + 1]
                if torch.linalg.vector_norm(w) > SQRT_HALF * before:
                    break
        beta = float(torch.linalg.vector_norm(w, dtype=torch.float64))
        self.norm_estimate = max(self.norm_estimate, abs(alpha) + beta + (self.beta[-1] if j > 0 else 0.0))
        self.alpha.append(alpha)
        if beta <= 100 * self.eps * self.norm_estimate:
            self.beta.append(0.0)
            self.breakdown = True
            return
        self.beta.append(beta)
        if j + 1 < self.max_steps:
            if j + 1 == len(self.rows):
                grown = torch.empty(min(2 * len(self.rows), self.max_steps), self.op.shape[0], dtype=w.dtype,
                                    device=w.device)
                grown[:j + 1] = self.rows
                self.rows = grown
            self.rows[j + 1] = w / beta

    def decomposition(self) -> LanczosDecomposition:
        m = self.num_steps
        return LanczosDecomposition(alpha=np.array(self.alpha), beta=np.array(self.beta),
                                    basis=self.rows[:m].T, breakdown=self.breakdown, num_matvecs=m)


def _validate_steps(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def gaussian_start(size: int, seed: int | torch.Generator) -> Tensor:
    """A float64 N(0, 1) vector drawn on CPU (reproducible across devices)."""
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    return torch.randn(size, generator=gen, dtype=torch.float64)


def lanczos(op: LinearOperator | Tensor | np.ndarray, *, num_steps: int, start: Tensor | None = None,
            seed: int = 0, reorthogonalize: bool = True) -> LanczosDecomposition:
    """``num_steps`` Lanczos steps on a symmetric ``op`` from ``start`` (default: Gaussian from ``seed``).

    Stops early at a breakdown (``beta ~ 0``, below 100 machine epsilons of the estimated
    ``||T||``).  ``reorthogonalize=False`` runs the bare three-term recurrence (to show ghosts).
    """
    op = as_operator(op)
    num_steps = min(_validate_steps("num_steps", num_steps), op.shape[0])
    if start is None:
        start = gaussian_start(op.shape[0], seed)
    elif tuple(start.shape) != (op.shape[0],):
        raise ValueError(f"start must be a vector of length {op.shape[0]}, got shape {tuple(start.shape)}")
    krylov = _Krylov(op, start, max_steps=num_steps, reorthogonalize=reorthogonalize)
    while not krylov.done:
        krylov.step()
    return krylov.decomposition()


@result_class
class EigenResult(Result):
    """Extremal eigenvalues (best first for ``which``), Ritz vectors (P, k) or None, residual norms.

    ``residuals[i]`` is the Lanczos estimate of ``||H y_i - lambda_i y_i||``; ``converged[i]`` says
    whether it met the tolerance; ``checked`` whether a final run in the complement of the locked
    vectors confirmed that no eigenvalue of the top ``k`` (e.g. a repeated one) was missed.
    """

    values: np.ndarray
    vectors: np.ndarray | None
    residuals: np.ndarray
    converged: np.ndarray
    which: str
    tol: float
    num_matvecs: int
    num_runs: int
    checked: bool

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        index = np.arange(1, len(self.values) + 1)
        ax.errorbar(index, self.values, yerr=self.residuals, fmt="o", color=MEASURED, capsize=3,
                    label="Ritz value +- residual")
        ax.set(xlabel=f"index ({self.which})", ylabel="eigenvalue",
               title=f"top eigenvalues ({self.num_matvecs} products)")
        ax.legend()
        return ax


def _score(theta: np.ndarray, which: str) -> np.ndarray:
    """Larger is better: theta for LA, -theta for SA, |theta| for LM."""
    return {"LA": theta, "SA": -theta, "LM": np.abs(theta)}[which]


@dataclass
class _Pair:
    value: float
    vector: Tensor
    residual: float
    converged: bool


def _run(op: LinearOperator, start: Tensor, deflation: Tensor | None, *, want: int, which: str, tol: float,
         max_steps: int) -> list[_Pair]:
    """One Lanczos run in the complement of ``deflation``, until its ``want`` best Ritz pairs converge.

    A pair converges when its residual is at most ``max(tol * |theta|, 10 eps ||T||)``.
    """
    krylov = _Krylov(op, start, max_steps=max_steps, deflation=deflation)
    while True:
        krylov.step()
        decomposition = krylov.decomposition()
        theta, s, residuals = decomposition.ritz()
        order = np.argsort(-_score(theta, which), kind="stable")[:want]
        floor = 10 * krylov.eps * krylov.norm_estimate
        ok = residuals[order] <= np.maximum(tol * np.abs(theta[order]), floor)
        if ok.all() or krylov.done:
            break
    vectors = decomposition.basis @ torch.as_tensor(s[:, order], dtype=op.dtype, device=op.device)
    return [_Pair(float(theta[i]), vectors[:, c], float(residuals[i]), bool(ok[c])) for c, i in enumerate(order)]


def top_eigenvalues(op: LinearOperator | Tensor | np.ndarray, k: int = 1, *, which: Which = "LA",
                    tol: float = 1e-6, max_steps: int | None = None, seed: int = 0,
                    return_vectors: bool = False) -> EigenResult:
    """The ``k`` extremal eigenvalues of a symmetric operator by Lanczos with locking.

    ``which``: "LA" largest algebraic, "SA" smallest algebraic, "LM" largest magnitude.  Each run
    uses full reorthogonalization and stops when the wanted Ritz residuals satisfy
    ``||H y - theta y|| <= tol |theta|`` (so ``|theta - lambda| <= tol |theta|`` for some eigenvalue
    ``lambda``: the residual bound for symmetric matrices, Parlett 1998), or at working precision
    (residual ``<= 10 eps ||T||``).  Converged pairs are locked and later runs work in their
    orthogonal complement; for ``k >= 2`` a final check run makes repeated
    eigenvalues appear with their multiplicity.  ``max_steps`` bounds the basis of one run
    (default ``min(P, max(200, 20 k))``, memory ``P * max_steps``).  Start vectors are Gaussian,
    drawn on CPU from ``seed``.
    """
    with Stopwatch() as clock:
        op = as_operator(op)
        size = op.shape[0]
        k = _validate_steps("k", k)
        if k > size:
            raise ValueError(f"k={k} is larger than the dimension {size} of the operator")
        if which not in WHICH:
            raise ValueError(f"which must be one of {WHICH}, got {which!r}")
        if not (isinstance(tol, (int, float)) and tol > 0):
            raise ValueError(f"tol must be a positive number, got {tol!r}")
        max_steps = _validate_steps("max_steps", max_steps) if max_steps is not None else max(200, 20 * k)
        generator = torch.Generator().manual_seed(int(seed))
        start_matvecs = op.num_matvecs
        locked: list[_Pair] = []
        num_runs, checked = 0, False
        while len(locked) < size:
            checking = len(locked) >= k
            if checking:
                best = sorted(locked, key=lambda p: -_score(np.array([p.value]), which)[0])
                threshold = float(_score(np.array([best[k - 1].value]), which)[0])
            else:
                threshold = None
            want = 1 if checking else k - len(locked)
            deflation = torch.stack([p.vector for p in locked], dim=1) if locked else None
            pairs = _run(op, gaussian_start(size, generator), deflation, want=want, which=which, tol=tol,
                         max_steps=min(max_steps, size - len(locked)))
            num_runs += 1
            if checking:  # the best of the complement enters the top k only if it beats the k-th
                if not pairs[0].converged or _score(np.array([pairs[0].value]), which)[0] <= threshold:
                    checked = pairs[0].converged
                    break
            new = [p for p in pairs if p.converged]
            locked += new
            if len(new) < len(pairs):  # out of steps: keep the unconverged pairs as they are
                locked += [p for p in pairs if not p.converged]
                break
            if k == 1:  # a repeated top eigenvalue does not change the top-1 value
                checked = True
                break
        else:
            checked = True
        best = sorted(locked, key=lambda p: -_score(np.array([p.value]), which)[0])[:k]
        vectors = torch.stack([p.vector for p in best], dim=1) if return_vectors else None
    return EigenResult(
        values=np.array([p.value for p in best]),
        vectors=None if vectors is None else vectors.detach().cpu().to(torch.float64).numpy(),
        residuals=np.array([p.residual for p in best]), converged=np.array([p.converged for p in best]),
        which=which, tol=float(tol), num_matvecs=op.num_matvecs - start_matvecs, num_runs=num_runs,
        checked=checked,
        meta=make_meta(seed=seed, dtype=op.dtype, device=op.device, wall_time_s=clock.seconds,
                       num_matvecs=op.num_matvecs - start_matvecs))
