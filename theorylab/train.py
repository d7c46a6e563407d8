"""A plain training loop with monitors, seeds, and checkpoint + resume.

``train`` runs full-batch gradient descent (``optimizer="gd"``), mini-batch SGD or Adam on a model
in place, over the batches analyzers take (tuple or dict batches, :mod:`theorylab.batches`) and with
the same output adapter (a HuggingFace ``ModelOutput`` trains on its ``logits``).  Monitors measure the model every ``k`` steps (the top Hessian eigenvalue, a kernel, a
collapse metric ...) inside :func:`theorylab._state.preserved`, so they never disturb training:
the train/eval modes, BatchNorm buffers, ``.grad`` and the global RNGs are what they were.  Batch
order comes from the loop's own generator, seeded by ``seed``; checkpoints store it with the
global torch RNG (dropout), so a resumed run continues exactly as the uninterrupted run would have.
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from theorylab._io import atomic_write_bytes
from theorylab._state import Mode, preserved
from theorylab.adapters import model_output
from theorylab.batches import (Batch, Data, batch_size as size_of, count_samples, iter_batches, move_batch, parts,
                               slice_batch)
from theorylab.devices import device_of
from theorylab.metrics import accuracy, mean_loss
from theorylab.plotting import axes_or_new
from theorylab.progress import bar as progress_bar
from theorylab.provenance import Stopwatch, make_meta
from theorylab.results import Result, result_class

Optimizer = Literal["gd", "sgd", "adam"]
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Monitor:
    """Measure ``fn(model, step)`` at step 0, every ``every`` steps and at the last step.

    ``fn`` returns a float or a dict of floats (stored as ``name`` or ``name.key``).  It runs with
    the model in ``mode`` inside :func:`preserved`, so it cannot disturb training.
    """

    name: str
    fn: Callable[[nn.Module, int], float | dict[str, float]]
    every: int = 1
    mode: Mode = "eval"

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"monitor {self.name!r}: every must be >= 1, got {self.every}")


def loss_monitor(loss_fn: LossFn, data: Data, *, name: str = "loss", every: int = 1) -> Monitor:
    """The sample-weighted mean loss over ``data`` (e.g. the full training set or a test set)."""
    return Monitor(name, lambda model, step: mean_loss(model, loss_fn, data), every)


def accuracy_monitor(data: Data, *, name: str = "accuracy", every: int = 1) -> Monitor:
    """Classification accuracy (argmax of the outputs) over ``data``."""
    return Monitor(name, lambda model, step: accuracy(model, data), every)


@result_class
class TrainResult(Result):
    """The history of a training run.

    ``loss[i]`` is the training loss at step ``steps[i]`` before the update (the mini-batch loss for
    SGD/Adam with mini-batches, the full-data loss for GD); ``monitors[key]`` was measured at
    ``monitor_steps[key]``.
    """

    steps: np.ndarray
    loss: np.ndarray
    lr: np.ndarray
    monitor_steps: dict[str, np.ndarray]
    monitors: dict[str, np.ndarray]
    optimizer: str
    batch_size: int | None
    diverged: bool
    final_step: int

    def plot(self, ax: Any = None, *, keys: Sequence[str] = ()) -> Any:
        """Training loss against step (log scale), with the monitors named in ``keys``."""
        ax = axes_or_new(ax)
        ax.plot(self.steps, self.loss, label="train loss")
        for key in keys:
            ax.plot(self.monitor_steps[key], self.monitors[key], label=key)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.legend()
        return ax


def _make_optimizer(kind: str, params: list[nn.Parameter], lr: float, momentum: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


class _BatchStream:
    """Mini-batches drawn without replacement, epoch after epoch, from the loop's own generator."""

    def __init__(self, data: Data, batch_size: int | None, generator: torch.Generator):
        batches = list(iter_batches(data))
        self.full = batches
        self.batch_size = batch_size
        self.generator = generator
        if batch_size is not None:
            if len(batches) != 1:
                raise ValueError("batch_size needs data as one batch; "
                                 "pass a loader's batches with batch_size=None to iterate them")
            self.batch = batches[0]
            self.size = size_of(self.batch)
            if not 1 <= batch_size <= self.size:
                raise ValueError(f"batch_size must be in [1, {self.size}], got {batch_size}")
        self.order: Tensor = torch.empty(0, dtype=torch.long)

    def next(self) -> list[Batch]:
        """The batches of the next step: all of them for full-batch GD, else one mini-batch."""
        if self.batch_size is None:
            return self.full
        if len(self.order) < self.batch_size:
            self.order = torch.randperm(self.size, generator=self.generator)
        idx, self.order = self.order[: self.batch_size], self.order[self.batch_size:]
        return [slice_batch(self.batch, idx)]


