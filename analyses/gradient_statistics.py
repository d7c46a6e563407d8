"""Gradient statistics during training: coherent gradients (Chatterjee & Zielinski 2022), ultra-slow
diffusion of the weights (Hoffer, Hubara & Soudry 2017) and the noise scale that predicts the
critical batch size (McCandlish, Kaplan, Amodei et al. 2018)."""
from __future__ import annotations

import math

import numpy as np
import scipy.optimize
import scipy.stats
import torch
from torch import nn

from theorylab.claims import (Context, Outcome, check_at_least, check_at_most, check_between, check_undecided,
                              claim)
from theorylab.data import load_digits
from theorylab.gradients import coherence_monitor, distance_monitor, gradient_noise_scale, gradient_statistics
from theorylab.models import MLP
from theorylab.plotting import MEASURED, PREDICTED, new_figure
from theorylab.train import accuracy_monitor, train

MUCH_HIGHER = 2.0  # "much higher": real-label coherence at least twice the random-label one


@claim("chatterjee2022.coherent_gradients",
       title="Gradients are more coherent with real labels than with random labels",
       citation="Chatterjee & Zielinski 2022 (On the generalization mystery in deep learning), arXiv:2203.10036",
       statement="Early in training, the m-coherence of per-example gradients alpha_m = |sum g_i|^2 / sum |g_i|^2 "
                 "is much higher for real labels than for random labels; with real labels it falls as the "
                 "examples are fitted.",
       tolerance="'Much higher' is fixed in advance as a ratio of at least 2 between the mean coherence with real "
                 "and with random labels over the first 10% of training (several measurements, so one noisy point "
                 "cannot decide). 'Falls' is a Spearman rank correlation between step and real-label coherence of "
                 "at most -0.8 and a final value at most half the initial one. Coherence is exact over its fixed "
                 "sample of m examples (no estimator error); the finite m sets its scale, which is why real and "
                 "random labels use the same m and the same examples.")
def coherent_gradients(ctx: Context) -> Outcome:
    n = ctx.pick(512, 1258)
    m = ctx.pick(256, 1024)
    widths = ctx.pick([128], [512, 512])
    steps = ctx.pick(1000, 10000)
    every = ctx.pick(50, 250)
    split = load_digits(seed=ctx.seed).subsample(n, seed=ctx.seed)
    x, y_real = split.x_train.to(ctx.device), split.y_train.to(ctx.device)
    y_random = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(ctx.seed + 1)).to(ctx.device)
    ce = nn.CrossEntropyLoss()
    history = {}
    for name, y in (("real", y_real), ("random", y_random)):
        model = MLP(64, widths, 10, seed=ctx.seed).to(ctx.device)
        res = train(model, ce, (x, y), steps=steps, lr=0.05, optimizer="sgd", batch_size=64, seed=ctx.seed,
                    monitors=[coherence_monitor(ce, (x[:m], y[:m]), every=every),
                              accuracy_monitor((x, y), every=every)])
        history[name] = (res.monitor_steps["gradients.coherence"], res.monitors["gradients.coherence"],
                         res.monitors["accuracy"])
    t, real, acc_real = history["real"]
    _, random, acc_random = history["random"]
    early = t <= 0.1 * steps
    ratio = float(real[early].mean() / random[early].mean())
    rho = float(scipy.stats.spearmanr(t, real).statistic)
    checks = [check_at_least("early coherence ratio real / random", ratio, MUCH_HIGHER,
                             detail=f"mean over the {int(early.sum())} measurements at steps <= {int(0.1 * steps)}"),
              check_at_most("Spearman(step, real-label coherence)", rho, -0.8),
              check_at_most("real-label coherence at the end / at the start", float(real[-1] / real[0]), 0.5,
                            detail=f"train accuracy {acc_real[0]:.3f} -> {acc_real[-1]:.3f}")]
    fig, (ax_c, ax_a) = new_figure(ncols=2, width=4.0)
    ax_c.semilogy(t, real, "o-", ms=3, color=MEASURED, label="real labels")
    ax_c.semilogy(t, random, "s-", ms=3, color="C1", label="random labels")
    ax_c.semilogy(t[early], MUCH_HIGHER * random[early], "--", color=PREDICTED, label="2 x random (predicted floor)")
    ax_c.axhline(1.0, color="grey", ls=":", lw=1, label="orthogonal gradients")
    ax_c.set_xlabel("step")
    ax_c.set_ylabel(f"m-coherence (m = {m})")
    ax_c.legend()
    ax_a.plot(t, acc_real, color=MEASURED, label="real labels")
    ax_a.plot(t, acc_random, color="C1", label="random labels")
    ax_a.set_xlabel("step")
    ax_a.set_ylabel("train accuracy")
    ax_a.legend()
    return Outcome(checks, fig, predicted=f"early real/random coherence >= {MUCH_HIGHER}; real-label coherence falls",
                   measured=f"early ratio {ratio:.3g}; real coherence {real[0]:.3g} -> {real[-1]:.3g} "
                            f"(random {random[0]:.3g} -> {random[-1]:.3g})",
                   numbers={"steps": t, "coherence_real": real, "coherence_random": random, "accuracy_real": acc_real,
                            "accuracy_random": acc_random, "m": m})


