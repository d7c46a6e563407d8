"""Checks: the typed comparisons a claim's verdict is built from, and the rule that combines them.

Every check has a *kind* the verdict engine understands:

* ``precondition``: the regime the prediction needs was reached (the model can fit the target,
  annealing helps, the optimiser found a non-trivial solution, every run reached the threshold).
  A precondition that is not met makes the claim **inconclusive**, whatever the other checks say:
  a prediction is not tested where its assumptions fail.
* ``tolerance``: a measured number equals a predicted one within a declared tolerance.  The
  tolerance must come from an independent source (estimator error, finite-size theory), never
  from the distance between the prediction and another reference, so it is given with ``source``.
* ``bound``: an inequality, for predictions that are bounds (``measured <= upper``); an optional
  ``slack`` for estimator error, declared with its source.
* ``effect``: a predicted effect, tested for significance *with power*.  The estimate and its
  standard error give a confidence interval ``estimate +- z se``.  It passes when the interval
  lies above 0 (the effect is there, in the predicted direction), or above the least size the
  prediction states (``exceed``: "much higher" is a factor 2); it fails when the interval lies
  below the smallest effect the prediction implies (the effect is absent or much weaker than
  predicted); otherwise the experiment could not decide, and the check is undecided.

``passed`` is always a Python ``bool`` or ``None`` (undecided): a NumPy boolean is converted at
construction, so ``passed is False`` can be relied on, and anything else is rejected.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np

Kind = Literal["precondition", "tolerance", "bound", "effect"]
KINDS: tuple[str, ...] = get_args(Kind)
Verdict = Literal["confirmed", "refuted", "inconclusive", "error"]
VERDICTS: tuple[str, ...] = get_args(Verdict)

#: two-sided ~95% interval (z = 1.96, rounded up) used by effect checks unless a claim says otherwise
Z_95 = 2.0


def _as_outcome(passed: Any) -> bool | None:
    """``passed`` as a Python bool or None; NumPy booleans are converted, anything else is refused."""
    if passed is None:
        return None
    if isinstance(passed, (bool, np.bool_)):
        return bool(passed)
    raise TypeError(f"passed must be a bool or None, got {type(passed).__name__} ({passed!r})")


def _finite(name: str, what: str, value: Any) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"check {name!r}: {what} is not finite ({value})")
    return value


@dataclass(frozen=True)
class Check:
    """One typed comparison.  ``passed`` is True, False or None (could not decide)."""

    name: str
    kind: str
    passed: bool | None
    measured: float | None
    predicted: str
    source: str = ""
    detail: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"check {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "passed", _as_outcome(self.passed))
        if self.measured is not None:
            object.__setattr__(self, "measured", float(self.measured))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Constructors, one per kind
# ---------------------------------------------------------------------------------------------
def precondition(name: str, met: Any, *, requirement: str, measured: float | None = None,
                 detail: str = "") -> Check:
    """The regime the prediction needs: not met -> the claim is inconclusive (naming this check)."""
    return Check(name, "precondition", _as_outcome(met), measured, requirement, detail=detail)


def tolerance(name: str, measured: float, predicted: float, tol: float, *, source: str,
              detail: str = "") -> Check:
    """Pass when ``|measured - predicted| <= tol``; ``source`` says where ``tol`` comes from."""
    measured = _finite(name, "the measured value", measured)
    predicted = _finite(name, "the prediction", predicted)
    tol = _finite(name, "the tolerance", tol)
    if tol < 0:
        raise ValueError(f"check {name!r}: the tolerance must be >= 0, got {tol}")
    if not source:
        raise ValueError(f"check {name!r}: a tolerance needs its independent source")
    return Check(name, "tolerance", abs(measured - predicted) <= tol, measured, f"{predicted:.4g} ± {tol:.2g}",
                 source, detail)


def bound(name: str, measured: float, *, upper: float | None = None, lower: float | None = None,
          slack: float = 0.0, source: str = "", detail: str = "") -> Check:
    """Pass when ``lower - slack <= measured <= upper + slack`` (a predicted inequality).

    ``slack`` allows for the estimator error of ``measured`` and must be declared with ``source``.
    """
    measured = _finite(name, "the measured value", measured)
    if upper is None and lower is None:
        raise ValueError(f"check {name!r}: a bound needs upper, lower or both")
    slack = _finite(name, "the slack", slack)
    if slack < 0:
        raise ValueError(f"check {name!r}: the slack must be >= 0, got {slack}")
    if slack > 0 and not source:
        raise ValueError(f"check {name!r}: a slack needs its independent source")
    ok = (upper is None or measured <= upper + slack) and (lower is None or measured >= lower - slack)
    parts = ([f">= {lower:.4g}"] if lower is not None else []) + ([f"<= {upper:.4g}"] if upper is not None else [])
    text = " and ".join(parts) + (f" (slack {slack:.2g})" if slack > 0 else "")
    return Check(name, "bound", ok, measured, text, source, detail)


def effect(name: str, estimate: float, stderr: float, *, smallest: float, source: str, exceed: float = 0.0,
           z: float = Z_95, detail: str = "") -> Check:
    """A predicted positive effect, tested with power (see the module docstring).

    ``estimate +- z stderr`` above ``exceed`` (0: the effect is there; a prediction of a least size
    sets it higher): passed.  Below ``smallest`` (the smallest effect the prediction implies, from
    ``source``; ``exceed <= smallest``): failed.  Otherwise undecided (not enough power).
    """
    estimate = _finite(name, "the estimate", estimate)
    stderr = _finite(name, "the standard error", stderr)
    smallest = _finite(name, "the smallest predicted effect", smallest)
    exceed = _finite(name, "the level to exceed", exceed)
    if stderr < 0 or smallest <= 0 or z <= 0 or not 0 <= exceed <= smallest:
        raise ValueError(f"check {name!r}: need stderr >= 0, smallest > 0, z > 0 and 0 <= exceed <= smallest")
    if not source:
        raise ValueError(f"check {name!r}: the smallest predicted effect needs its source")
    low, high = estimate - z * stderr, estimate + z * stderr
    passed = True if low > exceed else False if high < smallest else None
    interval = f"{estimate:.3g} ± {z:g}×{stderr:.2g} = [{low:.3g}, {high:.3g}]"
    return Check(name, "effect", passed, estimate, f"> {exceed:.3g}; smallest predicted {smallest:.3g}", source,
                 "; ".join(x for x in (interval, detail) if x))


def undecided(name: str, *, kind: str, predicted: str, why: str) -> Check:
    """A check that could not be made (its inputs were not measured), with the reason."""
    return Check(name, kind, None, None, predicted, detail=why)


# ---------------------------------------------------------------------------------------------
# The verdict
# ---------------------------------------------------------------------------------------------
def verdict_of(checks: Iterable[Check]) -> tuple[str, str]:
    """``(verdict, reason)`` from a claim's checks.

    A precondition not met (or undecided): inconclusive, naming it.  Else any failed check:
    refuted.  Else any undecided check: inconclusive.  Else confirmed.
    """
    checks = list(checks)
    if not any(c.kind != "precondition" for c in checks):
        raise ValueError("a claim needs at least one check besides its preconditions")
    unmet = [c for c in checks if c.kind == "precondition" and c.passed is not True]
    if unmet:
        return "inconclusive", "precondition not met: " + "; ".join(_named(c) for c in unmet)
    failed = [c for c in checks if c.passed is False]
    if failed:
        return "refuted", "failed: " + "; ".join(_named(c) for c in failed)
    undecided = [c for c in checks if c.passed is None]
    if undecided:
        return "inconclusive", "could not decide: " + "; ".join(_named(c) for c in undecided)
    return "confirmed", f"all {len(checks)} checks passed"


def _named(c: Check) -> str:
    value = "" if c.measured is None else f" (measured {c.measured:.3g}, predicted {c.predicted})"
    return f"{c.name}{value}"


# ---------------------------------------------------------------------------------------------
# Seed statistics used by effect checks
# ---------------------------------------------------------------------------------------------
def mean_and_stderr(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean of independent values (seeds); needs >= 2 values."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError(f"a standard error needs at least 2 values, got {x.size}")
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and paired standard error of ``a - b`` (``a[i]`` and ``b[i]`` share seed ``i``)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {a.size} and {b.size}")
    return mean_and_stderr(a - b)
