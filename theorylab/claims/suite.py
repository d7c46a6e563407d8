"""The verification suite: finding the claims, running them resumably, and keeping the record stable.

:func:`verify` runs claims at one scale into an output folder:

* ``evidence/<id>.json``: a local cache, written atomically as each claim finishes, so an
  interrupted run resumes without redoing finished claims.  Evidence is reused only if the code,
  scale, seed and device type match.  A run that raises is written to ``evidence/<id>.error.json``
  and never replaces good evidence.
* ``results.json``, ``REPORT.md`` and one figure per claim: the record, meant to be committed.  A
  recomputed claim whose verdict and numbers equal the recorded ones keeps its recorded
  provenance (commit, date, timings) and figure, so re-running an unchanged suite rewrites nothing.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import pkgutil
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from theorylab.claims.engine import REGISTRY, SCALES, Claim, Context, Evidence, claim_hash, code_hash
from theorylab.claims.report import read_results, write_report

Progress = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------
def load_analyses(*folders: str | Path) -> dict[str, Claim]:
    """Register the claims shipped in :mod:`theorylab.analyses` and those of every ``*.py`` in ``folders``.

    Returns the registry (claim id -> :class:`Claim`).  A user's folder holds modules that call
    :func:`theorylab.claims.claim`, exactly like the shipped ones.
    """
    import theorylab.analyses as shipped

    for info in pkgutil.iter_modules(shipped.__path__):
        importlib.import_module(f"{shipped.__name__}.{info.name}")
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no analyses folder at {folder}")
        for path in sorted(folder.glob("*.py")):
            if not path.name.startswith("_"):
                _import_file(path)
    return REGISTRY


def _import_file(path: Path) -> None:
    name = f"theorylab_user_analyses.{path.parent.name}.{path.stem}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except BaseException:
        del sys.modules[name]
        raise


def select(ids: Iterable[str] | None, registry: dict[str, Claim]) -> list[Claim]:
    """The claims named by ``ids`` (all if None), with a clear error for unknown ids."""
    if not ids:
        return [registry[k] for k in sorted(registry)]
    unknown = [i for i in ids if i not in registry]
    if unknown:
        raise ValueError(f"unknown claim id(s) {unknown}; known: {sorted(registry)}")
    return [registry[i] for i in ids]


def check_device(device: torch.device) -> torch.device:
    """``device`` if the claims can run there (CPU, or an existing CUDA device), else a ValueError."""
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"device {str(device)!r} is not supported by the claims (use cpu or cuda)")
    if not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    return device


# ---------------------------------------------------------------------------------------------
# Running the suite
# ---------------------------------------------------------------------------------------------
def verify(claims: list[Claim], *, scale: str, out_dir: str | Path, device: torch.device | None = None,
           seed: int = 0, force: bool = False, compare_with: str | Path | None = None,
           progress: Progress | None = print) -> list[Evidence]:
    """Run ``claims`` at ``scale`` into ``out_dir``; write evidence, figures, ``results.json``, ``REPORT.md``.

    ``force`` recomputes claims whose evidence is cached and rewrites their record and figure even
    where the numbers are unchanged (after a change of style).  ``compare_with`` is the folder of the
    other scale's results, shown side by side in the report.  ``progress`` receives one line as each
    claim starts and finishes, with an estimate of the time left.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    device = check_device(device if device is not None else torch.device("cpu"))
    out_dir = Path(out_dir)
    ctx = Context(scale=scale, device=device, seed=seed)  # type: ignore[arg-type]
    recorded = read_results(out_dir)
    clock = _Clock(claims, recorded, progress)
    evidences = []
    for c in claims:
        stored = out_dir / "evidence" / f"{c.id}.json"
        failed = stored.with_suffix(".error.json")
        ev = None if force else _reusable(stored, c, ctx)
        reused = ev is not None
        if ev is None:
            clock.starting(c.id)
            ev = c.run(ctx)
            if ev.verdict == "error":
                ev.save(failed)  # never over good evidence
            else:
                ev.save(stored)
                failed.unlink(missing_ok=True)
        evidences.append(ev)
        clock.finished(c.id, ev, reused)
    _write_record(out_dir, scale, recorded, compare_with, rewrite={c.id for c in claims} if force else set())
    return evidences


def _reusable(path: Path, c: Claim, ctx: Context) -> Evidence | None:
    if not path.exists():
        return None
    try:
        ev = Evidence.load(path)
    except (ValueError, KeyError, TypeError):
        return None  # a damaged or outdated file is recomputed, never trusted
    same = (ev.scale == ctx.scale and ev.meta.get("seed") == ctx.seed
            and str(ev.meta.get("device", "")).split(":")[0] == ctx.device.type
            and ev.meta.get("code_hash") == code_hash(c.source_file) and ev.verdict != "error")
    return ev if same else None


