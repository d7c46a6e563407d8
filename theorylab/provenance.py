"""Provenance: what made a number (library version, git commit, seed, dtype, device, time)."""
from __future__ import annotations

import functools
import platform
import subprocess
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__version__ = "0.1.0"


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the theorylab checkout (with ``+dirty`` if modified), or None if not a checkout.

    Only a theorylab source checkout counts: the folder above the package must hold theorylab's own
    ``pyproject.toml``.  An installed theorylab (site-packages, perhaps inside a user's project that
    is itself a git repository) has no commit of its own, so none is reported rather than the
    enclosing repository's.
    """
    root = Path(__file__).resolve().parent.parent
    if not is_theorylab_checkout(root):
        return None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def is_theorylab_checkout(root: Path) -> bool:
    """Whether ``root`` holds a ``pyproject.toml`` whose project is named theorylab."""
    try:
        with open(root / "pyproject.toml", "rb") as f:
            project = tomllib.load(f).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return isinstance(project, dict) and project.get("name") == "theorylab"


def make_meta(**extra: Any) -> dict[str, Any]:
    """A provenance record: version, commit, torch/python versions, UTC time, plus ``extra``.

    ``extra`` typically holds ``seed``, ``dtype``, ``device``, ``wall_time_s`` and ``num_matvecs``;
    torch dtypes and devices are stored as strings.
    """
    import torch

    meta: dict[str, Any] = {
        "theorylab_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for key, value in extra.items():
        meta[key] = str(value) if isinstance(value, (torch.dtype, torch.device)) else value
    return meta


class Stopwatch:
    """Context manager measuring wall time in seconds (``.seconds``)."""

    def __enter__(self) -> "Stopwatch":
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
