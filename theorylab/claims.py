"""Claims: testable statements from papers, the experiments that test them, and the report.

A claim is one statement ("under full-batch GD the sharpness rises to about 2/eta and stays
there", Cohen et al. 2021) with an experiment parameterised by a scale (``quick``: CPU, well under
a minute; ``full``: the paper's setting, for a GPU).  The experiment returns an :class:`Outcome`:
the checks that compare measured numbers with the prediction (each with an explicit tolerance),
a figure with the prediction drawn over the measurement, and every number it measured.

Running a claim gives :class:`Evidence` with a verdict:

* ``confirmed``: every check passed;
* ``refuted``: at least one check failed (reported as such, never tuned until it passes);
* ``inconclusive``: no check failed but at least one could not decide (too noisy, not reached);
* ``error``: the experiment raised; the traceback is kept in the evidence.

Claims live in ``analyses/`` (one module per paper or topic) and register themselves with the
:func:`claim` decorator.  :func:`verify` runs them, writes each evidence file atomically as it
finishes (an interrupted run resumes without redoing finished claims), one figure per claim, a
``results.json`` with every number and its provenance, and ``REPORT.md``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import math
import os
import random
import sys
import traceback
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from theorylab._io import atomic_write_json, atomic_write_text
from theorylab.devices import single_threaded
from theorylab.plotting import close, save_figure
from theorylab.provenance import Stopwatch, make_meta
from theorylab.results import Result, result_class

Scale = Literal["quick", "full"]
Verdict = Literal["confirmed", "refuted", "inconclusive", "error"]
SCALES: tuple[str, ...] = ("quick", "full")


# ---------------------------------------------------------------------------------------------
# Checks: one comparison of a measured number with a prediction
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One comparison.  ``passed`` is None when the check cannot decide (inconclusive)."""

    name: str
    measured: float | None
    predicted: str
    passed: bool | None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"check {name!r}: measured value is not finite ({value})")
    return value


def check_close(name: str, measured: float, predicted: float, *, rtol: float = 0.0,
                atol: float = 0.0, detail: str = "") -> Check:
    """Pass when ``|measured - predicted| <= atol + rtol * |predicted|``."""
    measured = _finite(name, measured)
    tol = atol + rtol * abs(predicted)
    return Check(name, measured, f"{predicted:.4g} ± {tol:.2g}", abs(measured - predicted) <= tol, detail)


def check_between(name: str, measured: float, low: float, high: float, *, detail: str = "") -> Check:
    """Pass when ``low <= measured <= high``."""
    measured = _finite(name, measured)
    return Check(name, measured, f"in [{low:.4g}, {high:.4g}]", low <= measured <= high, detail)


def check_at_most(name: str, measured: float, bound: float, *, detail: str = "") -> Check:
    """Pass when ``measured <= bound``."""
    measured = _finite(name, measured)
    return Check(name, measured, f"<= {bound:.4g}", measured <= bound, detail)


def check_at_least(name: str, measured: float, bound: float, *, detail: str = "") -> Check:
    """Pass when ``measured >= bound``."""
    measured = _finite(name, measured)
    return Check(name, measured, f">= {bound:.4g}", measured >= bound, detail)


def check_undecided(name: str, measured: float | None, predicted: str, why: str) -> Check:
    """A check that cannot decide (e.g. the regime it tests was not reached): inconclusive."""
    return Check(name, None if measured is None else float(measured), predicted, None, why)


def verdict_of(checks: Iterable[Check]) -> Verdict:
    """refuted if any check failed, else inconclusive if any is undecided, else confirmed."""
    checks = list(checks)
    if not checks:
        raise ValueError("a claim needs at least one check")
    if any(c.passed is False for c in checks):
        return "refuted"
    if any(c.passed is None for c in checks):
        return "inconclusive"
    return "confirmed"


# ---------------------------------------------------------------------------------------------
# Claims, their context and outcome, and the evidence they produce
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """What an experiment is told: the scale, the device and the base seed."""

    scale: Scale
    device: torch.device = torch.device("cpu")
    seed: int = 0

    def pick(self, quick: Any, full: Any) -> Any:
        """The quick-scale or full-scale value of a setting."""
        return quick if self.scale == "quick" else full


@dataclass
class Outcome:
    """What an experiment returns.

    ``predicted`` and ``measured`` are one-line summaries for the report table; ``numbers`` holds
    every measured number (JSON-safe: floats, lists, arrays, dicts).
    """

    checks: list[Check]
    figure: Any
    predicted: str
    measured: str
    numbers: dict[str, Any] = field(default_factory=dict)
    notes: str = ""


