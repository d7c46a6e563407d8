"""Predictions, one function per prediction, each with its citation.

Imports nothing but numpy, scipy and sympy.

* :mod:`~theorylab.theory.marchenko_pastur`: Marchenko-Pastur density, edges, CDF, Stieltjes
  transform; the BBP spiked outlier.
* :mod:`~theorylab.theory.linear_regression`: ridgeless / ridge / gradient-descent test risk of
  isotropic linear regression (Hastie et al. 2019; Advani & Saxe 2017), and its finite-size correction.
* :mod:`~theorylab.theory.deep_linear`: Saxe et al. 2014 mode trajectories and learning times.
* :mod:`~theorylab.theory.deep_linear_depth`: learning times of deep linear networks against depth (Saxe et al.
  2014).
* :mod:`~theorylab.theory.matrix_sensing`: rates of GD in over-parameterized matrix sensing
  (Xiong, Ding & Du 2024).
* :mod:`~theorylab.theory.stability`: the step-size thresholds of GD and SGD (Cohen et al. 2021;
  Wu & Su 2023).
* :mod:`~theorylab.theory.wide_networks`: finite-width rates of the NTK (Jacot et al. 2018; Lee et al. 2019).
* :mod:`~theorylab.theory.batch_hessian`: the mini-batch Hessian's top eigenvalue (Granziol et al. 2022).
* :mod:`~theorylab.theory.noise_scale`: the critical batch size (McCandlish et al. 2018).
* :mod:`~theorylab.theory.neural_collapse`: minimisers of unconstrained-features models (Dang et al. 2023).
* :mod:`~theorylab.theory.diffusion`: ultra-slow diffusion of the weights (Hoffer et al. 2017).
* :mod:`~theorylab.theory.double_descent`: where the double-descent peak sits (Nakkiran et al. 2019;
  Belkin et al. 2019).
* :mod:`~theorylab.theory.deep_classifiers`: majority vote and 1-nearest neighbour, the limits of deep NTK
  classifiers (Radhakrishnan et al. 2023).
* :mod:`~theorylab.theory.generative_discriminative`: errors of naive Bayes and logistic regression on
  Gaussian classes, and their sample complexities (Ng & Jordan 2001).
* :mod:`~theorylab.theory.scaling_laws`: published scaling-law fits (Besiroglu et al. 2024).
* :mod:`~theorylab.theory.batch_size`: the largest stable learning rate against the batch size (Granziol et
  al. 2022) and the mean-square limit of SGD on least squares.
* :mod:`~theorylab.theory.perceptron`: logistic regression by GD with large steps is the batch perceptron
  (Tyurin 2024).
* :mod:`~theorylab.theory.spectral_bias`: the residual decays along the NTK eigenvectors (Jacot et al. 2018).
* :mod:`~theorylab.theory.mixup`: the margin that minimises the mixup loss of a mix (Zhang et al. 2018; Fisher,
  Meng & Papyan 2024).
* :mod:`~theorylab.theory.schedules`: the last-iterate bound of a learning-rate schedule (Defazio et al. 2023).
* :mod:`~theorylab.theory.transfer`: the transfer measure bounded through the head's Hessian and gradient
  alignment (Hemati et al. 2023).
"""
from theorylab.theory.batch_hessian import batch_hessian_excess_exponents
from theorylab.theory.batch_size import max_lr_batch_exponent, sgd_mean_square_lr_limit
from theorylab.theory.deep_classifiers import majority_vote, nearest_neighbour
from theorylab.theory.deep_linear import saxe_learning_time, saxe_mode_strength, saxe_mode_strength_symbolic
from theorylab.theory.deep_linear_depth import deep_mode_learning_time
from theorylab.theory.diffusion import diffusion_exponent, free_diffusion_exponent, ultra_slow_distance
from theorylab.theory.double_descent import interpolation_threshold, random_features_peak
from theorylab.theory.generative_discriminative import (linear_rule_error, logistic_asymptotic_error,
                                                        naive_bayes_asymptotic_error, sample_complexity_growth)
from theorylab.theory.linear_regression import (gd_risk, optimal_ridge, ridge_risk, ridgeless_finite_size_correction,
                                                ridgeless_risk, ridgeless_risk_finite, ridgeless_risk_symbolic)
from theorylab.theory.marchenko_pastur import (mp_atom, mp_cdf, mp_density, mp_density_symbolic, mp_edges,
                                               mp_stieltjes, spiked_outlier)
from theorylab.theory.matrix_sensing import (asymmetric_rate_exponent_bound, excess_product,
                                             symmetric_overparam_tail)
from theorylab.theory.mixup import mixup_optimal_margin
from theorylab.theory.neural_collapse import imbalanced_ufm_norms, ufm_global_objective
from theorylab.theory.noise_scale import critical_batch_size, steps_to_target
from theorylab.theory.perceptron import batch_perceptron
from theorylab.theory.scaling_laws import epoch_chinchilla_fit
from theorylab.theory.schedules import last_iterate_bound
from theorylab.theory.spectral_bias import ntk_mode_decay
from theorylab.theory.stability import gd_sharpness_threshold, sgd_trace_threshold
from theorylab.theory.transfer import hessian_alignment_bound
from theorylab.theory.wide_networks import lazy_change_exponent_bound, ntk_fluctuation_exponent

__all__ = [
    "asymmetric_rate_exponent_bound", "batch_hessian_excess_exponents", "batch_perceptron", "critical_batch_size",
    "deep_mode_learning_time", "diffusion_exponent", "epoch_chinchilla_fit", "excess_product",
    "free_diffusion_exponent", "gd_risk", "gd_sharpness_threshold", "hessian_alignment_bound", "imbalanced_ufm_norms",
    "interpolation_threshold", "last_iterate_bound", "lazy_change_exponent_bound", "linear_rule_error",
    "logistic_asymptotic_error", "majority_vote", "max_lr_batch_exponent", "mixup_optimal_margin", "mp_atom",
    "mp_cdf", "mp_density",
    "mp_density_symbolic", "mp_edges", "mp_stieltjes", "naive_bayes_asymptotic_error", "nearest_neighbour",
    "ntk_fluctuation_exponent", "ntk_mode_decay", "optimal_ridge", "random_features_peak", "ridge_risk",
    "ridgeless_finite_size_correction", "ridgeless_risk", "ridgeless_risk_finite", "ridgeless_risk_symbolic",
    "sample_complexity_growth", "saxe_learning_time", "saxe_mode_strength", "saxe_mode_strength_symbolic",
    "sgd_mean_square_lr_limit", "sgd_trace_threshold", "spiked_outlier", "steps_to_target",
    "symmetric_overparam_tail", "ufm_global_objective", "ultra_slow_distance",
]
