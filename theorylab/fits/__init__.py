"""Scaling-law fitting: forms, losses, optimisers, bootstrap, compute-optimal allocation, backtests.

>>> from theorylab.datasets import load_chinchilla
>>> from theorylab.fits import fit
>>> res = fit(load_chinchilla(), "chinchilla")        # approach 3, summed Huber(1e-3) on log-loss
>>> boot = res.bootstrap(1000, seed=0)                 # percentile intervals
>>> res.compute_optimal(1e24, bootstrap=boot)          # N*, D*, D*/N*, L* with intervals
>>> res.backtest(quantile=0.8)                         # fit below the 80% compute quantile, test above

References: Hoffmann et al. 2022 (Chinchilla), Besiroglu et al. 2024 (replication), Kaplan et al.
2020, Hestness et al. 2017, Caballero et al. 2023 (broken laws), Tissue et al. 2024 (annealing).
"""
from theorylab.fits.backtest import BacktestResult, backtest
from theorylab.fits.bootstrap import BootstrapResult, bootstrap
from theorylab.fits.compute_optimal import ComputeOptimal, chinchilla_closed_form, compute_optimal
from theorylab.fits.fitting import fit, fit_arrays
from theorylab.fits.forms import (Form, annealing, annealing_features, broken, chinchilla, expression, hoffmann_grid,
                                  kaplan, make_form, power)
from theorylab.fits.isoflop import IsoFLOPResult, isoflop_analysis
from theorylab.fits.losses import Loss
from theorylab.fits.optimize import Tolerance, multistart_lbfgs, variable_projection
from theorylab.fits.result import FitResult, PredictionInterval

__all__ = [
    "BacktestResult", "BootstrapResult", "ComputeOptimal", "FitResult", "Form", "IsoFLOPResult", "Loss",
    "PredictionInterval", "Tolerance", "annealing", "annealing_features", "backtest", "bootstrap", "broken",
    "chinchilla", "chinchilla_closed_form", "compute_optimal", "expression", "fit", "fit_arrays", "hoffmann_grid",
    "isoflop_analysis", "kaplan", "make_form", "multistart_lbfgs", "power", "variable_projection",
]
