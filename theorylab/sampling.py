"""The gradient noise of two ways to rebalance a dataset: upsampling and upweighting.

Give example ``i`` weight ``w_i`` (e.g. the inverse frequency of its class) and let ``p_i = w_i / sum_j w_j``.
Both schemes estimate the same full gradient ``G = sum_i p_i g_i`` of the weighted loss, so full-batch gradient
descent follows the same path under either (Li, Xu, Tan, Murray & Khashabi 2024, "Upsample or upweight?
Balanced training on heavily imbalanced datasets"):

* **upsampling** draws examples with probability ``p_i`` (a dataset where example ``i`` appears ``w_i`` times)
  and averages their gradients: one draw has second moment ``sum_i p_i |g_i|^2``;
* **upweighting** draws examples uniformly and scales each gradient by ``n p_i``: one draw has second moment
  ``n sum_i p_i^2 |g_i|^2``.

With ``B`` draws with replacement, the estimator's variance ``E |g_hat - G|^2`` is ``(second moment - |G|^2) / B``.
:func:`sampling_gradient_variance` computes it exactly from the per-example gradients of a model (streamed,
``O(P)`` memory).  Where the up-weighted examples have the larger gradients (a rare class the model fits
worst), upweighting is the noisier scheme.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from theorylab._params import ParamSpec
from theorylab._state import Mode
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.batches import Data
from theorylab.gradients import _function, _stream_per_example
from theorylab.plotting import axes_or_new
from theorylab.results import Result, result_class

Scheme = Literal["upsample", "upweight"]
SCHEMES: tuple[str, ...] = ("upsample", "upweight")
LossFn = Callable[[Tensor, Tensor], Tensor]


@result_class
class SamplingVariance(Result):
    """``variance = E |g_hat - G|^2`` of the ``scheme``'s mini-batch gradient (``batch_size`` draws with
    replacement), with ``second_moment`` of one draw and ``mean_gradient_norm2 = |G|^2``."""

    scheme: str
    batch_size: int
    variance: float
    second_moment: float
    mean_gradient_norm2: float

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.bar(["|G|^2", "variance"], [self.mean_gradient_norm2, self.variance])
        ax.set_title(f"{self.scheme}, B = {self.batch_size}")
        return ax


@analyzer
def sampling_gradient_variance(model: nn.Module, loss_fn: LossFn, data: Data, *, weights: Any,
                               scheme: Scheme, batch_size: int = 1, params: ParamSpec = None, chunk_size: int = 256,
                               mode: Mode = "eval", dtype: torch.dtype | None = None,
                               device: str | torch.device | None = None,
                               output: OutputFn | None = None) -> SamplingVariance:
    """The exact variance of the mini-batch gradient of the weighted loss under ``scheme`` (module docstring).

    ``weights`` holds one non-negative weight per example, in the order of ``data``'s batches.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if not bool(torch.all(torch.isfinite(w))) or bool(torch.any(w < 0)) or float(w.sum()) <= 0:
        raise ValueError("weights must be finite, >= 0 and not all zero")
    p = w / w.sum()
    fn = _function(model, loss_fn, data, params, mode, dtype, device, output)
    mean: Tensor | None = None
    upsampled, upweighted, seen = 0.0, 0.0, 0
    for grads, _ in _stream_per_example(fn, chunk_size):
        g = torch.cat(grads, dim=1).to(torch.float64)
        if seen + len(g) > len(p):
            raise ValueError(f"weights has {len(p)} entries but the data has more examples")
        pi = p[seen: seen + len(g)].to(g.device)
        seen += len(g)
        norms2 = (g * g).sum(dim=1)
        term = pi @ g
        mean = term if mean is None else mean + term
        upsampled += float(pi @ norms2)
        upweighted += float((pi * pi) @ norms2)
    if seen != len(p):
        raise ValueError(f"weights has {len(p)} entries but the data has {seen} examples")
    assert mean is not None
    second = upsampled if scheme == "upsample" else seen * upweighted
    g2 = float(mean @ mean)
    return SamplingVariance(scheme=scheme, batch_size=batch_size, variance=(second - g2) / batch_size,
                            second_moment=second, mean_gradient_norm2=g2)