# ---------------------------------------------------------------------------------------------
# Ultra-slow diffusion
# ---------------------------------------------------------------------------------------------
DECISIVE_AIC = 10.0  # Burnham & Anderson: an AIC difference above 10 means essentially no support for the other


def _log_grid(start: int, stop: int, points: int, multiple: int) -> np.ndarray:
    """About ``points`` log-spaced integers in [start, stop], rounded to multiples of ``multiple``."""
    grid = np.round(np.logspace(np.log10(start), np.log10(stop), points) / multiple) * multiple
    return np.unique(grid.astype(int))


@claim("hoffer2017.ultra_slow_diffusion",
       title="The weights diffuse ultra-slowly: distance from initialisation grows like log t",
       citation="Hoffer, Hubara & Soudry 2017, NeurIPS (Train longer, generalize better: closing the generalization "
                "gap in large batch training of neural networks)",
       statement="Under SGD with a constant learning rate, the distance of the weights from their initialisation "
                 "grows logarithmically, ||w_t - w_0|| ~ a + b log t (a random walk on a random potential), rather "
                 "than as a power of t.",
       tolerance="Both laws have two parameters and are fitted by least squares to the distance on about 40 "
                 "log-spaced steps from one epoch to the end (the first epoch is the ballistic start). The data "
                 "favour a law when its AIC is lower by at least 10 (Burnham & Anderson's 'essentially no support' "
                 "for the other); with a smaller difference the claim is undecided. Residuals along one run are "
                 "correlated, so the AIC difference overstates the evidence; the margin of 10 is kept for that.")
