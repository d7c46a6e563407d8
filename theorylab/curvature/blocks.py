"""Products of a curvature operator with a block of vectors: one at a time, or batched.

A curvature product is a backward pass through a cached graph.  ``torch.autograd.grad(...,
is_grads_batched=True)`` runs it once for a block of ``b`` vectors (``vmap`` over the vectors fed
to the backward pass), which pays where a single product leaves the hardware idle (small models
on a GPU), and not where one product already keeps it busy (measured on a 2-core CPU: the same
time per vector or more, ``benchmarks/results/curvature_cpu_1thread.json``).  :class:`BlockProducts`
in mode "auto" therefore loops on the CPU, where the products are then bitwise reproducible, and on
other devices decides by measuring: in the first block of at least ``2 * MEASURED`` vectors,
:data:`MEASURED` are multiplied batched and as many one at a time, and the faster way per vector does
the rest of the block and the operator's later blocks.  Either way the products agree to rounding;
set ``mode`` to "loop" or "batched" to fix the choice (a choice by timing can differ from run to run,
and with it the last bits of the products).  A backward pass that ``vmap`` cannot batch falls back
to the loop.

Vectors travel as rows: a block is a ``(b, P)`` tensor whose rows are contiguous, the layout the
backward pass reads and writes, so neither the inputs nor the products are copied into columns.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

BlockMode = Literal["auto", "loop", "batched"]
BLOCK_MODES: tuple[str, ...] = ("auto", "loop", "batched")
#: vectors multiplied each way when "auto" measures
MEASURED = 2
#: device types on which "auto" loops without measuring
LOOPING_DEVICES: tuple[str, ...] = ("cpu",)


def split_rows(block: Tensor, shapes: Sequence[torch.Size], batched: bool) -> list[Tensor]:
    """Views of a ``(b, P)`` block as parameter-shaped pieces ``(b, *shape)`` (``(*shape)`` when not batched)."""
    pieces = block.split([s.numel() for s in shapes], dim=1)
    if batched:
        return [piece.view(block.shape[0], *shape) for piece, shape in zip(pieces, shapes)]
    return [piece.view(shape) for piece, shape in zip(pieces, shapes)]


def join_rows(pieces: Sequence[Tensor | None], shapes: Sequence[torch.Size], rows: int, like: Tensor) -> Tensor:
    """A ``(rows, P)`` block from parameter-shaped pieces ``(rows, *shape)`` (None: zero)."""
    return torch.cat([torch.zeros(rows, s.numel(), dtype=like.dtype, device=like.device) if p is None
                      else p.reshape(rows, -1) for p, s in zip(pieces, shapes)], dim=1)


def _timed(fn: Callable[[], Tensor], device: torch.device) -> tuple[float, Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


class BlockProducts:
    """How an operator multiplies a block of vectors: "loop", "batched", or "auto" (measured once)."""

    def __init__(self, mode: BlockMode = "auto"):
        self.mode = mode

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in BLOCK_MODES:
            raise ValueError(f"block products mode must be one of {BLOCK_MODES}, got {value!r}")
        self._mode = value
        self.choice: str | None = None if value == "auto" else value

    def __call__(self, rows: Tensor, product: Callable[[Tensor, bool], Tensor]) -> Tensor:
        """The ``(k, P)`` products of ``rows``; ``product(block, batched)`` multiplies a ``(b, P)``
        block in one batched pass, or a single row ``(1, P)`` with ``batched=False``."""
        k = rows.shape[0]
        if k == 1:
            return product(rows, False)
        if self.choice is None and rows.device.type in LOOPING_DEVICES:
            self.choice = "loop"
        if self.choice == "loop" or (self.choice is None and k < 2 * MEASURED):
            return self._loop(rows, product)
        if self.choice == "batched":
            try:
                return product(rows, True)
            except RuntimeError:
                if self.mode == "batched":
                    raise
                self.choice = "loop"
                return self._loop(rows, product)
        try:
            batched_s, first = _timed(lambda: product(rows[:MEASURED], True), rows.device)
        except RuntimeError:  # vmap cannot batch this backward pass (or the batch does not fit)
            self.choice = "loop"
            return self._loop(rows, product)
        loop_s, second = _timed(lambda: self._loop(rows[MEASURED:2 * MEASURED], product), rows.device)
        self.choice = "batched" if batched_s < loop_s else "loop"
        rest = [self(rows[2 * MEASURED:], product)] if k > 2 * MEASURED else []
        return torch.cat([first, second, *rest])

    @staticmethod
    def _loop(rows: Tensor, product: Callable[[Tensor, bool], Tensor]) -> Tensor:
        return torch.cat([product(rows[i:i + 1], False) for i in range(rows.shape[0])])
