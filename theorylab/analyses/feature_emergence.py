"""Feature emergence in grokking (Tian 2025, "Provable scaling laws of feature emergence from learning dynamics
of grokking", arXiv:2509.21519).

A two-layer network on group arithmetic with weight decay goes through three stages (the Li_2
framework): (I) lazy learning, in which the top layer fits the training set on random hidden features
and the network memorizes; (II) independent feature learning, in which weight decay lets the
back-propagated gradient carry the labels' structure and each hidden unit climbs to a feature of the
group (for modular addition: one Fourier frequency); (III) interactive feature learning, which
diversifies the features.  The features that emerge generalize only when the training set is large
enough; below that size the network memorizes.  Measured on modular addition with the network of
Gromov 2023 (:func:`theorylab.algorithmic.modular_network`) and the per-unit Fourier concentration
(:func:`theorylab.algorithmic.fourier_spectrum`), against its level for random weights.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from theorylab.algorithmic import fourier_spectrum, modular_network, random_concentration
from theorylab.claims import Context, Judgement, Mutation, bound, claim, effect, mean_and_stderr, precondition
from theorylab.claims.figures import CONTROL, band, legend_outside, measured_shades, prediction_level
from theorylab.metrics import accuracy
from theorylab.plotting import new_figure
from theorylab.tasks import modular_arithmetic, one_hot_pairs

FRACTIONS = (0.1, 0.5)  # training fractions below and above the threshold
EMERGED = 0.3           # smallest predicted rise of the Fourier concentration over random weights (declared)
GENERALIZED = 0.9       # test accuracy that counts as generalizing
MEMORIZED = 0.2         # below the threshold: test accuracy stays under this


def _run(p: int, fraction: float, seed: int, steps: int, every: int, weight_decay: float,
         device: torch.device) -> dict:
    split = modular_arithmetic(p, train_fraction=fraction, seed=seed)
    train_set = (one_hot_pairs(split.x_train, p).to(device), split.y_train.to(device))
    test_set = (one_hot_pairs(split.x_test, p).to(device), split.y_test.to(device))
    model = modular_network(p, 128, seed=seed).to(device)
    # AdamW (decoupled weight decay, beta2 = 0.98): theorylab.train's Adam couples the decay to the gradient
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=weight_decay, betas=(0.9, 0.98))
    ce = nn.CrossEntropyLoss()
    log: dict[str, list[float]] = {"step": [], "train": [], "test": [], "concentration": []}
    for step in range(steps + 1):
        if step % every == 0:
            log["step"].append(step)
            log["train"].append(accuracy(model, train_set))
            log["test"].append(accuracy(model, test_set))
            log["concentration"].append(fourier_spectrum(model[0].weight.detach().cpu()[:, :p]).feature_concentration)
        optimizer.zero_grad(set_to_none=True)
        ce(model(train_set[0]), train_set[1]).backward()
        optimizer.step()
    return log


def measure_feature_emergence(ctx: Context) -> dict:
    p, steps, every = ctx.pick(23, 97), ctx.pick(1500, 20000), ctx.pick(100, 250)
    seeds = ctx.seeds(3, 5)[:2] if ctx.control else ctx.seeds(3, 5)
    weight_decay = 0.0 if ctx.control else 1.0  # control: no weight decay, which stage II needs
    runs = [{"seed": seed, "fraction": fraction, **_run(p, fraction, seed, steps, every, weight_decay, ctx.device)}
            for seed in seeds for fraction in FRACTIONS]
    return {"p": p, "seeds": seeds, "fractions": list(FRACTIONS), "weight_decay": weight_decay, "runs": runs}


def _first(values: list[float], level: float) -> int | None:
    hit = np.nonzero(np.asarray(values) >= level)[0]
    return None if hit.size == 0 else int(hit[0])


def judge_feature_emergence(m: dict, p) -> Judgement:
    baseline = random_concentration(m["p"])
    large = [r for r in m["runs"] if r["fraction"] == max(m["fractions"])]
    small = [r for r in m["runs"] if r["fraction"] == min(m["fractions"])]
    fitted = all(_first(r["train"], 1.0) is not None for r in m["runs"])
    rise = [r["concentration"][-1] - baseline for r in large]
    delays = []
    for r in large:
        fit, gen = _first(r["train"], 1.0), _first(r["test"], GENERALIZED)
        delays.append(float(r["step"][gen] - r["step"][fit]) if fit is not None and gen is not None else 0.0)
    every = float(np.diff(large[0]["step"])[0])
    checks = [precondition("every run fits its training set (stage I)", fitted, requirement="100% training accuracy"),
              effect(f"fraction {max(m['fractions']):g}: per-unit Fourier concentration at the end - random weights",
                     *mean_and_stderr(rise), smallest=EMERGED,
                     source=f"declared in advance: 0.3 above the random level {baseline:.3f} (H_m / m)"),
              bound(f"fraction {max(m['fractions']):g}: test accuracy at the end (generalizes)",
                    float(np.mean([r["test"][-1] for r in large])), lower=GENERALIZED),
              effect("delay from fitting to generalizing (steps; stage I before the features)",
                     *mean_and_stderr(delays),
                     smallest=every, source="one measurement interval"),
              bound(f"fraction {min(m['fractions']):g}: best test accuracy (memorizes)",
                    float(np.max([np.max(r["test"]) for r in small])), upper=MEMORIZED)]
    return Judgement(checks, predicted="with weight decay, Fourier features emerge after memorization and generalize "
                                       "above a training-set size; below it the network memorizes",
                     measured=(f"concentration {baseline:.2f} (random) -> "
                               f"{np.mean([r['concentration'][-1] for r in large]):.2f}"
                               f"; test accuracy {np.mean([r['test'][-1] for r in large]):.2f} at fraction "
                               f"{max(m['fractions']):g}, {np.max([np.max(r['test']) for r in small]):.2f} at "
                               f"{min(m['fractions']):g}; delay {np.mean(delays):.0f} steps"),
                     per_seed={"seed": [r["seed"] for r in large], "concentration rise": rise, "delay": delays},
                     rule="each seed its own split and initialisation per training fraction; effects averaged over "
                          "seeds; the bounds on the means (large fraction) and on every run (small fraction).")


def figure_feature_emergence(m: dict, p):
    fig, (ax_a, ax_f) = new_figure(ncols=2, width=3.8, height=3.2)
    shades = dict(zip(sorted(m["fractions"]), measured_shades(len(m["fractions"]))))
    for fraction in m["fractions"]:
        runs = [r for r in m["runs"] if r["fraction"] == fraction]
        steps = np.asarray(runs[0]["step"])
        band(ax_a, steps, [r["test"] for r in runs], color=shades[fraction], marker="", label=f"test, {fraction:g}")
        band(ax_a, steps, [r["train"] for r in runs], color=CONTROL, marker="",
             label="train" if fraction == m["fractions"][0] else None)
        band(ax_f, steps, [r["concentration"] for r in runs], color=shades[fraction], marker="",
             label=f"training fraction {fraction:g}")
    prediction_level(ax_a, y=GENERALIZED, label=f"generalized ({GENERALIZED:g})")
    ax_a.set(xlabel="step", ylabel="accuracy", title=f"modular addition, p = {m['p']}, wd {m['weight_decay']:g}")
    legend_outside(ax_a, ncol=2)
    baseline = random_concentration(m["p"])
    prediction_level(ax_f, y=baseline, ls=":", label="random weights")
    prediction_level(ax_f, y=baseline + EMERGED, label="prediction: features emerge (above)")
    ax_f.set(xlabel="step", ylabel="Fourier concentration per unit", title="feature emergence")
    legend_outside(ax_f, ncol=1)
    return fig


claim("tian2025.feature_emergence",
      title="Grokking: Fourier features emerge after memorization, and generalize only above a sample size",
      citation="Tian 2025, arXiv:2509.21519 (Provable scaling laws of feature emergence from learning dynamics of "
               "grokking), Sec. 3-5; network of Gromov 2023 (Grokking modular arithmetic)",
      statement="A two-layer network on modular addition with weight decay first memorizes on random features (lazy "
                "stage), then each hidden unit learns a group (Fourier) feature and the network generalizes; with too "
                "few training samples the network memorizes without generalizing.",
      tolerance="p = 23, training fractions 0.1 and 0.5, AdamW (lr 5e-3, weight decay 1), 3 seeds. Precondition: every "
                "run fits its training set. Effects: at fraction 0.5 the per-unit Fourier concentration ends above its "
                "level for random weights (H_m / m), refuted below +0.3 (declared in advance); the delay from 100% "
                "training accuracy to 90% test accuracy, refuted below one measurement interval. Bounds: mean test "
                "accuracy >= 0.9 at fraction 0.5; best test accuracy <= 0.2 at fraction 0.1.",
      control="no weight decay: the stage that turns memorization into features does not happen",
      predictions={}, measure=measure_feature_emergence, judge=judge_feature_emergence, figure=figure_feature_emergence,
      mutations=[
          Mutation("no features emerge", numbers=lambda m: {**m, "runs": [
              {**r, "concentration": [r["concentration"][0]] * len(r["concentration"])} for r in m["runs"]]}),
          Mutation("generalization with the fit (no delay)", numbers=lambda m: {**m, "runs": [
              {**r, "test": r["train"]} for r in m["runs"]]}),
          Mutation("the large training set does not generalize", numbers=lambda m: {**m, "runs": [
              {**r, "test": [0.1] * len(r["test"])} if r["fraction"] == max(m["fractions"]) else r
              for r in m["runs"]]}),
          Mutation("never fits", numbers=lambda m: {**m, "runs": [{**r, "train": [0.5] * len(r["train"])}
                                                                  for r in m["runs"]]}),
      ])
