"""Low-rank recovery with gross errors and with inexact solvers: the sub-gradient method on the l1 loss (Ma &
Fattahi 2023) and robust alternating minimisation for matrix completion (Gu, Song, Yin & Zhang 2023).  The
algorithms are in :mod:`theorylab.matrix_recovery`.
"""
from __future__ import annotations

import math

import numpy as np

from theorylab.claims import Context, Judgement, Mutation, bound, claim, precondition
from theorylab.claims.figures import legend_outside, log_axis, measured_shades, prediction, prediction_level
from theorylab.matrix_recovery import alternating_minimization, subgradient_recovery
from theorylab.plotting import new_figure
from theorylab.rates import fit_rate

# ---------------------------------------------------------------------------------------------
# 1. Sub-gradient method for robust matrix recovery (Ma & Fattahi 2023)
# ---------------------------------------------------------------------------------------------
RANK, OVER = 2, 5          # true rank and the over-parameterised width
OUTLIERS = 0.2             # fraction of measurements replaced by gross errors
RECOVERED = 1e-2           # declared: recovery means a relative error below 1%
CORRUPTED = 0.1            # the regime: least squares is off by at least 10%


def _sensing_problem(seed: int, d: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric Gaussian sensing of a rank-2 PSD ``X_*`` (unit spectral norm) with 20% gross outliers."""
    rng = np.random.default_rng(seed)
    factor = rng.standard_normal((d, RANK))
    target = factor @ factor.T
    target /= np.linalg.norm(target, 2)
    sensing = rng.standard_normal((m, d, d))
    sensing = (sensing + sensing.transpose(0, 2, 1)) / 2
    y = np.einsum("mij,ij->m", sensing, target)
    corrupted = rng.random(m) < OUTLIERS
    y[corrupted] += 10.0 * rng.standard_normal(int(corrupted.sum()))
    return sensing, y, target


def measure_robust_recovery(ctx: Context) -> dict:
    seeds = ctx.seeds(3, 5)
    d, m, steps = ctx.pick(15, 40), ctx.pick(400, 2400), ctx.pick(1000, 4000)
    loss = "l2" if ctx.control else "l1"  # control: least squares, which the outliers corrupt
    common = dict(init_scale=1e-3, lr=0.2, decay=ctx.pick(0.993, 0.998), steps=steps)
    runs = []
    for seed in seeds:
        sensing, y, target = _sensing_problem(seed, d, m)
        runs.append({"exact rank": subgradient_recovery(sensing, y, target, rank=RANK, loss=loss, seed=seed, **common),
                     "over-parameterised": subgradient_recovery(sensing, y, target, rank=OVER, loss=loss, seed=seed,
                                                                **common),
                     "least squares": subgradient_recovery(sensing, y, target, rank=OVER, loss="l2", seed=seed,
                                                           **common)})
    return {"seeds": seeds, "d": d, "m": m, "loss": loss, "runs": runs}


def judge_robust_recovery(m: dict, p) -> Judgement:
    final = {k: np.array([r[k][-1] for r in m["runs"]]) for k in ("exact rank", "over-parameterised", "least squares")}
    checks = [precondition("the outliers are gross: least squares ends at least 10% off, every seed",
                           bool(np.all(final["least squares"] >= CORRUPTED)), requirement="relative error >= 0.1",
                           measured=float(final["least squares"].min()))]
    for name, k in (("exact rank", RANK), ("over-parameterised", OVER)):
        checks.append(bound(f"{name} (k = {k}): final relative error, worst seed", float(final[name].max()),
                            upper=RECOVERED, detail="declared in advance: recovery means below 1%"))
    return Judgement(checks, predicted="the sub-gradient method recovers X_* (error < 1%) for k = r and k > r despite "
                                       "20% gross outliers",
                     measured=f"{m['loss']} loss: final error k = {RANK}: {final['exact rank'].max():.2g}, "
                              f"k = {OVER}: {final['over-parameterised'].max():.2g} (worst seed); least squares "
                              f"{final['least squares'].min():.2g} (best seed)",
                     per_seed={"seed": list(m["seeds"]), **{k: v.tolist() for k, v in final.items()}},
                     rule="each seed draws its own target, sensing matrices and outliers; every seed must recover.")


def figure_robust_recovery(m: dict, p):
    fig, ax = new_figure(width=4.4, height=3.3)
    names = ("exact rank", "over-parameterised", "least squares")
    for name, colour, style in zip(names, measured_shades(3), ("-", "--", ":")):
        for i, run in enumerate(m["runs"]):
            ax.plot(np.arange(1, len(run[name]) + 1), run[name], color=colour, ls=style, lw=1,
                    label=name + (f" ({m['loss']})" if name != "least squares" else " (l2)") if i == 0 else None)
    prediction_level(ax, y=RECOVERED, label="recovered (< 1%)")
    log_axis(ax, "y")
    ax.set(xlabel="iteration", ylabel=r"$\|UU^\top - X_*\|_F / \|X_*\|_F$",
           title=f"sensing with {OUTLIERS:.0%} gross outliers (d = {m['d']}, m = {m['m']})")
    legend_outside(ax, ncol=2)
    return fig


claim("ma2023.robust_subgradient_recovery",
      title="The sub-gradient method on the l1 loss recovers a low-rank matrix despite gross outliers, also over-"
            "parameterised",
      citation="Ma & Fattahi 2023, JMLR 24(96) (Global convergence of sub-gradient method for robust matrix recovery: "
               "small initialization, noisy measurements, and over-parameterization)",
      statement="From a small initialisation, the sub-gradient method with geometrically decaying steps on the l1 loss "
                "of symmetric matrix sensing converges to the ground truth whether the factor width equals the rank or "
                "exceeds it, even when a constant fraction of the measurements carry gross outliers.",
      tolerance="d = 15, rank 2 (unit spectral norm), 400 Gaussian symmetric measurements of which 20% carry N(0, 10^2) "
                "errors; U_0 = 1e-3 G / sqrt(d); steps 0.2 x 0.993^t for 1,000 iterations; 3 seeds. Precondition: the "
                "outliers are gross (least squares from the same start ends >= 10% off in every seed). Recovery: the "
                "final relative error below 1% in every seed, for k = 2 and k = 5 (declared in advance). The paper's "
                "finer statements (the final error against the initialisation scale, noisy inliers) are not tested.",
      control="least squares (the l2 loss) in place of the l1 loss: the outliers corrupt it",
      predictions={},
      measure=measure_robust_recovery, judge=judge_robust_recovery, figure=figure_robust_recovery,
      mutations=[
          Mutation("exact rank ends 5% off", numbers=lambda m: {**m, "runs": [
              {**r, "exact rank": np.asarray(r["exact rank"]) * 0 + 0.05} for r in m["runs"]]}),
          Mutation("over-parameterised ends 5% off", numbers=lambda m: {**m, "runs": [
              {**r, "over-parameterised": np.asarray(r["over-parameterised"]) * 0 + 0.05} for r in m["runs"]]}),
          Mutation("harmless outliers (least squares recovers)", numbers=lambda m: {**m, "runs": [
              {**r, "least squares": np.asarray(r["exact rank"])} for r in m["runs"]]}),
      ])


# ---------------------------------------------------------------------------------------------
# 2. Robust alternating minimisation for matrix completion (Gu, Song, Yin & Zhang 2023)
# ---------------------------------------------------------------------------------------------
COMPLETION_RANK = 4
OBSERVED = 0.35
DECISIVE = math.log(100.0)   # the exponential law must make the errors 100 times likelier than a power law
TAIL = 4                     # iterations left out of the rate fit (the transient)


def measure_alternating(ctx: Context) -> dict:
    seeds, n, iterations = ctx.seeds(3, 5), ctx.pick(60, 400), ctx.pick(40, 60)
    runs = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        target = rng.standard_normal((n, COMPLETION_RANK)) @ rng.standard_normal((COMPLETION_RANK, n))
        if ctx.control:  # control: a full-rank perturbation, so no rank-4 factorisation completes the matrix
            target = target + 0.3 * rng.standard_normal((n, n))
        mask = rng.random((n, n)) < OBSERVED
        runs.append({"exact": alternating_minimization(target, mask, rank=COMPLETION_RANK, iterations=iterations,
                                                       seed=seed),
                     "approximate": alternating_minimization(target, mask, rank=COMPLETION_RANK,
                                                             iterations=iterations, solver_steps=1, seed=seed)})
    return {"seeds": seeds, "n": n, "rank": COMPLETION_RANK, "observed": OBSERVED, "runs": runs,
            "full_rank": ctx.control}


def _fit(errors: np.ndarray):
    """The rate fit over the iterations after the transient and above the round-off floor."""
    errors = np.asarray(errors)
    t = np.arange(1, len(errors) + 1)
    keep = (t > TAIL) & (errors > 1e-12)
    return fit_rate(t[keep], errors[keep])


def judge_alternating(m: dict, p) -> Judgement:
    fits = [_fit(r["approximate"]) for r in m["runs"]]
    sign = 1.0 if p.law() == "exponential" else -1.0  # log-likelihood ratios are positive for the exponential law
    favour = [sign * f.log_likelihood_ratio for f in fits]
    final = [float(np.asarray(r["approximate"])[-1]) for r in m["runs"]]
    checks = [
        bound("approximate updates: log-likelihood ratio in favour of the predicted law, worst seed", min(favour),
              lower=DECISIVE, detail="the predicted law must win decisively (a factor 100) in every seed"),
        bound("approximate updates: final relative error, worst seed", max(final), upper=1e-4,
              detail="declared in advance: linear convergence reaches 1e-4 within 40 rounds"),
    ]
    rates = [f.rate for f in fits]
    exact_rates = [_fit(r["exact"]).rate for r in m["runs"]]
    return Judgement(checks, predicted="linear (exponential) convergence with approximate updates",
                     measured=f"rate per round {np.mean(rates):.3f} (exact solves {np.mean(exact_rates):.3f}); log-"
                              f"likelihood ratio >= {min(favour):.1f}; final error <= {max(final):.2g}",
                     per_seed={"seed": list(m["seeds"]), "law": [f.law for f in fits],
                               "log-likelihood ratio (exponential over power)": [f.log_likelihood_ratio for f in fits],
                               "rate (approximate)": rates, "rate (exact)": exact_rates, "final error": final},
                     rule="each seed draws its own matrix and mask; both bounds must hold in every seed.")


def figure_alternating(m: dict, p):
    fig, ax = new_figure(width=4.4, height=3.3)
    for (name, style), colour in zip((("exact", "-"), ("approximate", "--")), measured_shades(2)[::-1]):
        for i, run in enumerate(m["runs"]):
            errors = np.asarray(run[name])
            ax.plot(np.arange(1, len(errors) + 1), errors, color=colour, ls=style, lw=1,
                    label=f"{name} least squares" + (" (1 CG step)" if name == "approximate" else "") if i == 0 else None)
    fit = _fit(m["runs"][0]["approximate"])
    t = np.arange(TAIL + 1, len(m["runs"][0]["approximate"]) + 1)
    prediction(ax, t, fit.predict(t, p.law()), label=f"{p.law()} law, fitted (seed {m['seeds'][0]})")
    log_axis(ax, "y")
    ax.set(xlabel="round of alternating minimisation", ylabel=r"$\|UV^\top - M\|_F / \|M\|_F$",
           title=f"completion, rank {m['rank']}, {m['observed']:.0%} observed" + (
               " (full-rank control)" if m.get("full_rank") else ""))
    legend_outside(ax, ncol=1)
    return fig


claim("gu2023.robust_alternating_minimization",
      title="Alternating minimisation with approximate least-squares updates converges linearly",
      citation="Gu, Song, Yin & Zhang 2023 (Low rank matrix completion via robust alternating minimization in nearly "
               "linear time), ICLR 2024",
      statement="For low-rank matrix completion, alternating minimisation whose least-squares updates are solved only "
                "approximately still converges linearly (geometrically) to the true matrix.",
      tolerance="60 x 60 matrices of rank 4, 35% of entries observed, spectral initialisation, each half-step one "
                "conjugate-gradient iteration per row warm-started at the current factor (a crude approximate solver), "
                "40 rounds, 3 seeds. Linear convergence: on the rounds after the first 4 (and above 1e-12), the "
                "exponential law must beat a power law decisively (log-likelihood ratio > log 100, "
                "theorylab.rates.fit_rate) in every seed, and the error must reach 1e-4 (declared in advance).",
      control="a full-rank perturbation (0.3 N(0, 1) per entry) of the matrix: no rank-4 factorisation completes it",
      predictions={"law": lambda: "exponential"},
      measure=measure_alternating, judge=judge_alternating, figure=figure_alternating,
      mutations=[
          Mutation("predicted law polynomial", predictions={"law": lambda: "polynomial"}),
          Mutation("errors decaying like 1/t", numbers=lambda m: {**m, "runs": [
              {**r, "approximate": np.asarray(r["approximate"])[0] / np.arange(1, len(r["approximate"]) + 1)}
              for r in m["runs"]]}),
      ])
