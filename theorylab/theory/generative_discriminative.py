"""Generative against discriminative linear classifiers on two Gaussian classes (Ng & Jordan 2001, "On
discriminative vs. generative classifiers: a comparison of logistic regression and naive Bayes", NIPS;
Zheng, Wang, Sun & Zhu 2023, "Revisiting discriminative vs. generative classifiers: theory and
implications", ICML).

Classes ``y = +-1`` with equal priors and ``x | y ~ N(y mu, Sigma)``.  A linear rule
``sign(w.x + b)`` errs with probability

    err(w, b) = (1/2) [Phi(-(w.mu + b) / s) + Phi(-(w.mu - b) / s)],   s = sqrt(w^T Sigma w).

Logistic regression is consistent for this model: its population rule is the Bayes rule
``w = Sigma^-1 mu``, ``b = 0``.  Gaussian naive Bayes fits a diagonal covariance: its population rule
is ``w = D^-1 mu`` with ``D = diag(Sigma)``, which is the Bayes rule only when ``Sigma`` is diagonal.
Ng & Jordan (Theorems 2-4): logistic regression needs ``O(d)`` samples to approach its asymptotic
error in ``d`` dimensions, naive Bayes only ``O(log d)``; so naive Bayes is better with few samples and,
when misspecified, worse with many -- the learning curves cross.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm


def linear_rule_error(w: np.ndarray, b: float, mean: np.ndarray, cov: np.ndarray) -> float:
    """Exact error of ``sign(w.x + b)`` for classes ``N(+-mean, cov)`` with equal priors (module docstring)."""
    w, mean, cov = np.asarray(w, dtype=np.float64), np.asarray(mean, dtype=np.float64), np.asarray(cov, np.float64)
    s = float(np.sqrt(w @ cov @ w))
    if s == 0:
        return 0.5
    margin = float(w @ mean)
    return float(0.5 * (norm.cdf(-(margin + b) / s) + norm.cdf(-(margin - b) / s)))


def logistic_asymptotic_error(mean: np.ndarray, cov: np.ndarray) -> float:
    """The error logistic regression tends to with infinite data: the Bayes error ``Phi(-sqrt(mu^T Sigma^-1 mu))``."""
    return linear_rule_error(np.linalg.solve(cov, mean), 0.0, mean, cov)


def naive_bayes_asymptotic_error(mean: np.ndarray, cov: np.ndarray) -> float:
    """The error Gaussian naive Bayes tends to with infinite data: the rule ``w = diag(Sigma)^-1 mu``, ``b = 0``."""
    return linear_rule_error(np.asarray(mean) / np.diag(cov), 0.0, mean, cov)


def sample_complexity_growth(dim: np.ndarray, classifier: str) -> np.ndarray:
    """How the samples needed to come within a fixed epsilon of the asymptotic error grow with the dimension,
    up to a constant: ``log d`` for naive Bayes, ``d`` for logistic regression (Ng & Jordan 2001, Thm. 2-4)."""
    dim = np.asarray(dim, dtype=np.float64)
    if classifier == "naive_bayes":
        return np.log(dim)
    if classifier == "logistic":
        return dim
    raise ValueError(f"classifier must be 'naive_bayes' or 'logistic', got {classifier!r}")
