"""The functional core: a model, a loss and data as a pure function of the selected parameters.

Every analyzer that evaluates a model does it through :class:`ModelFunction`, the one place where

* the selected parameters ``theta`` (:func:`theorylab._params.select_parameters`) become the only
  variables: ``torch.func.functional_call`` evaluates the model on views of them (or copies, when
  ``dtype`` or ``device`` differ from the model's), the other parameters and the buffers fixed, so the
  model itself is never written (buffers are copied per call: BatchNorm in train mode updates
  nothing);
* data is streamed batch by batch (:mod:`theorylab.batches`: tuple or dict batches, any re-iterable
  loader) and never materialised, and every loss, gradient or curvature product over ``data`` is the
  **sample-weighted mean** ``sum_b n_b X_b / sum_b n_b`` (:meth:`ModelFunction.data_mean`), summed
  over the ranks of ``process_group`` when the data is sharded;
* every pass over the data restarts the random-number generator from the state it had when the
  function was built, so dropout masks in train mode are the same in every evaluation: ``L(w + d)``
  and ``L(w)``, or the products of a curvature operator, see one fixed function;
* the model's output is turned into a tensor by an output adapter (:mod:`theorylab.adapters`:
  HuggingFace ``ModelOutput``, tuples, a user's selection);
* derivatives of order two, forward-mode derivatives and ``vmap`` run with the math back-end of
  scaled dot-product attention (the fused CPU/GPU kernels implement neither second derivatives nor
  batching rules); the caller's setting is restored afterwards;
* per-example gradients use ``torch.func.vmap``, with a loop over examples where vmap cannot batch a
  module (recurrent layers), chosen automatically with a one-line warning.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from theorylab._params import ParamSpec, parameter_aliases, select_parameters
from theorylab._state import Mode, check_mode, preserved
from theorylab.adapters import OutputFn, resolve_output
from theorylab.batches import Batch, Data, batch_size, iter_batches, move_batch, parts, slice_batch, split_groups

LossFn = Callable[[Tensor, Tensor], Tensor]
ParamDict = dict[str, Tensor]


def check_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
    return dtype


def check_device(device: Any) -> torch.device | None:
    """None (the model's device), or a device that exists here; a clear error otherwise."""
    if device is None:
        return None
    from theorylab.devices import resolve_device

    return resolve_device(device)


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Scaled dot-product attention on its math back-end (differentiable twice and forward-mode)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        yield


class ModelFunction:
    """``theta -> model(x; theta)`` and ``theta -> L(theta)`` for one model, loss and data set.

    ``loss_fn(outputs, targets)`` returns the batch mean (None for forward-only analyzers);
    ``data`` is one batch or a re-iterable of batches (None when inputs are passed per call);
    ``params`` selects the variables; ``mode`` ("eval", "train", "keep") is the train/eval mode of
    every evaluation; ``dtype``/``device`` where to compute (default: the first selected
    parameter's); ``process_group`` a ``torch.distributed`` group over which ``data`` is sharded;
    ``output`` an output adapter (:func:`theorylab.adapters.resolve_output`); ``variables=False``
    makes every parameter fixed (forward-only analyzers, which need no derivatives).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn | None = None, data: Data | None = None, *,
                 params: ParamSpec = None, mode: Mode = "eval", dtype: torch.dtype | None = None,
                 device: str | torch.device | None = None, process_group: Any = None,
                 output: OutputFn | None = None, variables: bool = True):
        check_mode(mode)
        check_dtype(dtype)
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError(f"loss_fn must be a function (outputs, targets) -> scalar, got {type(loss_fn).__name__}")
        selected = select_parameters(model, params) if variables else {}
        first = next(itertools.chain(selected.values(), model.parameters(), model.buffers()), None)
        self.model, self.loss_fn, self.data, self.mode = model, loss_fn, data, mode
        self.dtype = dtype or (first.dtype if first is not None and first.is_floating_point() else torch.float32)
        self.device = check_device(device) or (first.device if first is not None else torch.device("cpu"))
        self.process_group = process_group
        self.output = resolve_output(output)
        self.aliases = parameter_aliases(model)

        def view(t: Tensor) -> Tensor:  # a view when nothing changes: no copy of a large model
            t = t.detach()
            return t.to(device=self.device, dtype=self.dtype if t.is_floating_point() else None)

        self.names = list(selected)
        self.shapes = [p.shape for p in selected.values()]
        self.params: ParamDict = {n: view(p).requires_grad_(True) for n, p in selected.items()}
        self.frozen: ParamDict = {n: view(p) for n, p in model.named_parameters() if n not in selected}
        self.buffers: ParamDict = {n: view(b) for n, b in model.named_buffers()}
        self.size = sum(p.numel() for p in self.params.values())
        self._rng_state = self.rng_state()
        self._total: float | None = None
        self._vmap_works: bool | None = None
        self.single_batch = False
        if data is not None:
            with preserved(model, mode="keep"):  # a shuffling loader draws from the global RNG
                first = list(itertools.islice(iter_batches(data), 2))
            if not first or (len(first) == 1 and batch_size(first[0]) == 0):
                raise ValueError("data is empty: it holds no samples")
            self.single_batch = len(first) == 1

    # -- the guard every evaluation runs in -------------------------------------------------------
    @contextlib.contextmanager
    def evaluating(self, *, second_order: bool = False) -> Iterator[None]:
        """The model in ``mode``, restored on exit; math attention for second-order/forward-mode AD."""
        with preserved(self.model, mode=self.mode), (math_attention() if second_order else contextlib.nullcontext()):
            yield

    # -- evaluation -------------------------------------------------------------------------------
    def outputs(self, params: ParamDict, batch: Batch) -> Tensor:
        """Model outputs on ``batch`` at ``params`` (a subset of the selected names is fine)."""
        p = parts(batch)
        state = {**self.params, **self.frozen, **{n: b.clone() for n, b in self.buffers.items()}, **params}
        return self.output(functional_call(self.model, state, p.args, p.kwargs))

    @staticmethod
    def targets(batch: Batch) -> Tensor:
        targets = parts(batch).targets
        if targets is None:
            raise ValueError("the batch has no targets: pass (inputs, targets) or a dict batch with 'labels'")
        return targets

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """``loss_fn(outputs, targets)``, checked to be a scalar."""
        if self.loss_fn is None:
            raise ValueError("this analyzer needs a loss_fn")
        value = self.loss_fn(outputs, targets)
        if not isinstance(value, Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"loss_fn must return a scalar (the batch mean), got {shape}; use reduction='mean'")
        return value.reshape(())

    def batch_loss(self, params: ParamDict, batch: Batch) -> Tensor:
        return self.loss(self.outputs(params, batch), self.targets(batch))

    # -- data -------------------------------------------------------------------------------------
    def batches(self, data: Data | None = None) -> Iterator[Batch]:
        """The batches of ``data`` (default: the function's) on its device and dtype, RNG restarted."""
        data = self.data if data is None else data
        if data is None:
            raise ValueError("this analyzer needs data")
        self.restore_rng(self._rng_state)
        for batch in iter_batches(data):
            yield move_batch(batch, self.device, self.dtype)

    def data_mean(self, per_batch: Callable[[Batch], Tensor], data: Data | None = None) -> Tensor:
        """``sum_b n_b per_batch(b) / sum_b n_b`` over every batch (and every rank of the group)."""
        total: Tensor | None = None
        count = 0
        for batch in self.batches(data):
            n = batch_size(batch)
            value = per_batch(batch) * n
            total = value if total is None else total + value
            count += n
        if total is None or count == 0:
            raise ValueError("data is empty: it holds no samples")
        return self.sum_over_ranks(total) / self.count_over_ranks(count, data)

    def count_over_ranks(self, local: int, data: Data | None = None) -> float:
        """The number of samples over all ranks (cached for the function's own data)."""
        if data is None and self._total is not None:
            return self._total
        total = float(self.sum_over_ranks(torch.tensor([float(local)], dtype=torch.float64,
                                                        device=self.device)).item())
        if data is None:
            self._total = total
        return total

    @property
    def total_samples(self) -> float:
        """Samples in the data over all ranks (one counting pass the first time it is needed)."""
        if self._total is None:
            self.count_over_ranks(sum(batch_size(b) for b in iter_batches(self.data)))
        assert self._total is not None
        return self._total

    def sum_over_ranks(self, t: Tensor) -> Tensor:
        if self.process_group is not None:
            import torch.distributed as dist

            t = t.contiguous()  # collectives need a contiguous buffer
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.process_group)
        return t

    # -- loss and gradient over the data ----------------------------------------------------------
    def mean_loss(self, delta: list[Tensor] | None = None, data: Data | None = None) -> float:
        """The mean loss at ``theta + delta`` (``delta`` in the order of ``names``; None for 0)."""
        params = self.shifted(delta)
        with torch.no_grad(), self.evaluating():
            return float(self.data_mean(lambda b: self.batch_loss(params, b).to(torch.float64), data))

    def gradient(self, delta: list[Tensor] | None = None, data: Data | None = None) -> list[Tensor]:
        """The gradient of the mean loss at ``theta + delta``, one tensor per selected parameter."""
        return self.split(self._loss_and_gradient(delta, data)[1:])

    def loss_and_gradient(self, delta: list[Tensor] | None = None, data: Data | None = None
                          ) -> tuple[float, list[Tensor]]:
        """The mean loss at ``theta + delta`` and its gradient (as :meth:`gradient`), from one pass over the data."""
        both = self._loss_and_gradient(delta, data)
        return float(both[0]), self.split(both[1:])

    def _loss_and_gradient(self, delta: list[Tensor] | None, data: Data | None) -> Tensor:
        """``(P + 1,)``: the mean loss, then the flat gradient."""
        params = {n: p.detach().requires_grad_(True) for n, p in self.shifted(delta).items()}
        leaves = list(params.values())

        def batch_loss_and_gradient(batch: Batch) -> Tensor:
            loss = self.batch_loss(params, batch)
            grads = torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)
            return torch.cat([loss.detach().reshape(1).to(self.dtype), *(g.reshape(-1) for g in grads)])

        with torch.enable_grad(), self.evaluating():
            return self.data_mean(batch_loss_and_gradient, data)

    def shifted(self, delta: list[Tensor] | None) -> ParamDict:
        if delta is None:
            return self.params
        return {n: p.detach() + d for (n, p), d in zip(self.params.items(), delta)}

    # -- per-example and per-group gradients ------------------------------------------------------
    def per_example_gradients(self, batch: Batch) -> list[Tensor]:
        """``[(n, p_k)]``: the gradient of each example's loss, per selected parameter."""
        self.check_examples_independent()
        return self.group_gradients(batch, 1)

    def check_examples_independent(self) -> None:
        """A clear error where a per-example quantity is undefined: BatchNorm in train mode."""
        coupled = [name for name, m in self.model.named_modules()
                   if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
        if coupled:
            raise ValueError(f"BatchNorm in train mode couples the examples of a batch ({coupled[:3]}), so "
                             "per-example quantities are undefined; use mode='eval'")

    def group_gradients(self, batch: Batch, group: int) -> list[Tensor]:
        """``[(n / group, p_k)]``: the gradient of the mean loss of each run of ``group`` consecutive samples.

        One ``vmap`` over the groups; where vmap cannot batch the model, a loop over groups (with a
        one-line warning the first time).
        """
        n = batch_size(batch)
        if n % group:
            raise ValueError(f"{n} samples do not split into groups of {group}")
        if self._vmap_works is not False:
            try:
                grads = self._vmapped_gradients(batch, group)
                self._vmap_works = True
                return grads
            except (RuntimeError, NotImplementedError) as exc:
                if self._vmap_works:  # it worked on an earlier chunk: a real error
                    raise
                looped = self._looped_gradients(batch, group)  # raises here if the loss itself is broken
                warnings.warn(f"torch.func.vmap cannot batch {type(self.model).__name__} "
                              f"({str(exc).splitlines()[0][:120]}); gradients are computed one "
                              f"{'example' if group == 1 else 'batch'} at a time", RuntimeWarning, stacklevel=3)
                self._vmap_works = False
                return looped
        return self._looped_gradients(batch, group)

    def _vmapped_gradients(self, batch: Batch, group: int) -> list[Tensor]:
        params = {n: p.detach() for n, p in self.params.items()}
        with math_attention():  # the fused attention kernels have no batching rule: vmap would loop over them
            grads = vmap(grad(self.batch_loss), in_dims=(None, 0), randomness="different")(
                params, split_groups(batch, group))
        return [grads[n].reshape(batch_size(batch) // group, -1) for n in self.names]

    def _looped_gradients(self, batch: Batch, group: int) -> list[Tensor]:
        leaves = list(self.params.values())
        rows = []
        with torch.enable_grad():
            for start in range(0, batch_size(batch), group):
                piece = slice_batch(batch, slice(start, start + group))
                g = torch.autograd.grad(self.batch_loss(self.params, piece), leaves, allow_unused=True,
                                        materialize_grads=True)
                rows.append([t.reshape(-1) for t in g])
        return [torch.stack(column) for column in zip(*rows)]

    # -- flat vectors -----------------------------------------------------------------------------
    def split(self, flat: Tensor) -> list[Tensor]:
        """A flat ``(P,)`` vector as one tensor per selected parameter (views)."""
        return [piece.view(shape) for piece, shape in zip(flat.split([math.prod(s) for s in self.shapes]),
                                                          self.shapes)]

    def join(self, pieces: list[Tensor | None]) -> Tensor:
        """One flat vector from per-parameter tensors (None for zero)."""
        return torch.cat([(torch.zeros(s, dtype=self.dtype, device=self.device) if p is None else p).reshape(-1)
                          for p, s in zip(pieces, self.shapes)])

    # -- random-number generator ------------------------------------------------------------------
    def rng_state(self) -> tuple[Tensor, Tensor | None]:
        """The torch generators' state (CPU and this device's CUDA generator)."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def restore_rng(self, state: tuple[Tensor, Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)
