"""IsoFLOP analysis: Chinchilla approach 2 (Hoffmann et al. 2022, section 3.2).

Runs are grouped into compute budgets (runs whose ``log10 C`` lie within ``width`` decades of
their neighbours form one budget).  In each budget with at least ``min_runs`` distinct model sizes
a parabola of the loss in ``log N`` is fitted by least squares; its vertex is that budget's
``N*(C)``.  Then ``log N* = a log C + const`` by least squares gives the exponent ``a`` (and
``D* = C / (6 N*)`` the exponent ``b = 1 - a``).

Known bias (Czech 2026; Besiroglu et al. 2024): the parabola is only a local approximation of
the loss profile, so the vertex moves with the width of the grid of model sizes and with
off-centre sampling (a grid not centred on the optimum), and the exponent inherits that bias.
Compare with approach 3 (the parametric fit, ``a = beta / (alpha + beta)``) side by side.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from theorylab.plotting import PREDICTED, axes_or_new
from theorylab.provenance import make_meta
from theorylab.results import Result, result_class

BIAS_WARNING = ("approach 2 (isoFLOP parabolas) is biased by the width of the model-size grid and by "
                "off-centre sampling (Czech 2026); compare with the parametric fit (approach 3)")


@result_class
class IsoFLOPResult(Result):
    """Per-budget parabola vertices ``N_opt`` and the fitted exponent ``a`` of ``N* ~ C^a``."""

    budgets: np.ndarray
    N_opt: np.ndarray
    L_opt: np.ndarray
    curvature: np.ndarray
    a: float
    a_stderr: float
    intercept: float
    slices: list[dict[str, Any]]
    skipped: list[str]
    warning: str

    @property
    def b(self) -> float:
        """Exponent of ``D* ~ C^b`` (``b = 1 - a`` under C = 6 N D)."""
        return 1.0 - self.a

    def predict_N(self, C: Any) -> np.ndarray:
        return np.exp(self.intercept + self.a * np.log(np.asarray(C, dtype=float)))

    def plot(self, ax: Any = None) -> Any:
        """The isoFLOP slices (loss against N per budget) with their parabolas and vertices."""
        ax = axes_or_new(ax)
        colors = __import__("matplotlib").colormaps["viridis"](np.linspace(0, 0.9, max(len(self.slices), 1)))
        for s, color in zip(self.slices, colors):
            ax.scatter(s["N"], s["loss"], s=10, color=color)
            grid = np.linspace(np.log(min(s["N"])), np.log(max(s["N"])), 100)
            ax.plot(np.exp(grid), np.polyval(s["coef"], grid), color=color, lw=1)
        ax.scatter(self.N_opt, self.L_opt, marker="*", s=60, color=PREDICTED, zorder=3, label="vertices N*(C)")
        ax.set_xscale("log")
        ax.set_xlabel("model size N")
        ax.set_ylabel("loss")
        ax.set_title(f"isoFLOP slices: N* ~ C^{self.a:.3f}")
        ax.legend()
        return ax


def group_budgets(C: np.ndarray, width: float) -> np.ndarray:
    """Budget label of each run: runs whose sorted log10 C differ by < ``width`` share a budget."""
    order = np.argsort(C)
    logs = np.log10(C[order])
    labels_sorted = np.concatenate([[0], np.cumsum(np.diff(logs) >= width)])
    labels = np.empty(len(C), dtype=int)
    labels[order] = labels_sorted
    return labels


def isoflop_analysis(N: Any, C: Any, loss: Any, *, width: float = 0.05, min_runs: int = 4) -> IsoFLOPResult:
    """Approach 2 on runs (model size ``N``, compute ``C``, final ``loss``); warns about its bias."""
    N, C, loss = (np.asarray(a, dtype=float) for a in (N, C, loss))
    if not (N.shape == C.shape == loss.shape and N.ndim == 1):
        raise ValueError("N, C and loss must be 1-D arrays of the same length")
    if not (np.all(np.isfinite(N)) and np.all(np.isfinite(C)) and np.all(np.isfinite(loss))) \
            or np.any(N <= 0) or np.any(C <= 0):
        raise ValueError("N and C must be finite and > 0, loss finite")
    if width <= 0 or min_runs < 3:
        raise ValueError("need width > 0 and min_runs >= 3 (a parabola has 3 coefficients)")
    warnings.warn(BIAS_WARNING, stacklevel=2)
    labels = group_budgets(C, width)
    budgets, vertices, losses, curv, slices, skipped = [], [], [], [], [], []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        budget = float(np.exp(np.mean(np.log(C[idx]))))
        if len(np.unique(N[idx])) < min_runs:
            skipped.append(f"C~{budget:.3g}: {len(np.unique(N[idx]))} model sizes (< {min_runs})")
            continue
        x = np.log(N[idx])
        coef = np.polyfit(x, loss[idx], 2)
        vertex = -coef[1] / (2 * coef[0])
        if coef[0] <= 0 or not x.min() <= vertex <= x.max():
            skipped.append(f"C~{budget:.3g}: the parabola has no minimum inside the sampled sizes")
            continue
        budgets.append(budget)
        vertices.append(float(np.exp(vertex)))
        losses.append(float(np.polyval(coef, vertex)))
        curv.append(float(coef[0]))
        slices.append({"C": budget, "N": N[idx], "loss": loss[idx], "coef": coef})
    if len(budgets) < 2:
        raise ValueError(f"approach 2 needs at least 2 budgets with a minimum inside their sizes; got "
                         f"{len(budgets)} ({'; '.join(skipped) or 'no budgets'})")
    lc, ln = np.log(budgets), np.log(vertices)
    design = np.column_stack([lc, np.ones_like(lc)])
    (a, intercept), *_ = np.linalg.lstsq(design, ln, rcond=None)
    if len(budgets) > 2:
        resid = ln - design @ np.array([a, intercept])
        cov = (resid @ resid) / (len(budgets) - 2) * np.linalg.inv(design.T @ design)
        a_se = float(np.sqrt(cov[0, 0]))
    else:
        a_se = float("nan")
    return IsoFLOPResult(budgets=np.array(budgets), N_opt=np.array(vertices), L_opt=np.array(losses),
                         curvature=np.array(curv), a=float(a), a_stderr=a_se, intercept=float(intercept),
                         slices=slices, skipped=skipped, warning=BIAS_WARNING,
                         meta=make_meta(dtype="float64", device="cpu", width=width, min_runs=min_runs))
