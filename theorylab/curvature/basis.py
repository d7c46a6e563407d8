"""Storage for the vectors of a Krylov method, within a memory budget.

A Lanczos run of ``m`` steps on an operator of dimension ``P`` keeps its basis
``Q = [q_0 .. q_{m-1}]`` to reorthogonalize each new vector against it and to form Ritz vectors
``Q s``: ``m P`` numbers, which for a model with 90M parameters is 360 MB per vector in float32,
more than the model itself after a dozen steps.  :class:`KrylovBasis` holds up to ``capacity``
such vectors as the rows of one buffer allocated once (no growth by copying):

* on the operator's device or another one: on the CPU, pinned, when the operator is on CUDA, so
  that the basis does not compete with the model for GPU memory.  Rows then travel to the GPU a
  chunk at a time on a side stream, the transfer of one chunk overlapping the work on the previous;
* in the operator's precision or a lower one (float32, float16, bfloat16).  Rows are rounded when
  stored and widened to the operator's precision a chunk at a time when used.  The vectors of the
  three-term recurrence (the current and previous Lanczos vectors, the new product) never leave the
  operator's precision and the tridiagonal matrix is float64, so the rounding of stored rows limits
  only how orthogonal new vectors are kept (to about the unit roundoff ``u`` of the storage) and
  the accuracy of Ritz vectors (about ``u``); Ritz values, Rayleigh quotients of a basis that is
  orthogonal to ``u``, are much more accurate (errors of order ``u^2 ||H||``; Simon 1984,
  "Analysis of the symmetric Lanczos algorithm with reorthogonalization methods").

Projections are block Gram-Schmidt over chunks of rows (Jalby & Philippe 1991, "Stability analysis
and improvement of the block Gram-Schmidt algorithm"): classical Gram-Schmidt within a chunk,
modified between chunks.  Each chunk is read once for its coefficients and its update while it is
in cache (or in the GPU's staging buffer), instead of the two passes over the whole basis of
classical Gram-Schmidt.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor

MemoryBudget = int | Literal["auto"] | None
STORAGE_DTYPES: tuple[torch.dtype, ...] = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
#: share of the free memory of the basis device that ``memory_budget="auto"`` allows (the rest is
#: left to the model and the graph of its products)
AUTO_FRACTION = 0.5
#: rows per projection chunk on a CPU are chosen to fit this many bytes (a share of a CPU cache)
CACHE_BYTES = 4 * 2**20
#: bytes per chunk moved between devices or widened to the operator's precision
TRANSFER_BYTES = 64 * 2**20


def available_memory(device: torch.device) -> int:
    """Free memory in bytes: CUDA's free device memory, or the host's available memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def resolve_budget(memory_budget: MemoryBudget, device: torch.device) -> int | None:
    """The budget in bytes (None: unbounded); ``"auto"`` is a share of the free memory of ``device``."""
    if memory_budget is None:
        return None
    if memory_budget == "auto":
        return int(AUTO_FRACTION * available_memory(device))
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget <= 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, 'auto' or None, got {memory_budget!r}")
    return memory_budget


