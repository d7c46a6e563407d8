"""The progress bar of a sweep: runs done (ok + failed, reused ones included), failed, time left."""
from __future__ import annotations

from theorylab.progress import bar


class Progress:
    """A bar (:func:`theorylab.progress.bar`) over ``total`` runs that starts at the runs already
    in the store; ``enabled`` None is the automatic choice (on in Jupyter and on a terminal).

    The time left is estimated from the runs computed in this call only (tqdm's rate ignores the
    ``initial`` count), so reused runs do not make it optimistic.
    """

    def __init__(self, total: int, *, ok: int, failed: int, enabled: bool | None, desc: str = "sweep"):
        self.ok, self.failed = ok, failed
        self._bar = bar(total, initial=ok + failed, desc=desc, unit="run", enabled=enabled, leave=True)
        self._bar.set_postfix(ok=ok, failed=failed)

    def update(self, status: str) -> None:
        """Count one finished run (``status`` is "ok" or "failed")."""
        if status == "ok":
            self.ok += 1
        else:
            self.failed += 1
        self._bar.set_postfix(ok=self.ok, failed=self.failed, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
