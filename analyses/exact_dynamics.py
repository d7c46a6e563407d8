"""Exactly solvable training dynamics: overtraining of linear students (Advani & Saxe 2017), mode-by-mode
learning in deep linear networks (Saxe et al. 2014), and the convergence rates of gradient descent in
over-parameterized matrix sensing (Xiong, Ding & Du 2024).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.ticker import NullFormatter

from theorylab.claims import Context, Outcome, check_at_least, check_at_most, check_between, check_undecided, claim
from theorylab.doubledescent import double_descent, linear_gd_run
from theorylab.models import DeepLinear
from theorylab.plotting import MEASURED, PREDICTED, new_figure
from theorylab.rates import fit_rate
from theorylab.theory import (gd_risk, saxe_learning_time, saxe_mode_strength, symmetric_overparam_tail)
from theorylab.train import Monitor, train


# ---------------------------------------------------------------------------------------------
# 3. Overtraining is worst at #parameters = #samples (Advani & Saxe 2017)
# ---------------------------------------------------------------------------------------------
NOISE = 0.25


@claim("advani2017.overtraining_peak",
       title="Linear student: overtraining (final minus early-stopped test error) peaks at #params = #samples",
       citation="Advani & Saxe 2017 (High-dimensional dynamics of generalization error in neural networks)",
       statement="For a linear student trained by full-batch gradient descent on a noisy linear teacher "
                 "(signal 1, noise variance 0.25), the test error follows the Marchenko-Pastur dynamics "
                 "R(t) = (r^2 + |w0|^2) E[(1 - lr lam)^(2t)] + sigma^2 gamma E[(1 - (1 - lr lam)^t)^2 / lam]; the "
                 "overtraining, final minus early-stopped error, is largest at p/n = 1; and large initial weights "
                 "raise the final error by |w0|^2 (1 - n/p) when p > n, so small initial weights are needed.",
       tolerance="Measured mean errors (over seeds) must match the closed form within 4 standard errors plus 5% "
                 "(finite-n bias: at n = 200 the exact finite-sample ridgeless risk differs from its limit by "
                 "at most 3% for |p/n - 1| >= 0.25); points with |p/n - 1| < 0.25 are left out of this check (at "
                 "finite n the smallest eigenvalue there fluctuates at O(n^-2/3) of the edge, and the error with "
                 "it). The overtraining peak must sit at one of the grid points next to p/n = 1. The effect of "
                 "initial weights is checked at p/n = 2 against the closed-form difference, within 4 standard "
                 "errors plus 5%.")
def overtraining_peak(ctx: Context) -> Outcome:
    n = ctx.pick(200, 1000)
    ratios = np.array([0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0])
    seeds = [ctx.seed + s for s in range(ctx.pick(20, 50))]
    lr, final = 0.05, ctx.pick(20_000, 100_000)
    steps = np.unique(np.concatenate([[0], np.geomspace(1, final, 40).round()])).astype(int)
    runs = [double_descent(linear_gd_run, axis="train_time", values=steps, seeds=seeds,
                           base={"model_size": int(round(r * n)), "sample_size": n, "noise": NOISE, "lr": lr})
            for r in ratios]
    big_init = double_descent(linear_gd_run, axis="train_time", values=[final], seeds=seeds,
                              base={"model_size": 2 * n, "sample_size": n, "noise": NOISE, "lr": lr,
                                    "init_norm2": 1.0})
    gammas = np.array([int(round(r * n)) / n for r in ratios])
    theory = [gd_risk(steps, g, lr=lr, noise=NOISE) for g in gammas]
    overtrain = np.array([r.per_seed[:, -1] - r.per_seed.min(axis=1) for r in runs])  # (ratio, seed)
    over_mean = overtrain.mean(axis=1)
    over_theory = np.array([t[-1] - t.min() for t in theory])
    peak = float(gammas[np.argmax(over_mean)])
    worst = 0.0
    for g, r, t in zip(gammas, runs, theory):
        if abs(g - 1) >= 0.25:
            tol = 4 * r.std / math.sqrt(len(seeds)) + 0.05 * t
            worst = max(worst, float(np.max(np.abs(r.mean - t) / tol)))
    two = int(np.argmin(np.abs(gammas - 2.0)))
    diff = big_init.per_seed[:, 0] - runs[two].per_seed[:, -1]
    diff_theory = float(gd_risk(final, gammas[two], lr=lr, noise=NOISE, init_norm2=1.0) - theory[two][-1])
    diff_tol = 4 * diff.std(ddof=1) / math.sqrt(len(seeds)) + 0.05 * diff_theory
    checks = [
        check_at_most("test-error trajectories: max |measured - closed form| / tolerance (|p/n-1| >= 0.25)", worst, 1.0),
        check_between("p/n at the overtraining peak", peak, gammas[gammas < 1].max(), gammas[gammas > 1].min(),
                      detail="grid points on either side of 1"),
        check_between("final error increase from |w0|^2 = 1 at p/n = 2", float(diff.mean()),
                      diff_theory - diff_tol, diff_theory + diff_tol, detail=f"closed form {diff_theory:.3f}"),
    ]
    fig, (ax1, ax2) = new_figure(2, width=4.2, height=3.4)
    for i, (g, r, t) in enumerate(zip(gammas, runs, theory)):
        if g in (0.5, 0.9, 1.1, 2.0):
            ax1.plot(np.maximum(steps, 0.5), r.mean, "o", ms=2.5, color=f"C{i % 10}", label=f"p/n={g:.2g}")
            ax1.plot(np.maximum(steps, 0.5), t, color=PREDICTED, lw=1)
    ax1.set(xscale="log", yscale="log", xlabel="GD step", ylabel="test error (excess)",
            title="trajectories (lines: closed form)")
    ax1.legend()
    ax2.errorbar(gammas, over_mean, yerr=2 * overtrain.std(axis=1, ddof=1) / math.sqrt(len(seeds)), fmt="o",
                 ms=3, color=MEASURED, label="measured")
    ax2.plot(gammas, over_theory, color=PREDICTED, label=f"closed form at t={final}")
    ax2.axvline(1.0, color=PREDICTED, ls="--", lw=1)
    ax2.set(xscale="log", yscale="log", xlabel="p / n", ylabel="final - early-stopped error", title="overtraining")
    ax2.xaxis.set_minor_formatter(NullFormatter())
    ax2.legend()
    return Outcome(checks, fig, predicted=f"overtraining peak at p/n = 1; init |w0|^2=1 adds {diff_theory:.3f} at p/n=2",
                   measured=f"peak at p/n = {peak:.3g} (overtraining {over_mean.max():.3g}); "
                            f"init adds {diff.mean():.3f}; worst deviation/tolerance {worst:.2f}",
                   numbers={"n": n, "gamma": gammas, "overtraining": over_mean, "overtraining_closed_form": over_theory,
                            "early_stopped": np.array([r.mean.min() for r in runs]),
                            "final": np.array([r.mean[-1] for r in runs]), "init_effect": float(diff.mean()),
                            "init_effect_closed_form": diff_theory})


# ---------------------------------------------------------------------------------------------
# 4. Exact learning dynamics of deep linear networks (Saxe et al. 2014)
# ---------------------------------------------------------------------------------------------
@claim("saxe2014.deep_linear_modes",
       title="Deep linear network: mode strengths follow u(t), learned in order of singular value, time ~ tau/s",
       citation="Saxe, McClelland & Ganguli 2014 (Exact solutions to the nonlinear dynamics of learning in deep "
                "linear neural networks), ICLR",
       statement="A two-layer linear network trained by gradient descent on whitened inputs from decoupled, "
                 "balanced initial conditions learns each singular mode of the input-output correlation along "
                 "u(t) = s e^(2st/tau) / (e^(2st/tau) - 1 + s/u0), tau = 1/lr; modes are learned in the order of "
                 "their singular values s, the time to reach s/2 being (tau/2s) ln((s - u0)/u0).",
       tolerance="Gradient descent is the Euler discretisation of the gradient flow: a mode's growth factor per "
                 "step is (1 + lr(s-u))^2 instead of 1 + 2 lr(s-u), a relative speed-up of at most lr s / 2, which "
                 "shifts the sigmoid by at most that fraction of its time to half-way, (tau/2s) ln(s/u0); at the "
                 "steepest point (slope s^2/2tau) that is |du|/s <= (lr s / 8) ln(s/u0). The tolerance is twice "
                 "that for the largest s, and for half-way times a relative error of lr * s_max.")
def deep_linear_modes(ctx: Context) -> Outcome:
    lr = ctx.pick(5e-3, 1e-3)
    s = np.array([3.0, 2.0, 1.0, 0.5])
    u0, d, n = 1e-3, 6, 60
    g = torch.Generator().manual_seed(ctx.seed)
    q = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=torch.float64))[0]
    x = math.sqrt(n) * q  # whitened: x^T x / n = I
    u_basis = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0][:, : len(s)]
    v_basis = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0][:, : len(s)]
    sigma_yx = u_basis @ torch.diag(torch.as_tensor(s)) @ v_basis.T
    y = x @ sigma_yx.T
    model = DeepLinear([d, len(s), d], seed=ctx.seed).double().to(ctx.device)
    with torch.no_grad():  # decoupled, balanced: W1 = diag(a0) V^T, W2 = U diag(a0), a0^2 = u0
        model.layers[0].weight.copy_(math.sqrt(u0) * v_basis.T)
        model.layers[1].weight.copy_(math.sqrt(u0) * u_basis)
    every = ctx.pick(10, 20)
    steps = int(1.3 * saxe_learning_time(s.min(), u0=u0, uf=0.99 * s.min(), tau=1 / lr))

    def modes(m, step):
        w = m.end_to_end().detach().cpu()
        return {str(i): float(u_basis[:, i] @ w @ v_basis[:, i]) for i in range(len(s))}

    loss = lambda out, target: 0.5 * ((out - target) ** 2).sum(dim=1).mean()  # noqa: E731 -- (1/2)E|y - W x|^2
    res = train(model, loss, (x.to(ctx.device), y.to(ctx.device)), steps=steps, lr=lr, optimizer="gd",
                monitors=[Monitor("u", modes, every=every)])
    t = res.monitor_steps["u.0"].astype(float)
    u = np.stack([res.monitors[f"u.{i}"] for i in range(len(s))])
    theory = np.stack([saxe_mode_strength(t, si, u0=u0, tau=1 / lr) for si in s])
    max_dev = float(np.max(np.abs(u - theory) / s[:, None]))
    dev_bound = 2 * (lr * s.max() / 8) * math.log(s.max() / u0)
    half_measured = np.array([np.interp(si / 2, ui, t) for si, ui in zip(s, u)])  # u rises monotonically
    half_theory = np.array([saxe_learning_time(si, u0=u0, uf=si / 2, tau=1 / lr) for si in s])
    half_rel = float(np.max(np.abs(half_measured / half_theory - 1)))
    ordered = bool(np.all(np.diff(half_measured) > 0))  # s descending -> half-way times ascending
    checks = [
        check_at_most("max_t,modes |u_measured - u(t)| / s", max_dev, dev_bound),
        check_at_most("max relative error of half-way times vs (tau/2s) ln((s-u0)/u0)", half_rel, lr * s.max()),
        check_at_least("modes learned in order of s (1 = yes)", float(ordered), 1.0),
    ]
    fig, (ax1, ax2) = new_figure(2, width=4.2, height=3.4)
    for i, si in enumerate(s):
        ax1.plot(t, u[i], "o", ms=2, color=f"C{i}", label=f"s = {si:g}")
        ax1.plot(t, theory[i], color=PREDICTED, lw=1)
    ax1.set(xlabel="GD step", ylabel="mode strength u", title="decoupled modes (lines: u(t))")
    ax1.legend()
    ax2.plot(1 / s, half_measured, "o", color=MEASURED, label="measured half-way time")
    ax2.plot(1 / s, half_theory, "-", color=PREDICTED, label="(tau/2s) ln((s-u0)/u0)")
    ax2.set(xlabel="1 / s", ylabel="steps to reach s/2", title="learning time ~ tau / s")
    ax2.legend()
    return Outcome(checks, fig, predicted=f"u(t) within {dev_bound:.3g} s; half-way times {np.round(half_theory).tolist()}",
                   measured=f"max |du|/s = {max_dev:.3g}; half-way times {np.round(half_measured).tolist()}",
                   numbers={"lr": lr, "s": s, "u0": u0, "max_deviation": max_dev, "half_measured": half_measured,
                            "half_theory": half_theory})


# ---------------------------------------------------------------------------------------------
# 5. Over-parameterization slows GD in matrix sensing (Xiong, Ding & Du 2024)
# ---------------------------------------------------------------------------------------------
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


@claim("xiong2024.matrix_sensing_rates",
       title="Matrix sensing: symmetric over-parameterization slows GD to 1/T^2; k = r and asymmetric are linear",
       citation="Xiong, Ding & Du 2024 (How over-parameterization slows down gradient descent in matrix sensing: "
                "the curses of symmetry and initialization), ICLR",
       statement="Gradient descent on near-isotropic matrix sensing of a rank-r PSD matrix converges linearly "
                 "with a symmetric factor of k = r columns, but only polynomially, error ~ 1/T^2, with k > r; "
                 "with an asymmetric factorisation F G^T (k > r) it is linear again, at a rate that scales with "
                 "the square of the initialisation scale alpha.",
       tolerance="Laws are decided by the rate fitter's likelihood ratio (decisive: > log 100). Symmetric k > r: "
                 "the fitted exponent on [T/10, T] must be in [1.8, 2.05]: the exact excess dynamics "
                 "p0/(1 + 2 lr p0 t) approach T^-2 from below (transient), 0.05 above 2 allows for the fit; the "
                 "prefactor T^2 error must match (k-r)/(4 lr^2) within the sensing operator's restricted isometry "
                 "constant delta on symmetric matrices: [(1+delta)^-2, (1-delta)^-2]. Asymmetric: the log-log "
                 "slope of the fitted rate against alpha must be in [1.5, 2.5] (exp(-Omega(alpha^2 T)) is an order "
                 "statement: the rate is set by the imbalance F^T F - G^T G ~ alpha^2 projected on a subspace the "
                 "dynamics choose; slopes 0 or 1 are excluded).")
def matrix_sensing_rates(ctx: Context) -> Outcome:
    d, r, k, lr = 8, 2, 4, 0.05
    m = ctx.pick(2000, 5000)
    sym_steps, asym_steps = ctx.pick(100_000, 300_000), ctx.pick(20_000, 40_000)
    alphas = np.array([0.05, 0.1, 0.2])
    rng = np.random.default_rng(ctx.seed)
    h_sym = _sensing_operator(d, m, symmetric=True, rng=rng)
    h_asym = _sensing_operator(d, m, symmetric=False, rng=rng)
    basis = np.linalg.qr(rng.standard_normal((d, r)))[0]
    target = basis @ np.diag([1.0, 0.6]) @ basis.T
    # restricted isometry constant on symmetric matrices: eigenvalues of H on the symmetric subspace
    sym_basis = np.stack([((np.eye(d)[i][:, None] * np.eye(d)[j][None, :] + np.eye(d)[j][:, None] * np.eye(d)[i][None, :])
                           / (2 if i == j else math.sqrt(2))).ravel() for i in range(d) for j in range(i, d)], axis=1)
    iso = np.linalg.eigvalsh(sym_basis.T @ h_sym @ sym_basis)
    delta = float(max(iso.max() - 1, 1 - iso.min()))
    init = rng.standard_normal((d, k))
    over = _symmetric_gd(h_sym, target, 0.1 * init, lr, sym_steps)
    exact = _symmetric_gd(h_sym, target, 0.1 * init[:, :r], lr, asym_steps // 4)
    f0, g0 = rng.standard_normal((d, k)), rng.standard_normal((d, k))
    asym = [_asymmetric_gd(h_asym, target, a * f0, a * g0, lr, asym_steps) for a in alphas]
    t_all = np.arange(1, sym_steps + 1, dtype=float)
    tail = slice(sym_steps // 10, sym_steps, max(1, sym_steps // 2000))
    fit_over = fit_rate(t_all[tail], over[tail])
    fit_exact = fit_rate(*_exp_window(exact))
    fits_asym = [fit_rate(*_exp_window(e)) for e in asym]
    prefactor = float(over[-1] / symmetric_overparam_tail(sym_steps, lr=lr, excess_rank=k - r))
    checks = [
        check_at_least("symmetric k > r: log-likelihood ratio polynomial over exponential", -fit_over.log_likelihood_ratio,
                       math.log(100)),
        check_between("symmetric k > r: fitted exponent p of T^-p", fit_over.exponent, 1.8, 2.05),
        check_between("symmetric k > r: T^2 error / ((k-r)/(4 lr^2))", prefactor, (1 + delta) ** -2, (1 - delta) ** -2,
                      detail=f"restricted isometry delta = {delta:.3f}"),
        check_at_least("symmetric k = r: log-likelihood ratio exponential over polynomial", fit_exact.log_likelihood_ratio,
                       math.log(100)),
    ]
    for a, f in zip(alphas, fits_asym):
        checks.append(check_at_least(f"asymmetric k > r, alpha={a:g}: log-likelihood ratio exponential over polynomial",
                                     f.log_likelihood_ratio, math.log(100)))
    rates = np.array([f.rate for f in fits_asym])
    if np.all(rates > 0):
        slope = float(np.polyfit(np.log(alphas), np.log(rates), 1)[0])
        checks.append(check_between("asymmetric: slope of log(rate) vs log(alpha)", slope, 1.5, 2.5))
    else:
        slope = float("nan")
        checks.append(check_undecided("asymmetric: slope of log(rate) vs log(alpha)", None, "in [1.5, 2.5]",
                                      "a fitted rate is not positive"))
    fig, (ax1, ax2) = new_figure(2, width=4.2, height=3.4)
    ax1.loglog(t_all, over, color=MEASURED, label=f"symmetric k={k} > r={r}")
    ax1.loglog(t_all[100:], symmetric_overparam_tail(t_all[100:], lr=lr, excess_rank=k - r), color=PREDICTED, ls="--",
               label="(k-r) / (4 lr^2 T^2)")
    ax1.loglog(np.arange(1, exact.size + 1), exact, color="C2", label=f"symmetric k = r = {r}")
    ax1.set(xlabel="GD step T", ylabel="|X X^T - M*|_F^2", title="symmetric: polynomial vs linear", ylim=(1e-26, 10))
    ax1.legend()
    for i, (a, e) in enumerate(zip(alphas, asym)):
        ax2.semilogy(e, color=f"C{i}", label=f"alpha={a:g}: rate {rates[i]:.2e}")
    ax2.set(xlabel="GD step T", ylabel="|F G^T - M*|_F^2", ylim=(1e-26, 10),
            title=f"asymmetric k={k}: rate ~ alpha^{slope:.2f} (predicted 2)")
    ax2.legend()
    return Outcome(checks, fig, predicted="sym k>r: T^-2, prefactor (k-r)/(4lr^2); k=r: exp; asym: exp, rate ~ alpha^2",
                   measured=f"sym k>r: T^-{fit_over.exponent:.3f}, prefactor ratio {prefactor:.3f}; "
                            f"k=r: exp rate {fit_exact.rate:.3g}; asym rate slope {slope:.2f}",
                   numbers={"exponent": fit_over.exponent, "exponent_stderr": fit_over.exponent_stderr,
                            "prefactor_ratio": prefactor, "delta": delta, "exact_rate": fit_exact.rate,
                            "alphas": alphas, "asym_rates": rates, "slope": slope})
