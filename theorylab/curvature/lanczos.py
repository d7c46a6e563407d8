"""Lanczos with reorthogonalization, and extremal eigenvalues of symmetric operators.

For a symmetric ``H`` and a unit start vector ``q_0``, ``m`` Lanczos steps build an orthonormal
basis ``Q = [q_0 .. q_{m-1}]`` of the Krylov space ``K_m(H, q_0)`` and a tridiagonal
``T = Q^T H Q`` (diagonal ``alpha``, off-diagonal ``beta``) with

    H Q = Q T + beta_m q_m e_m^T                          (Golub & Van Loan 2013)

Eigenpairs ``(theta_i, s_i)`` of ``T`` give Ritz pairs ``(theta_i, Q s_i)`` whose residual is
``||H Q s_i - theta_i Q s_i|| = |beta_m s_i[m-1]|``.  In floating point the basis loses
orthogonality as Ritz values converge, and converged eigenvalues reappear as spurious copies
("ghosts", Paige 1976).  Three ways to deal with it (``reorthogonalize``):

* ``"full"``: every new vector is orthogonalized against the whole stored basis, a second time
  only when the first pass cancelled much of it (Daniel, Gragg, Kaufman & Stewart 1976; "twice is
  enough", Giraud, Langou & Rozloznik 2005);
* ``"partial"``: Simon's (1984) recurrence estimates ``omega_{j,k} ~ q_j^T q_k`` from ``alpha`` and
  ``beta`` alone; the basis is kept, but a vector is orthogonalized against it only when the
  estimate passes ``sqrt(eps)`` (and the next one too).  Semi-orthogonality is enough for ``T``
  to be the projection of ``H`` to working precision, so Ritz values are as accurate as with full
  reorthogonalization, for a fraction of its cost;
* ``"none"``: the bare three-term recurrence; no basis is kept (memory: three vectors), ghosts
  appear and :meth:`LanczosDecomposition.ghosts` counts them.

``alpha``, ``beta`` and ``T`` are float64; the vectors stay in the operator's precision, dot products
accumulate in float64.  ``beta ~ 0`` (an invariant subspace: the Ritz pairs are exact) ends a run.
The basis lives in a :class:`~theorylab.curvature.basis.KrylovBasis` of fixed capacity, bounded by
``memory_budget``, on the operator's device or the CPU, in the operator's precision or a lower one.

Single-vector Lanczos sees only one direction of each eigenspace, so a repeated eigenvalue is
found once.  :func:`top_eigenvalues` therefore locks converged Ritz vectors and restarts in their
orthogonal complement, and ends with a check run in the complement of everything locked: a
missed copy shows up there as a Ritz value that still belongs to the top ``k``.  When the budget
caps the basis below what a run needs, the run is restarted thick (Wu & Simon 2000, "Thick-restart
Lanczos method for large symmetric eigenvalue problems"): the best Ritz vectors are kept, the rest
of the basis is dropped, and Lanczos continues from the residual direction with an arrowhead ``T``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from theorylab.curvature.basis import (SEGMENT_BYTES, KrylovBasis, MemoryBudget, plan, resolve_budget,
                                       resolve_storage)
from theorylab.curvature.operators import LinearOperator, as_operator
from theorylab.plotting import MEASURED, axes_or_new
from theorylab.progress import bar
from theorylab.provenance import Stopwatch, make_meta
from theorylab.results import Result, result_class

Which = Literal["LA", "SA", "LM"]
WHICH: tuple[str, ...] = ("LA", "SA", "LM")
Reorthogonalize = Literal["full", "partial", "none"]
REORTHOGONALIZE: tuple[str, ...] = ("full", "partial", "none")
SQRT_HALF = 0.5 ** 0.5  # the DGKS threshold: repeat the projection if it removed more than 29% of w


def _eigh_tridiagonal(alpha: np.ndarray, offdiag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(alpha) == 1:
        return alpha.copy(), np.ones((1, 1))
    return scipy.linalg.eigh_tridiagonal(alpha, offdiag)


def count_ghosts(theta: np.ndarray, residuals: np.ndarray, norm: float, eps: float) -> int:
    """Converged Ritz values that repeat another: the ghosts of lost orthogonality.

    A Ritz value is converged when its residual is at most ``sqrt(eps) ||T||``; two converged
    values are copies of one eigenvalue when they are closer than their residuals allow distinct
    eigenvalues to be, ``|theta_a - theta_b| <= r_a + r_b + 100 eps ||T||``.  With full
    reorthogonalization a single start vector sees one direction per eigenspace, so every copy is
    a ghost.
    """
    good = residuals <= math.sqrt(eps) * norm
    theta, residuals = theta[good], residuals[good]
    order = np.argsort(theta)
    theta, residuals = theta[order], residuals[order]
    return int(np.sum(np.diff(theta) <= residuals[1:] + residuals[:-1] + 100 * eps * norm))


@dataclass(frozen=True)
class LanczosDecomposition:
    """``m`` Lanczos steps: ``alpha`` (m,), ``beta`` (m,) in float64 and the stored basis ``(P, m)``.

    ``beta[j]`` couples ``q_j`` and ``q_{j+1}``; ``beta[-1]`` is the residual norm ``beta_m``
    (0 after a breakdown, when the Krylov space is invariant and every Ritz pair exact).
    ``basis`` is a view of the stored rows, in the storage precision and device (None with
    ``reorthogonalize="none"``); ``basis_bytes`` the memory they take; ``num_reorthogonalizations``
    the steps that orthogonalized against the basis; ``eps`` the unit roundoff of the operator.
    """

    alpha: np.ndarray
    beta: np.ndarray
    basis: Tensor | None
    breakdown: bool
    num_matvecs: int
    reorthogonalize: str
    basis_bytes: int
    num_reorthogonalizations: int
    eps: float

    @property
    def num_steps(self) -> int:
        return len(self.alpha)

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values (ascending), eigenvectors of ``T`` (columns) and Ritz residual norms."""
        theta, s = _eigh_tridiagonal(self.alpha, self.beta[:-1])
        return theta, s, np.abs(self.beta[-1] * s[-1, :])

    def ghosts(self) -> int:
        """How many Ritz values are copies of another converged one (:func:`count_ghosts`)."""
        theta, _, residuals = self.ritz()
        norm = float(np.max(np.abs(self.alpha)) + (np.max(self.beta) if len(self.beta) else 0.0))
        return count_ghosts(theta, residuals, norm, self.eps)


