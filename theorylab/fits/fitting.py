"""``fit``: fit a scaling law to a table of runs.

>>> from theorylab.datasets import load_chinchilla
>>> res = fit(load_chinchilla(), "chinchilla")          # Huber(1e-3) on log-loss, summed
>>> round(res["alpha"], 3), round(res["beta"], 3)
(0.347, 0.367)

The table is anything with named columns (a pandas DataFrame or a dict of arrays).  Input is
validated once here: the columns must exist, be finite and (for log-space losses and power-law
variables) positive; there must be more rows than parameters and no duplicate rows.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from threadpoolctl import threadpool_limits

from theorylab.fits.forms import Form, annealing, broken, chinchilla, expression, kaplan, make_form, power
from theorylab.fits.losses import Loss, LossName, Reduction, Space
from theorylab.fits.optimize import (
    OptimumReport,
    Problem,
    Tolerance,
    multistart_lbfgs,
    random_starts,
    variable_projection,
)
from theorylab.fits.result import FitResult
from theorylab.provenance import Stopwatch, make_meta

Method = Literal["auto", "varpro", "lbfgs"]
FORM_NAMES = ("chinchilla", "power", "kaplan", "broken", "annealing")


def resolve_form(form: str | Form | Mapping[str, Any], columns: Sequence[str], x: Sequence[str] | None,
                 *, breaks: int = 1) -> Form:
    """The Form named by ``form`` with its variables taken from ``x`` (or sensible defaults).

    Built-in names: ``chinchilla`` and ``kaplan`` (x = N, D), ``power`` and ``broken`` (one
    variable; default the first of N, D, C, x present), ``annealing`` (x = S1, S2).  Any other text
    is an expression; its variables are ``x`` or else the names in it that are columns.
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
    from theorylab.fits.expressions import parse_expression

    if not x:
        # names of the expression that are columns of the table are its variables
        _, names = parse_expression(form, variables=())
        x = [c for c in names if c in columns]
        if not x:
            raise ValueError(f"none of the names in {form!r} is a column of the data; pass x=[...] (--x COL)")
    return expression(form, x)


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
    seen: dict[tuple[Any, ...], int] = {}
    for i, row in enumerate(zip(*(np.asarray(v).tolist() for v in columns.values()))):
        if row in seen:
            raise ValueError(f"duplicate rows: row {i} repeats row {seen[row]} in every column; "
                             "remove duplicates or aggregate them")
        seen[row] = i
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


def fit(data: Any, form: str | Form | Mapping[str, Any] = "chinchilla", *, x: Sequence[str] | None = None,
        y: str = "loss", loss: LossName = "huber", delta: float = 1e-3, space: Space = "log",
        reduction: Reduction = "sum", method: Method = "auto", starts: int | np.ndarray = 64,
        grid_size: int = 2500, polish: int = 4, breaks: int = 1, groups: str | None = None,
        tolerance: Literal["scaled", "scipy-default"] = "scaled", seed: int = 0) -> FitResult:
    """Fit ``form`` to the rows of ``data`` and return a :class:`FitResult`.

    ``loss``/``delta``/``space``/``reduction``: the objective (:mod:`theorylab.fits.losses`).
    ``method="varpro"``: variable projection with an exponent grid of ``grid_size`` points and
    ``polish`` L-BFGS polishes; ``"lbfgs"``: multi-start L-BFGS from ``starts`` (a count of random
    starts in the form's box, or an array of starting points in optimiser coordinates); ``"auto"``
    is varpro when the law has linear coefficients, else lbfgs.  ``groups`` names a run-id column
    (bootstrap by runs).  ``tolerance="scipy-default"`` uses scipy's unscaled default stopping
    rule -- only to demonstrate the early-stopping pitfall.
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
    law = resolve_form(form, list(columns), x, breaks=breaks)
    spec = Loss(loss, delta, space, reduction)
    used = validate(law, columns, y, spec, groups)
    if method == "varpro" and not law.linear:
        raise ValueError(f"the {law.name} law has no linear coefficients for variable projection; use method='lbfgs'")
    choices = {"method": method, "starts": starts if isinstance(starts, (int, np.integer)) else np.asarray(starts),
               "grid_size": grid_size, "polish": polish, "tolerance": tolerance, "seed": seed}
    return fit_arrays(law, used, y, spec, choices, groups=groups)


def fit_arrays(law: Form, data: dict[str, np.ndarray], response: str, loss: Loss, choices: dict[str, Any],
               *, groups: str | None = None) -> FitResult:
    """The fit itself on validated columns (used by :func:`fit`, bootstrap and backtests)."""
    X = {v: data[v] for v in law.variables}
    yv = data[response]
    problem = Problem(law, X, yv, loss)
    tol = Tolerance() if choices["tolerance"] == "scaled" else Tolerance.scipy_default()
    method = choices["method"]
    if method == "auto":
        method = "varpro" if law.linear else "lbfgs"
    with Stopwatch() as watch, threadpool_limits(1):   # tiny problems: BLAS threads only contend
        if method == "varpro":
            report = variable_projection(problem, grid_size=choices["grid_size"], polish=choices["polish"],
                                         seed=choices["seed"], tol=tol)
        else:
            starts = choices["starts"]
            if isinstance(starts, (int, np.integer)):
                starts = random_starts(law, X, yv, int(starts), choices["seed"])
            report = multistart_lbfgs(problem, starts, tol)
    return _result(law, data, response, loss, choices, method, report, groups, watch.seconds)


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
    scale = np.linalg.norm(jac, axis=0)
    scale = np.where(scale > 0, scale, 1.0)                 # column scaling: parameters of any magnitude
    cov = s2 * np.linalg.pinv((jac / scale).T @ (jac / scale)) / np.outer(scale, scale)
    stderr = np.sqrt(np.maximum(np.diag(cov), 0.0))
    loglik_term = n * np.log(max(rss, 1e-300) / n)
    return FitResult(
        form=law.spec, formula=law.formula(), variables=law.variables, response=response,
        param_names=law.params, params=params, stderr=stderr, covariance=cov, objective=report.objective,
        aic=float(loglik_term + 2 * k), bic=float(loglik_term + k * np.log(n)), n_points=n, residuals=r,
        loss=loss.to_dict(), method=method, n_starts=report.n_starts, n_reached=report.n_reached,
        converged=report.converged, choices=dict(choices), data=dict(data), groups=groups,
        meta=make_meta(seed=choices["seed"], dtype="float64", device="cpu", wall_time_s=round(seconds, 4),
                       num_evaluations=report.evaluations, optimizer_message=report.message))