def ultra_slow_diffusion(ctx: Context) -> Outcome:
    widths = ctx.pick([128, 128], [512, 512, 512])
    steps = ctx.pick(4000, 100000)
    batch, every = 32, 5
    split = load_digits(seed=ctx.seed)
    x, y = split.x_train.to(ctx.device), split.y_train.to(ctx.device)
    model = MLP(64, widths, 10, seed=ctx.seed).to(ctx.device)
    res = train(model, nn.CrossEntropyLoss(), (x, y), steps=steps, lr=0.1, optimizer="sgd", batch_size=batch,
                seed=ctx.seed, monitors=[distance_monitor(model, every=every)])
    measured_at, distance = res.monitor_steps["distance_from_init"], res.monitors["distance_from_init"]
    epoch = math.ceil(len(y) / batch)
    t = _log_grid(epoch, steps, 40, every)
    d = distance[np.searchsorted(measured_at, t)]
    design = np.stack([np.log(t), np.ones(len(t))], axis=1)
    coef_log, *_ = np.linalg.lstsq(design, d, rcond=None)
    sse_log = float(np.sum((design @ coef_log - d) ** 2))
    start, *_ = np.linalg.lstsq(design, np.log(d), rcond=None)  # log-log line as the starting point
    (amp, power), _ = scipy.optimize.curve_fit(lambda s, a, p: a * s ** p, t.astype(float), d,
                                               p0=[math.exp(start[1]), start[0]], maxfev=20000)
    sse_pow = float(np.sum((amp * t ** power - d) ** 2))
    delta_aic = len(t) * math.log(sse_pow / sse_log)  # AIC(power) - AIC(log), equal parameter counts
    favoured = "log t" if delta_aic >= DECISIVE_AIC else "power law" if delta_aic <= -DECISIVE_AIC else "neither"
    if favoured == "neither":
        checks = [check_undecided("AIC(power law) - AIC(log t)", delta_aic, f">= {DECISIVE_AIC}",
                                  "the two laws fit about equally well")]
    else:
        checks = [check_at_least("AIC(power law) - AIC(log t)", delta_aic, DECISIVE_AIC,
                                 detail=f"SSE log {sse_log:.3g}, power {sse_pow:.3g}; fitted exponent {power:.3f}")]
    fig, (ax, ax_r) = new_figure(ncols=2, width=4.0)
    ax.semilogx(measured_at[1:], distance[1:], color=MEASURED, label="||w_t - w_0|| measured")
    ax.semilogx(t, design @ coef_log, "--", color=PREDICTED, label=f"{coef_log[1]:.2f} + {coef_log[0]:.2f} log t")
    ax.semilogx(t, amp * t ** power, ":", color="C2", label=f"{amp:.2f} t^{power:.3f}")
    ax.axvline(epoch, color="grey", ls=":", lw=1)
    ax.set_xlabel("step t")
    ax.legend()
    ax_r.semilogx(t, d - design @ coef_log, "o", ms=3, color=PREDICTED, label="residual of log t")
    ax_r.semilogx(t, d - amp * t ** power, "s", ms=3, color="C2", label="residual of power law")
    ax_r.axhline(0, color="grey", lw=1)
    ax_r.set_xlabel("step t")
    ax_r.legend()
    worst = float(np.max(np.abs(d - design @ coef_log)) / np.ptp(d))
    notes = (f"The check compares the two laws with each other; the largest residual of the log fit is {worst:.1%} of "
             "the range of distances covered, and the residual panel shows whether it is systematic.")
    return Outcome(checks, fig, predicted="||w_t - w_0|| ~ a + b log t (favoured over a power law)", notes=notes,
                   measured=f"data favour {favoured}: AIC(power) - AIC(log) = {delta_aic:.1f}, power-law exponent "
                            f"{power:.3f}",
                   numbers={"grid_steps": t, "distance": d, "log_fit": coef_log, "power_fit": [amp, power],
                            "sse_log": sse_log, "sse_power": sse_pow, "delta_aic": delta_aic, "favoured": favoured})


# ---------------------------------------------------------------------------------------------
# Noise scale and critical batch size
# ---------------------------------------------------------------------------------------------
def _steps_to_target(x: torch.Tensor, y: torch.Tensor, widths: list[int], batch: int, lr: float, target: float,
                     max_steps: int, seed: int) -> tuple[float, nn.Module]:
    """Plain SGD (batches drawn i.i.d.) until the full training loss is at most ``target``."""
    ce = nn.CrossEntropyLoss()
    model = MLP(x.shape[1], widths, 10, seed=seed).to(x.device)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for step in range(1, max_steps + 1):
        idx = torch.randint(len(y), (batch,), generator=g).to(x.device)
        opt.zero_grad(set_to_none=True)
        ce(model(x[idx]), y[idx]).backward()
        opt.step()
        with torch.no_grad():
            full = float(ce(model(x), y))
        if not math.isfinite(full):
            return math.inf, model
        if full <= target:
            return float(step), model
    return math.inf, model


@claim("mccandlish2018.critical_batch_size",
       title="The gradient noise scale predicts the critical batch size",
       citation="McCandlish, Kaplan, Amodei & OpenAI Dota Team 2018 (An empirical model of large-batch training), "
                "arXiv:1812.06162",
       statement="With the learning rate tuned for each batch size B, the steps S to reach a target loss follow "
                 "S = S_min (1 + B_crit / B): larger batches stop reducing S beyond B_crit, and B_crit is "
                 "predicted by the simple noise scale B_simple = tr(Sigma) / |G|^2 measured during training at "
                 "that loss.",
       tolerance="McCandlish et al. present B_simple as an order-of-magnitude predictor of B_crit (it equals the "
                 "true noise scale only if the Hessian is a multiple of the identity), so the "
                 "ratio B_simple / B_crit must lie in [0.1, 10]. S(B) is measured with a learning-rate grid of "
                 "factor 2, which quantises S by up to a factor 2; B_crit is the least-squares fit of log S. "
                 "B_simple is the unbiased per-example estimate over the whole training set (exact for the data, "
                 "no sampling error) at the moment the smallest-batch run reaches the target.")
