"""The results store of a sweep: one checksummed JSON file per finished run, under an output folder.

Layout of ``out_dir``::

    runs/<key>.json         one record per finished run ("ok" or "failed"), never rewritten
    sweeps/<sweep_id>.json  one manifest per distinct sweep (its function, code version, configurations)
    index.jsonl             append-only journal: one line per event (ok, failed, corrupt, replaced)
    attic/                  corrupt records and superseded failed records, moved aside (never deleted)

Why files and not SQLite: a record is written by the process that ran it, which on a Slurm cluster
is another machine writing to a shared (often NFS) file system, where SQLite's locking is unreliable;
files written with a rename need no lock, one damaged file never takes the others with it, and
records can be read, diffed and copied with ordinary tools.

Every record is created *exclusively*: the bytes go to a temporary file which is fsync'ed and then
hard-linked to ``runs/<key>.json``, which fails if that name exists.  A reader therefore never sees
a half-written record, and a record that exists is never replaced (two sweeps racing on the same run
keep the first record; a finished run stays byte-identical whatever happens later).  Each file holds
the SHA-256 of its record, so truncation or any edit is detected on read (:class:`CorruptRecord`) and
the record is moved to ``attic/`` and recomputed, never loaded.

The key of a run is the SHA-256 of its configuration and the code version (theorylab version,
function name, and a hash of the function's source or a user-supplied version string).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from theorylab._io import fsynced_temp

RECORD_FORMAT = "theorylab-sweep-record/1"
MANIFEST_FORMAT = "theorylab-sweep-manifest/1"


def canonical_json(obj: Any) -> str:
    """The one JSON text of ``obj`` that keys and checksums are computed from (sorted, compact)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_key(config: dict[str, Any], code_version: dict[str, str]) -> str:
    """The key of one run: a hash of its configuration and the code version (20 hex digits)."""
    return sha256_hex(canonical_json({"config": config, "code": code_version}))[:20]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class CorruptRecord(Exception):
    """A record file that cannot be trusted (truncated, edited, or not a record at all)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Store:
    """The results store under ``root`` (see the module docstring for the layout)."""

    root: Path

    @classmethod
    def open(cls, root: str | os.PathLike, *, create: bool) -> "Store":
        root = Path(root).expanduser().resolve()
        if create:
            for sub in ("runs", "sweeps", "attic"):
                (root / sub).mkdir(parents=True, exist_ok=True)
        elif not (root / "runs").is_dir():
            raise FileNotFoundError(f"no sweep results in {root} (expected a 'runs' folder)")
        return cls(root)

    def path(self, key: str) -> Path:
        return self.root / "runs" / f"{key}.json"

    def keys(self) -> list[str]:
        """Keys of every record file present (valid or not), sorted."""
        return sorted(p.stem for p in (self.root / "runs").glob("*.json"))

    # -- records ------------------------------------------------------------------------------
    def read(self, key: str) -> dict[str, Any] | None:
        """The record of ``key``; None if there is none; :class:`CorruptRecord` if it is damaged."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return _verify(path, data, key)

    def create(self, record: dict[str, Any]) -> dict[str, Any]:
        """Store ``record`` unless its key already has a valid record; return the stored record.

        A damaged record in the way is moved to ``attic/`` first.  The record that ends up on
        disk is returned, so concurrent writers of the same run all report the same record.
        """
        key = record["key"]
        body = {"format": RECORD_FORMAT, "sha256": sha256_hex(canonical_json(record)), "record": record}
        data = (json.dumps(body, indent=1, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        for _ in range(3):
            if _create_exclusive(self.path(key), data):
                self.journal(record["status"], key)
                return record
            try:
                existing = self.read(key)
            except CorruptRecord as exc:
                self.set_aside(key, "corrupt", exc.reason)
                continue
            if existing is not None:
                return existing
        raise RuntimeError(f"could not store the record of run {key} in {self.root}")

    def set_aside(self, key: str, why: str, detail: str = "") -> Path | None:
        """Move the record of ``key`` to ``attic/`` (``why``: "corrupt" or "replaced")."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.root / "attic" / f"{key}.{why}.{stamp}.json"
        try:
            os.replace(self.path(key), target)
        except FileNotFoundError:  # another process moved it first
            return None
        self.journal(why, key, detail=detail, moved_to=str(target.relative_to(self.root)))
        return target

    # -- journal ------------------------------------------------------------------------------
    def journal(self, event: str, key: str, **fields: Any) -> None:
        """Append one line to ``index.jsonl`` (a single ``write`` in append mode)."""
        line = canonical_json({"event": event, "key": key, "utc": utc_now(), "host": socket.gethostname(),
                               "pid": os.getpid(), **fields})
        with open(self.root / "index.jsonl", "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def journal_entries(self) -> tuple[list[dict[str, Any]], int]:
        """The journal's entries and the number of unreadable lines (a write cut off by a kill)."""
        path = self.root / "index.jsonl"
        if not path.exists():
            return [], 0
        entries, bad = [], 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
        return entries, bad

    # -- manifests ----------------------------------------------------------------------------
    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Record a sweep's plan (kept from its first call: same id means same plan)."""
        body = {"format": MANIFEST_FORMAT, **manifest}
        data = (json.dumps(body, indent=1, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        _create_exclusive(self.root / "sweeps" / f"{manifest['sweep_id']}.json", data)

    def manifests(self) -> list[dict[str, Any]]:
        """Every readable manifest, oldest first."""
        found = []
        for path in (self.root / "sweeps").glob("*.json"):
            try:
                body = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(body, dict) and body.get("format") == MANIFEST_FORMAT:
                found.append(body)
        return sorted(found, key=lambda m: (m["created_utc"], m["sweep_id"]))

    def temporary_files(self) -> list[Path]:
        """Leftovers of writes cut off by a kill (hidden ``.tmp`` files); safe to delete."""
        return sorted(p for sub in ("runs", "sweeps") for p in (self.root / sub).glob(".*.tmp"))


def _verify(path: Path, data: bytes, key: str) -> dict[str, Any]:
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptRecord(path, f"not valid JSON, truncated or half-written ({exc})") from None
    if not isinstance(body, dict) or body.get("format") != RECORD_FORMAT or not isinstance(body.get("record"), dict):
        raise CorruptRecord(path, f"not a {RECORD_FORMAT} file")
    record = body["record"]
    if sha256_hex(canonical_json(record)) != body.get("sha256"):
        raise CorruptRecord(path, "checksum mismatch: the record was modified or damaged")
    if record.get("key") != key or run_key(record.get("config"), record.get("code_version")) != key:
        raise CorruptRecord(path, f"holds a record that does not belong to key {key}")
    return record


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` if no file of that name exists, atomically; True if written.

    The data is written and fsync'ed under a temporary name, then hard-linked to ``path`` (which
    fails when ``path`` exists).  Where the file system has no hard links, falls back to a rename
    after an existence check (a race between two writers of the same run then keeps the later one).
    """
    with fsynced_temp(path, data) as tmp:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some FUSE / SMB mounts)
            if path.exists():
                return False
            os.replace(tmp, path)
    _fsync_dir(path.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
