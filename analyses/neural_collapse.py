"""Neural collapse: in the terminal phase of training (Papyan, Han & Donoho 2020) and at the global
minimisers of deep linear unconstrained-features models (Dang et al. 2023)."""
from __future__ import annotations

import numpy as np
import scipy.stats
import torch
from torch import Tensor, nn

from theorylab.claims import Context, Outcome, check_at_most, check_undecided, claim
from theorylab.collapse import class_geometry, collapse_monitor, imbalanced_ufm_geometry, neural_collapse
from theorylab.data import load_digits
from theorylab.models import MLP
from theorylab.plotting import MEASURED, PREDICTED, new_figure
from theorylab.train import accuracy_monitor, train

TREND = -0.8  # Spearman correlation with the step that counts as "falls" over the terminal phase


@claim("papyan2020.neural_collapse",
       title="Neural collapse in the terminal phase of training",
       citation="Papyan, Han & Donoho 2020, PNAS 117(40) (Prevalence of neural collapse during the terminal phase "
                "of deep learning training)",
       statement="Training an MLP on the digits data past zero training error (the terminal phase), the "
                 "within-class variability NC1 falls, the centred class means approach a simplex ETF (NC2), the "
                 "classifier rows align with the class means (NC3) and the network's decision agrees with the "
                 "nearest class centre (NC4 -> 0).",
       tolerance="Papyan et al. predict trends toward 0, not values at a finite time, so 'falls' is tested as a "
                 "Spearman rank correlation between step and measure of at most -0.8 over the terminal phase "
                 "(every measurement from the first with zero training error on), together with a last value "
                 "below the first. NC4 must end at most 0.02 (at least 98% agreement on the ~1,258 training "
                 "examples; exact 0 is not expected at a finite step). At least 5 measurements in the terminal "
                 "phase are needed, else the trend checks are undecided.")
def terminal_phase_collapse(ctx: Context) -> Outcome:
    widths = ctx.pick([128, 128], [512, 512, 512])
    steps = ctx.pick(3000, 30000)
    every = ctx.pick(100, 500)
    split = load_digits(seed=ctx.seed)
    x, y = split.x_train.to(ctx.device), split.y_train.to(ctx.device)
    model = MLP(64, widths, 10, seed=ctx.seed).to(ctx.device)
    res = train(model, nn.CrossEntropyLoss(), (x, y), steps=steps, lr=0.05, optimizer="sgd", batch_size=128,
                momentum=0.9, weight_decay=5e-4, seed=ctx.seed,
                monitors=[collapse_monitor((x, y), classifier="readout", every=every),
                          accuracy_monitor((x, y), every=every)])
    t = res.monitor_steps["accuracy"]
    acc = res.monitors["accuracy"]
    series = {k: res.monitors[f"collapse.{k}"] for k in ("nc1", "etf_distance_means", "nc3", "nc4")}
    labels = {"nc1": "NC1 within-class variability", "etf_distance_means": "NC2 distance of means to simplex ETF",
              "nc3": "NC3 classifier-means mismatch", "nc4": "NC4 disagreement with nearest centre"}
    zero_error = np.nonzero(acc == 1.0)[0]
    checks = []
    numbers = {"steps": t, "train_accuracy": acc, **{k: v for k, v in series.items()}}
    if len(zero_error) == 0 or len(t) - zero_error[0] < 5:
        start = None
        for key in series:
            checks.append(check_undecided(f"{key} falls in the terminal phase", None, f"Spearman <= {TREND}",
                                          "zero training error not reached with 5 measurements left"))
    else:
        start = int(zero_error[0])
        numbers["zero_error_step"] = int(t[start])
        for key, values in series.items():
            tpt = values[start:]
            rho = float(scipy.stats.spearmanr(t[start:], tpt).statistic) if np.ptp(tpt) > 0 else 0.0
            checks.append(check_at_most(f"Spearman(step, {key}) over the terminal phase", rho, TREND,
                                        detail=f"{key}: {tpt[0]:.4g} at zero error -> {tpt[-1]:.4g} at the end"))
            if key != "nc4":  # NC4 can start at 0 in the terminal phase; its end value is checked below
                checks.append(check_at_most(f"{key} at the end / at zero error", tpt[-1] / tpt[0], 1.0))
    checks.append(check_at_most("NC4 at the end", float(series["nc4"][-1]), 0.02))
    fig, axes = new_figure(ncols=4, width=3.2)
    for ax, (key, values) in zip(axes, series.items()):
        ax.semilogy(t, np.maximum(values, 1e-4), "o-", ms=2, color=MEASURED, label="measured")
        if key == "nc4":
            ax.axhline(0.02, color=PREDICTED, ls="--", label="tolerance at the end (prediction -> 0)")
        else:
            ax.annotate("prediction: falls toward 0", xy=(0.97, 0.9), xycoords="axes fraction", ha="right",
                        color=PREDICTED, fontsize=7)
        if start is not None:
            ax.axvline(t[start], color="grey", ls=":", label="zero train error")
        ax.set_title(labels[key], fontsize=8)
        ax.set_xlabel("step")
    axes[0].legend()
    axes[3].legend()
    measured = ", ".join(f"{k} {v[start if start is not None else 0]:.3g} -> {v[-1]:.3g}" for k, v in series.items())
    notes = ("Papyan et al. predict the limit; at a finite step the measures only trend toward 0. The last values "
             "show how far from exact collapse this run ends.")
    return Outcome(checks, fig, predicted="NC1, NC2 (ETF distance), NC3, NC4 fall toward 0 after zero error",
                   measured=measured, numbers=numbers, notes=notes)


