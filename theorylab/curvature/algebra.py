"""Operator algebra: sums, scalar multiples, shifts and parameter blocks of lazy operators.

Every operator here is again a :class:`~theorylab.curvature.operators.LinearOperator` (``@``,
``to_dense``, ``to_scipy``, accepted by every estimator), built without forming a matrix:

* ``A + B`` and ``A - B``: :class:`SumOperator`, ``(A + B) v = A v + B v``;
* ``c * A``, ``A / c``, ``-A``: :class:`ScaledOperator`, ``(c A) v = c (A v)``;
* :func:`identity` and :func:`shift`: ``A - sigma I`` (spectral transformations, damping
  ``H + lambda I``);
* :func:`restrict`: the sub-matrix ``A[S, S] = E_S^T A E_S`` of the rows and columns ``S`` of a
  parameter block (by parameter names for curvature operators, or by indices), ``E_S`` the
  columns of the identity in ``S``: products embed a block vector in zeros, multiply, and read
  the block back.  The block of the full Hessian is the Hessian of the block (the same matrix as
  ``hessian(..., params=block)``, at the cost of full-size products).

Operands must agree in size, dtype and device (a clear error otherwise).
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from theorylab.curvature.operators import CurvatureOperator, LinearOperator


def is_scalar(value: Any) -> bool:
    """A real Python/NumPy number or a one-element tensor (not a bool)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, Tensor):
        return value.numel() == 1 and not value.is_complex()
    return isinstance(value, numbers.Real)


def _check_compatible(ops: Sequence[LinearOperator]) -> None:
    first = ops[0]
    for op in ops[1:]:
        if op.shape != first.shape:
            raise ValueError(f"operators of different shapes cannot be added: {first.shape} and {op.shape}")
        if op.dtype != first.dtype or op.device != first.device:
            raise ValueError(f"operators must share dtype and device: {first.dtype} on {first.device} and "
                             f"{op.dtype} on {op.device}")


class SumOperator(LinearOperator):
    """``sum_i A_i``: one product of each term per product."""

    def __init__(self, terms: Sequence[LinearOperator]):
        flat: list[LinearOperator] = []
        for term in terms:
            if not isinstance(term, LinearOperator):
                raise ValueError(f"can only add LinearOperators, got {type(term).__name__}")
            flat += term.terms if isinstance(term, SumOperator) else [term]
        _check_compatible(flat)
        super().__init__(flat[0].shape[0], flat[0].dtype, flat[0].device)
        self.terms = flat

    def _matmat(self, vectors: Tensor) -> Tensor:
        total = self.terms[0] @ vectors
        for term in self.terms[1:]:
            total = total + term @ vectors
        return total

    def __repr__(self) -> str:
        return " + ".join(repr(t) for t in self.terms)


class ScaledOperator(LinearOperator):
    """``c A`` for a real scalar ``c``."""

    def __init__(self, op: LinearOperator, scalar: Any):
        if not is_scalar(scalar):
            raise ValueError(f"an operator can only be multiplied by a real scalar, got {type(scalar).__name__}")
        scalar = float(scalar)
        if not np.isfinite(scalar):
            raise ValueError(f"the scalar must be finite, got {scalar}")
        if isinstance(op, ScaledOperator):  # c (d A) = (c d) A
            op, scalar = op.op, scalar * op.scalar
        super().__init__(op.shape[0], op.dtype, op.device)
        self.op, self.scalar = op, scalar

    def _matmat(self, vectors: Tensor) -> Tensor:
        return self.scalar * (self.op @ vectors)

    def __repr__(self) -> str:
        return f"{self.scalar:g} * {self.op!r}"


class IdentityOperator(LinearOperator):
    """The identity ``I`` of size ``P``."""

    def _matmat(self, vectors: Tensor) -> Tensor:
        return vectors.clone()


