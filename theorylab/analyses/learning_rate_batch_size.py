"""The largest stable learning rate as a function of the batch size (Granziol, Zohren & Roberts 2022,
"Learning rates as a function of batch size: a random matrix theory approach to neural network training",
JMLR 23(173)).

While the sampling noise of the batch Hessian dominates, the largest stable learning rate grows linearly
in the batch size B for SGD and like sqrt(B) for Adam; at full batch it meets the curvature ceiling
2 / lambda_max(H) of gradient descent (:mod:`theorylab.theory.batch_size`, :mod:`theorylab.theory.stability`).
The limits are found by divergence bisection (:func:`theorylab.stability.stability_limit`) on realisable
least squares with isotropic Gaussian inputs, where the mean-square limit of SGD is known in closed form.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from theorylab.claims import (Context, Judgement, Mutation, claim, mean_and_stderr, precondition, tolerance,
                              undecided)
from theorylab.claims.figures import band, legend_outside, log_axis, measured_shades, prediction
from theorylab.data import teacher_student
from theorylab.plotting import new_figure
from theorylab.rates import line_fit
from theorylab.sharpness import lambda_max
from theorylab.stability import stability_limit
from theorylab.theory import gd_sharpness_threshold, max_lr_batch_exponent, sgd_mean_square_lr_limit

RTOL = 0.05           # stopping rule of the bisection: bracket high / low <= 1.05
ADAM_WINDOW = 0.2     # declared: less than half the distance between the two laws (1/2 and 1)
BETAS = (0.9, 0.999)  # Adam's defaults
TAIL = 0.1            # divergence is judged on the loss averaged over the last 10% of the steps


def _online_diverges(dim: int, *, batch: int, optimizer: str, samples: int, noiseless: bool):
    """``diverges(lr, seed)`` of one optimiser on realisable least squares with fresh inputs ``x ~ N(0, I_d)``
    every step (loss ``(x.w - y)^2``, population loss ``||w - w_*||^2``) from ``w = 0``, for ``samples / batch``
    steps: diverged when the population loss averaged over the last 10% of the steps is above the initial
    one.  ``noiseless``: every step uses the population gradient ``2 (w - w_*)`` (the control)."""
    steps = max(64, samples // batch)
    first, second = 1 - BETAS[0] ** np.arange(1, steps + 1), 1 - BETAS[1] ** np.arange(1, steps + 1)

    def diverges(lr: float, seed: int) -> bool:
        rng = np.random.default_rng(seed)
        target = rng.standard_normal(dim)
        target /= np.linalg.norm(target)
        w, m, v = np.zeros(dim), np.zeros(dim), np.zeros(dim)
        tail = []
        for t in range(steps):
            if noiseless:
                grad = 2.0 * (w - target)
            else:
                x = rng.standard_normal((batch, dim))
                grad = (2.0 / batch) * (x.T @ (x @ (w - target)))
            if optimizer == "sgd":
                w = w - lr * grad
            else:  # Adam (Kingma & Ba 2015) with its default betas and epsilon
                m = BETAS[0] * m + (1 - BETAS[0]) * grad
                v = BETAS[1] * v + (1 - BETAS[1]) * grad * grad
                w = w - lr * (m / first[t]) / (np.sqrt(v / second[t]) + 1e-8)
            if t >= (1 - TAIL) * steps:
                tail.append(float(np.sum((w - target) ** 2)))
                if not math.isfinite(tail[-1]):
                    return True
        return float(np.mean(tail)) > 1.0

    return diverges


def _full_batch_diverges(x: np.ndarray, y: np.ndarray, *, steps: int):
    """``diverges(lr, seed)`` of full-batch GD on ``mean (x.w - y)^2`` over a fixed sample (seed unused)."""
    initial = float(np.mean(y ** 2))

    def diverges(lr: float, seed: int) -> bool:
        w = np.zeros(x.shape[1])
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(steps):
                w = w - lr * (2.0 / len(y)) * (x.T @ (x @ w - y))
            final = float(np.mean((x @ w - y) ** 2))
        return not math.isfinite(final) or final > initial

    return diverges


def measure_lr_batch(ctx: Context) -> dict:
    dim, n = ctx.pick(64, 512), ctx.pick(256, 4096)
    batches = ctx.pick([1, 2, 4, 8, 16], [1, 2, 4, 8, 16, 32, 64])
    samples = ctx.pick(16, 32) * dim  # every batch size sees the same number of samples
    seeds = ctx.seeds(4, 8)
    search = dict(lr_low=1e-3, lr_high=4.0, rtol=RTOL, expand=8.0)
    limits = {}
    with np.errstate(over="ignore", invalid="ignore"):
        for optimizer in ("sgd", "adam"):
            limits[optimizer] = np.array([[stability_limit(_online_diverges(dim, batch=b, optimizer=optimizer,
                                                                            samples=samples, noiseless=ctx.control),
                                                           seeds=[seed], **search).limits[0] for b in batches]
                                          for seed in seeds])
    full, ceiling = np.zeros(len(seeds)), np.zeros(len(seeds))
    for i, seed in enumerate(seeds):  # the ceiling: full-batch GD on a fixed sample against 2 / lambda_max
        split = teacher_student(num_train=n, num_test=1, dim=dim, seed=seed, dtype=torch.float64)
        x, y = split.x_train, split.y_train[:, 0]
        full[i] = stability_limit(_full_batch_diverges(x.numpy(), y.numpy(), steps=ctx.pick(200, 1000)),
                                  seeds=[seed], **search).limits[0]
        linear = nn.Linear(dim, 1, bias=False).double()
        ceiling[i] = lambda_max(linear, lambda out, t: ((out[:, 0] - t) ** 2).mean(), (x, y), tol=1e-8,
                                seed=seed).value
    return {"dim": dim, "n": n, "samples": samples, "seeds": seeds, "batch_sizes": batches, "sgd": limits["sgd"],
            "adam": limits["adam"], "full_batch": full, "lambda_max": ceiling, "noiseless": ctx.control}


def _exponents(batches: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Per seed, the least-squares slope of log(limit) against log(B)."""
    return np.array([line_fit(np.log(batches), np.log(row))[1] for row in limits])


