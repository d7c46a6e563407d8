"""The geometry of what training changes: ranks of the weight updates and of the gradients, per layer, and
per-neuron update norms.

Jaiswal, Yin, Zhang, Wang et al. 2024 ("From GaLore to WeLore: how low-rank weights non-uniformly emerge
from low-rank gradients") relate the rank of a layer's gradient during training to the rank of its
accumulated update ``Delta W = W_t - W_0``: gradients of a linear layer over a batch are sums of
``n`` outer products ``delta_i h_i^T`` and stay low-rank where the back-propagated signals share few
directions; ``Delta W`` of gradient descent is a sum of such matrices.

* :func:`update_ranks`: effective and stable rank of ``W - W_0`` for every weight matrix;
* :func:`layer_gradient_ranks`: the same for each weight matrix's gradient of the mean loss;
* :func:`neuron_update_norms`: ``||(W - W_0)_i||`` for every output unit ``i`` (row) of each matrix.

Ranks are those of :func:`theorylab.representations.matrix_ranks`; matrices are selected by
:func:`theorylab.representations.weight_matrices` (biases and other vectors are listed as skipped).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from theorylab._state import Mode
from theorylab.analyzer import analyzer
from theorylab.batches import Data
from theorylab.functional import ModelFunction
from theorylab.representations import LayerRanks, matrix_ranks, weight_matrices

LossFn = Callable[[Tensor, Tensor], Tensor]


def _differences(model: nn.Module, initial: dict[str, Tensor],
                 params: str | Sequence[str] | None) -> tuple[dict[str, Tensor], dict[str, str]]:
    matrices, skipped = weight_matrices(model, params)
    missing = [n for n in matrices if n not in initial]
    if missing:
        raise ValueError(f"the initial snapshot has no parameters {missing}")
    out = {}
    for name, w in matrices.items():
        w0 = initial[name].detach().to(device=w.device, dtype=w.dtype)
        if w0.numel() != w.numel():
            raise ValueError(f"parameter {name!r} has {w.numel()} entries, its snapshot {w0.numel()}")
        out[name] = w - w0.reshape(w.shape)
    return out, skipped


def _ranks(kind: str, matrices: dict[str, Tensor], skipped: dict[str, str]) -> LayerRanks:
    eff, stable, dims, zero = [], [], [], {}
    for name, m in matrices.items():
        if not torch.any(m != 0):
            zero[name] = "zero matrix (the layer did not change)"
            continue
        r = matrix_ranks(m)
        eff.append(r.effective_rank), stable.append(r.stable_rank), dims.append(min(r.shape))
    names = [n for n in matrices if n not in zero]
    return LayerRanks(kind=kind, layers=names, effective_rank=np.array(eff), stable_rank=np.array(stable),
                      dimension=np.array(dims), skipped={**skipped, **zero}, meta={"dtype": torch.float64})


@analyzer
def update_ranks(model: nn.Module, initial: dict[str, Tensor], *,
                 params: str | Sequence[str] | None = None) -> LayerRanks:
    """Ranks of ``W - W_0`` for every weight matrix (``initial`` from :func:`theorylab.gradients.parameter_snapshot`);
    an unchanged matrix is listed in ``skipped``."""
    differences, skipped = _differences(model, initial, params)
    return _ranks("weight updates", differences, skipped)


@analyzer
def layer_gradient_ranks(model: nn.Module, loss_fn: LossFn, data: Data, *, params: str | Sequence[str] | None = None,
                         mode: Mode = "eval", dtype: torch.dtype | None = None,
                         device: str | torch.device | None = None) -> LayerRanks:
    """Ranks of each weight matrix's gradient of the mean loss over ``data`` (the gradient descent would step on)."""
    matrices, skipped = weight_matrices(model, params)
    fn = ModelFunction(model, loss_fn, data, params=list(matrices), mode=mode, dtype=dtype, device=device)
    gradients = {n: g.reshape(len(g), -1) for n, g in zip(fn.names, fn.gradient())}
    return _ranks("gradients", {n: gradients[n].reshape(matrices[n].shape) for n in matrices}, skipped)


@analyzer
def neuron_update_norms(model: nn.Module, initial: dict[str, Tensor], *,
                        params: str | Sequence[str] | None = None) -> dict[str, Tensor]:
    """``||(W - W_0)_i||_2`` for every row (output unit) ``i`` of every weight matrix."""
    differences, _ = _differences(model, initial, params)
    return {name: d.to(torch.float64).norm(dim=1).cpu() for name, d in differences.items()}
