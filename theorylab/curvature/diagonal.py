"""The diagonal of a symmetric operator: exact, or estimated by Hutchinson's method with standard errors.

For Rademacher probes ``z`` (entries +-1), ``E[z * (A z)] = diag(A)`` entry by entry, since
``(z * A z)_i = A_ii + sum_{j != i} A_ij z_i z_j`` (Bekas, Kokiopoulou & Saad 2007, "An estimator for
the diagonal of a matrix").  With ``m`` probes the estimate of ``A_ii`` is the sample mean of
``z_i (A z)_i``; its variance is ``sum_{j != i} A_ij^2 / m``, so the error shrinks like
``m^{-1/2}``; the reported standard error of each entry is the sample standard deviation over
``sqrt(m)``.  The exact diagonal takes ``P`` products with unit vectors (small operators), nothing
for operators that know their diagonal (dense matrices, K-FAC: ``diag(G (x) A) = diag(G) (x)
diag(A)``).  Probes are drawn on the CPU from ``seed``; memory is ``O(P)`` beyond one chunk of
probes.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from theorylab.curvature.operators import CurvatureOperator, DenseOperator, LinearOperator, as_operator
from theorylab.curvature.trace import rademacher
from theorylab.plotting import MEASURED, axes_or_new
from theorylab.provenance import Stopwatch, make_meta
from theorylab.results import Result, result_class

Method = Literal["exact", "hutchinson"]
METHODS: tuple[str, ...] = ("exact", "hutchinson")
CHUNK = 32  # vectors multiplied at once (memory P * CHUNK)


def unit_products(op: LinearOperator, chunk: int = 256) -> Iterator[tuple[int, Tensor]]:
    """``(start, op @ [e_start .. e_{start+c-1}])`` over all columns of the identity, ``chunk`` at a time."""
    size = op.shape[0]
    for start in range(0, size, chunk):
        stop = min(start + chunk, size)
        units = torch.zeros(size, stop - start, dtype=op.dtype, device=op.device)
        units[torch.arange(start, stop), torch.arange(stop - start)] = 1
        yield start, op @ units


def check_probes(num_probes: Any, minimum: int = 2) -> int:
    if isinstance(num_probes, bool) or not isinstance(num_probes, (int, np.integer)) or num_probes < minimum:
        raise ValueError(f"num_probes must be an integer >= {minimum}, got {num_probes!r}")
    return int(num_probes)


@result_class
class DiagonalEstimate(Result):
    """``values[i]`` estimates ``A_ii`` with standard error ``stderr[i]`` (0 for the exact diagonal).

    ``param_names``/``param_shapes`` describe the flat layout for operators over named parameters;
    :meth:`per_parameter` splits the diagonal accordingly.
    """

    values: np.ndarray
    stderr: np.ndarray
    method: str
    num_probes: int
    num_matvecs: int
    param_names: list[str] | None = None
    param_shapes: list[list[int]] | None = None

    def per_parameter(self) -> dict[str, np.ndarray]:
        """The diagonal as ``{parameter name: array of the parameter's shape}``."""
        if self.param_names is None or self.param_shapes is None:
            raise ValueError("this diagonal is of an operator without parameter names")
        sizes = [math.prod(s) for s in self.param_shapes]
        pieces = np.split(self.values, np.cumsum(sizes)[:-1])
        return {n: p.reshape(s) for n, p, s in zip(self.param_names, pieces, self.param_shapes)}

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        index = np.arange(len(self.values))
        ax.plot(index, self.values, ".", color=MEASURED, markersize=2, label=f"diagonal ({self.method})")
        if self.method == "hutchinson":
            ax.fill_between(index, self.values - self.stderr, self.values + self.stderr, color=MEASURED, alpha=0.2,
                            label="+- stderr")
        ax.set(xlabel="parameter index", ylabel="diagonal entry", title=f"diagonal ({self.num_matvecs} products)")
        ax.legend()
        return ax


def _exact(op: LinearOperator) -> Tensor:
    if isinstance(op, DenseOperator):
        return torch.diagonal(op.matrix)
    if hasattr(op, "exact_diagonal"):
        return op.exact_diagonal()
    values = torch.empty(op.shape[0], dtype=op.dtype, device=op.device)
    for start, block in unit_products(op):
        values[start:start + block.shape[1]] = torch.diagonal(block[start:start + block.shape[1]])
    return values


def _hutchinson(op: LinearOperator, num_probes: int, seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(int(seed))
    total = torch.zeros(op.shape[0], dtype=torch.float64)
    squares = torch.zeros(op.shape[0], dtype=torch.float64)
    for start in range(0, num_probes, CHUNK):
        z = rademacher(op.shape[0], min(CHUNK, num_probes - start), generator, op.dtype).to(op.device)
        samples = (z * (op @ z)).to(torch.float64).cpu()  # (P, chunk): z_i (A z)_i
        total += samples.sum(dim=1)
        squares += (samples ** 2).sum(dim=1)
    mean = total / num_probes
    variance = (squares - num_probes * mean ** 2).clamp_min(0) / (num_probes - 1)
    return mean, (variance / num_probes).sqrt()


def diagonal(op: LinearOperator | Tensor | np.ndarray, *, method: Method = "exact", num_probes: int = 100,
             seed: int = 0) -> DiagonalEstimate:
    """The diagonal of a symmetric operator: ``method="exact"`` (see the module docstring) or
    ``"hutchinson"`` with ``num_probes`` Rademacher probes (``num_probes >= 2``, for standard errors)."""
    with Stopwatch() as clock:
        op = as_operator(op)
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        start_matvecs = op.num_matvecs
        if method == "exact":
            values = _exact(op).detach().to(torch.float64).cpu()
            stderr, probes = torch.zeros_like(values), 0
        else:
            probes = check_probes(num_probes)
            values, stderr = _hutchinson(op, probes, seed)
    used = op.num_matvecs - start_matvecs
    named = isinstance(op, CurvatureOperator)
    return DiagonalEstimate(values=values.numpy(), stderr=stderr.numpy(), method=method, num_probes=probes,
                            num_matvecs=used, param_names=list(op.param_names) if named else None,
                            param_shapes=[list(op.param_shapes[n]) for n in op.param_names] if named else None,
                            meta=make_meta(seed=seed, dtype=op.dtype, device=op.device, wall_time_s=clock.seconds,
                                           num_matvecs=used))
