"""Spectral bias of wide networks in the kernel regime (Jacot, Gabriel & Hongler 2018, "Neural tangent kernel:
convergence and generalization in neural networks", NeurIPS, Sec. 5).

In the infinite-width limit the NTK ``Theta`` stays at its initial value, and gradient descent on the squared
error moves the training residual ``r_t = f_t(X) - Y`` by ``dr/dt = -eta Theta r`` (for the loss scaled to
gradient ``Theta r``): its component along the ``i``-th eigenvector of the kernel decays as
``exp(-eta lambda_i t)``, so the modes are learned in the order of their eigenvalues (the basis of early
stopping).  For full-batch GD on ``torch.nn.MSELoss`` (mean over ``n`` samples and ``O`` outputs) the update of
the linearised network is exactly ``r_{t+1} = (I - (2 eta / (n O)) Theta) r_t``.
"""
from __future__ import annotations

import numpy as np


def ntk_mode_decay(eigenvalues: float | np.ndarray, *, lr: float, steps: int | np.ndarray, num_samples: int,
                   num_outputs: int = 1) -> np.ndarray:
    """``(1 - 2 lr lambda / (n O))^t``: the factor by which the residual's component along an NTK eigenvector
    (eigenvalue ``lambda``) shrinks in ``t`` full-batch GD steps on the mean squared error, for the
    linearised network (``steps`` may be an array: the result has shape ``steps.shape + eigenvalues.shape``)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    t = np.asarray(steps, dtype=np.float64)
    if not lr > 0 or num_samples < 1 or num_outputs < 1 or np.any(t < 0):
        raise ValueError("need lr > 0, num_samples >= 1, num_outputs >= 1 and steps >= 0")
    factor = 1.0 - 2.0 * lr * lam / (num_samples * num_outputs)
    return factor ** t.reshape(t.shape + (1,) * lam.ndim)
