"""Neural collapse: in the terminal phase of training (Papyan, Han & Donoho 2020) and at the global
minimisers of deep linear unconstrained-features models (Dang et al. 2023)."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from theorylab.claims import (Context, Judgement, Mutation, bound, claim, effect, mean_and_stderr, paired_difference,
                              precondition, undecided)
from theorylab.claims.figures import (band, figure_legend, legend_outside, log_axis, measured_shades, prediction,
                                      prediction_level)
from theorylab.collapse import class_geometry, collapse_monitor, neural_collapse
from theorylab.data import load_digits
from theorylab.models import MLP
from theorylab.plotting import new_figure
from theorylab.theory import imbalanced_ufm_norms, ufm_global_objective
from theorylab.train import accuracy_monitor, train

# ---------------------------------------------------------------------------------------------
# 1. Terminal phase of training (Papyan, Han & Donoho 2020)
# ---------------------------------------------------------------------------------------------
MEASURES = {"nc1": "NC1 within-class variability", "etf_distance_means": "NC2 distance of the means to a simplex ETF",
            "nc3": "NC3 classifier-means mismatch", "nc4": "NC4 disagreement with the nearest centre"}
TERMINAL_POINTS = 5   # measurements needed in the terminal phase
FALL = math.log(1.1)  # smallest fall that counts, declared in advance: 10%


def measure_terminal_phase(ctx: Context) -> dict:
    steps, every = ctx.pick(3000, 30000), ctx.pick(200, 500)
    seeds = ctx.seeds(3, 3)[:2] if ctx.control else ctx.seeds(3, 3)
    runs = []
    for seed in seeds:
        split = load_digits(seed=seed)
        x, y = split.x_train.to(ctx.device), split.y_train.to(ctx.device)
        model = MLP(64, ctx.pick([128, 128], [512, 512, 512]), 10, seed=seed).to(ctx.device)
        if ctx.control:  # random features: the hidden layers are frozen, the features cannot collapse
            model.hidden_layers.requires_grad_(False)
        res = train(model, nn.CrossEntropyLoss(), (x, y), steps=steps, lr=0.05, optimizer="sgd", batch_size=128,
                    momentum=0.9, weight_decay=5e-4, seed=seed,
                    monitors=[collapse_monitor((x, y), classifier="readout", every=every),
                              accuracy_monitor((x, y), every=every)])
        runs.append({"steps": res.monitor_steps["accuracy"], "accuracy": res.monitors["accuracy"],
                     **{k: res.monitors[f"collapse.{k}"] for k in MEASURES}})
    return {"seeds": seeds, "runs": runs}


def _terminal_start(run: dict) -> int | None:
    zero = np.nonzero(np.asarray(run["accuracy"]) == 1.0)[0]
    return int(zero[0]) if zero.size and len(run["accuracy"]) - zero[0] >= TERMINAL_POINTS else None


def judge_terminal_phase(m: dict, p) -> Judgement:
    starts = [_terminal_start(r) for r in m["runs"]]
    reached = all(s is not None for s in starts)
    checks = [precondition(f"zero training error with {TERMINAL_POINTS} measurements left, in every seed", reached,
                           requirement="train accuracy 1.0 reached early enough")]
    per_seed: dict = {"seed": list(m["seeds"]), "zero-error step": [
        int(np.asarray(r["steps"])[s]) if s is not None else None for r, s in zip(m["runs"], starts)]}
    falls = {}
    for key, label in MEASURES.items():
        name = f"{label}: log(value at zero error / at the end)"
        if key == "nc4":
            continue  # NC4 can start at 0 in the terminal phase; its end value is bounded below
        if not reached:
            checks.append(undecided(name, kind="effect", predicted="> 0", why="no terminal phase"))
            continue
        at_zero = np.array([r[key][s] for r, s in zip(m["runs"], starts)])
        at_end = np.array([r[key][-1] for r in m["runs"]])
        falls[key] = np.log(at_zero / at_end)
        mean, se = mean_and_stderr(falls[key])
        checks.append(effect(name, mean, se, smallest=FALL, source="declared in advance: a fall of 10%"))
        per_seed[f"{key} fall"] = np.exp(falls[key]).tolist()
    initial = np.array([r["etf_distance_means"][0] for r in m["runs"]])
    final = np.array([r["etf_distance_means"][-1] for r in m["runs"]])
    gain, gain_se = paired_difference(np.log(initial), np.log(final))
    checks.append(effect("NC2: log(ETF distance untrained / at the end): the means approach the ETF beyond the random "
                         "geometry", gain, gain_se, smallest=FALL, source="declared in advance: 10% closer"))
    end_nc4 = float(np.max([r["nc4"][-1] for r in m["runs"]]))
    checks.append(bound("NC4 at the end, worst seed", end_nc4, upper=0.02,
                        source="98% agreement on the ~1,258 training examples (exactly 0 is the limit, not a finite-time "
                               "value)"))
    per_seed["NC2 untrained / end"] = (initial / final).tolist()
    return Judgement(checks, predicted="NC1-NC3 fall toward 0 after zero training error, NC2 below its untrained value, "
                                       "NC4 -> 0",
                     measured="; ".join(f"{k} x{math.exp(-np.mean(v)):.3g}" for k, v in falls.items())
                              + f" over the terminal phase; ETF distance x{math.exp(-gain):.3g} from init; NC4 {end_nc4:.3g}",
                     per_seed=per_seed,
                     rule="each seed trains its own network on its own split; falls are averaged over seeds with their "
                          "standard errors; NC4 takes the worst seed.")


def figure_terminal_phase(m: dict, p):
    fig, axes = new_figure(ncols=2, nrows=2, width=3.4, height=2.6)
    steps = np.asarray(m["runs"][0]["steps"])
    starts = [s for s in (_terminal_start(r) for r in m["runs"]) if s is not None]
    start = min(starts) if starts else 0
    for ax, (key, label) in zip(axes.ravel(), MEASURES.items()):
        if key == "nc4":
            band(ax, steps, [r[key] for r in m["runs"]], marker="", label="measured (mean ± 2 s.e. over seeds)")
            prediction_level(ax, y=0.02, ls=":", label="bound on NC4 at the end (0.02)")
            ax.set_ylabel("fraction of examples")
        else:  # relative to the value at zero training error: the terminal phase starts at 1
            band(ax, steps, [np.asarray(r[key]) / r[key][s if s is not None else 0]
                             for r, s in zip(m["runs"], (_terminal_start(r) for r in m["runs"]))],
                 marker="", label="measured (mean ± 2 s.e. over seeds)")
            ax.set_ylabel("relative to zero training error")
        if key == "etf_distance_means":
            untrained = np.mean([r[key][0] / r[key][_terminal_start(r) or 0] for r in m["runs"]])
            ax.axhline(untrained, color="0.5", lw=1, ls="-.", label="untrained network")
        prediction_level(ax, y=0.0, label="predicted limit 0")
        ax.axvline(steps[start], color="0.5", ls=":", lw=1, label="zero training error")
        ax.set(xlabel="step", title=label.split(" ", 1)[0] + ": " + label.split(" ", 1)[1])
        ax.set_ylim(bottom=-0.05 if key != "nc4" else 0.0)
    figure_legend(fig, axes.ravel())
    return fig


claim("papyan2020.neural_collapse",
      title="Neural collapse in the terminal phase of training",
      citation="Papyan, Han & Donoho 2020, PNAS 117(40) (Prevalence of neural collapse during the terminal phase of deep "
               "learning training)",
      statement="Training an MLP on the digits data past zero training error (the terminal phase), the within-class "
                "variability NC1 falls, the centred class means approach a simplex ETF (NC2), the classifier rows align "
                "with the class means (NC3) and the network's decision agrees with the nearest class centre (NC4 -> 0).",
      tolerance="Papyan et al. predict a limit, not values at a finite time. Per seed (3), each measure's fall over the "
                "terminal phase (from the first zero-error measurement to the end) is an effect over seeds, refuted "
                "if its 95% interval lies below a 10% fall. Because a geometry can drift without collapsing, NC2 must "
                "also end closer to a simplex ETF than the untrained network was (paired over seeds, same 10%). NC4 "
                "must end at most 0.02 in every seed. Precondition: zero training error with 5 measurements left.",
      control="random features (hidden layers frozen): the features cannot move, so they cannot collapse",
      predictions={},
      measure=measure_terminal_phase, judge=judge_terminal_phase, figure=figure_terminal_phase,
      mutations=[
          Mutation("measures flat after zero error", numbers=lambda m: {**m, "runs": [
              {**r, **{k: np.where(np.arange(len(r[k])) >= (_terminal_start(r) or 0), r[k][_terminal_start(r) or 0], r[k])
                       for k in MEASURES}} for r in m["runs"]]}),
          Mutation("NC4 ends at 0.1", numbers=lambda m: {**m, "runs": [
              {**r, "nc4": np.asarray(r["nc4"]) + 0.1} for r in m["runs"]]}),
          Mutation("training error never zero", numbers=lambda m: {**m, "runs": [
              {**r, "accuracy": np.minimum(r["accuracy"], 0.99)} for r in m["runs"]]}),
      ])


# ---------------------------------------------------------------------------------------------
# 2. Deep linear unconstrained-features model (Dang et al. 2023)
# ---------------------------------------------------------------------------------------------
LAMBDA_QUICK, LAMBDA_FULL = 5e-3, 5e-4  # N lambda = 0.4 quick, 0.5 full (at N lambda = 5 L-BFGS stalls at depth 6)
GRAD_TOL = 2e-5  # times lambda: near a minimiser with curvature ~ lambda, parameter errors ~ 2e-5
RESTARTS = 2  # random starts per fit at full scale (depth 6 has partly-trivial critical points)


def _fit_ufm(counts: list[int], dim: int, depth: int, lam: float, seed: int, device: torch.device, init: float
             ) -> tuple[Tensor, list[Tensor], Tensor, float, float]:
    """Minimise ``(1/2N) ||W_M ... W_1 H - Y||^2 + (lam/2) (sum ||W_m||^2 + ||H||^2)`` (bias-free, MSE, one free
    feature column per sample) with L-BFGS in float64 from a random start (features of scale ``init``).

    Returns the features ``H`` (d x N), the layers, the labels, the objective and the largest gradient entry.
    """
    g = torch.Generator().manual_seed(seed)
    k, n = len(counts), sum(counts)
    dims = [dim] * depth + [k]
    h = (init * torch.randn(dim, n, generator=g, dtype=torch.float64)).to(device).requires_grad_()
    ws = [(torch.randn(dims[i + 1], dims[i], generator=g, dtype=torch.float64) / dims[i] ** 0.5)
          .to(device).requires_grad_() for i in range(depth)]
    y = torch.repeat_interleave(torch.arange(k), torch.tensor(counts)).to(device)
    target = nn.functional.one_hot(y, k).T.to(torch.float64)
    params = [h, *ws]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=5000, tolerance_grad=1e-12, tolerance_change=1e-16,
                            history_size=50, line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        out = h
        for w in ws:
            out = w @ out
        return 0.5 / n * (out - target).pow(2).sum() + 0.5 * lam * (sum(w.pow(2).sum() for w in ws) + h.pow(2).sum())

    def closure() -> Tensor:
        opt.zero_grad()
        value = objective()
        value.backward()
        return value

    opt.step(closure)
    value = float(closure().detach())
    grad_max = max(float(q.grad.abs().max()) for q in params)
    return h.detach(), [w.detach() for w in ws], y, value, grad_max


def _best_fit(ctx: Context, counts: list[int], dim: int, depth: int, lam: float, seed: int):
    """The lowest-objective result of ``RESTARTS`` random starts: the claim is about the global minimiser."""
    fits = [_fit_ufm(counts, dim, depth, lam, seed * 100 + r, ctx.device, init=0.1)
            for r in range(ctx.pick(1, RESTARTS))]
    return min(fits, key=lambda f: f[3])


def _balanced(ctx: Context, seed: int, lam: float) -> dict:
    counts, dim, depth = ctx.pick([20] * 4, [100] * 10), ctx.pick(8, 32), ctx.pick(3, 6)
    h, ws, y, value, grad = _best_fit(ctx, counts, dim, depth, lam, seed)
    out = {"objective": value, "grad_max": grad, "counts": counts, "depth": depth, "nc1": [], "etf": [], "cos": [],
           "equinorm": []}
    feats = h.T
    for w in [None, *ws[:-1]]:  # the features H, then W_1 H, ..., W_{M-1} ... W_1 H (inputs of each layer)
        feats = feats if w is None else feats @ w.T
        r, geometry = neural_collapse(feats, y), class_geometry(feats, y)
        out["nc1"].append(r.nc1)
        out["etf"].append(r.etf_distance_means)
        out["cos"].append(geometry.max_mean_cosine)
        out["equinorm"].append(float(np.std(geometry.mean_norms) / max(np.mean(geometry.mean_norms), 1e-300)))
    return out


def _imbalanced(ctx: Context, seed: int, lam: float) -> dict:
    counts = ctx.pick([40, 20, 10, 5], [400, 200, 100, 50, 25, 400, 200, 100, 50, 25])
    h, (w,), y, value, grad = _best_fit(ctx, counts, ctx.pick(8, 32), 1, lam, seed)
    geometry = class_geometry(h.T, y, classifier_weight=w)
    return {"objective": value, "grad_max": grad, "counts": counts, "depth": 1, "nc1": neural_collapse(h.T, y).nc1,
            "classifier_norms": geometry.classifier_norms, "mean_norms": geometry.mean_norms,
            "mean_cosines": geometry.mean_cosines, "classifier_cosines": geometry.classifier_cosines}


def measure_deep_linear_collapse(ctx: Context) -> dict:
    claimed = ctx.pick(LAMBDA_QUICK, LAMBDA_FULL)
    lam = 0.0 if ctx.control else claimed  # control: no weight decay, any interpolating solution is a minimiser
    seeds = ctx.seeds(3, 3)
    return {"lambda": claimed, "lambda_used": lam, "seeds": seeds, "balanced": [_balanced(ctx, s, lam) for s in seeds],
            "imbalanced": [_imbalanced(ctx, s + 100, lam) for s in seeds]}


def judge_deep_linear_collapse(m: dict, p) -> Judgement:
    checks = []
    balanced, imbalanced = m["balanced"], m["imbalanced"]
    lam = float(m["lambda"])
    converged, grad_tol = max(r["grad_max"] for r in balanced + imbalanced), GRAD_TOL * lam
    excess = max(r["objective"] - p.global_objective(r["counts"], depth=r["depth"], lambda_w=lam, lambda_h=lam)
                 for r in balanced + imbalanced)
    checks += [
        precondition(f"L-BFGS converged: largest gradient entry <= {grad_tol:g} in every fit", converged <= grad_tol,
                     requirement=f"<= {grad_tol:g} (2e-5 lambda)", measured=converged),
        precondition("the global minimiser was found: objective within 1e-8 of the separable optimum in every fit",
                     excess <= 1e-8, requirement="objective - global objective <= 1e-8", measured=excess,
                     detail="weight decay makes W = H = 0 a critical point, and at depth >= 3 critical points with "
                            "some classes left at zero are local minima; those are not the minimisers of the claim"),
    ]
    geometric = ("L-BFGS to a gradient below 2e-5 lambda near a minimiser with curvature ~ lambda leaves parameter "
                 "errors ~2e-5: geometric quantities within 1e-4")
    checks += [
        bound("balanced: max NC1 over layers and seeds", max(max(r["nc1"]) for r in balanced), upper=1e-8,
              source="NC1 is quadratic in the parameter errors (~2e-5): 1e-8"),
        bound("balanced: max distance of the centred means to a simplex ETF", max(max(r["etf"]) for r in balanced),
              upper=1e-4, source=geometric),
        bound("balanced: max |cos| between class means (orthogonal frame)", max(max(r["cos"]) for r in balanced),
              upper=1e-4, source=geometric),
        bound("balanced: max equinorm deviation of the class means", max(max(r["equinorm"]) for r in balanced),
              upper=1e-4, source=geometric),
    ]
    w_err, h_err, cos_h, cos_w = [], [], [], []
    for r in imbalanced:
        w_pred, h_pred = p.norms(r["counts"], lambda_w=lam, lambda_h=lam)
        w_err.append(float(np.max(np.abs(np.asarray(r["classifier_norms"]) - w_pred)) / w_pred.max()))
        h_err.append(float(np.max(np.abs(np.asarray(r["mean_norms"]) - h_pred)) / h_pred.max()))
        alive = w_pred > 0  # classes predicted to collapse to zero length have no direction to compare
        off = ~np.eye(int(alive.sum()), dtype=bool)
        cos_h.append(float(np.abs(np.asarray(r["mean_cosines"])[np.ix_(alive, alive)][off]).max()))
        cos_w.append(float(np.abs(np.asarray(r["classifier_cosines"])[np.ix_(alive, alive)][off]).max()))
    checks += [
        bound("imbalanced: max NC1 over seeds", max(r["nc1"] for r in imbalanced), upper=1e-8,
              source="NC1 is quadratic in the parameter errors (~2e-5): 1e-8"),
        bound("imbalanced: max |cos| between class means", max(cos_h), upper=1e-4, source=geometric),
        bound("imbalanced: max |cos| between classifier rows", max(cos_w), upper=1e-4, source=geometric),
        bound("imbalanced: max error of ||w_k|| / max_k ||w_k||", max(w_err), upper=1e-4, source=geometric),
        bound("imbalanced: max error of ||h_k|| / max_k ||h_k||", max(h_err), upper=1e-4, source=geometric),
    ]
    w_pred, _ = p.norms(imbalanced[0]["counts"], lambda_w=lam, lambda_h=lam)
    return Judgement(checks, predicted="NC1 = 0, orthogonal equal-norm class means at every layer (balanced); orthogonal "
                                       f"means with ||w_k|| = {np.array2string(w_pred, precision=3)} (imbalanced)",
                     measured=f"balanced max NC1 {max(max(r['nc1']) for r in balanced):.2g}, max ETF distance "
                              f"{max(max(r['etf']) for r in balanced):.2g}; imbalanced max norm error "
                              f"{max(max(w_err), max(h_err)):.2g}",
                     per_seed={"seed": list(m["seeds"]), "balanced objective": [r["objective"] for r in balanced],
                               "balanced max NC1": [max(r["nc1"]) for r in balanced],
                               "imbalanced norm error": w_err, "largest gradient entry": [
                                   max(b["grad_max"], i["grad_max"]) for b, i in zip(balanced, imbalanced)]},
                     rule="each seed is an independent random start of L-BFGS; every bound takes the worst seed.")


def figure_deep_linear_collapse(m: dict, p):
    fig, (ax_l, ax_n) = new_figure(ncols=2, width=3.8, height=3.2)
    balanced = m["balanced"]
    layers = np.arange(len(balanced[0]["nc1"]))
    band(ax_l, layers, [np.maximum(r["nc1"], 1e-30) for r in balanced], label="NC1")
    band(ax_l, layers, [np.maximum(r["etf"], 1e-30) for r in balanced], marker="s", color=measured_shades(3)[0],
         label="ETF distance (centred means)")
    prediction_level(ax_l, y=1e-4, label="bound (prediction: 0)")
    ax_l.set_xticks(layers)
    ax_l.set(yscale="log", xlabel="layer input (0 = free features)", title="balanced classes")
    legend_outside(ax_l, ncol=1)
    r = m["imbalanced"][0]
    counts = np.asarray(r["counts"])
    order = np.argsort(counts)
    w_pred, h_pred = p.norms(counts, lambda_w=float(m["lambda"]), lambda_h=float(m["lambda"]))
    prediction(ax_n, counts[order], w_pred[order], ls="-", label=r"$\|w_k\|$ predicted")
    prediction(ax_n, counts[order], h_pred[order], label=r"$\|h_k\|$ predicted")
    ax_n.plot(counts, r["classifier_norms"], "o", color=measured_shades(2)[1], label=r"$\|w_k\|$ measured")
    ax_n.plot(counts, r["mean_norms"], "s", color=measured_shades(2)[0], label=r"$\|h_k\|$ measured")
    ax_n.set(xlabel="samples in class $n_k$", title=f"imbalanced classes (seed {m['seeds'][0]})")
    log_axis(ax_n, "x", ticks=sorted(set(counts.tolist())))
    legend_outside(ax_n)
    return fig


def _perturb_imbalanced(key: str, factor: float):
    return lambda m: {**m, "imbalanced": [{**r, key: np.asarray(r[key]) * factor} for r in m["imbalanced"]]}


claim("dang2023.deep_linear_collapse",
      title="Neural collapse at the global minimisers of deep linear unconstrained-features models",
      citation="Dang, Tran, Osher, Tran-The, Ho & Nguyen 2023, ICML (Neural collapse in deep linear networks: from "
               "balanced to imbalanced data)",
      statement="Bias-free MSE with weight decay on every layer and on the free features. Balanced classes, depth 3: at "
                "every linear layer the features collapse to their class means (NC1 = 0) and the class means form an "
                "orthogonal frame of equal norms, so the centred means are a simplex ETF. Imbalanced classes (the plain "
                "model, depth 1, where the paper's imbalanced theorem applies): the class means and classifier rows "
                "are orthogonal with lengths ||w_k||^2 = sqrt(n_k lambda_H / lambda_W) - N lambda_H and ||h_k|| = "
                "||w_k|| sqrt(lambda_W / (n_k lambda_H)) (theorylab.theory.imbalanced_ufm_norms, derived from the "
                "separable per-class problem; that they are exactly the paper's theorem is our reading of it).",
      tolerance="Weight decay lambda = 5e-3 (quick, N lambda = 0.4) and 5e-4 (full, N lambda = 0.5). Preconditions: L-BFGS "
                "in float64 reaches a largest gradient entry below 2e-5 lambda in every fit, and the "
                "best of the random starts (1 quick, 2 full) reaches the global objective of the separable per-class "
                "problem (theorylab.theory.ufm_global_objective) within 1e-8: with weight decay the origin, and at "
                "depth >= 3 points with some classes left at zero, are local minima that L-BFGS can fall into. Near a "
                "minimiser with curvature ~ lambda that gradient leaves parameter errors ~2e-5, so "
                "geometric quantities (ETF distance, |cos|, relative norm error) must be at most 1e-4 and NC1 "
                "(quadratic in the deviations) at most 1e-8, for every one of 3 random starts.",
      control="no weight decay (lambda = 0): any interpolating solution is a minimiser, nothing forces collapse",
      predictions={"norms": imbalanced_ufm_norms, "global_objective": ufm_global_objective},
      measure=measure_deep_linear_collapse, judge=judge_deep_linear_collapse, figure=figure_deep_linear_collapse,
      mutations=[
          Mutation("predicted lengths 1% long",
                   predictions={"norms": lambda *a, **kw: tuple(1.01 * v for v in imbalanced_ufm_norms(*a, **kw))}),
          Mutation("features spread within classes (NC1 1e-4)", numbers=lambda m: {**m, "balanced": [
              {**r, "nc1": np.asarray(r["nc1"]) + 1e-4} for r in m["balanced"]], "imbalanced": [
              {**r, "nc1": r["nc1"] + 1e-4} for r in m["imbalanced"]]}),
          Mutation("balanced means off the ETF", numbers=lambda m: {**m, "balanced": [
              {**r, "etf": np.asarray(r["etf"]) + 1e-3, "cos": np.asarray(r["cos"]) + 1e-3,
               "equinorm": np.asarray(r["equinorm"]) + 1e-3} for r in m["balanced"]]}),
          Mutation("imbalanced directions not orthogonal", numbers=lambda m: {**m, "imbalanced": [
              {**r, "mean_cosines": np.asarray(r["mean_cosines"]) + 1e-3,
               "classifier_cosines": np.asarray(r["classifier_cosines"]) + 1e-3} for r in m["imbalanced"]]}),
          Mutation("imbalanced feature norms 1% long", numbers=_perturb_imbalanced("mean_norms", 1.01)),
          Mutation("a partly-trivial critical point", numbers=lambda m: {**m, "balanced": [
              {**r, "objective": r["objective"] + 0.05} for r in m["balanced"]]}),
          Mutation("L-BFGS stopped early", numbers=lambda m: {**m, "balanced": [
              {**r, "grad_max": 1e-3} for r in m["balanced"]]}),
      ])
