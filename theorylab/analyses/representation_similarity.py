"""Representations across widths under muP and under the NTK parametrization, compared by CKA (Kornblith,
Norouzi, Lee & Hinton 2019, "Similarity of neural network representations revisited", ICML; Yang & Hu 2021,
"Tensor Programs IV: feature learning in infinite-width neural networks", ICML).

Under the NTK parametrization the hidden features of a wide network barely move in training, less the
wider it is (Jacot et al. 2018; Yang & Hu 2021, Sec. 3: features change by ``O(width^-1/2)``); under muP
(maximal update) they move by ``O(1)`` at every width, and networks of different widths learn the same
features (Yang & Hu 2021, Sec. 5-6).  Measured by linear CKA (:func:`theorylab.similarity.cka`) of the
hidden features on held-out digits: the movement ``1 - CKA(h_0, h_T)`` at each width, and whether the
trained features of a width are closer to those of the widest network than to their own initial ones.
"""
from __future__ import annotations

import numpy as np
from torch import nn

from theorylab.claims import Context, Judgement, Mutation, claim, effect, mean_and_stderr, precondition
from theorylab.claims.figures import band, legend_outside, log_axis, measured_shades, prediction
from theorylab.data import load_digits
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.sharpness import lambda_max
from theorylab.similarity import cka
from theorylab.train import train

NTK_SLOPE = 0.5    # smallest predicted decay of 1 - CKA(h_0, h_T) with width under NTK (features move O(width^-1/2))
CONVERGE = 0.05    # smallest predicted excess of CKA(h_T^w, h_T^widest) over CKA(h_T^w, h_0^w) under muP
FITTED = 0.25      # precondition: every run lowers its training loss below 25% of its initial value


def measure_representation_similarity(ctx: Context) -> dict:
    widths, n, steps = ctx.pick([32, 128, 512], [64, 256, 1024, 4096]), ctx.pick(300, 1000), ctx.pick(200, 2000)
    seeds = ctx.seeds(3, 5)
    mse = nn.MSELoss()
    out: dict = {"widths": widths, "seeds": seeds, "runs": []}
    for seed in seeds:
        split = load_digits(seed=seed).subsample(n, seed=seed).to(ctx.device)
        data = (split.x_train, nn.functional.one_hot(split.y_train, 10).to(split.x_train.dtype))
        probe = split.x_test[:300]
        for par in ("mup", "ntk"):
            def model(width: int, s: int) -> MLP:
                net = MLP(64, [width], 10, parametrization=par, bias=False, seed=s).to(ctx.device)
                if ctx.control:  # random features: only the readout trains, the hidden features cannot move
                    net.hidden_layers.requires_grad_(False)
                return net

            lr = 1.0 / lambda_max(model(widths[0], seed), mse, data, tol=1e-3).value  # one step size for all widths
            initial, final, loss = [], [], []
            for width in widths:
                net = model(width, 1000 * seed + width)
                initial.append(net.features(probe).detach().cpu())
                run = train(net, mse, data, steps=steps, lr=lr)
                final.append(net.features(probe).detach().cpu())
                loss.append(float(run.loss[-1] / run.loss[0]))
            out["runs"].append({"seed": seed, "parametrization": par, "lr": lr, "loss_ratio": loss,
                                "movement": [1 - cka(a, b) for a, b in zip(initial, final)],
                                "to_widest": [cka(f, final[-1]) for f in final[:-1]],
                                "to_own_init": [cka(f, a) for f, a in zip(final[:-1], initial[:-1])]})
    return out


def _runs(m: dict, par: str) -> list[dict]:
    return [r for r in m["runs"] if r["parametrization"] == par]


def judge_representation_similarity(m: dict, p) -> Judgement:
    logw = np.log(np.asarray(m["widths"], dtype=np.float64))
    floor = 1e-12
    slope = {par: [-np.polyfit(logw, np.log(np.maximum(r["movement"], floor)), 1)[0] for r in _runs(m, par)]
             for par in ("mup", "ntk")}
    converge = [float(np.mean(np.asarray(r["to_widest"]) - np.asarray(r["to_own_init"]))) for r in _runs(m, "mup")]
    fitted = max(max(r["loss_ratio"]) for r in m["runs"])
    contrast = [a - b for a, b in zip(slope["ntk"], slope["mup"])]
    checks = [precondition(f"every run trains (final / initial training loss <= {FITTED:g})", fitted <= FITTED,
                           requirement=f"<= {FITTED:g}", measured=fitted),
              effect("NTK: decay of the feature movement 1 - CKA(h_0, h_T) with width, -d log / d log(width)",
                     *mean_and_stderr(slope["ntk"]), exceed=NTK_SLOPE, smallest=NTK_SLOPE,
                     source="Yang & Hu 2021: NTK-parametrized features move O(width^-1/2); the movement is at least "
                            "first order in that change"),
              effect("the decay under NTK exceeds that under muP (difference of the two slopes)",
                     *mean_and_stderr(contrast), smallest=NTK_SLOPE,
                     source="muP features move O(1) at every width (Yang & Hu 2021), so the whole NTK decay remains"),
              effect("muP: CKA(trained features, widest trained) - CKA(trained, own initial), mean over widths",
                     *mean_and_stderr(converge), smallest=CONVERGE,
                     source="declared in advance: 0.05 of CKA (widths learn the same features)")]
    movement = {par: np.mean([r["movement"] for r in _runs(m, par)], axis=0) for par in ("mup", "ntk")}
    return Judgement(checks, predicted="NTK features stay at initialisation (more so when wider); muP features move "
                                       "at every width and agree across widths",
                     measured=(f"1 - CKA(h_0, h_T) from width {m['widths'][0]} to {m['widths'][-1]}: muP "
                               f"{movement['mup'][0]:.3f} -> {movement['mup'][-1]:.3f}, NTK {movement['ntk'][0]:.2g} "
                               f"-> {movement['ntk'][-1]:.2g}; muP convergence across widths {np.mean(converge):+.3f}"),
                     per_seed={"seed": m["seeds"], "NTK decay slope": slope["ntk"], "muP decay slope": slope["mup"],
                               "muP convergence": converge},
                     rule="each seed has its own subsample and initialisations; slopes of log movement in log width "
                          "per seed, averaged over seeds with standard errors.")


