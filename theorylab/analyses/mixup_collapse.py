"""Mixup and neural collapse (Fisher, Meng & Papyan 2024, "Pushing boundaries: mixup's influence on neural
collapse", ICLR).

The paper trains networks with mixup into the terminal phase and looks at the last-layer activations of the
mixed training inputs (Sec. 2, "Experiments", and the configuration its Fig. 4 draws to explain calibration: as
``lam`` approaches 1/2 the activation of a cross-class mix travels along the configuration towards the decision
boundary): the mixes of two examples of one class align with that class's classifier row, while the mixes of
two classes lie in a channel along the decision boundary between them, not on the straight segment between the
class means: a mix of weight ``lam`` sits near the boundary for most weights and crosses it at ``lam = 1/2``;
the mixed-up features are not convex combinations of the feature class means.  Its Sec. 3 derives the optimal
features of the unconstrained-features model under the mixup loss with a simplex-ETF classifier.  The quantity
the channel is made of is the logit margin ``z_a - z_b`` of a mix (the signed distance to the a|b boundary
times ``||w_a - w_b||``): the mixup loss of a mix is minimised at ``log(lam / (1 - lam))``
(:func:`theorylab.theory.mixup_optimal_margin`), small for most ``lam``, while features that moved along the
segment between the class means would carry a margin growing linearly from one end's to the other's, many
times larger.

Measured with :func:`theorylab.mixup.mixup_geometry` on an MLP with a 16-dimensional penultimate layer trained
on the ten digit classes with mixup (``lam ~ Beta(1, 1)``).  The negative control is the same network trained
without mixup (plain cross-entropy): the paper contrasts mixup's geometry with it, and its cross-class mixes
are not expected to follow the mixup margin.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from theorylab.claims import (Context, Judgement, Mutation, bound, claim, effect, mean_and_stderr, precondition,
                              tolerance)
from theorylab.claims.figures import band, figure_legend, measured_shades, prediction, prediction_level
from theorylab.data import load_digits
from theorylab.mixup import mixup_batch, mixup_geometry, soft_cross_entropy
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.theory import mixup_optimal_margin

GRID = np.linspace(0.0, 1.0, 21)   # mixing weights measured
INNER = (GRID >= 0.2) & (GRID <= 0.8) & (np.abs(GRID - 0.5) > 0.02)  # interior weights, lam = 1/2 left out (margin 0)
EXCESS = 0.1        # terminal phase of mixup: mean KL(targets || p) over the cross-class mixes <= 0.1 nats
CLEAN = 1e-3        # terminal phase of plain training: training cross-entropy <= 1e-3
ALIGNED = math.cos(math.pi / 4)  # "aligned": within 45 degrees of the class's classifier row on average
SPREAD = 0.5        # same-class mixes within half the distance between class means of their mean (RMS)
CROSSING = 0.1      # the boundary is crossed within 0.1 of lam = 1/2 (mean over pairs)
FACTOR = 2.0        # the interior margins within a factor 2 of the mixup optimum log(lam / (1 - lam))
MASS = 0.9          # at most 10% of the probability of a cross-class mix on a third class
BULGE = math.log(1.25)  # off the line through the means at lam = 1/2: at least 25% farther than the unmixed ends
MIDDLE = 10         # GRID[MIDDLE] = 1/2
PAIRS_PER_CLASS_PAIR = 4


def _subset(x: torch.Tensor, y: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.cat([torch.nonzero(y == c)[:per_class, 0] for c in range(10)])
    return x[idx], y[idx]


def _pairs(y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of PAIRS_PER_CLASS_PAIR random example pairs for every class pair a <= b."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for a in range(10):
        for b in range(a, 10):
            ia, ib = np.nonzero(y.numpy() == a)[0], np.nonzero(y.numpy() == b)[0]
            first.extend(rng.choice(ia, PAIRS_PER_CLASS_PAIR).tolist())
            second.extend(rng.choice(ib, PAIRS_PER_CLASS_PAIR).tolist())
    return torch.tensor(first), torch.tensor(second)


def measure_mixup_collapse(ctx: Context) -> dict:
    per_class, widths = ctx.pick(20, 120), ctx.pick([64, 64, 16], [256, 256, 32])
    steps, lr, weight_decay = ctx.pick(1500, 5000), 1e-2, 0.1
    seeds = ctx.seeds(3, 5)
    mixup = not ctx.control  # the control trains the same network without mixup
    runs = []
    for seed in seeds:
        split = load_digits(seed=seed)
        x, y = _subset(split.x_train, split.y_train, per_class)
        x, y = x.to(ctx.device), y.to(ctx.device)
        model = MLP(64, widths, 10, seed=seed).to(ctx.device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / steps)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            if mixup:
                x_mix, targets, _, _ = mixup_batch(x, y, 10, generator=generator)
                loss = soft_cross_entropy(model(x_mix), targets)
            else:
                loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            decay.step()
        model.eval()
        with torch.no_grad():
            clean_loss = float(nn.functional.cross_entropy(model(x), y))
            accuracy = float((model(x).argmax(1) == y).float().mean())
        first, second = _pairs(y.cpu(), 1000 + seed)
        geo = mixup_geometry(model, x[first], x[second], GRID, labels_a=y[first], labels_b=y[second],
                             classifier="readout")
        cross = geo.cross
        runs.append({"seed": seed, "clean_loss": clean_loss, "train_accuracy": accuracy,
                     "excess": float(np.trapezoid(geo.target_kl[cross], GRID, axis=1).mean()),
                     "margins": geo.margins[cross].tolist(), "crossings": geo.crossings[cross].tolist(),
                     "pair_mass": geo.pair_mass[cross].tolist(), "offset": geo.offset[cross].tolist(),
                     "position": geo.position[cross].tolist(),
                     "cosines": geo.classifier_cosines[~cross].tolist(), "spread": geo.spread[~cross].tolist()})
    return {"objective": "mixup" if mixup else "cross-entropy", "per_class": per_class, "widths": widths,
            "steps": steps, "lr": lr, "weight_decay": weight_decay, "lambdas": GRID.tolist(), "seeds": seeds,
            "runs": runs}


def _summary(run: dict) -> dict[str, float]:
    """Per-seed numbers: alignment and spread of the same-class mixes; crossing, margin ratio, pair mass and offset
    at lam = 1/2 over the unmixed ends (log) of the cross-class mixes."""
    margins = np.asarray(run["margins"])[:, INNER]
    offset = np.asarray(run["offset"])
    optimum = np.abs(mixup_optimal_margin(GRID[INNER]))
    return {"cosine": float(np.mean(run["cosines"])),
            "spread": float(np.sqrt(np.mean(np.square(run["spread"])))),
            "crossing": float(np.mean(np.nan_to_num(np.abs(np.asarray(run["crossings"]) - 0.5), nan=0.5))),
            "log2_margin_ratio": float(np.median(np.log2(np.abs(margins) / optimum))),
            "pair_mass": float(np.mean(np.asarray(run["pair_mass"])[:, INNER])),
            "log_bulge": float(np.log(np.median(offset[:, MIDDLE]) / np.median((offset[:, 0] + offset[:, -1]) / 2)))}


def _terminal(m: dict, run: dict) -> bool:
    if run["train_accuracy"] < 1.0:
        return False
    return run["excess"] <= EXCESS if m["objective"] == "mixup" else run["clean_loss"] <= CLEAN


def judge_mixup_collapse(m: dict, p) -> Judgement:
    runs = m["runs"]
    s = {k: np.array([_summary(r)[k] for r in runs]) for k in _summary(runs[0])}
    reached = all(_terminal(m, r) for r in runs)
    requirement = (f"mixup loss within {EXCESS:g} nats of its minimum (mean KL to the soft targets of the "
                   f"cross-class mixes)" if m["objective"] == "mixup" else f"training cross-entropy <= {CLEAN:g}")
    crossing, crossing_se = mean_and_stderr(s["crossing"])
    ratio, ratio_se = mean_and_stderr(s["log2_margin_ratio"])
    checks = [
        precondition(f"terminal phase of the {m['objective']} objective in every seed, training accuracy 1",
                     reached, requirement=requirement,
                     measured=max(r["excess"] if m["objective"] == "mixup" else r["clean_loss"] for r in runs)),
        effect("same-class mixes align with their class's classifier row: mean cos(h - mu_G, w_a - w_bar) above "
               "cos 45deg", *mean_and_stderr(s["cosine"]), exceed=ALIGNED, smallest=ALIGNED,
               source="declared in advance: within 45 degrees on average (more than half the centred feature's "
                      "energy along w_a); the optimum of Sec. 3 has cos 1"),
        bound("same-class mixes collapse on their class mean: RMS distance / RMS distance between class means, "
              "worst seed", float(s["spread"].max()), upper=SPREAD,
              source="declared in advance: closer to their mean than half the way to another class's mean"),
        tolerance("cross-class mixes cross the a|b boundary at lam = 1/2: mean |lam* - 1/2| over pairs (1/2 for a "
                  "pair that never crosses)",
                  crossing, 0.0, CROSSING + 2 * crossing_se,
                  source=f"declared in advance: {CROSSING:g} (the targets then still favour a class 60:40), plus "
                         "2 standard errors over seeds"),
        tolerance("cross-class mixes lie in the channel along the boundary: median log2(|z_a - z_b| / "
                  "|log(lam/(1-lam))|) over pairs and 0.2 <= lam <= 0.8", ratio, 0.0,
                  math.log2(FACTOR) + 2 * ratio_se,
                  source=f"declared in advance: a factor {FACTOR:g} of the mixup optimum, plus 2 standard errors "
                         "over seeds (the straight segment between the class means gives ~10x)"),
        effect("cross-class mixes are not convex combinations of the class means: log(median offset from the line "
               "through mu_a, mu_b at lam = 1/2 / at the unmixed ends)", *mean_and_stderr(s["log_bulge"]),
               smallest=BULGE, source="a convex combination of the two ends is no farther from the line than the "
                                      "farther end (ratio <= 1); declared in advance: 25% farther"),
        bound("cross-class mixes stay between their two classes: mean p_a + p_b over 0.2 <= lam <= 0.8, worst seed",
              float(s["pair_mass"].min()), lower=MASS,
              source="declared in advance: at most 10% of the probability on a third class (the optimum puts none)"),
    ]
    return Judgement(
        checks, predicted="same-class mixes aligned with the classifier and collapsed; cross-class mixes cross the "
                          "boundary at lam = 1/2 with margins log(lam/(1-lam)) (a channel along the boundary)",
        measured=(f"{m['objective']}: same-class cos {s['cosine'].mean():.2f}, spread {s['spread'].mean():.2f}; "
                  f"|lam* - 1/2| {crossing:.3f}; margin / optimum x{2 ** ratio:.2f}; pair mass "
                  f"{s['pair_mass'].mean():.3f}; off the segment at lam = 1/2 x{math.exp(s['log_bulge'].mean()):.2f} "
                  "the ends"),
        per_seed={"seed": m["seeds"], "excess mixup loss": [r["excess"] for r in runs],
                  "training cross-entropy": [r["clean_loss"] for r in runs],
                  "same-class cosine": s["cosine"].tolist(), "same-class spread": s["spread"].tolist(),
                  "|lam* - 1/2|": s["crossing"].tolist(), "margin / optimum": (2 ** s["log2_margin_ratio"]).tolist(),
                  "pair mass": s["pair_mass"].tolist(), "offset at 1/2 / ends": np.exp(s["log_bulge"]).tolist()},
        rule="each seed trains its own network on its own split and measures its own pairs (4 per class pair); "
             "spread and pair mass must hold in the worst seed; the alignment, the crossing, the margin ratio and the "
             "offset are averaged over seeds with their standard errors (an alignment whose interval straddles 45 "
             "degrees is undecided).")


def figure_mixup_collapse(m: dict, p):
    fig, (ax_m, ax_c, ax_s) = new_figure(ncols=3, width=3.4, height=3.0)
    lam = np.asarray(m["lambdas"])
    inner = (lam > 0) & (lam < 1)
    runs = m["runs"]
    band(ax_m, lam, [np.median(r["margins"], axis=0) for r in runs], label=f"measured ({m['objective']}), median pair")
    prediction(ax_m, lam[inner], mixup_optimal_margin(lam[inner]), label=r"prediction: $\log(\lambda / (1 - \lambda))$")
    ax_m.axhline(0, color="0.5", lw=0.8)
    ax_m.set(xlabel=r"weight $\lambda$ of class a", ylabel=r"margin $z_a - z_b$", title="cross-class mixes: the channel")
    shades = measured_shades(2)
    band(ax_c, lam, [np.median(r["position"], axis=0) for r in runs], color=shades[0],
         label=r"position along $\mu_b \to \mu_a$")
    band(ax_c, lam, [np.median(r["offset"], axis=0) for r in runs], color=shades[1],
         label=r"offset from the segment / $\|\mu_a - \mu_b\|$")
    prediction_level(ax_c, x=0.5, ls=":", label=r"boundary crossed at $\lambda = 1/2$")
    ax_c.set(xlabel=r"weight $\lambda$ of class a", ylabel=r"units of $\|\mu_a - \mu_b\|$",
             title="cross-class mixes between the means")
    band(ax_s, lam, [np.mean(r["cosines"], axis=0) for r in runs], color=shades[0],
         label=r"same-class $\cos(h - \mu_G, w_a)$")
    band(ax_s, lam, [np.sqrt(np.mean(np.square(r["spread"]), axis=0)) for r in runs], color=shades[1],
         label="same-class spread (RMS)")
    prediction_level(ax_s, y=ALIGNED, label=f"bound: cos >= {ALIGNED:.2f}")
    prediction_level(ax_s, y=SPREAD, ls=":", label=f"bound: spread <= {SPREAD:g}")
    ax_s.set(xlabel=r"weight $\lambda$", ylim=(0, 1.05), title="same-class mixes")
    figure_legend(fig, (ax_m, ax_c, ax_s), ncol=3)
    return fig


def _scaled(m: dict, key: str, factor: float) -> dict:
    return {**m, "runs": [{**r, key: (np.asarray(r[key]) * factor).tolist()} for r in m["runs"]]}


claim("fisher2024.mixup_collapse",
      title="Mixup's last-layer geometry: same-class mixes align with the classifier, cross-class mixes lie in a "
            "channel along the decision boundary",
      citation="Fisher, Meng & Papyan 2024, ICLR (Pushing boundaries: mixup's influence on neural collapse), Sec. 2 "
               "(last-layer activations of mixed training data) with the configuration of Fig. 4, Sec. 3 "
               "(unconstrained features under the mixup loss)",
      statement="Networks trained with mixup into the terminal phase show a distinctive last-layer configuration of "
                "the mixed training inputs: activations from mixed-up examples of identical classes align with the "
                "classifier, while those from different classes delineate channels along the decision boundary; "
                "the mixed-up features are not simple convex combinations of the feature class means.",
      tolerance="200 digits (20 per class), an MLP 64-64-64-16-10 (ReLU) trained full-batch by AdamW (lr 0.01 decayed "
                "linearly to 0, weight decay 0.1) for 1500 steps with mixup (lam ~ Beta(1, 1), a fresh partner "
                "and weight per example and step), 3 seeds; measured on 4 example pairs per class pair (180 "
                "cross-class, 40 same-class) at 21 weights. Precondition: the mixup loss within 0.1 nats of its "
                "minimum (mean KL to the soft targets over the cross-class mixes; the minimum is the targets' "
                "entropy, 0.5 nats on average) and training accuracy 1 in every seed. Declared in advance: "
                "same-class mixes within 45 degrees of their class's classifier row on average (cos >= 0.71, decided "
                "by the 95% interval of the seed mean) and within half the distance between class means of their "
                "class mean (RMS, worst seed); cross-class pairs cross the boundary at mean |lam* - 1/2| <= 0.1 (a "
                "pair that never crosses counts 1/2); the interior margins (0.2 <= lam <= 0.8) within a factor 2 of "
                "the mixup optimum log(lam/(1-lam)) (median; a straight path between the class means gives ~10x); "
                "at lam = 1/2 at least 25% farther from the line through the two class means than the unmixed ends "
                "(a convex combination of the ends is no farther than the farther end; seed mean, 95% interval); at "
                "most 10% of their probability on a third class (worst seed). Tolerances on seed means add 2 "
                "standard errors.",
      control="the same network trained without mixup (plain cross-entropy to zero training loss): its cross-class "
              "mixes are not held in the channel: their margins are many times the mixup optimum",
      predictions={}, measure=measure_mixup_collapse, judge=judge_mixup_collapse, figure=figure_mixup_collapse,
      mutations=[
          Mutation("the cross-class margins of a straight path between the means (8x the measured)",
                   numbers=lambda m: _scaled(m, "margins", 8.0)),
          Mutation("the boundary is crossed away from lam = 1/2", numbers=lambda m: {**m, "runs": [
              {**r, "crossings": (np.asarray(r["crossings"]) * 0.5 + 0.5).tolist()} for r in m["runs"]]}),
          Mutation("the same-class mixes leave the classifier direction", numbers=lambda m: _scaled(m, "cosines", 0.5)),
          Mutation("the same-class mixes spread out", numbers=lambda m: _scaled(m, "spread", 4.0)),
          Mutation("the cross-class mixes are convex combinations of the unmixed ends", numbers=lambda m: {
              **m, "runs": [{**r, "offset": (np.outer(1 - GRID, np.asarray(r["offset"])[:, 0])
                                         + np.outer(GRID, np.asarray(r["offset"])[:, -1])).T.tolist()}
                            for r in m["runs"]]}),
          Mutation("the cross-class mixes pass through a third class", numbers=lambda m: _scaled(m, "pair_mass", 0.8)),
          Mutation("training stopped before the terminal phase", numbers=lambda m: {**m, "runs": [
              {**r, "excess": 5 * r["excess"], "clean_loss": 1e3 * r["clean_loss"]} for r in m["runs"]]}),
      ])
