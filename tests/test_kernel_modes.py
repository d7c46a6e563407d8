"""Residuals in a kernel's eigenbasis: the linearised network's residual decays exactly as ntk_mode_decay."""
import numpy as np
import pytest
import torch

from theorylab.kernels import linearized_gd, residual_modes
from theorylab.theory import ntk_mode_decay


def test_linearised_gd_residual_decays_mode_by_mode_exactly():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    k = a @ a.T
    y = torch.randn(6, 1, generator=g, dtype=torch.float64)
    f0 = torch.randn(6, 1, generator=g, dtype=torch.float64)
    lr = 0.3 * 6 / (2 * float(torch.linalg.eigvalsh(k).max()))
    steps = np.arange(8)
    residuals = [linearized_gd(k, k, y, lr=lr, steps=int(t), f0_train=f0, f0_test=f0)[0][:, 0] - y[:, 0]
                 for t in steps]
    modes = residual_modes(k, torch.stack(residuals))
    assert np.all(np.diff(modes.eigenvalues) <= 0)
    predicted = modes.coefficients[0] * ntk_mode_decay(modes.eigenvalues, lr=lr, steps=steps, num_samples=6)
    np.testing.assert_allclose(modes.coefficients, predicted, rtol=1e-9, atol=1e-12)


def test_coefficients_of_a_diagonal_kernel_are_the_permuted_residual():
    k = np.diag([1.0, 3.0, 2.0])
    modes = residual_modes(k, np.array([5.0, 7.0, 11.0]))
    np.testing.assert_allclose(modes.eigenvalues, [3.0, 2.0, 1.0])
    np.testing.assert_allclose(np.abs(modes.coefficients[0]), [7.0, 11.0, 5.0])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="symmetric"):
        residual_modes(np.array([[1.0, 2.0], [0.0, 1.0]]), np.zeros(2))
    with pytest.raises(ValueError, match="entries per step"):
        residual_modes(np.eye(2), np.zeros(3))
    with pytest.raises(ValueError, match="lr > 0"):
        ntk_mode_decay(1.0, lr=0.0, steps=1, num_samples=2)
