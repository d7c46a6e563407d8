"""Learning-rate schedules for the last iterate (Defazio, Cutkosky, Mehta & Mishchenko 2023, "When, why and
how much? Adaptive learning rate scheduling by refinement", arXiv:2310.07831).

Their last-iterate bound for convex problems (:func:`theorylab.theory.last_iterate_bound`) is minimised by
the linear decay ``1 - t/T``: with each schedule at its best peak step, linear decay matches or beats cosine
annealing for the last iterate.  Their refinement (:func:`theorylab.schedules.refined_schedule`) turns the
gradient norms observed in a run into a schedule; where the norms fall early in training, the refined
schedule starts with a warm-up.

The experiment is their setting: SGD on a convex problem, multinomial logistic regression on overlapping
Gaussian classes (so the minimum is not zero and the gradient noise never vanishes), the suboptimality
``f(x_T) - f_*`` of the last iterate measured against ``f_*`` from L-BFGS.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.optimize
import torch

from theorylab.claims import (Context, Judgement, Mutation, bound, claim, effect, mean_and_stderr, paired_difference,
                              precondition)
from theorylab.claims.figures import MEASURED, legend_outside, log_axis, measured_shades, prediction, prediction_level
from theorylab.data import gaussian_mixture
from theorylab.plotting import new_figure
from theorylab.schedules import make_schedule, refined_schedule
from theorylab.theory import last_iterate_bound

SCHEDULES = ("constant", "cosine", "linear")
LR_GRID = (0.0125, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8)
BATCH = 4
STREAMS = 6       # sample streams per seed: the last-iterate suboptimality is averaged over them
SMOOTHING = 0.05  # running median over 5% of the run, as the paper smooths the observed norms
WARMUP = math.log(2.0)  # declared: a warm-up means the refined schedule at least doubles from its start


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _loss(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of the linear classifier ``w`` (d x C)."""
    z = x @ w
    z = z - z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


def _optimum(x: np.ndarray, y: np.ndarray, classes: int) -> float:
    """``f_*`` by L-BFGS to a gradient norm of 1e-10 (the problem is convex)."""
    d, onehot = x.shape[1], np.eye(classes)[y]
    res = scipy.optimize.minimize(lambda v: _loss(v.reshape(d, classes), x, y), np.zeros(d * classes),
                                  jac=lambda v: (x.T @ (_softmax(x @ v.reshape(d, classes)) - onehot) / len(y)).ravel(),
                                  method="L-BFGS-B", options={"gtol": 1e-10, "maxiter": 5000})
    return float(res.fun)


def _sgd(x: np.ndarray, y: np.ndarray, classes: int, steps: np.ndarray, *, streams: int, seed: int,
         batch: int | None) -> tuple[np.ndarray, np.ndarray]:
    """SGD from zero for every row of ``steps`` (runs x T step sizes) on each of ``streams`` sample streams of
    ``seed`` (batches of ``batch`` drawn with replacement; None: full batch, one stream), all at once: every
    step size sees the same streams.  Returns the last iterates (streams x runs x d x C) and the norms of the
    gradients used (streams x runs x T)."""
    runs, horizon = steps.shape
    streams = 1 if batch is None else streams
    rng = np.random.default_rng(seed)
    onehot = np.eye(classes)[y]
    w = np.zeros((streams, runs, x.shape[1], classes))
    norms = np.zeros((streams, runs, horizon))
    for t in range(horizon):
        idx = np.arange(len(y))[None] if batch is None else rng.integers(len(y), size=(streams, batch))
        xb, yb = x[idx], onehot[idx]                                                       # streams x b x (d, C)
        xt = xb[:, None]                                                                   # streams x 1 x b x d
        grad = xt.transpose(0, 1, 3, 2) @ (_softmax(xt @ w) - yb[:, None]) / xb.shape[1]  # streams x runs x d x C
        norms[:, :, t] = np.sqrt((grad ** 2).sum(axis=(2, 3)))
        w -= steps[None, :, t, None, None] * grad
    return w, norms


