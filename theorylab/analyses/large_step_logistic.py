"""Logistic regression by gradient descent with large steps becomes the perceptron (Tyurin 2024, "From logistic
regression to the perceptron algorithm: exploring gradient descent with large step sizes", arXiv:2412.08424).

On separable data, GD on the logistic loss reaches zero classification error for any step size; as the step
grows, GD tends to the batch perceptron (:func:`theorylab.theory.batch_perceptron`), so its iterations to zero
error tend to the perceptron's, fall with the step, while the logistic loss along the way grows with it: the
loss is then a poor measure of how close GD is to a separator.  Pairs of digit classes, which are linearly
separable through the origin (checked by a linear programme, :func:`theorylab.implicit_bias.is_separable`).
"""
from __future__ import annotations

import math

import numpy as np

from theorylab.claims import Context, Judgement, Mutation, claim, effect, mean_and_stderr, precondition, tolerance
from theorylab.claims.figures import legend_outside, log_axis, measured_shades, prediction, prediction_level
from theorylab.data import load_digits, with_label_noise
from theorylab.implicit_bias import is_separable, margin_statistics, max_margin
from theorylab.plotting import new_figure
from theorylab.theory import batch_perceptron

STEPS = (0.1, 1.0, 10.0, 100.0, 1e4, 1e6)
PAIRS = ((3, 5), (8, 9), (4, 9))   # digit pairs, one per seed
MAX_ITERATIONS = 3000
CURVE = 40                           # iterations of the loss curve kept for the figure
FACTOR = math.log(2.0)               # declared: "faster" and "higher" mean by at least a factor 2


