"""The loss and the accuracy of a model over data, as analyzers (sample-weighted means over batches)."""
from __future__ import annotations

from collections.abc import Callable

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
              output: OutputFn | None = None) -> float:
    """``sum_b n_b loss_b / sum_b n_b`` over the batches of ``data`` (default: the model's current mode)."""
    fn = ModelFunction(model, loss_fn, data, mode=mode, dtype=dtype, device=device, output=output, variables=False)
    return fn.mean_loss()


@analyzer
def accuracy(model: nn.Module, data: Data, *, mode: Mode = "keep", dtype: torch.dtype | None = None,
             device: str | torch.device | None = None, output: OutputFn | None = None) -> float:
    """Fraction of samples whose argmax output equals the integer target."""
    fn = ModelFunction(model, None, data, mode=mode, dtype=dtype, device=device, output=output, variables=False)

    def batch_accuracy(batch) -> Tensor:
        hits = fn.outputs({}, batch).argmax(dim=-1) == fn.targets(batch)
        return hits.to(torch.float64).mean()

    with torch.no_grad(), fn.evaluating():
        return float(fn.data_mean(batch_accuracy))
