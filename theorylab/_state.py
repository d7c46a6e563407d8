"""Leave no trace: run analyzers on a model and restore everything they could have changed.

Analyzers evaluate the model functionally (:mod:`theorylab.functional`: ``torch.func.functional_call``
on their own views or copies of the parameters and buffers), so parameters and ``.grad`` are never
written.  What a forward pass or a careless caller can still change is restored by
:func:`preserved`: the train/eval flag of every submodule, the buffers (BatchNorm running
statistics, which a forward pass in train mode updates in place), the global random-number
generators (torch CPU and CUDA, numpy, Python), every parameter's ``.grad`` and
``requires_grad``, and the hooks registered on every submodule.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch
from torch import nn

Mode = Literal["eval", "train", "keep"]
MODES: tuple[str, ...] = ("eval", "train", "keep")

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_state_dict_hooks", "_load_state_dict_pre_hooks")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


@contextmanager
def preserved(model: nn.Module, *, mode: Mode = "eval") -> Iterator[nn.Module]:
    """Put ``model`` in ``mode`` ("keep" leaves it); restore everything listed above on exit."""
    check_mode(mode)
    flags = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    grads = [(p, p.grad, p.requires_grad) for p in model.parameters()]
    hooks = [(m, name, set(getattr(m, name))) for m in model.modules() for name in _HOOK_DICTS
             if hasattr(m, name)]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    np_rng = np.random.get_state()
    py_rng = random.getstate()
    try:
        if mode != "keep":
            model.train(mode == "train")
        yield model
    finally:
        for module, training in flags:
            module.training = training
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for p, grad, requires_grad in grads:
            p.grad = grad
            p.requires_grad_(requires_grad)
        for module, name, keys in hooks:
            registered = getattr(module, name)
            for key in [k for k in registered if k not in keys]:
                del registered[key]
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)
