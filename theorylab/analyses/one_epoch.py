"""Single-pass training (Komatsuzaki 2019, "One epoch is all you need", arXiv:1906.06669).

Trained for one epoch on fresh data, a model does not overfit: its test loss keeps falling, along a power law
in the number of iterations, and regularisation only slows it down; the same model trained for many epochs on a
small pool of data overfits.  Online SGD on linear regression whose features have a power-law spectrum (the
feature covariance ``lambda_k = k^-a`` and target ``lambda_k w_k^2 = k^-b``, the setting in which learning
curves are power laws), with label noise; the test loss is computed exactly from the covariance.
"""
from __future__ import annotations

import math

import numpy as np

from theorylab.claims import Context, Judgement, Mutation, bound, claim, effect, paired_difference, precondition
from theorylab.claims.figures import band, legend_outside, log_axis, measured_shades, prediction
from theorylab.plotting import new_figure
from theorylab.rates import fit_rate

DIM, SPECTRUM, TARGET = 200, 1.5, 2.0
NOISE = 0.5
LR = 0.05            # times 1 / tr(covariance)
STREAMS = 8          # independent runs averaged into one learning curve
POOL = 50            # the control's pool, reused for many epochs
DECAY = 0.002        # the weight decay of the regularised run
OVERFIT = 0.02       # declared: no overfitting means the final loss within 2% of the curve's minimum
SLOWER = math.log(1.05)  # declared: the smallest slow-down that counts, 5% (in log)


def online_least_squares(seed: int, *, steps: int, pool: int | None, weight_decay: float) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """Mean test loss over STREAMS runs of SGD (batch 1) at log-spaced steps: fresh samples every step, or
    samples drawn from a fixed ``pool`` (many epochs).  Test loss ``(w - w*)^T Sigma (w - w*) + noise^2``."""
    rng = np.random.default_rng(seed)
    k = np.arange(1, DIM + 1)
    lam = k ** -SPECTRUM
    target = rng.choice([-1.0, 1.0], DIM) * np.sqrt(k ** -TARGET / lam)
    n = pool or steps
    x = rng.standard_normal((STREAMS, n, DIM)) * np.sqrt(lam)
    y = x @ target + NOISE * rng.standard_normal((STREAMS, n))
    order = rng.integers(n, size=(STREAMS, steps)) if pool else np.tile(np.arange(steps), (STREAMS, 1))
    marks = np.unique(np.geomspace(1, steps, 40).astype(int))
    lr, rows, w, losses = LR / lam.sum(), np.arange(STREAMS), np.zeros((STREAMS, DIM)), []
    for t in range(steps + 1):
        if t in marks:
            err = w - target
            losses.append(float(np.mean(np.einsum("sd,sd->s", err * lam, err))) + NOISE ** 2)
        if t == steps:
            break
        xi, yi = x[rows, order[:, t]], y[rows, order[:, t]]
        w = w - lr * (2.0 * (np.einsum("sd,sd->s", xi, w) - yi)[:, None] * xi + 2.0 * weight_decay * w)
    return marks, np.array(losses)


def measure_one_epoch(ctx: Context) -> dict:
    seeds, steps = ctx.seeds(3, 5), ctx.pick(6000, 40_000)
    pool = POOL if ctx.control else None  # control: many epochs over a pool of 50 samples
    curves, regularised = [], []
    for seed in seeds:
        marks, plain = online_least_squares(seed, steps=steps, pool=pool, weight_decay=0.0)
        curves.append(plain)
        regularised.append(online_least_squares(seed, steps=steps, pool=pool, weight_decay=DECAY)[1])
    return {"seeds": seeds, "steps": marks, "noise": NOISE, "pool": pool, "test_loss": np.array(curves),
            "regularised": np.array(regularised)}


def _tail_fit(steps: np.ndarray, loss: np.ndarray, noise: float):
    """Power law against exponential for the excess test loss ``L - noise^2`` over the last 40 x of steps."""
    keep = steps >= steps.max() / 40
    return fit_rate(steps[keep].astype(float), loss[keep] - noise ** 2)


