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

Memory and time are bounded in the number of rows: the grid is profiled in chunks of grid points
whose work arrays stay under :data:`PROFILE_BYTES`, and on tables of more than :data:`SEARCH_ROWS`
rows the search (grid, polishes, random starts) runs on a fixed random subset of that many rows;
the best point found is then polished on every row (:func:`polish_on_all_rows`), so the reported
optimum is the optimum of the stated objective on all the data.

Bounds (optimiser coordinates, ``-inf``/``inf`` for none) are passed to L-BFGS-B and restrict the
starting box; see :class:`Problem`.
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
#: an L-BFGS run that stops with max |dF/dtheta| below this fraction of F is at a stationary point
STATIONARY = 1e-6
#: the (grid points x rows x coefficients) work arrays of one chunk of the exponent grid stay under this
PROFILE_BYTES = 64 * 2**20
#: above this many rows, the search for the optimum runs on a random subset of this many rows
SEARCH_ROWS = 20_000


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
    """The objective of fitting ``form`` to the rows ``(X, y)`` with ``loss``, and its gradient.

    ``lower``/``upper``: bounds of every parameter in optimiser coordinates (default none).
    """

    def __init__(self, form: Form, X: Mapping[str, np.ndarray], y: np.ndarray, loss: Loss, *,
                 lower: np.ndarray | None = None, upper: np.ndarray | None = None):
        self.form, self.loss = form, loss
        self.X = {v: np.asarray(X[v], dtype=float) for v in form.variables}
        self.y = np.asarray(y, dtype=float)
        self.log_mask = form.log_mask
        P = len(form.params)
        self.lower = np.full(P, -np.inf) if lower is None else np.asarray(lower, dtype=float)
        self.upper = np.full(P, np.inf) if upper is None else np.asarray(upper, dtype=float)
        self.evaluations = 0

    @property
    def n_rows(self) -> int:
        return len(self.y)

    @property
    def bounded(self) -> bool:
        return bool(np.any(np.isfinite(self.lower)) or np.any(np.isfinite(self.upper)))

    def subset(self, rows: int, seed: int) -> Problem:
        """The same problem on ``rows`` rows drawn without replacement (itself when it has no more)."""
        if self.n_rows <= rows:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(self.n_rows, size=rows, replace=False))
        return Problem(self.form, {v: x[keep] for v, x in self.X.items()}, self.y[keep], self.loss,
                       lower=self.lower, upper=self.upper)

    def start_box(self) -> dict[str, tuple[float, float]]:
        """The form's box of starting values (optimiser coordinates) moved inside the bounds."""
        box = self.form.ranges(self.X, self.y)
        out = {}
        for p, lo_b, hi_b in zip(self.form.params, self.lower, self.upper):
            lo, hi = box[p]
            new_lo, new_hi = max(lo, lo_b), min(hi, hi_b)
            if new_lo > new_hi:  # the box lies outside the bounds: start inside the bounds instead
                width = hi - lo
                new_lo = lo_b if np.isfinite(lo_b) else hi_b - width
                new_hi = hi_b if np.isfinite(hi_b) else lo_b + width
            out[p] = (float(new_lo), float(new_hi))
        return out

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
        with np.errstate(all="ignore"):  # overflow far from the optimum: caught as non-finite below
            jac = self.form.jacobian(self.X, params)                   # (n, P) d f / d p
            jac *= np.where(self.log_mask, params, 1.0)                 # d f / d theta
            if self.loss.space == "log":
                jac /= pred[:, None]                                    # d r / d theta
            grad = self.loss.drho(r) @ jac
            value = self.loss.rho(r).sum()
        if self.loss.reduction == "mean":
            value, grad = value / len(r), grad / len(r)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return np.inf, np.zeros_like(theta)
        return float(value), grad