def identity(like: LinearOperator) -> IdentityOperator:
    """The identity with the size, dtype and device of ``like``."""
    return IdentityOperator(like.shape[0], like.dtype, like.device)


def shift(op: LinearOperator, sigma: float) -> LinearOperator:
    """``op - sigma I`` (use a negative ``sigma`` for the damped ``op + |sigma| I``)."""
    if not is_scalar(sigma):
        raise ValueError(f"sigma must be a real number, got {type(sigma).__name__}")
    return op - float(sigma) * identity(op)


class SubmatrixOperator(LinearOperator):
    """``A[S, S]`` for the sorted, distinct indices ``S`` (see :func:`restrict`)."""

    def __init__(self, op: LinearOperator, indices: Tensor, names: list[str] | None = None):
        super().__init__(len(indices), op.dtype, op.device)
        self.op, self.indices = op, indices.to(op.device)
        self.param_names = names

    def _matmat(self, vectors: Tensor) -> Tensor:
        full = torch.zeros(self.op.shape[0], vectors.shape[1], dtype=self.dtype, device=self.device)
        full[self.indices] = vectors
        return (self.op @ full)[self.indices]

    def __repr__(self) -> str:
        return f"{self.op!r}[{len(self.indices)} of {self.op.shape[0]} rows and columns]"


def parameter_indices(op: CurvatureOperator, params: str | Sequence[str]) -> tuple[Tensor, list[str]]:
    """The flat indices of the parameters ``params`` (names, module prefixes or globs) in ``op``."""
    import fnmatch

    items = [params] if isinstance(params, str) else list(params)
    if not items or not all(isinstance(i, str) for i in items):
        raise ValueError("params must be a parameter name, module prefix or glob, or a non-empty list of them")
    offsets, start = {}, 0
    for name in op.param_names:
        size = int(np.prod(op.param_shapes[name]))
        offsets[name] = (start, start + size)
        start += size
    chosen: list[str] = []
    for item in items:
        hits = [n for n in op.param_names if n == item or n.startswith(item + ".") or fnmatch.fnmatchcase(n, item)]
        if not hits:
            raise ValueError(f"params={item!r} matched none of the operator's parameters {op.param_names}")
        chosen += [n for n in hits if n not in chosen]
    chosen = [n for n in op.param_names if n in chosen]  # the operator's order
    index = torch.cat([torch.arange(*offsets[n]) for n in chosen])
    return index, chosen


def restrict(op: LinearOperator, block: str | Sequence[str] | Tensor | np.ndarray) -> SubmatrixOperator:
    """The sub-matrix of ``op`` on a parameter block.

    ``block``: parameter names, module prefixes or glob patterns (for operators over named
    parameters: :func:`~theorylab.curvature.hessian`, :func:`~theorylab.curvature.ggn`, the Fisher
    and K-FAC operators), or integer indices into the flat parameter vector.  The result's rows
    follow the order of the operator (not of ``block``); ``param_names`` lists the block's
    parameters when names were given.
    """
    if isinstance(block, (str, list, tuple)) and all(isinstance(b, str) for b in ([block] if isinstance(block, str)
                                                                                 else block)):
        if not isinstance(op, CurvatureOperator):
            raise ValueError(f"a {type(op).__name__} has no parameter names; pass integer indices")
        index, names = parameter_indices(op, block)
        return SubmatrixOperator(op, index, names)
    index = torch.as_tensor(np.asarray(block))
    if index.dim() != 1 or index.numel() == 0 or index.is_floating_point() or index.dtype == torch.bool:
        raise ValueError("indices must be a non-empty one-dimensional array of integers")
    index = index.long()
    if int(index.min()) < 0 or int(index.max()) >= op.shape[0]:
        raise ValueError(f"indices must lie in [0, {op.shape[0]}), got range [{int(index.min())}, {int(index.max())}]")
    if len(torch.unique(index)) != len(index):
        raise ValueError("indices must be distinct")
    return SubmatrixOperator(op, torch.sort(index).values)
