"""Progress reporting: one mechanism for every long operation (Lanczos, SLQ, traces, training,
bootstraps, sweeps, ``theorylab verify``).

Bars come from ``tqdm.auto``: widgets in Jupyter, text bars on a terminal.  Whether a bar is shown
is decided in one place, :func:`progress_enabled`:

* an explicit switch wins: ``with theorylab.progress.progress(False): ...`` (scoped) or
  :func:`set_progress` (for the session), or ``progress=True/False`` on a call that takes it;
* otherwise the environment variable ``THEORYLAB_PROGRESS`` (``0``/``1``);
* otherwise bars are off under pytest and in CI (``CI`` set), and on in interactive use
  (a Jupyter kernel, or standard error attached to a terminal).

Importing theorylab changes nothing global; a disabled bar is a no-op object with the same methods.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_override: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """Show (True) or hide (False) progress bars from now on; None restores the automatic choice."""
    global _override
    if enabled is not None and not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True, False or None, got {enabled!r}")
    _override = enabled


@contextmanager
def progress(enabled: bool = True) -> Iterator[None]:
    """Show or hide progress bars inside the ``with`` block only."""
    global _override
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True or False, got {enabled!r}")
    before = _override
    _override = enabled
    try:
        yield
    finally:
        _override = before


def _interactive() -> bool:
    if "ipykernel" in sys.modules:
        return True
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def progress_enabled(requested: bool | None = None) -> bool:
    """Whether to show a bar: ``requested`` if given, else the switch, the environment, then auto."""
    if requested is not None:
        if not isinstance(requested, bool):
            raise ValueError(f"progress must be True, False or None, got {requested!r}")
        return requested
    if _override is not None:
        return _override
    env = os.environ.get("THEORYLAB_PROGRESS")
    if env is not None and env.strip() != "":
        return env.strip().lower() not in ("0", "false", "no", "off")
    if os.environ.get("CI") or "PYTEST_CURRENT_TEST" in os.environ:
        return False
    return _interactive()


class _Silent:
    """The no-op bar used when progress is off (same methods as a tqdm bar)."""

    n = 0

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bar(total: float | None = None, *, desc: str = "", unit: str = "it", enabled: bool | None = None,
        initial: float = 0, leave: bool = False) -> Any:
    """A progress bar (``tqdm.auto``) or a silent stand-in, per :func:`progress_enabled`.

    Use as a context manager; call ``update(n)`` and ``set_postfix_str(text)`` (for example the
    current residual).  ``total`` None gives a counter without an estimate of the time left.
    """
    if not progress_enabled(enabled):
        return _Silent()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave, dynamic_ncols=True)
