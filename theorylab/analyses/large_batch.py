"""Large-batch training: sharper minima at matched epochs (Keskar, Mudigere, Nocedal, Smelyanskiy & Tang 2017,
"On large-batch training for deep learning: generalization gap and sharp minima", ICLR; the premise of Liu et al.
2022, "Concurrent adversarial learning for large-batch training", ICLR) and closing the gap by training longer
(Hoffer, Hubara & Soudry 2017, "Train longer, generalize better: closing the generalization gap in large batch
training of neural networks", NeurIPS).

Both on the digits (a random 512 of the training split, the full test split), with a tanh MLP.
"""
from __future__ import annotations

import math

import numpy as np
from torch import nn

from theorylab.claims import Context, Judgement, Mutation, claim, effect, paired_difference, precondition, tolerance
from theorylab.claims.figures import band, legend_outside, log_axis, measured_shades, prediction
from theorylab.curvature import hessian, trace
from theorylab.data import load_digits
from theorylab.metrics import accuracy, mean_loss
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.sharpness import average_sharpness, lambda_max
from theorylab.train import train

N_TRAIN = 512

# ---------------------------------------------------------------------------------------------
# 1. Larger batches converge to sharper minima at matched epochs (Keskar et al. 2017)
# ---------------------------------------------------------------------------------------------
BATCHES = (8, 32, 128, 512)
SHARPER = math.log(1.2)   # declared: the smallest effect that counts as "sharper", 20% (in log)
WORSE = 0.02              # declared: the smallest effect that counts as "worse", 2 points of test error


