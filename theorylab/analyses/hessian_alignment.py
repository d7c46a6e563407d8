"""Hessian alignment bounds transfer (Hemati, Zhang, Estiri & Chen 2023, "Understanding Hessian alignment for
domain generalization", ICCV).

The transfer measure of a classifier head (Zhang, Zhao, Yu & Poupart 2021, "Quantifying and improving
transferability in domain generalization", NeurIPS), over the ball ``Gamma`` of radius ``delta`` around the head
``theta*`` learned on the source ``S``,

    ``T_Gamma(S || T) = sup_{theta in Gamma} [L_T(theta) - L_T*] - [L_S(theta) - L_S*]``,  ``L_D* = inf_Gamma L_D``,

is bounded (Hemati et al., Sec. 3, from the second-order expansion of both losses around ``theta*``) by

    ``T_Gamma(S || T) <= [L_T(theta*) - L_T*] - [L_S(theta*) - L_S*] + delta ||g_T - g_S|| +
    delta^2 / 2 ||H_T - H_S||_2``

(:func:`theorylab.theory.transfer.hessian_alignment_bound`), with ``g_D`` and ``H_D`` the gradient and Hessian
of domain ``D``'s loss in the head's parameters at ``theta*``: domains whose head Hessians align better with the
source's transfer better.

Experiment: the digits (the source: the training split) and target domains made of the held-out digits moved
sideways by 0 to 1 columns (:func:`theorylab.tasks.shifted_images`; 0 is a fresh sample of the source's
distribution), fixed random tanh features and a linear softmax head fitted to the source's minimum (cross-entropy
plus a small weight decay, which is the same for every domain and so cancels in every difference).  Per domain:
``||H_T - H_S||_2``, ``||g_T - g_S||`` (:func:`theorylab.transfer.head_hessian_alignment`) and the transfer
measure itself, its infima and supremum searched over the ball (:func:`theorylab.transfer.transfer_measure`).
The radius makes the ball the near-optimal heads of the source: ``delta = sqrt(2 eps / lambda_max(H_S))``, the
heads whose source loss exceeds its minimum by at most ``eps = 0.1`` nats to second order.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.stats import spearmanr
from torch import nn

from theorylab.claims import Context, Judgement, Mutation, bound, claim, effect, mean_and_stderr, precondition
from theorylab.claims.figures import figure_legend, log_axis, measured_shades, prediction
from theorylab.data import load_digits
from theorylab.metrics import accuracy
from theorylab.plotting import new_figure
from theorylab.tasks import shifted_images
from theorylab.theory.transfer import hessian_alignment_bound
from theorylab.transfer import head_hessian_alignment, transfer_measure

WEIGHT_DECAY = 1e-2   # makes the source's cross-entropy minimum finite (the features separate the digits)
NEAR_OPTIMAL = 0.1    # eps: the ball holds the heads within 0.1 nats of the source's minimum (second order)
AT_OPTIMUM = 1e-4     # the source head's gradient norm over the smallest gradient gap: the fit reached the minimum
SHIFTED = 0.1         # the largest shift costs >= 10 points of accuracy (> 2 binomial errors of the drop)
ORDERED = 0.8         # Spearman > 0.8 (declared in advance): over 5 domains, at most one adjacent pair out of order
SLACK = 1e-6          # the Lanczos residual bound on the Hessian gap (relative tolerance of the eigenvalue)


def _fit_head(features: torch.Tensor, labels: torch.Tensor, seed: int) -> nn.Linear:
    """The linear softmax head at the minimum of the source's regularised cross-entropy (L-BFGS, convex)."""
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], 10).to(torch.float64)
    shape = (10, features.shape[1] + 1)
    inputs = torch.cat([features, torch.ones(len(features), 1, dtype=torch.float64)], 1)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = torch.as_tensor(theta).reshape(shape).requires_grad_(True)
        loss = nn.functional.cross_entropy(inputs @ w.T, labels) + WEIGHT_DECAY / 2 * (w ** 2).sum()
        loss.backward()
        return float(loss.detach()), w.grad.ravel().numpy()

    # the head's parameters (weight, then bias) as the columns of one matrix [W | b]
    w = torch.cat([head.weight.detach(), head.bias.detach()[:, None]], 1).ravel().numpy()
    fitted = minimize(objective, w, jac=True, method="L-BFGS-B", options={"gtol": 1e-11, "ftol": 1e-15,
                                                                          "maxiter": 2000})
    theta = torch.as_tensor(fitted.x).reshape(shape)
    with torch.no_grad():
        head.weight.copy_(theta[:, :-1])
        head.bias.copy_(theta[:, -1])
    return head