def resolve_storage(op_dtype: torch.dtype, op_device: torch.device, basis_dtype: torch.dtype | None,
                    basis_device: str | torch.device | None) -> tuple[torch.dtype, torch.device]:
    """Validated ``(dtype, device)`` of the stored basis; None means the operator's."""
    dtype = op_dtype if basis_dtype is None else basis_dtype
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"basis_dtype must be one of {[str(d) for d in STORAGE_DTYPES]} or None, got {basis_dtype!r}")
    try:
        device = op_device if basis_device is None else torch.device(basis_device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown basis_device {basis_device!r} (use cpu, cuda or cuda:N)") from exc
    if device.type not in ("cpu", op_device.type) or (device.type == "cuda" and device != op_device):
        raise ValueError(f"basis_device must be the CPU or the operator's device {op_device}, got {device}")
    return dtype, device


class KrylovBasis:
    """Up to ``capacity`` vectors of length ``size`` stored as rows, used in the operator's precision.

    ``compute_dtype``/``compute_device`` are those of the operator: every vector handed in or out
    is in them.  ``storage_dtype``/``storage_device`` are those of the rows.  ``nbytes`` is the
    memory the basis holds: its rows and, where rows are moved or widened, the staging buffers.
    """

    def __init__(self, size: int, capacity: int, *, compute_dtype: torch.dtype, compute_device: torch.device,
                 storage_dtype: torch.dtype, storage_device: torch.device):
        self.size, self.capacity = int(size), int(capacity)
        self.compute_dtype, self.compute_device = compute_dtype, torch.device(compute_device)
        self.storage_dtype, self.storage_device = storage_dtype, torch.device(storage_device)
        self.overlapped = self.compute_device.type == "cuda" and self.storage_device.type == "cpu"
        self.rows = torch.empty(self.capacity, self.size, dtype=storage_dtype, device=storage_device,
                                pin_memory=self.overlapped)
        self.direct = storage_dtype == compute_dtype and self.storage_device == self.compute_device
        row_bytes = self.size * torch.empty((), dtype=compute_dtype).element_size()
        if self.direct:  # chunks that stay in a CPU cache; one chunk (classical Gram-Schmidt) on a GPU
            fit = CACHE_BYTES // row_bytes
            self.rows_per_chunk = fit if self.compute_device.type == "cpu" and fit >= 2 else max(self.capacity, 1)
        else:
            self.rows_per_chunk = max(1, min(TRANSFER_BYTES // row_bytes, self.capacity))
        self._staging: list[Tensor] = []
        if self.overlapped and self.capacity:
            self._staging = [torch.empty(self.rows_per_chunk, self.size, dtype=storage_dtype,
                                         device=self.compute_device) for _ in range(2)]
            self._side_stream = torch.cuda.Stream(self.compute_device)
        staging = 0 if self.direct else self.rows_per_chunk * row_bytes * (3 if self.overlapped else 1)
        self.nbytes = self.rows.element_size() * self.rows.numel() + (staging if self.capacity else 0)

    @staticmethod
    def rows_within(budget: int | None, size: int, storage_dtype: torch.dtype) -> int | None:
        """How many rows of ``size`` entries fit in ``budget`` bytes (None: unbounded)."""
        if budget is None:
            return None
        return budget // (size * torch.empty((), dtype=storage_dtype).element_size())

    def store(self, index: int, vector: Tensor) -> None:
        """Row ``index`` <- ``vector`` (rounded to the storage precision)."""
        self.rows[index].copy_(vector, non_blocking=self.overlapped)

    def _sync_host(self) -> None:
        """Wait for pending copies into pinned rows before the host reads them."""
        if self.overlapped:
            torch.cuda.current_stream(self.compute_device).synchronize()

    def _chunks(self, start: int, stop: int) -> Iterator[tuple[int, int, Tensor]]:
        """``(a, b, rows[a:b])`` over ``[start, stop)``, each chunk in the compute precision and device."""
        bounds = [(a, min(a + self.rows_per_chunk, stop)) for a in range(start, stop, self.rows_per_chunk)]
        if self.direct:
            for a, b in bounds:
                yield a, b, self.rows[a:b]
        elif self.overlapped:
            yield from self._prefetched(bounds)
        else:
            for a, b in bounds:
                yield a, b, self.rows[a:b].to(device=self.compute_device, dtype=self.compute_dtype)

    def _prefetched(self, bounds: list[tuple[int, int]]) -> Iterator[tuple[int, int, Tensor]]:
        """Chunks copied host -> GPU on a side stream, the copy of chunk i+1 overlapping the work on chunk i."""
        current, side = torch.cuda.current_stream(self.compute_device), self._side_stream

        def issue(i: int) -> tuple[Tensor, torch.cuda.Event]:
            a, b = bounds[i]
            staged = self._staging[i % 2][:b - a]
            side.wait_stream(current)  # rows stored on the current stream, and the last reader of this buffer
            with torch.cuda.stream(side):
                staged.copy_(self.rows[a:b], non_blocking=True)
                done = torch.cuda.Event()
                done.record(side)
            return staged, done

        pending = issue(0) if bounds else None
        for i, (a, b) in enumerate(bounds):
            staged, done = pending
            current.wait_event(done)
            chunk = staged.to(self.compute_dtype)
            if i + 1 < len(bounds):
                pending = issue(i + 1)
            yield a, b, chunk

    def project(self, w: Tensor, start: int, stop: int) -> Tensor:
        """Remove from ``w`` (in place) its components along rows ``[start, stop)``; returns them.

        Block Gram-Schmidt: per chunk ``c = R w`` then ``w -= R^T c``.
        """
        coefficients = torch.zeros(stop - start, dtype=w.dtype, device=w.device)
        for a, b, chunk in self._chunks(start, stop):
            c = torch.mv(chunk, w)
            w.addmv_(chunk.T, c, alpha=-1)
            coefficients[a - start:b - start] = c
        return coefficients

    def subtract(self, w: Tensor, coefficients: Tensor, start: int) -> None:
        """``w -= sum_i coefficients[i] row[start + i]`` in place."""
        for a, b, chunk in self._chunks(start, start + len(coefficients)):
            w.addmv_(chunk.T, coefficients[a - start:b - start], alpha=-1)

    def _column_chunks(self, rows: int) -> Iterator[tuple[int, int]]:
        width = max(1, TRANSFER_BYTES // (max(rows, 1) * torch.empty((), dtype=self.compute_dtype).element_size()))
        for c in range(0, self.size, width):
            yield c, min(c + width, self.size)

    def transform(self, start: int, stop: int, s: Tensor) -> None:
        """Rows ``[start, start + r)`` <- ``S^T rows[start:stop]`` in place, for ``s`` of shape ``(stop - start, r)``.

        Ritz vectors replacing the basis they come from (a restart, or locking), a chunk of columns
        at a time, so no second basis is allocated.
        """
        self._sync_host()
        s_t = s.T.to(device=self.compute_device, dtype=self.compute_dtype).contiguous()
        for c0, c1 in self._column_chunks(stop - start):
            block = self.rows[start:stop, c0:c1].to(device=self.compute_device, dtype=self.compute_dtype)
            self.rows[start:start + s_t.shape[0], c0:c1] = s_t @ block

    def read(self, start: int, stop: int) -> Tensor:
        """Rows ``[start, stop)`` as a ``(stop - start, size)`` tensor in the compute precision and device."""
        self._sync_host()
        return self.rows[start:stop].to(device=self.compute_device, dtype=self.compute_dtype)
