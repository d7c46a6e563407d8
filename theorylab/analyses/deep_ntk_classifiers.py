"""Wide and deep networks as classifiers (Radhakrishnan, Belkin & Uhler 2023, "Wide and deep neural networks
achieve consistency for classification", PNAS 120(14)).

The infinitely wide network trained to interpolate is kernel regression with its NTK
(:func:`theorylab.kernels.analytic_ntk`, :func:`theorylab.kernels.kernel_regression`).  Their taxonomy (Thm. 1-3)
sorts activations by the classifier the NTK predictor tends to as the depth grows: majority vote, 1-nearest
neighbour, or a singular-kernel classifier (:mod:`theorylab.theory.deep_classifiers`).  For ReLU the
normalised NTK tends to a constant off the diagonal, so the predictor of every input tends to the class
counts of the training set: the majority vote.  Measured on the digits (projected on the sphere) with
imbalanced classes, so that the majority vote is one class: the share of test inputs on which the ReLU NTK
classifier at each depth agrees with the majority vote (and, for reference, with the 1-nearest neighbour).
Which activations give the 1-nearest-neighbour limit is not tested here.
"""
from __future__ import annotations

import numpy as np
import torch

from theorylab.claims import Context, Judgement, Mutation, bound, claim, effect, mean_and_stderr
from theorylab.claims.figures import CONTROL, band, legend_outside, log_axis, measured_shades, prediction_level
from theorylab.data import class_imbalanced, load_digits
from theorylab.kernels import analytic_ntk, kernel_regression
from theorylab.plotting import new_figure
from theorylab.theory import majority_vote, nearest_neighbour

COUNTS = (30, 24, 20, 17, 14, 12, 10, 8, 6, 5)  # training samples per class: one majority class
AGREES = 0.95   # "tends to the rule": agreement on at least 95% of the test inputs at the largest depth (declared)
RISE = 0.2      # smallest predicted rise of the agreement from depth 1 to the largest depth (declared)
ARMS = {"relu": ("relu", 2.0, "majority vote")}


def _sphere(x: torch.Tensor) -> torch.Tensor:
    return (x / x.norm(dim=1, keepdim=True)).to(torch.float64)


def measure_deep_ntk(ctx: Context) -> dict:
    depths = [1] * 6 if ctx.control else ctx.pick([1, 4, 16, 64, 256, 1024], [1, 4, 16, 64, 256, 1024, 4096, 16384])
    seeds = ctx.seeds(3, 5)
    runs = []
    for seed in seeds:
        split = load_digits(seed=seed)
        x, y = class_imbalanced(split.x_train, split.y_train, COUNTS, seed=seed)
        x, x_test = _sphere(x), _sphere(split.x_test[:200])
        targets = torch.nn.functional.one_hot(y, 10).to(torch.float64)
        run = {"seed": seed, "y_train": y.numpy(), "x_train": x.numpy(), "x_test": x_test.numpy()}
        for arm, (activation, weight_var, _) in ARMS.items():
            predictions = []
            for depth in depths:
                k = analytic_ntk(x, depth=depth, activation=activation, weight_var=weight_var)
                k_star = analytic_ntk(x_test, x, depth=depth, activation=activation, weight_var=weight_var)
                scale = float(k.diagonal().mean())  # kernel regression is scale-free: keep the numbers near 1
                predictions.append(kernel_regression(k / scale, k_star / scale, targets).argmax(1).numpy())
            run[arm] = np.stack(predictions)
        runs.append(run)
    return {"depths": depths, "seeds": seeds, "counts": list(COUNTS), "runs": runs}


def _agreement(m: dict, p, arm: str) -> np.ndarray:
    """``(seeds, depths)``: share of test inputs where the NTK classifier agrees with the arm's predicted rule."""
    rows = []
    for r in m["runs"]:
        if arm == "relu":
            rule = p.majority_vote(r["y_train"], len(r["x_test"]), 10)
        else:
            rule = p.nearest_neighbour(r["x_test"], r["x_train"], r["y_train"])
        rows.append((np.asarray(r[arm]) == rule[None, :]).mean(1))
    return np.asarray(rows)


