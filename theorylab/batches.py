"""Data semantics shared by every analyzer.

``data`` is either one batch ``(inputs, targets)`` or a re-iterable collection of such batches
(a list, a ``torch.utils.data.DataLoader``).  A loss over ``data`` is the sample-weighted mean
over all batches, ``L = sum_b n_b L_b / sum_b n_b``, where ``L_b`` is the batch mean returned by
``loss_fn(outputs, targets)`` (PyTorch's default ``reduction="mean"``); so an uneven last batch
counts exactly as much as its samples, and every analyzer over a loader equals the analyzer over
the concatenated full batch.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

Batch = tuple[Any, Tensor]
Data = Batch | Iterable[Batch]


def _is_batch(data: Any) -> bool:
    """True for ``(inputs, targets)``: inputs a tensor or a tuple of tensors, targets a tensor."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], Tensor)):
        return False
    inputs = data[0]
    return isinstance(inputs, Tensor) or (isinstance(inputs, (tuple, list))
                                           and all(isinstance(t, Tensor) for t in inputs))


def batch_size(batch: Batch) -> int:
    """Number of samples in a batch: the leading dimension of its targets."""
    targets = batch[1]
    if targets.dim() == 0:
        raise ValueError("targets must have a leading batch dimension")
    return int(targets.shape[0])


def iter_batches(data: Data) -> Iterator[Batch]:
    """Iterate over the batches of ``data`` (one batch, or a re-iterable of batches)."""
    if _is_batch(data):
        yield tuple(data)  # type: ignore[misc]
        return
    if not isinstance(data, Iterable):
        raise ValueError(f"data must be an (inputs, targets) batch or an iterable of batches, got {type(data).__name__}")
    if iter(data) is data:  # type: ignore[call-overload]
        raise ValueError("data is a one-shot iterator; pass a list of batches or a DataLoader, "
                         "which can be iterated more than once")
    for batch in data:
        if not _is_batch(batch):
            raise ValueError("each batch must be an (inputs, targets) pair of tensors")
        yield tuple(batch)  # type: ignore[misc]


def count_samples(data: Data) -> int:
    """Total number of samples; raises ValueError if ``data`` is empty."""
    n = sum(batch_size(b) for b in iter_batches(data))
    if n == 0:
        raise ValueError("data is empty: it holds no samples")
    return n


def move_tensor(t: Tensor, device: torch.device | str | None, dtype: torch.dtype | None = None) -> Tensor:
    """``t`` on ``device``; cast to ``dtype`` when given and ``t`` is floating (labels stay integers)."""
    return t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)


def move_batch(batch: Batch, device: torch.device, dtype: torch.dtype | None = None) -> Batch:
    """Move a batch to ``device``; floating tensors are cast to ``dtype`` when given."""
    inputs, targets = batch
    if isinstance(inputs, (tuple, list)):
        inputs = tuple(move_tensor(t, device, dtype) for t in inputs)
    else:
        inputs = move_tensor(inputs, device, dtype)
    return inputs, move_tensor(targets, device, dtype)
