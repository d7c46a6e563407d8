"""Dynamical stability regularises SGD (Wu & Su 2023, "The implicit regularization of dynamical stability in
stochastic gradient descent", ICML).

An interpolating minimum of the squared error is linearly stable for SGD with batch size 1 only if
tr(H) <= 2/eta (:func:`theorylab.theory.sgd_trace_threshold`).  Once the bound binds, a larger learning rate can
only reach flatter minima, and for a diagonal linear network ``f(x) = (u*u - v*v) . x``, whose trace at
interpolation is a data-weighted parameter norm, ``tr H = (8/n) sum_j (u_j^2 + v_j^2) sum_i x_ij^2``, minima of
smaller parameter norm.  Sparse regression with more features than samples, so that many interpolating minima
exist.
"""
from __future__ import annotations

import math

import numpy as np

from theorylab.claims import (Context, Judgement, Mutation, bound, claim, effect, mean_and_stderr, precondition,
                              undecided)
from theorylab.claims.figures import legend_outside, log_axis, measured_shades, prediction
from theorylab.plotting import new_figure
from theorylab.theory import sgd_trace_threshold

N, DIM, SPARSITY = 20, 40, 3
INIT = 2.0                                               # u = v = INIT at the start (beta = 0)
LRS = np.array([0.0005, 0.001, 0.002, 0.004, 0.006]) / INIT ** 2
CONVERGED = 1e-10                                        # an interpolating minimum: training MSE below this
FLATTER = math.log(1.5)                                  # declared: the smallest effect that counts, 50% (in log)


def _problem(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, DIM))
    beta = np.zeros(DIM)
    beta[:SPARSITY] = rng.choice([-1.0, 1.0], SPARSITY)
    return x, x @ beta


def diagonal_network_sgd(x: np.ndarray, y: np.ndarray, lrs: np.ndarray, *, steps: int, seed: int,
                         full_batch: bool) -> dict:
    """SGD (batch 1, one sample stream of ``seed`` shared by every step size) or full-batch GD on
    ``mean (f(x_i) - y_i)^2`` for a diagonal linear network from ``u = v = INIT``, one run per step size.
    Returns the final training loss, the trace of the Hessian at the end (its Gauss-Newton part, exact at
    interpolation) and the squared parameter norm ``sum u^2 + v^2``."""
    n = len(y)
    lr = np.asarray(lrs)[:, None]
    u = np.full((len(lrs), x.shape[1]), INIT)
    v = u.copy()
    order = np.random.default_rng(seed).integers(n, size=steps)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            beta = u * u - v * v
            if full_batch:
                grad = 2.0 * (beta @ x.T - y[None]) @ x / n
            else:
                xi = x[order[t]]
                grad = 2.0 * (beta @ xi - y[order[t]])[:, None] * xi[None]
            u, v = u - lr * 2 * u * grad, v + lr * 2 * v * grad
        loss = np.mean(((u * u - v * v) @ x.T - y[None]) ** 2, axis=1)
        norm2 = np.sum(u * u + v * v, axis=1)
        trace = 8.0 / n * np.sum((u * u + v * v) * np.sum(x * x, axis=0), axis=1)
    return {"loss": loss, "trace": trace, "norm2": norm2}


def measure_stability_regularizes(ctx: Context) -> dict:
    seeds = ctx.seeds(3, 10)
    runs = []
    for seed in seeds:
        x, y = _problem(seed)
        # control: full-batch GD, which is stable up to lambda_max <= 2/eta only: the trace is not constrained
        runs.append(diagonal_network_sgd(x, y, LRS, steps=ctx.pick(20_000, 100_000), seed=seed,
                                         full_batch=ctx.control))
    return {"seeds": seeds, "lrs": LRS, "init": INIT, "optimizer": "GD" if ctx.control else "SGD (B = 1)",
            **{k: np.array([r[k] for r in runs]) for k in ("loss", "trace", "norm2")}}


