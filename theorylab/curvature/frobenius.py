"""The Frobenius norm of a symmetric operator, exact or by Hutchinson's method on ``A^2``.

``||A||_F^2 = tr(A^T A) = E ||A z||^2`` for Rademacher (or Gaussian) probes ``z``, so ``m`` products
give an unbiased estimate of the squared norm with standard error ``std(||A z_i||^2) / sqrt(m)``
(Hutchinson 1989; the error shrinks like ``m^{-1/2}``).  The norm's standard error follows by the
delta method, ``se(||A||_F) = se(||A||_F^2) / (2 ||A||_F)``.  The exact norm sums ``||A e_j||^2`` over
the ``P`` unit vectors (small operators).  Probes are drawn on the CPU from ``seed``.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from theorylab.curvature.diagonal import CHUNK, check_probes, unit_products
from theorylab.curvature.operators import LinearOperator, as_operator
from theorylab.curvature.trace import rademacher
from theorylab.plotting import MEASURED, axes_or_new
from theorylab.provenance import Stopwatch, make_meta
from theorylab.results import Result, result_class

Method = Literal["exact", "hutchinson"]
METHODS: tuple[str, ...] = ("exact", "hutchinson")


@result_class
class FrobeniusNorm(Result):
    """``estimate`` of ``||A||_F`` with ``stderr``; ``squared`` and ``squared_stderr`` for ``||A||_F^2``.

    ``samples`` are the per-probe ``||A z_i||^2`` (empty for the exact norm).
    """

    estimate: float
    stderr: float
    squared: float
    squared_stderr: float
    method: str
    num_probes: int
    num_matvecs: int
    samples: np.ndarray

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        if len(self.samples):
            count = np.arange(1, len(self.samples) + 1)
            ax.plot(count, np.sqrt(np.maximum(np.cumsum(self.samples) / count, 0)), color=MEASURED,
                    label="running estimate")
        ax.axhspan(self.estimate - self.stderr, self.estimate + self.stderr, color=MEASURED, alpha=0.2,
                   label="estimate +- stderr")
        ax.set(xlabel="probes", ylabel="||A||_F", title=f"Frobenius norm ({self.method})")
        ax.legend()
        return ax


def _squared_norms(op: LinearOperator, probes: Tensor) -> Tensor:
    return ((op @ probes.to(device=op.device, dtype=op.dtype)) ** 2).sum(dim=0, dtype=torch.float64).cpu()


def frobenius_norm(op: LinearOperator | Tensor | np.ndarray, *, method: Method = "hutchinson",
                   num_probes: int = 100, seed: int = 0) -> FrobeniusNorm:
    """``||A||_F``: ``method="exact"`` (``P`` products) or ``"hutchinson"`` (``num_probes >= 2`` products)."""
    with Stopwatch() as clock:
        op = as_operator(op)
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        start_matvecs = op.num_matvecs
        if method == "exact":
            squared = float(sum(float((block.to(torch.float64) ** 2).sum()) for _, block in unit_products(op)))
            squared_stderr, samples, probes = 0.0, np.zeros(0), 0
        else:
            probes = check_probes(num_probes)
            generator = torch.Generator().manual_seed(int(seed))
            samples = torch.cat([_squared_norms(op, rademacher(op.shape[0], min(CHUNK, probes - s), generator,
                                                               op.dtype)) for s in range(0, probes, CHUNK)]).numpy()
            squared = float(np.mean(samples))
            squared_stderr = float(np.std(samples, ddof=1) / math.sqrt(probes))
        estimate = math.sqrt(max(squared, 0.0))
        stderr = squared_stderr / (2 * estimate) if estimate > 0 else 0.0
    used = op.num_matvecs - start_matvecs
    return FrobeniusNorm(estimate=estimate, stderr=stderr, squared=squared, squared_stderr=squared_stderr,
                         method=method, num_probes=probes, num_matvecs=used, samples=samples,
                         meta=make_meta(seed=seed, dtype=op.dtype, device=op.device, wall_time_s=clock.seconds,
                                        num_matvecs=used))
