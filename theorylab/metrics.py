"""The loss and the accuracy of a model over data, as analyzers (sample-weighted means over batches)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from theorylab._state import Mode
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.batches import Data
from theorylab.functional import ModelFunction

LossFn = Callable[[Tensor, Tensor], Tensor]


@analyzer
def mean_loss(model: nn.Module, loss_fn: LossFn, data: Data, *, mode: Mode = "keep",
              dtype: torch.dtype | None = None, device: str | torch.device | None = None,
              output: OutputFn | None = None, process_group: Any = None) -> float:
    """``sum_b n_b loss_b / sum_b n_b`` over the batches of ``data`` (default: the model's current mode);
    with ``process_group``, over the shards of every rank."""
    fn = ModelFunction(model, loss_fn, data, mode=mode, dtype=dtype, device=device, output=output, variables=False,
                       process_group=process_group)
    return fn.mean_loss()


@analyzer
def accuracy(model: nn.Module, data: Data, *, mode: Mode = "keep", dtype: torch.dtype | None = None,
             device: str | torch.device | None = None, output: OutputFn | None = None,
             process_group: Any = None) -> float:
    """Fraction of samples whose argmax output equals the integer target (over every rank's shard)."""
    fn = ModelFunction(model, None, data, mode=mode, dtype=dtype, device=device, output=output, variables=False,
                       process_group=process_group)

    def batch_accuracy(batch) -> Tensor:
        hits = fn.outputs({}, batch).argmax(dim=-1) == fn.targets(batch)
        return hits.to(torch.float64).mean()

    with torch.no_grad(), fn.evaluating():
        return float(fn.data_mean(batch_accuracy))
