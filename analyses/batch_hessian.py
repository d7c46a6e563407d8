"""Mini-batch versus full-data Hessian (Granziol, Zohren & Roberts 2022, "Learning rates as a
function of batch size: a random matrix theory approach to neural network training", JMLR 23(173)).

Model: the batch-B Hessian is the full Hessian plus a random perturbation whose entries have
variance proportional to 1/B - 1/N (sampling B of N examples without replacement).  Spiked random
matrix theory then puts the top eigenvalue of the batch Hessian *above* the full one,
lambda_1(H_B) = lambda_1 + P sigma^2 / (B lambda_1) while the top eigenvalue stands out of the noise
bulk, and at the bulk edge 2 sigma sqrt(P / B) otherwise.  The excess
delta(B) = E lambda_1(H_B) - lambda_1(H) therefore shrinks like (1/B - 1/N)^p with p = 1 in the
outlier regime and p = 1/2 at the bulk edge; the largest stable learning rate 2 / lambda_1(H_B)
grows about linearly in B (their linear scaling rule for SGD).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from theorylab.claims import Context, Outcome, check_at_least, check_between, claim
from theorylab.data import load_digits
from theorylab.models import MLP
from theorylab.plotting import MEASURED, PREDICTED, new_figure
from theorylab.rates import line_fit
from theorylab.sharpness import lambda_max
from theorylab.train import train


@claim("granziol2022.batch_hessian",
       title="The mini-batch Hessian is sharper than the full Hessian, approaching it as B grows",
       citation="Granziol, Zohren & Roberts 2022, JMLR 23(173) (Learning rates as a function of batch size)",
       statement="The top eigenvalue of the batch-B Hessian exceeds that of the full-data Hessian and approaches "
                 "it as B grows: the excess decays like (1/B - 1/N)^p with p between 1/2 (bulk edge) and 1 "
                 "(outlier regime), so the largest stable step 2/lambda_1(H_B) grows about linearly in B.",
       tolerance="Each batch size averages lambda_1 over independent random batches; 'exceeds' requires the mean "
                 "excess to be above 2 standard errors at every B. The fitted exponent must fall in "
                 "[0.5, 1.0] widened by 2 standard errors of the fit (finite N and finite batches).")
def batch_hessian(ctx: Context) -> Outcome:
    batch_sizes = np.array(ctx.pick([16, 32, 64, 128, 256, 512], [8, 16, 32, 64, 128, 256, 512, 768]))
    repeats = ctx.pick(6, 30)
    widths = ctx.pick([128], [512, 512])
    split = load_digits(seed=ctx.seed)
    x, y = split.x_train.to(ctx.device), split.y_train.to(ctx.device)
    n = len(y)
    ce = nn.CrossEntropyLoss()
    model = MLP(64, widths, 10, seed=ctx.seed).to(ctx.device)
    train(model, ce, (x, y), steps=300, lr=0.1, optimizer="sgd", batch_size=64, seed=ctx.seed)
    full = lambda_max(model, ce, (x, y), tol=1e-5, seed=ctx.seed).value
    g = torch.Generator().manual_seed(ctx.seed)
    means, errors = [], []
    for b in batch_sizes:
        values = []
        for r in range(repeats):
            idx = torch.randperm(n, generator=g)[: int(b)].to(ctx.device)
            values.append(lambda_max(model, ce, (x[idx], y[idx]), tol=1e-5, seed=ctx.seed + r).value)
        means.append(np.mean(values))
        errors.append(np.std(values, ddof=1) / np.sqrt(repeats))
    means, errors = np.array(means), np.array(errors)
    excess = means - full
    fpc = 1.0 / batch_sizes - 1.0 / n  # sampling without replacement
    z_min = float(np.min(excess / errors))
    checks = [check_at_least("min over B of excess / standard error", z_min, 2.0)]
    if np.all(excess > 0):
        _, p, p_se, _ = line_fit(np.log(fpc), np.log(excess))
        checks.append(check_between("exponent p of excess ~ (1/B - 1/N)^p", p, 0.5 - 2 * p_se, 1.0 + 2 * p_se,
                                    detail=f"fit standard error {p_se:.3f}"))
    else:
        p, p_se = float("nan"), float("nan")

    fig, (ax1, ax2) = new_figure(ncols=2, width=4.2)
    ax1.errorbar(batch_sizes, means, yerr=2 * errors, color=MEASURED, marker="o", label="lambda_1(H_B), mean ± 2 SE")
    ax1.axhline(full, color="k", lw=1, label=f"full-data lambda_1 = {full:.3g}")
    ax1.set(xscale="log", xlabel="batch size B", ylabel="top eigenvalue", title="batch vs full Hessian")
    ax1.set_xticks(batch_sizes, [str(b) for b in batch_sizes], minor=False)
    ax1.minorticks_off()
    ax1.legend()
    ax2.loglog(fpc, np.clip(excess, 1e-12, None), "o", color=MEASURED, label="measured excess")
    for slope, ls in ((1.0, "--"), (0.5, ":")):
        anchor = excess[len(excess) // 2] if excess[len(excess) // 2] > 0 else 1.0
        ax2.loglog(fpc, anchor * (fpc / fpc[len(fpc) // 2]) ** slope, ls=ls, color=PREDICTED,
                   label=f"slope {slope:g} (theory)")
    ax2.set(xlabel="1/B - 1/N", ylabel="lambda_1(H_B) - lambda_1(H)", title=f"excess, fitted p = {p:.2f}")
    ax2.legend()
    return Outcome(checks, fig, predicted="lambda_1(H_B) > lambda_1(H); excess ~ (1/B-1/N)^p, p in [0.5, 1]",
                   measured=f"min excess/SE = {z_min:.1f}; p = {p:.2f} ± {p_se:.2f}",
                   numbers={"batch_sizes": batch_sizes, "mean_lambda": means, "stderr": errors, "full_lambda": full,
                            "exponent": p, "exponent_stderr": p_se, "max_stable_lr": 2.0 / means, "n": n})
