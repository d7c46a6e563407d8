"""Leave no trace: run analyzers on a model and restore everything they could have changed.

Analyzers evaluate the model functionally (``torch.func.functional_call`` with their own copies of
parameters and buffers), so parameters, buffers and ``.grad`` are never written.  What a forward
pass can still change is restored by :func:`preserved`: the train/eval flag of every submodule and
the global random-number generators (torch CPU and CUDA, numpy, Python), and the buffers
(BatchNorm running statistics), which a forward pass in train mode updates in place.
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


@contextmanager
def preserved(model: nn.Module, *, mode: Mode = "eval") -> Iterator[nn.Module]:
    """Put ``model`` in ``mode`` ("keep" leaves it); restore modes, buffers and global RNGs on exit."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    flags = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
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
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)
