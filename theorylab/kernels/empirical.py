"""The empirical neural tangent kernel of a finite network, exact, in blocks under a memory budget.

For a network ``f(x; theta)`` with ``O`` outputs and Jacobian ``J(x) = df(x)/dtheta`` (``O x P``),
the empirical NTK is (Jacot, Gabriel & Hongler 2018, Eq. 3)

    Theta(x, x')_{ij} = sum_p J(x)_{ip} J(x')_{jp}          (an O x O block per pair of inputs).

:func:`empirical_ntk` returns its trace over outputs, ``sum_i Theta_ii`` (``reduction="sum"``, the
PyTorch tutorial's convention) or ``sum_i Theta_ii / O`` (``reduction="mean"``, neural-tangents'
convention and the per-output kernel of the infinite-width limit, where ``Theta_ij = delta_ij
Theta``), as an (N1, N2) matrix; :func:`empirical_ntk_blocks` returns every block, (N1, N2, O, O).

Methods, all exact and cross-checked in the tests (Novak, Sohl-Dickstein & Schoenholz 2022, "Fast
finite width neural tangent kernel"):

* ``"auto"``: each linear or convolutional layer whose parameters are used once takes the layer
  path, the product of its input Gram and output-gradient Gram (:mod:`theorylab.kernels.ntk_features`);
  every other parameter (a layer applied twice, tied embeddings, normalisation, attention, recurrent
  weights) the Jacobian path; the forward pass itself decides (:mod:`theorylab.kernels.ntk_paths`),
  and ``meta["paths"]`` says which path each parameter took, ``meta["refused"]`` why a layer could
  not take the layer path;
* ``"jacobian"``: per-example Jacobians of every parameter by ``torch.func.vmap(jacrev)`` (one example
  at a time where vmap cannot batch the model, with a warning), then one contraction;
* ``"ntk_vp"``: NTK-vector products ``J(x') (J(x)^T v)`` (a VJP, then a JVP) for every basis vector ``v``,
  never holding a Jacobian.

Inputs are processed in blocks; the block size follows from ``memory_budget`` (bytes for the
features of the blocks alive at once -- the Jacobians, or a layer's inputs and output gradients --
and for a tile's temporaries), and when the features of all inputs fit in half the budget they are
computed once and reused for every tile.  The kernel itself (N1 N2 numbers, or N1 N2 O^2) comes on
top.  The paths are decided by a probe forward pass on up to 8 inputs.

Model adapters (:mod:`theorylab.adapters`): the inputs are a tensor, a tuple of tensors (positional
arguments) or a dict of tensors (keyword arguments, e.g. HuggingFace ``input_ids`` and
``attention_mask``); the output is what :func:`theorylab.adapters.model_output` makes of the model's
return value, or ``output(...)``: :func:`theorylab.adapters.last_token` makes a language model's NTK
``V`` outputs per sequence.  Tied parameters (GPT-2's ``lm_head.weight`` is ``transformer.wte.weight``)
are one parameter used twice: the kernel includes both uses.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from theorylab._params import ParamSpec, describe
from theorylab._state import Mode
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.batches import TARGET_KEY, move_batch, slice_batch
from theorylab.functional import ModelFunction, math_attention
from theorylab.kernels.ntk_features import Feature, contract
from theorylab.kernels.ntk_paths import PROBE_EXAMPLES, BlockFeatures, Inputs, num_examples
from theorylab.plotting import axes_or_new
from theorylab.progress import bar
from theorylab.results import Result, result_class

Reduction = Literal["mean", "sum"]
Method = Literal["auto", "jacobian", "ntk_vp"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum")
METHODS: tuple[str, ...] = ("auto", "jacobian", "ntk_vp")

#: the default memory budget for features: 1 GiB
DEFAULT_BUDGET = 2 ** 30


@result_class
class EmpiricalNTK(Result):
    """The empirical NTK between two input sets, reduced over the ``num_outputs`` outputs.

    ``kernel[n, m] = sum_i Theta(x1_n, x2_m)_ii`` for ``reduction="sum"``, divided by ``num_outputs``
    for ``reduction="mean"``; shape (N1, N2).
    """

    kernel: np.ndarray
    reduction: str
    num_outputs: int

    def plot(self, ax: Any = None, *, kind: Literal["heatmap", "spectrum"] = "heatmap") -> Any:
        """The kernel as a heatmap, or (``kind="spectrum"``, square kernels) its eigenvalues."""
        if kind == "spectrum":
            from theorylab.kernels.diagnostics import kernel_spectrum

            return kernel_spectrum(self.kernel).plot(ax)
        if kind != "heatmap":
            raise ValueError(f"kind must be 'heatmap' or 'spectrum', got {kind!r}")
        return _heatmap(self.kernel, ax, f"empirical NTK ({self.reduction} over {self.num_outputs} outputs)")


@result_class
class NTKBlocks(Result):
    """Every output block of the empirical NTK: ``blocks[n, m, i, j] = Theta(x1_n, x2_m)_ij``, (N1, N2, O, O)."""

    blocks: np.ndarray

    def plot(self, ax: Any = None) -> Any:
        """The (N1 O, N2 O) matrix as a heatmap (rows: input, then output)."""
        n1, n2, n_out, _ = self.blocks.shape
        matrix = self.blocks.transpose(0, 2, 1, 3).reshape(n1 * n_out, n2 * n_out)
        return _heatmap(matrix, ax, f"empirical NTK blocks ({n_out} outputs)")


#: what the kernel functions (alignment, distance, regression, ...) accept as a kernel
KernelLike = Tensor | np.ndarray | EmpiricalNTK | NTKBlocks


def kernel_tensor(kernel: KernelLike) -> Tensor:
    """A kernel as a tensor: an :class:`EmpiricalNTK` (its ``kernel``), :class:`NTKBlocks` (its ``blocks``),
    an array or a tensor."""
    if isinstance(kernel, EmpiricalNTK):
        return torch.from_numpy(kernel.kernel)
    if isinstance(kernel, NTKBlocks):
        return torch.from_numpy(kernel.blocks)
    return torch.as_tensor(kernel)


def _heatmap(matrix: np.ndarray, ax: Any, title: str) -> Any:
    ax = axes_or_new(ax)
    image = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
    ax.figure.colorbar(image, ax=ax)
    ax.set(title=title, xlabel="x2", ylabel="x1")
    return ax


@analyzer
def empirical_ntk(model: nn.Module, x1: Inputs, x2: Inputs | None = None, *, params: ParamSpec = None,
                  reduction: Reduction = "mean", method: Method = "auto", memory_budget: int = DEFAULT_BUDGET,
                  block_size: int | None = None, mode: Mode = "eval", dtype: torch.dtype | None = None,
                  device: str | torch.device | None = None, output: OutputFn | None = None,
                  process_group: Any = None, progress: bool | None = None) -> EmpiricalNTK:
    """The exact empirical NTK between the inputs ``x1`` (N1 examples) and ``x2`` (N2), reduced over outputs.

    ``x2=None`` means ``x2 = x1`` (only the upper block triangle is computed).  ``params`` selects
    the parameters of the Jacobian (the others stay fixed).  ``reduction``: "mean" or "sum" over the
    outputs (module docstring); for the per-output blocks use :func:`empirical_ntk_blocks`.
    ``method``, ``memory_budget`` (bytes) and ``block_size`` (examples per block; None: from the
    budget) as in the module docstring.  The model is evaluated in ``mode`` (default eval: BatchNorm
    uses its running statistics and dropout is off, so examples are independent and the network is
    a deterministic function), in ``dtype`` on ``device`` (default: the parameters'), and left
    exactly as it was.

    With a ``torch.distributed`` ``process_group``, ``x1`` (and ``x2``) are this rank's shards of the
    inputs: the shards of ``x2`` are gathered, each rank computes the rows of its own ``x1`` shard,
    and the rows are gathered, so every rank returns the full kernel over the inputs of all ranks in
    rank order (the same numbers as one process over the concatenated inputs).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS} (the trace over outputs, or its mean); "
                         f"for the per-output blocks use empirical_ntk_blocks, got {reduction!r}")
    kernel, meta = _kernel(model, x1, x2, blocks=False, params=params, method=method, memory_budget=memory_budget,
                           block_size=block_size, mode=mode, dtype=dtype, device=device, output=output,
                           process_group=process_group, progress=progress)
    num_outputs = meta.pop("num_outputs")
    if reduction == "mean":
        kernel = kernel / num_outputs
    return EmpiricalNTK(kernel=_numpy(kernel), reduction=reduction, num_outputs=num_outputs, meta=meta)


