"""Kernel diagnostics: target alignment, distance, velocity along training, and the eigenspectrum.

* Kernel-target alignment (Cristianini et al. 2001; centred: Cortes, Mohri & Rostamizadeh 2012,
  Definition 4): ``A(K, Y) = <K, Y Y^T>_F / (||K||_F ||Y Y^T||_F)``; the centred version replaces
  ``K`` and ``Y Y^T`` by ``H K H`` and ``H Y Y^T H`` with ``H = I - 1 1^T / N``.
* Kernel distance (Fort et al. 2020, "Deep learning versus kernel learning", Eq. 2):
  ``S(K1, K2) = 1 - <K1, K2>_F / (||K1||_F ||K2||_F)``, in [0, 2]; 0 for proportional kernels.
* Kernel velocity (Fort et al. 2020, Sec. 4): the kernel distance between consecutive
  measurements divided by the number of steps between them.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from theorylab.kernels.empirical import KernelLike, empirical_ntk, kernel_tensor
from theorylab.plotting import axes_or_new
from theorylab.provenance import make_meta
from theorylab.results import Result, result_class
from theorylab.train import Monitor


def _square_kernel(name: str, k: KernelLike) -> Tensor:
    k = kernel_tensor(k).detach().cpu().to(torch.float64)
    if k.dim() == 4:
        raise ValueError(f"{name} has shape {tuple(k.shape)}: reduce the output axes first "
                         "(empirical_ntk(..., reduction='mean'))")
    if k.dim() != 2 or k.shape[0] != k.shape[1] or k.shape[0] == 0:
        raise ValueError(f"{name} must be a square (N, N) kernel matrix, got shape {tuple(k.shape)}")
    if not torch.isfinite(k).all():
        raise ValueError(f"{name} has non-finite entries")
    return k


def _targets(y: Tensor | np.ndarray, n: int) -> Tensor:
    """Targets as an (N, C) float64 matrix: integer class labels become one-hot rows."""
    y = torch.as_tensor(y).detach().cpu()
    if y.shape[:1] != (n,):
        raise ValueError(f"targets must have {n} rows (one per kernel row), got shape {tuple(y.shape)}")
    if not y.is_floating_point():
        if y.dim() != 1 or (y < 0).any():
            raise ValueError("integer targets must be a 1-D tensor of class labels >= 0")
        y = torch.nn.functional.one_hot(y.long()).to(torch.float64)
    y = y.to(torch.float64).reshape(n, -1)
    if not torch.isfinite(y).all():
        raise ValueError("targets have non-finite entries")
    return y


def _center(k: Tensor) -> Tensor:
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def _cosine(a: Tensor, b: Tensor, what: str) -> float:
    na, nb = torch.linalg.norm(a), torch.linalg.norm(b)
    if na == 0 or nb == 0:
        raise ValueError(f"{what} is undefined for a zero matrix")
    return float((a * b).sum() / (na * nb))


def kernel_alignment(kernel: KernelLike, targets: Tensor | np.ndarray, *, center: bool = False) -> float:
    """Kernel-target alignment ``<K, Y Y^T>_F / (||K||_F ||Y Y^T||_F)`` (centred with ``center=True``).

    ``targets`` is (N,) or (N, C) real-valued, or (N,) integer class labels (used one-hot).
    """
    k = _square_kernel("kernel", kernel)
    y = _targets(targets, k.shape[0])
    yy = y @ y.T
    if center:
        k, yy = _center(k), _center(yy)
    return _cosine(k, yy, "alignment")


def kernel_distance(kernel1: KernelLike, kernel2: KernelLike) -> float:
    """Kernel distance ``1 - <K1, K2>_F / (||K1||_F ||K2||_F)`` (Fort et al. 2020)."""
    k1, k2 = _square_kernel("kernel1", kernel1), _square_kernel("kernel2", kernel2)
    if k1.shape != k2.shape:
        raise ValueError(f"kernels must have the same shape, got {tuple(k1.shape)} and {tuple(k2.shape)}")
    return 1.0 - _cosine(k1, k2, "kernel distance")


@result_class
class KernelVelocity(Result):
    """Kernel distance per step between consecutive measurements, at the midpoints ``steps``."""

    steps: np.ndarray
    velocity: np.ndarray
    distance_to_first: np.ndarray

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.plot(self.steps, self.velocity, marker="o", ms=3)
        ax.set(xlabel="step", ylabel="kernel velocity", yscale="log")
        return ax


def kernel_velocity(kernels: Sequence[KernelLike], steps: Sequence[int]) -> KernelVelocity:
    """Kernel velocity ``S(K_t, K_t') / (t' - t)`` between consecutive kernels measured at ``steps``."""
    if len(kernels) != len(steps) or len(kernels) < 2:
        raise ValueError(f"need at least two kernels and one step per kernel, got {len(kernels)} kernels "
                         f"and {len(steps)} steps")
    steps_arr = np.asarray(steps, dtype=np.float64)
    if np.any(np.diff(steps_arr) <= 0):
        raise ValueError("steps must be strictly increasing")
    ks = [_square_kernel(f"kernels[{i}]", k) for i, k in enumerate(kernels)]
    dist = np.array([kernel_distance(a, b) for a, b in zip(ks[:-1], ks[1:])])
    to_first = np.array([kernel_distance(ks[0], k) for k in ks])
    return KernelVelocity(steps=(steps_arr[:-1] + steps_arr[1:]) / 2, velocity=dist / np.diff(steps_arr),
                          distance_to_first=to_first, meta=make_meta(num_kernels=len(ks)))


@result_class
class KernelSpectrum(Result):
    """Eigenvalues of a kernel (descending) and, with targets, the target power per eigenvector.

    ``target_power[i] = ||V_i^T Y||^2 / ||Y||^2`` for eigenvector ``V_i``;
    ``cumulative_power[k]`` is the fraction of the target in the top ``k + 1`` eigenvectors.
    ``effective_rank = (sum lambda)^2 / sum lambda^2`` (participation ratio).
    """

    eigenvalues: np.ndarray
    target_power: np.ndarray | None
    cumulative_power: np.ndarray | None
    effective_rank: float

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        idx = np.arange(1, len(self.eigenvalues) + 1)
        ax.loglog(idx, np.clip(self.eigenvalues, 1e-300, None), label="eigenvalue")
        ax.set(xlabel="index", ylabel="kernel eigenvalue")
        if self.cumulative_power is not None:
            twin = ax.twinx()
            twin.semilogx(idx, self.cumulative_power, color="C1", label="target power (cumulative)")
            twin.set_ylabel("cumulative target power")
        return ax


def kernel_spectrum(kernel: KernelLike, targets: Tensor | np.ndarray | None = None) -> KernelSpectrum:
    """Eigendecomposition of a symmetric kernel; with ``targets``, how the target spreads over eigenvectors."""
    k = _square_kernel("kernel", kernel)
    if not torch.allclose(k, k.T, rtol=1e-6, atol=1e-8 * float(k.abs().max())):
        raise ValueError("kernel must be symmetric")
    values, vectors = torch.linalg.eigh((k + k.T) / 2)
    values, vectors = values.flip(0), vectors.flip(1)
    power = cumulative = None
    if targets is not None:
        y = _targets(targets, k.shape[0])
        total = float((y ** 2).sum())
        if total == 0:
            raise ValueError("targets are all zero")
        power = ((vectors.T @ y) ** 2).sum(1).numpy() / total
        cumulative = np.cumsum(power)
    vals = values.numpy()
    eff = float(vals.sum() ** 2 / (vals ** 2).sum()) if np.any(vals) else 0.0
    return KernelSpectrum(eigenvalues=vals, target_power=power, cumulative_power=cumulative,
                          effective_rank=eff, meta=make_meta(n=k.shape[0]))


def ntk_monitor(x: Tensor, targets: Tensor | None = None, *, every: int = 1, name: str = "ntk",
                params: Any = None, block_size: int | None = None) -> Monitor:
    """A training monitor: NTK alignment and kernel distance to the first measured kernel.

    Every ``every`` steps it computes ``K_t = empirical_ntk(model, x, reduction="mean")`` and reports
    ``distance_to_init = S(K_0, K_t)`` (``K_0``: the kernel at the first call, normally step 0),
    the relative Frobenius change ``||K_t - K_0||_F / ||K_0||_F`` and, with ``targets``, the
    plain and centred kernel-target alignment.
    """
    x = x.detach().clone()
    y = None if targets is None else targets.detach().clone()
    reference: dict[str, Tensor] = {}

    def measure(model: Any, step: int) -> dict[str, float]:
        k = kernel_tensor(empirical_ntk(model, x, params=params, reduction="mean", block_size=block_size)).double()
        k0 = reference.setdefault("k0", k)
        out = {"distance_to_init": kernel_distance(k0, k),
               "relative_change": float(torch.linalg.norm(k - k0) / torch.linalg.norm(k0))}
        if y is not None:
            out["alignment"] = kernel_alignment(k, y)
            out["centered_alignment"] = kernel_alignment(k, y, center=True)
        return out

    return Monitor(name, measure, every=every)
