"""Result objects of scaling-law fits.

:class:`FitResult` holds the fitted law (parameters, standard errors, covariance, objective,
AIC/BIC, residuals), every fitting choice, and the data it was fitted to, so that it can predict,
bootstrap, backtest and find the compute-optimal allocation on its own -- also after a JSON round
trip.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from scipy import stats

from theorylab.fits.forms import Form, make_form
from theorylab.plotting import MEASURED, PREDICTED, axes_or_new
from theorylab.results import HtmlTable, Result, result_class, value_with_error

#: scatter plots of a fit draw at most this many rows (a fixed random subset of larger tables)
MAX_ROWS_SHOWN = 20_000


def display_rows(n: int) -> np.ndarray:
    """The indices of the rows a scatter plot draws: all of them, or a fixed subset of
    :data:`MAX_ROWS_SHOWN` (seeded, sorted) for larger tables, which would take seconds to draw and
    show nothing more."""
    if n <= MAX_ROWS_SHOWN:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, MAX_ROWS_SHOWN, replace=False))


@result_class
class FitResult(Result):
    """A fitted law ``y = f(x; p)``.

    ``params``/``stderr`` follow ``param_names``; ``covariance`` is the Gauss-Newton approximation
    ``s^2 (J'J)^-1`` in natural units (J: residual Jacobian, ``s^2 = RSS / (n - P)``; exact for
    least squares, an approximation for Huber and MAE -- prefer :meth:`bootstrap` intervals there).
    ``aic = n log(RSS/n) + 2P`` and ``bic = n log(RSS/n) + P log n`` use the Gaussian likelihood
    of the residuals in the loss's space.  ``num_reached`` of ``num_starts`` optimiser starts reached
    the best objective (relative distance 1e-7).  ``data`` holds the numeric columns of the rows
    used (the variables, the response, and e.g. C or a run id).  ``warnings`` says why the fit looks
    suspect (parameters at bounds, undefined or huge standard errors, an alternative optimum, a
    direction against the law's meaning); empty for a fit with no such sign.
    """

    form: dict[str, Any]
    formula: str
    variables: tuple[str, ...]
    response: str
    param_names: tuple[str, ...]
    params: np.ndarray
    stderr: np.ndarray
    covariance: np.ndarray
    objective: float
    aic: float
    bic: float
    num_points: int
    residuals: np.ndarray
    penalty: dict[str, Any]
    method: str
    num_starts: int
    num_reached: int
    converged: bool
    choices: dict[str, Any]
    data: dict[str, np.ndarray]
    groups: str | None = None
    #: why the fit looks suspect, one sentence each (see :mod:`theorylab.fits.diagnostics`)
    warnings: tuple[str, ...] = ()

    # -- access -------------------------------------------------------------------------------
    @property
    def parameters(self) -> dict[str, float]:
        """Parameter name -> fitted value."""
        return {k: float(v) for k, v in zip(self.param_names, self.params)}

    def __getitem__(self, name: str) -> float:
        return self.parameters[name]

    def law(self) -> Form:
        """The fitted form (rebuilt from its spec)."""
        return make_form(self.form)

    def _X(self, X: Mapping[str, Any] | None, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        source = dict(X or {})
        source.update(columns)
        if not source:
            source = {v: self.data[v] for v in self.variables}
        missing = [v for v in self.variables if v not in source]
        if missing:
            raise ValueError(f"predict needs the variables {list(self.variables)}; missing {missing}")
        out = {v: np.atleast_1d(np.asarray(source[v], dtype=float)) for v in self.variables}
        sizes = {len(a) for a in out.values()}
        if len(sizes) > 1:
            b = np.broadcast_arrays(*out.values())
            out = dict(zip(self.variables, (np.asarray(a, dtype=float) for a in b)))
        return out

    # -- prediction ---------------------------------------------------------------------------
    def predict(self, X: Mapping[str, Any] | None = None, **columns: Any) -> np.ndarray:
        """The law at new points: ``predict(N=..., D=...)`` or ``predict({"N": ..., "D": ...})``
        (the fitted rows when nothing is given)."""
        return self.law().predict(self._X(X, columns), self.params)

    def predict_interval(self, X: Mapping[str, Any] | None = None, *, level: float = 0.95,
                         bootstrap: Any | None = None, **columns: Any) -> PredictionInterval:
        """A pointwise confidence interval of the law at new points.

        With ``bootstrap`` (a :class:`~theorylab.fits.bootstrap.BootstrapResult` of this fit): the
        percentile interval of the replicate predictions.  Otherwise the delta method on the
        covariance, on log scale for log-space losses (``log f +- z sd``, so the band stays
        positive), else on raw scale.
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        Xn = self._X(X, columns)
        form = self.law()
        mean = form.predict(Xn, self.params)
        if bootstrap is not None:
            preds = np.stack([form.predict(Xn, p) for p in bootstrap.replicates])
            lo, hi = np.nanquantile(preds, [(1 - level) / 2, (1 + level) / 2], axis=0)
            how = f"bootstrap percentile ({len(preds)} replicates, by {bootstrap.by})"
        else:
            jac = form.jacobian(Xn, self.params)
            sd = np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", jac, self.covariance, jac), 0.0))
            z = stats.norm.ppf((1 + level) / 2)
            if self.penalty["space"] == "log":
                lo, hi = mean * np.exp(-z * sd / mean), mean * np.exp(z * sd / mean)
            else:
                lo, hi = mean - z * sd, mean + z * sd
            how = "delta method (Gauss-Newton covariance)"
        return PredictionInterval(x=Xn, mean=mean, lower=lo, upper=hi, level=level, method=how)

    # -- uncertainty, extrapolation, allocation ---------------------------------------------
    def bootstrap(self, n: int = 1000, seed: int = 0, *, by: Literal["rows", "runs"] = "rows",
                  level: float = 0.95, workers: int = 1, progress: bool | None = None) -> Any:
        """Non-parametric bootstrap: refit on ``n`` resamples (see :func:`theorylab.fits.bootstrap.bootstrap`)."""
        from theorylab.fits.bootstrap import bootstrap

        return bootstrap(self, n, seed=seed, by=by, level=level, workers=workers, progress=progress)

    def compute_optimal(self, C: Any, *, bootstrap: Any | None = None, level: float = 0.95) -> Any:
        """N*, D*, tokens per parameter and L* at compute ``C = 6 N D`` (see :mod:`theorylab.fits.compute_optimal`)."""
        from theorylab.fits.compute_optimal import compute_optimal

        return compute_optimal(self, C, bootstrap=bootstrap, level=level)

    def backtest(self, split: float | None = None, *, quantile: float | None = None, on: str | None = None) -> Any:
        """Refit below a threshold of column ``on`` and measure the error above it (see :mod:`theorylab.fits.backtest`)."""
        from theorylab.fits.backtest import backtest

        return backtest(self, split=split, quantile=quantile, on=on)

    # -- display ------------------------------------------------------------------------------
    def report(self) -> str:
        """A short Markdown report: the law, the parameters with standard errors, the fit quality."""
        lines = [f"**{self.form['form']}** law `{self.response} = {self.formula}` fitted to {self.num_points} points",
                 "", "| parameter | value | std. error |", "|---|---|---|"]
        lines += [f"| {k} | {v:.6g} | {s:.3g} |" for k, v, s in zip(self.param_names, self.params, self.stderr)]
        loss = self.penalty
        lines += ["", f"Objective {self.objective:.10g} ({loss['reduction']} of {loss['name']}"
                      + (f", delta {loss['delta']:g}" if loss["name"] == "huber" else "")
                      + f", {loss['space']} scale); AIC {self.aic:.4g}, BIC {self.bic:.4g}; method {self.method}, "
                      f"{self.num_reached} of {self.num_starts} starts reached the best objective."]
        if self.warnings:
            lines += ["", "**Suspect fit:**", *(f"- {w}" for w in self.warnings)]
        return "\n".join(lines)

    def _html_sections(self) -> list[HtmlTable]:
        """The parameters with standard errors, then the fit statistics (as lmfit's fit report)."""
        params = [(name, value_with_error(v, se), f"{se / abs(v):.1%}" if v and np.isfinite(se) else "")
                  for name, v, se in zip(self.param_names, self.params, self.stderr)]
        loss = self.penalty
        objective = (f"{self.objective:.6g} ({loss['reduction']} of {loss['name']}"
                     + (f" δ={loss['delta']:g}" if loss["name"] == "huber" else "") + f", {loss['space']} scale)")
        quality = [("law", f"{self.response} = {self.formula}"), ("rows", f"{self.num_points:,}"),
                   ("objective", objective), ("AIC / BIC", f"{self.aic:.5g} / {self.bic:.5g}"),
                   ("optimiser", f"{self.method}: {self.num_reached} of {self.num_starts} starts reached the best"
                                 f"{'' if self.converged else ', not converged'}")]
        return [HtmlTable(f"{self.form['form']} law", ("parameter", "value ± std. error", "relative"), params),
                HtmlTable("fit", None, quality)]

    def _html_notes(self) -> list[str]:
        return [f"Suspect fit: {w}" for w in self.warnings]

    def plot(self, ax: Any = None) -> Any:
        """Fitted against observed values (log-log where they span a decade), with the identity line."""
        ax = axes_or_new(ax)
        y = self.data[self.response]
        pred = self.predict()
        lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color=PREDICTED, lw=1, label="y = fit")
        rows = display_rows(len(y))
        label = "runs" if len(rows) == len(y) else f"{len(rows):,} of {len(y):,} rows"
        ax.scatter(y[rows], pred[rows], s=10, color=MEASURED, alpha=0.7, label=label)
        if hi > 10 * lo > 0:  # log axes only where the values span a decade (else their labels crowd)
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"observed {self.response}")
        ax.set_ylabel(f"fitted {self.response}")
        ax.set_title(f"{self.form['form']} fit (objective {self.objective:.4g})")
        ax.legend()
        return ax


@result_class
class PredictionInterval(Result):
    """The law at points ``x`` with a pointwise ``level`` confidence interval ``[lower, upper]``."""

    x: dict[str, np.ndarray]
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    method: str

    def plot(self, ax: Any = None) -> Any:
        """The band against the first variable."""
        ax = axes_or_new(ax)
        name = next(iter(self.x))
        order = np.argsort(self.x[name])
        xs = self.x[name][order]
        ax.plot(xs, self.mean[order], color=PREDICTED, label="fit")
        ax.fill_between(xs, self.lower[order], self.upper[order], color=PREDICTED, alpha=0.2,
                        label=f"{self.level:.0%} interval")
        ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.legend()
        return ax
