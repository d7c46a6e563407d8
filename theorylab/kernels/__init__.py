"""Neural tangent and NNGP kernels: empirical (finite network), analytic (infinite width), diagnostics.

* :func:`empirical_ntk`, :func:`empirical_ntk_blocks` -- exact NTK of a model (a per-layer Kronecker path for
  layers used once, Jacobians for the rest), in blocks under a memory budget;
* :func:`analytic_ntk`, :func:`analytic_nngp` -- infinite-width kernels of a ReLU / erf MLP;
* :func:`kernel_alignment`, :func:`kernel_distance`, :func:`kernel_velocity`, :func:`kernel_spectrum`;
* :func:`linearized_gd`, :func:`kernel_regression` -- predictions of the linearised network;
* :func:`ntk_monitor` -- alignment and distance to initialisation during :func:`theorylab.train.train`.
"""
from theorylab.kernels.analytic import analytic_nngp, analytic_ntk
from theorylab.kernels.diagnostics import (KernelSpectrum, KernelVelocity, kernel_alignment, kernel_distance,
                                           kernel_spectrum, kernel_velocity, ntk_monitor)
from theorylab.kernels.empirical import EmpiricalNTK, NTKBlocks, empirical_ntk, empirical_ntk_blocks
from theorylab.kernels.regression import kernel_regression, linearized_gd

__all__ = ["empirical_ntk", "empirical_ntk_blocks", "EmpiricalNTK", "NTKBlocks", "analytic_ntk", "analytic_nngp", "kernel_alignment", "kernel_distance",
           "kernel_velocity", "kernel_spectrum", "KernelVelocity", "KernelSpectrum", "linearized_gd",
           "kernel_regression", "ntk_monitor"]