@analyzer
def empirical_ntk_blocks(model: nn.Module, x1: Inputs, x2: Inputs | None = None, *, params: ParamSpec = None,
                         method: Method = "auto", memory_budget: int = DEFAULT_BUDGET, block_size: int | None = None,
                         mode: Mode = "eval", dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                         output: OutputFn | None = None, process_group: Any = None,
                         progress: bool | None = None) -> NTKBlocks:
    """Every (O, O) block of the exact empirical NTK, (N1, N2, O, O); options as in :func:`empirical_ntk`.

    Memory is ``N1 N2 O^2`` numbers: for many outputs, choose them with ``output=`` (a projection,
    the last token) or use :func:`empirical_ntk`.
    """
    kernel, meta = _kernel(model, x1, x2, blocks=True, params=params, method=method, memory_budget=memory_budget,
                           block_size=block_size, mode=mode, dtype=dtype, device=device, output=output,
                           process_group=process_group, progress=progress)
    meta.pop("num_outputs")
    return NTKBlocks(blocks=_numpy(kernel), meta=meta)


def _numpy(kernel: Tensor) -> np.ndarray:
    if kernel.dtype not in (torch.float32, torch.float64):  # numpy has no bfloat16
        kernel = kernel.float()
    return kernel.detach().cpu().numpy()


