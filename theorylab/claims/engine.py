"""Claims: a measurement, a judgement, a negative control and the mutations that must break it.

A claim is one testable statement from a paper.  It is split in two so that it can be checked:

* ``measure(ctx) -> numbers``: the expensive part.  Runs the experiment at ``ctx.scale`` over
  ``ctx.seeds(...)`` and returns every number it measured (JSON-safe: floats, lists, arrays,
  dicts), per seed.  With ``ctx.control`` it runs the claim's *negative control* instead: the null
  version of the experiment (shuffled labels, no label noise, a constant schedule, random
  features...) in which the predicted phenomenon should be absent.
* ``judge(numbers, predictions) -> Judgement``: the cheap part.  Compares the numbers with the
  predictions through typed checks (:mod:`theorylab.claims.checks`), and states the per-seed
  outcomes and the rule that combines them.  Predictions come from ``predictions``, a mapping of
  names to functions of :mod:`theorylab.theory` (or of the fitting library), so that a test can
  replace one of them.
* ``figure(numbers, predictions) -> Figure``: the prediction drawn over the measurement.
* ``mutations``: ways to break the prediction or the measurement on purpose; each must stop the
  claim from being confirmed (``tests/test_analyses.py`` runs them all).

Running a claim gives :class:`Evidence`: the verdict of the real experiment and, beside it, the
verdict of its negative control.  A control that is confirmed too shows that the checks do not
separate the prediction from its absence, so the claim is then reported inconclusive.
"""
from __future__ import annotations

import random
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import torch

from theorylab.claims.checks import Check, verdict_of
from theorylab.devices import single_threaded
from theorylab.provenance import make_meta
from theorylab.results import Result, _decode, _encode, result_class

Scale = Literal["quick", "full"]
SCALES: tuple[str, ...] = ("quick", "full")


@dataclass(frozen=True)
class Context:
    """What a measurement is told: the scale, the device, the base seed, and whether it is the control."""

    scale: Scale
    device: torch.device = torch.device("cpu")
    seed: int = 0
    control: bool = False

    def pick(self, quick: Any, full: Any) -> Any:
        """The quick-scale or full-scale value of a setting."""
        return quick if self.scale == "quick" else full

    def seeds(self, quick: int, full: int) -> list[int]:
        """The seeds of a repeated experiment: ``quick`` or ``full`` of them, from the base seed on."""
        return [self.seed + i for i in range(self.pick(quick, full))]


