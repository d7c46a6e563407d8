"""Spectral density by stochastic Lanczos quadrature (SLQ).

The spectral measure of a symmetric ``H`` (dimension ``n``, eigenpairs ``(lambda_i, u_i)``) is
``mu = (1/n) sum_i delta(lambda_i)``.  For a unit probe ``v``, ``mu_v = sum_i (v^T u_i)^2
delta(lambda_i)`` has ``E[mu_v] = mu`` (Rademacher or Gaussian ``v``), and ``m`` Lanczos steps from
``v`` give its Gauss quadrature: nodes ``theta_j`` (eigenvalues of ``T``) and weights
``tau_j = S[0, j]^2`` (squared first components of the eigenvectors of ``T``), exact for
polynomials of degree ``2m - 1`` (Golub & Meurant 2010).  Averaging over ``n_v`` probes and
smoothing each node with a Gaussian of width ``sigma`` gives the density

    phi(t) = (1 / n_v) sum_v sum_j tau_j N(t; theta_j, sigma^2)

(Ghorbani, Krishnan & Xiao 2019; Papyan 2020; Lin, Saad & Yang 2016).  Because
``sum_j tau_j theta_j = v^T H v`` the quadrature also gives Hutchinson's trace estimate
``n * mean_v sum_j tau_j theta_j`` for free.

Each probe needs a Lanczos run of ``num_steps``.  With ``reorthogonalize="partial"`` (the default)
or ``"full"`` its basis is kept, ``num_steps`` vectors (one buffer, reused by every probe); partial
reorthogonalization (Simon 1984) orthogonalizes against it only on the steps where orthogonality
is about to be lost, which keeps the nodes those of full reorthogonalization.  ``"none"`` keeps three
vectors, so the density of a model of any size fits in memory, and pays in ghosts: copies of
converged Ritz values that split the weight of one eigenvalue between several nodes (the
quadrature stays that of a nearby larger matrix, Greenbaum 1989, so the density remains a fair
estimate, with fewer distinct nodes).  ``ghosts`` reports how many nodes per probe are such copies.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from theorylab.curvature.basis import MemoryBudget
from theorylab.curvature.lanczos import (Reorthogonalize, _Krylov, _validate_reorthogonalize, _validate_steps,
                                         krylov_basis)
from theorylab.curvature.operators import LinearOperator, as_operator
from theorylab.curvature.trace import rademacher
from theorylab.plotting import MEASURED, axes_or_new
from theorylab.progress import bar
from theorylab.provenance import Stopwatch, make_meta
from theorylab.results import Result, result_class

#: default kernel width, as a fraction of the width of the Ritz-value range
DEFAULT_RELATIVE_SIGMA = 0.01


@result_class
class SpectralDensity(Result):
    """SLQ nodes and weights per probe, shape ``(num_probes, num_steps)``; weights sum to 1 per probe.

    A probe whose Krylov space is exhausted early (breakdown) has fewer nodes; its row is padded
    with zero weights at its last node.  ``trace_estimate = dimension * mean_v sum_j tau_j theta_j``.
    ``ghosts[v]`` counts the nodes of probe ``v`` that copy another converged node
    (:func:`~theorylab.curvature.lanczos.count_ghosts`), ``reorthogonalized_steps[v]`` the steps that
    orthogonalized against the basis, and ``basis_bytes`` is the memory of the stored basis.
    """

    nodes: np.ndarray
    weights: np.ndarray
    dimension: int
    num_steps: int
    num_probes: int
    ritz_min: float
    ritz_max: float
    trace_estimate: float
    num_matvecs: int
    reorthogonalize: str
    ghosts: np.ndarray
    reorthogonalized_steps: np.ndarray
    basis_bytes: int

    @property
    def default_sigma(self) -> float:
        """``DEFAULT_RELATIVE_SIGMA * (ritz_max - ritz_min)`` (or 1e-3 for a single-point spectrum)."""
        width = self.ritz_max - self.ritz_min
        return DEFAULT_RELATIVE_SIGMA * width if width > 0 else 1e-3 * max(abs(self.ritz_max), 1.0)

    def density(self, grid: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """``phi(t)`` on ``grid`` with Gaussian kernels of width ``sigma`` (default :attr:`default_sigma`)."""
        sigma = self.default_sigma if sigma is None else float(sigma)
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma!r}")
        grid = np.asarray(grid, dtype=np.float64)
        z = (grid[..., None] - self.nodes.reshape(-1)) / sigma
        kernels = np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi))
        return kernels @ self.weights.reshape(-1) / self.num_probes

    def measure(self) -> tuple[np.ndarray, np.ndarray]:
        """The quadrature measure: all nodes and their weights (summing to 1)."""
        return self.nodes.reshape(-1), self.weights.reshape(-1) / self.num_probes

    def plot(self, ax: Any = None, sigma: float | None = None) -> Any:
        ax = axes_or_new(ax)
        sigma = self.default_sigma if sigma is None else sigma
        margin = 5 * sigma
        grid = np.linspace(self.ritz_min - margin, self.ritz_max + margin, 1000)
        ax.semilogy(grid, np.maximum(self.density(grid, sigma), 1e-12), color=MEASURED,
                    label=f"SLQ, {self.num_probes} probes x {self.num_steps} steps, sigma={sigma:.3g}")
        ax.set(xlabel="eigenvalue", ylabel="density", title="spectral density")
        ax.legend()
        return ax


def _probe_quadrature(krylov: _Krylov, num_steps: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Nodes, weights (padded to ``num_steps``) and ghost count of a finished Lanczos run."""
    decomposition = krylov.decomposition()
    theta, s, _ = decomposition.ritz()
    weights = s[0, :] ** 2
    pad = num_steps - len(theta)
    return (np.concatenate([theta, np.full(pad, theta[-1])]), np.concatenate([weights / weights.sum(), np.zeros(pad)]),
            decomposition.ghosts())


