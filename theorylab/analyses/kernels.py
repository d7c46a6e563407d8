"""Neural tangent kernel: convergence at initialisation and constancy during training
(Jacot, Gabriel & Hongler 2018, "Neural tangent kernel: convergence and generalization in neural
networks", NeurIPS; Lee et al. 2019, "Wide neural networks of any depth evolve as linear models
under gradient descent", NeurIPS).

In NTK parametrization the empirical NTK of an MLP converges, as the width n grows, to the
deterministic kernel of the infinite-width recursion, with fluctuations of order n^(-1/2).  During
gradient descent the kernel stays within O(n^(-1/2)) of its initial value, and the trained network
follows the linearised model (kernel regression with the initial NTK) to the same order.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from theorylab.claims import Context, Judgement, Mutation, bound, claim, tolerance
from theorylab.claims.figures import band, legend_outside, log_axis, prediction
from theorylab.data import teacher_student
from theorylab.kernels import analytic_ntk, empirical_ntk, linearized_gd
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.rates import line_fit
from theorylab.theory import lazy_change_exponent_bound, ntk_fluctuation_exponent
from theorylab.train import train


def _sphere_inputs(n: int, dim: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True) * math.sqrt(dim)


def _kernel(model: nn.Module, x: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
    """The empirical NTK of ``model`` (mean over outputs) as a CPU tensor."""
    return torch.from_numpy(empirical_ntk(model, x, x2).kernel)


def _slope(widths: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Log-log slope of ``values`` (networks x widths) against width, with its standard error."""
    w = np.repeat(np.asarray(widths, dtype=float)[None, :], values.shape[0], axis=0)
    _, slope, stderr, _ = line_fit(np.log(w.ravel()), np.log(values.ravel()))
    return float(slope), float(stderr)


def _reference_line(ax, widths, means, exponent: float, label: str) -> None:
    widths = np.asarray(widths, dtype=float)
    prediction(ax, widths, means[0] * (widths / widths[0]) ** exponent, label=label)


# ---------------------------------------------------------------------------------------------
# 1. Convergence at initialisation
# ---------------------------------------------------------------------------------------------
def measure_ntk_convergence(ctx: Context) -> dict:
    widths = ctx.pick([64, 128, 256, 512, 1024, 2048], [128, 256, 512, 1024, 2048, 4096, 8192])
    seeds = ctx.seeds(4, 10)
    depth, sw2, sb2 = 2, 2.0, 0.1
    # control: standard parametrization, whose kernel grows with the width instead of converging
    parametrization = "sp" if ctx.control else "ntk"
    x = _sphere_inputs(ctx.pick(8, 32), 10, ctx.seed)
    exact = analytic_ntk(x, depth=depth, activation="relu", weight_var=sw2, bias_var=sb2)
    errors = np.zeros((len(seeds), len(widths)))
    for j, width in enumerate(widths):
        for i, seed in enumerate(seeds):
            model = MLP(10, [width] * depth, 1, parametrization=parametrization, weight_var=sw2, bias_var=sb2,
                        seed=seed * 1000 + i * 7919 + width).double().to(ctx.device)
            k = _kernel(model, x.to(ctx.device))
            errors[i, j] = float(torch.linalg.norm(k - exact) / torch.linalg.norm(exact))
    return {"widths": widths, "seeds": seeds, "parametrization": parametrization, "errors": errors}


def judge_ntk_convergence(m: dict, p) -> Judgement:
    slope, stderr = _slope(m["widths"], np.asarray(m["errors"]))
    check = tolerance("fitted exponent of the relative NTK error", slope, p.exponent(), 0.1 + 2 * stderr,
                      source="2 standard errors of the log-log slope (seed-to-seed spread of the networks) plus 0.1 "
                             "for the O(1/width) corrections that bend the curve at the smallest widths")
    return Judgement([check], predicted=f"relative error ~ width^({p.exponent():g})",
                     measured=f"exponent {slope:.3f} ± {stderr:.3f}",
                     rule=f"one log-log fit over all {np.asarray(m['errors']).size} networks "
                          f"({len(m['seeds'])} per width); its standard error comes from their spread.")


