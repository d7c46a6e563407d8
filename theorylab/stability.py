"""The largest stable learning rate, found by divergence bisection.

``stability_limit(diverges, lr_low=..., lr_high=..., seeds=...)`` searches, for every seed on its own,
the step size at which a training procedure starts to diverge.  ``diverges(lr, seed) -> bool`` runs
the procedure once (one seed: one initialisation and batch order) and says whether it diverged.

The search, per seed:

1. **Bracket**: ``lr_low`` must be stable and ``lr_high`` must diverge.  If not, the bracket is widened
   by factors of ``expand`` (at most ``max_expansions`` times each way); if that fails the seed has no
   limit in range and gets ``nan`` (reported, never silently dropped).
2. **Bisection in log scale**: ``mid = sqrt(low * high)`` replaces ``high`` if it diverges, else ``low``.
3. **Stopping rule**: stop when ``high / low <= 1 + rtol``.  The limit of the seed is the geometric mean
   ``sqrt(low * high)``, within a factor ``sqrt(1 + rtol)`` of every step size in the bracket.

Divergence is assumed monotone in the step size for a fixed seed (stable below a threshold, divergent
above); where it is not, bisection still returns a step size at which the stability changes.  The
standard error of the limit over seeds is that of ``log(limit)``.

:func:`training_diverges` builds ``diverges`` for the common case: train a fresh model with
:func:`theorylab.train.train` and call it diverged when the loss becomes non-finite or the final
full-data loss exceeds ``factor`` times the initial one.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from theorylab.batches import Data
from theorylab.metrics import mean_loss
from theorylab.plotting import axes_or_new
from theorylab.results import Result, result_class


@result_class
class StabilityLimit(Result):
    """The largest stable step size per seed (``limits``, ``nan`` where none was bracketed).

    ``brackets[i] = (low, high)``: the last stable and first divergent step sizes of seed ``i``;
    ``evaluations``: every run made, as ``(seed, lr, diverged)``.
    """

    seeds: list[int]
    limits: np.ndarray
    brackets: np.ndarray
    rtol: float
    evaluations: list[tuple[int, float, bool]]

    @property
    def limit(self) -> float:
        """The geometric mean of the per-seed limits (``nan`` if any seed has none)."""
        return float(np.exp(np.mean(np.log(self.limits))))

    @property
    def log_stderr(self) -> float:
        """Standard error over seeds of ``log(limit)`` (0 for a single seed)."""
        if len(self.limits) < 2:
            return 0.0
        return float(np.std(np.log(self.limits), ddof=1) / math.sqrt(len(self.limits)))

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        for seed, lr, diverged in self.evaluations:
            ax.scatter(lr, seed, marker="x" if diverged else "o", color="C3" if diverged else "C0", s=14)
        for i, seed in enumerate(self.seeds):
            ax.plot(self.brackets[i], [seed, seed], color="k", lw=2)
        ax.set(xscale="log", xlabel="learning rate (o stable, x diverged)", ylabel="seed")
        return ax


def _check_search(lr_low: float, lr_high: float, rtol: float, expand: float, max_expansions: int) -> None:
    if not (0 < lr_low < lr_high and math.isfinite(lr_high)):
        raise ValueError(f"need 0 < lr_low < lr_high < inf, got lr_low={lr_low}, lr_high={lr_high}")
    if not 0 < rtol < 1:
        raise ValueError(f"rtol must be in (0, 1), got {rtol}")
    if not expand > 1:
        raise ValueError(f"expand must be > 1, got {expand}")
    if max_expansions < 0:
        raise ValueError(f"max_expansions must be >= 0, got {max_expansions}")


def stability_limit(diverges: Callable[[float, int], bool], *, lr_low: float, lr_high: float,
                    seeds: Sequence[int] = (0, 1, 2), rtol: float = 0.05, expand: float = 4.0,
                    max_expansions: int = 4) -> StabilityLimit:
    """The largest stable learning rate of ``diverges`` for each seed (see the module docstring)."""
    _check_search(lr_low, lr_high, rtol, expand, max_expansions)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("need at least one seed")
    evaluations: list[tuple[int, float, bool]] = []

    def run(lr: float, seed: int) -> bool:
        outcome = bool(diverges(float(lr), seed))
        evaluations.append((seed, float(lr), outcome))
        return outcome

    limits, brackets = [], []
    for seed in seeds:
        low, high, high_diverged = lr_low, lr_high, False
        for _ in range(max_expansions):
            if not run(low, seed):
                break
            low, high, high_diverged = low / expand, low, True
        else:
            low = math.nan if run(low, seed) else low
        if not (math.isnan(low) or high_diverged):
            for _ in range(max_expansions):
                if run(high, seed):
                    break
                low, high = high, high * expand
            else:
                high = high if run(high, seed) else math.nan
        while not (math.isnan(low) or math.isnan(high)) and high / low > 1 + rtol:
            mid = math.sqrt(low * high)
            if run(mid, seed):
                high = mid
            else:
                low = mid
        brackets.append((low, high))
        limits.append(math.sqrt(low * high))
    return StabilityLimit(seeds=seeds, limits=np.asarray(limits), brackets=np.asarray(brackets), rtol=rtol,
                          evaluations=evaluations)


def training_diverges(make_model: Callable[[int], nn.Module], loss_fn: Callable[..., torch.Tensor], data: Data, *,
                      steps: int, optimizer: str = "sgd", batch_size: int | None = None, momentum: float = 0.0,
                      factor: float = 1.0) -> Callable[[float, int], bool]:
    """``diverges(lr, seed)``: train ``make_model(seed)`` for ``steps`` steps (batch order from ``seed``) with
    :func:`theorylab.train.train`; diverged if the loss became non-finite or the final full-data loss is
    above ``factor`` times the initial one."""
    from theorylab.train import train

    if steps < 1 or factor <= 0:
        raise ValueError(f"need steps >= 1 and factor > 0, got steps={steps}, factor={factor}")

    def diverges(lr: float, seed: int) -> bool:
        model = make_model(seed)
        initial = mean_loss(model, loss_fn, data)
        run = train(model, loss_fn, data, steps=steps, lr=lr, optimizer=optimizer, batch_size=batch_size,
                    momentum=momentum, seed=seed)
        if run.diverged:
            return True
        final = mean_loss(model, loss_fn, data)
        return not math.isfinite(final) or final > factor * initial

    return diverges
