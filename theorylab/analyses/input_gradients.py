"""Do input gradients highlight discriminative features? (Shah, Tamuly, Raghunathan, Jain & Netrapalli 2021,
NeurIPS).

On BlockMNIST -- images that stack the digit (the signal) and a fixed class-independent null pattern, the
digit's position random -- the input gradients of a standard network spread over both blocks: they do
not highlight the discriminative block (Sec. 3, Fig. 1, "feature leakage").  Those of an adversarially
trained (l-infinity PGD) network concentrate on the signal block (Sec. 4).  Here on the digits
(:func:`theorylab.tasks.block_digits`), with :func:`theorylab.attribution.input_gradients` and the share of the
gradient magnitude in the signal block (:func:`theorylab.attribution.attribution_share`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from theorylab.attribution import attribution_share, input_gradients, pgd_perturbation
from theorylab.claims import Context, Judgement, Mutation, bound, claim, effect, paired_difference, precondition
from theorylab.claims.figures import CONTROL, MEASURED, legend_outside, prediction_level
from theorylab.metrics import accuracy
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.tasks import block_digits, digit_block_mask

EPSILON = 0.1      # l-infinity radius of the attack in training, pixels in [0, 1] (1.6 of 16 grey levels)
HIGHLIGHT = 0.75   # "highlights the signal block": at least 3/4 of the gradient magnitude there (declared)
GAIN = 0.1         # smallest predicted increase of the signal share from adversarial training (declared)
TRAINED = 0.8      # precondition: clean test accuracy of both networks


def _train(split, epsilon: float, seed: int, steps: int, device: torch.device) -> MLP:
    """Mini-batch Adam on clean inputs (epsilon = 0) or on PGD perturbations of them (Madry et al. 2018)."""
    model = MLP(128, [256], 10, seed=seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    ce = nn.CrossEntropyLoss()
    x, y = split.x_train.to(device), split.y_train.to(device)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (64,), generator=generator).to(device)
        xb, yb = x[idx], y[idx]
        if epsilon > 0:
            xb = xb + pgd_perturbation(model, ce, xb, yb, epsilon=epsilon, steps=5)
        optimizer.zero_grad(set_to_none=True)
        ce(model(xb), yb).backward()
        optimizer.step()
    return model


def measure_input_gradients(ctx: Context) -> dict:
    steps = ctx.pick(300, 3000)
    seeds = ctx.seeds(3, 5)
    ce = nn.CrossEntropyLoss()
    runs = []
    for seed in seeds:
        split = block_digits(seed=seed)
        test = (split.x_test.to(ctx.device), split.y_test.to(ctx.device))
        signal = digit_block_mask(split.x_test)
        run = {"seed": seed}
        # control: the "robust" network is trained without the attack, like the standard one (another draw)
        for arm, epsilon, offset in (("standard", 0.0, 0), ("robust", 0.0 if ctx.control else EPSILON, 1000)):
            model = _train(split, epsilon, seed + offset, steps, ctx.device)
            grads = input_gradients(model, ce, test)
            images = grads.abs().reshape(-1, 16, 8)
            on_top = signal[:, 0]  # the digit's block moved to the top, so that the average lines the blocks up
            images = torch.where(on_top[:, None, None], images, images.roll(8, dims=1))
            run[arm] = {"share": float(attribution_share(grads, signal).mean()), "accuracy": accuracy(model, test),
                        "mean_gradient": images.mean(0).numpy()}
        runs.append(run)
    return {"seeds": seeds, "epsilon": EPSILON, "runs": runs}


def judge_input_gradients(m: dict, p) -> Judgement:
    standard = [r["standard"]["share"] for r in m["runs"]]
    robust = [r["robust"]["share"] for r in m["runs"]]
    trained = min(min(r["standard"]["accuracy"], r["robust"]["accuracy"]) for r in m["runs"])
    checks = [precondition(f"both networks classify the test set (accuracy >= {TRAINED:g})", trained >= TRAINED,
                           requirement=f">= {TRAINED:g}", measured=trained),
              bound("standard network: share of |input gradient| in the signal block (does not highlight it)",
                    float(np.mean(standard)), upper=HIGHLIGHT),
              bound("adversarially trained: share in the signal block (highlights it)", float(np.mean(robust)),
                    lower=HIGHLIGHT),
              effect("robust - standard share (paired by seed)", *paired_difference(robust, standard), smallest=GAIN,
                     source="declared in advance: 0.1 of the gradient magnitude")]
    return Judgement(checks, predicted="standard input gradients spread over both blocks; robust ones concentrate on "
                                       "the signal block",
                     measured=f"share of |input gradient| on the digit: standard {np.mean(standard):.2f}, "
                              f"robust {np.mean(robust):.2f} (0.5 = uniform over the blocks)",
                     per_seed={"seed": m["seeds"], "standard share": standard, "robust share": robust},
                     rule="each seed its own block images, split and initialisations; shares averaged over the test "
                          "set, then over seeds (paired).")


def figure_input_gradients(m: dict, p):
    fig, axes = new_figure(ncols=3, width=2.8, height=3.2)
    for ax, arm in zip(axes[:2], ("standard", "robust")):
        ax.imshow(np.mean([r[arm]["mean_gradient"] for r in m["runs"]], axis=0), cmap="Blues")
        ax.set(title=f"{arm}: mean |gradient|\n(digit moved to the top)", xticks=[], yticks=[])
    ax = axes[2]
    for k, (arm, color) in enumerate((("standard", CONTROL), ("robust", MEASURED))):
        values = [r[arm]["share"] for r in m["runs"]]
        ax.bar(k, np.mean(values), color=color)
        ax.scatter(np.full(len(values), k), values, color="k", s=10, zorder=3)
    prediction_level(ax, y=HIGHLIGHT, label="highlights the signal (prediction for robust)")
    prediction_level(ax, y=0.5, ls=":", label="uniform over the blocks")
    ax.set_xticks([0, 1], ["standard", f"PGD, eps {m['epsilon']:g}"])
    ax.set(ylim=(0, 1), ylabel="share on the digit block", title="attribution")
    legend_outside(ax, ncol=1)
    return fig


claim("shah2021.input_gradients",
      title="Input gradients of standard networks do not highlight the signal block; adversarially trained ones do",
      citation="Shah, Tamuly, Raghunathan, Jain & Netrapalli 2021, NeurIPS (Do input gradients highlight "
               "discriminative features?), Sec. 3-4",
      statement="On images made of a signal block and a class-independent null block, the input gradients of a "
                "standard network spread over both blocks, while those of an adversarially (l-infinity PGD) trained "
                "network concentrate on the signal block.",
      tolerance="Block digits (16 x 8, digit at random on top or bottom), MLP 128-256-10, Adam, 300 steps of 64; PGD "
                "with epsilon 0.1 and 5 steps. Precondition: clean test accuracy >= 0.8 for both. Bounds on the mean "
                "over 3 seeds of the share of |input gradient| in the digit block: standard < 0.75, robust > 0.75 (3/4 "
                "of the magnitude, declared in advance). Effect: robust - standard, refuted below 0.1 (declared).",
      control="the robust arm trained without the attack (a second standard network): no difference between the arms",
      predictions={}, measure=measure_input_gradients, judge=judge_input_gradients, figure=figure_input_gradients,
      mutations=[
          Mutation("robust gradients as spread as standard ones", numbers=lambda m: {**m, "runs": [
              {**r, "robust": {**r["robust"], "share": r["standard"]["share"]}} for r in m["runs"]]}),
          Mutation("standard gradients already on the signal", numbers=lambda m: {**m, "runs": [
              {**r, "standard": {**r["standard"], "share": 0.95}} for r in m["runs"]]}),
          Mutation("networks not trained", numbers=lambda m: {**m, "runs": [
              {**r, "standard": {**r["standard"], "accuracy": 0.1}} for r in m["runs"]]}),
      ])
