"""Finite-width corrections of wide networks in NTK parametrization.

* At initialisation the empirical NTK converges to the deterministic infinite-width kernel as the
  width ``n -> inf`` (Jacot, Gabriel & Hongler 2018, "Neural tangent kernel: convergence and
  generalization in neural networks", NeurIPS, Theorem 1).  Each entry is an average over ``n``
  independent units, so its fluctuations, and the relative Frobenius error, scale as ``n^(-1/2)``.
* During gradient descent the kernel stays within ``O(n^(-1/2))`` of its initial value (Lee et al.
  2019, "Wide neural networks of any depth evolve as linear models under gradient descent", NeurIPS,
  Theorem 2.1: ``sup_t ||Theta_t - Theta_0||_F = O(n^(-1/2))``): an *upper bound*, so the change may
  decay faster.
"""
from __future__ import annotations


def ntk_fluctuation_exponent() -> float:
    """``-1/2``: the relative error of the empirical NTK at initialisation scales as ``width^(-1/2)``."""
    return -0.5


def lazy_change_exponent_bound() -> float:
    """``-1/2``: the relative kernel change during training is ``O(width^(-1/2))`` (a bound: the
    exponent of the measured change must be at most this)."""
    return -0.5
