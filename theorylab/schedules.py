"""Learning-rate schedules: the multiplier of the peak learning rate at every step.

A :class:`Schedule` holds one value per step, ``values[t]`` in ``[0, 1]`` for ``t = 0 .. T-1``, and is
called like a function (``schedule(t)``), so it can be passed to
``theorylab.train.train(..., lr_schedule=schedule)``.  With ``T`` steps and ``t = 0 .. T-1``:

============  ==========================================================================================
``constant``  ``1``
``step``      ``factor ** (number of milestones passed)``, milestones given as fractions of ``T``
``cosine``    ``final + (1 - final) (1 + cos(pi t / T)) / 2``
``linear``    ``final + (1 - final) (1 - t / T)`` (linear decay, Defazio et al. 2023)
``wsd``       warmup-stable-decay: ``1`` until ``(1 - decay_fraction) T``, then linear towards 0
              (Hu et al. 2024, "MiniCPM"), ``1 - (t - s) / (T - s)`` from ``s``
============  ==========================================================================================

:func:`with_warmup` multiplies any schedule by a linear warm-up ``min(1, (t + 1) / warmup_steps)``.

:func:`refined_schedule` is the schedule refinement of Defazio, Cutkosky, Mehta & Mishchenko 2023
("When, why and how much? Adaptive learning rate scheduling by refinement", Algorithm 1): from the
gradient norms ``||g_t||`` observed in a previous run, ``eta_t ~ ||g_t||^-2 sum_{p > t} ||g_p||^2``,
normalised to a maximum of 1; the norms are first smoothed by a running median.  For constant
gradient norms it is the linear decay ``(T - 1 - t) / (T - 1)``, the schedule that minimises their
worst-case bound on the last iterate (:func:`theorylab.theory.last_iterate_bound`); norms that
fall early give a warm-up, norms that fall late a fast final annealing.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from theorylab.plotting import axes_or_new
from theorylab.results import Result, result_class

NAMES: tuple[str, ...] = ("constant", "step", "cosine", "linear", "wsd")


@result_class
class Schedule(Result):
    """A learning-rate multiplier per step: ``values[t]`` for ``t = 0 .. len - 1``."""

    name: str
    values: np.ndarray

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"a schedule needs a non-empty 1-D array of values, got shape {values.shape}")
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError("schedule values must be finite and >= 0")
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return int(self.values.size)

    def __call__(self, step: int) -> float:
        """The multiplier at ``step`` (the last value past the end)."""
        return float(self.values[min(int(step), self.values.size - 1)])

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.plot(np.arange(len(self)), self.values, label=self.name)
        ax.set(xlabel="step", ylabel="learning-rate multiplier")
        return ax


def _steps(steps: int) -> np.ndarray:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return np.arange(int(steps), dtype=np.float64)


def _fraction(name: str, value: float, *, closed: bool = False) -> float:
    ok = 0.0 <= value <= 1.0 if closed else 0.0 < value < 1.0
    if not ok:
        raise ValueError(f"{name} must be in {'[0, 1]' if closed else '(0, 1)'}, got {value!r}")
    return float(value)


def constant(steps: int) -> Schedule:
    """The constant schedule ``1``."""
    return Schedule("constant", np.ones_like(_steps(steps)))


def step_decay(steps: int, *, milestones: Sequence[float] = (0.6,), factor: float = 0.1) -> Schedule:
    """Multiply by ``factor`` at each milestone (fractions of ``steps``, increasing)."""
    t = _steps(steps)
    marks = [_fraction("a milestone", m) for m in milestones]
    if list(marks) != sorted(marks):
        raise ValueError(f"milestones must increase, got {list(milestones)}")
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor must be in (0, 1), got {factor!r}")
    passed = sum((t >= int(m * steps)).astype(np.float64) for m in marks)
    return Schedule("step", factor ** passed)


def cosine(steps: int, *, final: float = 0.0) -> Schedule:
    """Cosine annealing from 1 towards ``final`` (Loshchilov & Hutter 2017, without restarts)."""
    t = _steps(steps)
    final = _fraction("final", final, closed=True)
    return Schedule("cosine", final + (1.0 - final) * 0.5 * (1.0 + np.cos(np.pi * t / steps)))


def linear(steps: int, *, final: float = 0.0) -> Schedule:
    """Linear decay from 1 towards ``final``: ``1 - t / T`` for ``final = 0`` (Defazio et al. 2023)."""
    t = _steps(steps)
    final = _fraction("final", final, closed=True)
    return Schedule("linear", final + (1.0 - final) * (1.0 - t / steps))


def wsd(steps: int, *, decay_fraction: float = 0.2) -> Schedule:
    """Warmup-stable-decay without its warm-up (add one with :func:`with_warmup`): constant, then a
    linear decay over the last ``decay_fraction`` of the steps (Hu et al. 2024)."""
    t = _steps(steps)
    start = int((1.0 - _fraction("decay_fraction", decay_fraction)) * steps)
    return Schedule("wsd", np.where(t < start, 1.0, 1.0 - (t - start) / (steps - start)))


def with_warmup(schedule: Schedule, warmup_steps: int) -> Schedule:
    """``schedule`` times a linear warm-up ``min(1, (t + 1) / warmup_steps)`` (Goyal et al. 2017)."""
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, np.integer)) \
            or not 1 <= warmup_steps <= len(schedule):
        raise ValueError(f"warmup_steps must be an integer in [1, {len(schedule)}], got {warmup_steps!r}")
    ramp = np.minimum(1.0, (np.arange(len(schedule)) + 1.0) / warmup_steps)
    return Schedule(f"{schedule.name} + warm-up", schedule.values * ramp)


def make_schedule(name: str, steps: int, **options: Any) -> Schedule:
    """The schedule called ``name`` (one of :data:`NAMES`) over ``steps`` steps, with its options."""
    makers = {"constant": constant, "step": step_decay, "cosine": cosine, "linear": linear, "wsd": wsd}
    if name not in makers:
        raise ValueError(f"schedule must be one of {NAMES}, got {name!r}")
    return makers[name](steps, **options)


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """The median of ``values[max(0, t - window + 1) .. t]`` at every ``t`` (a causal running median)."""
    x = np.asarray(values, dtype=np.float64)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return np.array([np.median(x[max(0, t - window + 1): t + 1]) for t in range(x.size)])


def refined_schedule(grad_norms: Sequence[float] | np.ndarray, *, smoothing: float = 0.0) -> Schedule:
    """The refined schedule of Defazio et al. 2023 (Algorithm 1) from the gradient norms of a run.

    ``eta_t = ||g_t||^-2 sum_{p = t+1}^{T-1} ||g_p||^2``, normalised to a maximum of 1, where the norms
    are first smoothed by a running median over ``smoothing * T`` steps (0: no smoothing; the paper
    uses a window of a few percent of the run).  Constant norms give linear decay to 0.
    """
    g = np.asarray(grad_norms, dtype=np.float64)
    if g.ndim != 1 or g.size < 2:
        raise ValueError(f"grad_norms must be a 1-D sequence of at least 2 norms, got shape {g.shape}")
    if not np.all(np.isfinite(g)) or np.any(g <= 0):
        raise ValueError("grad_norms must be finite and > 0")
    window = max(1, int(round(_fraction("smoothing", smoothing, closed=True) * g.size)))
    g2 = running_median(g, window) ** 2
    tail = np.concatenate([np.cumsum(g2[::-1])[::-1][1:], [0.0]])  # sum_{p > t} g_p^2
    eta = tail / g2
    return Schedule("refined", eta / eta.max())
