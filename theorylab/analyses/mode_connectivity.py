"""Linear mode connectivity after weight matching (Ainsworth, Hayase & Srinivasa 2023, "Git Re-Basin:
merging models modulo permutation symmetries", ICLR).

Two networks trained from different seeds are separated by a loss barrier on the straight line
between their weights (Frankle et al. 2020).  Ainsworth et al. conjecture that this is mostly a
matter of the permutation symmetry of hidden units: after permuting one network's units to match the
other's weights (weight matching, their Algorithm 1), the barrier nearly vanishes, and the wider the
network the smaller it gets (Sec. 3-4, Fig. 2 and 4).
"""
from __future__ import annotations

import math

import numpy as np
from torch import nn

from theorylab.alignment import random_permutation, weight_matching
from theorylab.claims import Context, Judgement, Mutation, claim, effect, mean_and_stderr, precondition
from theorylab.claims.figures import CONTROL, band, legend_outside, log_axis, measured_shades, prediction
from theorylab.data import load_digits
from theorylab.landscape import linear_interpolation
from theorylab.metrics import accuracy
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.train import train

REMOVED = math.log(10.0)  # smallest predicted reduction: matching removes 90% of the barrier (declared in advance)
SLOPE = 0.25              # smallest predicted decrease of log(barrier after matching) per unit of log(width)
TRAINED = 0.99            # precondition: training accuracy of every endpoint


def measure_mode_connectivity(ctx: Context) -> dict:
    widths, n, steps = ctx.pick([8, 32, 128], [32, 128, 512, 2048]), ctx.pick(600, 1257), ctx.pick(200, 1000)
    seeds = ctx.seeds(3, 5)
    ce = nn.CrossEntropyLoss()
    runs = []
    for seed in seeds:
        split = load_digits(seed=seed).subsample(n, seed=seed).to(ctx.device)
        for width in widths:
            a, b = (MLP(64, [width], 10, seed=1000 * seed + k).to(ctx.device) for k in (1, 2))
            for k, model in enumerate((a, b)):
                train(model, ce, split.train, steps=steps, lr=0.01, optimizer="adam", seed=k)
            # control: a random permutation of b's units in place of the one weight matching finds
            aligned = random_permutation(b, seed=seed) if ctx.control else weight_matching(a, b, seed=seed).apply(b)
            naive = linear_interpolation(a, b, ce, split.train, num_points=11)
            matched = linear_interpolation(a, aligned, ce, split.train, num_points=11)
            runs.append({"seed": seed, "width": width, "naive": naive.barrier, "matched": matched.barrier,
                         "alphas": matched.alphas, "naive_losses": naive.losses, "matched_losses": matched.losses,
                         "train_accuracy": min(accuracy(a, split.train), accuracy(b, split.train))})
    return {"widths": widths, "n": n, "seeds": seeds, "runs": runs}


def _per_seed(m: dict, key: str) -> np.ndarray:
    """``(seeds, widths)`` array of ``key``."""
    table = {(r["seed"], r["width"]): r[key] for r in m["runs"]}
    return np.array([[table[(s, w)] for w in m["widths"]] for s in m["seeds"]], dtype=np.float64)


def judge_mode_connectivity(m: dict, p) -> Judgement:
    widths = np.asarray(m["widths"], dtype=np.float64)
    naive, matched = _per_seed(m, "naive"), _per_seed(m, "matched")
    trained = float(_per_seed(m, "train_accuracy").min())
    floor = 1e-6  # a barrier below this is a numerical zero (float32 losses)
    removed = np.log(np.maximum(naive[:, -1], floor) / np.maximum(matched[:, -1], floor))
    slopes = [-np.polyfit(np.log(widths), np.log(np.maximum(row, floor)), 1)[0] for row in matched]
    checks = [precondition(f"every endpoint fits its training set (accuracy >= {TRAINED:g})", trained >= TRAINED,
                           requirement=f">= {TRAINED:g}", measured=trained),
              precondition("a barrier to remove: the naive barrier at the widest width is > 0 in every seed",
                           bool(np.all(naive[:, -1] > floor)), requirement="> 0", measured=float(naive[:, -1].min())),
              effect(f"width {int(widths[-1])}: log(naive barrier / barrier after weight matching)",
                     *mean_and_stderr(removed), smallest=REMOVED,
                     source="declared in advance: matching removes 90% of the barrier (Ainsworth et al. report "
                            "near-zero barriers for wide MLPs)"),
              effect("width dependence: -d log(barrier after matching) / d log(width)", *mean_and_stderr(slopes),
                     smallest=SLOPE, source="declared in advance: the barrier after matching falls at least as "
                                            "width^-1/4")]
    return Judgement(checks, predicted="weight matching removes the barrier, more so the wider the network",
                     measured=(f"width {int(widths[-1])}: barrier {naive[:, -1].mean():.3g} -> "
                               f"{matched[:, -1].mean():.3g}; barrier after matching ~ width^-{np.mean(slopes):.2f}"),
                     per_seed={"seed": m["seeds"], "log(naive / matched), widest": removed.tolist(),
                               "slope of log(matched barrier) in log(width)": slopes},
                     rule="each seed trains its own pair of networks per width on its own subsample; the reduction "
                          "at the widest width and the per-seed slope are averaged over seeds with standard errors.")


