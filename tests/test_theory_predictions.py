"""The predictions the claims use, against exact references."""
import numpy as np
import pytest
import scipy.optimize

from theorylab.theory import (critical_batch_size, imbalanced_ufm_norms, interpolation_threshold,
                              ridgeless_finite_size_correction, ridgeless_risk, ridgeless_risk_finite,
                              steps_to_target, ufm_global_objective)


@pytest.mark.parametrize("n, p", [(200, 100), (100, 95), (50, 100), (40, 200)])
def test_finite_size_correction_is_the_gap_between_the_exact_risk_and_its_limit(n, p):
    gap = ridgeless_risk_finite(n, p, noise=0.25) - float(ridgeless_risk(p / n, noise=0.25))
    assert ridgeless_finite_size_correction(n, p, noise=0.25) == pytest.approx(gap, rel=1e-12)


def test_global_objective_at_depth_one_is_that_of_the_closed_form_norms():
    counts, lam = np.array([40, 20, 10, 5]), 5e-3
    w, h = imbalanced_ufm_norms(counts, lambda_w=lam, lambda_h=lam)
    n = counts.sum()
    closed = np.sum(counts / (2 * n) * (w * h - 1) ** 2 + lam * w ** 2 / 2 + lam * counts * h ** 2 / 2)
    assert ufm_global_objective(counts, depth=1, lambda_w=lam, lambda_h=lam) == pytest.approx(closed, rel=1e-9)


def test_global_objective_of_one_class_by_brute_force():
    """Depth 3, one class of two: a dense grid over (w, h) gives the same minimum."""
    counts, lam, depth = np.array([30, 30]), 1e-2, 3
    n_k, n = 30, 60
    w, h = np.meshgrid(np.linspace(0, 3, 1501), np.linspace(0, 3, 1501))
    f = n_k / (2 * n) * (w ** depth * h - 1) ** 2 + lam * depth * w ** 2 / 2 + lam * n_k * h ** 2 / 2
    i = np.unravel_index(np.argmin(f), f.shape)
    polished = scipy.optimize.minimize(lambda z: n_k / (2 * n) * (z[0] ** depth * z[1] - 1) ** 2 + lam * depth
                                       * z[0] ** 2 / 2 + lam * n_k * z[1] ** 2 / 2, [w[i], h[i]]).fun
    assert ufm_global_objective(counts, depth=depth, lambda_w=lam, lambda_h=lam) == pytest.approx(2 * polished,
                                                                                                 rel=1e-8)


def test_critical_batch_size_model():
    noise = np.array([50.0, 150.0, 100.0])
    assert critical_batch_size(noise) == pytest.approx(100.0)
    b = np.array([1.0, 100.0, 1e6])
    np.testing.assert_allclose(steps_to_target(b, s_min=10.0, b_crit=100.0), [1010.0, 20.0, 10.001])
    with pytest.raises(ValueError):
        critical_batch_size(np.array([]))


def test_interpolation_threshold():
    assert interpolation_threshold([32, 8, 16], [0.0, 0.3, 0.005], tol=0.01) == 16
    assert np.isnan(interpolation_threshold([8, 16], [0.3, 0.2], tol=0.01))
