"""Upsampling or upweighting a rare class (Li, Xu, Tan, Murray & Khashabi 2024, "Upsample or upweight? Balanced
training on heavily imbalanced datasets").

Upsampling (repeating the rare examples) and upweighting (scaling their loss) define the same objective, so under
full-batch gradient descent they follow the same path; under SGD they differ, and upweighting's gradient
estimator, which multiplies the rare, poorly fitted examples' gradients by their weight, has the larger variance
(:func:`theorylab.sampling.sampling_gradient_variance`).  Digits with five classes cut to 10% of their examples,
each rare example given weight 10.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from theorylab.claims import Context, Judgement, Mutation, claim, effect, mean_and_stderr, tolerance
from theorylab.claims.figures import band, legend_outside, log_axis, measured_shades, prediction
from theorylab.data import class_imbalanced, load_digits
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.sampling import sampling_gradient_variance

RARE = (5, 6, 7, 8, 9)
FACTOR = 10                      # rare classes keep 1/FACTOR of their examples and get weight FACTOR
CHECKPOINTS = (0, 25, 50, 100)   # GD steps at which the two estimators' variances are compared
BATCH = 32
LR = 0.5
NOISIER = math.log(1.25)         # declared: the smallest variance ratio that counts, 25% (in log)


def _imbalanced(seed: int, balanced: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training inputs, labels and per-example weights: rare classes cut to 1/FACTOR, weighted FACTOR."""
    split = load_digits(seed=seed, dtype=torch.float64)
    x, y = split.x_train, split.y_train
    if balanced:  # control: every class complete, every weight 1
        return x, y, torch.ones(len(y), dtype=torch.float64)
    counts = [int((y == c).sum()) // (FACTOR if c in RARE else 1) for c in range(10)]
    x, y = class_imbalanced(x, y, counts, seed=seed)
    weights = torch.where(torch.isin(y, torch.tensor(RARE)), float(FACTOR), 1.0).to(torch.float64)
    return x, y, weights


def _upsampled(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The dataset with example ``i`` repeated ``weights[i]`` times (integer weights)."""
    repeats = weights.round().long()
    return x.repeat_interleave(repeats, dim=0), y.repeat_interleave(repeats)


def _gd(model: nn.Module, loss, steps: int) -> list[dict]:
    """Full-batch GD for ``steps`` steps; the state dict at every checkpoint."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    states = []
    for step in range(steps + 1):
        if step in CHECKPOINTS:
            states.append({k: v.clone() for k, v in model.state_dict().items()})
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        loss(model).backward()
        opt.step()
    return states


def measure_rebalancing(ctx: Context) -> dict:
    seeds = ctx.seeds(3, 5)
    ce = nn.CrossEntropyLoss()
    runs = []
    for seed in seeds:
        x, y, w = _imbalanced(seed, balanced=ctx.control)
        x_up, y_up = _upsampled(x, y, w)
        make = lambda: MLP(64, [32], 10, activation="tanh", seed=seed).double()  # noqa: E731
        upsampled = _gd(make(), lambda m: ce(m(x_up), y_up), CHECKPOINTS[-1])
        upweighted = _gd(make(), lambda m: (nn.functional.cross_entropy(m(x), y, reduction="none") * w).sum() / w.sum(),
                         CHECKPOINTS[-1])
        scale = max(float(v.abs().max()) for v in upsampled[-1].values())
        gap = max(float((a - upweighted[-1][k]).abs().max()) for k, a in upsampled[-1].items()) / scale
        model = make()
        variance = {"upsample": [], "upweight": []}
        for state in upsampled:
            model.load_state_dict(state)
            for scheme in variance:
                variance[scheme].append(sampling_gradient_variance(model, ce, (x, y), weights=w, scheme=scheme,
                                                                   batch_size=BATCH).variance)
        runs.append({"seed": seed, "n": len(y), "rare_fraction": float((w > 1).double().mean()), "gd_gap": gap,
                     **{f"variance {k}": v for k, v in variance.items()}})
    return {"seeds": seeds, "checkpoints": list(CHECKPOINTS), "batch": BATCH, "balanced": ctx.control, "runs": runs}


def judge_rebalancing(m: dict, p) -> Judgement:
    runs = m["runs"]
    gap = max(r["gd_gap"] for r in runs)
    ratios = [float(np.mean(np.log(np.asarray(r["variance upweight"]) / np.asarray(r["variance upsample"]))))
              for r in runs]
    mean, se = mean_and_stderr(ratios)
    checks = [
        tolerance(f"full-batch GD, {m['checkpoints'][-1]} steps: max |theta_upsampled - theta_upweighted| / max "
                  "|theta|, worst seed", gap, 0.0, 1e-10,
                  source="double-precision round-off: the two losses sum the same terms in a different order"),
        effect(f"SGD (B = {m['batch']}): log(variance upweighted / upsampled), mean over the GD path, over seeds",
               mean, se, smallest=NOISIER, source="declared in advance: a ratio below 1.25 would refute it"),
    ]
    return Judgement(checks, predicted="identical full-batch paths; upweighting the noisier SGD estimator",
                     measured=f"GD paths differ by {gap:.1g} (relative); variance ratio upweight / upsample "
                              f"x{math.exp(mean):.3g}",
                     per_seed={"seed": list(m["seeds"]), "GD relative gap": [r["gd_gap"] for r in runs],
                               "variance ratio (geometric mean over the path)": np.exp(ratios).tolist()},
                     rule="each seed draws its own split and initialisation; the GD gap must be at round-off in every "
                          "seed; the variance ratio is averaged over the checkpoints, then over seeds.")


def figure_rebalancing(m: dict, p):
    fig, ax = new_figure(width=4.2, height=3.4)
    steps = np.asarray(m["checkpoints"], dtype=float)
    dark, light = measured_shades(2)[1], measured_shades(2)[0]
    upweight = [r["variance upweight"] for r in m["runs"]]
    upsample = [r["variance upsample"] for r in m["runs"]]
    band(ax, steps, upweight, color=dark, marker="s", label="upweight (mean ± 2 s.e.)")
    band(ax, steps, upsample, color=light, label="upsample (mean ± 2 s.e.)")
    prediction(ax, steps, np.mean(upsample, axis=0) * math.exp(NOISIER), label="smallest predicted upweight")
    log_axis(ax, "y")
    ax.set(xlabel="full-batch GD step (checkpoints)", ylabel=rf"$E|\hat g - G|^2$ at $B = {m['batch']}$",
           title="balanced (control)" if m.get("balanced") else "rare classes at 10%, weight 10")
    legend_outside(ax, ncol=1)
    return fig


claim("li2024.upsample_or_upweight",
      title="Upsampling and upweighting agree under full-batch GD; under SGD upweighting is noisier",
      citation="Li, Xu, Tan, Murray & Khashabi 2024 (Upsample or upweight? Balanced training on heavily imbalanced "
               "datasets)",
      statement="Upsampling the rare examples and upweighting their loss are equivalent under full-batch gradient "
                "descent, but not under SGD, where the upweighted gradient estimator has the higher variance.",
      tolerance="Digits with classes 5-9 cut to 10% of their training examples (weight 10, or repeated 10 times), a "
                "tanh MLP (32 hidden units) in float64, 3 seeds. Equivalence: after 100 full-batch GD steps (lr 0.5) "
                "from one initialisation the parameters agree to 1e-10 of their largest entry (double-precision "
                "round-off). Variance: the exact variance of each scheme's mini-batch gradient (B = 32, from "
                "per-example gradients) at steps 0, 25, 50, 100 of the path; the log ratio upweight / upsample, "
                "averaged over the path, is an effect over seeds refuted below 1.25 (declared in advance).",
      control="a balanced dataset (every class complete, every weight 1): the two schemes coincide",
      predictions={},
      measure=measure_rebalancing, judge=judge_rebalancing, figure=figure_rebalancing,
      mutations=[
          Mutation("GD paths apart by 1e-6", numbers=lambda m: {**m, "runs": [{**r, "gd_gap": 1e-6} for r in m["runs"]]}),
          Mutation("equal variances", numbers=lambda m: {**m, "runs": [
              {**r, "variance upweight": r["variance upsample"]} for r in m["runs"]]}),
      ])
