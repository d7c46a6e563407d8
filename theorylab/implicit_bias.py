"""Margins and the implicit bias of classifiers trained on separable data.

* :func:`max_margin`: the hard-margin SVM through the origin, ``w_svm = argmin ||w|| s.t. y_i w.x_i >= 1``
  (labels ``+-1``), with its unit direction and geometric margin ``gamma = 1 / ||w_svm||``.  Gradient descent
  on the logistic loss converges in direction to it (Soudry, Hoffer, Nacson, Gunasekar & Srebro 2018, "The
  implicit bias of gradient descent on separable data", JMLR 19(70)), with ``w_t ~ w_svm log t``.  Solved
  as its dual, ``max_a sum a_i - |sum a_i y_i x_i|^2 / 2`` over ``a >= 0``, by L-BFGS-B; separability is
  decided first by a linear programme (``y_i w.x_i >= 1`` feasible).
* :func:`margin_statistics`: for a linear predictor ``w``, the normalised margin ``min_i y_i w.x_i / ||w||``,
  the angle to a reference direction (e.g. the max-margin one) and ``||w||``.
* :func:`normalized_margin` (an analyzer of a model): the margins ``q_i`` of a network's outputs
  (``y f(x)`` for one output with labels ``+-1`` or ``0/1``; ``f_y(x) - max_{j != y} f_j(x)`` for several),
  their minimum and the normalised margin ``min_i q_i / ||theta||^L`` for an ``L``-homogeneous network
  (Lyu & Li 2020, "Gradient descent maximizes the margin of homogeneous neural networks", ICLR), with
  the angle between the parameters and a reference direction.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.optimize
import torch
from torch import Tensor, nn

from theorylab._params import ParamSpec
from theorylab._state import Mode
from theorylab.adapters import OutputFn, check_classification
from theorylab.analyzer import analyzer
from theorylab.batches import Data
from theorylab.functional import ModelFunction
from theorylab.plotting import axes_or_new
from theorylab.results import Result, result_class


@result_class
class MaxMargin(Result):
    """The max-margin separator through the origin: unit ``direction``, geometric ``margin`` and the
    indices of the support vectors (points at the margin, to a relative 1e-6)."""

    direction: np.ndarray
    margin: float
    support: np.ndarray

    @property
    def svm_weights(self) -> np.ndarray:
        """``w_svm = direction / margin``: the minimum-norm ``w`` with ``y_i w.x_i >= 1``."""
        return self.direction / self.margin

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.bar(np.arange(self.direction.size), self.direction)
        ax.set(xlabel="coordinate", ylabel="max-margin direction", title=f"margin {self.margin:.4g}")
        return ax


@result_class
class Margins(Result):
    """Margins of a classifier: per example (``margins``), their minimum, the parameter norm and the normalised
    margin ``min_margin / parameter_norm ** homogeneity``; ``angle`` (radians) to a reference direction."""

    margins: np.ndarray
    min_margin: float
    parameter_norm: float
    homogeneity: float
    normalized_margin: float
    angle: float | None = None

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.hist(self.margins, bins=30)
        ax.axvline(self.min_margin, color="C3", ls="--")
        ax.set(xlabel="margin", ylabel="examples", title=f"normalised margin {self.normalized_margin:.4g}")
        return ax


def _labels(y: Any) -> np.ndarray:
    """Labels as +-1 (from +-1 or 0/1)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    values = set(np.unique(y).tolist())
    if values <= {-1.0, 1.0}:
        return y
    if values <= {0.0, 1.0}:
        return 2.0 * y - 1.0
    raise ValueError(f"binary labels must be +-1 or 0/1, got values {sorted(values)[:5]}")


def _points(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty (n, d) array, got shape {x.shape}")
    y = _labels(y)
    if y.size != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.size} labels")
    return x, y


def is_separable(x: Any, y: Any) -> bool:
    """Whether some ``w`` (through the origin) has ``y_i w.x_i > 0`` for every ``i`` (a linear programme)."""
    x, y = _points(x, y)
    res = scipy.optimize.linprog(np.zeros(x.shape[1]), A_ub=-(y[:, None] * x), b_ub=-np.ones(len(y)),
                                 bounds=[(None, None)] * x.shape[1], method="highs")
    return res.status == 0