def judge_one_epoch(m: dict, p) -> Judgement:
    steps, curves = np.asarray(m["steps"]), np.asarray(m["test_loss"])
    rise = [float(c[-1] / c.min() - 1) for c in curves]
    fits = [_tail_fit(steps, c, m["noise"]) for c in curves]
    favour = [-f.log_likelihood_ratio if p.law() == "polynomial" else f.log_likelihood_ratio for f in fits]
    slower, slower_se = paired_difference(np.log(np.asarray(m["regularised"])[:, -1]), np.log(curves[:, -1]))
    checks = [
        precondition("the loss falls: the final test loss is below half the initial one, every seed",
                     bool(np.all(curves[:, -1] < 0.5 * curves[:, 0])), requirement="L(T) < L(0) / 2"),
        bound("no overfitting: final test loss / its minimum along the run - 1, worst seed", max(rise),
              upper=OVERFIT, detail="declared in advance: within 2% of the minimum"),
        bound("learning curve: log-likelihood ratio in favour of the predicted law (excess over the noise), worst seed",
              min(favour), lower=math.log(100.0),
              detail="theorylab.rates.fit_rate over the last 40x of the steps: the predicted law decisively (x100)"),
        effect(f"weight decay {DECAY}: log(final test loss with / without), paired over seeds", slower, slower_se,
               smallest=SLOWER, source="declared in advance: a slow-down below 5% would refute it"),
    ]
    return Judgement(checks, predicted="single pass: no overfitting, a power-law learning curve, slower with "
                                       "regularisation",
                     measured=f"final / minimum - 1 <= {max(rise):.3g}; power-law exponent "
                              f"{np.mean([f.exponent for f in fits]):.3f}, log-likelihood ratio >= {min(favour):.1f}; "
                              f"weight decay x{math.exp(slower):.3f}",
                     per_seed={"seed": list(m["seeds"]), "final / min - 1": rise,
                               "exponent": [f.exponent for f in fits], "log-likelihood ratio": favour,
                               "final loss": curves[:, -1].tolist(),
                               "final loss, weight decay": np.asarray(m["regularised"])[:, -1].tolist()},
                     rule="each seed draws its own target and sample streams (8 averaged); the bounds hold in every "
                          "seed; the slow-down is paired over seeds.")


def figure_one_epoch(m: dict, p):
    fig, ax = new_figure(width=4.4, height=3.4)
    steps, noise = np.asarray(m["steps"], dtype=float), float(m["noise"])
    dark, light = measured_shades(2)[1], measured_shades(2)[0]
    name = f"{m['pool']} samples, many epochs" if m.get("pool") else "one epoch (fresh samples)"
    band(ax, steps, np.asarray(m["test_loss"]) - noise ** 2, color=dark, label=f"{name} (mean ± 2 s.e.)")
    band(ax, steps, np.asarray(m["regularised"]) - noise ** 2, color=light, marker="s",
         label=f"{name}, weight decay {DECAY:g}")
    fit = _tail_fit(steps, np.asarray(m["test_loss"]).mean(axis=0), noise)
    tail = steps[steps >= steps.max() / 40]
    prediction(ax, tail, fit.predict(tail, p.law()), label=rf"{p.law()} law, fitted ($t^{{-{fit.exponent:.2f}}}$)")
    log_axis(ax, "x")
    log_axis(ax, "y")
    ax.set(xlabel="SGD step", ylabel="test loss minus the noise", title="online least squares, power-law spectrum")
    legend_outside(ax, ncol=1)
    return fig


claim("komatsuzaki2019.one_epoch",
      title="One epoch is all you need: single-pass training does not overfit and follows a power law",
      citation="Komatsuzaki 2019 (One epoch is all you need), arXiv:1906.06669",
      statement="Trained in a single pass over fresh data, a model does not overfit: its test loss falls along a "
                "power law in the number of iterations, and regularisation only slows it down.",
      tolerance="Online SGD (batch 1, step 0.05 / tr Sigma, 6,000 steps) on linear regression in d = 200 with feature "
                "spectrum k^-1.5, target power k^-2 and label noise 0.5, 8 streams averaged per seed, 3 seeds; exact "
                "test loss. Precondition: the loss halves. No overfitting: the final test loss within 2% of its "
                "minimum along the run (declared). Power law: over the last 40x of the steps, the excess over the "
                "noise must fit a power law decisively better than an exponential (log-likelihood ratio > log 100, "
                "theorylab.rates.fit_rate), every seed. Regularisation: weight decay 0.002 raises the final loss, an "
                "effect paired over seeds refuted below 5% (declared).",
      control="many epochs over a pool of 50 samples instead of fresh ones: the model fits the pool's noise",
      predictions={"law": lambda: "polynomial"},
      measure=measure_one_epoch, judge=judge_one_epoch, figure=figure_one_epoch,
      mutations=[
          Mutation("predicted law exponential", predictions={"law": lambda: "exponential"}),
          Mutation("test loss rising 10% at the end", numbers=lambda m: {
              **m, "test_loss": np.concatenate([np.asarray(m["test_loss"])[:, :-1],
                                                1.1 * np.asarray(m["test_loss"]).min(axis=1, keepdims=True)], axis=1)}),
          Mutation("weight decay changes nothing", numbers=lambda m: {**m, "regularised": m["test_loss"]}),
          Mutation("the loss did not fall", numbers=lambda m: {
              **m, "test_loss": np.repeat(np.asarray(m["test_loss"])[:, :1], len(m["steps"]), axis=1)}),
      ])