def theta_bounds(form: Form, bounds: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``{param: (low, high)}`` in natural units (None or +-inf for no bound) -> lower and
    upper arrays in optimiser coordinates (``log`` of the bound for positive parameters)."""
    lower, upper = np.full(len(form.params), -np.inf), np.full(len(form.params), np.inf)
    for name, pair in (bounds or {}).items():
        if name not in form.params:
            raise ValueError(f"bounds name {name!r} is not a parameter of the {form.name} law; "
                             f"parameters: {list(form.params)}")
        try:
            lo, hi = (-np.inf if pair[0] is None else float(pair[0])), (np.inf if pair[1] is None else float(pair[1]))
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"bounds of {name} must be a pair (low, high), got {pair!r}") from None
        if np.isnan(lo) or np.isnan(hi) or not lo < hi:
            raise ValueError(f"bounds of {name} must satisfy low < high, got ({lo:g}, {hi:g})")
        i = form.params.index(name)
        if name in form.positive:
            if lo < 0 or hi <= 0:
                raise ValueError(f"{name} is positive in the {form.name} law; its bounds must lie in [0, inf), "
                                 f"got ({lo:g}, {hi:g})")
            with np.errstate(divide="ignore"):
                lower[i], upper[i] = np.log(lo), np.log(hi)
        else:
            lower[i], upper[i] = lo, hi
    return lower, upper


@dataclass(frozen=True)
class OptimumReport:
    """The outcome of an optimisation: the best point and how the starts fared."""

    theta: np.ndarray
    objective: float
    num_starts: int
    num_reached: int
    converged: bool
    message: str
    evaluations: int
    #: the end point and objective of every start, on the rows the starts were run on
    all_thetas: np.ndarray
    all_objectives: np.ndarray
    #: the rows the starts were run on (all rows unless the search ran on a subset)
    search_rows: int


def lbfgs(problem: Problem, theta0: np.ndarray, tol: Tolerance = Tolerance()) -> tuple[np.ndarray, float, bool, str]:
    """One L-BFGS-B run from ``theta0``: (theta, objective, converged, message)."""
    theta0 = np.clip(np.asarray(theta0, dtype=float), problem.lower, problem.upper)
    f0, _ = problem.value_and_grad(theta0)
    if not np.isfinite(f0):
        return theta0, np.inf, False, "undefined at the start"
    scale = f0 if (tol.scaled and f0 > 0) else 1.0

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = problem.value_and_grad(theta)
        return value / scale, grad / scale

    def exact_fit(intermediate_result: Any) -> None:
        if intermediate_result.fun < tol.exact:
            raise StopIteration

    bounds = list(zip(problem.lower, problem.upper)) if problem.bounded else None
    res = minimize(fun, theta0, jac=True, method="L-BFGS-B", callback=exact_fit, bounds=bounds,
                   options={"ftol": tol.ftol, "gtol": tol.gtol, "maxiter": tol.maxiter, "maxcor": 20})
    value, grad = problem.value_and_grad(res.x)
    exact = value / scale < tol.exact
    # a line search that fails where the gradient is at rounding level has found the optimum
    stationary = not res.success and np.isfinite(value) and np.max(np.abs(grad), initial=0.0) <= STATIONARY * value
    message = ("exact fit: objective at rounding level" if exact else
               f"stationary point (line search stopped with max |gradient| / objective "
               f"{np.max(np.abs(grad), initial=0.0) / value:.1e})" if stationary else str(res.message))
    return res.x, value, bool(res.success or exact or stationary), message


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
    return OptimumReport(theta, value, len(starts), reached, ok, msg, problem.evaluations,
                         np.array([r[0] for r in results]), objectives, problem.n_rows)


def polish_on_all_rows(problem: Problem, search: OptimumReport, tol: Tolerance = Tolerance()) -> OptimumReport:
    """Polish the best point of a search on a subset of rows with L-BFGS on all of ``problem``'s rows."""
    theta, value, ok, msg = lbfgs(problem, search.theta, tol)
    if not np.isfinite(value):
        raise ValueError(f"the {problem.form.name} law is undefined on the full data at the optimum of the "
                         f"{search.search_rows:,}-row search; check the data")
    message = f"{msg} (starts run on {search.search_rows:,} of {problem.n_rows:,} rows, then polished on all)"
    return OptimumReport(theta, value, search.num_starts, search.num_reached, ok, message,
                         search.evaluations + problem.evaluations, search.all_thetas, search.all_objectives,
                         search.search_rows)


def random_starts(problem: Problem, n: int, seed: int) -> np.ndarray:
    """``n`` starting points drawn uniformly from the problem's starting box (optimiser coordinates)."""
    box = problem.start_box()
    rng = np.random.default_rng(seed)
    lo = np.array([box[p][0] for p in problem.form.params])
    hi = np.array([box[p][1] for p in problem.form.params])
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
    coefficients and the stated objective there.  Returns (coefficients (G, k), objective (G,)).

    The grid is processed in chunks so that the work arrays (about ``3k + 5`` arrays of
    chunk x rows) stay under :data:`PROFILE_BYTES` whatever the number of rows.
    """
    grid = np.atleast_2d(np.asarray(grid, dtype=float))
    k = len(problem.form.linear)
    chunk = max(1, PROFILE_BYTES // ((3 * k + 5) * 8 * max(problem.n_rows, 1)))
    parts = [_profile_chunk(problem, grid[i:i + chunk]) for i in range(0, len(grid), chunk)]
    return np.concatenate([c for c, _ in parts]), np.concatenate([v for _, v in parts])


def _profile_chunk(problem: Problem, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    form, y = problem.form, problem.y
    offset, phi = form.basis(problem.X, grid)                                 # (G, n), (G, n, k)
    w = 1.0 / y if problem.loss.space == "log" else np.ones_like(y)
    target = (y[None, :] - offset) * w
    A = phi * w[None, :, None]
    norms = np.sqrt(np.einsum("gnk,gnk->gk", A, A))
    norms = np.where(np.isfinite(norms) & (norms > 0), norms, 1.0)
    A /= norms[:, None, :]                                                    # column scaling
    At = A.transpose(0, 2, 1)
    M = At @ A                                                                # (G, k, k)
    v = (At @ target[:, :, None])[:, :, 0]                                    # (G, k)
    del A, At, target
    bad = ~(np.all(np.isfinite(M), axis=(1, 2)) & np.all(np.isfinite(v), axis=1))
    M[bad], v[bad] = np.eye(M.shape[1]), 0.0
    coef = nnls_batched(M, v) / norms
    pred = offset + (phi @ coef[:, :, None])[:, :, 0]
    values = problem.loss.objective(pred, y[None, :])
    values[bad] = np.inf
    return coef, values


def exponent_grid(problem: Problem, size: int, seed: int) -> np.ndarray:
    """A grid over the non-linear parameters (optimiser coordinates) with about ``size`` points:
    the full product of ``m`` values per axis when ``m >= 5``, else ``size`` random points."""
    form = problem.form
    box = problem.start_box()
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


def nonlinear_natural(form: Form, nonlinear_theta: np.ndarray) -> np.ndarray:
    """Optimiser coordinates of the non-linear parameters (rows) -> their natural values."""
    mask = np.array([p in form.positive for p in form.nonlinear], dtype=bool)
    return np.where(mask, np.exp(np.where(mask, nonlinear_theta, 0.0)), nonlinear_theta)


def completed_starts(problem: Problem, nonlinear: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Full starting points (optimiser coordinates) from natural non-linear values (rows of
    ``nonlinear``) and their NNLS coefficients (a coefficient at 0 starts at a tiny positive value)."""
    form = problem.form
    floor = 1e-12 * max(float(np.max(np.abs(problem.y))), 1e-300)
    starts = []
    for values, c in zip(np.atleast_2d(nonlinear), np.atleast_2d(coef)):
        natural = dict(zip(form.nonlinear, values))
        natural.update(zip(form.linear, np.maximum(c, floor)))
        starts.append(form.to_theta(np.array([natural[p] for p in form.params])))
    return np.array(starts)


def variable_projection(problem: Problem, *, grid_size: int = 2500, polish: int = 4, seed: int = 0,
                        tol: Tolerance = Tolerance(), extra_starts: np.ndarray | None = None) -> OptimumReport:
    """Profile the objective over a grid of exponents (coefficients by NNLS), polish the best.

    ``polish`` grid points with the lowest profiled objective (at least one exponent-grid step
    apart is not enforced: the best few are simply taken in order) are each refined by L-BFGS-B
    in all parameters, as are the ``extra_starts`` (e.g. a user's starting values); the report
    counts how many reached the best objective.
    """
    form = problem.form
    if not form.linear:
        raise ValueError(f"form {form.name} has no linear parameters; use method='lbfgs'")
    grid_nat = nonlinear_natural(form, exponent_grid(problem, grid_size, seed))
    coef, values = profile(problem, grid_nat)
    if not np.any(np.isfinite(values)):
        raise ValueError(f"the {form.name} law is undefined on the whole exponent grid; check the data")
    order = np.argsort(values)[:polish]
    order = order[np.isfinite(values[order])]
    starts = completed_starts(problem, grid_nat[order], coef[order])
    if extra_starts is not None:
        starts = np.concatenate([np.atleast_2d(extra_starts), starts])
    return multistart_lbfgs(problem, starts, tol)
