"""Products of a curvature operator with a block of vectors: one at a time, or batched.

A curvature product is a backward pass through a cached graph.  ``torch.autograd.grad(...,
is_grads_batched=True)`` runs it once for a block of ``b`` vectors (``vmap`` over the vectors fed
to the backward pass), which pays where a single product leaves the hardware idle (small models
on a GPU, or tiny models anywhere: twice as fast for the dense GGN of a 2,410-parameter MLP on a
CPU), and not where one product already keeps it busy (on a CPU, the same time per vector or more
for a 269,322-parameter MLP and a ResNet-style CNN; ``benchmarks/bench_curvature.py``).
:class:`BlockProducts` decides by measuring: in the first block of at least 4 vectors, 2 are
multiplied one at a time and up to 16 others batched, and the faster way per vector multiplies that
block and every later one (the timed products, at most 18, are discarded once per problem, so that
all of its products come from one way).  The choice is remembered for the problem (:data:`CHOICES`,
keyed by what the operator is the curvature of: operator type, device, dtype, parameter shapes and
data), so repeating a computation in a process repeats its
products bitwise; another process may choose otherwise, and the products then agree to rounding.
Set ``mode`` to "loop" or "batched" to fix the choice.  A backward pass that ``vmap`` cannot batch
falls back to the loop.

Vectors travel as rows: a block is a ``(b, P)`` tensor whose rows are contiguous, the layout the
backward pass reads and writes, so neither the inputs nor the products are copied into columns.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from typing import Literal

import torch
from torch import Tensor

BlockMode = Literal["auto", "loop", "batched"]
BLOCK_MODES: tuple[str, ...] = ("auto", "loop", "batched")
#: vectors multiplied one at a time and (at most) batched when "auto" measures: the batched pass is timed on a
#: larger block because its cost per vector falls with the block (a block of 2 misjudges a block of 256)
MEASURED_LOOP, MEASURED_BATCHED = 2, 16
#: the measured choice per problem (see the module docstring)
CHOICES: dict[Hashable, str] = {}


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
    """How an operator multiplies a block of vectors: "loop", "batched", or "auto" (measured once per
    ``problem``, a hashable description of what is multiplied; None: measured once per instance)."""

    def __init__(self, mode: BlockMode = "auto", problem: Hashable | None = None):
        self.problem = problem
        self.mode = mode

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in BLOCK_MODES:
            raise ValueError(f"block products mode must be one of {BLOCK_MODES}, got {value!r}")
        self._mode = value
        self.choice: str | None = None if value == "auto" else value  # "auto": looked up or measured when needed

    def _decide(self, choice: str) -> None:
        self.choice = choice
        if self.problem is not None:
            CHOICES[self.problem] = choice

    def __call__(self, rows: Tensor, product: Callable[[Tensor, bool], Tensor]) -> Tensor:
        """The ``(k, P)`` products of ``rows``; ``product(block, batched)`` multiplies a ``(b, P)``
        block in one batched pass, or a single row ``(1, P)`` with ``batched=False``."""
        k = rows.shape[0]
        if k == 1:
            return product(rows, False)
        if self.choice is None:
            self.choice = CHOICES.get(self.problem)
        if self.choice is None:
            if k < 2 * MEASURED_LOOP:
                return self._loop(rows, product)
            self._measure(rows, product)
        if self.choice == "batched":
            try:
                return product(rows, True)
            except RuntimeError:  # vmap cannot batch this backward pass (or the batch does not fit)
                if self.mode == "batched":
                    raise
                self._decide("loop")
        return self._loop(rows, product)

    def _measure(self, rows: Tensor, product: Callable[[Tensor, bool], Tensor]) -> None:
        """Time products each way (:data:`MEASURED_LOOP`, :data:`MEASURED_BATCHED`) and decide by the time per
        vector.  The timed products are discarded, so that every product of the problem comes from the one
        way chosen."""
        batched = rows[MEASURED_LOOP:MEASURED_LOOP + MEASURED_BATCHED]
        try:
            batched_s, _ = _timed(lambda: product(batched, True), rows.device)
        except RuntimeError:
            self._decide("loop")
            return
        loop_s, _ = _timed(lambda: self._loop(rows[:MEASURED_LOOP], product), rows.device)
        self._decide("batched" if batched_s / len(batched) < loop_s / MEASURED_LOOP else "loop")

    @staticmethod
    def _loop(rows: Tensor, product: Callable[[Tensor, bool], Tensor]) -> Tensor:
        return torch.cat([product(rows[i:i + 1], False) for i in range(rows.shape[0])])
