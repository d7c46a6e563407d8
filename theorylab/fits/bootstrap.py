"""Non-parametric bootstrap of a fitted law (Efron 1979), resampling rows or whole runs.

Each replicate draws the rows (``by="rows"``) or the run ids (``by="runs"``, all rows of a drawn
run come along) with replacement and refits the law with the fit's own loss.  A replicate is
refitted by L-BFGS from the full-data optimum, with the stopping tolerances scaled to the objective
(scipy's default rule stops early on small objectives, which makes intervals ~10x too narrow --
Besiroglu et al. 2024).  For laws with linear coefficients, a coarse variable-projection grid
(coefficients by NNLS) then checks the warm start: every grid value is an attained objective, so
a grid point below the warm-start optimum proves another basin is better, and the best such
points are polished too.  Intervals are percentile intervals of the replicate parameters.

Replicate ``i`` uses the random stream ``default_rng([seed, i])``, so results do not depend on
the number of worker processes.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from theorylab.fits.forms import make_form
from theorylab.fits.losses import Loss
from theorylab.fits.optimize import (Problem, Tolerance, completed_starts, exponent_grid, lbfgs, nonlinear_natural,
                                     profile, theta_bounds)
from theorylab.plotting import MEASURED, PREDICTED, axes_or_new
from theorylab.progress import bar as progress_bar
from theorylab.provenance import Stopwatch, make_meta
from theorylab.results import HtmlTable, Result, result_class

if TYPE_CHECKING:
    from theorylab.fits.result import FitResult

#: exponent-grid points of the basin check in each replicate
CHECK_GRID = 144


@result_class
class BootstrapResult(Result):
    """Bootstrap replicates of a fit and their percentile intervals.

    ``replicates[i]`` are the parameters (``param_names`` order) refitted on resample ``i``;
    ``lower``/``upper`` the ``level`` percentile interval; ``stderr`` the replicates' standard
    deviation; ``num_failed`` replicates whose refit failed (left out of the intervals).
    """

    param_names: tuple[str, ...]
    estimate: np.ndarray
    replicates: np.ndarray
    objectives: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    stderr: np.ndarray
    level: float
    by: str
    num_resamples: int
    num_failed: int
    seed: int

    def interval(self, name: str) -> tuple[float, float]:
        """The ``level`` interval of parameter ``name``."""
        if name not in self.param_names:
            raise ValueError(f"unknown parameter {name!r}; parameters are {list(self.param_names)}")
        i = self.param_names.index(name)
        return float(self.lower[i]), float(self.upper[i])

    def _html_sections(self) -> list[HtmlTable]:
        rows = [(name, f"{est:.6g}", f"[{lo:.4g}, {hi:.4g}]", f"{se:.3g}")
                for name, est, lo, hi, se in zip(self.param_names, self.estimate, self.lower, self.upper, self.stderr)]
        return [HtmlTable(f"{self.num_resamples - self.num_failed} of {self.num_resamples} resamples by {self.by} "
                          f"({self.num_failed} failed)",
                          ("parameter", "full-data fit", f"{self.level:.0%} interval", "bootstrap SE"), rows)]

    def plot(self, ax: Any = None, *, pair: tuple[str, str] | None = None) -> Any:
        """Scatter of the replicates of two parameters (default: the last two, e.g. alpha, beta)."""
        ax = axes_or_new(ax)
        a, b = pair or self.param_names[-2:]
        i, j = self.param_names.index(a), self.param_names.index(b)
        ax.scatter(self.replicates[:, i], self.replicates[:, j], s=6, alpha=0.4, color=MEASURED,
                   label=f"{len(self.replicates)} replicates")
        ax.plot(self.estimate[i], self.estimate[j], "x", color=PREDICTED, ms=9, label="full-data fit")
        ax.set_xlabel(a)
        ax.set_ylabel(b)
        ax.set_title(f"bootstrap by {self.by}, {self.level:.0%} intervals")
        ax.legend()
        return ax


def _resample_indices(rng: np.random.Generator, n: int, groups: np.ndarray | None) -> np.ndarray:
    if groups is None:
        return rng.integers(0, n, n)
    ids = np.unique(groups)
    drawn = rng.choice(ids, size=len(ids), replace=True)
    return np.concatenate([np.flatnonzero(groups == g) for g in drawn])


def refit(problem: Problem, theta0: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Refit from ``theta0`` and check for a better basin on a coarse exponent grid."""
    form = problem.form
    theta, value, _, _ = lbfgs(problem, theta0, Tolerance())
    if form.linear and form.nonlinear:
        grid_nat = nonlinear_natural(form, exponent_grid(problem, CHECK_GRID, seed))
        coef, values = profile(problem, grid_nat)
        for g in np.argsort(values)[:2]:
            if not values[g] < value * (1 - 1e-9):
                break
            start = completed_starts(problem, grid_nat[g], coef[g])[0]
            t2, v2, _, _ = lbfgs(problem, start, Tolerance())
            if v2 < value:
                theta, value = t2, v2
    return theta, value