def measure_schedules(ctx: Context) -> dict:
    seeds, dim, classes = ctx.seeds(3, 5), ctx.pick(16, 64), 4
    # control: full-batch GD, no gradient noise to anneal away (300 steps: every step costs a pass over the data)
    batch = None if ctx.control else BATCH
    horizon = ctx.pick(300, 1000) if ctx.control else ctx.pick(1000, 5000)
    shapes = {name: make_schedule(name, horizon).values for name in SCHEDULES}
    grid = [(name, lr) for name in SCHEDULES for lr in LR_GRID]
    runs = []
    for seed in seeds:
        split = gaussian_mixture(num_train=ctx.pick(1000, 5000), num_test=1, dim=dim, num_classes=classes,
                                 separation=2.0, seed=seed, dtype=torch.float64)
        x, y = split.x_train.numpy(), split.y_train.numpy()
        f_star = _optimum(x, y, classes)
        w, norms = _sgd(x, y, classes, np.array([lr * shapes[name] for name, lr in grid]), streams=STREAMS,
                        seed=seed, batch=batch)
        # suboptimality, floored at the resolution of f_* (L-BFGS to a gradient norm of 1e-10)
        gap = np.maximum(np.array([[_loss(wi, x, y) - f_star for wi in stream] for stream in w]), 1e-12)
        gap = gap.mean(axis=0).reshape(len(SCHEDULES), len(LR_GRID))
        best_linear = int(np.argmin(gap[SCHEDULES.index("linear")]))
        observed = norms[0, SCHEDULES.index("linear") * len(LR_GRID) + best_linear]
        runs.append({"seed": seed, "f_star": f_star, "gap": gap, "linear_norms": observed})
    return {"seeds": seeds, "steps": horizon, "batch": batch, "lr_grid": list(LR_GRID), "schedules": list(SCHEDULES),
            "runs": runs}


def _best(run: dict, name: str) -> tuple[float, int]:
    row = np.asarray(run["gap"])[SCHEDULES.index(name)]
    return float(row.min()), int(np.argmin(row))


def _predicted_order(p, horizon: int) -> float:
    """``log(bound of linear decay / bound of cosine)``, each at its best peak step: < 0 favours linear."""
    scales = np.geomspace(1e-3, 1.0, 300)
    best = {name: min(p.bound(c * make_schedule(name, horizon).values) for c in scales) for name in ("linear", "cosine")}
    return math.log(best["linear"] / best["cosine"])


def judge_schedules(m: dict, p) -> Judgement:
    runs = m["runs"]
    best = {name: np.array([_best(r, name)[0] for r in runs]) for name in SCHEDULES}
    where = {name: [_best(r, name)[1] for r in runs] for name in SCHEDULES}
    interior = all(0 < i < len(LR_GRID) - 1 for name in SCHEDULES for i in where[name])
    helps = bool(np.all(best["linear"] < best["constant"]) and np.all(best["cosine"] < best["constant"]))
    order = _predicted_order(p, int(m["steps"]))
    diff, se = paired_difference(np.log(best["linear"]), np.log(best["cosine"]))
    refined = [refined_schedule(r["linear_norms"], smoothing=SMOOTHING).values for r in runs]
    rise = np.array([math.log(v.max() / v[0]) for v in refined])
    rise_mean, rise_se = mean_and_stderr(rise)
    direction = dict(upper=0.0) if order < 0 else dict(lower=0.0)
    checks = [
        precondition("annealing helps: linear and cosine both end below the constant schedule, in every seed", helps,
                     requirement="best final suboptimality of linear and cosine < constant",
                     detail="the bound's advantage of decaying schedules is about averaging out gradient noise"),
        precondition("every schedule's best peak step lies inside the grid", interior,
                     requirement=f"best lr strictly inside {list(LR_GRID)}"),
        bound("log(last-iterate suboptimality of linear / of cosine), paired over seeds", diff, **direction,
              slack=2 * se, source="2 paired standard errors over seeds",
              detail=f"the bound predicts log(linear / cosine) = {order:.3f} at their best peak steps"),
        effect("warm-up of the refined schedule: log(its peak / its first value), over seeds", rise_mean, rise_se,
               smallest=WARMUP, exceed=WARMUP, source="declared in advance: a warm-up at least doubles the step"),
    ]
    return Judgement(checks, predicted="linear decay <= cosine (last iterate, tuned peak step); the refined schedule "
                                       "warms up",
                     measured=f"linear / cosine suboptimality x{math.exp(diff):.3f} (paired over seeds); refined "
                              f"schedule rises x{math.exp(rise_mean):.2f} from its start",
                     per_seed={"seed": list(m["seeds"]),
                               **{f"best {name}": best[name].tolist() for name in SCHEDULES},
                               **{f"best lr {name}": [LR_GRID[i] for i in where[name]] for name in SCHEDULES},
                               "refined: peak / start": np.exp(rise).tolist(),
                               "refined: peak at step": [int(np.argmax(v)) for v in refined]},
                     rule="each seed draws its own data and sample stream, shared by every schedule and peak step; the "
                          "best peak step is chosen per seed and schedule; log ratios are paired over seeds.")


