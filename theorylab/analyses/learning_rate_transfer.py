"""Why learning rates transfer (Noci, Meterez, Hofmann & Orvieto 2024, "Why do learning rates
transfer? Reconciling optimization and scaling limits for deep learning", arXiv:2402.17457).

Under muP the sharpness (top eigenvalue of the training-loss Hessian) follows nearly the same
trajectory at every width over a sustained period of training -- progressive sharpening up to the
edge of stability 2/eta -- so a step size that is good at one width is good at all ("super
consistency", Sec. 3, Fig. 1).  Under the NTK parametrization feature learning vanishes with width,
the NTK (and with it the sharpness) stops evolving, and the sharpness dynamics differ across widths
(Sec. 4).

The MLPs here have no biases: ``theorylab.models.MLP(parametrization="mup")`` gives the output bias a
multiplier 1 (Yang et al. 2021, "Tensor Programs V", Table 3); leaving biases out keeps the two
parametrizations comparable.
"""
from __future__ import annotations

import numpy as np
from torch import nn

from theorylab.claims import Context, Judgement, Mutation, claim, effect, paired_difference, precondition
from theorylab.claims.figures import legend_outside, measured_shades, prediction_level
from theorylab.data import load_digits
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.monitors import monitor
from theorylab.sharpness import lambda_max
from theorylab.theory import gd_sharpness_threshold
from theorylab.train import train

SHARPENING = 0.1   # |log(lambda_T / lambda_0)| at some width: the dynamics the claim compares took place
RESOLUTION = 0.02  # twice the Lanczos tolerance (1e-2): smaller differences of log-sharpness are not resolved


def _trajectories(ctx: Context, par: str, seed: int, widths: list[int], data: tuple, steps: int) -> dict:
    """Sharpness trajectories of one parametrization at every width, with one step size for all: 1.5 / lambda_0
    of a narrowest reference network (eta lambda / 2 = 0.75 at its initialisation; the trained networks are
    other draws)."""
    mse = nn.MSELoss()

    def model(width: int, s: int) -> MLP:
        return MLP(64, [width], 10, parametrization=par, bias=False, seed=s).to(ctx.device)

    lr = 1.5 / lambda_max(model(widths[0], seed), mse, data, tol=1e-3).value
    out = {"lr": lr, "sharpness": []}
    for width in widths:
        run = train(model(width, seed + 1), mse, data, steps=steps, lr=lr,
                    monitors=[monitor(lambda_max, mse, data, every=ctx.pick(50, 100), tol=1e-2, seed_from_step=True)])
        out["steps"] = run.monitors["lambda_max"].steps
        out["sharpness"].append(run.monitors["lambda_max"].series("value"))
    return out


def measure_learning_rate_transfer(ctx: Context) -> dict:
    widths = ctx.pick([64, 1024], [128, 512, 2048, 8192])
    n, steps = ctx.pick(256, 1024), ctx.pick(400, 2000)
    seeds = ctx.seeds(3, 3)[:2] if ctx.control else ctx.seeds(3, 3)
    # control: no parametrization difference, the muP arm is the NTK parametrization with other initial weights
    arms = {"mup": ("ntk", 1000) if ctx.control else ("mup", 0), "ntk": ("ntk", 0)}
    out: dict = {"widths": widths, "n": n, "steps": steps, "seeds": seeds, "arms": {k: v[0] for k, v in arms.items()}}
    for name, (par, offset) in arms.items():
        out[name] = []
        for seed in seeds:
            split = load_digits(seed=seed).subsample(n, seed=seed)
            data = (split.x_train.to(ctx.device),
                    nn.functional.one_hot(split.y_train, 10).float().to(ctx.device))
            out[name].append(_trajectories(ctx, par, seed + offset, widths, data, steps))
    return out


def _width_dependence(run: dict) -> float:
    """D = max over measured steps t > 0 of |log(lambda_widest(t) / lambda_narrowest(t))|."""
    sharp = np.asarray(run["sharpness"])
    return float(np.max(np.abs(np.log(sharp[-1][1:] / sharp[0][1:]))))


def _sharpening(run: dict) -> float:
    """The largest |log(lambda_T / lambda_0)| over the widths of one run."""
    sharp = np.asarray(run["sharpness"])
    return float(np.max(np.abs(np.log(sharp[:, -1] / sharp[:, 0]))))


