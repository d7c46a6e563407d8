"""Deep learning on a data diet (Paul, Ganguli & Dziugaite 2021, "Deep learning on a data diet: finding
important examples early in training", NeurIPS).

EL2N scores ``||softmax(f(x)) - onehot(y)||`` (:func:`theorylab.difficulty.el2n_scores`), computed after a
few epochs and averaged over several initialisations, rank the training examples by difficulty.
Pruning the easiest examples and training on the rest keeps the test accuracy of training on all the
data at moderate pruning (50% of CIFAR-10), where pruning a random subset of the same size loses
accuracy (their Sec. 4, Fig. 1).  Here: the digits, an MLP, 50% pruned, every arm trained for the same
number of steps.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from theorylab.claims import Context, Judgement, Mutation, bound, claim, effect, paired_difference, precondition
from theorylab.claims.figures import CONTROL, MEASURED, legend_outside, measured_shades, prediction_level
from theorylab.data import load_digits
from theorylab.difficulty import el2n_scores, hardest
from theorylab.metrics import accuracy
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.train import train

KEEP = 0.5         # fraction of the training set kept
GAIN = 0.005       # smallest predicted advantage of EL2N over random pruning: half a point of accuracy
KEPT = 0.01        # EL2N pruning "keeps" the accuracy: it loses at most one point (declared in advance)
TRAINED = 0.9      # precondition: accuracy on all the data


def _train(x: torch.Tensor, y: torch.Tensor, seed: int, steps: int, device: torch.device) -> MLP:
    model = MLP(64, [128], 10, seed=seed).to(device)
    train(model, nn.CrossEntropyLoss(), (x, y), steps=steps, lr=1e-3, optimizer="adam", batch_size=min(64, len(y)),
          seed=seed)
    return model


def measure_data_diet(ctx: Context) -> dict:
    steps, score_steps, inits = ctx.pick(400, 3000), ctx.pick(40, 200), ctx.pick(4, 10)
    seeds = ctx.seeds(3, 5)
    runs = []
    for seed in seeds:
        split = load_digits(seed=seed).to(ctx.device)
        x, y = split.train
        scores = torch.stack([el2n_scores(_train(x, y, 100 * seed + k, score_steps, ctx.device), (x, y))
                              for k in range(inits)]).mean(0)
        if ctx.control:  # scores that carry no information about the examples
            scores = scores[torch.randperm(len(scores), generator=torch.Generator().manual_seed(seed))]
        kept = {"all": torch.arange(len(y)), "el2n": hardest(scores, KEEP),
                "random": torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 1))[:len(y) // 2]}
        acc = {arm: accuracy(_train(x[idx.to(x.device)], y[idx.to(x.device)], seed, steps, ctx.device), split.test)
               for arm, idx in kept.items()}
        runs.append({"seed": seed, "accuracy": acc, "scores": scores.cpu().numpy()})
    return {"seeds": seeds, "keep": KEEP, "steps": steps, "score_steps": score_steps, "inits": inits, "runs": runs}


def judge_data_diet(m: dict, p) -> Judgement:
    acc = {arm: [r["accuracy"][arm] for r in m["runs"]] for arm in ("all", "el2n", "random")}
    gain, gain_se = paired_difference(acc["el2n"], acc["random"])
    loss, loss_se = paired_difference(acc["all"], acc["el2n"])
    checks = [precondition(f"training on all the data reaches test accuracy >= {TRAINED:g}", min(acc["all"]) >= TRAINED,
                           requirement=f">= {TRAINED:g}", measured=min(acc["all"])),
              effect("test accuracy: EL2N-pruned - randomly pruned (paired by seed)", gain, gain_se, smallest=GAIN,
                     source="declared in advance: half a point of accuracy"),
              bound("test accuracy lost by EL2N pruning: all data - EL2N-pruned", loss, upper=KEPT, slack=2 * loss_se,
                    source="declared: at most one point (Paul et al.: no loss at 50% on CIFAR-10), plus 2 standard "
                           "errors of the paired difference over seeds")]
    return Judgement(checks, predicted="pruning the easiest half by EL2N keeps the accuracy; random pruning loses some",
                     measured=(f"test accuracy: all {np.mean(acc['all']):.3f}, EL2N half {np.mean(acc['el2n']):.3f}, "
                               f"random half {np.mean(acc['random']):.3f}"),
                     per_seed={"seed": m["seeds"], **{f"accuracy ({arm})": v for arm, v in acc.items()}},
                     rule="each seed its own split, scoring initialisations and training runs; differences paired by "
                          "seed, mean and standard error over seeds.")


def figure_data_diet(m: dict, p):
    fig, (ax_a, ax_s) = new_figure(ncols=2, width=3.8, height=3.2)
    arms = [("all", "all data", MEASURED), ("el2n", "EL2N: hardest 50%", MEASURED), ("random", "random 50%", CONTROL)]
    for k, (arm, label, color) in enumerate(arms):
        values = [r["accuracy"][arm] for r in m["runs"]]
        ax_a.bar(k, np.mean(values), color=color, alpha=0.6 if arm == "el2n" else 1.0)
        ax_a.scatter(np.full(len(values), k), values, color="k", s=10, zorder=3)
    full = float(np.mean([r["accuracy"]["all"] for r in m["runs"]]))
    prediction_level(ax_a, y=full - KEPT, label="prediction: EL2N within 1 point of all data")
    ax_a.set_xticks(range(3), [a[1] for a in arms], rotation=15)
    low = min(min(r["accuracy"].values()) for r in m["runs"])
    ax_a.set(ylim=(low - 0.03, 1.0), ylabel="test accuracy", title=f"{int(100 * m['keep'])}% pruned")
    legend_outside(ax_a, ncol=1)
    shades = measured_shades(len(m["runs"]))
    for r, color in zip(m["runs"], shades):
        ax_s.hist(np.asarray(r["scores"]), bins=30, histtype="step", color=color)
    ax_s.set(xlabel=f"EL2N (mean of {m['inits']} inits, step {m['score_steps']})", ylabel="examples", yscale="log",
             title="score distribution")
    return fig


claim("paul2021.data_diet",
      title="Pruning the easiest half by EL2N keeps accuracy where random pruning does not",
      citation="Paul, Ganguli & Dziugaite 2021, NeurIPS (Deep learning on a data diet: finding important examples "
               "early in training), Sec. 4",
      statement="EL2N scores computed early in training and averaged over initialisations rank examples so that "
                "training on the hardest half keeps the test accuracy of the full data set, while a random half of the "
                "same size loses accuracy.",
      tolerance="Digits, MLP 64-128-10, Adam, every arm the same number of steps. EL2N after 40 steps, mean of 4 "
                "initialisations. Precondition: all-data test accuracy >= 0.9. Over 3 seeds (paired): EL2N-pruned - "
                "random accuracy, an effect refuted below half a point (declared in advance); all - EL2N-pruned "
                "accuracy bounded by one point plus 2 standard errors of the paired difference.",
      control="the EL2N scores shuffled across examples (no information about difficulty): the pruned set is then a "
              "random half",
      predictions={}, measure=measure_data_diet, judge=judge_data_diet, figure=figure_data_diet,
      mutations=[
          Mutation("EL2N pruning no better than random", numbers=lambda m: {**m, "runs": [
              {**r, "accuracy": {**r["accuracy"], "el2n": r["accuracy"]["random"]}} for r in m["runs"]]}),
          Mutation("EL2N pruning loses 3 points", numbers=lambda m: {**m, "runs": [
              {**r, "accuracy": {**r["accuracy"], "el2n": r["accuracy"]["all"] - 0.03,
                                 "random": r["accuracy"]["all"] - 0.06}} for r in m["runs"]]}),
          Mutation("the network does not learn", numbers=lambda m: {**m, "runs": [
              {**r, "accuracy": {k: 0.5 for k in r["accuracy"]}} for r in m["runs"]]}),
      ])
