"""Fitting losses: residuals on log or raw scale, and the penalty applied to them.

The residual of row ``i`` is ``r_i = log f(x_i) - log y_i`` (``space="log"``, the Chinchilla
convention) or ``r_i = f(x_i) - y_i`` (``space="raw"``).  The objective is ``sum_i rho(r_i)``
(``reduction="sum"``) or its mean, with ``rho`` one of

* ``huber``: ``r^2 / 2`` for ``|r| <= delta``, ``delta (|r| - delta / 2)`` beyond (Huber 1964;
  Hoffmann et al. 2022 use delta = 1e-3 on log-loss residuals);
* ``mse``: ``r^2``;
* ``mae``: ``|r|`` (not differentiable at 0; its subgradient ``sign(r)`` is used).

The averaging pitfall (Besiroglu et al. 2024): the mean and the sum have the same minimiser, but
the published procedure -- scipy's L-BFGS-B with its default stopping rule (changes compared with
``max(|f|, 1)``, gradient tolerance 1e-5) and finite-difference gradients -- stops long before the
optimum when the objective is small (the mean Huber loss on the Chinchilla data is ~4e-6), which is
how alpha ~0.38 / beta ~0.31 came about (see :mod:`theorylab.fits.reference`).  theorylab sums by
default, uses exact gradients, and scales its stopping tolerances by the objective, so with it the
mean and the sum give the same fit.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from theorylab.fits.choices import LOSSES

LossName = Literal["huber", "mse", "mae"]
Space = Literal["log", "raw"]
Reduction = Literal["sum", "mean"]


@dataclass(frozen=True)
class Loss:
    """A fitting loss: ``name`` applied to residuals in ``space``, reduced by ``reduction``."""

    name: LossName = "huber"
    delta: float = 1e-3
    space: Space = "log"
    reduction: Reduction = "sum"

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ValueError(f"penalty must be one of {LOSSES}, got {self.name!r}")
        if self.space not in ("log", "raw"):
            raise ValueError(f"space must be 'log' or 'raw', got {self.space!r}")
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")
        if not (np.isfinite(self.delta) and self.delta > 0):
            raise ValueError(f"delta must be a finite number > 0, got {self.delta}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def residuals(self, pred: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``log pred - log y`` or ``pred - y`` (NaN where a log prediction is not positive)."""
        if self.space == "log":
            with np.errstate(all="ignore"):
                return np.where(pred > 0, np.log(np.where(pred > 0, pred, 1.0)), np.nan) - np.log(y)
        return pred - y

    def rho(self, r: np.ndarray) -> np.ndarray:
        """The penalty of each residual (broadcasts over leading axes)."""
        if self.name == "huber":
            a = np.abs(r)
            return np.where(a <= self.delta, 0.5 * r * r, self.delta * (a - 0.5 * self.delta))
        if self.name == "mse":
            return r * r
        return np.abs(r)

    def drho(self, r: np.ndarray) -> np.ndarray:
        """``d rho / d r``."""
        if self.name == "huber":
            return np.clip(r, -self.delta, self.delta)
        if self.name == "mse":
            return 2.0 * r
        return np.sign(r)

    def reduce(self, values: np.ndarray, axis: int = -1) -> np.ndarray:
        return values.sum(axis=axis) if self.reduction == "sum" else values.mean(axis=axis)

    def objective(self, pred: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The objective of predictions ``pred`` (rows on the last axis); ``inf`` where undefined."""
        r = self.residuals(pred, y)
        value = self.reduce(self.rho(r))
        return np.where(np.isfinite(value), value, np.inf)