def _write_record(out_dir: Path, scale: str, recorded: dict[str, dict[str, Any]],
                  compare_with: str | Path | None, rewrite: set[str]) -> None:
    """Merge the cached evidence into the record, draw what changed, write results.json and REPORT.md."""
    records = {k: v for k, v in recorded.items() if k in REGISTRY and v.get("scale") == scale}
    latest_errors = {}
    for path in sorted((out_dir / "evidence").glob("*.json")):
        try:
            ev = Evidence.load(path)
        except (ValueError, KeyError, TypeError):
            continue
        if ev.scale != scale or ev.claim_id not in REGISTRY:
            continue
        if path.name.endswith(".error.json"):
            latest_errors[ev.claim_id] = ev
            continue
        new = ev.to_dict()
        old = records.get(ev.claim_id)
        figure_there = Path(out_dir / f"{ev.claim_id}.png").exists()
        if old is None or not same_content(old, new) or not figure_there or ev.claim_id in rewrite:
            _save_figure(REGISTRY[ev.claim_id], ev, out_dir)
            records[ev.claim_id] = new
        else:  # reproduced: keep the recorded provenance, note that the current claim code made it
            records[ev.claim_id] = {**old, "meta": {**old["meta"], "claim_hash": ev.meta.get("claim_hash")}}
    for claim_id, ev in latest_errors.items():
        if claim_id not in records:
            records[claim_id] = ev.to_dict()
        elif records[claim_id]["verdict"] != "error":
            records[claim_id] = {**records[claim_id], "latest_error": ev.meta.get("created_utc")}
    other = read_results(Path(compare_with)) if compare_with is not None else {}
    write_report([records[k] for k in sorted(records)], out_dir, scale=scale, other=other,
                 claim_hashes={k: claim_hash(c.source_file) for k, c in REGISTRY.items()})


def _save_figure(c: Claim, ev: Evidence, out_dir: Path) -> None:
    from theorylab.plotting import close, save_figure

    if ev.verdict == "error":
        return
    fig = c.draw(ev.numbers)
    try:
        save_figure(fig, out_dir / c.id, provenance={"claim": c.id, "scale": ev.scale, "seed": ev.meta.get("seed"),
                                                     "code_hash": ev.meta.get("code_hash")})
    finally:
        close(fig)


def same_content(old: dict[str, Any], new: dict[str, Any], *, rel: float = 1e-6) -> bool:
    """Whether two evidence records agree on everything but provenance (``meta``), floats to ``rel``.

    Numbers that differ only in their last digits (another machine's BLAS) count as the same.
    """
    strip = ("meta", "latest_error")
    return _close({k: v for k, v in old.items() if k not in strip},
                  {k: v for k, v in new.items() if k not in strip}, rel)


def _close(a: Any, b: Any, rel: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float) and isinstance(a, (int, float)):
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    return a == b


class _Clock:
    """Progress lines with an estimate of the time left, from the recorded wall times of each claim."""

    def __init__(self, claims: list[Claim], recorded: dict[str, dict[str, Any]], progress: Progress | None):
        self.progress, self.total = progress, len(claims)
        self.expected = {c.id: float(recorded[c.id]["meta"]["wall_time_s"]) for c in claims
                         if c.id in recorded and isinstance(recorded[c.id].get("meta", {}).get("wall_time_s"),
                                                            (int, float))}
        self.left = [c.id for c in claims]
        self.spent = self.predicted_spent = 0.0
        self.done = 0
        self.started = time.perf_counter()

    def _remaining(self) -> str:
        known = [self.expected[k] for k in self.left if k in self.expected]
        if not self.left:
            return ""
        if not known and self.done == 0:
            return "time left unknown (no recorded run times)"
        speed = self.spent / self.predicted_spent if self.predicted_spent > 0 else 1.0
        average = self.spent / self.done if self.done else sum(known) / len(known)
        estimate = sum(self.expected.get(k, average) * (speed if k in self.expected else 1.0) for k in self.left)
        return f"about {_duration(estimate)} left"

    def starting(self, claim_id: str) -> None:
        if self.progress:
            self.progress(f"[{self.done + 1}/{self.total}] {claim_id}: running ({self._remaining()})")

    def finished(self, claim_id: str, ev: Evidence, reused: bool) -> None:
        self.left.remove(claim_id)
        self.done += 1
        if not reused:
            seconds = float(ev.meta.get("wall_time_s", 0.0))
            self.spent += seconds
            self.predicted_spent += self.expected.get(claim_id, seconds)
        if self.progress:
            status = "reused" if reused else f"{_duration(float(ev.meta.get('wall_time_s', 0.0)))}"
            tail = f"; {self._remaining()}" if self.left else ""
            self.progress(f"[{self.done}/{self.total}] {claim_id}: {ev.verdict} ({status}){tail}")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
