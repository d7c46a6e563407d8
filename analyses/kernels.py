"""Neural tangent kernel: convergence at initialisation and constancy during training
(Jacot, Gabriel & Hongler 2018, "Neural tangent kernel: convergence and generalization in neural
networks", NeurIPS; Lee et al. 2019, "Wide neural networks of any depth evolve as linear models
under gradient descent", NeurIPS).

In NTK parametrization the empirical NTK of an MLP converges, as the width n grows, to the
deterministic kernel of the infinite-width recursion (Jacot et al. 2018, Theorem 1), with
fluctuations of order n^(-1/2) (each entry is an average over n units).  During gradient descent
the kernel stays constant in the limit (Theorem 2); at finite width its relative change is of
order n^(-1/2) (Lee et al. 2019, Theorem 2.1, and Eq. S43), and the trained network follows the
linearised model, i.e. kernel regression with the initial NTK.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from theorylab.claims import Context, Outcome, check_at_most, check_close, claim
from theorylab.data import teacher_student
from theorylab.kernels import analytic_ntk, empirical_ntk, linearized_gd
from theorylab.models import MLP
from theorylab.plotting import MEASURED, PREDICTED, new_figure
from theorylab.rates import line_fit
from theorylab.train import train


def _sphere_inputs(n: int, dim: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True) * math.sqrt(dim)


@claim("jacot2018.ntk_convergence",
       title="The empirical NTK converges to the analytic kernel as width grows",
       citation="Jacot, Gabriel & Hongler 2018, NeurIPS (Neural tangent kernel), Theorem 1",
       statement="For a ReLU MLP in NTK parametrization at initialisation, the relative Frobenius error between "
                 "the empirical NTK and the infinite-width NTK decays like width^(-1/2).",
       tolerance="Fitted exponent within 0.1 + 2 standard errors of -0.5. The standard error of the log-log "
                 "slope comes from the seed-to-seed spread of the random networks; the extra 0.1 allows for the "
                 "O(1/width) corrections that bend the curve at the smallest widths. The error is computed in "
                 "float64 so round-off (1e-15) plays no role.")
def ntk_convergence(ctx: Context) -> Outcome:
    widths = ctx.pick([64, 128, 256, 512, 1024, 2048], [128, 256, 512, 1024, 2048, 4096, 8192])
    seeds = ctx.pick(4, 10)
    depth, sw2, sb2 = 2, 2.0, 0.1
    x = _sphere_inputs(ctx.pick(8, 32), 10, ctx.seed)
    exact = analytic_ntk(x, depth=depth, activation="relu", weight_var=sw2, bias_var=sb2)
    points_w, points_e = [], []
    for width in widths:
        for s in range(seeds):
            model = MLP(10, [width] * depth, 1, parametrization="ntk", weight_var=sw2,
                        bias_var=sb2, seed=ctx.seed * 1000 + s * 7919 + width).double().to(ctx.device)
            k = torch.from_numpy(empirical_ntk(model, x.to(ctx.device)).kernel)
            points_w.append(width)
            points_e.append(float(torch.linalg.norm(k - exact) / torch.linalg.norm(exact)))
    w_arr, e_arr = np.array(points_w, dtype=float), np.array(points_e)
    intercept, slope, stderr, _ = line_fit(np.log(w_arr), np.log(e_arr))
    means = np.array([e_arr[w_arr == w].mean() for w in widths])

    fig, ax = new_figure()
    ax.loglog(w_arr, e_arr, "o", color=MEASURED, alpha=0.35, ms=3)
    ax.loglog(widths, means, "o-", color=MEASURED, label=f"measured (fit exponent {slope:.3f} ± {stderr:.3f})")
    ref = means[0] * (np.asarray(widths) / widths[0]) ** -0.5
    ax.loglog(widths, ref, "--", color=PREDICTED, label="prediction: width^(-1/2)")
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.minorticks_off()
    ax.set(xlabel="width", ylabel="||K_emp - K_inf||_F / ||K_inf||_F", title="NTK at initialisation")
    ax.legend(loc="lower left")
    check = check_close("fitted exponent of the relative NTK error", slope, -0.5, atol=0.1 + 2 * stderr,
                        detail=f"standard error {stderr:.3f} from {len(e_arr)} networks")
    return Outcome([check], fig, predicted="relative error ~ width^(-0.5)",
                   measured=f"exponent {slope:.3f} ± {stderr:.3f}",
                   numbers={"widths": list(widths), "seeds": seeds, "errors": e_arr, "error_widths": w_arr,
                            "mean_error": means, "exponent": slope, "exponent_stderr": stderr})


@claim("jacot2018.lazy_training",
       title="The NTK stays constant during training as width grows (lazy training)",
       citation="Jacot, Gabriel & Hongler 2018, NeurIPS, Theorem 2; Lee et al. 2019, NeurIPS, Theorem 2.1",
       statement="Under full-batch gradient descent in NTK parametrization, the relative change of the NTK from "
                 "initialisation to the end of training decays like width^(-1/2), and the trained wide network "
                 "predicts like the linearised model (kernel regression with the initial NTK).",
       tolerance="Fitted exponent of the kernel change within 0.15 + 2 standard errors of -0.5 (standard error "
                 "from the seed-to-seed spread; 0.15 for O(1/width) corrections, which are larger after training "
                 "than at initialisation). At the widest width the relative RMS difference between the network's "
                 "and the linearised model's test predictions must be at most 0.1: it is itself O(width^(-1/2)) "
                 "(Lee et al. 2019, Theorem 2.1), a few percent expected at width 4096 for O(1) constants. Float32 "
                 "round-off (1e-6 relative) is far below the kernel changes measured (>= 1e-3).")
def lazy_training(ctx: Context) -> Outcome:
    widths = ctx.pick([256, 512, 1024, 2048, 4096], [512, 1024, 2048, 4096, 8192, 16384])
    seeds = ctx.pick(3, 8)
    depth, steps = 1, ctx.pick(100, 1000)
    split = teacher_student(n_train=ctx.pick(32, 128), n_test=ctx.pick(32, 128), dim=8, teacher="relu_mlp",
                            seed=ctx.seed, dtype=torch.float32)
    x, y, x_test = split.x_train.to(ctx.device), split.y_train.to(ctx.device), split.x_test.to(ctx.device)
    # step size: GD on MSELoss contracts the residual by I - (2 lr / N) Theta; put the top mode at 1
    # (the middle of the stable range (0, 2)) using the infinite-width kernel
    top = float(torch.linalg.eigvalsh(analytic_ntk(split.x_train, depth=depth, weight_var=2.0))[-1])
    lr = len(y) / (2 * top)
    mse = nn.MSELoss()
    changes, change_w, pred_gap, final_loss = [], [], {}, {}
    for width in widths:
        gaps = []
        for s in range(seeds):
            model = MLP(8, [width] * depth, 1, parametrization="ntk", weight_var=2.0,
                        seed=ctx.seed * 1000 + s * 7919 + width).to(ctx.device)
            k0 = torch.from_numpy(empirical_ntk(model, x).kernel)
            k0_star = torch.from_numpy(empirical_ntk(model, x_test, x).kernel)
            with torch.no_grad():
                f0, f0_test = model(x), model(x_test)
            _, lin_test = linearized_gd(k0.cpu(), k0_star.cpu(), y.cpu(), lr=lr, steps=steps, f0_train=f0.cpu(),
                                        f0_test=f0_test.cpu())
            run = train(model, mse, (x, y), steps=steps, lr=lr)
            k_end = torch.from_numpy(empirical_ntk(model, x).kernel)
            changes.append(float(torch.linalg.norm(k_end - k0) / torch.linalg.norm(k0)))
            change_w.append(width)
            with torch.no_grad():
                net_test = model(x_test).cpu()
            gaps.append(float(torch.linalg.norm(net_test - lin_test) / torch.linalg.norm(lin_test)))
            final_loss.setdefault(width, []).append(float(run.loss[-1]))
        pred_gap[width] = float(np.mean(gaps))
    w_arr, c_arr = np.array(change_w, dtype=float), np.array(changes)
    _, slope, stderr, _ = line_fit(np.log(w_arr), np.log(c_arr))
    means = np.array([c_arr[w_arr == w].mean() for w in widths])

    fig, (ax_k, ax_p) = new_figure(ncols=2, width=4.2)
    ax_k.loglog(w_arr, c_arr, "o", color=MEASURED, alpha=0.35, ms=3)
    ax_k.loglog(widths, means, "o-", color=MEASURED, label=f"measured (exponent {slope:.3f} ± {stderr:.3f})")
    ax_k.loglog(widths, means[0] * (np.asarray(widths) / widths[0]) ** -0.5, "--", color=PREDICTED,
                label="prediction: width^(-1/2)")
    ax_k.set(xlabel="width", ylabel="||K_T - K_0||_F / ||K_0||_F", title=f"kernel change after {steps} GD steps")
    ax_k.legend(loc="lower left")
    ax_p.loglog(widths, [pred_gap[w] for w in widths], "o-", color=MEASURED, label="network vs linearised model")
    ax_p.axhline(0.1, color=PREDICTED, ls="--", label="tolerance at the widest width")
    ax_p.set(xlabel="width", ylabel="relative test-prediction difference", title="trained net vs kernel regression")
    ax_p.legend()
    for axis in (ax_k, ax_p):
        axis.set_xticks(widths, [str(w) for w in widths], minor=False)
        axis.minorticks_off()
    widest = widths[-1]
    checks = [check_close("fitted exponent of the relative NTK change", slope, -0.5, atol=0.15 + 2 * stderr,
                          detail=f"standard error {stderr:.3f} from {len(c_arr)} runs"),
              check_at_most(f"width {widest}: network vs linearised model (relative RMS, test)",
                            pred_gap[widest], 0.1)]
    return Outcome(checks, fig, predicted="kernel change ~ width^(-0.5); network ≈ linearised model at large width",
                   measured=f"exponent {slope:.3f} ± {stderr:.3f}; prediction gap {pred_gap[widest]:.3f} at width {widest}",
                   numbers={"widths": list(widths), "kernel_change": c_arr, "change_widths": w_arr,
                            "mean_change": means, "lr": lr, "exponent": slope, "exponent_stderr": stderr,
                            "prediction_gap": {str(k): v for k, v in pred_gap.items()},
                            "final_loss": {str(k): float(np.mean(v)) for k, v in final_loss.items()}})
