"""Depth-independent learning of deep linear networks from orthogonal, task-aligned initial conditions (Saxe,
McClelland & Ganguli 2014, "Exact solutions to the nonlinear dynamics of learning in deep linear neural networks",
ICLR, Sec. 5).

With the learning rate scaled like 1/D, a deep linear network whose layers start orthogonal and aligned with the
task (the decoupled conditions that pretraining provides) learns each mode in a time given by
``tau du/dt = D u^(2-2/D) (s - u)`` (:func:`theorylab.theory.deep_mode_learning_time`), which converges as the
depth D grows; started from small random Gaussian weights, the network sits on a plateau that lengthens with
depth.
"""
from __future__ import annotations

import math

import numpy as np

from theorylab.claims import (Context, Judgement, Mutation, bound, claim, effect, mean_and_stderr, precondition,
                              tolerance)
from theorylab.claims.figures import legend_outside, log_axis, measured_shades, prediction
from theorylab.plotting import new_figure
from theorylab.theory import deep_mode_learning_time

SINGULAR = np.array([3.0, 2.5, 2.0, 1.5])   # the task's singular values
C = 0.02                                     # learning rate c / D
FRACTION = 0.9                               # a mode is learned when u reaches 90% of s
GAUSSIAN = 0.6                               # per-layer scale of the small random initialisation
LONGER = math.log(2.0)                       # declared: the plateau at least doubles from D = 2 to D = 8


def _orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _train(layers: list[np.ndarray], target: np.ndarray, *, steps: int, readout) -> tuple[np.ndarray, float]:
    """GD with step ``C / D`` on ``1/2 |W_D ... W_1 - target|_F^2`` (whitened inputs); returns ``readout(product)`` at
    every step (stopping early once every entry of the last one is >= FRACTION) and the final loss."""
    depth, n = len(layers), target.shape[0]
    lr = C / depth
    history = []
    for _ in range(steps + 1):
        prefix = [np.eye(n)]
        for w in layers:
            prefix.append(w @ prefix[-1])
        history.append(readout(prefix[-1]))
        if np.all(history[-1] >= FRACTION):
            break
        error = prefix[-1] - target
        suffix = np.eye(n)
        grads = [None] * depth
        for layer in range(depth - 1, -1, -1):
            grads[layer] = suffix.T @ error @ prefix[layer].T
            suffix = suffix @ layers[layer]
        for layer in range(depth):
            layers[layer] = layers[layer] - lr * grads[layer]
    return np.array(history), float(0.5 * np.sum((prefix[-1] - target) ** 2))


def _first_hit(history: np.ndarray) -> np.ndarray:
    """Per column, the first step at which it reaches FRACTION (inf if never)."""
    hit = history >= FRACTION
    return np.where(hit.any(axis=0), hit.argmax(axis=0), np.inf).astype(float)


