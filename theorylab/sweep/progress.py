"""The progress bar of a sweep: runs done (ok + failed, reused ones included), failed, time left."""
from __future__ import annotations

from typing import Any


class Progress:
    """A tqdm bar over ``total`` runs that starts at the runs already in the store.

    The time left is estimated from the runs computed in this call only (tqdm's rate ignores the
    ``initial`` count), so reused runs do not make it optimistic.
    """

    def __init__(self, total: int, *, ok: int, failed: int, enabled: bool, desc: str = "sweep"):
        self.ok, self.failed = ok, failed
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=ok + failed, desc=desc, unit="run", dynamic_ncols=True)
            self._bar.set_postfix(ok=ok, failed=failed)

    def update(self, status: str) -> None:
        """Count one finished run (``status`` is "ok" or "failed")."""
        if status == "ok":
            self.ok += 1
        else:
            self.failed += 1
        if self._bar is not None:
            self._bar.set_postfix(ok=self.ok, failed=self.failed, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