def _nearest_agreement(m: dict, p) -> np.ndarray:
    """``(seeds, depths)``: agreement of the ReLU NTK classifier with the 1-nearest neighbour (a reference)."""
    rows = []
    for r in m["runs"]:
        rule = p.nearest_neighbour(r["x_test"], r["x_train"], r["y_train"])
        rows.append((np.asarray(r["relu"]) == rule[None, :]).mean(1))
    return np.asarray(rows)


def judge_deep_ntk(m: dict, p) -> Judgement:
    checks, measured = [], []
    for arm, (_, _, rule) in ARMS.items():
        agreement = _agreement(m, p, arm)
        checks.append(bound(f"{arm}: agreement with the {rule} at depth {m['depths'][-1]} (mean over seeds)",
                            float(agreement[:, -1].mean()), lower=AGREES))
        checks.append(effect(f"{arm}: rise of the agreement from depth {m['depths'][0]} to {m['depths'][-1]}",
                             *mean_and_stderr(agreement[:, -1] - agreement[:, 0]), smallest=RISE,
                             source="declared in advance: 0.2 of the test inputs"))
        measured.append(f"{arm}: {agreement[:, 0].mean():.2f} -> {agreement[:, -1].mean():.2f} agreement with the "
                        f"{rule}")
    return Judgement(checks, predicted="the deep ReLU NTK classifier tends to the majority vote",
                     measured="; ".join(measured) + f" (depth {m['depths'][0]} -> {m['depths'][-1]})",
                     per_seed={"seed": m["seeds"], **{f"{arm} agreement at the largest depth":
                                                      _agreement(m, p, arm)[:, -1].tolist() for arm in ARMS}},
                     rule="each seed its own split and imbalanced training subset; agreement over 200 test inputs, "
                          "mean and standard error over seeds.")


def figure_deep_ntk(m: dict, p):
    fig, ax = new_figure(width=4.6, height=3.4)
    depths = np.asarray(m["depths"], dtype=np.float64)
    shades = measured_shades(2)
    band(ax, depths, _agreement(m, p, "relu"), color=shades[1], label="ReLU NTK vs majority vote")
    band(ax, depths, _nearest_agreement(m, p), color=CONTROL, marker="s", label="ReLU NTK vs 1-nearest neighbour")
    prediction_level(ax, y=1.0, label="prediction: full agreement as depth grows")
    if len(set(m["depths"])) > 1:
        log_axis(ax, "x", ticks=list(m["depths"]))
    ax.set(xlabel="depth", ylabel="agreement on test inputs", ylim=(0, 1.05), title="infinitely wide NTK classifiers")
    legend_outside(ax, ncol=1)
    return fig


claim("radhakrishnan2023.deep_ntk_classifiers",
      title="Infinitely wide and deep ReLU networks classify by majority vote",
      citation="Radhakrishnan, Belkin & Uhler 2023, PNAS 120(14) (Wide and deep neural networks achieve consistency "
               "for classification), Thm. 1-3",
      statement="As depth grows, the NTK classifier of an infinitely wide ReLU network tends to the majority vote (the "
                "class most frequent in the training set, whatever the input).",
      tolerance="Analytic ReLU NTK (weight variance 2), ridgeless kernel regression on one-hot labels, digits on the "
                "sphere, imbalanced training classes (30 down to 5), 200 test inputs, depths 1 to 1024, 3 "
                "seeds. Bounds: agreement >= 0.95 at the largest depth (declared); effects: the rise from depth 1, "
                "refuted below 0.2 (declared).",
      control="depth 1 everywhere (a shallow network): its classifier is neither rule",
      predictions={"majority_vote": majority_vote, "nearest_neighbour": nearest_neighbour},
      measure=measure_deep_ntk, judge=judge_deep_ntk, figure=figure_deep_ntk,
      mutations=[
          Mutation("the second most frequent class predicted", predictions={
              "majority_vote": lambda y, n, c: np.full(n, int(np.argsort(np.bincount(y, minlength=c))[-2]))}),
          Mutation("the deep classifiers stay as at depth 1", numbers=lambda m: {**m, "runs": [
              {**r, **{arm: np.repeat(np.asarray(r[arm])[:1], len(m["depths"]), 0) for arm in ARMS}}
              for r in m["runs"]]}),
      ])
