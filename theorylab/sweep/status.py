"""Read a results store without running anything: its progress, and its records as a SweepResult."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

from theorylab.provenance import make_meta
from theorylab.sweep.result import SweepResult, decode_record
from theorylab.sweep.store import CorruptRecord, Store


@dataclass(frozen=True)
class SweepProgress:
    """One sweep recorded in a store (one manifest): how many of its runs are ok/failed/pending."""

    sweep_id: str
    function: str
    version: str
    created_utc: str
    total: int
    ok: int
    failed: int
    corrupt: int
    pending: int


@dataclass(frozen=True)
class StoreStatus:
    """The state of a results store.  ``corrupt`` lists ``(file, reason)`` of damaged records."""

    root: str
    sweeps: list[SweepProgress]
    records: int
    unlisted: int
    corrupt: list[tuple[str, str]]
    temporary_files: int
    journal_bad_lines: int

    def format(self) -> str:
        """A plain-text report, as printed by ``theorylab sweep status``."""
        lines = [f"results store {self.root}: {self.records} record files, {len(self.sweeps)} sweep(s)"]
        for s in self.sweeps:
            lines.append(f"  sweep {s.sweep_id}  {s.function} [{s.version}]  started {s.created_utc}")
            lines.append(f"    {s.ok + s.failed}/{s.total} done: {s.ok} ok, {s.failed} failed, "
                         f"{s.pending} pending" + (f", {s.corrupt} corrupt (recomputed on the next run)"
                                                   if s.corrupt else ""))
        if self.unlisted:
            lines.append(f"  {self.unlisted} record(s) belong to no recorded sweep")
        for name, reason in self.corrupt:
            lines.append(f"  CORRUPT {name}: {reason}")
        if self.temporary_files:
            lines.append(f"  {self.temporary_files} temporary file(s) left by interrupted writes (safe to delete)")
        if self.journal_bad_lines:
            lines.append(f"  index.jsonl has {self.journal_bad_lines} unreadable line(s) (a write cut off by a kill)")
        return "\n".join(lines)


def sweep_status(out_dir: str | os.PathLike) -> StoreStatus:
    """Count the runs of every sweep stored in ``out_dir`` and check every record file."""
    store = Store.open(out_dir, create=False)
    status: dict[str, str] = {}
    corrupt: list[tuple[str, str]] = []
    for key in store.keys():
        try:
            record = store.read(key)
        except CorruptRecord as exc:
            status[key] = "corrupt"
            corrupt.append((str(exc.path.relative_to(store.root)), exc.reason))
            continue
        if record is not None:
            status[key] = record["status"]
    sweeps, listed = [], set()
    for m in store.manifests():
        found = [status.get(key, "pending") for key in m["keys"]]
        listed.update(m["keys"])
        version = m["code_version"].get("version") or f"source {m['code_version'].get('source_sha256')}"
        sweeps.append(SweepProgress(m["sweep_id"], m["function"], f"theorylab {m['code_version']['theorylab']}, "
                                    + version, m["created_utc"], len(found), found.count("ok"),
                                    found.count("failed"), found.count("corrupt"), found.count("pending")))
    _, bad_lines = store.journal_entries()
    return StoreStatus(str(store.root), sweeps, len(status), len(set(status) - listed), corrupt,
                       len(store.temporary_files()), bad_lines)


def load_sweep(out_dir: str | os.PathLike, *, sweep_id: str | None = None) -> SweepResult:
    """The finished runs stored in ``out_dir`` (of one sweep, by id or unique id prefix, or of all).

    Runs come in the order of their sweeps (oldest first) and configurations; records in no
    manifest come last.  A corrupt record is reported (RuntimeWarning) and left out, never loaded.
    """
    store = Store.open(out_dir, create=False)
    manifests = store.manifests()
    if sweep_id is not None:
        chosen = [m for m in manifests if m["sweep_id"].startswith(sweep_id)]
        if len(chosen) != 1:
            known = ", ".join(m["sweep_id"] for m in manifests) or "none"
            raise ValueError(f"sweep id {sweep_id!r} matches {len(chosen)} sweeps in {store.root} (known: {known})")
        keys = chosen[0]["keys"]
    else:
        keys = list(dict.fromkeys([k for m in manifests for k in m["keys"]] + store.keys()))
    records = []
    for key in keys:
        try:
            record = store.read(key)
        except CorruptRecord as exc:
            warnings.warn(f"sweep: corrupt record {exc.path} ({exc.reason}) left out; running the sweep "
                          "again recomputes it", RuntimeWarning, stacklevel=2)
            continue
        if record is not None:
            records.append(decode_record(record))
    return SweepResult(records=records, out_dir=str(store.root), meta=make_meta(sweep_id=sweep_id, loaded=True))
