"""Monitors: measure a model while it trains, and keep what the measurement returns.

A :class:`Monitor` calls ``fn(model, step)`` at step 0, every ``every`` steps and after the last
step, with the model in ``mode`` inside :func:`theorylab._state.preserved`, so it cannot disturb
training.  What ``fn`` returns is kept as it is: a typed :class:`~theorylab.results.Result` (with its
``meta``), a number, or a dict of numbers.  :func:`theorylab.train.train` returns, per monitor, a
:class:`Trace` of the steps and the values.

:func:`monitor` turns any analyzer into a monitor::

    monitor(lambda_max, loss_fn, data, every=10)         # lambda_max(model, loss_fn, data) every 10 steps
    run.monitors["lambda_max"].series("value")           # the measured lambda_max at each monitored step
    run.monitors["lambda_max"].values[-1]                # the last Sharpness result, with its meta
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from theorylab._state import Mode, check_mode
from theorylab.plotting import MEASURED, axes_or_new
from theorylab.results import Result, result_class

MonitorValue = Result | float | Mapping[str, float]


@dataclass
class Monitor:
    """Measure ``fn(model, step)`` at step 0, every ``every`` steps and at the last step, in ``mode``."""

    name: str
    fn: Callable[[nn.Module, int], MonitorValue]
    every: int = 1
    mode: Mode = "eval"

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"monitor {self.name!r}: every must be an integer >= 1, got {self.every!r}")
        check_mode(self.mode)


def monitor(analyzer: Callable[..., Any], *args: Any, every: int = 1, name: str | None = None,
            seed_from_step: bool = False, **kwargs: Any) -> Monitor:
    """A monitor that calls ``analyzer(model, *args, **kwargs)`` and keeps its result.

    ``name`` defaults to the analyzer's name; ``seed_from_step`` passes ``seed=step`` (fresh, yet
    reproducible, probes at every step).  The analyzer's own ``mode`` option, if given, is also the
    mode the monitor runs in.
    """
    if not callable(analyzer):
        raise ValueError(f"analyzer must be a function of a model, got {type(analyzer).__name__}")

    def measure(model: nn.Module, step: int) -> MonitorValue:
        return analyzer(model, *args, **({**kwargs, "seed": step} if seed_from_step else kwargs))

    return Monitor(name or getattr(analyzer, "__name__", "monitor"), measure, every=every,
                   mode=kwargs.get("mode", "eval"))


@result_class
class Trace(Result):
    """What one monitor recorded: ``values[i]`` was measured at step ``steps[i]``."""

    name: str
    steps: np.ndarray
    values: list[Any]

    def series(self, key: str | None = None) -> np.ndarray:
        """The recorded numbers: the values themselves, entry ``key`` of dict values, or field ``key``
        of Result values."""
        def number(value: Any) -> float:
            if key is None:
                if isinstance(value, (Result, Mapping)):
                    raise ValueError(f"monitor {self.name!r} recorded {type(value).__name__} values: name the "
                                     "key or field to read")
                return float(value)
            if isinstance(value, Mapping):
                return float(value[key])
            if isinstance(value, Result):
                return float(getattr(value, key))
            raise ValueError(f"monitor {self.name!r} recorded numbers, which have no key {key!r}")

        return np.array([number(v) for v in self.values], dtype=np.float64)

    def plot(self, ax: Any = None, key: str | None = None) -> Any:
        """The series (see :meth:`series`) against the step."""
        ax = axes_or_new(ax)
        ax.plot(self.steps, self.series(key), "o-", ms=3, color=MEASURED)
        ax.set_xlabel("step")
        ax.set_ylabel(self.name if key is None else f"{self.name}.{key}")
        return ax