#: entries per chunk of the float64-accumulated reductions (their temporaries stay this small)
REDUCE_CHUNK = 1 << 22


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """``a . b`` accumulated in float64, a chunk at a time: no float64 copies of the vectors (a 0-d tensor)."""
    if a.dtype == torch.float64:
        return torch.dot(a, b)
    return torch.stack([torch.sum(a[i:i + REDUCE_CHUNK] * b[i:i + REDUCE_CHUNK], dtype=torch.float64)
                        for i in range(0, len(a), REDUCE_CHUNK)]).sum()


def _norm(w: Tensor) -> Tensor:
    """``||w||`` accumulated in float64, a chunk at a time (a 0-d float64 tensor)."""
    if w.dtype == torch.float64:
        return torch.linalg.vector_norm(w)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(w[i:i + REDUCE_CHUNK], dtype=torch.float64)
                                                 for i in range(0, len(w), REDUCE_CHUNK)]))


class _Krylov:
    """A Lanczos run on ``op`` from ``start``, in the orthogonal complement of rows ``[0, offset)``.

    The run's vectors are rows ``offset, offset + 1, ...`` of ``basis`` (None: not kept, only with
    ``reorthogonalize="none"``); the rows before ``offset`` (locked vectors) are projected out of
    every new vector.  The current and previous Lanczos vectors stay in the operator's precision.
    After :meth:`restart` the first ``l`` rows of the run are Ritz vectors and ``T`` is an
    arrowhead: ``diag(theta)`` coupled to row ``l`` by ``arrow``, tridiagonal after it.
    """

    def __init__(self, op: LinearOperator, start: Tensor, basis: KrylovBasis | None, *, max_steps: int,
                 reorthogonalize: str = "full", offset: int = 0):
        self.op, self.basis, self.offset = op, basis, offset
        self.reorthogonalize, self.max_steps = reorthogonalize, max_steps
        self.alpha, self.beta = np.zeros(max_steps), np.zeros(max_steps)
        self.arrow = np.zeros(0)
        self.num_steps = 0
        self.breakdown = False
        self.norm_estimate = 0.0
        self.eps = torch.finfo(op.dtype).eps
        self.num_reorthogonalizations = 0
        q = start.to(dtype=op.dtype, device=op.device, copy=True)
        if offset:
            for _ in range(2):
                basis.project(q, 0, offset)
        norm = float(_norm(q))
        if norm == 0.0:
            raise ValueError("the start vector is zero (in the complement of the locked vectors)")
        self.q, self.q_prev = q.div_(norm), None
        if basis is not None:
            basis.store(offset, self.q)
        # partial reorthogonalization: estimates of q_j^T q_k for the current and previous j
        self.omega, self.omega_prev = np.ones(1), np.zeros(0)
        self.reorthogonalize_next = False

    @property
    def done(self) -> bool:
        return self.breakdown or self.num_steps >= self.max_steps

    def _orthogonalize(self, w: Tensor, rows: int, alpha: Tensor) -> tuple[float, float]:
        """Project ``w`` (in place) against basis rows ``[0, rows)``, twice if the first pass cancelled
        much of it (DGKS).  Returns ``alpha`` corrected by the coefficients on the current vector and
        the norm of ``w`` after; one host synchronisation per pass."""
        current = self.offset + self.num_steps
        before = _norm(w)
        for _ in range(2):
            coefficients = self.basis.project(w, 0, rows)
            alpha = alpha + coefficients[current].double()
            after = _norm(w)
            alpha_value, before_value, after_value = torch.stack([alpha, before, after]).tolist()
            if after_value > SQRT_HALF * before_value:
                break
            before = after
        self.num_reorthogonalizations += 1
        return alpha_value, after_value

    def _omega_next(self, j: int, beta: float) -> np.ndarray:
        """Simon's (1984) estimates of ``q_{j+1}^T q_k``, k <= j+1, from the recurrence coefficients:

        ``beta_j w_{j+1,k} = beta_k w_{j,k+1} + (alpha_k - alpha_j) w_{j,k} + beta_{k-1} w_{j,k-1}
        - beta_{j-1} w_{j-1,k} +- eps ||T||``, with ``w_{j+1,j} = eps ||T|| / beta_j``, ``w_{j+1,j+1} = 1``.
        """
        cur, prev, a, b = self.omega, self.omega_prev, self.alpha, self.beta
        scale = self.eps * self.norm_estimate
        nxt = np.empty(j + 2)
        nxt[j + 1], nxt[j] = 1.0, scale / beta
        if j >= 1:
            k = np.arange(j)
            term = b[k] * cur[k + 1] + (a[k] - a[j]) * cur[k] - b[j - 1] * prev[k]
            term[1:] += b[k[1:] - 1] * cur[k[1:] - 1]
            nxt[:j] = (term + np.sign(term) * scale) / beta
        return nxt

    def step(self) -> None:
        """One product and one Lanczos step."""
        j = self.num_steps
        row = self.offset + j
        q = self.q
        w = self.op @ q
        if w.data_ptr() == q.data_ptr():  # an operator that returns its input: never update q in place
            w = w.clone()
        alpha_t = _dot(q, w)
        w.addcmul_(q, alpha_t.to(w.dtype), value=-1)  # the three-term recurrence ...
        if j > 0 and len(self.arrow) == j:  # the first step after a restart couples to every kept Ritz vector
            self.basis.subtract(w, torch.as_tensor(self.arrow, dtype=w.dtype, device=w.device), self.offset)
        elif j > 0:
            w.add_(self.q_prev, alpha=-self.beta[j - 1])
        if self.reorthogonalize == "full":  # ... then Gram-Schmidt against everything stored
            alpha, beta = self._orthogonalize(w, row + 1, alpha_t)
        else:
            alpha, beta = torch.stack([alpha_t, _norm(w)]).tolist()
        self.alpha[j] = alpha
        self.norm_estimate = max(self.norm_estimate, abs(alpha) + beta + (self.beta[j - 1] if j > 0 else 0.0))
        if self.reorthogonalize == "partial" and beta > 100 * self.eps * self.norm_estimate:
            omega = self._omega_next(j, beta)
            if self.reorthogonalize_next or np.max(np.abs(omega[:j + 1])) > math.sqrt(self.eps):
                self.alpha[j], beta = self._orthogonalize(w, row + 1, torch.tensor(alpha, dtype=torch.float64,
                                                                                   device=w.device))
                omega[:j + 1] = self.eps  # orthogonal to working precision again
                self.reorthogonalize_next = not self.reorthogonalize_next  # the next vector too
            self.omega_prev, self.omega = self.omega, omega
        if beta <= 100 * self.eps * self.norm_estimate:
            self.breakdown = True
            beta = 0.0
        self.beta[j] = beta
        self.num_steps = j + 1
        if not self.breakdown:
            self.q_prev, self.q = q, w.div_(beta)
            if self.basis is not None and self.num_steps < self.max_steps:
                self.basis.store(row + 1, self.q)

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values (ascending), eigenvectors of ``T`` and residual norms ``|beta_m s[m-1]|``."""
        m, l = self.num_steps, len(self.arrow)
        if l == 0:
            theta, s = _eigh_tridiagonal(self.alpha[:m], self.beta[:m - 1])
        else:
            t = np.diag(self.alpha[:m]) + np.diag(self.beta[:m - 1], 1) + np.diag(self.beta[:m - 1], -1)
            t[:l, l] = t[l, :l] = self.arrow
            theta, s = scipy.linalg.eigh(t)
        return theta, s, np.abs(self.beta[m - 1] * s[m - 1, :])

    def restart(self, theta: np.ndarray, s: np.ndarray, keep: np.ndarray) -> None:
        """Thick restart: keep the Ritz vectors ``keep`` as the first rows, continue from the residual direction."""
        m, l = self.num_steps, len(keep)
        self.basis.transform(self.offset, self.offset + m, torch.from_numpy(np.ascontiguousarray(s[:, keep])))
        self.arrow = self.beta[m - 1] * s[m - 1, keep]
        self.alpha[:l], self.beta[:l] = theta[keep], 0.0
        self.num_steps, self.q_prev = l, None
        self.basis.store(self.offset + l, self.q)

    def lock(self, s: np.ndarray, columns: np.ndarray) -> None:
        """Ritz vectors ``Q s[:, columns]`` into rows ``offset, offset + 1, ...`` (they become locked)."""
        self.basis.transform(self.offset, self.offset + self.num_steps,
                             torch.from_numpy(np.ascontiguousarray(s[:, columns])))

    def decomposition(self) -> LanczosDecomposition:
        m = self.num_steps
        basis = None if self.basis is None else self.basis.view(self.offset, self.offset + m).T
        return LanczosDecomposition(alpha=self.alpha[:m].copy(), beta=self.beta[:m].copy(), basis=basis,
                                    breakdown=self.breakdown, num_matvecs=m, reorthogonalize=self.reorthogonalize,
                                    basis_bytes=0 if self.basis is None else self.basis.nbytes,
                                    num_reorthogonalizations=self.num_reorthogonalizations, eps=self.eps)


def _validate_steps(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _validate_reorthogonalize(value: Any) -> str:
    if value not in REORTHOGONALIZE:
        raise ValueError(f"reorthogonalize must be one of {REORTHOGONALIZE}, got {value!r}")
    return value


def gaussian_start(size: int, seed: int | torch.Generator) -> Tensor:
    """A float64 N(0, 1) vector drawn on CPU (reproducible across devices)."""
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    return torch.randn(size, generator=gen, dtype=torch.float64)


def _storage(op: LinearOperator, memory_budget: MemoryBudget, basis_dtype: torch.dtype | None,
             basis_device: str | torch.device | None) -> dict[str, Any]:
    """The keyword arguments of :class:`KrylovBasis` (and :func:`plan`) for ``op`` and the options."""
    dtype, device = resolve_storage(op.dtype, op.device, basis_dtype, basis_device)
    return dict(compute_dtype=op.dtype, compute_device=op.device, storage_dtype=dtype, storage_device=device,
                budget=resolve_budget(memory_budget, device))


def krylov_basis(op: LinearOperator, rows: int, *, memory_budget: MemoryBudget, basis_dtype: torch.dtype | None,
                 basis_device: str | torch.device | None, purpose: str) -> KrylovBasis:
    """A basis of ``rows`` rows for ``op``; ValueError naming the remedies if ``memory_budget`` holds fewer."""
    storage = _storage(op, memory_budget, basis_dtype, basis_device)
    fits = plan(op.shape[0], rows, **storage)[0]
    if fits < rows:
        raise ValueError(f"{purpose} stores {rows} vectors of {op.shape[0]} entries, but memory_budget="
                         f"{memory_budget!r} holds {fits} in {storage['storage_dtype']}; raise the budget, store "
                         "the basis in a lower precision (basis_dtype) or reorthogonalize='none' (no basis kept)")
    return KrylovBasis(op.shape[0], rows, **storage)


def lanczos(op: LinearOperator | Tensor | np.ndarray, *, num_steps: int, start: Tensor | None = None,
            seed: int = 0, reorthogonalize: Reorthogonalize = "full", memory_budget: MemoryBudget = None,
            basis_dtype: torch.dtype | None = None, basis_device: str | torch.device | None = None,
            progress: bool | None = None) -> LanczosDecomposition:
    """``num_steps`` Lanczos steps on a symmetric ``op`` from ``start`` (default: Gaussian from ``seed``).

    Stops early at a breakdown (``beta ~ 0``, below 100 machine epsilons of the estimated
    ``||T||``).  ``reorthogonalize``: "full", "partial" or "none" (the bare three-term recurrence,
    no basis kept).  The basis (``num_steps`` vectors) must fit ``memory_budget`` (bytes, "auto"
    for half the free memory of its device, None for no bound); ``basis_dtype`` and ``basis_device``
    store it in a lower precision or on the CPU.
    """
    op = as_operator(op)
    num_steps = min(_validate_steps("num_steps", num_steps), op.shape[0])
    reorthogonalize = _validate_reorthogonalize(reorthogonalize)
    if start is None:
        start = gaussian_start(op.shape[0], seed)
    elif tuple(start.shape) != (op.shape[0],):
        raise ValueError(f"start must be a vector of length {op.shape[0]}, got shape {tuple(start.shape)}")
    basis = None if reorthogonalize == "none" else krylov_basis(
        op, num_steps, memory_budget=memory_budget, basis_dtype=basis_dtype, basis_device=basis_device,
        purpose=f"lanczos with num_steps={num_steps}")
    krylov = _Krylov(op, start, basis, max_steps=num_steps, reorthogonalize=reorthogonalize)
    with bar(num_steps, desc="lanczos", unit="product", enabled=progress) as shown:
        while not krylov.done:
            krylov.step()
            shown.update(1)
    return krylov.decomposition()


@result_class
class EigenResult(Result):
    """Extremal eigenvalues (best first for ``which``), Ritz vectors (P, k) or None, residual norms.

    ``residuals[i]`` is the Lanczos estimate of ``||H y_i - lambda_i y_i||``; ``converged[i]`` says
    whether it met the tolerance; ``checked`` whether a final run in the complement of the locked
    vectors confirmed that no eigenvalue of the top ``k`` (e.g. a repeated one) was missed.
    ``basis_bytes`` is the memory of the stored basis (its peak: it is allocated once) and
    ``num_restarts`` the number of thick restarts the budget forced.
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
    basis_bytes: int
    num_restarts: int

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        index = np.arange(1, len(self.values) + 1)
        ax.errorbar(index, self.values, yerr=self.residuals, fmt="o", color=MEASURED, capsize=3,
                    label="Ritz value +- residual")
        ax.set(xlabel=f"index ({self.which})", ylabel="eigenvalue",
               title=f"top eigenvalues ({self.num_matvecs} products)")
        ax.legend()
        return ax


