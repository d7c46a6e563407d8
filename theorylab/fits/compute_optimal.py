"""The compute-optimal allocation of a fitted law ``L(N, D)`` under the budget ``C = 6 N D``.

For the Chinchilla law ``L = E + A N^-alpha + B D^-beta`` the optimum has a closed form
(Hoffmann et al. 2022, eq. 4 and appendix D.2):

    G = (alpha A / (beta B))^(1 / (alpha + beta)),   a = beta / (alpha + beta),  b = alpha / (alpha + beta),
    N* = G (C / 6)^a,   D* = G^-1 (C / 6)^b.

For any other law in two variables (model size first, data second) N* minimises
``L(N, C / (6 N))`` over ``log N``: a 400-point grid over ``1 <= N <= C / 6`` then a bounded
Brent refinement around the best grid point.  Intervals are bootstrap percentiles when a
:class:`~theorylab.fits.bootstrap.BootstrapResult` is given, else the delta method on the fit's
covariance (central differences of ``log N*``, ``log D*``, ``log L*`` in the parameters).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats
from scipy.optimize import minimize_scalar

from theorylab.fits.forms import Form
from theorylab.plotting import MEASURED, PREDICTED, axes_or_new
from theorylab.provenance import make_meta
from theorylab.results import Result, result_class

if TYPE_CHECKING:
    from theorylab.fits.result import FitResult

FLOPS_PER_PARAM_TOKEN = 6.0


@result_class
class ComputeOptimal(Result):
    """N*, D*, tokens per parameter D*/N* and L* at each budget C, with ``level`` intervals."""

    C: np.ndarray
    N_opt: np.ndarray
    D_opt: np.ndarray
    tokens_per_param: np.ndarray
    L_opt: np.ndarray
    lower: dict[str, np.ndarray]
    upper: dict[str, np.ndarray]
    level: float
    method: str
    interval_method: str

    def plot(self, ax: Any = None) -> Any:
        """N* and D* against C (log-log) with their intervals."""
        ax = axes_or_new(ax)
        for key, color in (("N_opt", PREDICTED), ("D_opt", MEASURED)):
            ax.plot(self.C, getattr(self, key), color=color, label=key.replace("_opt", "*"))
            ax.fill_between(self.C, self.lower[key], self.upper[key], color=color, alpha=0.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C = 6ND (FLOP)")
        ax.set_title(f"compute-optimal allocation ({self.method})")
        ax.legend()
        return ax


def chinchilla_closed_form(C: np.ndarray, E: float, A: float, B: float, alpha: float, beta: float
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(N*, D*) of the Chinchilla law at budgets C (Hoffmann et al. 2022, eq. 4)."""
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    base = np.asarray(C, dtype=float) / FLOPS_PER_PARAM_TOKEN
    return G * base ** a, base ** b / G


def numerical_optimum(form: Form, params: np.ndarray, C: float) -> float:
    """argmin over N of ``L(N, C / (6 N))`` (grid over log N, then bounded Brent)."""
    n_var, d_var = form.variables
    top = np.log(C / FLOPS_PER_PARAM_TOKEN)

    def loss(logn: np.ndarray) -> np.ndarray:
        logn = np.atleast_1d(logn)
        return form.predict({n_var: np.exp(logn), d_var: np.exp(top - logn)}, params)

    grid = np.linspace(0.0, top, 400)
    values = loss(grid)
    if not np.any(np.isfinite(values)):
        raise ValueError(f"the law is undefined along the budget C = {C:g}")
    i = int(np.nanargmin(np.where(np.isfinite(values), values, np.nan)))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = minimize_scalar(lambda t: float(loss(t)[0]), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-10})
    return float(np.exp(res.x))


def _allocation(form: Form, params: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if form.name == "chinchilla":
        p = dict(zip(form.params, params))
        N, D = chinchilla_closed_form(C, p["E"], p["A"], p["B"], p["alpha"], p["beta"])
    else:
        N = np.array([numerical_optimum(form, params, c) for c in C])
        D = C / (FLOPS_PER_PARAM_TOKEN * N)
    L = form.predict(dict(zip(form.variables, (N, D))), params)
    return N, D, L


def compute_optimal(result: FitResult, C: Any, *, bootstrap: Any | None = None,
                    level: float = 0.95) -> ComputeOptimal:
    """The compute-optimal N*, D*, D*/N* and L* of ``result``'s law at budgets ``C`` (FLOP)."""
    C = np.atleast_1d(np.asarray(C, dtype=float))
    if C.ndim != 1 or not np.all(np.isfinite(C)) or np.any(C <= 0):
        raise ValueError("C must be finite compute budgets > 0")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    form = result.law()
    if len(form.variables) != 2:
        raise ValueError(f"compute_optimal needs a law in two variables (model size, data); "
                         f"the {form.name} law has {list(form.variables)}")
    N, D, L = _allocation(form, result.params, C)
    point = {"N_opt": N, "D_opt": D, "tokens_per_param": D / N, "L_opt": L}
    q = ((1 - level) / 2, (1 + level) / 2)
    if bootstrap is not None:
        reps = [_allocation(form, p, C) for p in bootstrap.replicates]
        stacks = {"N_opt": np.stack([r[0] for r in reps]), "D_opt": np.stack([r[1] for r in reps]),
                  "L_opt": np.stack([r[2] for r in reps])}
        stacks["tokens_per_param"] = stacks["D_opt"] / stacks["N_opt"]
        lower = {k: np.quantile(v, q[0], axis=0) for k, v in stacks.items()}
        upper = {k: np.quantile(v, q[1], axis=0) for k, v in stacks.items()}
        how = f"bootstrap percentile ({len(reps)} replicates)"
    else:
        logs = {k: np.log(v) for k, v in point.items()}
        grads = {k: np.zeros((len(C), len(result.params))) for k in point}
        for j, value in enumerate(result.params):
            h = 1e-6 * max(abs(value), 1e-8)
            up, down = result.params.copy(), result.params.copy()
            up[j] += h
            down[j] -= h
            a, b = _allocation(form, up, C), _allocation(form, down, C)
            for k, (u, d) in zip(("N_opt", "D_opt", "L_opt"), zip(a, b)):
                grads[k][:, j] = (np.log(u) - np.log(d)) / (2 * h)
        grads["tokens_per_param"] = grads["D_opt"] - grads["N_opt"]
        z = stats.norm.ppf(q[1])
        lower, upper = {}, {}
        for k, g in grads.items():
            sd = np.sqrt(np.maximum(np.einsum("ci,ij,cj->c", g, result.covariance, g), 0.0))
            lower[k], upper[k] = np.exp(logs[k] - z * sd), np.exp(logs[k] + z * sd)
        how = "delta method on log scale (Gauss-Newton covariance)"
    return ComputeOptimal(C=C, **point, lower=lower, upper=upper, level=level,
                          method="closed form" if form.name == "chinchilla" else "numerical",
                          interval_method=how, meta=make_meta(dtype="float64", device="cpu"))
