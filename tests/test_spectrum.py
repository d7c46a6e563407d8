"""SLQ spectral density against the dense spectrum: exact quadrature moments, Wasserstein-1 convergence."""
import numpy as np
import pytest
import scipy.stats
import torch
from symmetric_matrices import symmetric_matrix

from theorylab.curvature import SpectralDensity, spectral_density, trace
from theorylab.results import Result


def _probes(size, count, seed):
    """The Rademacher probes of seed ``seed``: rows of torch.randint(0, 2) from a CPU generator, as +-1."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (count, size), generator=g, dtype=torch.int8).to(torch.float64) * 2 - 1


def test_gauss_quadrature_reproduces_the_probe_moments():
    """sum_j tau_j theta_j^p = v^T A^p v / v^T v for p <= 2m - 1 (Gauss quadrature, Golub & Meurant 2010)."""
    a = symmetric_matrix(np.linspace(-1.0, 1.5, 80), seed=1)
    m = 6
    result = spectral_density(a, num_steps=m, num_probes=3, seed=7)
    assert result.nodes.shape == result.weights.shape == (3, m)
    np.testing.assert_allclose(result.weights.sum(axis=1), 1.0, atol=1e-14)
    for i, v in enumerate(_probes(80, 3, seed=7)):
        power = v.clone()
        for p in range(2 * m):
            exact = float(v @ power) / float(v @ v)
            assert abs(float(np.sum(result.weights[i] * result.nodes[i] ** p)) - exact) < 1e-11
            power = a @ power


def test_full_length_quadrature_is_the_eigendecomposition():
    eigenvalues = np.linspace(-2.0, 3.0, 25)
    a = symmetric_matrix(eigenvalues, seed=2)
    result = spectral_density(a, num_steps=25, num_probes=2, seed=0)
    _, vectors = torch.linalg.eigh(a)
    for i, v in enumerate(_probes(25, 2, seed=0)):
        np.testing.assert_allclose(result.nodes[i], eigenvalues, atol=1e-10)
        np.testing.assert_allclose(result.weights[i], ((vectors.T @ v) ** 2 / 25).numpy(), atol=1e-10)
    assert result.ritz_min == pytest.approx(-2.0, abs=1e-10) and result.ritz_max == pytest.approx(3.0, abs=1e-10)


def test_wasserstein_distance_to_the_spectrum_shrinks_with_steps_and_probes():
    g = np.random.default_rng(0)
    eigenvalues = np.concatenate([g.gamma(2.0, 0.1, 290), [3.0, 4.0, 6.0] * 1, g.normal(-0.3, 0.05, 7)])
    a = symmetric_matrix(eigenvalues, seed=3)

    def w1(steps, probes):
        distances = []
        for seed in range(4):
            nodes, weights = spectral_density(a, num_steps=steps, num_probes=probes, seed=seed).measure()
            distances.append(scipy.stats.wasserstein_distance(nodes, eigenvalues, weights))
        return np.mean(distances)

    by_steps = [w1(steps, 8) for steps in (3, 10, 40)]
    by_probes = [w1(40, probes) for probes in (1, 4, 16)]
    assert by_steps[0] > by_steps[1] > by_steps[2]
    assert by_probes[0] > by_probes[1] > by_probes[2]
    assert by_probes[2] < 0.02 * (eigenvalues.max() - eigenvalues.min())


def test_trace_from_the_quadrature_is_hutchinson_with_the_same_probes():
    a = symmetric_matrix(np.linspace(-1.0, 2.0, 40), seed=4)
    result = spectral_density(a, num_steps=8, num_probes=5, seed=11)
    assert result.trace_estimate == pytest.approx(trace(a, num_probes=5, seed=11).estimate, rel=1e-12)
    assert result.num_matvecs == 40


def test_breakdown_pads_with_zero_weights_and_density_integrates_to_one():
    a = symmetric_matrix(np.repeat([-1.0, 0.5, 2.0], 10), seed=5)
    result = spectral_density(a, num_steps=8, num_probes=2, seed=0)
    np.testing.assert_allclose(np.sort(result.nodes[:, :3], axis=1), [[-1.0, 0.5, 2.0]] * 2, atol=1e-12)
    assert np.all(result.weights[:, 3:] == 0.0)
    np.testing.assert_allclose(result.weights.sum(axis=1), 1.0, atol=1e-14)
    grid = np.linspace(-3, 4, 20001)
    density = result.density(grid, sigma=0.05)
    assert abs(np.trapezoid(density, grid) - 1.0) < 1e-6
    # per node a Gaussian of width sigma: the peak height at 0.5 is weight / (sigma sqrt(2 pi))
    expected_peak = result.weights[np.isclose(result.nodes, 0.5)].sum() / 2 / (0.05 * np.sqrt(2 * np.pi))
    assert result.density(np.array([0.5]), sigma=0.05)[0] == pytest.approx(expected_peak, rel=1e-6)


def test_result_round_trip_plot_and_bad_input():
    a = symmetric_matrix(np.linspace(0, 1, 15))
    result = spectral_density(a, num_steps=5, num_probes=2)
    assert isinstance(Result.from_dict(result.to_dict()), SpectralDensity)
    assert Result.from_dict(result.to_dict()) == result and result.plot() is not None
    assert result.default_sigma == pytest.approx(0.01 * (result.ritz_max - result.ritz_min))
    with pytest.raises(ValueError, match="num_steps"):
        spectral_density(a, num_steps=0)
    with pytest.raises(ValueError, match="num_probes"):
        spectral_density(a, num_probes=0)
    with pytest.raises(ValueError, match="sigma"):
        result.density(np.zeros(3), sigma=0.0)
    with pytest.raises(ValueError, match="not symmetric"):
        spectral_density(torch.triu(torch.ones(3, 3)))