def measure_hessian_alignment(ctx: Context) -> dict:
    width = ctx.pick(32, 128)
    shifts = ctx.pick([0.0, 0.25, 0.5, 0.75, 1.0], [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])
    seeds = ctx.seeds(3, 10)
    ce = nn.CrossEntropyLoss()
    runs = []
    for seed in seeds:
        split = load_digits(standardize=False, seed=seed, dtype=torch.float64)
        centre = split.x_train.mean(0) / 16
        generator = torch.Generator().manual_seed(seed)
        projection = torch.randn(64, width, generator=generator, dtype=torch.float64)

        def features(images: torch.Tensor) -> torch.Tensor:
            return torch.tanh((images / 16 - centre) @ projection / 2)

        source = (features(split.x_train), split.y_train)
        head = _fit_head(*source, seed).to(ctx.device)
        source = tuple(t.to(ctx.device) for t in source)
        # each target domain: its own random half of the held-out digits, moved by its shift (none in the control)
        halves = [torch.randperm(len(split.y_test), generator=generator)[: len(split.y_test) // 2] for _ in shifts]
        domains = []
        radius = None
        for shift, half in zip(shifts, halves):
            images = shifted_images(split.x_test[half], 0.0 if ctx.control else shift)
            target = (features(images).to(ctx.device), split.y_test[half].to(ctx.device))
            aligned = head_hessian_alignment(head, ce, source, target, tol=1e-6)
            if radius is None:  # the source's curvature, the same for every domain
                radius = math.sqrt(2 * NEAR_OPTIMAL / (aligned.top_eigenvalue_a + WEIGHT_DECAY))
            measured = transfer_measure(head, ce, source, target, radius=radius, weight_decay=WEIGHT_DECAY,
                                        tol=1e-4, restarts=2, seed=seed)
            domains.append({"shift": shift, "accuracy": accuracy(head, target),
                            "hessian_gap": aligned.hessian_gap, "gradient_gap": aligned.gradient_gap,
                            "source_top": aligned.top_eigenvalue_a, "target_top": aligned.top_eigenvalue_b,
                            "transfer": measured.value, "sup_gap": measured.sup_gap,
                            "target_excess": measured.target_center - measured.target_min,
                            "source_excess": measured.source_center - measured.source_min,
                            "source_gradient_norm": measured.source_gradient_norm})
        runs.append({"seed": seed, "radius": radius, "domains": domains})
    return {"width": width, "shifts": shifts, "weight_decay": WEIGHT_DECAY, "near_optimal": NEAR_OPTIMAL,
            "seeds": seeds, "runs": runs}


def _bound(run: dict, domain: dict, p) -> float:
    return p.hessian_alignment_bound(run["radius"], domain["hessian_gap"], domain["gradient_gap"],
                                     domain["target_excess"], domain["source_excess"])


def _column(run: dict, key: str) -> np.ndarray:
    return np.asarray([d[key] for d in run["domains"]], dtype=np.float64)


def _spearman(run: dict) -> float:
    rho = spearmanr(_column(run, "hessian_gap"), _column(run, "transfer"))[0]
    return 0.0 if not math.isfinite(rho) else float(rho)  # constant columns: no ordering


def judge_hessian_alignment(m: dict, p) -> Judgement:
    runs = m["runs"]
    ratios = [[d["transfer"] / _bound(r, d, p) for d in r["domains"]] for r in runs]
    worst = max(max(row) for row in ratios)
    optimum = max(max(_column(r, "source_gradient_norm")) / min(_column(r, "gradient_gap")) for r in runs)
    drops = [float(_column(r, "accuracy")[0] - _column(r, "accuracy")[-1]) for r in runs]
    rhos = [_spearman(r) for r in runs]
    rho, rho_se = mean_and_stderr(rhos)
    checks = [
        precondition(f"the source head is at the source's minimum: its gradient norm <= {AT_OPTIMUM:g} x the smallest "
                     "gradient gap ||g_T - g_S||, in every seed", optimum <= AT_OPTIMUM,
                     requirement=f"<= {AT_OPTIMUM:g}", measured=optimum),
        precondition(f"the domains are shifted: the most shifted target loses >= {SHIFTED:g} accuracy against the "
                     "unshifted one, in every seed", min(drops) >= SHIFTED, requirement=f">= {SHIFTED:g}",
                     measured=min(drops)),
        bound("transfer measure over the Hessian-alignment bound, worst domain and seed", worst, upper=1.0,
              slack=SLACK, source="the Lanczos residual bound on ||H_T - H_S||_2 (relative tolerance 1e-6)"),
        effect("Spearman correlation of ||H_T - H_S||_2 with the transfer measure across domains", rho, rho_se,
               smallest=ORDERED, exceed=ORDERED,
               source="declared in advance: the domains ordered by Hessian misalignment as by transfer (Spearman "
                      "0.8: over 5 domains, at most one adjacent pair out of order)")]
    return Judgement(
        checks, predicted="transfer measure <= its Hessian-alignment bound; domains ordered alike by "
                          "||H_T - H_S||_2 and by transfer",
        measured=f"transfer / bound <= {worst:.3f}; Spearman {rho:.2f} ± {rho_se:.2f}; accuracy drop "
                 f"{np.mean(drops):.2f}",
        per_seed={"seed": m["seeds"], "radius": [r["radius"] for r in runs], "worst transfer / bound":
                  [max(row) for row in ratios], "Spearman": rhos, "accuracy drop": drops},
        rule="each seed its own split, random features, head and target halves; the bound must hold in every "
             "domain of every seed, the ordering is the mean Spearman correlation over seeds with its standard "
             "error.")


def figure_hessian_alignment(m: dict, p):
    fig, (ax_b, ax_h) = new_figure(ncols=2, width=3.6, height=3.2)
    shades = measured_shades(len(m["shifts"]))
    for r in m["runs"]:
        bounds = np.asarray([_bound(r, d, p) for d in r["domains"]])
        transfer, gaps = _column(r, "transfer"), _column(r, "hessian_gap")
        for k, shift in enumerate(m["shifts"]):
            label = f"shift {shift:g} columns" if r is m["runs"][0] else None
            ax_b.scatter(bounds[k], transfer[k], color=shades[k], s=16, label=label, zorder=3)
            ax_h.scatter(gaps[k], transfer[k], color=shades[k], s=16, zorder=3)
        order = np.argsort(gaps)
        ax_h.plot(gaps[order], transfer[order], color=shades[-1], lw=0.7, alpha=0.6)
        prediction(ax_h, gaps[order], bounds[order], lw=1.0,
                   label="prediction: the bound of each domain (one line per seed)" if r is m["runs"][0] else None)
    everything = np.asarray([[_bound(r, d, p), d["transfer"]] for r in m["runs"] for d in r["domains"]])
    line = np.geomspace(everything.min() * 0.8, everything.max() * 1.2, 2)
    prediction(ax_b, line, line, label="prediction: transfer <= bound")
    for ax in (ax_b, ax_h):
        log_axis(ax, "x")
        log_axis(ax, "y")
    ax_b.set(xlabel=r"bound: $e_T - e_S + \delta\,\|g_T - g_S\| + \frac{\delta^2}{2}\|H_T - H_S\|_2$",
             ylabel=r"transfer measure $T_\Gamma(S\,\|\,T)$", title="the bound holds")
    ax_h.set(xlabel=r"$\|H_T - H_S\|_2$ (head Hessians)", ylabel=r"transfer measure $T_\Gamma(S\,\|\,T)$",
             title="misaligned Hessians transfer worse")
    figure_legend(fig, (ax_b, ax_h), ncol=3)
    return fig


def _scaled_transfer(m: dict, factor: float) -> dict:
    """The most shifted domain of every seed with its transfer measure multiplied by ``factor``."""
    return {**m, "runs": [{**r, "domains": r["domains"][:-1] + [
        {**r["domains"][-1], "transfer": factor * r["domains"][-1]["transfer"]}]} for r in m["runs"]]}


claim("hemati2023.hessian_alignment",
      title="Hessian alignment bounds transfer: the transfer measure of a classifier head is bounded through "
            "||H_T - H_S||_2 and ||g_T - g_S||, and domains with better aligned head Hessians transfer better",
      citation="Hemati, Zhang, Estiri & Chen 2023, ICCV (Understanding Hessian alignment for domain "
               "generalization), Sec. 3: the transfer measure of Zhang, Zhao, Yu & Poupart 2021 (NeurIPS) bounded by "
               "the spectral norm of the difference of the classifier head's Hessians and the gradient difference",
      statement="For a classifier head theta* learned on a source domain S and the ball Gamma of radius delta around "
                "it, the transfer measure T_Gamma(S||T) = sup_Gamma [L_T - L_T*] - [L_S - L_S*] is at most "
                "[L_T(theta*) - L_T*] - [L_S(theta*) - L_S*] + delta ||g_T - g_S|| + delta^2/2 ||H_T - H_S||_2 (the "
                "second-order expansion of both losses around theta*), so the spectral norm of the difference of "
                "the two domains' head Hessians upper-bounds the transfer measure and domains whose head Hessians "
                "align better with the source's transfer better.",
      tolerance="Source: the 1,257 training digits; 5 target domains: random halves (270) of the 540 held-out digits "
                "moved right by 0, 0.25, 0.5, 0.75 and 1 column (linear interpolation, zero fill); fixed random tanh "
                "features of width 32 and a linear softmax head fitted by L-BFGS to the minimum of the source's "
                "cross-entropy plus weight decay 0.01 (the same in every domain); radius delta = sqrt(2 x 0.1 / "
                "lambda_max(H_S)), the heads within 0.1 nats of the source's minimum to second order; 3 seeds (split,"
                " features, halves). The transfer measure: both infima by projected gradient descent (convex in a "
                "linear head: global), the supremum of L_T - L_S by projected gradient ascent from 4 starts (the "
                "centre, the gradient direction, 2 random boundary points), step tolerance 1e-4 x delta (a lower "
                "estimate of the supremum; on small problems it equals a brute-force grid over the ball to 1e-8). "
                "Preconditions: the head's source gradient norm <= 1e-4 x the smallest gradient gap (at the minimum: "
                "the source's own first-order term is negligible in the bound); the most shifted domain "
                "loses >= 0.1 of accuracy against the unshifted one in every seed (over 2 binomial standard errors of"
                " the drop, at most 0.043 on 270 + 270 examples). Bound: transfer / bound <= 1 in every domain and "
                "seed, with e_T - e_S = [L_T(theta*) - L_T*] - [L_S(theta*) - L_S*] measured, slack 1e-6 (the Lanczos"
                " tolerance of the Hessian gap; the third-order remainder the paper neglects is not added). Effect: "
                "the mean Spearman correlation over seeds of ||H_T - H_S||_2 with the transfer measure across the "
                "domains, with its standard error, must exceed 0.8 (declared in advance: for the 5 quick domains, at "
                "most one adjacent pair out of order). Full scale: width 128, shifts 0 to 2 columns in steps of 0.25 "
                "(9 domains), 10 seeds.",
      control="the target domains are random halves of the held-out digits without any shift (the source's "
              "distribution): no measurable shift, the Hessian gaps are sampling noise",
      predictions={"hessian_alignment_bound": hessian_alignment_bound}, measure=measure_hessian_alignment,
      judge=judge_hessian_alignment, figure=figure_hessian_alignment,
      mutations=[
          Mutation("the transfer measure exceeds the bound in the most shifted domain",
                   numbers=lambda m: _scaled_transfer(m, 1.5 / min(
                       d["transfer"] / hessian_alignment_bound(r["radius"], d["hessian_gap"], d["gradient_gap"],
                                                               d["target_excess"], d["source_excess"])
                       for r in m["runs"] for d in r["domains"][-1:]))),
          Mutation("the bound without its Hessian term", predictions={
              "hessian_alignment_bound": lambda radius, hessian_gap, gradient_gap, target_excess, source_excess=0.0:
              hessian_alignment_bound(radius, 0.0, gradient_gap, target_excess, source_excess)}),
          Mutation("the Hessian gaps in reverse order of the domains", numbers=lambda m: {**m, "runs": [
              {**r, "domains": [{**d, "hessian_gap": e["hessian_gap"]} for d, e in
                                zip(r["domains"], r["domains"][::-1])]} for r in m["runs"]]}),
          Mutation("the source head is not at the source's minimum", numbers=lambda m: {**m, "runs": [
              {**r, "domains": [{**d, "source_gradient_norm": 1e-2} for d in r["domains"]]} for r in m["runs"]]}),
          Mutation("no shift: every domain as accurate as the unshifted one", numbers=lambda m: {**m, "runs": [
              {**r, "domains": [{**d, "accuracy": r["domains"][0]["accuracy"]} for d in r["domains"]]}
              for r in m["runs"]]}),
      ])