# -- checks ----------------------------------------------------------------------------------------
def _check_options(method: Any, memory_budget: Any, block_size: Any) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < 1:
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"block_size must be a positive integer or None, got {block_size!r}")


def _check_inputs(name: str, x: Any) -> Inputs:
    """A tensor, a tuple of tensors or a dict of tensors (a ``labels`` entry is dropped), one leading size."""
    if isinstance(x, Mapping):
        x = {k: v for k, v in x.items() if k != TARGET_KEY}
        tensors = list(x.values())
    elif isinstance(x, (tuple, list)):
        x = tuple(x)
        tensors = list(x)
    else:
        tensors = [x]
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise ValueError(f"{name} must be a tensor of inputs, a tuple of tensors or a dict of tensors, "
                         f"got {type(x).__name__}")
    sizes = {t.shape[0] if t.dim() else None for t in tensors}
    if len(sizes) != 1 or None in sizes or 0 in sizes:
        raise ValueError(f"{name} must have a leading batch dimension with at least one example, shared by all "
                         f"its tensors, got shapes {[tuple(t.shape) for t in tensors]}")
    return x


def _example_shapes(x: Inputs) -> Any:
    if isinstance(x, Tensor):
        return tuple(x.shape[1:])
    if isinstance(x, dict):
        return {k: tuple(v.shape[1:]) for k, v in x.items()}
    return [tuple(t.shape[1:]) for t in x]


def _check_deterministic(model: nn.Module) -> None:
    active = [name for name, m in model.named_modules()
              if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0]
    if active:
        raise ValueError(f"dropout in train mode ({active[:3]}) makes the network random, so its NTK is undefined; "
                         "use mode='eval'")


# -- the kernel, tile by tile ----------------------------------------------------------------------
def _kernel(model: nn.Module, x1: Any, x2: Any, *, blocks: bool, params: ParamSpec, method: str, memory_budget: int,
            block_size: int | None, mode: Mode, dtype: torch.dtype | None, device: Any, output: OutputFn | None,
            process_group: Any, progress: bool | None) -> tuple[Tensor, dict[str, Any]]:
    """The kernel (N1, N2) (trace over outputs, ``blocks=False``) or (N1, N2, O, O), and the meta."""
    _check_options(method, memory_budget, block_size)
    x1 = _check_inputs("x1", x1)
    symmetric = x2 is None and process_group is None
    x2 = x1 if x2 is None else _check_inputs("x2", x2)
    if _example_shapes(x1) != _example_shapes(x2):
        raise ValueError(f"x1 and x2 must have the same per-example shape, got {_example_shapes(x1)} and "
                         f"{_example_shapes(x2)}")
    fn = ModelFunction(model, params=params, mode=mode, dtype=dtype, device=device, output=output)
    # math attention: the fused kernels have no batching rules for the vmapped derivatives taken here
    with fn.evaluating(), math_attention():
        fn.check_examples_independent()
        _check_deterministic(model)
        x1, x2 = move_batch(x1, fn.device, fn.dtype), move_batch(x2, fn.device, fn.dtype)
        if process_group is not None:
            x2 = _all_gather_rows(x2, process_group)
        n1, n2 = num_examples(x1), num_examples(x2)
        probe, n_probe = (x1, n1) if n1 >= min(n2, 2) else (x2, n2)
        n_probe = min(n_probe, PROBE_EXAMPLES)
        features = BlockFeatures(fn, slice_batch(probe, slice(0, n_probe)), n_probe, method=method, blocks=blocks)
        n_distinct = n1 if symmetric else n1 + n2
        cached = not features.ntk_vp and n_distinct * features.bytes_per_example <= memory_budget // 2
        size = block_size or _block_size(features, memory_budget)
        kernel = _tiles(features, x1, n1, x2, n2, size, symmetric=symmetric, blocks=blocks, cached=cached,
                        progress=progress)
        if process_group is not None:
            kernel = _all_gather_rows(kernel, process_group)
    meta = {"method": method, "block_size": size, "memory_budget": memory_budget, "features_cached": cached,
            "paths": {describe(name, fn.aliases): path for name, path in features.paths.items()},
            "refused": {describe(name, fn.aliases): reason for name, reason in features.refused.items()},
            "num_outputs": features.num_outputs}
    return kernel, meta