def figure_ntk_convergence(m: dict, p):
    widths, errors = np.asarray(m["widths"]), np.asarray(m["errors"])
    fig, ax = new_figure(width=4.2, height=3.2)
    band(ax, widths, errors, errorbars=True, label=f"measured, {errors.shape[0]} networks per width (mean ± 2 s.e.)")
    _reference_line(ax, widths, errors.mean(axis=0), p.exponent(), label=r"prediction $\propto n^{-1/2}$")
    ax.set(xlabel="width $n$", ylabel=r"$\|K_n - K_\infty\|_F / \|K_\infty\|_F$", title="NTK at initialisation")
    log_axis(ax, "x", ticks=list(widths))
    log_axis(ax, "y")
    legend_outside(ax, ncol=1)
    return fig


claim("jacot2018.ntk_convergence",
      title="The empirical NTK converges to the analytic kernel as width grows",
      citation="Jacot, Gabriel & Hongler 2018, NeurIPS (Neural tangent kernel), Theorem 1",
      statement="For a ReLU MLP in NTK parametrization at initialisation, the relative Frobenius error between the "
                "empirical NTK and the infinite-width NTK decays like width^(-1/2).",
      tolerance="Fitted exponent within 0.1 + 2 standard errors of -0.5. The standard error of the log-log slope comes "
                "from the seed-to-seed spread of the random networks (4 per width quick, 10 full); the extra 0.1 "
                "allows for the O(1/width) corrections that bend the curve at the smallest widths. The error is "
                "computed in float64 so round-off (1e-15) plays no role.",
      control="standard parametrization: its kernel grows with the width instead of converging to the NTK limit",
      predictions={"exponent": ntk_fluctuation_exponent},
      measure=measure_ntk_convergence, judge=judge_ntk_convergence, figure=figure_ntk_convergence,
      mutations=[
          Mutation("predicted exponent -1", predictions={"exponent": lambda: -1.0}),
          Mutation("empirical kernel biased (an error floor as large as the largest error)",
                   numbers=lambda m: {**m, "errors": np.asarray(m["errors"]) + np.max(m["errors"])}),
      ])


# ---------------------------------------------------------------------------------------------
# 2. Lazy training
# ---------------------------------------------------------------------------------------------
def measure_lazy_training(ctx: Context) -> dict:
    widths = ctx.pick([256, 512, 1024, 2048, 4096], [512, 1024, 2048, 4096, 8192, 16384])
    seeds = ctx.seeds(3, 8)
    depth, steps = 1, ctx.pick(100, 1000)
    split = teacher_student(num_train=ctx.pick(32, 128), num_test=ctx.pick(32, 128), dim=8, teacher="relu_mlp",
                            seed=ctx.seed, dtype=torch.float32)
    x, y, x_test = split.x_train.to(ctx.device), split.y_train.to(ctx.device), split.x_test.to(ctx.device)
    # step size: GD on MSELoss contracts the residual by I - (2 lr / N) Theta; put the top mode at 1
    # (the middle of the stable range (0, 2)) using the infinite-width kernel
    top = float(torch.linalg.eigvalsh(analytic_ntk(split.x_train, depth=depth, weight_var=2.0))[-1])
    base_lr = len(y) / (2 * top)
    mse = nn.MSELoss()
    change, gap = np.zeros((len(seeds), len(widths))), np.zeros((len(seeds), len(widths)))
    for j, width in enumerate(widths):
        # control: mean-field scaling, output x (w0/n)^(1/2) and step x n/w0: the same function-space speed,
        # but the features move O(1) at every width
        alpha = math.sqrt(widths[0] / width) if ctx.control else 1.0
        lr = base_lr / alpha ** 2
        for i, seed in enumerate(seeds):
            model = MLP(8, [width] * depth, 1, parametrization="ntk", weight_var=2.0, output_multiplier=alpha,
                        seed=seed * 1000 + i * 7919 + width).to(ctx.device)
            k0, k0_star = _kernel(model, x), _kernel(model, x_test, x)
            with torch.no_grad():
                f0, f0_test = model(x), model(x_test)
            _, lin_test = linearized_gd(k0.cpu(), k0_star.cpu(), y.cpu(), lr=lr, steps=steps, f0_train=f0.cpu(),
                                        f0_test=f0_test.cpu())
            train(model, mse, (x, y), steps=steps, lr=lr)
            change[i, j] = float(torch.linalg.norm(_kernel(model, x) - k0) / torch.linalg.norm(k0))
            with torch.no_grad():
                net_test = model(x_test).cpu()
            gap[i, j] = float(torch.linalg.norm(net_test - lin_test) / torch.linalg.norm(lin_test))
    return {"widths": widths, "seeds": seeds, "steps": steps, "kernel_change": change, "prediction_gap": gap,
            "mean_field": ctx.control}


