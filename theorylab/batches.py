"""Data semantics shared by every analyzer.

``data`` is either one batch or a re-iterable collection of batches (a list, a
``torch.utils.data.DataLoader``).  A batch is

* ``(inputs, targets)``: ``inputs`` a tensor, a tuple of tensors (positional arguments of the
  model) or a dict of tensors (keyword arguments), ``targets`` a tensor; or
* a dict of tensors, as HuggingFace collators make them (``{"input_ids": ..., "attention_mask":
  ..., "labels": ...}``): the key ``"labels"`` holds the targets and every other key is passed to
  the model as a keyword argument.

A loss over ``data`` is the sample-weighted mean over all batches, ``L = sum_b n_b L_b / sum_b n_b``,
where ``L_b`` is the batch mean returned by ``loss_fn(outputs, targets)`` (PyTorch's default
``reduction="mean"``) and ``n_b`` the leading dimension of the targets; so an uneven last batch
counts exactly as much as its samples, and every analyzer over a loader equals the analyzer over
the concatenated full batch.  (For a language model ``n_b`` counts sequences: batches whose
sequences hold different numbers of scored tokens are weighted by sequences, not tokens.)
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Batch = tuple[Any, Tensor] | Mapping[str, Any]
Data = Batch | Iterable[Batch]

#: the key of the targets in a dict batch (the HuggingFace convention)
TARGET_KEY = "labels"


def _is_inputs(inputs: Any) -> bool:
    if isinstance(inputs, Tensor):
        return True
    if isinstance(inputs, (tuple, list)):
        return len(inputs) > 0 and all(isinstance(t, Tensor) for t in inputs)
    if isinstance(inputs, Mapping):
        return len(inputs) > 0 and all(isinstance(k, str) for k in inputs)
    return False


def is_batch(data: Any) -> bool:
    """True for one batch: ``(inputs, targets)`` or a dict of model arguments (see the module docstring)."""
    if isinstance(data, Mapping):
        return len(data) > 0 and all(isinstance(k, str) for k in data)
    return (isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], Tensor)
            and _is_inputs(data[0]))


@dataclass(frozen=True)
class Parts:
    """A batch taken apart: the model is called as ``model(*args, **kwargs)``; ``targets`` may be None."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    targets: Tensor | None


def parts(batch: Batch) -> Parts:
    """The model arguments and the targets of a batch."""
    if isinstance(batch, Mapping):
        kwargs = {k: v for k, v in batch.items() if k != TARGET_KEY}
        if not kwargs:
            raise ValueError(f"a dict batch needs model inputs besides {TARGET_KEY!r}, got keys {list(batch)}")
        return Parts((), kwargs, batch.get(TARGET_KEY))
    inputs, targets = batch
    if isinstance(inputs, Mapping):
        return Parts((), dict(inputs), targets)
    return Parts(tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,), {}, targets)


def _first_tensor(p: Parts) -> Tensor:
    for value in (*p.args, *p.kwargs.values()):
        if isinstance(value, Tensor):
            return value
    raise ValueError("a batch must hold at least one tensor")


def batch_size(batch: Batch) -> int:
    """Number of samples in a batch: the leading dimension of its targets (else of its first input)."""
    p = parts(batch)
    reference = p.targets if p.targets is not None else _first_tensor(p)
    if reference.dim() == 0:
        raise ValueError("targets must have a leading batch dimension")
    return int(reference.shape[0])


def iter_batches(data: Data) -> Iterator[Batch]:
    """Iterate over the batches of ``data`` (one batch, or a re-iterable of batches)."""
    if is_batch(data):
        yield data if isinstance(data, Mapping) else tuple(data)  # type: ignore[misc]
        return
    if not isinstance(data, Iterable):
        raise ValueError(f"data must be an (inputs, targets) batch, a dict batch or an iterable of batches, "
                         f"got {type(data).__name__}")
    if iter(data) is data:  # type: ignore[call-overload]
        raise ValueError("data is a one-shot iterator; pass a list of batches or a DataLoader, "
                         "which can be iterated more than once")
    for batch in data:
        if not is_batch(batch):
            raise ValueError("each batch must be an (inputs, targets) pair of tensors or a dict of tensors "
                             f"with the targets under {TARGET_KEY!r}")
        yield batch if isinstance(batch, Mapping) else tuple(batch)  # type: ignore[misc]


def count_samples(data: Data) -> int:
    """Total number of samples; raises ValueError if ``data`` is empty."""
    n = sum(batch_size(b) for b in iter_batches(data))
    if n == 0:
        raise ValueError("data is empty: it holds no samples")
    return n


def move_tensor(t: Tensor, device: torch.device | str | None, dtype: torch.dtype | None = None) -> Tensor:
    """``t`` on ``device``; cast to ``dtype`` when given and ``t`` is floating (labels stay integers)."""
    return t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)


def _map(value: Any, fn) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, Mapping):
        return {k: _map(v, fn) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return tuple(_map(v, fn) for v in value)
    return value


def move_batch(batch: Batch, device: torch.device | str | None, dtype: torch.dtype | None = None) -> Batch:
    """Move a batch to ``device``; floating tensors are cast to ``dtype`` when given."""
    return _map(batch, lambda t: move_tensor(t, device, dtype))


def slice_batch(batch: Batch, index: slice | Tensor) -> Batch:
    """The samples ``index`` of a batch (every tensor is indexed along its leading dimension)."""
    return _map(batch, lambda t: t[index] if t.dim() > 0 else t)


def split_groups(batch: Batch, group: int) -> Batch:
    """Every tensor reshaped from ``(n, ...)`` to ``(n / group, group, ...)``: a stack of batches."""
    return _map(batch, lambda t: t.reshape(t.shape[0] // group, group, *t.shape[1:]))


def subset(data: Data, size: int | None) -> Data:
    """The first ``size`` samples of one batch (``data`` itself for None)."""
    if size is None:
        return data
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"subset must be an integer >= 1, got {size!r}")
    batches = list(iter_batches(data))
    if len(batches) != 1:
        raise ValueError("subset needs data as one batch")
    available = batch_size(batches[0])
    if size > available:
        raise ValueError(f"subset={size} exceeds the {available} samples of data")
    return slice_batch(batches[0], slice(0, size))
