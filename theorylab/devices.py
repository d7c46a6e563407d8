"""Device and dtype resolution shared by analyzers and the command line."""
from __future__ import annotations

import itertools
from typing import Any

import torch


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> CUDA if available else CPU; otherwise ``torch.device(spec)``.

    Raises ValueError for an unknown device string or CUDA asked for where there is none.
    """
    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {spec!r} (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} requested but CUDA is not available")
    return device


class threads:
    """Run torch and the BLAS/OpenMP pools of numpy, scipy and scikit-learn on ``n`` CPU threads.

    A context manager, scoped to its block::

        with theorylab.threads(1):
            tl.top_eigenvalues(H, k=5)

    or a plain call that holds until :meth:`restore` (for a notebook session): ``tl.threads(1)``.
    ``n=None`` changes nothing.  Importing theorylab never changes a thread count.

    Small problems (the tiny models of the tests, the quick claims, the README tour) gain nothing
    from threads, and on a busy machine the threads of several processes contend: measured on a
    loaded 2-core machine, the README tour and the notebooks run many times faster on one thread
    (see the README, "Threads").  Large models on many idle cores want the default.
    """

    def __init__(self, n: int | None):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"threads must be a positive integer or None, got {n!r}")
        self.n = n
        self._torch_before: int | None = None
        self._pools: Any = None
        if n is None:
            return
        from threadpoolctl import threadpool_limits

        self._torch_before = torch.get_num_threads()
        torch.set_num_threads(n)
        self._pools = threadpool_limits(n)

    def restore(self) -> None:
        """Put the thread counts back as they were before (idempotent)."""
        if self._pools is not None:
            self._pools.restore_original_limits()
            self._pools = None
        if self._torch_before is not None:
            torch.set_num_threads(self._torch_before)
            self._torch_before = None

    def __enter__(self) -> "threads":
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def single_threaded() -> threads:
    """``threads(1)``: one CPU thread for torch and BLAS inside the ``with`` block."""
    return threads(1)


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device