def _block_size(features: BlockFeatures, budget: int) -> int:
    """Examples per block: four blocks of features (a left and a right one, and as much again while one
    is computed) and a tile's temporaries each within the budget."""
    by_features = budget // (4 * max(features.bytes_per_example, 1))
    by_tile = math.isqrt(budget // (4 * features.bytes_per_pair))
    return max(1, min(by_features, by_tile))


class _Side:
    """One side of the kernel: its blocks of inputs, and their features computed once (``cached``) or on demand."""

    def __init__(self, features: BlockFeatures, x: Inputs, n: int, size: int, *, cached: bool):
        self.slices = [slice(s, min(s + size, n)) for s in range(0, n, size)]
        self.inputs = [slice_batch(x, s) for s in self.slices]
        self._features = features
        self._cache = [self.compute(i) for i in range(len(self.slices))] if cached else None

    def size(self, i: int) -> int:
        return self.slices[i].stop - self.slices[i].start

    def compute(self, i: int) -> list[Feature]:
        return self._features(self.inputs[i], self.size(i))

    def features(self, i: int) -> list[Feature]:
        return self.compute(i) if self._cache is None else self._cache[i]


def _tiles(features: BlockFeatures, x1: Inputs, n1: int, x2: Inputs, n2: int, size: int, *, symmetric: bool,
           blocks: bool, cached: bool, progress: bool | None) -> Tensor:
    """Fill the kernel tile by tile; for ``x2 = x1`` compute the upper tiles and mirror them."""
    left = _Side(features, x1, n1, size, cached=cached)
    right = left if symmetric else _Side(features, x2, n2, size, cached=cached)
    n_out = features.num_outputs
    kernel = torch.empty((n1, n2) + ((n_out, n_out) if blocks else ()), dtype=features.fn.dtype,
                         device=features.fn.device)
    total = len(left.slices) * (len(left.slices) + 1) // 2 if symmetric else len(left.slices) * len(right.slices)
    with bar(total, desc="empirical NTK", unit="tile", enabled=progress) as progress_bar:
        for i, rows in enumerate(left.slices):
            row_features = None if features.ntk_vp else left.features(i)
            for j, cols in enumerate(right.slices):
                if symmetric and j < i:
                    continue
                if features.ntk_vp:
                    tile = features.ntk_vp_tile(left.inputs[i], left.size(i), right.inputs[j], right.size(j))
                    tile = tile if blocks else tile.diagonal(dim1=2, dim2=3).sum(-1)
                else:
                    column_features = row_features if symmetric and i == j else right.features(j)
                    tile = contract(row_features, column_features, blocks=blocks)
                kernel[rows, cols] = tile
                if symmetric and j > i:  # Theta(x_m, x_n)_{ji} = Theta(x_n, x_m)_{ij}
                    kernel[cols, rows] = tile.permute(1, 0, 3, 2) if blocks else tile.T
                progress_bar.update(1)
    return kernel


def _all_gather_rows(x: Inputs, group: Any) -> Inputs:
    """Concatenate along dim 0 the inputs (or kernel rows) of all ranks (their first dimensions may differ)."""
    if isinstance(x, dict):
        return {k: _all_gather_tensor(v, group) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_all_gather_tensor(t, group) for t in x)
    return _all_gather_tensor(x, group)


def _all_gather_tensor(t: Tensor, group: Any) -> Tensor:
    import torch.distributed as dist

    world = dist.get_world_size(group)
    sizes = [torch.zeros(1, dtype=torch.long, device=t.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([t.shape[0]], device=t.device), group=group)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    pieces = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(pieces, padded.contiguous(), group=group)
    return torch.cat([piece[: int(n.item())] for piece, n in zip(pieces, sizes)])
