"""Predictions of exactly solvable models, one function per prediction, each with its citation.

Imports nothing but numpy, scipy and sympy.

* :mod:`~theorylab.theory.marchenko_pastur`: Marchenko-Pastur density, edges, CDF, Stieltjes
  transform; the BBP spiked outlier.
* :mod:`~theorylab.theory.linear_regression`: ridgeless / ridge / gradient-descent test risk of
  isotropic linear regression (Hastie et al. 2019; Advani & Saxe 2017).
* :mod:`~theorylab.theory.deep_linear`: Saxe et al. 2014 mode trajectories and learning times.
* :mod:`~theorylab.theory.matrix_sensing`: rates of GD in over-parameterized matrix sensing
  (Xiong, Ding & Du 2024).
"""
from theorylab.theory.deep_linear import saxe_learning_time, saxe_mode_strength, saxe_mode_strength_symbolic
from theorylab.theory.linear_regression import (gd_risk, optimal_ridge, ridge_risk, ridgeless_risk,
                                                ridgeless_risk_finite, ridgeless_risk_symbolic)
from theorylab.theory.marchenko_pastur import (mp_atom, mp_cdf, mp_density, mp_density_symbolic, mp_edges,
                                               mp_stieltjes, spiked_outlier)
from theorylab.theory.matrix_sensing import excess_product, symmetric_overparam_tail

__all__ = [
    "excess_product", "gd_risk", "mp_atom", "mp_cdf", "mp_density", "mp_density_symbolic", "mp_edges",
    "mp_stieltjes", "optimal_ridge", "ridge_risk", "ridgeless_risk", "ridgeless_risk_finite",
    "ridgeless_risk_symbolic",
    "saxe_learning_time", "saxe_mode_strength", "saxe_mode_strength_symbolic", "spiked_outlier",
    "symmetric_overparam_tail",
]
