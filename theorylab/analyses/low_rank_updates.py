"""Low-rank weights from low-rank gradients (Jaiswal, Yin, Zhang, Wang et al. 2024, "From GaLore to WeLore: how
low-rank weights non-uniformly emerge from low-rank gradients").

The accumulated update ``Delta W = W_t - W_0`` of a layer is a sum of its gradients; layers whose
gradients stay low-rank during training develop low-rank updates, and the ranks differ widely from
layer to layer (non-uniform emergence, their Sec. 3-4).  Measured on a six-layer MLP trained on the
digits by SGD: each layer's mini-batch gradient stable rank over training
(:func:`theorylab.updates.layer_gradient_ranks`) against the stable rank of its final update
(:func:`theorylab.updates.update_ranks`), both as fractions of the layer's smaller dimension.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from theorylab.claims import Context, Judgement, Mutation, bound, claim, effect, mean_and_stderr
from theorylab.claims.figures import CONTROL, legend_outside, measured_shades, prediction
from theorylab.data import load_digits
from theorylab.gradients import parameter_snapshot
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.updates import layer_gradient_ranks, update_ranks

WIDTHS = (256, 256, 128, 128, 64)
CORRELATION = 0.5   # smallest predicted rank correlation across layers (declared in advance)
SPREAD = np.log(2)  # non-uniform: the largest and smallest update-rank fractions differ by at least 2x (declared)
LOW_RANK = 0.1      # low-rank updates: the median layer's update stable rank below 10% of its dimension (declared)
NOISE = 0.05        # control: isotropic noise per entry added to every update (it dominates the gradients)


def _fractions(ranks) -> np.ndarray:
    return np.asarray(ranks.stable_rank) / np.asarray(ranks.dimension)


def measure_low_rank_updates(ctx: Context) -> dict:
    steps, every, batch = ctx.pick(400, 5000), ctx.pick(40, 250), 128
    seeds = ctx.seeds(3, 5)
    ce = nn.CrossEntropyLoss()
    runs = []
    for seed in seeds:
        split = load_digits(seed=seed).to(ctx.device)
        x, y = split.train
        model = MLP(64, list(WIDTHS), 10, seed=seed).to(ctx.device)
        initial = parameter_snapshot(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        generator = torch.Generator().manual_seed(seed)
        gradient_fractions = []
        for step in range(steps):
            idx = torch.randint(0, len(y), (batch,), generator=generator).to(ctx.device)
            if step % every == 0:  # the ranks of the gradient this step descends along
                gradient_fractions.append(_fractions(layer_gradient_ranks(model, ce, (x[idx], y[idx]), mode="keep")))
            optimizer.zero_grad(set_to_none=True)
            ce(model(x[idx]), y[idx]).backward()
            if ctx.control:  # updates dominated by isotropic noise: Delta W no longer a sum of low-rank gradients
                for p in model.parameters():
                    p.grad += NOISE * torch.randn(p.shape, generator=generator).to(p.device)
            optimizer.step()
        updates = update_ranks(model, initial)
        runs.append({"seed": seed, "layers": updates.layers, "gradient": np.mean(gradient_fractions, axis=0),
                     "update": _fractions(updates)})
    return {"seeds": seeds, "widths": list(WIDTHS), "steps": steps, "runs": runs}


def judge_low_rank_updates(m: dict, p) -> Judgement:
    correlation = [float(spearmanr(r["gradient"], r["update"])[0]) for r in m["runs"]]
    spread = [float(np.log(np.max(r["update"]) / np.min(r["update"]))) for r in m["runs"]]
    median = float(np.mean([np.median(r["update"]) for r in m["runs"]]))
    checks = [effect("rank correlation across layers: gradient stable rank vs update stable rank (fractions)",
                     *mean_and_stderr(correlation), smallest=CORRELATION, source="declared in advance: 0.5"),
              effect("non-uniform: log(largest / smallest update stable-rank fraction across layers)",
                     *mean_and_stderr(spread), exceed=SPREAD, smallest=SPREAD,
                     source="declared in advance: at least a factor 2"),
              bound("low-rank updates: median layer's update stable rank / dimension (mean over seeds)", median,
                    upper=LOW_RANK)]
    return Judgement(checks, predicted="layers with low-rank gradients get low-rank updates; the ranks differ across "
                                       "layers",
                     measured=(f"Spearman {np.mean(correlation):.2f}; update stable-rank fractions from "
                               f"{np.mean([np.min(r['update']) for r in m['runs']]):.3f} to "
                               f"{np.mean([np.max(r['update']) for r in m['runs']]):.3f} (median {median:.3f})"),
                     per_seed={"seed": m["seeds"], "Spearman": correlation, "log spread": spread},
                     rule="per seed: the six layers' fractions and their rank correlation; means over seeds with "
                          "standard errors.")


def figure_low_rank_updates(m: dict, p):
    fig, ax = new_figure(width=5.2, height=3.8)
    shades = measured_shades(len(m["runs"]))
    for run, color in zip(m["runs"], shades):
        ax.scatter(run["gradient"], run["update"], color=color, s=20, label=f"seed {run['seed']} (one point per layer)")
    g = np.concatenate([r["gradient"] for r in m["runs"]])
    u = np.concatenate([r["update"] for r in m["runs"]])
    line = np.geomspace(g.min(), g.max(), 20)
    scale = np.exp(np.mean(np.log(u)) - np.mean(np.log(g)))  # a proportional law through the points' geometric mean
    prediction(ax, line, scale * line, label="prediction: update rank grows with gradient rank\n(proportional law "
                                             "drawn through the points)")
    ax.axhline(LOW_RANK, color=CONTROL, ls=":", label="low rank (10% of the dimension)")
    ax.set(xscale="log", yscale="log", xlabel="gradient stable rank / dimension (mean over training)",
           ylabel=r"$\Delta W$ stable rank / dimension", title="six-layer MLP, SGD")
    legend_outside(ax, ncol=1)
    return fig


def _reversed_order(gradient: np.ndarray, update: np.ndarray) -> np.ndarray:
    """The update fractions reassigned so that the layer with the lowest gradient rank gets the highest update rank."""
    out = np.empty(len(update))
    out[np.argsort(gradient)] = np.sort(update)[::-1]
    return out


claim("jaiswal2024.low_rank_updates",
      title="Layers with low-rank gradients develop low-rank weight updates, non-uniformly across layers",
      citation="Jaiswal, Yin, Zhang, Wang et al. 2024, arXiv:2407.11239 (From GaLore to WeLore: how low-rank weights "
               "non-uniformly emerge from low-rank gradients), Sec. 3-4",
      statement="The rank of a layer's accumulated update W_t - W_0 follows the rank of its gradients during training: "
                "layers whose gradients stay low-rank get low-rank updates, and the ranks differ widely across layers.",
      tolerance="MLP 64-256-256-128-128-64-10 on the digits, SGD (lr 0.05, batches of 128), 400 steps; stable ranks as "
                "fractions of each layer's smaller dimension, the gradient's averaged over 10 mini-batches seen in "
                "training. Effects over 3 seeds: the Spearman correlation across the six layers, refuted below 0.5; "
                "the log ratio of the largest to the smallest update fraction, passed above and refuted below log 2 "
                "(both declared in advance). Bound: the median layer's update fraction below 0.1.",
      control="isotropic noise (0.05 per entry) added to every gradient: the updates are no longer sums of the "
              "low-rank gradients",
      predictions={}, measure=measure_low_rank_updates, judge=judge_low_rank_updates, figure=figure_low_rank_updates,
      mutations=[
          Mutation("update ranks in the reverse order of the gradient ranks", numbers=lambda m: {**m, "runs": [
              {**r, "update": _reversed_order(r["gradient"], r["update"])} for r in m["runs"]]}),
          Mutation("uniform full-rank updates", numbers=lambda m: {**m, "runs": [
              {**r, "update": np.full(len(r["update"]), 0.5) + 1e-3 * np.arange(len(r["update"]))}
              for r in m["runs"]]}),
      ])
