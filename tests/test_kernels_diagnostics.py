"""Alignment, distance, velocity, spectrum and the linearised model against exact references."""
import numpy as np
import pytest
import torch
from torch import nn

from theorylab.kernels import (KernelSpectrum, KernelVelocity, empirical_ntk, empirical_ntk_blocks, kernel_alignment,
                               kernel_distance, kernel_regression, kernel_spectrum, kernel_velocity, linearized_gd,
                               ntk_monitor)
from theorylab.results import Result
from theorylab.train import train


def _psd(n, seed):
    a = torch.randn(n, n + 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T


def test_alignment_matches_numpy_formula_plain_and_centred():
    k = _psd(6, 0).numpy()
    y = np.random.default_rng(0).normal(size=(6, 2))
    yy = y @ y.T
    plain = (k * yy).sum() / (np.linalg.norm(k) * np.linalg.norm(yy))
    h = np.eye(6) - np.ones((6, 6)) / 6
    kc, yc = h @ k @ h, h @ yy @ h
    centred = (kc * yc).sum() / (np.linalg.norm(kc) * np.linalg.norm(yc))
    assert kernel_alignment(k, y) == pytest.approx(plain, rel=1e-13)
    assert kernel_alignment(torch.tensor(k), torch.tensor(y), center=True) == pytest.approx(centred, rel=1e-13)


def test_alignment_of_the_target_kernel_is_one_and_labels_are_one_hot():
    labels = torch.tensor([0, 2, 1, 0, 2])
    onehot = nn.functional.one_hot(labels).double()
    assert kernel_alignment(onehot @ onehot.T, labels) == pytest.approx(1.0, abs=1e-14)
    assert kernel_alignment(3.0 * onehot @ onehot.T, labels, center=True) == pytest.approx(1.0, abs=1e-14)


def test_kernel_distance_known_values():
    k = _psd(5, 1)
    assert kernel_distance(k, 2.5 * k) == pytest.approx(0.0, abs=1e-14)
    e1, e2 = torch.zeros(5, 5, dtype=torch.float64), torch.zeros(5, 5, dtype=torch.float64)
    e1[0, 0], e2[1, 1] = 1.0, 1.0
    assert kernel_distance(e1, e2) == pytest.approx(1.0, abs=1e-15)
    assert kernel_distance(e1, -e1) == pytest.approx(2.0, abs=1e-15)


def test_kernel_velocity_is_distance_per_step():
    ks = [_psd(4, s) for s in range(3)]
    v = kernel_velocity(ks, [0, 10, 30])
    assert isinstance(v, KernelVelocity)
    np.testing.assert_allclose(v.steps, [5.0, 20.0])
    np.testing.assert_allclose(v.velocity, [kernel_distance(ks[0], ks[1]) / 10, kernel_distance(ks[1], ks[2]) / 20],
                               rtol=1e-14)
    assert v.distance_to_first[0] == pytest.approx(0.0, abs=1e-14)
    assert Result.from_dict(v.to_dict()) == v


def test_kernel_spectrum_against_eigh_and_target_power():
    k = _psd(6, 2)
    y = torch.randn(6, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    spec = kernel_spectrum(k, y)
    assert isinstance(spec, KernelSpectrum)
    vals, vecs = np.linalg.eigh(k.numpy())
    np.testing.assert_allclose(spec.eigenvalues, vals[::-1], rtol=1e-12)
    power = (vecs[:, ::-1].T @ y.numpy()).ravel() ** 2 / float((y ** 2).sum())
    np.testing.assert_allclose(spec.target_power, power, rtol=1e-10, atol=1e-14)
    assert spec.cumulative_power[-1] == pytest.approx(1.0, abs=1e-12)
    assert spec.effective_rank == pytest.approx(vals.sum() ** 2 / (vals ** 2).sum(), rel=1e-12)
    assert Result.from_dict(spec.to_dict()) == spec


def test_diagnostics_reject_bad_input():
    k = _psd(4, 0)
    with pytest.raises(ValueError, match="square"):
        kernel_alignment(torch.zeros(3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="rows"):
        kernel_alignment(k, torch.zeros(5))
    with pytest.raises(ValueError, match="same shape"):
        kernel_distance(k, _psd(3, 0))
    with pytest.raises(ValueError, match="zero matrix"):
        kernel_distance(k, torch.zeros(4, 4))
    with pytest.raises(ValueError, match="reduce the output axes"):
        kernel_alignment(torch.zeros(4, 4, 2, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="strictly increasing"):
        kernel_velocity([k, k], [3, 3])
    with pytest.raises(ValueError, match="symmetric"):
        kernel_spectrum(torch.triu(k))


# ---------------------------------------------------------------------------------------------
# The linearised model: a linear network *is* its linearisation, so GD must match exactly
# ---------------------------------------------------------------------------------------------
def _ntk(model, x1, x2=None, blocks=False):
    """The per-output kernel (N1, N2) or every block (N1, N2, O, O), as a tensor."""
    result = empirical_ntk_blocks(model, x1, x2) if blocks else empirical_ntk(model, x1, x2)
    return torch.from_numpy(result.blocks if blocks else result.kernel)


@pytest.fixture
def regression_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 4, generator=g, dtype=torch.float64)
    y = torch.randn(10, 2, generator=g, dtype=torch.float64)
    x_test = torch.randn(6, 4, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = nn.Linear(4, 2).double()
    return model, x, y, x_test


@pytest.mark.parametrize("blocks", [False, True])
def test_linearized_gd_equals_gd_on_a_linear_model(regression_problem, blocks):
    model, x, y, x_test = regression_problem
    k = _ntk(model, x, blocks=blocks)
    k_star = _ntk(model, x_test, x, blocks=blocks)
    with torch.no_grad():
        f0, f0_test = model(x), model(x_test)
    lr, steps = 0.3, 25
    pred_train, pred_test = linearized_gd(k, k_star, y, lr=lr, steps=steps, f0_train=f0, f0_test=f0_test)
    train(model, nn.MSELoss(), (x, y), steps=steps, lr=lr)
    with torch.no_grad():
        torch.testing.assert_close(pred_train, model(x), rtol=1e-11, atol=1e-11)
        torch.testing.assert_close(pred_test, model(x_test), rtol=1e-11, atol=1e-11)


def test_kernel_regression_is_the_long_time_limit_and_the_closed_form(regression_problem):
    model, x, y, x_test = regression_problem
    x_small = x[:4]                       # 4 points in 4 dimensions + bias: invertible kernel
    k = _ntk(model, x_small)
    k_star = _ntk(model, x_test, x_small)
    limit = kernel_regression(k, k_star, y[:4])
    np.testing.assert_allclose(limit.numpy(), (k_star @ torch.linalg.solve(k, y[:4])).numpy(), rtol=1e-10)
    _, late = linearized_gd(k, k_star, y[:4], lr=0.5, steps=20000)
    torch.testing.assert_close(late, limit, rtol=1e-8, atol=1e-8)
    ridge = kernel_regression(k, k_star, y[:4], ridge=0.1)
    np.testing.assert_allclose(ridge.numpy(), (k_star @ torch.linalg.solve(k + 0.1 * torch.eye(4, dtype=k.dtype), y[:4])).numpy(),
                               rtol=1e-10)


def test_regression_rejects_bad_shapes(regression_problem):
    model, x, y, x_test = regression_problem
    k = _ntk(model, x)
    with pytest.raises(ValueError, match="rows"):
        linearized_gd(k, k[:3], y[:5], lr=0.1, steps=3)
    with pytest.raises(ValueError, match="per-output kernels"):
        kernel_regression(k, k[:, :3], y)
    with pytest.raises(ValueError, match="lr"):
        linearized_gd(k, k, y, lr=-1.0, steps=3)


def test_ntk_monitor_during_training(regression_problem):
    """A linear model's NTK never changes: distance to init is 0 at every step, alignment matches."""
    model, x, y, _ = regression_problem
    run = train(model, nn.MSELoss(), (x, y), steps=6, lr=0.1, monitors=[ntk_monitor(x, y, every=3)])
    np.testing.assert_array_equal(run.monitor_steps["ntk.distance_to_init"], [0, 3, 6])
    np.testing.assert_allclose(run.monitors["ntk.distance_to_init"], 0.0, atol=1e-14)
    np.testing.assert_allclose(run.monitors["ntk.relative_change"], 0.0, atol=1e-14)
    expected = kernel_alignment(empirical_ntk(model, x), y)
    np.testing.assert_allclose(run.monitors["ntk.alignment"], expected, rtol=1e-12)
