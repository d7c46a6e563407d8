"""Spectra against Marchenko-Pastur: white matrices fit, planted spikes become outliers."""
import math

import numpy as np
import pytest
import torch

from theorylab.spectra import MPFit, mp_fit, tracy_widom_threshold
from theorylab.theory import mp_edges, spiked_outlier


@pytest.mark.parametrize("n,p", [(600, 200), (200, 600), (300, 300)])
def test_white_matrix_fits_with_no_outliers(n, p):
    x = 1.7 * np.random.default_rng(n + p).standard_normal((n, p))
    fit = mp_fit(x)
    # the variance estimate is an average of n p squared entries: relative error ~ sqrt(2/(n p))
    assert fit.sigma2 == pytest.approx(1.7 ** 2, rel=6 * math.sqrt(2 / (n * p)))
    assert fit.outliers.size == 0
    assert fit.ks_distance < 0.03  # eigenvalue ECDFs converge at ~1/min(n, p)
    assert fit.eigenvalues.size == p and fit.gamma == p / n
    assert fit.edges == pytest.approx(mp_edges(p / n, sigma2=fit.sigma2))


def test_tracy_widom_threshold_exceeded_about_one_percent_of_the_time():
    rng = np.random.default_rng(0)
    n, p = 200, 100
    tops = [np.linalg.eigvalsh((lambda x: x.T @ x / n)(rng.standard_normal((n, p))))[-1] for _ in range(400)]
    frac = np.mean(np.array(tops) > tracy_widom_threshold(n, p))
    assert frac < 0.04  # 1% nominal; binomial sd at 400 draws is 0.5%, TW approximation at n = 200


def test_planted_spike_is_an_outlier_at_the_bbp_location():
    rng = np.random.default_rng(3)
    n, p, theta = 2000, 400, 3.0
    x = rng.standard_normal((n, p))
    x[:, 5] *= math.sqrt(1 + theta)
    fit = mp_fit(torch.as_tensor(x), sigma2=1.0)
    assert fit.outliers.size == 1
    assert fit.outliers[0] == pytest.approx(spiked_outlier(theta, p / n), rel=0.05)  # O(n^-1/2) fluctuation
    # with an estimated variance the spike is still found, and the bulk variance is not inflated by it
    est = mp_fit(x)
    assert est.outliers.size == 1 and est.sigma2 == pytest.approx(1.0, rel=0.02)


def test_centering_removes_the_mean_outlier():
    x = np.random.default_rng(4).standard_normal((500, 100)) + 2.0
    assert mp_fit(x).outliers.size >= 1
    assert mp_fit(x, center=True).outliers.size == 0


def test_round_trip_and_plot(tmp_path):
    fit = mp_fit(np.random.default_rng(5).standard_normal((300, 100)))
    assert MPFit.load(fit.save(tmp_path / "fit.json")) == fit
    assert fit.plot() is not None


@pytest.mark.parametrize("matrix,kwargs,match", [
    (np.ones(5), {}, "2-d matrix"),
    (np.full((4, 4), np.nan), {}, "NaN"),
    (np.zeros((10, 5)), {}, "zero"),
    (np.ones((10, 5)), {"sigma2": -1.0}, "sigma2"),
])
def test_bad_input(matrix, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mp_fit(matrix, **kwargs)