def judge_lr_batch(m: dict, p) -> Judgement:
    b = np.asarray(m["batch_sizes"], dtype=float)
    sgd, adam, full = np.asarray(m["sgd"]), np.asarray(m["adam"]), np.asarray(m["full_batch"])
    found = bool(np.all(np.isfinite(sgd)) and np.all(np.isfinite(full)))
    checks = [precondition("every SGD and full-batch search bracketed a limit in [1e-3 / 8^4, 4 x 8^4]", found,
                           requirement="a finite limit for every seed and batch size")]
    resolution = math.log(1 + RTOL) / math.log(b.max() / b.min())  # the bisection's bracket, in slope
    rows: dict = {"seed": list(m["seeds"])}
    measured = []
    if found:
        # the closed-form limit's slope is 1 as B -> 0; on the measured range it is lower by finite_size
        finite_size = 1.0 - line_fit(np.log(b), np.log(p.mean_square_limit(b, int(m["dim"]))))[1]
        slope, se = mean_and_stderr(_exponents(b, sgd))
        ratio, ratio_se = mean_and_stderr(np.log(full / p.ceiling(np.asarray(m["lambda_max"]))))
        checks += [
            tolerance("SGD: exponent of eta_max in B, mean over seeds", slope, p.exponent("sgd"),
                      finite_size + 2 * se + resolution,
                      source=f"finite size: the closed-form mean-square limit B/(B+d+1) has slope {1 - finite_size:.3f} "
                             f"on this range; plus 2 standard errors over seeds and the bisection's resolution "
                             f"{resolution:.3f}"),
            tolerance("full batch: log(eta_max / (2 / lambda_max)), mean over seeds", ratio, 0.0,
                      math.log(1 + RTOL) + 2 * ratio_se,
                      source="the bisection's stopping rule (bracket within 5%) plus 2 standard errors over seeds"),
        ]
        rows.update({"SGD exponent": _exponents(b, sgd).tolist(), "full batch eta_max": full.tolist(),
                     "2 / lambda_max": p.ceiling(np.asarray(m["lambda_max"])).tolist()})
        measured += [f"SGD B^{slope:.3f}", f"full batch {math.exp(ratio):.3f} x 2/lambda_max"]
    else:
        for name in ("SGD: exponent of eta_max in B", "full batch: log(eta_max / (2 / lambda_max))"):
            checks.append(undecided(name, kind="tolerance", predicted="see statement", why="a limit was not found"))
    name = "Adam: exponent of eta_max in B, mean over seeds"
    if np.all(np.isfinite(adam)):
        slope, se = mean_and_stderr(_exponents(b, adam))
        checks.append(tolerance(name, slope, p.exponent("adam"), ADAM_WINDOW + 2 * se + resolution,
                                source="declared in advance: 0.2, less than half the distance to the linear law, plus "
                                       "2 standard errors over seeds and the bisection's resolution"))
        rows["Adam exponent"] = _exponents(b, adam).tolist()
        measured.append(f"Adam B^{slope:.3f}")
    else:
        checks.append(undecided(name, kind="tolerance", predicted="1/2", why="an Adam search found no limit"))
        measured.append("Adam: no limit found for some B")
    return Judgement(checks, predicted="eta_max ~ B^1 (SGD) and B^0.5 (Adam) at small B; 2/lambda_max at full batch",
                     measured="; ".join(measured), per_seed=rows,
                     rule="each seed draws its own target and input stream; the limit of each (optimiser, B) is "
                          "bisected to 5%; exponents are fitted per seed and averaged with their standard error.")


