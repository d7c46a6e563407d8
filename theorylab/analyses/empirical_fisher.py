"""Limitations of the empirical Fisher (Kunstner, Hennig & Balles 2019, "Limitations of the empirical Fisher
approximation for natural gradient descent", NeurIPS).

The Fisher ``F = (1/N) sum_i E_{y ~ p(y|x_i)}[g_i(y) g_i(y)^T]`` averages over labels drawn from the
model; the empirical Fisher ``F_emp = (1/N) sum_i g_i(y_i) g_i(y_i)^T`` uses the observed labels.  They
agree (up to sampling error) only where the model's predictive distribution is the data's: at the
optimum of a *well-specified* model with enough data.  Away from the optimum, or for a misspecified
model even at its optimum, they differ (Sec. 3, Fig. 1 and 3).  Here, as in their Sec. 3, the model
is linear regression with the Gaussian likelihood of ``nn.MSELoss`` (noise variance 1/2): the Fisher
then equals the Hessian ``2 X^T X / N``, and the model is misspecified when the data's noise variance
is not 1/2 (then ``F_emp -> (noise / (1/2)) F`` at the optimum).

The distance ``D = ||F_emp - F||_F / ||F||_F`` is measured against its own sampling floor: the same
distance for labels drawn from the model (the one-sample Monte-Carlo Fisher, whose expectation is
``F``), ``D_0``.  Where the data follow the model, ``F_emp`` is such a draw and ``D / D_0 ~ 1``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from theorylab.claims import (Context, Judgement, Mutation, claim, effect, mean_and_stderr, precondition,
                              tolerance)
from theorylab.claims.figures import CONTROL, legend_outside, measured_shades, prediction_level
from theorylab.curvature import empirical_fisher, fisher
from theorylab.functional import ModelFunction
from theorylab.plotting import new_figure
from theorylab.train import train

DIFFERS = math.log(2.0)  # smallest predicted separation: F_emp twice as far from F as a draw from the model
FLOOR_DRAWS = 8          # label draws that estimate the sampling floor D_0
STATIONARY = 1e-4        # precondition: |mean gradient| below 1e-4 of the rms per-example gradient
ASSUMED_NOISE = 0.5      # nn.MSELoss is the negative log-likelihood of N(f, 1/2) up to a constant


def _dataset(n: int, dim: int, noise_var: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x ~ N(0, I)``, ``y = w.x + N(0, noise_var)`` with ``w`` uniform on the unit sphere."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    w = torch.randn(dim, 1, generator=g, dtype=torch.float64)
    return x, x @ (w / w.norm()) + math.sqrt(noise_var) * torch.randn(n, 1, generator=g, dtype=torch.float64)


def _distances(model: nn.Module, data: tuple, seed: int) -> dict:
    ce = nn.MSELoss()
    exact = fisher(model, ce, data).to_dense()
    scale = float(torch.linalg.norm(exact))
    emp = float(torch.linalg.norm(empirical_fisher(model, ce, data).to_dense() - exact)) / scale
    floor = [float(torch.linalg.norm(fisher(model, ce, data, num_draws=1, seed=seed * 100 + k).to_dense() - exact))
             / scale for k in range(FLOOR_DRAWS)]
    fn = ModelFunction(model, ce, data)
    grad = float(torch.linalg.norm(fn.join(fn.gradient())))
    rms = math.sqrt(float(torch.trace(empirical_fisher(model, ce, data).to_dense())))
    return {"distance": emp, "floor": floor, "gradient_ratio": grad / rms}


def measure_empirical_fisher(ctx: Context) -> dict:
    n, dim, steps = ctx.pick(2000, 20000), ctx.pick(10, 50), ctx.pick(300, 1000)
    seeds = ctx.seeds(3, 5)
    # the noise variance the likelihood assumes (MSE = Gaussian NLL with variance 1/2), and four times it;
    # control: both arms well-specified
    arms = {"specified": ASSUMED_NOISE, "misspecified": ASSUMED_NOISE if ctx.control else 4 * ASSUMED_NOISE}
    runs = []
    for seed in seeds:
        for arm, noise_var in arms.items():
            x, y = _dataset(n, dim, noise_var, seed)
            data = (x.to(ctx.device), y.to(ctx.device))
            torch.manual_seed(seed)
            model = nn.Linear(dim, 1).double().to(ctx.device)
            start = _distances(model, data, seed)
            train(model, nn.MSELoss(), data, steps=steps, lr=0.4)
            runs.append({"seed": seed, "arm": arm, "start": start, "optimum": _distances(model, data, seed)})
    return {"n": n, "dim": dim, "seeds": seeds, "noise_var": arms, "runs": runs}


def _log_ratio(point: dict) -> float:
    return math.log(point["distance"] / float(np.mean(point["floor"])))


def judge_empirical_fisher(m: dict, p) -> Judgement:
    runs = {(r["seed"], r["arm"]): r for r in m["runs"]}
    seeds = m["seeds"]
    spec = [runs[(s, "specified")] for s in seeds]
    mis = [runs[(s, "misspecified")] for s in seeds]
    stationary = max(r["optimum"]["gradient_ratio"] for r in m["runs"])
    away = [_log_ratio(r["start"]) for r in spec]
    at_opt = [_log_ratio(r["optimum"]) for r in spec]
    misfit = [_log_ratio(r["optimum"]) for r in mis]
    # the spread of log D_0 over label draws: the error of one draw, and of the mean of FLOOR_DRAWS of them
    spread = float(np.mean([np.std(np.log(r["optimum"]["floor"]), ddof=1) for r in spec]))
    tol = 2 * spread * math.sqrt(1 + 1 / FLOOR_DRAWS) / math.sqrt(len(seeds))
    checks = [precondition("training reached the optimum: |mean gradient| / rms per-example gradient",
                           stationary <= STATIONARY, requirement=f"<= {STATIONARY:g}", measured=stationary),
              effect("away from the optimum (initialisation), well-specified: log(D / D_0)", *mean_and_stderr(away),
                     smallest=DIFFERS, source="declared in advance: twice the sampling floor"),
              tolerance("at the optimum, well-specified: log(D / D_0), mean over seeds", float(np.mean(at_opt)), 0.0,
                        tol, source=f"the spread of log D_0 over {FLOOR_DRAWS} label draws from the model (one "
                                    "draw's error and the floor's), over sqrt(seeds), times 2"),
              effect("at the optimum, misspecified: log(D / D_0)", *mean_and_stderr(misfit), smallest=DIFFERS,
                     source="declared in advance: twice the sampling floor")]
    return Judgement(checks, predicted="F_emp = F (up to sampling) only at the optimum of a well-specified model",
                     measured=(f"D / D_0: away {math.exp(np.mean(away)):.2f}, optimum well-specified "
                               f"{math.exp(np.mean(at_opt)):.2f}, optimum misspecified "
                               f"{math.exp(np.mean(misfit)):.2f}"),
                     per_seed={"seed": seeds, "away, well-specified": away, "optimum, well-specified": at_opt,
                               "optimum, misspecified": misfit},
                     rule="log(D / D_0) per seed (each seed its own teacher, data and initialisation), averaged over "
                          "seeds with the standard error.")


def figure_empirical_fisher(m: dict, p):
    fig, ax = new_figure(width=5.5, height=3.6)
    colors = dict(zip(["specified", "misspecified"], measured_shades(2)))
    for k, (arm, label) in enumerate((("specified", "well-specified"), ("misspecified", "misspecified"))):
        runs = [r for r in m["runs"] if r["arm"] == arm]
        for j, point in enumerate(("start", "optimum")):
            x = 2 * j + 0.4 * k
            ratios = [math.exp(_log_ratio(r[point])) for r in runs]
            ax.scatter(np.full(len(ratios), x), ratios, color=colors[arm], s=18, label=label if j == 0 else None)
            draws = np.concatenate([np.asarray(r[point]["floor"]) / np.mean(r[point]["floor"]) for r in runs])
            ax.scatter(np.full(len(draws), x + 0.15), draws, color=CONTROL, marker="_", s=40,
                       label="labels drawn from the model" if j == 0 and k == 0 else None)
    prediction_level(ax, y=1.0, label="prediction at a well-specified optimum")
    ax.set_xticks([0.2, 2.2], ["initialisation", "optimum"])
    ax.set_yscale("log")
    ax.set(ylabel=r"$\|F_{emp} - F\|_F$ / sampling floor", title="empirical Fisher vs Fisher (= Hessian)")
    legend_outside(ax, where="right")
    return fig


claim("kunstner2019.empirical_fisher",
      title="The empirical Fisher equals the Fisher only at a well-specified optimum",
      citation="Kunstner, Hennig & Balles 2019, NeurIPS (Limitations of the empirical Fisher approximation for natural "
               "gradient descent), Sec. 3",
      statement="The empirical Fisher differs from the Fisher (here equal to the Hessian) away from the optimum, and "
                "approaches it at the optimum only when the model is well-specified.",
      tolerance="Linear regression, Gaussian likelihood of MSE (noise variance 1/2); misspecified data have noise "
                "variance 2. D = ||F_emp - F||_F / ||F||_F (dense, exact Fisher) against its sampling floor D_0, the "
                "same distance for the Fisher of one label drawn per input from the model (mean of 8 draws). "
                "Precondition: GD reached the optimum (|mean gradient| <= 1e-4 of the rms per-example gradient). At a "
                "well-specified optimum log(D / D_0), averaged over 3 seeds, must be within 2x the spread of log D_0 "
                "over draws (one draw's error with the floor's, over sqrt(3)) of 0; away from it and for the "
                "misspecified model log(D / D_0) is an effect that is refuted below log 2 (declared in advance).",
      control="both arms well-specified (noise variance 1/2, the likelihood's, in both): the empirical Fisher then "
              "reaches the Fisher at the optimum, so the misspecification effect is absent",
      predictions={}, measure=measure_empirical_fisher, judge=judge_empirical_fisher, figure=figure_empirical_fisher,
      mutations=[
          Mutation("F_emp equals F everywhere", numbers=lambda m: {**m, "runs": [
              {**r, "start": {**r["start"], "distance": float(np.mean(r["start"]["floor"]))},
               "optimum": {**r["optimum"], "distance": float(np.mean(r["optimum"]["floor"]))}} for r in m["runs"]]}),
          Mutation("F_emp off by 3x the floor at the well-specified optimum", numbers=lambda m: {**m, "runs": [
              {**r, "optimum": {**r["optimum"], "distance": 3 * r["optimum"]["distance"]}} if r["arm"] == "specified"
              else r for r in m["runs"]]}),
          Mutation("training stopped early", numbers=lambda m: {**m, "runs": [
              {**r, "optimum": {**r["optimum"], "gradient_ratio": 0.1}} for r in m["runs"]]}),
      ])