def train(model: nn.Module, loss_fn: LossFn, data: Data, *, steps: int, lr: float, optimizer: Optimizer = "gd",
          batch_size: int | None = None, momentum: float = 0.0, weight_decay: float = 0.0,
          lr_schedule: Callable[[int], float] | None = None, seed: int = 0, monitors: Sequence[Monitor] = (),
          checkpoint: str | Path | None = None, checkpoint_every: int = 100, stop_loss: float | None = None,
          device: torch.device | str | None = None, progress: bool | None = None) -> TrainResult:
    """Train ``model`` in place for ``steps`` updates and return the history.

    ``optimizer="gd"`` is full-batch gradient descent (``batch_size`` must be None): each step uses
    the gradient of the sample-weighted mean loss over all of ``data``.  ``"sgd"`` and ``"adam"``
    use mini-batches of ``batch_size`` drawn without replacement (reshuffled every epoch) when
    ``data`` is one batch, or full batches when ``batch_size`` is None.  The step size at step
    ``t`` is ``lr * lr_schedule(t)``.  Training stops early when the loss is below ``stop_loss``,
    or is not finite (``diverged``).  With ``checkpoint`` the state is saved atomically every
    ``checkpoint_every`` steps and at the end, and a later call with the same arguments resumes
    from it.
    """
    if optimizer not in ("gd", "sgd", "adam"):
        raise ValueError(f"optimizer must be 'gd', 'sgd' or 'adam', got {optimizer!r}")
    if optimizer == "gd" and batch_size is not None:
        raise ValueError("optimizer='gd' is full-batch: leave batch_size=None (or use optimizer='sgd')")
    if steps < 0 or not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"need steps >= 0 and a finite lr > 0, got steps={steps}, lr={lr}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if device is not None:
        model.to(device)
    device = device_of(model)
    count_samples(data)  # raises for empty data
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    opt = _make_optimizer(optimizer, params, lr, momentum, weight_decay)
    generator = torch.Generator().manual_seed(seed)
    stream = _BatchStream(data, batch_size, generator)
    history: dict[str, Any] = {"steps": [], "loss": [], "lr": [], "monitor_steps": {}, "monitors": {},
                               "monitored": {}}
    start, diverged = 0, False
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        start, history, diverged = _load_checkpoint(path, model, opt, generator, stream)

    def run_monitors(step: int, last: bool) -> None:
        for m in monitors:
            done = history["monitored"].setdefault(m.name, [])
            if (step % m.every and not last) or step in done:
                continue
            done.append(step)
            with preserved(model, mode=m.mode):
                value = m.fn(model, step)
            for key, v in (value.items() if isinstance(value, dict) else [(None, value)]):
                name = m.name if key is None else f"{m.name}.{key}"
                history["monitor_steps"].setdefault(name, []).append(step)
                history["monitors"].setdefault(name, []).append(float(v))

    with Stopwatch() as watch, progress_bar(steps, initial=start, desc="train", unit="step", enabled=progress) as bar:
        step = start
        while step < steps and not diverged:
            run_monitors(step, last=False)
            step_lr = lr * (lr_schedule(step) if lr_schedule is not None else 1.0)
            for group in opt.param_groups:
                group["lr"] = step_lr
            opt.zero_grad(set_to_none=True)
            batches = stream.next()
            n_step = sum(size_of(b) for b in batches) if batch_size is None else batch_size
            loss_value = 0.0
            for batch in batches:
                p = parts(move_batch(batch, device))
                loss = loss_fn(model_output(model(*p.args, **p.kwargs)), p.targets)
                if loss.dim() != 0:
                    raise ValueError(f"loss_fn must return a scalar (the batch mean), got shape {tuple(loss.shape)}")
                weight = size_of(batch) / n_step
                (loss * weight).backward()
                loss_value += float(loss.detach()) * weight
            history["steps"].append(step)
            history["loss"].append(loss_value)
            history["lr"].append(step_lr)
            if not math.isfinite(loss_value):
                diverged = True
                break
            opt.step()
            step += 1
            bar.update(1)
            bar.set_postfix_str(f"loss {loss_value:.4g}", refresh=False)
            if stop_loss is not None and loss_value < stop_loss:
                break
            if path is not None and step % checkpoint_every == 0:
                _save_checkpoint(path, step, history, diverged, model, opt, generator, stream)
        run_monitors(step, last=True)
        if path is not None:
            _save_checkpoint(path, step, history, diverged, model, opt, generator, stream)
    opt.zero_grad(set_to_none=True)
    return TrainResult(
        steps=np.asarray(history["steps"], dtype=np.int64), loss=np.asarray(history["loss"]),
        lr=np.asarray(history["lr"]),
        monitor_steps={k: np.asarray(v, dtype=np.int64) for k, v in history["monitor_steps"].items()},
        monitors={k: np.asarray(v) for k, v in history["monitors"].items()},
        optimizer=optimizer, batch_size=batch_size, diverged=diverged, final_step=step,
        meta=make_meta(seed=seed, lr=lr, steps=steps, wall_time_s=round(watch.seconds, 3), device=device))


def _save_checkpoint(path: Path, step: int, history: dict[str, Any], diverged: bool, model: nn.Module,
                     opt: torch.optim.Optimizer, generator: torch.Generator, stream: _BatchStream) -> None:
    buf = io.BytesIO()
    torch.save({"step": step, "history": history, "diverged": diverged, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "generator": generator.get_state(), "order": stream.order,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
                "meta": make_meta()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, generator: torch.Generator,
                     stream: _BatchStream) -> tuple[int, dict[str, Any], bool]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except Exception as exc:  # noqa: BLE001 -- any unreadable checkpoint gets one clear message
        raise ValueError(f"checkpoint {path} cannot be resumed ({exc}); delete it to start afresh") from exc
    generator.set_state(state["generator"])
    stream.order = state["order"]
    torch.set_rng_state(state["torch_rng"])  # dropout masks continue as in the uninterrupted run
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["step"], state["history"], state["diverged"]