# ---------------------------------------------------------------------------------------------
# Deep linear unconstrained-features model
# ---------------------------------------------------------------------------------------------
def _fit_ufm(counts: list[int], dim: int, depth: int, lambda_w: float, lambda_h: float, seed: int,
             device: torch.device) -> tuple[Tensor, list[Tensor], Tensor, float]:
    """Minimise ``(1/2N) ||W_M ... W_1 H - Y||^2 + (lambda_W/2) sum ||W_m||^2 + (lambda_H/2) ||H||^2``
    (bias-free, MSE, one free feature column per sample) with L-BFGS in float64 from a random start.

    Returns the features ``H`` (d x N), the layers, the labels and the largest gradient entry at the end.
    """
    g = torch.Generator().manual_seed(seed)
    k, n = len(counts), sum(counts)
    dims = [dim] * depth + [k]
    h = (0.1 * torch.randn(dim, n, generator=g, dtype=torch.float64)).to(device).requires_grad_()
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
        return (0.5 / n * (out - target).pow(2).sum() + 0.5 * lambda_w * sum(w.pow(2).sum() for w in ws)
                + 0.5 * lambda_h * h.pow(2).sum())

    def closure() -> Tensor:
        opt.zero_grad()
        value = objective()
        value.backward()
        return value

    opt.step(closure)
    closure()
    grad_max = max(float(p.grad.abs().max()) for p in params)
    return h.detach(), [w.detach() for w in ws], y, grad_max


GRAD_TOL = 1e-7


@claim("dang2023.deep_linear_collapse",
       title="Neural collapse at the global minimisers of deep linear unconstrained-features models",
       citation="Dang, Tran, Osher, Tran-The, Ho & Nguyen 2023, ICML (Neural collapse in deep linear networks: "
                "from balanced to imbalanced data)",
       statement="Bias-free MSE with weight decay on every layer and on the free features. Balanced classes, depth "
                 "3: at every linear layer the features collapse to their class means (NC1 = 0) and the class "
                 "means form an orthogonal frame of equal norms, so the centred means are a simplex ETF. "
                 "Imbalanced classes (the plain model, depth 1, which is where the paper's imbalanced theorem "
                 "applies): the class means and classifier rows are orthogonal with lengths "
                 "||w_k||^2 = sqrt(n_k lambda_H / lambda_W) - N lambda_H and ||h_k|| = ||w_k|| sqrt(lambda_W / "
                 "(n_k lambda_H)). These lengths are derived in theorylab.collapse.imbalanced_ufm_geometry "
                 "from the separable per-class problem (and checked against a brute-force minimiser in the "
                 "tests); that they are exactly the paper's theorem is our reading of it, not a verbatim copy.",
       tolerance="The minimiser is computed by L-BFGS in float64 to a largest gradient entry below 1e-7 "
                 "(otherwise undecided); near a minimiser with curvature of order lambda ~ 5e-3 that leaves "
                 "errors of order 1e-5 in the parameters, so geometric quantities (ETF distance, |cos|, relative "
                 "norm error) must be at most 1e-4 and NC1 (quadratic in the deviations) at most 1e-8.")
