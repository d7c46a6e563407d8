"""Warnings for fits that look suspect: a converged optimiser is not yet a trustworthy law.

:func:`suspect_fit_warnings` checks a finished fit for

* an optimiser that did not converge;
* parameters at a bound (a user's bound, or the limit 0 of a positive parameter whose term
  contributes nothing to the prediction);
* standard errors that are undefined (a Jacobian of deficient rank: the data do not identify the
  parameters) or larger than the value itself;
* an alternative optimum: another start ended at parameters that differ from the best by more than
  three standard errors with an objective that an approximate likelihood-ratio test cannot tell
  apart from the best (``m log(F_alt / F_best) <= chi2_P(0.95)`` over the ``m`` rows searched;
  exact for least squares, an approximation for Huber and absolute losses);
* a direction that contradicts the law's meaning: a law meant to fall with a variable (the
  built-in scaling laws fall with model size, data and compute) that rises with it at most rows,
  or, for an expression, a law whose slope opposes the data's clear trend (Spearman's rank
  correlation ``|rho| >= 0.5``) at most rows.

Each warning is one sentence naming the parameter or variable; they are stored in
``FitResult.warnings`` and raised as :class:`SuspectFitWarning` by :func:`theorylab.fits.fit`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from theorylab.fits.forms import Form

if TYPE_CHECKING:
    from theorylab.fits.optimize import OptimumReport

#: a positive parameter whose term is below this fraction of every response value sits at 0
NEGLIGIBLE_TERM = 1e-6
#: data trends with Spearman |rho| at least this clear are compared with the law's slopes
CLEAR_TREND = 0.5


class SuspectFitWarning(UserWarning):
    """A fit finished, but its optimum or its parameters look unreliable (see the message)."""


def suspect_fit_warnings(law: Form, X: Mapping[str, np.ndarray], y: np.ndarray, response: str,
                         params: np.ndarray, stderr: np.ndarray, rank: int, report: OptimumReport,
                         lower: np.ndarray, upper: np.ndarray) -> list[str]:
    """The warnings of a fit with natural ``params``, ``stderr``, Jacobian ``rank`` and bounds
    ``lower``/``upper`` in optimiser coordinates (see the module docstring)."""
    found = []
    if not report.converged:
        found.append(f"the optimiser did not converge ({report.message})")
    bounded = _at_bounds(law, X, y, params, report.theta, lower, upper)
    found += [text for _, text in bounded]
    found += _uncertain(law, params, stderr, rank, skip={name for name, _ in bounded})
    found += _alternative_optimum(law, params, stderr, report, len(y))
    found += _against_direction(law, X, y, response, params)
    return found


def _at_bounds(law: Form, X: Mapping[str, np.ndarray], y: np.ndarray, params: np.ndarray, theta: np.ndarray,
               lower: np.ndarray, upper: np.ndarray) -> list[tuple[str, str]]:
    """(parameter, warning) for each parameter at a bound."""
    out = []
    for i, name in enumerate(law.params):
        for bound, side in ((lower[i], "lower"), (upper[i], "upper")):
            if np.isfinite(bound) and abs(theta[i] - bound) <= 1e-6 * max(1.0, abs(bound)):
                value = np.exp(bound) if name in law.positive else bound
                out.append((name, f"{name} = {params[i]:.4g} is at its {side} bound {value:.4g}"))
    terms = np.abs(law.jacobian(X, params) * params)  # p df/dp: the part of the prediction owed to p
    for i, name in enumerate(law.params):
        if name in law.positive and np.all(terms[:, i] <= NEGLIGIBLE_TERM * np.abs(y)):
            out.append((name, f"{name} = {params[i]:.3g} is at its lower limit 0: its term contributes nothing"))
    return out


def _uncertain(law: Form, params: np.ndarray, stderr: np.ndarray, rank: int, skip: set[str]) -> list[str]:
    """Undefined or huge standard errors (``skip``: parameters already reported at a bound)."""
    if rank < len(params):
        return [f"the data do not identify the parameters (Jacobian of rank {rank} for {len(params)} "
                "parameters): standard errors are undefined"]
    out = []
    for name, value, se in zip(law.params, params, stderr):
        if name in skip:
            continue
        if not np.isfinite(se):
            out.append(f"the standard error of {name} is undefined")
        elif se > abs(value):
            out.append(f"the standard error of {name} ({se:.3g}) exceeds its value ({value:.3g}): "
                       "the data barely determine it")
    return out


def _alternative_optimum(law: Form, params: np.ndarray, stderr: np.ndarray, report: OptimumReport,
                         n_rows: int) -> list[str]:
    objectives = np.asarray(report.all_objectives, dtype=float)
    finite = np.isfinite(objectives)
    if finite.sum() < 2:
        return []
    best = int(np.nanargmin(np.where(finite, objectives, np.nan)))
    threshold = stats.chi2.ppf(0.95, len(params))
    # standard errors of the rows searched (a subset has larger ones)
    spread = 3 * stderr * np.sqrt(n_rows / report.search_rows)
    reference = law.to_natural(report.all_thetas[best])
    for j in np.flatnonzero(finite):
        if j == best:
            continue
        statistic = report.search_rows * np.log(max(objectives[j], 1e-300) / max(objectives[best], 1e-300))
        if statistic > threshold:
            continue
        other = law.to_natural(report.all_thetas[j])
        far = np.abs(other - reference) > np.maximum(spread, 1e-3 * np.abs(reference))
        if np.any(far):
            shown = ", ".join(f"{law.params[i]} {other[i]:.4g} (best {reference[i]:.4g})" for i in np.flatnonzero(far))
            return [f"another start reached a different optimum that fits about as well "
                    f"(objective {objectives[j]:.6g} vs {objectives[best]:.6g}): {shown}"]
    return []


def _against_direction(law: Form, X: Mapping[str, np.ndarray], y: np.ndarray, response: str,
                       params: np.ndarray) -> list[str]:
    slopes = law.slopes(X, params)
    out = []
    for j, var in enumerate(law.variables):
        if law.decreasing is not None:
            if var not in law.decreasing:
                continue
            expected, why = -1.0, f"though the {law.name} law is meant to fall with {var}"
        else:
            rho = stats.spearmanr(X[var], y).statistic
            if not (np.isfinite(rho) and abs(rho) >= CLEAR_TREND):
                continue
            expected = float(np.sign(rho))
            why = f"but {response} {'rises' if rho > 0 else 'falls'} with {var} in the data (Spearman {rho:.2f})"
        against = np.mean(np.sign(slopes[:, j]) == -expected)
        if against > 0.5:
            verb = "rises" if expected < 0 else "falls"
            out.append(f"the fitted law {verb} with {var} at {against:.0%} of the rows, {why}")
    return out
