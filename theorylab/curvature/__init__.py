"""Curvature of a model as lazy operators, and estimators over any symmetric operator.

Operators: :func:`hessian`, :func:`ggn` (and :class:`DenseOperator` / :func:`as_operator` for
plain matrices).  Estimators: :func:`top_eigenvalues` (Lanczos with locking), :func:`trace`
(Hutchinson, Hutch++), :func:`spectral_density` (stochastic Lanczos quadrature), :func:`lanczos`.
"""
from theorylab.curvature.algebra import identity, restrict, shift
from theorylab.curvature.fisher import EmpiricalFisherOperator, FisherOperator, empirical_fisher, fisher
from theorylab.curvature.kfac import KFACOperator, kfac
from theorylab.curvature.lanczos import EigenResult, LanczosDecomposition, lanczos, top_eigenvalues
from theorylab.curvature.operators import (CurvatureOperator, DenseOperator, GGNOperator, HessianOperator,
                                           LinearOperator, as_operator, ggn, hessian)
from theorylab.curvature.spectrum import SpectralDensity, spectral_density
from theorylab.curvature.trace import TraceEstimate, trace

__all__ = ["LinearOperator", "DenseOperator", "CurvatureOperator", "HessianOperator", "GGNOperator", "as_operator",
           "hessian", "ggn", "top_eigenvalues", "EigenResult", "lanczos", "LanczosDecomposition",
           "trace", "TraceEstimate", "spectral_density", "SpectralDensity",
           "fisher", "FisherOperator", "empirical_fisher", "EmpiricalFisherOperator", "identity", "shift", "restrict",
           "kfac", "KFACOperator"]
