"""Closed forms of the classifier predictions (Ng & Jordan 2001; Radhakrishnan et al. 2023)."""
import numpy as np
import pytest
from scipy.stats import norm

from theorylab.theory import (linear_rule_error, logistic_asymptotic_error, majority_vote, naive_bayes_asymptotic_error,
                              nearest_neighbour, sample_complexity_growth)


def test_linear_rule_error_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean, cov = np.array([1.0, 0.5, -0.3]), np.array([[1.0, 0.3, 0.0], [0.3, 2.0, 0.1], [0.0, 0.1, 0.5]])
    w, b = np.array([0.7, -0.2, 1.1]), 0.4
    n = 400_000
    y = rng.integers(0, 2, n) * 2 - 1
    x = y[:, None] * mean + rng.multivariate_normal(np.zeros(3), cov, n)
    empirical = float(np.mean(np.sign(x @ w + b) != y))
    assert linear_rule_error(w, b, mean, cov) == pytest.approx(empirical, abs=4 * np.sqrt(0.25 / n))


def test_logistic_limit_is_the_bayes_error_and_naive_bayes_ignores_correlations():
    mean, cov = np.array([1.0, 1.0]), np.array([[1.0, 0.8], [0.8, 1.0]])
    assert logistic_asymptotic_error(mean, cov) == pytest.approx(norm.cdf(-np.sqrt(mean @ np.linalg.solve(cov, mean))))
    # the diagonal rule w = mean (unit variances) errs with Phi(-|mu|^2 / sqrt(mu^T Sigma mu))
    assert naive_bayes_asymptotic_error(mean, cov) == pytest.approx(norm.cdf(-2.0 / np.sqrt(mean @ cov @ mean)))
    diagonal = np.diag([1.0, 4.0])
    assert naive_bayes_asymptotic_error(mean, diagonal) == pytest.approx(logistic_asymptotic_error(mean, diagonal))
    assert sample_complexity_growth(np.array([np.e, 10.0]), "naive_bayes").tolist() == pytest.approx([1.0, np.log(10)])
    with pytest.raises(ValueError, match="classifier must be"):
        sample_complexity_growth(np.array([2.0]), "svm")


def test_majority_vote_and_nearest_neighbour():
    assert majority_vote(np.array([2, 1, 2, 0]), 3, 4).tolist() == [2, 2, 2]
    assert majority_vote(np.array([1, 0]), 1, 2).tolist() == [0]  # ties go to the smallest class
    x_train = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    x_test = np.array([[5.0, 0.1], [-0.2, 3.0], [-1.0, -0.1]])
    assert nearest_neighbour(x_test, x_train, np.array([7, 8, 9])).tolist() == [7, 8, 9]
