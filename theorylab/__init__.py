"""theorylab: measure what deep-learning theory predicts, and check it against the prediction.

The public API, grouped (names load on first use, so ``import theorylab`` stays light):

* operators: :func:`hessian`, :func:`ggn`, :func:`fisher`, :func:`empirical_fisher`, :func:`kfac`,
  :func:`as_operator` (lazy operators, ``op @ v``; ``A + B``, ``c * A``, :func:`shift`, :func:`restrict`);
* estimators: :func:`top_eigenvalues`, :func:`trace`, :func:`spectral_density`, :func:`lanczos`,
  :func:`diagonal`, :func:`frobenius_norm`, :func:`solve`;
* analyzers: :func:`empirical_ntk`, :func:`analytic_ntk`, :func:`analytic_nngp`, :func:`kernel_alignment`,
  :func:`kernel_distance`, :func:`lambda_max`, :func:`sam_sharpness`, :func:`adaptive_sharpness`,
  :func:`average_sharpness`, :func:`neural_collapse`, :func:`model_collapse`, :func:`gradient_statistics`,
  :func:`gradient_noise_scale`, :func:`per_example_gradients`, :func:`activation_ranks`, :func:`dormant_ratio`,
  :func:`weight_spectrum`, :func:`mp_fit`, :func:`mean_loss`, :func:`accuracy` (every one declared with
  :func:`theorylab.analyzer.analyzer`);
* loss landscape: :func:`loss_surface`, :func:`linear_interpolation`, :func:`random_direction`,
  :func:`weight_matching`;
* model adapters: :func:`causal_lm_loss`, :func:`token_cross_entropy`, :func:`last_token`;
* fits: :func:`fit` (scaling laws), :func:`fit_rate` (polynomial vs exponential convergence),
  :func:`double_descent`;
* theory: the closed-form predictions live in :mod:`theorylab.theory`;
* training and sweeps: :class:`Monitor`, :func:`grid` (and ``theorylab.train.train``,
  ``theorylab.sweep.sweep``: their modules share their names, so they are not re-exported here);
* results and claims: :class:`Result`, :func:`verify`, :func:`load_analyses`;
* CPU threads: :class:`threads` (``with theorylab.threads(1): ...``; importing theorylab changes none).
"""
from __future__ import annotations

import importlib
from typing import Any

from theorylab.provenance import __version__
from theorylab.results import Result, result_class

_API: dict[str, str] = {
    # operators and estimators
    **dict.fromkeys(["hessian", "ggn", "fisher", "empirical_fisher", "kfac", "as_operator", "shift", "restrict",
                     "top_eigenvalues", "trace", "spectral_density", "lanczos", "diagonal", "frobenius_norm", "solve"],
                    "theorylab.curvature"),
    # analyzers
    **dict.fromkeys(["empirical_ntk", "analytic_ntk", "analytic_nngp", "kernel_alignment", "kernel_distance"],
                    "theorylab.kernels"),
    **dict.fromkeys(["lambda_max", "sam_sharpness", "adaptive_sharpness", "average_sharpness"],
                    "theorylab.sharpness"),
    **dict.fromkeys(["neural_collapse", "model_collapse"], "theorylab.collapse"),
    **dict.fromkeys(["gradient_statistics", "gradient_noise_scale", "per_example_gradients"], "theorylab.gradients"),
    **dict.fromkeys(["activation_ranks", "dormant_ratio", "weight_spectrum"], "theorylab.representations"),
    "mp_fit": "theorylab.spectra",
    **dict.fromkeys(["mean_loss", "accuracy"], "theorylab.metrics"),
    **dict.fromkeys(["loss_surface", "linear_interpolation", "random_direction"], "theorylab.landscape"),
    "weight_matching": "theorylab.alignment",
    # model adapters
    **dict.fromkeys(["causal_lm_loss", "token_cross_entropy", "last_token"], "theorylab.adapters"),
    # fits
    "fit": "theorylab.fits",
    "fit_rate": "theorylab.rates",
    "double_descent": "theorylab.doubledescent",
    # training and sweeps
    "Monitor": "theorylab.train",
    "grid": "theorylab.sweep",
    # claims
    **dict.fromkeys(["verify", "load_analyses"], "theorylab.claims"),
    # CPU threads, scoped
    "threads": "theorylab.devices",
}

__all__ = ["__version__", "Result", "result_class", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'theorylab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
