"""Figures of scaling-law fits (house style; prediction in ``PREDICTED``, data in ``MEASURED``).

* :func:`fit_figure`: fitted against observed, and residuals against the prediction;
* :func:`contour_figure`: the law's loss contours over (N, D) with the runs and the compute-optimal
  frontier;
* :func:`learning_curve_figure`: a one-variable law (learning curve) with its fit and prediction band;
* the isoFLOP slices, bootstrap parameter pairs and backtest errors are the ``plot`` methods of
  :class:`~theorylab.fits.isoflop.IsoFLOPResult`, :class:`~theorylab.fits.bootstrap.BootstrapResult`
  and :class:`~theorylab.fits.backtest.BacktestResult`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from theorylab.fits.result import FitResult, display_rows
from theorylab.plotting import MEASURED, PREDICTED, axes_or_new, new_figure


def fit_figure(result: FitResult) -> Any:
    """Two panels: fitted vs observed and residuals (loss's scale) vs fitted value (log axes where
    the values span a decade)."""
    fig, (left, right) = new_figure(2)
    result.plot(left)
    pred = result.predict()
    rows = display_rows(len(pred))
    right.axhline(0.0, color=PREDICTED, lw=1)
    right.scatter(pred[rows], result.residuals[rows], s=10, color=MEASURED, alpha=0.7)
    if pred.max() > 10 * pred.min() > 0:
        right.set_xscale("log")
    right.set_xlabel(f"fitted {result.response}")
    right.set_ylabel(f"residual ({result.penalty['space']} scale)")
    right.set_title("residuals")
    return fig


def contour_figure(result: FitResult, *, ax: Any = None, frontier: bool = True, levels: int = 15) -> Any:
    """Loss contours of a two-variable law over (N, D) with the runs and the compute-optimal frontier."""
    if len(result.variables) != 2:
        raise ValueError("contour plots need a law in two variables (model size, data)")
    ax = axes_or_new(ax, width=5, height=4)
    n_var, d_var = result.variables
    N, D = result.data[n_var], result.data[d_var]
    ln = np.linspace(np.log10(N.min()) - 0.5, np.log10(N.max()) + 1.0, 120)
    ld = np.linspace(np.log10(D.min()) - 0.5, np.log10(D.max()) + 1.0, 120)
    gn, gd = np.meshgrid(10 ** ln, 10 ** ld)
    Z = result.predict({n_var: gn.ravel(), d_var: gd.ravel()}).reshape(gn.shape)
    cs = ax.contour(gn, gd, Z, levels=levels, cmap="viridis", linewidths=0.8)
    ax.clabel(cs, fontsize=6, fmt="%.2f")
    rows = display_rows(len(N))
    ax.scatter(N[rows], D[rows], s=8, color=MEASURED, alpha=0.6, label="runs")
    if frontier:
        C = np.logspace(np.log10(6 * gn.min() * gd.min()), np.log10(6 * gn.max() * gd.max()), 60)
        opt = result.compute_optimal(C)
        keep = (opt.N_opt >= gn.min()) & (opt.N_opt <= gn.max()) & (opt.D_opt >= gd.min()) & (opt.D_opt <= gd.max())
        ax.plot(opt.N_opt[keep], opt.D_opt[keep], color=PREDICTED, lw=2, label="compute-optimal frontier")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"{n_var} (parameters)")
    ax.set_ylabel(f"{d_var} (tokens)")
    ax.set_title(f"{result.form['form']} law: loss contours")
    ax.legend(loc="lower right")
    return ax


def learning_curve_figure(result: FitResult, *, ax: Any = None, extend_to: float | None = None,
                          bootstrap: Any = None, held_out: tuple[Any, Any] | None = None,
                          level: float = 0.95) -> Any:
    """A one-variable law: the data, the fit and its ``level`` band (to ``extend_to``), and held-out
    points ``(x, y)`` drawn as open markers."""
    if len(result.variables) != 1:
        raise ValueError("learning-curve plots need a law in one variable")
    ax = axes_or_new(ax)
    var = result.variables[0]
    x = result.data[var]
    top = max(float(x.max()), extend_to or 0.0, float(np.max(held_out[0])) if held_out is not None else 0.0)
    grid = np.logspace(np.log10(x.min()), np.log10(top), 200)
    band = result.predict_interval({var: grid}, level=level, bootstrap=bootstrap)
    ax.fill_between(grid, band.lower, band.upper, color=PREDICTED, alpha=0.2, label=f"{level:.0%} band")
    ax.plot(grid, band.mean, color=PREDICTED, label="fit")
    rows = display_rows(len(x))
    ax.scatter(x[rows], result.data[result.response][rows], s=14, color=MEASURED, label="fitted points")
    if held_out is not None:
        ax.scatter(held_out[0], held_out[1], s=22, facecolors="none", edgecolors=MEASURED, label="held out")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(var)
    ax.set_ylabel(result.response)
    ax.legend()
    return ax