@result_class
class Evidence(Result):
    """The result of running one claim at one scale."""

    claim_id: str
    title: str
    citation: str
    statement: str
    tolerance: str
    scale: str
    verdict: str
    predicted: str
    measured: str
    checks: list[dict[str, Any]]
    numbers: dict[str, Any]
    figure: str | None
    notes: str = ""

    def plot(self, ax: Any = None) -> Any:
        """Show the saved figure of this claim (read from disk)."""
        import matplotlib.image as mpimg

        from theorylab.plotting import axes_or_new

        ax = axes_or_new(ax, width=6, height=4)
        if self.figure and Path(f"{self.figure}.png").exists():
            ax.imshow(mpimg.imread(f"{self.figure}.png"))
        ax.set_axis_off()
        ax.set_title(f"{self.claim_id}: {self.verdict}")
        return ax


@dataclass(frozen=True)
class Claim:
    """A registered claim: metadata plus the experiment ``Context -> Outcome``."""

    id: str
    title: str
    citation: str
    statement: str
    tolerance: str
    experiment: Callable[[Context], Outcome]
    source_file: str

    def run(self, ctx: Context, *, figure_path: Path | None = None) -> Evidence:
        """Run the experiment; never raises for an experiment failure (verdict ``error``)."""
        _seed_everything(ctx.seed)
        # quick claims are small problems: threads would only contend (see devices.single_threaded)
        threads = single_threaded() if ctx.scale == "quick" and ctx.device.type == "cpu" else nullcontext()
        with Stopwatch() as watch, threads:
            try:
                outcome = self.experiment(ctx)
                error = None
            except Exception:  # noqa: BLE001 -- a crashing claim is recorded, the suite goes on
                outcome, error = None, traceback.format_exc()
        meta = make_meta(seed=ctx.seed, device=ctx.device, wall_time_s=round(watch.seconds, 3),
                         code_hash=code_hash(self.source_file))
        common = dict(claim_id=self.id, title=self.title, citation=self.citation,
                      statement=self.statement, tolerance=self.tolerance, scale=ctx.scale, meta=meta)
        if outcome is None:
            return Evidence(**common, verdict="error", predicted="", measured="", checks=[],
                            numbers={}, figure=None, notes=error or "")
        figure = None
        if figure_path is not None and outcome.figure is not None:
            save_figure(outcome.figure, figure_path,
                        provenance={"claim": self.id, "scale": ctx.scale, "seed": ctx.seed})
            figure = str(figure_path)
        if outcome.figure is not None:
            close(outcome.figure)
        return Evidence(**common, verdict=verdict_of(outcome.checks), predicted=outcome.predicted,
                        measured=outcome.measured, checks=[c.to_dict() for c in outcome.checks],
                        numbers=outcome.numbers, figure=figure, notes=outcome.notes)


REGISTRY: dict[str, Claim] = {}


def claim(id: str, *, title: str, citation: str, statement: str, tolerance: str
          ) -> Callable[[Callable[[Context], Outcome]], Callable[[Context], Outcome]]:
    """Register ``experiment(ctx) -> Outcome`` as a claim.  ``tolerance`` justifies the tolerances."""

    def register(experiment: Callable[[Context], Outcome]) -> Callable[[Context], Outcome]:
        if id in REGISTRY and REGISTRY[id].source_file != _source_of(experiment):
            raise ValueError(f"claim id {id!r} is registered twice")
        REGISTRY[id] = Claim(id, title, citation, statement, tolerance, experiment, _source_of(experiment))
        return experiment

    return register


def _source_of(fn: Callable[..., Any]) -> str:
    return str(Path(sys.modules[fn.__module__].__file__ or "").resolve())


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def code_hash(source_file: str) -> str:
    """A hash of the library's source and the claim's module: evidence is reused only if unchanged."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")) + [Path(source_file)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------
def default_analyses_dir() -> Path:
    """``$THEORYLAB_ANALYSES`` or the ``analyses/`` folder of the checkout theorylab lives in."""
    env = os.environ.get("THEORYLAB_ANALYSES")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "analyses"


def load_analyses(directory: str | Path | None = None) -> dict[str, Claim]:
    """Import every ``*.py`` module of ``directory`` (registering its claims); return the registry."""
    directory = Path(directory) if directory is not None else default_analyses_dir()
    if not directory.is_dir():
        raise FileNotFoundError(f"no analyses folder at {directory}; pass --analyses DIR")
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = f"theorylab_analyses.{path.stem}"
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except BaseException:
            del sys.modules[name]
            raise
    return REGISTRY


# ---------------------------------------------------------------------------------------------
# Running the suite and writing the report
# ---------------------------------------------------------------------------------------------
def select(ids: Iterable[str] | None, registry: dict[str, Claim]) -> list[Claim]:
    """The claims named by ``ids`` (all if None), with a clear error for unknown ids."""
    if not ids:
        return [registry[k] for k in sorted(registry)]
    unknown = [i for i in ids if i not in registry]
    if unknown:
        raise ValueError(f"unknown claim id(s) {unknown}; known: {sorted(registry)}")
    return [registry[i] for i in ids]


def verify(claims: list[Claim], *, scale: Scale, out_dir: str | Path, device: torch.device | None = None,
           seed: int = 0, force: bool = False,
           progress: Callable[[str], None] | None = print) -> list[Evidence]:
    """Run ``claims`` at ``scale``, writing evidence, figures, ``results.json`` and ``REPORT.md``.

    Evidence already in ``out_dir/evidence`` from the same code, scale, seed and device type is
    reused unless ``force``; each new evidence file is written atomically as soon as its claim
    finishes, so an interrupted run loses nothing that had finished.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    out_dir = Path(out_dir)
    ctx = Context(scale=scale, device=device or torch.device("cpu"), seed=seed)
    evidences = []
    for i, c in enumerate(claims, 1):
        stored = out_dir / "evidence" / f"{c.id}.json"
        ev = None if force else _reusable(stored, c, ctx)
        status = "reused"
        if ev is None:
            ev = c.run(ctx, figure_path=out_dir / c.id)
            ev.save(stored)
            status = f"{ev.meta['wall_time_s']:.1f} s"
        evidences.append(ev)
        if progress:
            progress(f"[{i}/{len(claims)}] {c.id}: {ev.verdict} ({status})")
    write_report(_all_evidence(out_dir, scale), out_dir)
    return evidences