def figure_lr_batch(m: dict, p):
    b, n = np.asarray(m["batch_sizes"], dtype=float), float(m["n"])
    fig, ax = new_figure(width=5.6, height=3.6)
    dark, light = measured_shades(2)[1], measured_shades(2)[0]
    band(ax, b, m["sgd"], color=dark, label="SGD, online (mean ± 2 s.e.)")
    band(ax, b, m["adam"], color=light, marker="s", label="Adam, online (mean ± 2 s.e.)")
    band(ax, [n], np.asarray(m["full_batch"])[:, None], color=dark, marker="D", errorbars=True,
         label=f"GD, full batch of a fixed sample (n = {int(n)})")
    grid = np.geomspace(b.min(), n, 80)
    sgd0, adam0 = np.exp(np.mean(np.log(m["sgd"][:, 0]))), np.exp(np.mean(np.log(m["adam"][:, 0])))
    small = grid <= b.max()
    prediction(ax, grid[small], sgd0 * (grid[small] / b[0]) ** p.exponent("sgd"), label=r"$\propto B$ (SGD, prediction)")
    prediction(ax, grid[small], adam0 * (grid[small] / b[0]) ** p.exponent("adam"), ls=":",
               label=r"$\propto \sqrt{B}$ (Adam, prediction)")
    prediction(ax, grid, p.mean_square_limit(grid, int(m["dim"])), ls="-.", lw=1,
               label=r"$B/(B+d+1)$ (SGD mean-square limit, online)")
    ceiling = float(np.mean(p.ceiling(np.asarray(m["lambda_max"]))))
    prediction(ax, [n / 2, 2 * n], [ceiling, ceiling], ls="-", label=r"$2/\lambda_{\max}$ (full-batch ceiling)")
    ax.set(xlabel="batch size $B$", ylabel=r"largest stable $\eta$",
           title="least squares" + (" (control: no gradient noise)" if m.get("noiseless") else ""))
    log_axis(ax, "x", ticks=[1, 4, 16, 64, n])
    log_axis(ax, "y")
    legend_outside(ax, ncol=2)
    return fig


claim("granziol2022.lr_batch_scaling",
      title="The largest stable learning rate grows like B for SGD and like sqrt(B) for Adam, up to 2/lambda_max",
      citation="Granziol, Zohren & Roberts 2022, JMLR 23(173) (Learning rates as a function of batch size: a random "
               "matrix theory approach to neural network training)",
      statement="Below the curvature ceiling, the largest stable learning rate grows linearly in the batch size for "
                "SGD and like its square root for adaptive methods (Adam); at full batch it is the curvature ceiling "
                "2/lambda_max(H) of gradient descent.",
      tolerance="Limits by divergence bisection, bracket to 5%, 4 seeds (each its own target and input stream): "
                "online least squares with fresh N(0, I_64) inputs, every batch size seeing 16 x 64 samples, diverged "
                "when the population loss over the last 10% of the steps is above the initial one. SGD exponent: 1 "
                "within the finite-size deviation of the "
                "closed-form mean-square limit B/(B+d+1) on the same batch sizes, plus 2 standard errors and the "
                "bisection's resolution. Adam exponent: 1/2 within 0.2 (declared: less than half the distance to the "
                "linear law) plus 2 standard errors and the resolution. Full batch (GD on a fixed sample of 256): "
                "2/lambda_max (Lanczos to 1e-8) within the 5% bracket plus 2 standard errors.",
      control="no gradient noise: every step uses the full-data gradient whatever B, so the limit cannot grow with B",
      predictions={"exponent": max_lr_batch_exponent, "ceiling": gd_sharpness_threshold,
                   "mean_square_limit": sgd_mean_square_lr_limit},
      measure=measure_lr_batch, judge=judge_lr_batch, figure=figure_lr_batch,
      mutations=[
          Mutation("SGD scales like sqrt(B)", predictions={"exponent": lambda o: 0.5}),
          Mutation("Adam scales like B", predictions={"exponent": lambda o: 1.0}),
          Mutation("ceiling lambda_max instead of 2/lambda_max", predictions={"ceiling": lambda lam: 1.0 / lam}),
          Mutation("an SGD search found no limit", numbers=lambda m: {
              **m, "sgd": np.where(np.arange(np.asarray(m["sgd"]).size).reshape(np.shape(m["sgd"])) == 0, np.nan,
                                   np.asarray(m["sgd"]))}),
      ])