def measure_depth(ctx: Context) -> dict:
    seeds, n = ctx.seeds(3, 5), len(SINGULAR)
    depths, gaussian_depths = ctx.pick([2, 4, 8, 16], [2, 4, 8, 16, 32, 64]), ctx.pick([2, 4, 8], [2, 4, 8, 16])
    cap, aligned_cap = ctx.pick(4000, 100_000), ctx.pick(500, 5000)  # the aligned runs need ~50 steps
    aligned, plateau = [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        u, v = _orthogonal(n, rng), _orthogonal(n, rng)
        target = u @ np.diag(SINGULAR) @ v.T               # Sigma_yx = U S V^T in a random basis
        times = []
        for depth in depths:
            if ctx.control:  # control: small random Gaussian layers instead of orthogonal, aligned ones
                layers = [GAUSSIAN * rng.standard_normal((n, n)) / math.sqrt(n) for _ in range(depth)]
            else:            # orthogonal layers R_{l+1} R_l^T with R_1 = V and R_{D+1} = U: mode strengths start at 1
                bases = [v] + [_orthogonal(n, rng) for _ in range(depth - 1)] + [u]
                layers = [bases[i + 1] @ bases[i].T for i in range(depth)]
            history, _ = _train(layers, target, steps=aligned_cap, readout=lambda p: np.diag(u.T @ p @ v) / SINGULAR)
            times.append(_first_hit(history))
        aligned.append(times)
        loss_times = []
        for depth in gaussian_depths:
            layers = [GAUSSIAN * rng.standard_normal((n, n)) / math.sqrt(n) for _ in range(depth)]
            start = 0.5 * float(np.sum(target ** 2))
            history, _ = _train(layers, target, steps=cap, readout=lambda p: np.atleast_1d(
                1.0 - 0.5 * np.sum((p - target) ** 2) / start))  # fraction of the initial loss removed
            loss_times.append(float(_first_hit(history)[0]))
        plateau.append(loss_times)
    return {"seeds": seeds, "singular_values": SINGULAR, "c": C, "depths": depths, "gaussian_depths": gaussian_depths,
            "cap": cap, "aligned_cap": aligned_cap, "aligned_times": np.array(aligned),
            "gaussian_times": np.array(plateau), "control": ctx.control}


def judge_depth(m: dict, p) -> Judgement:
    depths, s = list(m["depths"]), np.asarray(m["singular_values"])
    times = np.asarray(m["aligned_times"])                 # seed x depth x mode
    gauss = np.asarray(m["gaussian_times"])                # seed x depth
    learned = bool(np.all(np.isfinite(times)))
    checks = [precondition("every mode of every aligned run reaches 90% of its singular value", learned,
                           requirement=f"within {m['aligned_cap']} steps")]
    predicted = np.array([[p.time(si, depth=d, u0=1.0, uf=FRACTION * si, tau=d / m["c"]) for si in s] for d in depths])
    worst = float(np.max(np.abs(times - predicted[None]) / (1.0 + m["c"] * s.max() * predicted[None]))) \
        if learned else float("inf")
    slowest = times.max(axis=2)                            # seed x depth: the time to learn every mode
    with np.errstate(invalid="ignore"):
        late = np.log(slowest[:, -1] / slowest[:, -2]) / math.log(depths[-1] / depths[-2])
    capped = np.where(np.isfinite(gauss), gauss, float(m["cap"]))  # a run still on its plateau counts as the cap
    longer, longer_se = mean_and_stderr(np.log(capped[:, -1] / capped[:, 0]))
    checks += [
        tolerance("aligned: max over depths and modes of |t_measured - t_ODE| / (1 step + c s_max t_ODE)",
                  worst if math.isfinite(worst) else 1e9, 0.0, 1.0,
                  source="one step of resolution plus Euler's error: the largest relative change of u per step, "
                         "c s_max, times the time"),
        bound(f"aligned: exponent of the learning time in depth between D = {depths[-2]} and {depths[-1]}, worst seed",
              float(np.max(np.abs(late))) if learned else 1e9, upper=0.25,
              detail="depth-independent: less than a quarter power of the depth (declared in advance)"),
        effect(f"Gaussian (scale {GAUSSIAN}): log(time to remove 90% of the loss at D = {m['gaussian_depths'][-1]} / "
               f"at D = {m['gaussian_depths'][0]}), over seeds", longer, longer_se, smallest=LONGER,
               source="declared in advance: an effect below a factor 2 would refute it"),
    ]
    return Judgement(checks, predicted="aligned orthogonal layers: times from tau du/dt = D u^(2-2/D)(s-u), converging "
                                       "in D; small Gaussian layers: plateau grows with D",
                     measured=f"aligned: worst deviation {worst:.2f} of the tolerance, time to learn every mode "
                              f"{slowest.mean(axis=0).round(1).tolist()} at D = {depths}; Gaussian: "
                              f"x{math.exp(longer):.3g} "
                              f"from D = {m['gaussian_depths'][0]} to {m['gaussian_depths'][-1]}",
                     per_seed={"seed": list(m["seeds"]),
                               **{f"aligned D={d}": slowest[:, j].tolist() for j, d in enumerate(depths)},
                               **{f"Gaussian D={d}": capped[:, j].tolist() for j, d in enumerate(m["gaussian_depths"])}},
                     rule="each seed draws the task's bases and the layers; aligned runs must match the ODE in every "
                          "seed; the Gaussian plateau is an effect over seeds (runs still on the plateau at the cap "
                          "count as the cap, which can only shrink the effect).")


def figure_depth(m: dict, p):
    fig, (ax_a, ax_g) = new_figure(ncols=2, width=3.8, height=3.3)
    depths, s = np.asarray(m["depths"], dtype=float), np.asarray(m["singular_values"])
    times = np.asarray(m["aligned_times"])
    grid = np.unique(np.geomspace(depths.min(), depths.max(), 30).round().astype(int))
    for i, colour in enumerate(measured_shades(len(s))):
        ax_a.plot(depths, times[:, :, i].mean(axis=0), "o", ms=4, color=colour, label=f"mode $s = {s[i]:g}$")
        prediction(ax_a, grid, [p.time(s[i], depth=int(d), u0=1.0, uf=FRACTION * s[i], tau=d / m["c"]) for d in grid],
                   label="ODE (prediction)" if i == 0 else None, lw=1)
    log_axis(ax_a, "x", ticks=list(depths))
    ax_a.set(xlabel="depth $D$ (lr = c / D)", ylabel="steps to 90% of $s$",
             title="Gaussian layers (control)" if m.get("control") else "orthogonal, aligned layers")
    legend_outside(ax_a, ncol=2)
    gd = np.asarray(m["gaussian_depths"], dtype=float)
    gauss = np.where(np.isfinite(m["gaussian_times"]), m["gaussian_times"], m["cap"])
    for i, colour in enumerate(measured_shades(len(m["seeds"]))):
        ax_g.plot(gd, gauss[i], "o-", ms=3, color=colour, label=f"seed {m['seeds'][i]}")
    start = float(np.exp(np.mean(np.log(gauss[:, 0]))))
    prediction(ax_g, [gd[0], gd[-1]], [start, start * math.exp(LONGER)], label="smallest predicted growth")
    log_axis(ax_g, "x", ticks=list(gd))
    log_axis(ax_g, "y")
    ax_g.set(xlabel="depth $D$ (lr = c / D)", ylabel="steps to remove 90% of the loss",
             title=f"small Gaussian layers (scale {GAUSSIAN})")
    legend_outside(ax_g, ncol=2)
    return fig


claim("saxe2014.depth_independent_learning",
      title="Deep linear networks from orthogonal, aligned layers learn in a depth-independent time",
      citation="Saxe, McClelland & Ganguli 2014, ICLR (Exact solutions to the nonlinear dynamics of learning in deep "
               "linear neural networks), Sec. 5",
      statement="With the learning rate scaled like 1/D, a deep linear network started from orthogonal layers aligned "
                "with the task (as after pretraining) learns every mode in the time of tau du/dt = D u^(2-2/D)(s - u), "
                "which converges as the depth grows; from small random Gaussian weights the plateau before learning "
                "lengthens with depth.",
      tolerance="Whitened inputs, Sigma_yx = U diag(3, 2.5, 2, 1.5) V^T in a random basis per seed (3 seeds), GD with "
                "step 0.02/D. Orthogonal aligned layers (R_{l+1} R_l^T, mode strengths 1) at D = 2, 4, 8, 16: each "
                "mode's steps to 90% of s must match the ODE within one step plus Euler's error (the largest relative "
                "change of u per step, c s_max, times the time), within 500 steps; and between D = 8 and 16 the "
                "time must grow by less "
                "than a quarter power of D (declared). Gaussian layers (scale 0.6, D = 2, 4, 8): the steps to remove "
                "90% of the loss must grow, an effect over seeds refuted below a factor 2 (declared); runs still on "
                "their plateau at 4,000 steps count as 4,000.",
      control="small random Gaussian layers in place of the orthogonal, aligned ones",
      predictions={"time": deep_mode_learning_time},
      measure=measure_depth, judge=judge_depth, figure=figure_depth,
      mutations=[
          Mutation("the two-layer ODE at every depth", predictions={
              "time": lambda s, *, depth, **kw: deep_mode_learning_time(s, depth=2, **kw) * 2 / depth}),
          Mutation("learning time growing like D^0.5", numbers=lambda m: {
              **m, "aligned_times": np.asarray(m["aligned_times"]) * np.sqrt(np.asarray(m["depths"]))[None, :, None]}),
          Mutation("no plateau growth", numbers=lambda m: {
              **m, "gaussian_times": np.repeat(np.asarray(m["gaussian_times"])[:, :1], len(m["gaussian_depths"]),
                                               axis=1)}),
          Mutation("a mode never learned", numbers=lambda m: {
              **m, "aligned_times": np.where(np.arange(np.asarray(m["aligned_times"]).size).reshape(
                  np.shape(m["aligned_times"])) == 0, np.inf, np.asarray(m["aligned_times"]))}),
      ])
