"""Edge of stability (Cohen, Kaur, Li, Kolter & Talwalkar 2021, "Gradient descent on neural networks
typically occurs at the edge of stability", ICLR).

Under full-batch gradient descent with step size eta, the sharpness lambda_max of the training-loss
Hessian first rises (progressive sharpening) until it reaches the stability threshold 2/eta of
a quadratic, and then hovers just above 2/eta while the loss keeps decreasing non-monotonically.
2/eta is the classical stability bound of GD on a quadratic with curvature lambda_max.
"""
from __future__ import annotations

import numpy as np
from torch import nn

from theorylab.claims import Context, Outcome, check_at_least, check_between, check_undecided, claim
from theorylab.data import load_digits
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.sharpness import sharpness_monitor
from theorylab.train import train

REACHED = 0.95  # sharpness counts as having reached 2/eta at 95% of it (monitoring is every k steps)


def _eos_phase(steps: np.ndarray, sharp: np.ndarray, threshold: float) -> np.ndarray | None:
    """Sharpness values from the first time it reaches ``REACHED * threshold`` on (None if never)."""
    hit = np.nonzero(sharp >= REACHED * threshold)[0]
    return None if len(hit) == 0 else sharp[hit[0]:]


@claim("cohen2021.edge_of_stability",
       title="Full-batch GD trains at the edge of stability",
       citation="Cohen et al. 2021, ICLR (Gradient descent on neural networks typically occurs at the edge of stability)",
       statement="Under full-batch GD with step size eta, the sharpness rises (progressive sharpening) to about "
                 "2/eta and then hovers there, for several step sizes; where sharpening stalls below 2/eta "
                 "there is no edge of stability.",
       tolerance="Median sharpness after it first reaches 95% of 2/eta must lie in [0.90, 1.15] x 2/eta: Cohen et "
                 "al. report sharpness hovering just above 2/eta with oscillations of a few percent; the Lanczos "
                 "tolerance (1e-4 relative) is negligible; sharpness is sampled every k steps, so the 95% onset "
                 "criterion allows for the step between samples. Progressive sharpening: the sharpness at onset "
                 "must be at least 10% above its minimum over the early steps.")
def edge_of_stability(ctx: Context) -> Outcome:
    n = ctx.pick(500, 1258)
    widths = ctx.pick([64, 64], [256, 256, 256])
    steps = ctx.pick(1500, 10000)
    every = ctx.pick(50, 50)
    step_sizes = ctx.pick([0.5, 1.0, 1.25], [0.25, 0.5, 1.0, 1.25, 1.5])
    split = load_digits(seed=ctx.seed).subsample(n, seed=ctx.seed)
    x = split.x_train.to(ctx.device)
    y = nn.functional.one_hot(split.y_train, 10).float().to(ctx.device)
    mse = nn.MSELoss()

    fig, (ax_s, ax_l) = new_figure(ncols=2, width=4.6)
    checks, numbers, reached_any = [], {"n": n, "widths": widths, "steps": steps, "runs": {}}, False
    for i, eta in enumerate(step_sizes):
        model = MLP(64, widths, 10, activation="tanh", seed=ctx.seed).to(ctx.device)
        run = train(model, mse, (x, y), steps=steps, lr=eta, optimizer="gd",
                    monitors=[sharpness_monitor(mse, (x, y), every=every, tol=1e-4)])
        s_steps, sharp = run.monitor_steps["sharpness.lambda_max"], run.monitors["sharpness.lambda_max"]
        threshold = 2.0 / eta
        colour = f"C{i}"
        ax_s.plot(s_steps, sharp, color=colour, label=f"eta={eta:g}")
        ax_s.axhline(threshold, color=colour, ls="--", lw=1)
        ax_l.plot(run.steps, run.loss, color=colour, lw=1)
        phase = _eos_phase(s_steps, sharp, threshold)
        numbers["runs"][f"{eta:g}"] = {"sharpness_steps": s_steps, "sharpness": sharp, "threshold": threshold,
                                      "final_loss": float(run.loss[-1]), "diverged": run.diverged}
        if phase is None:
            numbers["runs"][f"{eta:g}"]["reached"] = False
            continue
        reached_any = True
        onset = len(sharp) - len(phase)
        early_min = float(sharp[: max(onset, 1)].min())
        ratio = float(np.median(phase) / threshold)
        numbers["runs"][f"{eta:g}"].update(reached=True, median_ratio=ratio, onset_step=int(s_steps[onset]))
        checks.append(check_between(f"eta={eta:g}: median sharpness / (2/eta) after onset", ratio, 0.90, 1.15))
        if onset > 0:
            checks.append(check_at_least(f"eta={eta:g}: progressive sharpening (onset / early minimum)",
                                         float(sharp[onset]) / early_min, 1.10))
    if not reached_any:
        checks.append(check_undecided("edge of stability reached", None, ">= 0.95 x 2/eta",
                                      "sharpening stalled below 2/eta for every step size"))
    ax_s.plot([], [], color="0.4", ls="--", label="2/eta of each run (prediction)")
    ax_s.set(xlabel="step", ylabel="sharpness lambda_max", title="sharpness under full-batch GD")
    ax_s.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax_l.set(xlabel="step", ylabel="training loss (MSE)", yscale="log", title="loss")
    reached = [k for k, r in numbers["runs"].items() if r.get("reached")]
    measured = ", ".join(f"eta={k}: {numbers['runs'][k]['median_ratio']:.3f} x 2/eta" for k in reached) or "not reached"
    return Outcome(checks, fig, predicted="sharpness hovers at 2/eta once reached", measured=measured,
                   numbers=numbers)
