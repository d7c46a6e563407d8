"""Polynomial or exponential convergence? Fit both laws to an error sequence and pick the better one.

Two laws, each a straight line after taking logs (least squares on ``log error``):

* polynomial  ``e(T) = A T^-p``      ->  ``log e = log A - p log T``
* exponential ``e(T) = A exp(-c T)`` ->  ``log e = log A - c T``

Both have two parameters, so the residual sums of squares compare directly; the log-likelihood ratio
under Gaussian errors in ``log e`` is ``(m/2) log(RSS_poly / RSS_exp)`` (``m`` points), positive when the
exponential law fits better (Burnham & Anderson 2002: equal parameter counts make AIC and BIC
differences equal to this ratio, times -2).  The fitted rate's standard error is the ordinary
least-squares one (residual variance times ``(X^T X)^-1``), which assumes independent scatter around
the law: for a deterministic sequence it measures how far the sequence is from a pure law.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from theorylab.plotting import MEASURED, PREDICTED, axes_or_new
from theorylab.provenance import make_meta
from theorylab.results import Result, result_class

Law = Literal["polynomial", "exponential"]


@result_class
class RateFit(Result):
    """The two fits and the decision between them.

    ``exponent`` (``p`` of ``T^-p``) and ``rate`` (``c`` of ``exp(-cT)``) come with OLS standard errors;
    ``log_likelihood_ratio > 0`` favours the exponential law.  ``law`` is the better fit; ``decisive``
    is True when the ratio exceeds ``threshold`` in absolute value (default ``log 100``: one law makes
    the data at least 100 times likelier).
    """

    law: str
    exponent: float
    exponent_stderr: float
    rate: float
    rate_stderr: float
    polynomial_prefactor: float
    exponential_prefactor: float
    rss_polynomial: float
    rss_exponential: float
    log_likelihood_ratio: float
    decisive: bool
    times: np.ndarray
    errors: np.ndarray

    def predict(self, times: np.ndarray, law: Law | None = None) -> np.ndarray:
        """The fitted law (``law``, default the chosen one) at ``times``."""
        law = law or self.law  # type: ignore[assignment]
        t = np.asarray(times, dtype=np.float64)
        if law == "polynomial":
            return self.polynomial_prefactor * t ** (-self.exponent)
        return self.exponential_prefactor * np.exp(-self.rate * t)

    def plot(self, ax: Any = None) -> Any:
        """The error sequence (log-log) with both fitted laws; the chosen one solid."""
        ax = axes_or_new(ax)
        ax.loglog(self.times, self.errors, ".", color=MEASURED, label="error")
        for law, label in (("polynomial", f"T^-{self.exponent:.3g}"), ("exponential", f"exp(-{self.rate:.3g} T)")):
            ax.loglog(self.times, self.predict(self.times, law), color=PREDICTED,  # type: ignore[arg-type]
                      ls="-" if law == self.law else ":", label=label)
        ax.set_xlabel("T")
        ax.set_ylabel("error")
        ax.set_title(f"{self.law}{'' if self.decisive else ' (not decisive)'}")
        ax.legend()
        return ax


def line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Least squares ``y = a + b x``: (a, b, stderr of b, residual sum of squares).

    The standard error uses the residual variance ``rss / (n - 2)`` (NaN for two points); on
    ``log x, log y`` this is the exponent of a power law with its uncertainty.
    """
    design = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    rss = float(resid @ resid)
    dof = len(x) - 2
    cov = (rss / dof) * np.linalg.inv(design.T @ design) if dof > 0 else np.full((2, 2), np.nan)
    return float(coef[0]), float(coef[1]), float(math.sqrt(max(cov[1, 1], 0.0))), rss


def fit_rate(times: np.ndarray, errors: np.ndarray, *, threshold: float = math.log(100.0)) -> RateFit:
    """Fit ``errors ~ A T^-p`` and ``errors ~ A exp(-c T)`` to the sequence and decide which it follows.

    ``times`` must be positive and strictly increasing, ``errors`` positive and finite (at least 4
    points).  Pass the asymptotic part of a sequence: the laws describe tails, not transients.
    """
    t = np.asarray(times, dtype=np.float64).ravel()
    e = np.asarray(errors, dtype=np.float64).ravel()
    if t.shape != e.shape:
        raise ValueError(f"times and errors must have the same length, got {t.size} and {e.size}")
    if t.size < 4:
        raise ValueError(f"need at least 4 points to fit and compare two 2-parameter laws, got {t.size}")
    if not (np.all(np.isfinite(t)) and np.all(t > 0) and np.all(np.diff(t) > 0)):
        raise ValueError("times must be finite, positive and strictly increasing")
    if not (np.all(np.isfinite(e)) and np.all(e > 0)):
        raise ValueError("errors must be finite and > 0 (the laws are fitted to log(error))")
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a finite number > 0, got {threshold}")
    log_e = np.log(e)
    a_pol, b_pol, se_pol, rss_pol = line_fit(np.log(t), log_e)
    a_exp, b_exp, se_exp, rss_exp = line_fit(t, log_e)
    tiny = 1e-300  # an exact law has RSS 0: keep the ratio finite
    llr = 0.5 * t.size * math.log((rss_pol + tiny) / (rss_exp + tiny))
    return RateFit(law="exponential" if llr > 0 else "polynomial", exponent=-b_pol, exponent_stderr=se_pol,
                   rate=-b_exp, rate_stderr=se_exp, polynomial_prefactor=math.exp(a_pol),
                   exponential_prefactor=math.exp(a_exp), rss_polynomial=rss_pol, rss_exponential=rss_exp,
                   log_likelihood_ratio=llr, decisive=abs(llr) > threshold, times=t, errors=e,
                   meta=make_meta(num_points=int(t.size)))
