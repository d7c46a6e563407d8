"""Backtests: fit below a threshold, predict above it, report the extrapolation error.

In-sample fit quality does not predict extrapolation quality, so a law is judged by refitting it
on the rows with ``on <= split`` (a compute budget, a model size, a training-set size) with the
same form, loss and optimiser, and comparing its predictions with the held-out rows above the
threshold.  The error of each held-out row is the relative error ``(f - y) / y``; its distance is
``log10(on / split)`` (decades beyond the fitted range).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from theorylab.fits.losses import Loss
from theorylab.plotting import MEASURED, PREDICTED, axes_or_new
from theorylab.provenance import make_meta
from theorylab.results import Result, result_class

if TYPE_CHECKING:
    from theorylab.fits.result import FitResult


@result_class
class BacktestResult(Result):
    """A fit on ``num_train`` rows with ``on <= split`` and its errors on the ``num_test`` rows above."""

    on: str
    split: float
    num_train: int
    num_test: int
    train_fit: Result
    distance: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    rel_error: np.ndarray
    mean_abs_rel_error: float
    max_abs_rel_error: float
    in_sample_mean_abs_rel_error: float

    def plot(self, ax: Any = None) -> Any:
        """Absolute relative error of the held-out rows against their distance beyond the split."""
        ax = axes_or_new(ax)
        ax.scatter(self.distance, np.abs(self.rel_error) * 100, s=12, color=MEASURED, label="held-out rows")
        ax.axhline(self.in_sample_mean_abs_rel_error * 100, color=PREDICTED, ls="--", lw=1,
                   label="in-sample mean")
        ax.set_xlabel(f"decades of {self.on} beyond the fitted range")
        ax.set_ylabel("|relative error| (%)")
        ax.set_title(f"backtest: mean {self.mean_abs_rel_error:.2%} on {self.num_test} rows")
        ax.legend()
        return ax


def backtest(result: FitResult, *, split: float | None = None, quantile: float | None = None,
             on: str | None = None) -> BacktestResult:
    """Refit ``result``'s law on rows with ``on <= split`` and measure the error above.

    Give the threshold as ``split`` (a value of column ``on``) or as ``quantile`` in (0, 1) (of the
    rows' ``on`` values).  ``on`` defaults to ``C`` when the fit kept a compute column, else the
    first variable.
    """
    from theorylab.fits.fitting import fit_arrays

    if (split is None) == (quantile is None):
        raise ValueError("give exactly one of split (a threshold) or quantile (a fraction in (0, 1))")
    on = on or ("C" if "C" in result.data else result.variables[0])
    if on not in result.data:
        raise ValueError(f"cannot backtest on {on!r}: the fit kept the columns {sorted(result.data)}")
    values = result.data[on]
    if quantile is not None:
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        split = float(np.quantile(values, quantile))
    train = values <= split
    num_train, num_test = int(train.sum()), int((~train).sum())
    P = len(result.params)
    if num_train <= P or num_test == 0:
        raise ValueError(f"split {on} <= {split:g} leaves {num_train} rows to fit ({P} parameters) and {num_test} "
                         "to test; need more fitting rows than parameters and at least one test row")
    law = result.law()
    loss = Loss(**result.penalty)
    sub = {k: v[train] for k, v in result.data.items()}
    train_fit = fit_arrays(law, sub, result.response, loss, result.choices, groups=result.groups)
    X_test = {v: result.data[v][~train] for v in result.variables}
    y_true = result.data[result.response][~train]
    y_pred = law.predict(X_test, train_fit.params)
    rel = (y_pred - y_true) / y_true
    in_rel = (train_fit.predict() - sub[result.response]) / sub[result.response]
    return BacktestResult(on=on, split=float(split), num_train=num_train, num_test=num_test, train_fit=train_fit,
                          distance=np.log10(values[~train] / split), y_true=y_true, y_pred=y_pred,
                          rel_error=rel, mean_abs_rel_error=float(np.mean(np.abs(rel))),
                          max_abs_rel_error=float(np.max(np.abs(rel))),
                          in_sample_mean_abs_rel_error=float(np.mean(np.abs(in_rel))),
                          meta=make_meta(dtype="float64", device="cpu"))
