"""Optimisers: multi-start L-BFGS with exact gradients, and variable projection.

Both minimise the same objective ``F(theta) = reduce_i rho(r_i(theta))`` (see
:mod:`theorylab.fits.losses`) over the optimiser coordinates ``theta`` of a :class:`Form`.

* :func:`multistart_lbfgs` runs L-BFGS-B (scipy) from many starting points with the exact
  gradient ``dF/dtheta = sum_i rho'(r_i) dr_i/dtheta`` (the form's sympy Jacobian, chain rule
  through ``p = exp(theta)`` for positive parameters).  Stopping tolerances are *relative to the
  objective*: the solver sees ``F / F(theta_0)``, so a small objective (a mean instead of a sum, or
  a near-perfect fit) does not stop it early (the pitfall of Hoffmann et al. 2022, see
  Besiroglu et al. 2024).  It reports how many starts reached the best objective.
* :func:`variable_projection` uses that the law is linear in its non-negative coefficients
  (``E, A, B`` of Chinchilla) once the exponents are fixed (Golub & Pereyra 1973; for Chinchilla,
  Czech 2026): on a grid of exponents the coefficients are solved exactly by non-negative least
  squares on relative residuals (``(f - y) / y ~ log f - log y``), the stated objective is evaluated
  at each grid point, and the best few grid points are polished jointly in all parameters by the
  L-BFGS above.  It searches only the exponents, so a few polishes replace thousands of starts.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from theorylab.fits.forms import Form
from theorylab.fits.losses import Loss

#: two objectives within this relative distance count as the same optimum
SAME_OPTIMUM_RTOL = 1e-7


@dataclass(frozen=True)
class Tolerance:
    """L-BFGS-B stopping rule.  ``scaled=True`` divides the objective by its value at the start.

    ``scaled=False`` with scipy's defaults (ftol 2.2e-9, gtol 1e-5) reproduces the early stopping
    that biases fits of small objectives; it exists to demonstrate that pitfall.
    """

    ftol: float = 1e-15
    gtol: float = 1e-10
    maxiter: int = 20000
    scaled: bool = True
    #: stop once the scaled objective is below this: an exact fit, residuals at rounding level
    exact: float = 1e-26

    @classmethod
    def scipy_default(cls) -> Tolerance:
        return cls(ftol=2.220446049250313e-09, gtol=1e-5, maxiter=15000, scaled=False, exact=0.0)


class Problem:
    """The objective of fitting ``form`` to the rows ``(X, y)`` with ``loss``, and its gradient."""

    def __init__(self, form: Form, X: Mapping[str, np.ndarray], y: np.ndarray, loss: Loss):
        self.form, self.loss = form, loss
        self.X = {v: np.asarray(X[v], dtype=float) for v in form.variables}
        self.y = np.asarray(y, dtype=float)
        self.log_mask = form.log_mask
        self.evaluations = 0

    def value(self, theta: np.ndarray) -> float:
        self.evaluations += 1
        return float(self.loss.objective(self.form.predict(self.X, self.form.to_natural(theta)), self.y))

    def value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """``F(theta)`` and ``dF/dtheta`` (``inf`` and zeros where the law is undefined)."""
        self.evaluations += 1
        params = self.form.to_natural(theta)
        pred = self.form.predict(self.X, params)
        r = self.loss.residuals(pred, self.y)
        if not np.all(np.isfinite(r)):
            return np.inf, np.zeros_like(theta)
        jac = self.form.jacobian(self.X, params)                       # (n, P) d f / d p
        jac = jac * np.where(self.log_mask, params, 1.0)                # d f / d theta
        if self.loss.space == "log":
            jac = jac / pred[:, None]                                   # d r / d theta
        w = self.loss.drho(r)
        grad = w @ jac
        value = self.loss.rho(r).sum()
        if self.loss.reduction == "mean":
            value, grad = value / len(r), grad / len(r)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return np.inf, np.zeros_like(theta)
        return float(value), grad


@dataclass(frozen=True)
class OptimumReport:
    """The outcome of an optimisation: the best point and how the starts fared."""

    theta: np.ndarray
    objective: float
    n_starts: int
    n_reached: int
    converged: bool
    message: str
    evaluations: int
    all_objectives: np.ndarray


def lbfgs(problem: Problem, theta0: np.ndarray, tol: Tolerance = Tolerance()) -> tuple[np.ndarray, float, bool, str]:
    """One L-BFGS-B run from ``theta0``: (theta, objective, converged, message)."""
    f0, _ = problem.value_and_grad(theta0)
    if not np.isfinite(f0):
        return np.asarray(theta0, dtype=float), np.inf, False, "undefined at the start"
    scale = f0 if (tol.scaled and f0 > 0) else 1.0

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = problem.value_and_grad(theta)
        return value / scale, grad / scale

    def exact_fit(intermediate_result: Any) -> None:
        if intermediate_result.fun < tol.exact:
            raise StopIteration

    res = minimize(fun, np.asarray(theta0, dtype=float), jac=True, method="L-BFGS-B", callback=exact_fit,
                   options={"ftol": tol.ftol, "gtol": tol.gtol, "maxiter": tol.maxiter, "maxcor": 20})
    value = problem.value(res.x)
    exact = value / scale < tol.exact
    message = "exact fit: objective at rounding level" if exact else str(res.message)
    return res.x, value, bool(res.success or exact), message


def multistart_lbfgs(problem: Problem, starts: np.ndarray, tol: Tolerance = Tolerance()) -> OptimumReport:
    """L-BFGS-B from every row of ``starts`` (optimiser coordinates); keep the best."""
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    if starts.shape[1] != len(problem.form.params):
        raise ValueError(f"starts need {len(problem.form.params)} columns ({problem.form.params}), "
                         f"got {starts.shape[1]}")
    results = [lbfgs(problem, s, tol) for s in starts]
    objectives = np.array([r[1] for r in results])
    if not np.any(np.isfinite(objectives)):
        raise ValueError(f"the {problem.form.name} law is undefined (non-positive or non-finite) at every "
                         "start; check the data or give starting ranges")
    best = int(np.argmin(objectives))
    reached = int(np.sum(objectives <= objectives[best] * (1 + SAME_OPTIMUM_RTOL) + 1e-300))
    theta, value, ok, msg = results[best]
    return OptimumReport(theta, value, len(starts), reached, ok, msg, problem.evaluations, objectives)


def random_starts(form: Form, X: Mapping[str, np.ndarray], y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` starting points drawn uniformly from the form's starting box (optimiser coordinates)."""
    box = form.ranges(X, y)
    rng = np.random.default_rng(seed)
    lo = np.array([box[p][0] for p in form.params])
    hi = np.array([box[p][1] for p in form.params])
    return lo + (hi - lo) * rng.random((n, len(lo)))