def _score(theta: np.ndarray | float, which: str) -> np.ndarray:
    """Larger is better: theta for LA, -theta for SA, |theta| for LM."""
    theta = np.asarray(theta)
    return {"LA": theta, "SA": -theta, "LM": np.abs(theta)}[which]


@dataclass
class _Pair:
    value: float
    residual: float
    converged: bool


class _Search:
    """The state of :func:`top_eigenvalues`: locked pairs (rows ``[0, len(locked))`` of the basis)."""

    def __init__(self, op: LinearOperator, basis: KrylovBasis, *, which: str, tol: float, max_steps: int,
                 max_restarts: int, shown: Any):
        self.op, self.basis, self.which, self.tol = op, basis, which, tol
        self.max_steps, self.max_restarts, self.shown = max_steps, max_restarts, shown
        self.locked: list[_Pair] = []
        self.num_restarts = 0

    def run(self, start: Tensor, want: int, num_run: int) -> tuple[list[_Pair], _Krylov, np.ndarray, np.ndarray]:
        """One Lanczos run in the complement of the locked vectors until its ``want`` best Ritz pairs
        converge, restarting thick when its rows run out.

        A pair converges when its residual is at most ``max(tol * |theta|, 10 eps ||T||)``.
        """
        offset, size = len(self.locked), self.op.shape[0]
        rows = min(self.max_steps, self.basis.capacity - offset, size - offset)
        krylov = _Krylov(self.op, start, self.basis, max_steps=rows, offset=offset)
        restarts = 0
        while True:
            krylov.step()
            theta, s, residuals = krylov.ritz()
            order = np.argsort(-_score(theta, self.which), kind="stable")
            wanted = order[:want]
            floor = 10 * krylov.eps * krylov.norm_estimate
            ok = residuals[wanted] <= np.maximum(self.tol * np.abs(theta[wanted]), floor)
            worst = float(np.max(residuals[wanted] / np.maximum(np.abs(theta[wanted]), max(floor, 1e-300))))
            self.shown.update(1)
            self.shown.set_postfix_str(f"run {num_run}, restarts {self.num_restarts + restarts}, "
                                       f"residual {worst:.1e} (tol {self.tol:g})", refresh=False)
            if ok.all() or krylov.breakdown:
                break
            if krylov.done:
                if restarts >= self.max_restarts or rows < want + 2 or rows == size - offset:
                    break
                keep = order[:min(rows - 1, want + (rows - want) // 2)]  # the wanted and half the rest
                krylov.restart(theta, s, keep)
                restarts += 1
        self.num_restarts += restarts
        pairs = [_Pair(float(theta[i]), float(residuals[i]), bool(c)) for i, c in zip(wanted, ok)]
        return pairs, krylov, s, wanted

    def lock(self, pairs: list[_Pair], krylov: _Krylov, s: np.ndarray, columns: np.ndarray) -> None:
        krylov.lock(s, columns)
        self.locked += pairs


def top_eigenvalues(op: LinearOperator | Tensor | np.ndarray, k: int = 1, *, which: Which = "LA",
                    tol: float = 1e-6, max_steps: int | None = None, seed: int = 0,
                    return_vectors: bool = False, memory_budget: MemoryBudget = None,
                    basis_dtype: torch.dtype | None = None, basis_device: str | torch.device | None = None,
                    max_restarts: int = 50, check: bool = True, progress: bool | None = None) -> EigenResult:
    """The ``k`` extremal eigenvalues of a symmetric operator by Lanczos with locking.

    ``which``: "LA" largest algebraic, "SA" smallest algebraic, "LM" largest magnitude.  Each run
    uses full reorthogonalization and stops when the wanted Ritz residuals satisfy
    ``||H y - theta y|| <= tol |theta|`` (so ``|theta - lambda| <= tol |theta|`` for some eigenvalue
    ``lambda``: the residual bound for symmetric matrices, Parlett 1998), or at working precision
    (residual ``<= 10 eps ||T||``).  Converged pairs are locked and later runs work in their
    orthogonal complement; for ``k >= 2`` a final check run makes repeated eigenvalues appear with
    their multiplicity (``check=False`` skips it, saving its products where the eigenvalues are
    known to be simple; ``checked`` is then False).  Start vectors are Gaussian, drawn on CPU from
    ``seed``.

    Memory: the basis holds the locked vectors and the vectors of the current run, at most
    ``max_steps`` of them (default ``max(200, 20 k)``), in segments allocated as they fill and never
    copied.  ``memory_budget`` (bytes, "auto" for half the free memory of the basis device, None for
    no bound) caps the rows; a run that fills them is restarted thick, keeping its best Ritz
    vectors, at most ``max_restarts`` times.  ``basis_dtype`` (float32, float16, bfloat16) stores the
    basis in a lower precision: Ritz vectors, and the true residuals, are then accurate to about
    the storage roundoff ``u`` (times ``||H||``), while the eigenvalues are much less affected (errors
    well below ``u ||H||`` in the tests); the reported residuals are the Lanczos estimates.
    ``basis_device="cpu"`` keeps the basis off a GPU.  ``progress`` shows a bar (products, run,
    restarts, current worst relative residual).
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
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts must be a non-negative integer, got {max_restarts!r}")
        if not isinstance(check, bool):
            raise ValueError(f"check must be True or False, got {check!r}")
        storage = _storage(op, memory_budget, basis_dtype, basis_device)
        capacity = plan(size, min(size, k + max_steps), **storage)[0]
        if capacity < min(k + 2, size):
            raise ValueError(f"memory_budget={memory_budget!r} holds {capacity} vectors of {size} entries in "
                             f"{storage['storage_dtype']}; top_eigenvalues(k={k}) needs at least {k + 2}: raise the "
                             "budget or store the basis in a lower precision (basis_dtype)")
        # the rows a search needs are not known: segments allocated as they fill
        basis = KrylovBasis(size, capacity, **storage, segment_rows=max(1, SEGMENT_BYTES // (
            size * torch.empty((), dtype=storage["storage_dtype"]).element_size())))
        generator = torch.Generator().manual_seed(int(seed))
        start_matvecs = op.num_matvecs
        num_runs, checked = 0, False
        with bar(None, desc="top eigenvalues", unit="product", enabled=progress) as shown:
            search = _Search(op, basis, which=which, tol=tol, max_steps=max_steps, max_restarts=max_restarts,
                             shown=shown)
            while len(search.locked) < size:
                if len(search.locked) >= capacity:  # no room left for a run
                    break
                checking = len(search.locked) >= k
                if checking and not check:
                    break
                want = 1 if checking else k - len(search.locked)
                pairs, krylov, s, columns = search.run(gaussian_start(size, generator), want, num_runs + 1)
                num_runs += 1
                if checking:  # the best of the complement enters the top k only if it beats the k-th
                    threshold = np.sort(_score(np.array([p.value for p in search.locked]), which))[::-1][k - 1]
                    if not pairs[0].converged or _score(pairs[0].value, which) <= threshold:
                        checked = pairs[0].converged
                        break
                search.lock(pairs, krylov, s, columns)  # the unconverged ones too, as they are ...
                if not all(p.converged for p in pairs):  # ... when out of steps
                    break
                if k == 1:  # a repeated top eigenvalue does not change the top-1 value
                    checked = True
                    break
            else:
                checked = True
        order = np.argsort(-_score(np.array([p.value for p in search.locked]), which), kind="stable")[:k]
        best = [search.locked[i] for i in order]
        vectors = None
        if return_vectors:
            rows = basis.read(0, len(search.locked))[torch.as_tensor(order)]
            vectors = rows.T.detach().cpu().to(torch.float64).numpy()
    used = op.num_matvecs - start_matvecs
    return EigenResult(
        values=np.array([p.value for p in best]), vectors=vectors,
        residuals=np.array([p.residual for p in best]), converged=np.array([p.converged for p in best]),
        which=which, tol=float(tol), num_matvecs=used, num_runs=num_runs, checked=checked,
        basis_bytes=basis.nbytes, num_restarts=search.num_restarts,
        meta=make_meta(seed=seed, dtype=op.dtype, device=op.device, wall_time_s=clock.seconds, num_matvecs=used))
