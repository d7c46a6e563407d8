"""Linear stability of minima under GD and SGD (Wu & Su 2023, "The implicit regularization of
dynamical stability in stochastic gradient descent", ICML).

At a global minimum of the MSE loss that interpolates the data, linear stability of
full-batch GD with step eta only requires lambda_max(H) <= 2/eta, whereas linear stability of SGD
with batch size 1 requires the stricter trace bound tr(H) <= 2/eta (Wu & Su 2023, Theorem 3.3, in
the interpolation regime where the Hessian is the Gauss-Newton matrix).  So minima reached by SGD
satisfy eta tr(H)/2 <= 1, while GD minima may violate it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from theorylab.claims import Context, Outcome, check_at_least, check_at_most, check_undecided, claim
from theorylab.curvature import hessian, top_eigenvalues, trace
from theorylab.data import teacher_student
from theorylab.models import MLP
from theorylab.plotting import PREDICTED, new_figure
from theorylab.metrics import mean_loss
from theorylab.train import train


def _curvature(model: nn.Module, loss_fn: nn.Module, data: tuple, *, exact: bool, seed: int) -> tuple[float, float]:
    """(lambda_max, tr H): exact from the dense Hessian on small models, else Lanczos and Hutch++."""
    op = hessian(model, loss_fn, data)
    if exact:
        eigs = torch.linalg.eigvalsh(op.to_dense().double())
        return float(eigs[-1]), float(eigs.sum())
    lam = float(top_eigenvalues(op, k=1, tol=1e-5, seed=seed).values[0])
    return lam, float(trace(op, num_probes=300, method="hutch++", seed=seed).estimate)


@claim("wu2023.linear_stability",
       title="SGD minima satisfy the trace bound, GD minima only the sharpness bound",
       citation="Wu & Su 2023, ICML (The implicit regularization of dynamical stability in stochastic gradient descent)",
       statement="With MSE at interpolation, minima reached by full-batch GD satisfy lambda_max(H) <= 2/eta, "
                 "minima reached by SGD with batch size 1 satisfy the stricter tr(H) <= 2/eta, and GD minima "
                 "can violate the trace bound.",
       tolerance="Bounds are checked as stated (eta*lambda_max/2 <= 1, eta*tr(H)/2 <= 1) with no slack: the "
                 "curvature at quick scale is exact (dense float64 eigendecomposition). A run counts as at a "
                 "minimum when its full-batch loss is below 1e-3 of the initial loss; SGD runs that diverge "
                 "found no stable minimum at that step size and are reported, not counted.")
def linear_stability(ctx: Context) -> Outcome:
    dim, n, width = 5, ctx.pick(40, 100), ctx.pick(200, 1000)
    gd_steps, sgd_steps = ctx.pick(15000, 60000), ctx.pick(20000, 100000)
    gd_etas = ctx.pick([0.006, 0.011], [0.002, 0.004, 0.006, 0.008, 0.011])
    sgd_etas = ctx.pick([0.004, 0.006], [0.001, 0.002, 0.004, 0.006])
    seeds = ctx.pick([ctx.seed], [ctx.seed + s for s in range(3)])
    exact = ctx.scale == "quick"
    split = teacher_student(n_train=n, n_test=10, dim=dim, teacher="relu_mlp", seed=ctx.seed, dtype=torch.float64)
    data = (split.x_train.to(ctx.device), split.y_train.to(ctx.device))
    mse = nn.MSELoss()
    runs = []
    for optimizer, etas, steps in (("gd", gd_etas, gd_steps), ("sgd", sgd_etas, sgd_steps)):
        for eta in etas:
            for seed in seeds:
                model = MLP(dim, [width], 1, weight_var=2.0, seed=seed).double().to(ctx.device)
                initial = mean_loss(model, mse, data)
                res = train(model, mse, data, steps=steps, lr=eta, optimizer=optimizer,
                            batch_size=None if optimizer == "gd" else 1, seed=seed,
                            stop_loss=1e-7 if optimizer == "gd" else None)
                final = mean_loss(model, mse, data) if not res.diverged else float("inf")
                run = {"optimizer": optimizer, "eta": eta, "seed": seed, "final_loss": final,
                       "converged": bool(np.isfinite(final) and final < 1e-3 * initial)}
                if run["converged"]:
                    lam, tr = _curvature(model, mse, data, exact=exact, seed=seed)
                    run.update(lambda_max=lam, trace=tr, sharpness_ratio=eta * lam / 2, trace_ratio=eta * tr / 2)
                runs.append(run)

    converged = [r for r in runs if r["converged"]]
    gd = [r for r in converged if r["optimizer"] == "gd"]
    sgd = [r for r in converged if r["optimizer"] == "sgd"]
    checks = []
    if gd:
        checks.append(check_at_most("GD minima: max eta*lambda_max/2", max(r["sharpness_ratio"] for r in gd), 1.0))
        checks.append(check_at_least("GD minima can violate the trace bound: max eta*tr(H)/2",
                                     max(r["trace_ratio"] for r in gd), 1.0))
    else:
        checks.append(check_undecided("GD minima", None, "<= 1", "no GD run reached a minimum"))
    if sgd:
        checks.append(check_at_most("SGD (B=1) minima: max eta*tr(H)/2", max(r["trace_ratio"] for r in sgd), 1.0))
    else:
        checks.append(check_undecided("SGD minima", None, "<= 1", "no SGD run reached a minimum"))

    fig, ax = new_figure(width=4.5, height=3.6)
    for group, marker, label in ((gd, "o", "GD"), (sgd, "s", "SGD, B=1")):
        ax.scatter([r["sharpness_ratio"] for r in group], [r["trace_ratio"] for r in group], marker=marker,
                   label=label, s=40)
    ax.axvline(1.0, color=PREDICTED, ls="--", lw=1, label="GD bound: eta*lambda_max/2 = 1")
    ax.axhline(1.0, color=PREDICTED, ls=":", lw=1.2, label="SGD bound: eta*tr(H)/2 = 1")
    ax.set(xlabel="eta * lambda_max / 2", ylabel="eta * tr(H) / 2", title="curvature of the minima reached")
    ax.legend()
    diverged = [f"{r['optimizer']} eta={r['eta']}" for r in runs if not r["converged"]]
    measured = (f"GD: eta*lmax/2 <= {max((r['sharpness_ratio'] for r in gd), default=float('nan')):.2f}, "
                f"eta*tr/2 up to {max((r['trace_ratio'] for r in gd), default=float('nan')):.2f}; "
                f"SGD: eta*tr/2 <= {max((r['trace_ratio'] for r in sgd), default=float('nan')):.2f}")
    notes = f"Runs that found no stable minimum: {', '.join(diverged)}." if diverged else ""
    return Outcome(checks, fig, predicted="GD: eta*lmax/2 <= 1; SGD(B=1): eta*tr/2 <= 1", measured=measured,
                   numbers={"runs": runs, "n": n, "width": width, "dim": dim}, notes=notes)
