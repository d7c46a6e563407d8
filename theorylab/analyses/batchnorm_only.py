"""Training BatchNorm and only BatchNorm (Frankle, Schwab & Morcos 2021, "Training BatchNorm and only BatchNorm:
on the expressive power of random features in CNNs", ICLR).

A CNN whose convolutions and output layer stay at their random initialisation, with only the affine
parameters of its BatchNorm layers (gamma, beta: two per channel) trained, reaches accuracy far above
chance -- and far above training the same number of other randomly chosen parameters (their Sec. 4,
Fig. 2 and 4).  Many of the learned gammas end near zero: BatchNorm-only training switches features off
(about a third in their deep ResNets, Sec. 5, Fig. 6).  Here: a three-layer CNN on the 8x8 digits.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from theorylab.claims import Context, Judgement, Mutation, claim, effect, mean_and_stderr, paired_difference
from theorylab.claims.figures import CONTROL, MEASURED, legend_outside, prediction_level
from theorylab.data import load_digits
from theorylab.metrics import accuracy
from theorylab.plotting import new_figure
from theorylab.train import train

CHANNELS = (16, 32)
OFF = 0.1            # a feature counts as switched off when |gamma| < 0.1 (gamma starts at 1)
ABOVE_CHANCE = 0.2   # smallest predicted margin over chance (10%): "far above chance", declared in advance
OVER_RANDOM = 0.1    # smallest predicted margin over as many random parameters, declared in advance
SWITCHED_OFF = 0.05  # smallest predicted fraction of switched-off features, declared in advance


def _cnn(seed: int) -> nn.Sequential:
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    a, b = CHANNELS
    model = nn.Sequential(nn.Unflatten(1, (1, 8, 8)),
                          nn.Conv2d(1, a, 3, padding=1, bias=False), nn.BatchNorm2d(a), nn.ReLU(),
                          nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Conv2d(b, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(b, 10))
    torch.set_rng_state(state)
    return model


def _batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def _train_subset(model: nn.Sequential, arm: str, data: tuple, steps: int, seed: int) -> None:
    """Train only the BatchNorm affine parameters (``"batchnorm"``), or as many randomly chosen entries of the
    other weights (``"random"``), the rest frozen at initialisation."""
    norms = [p for m in _batchnorms(model) for p in m.parameters()]
    budget = sum(p.numel() for p in norms)
    model.requires_grad_(False)
    if arm == "batchnorm":
        for p in norms:
            p.requires_grad_(True)
    else:
        others = [p for p in model.parameters() if all(p is not q for q in norms)]
        chosen = torch.randperm(sum(p.numel() for p in others), generator=torch.Generator().manual_seed(seed))[:budget]
        mask = torch.zeros(sum(p.numel() for p in others))
        mask[chosen] = 1.0
        offset = 0
        for p in others:
            p.requires_grad_(True)
            piece = mask[offset:offset + p.numel()].view_as(p).to(p.device)
            p.register_hook(lambda g, piece=piece: g * piece)  # Adam then never moves the unchosen entries
            offset += p.numel()
    train(model, nn.CrossEntropyLoss(), data, steps=steps, lr=0.02, optimizer="adam", batch_size=64, seed=seed)


def measure_batchnorm_only(ctx: Context) -> dict:
    steps = ctx.pick(200, 3000)
    seeds = ctx.seeds(3, 5)
    runs = []
    for seed in seeds:
        split = load_digits(seed=seed).to(ctx.device)
        x, y = split.train
        if ctx.control:  # random labels: nothing to learn that transfers to the test set
            y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(y.device)]
        run = {"seed": seed}
        for arm in ("batchnorm", "random"):
            model = _cnn(seed).to(ctx.device)
            _train_subset(model, arm, (x, y), steps, seed)
            run[arm] = accuracy(model, split.test, mode="eval")
            if arm == "batchnorm":
                run["gamma"] = torch.cat([m.weight.detach().cpu() for m in _batchnorms(model)]).numpy()
        runs.append(run)
    return {"seeds": seeds, "channels": list(CHANNELS), "runs": runs}


def judge_batchnorm_only(m: dict, p) -> Judgement:
    bn = [r["batchnorm"] for r in m["runs"]]
    rnd = [r["random"] for r in m["runs"]]
    off = [float(np.mean(np.abs(r["gamma"]) < OFF)) for r in m["runs"]]
    checks = [effect("BatchNorm-only test accuracy - chance (0.1)", *mean_and_stderr(np.asarray(bn) - 0.1),
                     smallest=ABOVE_CHANCE, source="declared in advance: 20 points above chance"),
              effect("BatchNorm-only - as many random parameters (test accuracy, paired)", *paired_difference(bn, rnd),
                     smallest=OVER_RANDOM, source="declared in advance: 10 points"),
              effect(f"fraction of BatchNorm features switched off (|gamma| < {OFF:g})", *mean_and_stderr(off),
                     smallest=SWITCHED_OFF, source="declared in advance: 5% (Frankle et al. find about a third in deep "
                                                   "ResNets)")]
    return Judgement(checks, predicted="BatchNorm-only training is far above chance and above as many random "
                                       "parameters, and switches features off",
                     measured=(f"test accuracy: BatchNorm only {np.mean(bn):.3f}, random parameters "
                               f"{np.mean(rnd):.3f}; "
                               f"{100 * np.mean(off):.0f}% of gammas near 0"),
                     per_seed={"seed": m["seeds"], "BatchNorm only": bn, "random parameters": rnd,
                               "switched off": off},
                     rule="each seed its own split and initialisation (shared by both arms); means and paired "
                          "differences over seeds with standard errors.")


def figure_batchnorm_only(m: dict, p):
    fig, (ax_a, ax_g) = new_figure(ncols=2, width=3.8, height=3.2)
    for k, (arm, label, color) in enumerate((("batchnorm", "BatchNorm only", MEASURED),
                                             ("random", "as many random\nparameters", CONTROL))):
        values = [r[arm] for r in m["runs"]]
        ax_a.bar(k, np.mean(values), color=color)
        ax_a.scatter(np.full(len(values), k), values, color="k", s=10, zorder=3)
    prediction_level(ax_a, y=0.1 + ABOVE_CHANCE, label="prediction: at least chance + 0.2")
    prediction_level(ax_a, y=0.1, ls=":", label="chance")
    ax_a.set_xticks([0, 1], ["BatchNorm only", "as many random\nparameters"])
    ax_a.set(ylabel="test accuracy", ylim=(0, 1), title="trained parameters only")
    legend_outside(ax_a, ncol=1)
    gammas = np.concatenate([np.asarray(r["gamma"]) for r in m["runs"]])
    ax_g.hist(gammas, bins=40, color=MEASURED)
    ax_g.axvspan(-OFF, OFF, color=CONTROL, alpha=0.3, label=f"switched off (|gamma| < {OFF:g})")
    ax_g.set(xlabel="learned gamma", ylabel="features", title="BatchNorm scales after training")
    legend_outside(ax_g, ncol=1)
    return fig


claim("frankle2021.batchnorm_only",
      title="Training only BatchNorm's affine parameters of a random CNN is far above chance and switches features off",
      citation="Frankle, Schwab & Morcos 2021, ICLR (Training BatchNorm and only BatchNorm: on the expressive power of "
               "random features in CNNs), Sec. 4-5",
      statement="With every convolution and the output layer frozen at random initialisation, training only the "
                "BatchNorm gammas and betas reaches accuracy far above chance and above training as many randomly "
                "chosen other parameters; many gammas end near zero, switching their features off.",
      tolerance="CNN 16-32-32 channels with BatchNorm on the 8x8 digits, Adam (lr 0.02, batches of 64), 200 steps; the "
                "random arm trains as many entries of the other weights (224), chosen at random. Effects over 3 seeds: "
                "accuracy above chance, refuted below +0.2; above the random arm, refuted below +0.1; the fraction of "
                "|gamma| < 0.1, refuted below 5% (all declared in advance; Frankle et al. report about a third in "
                "deep ResNets).",
      control="random training labels (test labels real): no arm can learn anything that transfers",
      predictions={}, measure=measure_batchnorm_only, judge=judge_batchnorm_only, figure=figure_batchnorm_only,
      mutations=[
          Mutation("BatchNorm-only at chance", numbers=lambda m: {**m, "runs": [{**r, "batchnorm": 0.1, "random": 0.1}
                                                                              for r in m["runs"]]}),
          Mutation("no gamma switched off", numbers=lambda m: {**m, "runs": [
              {**r, "gamma": np.ones_like(np.asarray(r["gamma"]))} for r in m["runs"]]}),
      ])