def figure_schedules(m: dict, p):
    fig, (ax_g, ax_r, ax_s) = new_figure(ncols=3, width=3.3, height=3.2)
    lrs = np.asarray(m["lr_grid"])
    shades = dict(zip(SCHEDULES, measured_shades(3)))
    for name, marker in zip(SCHEDULES, "sdo"):
        gaps = np.array([np.asarray(r["gap"])[SCHEDULES.index(name)] for r in m["runs"]])
        ax_g.plot(lrs, np.exp(np.log(gaps).mean(axis=0)), marker=marker, ms=3, color=shades[name], label=name)
    log_axis(ax_g, "x")
    log_axis(ax_g, "y")
    ax_g.set(xlabel="peak learning rate", ylabel=r"$f(x_T) - f_*$ (geometric mean)", title="last iterate")
    legend_outside(ax_g, ncol=3)
    ratio = [_best(r, "linear")[0] / _best(r, "cosine")[0] for r in m["runs"]]
    ax_r.plot(m["seeds"], ratio, "o", color=MEASURED, label="measured, per seed (best peak steps)")
    prediction_level(ax_r, y=math.exp(_predicted_order(p, int(m["steps"]))), label="last-iterate bound (prediction)")
    ax_r.axhline(1.0, color="0.5", lw=1)
    ax_r.set(xlabel="seed", ylabel="suboptimality: linear / cosine", title="linear vs cosine", xticks=m["seeds"])
    legend_outside(ax_r, ncol=1)
    horizon = int(m["steps"])
    t = np.arange(horizon)
    for i, r in enumerate(m["runs"]):
        ax_s.plot(t, refined_schedule(r["linear_norms"], smoothing=SMOOTHING).values,
                  color=measured_shades(len(m["runs"]))[i], lw=0.8, label=f"refined, seed {r['seed']}")
    prediction(ax_s, t, make_schedule("linear", horizon).values, label="linear decay")
    ax_s.set(xlabel="step", ylabel="learning-rate multiplier", title="refined from gradient norms")
    legend_outside(ax_s, ncol=2)
    return fig


claim("defazio2023.linear_decay_schedule",
      title="Linear decay matches or beats cosine for the last iterate; refined schedules warm up",
      citation="Defazio, Cutkosky, Mehta & Mishchenko 2023 (When, why and how much? Adaptive learning rate scheduling "
               "by refinement), arXiv:2310.07831",
      statement="For SGD on a convex problem, with each schedule at its best peak step, the linear decay schedule "
                "1 - t/T (the minimiser of the last-iterate bound) matches or beats cosine annealing for the last "
                "iterate; the schedule refined from the gradient norms observed in a run starts with a warm-up where "
                "the norms fall early.",
      tolerance="Per seed (3): SGD (batch 4, 1,000 steps) on 4-class logistic regression (overlapping Gaussian classes, "
                "d = 16, n = 1,000), each schedule at its best of 7 peak steps (factor-2 grid), suboptimality f(x_T) - "
                "f_* against L-BFGS. Preconditions: annealing helps (both decaying schedules end below the constant "
                "one in every seed) and every best peak step is inside the grid. Linear vs cosine: the paired mean "
                "log ratio must lie on the side the bound predicts, with a slack of 2 paired standard errors. Warm-up: "
                "the refined schedule (running median over 5% of the run) must at least double from its first value "
                "(declared in advance), an effect over seeds. The paper's rapid final annealing appears where gradient "
                "norms rise late in training, which a convex problem does not produce; it is not tested here.",
      control="full-batch GD (300 steps) instead of SGD: no gradient noise, so annealing should not help (precondition)",
      predictions={"bound": last_iterate_bound},
      measure=measure_schedules, judge=judge_schedules, figure=figure_schedules,
      mutations=[
          Mutation("the bound reversed (favours cosine)",
                   predictions={"bound": lambda lrs: 1.0 / last_iterate_bound(lrs)}),
          Mutation("cosine 20% better", numbers=lambda m: {**m, "runs": [
              {**r, "gap": np.asarray(r["gap"]) * np.array([[1.0], [0.8], [1.0]])} for r in m["runs"]]}),
          Mutation("gradient norms constant (no warm-up)", numbers=lambda m: {**m, "runs": [
              {**r, "linear_norms": np.ones_like(np.asarray(r["linear_norms"]))} for r in m["runs"]]}),
          Mutation("annealing does not help (constant 10x better)", numbers=lambda m: {**m, "runs": [
              {**r, "gap": np.asarray(r["gap"]) * np.array([[0.1], [1.0], [1.0]])} for r in m["runs"]]}),
          Mutation("the best peak step at the grid's edge", numbers=lambda m: {**m, "runs": [
              {**r, "gap": np.concatenate([np.asarray(r["gap"])[:, :-1], np.full((3, 1), 1e-6)], axis=1)}
              for r in m["runs"]]}),
      ])
