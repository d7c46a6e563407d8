"""Stochastic trace estimation: Hutchinson and Hutch++.

Hutchinson (1989): for Rademacher probes ``z`` (entries +-1), ``E[z^T H z] = tr(H)``; with ``m``
probes the estimate is the sample mean of ``z_i^T H z_i`` and its standard error is the sample
standard deviation over ``sqrt(m)``.  The variance of one sample is ``2 sum_{i != j} H_ij^2``, so
the error decays like ``m^{-1/2}``; negative traces (indefinite Hessians) are estimated as well.

Hutch++ (Meyer, Musco, Musco & Woodruff 2021, Algorithm 1): with a budget of ``m`` products,
draw ``S`` with ``m/3`` Rademacher columns, ``Q = orth(H S)``, and estimate

    tr(H) = tr(Q^T H Q) + tr((I - QQ^T) H (I - QQ^T))

with the first term exact (``m/3`` products) and the second by Hutchinson with the remaining
``m/3`` probes projected onto the complement of ``Q``.  The top of the spectrum is captured
exactly, so matrices dominated by a few large eigenvalues get an error that decays like ``1/m``
(their main theorem, for positive semi-definite matrices).  The reported standard error is that
of the residual Hutchinson term (conditional on the sketch).  Probes are drawn on CPU from ``torch.Generator(seed)``.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from theorylab.curvature.operators import LinearOperator, as_operator
from theorylab.plotting import MEASURED, axes_or_new
from theorylab.progress import bar
from theorylab.provenance import Stopwatch, make_meta
from theorylab.results import Result, result_class

Method = Literal["hutchinson", "hutch++"]
METHODS: tuple[str, ...] = ("hutchinson", "hutch++")
#: probes multiplied at once: at most 32, and at most this many bytes of them
CHUNK_PROBES, CHUNK_BYTES = 32, 256 * 2**20


def rademacher(size: int, count: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    """``count`` Rademacher vectors of length ``size`` as columns, drawn on CPU (+-1 is exact in any dtype).

    The ``(size, count)`` result is the transpose of contiguous rows, the layout in which operators
    multiply a block without copying it.
    """
    signs = torch.randint(0, 2, (count, size), generator=generator, dtype=dtype)  # the draws of any dtype
    return signs.mul_(2).sub_(1).T


@result_class
class TraceEstimate(Result):
    """A trace estimate with its standard error; ``samples`` are the per-probe Hutchinson terms.

    For Hutch++ ``sketch_trace`` is the exact part ``tr(Q^T H Q)`` and ``samples`` the terms of
    the residual, so ``estimate = sketch_trace + mean(samples)``.
    """

    estimate: float
    stderr: float
    num_matvecs: int
    method: str
    num_probes: int
    samples: np.ndarray
    sketch_trace: float

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        count = np.arange(1, len(self.samples) + 1)
        running = self.sketch_trace + np.cumsum(self.samples) / count
        ax.plot(count, running, color=MEASURED, label="running estimate")
        ax.axhspan(self.estimate - self.stderr, self.estimate + self.stderr, color=MEASURED, alpha=0.2,
                   label="estimate +- stderr")
        ax.set(xlabel="Hutchinson probes", ylabel="trace", title=f"trace ({self.method})")
        ax.legend()
        return ax


def _quadratic_forms(op: LinearOperator, probes: Tensor, shown: Any) -> np.ndarray:
    """``z_i^T H z_i`` for the columns of ``probes``, in chunks."""
    chunk = max(1, min(CHUNK_PROBES, CHUNK_BYTES // (op.shape[0] * torch.empty((), dtype=op.dtype).element_size())))
    values = []
    for i in range(0, probes.shape[1], chunk):
        z = probes[:, i:i + chunk].to(device=op.device, dtype=op.dtype)
        # row by row (contiguous), summed pairwise in the operator's precision: its rounding is far
        # below the spread of the samples, and float64 accumulation would cost a tenth of a product
        values.append(torch.linalg.vecdot(z.T, (op @ z).T).to(torch.float64).cpu())
        shown.update(z.shape[1])
    return torch.cat(values).numpy()


def trace(op: LinearOperator | Tensor | np.ndarray, *, num_probes: int = 100, method: Method = "hutchinson",
          seed: int = 0, progress: bool | None = None) -> TraceEstimate:
    """Estimate ``tr(op)`` with ``num_probes`` operator products (Hutchinson or Hutch++).

    Hutchinson needs ``num_probes >= 2`` (for a standard error); Hutch++ ``num_probes >= 6``, split
    into ``s = num_probes // 3`` sketch columns, ``s`` products for ``Q^T H Q`` and
    ``num_probes - 2 s`` residual probes.  Hutchinson multiplies the probes in blocks of at most
    32 (and 256 MB); Hutch++ holds its sketch, ``3 s`` vectors.  ``progress`` shows a bar (products).
    """
    with Stopwatch() as clock:
        op = as_operator(op)
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        minimum = 2 if method == "hutchinson" else 6
        if isinstance(num_probes, bool) or not isinstance(num_probes, (int, np.integer)) or num_probes < minimum:
            raise ValueError(f"num_probes must be an integer >= {minimum} for {method}, got {num_probes!r}")
        size = op.shape[0]
        generator = torch.Generator().manual_seed(int(seed))
        start_matvecs = op.num_matvecs
        with bar(int(num_probes), desc=f"trace ({method})", unit="product", enabled=progress) as shown:
            if method == "hutchinson":
                samples = _quadratic_forms(op, rademacher(size, int(num_probes), generator, op.dtype), shown)
                sketch_trace = 0.0
            else:
                sketch_trace, samples = _hutch_plus_plus(op, int(num_probes), generator, shown)
        estimate = sketch_trace + float(np.mean(samples))
        stderr = float(np.std(samples, ddof=1) / math.sqrt(len(samples)))
    used = op.num_matvecs - start_matvecs
    return TraceEstimate(estimate=estimate, stderr=stderr, num_matvecs=used, method=method,
                         num_probes=int(num_probes), samples=samples, sketch_trace=sketch_trace,
                         meta=make_meta(seed=seed, dtype=op.dtype, device=op.device, wall_time_s=clock.seconds,
                                        num_matvecs=used))


def _hutch_plus_plus(op: LinearOperator, budget: int, generator: torch.Generator,
                     shown: Any) -> tuple[float, np.ndarray]:
    size = op.shape[0]
    sketch_size = budget // 3
    sketch = rademacher(size, sketch_size, generator, op.dtype).to(op.device)
    q, _ = torch.linalg.qr(op @ sketch)  # (P, s) orthonormal basis of range(H S), column-major: rows of q.T
    sketch_trace = float(torch.sum(q * (op @ q), dtype=torch.float64))
    shown.update(2 * sketch_size)
    probes = rademacher(size, budget - 2 * sketch_size, generator, op.dtype).to(op.device)
    residual_probes = probes - q @ (q.T @ probes)
    return sketch_trace, _quadratic_forms(op, residual_probes, shown)
