"""Curvature of a model as lazy operators, and estimators over any symmetric operator.

Operators: :func:`hessian`, :func:`ggn`, :func:`fisher` (exact or Monte-Carlo),
:func:`empirical_fisher`, :func:`kfac` (and :class:`DenseOperator` / :func:`as_operator` for plain
matrices); algebra: ``A + B``, ``c * A``, :func:`shift`, :func:`identity`, :func:`restrict`.
Estimators: :func:`top_eigenvalues` (Lanczos with locking), :func:`trace` (Hutchinson, Hutch++),
:func:`spectral_density` (stochastic Lanczos quadrature), :func:`lanczos`, :func:`diagonal`,
:func:`frobenius_norm`, :func:`solve` (conjugate gradients).
"""
from theorylab.curvature.algebra import identity, restrict, shift
from theorylab.curvature.diagonal import DiagonalEstimate, diagonal
from theorylab.curvature.fisher import (EmpiricalFisherOperator, FisherOperator, PerExampleEmpiricalFisherOperator,
                                        empirical_fisher, fisher)
from theorylab.curvature.frobenius import FrobeniusNorm, frobenius_norm
from theorylab.curvature.kfac import KFACOperator, kfac
from theorylab.curvature.lanczos import EigenResult, LanczosDecomposition, lanczos, top_eigenvalues
from theorylab.curvature.operators import (CurvatureOperator, DenseOperator, GGNOperator, HessianOperator,
                                           LinearOperator, as_operator, ggn, hessian)
from theorylab.curvature.solve import SolveResult, solve
from theorylab.curvature.spectrum import SpectralDensity, spectral_density
from theorylab.curvature.trace import TraceEstimate, trace

__all__ = ["LinearOperator", "DenseOperator", "CurvatureOperator", "HessianOperator", "GGNOperator", "as_operator",
           "hessian", "ggn", "top_eigenvalues", "EigenResult", "lanczos", "LanczosDecomposition",
           "trace", "TraceEstimate", "spectral_density", "SpectralDensity",
           "fisher", "FisherOperator", "empirical_fisher", "EmpiricalFisherOperator",
           "PerExampleEmpiricalFisherOperator", "identity", "shift", "restrict",
           "kfac", "KFACOperator", "diagonal", "DiagonalEstimate", "frobenius_norm", "FrobeniusNorm", "solve",
           "SolveResult"]
