"""Benign oscillation (Lu, Wu, Yang & Zou 2024, "Benign oscillation of stochastic gradient descent with large
learning rates", ICLR).

Data of the feature-noise model (:func:`theorylab.tasks.feature_noise_patches`): a weak feature ``y v`` (small
norm) in every example, a strong feature ``y u`` (larger norm) in a fraction of them, and a noise patch.  A
two-layer patch network (:class:`theorylab.feature_learning.PatchNetwork`) trained by SGD with a large step,
whose training loss oscillates, learns the weak feature alongside the strong one; trained with a small step, it
fits the data through the strong feature and the noise and makes little progress on the weak feature, so it
fails on test data that carry only the weak feature while the large-step network predicts them correctly.
How far the filters learned each feature is :func:`theorylab.feature_learning.planted_feature_alignment`; how
much the training loss oscillates, :func:`theorylab.feature_learning.loss_path_ratio`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from theorylab.claims import Context, Judgement, Mutation, bound, claim, effect, paired_difference, precondition
from theorylab.claims.figures import band, figure_legend, log_axis, measured_shades, prediction_level
from theorylab.feature_learning import PatchNetwork, loss_path_ratio, planted_feature_alignment
from theorylab.monitors import Monitor
from theorylab.plotting import new_figure
from theorylab.tasks import feature_noise_patches, planted_feature_directions
from theorylab.train import train

ARMS = ("large", "small")
CORRECT = 0.9       # "predicts the weak-only data correctly": accuracy >= 0.9 (declared in advance)
FAILS = 0.6         # "fails": accuracy <= 0.6, near chance (declared in advance, as for the XOR claim)
FITTED = 0.05       # a fitted run: full-batch training loss <= 5% of its initial value (~1, the labels' square)
STRONG = 0.9        # both step sizes learn the strong feature: accuracy >= 0.9 on strong-feature test data
OSCILLATES = 2.0    # an oscillating run: the loss travels at least twice its net descent (1 = monotone)
SMOOTH = 1.1        # a smooth run: within 10% of a monotone descent (SGD noise alone)
LITTLE = math.log10(3.0)  # smallest predicted advantage of the large step on the weak feature: a factor 3
LOSS_EVERY = 5      # full-batch training loss every 5 steps (the oscillation is read from it)


def _sign_accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((torch.where(model(x) > 0, 1.0, -1.0) == y).float().mean())


def measure_benign_oscillation(ctx: Context) -> dict:
    n, dim, width = ctx.pick(100, 200), ctx.pick(1000, 2000), ctx.pick(20, 40)
    noise = ctx.pick(0.1, 0.0707)       # noise energy noise^2 dim = 10 at both scales
    strong_norm, weak_norm, strong_fraction = 1.0, 0.3, 0.8
    steps, batch = ctx.pick(1000, 4000), 10
    lrs = {"large": 4.0, "small": 0.5}
    seeds = ctx.seeds(3, 10)
    mse = lambda out, y: ((out - y) ** 2).mean()  # noqa: E731
    features = planted_feature_directions(dim, strong_norm=strong_norm, weak_norm=weak_norm)
    every = max(steps // 30, 1)
    runs = []
    for seed in seeds:
        data = dict(strong_norm=strong_norm, weak_norm=weak_norm, noise_std=noise)
        x, y, _ = feature_noise_patches(n, dim, strong_fraction=strong_fraction, seed=seed, **data)
        if ctx.control:  # the weak feature left out of the training inputs: nothing to learn about v
            x[:, 0] = 0.0
        weak_x, weak_y, _ = feature_noise_patches(2000, dim, strong_fraction=0.0, seed=10_000 + seed, **data)
        strong_x, strong_y, _ = feature_noise_patches(2000, dim, strong_fraction=1.0, seed=20_000 + seed, **data)
        x, y, weak_x, weak_y, strong_x, strong_y = (t.to(ctx.device) for t in (x, y, weak_x, weak_y, strong_x,
                                                                                 strong_y))
        run: dict = {"seed": seed}
        for arm, lr in lrs.items():
            model = PatchNetwork(dim, width, power=2, init_std=0.01, seed=seed).to(ctx.device)
            monitors = [
                Monitor("loss", lambda m, s: float(mse(m(x), y).detach()), every=LOSS_EVERY),
                Monitor("weak_test", lambda m, s: _sign_accuracy(m, weak_x, weak_y), every=every),
                Monitor("features", lambda m, s: dict(zip(("strong", "weak"), planted_feature_alignment(
                    m, features, signs=m.signs).learned.tolist())), every=every)]
            result = train(model, mse, (x, y), steps=steps, lr=lr, optimizer="sgd", batch_size=batch, seed=seed,
                           monitors=monitors)
            loss = result.monitors["loss"]
            run[arm] = {"lr": lr, "diverged": bool(result.diverged), "loss_steps": loss.steps, "loss": loss.series(),
                        "steps": result.monitors["weak_test"].steps, "weak_test": result.monitors["weak_test"].series(),
                        "weak_feature": result.monitors["features"].series("weak"),
                        "strong_feature": result.monitors["features"].series("strong"),
                        "train_accuracy": _sign_accuracy(model, x, y),
                        "strong_test": _sign_accuracy(model, strong_x, strong_y)}
        runs.append(run)
    return {"n": n, "dim": dim, "width": width, "noise_std": noise, "strong_fraction": strong_fraction,
            "strong_norm": strong_norm, "weak_norm": weak_norm, "batch_size": batch, "steps": steps,
            "lrs": lrs, "seeds": seeds, "runs": runs}


def _path_ratio(arm: dict) -> float:
    return math.inf if arm["diverged"] else loss_path_ratio(arm["loss"])


def _log_weak(arm: dict) -> float:
    """log10 of the weak feature learned at the end (floored: a feature no neuron votes for is not learned)."""
    return math.log10(max(float(np.asarray(arm["weak_feature"])[-1]), 1e-9))


def judge_benign_oscillation(m: dict, p) -> Judgement:
    runs = m["runs"]
    ratios = {arm: [_path_ratio(r[arm]) for r in runs] for arm in ARMS}
    weak = {arm: [float(np.asarray(r[arm]["weak_test"])[-1]) for r in runs] for arm in ARMS}
    strong = {arm: float(np.mean([r[arm]["strong_test"] for r in runs])) for arm in ARMS}
    fitted = min(r[arm]["train_accuracy"] for r in runs for arm in ARMS)
    final_loss = max(float(np.asarray(r[arm]["loss"])[-1]) for r in runs for arm in ARMS)
    gain = paired_difference([_log_weak(r["large"]) for r in runs], [_log_weak(r["small"]) for r in runs])
    checks = [
        precondition(f"every run fits its training set: accuracy 1 and final loss <= {FITTED:g} (trained to the end)",
                     fitted >= 1.0 and final_loss <= FITTED, requirement=f"accuracy 1, loss <= {FITTED:g}",
                     measured=final_loss, detail=f"lowest training accuracy {fitted:.3f}"),
        precondition(f"the large-step runs oscillate: loss path >= {OSCILLATES:g} x its net descent",
                     min(ratios["large"]) >= OSCILLATES, requirement=f">= {OSCILLATES:g} in every run",
                     measured=min(ratios["large"])),
        precondition(f"the small-step runs descend smoothly: loss path <= {SMOOTH:g} x its net descent",
                     max(ratios["small"]) <= SMOOTH, requirement=f"<= {SMOOTH:g} in every run",
                     measured=max(ratios["small"])),
        bound("both step sizes learn the strong feature (accuracy on strong-feature test data, the lower arm)",
              min(strong.values()), lower=STRONG),
        bound("large step: accuracy on weak-feature-only test data", float(np.mean(weak["large"])), lower=CORRECT),
        bound("small step: accuracy on weak-feature-only test data (fails: near chance)",
              float(np.mean(weak["small"])), upper=FAILS),
        effect("weak feature learned, large over small step (log10 of the ratio of max_r s_r <w_r, v>)", *gain,
               smallest=LITTLE, source="declared in advance: 'little progress' read as at least 3 times less")]
    return Judgement(
        checks, predicted=f"large step: weak-only accuracy >= {CORRECT}; small step: <= {FAILS}; the large step learns "
                          "the weak feature",
        measured=(f"weak-only accuracy {np.mean(weak['large']):.2f} (large, loss path {np.median(ratios['large']):.1f}"
                  f"x) vs {np.mean(weak['small']):.2f} (small, {np.median(ratios['small']):.2f}x); weak feature "
                  f"{10 ** gain[0]:.3g}x larger with the large step"),
        per_seed={"seed": m["seeds"], "weak-only accuracy, large": weak["large"], "weak-only accuracy, small":
                  weak["small"], "loss path, large": ratios["large"], "loss path, small": ratios["small"]},
        rule="each seed its own data, test sets and initialisation, shared by the two step sizes (paired); "
             "accuracies are averaged over seeds, the oscillation and the fit must hold in every run, the weak-feature "
             "gain is a paired effect with its standard error.")


def figure_benign_oscillation(m: dict, p):
    fig, (ax_l, ax_f, ax_a) = new_figure(ncols=3, width=3.4, height=3.0)
    shades = dict(zip(("small", "large"), measured_shades(2)))
    for arm in ARMS:
        label = f"{arm} step, lr = {m['lrs'][arm]:g}"
        runs = [r[arm] for r in m["runs"]]
        band(ax_l, np.asarray(runs[0]["loss_steps"]), [r["loss"] for r in runs], color=shades[arm], marker="",
             label=label)
        steps = np.asarray(runs[0]["steps"], dtype=np.float64)
        band(ax_f, steps, [r["weak_feature"] for r in runs], color=shades[arm], label=label)
        band(ax_a, steps, [r["weak_test"] for r in runs], color=shades[arm], label=label)
    log_axis(ax_l, "y")
    ax_l.set(xlabel="step", ylabel="training loss (full batch)", title="the large step oscillates")
    log_axis(ax_f, "y")
    ax_f.set(xlabel="step", ylabel=r"$\max_r\ s_r\langle w_r, v\rangle$", title="weak feature learned")
    prediction_level(ax_a, y=CORRECT, label=f"prediction: large step >= {CORRECT}")
    prediction_level(ax_a, y=0.5, ls=":", label="prediction: small step fails (chance)")
    ax_a.set(xlabel="step", ylabel="accuracy on weak-only test data", title="weak-only test data",
             ylim=(0.3, 1.03))
    figure_legend(fig, (ax_l, ax_a), ncol=2)
    return fig


claim("lu2024.benign_oscillation",
      title="Benign oscillation: large-step SGD learns the weak feature alongside the strong one; small-step SGD does "
            "not and fails on weak-feature-only data",
      citation="Lu, Wu, Yang & Zou 2024, ICLR (Benign oscillation of stochastic gradient descent with large learning "
               "rates), main theorems on the feature-noise data model",
      statement="On data with weak features in every example, strong features in a fraction of them and noise, a "
                "network trained by oscillating SGD with a large learning rate learns the weak features in the "
                "presence of the strong ones, while SGD with a small learning rate learns only the strong features "
                "and makes little progress on the weak ones; on test data that consist of only weak features the "
                "large-learning-rate network predicts correctly and the small-learning-rate network fails.",
      tolerance="n = 100 training examples of three patches in dimension 1000 (weak feature norm 0.3 in every "
                "example, strong feature norm 1 in 80%, noise std 0.1 orthogonal to both), a patch network of 20 "
                "squared-ReLU filters (init std 0.01, output signs fixed), MSE on labels +-1, SGD with batch 10 for "
                "1000 steps at lr 4 (large) and 0.5 (small), 3 seeds shared by both step sizes. Preconditions: every "
                "run fits its training set (accuracy 1, full-batch loss <= 0.05 of its initial ~1: trained to the "
                "end); every large-step run oscillates (full-batch loss path >= 2x its net descent; a monotone "
                "descent gives 1) and every small-step run descends smoothly (<= 1.1x). Bounds "
                "declared in advance, on means over seeds of 2000 test examples each (binomial error <= 0.011): "
                "strong-feature test accuracy >= 0.9 for both step sizes; weak-only test accuracy >= 0.9 for the "
                "large step ('predicts correctly') and <= 0.6 for the small one ('fails', near chance). Effect: "
                "the weak feature learned (max over neurons of the signed projection on v), large over small step, "
                "paired over seeds in log10, refuted below a factor 3.",
      control="the weak feature left out of the training inputs (its patch zeroed): neither step size can learn it, so "
              "the weak-only test data stay at chance for both",
      predictions={}, measure=measure_benign_oscillation, judge=judge_benign_oscillation,
      figure=figure_benign_oscillation,
      mutations=[
          Mutation("the large step does not learn the weak feature", numbers=lambda m: {**m, "runs": [
              {**r, "large": {**r["large"], "weak_test": [0.5] * len(r["large"]["weak_test"]),
                              "weak_feature": r["small"]["weak_feature"]}} for r in m["runs"]]}),
          Mutation("the small step learns the weak feature too", numbers=lambda m: {**m, "runs": [
              {**r, "small": {**r["small"], "weak_test": r["large"]["weak_test"],
                              "weak_feature": r["large"]["weak_feature"]}} for r in m["runs"]]}),
          Mutation("the strong feature is not learned", numbers=lambda m: {**m, "runs": [
              {**r, **{arm: {**r[arm], "strong_test": 0.5} for arm in ARMS}} for r in m["runs"]]}),
          Mutation("a run does not fit its training set", numbers=lambda m: {**m, "runs": [
              {**r, "small": {**r["small"], "train_accuracy": 0.9}} for r in m["runs"]]}),
          Mutation("no oscillation at the large step", numbers=lambda m: {**m, "runs": [
              {**r, "large": {**r["large"], "loss": np.sort(np.asarray(r["large"]["loss"]))[::-1].tolist()}}
              for r in m["runs"]]}),
          Mutation("the small step oscillates", numbers=lambda m: {**m, "runs": [
              {**r, "small": {**r["small"], "loss": r["large"]["loss"]}} for r in m["runs"]]}),
      ])
