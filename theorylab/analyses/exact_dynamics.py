"""Exactly solvable training dynamics: overtraining of linear students (Advani & Saxe 2017), mode-by-mode
learning in deep linear networks (Saxe et al. 2014), and the convergence rates of gradient descent in
over-parameterized matrix sensing (Xiong, Ding & Du 2024).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from theorylab.claims import (Context, Judgement, Mutation, bound, claim, effect, mean_and_stderr, precondition,
                              tolerance)
from theorylab.claims.figures import (band, figure_legend, legend_outside, log_axis, measured_shades, prediction,
                                      prediction_level)
from theorylab.doubledescent import double_descent, linear_gd_run
from theorylab.models import DeepLinear
from theorylab.plotting import new_figure
from theorylab.rates import fit_rate
from theorylab.theory import (asymmetric_rate_exponent_bound, gd_risk, saxe_learning_time, saxe_mode_strength,
                              symmetric_overparam_tail)
from theorylab.train import Monitor, train

# ---------------------------------------------------------------------------------------------
# 1. Overtraining is worst at #parameters = #samples (Advani & Saxe 2017)
# ---------------------------------------------------------------------------------------------
NOISE = 0.25
NEAR_EDGE = 0.25  # |p/n - 1| below this: the smallest eigenvalue fluctuates at O(n^-2/3), left out of the fit


def measure_overtraining(ctx: Context) -> dict:
    n = ctx.pick(200, 1000)
    ratios = np.array([0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0])
    seeds = ctx.seeds(20, 50)
    noise = 0.0 if ctx.control else NOISE
    lr, final = 0.05, ctx.pick(20_000, 100_000)
    steps = np.unique(np.concatenate([[0], np.geomspace(1, final, 40).round()])).astype(int)
    base = {"sample_size": n, "noise": noise, "lr": lr}
    runs = [double_descent(linear_gd_run, axis="train_time", values=steps, seeds=seeds,
                           base={**base, "model_size": int(round(r * n))}).per_seed for r in ratios]
    big_init = double_descent(linear_gd_run, axis="train_time", values=[final], seeds=seeds,
                              base={**base, "model_size": 2 * n, "init_norm2": 1.0}).per_seed[:, 0]
    return {"n": n, "gamma": np.array([int(round(r * n)) / n for r in ratios]), "lr": lr, "steps": steps,
            "noise": noise, "errors": np.stack(runs), "big_init_final": big_init, "seeds": seeds}


def judge_overtraining(m: dict, p) -> Judgement:
    gamma, steps, lr = np.asarray(m["gamma"]), np.asarray(m["steps"]), float(m["lr"])
    errors = np.asarray(m["errors"])                  # (ratio, seed, step)
    k = errors.shape[1]
    mean, se = errors.mean(axis=1), errors.std(axis=1, ddof=1) / math.sqrt(k)
    theory = np.stack([p.risk(steps, g, lr=lr, noise=NOISE) for g in gamma])
    away = np.abs(gamma - 1) >= NEAR_EDGE
    worst = float(np.max((np.abs(mean - theory) / (4 * se + 0.05 * theory))[away]))
    overtrain = errors[:, :, -1] - errors.min(axis=2)  # (ratio, seed)
    over_mean = overtrain.mean(axis=1)
    peak = float(gamma[np.argmax(over_mean)])
    one = int(np.argmin(np.abs(gamma - 1)))
    over_one, over_one_se = mean_and_stderr(overtrain[one])
    predicted_one = float(theory[one, -1] - theory[one].min())
    two = int(np.argmin(np.abs(gamma - 2)))
    diff = np.asarray(m["big_init_final"]) - errors[two, :, -1]
    diff_theory = float(p.risk(steps[-1:], gamma[two], lr=lr, noise=NOISE, init_norm2=1.0)[0] - theory[two, -1])
    diff_mean, diff_se = mean_and_stderr(diff)
    checks = [
        tolerance("trajectories: max |mean - closed form| / (4 s.e. + 5%) (|p/n - 1| >= 0.25)", worst, 0.0, 1.0,
                  source="4 standard errors of the seed mean plus 5% finite-n bias (the exact finite-n ridgeless "
                         "risk differs from its limit by at most 3% at n = 200 for |p/n - 1| >= 0.25)"),
        bound("p/n at the largest overtraining", peak, lower=float(gamma[gamma < 1].max()),
              upper=float(gamma[gamma > 1].min()), detail="the grid points on either side of 1"),
        effect("overtraining (final minus early-stopped error) at p/n = 1", over_one, over_one_se,
               smallest=0.5 * predicted_one,
               source=f"half the closed-form overtraining at p/n = 1 ({predicted_one:.3g})"),
        tolerance("final error increase from |w0|^2 = 1 at p/n = 2", diff_mean, diff_theory,
                  4 * diff_se + 0.05 * diff_theory,
                  source="4 standard errors of the seed mean plus 5% finite-n bias"),
    ]
    return Judgement(checks, predicted=f"overtraining largest at p/n = 1 ({predicted_one:.3g}); |w0|^2 = 1 adds "
                                       f"{diff_theory:.3f} at p/n = 2",
                     measured=f"largest at p/n = {peak:.3g} ({over_mean.max():.3g}); |w0|^2 = 1 adds {diff_mean:.3f}; "
                              f"worst trajectory deviation {worst:.2f} of its tolerance",
                     rule=f"each point is the mean over {k} independent draws (seeds) with its standard error; no "
                          "per-seed verdicts.")


def figure_overtraining(m: dict, p):
    gamma, steps, lr = np.asarray(m["gamma"]), np.asarray(m["steps"]), float(m["lr"])
    errors = np.asarray(m["errors"])
    fig, (ax1, ax2) = new_figure(2, width=3.8, height=3.2)
    t = np.maximum(steps, 0.5)
    shown = [g for g in (0.5, 0.9, 1.1, 2.0)]
    for colour, g in zip(measured_shades(len(shown)), shown):
        i = int(np.argmin(np.abs(gamma - g)))
        band(ax1, t, errors[i], color=colour, label=f"$p/n = {g:g}$")
        prediction(ax1, t, p.risk(steps, gamma[i], lr=lr, noise=NOISE), lw=1,
                   label="closed form" if g == shown[0] else None)
    ax1.set(xlabel="GD step", ylabel="excess test error", title="test error during training")
    log_axis(ax1, "x")
    log_axis(ax1, "y")
    overtrain = errors[:, :, -1] - errors.min(axis=2)
    band(ax2, gamma, overtrain.T, errorbars=True, label="measured (mean ± 2 s.e.)")
    theory = [p.risk(steps, g, lr=lr, noise=NOISE) for g in gamma]
    prediction(ax2, gamma, [th[-1] - th.min() for th in theory], ls="-", label=f"closed form at $t = {steps[-1]}$")
    prediction_level(ax2, x=1.0, label="predicted peak $p = n$")
    ax2.set(xlabel="$p / n$", ylabel="final minus early-stopped error", title="overtraining")
    log_axis(ax2, "x", ticks=[0.25, 0.5, 1, 2, 4])
    log_axis(ax2, "y")
    figure_legend(fig, [ax1, ax2])
    return fig


def _overtrain_at_four(m: dict) -> dict:
    errors = np.array(m["errors"])
    errors[-1, :, -1] += 100.0  # p/n = 4 ends far above its early-stopped error
    return {**m, "errors": errors}


claim("advani2017.overtraining_peak",
      title="Linear student: overtraining (final minus early-stopped test error) peaks at #params = #samples",
      citation="Advani & Saxe 2017 (High-dimensional dynamics of generalization error in neural networks)",
      statement="For a linear student trained by full-batch gradient descent on a noisy linear teacher (signal 1, noise "
                "variance 0.25), the test error follows the Marchenko-Pastur dynamics R(t) = (r^2 + |w0|^2) "
                "E[(1 - lr lam)^(2t)] + sigma^2 gamma E[(1 - (1 - lr lam)^t)^2 / lam]; the overtraining, final minus "
                "early-stopped error, is largest at p/n = 1; and large initial weights raise the final error by "
                "|w0|^2 (1 - n/p) when p > n, so small initial weights are needed.",
      tolerance="Trajectories: seed means within 4 standard errors plus 5% (finite-n bias: at n = 200 the exact "
                "finite-sample ridgeless risk differs from its limit by at most 3% for |p/n - 1| >= 0.25); points "
                "with |p/n - 1| < 0.25 are left out (the smallest eigenvalue fluctuates at O(n^-2/3) of the edge). "
                "The largest overtraining must sit at a grid point next to p/n = 1 and be significant, with power "
                "against half its closed-form size. The effect of initial weights at p/n = 2: the closed-form "
                "difference within 4 standard errors plus 5%.",
      control="noise-free teacher (sigma^2 = 0): gradient descent never overtrains",
      predictions={"risk": gd_risk},
      measure=measure_overtraining, judge=judge_overtraining, figure=figure_overtraining,
      mutations=[
          Mutation("closed form 30% high", predictions={"risk": lambda *a, **kw: 1.3 * gd_risk(*a, **kw)}),
          Mutation("closed form with twice the noise", predictions={"risk": lambda *a, **kw: gd_risk(
              *a, **{**kw, "noise": 2 * kw.get("noise", 0.0)})}),
          Mutation("overtraining largest at p/n = 4", numbers=_overtrain_at_four),
          Mutation("no overtraining", numbers=lambda m: {**m, "errors": np.minimum.accumulate(
              np.asarray(m["errors"]), axis=2)}),
          Mutation("initial weights add nothing",
                   numbers=lambda m: {**m, "big_init_final": np.asarray(m["errors"])[
                       int(np.argmin(np.abs(np.asarray(m["gamma"]) - 2))), :, -1]}),
      ])


# ---------------------------------------------------------------------------------------------
# 2. Exact learning dynamics of deep linear networks (Saxe et al. 2014)
# ---------------------------------------------------------------------------------------------
SINGULAR_VALUES = np.array([3.0, 2.0, 1.0, 0.5])
U0 = 1e-3


def _saxe_run(ctx: Context, seed: int, lr: float) -> tuple[np.ndarray, np.ndarray]:
    """Mode strengths ``u_i(t)`` of one two-layer linear network from decoupled (or, as control, random) init."""
    s, d, n = SINGULAR_VALUES, 6, 60
    g = torch.Generator().manual_seed(seed)
    x = math.sqrt(n) * torch.linalg.qr(torch.randn(n, d, generator=g, dtype=torch.float64))[0]  # x^T x / n = I
    u_basis = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0][:, : len(s)]
    v_basis = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0][:, : len(s)]
    y = x @ (u_basis @ torch.diag(torch.as_tensor(s)) @ v_basis.T).T
    model = DeepLinear([d, len(s), d], seed=seed).double().to(ctx.device)
    with torch.no_grad():
        if ctx.control:  # small random init: the modes are coupled (same initial size of the product)
            scale = math.sqrt(U0 / math.sqrt(d))
            model.layers[0].weight.copy_(scale * torch.randn(len(s), d, generator=g, dtype=torch.float64))
            model.layers[1].weight.copy_(scale * torch.randn(d, len(s), generator=g, dtype=torch.float64))
        else:  # decoupled, balanced: W1 = diag(a0) V^T, W2 = U diag(a0), a0^2 = u0
            model.layers[0].weight.copy_(math.sqrt(U0) * v_basis.T)
            model.layers[1].weight.copy_(math.sqrt(U0) * u_basis)
    steps = int(1.3 * saxe_learning_time(float(s.min()), u0=U0, uf=0.99 * float(s.min()), tau=1 / lr))

    def modes(m, step):
        w = m.end_to_end().detach().cpu()
        return {str(i): float(u_basis[:, i] @ w @ v_basis[:, i]) for i in range(len(s))}

    loss = lambda out, target: 0.5 * ((out - target) ** 2).sum(dim=1).mean()  # noqa: E731 -- (1/2)E|y - W x|^2
    res = train(model, loss, (x.to(ctx.device), y.to(ctx.device)), steps=steps, lr=lr, optimizer="gd",
                monitors=[Monitor("u", modes, every=ctx.pick(10, 20))])
    return res.monitor_steps["u.0"].astype(float), np.stack([res.monitors[f"u.{i}"] for i in range(len(s))])


def measure_deep_linear(ctx: Context) -> dict:
    lr = ctx.pick(5e-3, 1e-3)
    seeds = ctx.seeds(3, 3)
    runs = [_saxe_run(ctx, seed, lr) for seed in seeds]
    return {"lr": lr, "s": SINGULAR_VALUES, "u0": U0, "seeds": seeds, "t": runs[0][0],
            "u": np.stack([u for _, u in runs])}  # (seed, mode, time)


def judge_deep_linear(m: dict, p) -> Judgement:
    lr, s, u0, t = float(m["lr"]), np.asarray(m["s"]), float(m["u0"]), np.asarray(m["t"])
    u = np.asarray(m["u"])
    theory = np.stack([p.trajectory(t, si, u0=u0, tau=1 / lr) for si in s])
    deviation = np.max(np.abs(u - theory[None]) / s[None, :, None], axis=(1, 2))  # per seed
    half_measured = np.array([[np.interp(si / 2, ui, t) for si, ui in zip(s, run)] for run in u])
    half_theory = np.array([p.half_time(float(si), u0=u0, uf=float(si) / 2, tau=1 / lr) for si in s])
    half_error = np.max(np.abs(half_measured / half_theory - 1), axis=1)
    ordered = np.all(np.diff(half_measured, axis=1) > 0, axis=1)  # s descending -> half-way times ascending
    dev_bound = 2 * (lr * s.max() / 8) * math.log(s.max() / u0)
    checks = [
        bound("max over seeds, modes and steps of |u - u(t)| / s", float(deviation.max()), upper=dev_bound,
              source="twice the Euler-discretisation shift (lr s / 8) ln(s / u0) for the largest s"),
        bound("max over seeds of the relative error of the half-way times", float(half_error.max()),
              upper=lr * s.max(), source="the Euler speed-up lr s_max of a mode's growth per step"),
        bound("seeds whose modes are learned in order of s (fraction)", float(ordered.mean()), lower=1.0),
    ]
    return Judgement(checks, predicted=f"u(t) within {dev_bound:.3g} s; half-way times {np.round(half_theory).tolist()}",
                     measured=f"max |du|/s = {deviation.max():.3g}; half-way times (seed {m['seeds'][0]}) "
                              f"{np.round(half_measured[0]).tolist()}",
                     per_seed={"seed": list(m["seeds"]), "max |du|/s": deviation.tolist(),
                               "half-way time error": half_error.tolist(), "ordered": ordered.tolist()},
                     rule="every seed must pass: the checks take the worst seed.")


def figure_deep_linear(m: dict, p):
    lr, s, u0, t = float(m["lr"]), np.asarray(m["s"]), float(m["u0"]), np.asarray(m["t"])
    u = np.asarray(m["u"])
    fig, (ax1, ax2) = new_figure(2, width=3.8, height=3.2)
    for i, (colour, si) in enumerate(zip(measured_shades(len(s)), s)):
        ax1.plot(t, u[0, i], "o", ms=2, color=colour, label=f"$s = {si:g}$")
        prediction(ax1, t, p.trajectory(t, si, u0=u0, tau=1 / lr), ls="-", lw=1,
                   label="$u(t)$ (Saxe et al.)" if i == 0 else None)
    ax1.set(xlabel="GD step", ylabel="mode strength $u$", title=f"decoupled modes (seed {m['seeds'][0]})")
    legend_outside(ax1)
    half = np.array([[np.interp(si / 2, ui, t) for si, ui in zip(s, run)] for run in u])
    band(ax2, 1 / s, half, errorbars=True, label="measured half-way time")
    prediction(ax2, 1 / s, [p.half_time(float(si), u0=u0, uf=float(si) / 2, tau=1 / lr) for si in s], ls="-",
               label=r"$(\tau / 2s) \ln((s - u_0) / u_0)$")
    ax2.set(xlabel="$1 / s$", ylabel="steps to reach $s / 2$", title=r"learning time $\propto \tau / s$")
    legend_outside(ax2)
    return fig


def _swap_modes(m: dict) -> dict:
    u = np.array(m["u"])
    u[:, [0, 1]] = u[:, [1, 0]]
    return {**m, "u": u}


claim("saxe2014.deep_linear_modes",
      title="Deep linear network: mode strengths follow u(t), learned in order of singular value, time ~ tau/s",
      citation="Saxe, McClelland & Ganguli 2014 (Exact solutions to the nonlinear dynamics of learning in deep linear "
               "neural networks), ICLR",
      statement="A two-layer linear network trained by gradient descent on whitened inputs from decoupled, balanced "
                "initial conditions learns each singular mode of the input-output correlation along "
                "u(t) = s e^(2st/tau) / (e^(2st/tau) - 1 + s/u0), tau = 1/lr; modes are learned in the order of their "
                "singular values s, the time to reach s/2 being (tau/2s) ln((s - u0)/u0).",
      tolerance="Gradient descent is the Euler discretisation of the gradient flow: a mode's growth factor per step "
                "is (1 + lr(s-u))^2 instead of 1 + 2 lr(s-u), a relative speed-up of at most lr s / 2, which shifts "
                "the sigmoid by at most that fraction of its time to half-way, (tau/2s) ln(s/u0); at the steepest "
                "point (slope s^2/2tau) that is |du|/s <= (lr s / 8) ln(s/u0). The bound is twice that for the "
                "largest s, and for half-way times a relative error of lr * s_max. Three seeds (random bases and "
                "inputs); every seed must pass.",
      control="small random initial weights instead of decoupled ones: the modes are coupled and the exact solution "
              "no longer applies",
      predictions={"trajectory": saxe_mode_strength, "half_time": saxe_learning_time},
      measure=measure_deep_linear, judge=judge_deep_linear, figure=figure_deep_linear,
      mutations=[
          Mutation("u(t) with twice the initial strength",
                   predictions={"trajectory": lambda t, s, u0, tau: saxe_mode_strength(t, s, u0=2 * u0, tau=tau)}),
          Mutation("half-way times 10% late",
                   predictions={"half_time": lambda s, **kw: 1.1 * saxe_learning_time(s, **kw)}),
          Mutation("modes of s = 3 and s = 2 swapped", numbers=_swap_modes),
      ])


# ---------------------------------------------------------------------------------------------
# 3. Over-parameterization slows GD in matrix sensing (Xiong, Ding & Du 2024)
# ---------------------------------------------------------------------------------------------
DECISIVE = math.log(100)  # a likelihood ratio of 100: one law makes the data 100 times likelier
ALPHAS = np.array([0.05, 0.1, 0.2])


def _sensing_operator(d: int, m: int, *, symmetric: bool, rng: np.random.Generator) -> np.ndarray:
    """``H = A^T A / m`` for ``m`` Gaussian sensing matrices (symmetrised or not), acting on ``vec(M)``:
    the gradient of ``(1/4m) sum_i (<A_i, X X^T> - y_i)^2`` is ``mat(H vec(X X^T - M*)) X``."""
    a = rng.standard_normal((m, d, d))
    if symmetric:
        a = (a + a.transpose(0, 2, 1)) / 2
    a = a.reshape(m, d * d)
    return a.T @ a / m


def _symmetric_gd(h: np.ndarray, target: np.ndarray, x: np.ndarray, lr: float, steps: int) -> np.ndarray:
    d, errors = target.shape[0], np.empty(steps)
    for t in range(steps):
        e = x @ x.T - target
        errors[t] = np.sum(e * e)
        x = x - lr * (h @ e.ravel()).reshape(d, d) @ x
    return errors


def _asymmetric_gd(h: np.ndarray, target: np.ndarray, f: np.ndarray, g: np.ndarray, lr: float, steps: int) -> np.ndarray:
    d, errors = target.shape[0], np.empty(steps)
    for t in range(steps):
        e = f @ g.T - target
        errors[t] = np.sum(e * e)
        s = (h @ e.ravel()).reshape(d, d)
        f, g = f - lr * s @ g, g - lr * s.T @ f
    return errors


def _exp_window(errors: np.ndarray, high: float = 1e-4, low: float = 1e-24) -> tuple[np.ndarray, np.ndarray]:
    """The steps where the error is past the transient (< high) and above round-off (> low)."""
    idx = np.nonzero((errors < high) & (errors > low))[0]
    return idx + 1.0, errors[idx]


def _log_sample(errors: np.ndarray, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    t = np.unique(np.geomspace(1, errors.size, points).astype(int))
    return t, errors[t - 1]


def _sensing_seed(ctx: Context, seed: int) -> dict:
    d, r, lr = 8, 2, 0.05
    k = r if ctx.control else 4  # control: no over-parameterization in the symmetric factor
    m = ctx.pick(20_000, 50_000)  # measurements: the restricted isometry constant shrinks like d / sqrt(m)
    sym_steps, asym_steps = ctx.pick(100_000, 300_000), ctx.pick(20_000, 40_000)
    rng = np.random.default_rng(seed)
    h_sym = _sensing_operator(d, m, symmetric=True, rng=rng)
    h_asym = _sensing_operator(d, m, symmetric=False, rng=rng)
    basis = np.linalg.qr(rng.standard_normal((d, r)))[0]
    target = basis @ np.diag([1.0, 0.6]) @ basis.T
    # restricted isometry constant on symmetric matrices: eigenvalues of H on the symmetric subspace
    e = np.eye(d)
    sym_basis = np.stack([((e[i][:, None] * e[j][None, :] + e[j][:, None] * e[i][None, :])
                           / (2 if i == j else math.sqrt(2))).ravel() for i in range(d) for j in range(i, d)], axis=1)
    iso = np.linalg.eigvalsh(sym_basis.T @ h_sym @ sym_basis)
    init = rng.standard_normal((d, 4))
    over = _symmetric_gd(h_sym, target, 0.1 * init[:, :k], lr, sym_steps)
    exact = _symmetric_gd(h_sym, target, 0.1 * init[:, :r], lr, asym_steps // 4)
    f0, g0 = rng.standard_normal((d, 4)), rng.standard_normal((d, 4))
    asym = [_asymmetric_gd(h_asym, target, a * f0, a * g0, lr, asym_steps) for a in ALPHAS]
    t_all = np.arange(1, sym_steps + 1, dtype=float)
    tail = slice(sym_steps // 10, sym_steps, max(1, sym_steps // 2000))
    fit_over = fit_rate(t_all[tail], over[tail])
    fit_exact = fit_rate(*_exp_window(exact))
    fits_asym = [fit_rate(*_exp_window(err)) for err in asym]
    return {"over_llr": fit_over.log_likelihood_ratio, "over_exponent": fit_over.exponent,
            "over_final": over[-1], "exact_llr": fit_exact.log_likelihood_ratio, "exact_rate": fit_exact.rate,
            "asym_llr": [f.log_likelihood_ratio for f in fits_asym], "asym_rate": [f.rate for f in fits_asym],
            "delta": float(max(iso.max() - 1, 1 - iso.min())),
            "curves": {"over": _log_sample(over), "exact": _log_sample(exact),
                       "asym": [_log_sample(err) for err in asym]}}


def measure_sensing(ctx: Context) -> dict:
    seeds = ctx.seeds(3, 3)
    runs = [_sensing_seed(ctx, seed) for seed in seeds]
    per_seed = {key: [run[key] for run in runs] for key in runs[0] if key != "curves"}
    return {"seeds": seeds, "lr": 0.05, "excess_rank": 2, "sym_steps": ctx.pick(100_000, 300_000),
            "alphas": ALPHAS, **per_seed, "curves": runs[0]["curves"]}


def judge_sensing(m: dict, p) -> Judgement:
    lr, steps = float(m["lr"]), int(m["sym_steps"])
    prefactor = np.asarray(m["over_final"]) / p.tail(steps, lr=lr, excess_rank=int(m["excess_rank"]))
    delta = float(np.max(m["delta"]))
    rates = np.asarray(m["asym_rate"], dtype=float)        # (seed, alpha)
    alphas = np.asarray(m["alphas"])
    positive = bool(np.all(rates > 0))
    slopes = (np.array([np.polyfit(np.log(alphas), np.log(r), 1)[0] for r in rates]) if positive
              else np.full(len(rates), np.nan))
    checks = [
        bound("symmetric k > r: min over seeds of the log-likelihood ratio, polynomial over exponential",
              float(-np.max(m["over_llr"])), lower=DECISIVE, source="decisive: a likelihood ratio of 100"),
        bound("symmetric k > r: fitted exponent p of T^-p (mean over seeds)", float(np.mean(m["over_exponent"])),
              lower=1.8, upper=2.05,
              source="the exact excess dynamics p0/(1 + 2 lr p0 t) approach T^-2 from below on [T/10, T]; 0.05 "
                     "above 2 for the fit"),
        bound("symmetric k > r: T^2 error / ((k-r)/(4 lr^2)), worst seed", float(np.max(np.abs(np.log(prefactor)))),
              upper=-2 * math.log(1 - delta),
              source=f"the sensing operator's restricted isometry constant delta = {delta:.3f} bounds the factor by "
                     "(1 - delta)^-2 (log shown)"),
        bound("symmetric k = r: min over seeds of the log-likelihood ratio, exponential over polynomial",
              float(np.min(m["exact_llr"])), lower=DECISIVE, source="decisive: a likelihood ratio of 100"),
        bound("asymmetric k > r: min over seeds and alpha of the log-likelihood ratio, exponential over polynomial",
              float(np.min(m["asym_llr"])), lower=DECISIVE, source="decisive: a likelihood ratio of 100"),
    ]
    if positive:
        slope, slope_se = mean_and_stderr(slopes)
        checks.append(bound("asymmetric: exponent s of rate ~ alpha^s (mean over seeds)", slope,
                            upper=p.rate_exponent(), slack=2 * slope_se,
                            source="2 standard errors over seeds",
                            detail="exp(-Omega(alpha^2 T)) bounds the rate below by c alpha^2, so s <= 2"))
    else:
        checks.append(precondition("asymmetric: every fitted rate is positive", False, requirement="rates > 0"))
    return Judgement(checks,
                     predicted="sym k>r: T^-2 with prefactor (k-r)/(4 lr^2); k=r: linear; asym: linear, rate >= c alpha^2",
                     measured=f"sym k>r: T^(-{np.mean(m['over_exponent']):.3f}), prefactor x{np.mean(prefactor):.3f}; "
                              f"k=r: rate {np.mean(m['exact_rate']):.3g}; asym: rate ~ alpha^{np.nanmean(slopes):.2f}",
                     per_seed={"seed": list(m["seeds"]), "sym exponent": list(m["over_exponent"]),
                               "sym prefactor": prefactor.tolist(), "k=r rate": list(m["exact_rate"]),
                               "asym rate slope": slopes.tolist()},
                     rule="likelihood ratios and prefactors must hold for every seed (worst seed); exponents are "
                          "averaged over seeds.")


def figure_sensing(m: dict, p):
    curves, lr = m["curves"], float(m["lr"])
    fig, (ax1, ax2) = new_figure(2, width=3.8, height=3.2)
    t, e = curves["over"]
    ax1.plot(t, e, color=measured_shades(2)[1], label="symmetric $k = 4 > r = 2$")
    tt, ee = curves["exact"]
    ax1.plot(tt, ee, color=measured_shades(2)[0], label="symmetric $k = r = 2$")
    late = t[t >= 100]
    prediction(ax1, late, p.tail(late, lr=lr, excess_rank=int(m["excess_rank"])),
               label=r"$(k - r) / (4 \eta^2 T^2)$")
    ax1.set(xlabel="GD step $T$", ylabel=r"$\|X X^\top - M^*\|_F^2$", title="symmetric factors", ylim=(1e-26, 10))
    log_axis(ax1, "x")
    log_axis(ax1, "y")
    rates = np.asarray(m["asym_rate"], dtype=float)
    alphas = np.asarray(m["alphas"])
    band(ax2, alphas, rates, errorbars=True, label="fitted linear rate (mean ± 2 s.e.)")
    anchor = rates.mean(axis=0)[0]
    prediction(ax2, alphas, anchor * (alphas / alphas[0]) ** p.rate_exponent(),
               label=r"$\propto \alpha^2$ (the bound's slope)")
    ax2.set(xlabel=r"initialisation scale $\alpha$", ylabel="rate $c$ of $e^{-cT}$", title="asymmetric $F G^\\top$")
    log_axis(ax2, "x", ticks=list(alphas))
    log_axis(ax2, "y")
    figure_legend(fig, [ax1, ax2], ncol=2)
    return fig


claim("xiong2024.matrix_sensing_rates",
      title="Matrix sensing: symmetric over-parameterization slows GD to 1/T^2; k = r and asymmetric are linear",
      citation="Xiong, Ding & Du 2024 (How over-parameterization slows down gradient descent in matrix sensing: the "
               "curses of symmetry and initialization), ICLR",
      statement="Gradient descent on near-isotropic matrix sensing of a rank-r PSD matrix converges linearly with a "
                "symmetric factor of k = r columns, but only polynomially, error ~ 1/T^2, with k > r; with an "
                "asymmetric factorisation F G^T (k > r) it is linear again, at exp(-Omega(alpha^2 T)) for an "
                "initialisation of scale alpha, i.e. at a rate of at least c alpha^2.",
      tolerance="Laws are decided by the rate fitter's likelihood ratio (decisive: > log 100), for every seed. "
                "Symmetric k > r: the fitted exponent on [T/10, T] in [1.8, 2.05] (the exact excess dynamics approach "
                "T^-2 from below); the T^2 error within the restricted isometry factors [(1+delta)^-2, (1-delta)^-2] "
                "of (k-r)/(4 lr^2). Asymmetric: Omega(alpha^2) is a lower bound on the rate, so the exponent s of "
                "rate ~ alpha^s is tested as a bound, s <= 2 up to 2 standard errors over seeds.",
      control="no over-parameterization in the symmetric factor (k = r): the slow 1/T^2 phase must not appear",
      predictions={"tail": symmetric_overparam_tail, "rate_exponent": asymmetric_rate_exponent_bound},
      measure=measure_sensing, judge=judge_sensing, figure=figure_sensing,
      mutations=[
          Mutation("1/T^2 prefactor 30% high", predictions={"tail": lambda t, **kw: 1.3 * symmetric_overparam_tail(t, **kw)}),
          Mutation("asymmetric rate bound alpha^1", predictions={"rate_exponent": lambda: 1.0}),
          Mutation("symmetric k > r exponential", numbers=lambda m: {**m, "over_llr": -np.asarray(m["over_llr"]),
                                                                      "over_exponent": np.asarray(m["over_exponent"]) + 1}),
          Mutation("k = r polynomial", numbers=lambda m: {**m, "exact_llr": -np.asarray(m["exact_llr"])}),
          Mutation("asymmetric polynomial", numbers=lambda m: {**m, "asym_llr": -np.asarray(m["asym_llr"])}),
          Mutation("asymmetric rate ~ alpha^3", numbers=lambda m: {**m, "asym_rate": np.asarray(m["asym_rate"])
                                                                   * np.asarray(m["alphas"])[None, :] / 0.05}),
      ])