class Predictions:
    """Read-only named prediction functions: ``p.threshold(eta)``."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]]):
        self._functions = MappingProxyType(dict(functions))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        try:
            return self._functions[name]
        except KeyError:
            raise AttributeError(f"no prediction named {name!r}; known: {sorted(self._functions)}") from None

    def replaced(self, changes: Mapping[str, Callable[..., Any]]) -> "Predictions":
        unknown = set(changes) - set(self._functions)
        if unknown:
            raise ValueError(f"cannot replace unknown predictions {sorted(unknown)}")
        return Predictions({**self._functions, **changes})

    def names(self) -> list[str]:
        return sorted(self._functions)


@dataclass(frozen=True)
class Judgement:
    """The outcome of comparing a measurement with the predictions.

    ``per_seed`` holds the per-seed outcomes as columns (``{"seed": [...], "delay": [...]}``);
    ``rule`` says how they are combined into the checks.  ``predicted`` and ``measured`` are one-line
    summaries for the report table.
    """

    checks: list[Check]
    predicted: str
    measured: str
    per_seed: dict[str, list[Any]] = field(default_factory=dict)
    rule: str = ""
    notes: str = ""

    @property
    def verdict(self) -> str:
        return verdict_of(self.checks)[0]

    @property
    def reason(self) -> str:
        return verdict_of(self.checks)[1]


@dataclass(frozen=True)
class Mutation:
    """A deliberate break of a claim: the verdict must no longer be ``confirmed``.

    ``numbers`` perturbs the measured numbers (a copy is passed); ``predictions`` replaces
    prediction functions by wrong ones.
    """

    name: str
    numbers: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    predictions: Mapping[str, Callable[..., Any]] = field(default_factory=dict)


@result_class
class Evidence(Result):
    """The result of running one claim (and its negative control) at one scale."""

    claim_id: str
    title: str
    citation: str
    statement: str
    tolerance: str
    scale: str
    verdict: str
    reason: str
    predicted: str
    measured: str
    checks: list[dict[str, Any]]
    per_seed: dict[str, Any]
    rule: str
    numbers: dict[str, Any]
    control: dict[str, Any]
    figure: str | None = None
    notes: str = ""

    def plot(self, ax: Any = None) -> Any:
        """Show the saved figure of this claim (read from disk, next to the evidence's report)."""
        import matplotlib.image as mpimg

        from theorylab.plotting import axes_or_new

        ax = axes_or_new(ax, width=6, height=4)
        if self.figure and Path(f"{self.figure}.png").exists():
            ax.imshow(mpimg.imread(f"{self.figure}.png"))
        ax.set_axis_off()
        ax.set_title(f"{self.claim_id}: {self.verdict}")
        return ax


def roundtrip(numbers: Mapping[str, Any]) -> dict[str, Any]:
    """``numbers`` as they read back from an evidence file (arrays stay arrays, keys become strings).

    Judgements always see round-tripped numbers, so a judgement of cached evidence equals the
    judgement made when it was measured.
    """
    if not isinstance(numbers, Mapping):
        raise TypeError(f"a measurement must return a dict of numbers, got {type(numbers).__name__}")
    return _decode(_encode(dict(numbers)))


@dataclass(frozen=True)
class Claim:
    """A registered claim (see the module docstring)."""

    id: str
    title: str
    citation: str
    statement: str
    tolerance: str
    control: str
    predictions: Predictions
    measure: Callable[[Context], dict[str, Any]]
    judge: Callable[[dict[str, Any], Predictions], Judgement]
    figure: Callable[[dict[str, Any], Predictions], Any]
    mutations: tuple[Mutation, ...]
    source_file: str

    def judgement(self, numbers: Mapping[str, Any], mutation: Mutation | None = None) -> Judgement:
        """Judge ``numbers`` (optionally broken by ``mutation``) against the predictions."""
        numbers = roundtrip(numbers)
        predictions = self.predictions
        if mutation is not None:
            numbers = roundtrip(mutation.numbers(numbers)) if mutation.numbers is not None else numbers
            predictions = predictions.replaced(mutation.predictions)
        result = self.judge(numbers, predictions)
        if not isinstance(result, Judgement):
            raise TypeError(f"claim {self.id}: judge must return a Judgement, got {type(result).__name__}")
        return result

    def draw(self, numbers: Mapping[str, Any]) -> Any:
        """The claim's figure for ``numbers``."""
        return self.figure(roundtrip(numbers), self.predictions)

    def run(self, ctx: Context) -> Evidence:
        """Measure and judge the claim and its negative control; never raises (verdict ``error``)."""
        main, main_s = self._attempt(ctx)
        control, control_s = self._attempt(replace(ctx, control=True))
        meta = make_meta(seed=ctx.seed, device=ctx.device, wall_time_s=round(main_s + control_s, 3),
                         control_wall_time_s=round(control_s, 3), code_hash=code_hash(self.source_file),
                         claim_hash=claim_hash(self.source_file))
        common = dict(claim_id=self.id, title=self.title, citation=self.citation, statement=self.statement,
                      tolerance=self.tolerance, scale=ctx.scale, figure=self.id, meta=meta)
        control_record = self._control_record(control)
        if isinstance(main, str):
            return Evidence(**common, verdict="error", reason="the experiment raised an exception", predicted="",
                            measured="", checks=[], per_seed={}, rule="", numbers={}, control=control_record,
                            notes=main)
        numbers, judged = main
        verdict, reason = judged.verdict, judged.reason
        if verdict == "confirmed" and control_record["verdict"] == "confirmed":
            verdict, reason = "inconclusive", ("the negative control is confirmed too, so the checks do not "
                                               "separate the prediction from its absence")
        return Evidence(**common, verdict=verdict, reason=reason, predicted=judged.predicted,
                        measured=judged.measured, checks=[c.to_dict() for c in judged.checks],
                        per_seed=judged.per_seed, rule=judged.rule, numbers=numbers, control=control_record,
                        notes=judged.notes)

    def _attempt(self, ctx: Context) -> tuple[tuple[dict[str, Any], Judgement] | str, float]:
        """``((numbers, judgement), seconds)``, or ``(traceback, seconds)`` if the experiment raised."""
        _seed_everything(ctx.seed)
        # quick claims are small problems: threads would only contend (see devices.single_threaded)
        threads = single_threaded() if ctx.scale == "quick" and ctx.device.type == "cpu" else nullcontext()
        start = time.perf_counter()
        with threads:
            try:
                numbers = roundtrip(self.measure(ctx))
                judged = self.judgement(numbers)
                verdict_of(judged.checks)  # a judgement that cannot give a verdict is an error of the claim
                outcome: tuple[dict[str, Any], Judgement] | str = (numbers, judged)
            except Exception:  # noqa: BLE001 -- a crashing claim is recorded, the suite goes on
                outcome = traceback.format_exc()
        return outcome, time.perf_counter() - start

    def _control_record(self, control: tuple[dict[str, Any], Judgement] | str) -> dict[str, Any]:
        if isinstance(control, str):
            return {"description": self.control, "verdict": "error", "reason": "the control raised an exception",
                    "measured": "", "checks": [], "numbers": {}, "notes": control}
        numbers, judged = control
        return {"description": self.control, "verdict": judged.verdict, "reason": judged.reason,
                "measured": judged.measured, "checks": [c.to_dict() for c in judged.checks],
                "numbers": numbers, "notes": judged.notes}


REGISTRY: dict[str, Claim] = {}


def claim(id: str, *, title: str, citation: str, statement: str, tolerance: str, control: str,
          predictions: Mapping[str, Callable[..., Any]], measure: Callable[[Context], dict[str, Any]],
          judge: Callable[[dict[str, Any], Predictions], Judgement],
          figure: Callable[[dict[str, Any], Predictions], Any], mutations: Sequence[Mutation]) -> Claim:
    """Register a claim (see the module docstring) and return it.

    ``tolerance`` justifies every tolerance from its independent source; ``control`` says what the
    negative control changes; ``mutations`` must be non-empty.
    """
    if not mutations:
        raise ValueError(f"claim {id!r} needs at least one mutation that must break it")
    for text, what in ((title, "title"), (citation, "citation"), (statement, "statement"),
                       (tolerance, "tolerance"), (control, "control")):
        if not text.strip():
            raise ValueError(f"claim {id!r} needs a {what}")
    source = str(Path(sys.modules[measure.__module__].__file__ or "").resolve())
    if id in REGISTRY and REGISTRY[id].source_file != source:
        raise ValueError(f"claim id {id!r} is registered twice ({REGISTRY[id].source_file} and {source})")
    registered = Claim(id, title, citation, statement, tolerance, control, Predictions(predictions), measure,
                       judge, figure, tuple(mutations), source)
    REGISTRY[id] = registered
    return registered


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def claim_hash(source_file: str) -> str:
    """A hash of the claim's module alone: a recorded result is outdated when its claim's code changed."""
    import hashlib

    return hashlib.sha256(Path(source_file).read_bytes()).hexdigest()[:16]


def code_hash(source_file: str) -> str:
    """A hash of the library and of the claim's module: evidence is reused only while both are unchanged.

    The other claim modules and the command line are left out, so editing one claim does not
    invalidate the evidence of the others.
    """
    import hashlib

    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    skipped = {package / "analyses", package / "cli"}
    for path in sorted(package.rglob("*.py")):
        if not any(folder in path.parents for folder in skipped):
            digest.update(path.read_bytes())
    digest.update(Path(source_file).read_bytes())
    return digest.hexdigest()[:16]