def _sharpness_run(ctx: Context, seed: int, batch: int) -> dict:
    split = load_digits(seed=seed).subsample(N_TRAIN, seed=seed).to(ctx.device)
    data = (split.x_train, nn.functional.one_hot(split.y_train, 10).float())
    mse = nn.MSELoss()
    model = MLP(64, [64], 10, activation="tanh", seed=seed).to(ctx.device)
    if ctx.control:  # hidden layer frozen: a linear model in fixed features, whose MSE Hessian is constant
        model.hidden_layers.requires_grad_(False)
    epochs = ctx.pick(20, 40)
    train(model, mse, data, steps=epochs * N_TRAIN // batch, lr=1.0, optimizer="sgd", batch_size=batch, seed=seed)
    op = hessian(model, mse, data)
    return {"lambda_max": lambda_max(model, mse, data, tol=1e-4, seed=seed).value,
            "trace": trace(op, num_probes=30, method="hutch++", seed=seed).estimate,
            "adaptive": average_sharpness(model, mse, data, rho=0.05, num_draws=20, seed=seed).value,
            "train_loss": mean_loss(model, mse, data),
            "test_error": 1.0 - accuracy(model, split.test)}


def measure_batch_sharpness(ctx: Context) -> dict:
    seeds = ctx.seeds(3, 5)
    runs = [[_sharpness_run(ctx, s, b) for b in BATCHES] for s in seeds]
    keys = ("lambda_max", "trace", "adaptive", "train_loss", "test_error")
    return {"seeds": seeds, "batch_sizes": list(BATCHES), "epochs": ctx.pick(20, 40), "frozen": ctx.control,
            **{k: np.array([[r[k] for r in row] for row in runs]) for k in keys}}


MEASURES = (("lambda_max", "lambda_max"), ("trace", "tr(H) (Hutch++)"), ("adaptive", "average adaptive sharpness"))


def judge_batch_sharpness(m: dict, p) -> Judgement:
    checks = [precondition("every run trained: final training MSE below 0.1, the loss of predicting zeros",
                           bool(np.all(np.asarray(m["train_loss"]) < 0.1)), requirement="training loss < 0.1",
                           measured=float(np.max(m["train_loss"])))]
    measured = []
    for key, name in MEASURES:
        values = np.log(np.maximum(np.asarray(m[key]), 1e-12))
        diff, se = paired_difference(values[:, -1], values[:, 0])
        checks.append(effect(f"log({name} at B = {BATCHES[-1]} / at B = {BATCHES[0]}), paired over seeds", diff, se,
                             smallest=SHARPER, source="declared in advance: an effect below 20% would refute it"))
        measured.append(f"{name} x{math.exp(diff):.2f}")
    err = np.asarray(m["test_error"])
    diff, se = paired_difference(err[:, -1], err[:, 0])
    checks.append(effect(f"test error at B = {BATCHES[-1]} minus at B = {BATCHES[0]}, paired over seeds", diff, se,
                         smallest=WORSE, source="declared in advance: an effect below 2 points would refute it"))
    measured.append(f"test error {np.mean(err[:, 0]):.3f} -> {np.mean(err[:, -1]):.3f}")
    return Judgement(checks, predicted="sharpness and test error grow with the batch size at matched epochs",
                     measured=f"B {BATCHES[0]} -> {BATCHES[-1]}: " + ", ".join(measured),
                     per_seed={"seed": list(m["seeds"]),
                               **{f"{name} B={b}": np.asarray(m[key])[:, j].tolist()
                                  for key, name in MEASURES[:1] for j, b in enumerate(BATCHES)},
                               **{f"test error B={b}": err[:, j].tolist() for j, b in enumerate(BATCHES)}},
                     rule="each seed draws its own data and initialisation, shared by every batch size; effects are "
                          "paired over seeds.")


def figure_batch_sharpness(m: dict, p):
    fig, axes = new_figure(ncols=4, width=2.6, height=3.0)
    b = np.asarray(m["batch_sizes"], dtype=float)
    for ax, (key, name) in zip(axes, MEASURES + (("test_error", "test error"),)):
        band(ax, b, m[key], errorbars=True, label="mean ± 2 s.e.")
        start = float(np.mean(np.asarray(m[key])[:, 0]))
        end = start + WORSE if key == "test_error" else start * math.exp(SHARPER)
        prediction(ax, [b[0], b[-1]], [start, end], label="smallest predicted increase")
        log_axis(ax, "x", ticks=list(b))
        ax.set(xlabel="batch size $B$", title=name)
    axes[0].set_ylabel("at the end of training" + (" (frozen features)" if m.get("frozen") else ""))
    legend_outside(axes[0], ncol=1)
    return fig


claim("keskar2017.large_batch_sharpness",
      title="At matched epochs, larger batches end at sharper minima with higher test error",
      citation="Keskar, Mudigere, Nocedal, Smelyanskiy & Tang 2017, ICLR (On large-batch training for deep learning: "
               "generalization gap and sharp minima); the premise of Liu et al. 2022, ICLR (Concurrent adversarial "
               "learning for large-batch training)",
      statement="Trained for the same number of epochs with the same learning rate, networks trained with larger "
                "batches converge to sharper minima (larger lambda_max, Hessian trace and adaptive sharpness) and "
                "generalise worse.",
      tolerance="A tanh MLP (64 hidden units) on 512 digits, MSE on one-hot targets, SGD lr 1.0 for 20 epochs at "
                "B = 8, 32, 128, 512, 3 seeds (data and initialisation shared by the batch sizes of a seed). "
                "Precondition: every run trains (final MSE below 0.1, the loss of predicting zeros). Effects paired "
                "over seeds between B = 512 and B = 8, each significantly positive (2 standard errors) and refuted if "
                "its interval lies below the smallest declared effect: lambda_max (Lanczos), trace (Hutch++, 30 "
                "products) and average adaptive sharpness (rho 0.05, 20 draws) 20% higher, test error 2 points "
                "higher. MSE rather than cross-entropy: the cross-entropy "
                "Hessian grows as predictions become less confident, so a less-trained large-batch network would "
                "look sharper for that reason alone.",
      control="hidden layer frozen (a linear model in fixed features): the MSE Hessian is constant, whatever B",
      predictions={},
      measure=measure_batch_sharpness, judge=judge_batch_sharpness, figure=figure_batch_sharpness,
      mutations=[
          Mutation("no sharpness difference", numbers=lambda m: {**m, **{
              k: np.repeat(np.asarray(m[k])[:, :1], len(BATCHES), axis=1) for k, _ in MEASURES}}),
          Mutation("no test-error difference", numbers=lambda m: {
              **m, "test_error": np.repeat(np.asarray(m["test_error"])[:, :1], len(BATCHES), axis=1)}),
          Mutation("a run did not train", numbers=lambda m: {**m, "train_loss": np.asarray(m["train_loss"]) + 0.1}),
      ])


# ---------------------------------------------------------------------------------------------
# 2. Train longer, generalise better (Hoffer et al. 2017)
# ---------------------------------------------------------------------------------------------
SMALL, LARGE = 16, 512
BASE_LR = 0.05
GAP = 0.02       # declared: a generalisation gap of at least 2 points of test error
ARMS = ("small batch", "large batch, same epochs", "large batch, same updates")


def _error(ctx: Context, seed: int, batch: int, lr: float, steps: int) -> float:
    split = load_digits(seed=seed).subsample(N_TRAIN, seed=seed).to(ctx.device)
    model = MLP(64, [128], 10, activation="tanh", seed=seed).to(ctx.device)
    train(model, nn.CrossEntropyLoss(), split.train, steps=steps, lr=lr, optimizer="sgd", batch_size=batch, seed=seed)
    return 1.0 - accuracy(model, split.test)


def measure_train_longer(ctx: Context) -> dict:
    seeds = ctx.seeds(4, 6)
    large = SMALL if ctx.control else LARGE  # control: the "large" batch is the small one, there is no gap to close
    epochs = ctx.pick(10, 30)
    updates = epochs * N_TRAIN // SMALL
    lr_large = BASE_LR * math.sqrt(large / SMALL)  # Hoffer et al.: the learning rate scaled like sqrt(B)
    arms: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for seed in seeds:
        arms["small batch"].append(_error(ctx, seed, SMALL, BASE_LR, updates))
        arms["large batch, same epochs"].append(_error(ctx, seed, large, lr_large, epochs * N_TRAIN // large))
        arms["large batch, same updates"].append(_error(ctx, seed, large, lr_large, updates))
    return {"seeds": seeds, "small": SMALL, "large": large, "epochs": epochs, "updates": updates,
            "lr_small": BASE_LR, "lr_large": lr_large, "errors": arms, "n_test": int(
                len(load_digits(seed=seeds[0]).y_test))}


def judge_train_longer(m: dict, p) -> Judgement:
    errors = {k: np.asarray(v) for k, v in m["errors"].items()}
    small = errors["small batch"]
    gap, gap_se = paired_difference(errors["large batch, same epochs"], small)
    closed, closed_se = paired_difference(errors["large batch, same updates"], small)
    binomial = math.sqrt(2 * 0.1 * 0.9 / int(m["n_test"]) / len(small))  # sampling error of the test split
    checks = [
        effect("generalisation gap at matched epochs: test error (large) - (small), paired over seeds", gap, gap_se,
               smallest=GAP, exceed=GAP, source="declared in advance: at least 2 points"),
        tolerance("gap after regime adaptation (matched updates, lr x sqrt(B)): test error (large) - (small)", closed,
                  0.0, 2 * closed_se + 2 * binomial,
                  source="2 paired standard errors over seeds plus 2 binomial standard errors of a difference of test "
                         "errors near 10% on the test split, averaged over seeds"),
    ]
    return Judgement(checks, predicted="a gap at matched epochs that closes with matched updates and lr ~ sqrt(B)",
                     measured=f"small {np.mean(small):.3f}; large, same epochs "
                              f"{np.mean(errors['large batch, same epochs']):.3f}"
                              f"; large, same updates {np.mean(errors['large batch, same updates']):.3f}",
                     per_seed={"seed": list(m["seeds"]), **{arm: errors[arm].tolist() for arm in ARMS}},
                     rule="each seed's arms share data and initialisation; differences are paired over seeds.")


def figure_train_longer(m: dict, p):
    fig, ax = new_figure(width=4.2, height=3.2)
    errors = np.array([m["errors"][arm] for arm in ARMS]).T  # seed x arm (records keep no key order)
    for i, colour in enumerate(measured_shades(len(m["seeds"]))):
        ax.plot(range(len(ARMS)), errors[i], "o-", color=colour, lw=0.8, ms=4, label=f"seed {m['seeds'][i]}")
    small = float(np.mean(errors[:, 0]))
    prediction(ax, [1.7, 2.3], [small, small], label="predicted: the small-batch error")
    ax.set_xticks(range(len(ARMS)), [f"B = {m['small']}\n{m['updates']} updates",
                                      f"B = {m['large']}, same epochs\n{m['epochs'] * N_TRAIN // m['large']} updates",
                                      f"B = {m['large']}, same updates\n{m['updates']} updates"], fontsize=7)
    ax.set(ylabel="test error", title=r"regime adaptation: $\eta \propto \sqrt{B}$")
    legend_outside(ax, ncol=2)
    return fig


claim("hoffer2017.train_longer",
      title="Train longer, generalise better: matched updates and lr ~ sqrt(B) close the large-batch gap",
      citation="Hoffer, Hubara & Soudry 2017, NeurIPS (Train longer, generalize better: closing the generalization gap "
               "in large batch training of neural networks)",
      statement="With the learning rate scaled like the square root of the batch size, a large-batch network trained "
                "for the same number of epochs as a small-batch one generalises worse, but trained for the same number "
                "of updates the generalisation gap closes.",
      tolerance="A tanh MLP (128 hidden units) on 512 digits, cross-entropy, SGD at B = 16 (lr 0.05, 10 epochs = 320 "
                "updates) against B = 512 (lr 0.05 x sqrt(32)) for 10 epochs or for 320 updates, 4 seeds. The gap at "
                "matched epochs must exceed 2 points (declared in advance), an effect paired over seeds; after the "
                "regime adaptation it must be 0 within 2 paired standard errors plus 2 binomial standard errors of a "
                "difference of test errors (near 10%, 540 test digits, averaged over seeds). Ghost batch "
                "normalisation, the paper's other remedy, is not tested.",
      control="the large batch is the small one (B = 16 in every arm): there is no gap to close",
      predictions={},
      measure=measure_train_longer, judge=judge_train_longer, figure=figure_train_longer,
      mutations=[
          Mutation("no gap at matched epochs", numbers=lambda m: {**m, "errors": {
              **m["errors"], "large batch, same epochs": m["errors"]["small batch"]}}),
          Mutation("the gap stays after matching updates", numbers=lambda m: {**m, "errors": {
              **m["errors"], "large batch, same updates": m["errors"]["large batch, same epochs"]}}),
      ])
