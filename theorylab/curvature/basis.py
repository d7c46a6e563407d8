"""Storage for the vectors of a Krylov method, within a memory budget.

A Lanczos run of ``m`` steps on an operator of dimension ``P`` keeps its basis
``Q = [q_0 .. q_{m-1}]`` to reorthogonalize each new vector against it and to form Ritz vectors
``Q s``: ``m P`` numbers, which for a model with 90M parameters is 360 MB per vector in float32,
more than the model itself after a dozen steps.  :class:`KrylovBasis` holds up to ``capacity``
such vectors, within a memory budget, as rows of segments allocated as they fill and never moved
(no growth by copying):

* on the operator's device or another one: on the CPU, pinned, when the operator is on CUDA, so
  that the basis does not compete with the model for GPU memory.  Rows then travel to the GPU a
  chunk at a time on a side stream, the transfer of one chunk overlapping the work on the previous;
* in the operator's precision or a lower one (float32, float16, bfloat16).  Rows are rounded when
  stored and widened to the operator's precision a chunk at a time when used.  The vectors of the
  three-term recurrence (the current and previous Lanczos vectors, the new product) never leave the
  operator's precision and the tridiagonal matrix is float64, so the rounding of stored rows limits
  only how orthogonal new vectors are kept (to about the unit roundoff ``u`` of the storage) and
  the accuracy of Ritz vectors (about ``u``).  Ritz values are much less affected: a basis
  orthogonal to about ``u`` still gives a projected matrix close to that of an orthonormal one
  (Simon 1984, "Analysis of the symmetric Lanczos algorithm with reorthogonalization methods"), and
  the tests measure eigenvalue errors well below ``u ||H||``.

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
#: bytes per segment of rows, for a basis that grows with the steps taken (at least one row)
SEGMENT_BYTES = 64 * 2**20


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
    if device.type == "cpu":
        return dtype, device
    if device.type != op_device.type or None not in (device.index, op_device.index) and device != op_device:
        raise ValueError(f"basis_device must be the CPU or the operator's device {op_device}, got {device}")
    return dtype, op_device  # "cuda" and "cuda:0" name the same device here


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def plan(size: int, rows: int, budget: int | None, *, compute_dtype: torch.dtype, compute_device: torch.device,
         storage_dtype: torch.dtype, storage_device: torch.device) -> tuple[int, int, int]:
    """``(capacity, rows per chunk, staging bytes per chunk row)`` of a basis of at most ``rows`` rows
    whose rows and staging buffers fit ``budget`` (None: no bound)."""
    compute_row, storage_row = size * _itemsize(compute_dtype), size * _itemsize(storage_dtype)
    overlapped = compute_device.type == "cuda" and storage_device.type == "cpu"
    if storage_dtype == compute_dtype and storage_device == compute_device:
        # chunks that stay in a CPU cache; one chunk (classical Gram-Schmidt) on a GPU; nothing staged
        fit = CACHE_BYTES // compute_row
        chunk, staged_row = (fit if compute_device.type == "cpu" and fit >= 2 else max(rows, 1)), 0
    else:  # staging: two raw chunks on the GPU (overlapped copies), one chunk widened to the compute dtype
        staged_row = (2 * storage_row if overlapped else 0) + (0 if storage_dtype == compute_dtype else compute_row)
        chunk = max(1, min(TRANSFER_BYTES // compute_row, rows // 8))
        if budget is not None:  # staging takes at most an eighth of the budget (or one row)
            chunk = max(1, min(chunk, budget // (8 * staged_row)))
    capacity = rows if budget is None else max(0, min(rows, (budget - chunk * staged_row) // storage_row))
    return capacity, max(1, min(chunk, capacity)), staged_row


class KrylovBasis:
    """Up to ``rows`` vectors of length ``size`` stored as rows, used in the operator's precision.

    ``compute_dtype``/``compute_device`` are those of the operator: every vector handed in or out
    is in them.  ``storage_dtype``/``storage_device`` are those of the rows.  ``budget`` (bytes,
    None for no bound) caps the memory: ``capacity`` is ``rows`` or the most that fit (:func:`plan`).
    Rows live in segments of ``segment_rows``, allocated when a row in them is first stored and
    never moved (default: one segment of ``capacity`` rows, for runs that use them all);
    ``nbytes`` is the memory held, segments and staging buffers, at most the budget.
    """

    def __init__(self, size: int, rows: int, *, compute_dtype: torch.dtype, compute_device: torch.device,
                 storage_dtype: torch.dtype, storage_device: torch.device, budget: int | None = None,
                 segment_rows: int | None = None):
        self.size = int(size)
        self.compute_dtype, self.compute_device = compute_dtype, torch.device(compute_device)
        self.storage_dtype, self.storage_device = storage_dtype, torch.device(storage_device)
        self.overlapped = self.compute_device.type == "cuda" and self.storage_device.type == "cpu"
        self.direct = storage_dtype == compute_dtype and self.storage_device == self.compute_device
        self.capacity, self.rows_per_chunk, staged_row = plan(
            self.size, rows, budget, compute_dtype=compute_dtype, compute_device=self.compute_device,
            storage_dtype=storage_dtype, storage_device=self.storage_device)
        if segment_rows is not None and segment_rows < 1:
            raise ValueError(f"segment_rows must be a positive integer or None, got {segment_rows!r}")
        self.segment_rows = max(1, min(self.capacity, segment_rows or self.capacity))
        self._segments: list[Tensor] = []
        self._staging: list[Tensor] = []
        if self.overlapped and self.capacity:
            self._staging = [torch.empty(self.rows_per_chunk, self.size, dtype=storage_dtype,
                                         device=self.compute_device) for _ in range(2)]
            self._side_stream = torch.cuda.Stream(self.compute_device)
        self._staging_bytes = self.rows_per_chunk * staged_row if self.capacity else 0

    @property
    def nbytes(self) -> int:
        """Memory held: the segments allocated so far and the staging buffers."""
        return sum(t.element_size() * t.numel() for t in self._segments) + self._staging_bytes

    # -- rows -------------------------------------------------------------------------------------
    def store(self, index: int, vector: Tensor) -> None:
        """Row ``index`` <- ``vector`` (rounded to the storage precision)."""
        if index >= self.capacity:
            raise IndexError(f"row {index} is beyond the capacity {self.capacity} of the basis")
        while len(self._segments) * self.segment_rows <= index:
            rows = min(self.segment_rows, self.capacity - len(self._segments) * self.segment_rows)
            self._segments.append(torch.empty(rows, self.size, dtype=self.storage_dtype, device=self.storage_device,
                                              pin_memory=self.overlapped))
        segment, offset = divmod(index, self.segment_rows)
        self._segments[segment][offset].copy_(vector, non_blocking=self.overlapped)

    def _pieces(self, start: int, stop: int, columns: slice = slice(None),
                limit: int | None = None) -> Iterator[tuple[int, int, Tensor]]:
        """``(a, b, view of rows [a, b))`` over ``[start, stop)``, at most ``limit`` rows each (default
        ``rows_per_chunk``), never across segments; ``columns`` selects entries."""
        limit = limit or self.rows_per_chunk
        a = start
        while a < stop:
            segment, offset = divmod(a, self.segment_rows)
            b = min(stop, a + limit, (segment + 1) * self.segment_rows)
            yield a, b, self._segments[segment][offset:offset + b - a, columns]
            a = b

    def _sync_host(self) -> None:
        """Wait for pending copies into pinned rows before the host reads them."""
        if self.overlapped:
            torch.cuda.current_stream(self.compute_device).synchronize()

    def _chunks(self, start: int, stop: int) -> Iterator[tuple[int, int, Tensor]]:
        """``(a, b, rows[a:b])`` over ``[start, stop)``, each chunk in the compute precision and device."""
        if self.direct:
            yield from self._pieces(start, stop)
        elif self.overlapped:
            yield from self._prefetched(list(self._pieces(start, stop)))
        else:
            for a, b, piece in self._pieces(start, stop):
                yield a, b, piece.to(device=self.compute_device, dtype=self.compute_dtype)

    def _prefetched(self, pieces: list[tuple[int, int, Tensor]]) -> Iterator[tuple[int, int, Tensor]]:
        """Chunks copied host -> GPU on a side stream, the copy of chunk i+1 overlapping the work on chunk i."""
        current, side = torch.cuda.current_stream(self.compute_device), self._side_stream

        def issue(i: int) -> tuple[Tensor, torch.cuda.Event]:
            a, b, piece = pieces[i]
            staged = self._staging[i % 2][:b - a]
            side.wait_stream(current)  # rows stored on the current stream, and the last reader of this buffer
            with torch.cuda.stream(side):
                staged.copy_(piece, non_blocking=True)
                done = torch.cuda.Event()
                done.record(side)
            return staged, done

        pending = issue(0) if pieces else None
        for i, (a, b, _) in enumerate(pieces):
            staged, done = pending
            current.wait_event(done)
            chunk = staged.to(self.compute_dtype)
            if i + 1 < len(pieces):
                pending = issue(i + 1)
            yield a, b, chunk

    # -- linear algebra with the rows ---------------------------------------------------------------
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

    def transform(self, start: int, stop: int, s: Tensor) -> None:
        """Rows ``[start, start + r)`` <- ``S^T rows[start:stop]`` in place, for ``s`` of shape ``(stop - start, r)``.

        Ritz vectors replacing the basis they come from (a restart, or locking), a chunk of columns
        at a time, so no second basis is allocated.
        """
        self._sync_host()
        s_t = s.T.to(device=self.compute_device, dtype=self.compute_dtype).contiguous()
        item = _itemsize(self.compute_dtype)
        width = max(1, TRANSFER_BYTES // (max(stop - start, 1) * item))
        for c0 in range(0, self.size, width):
            columns = slice(c0, min(c0 + width, self.size))
            block = torch.cat([piece.to(device=self.compute_device, dtype=self.compute_dtype)
                               for _, _, piece in self._pieces(start, stop, columns)])
            new = s_t @ block
            for a, b, piece in self._pieces(start, start + s_t.shape[0], columns):
                piece.copy_(new[a - start:b - start])

    def view(self, start: int, stop: int) -> Tensor:
        """Rows ``[start, stop)`` as stored (in the storage precision and device): a view within one
        segment, else a copy."""
        self._sync_host()
        pieces = [piece for _, _, piece in self._pieces(start, stop, limit=self.segment_rows)]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    def read(self, start: int, stop: int) -> Tensor:
        """Rows ``[start, stop)`` as a ``(stop - start, size)`` tensor in the compute precision and device."""
        self._sync_host()
        return torch.cat([piece.to(device=self.compute_device, dtype=self.compute_dtype)
                          for _, _, piece in self._pieces(start, stop)])
