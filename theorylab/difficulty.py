"""Per-example difficulty scores: EL2N, GraNd and forgetting events.

* **EL2N** (Paul, Ganguli & Dziugaite 2021, "Deep learning on a data diet: finding important examples
  early in training", NeurIPS, Eq. 2): ``||softmax(f(x_i)) - e_{y_i}||_2``, the error vector's norm.
* **GraNd** (same paper, Eq. 1): ``||grad_theta loss(f(x_i), y_i)||_2``, the per-example gradient norm
  (over the selected parameters).
  Both are meant early in training and averaged over several initialisations (the paper's "expected"
  scores): average the results of several models.
* **Forgetting events** (Toneva, Sordoni, Combes, Trischler, Bengio & Gordon 2019, "An empirical study
  of example forgetting during deep neural network learning", ICLR, Sec. 2): the number of times an
  example goes from correctly to incorrectly classified between consecutive presentations; an example
  never learned counts as forgotten at every chance (``len(history)``), as the paper ranks it hardest.
"""
from __future__ import annotations

from collections.abc import Callable
import numpy as np
import torch
from torch import Tensor, nn

from theorylab._params import ParamSpec
from theorylab._state import Mode
from theorylab.adapters import OutputFn, check_classification
from theorylab.analyzer import analyzer
from theorylab.batches import Data
from theorylab.functional import ModelFunction
from theorylab.gradients import per_example_gradients

LossFn = Callable[[Tensor, Tensor], Tensor]


@analyzer
def el2n_scores(model: nn.Module, data: Data, *, mode: Mode = "eval", dtype: torch.dtype | None = None,
                device: str | torch.device | None = None, output: OutputFn | None = None) -> Tensor:
    """``(N,)`` EL2N scores ``||softmax(f(x_i)) - onehot(y_i)||_2`` of every example of ``data`` (class labels)."""
    fn = ModelFunction(model, None, data, mode=mode, dtype=dtype, device=device, output=output, variables=False)
    scores = []
    with torch.no_grad(), fn.evaluating():
        for batch in fn.batches():
            logits = fn.outputs({}, batch)
            labels = fn.targets(batch)
            check_classification(logits, labels, "EL2N")
            error = torch.softmax(logits, 1) - nn.functional.one_hot(labels.long(), logits.shape[1]).to(logits.dtype)
            scores.append(error.norm(dim=1).cpu())
    return torch.cat(scores)


@analyzer
def grand_scores(model: nn.Module, loss_fn: LossFn, data: Data, *, params: ParamSpec = None, chunk_size: int = 256,
                 mode: Mode = "eval", dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                 output: OutputFn | None = None) -> Tensor:
    """``(N,)`` GraNd scores: the norm of each example's loss gradient over the selected parameters."""
    grads = per_example_gradients(model, loss_fn, data, params=params, chunk_size=chunk_size, mode=mode, dtype=dtype,
                                  device=device, output=output)
    return grads.norm(dim=1).cpu()


@analyzer
def correct_predictions(model: nn.Module, data: Data, *, mode: Mode = "eval", dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, output: OutputFn | None = None) -> Tensor:
    """``(N,)`` booleans: is each example of ``data`` classified correctly (argmax of the outputs)?  One row of
    the history :func:`forgetting_events` counts from."""
    fn = ModelFunction(model, None, data, mode=mode, dtype=dtype, device=device, output=output, variables=False)
    rows = []
    with torch.no_grad(), fn.evaluating():
        for batch in fn.batches():
            logits, labels = fn.outputs({}, batch), fn.targets(batch)
            check_classification(logits, labels, "correct_predictions")
            rows.append((logits.argmax(1) == labels).cpu())
    return torch.cat(rows)


def forgetting_events(history: Tensor | np.ndarray) -> np.ndarray:
    """Forgetting events per example from a ``(T, N)`` history of correctness (module docstring)."""
    h = np.asarray(history.cpu() if isinstance(history, Tensor) else history).astype(bool)
    if h.ndim != 2 or h.shape[0] < 1:
        raise ValueError(f"history must be a (presentations, examples) array of booleans, got shape {h.shape}")
    events = (h[:-1] & ~h[1:]).sum(0)
    return np.where(h.any(0), events, h.shape[0]).astype(np.int64)


def hardest(scores: Tensor | np.ndarray, keep: float) -> Tensor:
    """Indices of the ``keep`` fraction of examples with the highest scores (ties in index order): the data
    kept when the easiest ``1 - keep`` are pruned (Paul et al. 2021)."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    s = torch.as_tensor(np.asarray(scores), dtype=torch.float64).reshape(-1)
    return torch.argsort(s, descending=True, stable=True)[:max(1, int(round(keep * len(s))))]