def figure_representation_similarity(m: dict, p):
    fig, (ax_m, ax_c) = new_figure(ncols=2, width=3.8, height=3.2)
    widths = np.asarray(m["widths"], dtype=np.float64)
    shades = dict(zip(("ntk", "mup"), measured_shades(2)))
    for par, label in (("mup", "muP"), ("ntk", "NTK")):
        band(ax_m, widths, [np.maximum(r["movement"], 1e-12) for r in _runs(m, par)], color=shades[par], label=label)
    ntk = np.mean([r["movement"] for r in _runs(m, "ntk")], axis=0)
    prediction(ax_m, widths, ntk[0] * (widths / widths[0]) ** -NTK_SLOPE,
               label=r"NTK: at most $\propto$ width$^{-1/2}$ (prediction)")
    log_axis(ax_m, "x", ticks=list(m["widths"]))
    ax_m.set(yscale="log", xlabel="width", ylabel=r"$1 - $CKA$(h_0, h_T)$", title="feature movement")
    legend_outside(ax_m, ncol=1)
    for par, label in (("mup", "muP"), ("ntk", "NTK")):
        runs = _runs(m, par)
        band(ax_c, widths[:-1], [r["to_widest"] for r in runs], color=shades[par], label=f"{label}: to widest trained")
        band(ax_c, widths[:-1], [r["to_own_init"] for r in runs], color=shades[par], marker="s",
             label=f"{label}: to own initial")
    log_axis(ax_c, "x", ticks=list(m["widths"][:-1]))
    ax_c.set(xlabel="width", ylabel="CKA of the trained features", title=f"similarity (widest = {m['widths'][-1]})")
    legend_outside(ax_c, ncol=1)
    return fig


claim("yang2021.cka_across_widths",
      title="Under muP features move and agree across widths; under NTK they stay at initialisation",
      citation="Yang & Hu 2021, ICML (Tensor Programs IV: feature learning in infinite-width neural networks); "
               "measured by CKA of Kornblith et al. 2019, ICML (Similarity of neural network representations "
               "revisited)",
      statement="Under the NTK parametrization the hidden representation stays near its initialisation, the more so "
                "the wider the network; under muP it moves by a width-independent amount and networks of different "
                "widths learn similar representations.",
      tolerance="Linear CKA of the hidden features on 300 held-out digits. Precondition: every run lowers its training "
                "loss to <= 25% of the initial. Effects over 3 seeds (each its own subsample and initialisations): the "
                "decay of 1 - CKA(h_0, h_T) with width under NTK (passed above and refuted below a slope of 1/2) and "
                "its excess over muP's (refuted below 1/2): features move O(width^-1/2) (Yang & Hu 2021); under muP "
                "the trained features of each width are closer to the widest trained network's than to their own "
                "initial ones, refuted below 0.05 of CKA (declared in advance).",
      control="random features (hidden layer frozen, readout trained) in both parametrizations: no feature can move",
      predictions={}, measure=measure_representation_similarity, judge=judge_representation_similarity,
      figure=figure_representation_similarity,
      mutations=[
          Mutation("NTK features move like muP's", numbers=lambda m: {**m, "runs": [
              {**r, "movement": next(q["movement"] for q in m["runs"] if q["seed"] == r["seed"]
                                     and q["parametrization"] == "mup")} for r in m["runs"]]}),
          Mutation("muP trained features no closer across widths", numbers=lambda m: {**m, "runs": [
              {**r, "to_widest": r["to_own_init"]} for r in m["runs"]]}),
          Mutation("nothing trains", numbers=lambda m: {**m, "runs": [{**r, "loss_ratio": [1.0] * len(r["loss_ratio"])}
                                                                      for r in m["runs"]]}),
      ])
