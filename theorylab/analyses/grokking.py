"""Grokking as the transition from lazy to rich training dynamics (Kumar, Bordelon, Gershman &
Pehlevan 2024, "Grokking as the transition from lazy to rich training dynamics", ICLR).

A two-layer network ``f = alpha (g(x) - g_0(x))`` (centred at initialisation) is trained on a
polynomial target with the loss ``MSE / alpha^2`` (Chizat, Oyallon & Bach 2019): the function
moves at the same rate for every output scale ``alpha`` while the parameters move ``O(1/alpha)``.
Large ``alpha`` makes the early dynamics lazy -- the network fits the training set with its initial
kernel, which generalises poorly on a polynomial with few samples -- and generalisation only comes
once features are learned, later the larger ``alpha`` is.  The NTK rotates towards the target while
this happens: the kernel-target alignment rises when the test loss drops (Sec. 4, Fig. 3).

The target is a single-index ``He_2(beta . x)`` on the sphere of radius ``sqrt(d)``, which a bias-free
ReLU network can represent (on Gaussian inputs its best achievable test loss is 16% of the variance,
above the 10% that counts as generalising).  With ``n = 200 < d^2`` samples in ``d = 12`` the initial
kernel cannot learn it, feature learning can.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from theorylab.claims import Context, Judgement, Mutation, claim, effect, mean_and_stderr, precondition, undecided
from theorylab.claims.figures import band, legend_outside, measured_shades, prediction_level
from theorylab.kernels import ntk_monitor
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.train import loss_monitor, train

GENERALISED = 0.1  # test loss below 10% of the target variance (R^2 >= 0.9)
FITTED = 0.1       # training loss below 10% of the target variance
ALPHAS = (1.0, 4.0, 16.0)


class Centered(nn.Module):
    """``alpha (g(x) - g_0(x))`` with a frozen copy ``g_0`` of ``g`` at initialisation."""

    def __init__(self, net: nn.Module, alpha: float):
        super().__init__()
        self.net, self.alpha = net, alpha
        self.initial = copy.deepcopy(net).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * (self.net(x) - self.initial(x))


def _sphere_task(dim: int, n_train: int, n_test: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    beta = torch.randn(dim, generator=g)
    beta = beta / beta.norm()
    x = torch.randn(n_train + n_test, dim, generator=g)
    x = x / x.norm(dim=1, keepdim=True) * math.sqrt(dim)
    y = ((x @ beta) ** 2 - 1)[:, None]  # He_2(beta . x)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def measure_grokking(ctx: Context) -> dict:
    dim, n_train, n_test = 12, ctx.pick(200, 600), 400
    width, steps, every = ctx.pick(128, 1024), ctx.pick(800, 10000), ctx.pick(10, 50)
    seeds = ctx.seeds(3, 5)[:2] if ctx.control else ctx.seeds(3, 5)
    runs = []
    for seed in seeds:
        x, y, x_test, y_test = (t.to(ctx.device) for t in _sphere_task(dim, n_train, n_test, seed))
        mse = nn.MSELoss()
        for alpha in ALPHAS:
            net = MLP(dim, [width], 1, parametrization="mup", bias=False, seed=seed)
            if ctx.control:  # random features: the function moves identically for every alpha
                net.hidden_layers.requires_grad_(False)
            run = train(Centered(net, alpha).to(ctx.device), lambda out, t, a=alpha: mse(out, t) / a ** 2, (x, y),
                        steps=steps, lr=0.5, monitors=[loss_monitor(mse, (x, y), name="train", every=every),
                                                       loss_monitor(mse, (x_test, y_test), name="test", every=every),
                                                       ntk_monitor(x, y, every=every * 10, params="net")])
            runs.append({"seed": seed, "alpha": alpha, "steps": run.monitor_steps["train"],
                         "train": run.monitors["train"], "test": run.monitors["test"],
                         "alignment_steps": run.monitor_steps["ntk.centered_alignment"],
                         "alignment": run.monitors["ntk.centered_alignment"], "variance": float(y_test.var())})
    return {"seeds": seeds, "alphas": list(ALPHAS), "steps": steps, "every": every, "runs": runs}


def _first_below(steps: np.ndarray, values: np.ndarray, level: float) -> int | None:
    hit = np.nonzero(values <= level)[0]
    return None if len(hit) == 0 else int(steps[hit[0]])


def _timing(run: dict, budget: int) -> tuple[int | None, int | None, float]:
    """(fit step, generalisation step, delay); a run that never generalises has the delay budget - fit step
    (a lower bound, so a censored run can only understate the growth of the delay)."""
    steps, var = np.asarray(run["steps"]), run["variance"]
    fit = _first_below(steps, np.asarray(run["train"]), FITTED * var)
    gen = _first_below(steps, np.asarray(run["test"]), GENERALISED * var)
    if fit is None:
        return None, gen, math.nan
    return fit, gen, float((gen if gen is not None else budget) - fit)


def _alignment_rise(run: dict, fit: int, gen: int | None, budget: int) -> float:
    steps, align = np.asarray(run["alignment_steps"]), np.asarray(run["alignment"])
    end = gen if gen is not None else budget
    before = align[steps <= fit][-1] if np.any(steps <= fit) else align[0]
    after = align[steps >= end][0] if np.any(steps >= end) else align[-1]
    return float(after - before)


def judge_grokking(m: dict, p) -> Judgement:
    budget, every = int(m["steps"]), int(m["every"])
    low, high = min(m["alphas"]), max(m["alphas"])
    table: dict = {"seed": [], "alpha": [], "fit step": [], "generalisation step": [], "delay": []}
    timing = {}
    for run in m["runs"]:
        fit, gen, delay = _timing(run, budget)
        timing[(run["seed"], run["alpha"])] = (fit, gen, delay)
        for key, value in zip(table, (run["seed"], run["alpha"], fit, gen if gen is not None else "never", delay)):
            table[key].append(value)
    fits_all = all(t[0] is not None for t in timing.values())
    rich_learns = all(timing[(s, low)][1] is not None for s in m["seeds"])
    checks = [precondition(f"alpha = {low:g} (the richest) generalises in every seed: the network can learn the target",
                           rich_learns, requirement=f"test loss <= {GENERALISED:g} x variance within {budget} steps"),
              precondition("every run fits its training set", fits_all,
                           requirement=f"training loss <= {FITTED:g} x variance")]
    name = "log((delay at the largest alpha + k) / (delay at the smallest alpha + k)), k = monitoring interval"
    if fits_all:
        growth = [math.log((timing[(s, high)][2] + every) / (timing[(s, low)][2] + every)) for s in m["seeds"]]
        mean, se = mean_and_stderr(growth)
        checks.append(effect(name, mean, se, smallest=math.log(2),
                             source="declared in advance: a doubling of the delay over a 16-fold range of alpha"))
        runs = {(r["seed"], r["alpha"]): r for r in m["runs"]}
        rises = [_alignment_rise(runs[(s, high)], timing[(s, high)][0], timing[(s, high)][1], budget) for s in m["seeds"]]
        mean_rise, se_rise = mean_and_stderr(rises)
        checks.append(effect(f"alpha = {high:g}: rise of the centred kernel-target alignment from fit to generalisation",
                             mean_rise, se_rise, smallest=0.01,
                             source="declared in advance: 0.01 of centred alignment (a fixed kernel gives exactly 0)"))
        measured = (f"delay x{math.exp(np.mean(growth)):.3g} from alpha = {low:g} to {high:g}; alignment rise "
                    f"{mean_rise:.3f}")
    else:
        checks.append(undecided(name, kind="effect", predicted="> 0", why="a run never fitted its training set"))
        measured = "not every run fitted its training set"
    return Judgement(checks, predicted="the delay between fitting and generalising grows with alpha; the NTK aligns "
                                       "with the target as the test loss drops",
                     measured=measured, per_seed=table,
                     rule="each seed draws its own target, data and initialisation, shared by its output scales; the "
                          "growth of the delay and the alignment rise are averaged over seeds with their standard "
                          "errors (paired by seed).")


def figure_grokking(m: dict, p):
    fig, (ax_l, ax_a) = new_figure(ncols=2, width=3.8, height=3.2)
    alphas = list(m["alphas"])
    shades = dict(zip(alphas, measured_shades(len(alphas))))
    for alpha in alphas:
        runs = [r for r in m["runs"] if r["alpha"] == alpha]
        steps = np.asarray(runs[0]["steps"])
        band(ax_l, steps, [np.asarray(r["test"]) / r["variance"] for r in runs], color=shades[alpha], marker="",
             label=rf"$\alpha = {alpha:g}$: test")
        ax_l.plot(steps, np.mean([np.asarray(r["train"]) / r["variance"] for r in runs], axis=0), ls=":",
                  color=shades[alpha], lw=1)
        band(ax_a, np.asarray(runs[0]["alignment_steps"]), [r["alignment"] for r in runs], color=shades[alpha],
             label=rf"$\alpha = {alpha:g}$")
    prediction_level(ax_l, y=GENERALISED, label=r"generalised ($R^2 = 0.9$)")
    ax_l.plot([], [], ls=":", color="0.4", label="training loss")
    ax_l.set(xlabel="step", ylabel="loss / target variance", yscale="log", title="lazy to rich")
    legend_outside(ax_l)
    ax_a.set(xlabel="step", ylabel="centred kernel-target alignment", title="NTK alignment (training set)")
    legend_outside(ax_a)
    return fig


def _same_delay(m: dict) -> dict:
    """Every output scale gets the delay of the smallest alpha."""
    reference = {r["seed"]: r for r in m["runs"] if r["alpha"] == min(m["alphas"])}
    return {**m, "runs": [{**r, "steps": reference[r["seed"]]["steps"], "train": reference[r["seed"]]["train"],
                           "test": reference[r["seed"]]["test"]} for r in m["runs"]]}


claim("kumar2024.grokking_lazy_to_rich",
      title="Grokking: a large output scale delays generalization after the training fit",
      citation="Kumar, Bordelon, Gershman & Pehlevan 2024, ICLR (Grokking as the transition from lazy to rich training "
               "dynamics), Sec. 3-4",
      statement="With a polynomial target that the network can represent and a two-layer network trained with loss "
                "MSE/alpha^2, the test loss drops after the training loss is low, the delay grows with alpha, and the "
                "centred kernel-target alignment of the NTK rises when the test loss drops.",
      tolerance="Fitted / generalised: loss below 10% of the target variance, read every 10 steps. Preconditions: "
                "the richest network (alpha = 1) generalises in every seed (the network can learn the target: inputs "
                "on the sphere, where a bias-free ReLU network represents He_2), and every run fits its training set. "
                "Per seed (3) the growth of the delay is log((d_16 + 10) / (d_1 + 10)) (a run that never generalises "
                "counts with the rest of the budget, a lower bound); the effect over seeds is refuted if its 95% "
                "interval lies below log 2 (a doubling, declared in advance). Alignment: its rise from the fit to the "
                "generalisation step at alpha = 16, refuted below 0.01.",
      control="random features (first layer frozen): the function then moves identically for every alpha",
      predictions={},
      measure=measure_grokking, judge=judge_grokking, figure=figure_grokking,
      mutations=[
          Mutation("the same delay for every alpha", numbers=_same_delay),
          Mutation("no alignment change", numbers=lambda m: {**m, "runs": [
              {**r, "alignment": np.full(len(r["alignment"]), r["alignment"][0])} for r in m["runs"]]}),
          Mutation("the training set never fitted", numbers=lambda m: {**m, "runs": [
              {**r, "train": np.asarray(r["train"]) + r["variance"]} for r in m["runs"]]}),
          Mutation("alpha = 1 never generalises", numbers=lambda m: {**m, "runs": [
              {**r, "test": np.asarray(r["test"]) + (r["variance"] if r["alpha"] == min(m["alphas"]) else 0.0)}
              for r in m["runs"]]}),
      ])
