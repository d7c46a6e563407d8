"""Atomic file writes: a reader never sees a half-written file.

Each write goes to a temporary file in the target directory, is flushed and fsync'ed, and is
then renamed over the target (``os.replace`` is atomic on POSIX and Windows).  The temporary file
is created with mode ``0o666`` less the process umask, like any file ``open(path, "w")`` makes, so
outputs are as readable by collaborators as the user's umask allows (``tempfile.mkstemp`` would
make them ``0o600``).
"""
from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def fsynced_temp(path: str | os.PathLike, data: bytes) -> Iterator[str]:
    """``data`` written and fsync'ed to a temporary file beside ``path`` (parents created).

    Yields the temporary file's name, for the caller to rename or link into place; whatever is
    still there on exit (an error, or a link that was not needed) is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_exclusive(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        yield tmp
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _create_exclusive(path: Path) -> tuple[int, str]:
    """A new, uniquely named file beside ``path``, opened for writing; mode 0o666 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating parent directories."""
    path = Path(path)
    with fsynced_temp(path, data) as tmp:
        os.replace(tmp, path)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_bytes(obj: Any) -> bytes:
    """``obj`` as the indented, key-sorted UTF-8 JSON every theorylab file uses (NaN/inf are rejected)."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (NaN/inf are rejected)."""
    return atomic_write_bytes(path, json_bytes(obj))


def publish_outputs(folder: str | os.PathLike, files: dict[str, bytes], *, owned: Iterable[str]) -> list[Path]:
    """Write a command's output ``files`` (name -> bytes) into ``folder``, each atomically, and
    remove the files among ``owned`` (the names the command can write) that this run did not write,
    so a reused folder holds no stale output of an earlier run (other files are never touched).

    Commands build every output in memory first and publish at the end, so a failed or
    interrupted command leaves no partial output.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"output folder {folder} is a file")
    written = [atomic_write_bytes(folder / name, data) for name, data in files.items()]
    for name in set(owned) - set(files):
        stale = folder / name
        if stale.is_file():
            stale.unlink()
    return written