def judge_stability_regularizes(m: dict, p) -> Judgement:
    lrs, loss = np.asarray(m["lrs"]), np.asarray(m["loss"])
    converged = np.isfinite(loss) & (loss < CONVERGED)
    usable = converged.sum(axis=1)
    checks = [precondition("every seed reaches an interpolating minimum at the smallest step and at >= 3 steps",
                           bool(np.all(converged[:, 0]) and np.all(usable >= 3)),
                           requirement=f"training MSE < {CONVERGED:g}", measured=float(usable.min()))]
    if not checks[0].passed:
        for name, kind in (("max over converged runs of tr(H) / (2/eta)", "bound"), ("flatter", "effect"),
                           ("smaller norm", "effect")):
            checks.append(undecided(name, kind=kind, predicted="see statement", why="too few runs interpolated"))
        return Judgement(checks, predicted="eta tr(H)/2 <= 1; larger steps reach flatter, smaller-norm minima",
                         measured=f"{int(usable.min())} converged step sizes in the worst seed",
                         per_seed={"seed": list(m["seeds"]), "converged steps": usable.tolist()}, rule="")
    ratio = np.where(converged, np.asarray(m["trace"]) / p.threshold(lrs)[None], np.nan)  # tr H / (2/eta)
    worst = float(np.nanmax(ratio))
    largest = [int(np.nonzero(row)[0].max()) for row in converged]        # the largest converged step per seed
    flatter = [math.log(m["trace"][i][0] / m["trace"][i][j]) for i, j in enumerate(largest)]
    smaller = [math.log(m["norm2"][i][0] / m["norm2"][i][j]) for i, j in enumerate(largest)]
    f_mean, f_se = mean_and_stderr(flatter)
    s_mean, s_se = mean_and_stderr(smaller)
    checks += [
        bound("max over converged runs of tr(H) / (2/eta)", worst, upper=1.0,
              detail="exact traces (closed form at interpolation); the linear-stability bound tr(H) <= 2/eta"),
        effect("flatter: log(tr H at the smallest step / at the largest converged step), over seeds", f_mean, f_se,
               smallest=FLATTER, source="declared in advance: an effect below 50% would refute it"),
        effect("smaller norm: log(|theta|^2 at the smallest step / at the largest converged step), over seeds", s_mean,
               s_se, smallest=FLATTER, source="declared in advance: an effect below 50% would refute it"),
    ]
    return Judgement(checks, predicted="eta tr(H)/2 <= 1; larger steps reach flatter, smaller-norm minima",
                     measured=f"max tr(H) / (2/eta) = {worst:.3f}; tr H x{math.exp(-f_mean):.3g} and |theta|^2 "
                              f"x{math.exp(-s_mean):.3g} from the smallest to the largest converged step",
                     per_seed={"seed": list(m["seeds"]), "converged steps": usable.tolist(),
                               "max tr(H) / (2/eta)": np.nanmax(ratio, axis=1).tolist(),
                               "tr H ratio (small / large step)": np.exp(flatter).tolist(),
                               "norm ratio (small / large step)": np.exp(smaller).tolist()},
                     rule="each seed draws its own problem and one sample stream shared by every step size; the bound "
                          "must hold for every converged run; the effects compare the smallest step with the largest "
                          "that converged, averaged over seeds.")


def figure_stability_regularizes(m: dict, p):
    fig, (ax_t, ax_n) = new_figure(ncols=2, width=3.8, height=3.2)
    lrs, loss = np.asarray(m["lrs"]), np.asarray(m["loss"])
    converged = np.isfinite(loss) & (loss < CONVERGED)
    for i, colour in enumerate(measured_shades(len(m["seeds"]))):
        keep = converged[i]
        ax_t.plot(lrs[keep], np.asarray(m["trace"])[i][keep], "o-", ms=3, color=colour, label=f"seed {m['seeds'][i]}")
        ax_n.plot(lrs[keep], np.asarray(m["norm2"])[i][keep], "o-", ms=3, color=colour, label=f"seed {m['seeds'][i]}")
    grid = np.geomspace(lrs.min(), lrs.max(), 50)
    prediction(ax_t, grid, p.threshold(grid), label=r"$2/\eta$ (stability bound)")
    for ax, name in ((ax_t, r"$\mathrm{tr}\,H$ at the minimum"), (ax_n, r"$\|u\|^2 + \|v\|^2$ at the minimum")):
        log_axis(ax, "x")
        log_axis(ax, "y")
        ax.set(xlabel=r"learning rate $\eta$", ylabel=name, title=m["optimizer"])
        legend_outside(ax, ncol=2)
    return fig


claim("wu2023.stability_regularizes",
      title="Dynamical stability regularises SGD: larger steps reach flatter, smaller-norm minima",
      citation="Wu & Su 2023, ICML (The implicit regularization of dynamical stability in stochastic gradient descent)",
      statement="Minima that SGD (batch size 1) can converge to satisfy tr(H) <= 2/eta; so for a diagonal linear "
                "network, where the trace is a data-weighted parameter norm, larger learning rates give solutions "
                "of smaller parameter norm and flatter curvature.",
      tolerance="Sparse regression (n = 20, d = 40, 3 nonzero coefficients), diagonal linear network from u = v = 2, "
                "SGD with batch 1 for 20,000 steps at 5 steps sizes (one sample stream per seed), 3 seeds. "
                "Precondition: every seed interpolates (MSE < 1e-10) at the smallest step and at >= 3 steps; runs "
                "that diverge or do not interpolate are left out of the checks. The bound is checked on exact traces "
                "(closed form at interpolation) with no slack. Flatter and smaller norm: log ratios between the "
                "smallest and the largest converged step, effects over seeds refuted below 50% (declared in advance).",
      control="full-batch GD at the same steps: stable up to lambda_max <= 2/eta only, so the trace bound does not bind",
      predictions={"threshold": sgd_trace_threshold},
      measure=measure_stability_regularizes, judge=judge_stability_regularizes, figure=figure_stability_regularizes,
      mutations=[
          Mutation("bound 1/eta", predictions={"threshold": lambda lr: 0.5 * sgd_trace_threshold(lr)}),
          Mutation("no regularisation", numbers=lambda m: {**m, **{k: np.repeat(np.asarray(m[k])[:, :1], len(LRS), axis=1)
                                                                   for k in ("trace", "norm2")}}),
          Mutation("no run interpolates", numbers=lambda m: {**m, "loss": np.ones_like(np.asarray(m["loss"]))}),
      ])
