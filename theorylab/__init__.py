"""theorylab: measure what deep-learning theory predicts, and check it against the prediction.

The public API, grouped:

* operators -- :func:`hessian`, :func:`ggn`, :func:`as_operator` (lazy, ``op @ v``);
* estimators -- :func:`top_eigenvalues`, :func:`trace`, :func:`spectral_density`, :func:`lanczos`;
* training -- :func:`train`, :class:`Monitor`;
* results and claims -- :class:`Result`, :class:`~theorylab.claims.Claim`, :func:`~theorylab.claims.verify`.

Subpackages: ``theorylab.data``, ``theorylab.models``, ``theorylab.curvature``, ``theorylab.claims``.
"""
from theorylab.curvature import (as_operator, ggn, hessian, lanczos, spectral_density, top_eigenvalues,
                                 trace)
from theorylab.provenance import __version__
from theorylab.results import Result, result_class
from theorylab.train import Monitor, train

__all__ = [
    "__version__",
    # operators and estimators
    "hessian", "ggn", "as_operator", "top_eigenvalues", "trace", "spectral_density", "lanczos",
    # training
    "train", "Monitor",
    # results
    "Result", "result_class",
]
