"""Why learning rates transfer (Noci, Meterez, Hofmann & Orvieto 2024, "Why do learning rates
transfer? Reconciling optimization and scaling limits for deep learning", arXiv:2402.17457).

Under muP the sharpness (top eigenvalue of the training-loss Hessian) follows nearly the same
trajectory at every width over a sustained period of training -- progressive sharpening up to the
edge of stability 2/eta -- so a step size that is good at one width is good at all ("super
consistency", Sec. 3, Fig. 1).  Under the NTK parametrization feature learning vanishes with width,
the NTK (and with it the sharpness) stops evolving, and the sharpness dynamics differ across
widths (Sec. 4).

The MLPs here have no biases: ``theorylab.models.MLP(parametrization="mup")`` gives the output
bias a multiplier sqrt(width), which makes the sharpness grow linearly with width at
initialisation (measured: 25.7, 102, 410 at widths 128, 512, 2048) -- muP (Yang et al. 2021,
"Tensor Programs V", Table 3) treats the output bias like an input-layer parameter with
fan_out = O(1), i.e. multiplier 1.
"""
from __future__ import annotations

import math

import numpy as np
from torch import nn

from theorylab.claims import Context, Outcome, check_at_least, check_at_most, claim
from theorylab.data import load_digits
from theorylab.models import MLP
from theorylab.plotting import PREDICTED, new_figure
from theorylab.sharpness import lambda_max, sharpness_monitor
from theorylab.train import train

MUP_TOLERANCE = 0.15  # max |log(sharpness ratio)| between the narrowest and widest network


@claim("noci2024.learning_rate_transfer",
       title="Sharpness is width-independent under muP, not under NTK parametrization",
       citation="Noci, Meterez, Hofmann & Orvieto 2024 (Why do learning rates transfer? Reconciling optimization "
                "and scaling limits for deep learning), Sec. 3-4, Fig. 1",
       statement="Under full-batch GD with one step size for all widths, the sharpness trajectory over early "
                 "training is nearly independent of width under muP, but not under NTK parametrization; under "
                 "muP the optimal learning rate is the same at every width.",
       tolerance="Width dependence D = max over measured steps t > 0 of |log(lambda_widest(t) / lambda_narrowest(t))|. "
                 "muP: D <= 0.15, i.e. within ~16%: finite-width corrections are O(width^(-1/2)) ~ 12% at the "
                 "narrowest width 64, and Lanczos is run to a 1e-2 relative residual. NTK parametrization: "
                 "D > 0.15 (outside the muP band). Optimal learning rate (lowest training loss after the "
                 "training budget on a grid with factor 2 between values): under muP it may move by at most one "
                 "grid step across widths.")
def learning_rate_transfer(ctx: Context) -> Outcome:
    widths = ctx.pick([64, 256, 1024], [128, 512, 2048, 8192])
    n, steps, every = ctx.pick(64, 512), ctx.pick(60, 500), ctx.pick(20, 25)
    grid_factors = ctx.pick([0.5, 1.0, 2.0, 4.0], [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
    split = load_digits(seed=ctx.seed).subsample(n, seed=ctx.seed)
    x = split.x_train.to(ctx.device)
    y = nn.functional.one_hot(split.y_train, 10).float().to(ctx.device)
    mse, data = nn.MSELoss(), (x, y)

    def model(par: str, width: int, seed: int) -> MLP:
        return MLP(64, [width], 10, parametrization=par, bias=False, seed=seed).to(ctx.device)

    fig, axes = new_figure(ncols=3, width=3.6)
    numbers: dict = {"widths": widths, "n": n, "steps": steps}
    checks, dependence = [], {}
    for col, par in enumerate(["mup", "ntk"]):
        # one step size for every width: 1.5 / sharpness of the narrowest network at init (eta lambda/2 = 0.75)
        lam0 = lambda_max(model(par, widths[0], ctx.seed), mse, data, tol=1e-3).value
        lr = 1.5 / lam0
        trajectories = {}
        for i, width in enumerate(widths):
            run = train(model(par, width, ctx.seed + 1), mse, data, steps=steps, lr=lr,
                        monitors=[sharpness_monitor(mse, data, every=every, tol=1e-2)])
            s_steps, sharp = run.monitor_steps["sharpness.lambda_max"], run.monitors["sharpness.lambda_max"]
            trajectories[width] = sharp
            axes[col].plot(s_steps, sharp, "o-", ms=3, color=f"C{i}", label=f"width {width}")
        axes[col].axhline(2 / lr, color=PREDICTED, ls="--", lw=1, label="2/eta")
        axes[col].set(xlabel="step", ylabel="sharpness lambda_max", title=f"{par}: eta = {lr:.3g}")
        axes[col].legend()
        ratio = np.abs(np.log(trajectories[widths[-1]][1:] / trajectories[widths[0]][1:]))
        dependence[par] = float(ratio.max())
        numbers[par] = {"lr": lr, "sharpness_steps": s_steps,
                        "sharpness": {str(w): t for w, t in trajectories.items()}, "width_dependence": dependence[par]}

        # learning-rate sweep: final training loss per width and step size
        lrs = [f / lam0 for f in grid_factors]
        losses = np.full((len(widths), len(lrs)), np.inf)
        for i, width in enumerate(widths):
            for j, eta in enumerate(lrs):
                run = train(model(par, width, ctx.seed + 1), mse, data, steps=steps, lr=eta)
                if not run.diverged and math.isfinite(run.loss[-1]):
                    losses[i, j] = run.loss[-1]
            axes[2].plot(lrs, np.where(np.isfinite(losses[i]), losses[i], np.nan), "o-" if par == "mup" else "s--",
                         ms=3, color=f"C{i}", label=f"{par} width {width}")
        best = np.argmin(losses, axis=1)
        numbers[par].update(lr_grid=lrs, final_loss=losses, best_lr={str(w): lrs[b] for w, b in zip(widths, best)})
        if par == "mup":
            checks.append(check_at_most("muP: optimal learning rate moves across widths (grid steps)",
                                        float(best.max() - best.min()), 1.0))
        numbers[par]["best_lr_index_spread"] = int(best.max() - best.min())
    axes[2].set(xscale="log", yscale="log", xlabel="learning rate", ylabel=f"training loss after {steps} steps",
                title="learning-rate sweep")
    axes[2].legend(fontsize=6)
    checks.insert(0, check_at_most("muP: width dependence of the sharpness trajectory", dependence["mup"],
                                   MUP_TOLERANCE))
    checks.insert(1, check_at_least("NTK: width dependence of the sharpness trajectory", dependence["ntk"],
                                    MUP_TOLERANCE))
    measured = (f"D_muP = {dependence['mup']:.3f}, D_NTK = {dependence['ntk']:.3f}; best lr index spread: "
                f"muP {numbers['mup']['best_lr_index_spread']}, NTK {numbers['ntk']['best_lr_index_spread']}")
    return Outcome(checks, fig, predicted=f"D_muP <= {MUP_TOLERANCE} < D_NTK; muP optimal lr transfers",
                   measured=measured, numbers=numbers)