def judge_learning_rate_transfer(m: dict, p) -> Judgement:
    d = {name: np.array([_width_dependence(r) for r in m[name]]) for name in ("mup", "ntk")}
    sharpening = {name: np.array([_sharpening(r) for r in m[name]]) for name in ("mup", "ntk")}
    gap, se = paired_difference(d["ntk"], d["mup"])
    weakest = float(min(sharpening["mup"].min(), sharpening["ntk"].min()))
    checks = [
        precondition("the sharpness moves during training at some width, in every run", weakest >= SHARPENING,
                     requirement=f"|log(lambda_T / lambda_0)| >= {SHARPENING}", measured=weakest),
        effect("width dependence D_NTK - D_muP (paired over seeds)", gap, se, smallest=RESOLUTION, exceed=RESOLUTION,
               source="twice the Lanczos tolerance (1e-2): the smallest difference of log-sharpness that is resolved"),
    ]
    return Judgement(checks, predicted="sharpness trajectories width-independent under muP, not under NTK (D_NTK > D_muP)",
                     measured=f"D_muP = {d['mup'].mean():.3f}, D_NTK = {d['ntk'].mean():.3f} (mean over seeds)",
                     per_seed={"seed": list(m["seeds"]), "D_muP": d["mup"].tolist(), "D_NTK": d["ntk"].tolist(),
                               "sharpening muP": sharpening["mup"].tolist(), "sharpening NTK": sharpening["ntk"].tolist()},
                     rule="D is the largest |log ratio| of the widest to the narrowest network's sharpness over training; "
                          "the effect is the mean paired difference over seeds (each seed: same data for both "
                          "parametrizations) with its paired standard error.")


def figure_learning_rate_transfer(m: dict, p):
    widths = list(m["widths"])
    fig, axes = new_figure(ncols=2, width=3.6, height=3.2)
    shades = measured_shades(len(widths))
    for ax, name in zip(axes, ("mup", "ntk")):
        first = m[name][0]
        for colour, width, sharp in zip(shades, widths, first["sharpness"]):
            ax.plot(first["steps"], sharp, "o-", ms=3, color=colour, label=f"width {width}")
        prediction_level(ax, y=float(p.threshold(first["lr"])), label=r"$2/\eta$")
        ax.set(xlabel="step", ylabel=r"sharpness $\lambda_{\max}$",
               title=f"{m['arms'][name]}: $\\eta = {first['lr']:.3g}$ (seed {m['seeds'][0]})")
        legend_outside(ax)
    return fig


def _copy_arm(source: str, target: str):
    return lambda m: {**m, target: m[source]}


claim("noci2024.learning_rate_transfer",
      title="Sharpness dynamics are width-independent under muP, not under NTK parametrization",
      citation="Noci, Meterez, Hofmann & Orvieto 2024 (Why do learning rates transfer? Reconciling optimization and "
               "scaling limits for deep learning), Sec. 3-4, Fig. 1",
      statement="Under full-batch GD with one step size for all widths, the sharpness trajectory (progressive "
                "sharpening towards 2/eta) is nearly independent of width under muP, but not under NTK "
                "parametrization, where the dynamics freeze as the width grows.",
      tolerance="Width dependence D = max over measured steps t > 0 of |log(lambda_widest(t) / lambda_narrowest(t))|, "
                "per seed (3 seeds, each with its own data sample and initialisation, shared by both "
                "parametrizations). The prediction is the effect D_NTK - D_muP > 0, tested with its paired standard "
                "error over seeds instead of a fixed threshold: confirmed if its 95% interval lies above 0.02, twice "
                "the Lanczos tolerance (a smaller difference is not resolved), refuted if it lies below. Precondition: the sharpness must move by at least 10% at the "
                "some width in every run (400 steps on 256 images at quick scale), else the dynamics being "
                "compared did not happen.",
      control="no parametrization difference: the muP arm is replaced by the NTK parametrization with other initial "
              "weights (2 seeds)",
      predictions={"threshold": gd_sharpness_threshold},
      measure=measure_learning_rate_transfer, judge=judge_learning_rate_transfer, figure=figure_learning_rate_transfer,
      mutations=[
          Mutation("muP as width-dependent as NTK", numbers=_copy_arm("ntk", "mup")),
          Mutation("no sharpening", numbers=lambda m: {**m, **{name: [
              {**r, "sharpness": np.repeat(np.asarray(r["sharpness"])[:, :1], len(r["steps"]), axis=1)}
              for r in m[name]] for name in ("mup", "ntk")}}),
      ])