def max_margin(x: Any, y: Any, *, tol: float = 1e-12) -> MaxMargin:
    """The hard-margin SVM through the origin of separable ``(x, y)`` (module docstring)."""
    x, y = _points(x, y)
    if not is_separable(x, y):
        raise ValueError("the data are not linearly separable through the origin: no max-margin separator")
    z = y[:, None] * x                                   # rows y_i x_i
    gram = z @ z.T

    def objective(a: np.ndarray) -> tuple[float, np.ndarray]:
        ga = gram @ a
        return 0.5 * float(a @ ga) - float(a.sum()), ga - 1.0

    res = scipy.optimize.minimize(objective, np.zeros(len(y)), jac=True, method="L-BFGS-B",
                                  bounds=[(0.0, None)] * len(y), options={"ftol": tol, "gtol": tol, "maxiter": 50_000})
    w = z.T @ res.x
    direction = w / np.linalg.norm(w)
    margins = z @ direction
    margin = float(margins.min())
    support = np.nonzero(margins <= margin * (1 + 1e-6))[0]
    return MaxMargin(direction=direction, margin=margin, support=support)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.acos(max(-1.0, min(1.0, cos)))


def margin_statistics(w: Any, x: Any, y: Any, *, reference: Any = None) -> Margins:
    """Margins ``y_i w.x_i`` of the linear predictor ``w``, normalised by ``||w||``, and the angle to
    ``reference`` (e.g. ``max_margin(x, y).direction``)."""
    x, y = _points(x, y)
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.size != x.shape[1]:
        raise ValueError(f"w has {w.size} entries but x has {x.shape[1]} columns")
    norm = float(np.linalg.norm(w))
    if norm == 0:
        raise ValueError("w is zero: its normalised margin is undefined")
    margins = y * (x @ w)
    angle = None if reference is None else _angle(w, np.asarray(reference, dtype=np.float64).ravel())
    return Margins(margins=margins, min_margin=float(margins.min()), parameter_norm=norm, homogeneity=1.0,
                   normalized_margin=float(margins.min()) / norm, angle=angle)


def output_margins(outputs: Tensor, targets: Tensor) -> Tensor:
    """``y f(x)`` for one output (labels +-1 or 0/1), ``f_y(x) - max_{j != y} f_j(x)`` for several."""
    if outputs.dim() == 1 or outputs.shape[-1] == 1:
        labels = targets.reshape(-1).to(outputs.dtype)
        signs = torch.where(labels > 0, torch.ones_like(labels), -torch.ones_like(labels))
        if not bool(torch.all((labels == 1) | (labels == 0) | (labels == -1))):
            raise ValueError("one output needs binary labels (+-1 or 0/1)")
        return signs * outputs.reshape(-1)
    check_classification(outputs, targets, "a multi-class margin")
    correct = outputs.gather(1, targets.reshape(-1, 1).long()).squeeze(1)
    others = outputs.scatter(1, targets.reshape(-1, 1).long(), float("-inf"))
    return correct - others.max(dim=1).values


@analyzer
def normalized_margin(model: nn.Module, data: Data, *, homogeneity: float = 1.0, reference: Any = None,
                      params: ParamSpec = None, mode: Mode = "eval", dtype: torch.dtype | None = None,
                      device: str | torch.device | None = None, output: OutputFn | None = None) -> Margins:
    """The margins of ``model`` over ``data``, ``min_i q_i / ||theta||^homogeneity`` (Lyu & Li 2020) with
    ``theta`` the selected parameters, and the angle between ``theta`` (flattened) and ``reference``."""
    if not (homogeneity > 0 and math.isfinite(homogeneity)):
        raise ValueError(f"homogeneity must be > 0, got {homogeneity}")
    fn = ModelFunction(model, None, data, params=params, mode=mode, dtype=dtype, device=device, output=output)
    with fn.evaluating():
        margins = torch.cat([output_margins(fn.outputs({}, batch), fn.targets(batch)) for batch in fn.batches()])
    theta = torch.cat([p.detach().reshape(-1) for p in fn.params.values()]).to(torch.float64).cpu().numpy()
    norm = float(np.linalg.norm(theta))
    if norm == 0:
        raise ValueError("the selected parameters are zero: the normalised margin is undefined")
    angle = None
    if reference is not None:
        ref = np.asarray(torch.as_tensor(reference).detach().cpu(), dtype=np.float64).ravel()
        if ref.size != theta.size:
            raise ValueError(f"reference has {ref.size} entries but the selected parameters have {theta.size}")
        angle = _angle(theta, ref)
    q = margins.to(torch.float64).cpu().numpy()
    return Margins(margins=q, min_margin=float(q.min()), parameter_norm=norm, homogeneity=float(homogeneity),
                   normalized_margin=float(q.min()) / norm ** homogeneity, angle=angle)