def _run_chunk(args: tuple[Any, ...]) -> list[tuple[int, np.ndarray, float]]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # one BLAS thread per worker: the problems are small
        return _refit_many(*args)


def _refit_many(spec: dict[str, Any], X: dict[str, np.ndarray], y: np.ndarray, loss: Loss,
                groups: np.ndarray | None, theta0: np.ndarray, bounds: dict[str, Any], seed: int,
                indices: np.ndarray) -> list[tuple[int, np.ndarray, float]]:
    form = make_form(spec)
    lower, upper = theta_bounds(form, bounds)
    out = []
    for i in indices:
        rng = np.random.default_rng([seed, i])
        rows = _resample_indices(rng, len(y), groups)
        problem = Problem(form, {k: v[rows] for k, v in X.items()}, y[rows], loss, lower=lower, upper=upper)
        try:
            theta, value = refit(problem, theta0, seed)
            out.append((i, form.to_natural(theta), value))
        except (ValueError, np.linalg.LinAlgError):
            out.append((i, np.full(len(theta0), np.nan), np.nan))
    return out


def bootstrap(result: FitResult, n: int = 1000, *, seed: int = 0, by: Literal["rows", "runs"] = "rows",
              level: float = 0.95, workers: int = 1, progress: bool | None = None) -> BootstrapResult:
    """Refit ``result``'s law on ``n`` resamples; percentile intervals at ``level``.

    ``by="runs"`` needs the fit's ``groups`` column (a run id).  ``workers`` processes share the
    replicates; ``progress`` shows a progress bar (None: the automatic choice of
    :func:`theorylab.progress.progress_enabled`, on in Jupyter and on a terminal).
    """
    if not (isinstance(n, (int, np.integer)) and n >= 2):
        raise ValueError(f"n must be an integer >= 2, got {n}")
    if by not in ("rows", "runs"):
        raise ValueError(f"by must be 'rows' or 'runs', got {by!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be an integer >= 1, got {workers}")
    groups = None
    if by == "runs":
        if result.groups is None:
            raise ValueError("bootstrap by runs needs a run-id column: fit(..., groups='run')")
        groups = result.data[result.groups]
    form = result.law()
    X = {v: result.data[v] for v in result.variables}
    y = result.data[result.response]
    loss = Loss(**result.penalty)
    theta0 = form.to_theta(result.params)
    chunks = np.array_split(np.arange(n), max(1, min(n, workers * 8)))
    bounds = result.choices.get("bounds") or {}
    tasks = [(result.form, X, y, loss, groups, theta0, bounds, seed, c) for c in chunks if len(c)]
    found: list[tuple[int, np.ndarray, float]] = []
    with Stopwatch() as watch, progress_bar(n, desc="bootstrap", unit="fit", enabled=progress) as bar:
        if workers == 1:
            for task in tasks:
                found += _run_chunk(task)   # one BLAS thread here too
                bar.update(len(task[-1]))
        else:
            ctx = mp.get_context("fork" if os.name == "posix" else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                for part in pool.map(_run_chunk, tasks):
                    found += part
                    bar.update(len(part))
    found.sort(key=lambda t: t[0])
    reps = np.stack([f[1] for f in found])
    objectives = np.array([f[2] for f in found])
    ok = np.all(np.isfinite(reps), axis=1)
    if ok.sum() < 2:
        raise ValueError("fewer than 2 bootstrap refits succeeded; the fit is not stable under resampling")
    good = reps[ok]
    lower, upper = np.quantile(good, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return BootstrapResult(param_names=result.param_names, estimate=result.params, replicates=good,
                           objectives=objectives[ok], lower=lower, upper=upper, stderr=good.std(axis=0, ddof=1),
                           level=level, by=by, num_resamples=n, num_failed=int((~ok).sum()), seed=seed,
                           meta=make_meta(seed=seed, dtype="float64", device="cpu", workers=workers,
                                          wall_time_s=round(watch.seconds, 3)))