def judge_lazy_training(m: dict, p) -> Judgement:
    change, gap = np.asarray(m["kernel_change"]), np.asarray(m["prediction_gap"])
    slope, stderr = _slope(m["widths"], change)
    gap_slope, gap_stderr = _slope(m["widths"], gap)
    source = "2 standard errors of the log-log slope (seed-to-seed spread)"
    checks = [
        bound("exponent of the relative NTK change during training", slope, upper=p.exponent(), slack=2 * stderr,
              source=source, detail="Lee et al.: O(width^-1/2) is an upper bound, faster decay is consistent"),
        bound("exponent of the network's distance to the linearised model (test predictions)", gap_slope,
              upper=p.exponent(), slack=2 * gap_stderr, source=source,
              detail="Lee et al. 2019, Theorem 2.1: the trained network is within O(width^-1/2) of the linearised one"),
    ]
    return Judgement(checks, predicted=f"kernel change and distance to the linearised model O(width^({p.exponent():g}))",
                     measured=f"kernel change ~ width^({slope:.2f} ± {stderr:.2f}); distance ~ width^({gap_slope:.2f} ± "
                              f"{gap_stderr:.2f})",
                     rule=f"one log-log fit over all {change.size} runs ({len(m['seeds'])} seeds per width); its "
                          "standard error comes from their spread.")


def figure_lazy_training(m: dict, p):
    widths = np.asarray(m["widths"])
    fig, (ax_k, ax_p) = new_figure(ncols=2, width=3.8, height=3.2)
    for ax, key, label in ((ax_k, "kernel_change", r"$\|K_T - K_0\|_F / \|K_0\|_F$"),
                           (ax_p, "prediction_gap", r"$\|f_T - f^{\rm lin}_T\| / \|f^{\rm lin}_T\|$ (test)")):
        values = np.asarray(m[key])
        band(ax, widths, values, errorbars=True, label="measured (mean ± 2 s.e.)")
        _reference_line(ax, widths, values.mean(axis=0), p.exponent(), label=r"bound's slope $n^{-1/2}$")
        ax.set(xlabel="width $n$", ylabel=label)
        log_axis(ax, "x", ticks=list(widths))
        log_axis(ax, "y")
        legend_outside(ax, ncol=1)
    ax_k.set_title(f"kernel change after {m['steps']} GD steps")
    ax_p.set_title("trained network vs linearised model")
    return fig


def _flat_in_width(key: str):
    return lambda m: {**m, key: np.repeat(np.asarray(m[key])[:, :1], len(m["widths"]), axis=1)}


claim("jacot2018.lazy_training",
      title="The NTK stays constant during training as width grows (lazy training)",
      citation="Jacot, Gabriel & Hongler 2018, NeurIPS, Theorem 2; Lee et al. 2019, NeurIPS, Theorem 2.1",
      statement="Under full-batch gradient descent in NTK parametrization, the relative change of the NTK from "
                "initialisation to the end of training is O(width^(-1/2)), and so is the distance between the trained "
                "network's predictions and the linearised model's (kernel regression with the initial NTK).",
      tolerance="Both are upper bounds: the fitted log-log exponents must be at most -1/2, with a slack of 2 standard "
                "errors of the fit (seed-to-seed spread over 3 seeds quick, 8 full). A faster decay (a lazier "
                "network, e.g. tanh) is consistent with the bound. Float32 round-off (1e-6 relative) is far below the "
                "changes measured (>= 1e-3).",
      control="mean-field scaling (output x (n0/n)^(1/2), step x n/n0): features move at every width, the kernel "
              "keeps changing",
      predictions={"exponent": lazy_change_exponent_bound},
      measure=measure_lazy_training, judge=judge_lazy_training, figure=figure_lazy_training,
      mutations=[
          Mutation("bound O(width^-1)", predictions={"exponent": lambda: -1.0}),
          Mutation("kernel change flat in width", numbers=_flat_in_width("kernel_change")),
          Mutation("distance to the linearised model flat in width", numbers=_flat_in_width("prediction_gap")),
      ])
