"""Linear stability of minima under GD and SGD (Wu & Su 2023, "The implicit regularization of
dynamical stability in stochastic gradient descent", ICML).

At a global minimum of the MSE loss that interpolates the data, linear stability of full-batch GD
with step eta only requires lambda_max(H) <= 2/eta, whereas linear stability of SGD with batch size 1
requires the stricter trace bound tr(H) <= 2/eta (Theorem 3.3; :mod:`theorylab.theory.stability`).
So minima reached by SGD satisfy eta tr(H)/2 <= 1, while GD minima may violate it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from theorylab.claims import Context, Judgement, Mutation, bound, claim, precondition, undecided
from theorylab.claims.figures import MEASURED, legend_outside, measured_shades, prediction_level
from theorylab.curvature import hessian, top_eigenvalues, trace
from theorylab.data import teacher_student
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.theory import gd_sharpness_threshold, sgd_trace_threshold
from theorylab.metrics import mean_loss
from theorylab.train import train


def _curvature(model: nn.Module, loss_fn: nn.Module, data: tuple, *, exact: bool, seed: int) -> tuple[float, float]:
    """(lambda_max, tr H): exact from the dense Hessian on small models, else Lanczos and Hutch++."""
    op = hessian(model, loss_fn, data)
    if exact:
        eigs = torch.linalg.eigvalsh(op.to_dense().double())
        return float(eigs[-1]), float(eigs.sum())
    lam = float(top_eigenvalues(op, k=1, tol=1e-5, seed=seed).values[0])
    return lam, float(trace(op, num_probes=300, method="hutch++", seed=seed).estimate)


def _run(data: tuple, *, dim: int, width: int, optimizer: str, eta: float, steps: int, seed: int, exact: bool,
         device: torch.device) -> dict:
    mse = nn.MSELoss()
    model = MLP(dim, [width], 1, weight_var=2.0, seed=seed).double().to(device)
    initial = mean_loss(model, mse, data)
    res = train(model, mse, data, steps=steps, lr=eta, optimizer=optimizer,
                batch_size=None if optimizer == "gd" else 1, seed=seed, stop_loss=1e-7 if optimizer == "gd" else None)
    final = mean_loss(model, mse, data) if not res.diverged else float("inf")
    run = {"optimizer": optimizer, "eta": eta, "seed": seed, "final_loss": final,
           "converged": bool(np.isfinite(final) and final < 1e-3 * initial)}
    if run["converged"]:
        run["lambda_max"], run["trace"] = _curvature(model, mse, data, exact=exact, seed=seed)
    return run


def measure_linear_stability(ctx: Context) -> dict:
    dim, n, width = 5, ctx.pick(40, 100), ctx.pick(200, 1000)
    gd_steps, sgd_steps = ctx.pick(15000, 60000), ctx.pick(20000, 100000)
    gd_etas = ctx.pick([0.011], [0.002, 0.004, 0.006, 0.008, 0.011])
    sgd_etas = ctx.pick([0.004], [0.001, 0.002, 0.004, 0.006])
    seeds = ctx.seeds(3, 3)[:1] if ctx.control else ctx.seeds(3, 3)
    split = teacher_student(num_train=n, num_test=10, dim=dim, teacher="relu_mlp", seed=ctx.seed, dtype=torch.float64)
    data = (split.x_train.to(ctx.device), split.y_train.to(ctx.device))
    common = dict(dim=dim, width=width, exact=ctx.scale == "quick", device=ctx.device)
    gd = [_run(data, optimizer="gd", eta=eta, steps=gd_steps, seed=s, **common) for eta in gd_etas for s in seeds]
    if ctx.control:  # the "SGD" minima are full-batch GD minima (B = n): no trace bound is implied
        sgd = [{**r, "optimizer": "sgd"} for r in gd]
    else:
        sgd = [_run(data, optimizer="sgd", eta=eta, steps=sgd_steps, seed=s, **common) for eta in sgd_etas
               for s in seeds]
    return {"n": n, "width": width, "dim": dim, "seeds": seeds, "runs": gd + sgd}


def judge_linear_stability(m: dict, p) -> Judgement:
    runs = m["runs"]
    for r in runs:
        if r["converged"]:
            r["sharpness_ratio"] = float(r["lambda_max"] / p.sharpness_threshold(r["eta"]))
            r["trace_ratio"] = float(r["trace"] / p.trace_threshold(r["eta"]))
    gd = [r for r in runs if r["optimizer"] == "gd" and r["converged"]]
    sgd = [r for r in runs if r["optimizer"] == "sgd" and r["converged"]]
    checks = [precondition("GD and SGD each reach at least one interpolating minimum", bool(gd and sgd),
                           requirement="a run of each with final loss < 1e-3 of the initial one",
                           detail=f"{len(gd)} GD and {len(sgd)} SGD runs converged")]
    exact = "exact dense eigendecomposition at quick scale (no estimator error)"
    if gd:
        checks.append(bound("GD minima: max eta lambda_max / 2", max(r["sharpness_ratio"] for r in gd), upper=1.0,
                            source=exact))
        checks.append(bound("GD minima can violate the trace bound: max eta tr(H) / 2",
                            max(r["trace_ratio"] for r in gd), lower=1.0, source=exact,
                            detail="what separates the SGD bound from a property of every minimum"))
    else:
        checks.append(undecided("GD minima: max eta lambda_max / 2", kind="bound", predicted="<= 1",
                                why="no GD run converged"))
    if sgd:
        checks.append(bound("SGD (B = 1) minima: max eta tr(H) / 2", max(r["trace_ratio"] for r in sgd), upper=1.0,
                            source=exact))
    else:
        checks.append(undecided("SGD (B = 1) minima: max eta tr(H) / 2", kind="bound", predicted="<= 1",
                                why="no SGD run converged"))
    table = {"optimizer": [r["optimizer"] for r in runs], "eta": [r["eta"] for r in runs],
             "seed": [r["seed"] for r in runs], "converged": [r["converged"] for r in runs],
             "eta lambda_max / 2": [r.get("sharpness_ratio") for r in runs],
             "eta tr(H) / 2": [r.get("trace_ratio") for r in runs]}
    worst = lambda rows, key: max((r[key] for r in rows), default=float("nan"))  # noqa: E731
    return Judgement(checks, predicted="GD: eta lambda_max/2 <= 1; SGD (B=1): eta tr(H)/2 <= 1",
                     measured=f"GD: eta lambda_max/2 <= {worst(gd, 'sharpness_ratio'):.2f}, eta tr/2 up to "
                              f"{worst(gd, 'trace_ratio'):.2f}; SGD: eta tr/2 <= {worst(sgd, 'trace_ratio'):.2f}",
                     per_seed=table,
                     rule="bounds must hold at every converged minimum (the worst run decides); runs that found no "
                          "minimum (diverged or not converged) are listed and not counted.")


def figure_linear_stability(m: dict, p):
    fig, ax = new_figure(width=4.0, height=3.4)
    dark, light = measured_shades(2)[1], measured_shades(2)[0]
    for optimizer, marker, colour, label in (("gd", "o", dark, "GD minima"), ("sgd", "s", light, "SGD ($B = 1$) minima")):
        rows = [r for r in m["runs"] if r["optimizer"] == optimizer and r["converged"]]
        ax.scatter([r["lambda_max"] / p.sharpness_threshold(r["eta"]) for r in rows],
                   [r["trace"] / p.trace_threshold(r["eta"]) for r in rows], marker=marker, s=30, color=colour,
                   edgecolor=MEASURED, label=label)
    prediction_level(ax, x=1.0, label=r"GD bound $\eta \lambda_{\max} / 2 = 1$")
    prediction_level(ax, y=1.0, ls=":", label=r"SGD bound $\eta\, \mathrm{tr}(H) / 2 = 1$")
    ax.set(xlabel=r"$\eta \lambda_{\max} / 2$", ylabel=r"$\eta\, \mathrm{tr}(H) / 2$",
           title="curvature of the minima reached")
    legend_outside(ax)
    return fig


def _scale_curvature(optimizer: str, key: str, factor: float):
    return lambda m: {**m, "runs": [{**r, key: r[key] * factor} if r["optimizer"] == optimizer and r["converged"]
                                    else r for r in m["runs"]]}


claim("wu2023.linear_stability",
      title="SGD minima satisfy the trace bound, GD minima only the sharpness bound",
      citation="Wu & Su 2023, ICML (The implicit regularization of dynamical stability in stochastic gradient descent)",
      statement="With MSE at interpolation, minima reached by full-batch GD satisfy lambda_max(H) <= 2/eta, minima "
                "reached by SGD with batch size 1 satisfy the stricter tr(H) <= 2/eta, and GD minima can violate the "
                "trace bound.",
      tolerance="Bounds are checked as stated (eta lambda_max/2 <= 1, eta tr(H)/2 <= 1) with no slack: the curvature "
                "at quick scale is exact (dense float64 eigendecomposition). Every step size runs 3 seeds (one step size "
                "per optimizer at quick scale, five and four at full scale); the worst converged run decides. A run counts as at a minimum when its full-batch loss is below 1e-3 of the "
                "initial loss; SGD runs that diverge found no stable minimum at that step size and are reported, not "
                "counted.",
      control="the 'SGD' minima replaced by full-batch GD minima at the GD step sizes (B = n): nothing bounds their trace",
      predictions={"sharpness_threshold": gd_sharpness_threshold, "trace_threshold": sgd_trace_threshold},
      measure=measure_linear_stability, judge=judge_linear_stability, figure=figure_linear_stability,
      mutations=[
          Mutation("GD threshold 0.5 x 2/eta",
                   predictions={"sharpness_threshold": lambda eta: 0.5 * gd_sharpness_threshold(eta)}),
          Mutation("SGD trace threshold 0.3 x 2/eta",
                   predictions={"trace_threshold": lambda eta: 0.3 * sgd_trace_threshold(eta)}),
          Mutation("SGD traces 3x larger", numbers=_scale_curvature("sgd", "trace", 3.0)),
          Mutation("GD traces 3x smaller", numbers=_scale_curvature("gd", "trace", 1 / 3)),
          Mutation("no SGD run converged", numbers=lambda m: {**m, "runs": [
              {**r, "converged": False} if r["optimizer"] == "sgd" else r for r in m["runs"]]}),
      ])