def _reusable(path: Path, c: Claim, ctx: Context) -> Evidence | None:
    if not path.exists():
        return None
    try:
        ev = Evidence.load(path)
    except (ValueError, KeyError, TypeError):
        return None  # a damaged file is recomputed, never trusted
    same = (ev.scale == ctx.scale and ev.meta.get("seed") == ctx.seed
            and ev.meta.get("device", "").split(":")[0] == ctx.device.type
            and ev.meta.get("code_hash") == code_hash(c.source_file) and ev.verdict != "error")
    figure_ok = ev.figure is None or Path(f"{ev.figure}.png").exists()
    return ev if same and figure_ok else None


def _all_evidence(out_dir: Path, scale: str) -> list[Evidence]:
    """Every evidence file of this scale in ``out_dir`` (the report covers all claims run there)."""
    found = []
    for path in sorted((out_dir / "evidence").glob("*.json")):
        try:
            ev = Evidence.load(path)
        except (ValueError, KeyError, TypeError):
            continue
        if ev.scale == scale:
            found.append(ev)
    return found


def write_report(evidences: list[Evidence], out_dir: str | Path) -> Path:
    """Write ``REPORT.md`` (a table and one section per claim) and ``results.json``."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "results.json",
                      {"meta": make_meta(), "evidence": [e.to_dict() for e in evidences]})
    counts = {v: sum(e.verdict == v for e in evidences) for v in ("confirmed", "refuted", "inconclusive", "error")}
    lines = [
        "# theorylab verification report",
        "",
        f"Scale: **{evidences[0].scale if evidences else '-'}**. "
        + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".",
        "Regenerate with `theorylab verify` (see README.md). Every number below is in `results.json`.",
        "",
        "| claim | paper | predicted | measured | verdict | figure |",
        "|---|---|---|---|---|---|",
    ]
    for e in evidences:
        fig = f"[{Path(e.figure).name}.png]({Path(e.figure).name}.png)" if e.figure else "-"
        lines.append(f"| `{e.claim_id}` {_md(e.title)} | {_md(e.citation)} | {_md(e.predicted)} | "
                     f"{_md(e.measured)} | **{e.verdict}** | {fig} |")
    for e in evidences:
        lines += ["", f"## `{e.claim_id}`: {e.title}", "", f"*{e.citation}*", "", f"> {e.statement}", "",
                  f"Verdict: **{e.verdict}** (wall time {e.meta.get('wall_time_s', '?')} s, "
                  f"commit {e.meta.get('git_commit')}, seed {e.meta.get('seed')}, device {e.meta.get('device')}).",
                  "", f"Tolerance: {e.tolerance}", ""]
        if e.checks:
            lines += ["| check | measured | predicted | passed | detail |", "|---|---|---|---|---|"]
            for c in e.checks:
                m = "-" if c["measured"] is None else f"{c['measured']:.4g}"
                lines.append(f"| {_md(c['name'])} | {m} | {_md(c['predicted'])} | {c['passed']} | {_md(c['detail'])} |")
        if e.figure:
            lines += ["", f"![{e.claim_id}]({Path(e.figure).name}.png)"]
        if e.notes:
            block = e.notes if e.verdict != "error" else f"```\n{e.notes}\n```"
            lines += ["", block]
    return atomic_write_text(out_dir / "REPORT.md", "\n".join(lines) + "\n")


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