def critical_batch_size(ctx: Context) -> Outcome:
    widths = ctx.pick([64], [256, 256])
    batch_sizes = np.array(ctx.pick([4, 16, 64, 256, 1024], [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]))
    lrs = ctx.pick([0.1, 0.2, 0.4, 0.8, 1.6, 3.2], [0.05 * 2 ** (k / 2) for k in range(14)])
    target, max_steps = 0.1, ctx.pick(1500, 20000)
    split = load_digits(seed=ctx.seed)
    x, y = split.x_train.to(ctx.device), split.y_train.to(ctx.device)
    best_steps, best_lr, models = [], [], []
    for b in batch_sizes:
        results = []
        for lr in lrs:  # ascending; stop once a larger step size no longer helps
            s, model = _steps_to_target(x, y, widths, int(b), lr, target, max_steps, ctx.seed)
            results.append((s, lr, model))
            if len(results) >= 2 and s > results[-2][0]:
                break
        s, lr, model = min(results, key=lambda r: r[0])
        best_steps.append(s), best_lr.append(lr), models.append(model)
    steps = np.array(best_steps)
    reached = np.isfinite(steps)
    numbers = {"batch_sizes": batch_sizes, "steps_to_target": steps, "best_lr": best_lr, "target_loss": target}
    checks = []
    b_crit = s_min = math.nan
    if reached.sum() >= 3:
        fit = lambda b, s0, bc: np.log(s0) + np.log1p(bc / b)  # noqa: E731
        (s_min, b_crit), _ = scipy.optimize.curve_fit(fit, batch_sizes[reached].astype(float),
                                                      np.log(steps[reached]), p0=[steps[reached].min(), 100.0],
                                                      bounds=([1e-9, 0], [np.inf, np.inf]))
    ce = nn.CrossEntropyLoss()
    reference = models[int(np.argmax(reached))]  # the smallest batch size that reached the target
    b_simple = gradient_statistics(reference, ce, (x, y)).noise_scale
    two_batch = gradient_noise_scale(reference, ce, (x, y), small_batch=8, big_batch=64, num_pairs=50, seed=ctx.seed)
    numbers.update(b_crit=b_crit, s_min=s_min, b_simple=b_simple, b_simple_two_batch=two_batch.b_simple,
                   b_simple_two_batch_stderr=two_batch.b_simple_stderr)
    if not (reached.sum() >= 3 and b_crit > 0):
        checks.append(check_undecided("B_simple / B_crit", None, "in [0.1, 10]",
                                      f"only {int(reached.sum())} batch sizes reached loss {target}, or B_crit <= 0"))
    else:
        checks.append(check_between("B_simple / B_crit", b_simple / b_crit, 0.1, 10.0,
                                    detail=f"B_simple {b_simple:.4g} (two-batch b=8, B=64: {two_batch.b_simple:.4g} "
                                           f"+- {two_batch.b_simple_stderr:.2g}), B_crit {b_crit:.4g}"))
    fig, ax = new_figure(width=4.6)
    ax.loglog(batch_sizes[reached], steps[reached], "o", color=MEASURED, label=f"steps to loss {target} (best lr)")
    if math.isfinite(b_crit):
        grid = np.logspace(np.log10(batch_sizes.min()), np.log10(batch_sizes.max()), 100)
        ax.loglog(grid, s_min * (1 + b_crit / grid), "-", color=MEASURED, alpha=0.5,
                  label=f"fit S_min (1 + B_crit/B), B_crit = {b_crit:.3g}")
        ax.loglog(grid, s_min * (1 + b_simple / grid), "--", color=PREDICTED,
                  label=f"prediction with B_crit = B_simple = {b_simple:.3g}")
    ax.axvline(b_simple, color=PREDICTED, ls=":", lw=1)
    ax.set_xlabel("batch size B")
    ax.set_ylabel("steps S")
    ax.legend()
    return Outcome(checks, fig, predicted="B_crit ~ B_simple (within a factor 10)",
                   measured=f"B_crit {b_crit:.4g}, B_simple {b_simple:.4g}", numbers=numbers)
