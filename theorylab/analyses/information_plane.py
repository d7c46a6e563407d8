"""The information plane (Shwartz-Ziv & Tishby 2017, "Opening the black box of deep neural networks via
information", arXiv:1703.00810), with tanh and with ReLU (Saxe, Bansal, Dapello, Advani, Kolchinsky, Tracey
& Cox 2018, "On the information bottleneck theory of deep learning", ICLR).

Shwartz-Ziv & Tishby train a 12-10-7-5-4-3-2 tanh network on all 4,096 binary inputs of 12 bits
and follow every layer ``T`` in the plane ``(I(X; T), I(T; Y))``, estimated by binning each unit's
activity into 30 bins: a short fitting phase in which ``I(T; Y)`` rises is followed by a long
compression phase in which ``I(X; T)`` falls (their Fig. 3; Sec. 4).  Saxe et al. find the compression
with tanh, which saturates, and none with ReLU (their Fig. 1), with bins over the observed range of
the layer.  Both activations are run here against the same prediction, and the verdicts may differ.

Compression is measured on the last hidden layer (4 units: in the wider layers ``I(X; T)`` stays at
its ceiling ``log2 4096 = 12`` bits, every input in its own bin).  The end of the fitting phase is the
first measurement at which ``I(T; Y)`` reaches 90% of its final value; compression is
``log(I(X; T) at that time / I(X; T) at the end)``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from theorylab.claims import Context, Judgement, Mutation, claim, effect, mean_and_stderr, precondition
from theorylab.claims.figures import band, legend_outside, measured_shades, prediction_level
from theorylab.information import information_plane
from theorylab.metrics import accuracy
from theorylab.monitors import monitor
from theorylab.plotting import new_figure
from theorylab.tasks import binary_patterns
from theorylab.train import train

WIDTHS = (12, 10, 7, 5, 4, 3)
FITTED = 0.9        # the fitting phase ends when I(T; Y) reaches 90% of its final value
COMPRESSION = 0.10  # smallest compression the prediction implies: I(X; T) falls by 10% (declared in advance)
TRAINED = 0.9       # precondition: test accuracy of the trained network


def _network(activation: str, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(WIDTHS[:-1], WIDTHS[1:]):
        layers += [nn.Linear(fan_in, fan_out), act()]
    return nn.Sequential(*layers, nn.Linear(WIDTHS[-1], 2))


def _measure(ctx: Context, activation: str) -> dict:
    steps, every = ctx.pick(500, 10000), ctx.pick(25, 100)
    seeds = ctx.seeds(3, 5)[:2] if ctx.control else ctx.seeds(3, 5)
    value_range = (-1.0, 1.0) if activation == "tanh" else None  # ReLU: the observed range (Saxe et al.)
    runs = []
    for seed in seeds:
        split = binary_patterns(bits=12, seed=seed)
        everything = (torch.cat([split.x_train, split.x_test]).to(ctx.device),
                      torch.cat([split.y_train, split.y_test]).to(ctx.device))
        model = _network(activation, seed).to(ctx.device)
        probe = str(len(model) - 2)  # the last hidden activation
        if ctx.control:  # hidden layers frozen: T never changes, so neither does I(X; T)
            for layer in list(model)[:-1]:
                layer.requires_grad_(False)
        run = train(model, nn.CrossEntropyLoss(), (split.x_train.to(ctx.device), split.y_train.to(ctx.device)),
                    steps=steps, lr=ctx.pick(0.01, 0.003), optimizer="adam", seed=seed,
                    monitors=[monitor(information_plane, everything, layers=[probe], every=every, bins=30,
                                      value_range=value_range),
                              monitor(accuracy, (split.x_test.to(ctx.device), split.y_test.to(ctx.device)),
                                      every=steps)])
        plane = run.monitors["information_plane"]  # one InformationPlane result per monitored step
        runs.append({"seed": seed, "steps": plane.steps,
                     "info_x": np.array([float(p.info_x[0]) for p in plane.values]),
                     "info_y": np.array([float(p.info_y[0]) for p in plane.values]),
                     "test_accuracy": float(run.monitors["accuracy"].series()[-1])})
    return {"activation": activation, "seeds": seeds, "steps": steps, "bins": 30,
            "value_range": list(value_range) if value_range else None, "runs": runs}


def _fit_end(info_y: np.ndarray) -> int:
    """Index of the first measurement with I(T; Y) >= 90% of its final value."""
    return int(np.nonzero(info_y >= FITTED * info_y[-1])[0][0])


def _compression(run: dict) -> float:
    info_x, info_y = np.asarray(run["info_x"]), np.asarray(run["info_y"])
    return float(math.log(info_x[_fit_end(info_y)] / info_x[-1]))


def _judge(m: dict, p) -> Judgement:
    runs = m["runs"]
    accuracy = [r["test_accuracy"] for r in runs]
    gain = [float(np.asarray(r["info_y"])[-1] - np.asarray(r["info_y"])[0]) for r in runs]
    compression = [_compression(r) for r in runs]
    mean, se = mean_and_stderr(compression)
    checks = [precondition(f"every network learns the rule (test accuracy >= {TRAINED:g})", min(accuracy) >= TRAINED,
                           requirement=f">= {TRAINED:g}", measured=min(accuracy)),
              precondition("a fitting phase: I(T; Y) of the last hidden layer rises in every seed", min(gain) > 0,
                           requirement="> 0 bits", measured=min(gain)),
              effect("compression: log(I(X; T) at the end of fitting / at the end of training)", mean, se,
                     smallest=math.log(1 / (1 - COMPRESSION)),
                     source="declared in advance: I(X; T) falls by at least 10% over the compression phase "
                            "(Shwartz-Ziv & Tishby 2017 report falls of several bits)")]
    return Judgement(checks, predicted="I(X; T) of the last hidden layer falls after the fitting phase",
                     measured=f"I(X; T) falls by {100 * (1 - math.exp(-mean)):.1f}% after fitting "
                              f"({m['activation']}, mean over {len(runs)} seeds)",
                     per_seed={"seed": [r["seed"] for r in runs], "test accuracy": accuracy,
                               "I(T;Y) gain (bits)": gain, "compression (log ratio)": compression},
                     rule="each seed draws its own rule, split and initialisation; the compression is averaged "
                          "over seeds with its standard error.")


def _figure(m: dict, p):
    fig, (ax_p, ax_t) = new_figure(ncols=2, width=3.8, height=3.2)
    shades = measured_shades(len(m["runs"]))
    for run, color in zip(m["runs"], shades):
        ix, iy = np.asarray(run["info_x"]), np.asarray(run["info_y"])
        ax_p.plot(ix, iy, "-", color=color, lw=1)
        ax_p.scatter(ix, iy, c=np.asarray(run["steps"]), cmap="viridis", s=8, zorder=3)
        end = _fit_end(iy)
        ax_p.scatter([ix[end]], [iy[end]], marker="x", color="k", s=25, zorder=4)
    ax_p.set(xlabel="I(X; T) (bits)", ylabel="I(T; Y) (bits)",
             title=f"last hidden layer, {m['activation']} (x: end of fitting)")
    steps = np.asarray(m["runs"][0]["steps"])
    relative = [np.asarray(r["info_x"]) / np.asarray(r["info_x"])[_fit_end(np.asarray(r["info_y"]))] for r in m["runs"]]
    band(ax_t, steps, relative, marker="", label=f"measured ({len(m['runs'])} seeds)")
    prediction_level(ax_t, y=1 - COMPRESSION, label="prediction: falls below (at least 10%)")
    ax_t.set(xlabel="step", ylabel="I(X; T) / I(X; T) at end of fitting", title="compression")
    legend_outside(ax_t)
    return fig


_TOLERANCE = ("Preconditions: every network learns the rule (test accuracy >= 0.9) and I(T; Y) rises (a fitting "
              "phase). "
              "Mutual information by binning each unit's activity into 30 bins ({range}), X uniform over the "
              "4,096 inputs; the binning error is the same at every time, so it cancels in the ratio of I(X; T) at two "
              "times. Compression: log(I(X; T) at the end of fitting / at the end), an effect over 3 seeds refuted if "
              "its 95% interval lies below log(1/0.9) (a fall of 10%, declared in advance).")
_MUTATIONS = [
    Mutation("no compression: I(X; T) held at its value at the end of fitting", numbers=lambda m: {**m, "runs": [
        {**r, "info_x": np.maximum(np.asarray(r["info_x"]),
                                   np.asarray(r["info_x"])[_fit_end(np.asarray(r["info_y"]))])} for r in m["runs"]]}),
    Mutation("the rule is not learned", numbers=lambda m: {**m, "runs": [{**r, "test_accuracy": 0.5}
                                                                         for r in m["runs"]]}),
    Mutation("no fitting phase", numbers=lambda m: {**m, "runs": [
        {**r, "info_y": np.full(len(r["info_y"]), float(np.max(r["info_y"])))} for r in m["runs"]]}),
]
_CITATION = ("Shwartz-Ziv & Tishby 2017, arXiv:1703.00810 (Opening the black box of deep neural networks via "
             "information), Sec. 4; Saxe et al. 2018, ICLR (On the information bottleneck theory of deep learning)")
_STATEMENT = ("A 12-10-7-5-4-3-2 network trained on 12-bit inputs first gains I(T; Y) (fitting), then its layers lose "
              "I(X; T) for most of training (compression); Saxe et al. find this with tanh and not with ReLU.")

claim("shwartzziv2017.information_plane_tanh",
      title="Information plane: compression after fitting (tanh)", citation=_CITATION, statement=_STATEMENT,
      tolerance=_TOLERANCE.format(range="over [-1, 1], the range of tanh"),
      control="hidden layers frozen (only the readout trains): T never changes, so I(X; T) cannot fall",
      predictions={}, measure=lambda ctx: _measure(ctx, "tanh"), judge=_judge, figure=_figure, mutations=_MUTATIONS)

claim("shwartzziv2017.information_plane_relu",
      title="Information plane: compression after fitting (ReLU)", citation=_CITATION, statement=_STATEMENT,
      tolerance=_TOLERANCE.format(range="over the layer's observed [min, max] at each time, as Saxe et al. do for "
                                        "ReLU"),
      control="hidden layers frozen (only the readout trains): T never changes, so I(X; T) cannot fall",
      predictions={}, measure=lambda ctx: _measure(ctx, "relu"), judge=_judge, figure=_figure, mutations=_MUTATIONS)