# ---------------------------------------------------------------------------------------------
# Variable projection
# ---------------------------------------------------------------------------------------------
def nnls_batched(M: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Exact solutions of ``min_c 1/2 c'Mc - v'c, c >= 0`` for a batch of small (k x k) problems.

    Enumerates the 2^k active sets (k <= 6): on each support S the unconstrained solution
    ``c_S = M_SS^-1 v_S`` is a candidate when non-negative; the optimum is the feasible candidate
    with the least value (the true optimum is the solution on its own support).
    """
    G, k = v.shape
    if k > 6:
        raise ValueError("batched NNLS enumerates active sets; use at most 6 linear parameters")
    best_c = np.zeros((G, k))
    best_val = np.zeros(G)                    # c = 0 is always feasible, with value 0
    for size in range(1, k + 1):
        for support in itertools.combinations(range(k), size):
            s = list(support)
            Ms = M[:, s][:, :, s]
            with np.errstate(all="ignore"):
                cs = np.linalg.solve(Ms + 1e-13 * np.eye(size), v[:, s][..., None])[..., 0]
            c = np.zeros((G, k))
            c[:, s] = cs
            val = 0.5 * np.einsum("gi,gij,gj->g", c, M, c) - np.einsum("gi,gi->g", v, c)
            better = np.all(cs >= 0, axis=1) & np.isfinite(val) & (val < best_val)
            best_c[better], best_val[better] = c[better], val[better]
    return best_c


def profile(problem: Problem, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``grid`` (natural values of the non-linear parameters): the NNLS
    coefficients and the stated objective there.  Returns (coefficients (G, k), objective (G,))."""
    form, y = problem.form, problem.y
    offset, phi = form.basis(problem.X, grid)                                 # (G, n), (G, n, k)
    w = 1.0 / y if problem.loss.space == "log" else np.ones_like(y)
    target = (y[None, :] - offset) * w
    A = phi * w[None, :, None]
    norms = np.sqrt(np.einsum("gnk,gnk->gk", A, A))
    norms = np.where(np.isfinite(norms) & (norms > 0), norms, 1.0)
    A = A / norms[:, None, :]                                                 # column scaling
    M = np.einsum("gni,gnj->gij", A, A)
    v = np.einsum("gni,gn->gi", A, target)
    bad = ~(np.all(np.isfinite(M), axis=(1, 2)) & np.all(np.isfinite(v), axis=1))
    M[bad], v[bad] = np.eye(M.shape[1]), 0.0
    coef = nnls_batched(M, v) / norms
    pred = offset + np.einsum("gnk,gk->gn", phi, coef)
    values = problem.loss.objective(pred, y[None, :])
    values[bad] = np.inf
    return coef, values


def exponent_grid(form: Form, X: Mapping[str, np.ndarray], y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A grid over the non-linear parameters (optimiser coordinates) with about ``size`` points:
    the full product of ``m`` values per axis when ``m >= 5``, else ``size`` random points."""
    box = form.ranges(X, y)
    q = len(form.nonlinear)
    if q == 0:
        return np.zeros((1, 0))
    m = int(np.floor(size ** (1.0 / q) + 1e-9))
    if m >= 5:
        axes = [np.linspace(*box[p], m) for p in form.nonlinear]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, q)
    rng = np.random.default_rng(seed)
    lo = np.array([box[p][0] for p in form.nonlinear])
    hi = np.array([box[p][1] for p in form.nonlinear])
    return lo + (hi - lo) * rng.random((size, q))


def variable_projection(problem: Problem, *, grid_size: int = 2500, polish: int = 4, seed: int = 0,
                        tol: Tolerance = Tolerance()) -> OptimumReport:
    """Profile the objective over a grid of exponents (coefficients by NNLS), polish the best.

    ``polish`` grid points with the lowest profiled objective (at least one exponent-grid step
    apart is not enforced: the best few are simply taken in order) are each refined by L-BFGS-B
    in all parameters; the report counts how many reached the best objective.
    """
    form = problem.form
    if not form.linear:
        raise ValueError(f"form {form.name} has no linear parameters; use method='lbfgs'")
    grid_theta = exponent_grid(form, problem.X, problem.y, grid_size, seed)
    nl_mask = np.array([p in form.positive for p in form.nonlinear])
    grid_nat = np.where(nl_mask, np.exp(np.where(nl_mask, grid_theta, 0.0)), grid_theta)
    coef, values = profile(problem, grid_nat)
    if not np.any(np.isfinite(values)):
        raise ValueError(f"the {form.name} law is undefined on the whole exponent grid; check the data")
    order = np.argsort(values)[:polish]
    order = order[np.isfinite(values[order])]
    floor = 1e-12 * max(float(np.max(np.abs(problem.y))), 1e-300)
    starts = []
    for g in order:
        natural = dict(zip(form.nonlinear, grid_nat[g]))
        natural.update(zip(form.linear, np.maximum(coef[g], floor)))
        starts.append(form.to_theta(np.array([natural[p] for p in form.params])))
    report = multistart_lbfgs(problem, np.array(starts), tol)
    return report
