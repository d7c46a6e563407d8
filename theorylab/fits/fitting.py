"""``fit``: fit a scaling law to a table of runs.

>>> from theorylab.datasets import load_chinchilla
>>> res = fit(load_chinchilla(), "chinchilla")          # Huber(1e-3) on log-loss, summed
>>> round(res["alpha"], 3), round(res["beta"], 3)
(0.347, 0.367)

The table is anything with named columns (a pandas DataFrame or a dict of arrays).  Input is
validated once here: the columns must exist, be finite and (for log-space losses and power-law
variables) positive; there must be more rows than parameters, no duplicate rows, and a response
that varies.  Starting values (``init``) and bounds (``bounds``) are in natural units.  A fit that
looks suspect (see :mod:`theorylab.fits.diagnostics`) carries its warnings in ``FitResult.warnings``
and raises them as :class:`~theorylab.fits.diagnostics.SuspectFitWarning`.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from theorylab.fits.forms import Form, annealing, broken, chinchilla, expression, kaplan, make_form, power
from theorylab.fits.losses import Loss, LossName, Reduction, Space
from theorylab.fits.choices import check_form_name
from theorylab.fits.diagnostics import SuspectFitWarning, suspect_fit_warnings
from theorylab.fits.optimize import (
    SEARCH_ROWS,
    OptimumReport,
    Problem,
    Tolerance,
    completed_starts,
    multistart_lbfgs,
    polish_on_all_rows,
    profile,
    random_starts,
    theta_bounds,
    variable_projection,
)
from theorylab.fits.result import FitResult
from theorylab.provenance import Stopwatch, make_meta

Method = Literal["auto", "varpro", "lbfgs"]


def resolve_form(form: str | Form | Mapping[str, Any], columns: Sequence[str], x: Sequence[str] | None,
                 *, breaks: int = 1, positive: Sequence[str] = ()) -> Form:
    """The Form named by ``form`` with its variables taken from ``x`` (or sensible defaults).

    Built-in names: ``chinchilla`` and ``kaplan`` (x = N, D), ``power`` and ``broken`` (one
    variable; default the first of N, D, C, x present), ``annealing`` (x = S1, S2).  Any other text
    is an expression; its variables are ``x`` or else the names in it that are columns; its
    ``positive`` parameters are fitted in log coordinates.  A single word that is not a built-in
    name is an unknown form (with the closest name suggested), not an expression.
    """
    if isinstance(form, Form):
        return form
    if isinstance(form, Mapping):
        return make_form(form)
    if not isinstance(form, str):
        raise ValueError(f"form must be a name, an expression or a Form, got {type(form).__name__}")
    x = list(x) if x else None
    if form in ("chinchilla", "kaplan"):
        n, d = x if x else ("N", "D")
        if x and len(x) != 2:
            raise ValueError(f"the {form} law needs two variables (model size, data), got x={x}")
        return chinchilla(n, d) if form == "chinchilla" else kaplan(n, d)
    if form in ("power", "broken"):
        if x and len(x) != 1:
            raise ValueError(f"the {form} law has one variable, got x={x}")
        var = x[0] if x else next((c for c in ("N", "D", "C", "x") if c in columns), None)
        if var is None:
            raise ValueError(f"the {form} law needs one variable: pass x=[column] (--x COL)")
        return power(var) if form == "power" else broken(var, breaks)
    if form == "annealing":
        s1, s2 = x if x else ("S1", "S2")
        return annealing(s1, s2)
    check_form_name(form)
    from theorylab.fits.expressions import parse_expression

    if not x:
        # names of the expression that are columns of the table are its variables
        _, names = parse_expression(form, variables=())
        x = [c for c in names if c in columns]
        if not x:
            raise ValueError(f"none of the names in {form!r} is a column of the data; pass x=[...] (--x COL)")
    _, params = parse_expression(form, variables=tuple(x))
    return expression(form, x, positive=[p for p in positive if p in params])


def table_columns(data: Any) -> dict[str, np.ndarray]:
    """The columns of a DataFrame or a mapping of arrays, as numpy arrays."""
    if hasattr(data, "columns") and hasattr(data, "__getitem__"):
        return {str(c): np.asarray(data[c]) for c in data.columns}
    if isinstance(data, Mapping):
        return {str(k): np.asarray(v) for k, v in data.items()}
    raise ValueError(f"data must be a table (DataFrame or dict of columns), got {type(data).__name__}")


def _numeric(name: str, values: np.ndarray) -> np.ndarray:
    try:
        out = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"column {name!r} is not numeric") from None
    if out.ndim != 1:
        raise ValueError(f"column {name!r} must be one-dimensional")
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        raise ValueError(f"column {name!r} has {bad.size} non-finite value(s) (first at row {bad[0]})")
    return out


def validate(form: Form, columns: Mapping[str, np.ndarray], response: str, loss: Loss,
             groups: str | None) -> dict[str, np.ndarray]:
    """Check the table for ``form`` and return the numeric columns used (variables, response, extras)."""
    needed = list(form.variables) + [response] + ([groups] if groups else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; the table has {sorted(columns)}")
    out = {c: _numeric(c, columns[c]) for c in needed if c != groups}
    n = len(out[response])
    if any(len(v) != n for v in out.values()):
        raise ValueError("columns have different lengths")
    for c in list(form.positive_variables) + ([response] if loss.space == "log" else []):
        bad = np.flatnonzero(out[c] <= 0)
        if bad.size:
            why = "log-scale loss" if c == response else "a power-law variable"
            raise ValueError(f"column {c!r} has {bad.size} non-positive value(s) (first at row {bad[0]}); "
                             f"{why} needs values > 0")
    if n <= len(form.params):
        raise ValueError(f"too few points for the {form.name} law: {n} rows for {len(form.params)} parameters "
                         f"(need more rows than parameters)")
    _check_duplicates(columns)
    if np.ptp(out[response]) == 0:
        raise ValueError(f"column {response!r} has the same value {out[response][0]:g} in every row; "
                         "a law cannot be fitted to a constant")
    for extra in ("C", "step", "run", "seed"):
        if extra in columns and extra not in out and extra != groups:
            try:
                values = np.asarray(columns[extra], dtype=float)
                if values.shape == (n,):
                    out[extra] = values
            except (TypeError, ValueError):
                pass
    if groups:
        out[groups] = np.unique(np.asarray(columns[groups]).astype(str), return_inverse=True)[1].astype(float)
    return out


def _check_duplicates(columns: Mapping[str, np.ndarray]) -> None:
    """Raise if two rows are equal in every column (vectorised: fine for millions of rows)."""
    table = pd.DataFrame({k: np.asarray(v) for k, v in columns.items()})
    repeated = table.duplicated().to_numpy()
    if not repeated.any():
        return
    i = int(np.argmax(repeated))
    earlier = table.iloc[:i]
    same = (earlier.eq(table.iloc[i]) | (earlier.isna() & table.iloc[i].isna())).all(axis=1).to_numpy()
    raise ValueError(f"duplicate rows: row {i} repeats row {int(np.argmax(same))} in every column; "
                     "remove duplicates or aggregate them")


def fit(data: Any, form: str | Form | Mapping[str, Any] = "chinchilla", *, x: Sequence[str] | None = None,
        y: str = "loss", penalty: LossName = "huber", delta: float = 1e-3, space: Space = "log",
        reduction: Reduction = "sum", method: Method = "auto", starts: int | np.ndarray = 64,
        grid_size: int = 2500, polish: int = 4, breaks: int = 1, groups: str | None = None,
        init: Mapping[str, float] | None = None, bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
        tolerance: Literal["scaled", "scipy-default"] = "scaled", seed: int = 0) -> FitResult:
    """Fit ``form`` to the rows of ``data`` and return a :class:`FitResult`.

    ``penalty``/``delta``/``space``/``reduction``: the objective, a penalty (Huber with ``delta``, squared or
    absolute error) on residuals in log or raw ``space``, summed or averaged (:mod:`theorylab.fits.losses`).
    ``method="varpro"``: variable projection with an exponent grid of ``grid_size`` points and
    ``polish`` L-BFGS polishes; ``"lbfgs"``: multi-start L-BFGS from ``starts`` (a count of random
    starts in the form's box, or an array of starting points in optimiser coordinates); ``"auto"``
    is varpro when the law has linear coefficients, else lbfgs.  ``init``: starting values
    ``{param: value}`` (natural units; the others are completed by NNLS or the box centre), run as
    one more start.  ``bounds``: ``{param: (low, high)}`` (natural units, None for no bound), kept by
    L-BFGS-B; an expression's parameter with a positive lower bound is fitted in log coordinates.
    On more than :data:`~theorylab.fits.optimize.SEARCH_ROWS` rows the starts run on a random
    subset and the best is polished on all rows.  ``groups`` names a run-id column (bootstrap by
    runs).  ``tolerance="scipy-default"`` uses scipy's unscaled default stopping rule -- only to
    demonstrate the early-stopping pitfall.
    """
    for name, value, allowed in (("method", method, ("auto", "varpro", "lbfgs")),
                                 ("tolerance", tolerance, ("scaled", "scipy-default"))):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if not (isinstance(grid_size, int) and grid_size >= 1 and isinstance(polish, int) and polish >= 1):
        raise ValueError(f"grid_size and polish must be integers >= 1, got {grid_size}, {polish}")
    if isinstance(starts, (int, np.integer)) and starts < 1:
        raise ValueError(f"starts must be >= 1, got {starts}")
    columns = table_columns(data)
    bounds = _natural_pairs(bounds)
    positive = [p for p, (lo, _) in bounds.items() if lo is not None and lo > 0]
    law = resolve_form(form, list(columns), x, breaks=breaks, positive=positive)
    theta_bounds(law, bounds)  # names and values checked here, before any work
    init = _starting_values(law, init, bounds)
    spec = Loss(penalty, delta, space, reduction)
    used = validate(law, columns, y, spec, groups)
    if method == "varpro" and not law.linear:
        raise ValueError(f"the {law.name} law has no linear coefficients for variable projection; use method='lbfgs'")
    choices = {"method": method, "starts": starts if isinstance(starts, (int, np.integer)) else np.asarray(starts),
               "grid_size": grid_size, "polish": polish, "tolerance": tolerance, "seed": seed,
               "init": init, "bounds": {k: list(v) for k, v in bounds.items()}}
    result = fit_arrays(law, used, y, spec, choices, groups=groups)
    if result.warnings:
        warnings.warn(SuspectFitWarning("suspect fit: " + "; ".join(result.warnings)), stacklevel=2)
    return result


def _natural_pairs(bounds: Mapping[str, Any] | None) -> dict[str, tuple[float | None, float | None]]:
    """Bounds as ``{name: (low or None, high or None)}`` (infinite values become None)."""
    if bounds is None:
        return {}
    if not isinstance(bounds, Mapping):
        raise ValueError(f"bounds must be a dict {{param: (low, high)}}, got {type(bounds).__name__}")
    out = {}
    for name, pair in bounds.items():
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ValueError(f"bounds of {name} must be a pair (low, high), got {pair!r}")
        values = []
        for v in pair:
            try:
                v = None if v is None else float(v)
            except (TypeError, ValueError):
                raise ValueError(f"bounds of {name} must be numbers or None, got {pair!r}") from None
            values.append(None if v is None or np.isinf(v) else v)
        out[str(name)] = (values[0], values[1])
    return out


def _starting_values(law: Form, init: Mapping[str, float] | None,
                     bounds: Mapping[str, tuple[float | None, float | None]]) -> dict[str, float]:
    """``init`` checked against the law's parameters, its positive ones and the bounds."""
    out = {}
    for name, value in (init or {}).items():
        if name not in law.params:
            raise ValueError(f"init name {name!r} is not a parameter of the {law.name} law; "
                             f"parameters: {list(law.params)}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"init value of {name} must be a number, got {value!r}") from None
        if not np.isfinite(value) or (name in law.positive and value <= 0):
            raise ValueError(f"init value of {name} must be finite{' and > 0' if name in law.positive else ''}, "
                             f"got {value:g}")
        lo, hi = bounds.get(name, (None, None))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"init value of {name} ({value:g}) lies outside its bounds ({lo}, {hi})")
        out[name] = value
    return out


def fit_arrays(law: Form, data: dict[str, np.ndarray], response: str, loss: Loss, choices: dict[str, Any],
               *, groups: str | None = None) -> FitResult:
    """The fit itself on validated columns (used by :func:`fit`, bootstrap and backtests)."""
    X = {v: data[v] for v in law.variables}
    lower, upper = theta_bounds(law, choices.get("bounds"))
    problem = Problem(law, X, data[response], loss, lower=lower, upper=upper)
    search = problem.subset(SEARCH_ROWS, choices["seed"])
    tol = Tolerance() if choices["tolerance"] == "scaled" else Tolerance.scipy_default()
    method = choices["method"]
    if method == "auto":
        method = "varpro" if law.linear else "lbfgs"
    with Stopwatch() as watch, threadpool_limits(1):   # tiny problems: BLAS threads only contend
        first = _initial_point(search, choices.get("init") or {}, method)
        if method == "varpro":
            report = variable_projection(search, grid_size=choices["grid_size"], polish=choices["polish"],
                                         seed=choices["seed"], tol=tol, extra_starts=first)
        else:
            starts = choices["starts"]
            if isinstance(starts, (int, np.integer)):
                starts = random_starts(search, int(starts), choices["seed"])
            if first is not None:
                starts = np.concatenate([first, np.atleast_2d(starts)])
            report = multistart_lbfgs(search, starts, tol)
        if search is not problem:
            report = polish_on_all_rows(problem, report, tol)
    return _result(law, data, response, loss, choices, method, report, groups, watch.seconds)


def _initial_point(problem: Problem, init: Mapping[str, float], method: str) -> np.ndarray | None:
    """The user's starting values as a full start (optimiser coordinates), or None without any.

    Missing linear coefficients (variable projection) are solved by NNLS at the given exponents;
    other missing parameters start at the centre of their starting box.
    """
    if not init:
        return None
    form = problem.form
    box = problem.start_box()
    natural = {}
    for p in form.params:
        mid = 0.5 * (box[p][0] + box[p][1])
        natural[p] = init.get(p, float(np.exp(mid)) if p in form.positive else mid)
    if method == "varpro" and any(p not in init for p in form.linear):
        nonlinear = np.array([[natural[p] for p in form.nonlinear]])
        coef, _ = profile(problem, nonlinear)
        solved = completed_starts(problem, nonlinear, coef)[0]
        natural.update({p: v for p, v in zip(form.params, form.to_natural(solved)) if p not in init})
    return form.to_theta(np.array([[natural[p] for p in form.params]]))


def _result(law: Form, data: dict[str, np.ndarray], response: str, loss: Loss, choices: dict[str, Any],
            method: str, report: OptimumReport, groups: str | None, seconds: float) -> FitResult:
    X = {v: data[v] for v in law.variables}
    y = data[response]
    params = law.to_natural(report.theta)
    pred = law.predict(X, params)
    r = loss.residuals(pred, y)
    n, k = len(y), len(params)
    jac = law.jacobian(X, params)
    if loss.space == "log":
        jac = jac / pred[:, None]
    rss = float(r @ r)
    s2 = rss / max(n - k, 1)
    cov, rank = _covariance(jac, s2)
    stderr = np.sqrt(np.maximum(np.diag(cov), 0.0))
    loglik_term = n * np.log(max(rss, 1e-300) / n)
    lower, upper = theta_bounds(law, choices.get("bounds"))
    suspect = suspect_fit_warnings(law, X, y, response, params, stderr, rank, report, lower, upper)
    return FitResult(
        form=law.spec, formula=law.formula(), variables=law.variables, response=response,
        param_names=law.params, params=params, stderr=stderr, covariance=cov, objective=report.objective,
        aic=float(loglik_term + 2 * k), bic=float(loglik_term + k * np.log(n)), num_points=n, residuals=r,
        penalty=loss.to_dict(), method=method, num_starts=report.num_starts, num_reached=report.num_reached,
        converged=report.converged, choices=dict(choices), data=dict(data), groups=groups,
        warnings=tuple(suspect), meta=make_meta(seed=choices["seed"], dtype="float64", device="cpu", wall_time_s=round(seconds, 4),
                       num_evaluations=report.evaluations, optimizer_message=report.message))


def _covariance(jac: np.ndarray, s2: float) -> tuple[np.ndarray, int]:
    """The Gauss-Newton covariance ``s2 (J'J)^-1`` and the numerical rank of ``J``.

    Columns are scaled to unit norm first (parameters of any magnitude); a rank-deficient ``J``
    (parameters the data cannot tell apart) gives NaN covariances rather than the pseudo-inverse's
    finite but meaningless numbers.
    """
    P = jac.shape[1]
    if not np.all(np.isfinite(jac)):
        return np.full((P, P), np.nan), 0
    scale = np.linalg.norm(jac, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    scaled = jac / scale
    singular = np.linalg.svd(scaled, compute_uv=False)
    rank = int(np.sum(singular > singular[0] * 1e-10)) if singular.size and singular[0] > 0 else 0
    if rank < P:
        return np.full((P, P), np.nan), rank
    return s2 * np.linalg.inv(scaled.T @ scaled) / np.outer(scale, scale), rank
