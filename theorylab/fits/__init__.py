"""Scaling-law fitting: forms, losses, optimisers, bootstrap, compute-optimal allocation, backtests.

>>> from theorylab.datasets import load_chinchilla
>>> from theorylab.fits import fit
>>> res = fit(load_chinchilla(), "chinchilla")        # approach 3, summed Huber(1e-3) on log-loss
>>> boot = res.bootstrap(1000, seed=0)                 # percentile intervals
>>> res.compute_optimal(1e24, bootstrap=boot)          # N*, D*, D*/N*, L* with intervals
>>> res.backtest(quantile=0.8)                         # fit below the 80% compute quantile, test above

Names load on first use, so that ``theorylab fit --help`` starts without scipy, sympy or matplotlib.

References: Hoffmann et al. 2022 (Chinchilla), Besiroglu et al. 2024 (replication), Kaplan et al.
2020, Hestness et al. 2017, Caballero et al. 2023 (broken laws), Tissue et al. 2024 (annealing).
"""
from __future__ import annotations

import importlib
from typing import Any

_API: dict[str, str] = {
    **dict.fromkeys(["BacktestResult", "backtest"], "theorylab.fits.backtest"),
    **dict.fromkeys(["BootstrapResult", "bootstrap"], "theorylab.fits.bootstrap"),
    **dict.fromkeys(["ComputeOptimal", "chinchilla_closed_form", "compute_optimal"], "theorylab.fits.compute_optimal"),
    "SuspectFitWarning": "theorylab.fits.diagnostics",
    **dict.fromkeys(["fit", "fit_arrays"], "theorylab.fits.fitting"),
    **dict.fromkeys(["Form", "annealing", "annealing_features", "broken", "chinchilla", "expression", "hoffmann_grid",
                     "kaplan", "make_form", "power"], "theorylab.fits.forms"),
    **dict.fromkeys(["IsoFLOPResult", "isoflop_analysis"], "theorylab.fits.isoflop"),
    "Loss": "theorylab.fits.losses",
    **dict.fromkeys(["Tolerance", "multistart_lbfgs", "variable_projection"], "theorylab.fits.optimize"),
    **dict.fromkeys(["FitResult", "PredictionInterval"], "theorylab.fits.result"),
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'theorylab.fits' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