def deep_linear_collapse(ctx: Context) -> Outcome:
    lam = 5e-3
    dim = ctx.pick(8, 32)
    balanced = ctx.pick([20] * 4, [100] * 10)
    imbalanced = ctx.pick([40, 20, 10, 5], [400, 200, 100, 50, 25, 400, 200, 100, 50, 25])
    depth = ctx.pick(3, 6)
    checks = []
    h, ws, y, grad_b = _fit_ufm(balanced, dim, depth, lam, lam, ctx.seed, ctx.device)
    converged_b = grad_b <= GRAD_TOL
    feats = h.T
    layer_nc1, layer_etf, layer_cos, layer_equinorm = [], [], [], []
    for w in [None, *ws[:-1]]:  # the features H, then W_1 H, ..., W_{M-1} ... W_1 H (inputs of each layer)
        feats = feats if w is None else feats @ w.T
        r = neural_collapse(feats, y)
        geometry = class_geometry(feats, y)
        layer_nc1.append(r.nc1), layer_etf.append(r.etf_distance_means)
        layer_cos.append(geometry.max_mean_cosine)
        layer_equinorm.append(float(np.std(geometry.mean_norms) / np.mean(geometry.mean_norms)))
    if converged_b:
        checks += [check_at_most("balanced: max NC1 over layers", max(layer_nc1), 1e-8),
                   check_at_most("balanced: max distance of centred means to a simplex ETF", max(layer_etf), 1e-4),
                   check_at_most("balanced: max |cos| between class means (orthogonal frame)", max(layer_cos), 1e-4),
                   check_at_most("balanced: max equinorm deviation of class means", max(layer_equinorm), 1e-4)]
    else:
        checks.append(check_undecided("balanced: collapse at the minimiser", grad_b, f"gradient <= {GRAD_TOL}",
                                      "L-BFGS did not converge"))
    h, (w,), y, grad_i = _fit_ufm(imbalanced, dim, 1, lam, lam, ctx.seed + 1, ctx.device)
    measured = class_geometry(h.T, y, classifier_weight=w)
    predicted = imbalanced_ufm_geometry(imbalanced, lambda_w=lam, lambda_h=lam)
    nc1_imb = neural_collapse(h.T, y).nc1
    # errors relative to the largest predicted length: classes predicted to collapse to zero length
    # (minority collapse) are checked too, and only the surviving classes have directions to compare
    rel_w = np.abs(measured.classifier_norms - predicted.classifier_norms) / predicted.classifier_norms.max()
    rel_h = np.abs(measured.mean_norms - predicted.feature_norms) / predicted.feature_norms.max()
    alive = predicted.classifier_norms > 0
    off_diagonal = ~np.eye(int(alive.sum()), dtype=bool)
    cos_h = float(np.abs(measured.mean_cosines[np.ix_(alive, alive)][off_diagonal]).max())
    cos_w = float(np.abs(measured.classifier_cosines[np.ix_(alive, alive)][off_diagonal]).max())
    if grad_i <= GRAD_TOL:
        checks += [check_at_most("imbalanced: NC1", nc1_imb, 1e-8),
                   check_at_most("imbalanced: max |cos| between class means", cos_h, 1e-4),
                   check_at_most("imbalanced: max |cos| between classifier rows", cos_w, 1e-4),
                   check_at_most("imbalanced: max error of ||w_k|| / max_k ||w_k||", float(rel_w.max()), 1e-4),
                   check_at_most("imbalanced: max error of ||h_k|| / max_k ||h_k||", float(rel_h.max()), 1e-4)]
    else:
        checks.append(check_undecided("imbalanced: predicted geometry", grad_i, f"gradient <= {GRAD_TOL}",
                                      "L-BFGS did not converge"))
    fig, (ax_l, ax_n) = new_figure(ncols=2, width=4.0)
    layers = np.arange(len(layer_nc1))
    ax_l.semilogy(layers, np.maximum(layer_nc1, 1e-30), "o-", color=MEASURED, label="NC1")
    ax_l.semilogy(layers, np.maximum(layer_etf, 1e-30), "s-", color="C1", label="ETF distance (centred)")
    ax_l.axhline(1e-4, color=PREDICTED, ls="--", label="tolerance (prediction 0)")
    ax_l.set_xticks(layers)
    ax_l.set_xlabel("layer input (0 = free features)")
    ax_l.set_title(f"balanced, depth {depth}")
    ax_l.legend()
    counts = np.array(imbalanced)
    order = np.argsort(counts)
    ax_n.plot(counts[order], predicted.classifier_norms[order], "-", color=PREDICTED, label="||w_k|| predicted")
    ax_n.plot(counts[order], predicted.feature_norms[order], "--", color=PREDICTED, label="||h_k|| predicted")
    ax_n.plot(counts, measured.classifier_norms, "o", color=MEASURED, label="||w_k|| measured")
    ax_n.plot(counts, measured.mean_norms, "s", color="C1", label="||h_k|| measured")
    ax_n.set_xscale("log")
    ax_n.set_xlabel("samples in class n_k")
    ax_n.set_title("imbalanced, depth 1")
    ax_n.legend()
    return Outcome(
        checks, fig,
        predicted="NC1 = 0 and orthogonal equal-norm class means at every layer (balanced); orthogonal means with "
                  f"||w_k|| = {np.array2string(predicted.classifier_norms, precision=4)} (imbalanced)",
        measured=f"balanced max NC1 {max(layer_nc1):.2g}, max ETF distance {max(layer_etf):.2g}; imbalanced "
                 f"||w_k|| = {np.array2string(measured.classifier_norms, precision=4)}, max error / largest norm "
                 f"{max(rel_w.max(), rel_h.max()):.2g}",
        numbers={"layer_nc1": layer_nc1, "layer_etf_distance": layer_etf, "layer_max_cos": layer_cos,
                 "grad_max_balanced": grad_b, "grad_max_imbalanced": grad_i, "class_counts": imbalanced,
                 "classifier_norms_measured": measured.classifier_norms,
                 "classifier_norms_predicted": predicted.classifier_norms,
                 "feature_norms_measured": measured.mean_norms, "feature_norms_predicted": predicted.feature_norms})
