"""Device and dtype resolution shared by analyzers and the command line."""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch and the BLAS/OpenMP pools of numpy and scipy on one thread, then restore them.

    Small problems gain nothing from threads, and on a busy machine the threads of several
    processes contend: single-threaded, the quick claims and the tests run up to ten times faster.
    """
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device
