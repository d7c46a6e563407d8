"""The training residual in the eigenbasis of a kernel: ``c_i(t) = v_i^T (f_t(X) - Y)``.

In the lazy regime the network trains like its linearisation, whose residual under full-batch GD on the
mean squared error decays mode by mode along the eigenvectors ``v_i`` of the NTK at initialisation
(Jacot, Gabriel & Hongler 2018, "Neural tangent kernel", Sec. 5): :func:`residual_modes` projects a
measured residual history onto those eigenvectors, to be compared with
:func:`theorylab.theory.ntk_mode_decay`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from theorylab.kernels.empirical import KernelLike, kernel_tensor
from theorylab.plotting import axes_or_new
from theorylab.results import Result, result_class


@result_class
class KernelModes(Result):
    """Eigenvalues (descending), eigenvectors (columns) and the residual coefficients
    ``coefficients[t, i] = v_i^T r_t`` of each residual ``r_t`` (one row per recorded step)."""

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    coefficients: np.ndarray

    def plot(self, ax: Any = None, *, modes: int = 5) -> Any:
        ax = axes_or_new(ax)
        for i in range(min(modes, self.eigenvalues.size)):
            ax.semilogy(np.abs(self.coefficients[:, i]), label=rf"$\lambda_{i + 1} = {self.eigenvalues[i]:.3g}$")
        ax.set(xlabel="recorded step", ylabel=r"$|v_i^\top r_t|$")
        ax.legend()
        return ax


def residual_modes(kernel: KernelLike, residuals: Any) -> KernelModes:
    """Project residuals ``(T, n)`` (or one residual ``(n,)``) onto the eigenvectors of the symmetric ``(n, n)``
    kernel, largest eigenvalue first."""
    k = kernel_tensor(kernel).detach().to(torch.float64).cpu()
    if k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"kernel must be a square (n, n) matrix, got shape {tuple(k.shape)}")
    if not torch.allclose(k, k.T, rtol=1e-6, atol=1e-8 * float(k.abs().max())):
        raise ValueError("kernel must be symmetric")
    r = np.atleast_2d(np.asarray(torch.as_tensor(residuals).detach().cpu(), dtype=np.float64))
    if r.shape[1] != k.shape[0]:
        raise ValueError(f"residuals have {r.shape[1]} entries per step but the kernel is {k.shape[0]} x {k.shape[0]}")
    values, vectors = torch.linalg.eigh((k + k.T) / 2)
    values, vectors = values.flip(0).numpy(), vectors.flip(1).numpy()
    return KernelModes(eigenvalues=values, eigenvectors=vectors, coefficients=r @ vectors)
