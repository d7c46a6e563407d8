"""Grokking at the edge of numerical stability (Prieto, Barsbey, Mediano & Birdal 2025, "Grokking at the edge
of numerical stability", ICLR).

Trained without regularization on modular addition, a network first fits its training set; from then on
the cheapest way to lower the cross-entropy is to scale the logits up without changing any prediction
("naive loss minimization", Sec. 4): the gradient aligns with the logit-scaling direction, which for a
bias-free ReLU network is the parameter vector itself.  The margins grow until the float32 softmax
rounds the correct class to probability 1: the samples' losses and gradients become exactly zero
("softmax collapse", Sec. 3) and learning stops before the network generalizes.  Probes:
:func:`theorylab.algorithmic.logit_scaling_cosine` and :func:`theorylab.algorithmic.softmax_collapse_fraction`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from theorylab.algorithmic import logit_scaling_cosine, softmax_collapse_fraction
from theorylab.claims import Context, Judgement, Mutation, bound, claim, effect, mean_and_stderr, precondition
from theorylab.claims.figures import band, legend_outside, prediction_level
from theorylab.metrics import accuracy
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.tasks import modular_arithmetic, one_hot_pairs

ALIGNED = 0.5     # smallest predicted cosine with the logit-scaling direction after fitting (declared in advance)
COLLAPSED = 0.25  # smallest predicted peak fraction of softmax-collapsed training samples (declared in advance)
CHANCE = 2.0      # "no generalization": test accuracy at most twice chance (1/p)


def _run(p: int, seed: int, steps: int, every: int, dtype: torch.dtype, device: torch.device) -> dict:
    split = modular_arithmetic(p, train_fraction=0.4, seed=seed)
    train_set = (one_hot_pairs(split.x_train, p, dtype=dtype).to(device), split.y_train.to(device))
    test_set = (one_hot_pairs(split.x_test, p, dtype=dtype).to(device), split.y_test.to(device))
    model = MLP(2 * p, [128], p, bias=False, seed=seed).to(device=device, dtype=dtype)
    ce = nn.CrossEntropyLoss()
    # Adam with beta2 = 0.98 (as in the grokking literature); theorylab.train's Adam has PyTorch's defaults
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.98))
    history: dict[str, list[float]] = {"step": [], "train_accuracy": [], "test_accuracy": [], "collapse": [],
                                       "cosine": []}
    for step in range(steps + 1):
        if step % every == 0:
            history["step"].append(step)
            history["train_accuracy"].append(accuracy(model, train_set))
            history["test_accuracy"].append(accuracy(model, test_set))
            history["collapse"].append(softmax_collapse_fraction(model, train_set))
            history["cosine"].append(logit_scaling_cosine(model, ce, train_set))
        optimizer.zero_grad(set_to_none=True)
        ce(model(train_set[0]), train_set[1]).backward()
        optimizer.step()
    return history


def measure_softmax_collapse(ctx: Context) -> dict:
    p, steps, every = ctx.pick(23, 97), ctx.pick(1300, 20000), ctx.pick(100, 200)
    seeds = ctx.seeds(3, 5)[:2] if ctx.control else ctx.seeds(3, 5)
    dtype = torch.float64 if ctx.control else torch.float32  # control: float64 cannot collapse at these margins
    runs = [{"seed": seed, **_run(p, seed, steps, every, dtype, ctx.device)} for seed in seeds]
    return {"p": p, "dtype": str(dtype), "seeds": seeds, "runs": runs}


def _fitted_at(run: dict) -> int | None:
    """Index of the first measurement with 100% training accuracy."""
    hit = np.nonzero(np.asarray(run["train_accuracy"]) >= 1.0)[0]
    return None if hit.size == 0 else int(hit[0])


def _aligned(run: dict, fit: int) -> float:
    """Median cosine from the fit until softmax collapse starts (< 1% collapsed), the naive-loss-minimization phase."""
    collapse, cosine = np.asarray(run["collapse"]), np.asarray(run["cosine"])
    window = [i for i in range(fit + 1, len(cosine)) if collapse[i] < 0.01]
    return float(np.median(cosine[window])) if window else float(cosine[-1])


def judge_softmax_collapse(m: dict, p) -> Judgement:
    runs, chance = m["runs"], 1.0 / m["p"]
    fits = [_fitted_at(r) for r in runs]
    fitted = all(f is not None for f in fits)
    cosines = [_aligned(r, f) for r, f in zip(runs, fits)] if fitted else [0.0] * len(runs)
    collapse = [float(np.max(r["collapse"])) for r in runs]
    test = float(np.max([np.max(r["test_accuracy"]) for r in runs]))
    checks = [precondition("every run fits its training set (100% training accuracy)", fitted, requirement="100%"),
              effect("after fitting: median cos(-gradient, logit-scaling direction), mean over seeds",
                     *mean_and_stderr(cosines), exceed=ALIGNED, smallest=ALIGNED,
                     source="declared in advance: closer to the logit-scaling direction than 60 degrees"),
              effect(f"peak fraction of softmax-collapsed training samples ({m['dtype']})", *mean_and_stderr(collapse),
                     smallest=COLLAPSED, source="declared in advance: a quarter of the training set collapses"),
              bound("no generalization: the best test accuracy over training", test, upper=CHANCE * chance,
                    detail=f"chance 1/p = {chance:.3f}")]
    return Judgement(checks, predicted="after fitting the gradient scales the logits, the softmax collapses in "
                                       "float32, "
                                       "and the network does not generalize",
                     measured=(f"cos after fitting {np.mean(cosines):.2f}; peak collapsed fraction "
                               f"{np.mean(collapse):.2f} ({m['dtype']}); best test accuracy {test:.3f}"),
                     per_seed={"seed": m["seeds"], "cosine after fitting": cosines, "peak collapse": collapse},
                     rule="each seed its own split and initialisation; cosines and peak collapse averaged over seeds "
                          "with standard errors; the test accuracy bound holds for every seed.")


def figure_softmax_collapse(m: dict, p):
    fig, (ax_c, ax_s) = new_figure(ncols=2, width=3.8, height=3.2)
    steps = np.asarray(m["runs"][0]["step"])
    band(ax_c, steps, [r["cosine"] for r in m["runs"]], marker="", label="cos(-gradient, logit scaling)")
    band(ax_c, steps, [r["train_accuracy"] for r in m["runs"]], color="0.3", marker="", label="training accuracy")
    prediction_level(ax_c, y=ALIGNED, label="prediction: aligned (> 0.5) after fitting")
    ax_c.set(xlabel="step", ylabel="cosine / accuracy", title=f"modular addition, p = {m['p']}")
    legend_outside(ax_c, ncol=1)
    band(ax_s, steps, [r["collapse"] for r in m["runs"]], marker="", label=f"softmax-collapsed ({m['dtype']})")
    band(ax_s, steps, [r["test_accuracy"] for r in m["runs"]], color="0.55", marker="", label="test accuracy")
    prediction_level(ax_s, y=COLLAPSED, label="prediction: collapse (> 0.25)")
    ax_s.set(xlabel="step", ylabel="fraction", title="softmax collapse halts learning")
    legend_outside(ax_s, ncol=1)
    return fig


claim("prieto2025.softmax_collapse",
      title="Without regularization the gradient scales the logits and float32 softmax collapse halts learning",
      citation="Prieto, Barsbey, Mediano & Birdal 2025, ICLR (Grokking at the edge of numerical stability), Sec. 3-4",
      statement="Trained without regularization on modular addition, a network that has fitted its training set "
                "follows the logit-scaling (naive loss minimization) direction until the float32 softmax collapses "
                "(losses and gradients exactly zero), and it does not generalize.",
      tolerance="Bias-free ReLU MLP (homogeneous, so the logit-scaling direction is theta), p = 23, 40% of the pairs "
                "for training, Adam (lr 0.01, beta2 0.98), full batch. Precondition: 100% training accuracy. Effects "
                "over 3 seeds: the median cosine between the negative gradient and theta from the fit until collapse "
                "starts, passed above 0.5 and refuted below it; the peak fraction of collapsed training samples, "
                "refuted below 0.25 (both declared in advance). Bound: test accuracy never above twice chance.",
      control="the same training in float64, whose softmax cannot collapse at these margins (it needs ~37 nats, "
              "float32 ~17)",
      predictions={}, measure=measure_softmax_collapse, judge=judge_softmax_collapse, figure=figure_softmax_collapse,
      mutations=[
          Mutation("no collapse", numbers=lambda m: {**m, "runs": [{**r, "collapse": [0.0] * len(r["collapse"])}
                                                                   for r in m["runs"]]}),
          Mutation("gradient orthogonal to the logit scaling", numbers=lambda m: {**m, "runs": [
              {**r, "cosine": [0.0] * len(r["cosine"])} for r in m["runs"]]}),
          Mutation("the network generalizes", numbers=lambda m: {**m, "runs": [
              {**r, "test_accuracy": [0.9] * len(r["test_accuracy"])} for r in m["runs"]]}),
          Mutation("never fits", numbers=lambda m: {**m, "runs": [
              {**r, "train_accuracy": [0.5] * len(r["train_accuracy"])} for r in m["runs"]]}),
      ])
