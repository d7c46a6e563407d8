"""Mini-batch versus full-data Hessian (Granziol, Zohren & Roberts 2022, "Learning rates as a
function of batch size: a random matrix theory approach to neural network training", JMLR 23(173)).

Model: the batch-B Hessian is the full Hessian plus a random perturbation whose entries have
variance proportional to 1/B - 1/N (sampling B of N examples without replacement).  Spiked random
matrix theory puts the top eigenvalue of the batch Hessian above the full one by an excess that
decays like (1/B - 1/N)^p, with p = 1 while the top eigenvalue stands out of the noise bulk
(lambda_1 + P sigma^2 / (B lambda_1)) and p = 1/2 at the bulk edge (2 sigma sqrt(P / B)); the largest
stable learning rate 2 / lambda_1(H_B) therefore grows with B (their linear scaling rule for SGD).

That the excess is positive at all follows from convexity alone: H = E[H_B] and lambda_max is convex,
so E lambda_1(H_B) >= lambda_1(H) for any sampling noise (Jensen).  The positive excess is therefore
only the precondition of the test; the prediction of the theory is the rate.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from theorylab.claims import Context, Judgement, Mutation, bound, claim, mean_and_stderr, precondition, undecided
from theorylab.claims.figures import band, legend_outside, log_axis, measured_shades, prediction
from theorylab.data import load_digits
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.rates import line_fit
from theorylab.sharpness import lambda_max
from theorylab.theory import batch_hessian_excess_exponents
from theorylab.train import train

LANCZOS_FLOOR = 1e-4  # ten times the relative tolerance of the eigensolver: differences below it are not resolved

def measure_batch_hessian(ctx: Context) -> dict:
    batch_sizes = np.array(ctx.pick([16, 32, 64, 128, 256], [8, 16, 32, 64, 128, 256, 512, 768]))
    repeats = ctx.pick(12, 30)
    widths = ctx.pick([128], [512, 512])
    seeds = ctx.seeds(3, 3)[:1] if ctx.control else ctx.seeds(3, 3)
    ce = nn.CrossEntropyLoss()
    full, batch = [], []
    for seed in seeds:
        split = load_digits(seed=seed)
        x, y = split.x_train.to(ctx.device), split.y_train.to(ctx.device)
        model = MLP(64, widths, 10, seed=seed).to(ctx.device)
        train(model, ce, (x, y), steps=300, lr=0.1, optimizer="sgd", batch_size=64, seed=seed)
        if ctx.control:  # every example the same: a batch Hessian is the full Hessian, there is no sampling noise
            x, y = x[:1].expand_as(x).contiguous(), y[:1].expand_as(y).contiguous()
        full.append(lambda_max(model, ce, (x, y), tol=1e-5, seed=seed).value)
        g = torch.Generator().manual_seed(seed)
        values = np.zeros((len(batch_sizes), repeats))
        for i, b in enumerate(batch_sizes):
            for r in range(repeats):
                idx = torch.randperm(len(y), generator=g)[: int(b)].to(ctx.device)
                values[i, r] = lambda_max(model, ce, (x[idx], y[idx]), tol=1e-5, seed=seed + r).value
        batch.append(values)
    return {"batch_sizes": batch_sizes, "n": int(len(y)), "seeds": seeds, "full": np.array(full),
            "batch": np.stack(batch)}  # (seed, batch size, repeat)


def _excess(m: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per seed and batch size: the mean excess lambda_1(H_B) - lambda_1(H) and its standard error."""
    batch = np.asarray(m["batch"])
    excess = batch.mean(axis=2) - np.asarray(m["full"])[:, None]
    se = batch.std(axis=2, ddof=1) / np.sqrt(batch.shape[2])
    return excess, se


def judge_batch_hessian(m: dict, p) -> Judgement:
    b, n = np.asarray(m["batch_sizes"], dtype=float), int(m["n"])
    excess, se = _excess(m)
    fpc = 1.0 / b - 1.0 / n  # sampling without replacement
    # pooled over seeds per batch size, against its standard error plus the eigensolver's tolerance
    noise = np.sqrt((se ** 2).sum(axis=0)) / len(se) + LANCZOS_FLOOR * float(np.mean(m["full"]))
    z = excess.mean(axis=0) / noise
    checks = [precondition("the excess is resolved at every batch size (mean over seeds > 2 x its error)",
                           bool(np.all(z > 2)), requirement="excess / (s.e. + 1e-4 lambda_1) > 2", measured=float(z.min()),
                           detail="positive in expectation by convexity (Jensen); resolving it is what lets the rate "
                                  "be measured")]
    low, high = p.exponents()
    exponents = []
    for row in excess:
        if np.all(row > 0):
            exponents.append(line_fit(np.log(fpc), np.log(row))[1])
    name = "exponent p of the excess ~ (1/B - 1/N)^p (mean over seeds)"
    if len(exponents) >= 2:
        mean, stderr = mean_and_stderr(exponents)
        checks.append(bound(name, mean, lower=low, upper=high, slack=2 * stderr,
                            source="2 standard errors over seeds (Monte-Carlo batches and training noise)"))
    else:
        checks.append(undecided(name, kind="bound", predicted=f"in [{low:g}, {high:g}]",
                                why="fewer than 2 seeds with a positive excess at every batch size"))
    return Judgement(checks, predicted=f"excess ~ (1/B - 1/N)^p, p in [{low:g}, {high:g}]",
                     measured=f"excess resolved at {z.min():.1f} x its error or more; p = "
                              + (f"{np.mean(exponents):.2f} over {len(exponents)} seeds" if exponents else "n/a"),
                     per_seed={"seed": list(m["seeds"]), "lambda_1(H)": list(m["full"]),
                               "min excess / s.e.": (excess / np.where(se > 0, se, np.inf)).min(axis=1).tolist(),
                               "exponent p": [float(e) for e in exponents] + [None] * (len(m["seeds"]) - len(exponents))},
                     rule="each seed trains its own network and fits its own exponent; the bound is on their mean with "
                          "the standard error over seeds.")