def pair_data(seed: int, *, flip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The training digits of pair ``PAIRS[seed % 3]`` (split ``seed``), labels +-1; ``flip``: a fraction of
    labels flipped (fixed per seed), which makes the data non-separable."""
    split = load_digits(seed=seed)
    first, second = PAIRS[seed % len(PAIRS)]
    keep = (split.y_train == first) | (split.y_train == second)
    x, y = split.x_train[keep].double(), (split.y_train[keep] == first).long()
    if flip > 0:
        y = with_label_noise(y, flip, 2, seed=seed)
    return x.numpy(), 2.0 * y.numpy() - 1.0


def _logistic(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0.0, -y * (x @ w))))


def logistic_gd(x: np.ndarray, y: np.ndarray, step: float, *, max_iterations: int) -> tuple[int, np.ndarray, list]:
    """GD on the mean logistic loss from ``w = 0``: ``(iterations to zero error, w, losses along the way)``;
    iterations ``max_iterations`` if zero error is never reached."""
    w, losses = np.zeros(x.shape[1]), []
    for t in range(max_iterations):
        m = y * (x @ w)
        if np.all(m > 0):
            return t, w, losses
        losses.append(_logistic(w, x, y))
        weight = np.exp(-np.logaddexp(0.0, m))  # sigma(-m), without overflow
        w = w + step * (weight * y) @ x / len(y)
    return max_iterations, w, losses


def measure_large_steps(ctx: Context) -> dict:
    seeds = ctx.seeds(3, 6)
    flip = 0.1 if ctx.control else 0.0  # control: 10% of labels flipped, no separator exists
    # the control cannot reach zero error at any cap (the linear programme says so): a short one saves time
    cap = 300 if ctx.control else ctx.pick(MAX_ITERATIONS, 20_000)
    runs = []
    for seed in seeds:
        x, y = pair_data(seed, flip=flip)
        separable = is_separable(x, y)
        reference = max_margin(x, y) if separable else None
        per_step = []
        for step in STEPS:
            iterations, w, losses = logistic_gd(x, y, step, max_iterations=cap)
            stats = margin_statistics(w, x, y, reference=None if reference is None else reference.direction)
            per_step.append({"step": step, "iterations": iterations, "losses": losses[:CURVE],
                             "normalized_margin": stats.normalized_margin,
                             "angle": stats.angle if stats.angle is not None else float("nan")})
        runs.append({"seed": seed, "pair": list(PAIRS[seed % len(PAIRS)]), "separable": separable,
                     "max_margin": reference.margin if reference is not None else float("nan"), "runs": per_step})
    return {"seeds": seeds, "steps": list(STEPS), "flip": flip, "max_iterations": cap,
            "datasets": runs}


def judge_large_steps(m: dict, p) -> Judgement:
    data = m["datasets"]
    cap = int(m["max_iterations"])
    iterations = np.array([[r["iterations"] for r in d["runs"]] for d in data], dtype=float)  # seed x step
    reached = all(d["separable"] for d in data) and bool(np.all(iterations < cap))
    checks = [precondition("every dataset is separable and every step size reaches zero training error", reached,
                           requirement=f"separable (linear programme) and zero error within {cap} iterations")]
    limit = np.array([p.perceptron(*pair_data(s, flip=m["flip"]), max_iterations=cap)[0] for s in m["seeds"]])
    miss = float(np.max(np.abs(iterations[:, -1] - limit)))
    faster = np.log(iterations[:, 0] / np.maximum(iterations[:, -1], 1))
    higher = np.array([math.log(d["runs"][-1]["losses"][1] / d["runs"][0]["losses"][1]) for d in data])
    f_mean, f_se = mean_and_stderr(faster)
    h_mean, h_se = mean_and_stderr(higher)
    checks += [
        tolerance(f"largest step ({STEPS[-1]:g}): |iterations to zero error - batch perceptron's|, worst seed", miss, 0.0,
                  0.0, source="exact in double precision: sigma(-m) is 0 or 1 once |m| > 40, so the updates coincide "
                              "unless a point lies within 40/gamma = 4e-5 of the perceptron's boundary"),
        effect(f"faster: log(iterations at step {STEPS[0]:g} / at step {STEPS[-1]:g}), over seeds", f_mean, f_se,
               smallest=FACTOR, exceed=FACTOR, source="declared in advance: at least a factor 2 fewer iterations"),
        effect(f"higher loss: log(loss after one update at step {STEPS[-1]:g} / at step {STEPS[0]:g}), over seeds",
               h_mean, h_se, smallest=FACTOR, exceed=FACTOR, source="declared in advance: at least a factor 2"),
    ]
    return Judgement(checks, predicted="iterations -> batch perceptron's as the step grows; fewer iterations, higher "
                                       "loss at larger steps",
                     measured=f"largest step: {iterations[:, -1].astype(int).tolist()} iterations (perceptron "
                              f"{limit.tolist()}); x{math.exp(f_mean):.3g} fewer than at step {STEPS[0]:g}; loss after "
                              f"one update x{math.exp(h_mean):.3g} higher",
                     per_seed={"seed": list(m["seeds"]), "pair": [d["pair"] for d in data],
                               **{f"iterations at step {s:g}": iterations[:, j].astype(int).tolist()
                                  for j, s in enumerate(STEPS)},
                               "batch perceptron": limit.tolist()},
                     rule="each seed is one digit pair on its own split; exact agreement with the perceptron is "
                          "required in every seed; the two effects are means over seeds with their standard errors.")


def figure_large_steps(m: dict, p):
    fig, (ax_i, ax_l, ax_m) = new_figure(ncols=3, width=3.3, height=3.7)
    steps = np.asarray(m["steps"], dtype=float)
    shades = measured_shades(len(m["datasets"]))
    for colour, d in zip(shades, m["datasets"]):
        pair = "/".join(str(c) for c in d["pair"])
        ax_i.plot(steps, [r["iterations"] for r in d["runs"]], "o-", ms=3, color=colour, label=f"digits {pair}")
        ax_m.plot(steps, [r["normalized_margin"] for r in d["runs"]], "o-", ms=3, color=colour, label=f"digits {pair}")
        ax_m.axhline(d["max_margin"], color=colour, ls=":", lw=1)
    for d in m["datasets"]:
        limit = p.perceptron(*pair_data(d["seed"], flip=m["flip"]), max_iterations=int(m["max_iterations"]))[0]
        prediction(ax_i, [steps[2], steps[-1]], [limit, limit],
                   label="batch perceptron (limit)" if d is m["datasets"][0] else None)
    log_axis(ax_i, "x")
    log_axis(ax_i, "y")
    ax_i.set(xlabel=r"step size $\gamma$", ylabel="iterations to zero error", title="LR + GD")
    legend_outside(ax_i, ncol=1)
    first = m["datasets"][0]
    for colour, r in zip(measured_shades(len(first["runs"])), first["runs"]):
        ax_l.plot(np.arange(len(r["losses"])), r["losses"], color=colour, lw=1, label=rf"$\gamma = {r['step']:g}$")
    prediction_level(ax_l, y=math.log(2.0), ls=":", label=r"$\log 2$ (at $w = 0$)")
    log_axis(ax_l, "y")
    ax_l.set(xlabel="iteration", ylabel="logistic loss", title=f"digits {'/'.join(map(str, first['pair']))}")
    legend_outside(ax_l, ncol=2)
    log_axis(ax_m, "x")
    ax_m.set(xlabel=r"step size $\gamma$", ylabel="normalised margin of the separator",
             title="margin (dotted: max margin)")
    legend_outside(ax_m, ncol=1)
    return fig


claim("tyurin2024.large_step_perceptron",
      title="Logistic regression by GD with large steps becomes the batch perceptron: fewer iterations, higher loss",
      citation="Tyurin 2024 (From logistic regression to the perceptron algorithm: exploring gradient descent with "
               "large step sizes), arXiv:2412.08424",
      statement="On separable data, gradient descent on the logistic loss reduces to the batch perceptron as the step "
                "size grows; larger steps reach zero classification error in fewer iterations while the logistic loss "
                "along the way is higher, so the loss is an unreliable measure of progress.",
      tolerance="Three digit pairs (3/5, 8/9, 4/9), each separable through the origin (linear programme), step sizes "
                "0.1 to 1e6 from w = 0, at most 3,000 iterations. Precondition: separable and every run reaches zero "
                "error. At step 1e6 the iterations to zero error must equal the batch perceptron's exactly (the "
                "updates "
                "coincide in double precision unless a point lies within 4e-5 of the boundary). Faster: iterations "
                "at step 0.1 over those at 1e6, and higher loss: "
                "the loss after one update at 1e6 over that at 0.1, each an effect over seeds that must exceed a "
                "factor "
                "2 (declared in advance).",
      control="10% of the labels flipped: no separator exists, so zero error is never reached (precondition; 300 "
              "iterations)",
      predictions={"perceptron": batch_perceptron},
      measure=measure_large_steps, judge=judge_large_steps, figure=figure_large_steps,
      mutations=[
          Mutation("the perceptron limit one iteration later",
                   predictions={"perceptron": lambda x, y, **kw: (batch_perceptron(x, y, **kw)[0] + 1, None)}),
          Mutation("iterations independent of the step", numbers=lambda m: {**m, "datasets": [
              {**d, "runs": [{**r, "iterations": d["runs"][-1]["iterations"]} for r in d["runs"]]}
              for d in m["datasets"]]}),
          Mutation("loss independent of the step", numbers=lambda m: {**m, "datasets": [
              {**d, "runs": [{**r, "losses": d["runs"][0]["losses"]} for r in d["runs"]]} for d in m["datasets"]]}),
          Mutation("the smallest step never reaches zero error", numbers=lambda m: {**m, "datasets": [
              {**d, "runs": [{**r, "iterations": m["max_iterations"]} if r["step"] == STEPS[0] else r
                             for r in d["runs"]]} for d in m["datasets"]]}),
      ])