def spectral_density(op: LinearOperator | Tensor | np.ndarray, *, num_steps: int = 100, num_probes: int = 5,
                     seed: int = 0, reorthogonalize: Reorthogonalize = "partial", memory_budget: MemoryBudget = None,
                     basis_dtype: torch.dtype | None = None, basis_device: str | torch.device | None = None,
                     progress: bool | None = None) -> SpectralDensity:
    """SLQ with ``num_probes`` Rademacher probes (drawn on CPU from ``seed``) and ``num_steps`` Lanczos steps each.

    ``num_steps`` is capped at the dimension.  Uses ``num_probes * num_steps`` products at most.
    ``reorthogonalize``: "partial" (the default: the nodes of full reorthogonalization, to about
    ``sqrt(eps)`` relative, for a fraction of its work), "full" or "none" (no basis kept; ghosts
    reported).  The basis of "full" and "partial" holds
    ``num_steps`` vectors and must fit ``memory_budget`` (bytes, "auto", None for no bound);
    ``basis_dtype``/``basis_device`` store it in a lower precision or on the CPU, as in
    :func:`~theorylab.curvature.lanczos.lanczos`.  ``progress`` shows a bar (products, probe).
    """
    with Stopwatch() as clock:
        op = as_operator(op)
        num_steps = min(_validate_steps("num_steps", num_steps), op.shape[0])
        num_probes = _validate_steps("num_probes", num_probes)
        reorthogonalize = _validate_reorthogonalize(reorthogonalize)
        size = op.shape[0]
        basis = None if reorthogonalize == "none" else krylov_basis(
            op, num_steps, memory_budget=memory_budget, basis_dtype=basis_dtype, basis_device=basis_device,
            purpose=f"spectral_density with num_steps={num_steps}")
        generator = torch.Generator().manual_seed(int(seed))
        probes = rademacher(size, num_probes, generator, op.dtype).T  # (num_probes, P): contiguous rows
        start_matvecs = op.num_matvecs
        quadratures, reorthogonalized = [], []
        with bar(num_probes * num_steps, desc="spectral density", unit="product", enabled=progress) as shown:
            for i, probe in enumerate(probes):
                shown.set_postfix_str(f"probe {i + 1}/{num_probes}", refresh=False)
                krylov = _Krylov(op, probe, basis, max_steps=num_steps, reorthogonalize=reorthogonalize)
                while not krylov.done:
                    krylov.step()
                    shown.update(1)
                shown.update(num_steps - krylov.num_steps)  # a breakdown ends a probe early
                quadratures.append(_probe_quadrature(krylov, num_steps))
                reorthogonalized.append(krylov.num_reorthogonalizations)
        nodes = np.stack([q[0] for q in quadratures])
        weights = np.stack([q[1] for q in quadratures])
    used = op.num_matvecs - start_matvecs
    return SpectralDensity(
        nodes=nodes, weights=weights, dimension=size, num_steps=num_steps, num_probes=num_probes,
        ritz_min=float(nodes.min()), ritz_max=float(nodes.max()),
        trace_estimate=float(size * np.mean(np.sum(weights * nodes, axis=1))), num_matvecs=used,
        reorthogonalize=reorthogonalize, ghosts=np.array([q[2] for q in quadratures]),
        reorthogonalized_steps=np.array(reorthogonalized), basis_bytes=0 if basis is None else basis.nbytes,
        meta=make_meta(seed=seed, dtype=op.dtype, device=op.device, wall_time_s=clock.seconds, num_matvecs=used))
