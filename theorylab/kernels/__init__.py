"""Neural tangent and NNGP kernels: empirical (finite network), analytic (infinite width), diagnostics.

* :func:`empirical_ntk` -- exact NTK of a model by Jacobian contraction or NTK-vector products, in blocks;
* :func:`analytic_ntk`, :func:`analytic_nngp` -- infinite-width kernels of a ReLU / erf MLP;
* :func:`kernel_alignment`, :func:`kernel_distance`, :func:`kernel_velocity`, :func:`kernel_spectrum`;
* :func:`linearized_gd`, :func:`kernel_regression` -- predictions of the linearised network;
* :func:`ntk_monitor` -- alignment and distance to initialisation during :func:`theorylab.train.train`.
"""
from theorylab.kernels.analytic import analytic_nngp, analytic_ntk
from theorylab.kernels.diagnostics import (KernelSpectrum, KernelVelocity, kernel_alignment, kernel_distance,
                                           kernel_spectrum, kernel_velocity, ntk_monitor)
from theorylab.kernels.empirical import empirical_ntk
from theorylab.kernels.regression import kernel_regression, linearized_gd

__all__ = ["empirical_ntk", "analytic_ntk", "analytic_nngp", "kernel_alignment", "kernel_distance",
           "kernel_velocity", "kernel_spectrum", "KernelVelocity", "KernelSpectrum", "linearized_gd",
           "kernel_regression", "ntk_monitor"]