def figure_batch_hessian(m: dict, p):
    b, n = np.asarray(m["batch_sizes"], dtype=float), int(m["n"])
    excess, _ = _excess(m)
    fpc = 1.0 / b - 1.0 / n
    fig, (ax1, ax2) = new_figure(ncols=2, width=3.8, height=3.2)
    batch = np.asarray(m["batch"])
    band(ax1, b, batch.mean(axis=2), errorbars=True, label=r"$\lambda_1(H_B)$ (mean over seeds ± 2 s.e.)")
    ax1.axhline(float(np.mean(m["full"])), color=measured_shades(3)[0], lw=1, label=r"full-data $\lambda_1(H)$")
    ax1.set(xlabel="batch size $B$", ylabel="top eigenvalue", title="batch vs full Hessian")
    log_axis(ax1, "x", ticks=list(b))
    legend_outside(ax1, ncol=1)
    band(ax2, fpc, np.clip(excess, 1e-12, None), errorbars=True, label="measured excess")
    anchor = float(np.exp(np.mean(np.log(np.clip(excess.mean(axis=0), 1e-12, None)))))
    middle = float(np.exp(np.mean(np.log(fpc))))
    for slope, ls in zip(p.exponents(), (":", "--")):
        prediction(ax2, fpc, anchor * (fpc / middle) ** slope, ls=ls, label=f"slope {slope:g} (theory's range)")
    ax2.set(xlabel="$1/B - 1/N$", ylabel=r"$\lambda_1(H_B) - \lambda_1(H)$", title="excess")
    log_axis(ax2, "x")
    log_axis(ax2, "y")
    legend_outside(ax2, ncol=1)
    return fig


def _excess_power(power: float):
    """Rebuild the batch eigenvalues so that the excess scales as ``fpc^power`` (same size at the middle B)."""
    def mutate(m: dict) -> dict:
        b, n = np.asarray(m["batch_sizes"], dtype=float), int(m["n"])
        fpc = 1.0 / b - 1.0 / n
        batch = np.array(m["batch"])
        excess = batch.mean(axis=2, keepdims=True) - np.asarray(m["full"])[:, None, None]
        target = excess[:, len(b) // 2:len(b) // 2 + 1] * (fpc / fpc[len(b) // 2])[None, :, None] ** power
        return {**m, "batch": batch - excess + target}
    return mutate


claim("granziol2022.batch_hessian",
      title="The mini-batch Hessian's excess sharpness decays like (1/B - 1/N)^p with p in [1/2, 1]",
      citation="Granziol, Zohren & Roberts 2022, JMLR 23(173) (Learning rates as a function of batch size)",
      statement="The top eigenvalue of the batch-B Hessian exceeds that of the full-data Hessian by an excess that "
                "decays like (1/B - 1/N)^p with p between 1/2 (bulk edge) and 1 (outlier regime), so the largest "
                "stable step 2/lambda_1(H_B) grows with B.",
      tolerance="That the excess is positive follows from convexity (Jensen), so resolving it (at every B, the mean "
                "over seeds of 12 random batches each above twice its standard error plus 1e-4 lambda_1, ten times the "
                "eigensolver's tolerance) is a precondition, not a test. The test is the "
                "rate: each of 3 seeds (trained networks) fits its exponent; their mean must lie in [1/2, 1] up to 2 "
                "standard errors over seeds.",
      control="every example the same (N copies of one digit): batch and full Hessians coincide, there is no excess",
      predictions={"exponents": batch_hessian_excess_exponents},
      measure=measure_batch_hessian, judge=judge_batch_hessian, figure=figure_batch_hessian,
      mutations=[
          Mutation("predicted range [1.5, 2]", predictions={"exponents": lambda: (1.5, 2.0)}),
          Mutation("excess decaying like (1/B - 1/N)^2", numbers=_excess_power(2.0)),
          Mutation("excess decaying like (1/B - 1/N)^0.2", numbers=_excess_power(0.2)),
          Mutation("no excess", numbers=lambda m: {**m, "batch": np.asarray(m["batch"]) * 0
                                                   + np.asarray(m["full"])[:, None, None]}),
      ])
