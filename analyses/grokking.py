"""Grokking as the transition from lazy to rich training dynamics (Kumar, Bordelon, Gershman &
Pehlevan 2024, "Grokking as the transition from lazy to rich training dynamics", ICLR).

A two-layer network ``f = alpha (g(x) - g_0(x))`` (centred at initialisation) is trained on a
polynomial target with the loss ``MSE / alpha^2`` (Chizat, Oyallon & Bach 2019): the function
moves at the same rate for every output scale ``alpha`` while the parameters move ``O(1/alpha)``.
Large ``alpha`` makes the early dynamics lazy -- the network fits the training set with its
initial kernel, which generalises poorly on a polynomial with few samples -- and generalisation
only comes once features are learned, later the larger ``alpha`` is.  The NTK rotates towards the
target while this happens: the kernel-target alignment rises when the test loss drops (Kumar et
al. 2024, Sec. 4, Fig. 3).

The network has no biases (see ``analyses/learning_rate_transfer.py`` for why the muP output bias
is left out).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from theorylab.claims import Context, Outcome, check_at_least, check_at_most, check_undecided, claim
from theorylab.kernels import ntk_monitor
from theorylab.models import MLP
from theorylab.plotting import PREDICTED, new_figure
from theorylab.train import loss_monitor, train

GENERALISED = 0.1  # test loss below 10% of the target variance (R^2 >= 0.9)
FITTED = 0.1       # training loss below 10% of the target variance


class Centered(nn.Module):
    """``alpha (g(x) - g_0(x))`` with a frozen copy ``g_0`` of ``g`` at initialisation."""

    def __init__(self, net: nn.Module, alpha: float):
        super().__init__()
        self.net, self.alpha = net, alpha
        self.initial = copy.deepcopy(net).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * (self.net(x) - self.initial(x))


def _first_below(steps: np.ndarray, values: np.ndarray, level: float) -> int | None:
    hit = np.nonzero(values <= level)[0]
    return None if len(hit) == 0 else int(steps[hit[0]])


@claim("kumar2024.grokking_lazy_to_rich",
       title="Grokking: a large output scale delays generalization after the training fit",
       citation="Kumar, Bordelon, Gershman & Pehlevan 2024, ICLR (Grokking as the transition from lazy to rich "
                "training dynamics), Sec. 3-4",
       statement="With a polynomial target and a two-layer network trained with loss MSE/alpha^2, the test loss "
                 "drops well after the training loss is low when alpha is large; the delay grows with alpha; the "
                 "centred kernel-target alignment of the NTK rises when the test loss drops.",
       tolerance="Fitted/generalised mean loss below 10% of the target variance (R^2 >= 0.9), read on a grid of "
                 "every k steps (so times are known to +-k). The delay (generalisation step - fitting step) must "
                 "increase with alpha (no inversions among the alphas that generalise). Alignment: at the largest "
                 "alpha that generalises, the centred alignment must rise by at least 0.05 from its value at the "
                 "fitting step to its value at the generalisation step (a rise well beyond the measurement noise of "
                 "a fixed-kernel model, which is 0).")
def grokking(ctx: Context) -> Outcome:
    dim, n_train, n_test = 8, ctx.pick(200, 1000), 400
    width, steps, every = ctx.pick(128, 1024), ctx.pick(1000, 20000), ctx.pick(25, 100)
    alphas = ctx.pick([1.0, 4.0, 16.0], [1.0, 4.0, 16.0, 64.0])
    lr = 0.5
    g = torch.Generator().manual_seed(ctx.seed)
    beta = torch.randn(dim, generator=g)
    beta = beta / beta.norm()
    x_all = torch.randn(n_train + n_test, dim, generator=g)
    y_all = ((x_all @ beta) ** 2 - 1)[:, None]          # He_2 single-index target, variance 2
    x, y = x_all[:n_train].to(ctx.device), y_all[:n_train].to(ctx.device)
    x_test, y_test = x_all[n_train:].to(ctx.device), y_all[n_train:].to(ctx.device)
    variance = float(y_test.var())
    mse = nn.MSELoss()

    fig, (ax_l, ax_a) = new_figure(ncols=2, width=4.2)
    numbers: dict = {"alphas": alphas, "runs": {}}
    delays: dict[float, int] = {}
    align_rise: dict[float, float] = {}
    for i, alpha in enumerate(alphas):
        model = Centered(MLP(dim, [width], 1, parametrization="mup", bias=False, seed=ctx.seed), alpha).to(ctx.device)
        run = train(model, lambda out, t, a=alpha: mse(out, t) / a ** 2, (x, y), steps=steps, lr=lr,
                    monitors=[loss_monitor(mse, (x, y), name="train", every=every),
                              loss_monitor(mse, (x_test, y_test), name="test", every=every),
                              ntk_monitor(x, y, every=every * 5, params="net")])
        s, tr, te = run.monitor_steps["train"], run.monitors["train"], run.monitors["test"]
        a_steps, align = run.monitor_steps["ntk.centered_alignment"], run.monitors["ntk.centered_alignment"]
        colour = f"C{i}"
        ax_l.plot(s, tr / variance, color=colour, ls=":", lw=1)
        ax_l.plot(s, te / variance, color=colour, label=f"alpha={alpha:g} (test; dotted: train)")
        ax_a.plot(a_steps, align, "o-", ms=3, color=colour, label=f"alpha={alpha:g}")
        fit_step = _first_below(s, tr, FITTED * variance)
        gen_step = _first_below(s, te, GENERALISED * variance)
        record = {"steps": s, "train": tr, "test": te, "alignment_steps": a_steps, "alignment": align,
                  "fit_step": fit_step, "generalisation_step": gen_step, "diverged": run.diverged}
        if fit_step is not None and gen_step is not None:
            delays[alpha] = gen_step - fit_step
            record["delay"] = delays[alpha]
            before = align[a_steps <= fit_step][-1] if np.any(a_steps <= fit_step) else align[0]
            after = align[a_steps >= gen_step][0] if np.any(a_steps >= gen_step) else align[-1]
            align_rise[alpha] = float(after - before)
            record["alignment_rise"] = align_rise[alpha]
            ax_l.axvline(gen_step, color=colour, lw=0.8, alpha=0.5)
        numbers["runs"][f"{alpha:g}"] = record
    ax_l.axhline(GENERALISED, color=PREDICTED, ls="--", lw=1, label="generalised (R^2 = 0.9)")
    ax_l.set(xlabel="step", ylabel="loss / target variance", yscale="log", title="lazy-to-rich: loss")
    ax_l.legend(fontsize=6)
    ax_a.set(xlabel="step", ylabel="centred kernel-target alignment", title="NTK alignment (train set)")
    ax_a.legend()

    checks = []
    generalised = sorted(delays)
    if len(generalised) >= 2:
        ordered = [delays[a] for a in generalised]
        inversions = sum(1 for i in range(len(ordered)) for j in range(i + 1, len(ordered)) if ordered[j] <= ordered[i])
        checks.append(check_at_most("delay inversions across alpha (delay must grow with alpha)", inversions, 0))
    else:
        checks.append(check_undecided("delay grows with alpha", None, "increasing delays",
                                      f"only {len(generalised)} of {len(alphas)} output scales generalised "
                                      f"(test loss <= {GENERALISED} x variance) within {steps} steps"))
    if generalised:
        top = generalised[-1]
        checks.append(check_at_least(f"alpha={top:g}: centred alignment rise from fit to generalisation",
                                     align_rise[top], 0.05))
    else:
        checks.append(check_undecided("alignment rises when the test loss drops", None, "rise >= 0.05",
                                      "no output scale generalised"))
    measured = ", ".join(f"alpha={a:g}: delay {delays[a]}" for a in generalised) or "no alpha generalised"
    best_test = {f"{a:g}": float(np.min(numbers["runs"][f"{a:g}"]["test"]) / variance) for a in alphas}
    numbers["best_test_over_variance"] = best_test
    return Outcome(checks, fig, predicted="delay grows with alpha; alignment rises as test loss drops",
                   measured=measured + "; best test loss / variance: " +
                   ", ".join(f"{k}: {v:.3f}" for k, v in best_test.items()),
                   numbers=numbers)
