"""Mutual-information estimators against jointly Gaussian closed forms and their known biases."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal, norm
from torch import nn

from theorylab.information import (bin_activity, binned_information, discrete_mutual_information, information_plane,
                                   kde_information, plugin_entropy)


def _gaussian_pair(rho, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n)
    return a, rho * a + math.sqrt(1 - rho ** 2) * rng.standard_normal(n)


def _exact_binned_mi(rho, edges):
    """I(A_b; B_b) in bits of a standard bivariate normal with correlation rho, from the cell probabilities."""
    cdf = multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf
    grid = np.array([[cdf([x, y]) for y in edges] for x in edges])
    cells = np.diff(np.diff(grid, axis=0), axis=1)
    marginal = np.diff(norm.cdf(edges))
    mask = cells > 1e-15
    return float((cells[mask] * np.log2(cells[mask] / np.outer(marginal, marginal)[mask])).sum())


def test_plugin_entropy_of_uniform_and_degenerate_samples():
    assert plugin_entropy(np.arange(64) % 8) == pytest.approx(3.0)
    assert plugin_entropy(np.zeros(10)) == 0.0


def test_binning_is_below_the_closed_form_and_the_plugin_bias_is_miller_madow():
    rho, n = 0.8, 200_000
    closed = -0.5 * math.log2(1 - rho ** 2)
    edges = np.concatenate([[-np.inf], np.linspace(-3, 3, 9), [np.inf]])  # 10 cells per axis
    exact = _exact_binned_mi(rho, edges)
    assert exact < closed  # data processing: binning loses information
    finer = _exact_binned_mi(rho, np.concatenate([[-np.inf], np.linspace(-3.5, 3.5, 21), [np.inf]]))
    assert exact < finer < closed
    estimates = []
    for seed in range(5):
        a, b = _gaussian_pair(rho, n, seed)
        cut = lambda v: np.digitize(v, edges[1:-1])  # noqa: E731
        estimates.append(discrete_mutual_information(cut(a), cut(b)))
    bias = (10 - 1) ** 2 / (2 * n * math.log(2))  # Miller-Madow, all 10 x 10 cells occupied
    mean, se = np.mean(estimates), np.std(estimates, ddof=1) / math.sqrt(5)
    assert abs(mean - (exact + bias)) < 4 * se + 0.1 * bias


def test_bins_over_a_stated_range_and_the_observed_one():
    t = np.array([[-1.0, 0.0], [0.99, 1.0], [-0.5, 2.0]])
    assert bin_activity(t, bins=4, value_range=(-1, 1)).tolist() == [[0, 2], [3, 3], [1, 3]]
    assert bin_activity(t, bins=3).tolist() == [[0, 1], [1, 2], [0, 2]]
    with pytest.raises(ValueError, match="bins must be"):
        bin_activity(t, bins=0)


def test_binned_information_of_a_code_that_keeps_the_label_only():
    x = np.arange(16)
    y = x % 2
    t = np.stack([y * 0.9, -y * 0.9], 1)  # two bins occupied, one per class
    info_x, info_y = binned_information(t, y, bins=30, value_range=(-1, 1))
    assert info_x == pytest.approx(1.0) and info_y == pytest.approx(1.0)
    info_x, info_y = binned_information(x[:, None] / 16.0, y, bins=16, value_range=(0, 1))  # injective
    assert info_x == pytest.approx(4.0) and info_y == pytest.approx(1.0)


@pytest.mark.parametrize("d, r", [(1, 1.0), (2, 4.0)])
def test_kde_bounds_sandwich_the_gaussian_channel_and_reach_their_limits(d, r):
    """h ~ N(0, s^2 I_d), noise sigma^2 = s^2 / r: I = (d/2) ln(1 + r); the pairwise bounds tend to
    (d/2)[ln(1 + r/4) + r/(4 + r)] and (d/2)[ln(1 + r) + r/(1 + r)] (module docstring)."""
    n, noise = 3000, 0.1
    h = torch.randn(n, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64) * math.sqrt(r * noise)
    upper, _ = kde_information(h, noise_var=noise, bound="upper")
    lower, _ = kde_information(h, noise_var=noise, bound="lower")
    exact = d / 2 * math.log(1 + r) / math.log(2)
    upper_limit = d / 2 * (math.log(1 + r) + r / (1 + r)) / math.log(2)
    lower_limit = d / 2 * (math.log(1 + r / 4) + r / (4 + r)) / math.log(2)
    assert lower < exact < upper
    # finite-N error: the self term 1/N and the sampling error of the mean over i, O(N^-1/2)
    assert upper == pytest.approx(upper_limit, abs=6 * d / math.sqrt(n))
    assert lower == pytest.approx(lower_limit, abs=6 * d / math.sqrt(n))


def test_kde_information_with_labels_is_at_most_the_label_entropy():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 4
    h = torch.nn.functional.one_hot(y, 4).double() * 5 + 0.01 * torch.randn(400, 4, generator=g, dtype=torch.float64)
    info_x, info_y = kde_information(h, y, noise_var=0.1)
    assert info_y == pytest.approx(2.0, abs=1e-3) and info_x == pytest.approx(2.0, abs=1e-2)


def test_information_plane_of_a_network_layer():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.tensor([[a, b, c] for a in (0.0, 1.0) for b in (0.0, 1.0) for c in (0.0, 1.0)], dtype=torch.float64)
    y = (x.sum(1) > 1).long()
    plane = information_plane(model, (x, y), layers=["1"], bins=30, value_range=(-1, 1))
    expected = binned_information(torch.tanh(model[0](x)).detach(), y, bins=30, value_range=(-1, 1))
    assert plane.info_x == [pytest.approx(expected[0])] and plane.info_y == [pytest.approx(expected[1])]
    assert plane.entropy_x == 3.0 and plane.entropy_y == pytest.approx(1.0)
    with pytest.raises(ValueError, match="estimator must be"):
        information_plane(model, (x, y), layers=["1"], estimator="knn")