def figure_mode_connectivity(m: dict, p):
    fig, (ax_b, ax_l) = new_figure(ncols=2, width=3.8, height=3.2)
    widths = np.asarray(m["widths"], dtype=np.float64)
    naive, matched = _per_seed(m, "naive"), _per_seed(m, "matched")
    band(ax_b, widths, naive, color=CONTROL, label="naive (no alignment)")
    band(ax_b, widths, matched, label="after weight matching")
    fit = np.polyfit(np.log(widths), np.log(np.maximum(matched.mean(0), 1e-6)), 1)
    prediction(ax_b, widths, np.exp(np.polyval(fit, np.log(widths)))[0] * (widths / widths[0]) ** -SLOPE,
               label=r"predicted: falls at least as width$^{-1/4}$")
    log_axis(ax_b, "x", ticks=list(m["widths"]))
    ax_b.set(yscale="log", xlabel="hidden width", ylabel="loss barrier (train)", title="barrier against width")
    legend_outside(ax_b)
    shades = measured_shades(len(m["widths"]))
    for width, color in zip(m["widths"], shades):
        run = next(r for r in m["runs"] if r["width"] == width and r["seed"] == m["seeds"][0])
        ax_l.plot(run["alphas"], run["naive_losses"], ls=":", color=color)
        ax_l.plot(run["alphas"], run["matched_losses"], color=color, label=f"width {width}")
    ax_l.set(yscale="log", xlabel="interpolation alpha", ylabel="training loss",
             title="dotted: naive; solid: matched")
    legend_outside(ax_l)
    return fig


claim("ainsworth2023.weight_matching_connectivity",
      title="Weight matching removes the loss barrier between independently trained networks, more so when wider",
      citation="Ainsworth, Hayase & Srinivasa 2023, ICLR (Git Re-Basin: merging models modulo permutation "
               "symmetries), Sec. 3-4",
      statement="Two networks trained from different seeds have a loss barrier on the line between them; after "
                "permuting one network's hidden units by weight matching the barrier nearly vanishes, and it shrinks "
                "with width.",
      tolerance="Barrier = max over 11 points of the line of the training loss above the chord between the endpoints. "
                "Preconditions: every endpoint fits its training set (accuracy >= 0.99) and there is a naive barrier. "
                "Effects over 3 seeds (each its own pair of networks and subsample): log(naive / matched) at the "
                "widest width, refuted below log 10 (90% removed, declared in advance); the slope of log(matched "
                "barrier) in log(width), refuted if its 95% interval lies below 1/4 in magnitude.",
      control="a random permutation of the second network's units replaces weight matching: the same function, no "
              "alignment, so the barrier is not removed",
      predictions={}, measure=measure_mode_connectivity, judge=judge_mode_connectivity,
      figure=figure_mode_connectivity,
      mutations=[
          Mutation("matching leaves the barrier", numbers=lambda m: {**m, "runs": [{**r, "matched": r["naive"]}
                                                                                  for r in m["runs"]]}),
          Mutation("the barrier after matching grows with width", numbers=lambda m: {**m, "runs": [
              {**r, "matched": r["matched"] * (r["width"] / m["widths"][0]) ** 2} for r in m["runs"]]}),
          Mutation("endpoints not trained", numbers=lambda m: {**m, "runs": [{**r, "train_accuracy": 0.5}
                                                                            for r in m["runs"]]}),
          Mutation("no naive barrier", numbers=lambda m: {**m, "runs": [{**r, "naive": 0.0} for r in m["runs"]]}),
      ])
