"""Sharpness of the loss at the current parameters, and the stability ratios of gradient descent.

Every measure is taken on a declared subset of the data (``subset``: the first ``n`` samples of
one batch, or all of ``data``) with the model in a declared ``mode`` (default eval), on the
selected parameters ``w`` (``params``), and leaves the model exactly as it was.  With
``normalize_logits=True`` the loss sees ``f(x) / ||f(x)||_2`` instead of the outputs ``f(x)``:
cross-entropy sharpness is otherwise not invariant to rescaling the logits (Andriushchenko et al.
2023, Sec. 4).

* ``lambda_max``: top Hessian eigenvalue by Lanczos (:mod:`theorylab.curvature`).
* Stability ratios: ``eta lambda_max / 2`` (GD on a quadratic is stable iff it is <= 1; Cohen
  et al. 2021) and ``eta tr(H) / 2`` (the linear-stability bound for SGD at interpolation,
  Wu & Su 2023).
* SAM sharpness (Foret et al. 2021, Eq. 2 with the first-order maximiser of Eq. 3):
  ``L(w + rho g / ||g||) - L(w)``; m-sharpness averages it over disjoint batches of size ``m``,
  each with its own gradient (Foret et al. 2021, Sec. 4.1; Andriushchenko & Flammarion 2022).
* Worst-case adaptive sharpness (Kwon et al. 2021; Andriushchenko et al. 2023, Eq. 1):
  ``max_{||delta / c||_p <= rho} L(w + delta) - L(w)`` with ``c = |w| + offset`` (adaptive) or
  ``c = 1``, ``p`` in {2, inf}, by projected gradient ascent on ``u = delta / c``.
* Average-case sharpness (Andriushchenko et al. 2023, Eq. 2):
  ``E_{delta ~ N(0, rho^2 diag(c^2))} L(w + delta) - L(w)``, Monte Carlo with a standard error.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from theorylab._params import ParamSpec
from theorylab._state import Mode
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.batches import Data, batch_size, iter_batches, slice_batch
from theorylab.batches import subset as take_subset
from theorylab.functional import ModelFunction
from theorylab.plotting import axes_or_new
from theorylab.results import Result, result_class

Norm = Literal["l2", "linf"]
NORMS: tuple[str, ...] = ("l2", "linf")
LossFn = Callable[[Tensor, Tensor], Tensor]


@result_class
class Sharpness(Result):
    """One sharpness measurement: ``value`` (with ``stderr``, 0 for deterministic measures) and
    the loss ``loss`` at ``w`` on the ``num_samples`` samples it was measured on."""

    measure: str
    value: float
    stderr: float
    loss: float
    rho: float | None
    norm: str | None
    adaptive: bool
    mode: str
    num_samples: int
    num_evaluations: int

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.bar([self.measure], [self.value], yerr=[self.stderr])
        ax.set_ylabel("sharpness")
        return ax


@result_class
class StabilityRatios(Result):
    """``lambda_ratio = lr lambda_max / 2`` and ``trace_ratio = lr tr(H) / 2`` (trace by Hutchinson)."""

    lr: float
    lambda_max: float
    trace: float
    trace_stderr: float
    lambda_ratio: float
    trace_ratio: float
    trace_ratio_stderr: float

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.bar(["eta lambda_max / 2", "eta tr(H) / 2"], [self.lambda_ratio, self.trace_ratio],
               yerr=[0.0, self.trace_ratio_stderr])
        ax.axhline(1.0, color="C3", ls="--", label="stability threshold")
        ax.legend()
        return ax


# ---------------------------------------------------------------------------------------------
# Validation and the loss as a function of a parameter perturbation
# ---------------------------------------------------------------------------------------------
def _check_rho(rho: float) -> float:
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not (rho > 0 and math.isfinite(rho)):
        raise ValueError(f"rho must be a finite number > 0, got {rho!r}")
    return float(rho)


def _check_count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_offset(offset: float) -> float:
    if not (offset >= 0 and math.isfinite(offset)):
        raise ValueError(f"offset must be >= 0, got {offset!r}")
    return float(offset)


def _normalized(loss_fn: LossFn) -> LossFn:
    def loss(outputs: Tensor, targets: Tensor) -> Tensor:
        return loss_fn(outputs / outputs.norm(dim=-1, keepdim=True).clamp_min(1e-12), targets)

    return loss


def _objective(model: nn.Module, loss_fn: LossFn, data: Data, *, params: ParamSpec, mode: Mode,
               subset: int | None, normalize_logits: bool, dtype: torch.dtype | None,
               device: str | torch.device | None, output: OutputFn | None, process_group: Any) -> ModelFunction:
    """``delta -> L(w + delta)`` on the declared subset, every evaluation with the same dropout masks."""
    return ModelFunction(model, _normalized(loss_fn) if normalize_logits else loss_fn, take_subset(data, subset),
                         params=params, mode=mode, dtype=dtype, device=device, output=output,
                         process_group=process_group)


def _scale(fn: ModelFunction, adaptive: bool, offset: float) -> list[Tensor]:
    """``c = |w| + offset`` (adaptive) or ``c = 1``, per selected parameter."""
    return [w.detach().abs() + offset if adaptive else torch.ones_like(w) for w in fn.params.values()]


def _norm(tensors: list[Tensor]) -> float:
    return math.sqrt(sum(float((t.double() ** 2).sum()) for t in tensors))


def _result(measure: str, value: float, stderr: float, fn: ModelFunction, base_loss: float, evaluations: int, *,
            rho: float | None, norm: str | None, adaptive: bool, **meta: Any) -> Sharpness:
    return Sharpness(measure=measure, value=float(value), stderr=float(stderr), loss=float(base_loss), rho=rho,
                     norm=norm, adaptive=adaptive, mode=fn.mode, num_samples=int(fn.total_samples),
                     num_evaluations=evaluations, meta=meta)


# ---------------------------------------------------------------------------------------------
# Curvature-based measures
# ---------------------------------------------------------------------------------------------
@analyzer
def lambda_max(model: nn.Module, loss_fn: LossFn, data: Data, *, params: ParamSpec = None, mode: Mode = "eval",
               subset: int | None = None, normalize_logits: bool = False, tol: float = 1e-6, seed: int = 0,
               dtype: torch.dtype | None = None, device: str | torch.device | None = None,
               output: OutputFn | None = None, process_group: Any = None) -> Sharpness:
    """Top eigenvalue of the Hessian of the mean loss (Lanczos, Ritz residual <= ``tol |lambda|``)."""
    from theorylab.curvature import hessian, top_eigenvalues

    op = hessian(model, _normalized(loss_fn) if normalize_logits else loss_fn, take_subset(data, subset),
                 params=params, mode=mode, dtype=dtype, device=device, output=output, process_group=process_group)
    eig = top_eigenvalues(op, k=1, which="LA", tol=tol, seed=seed)
    fn = op.function
    return _result("lambda_max", float(eig.values[0]), 0.0, fn, fn.mean_loss(), eig.num_matvecs + 1, rho=None,
                   norm=None, adaptive=False, num_matvecs=eig.num_matvecs, residual=float(eig.residuals[0]))


@analyzer
def stability_ratios(model: nn.Module, loss_fn: LossFn, data: Data, *, lr: float, params: ParamSpec = None,
                     mode: Mode = "eval", subset: int | None = None, normalize_logits: bool = False,
                     tol: float = 1e-6, num_probes: int = 100, seed: int = 0, dtype: torch.dtype | None = None,
                     device: str | torch.device | None = None, output: OutputFn | None = None,
                     process_group: Any = None) -> StabilityRatios:
    """``lr lambda_max / 2`` and ``lr tr(H) / 2`` with ``tr(H)`` by Hutchinson (``num_probes`` probes)."""
    from theorylab.curvature import hessian, top_eigenvalues, trace

    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    data = take_subset(data, subset)
    op = hessian(model, _normalized(loss_fn) if normalize_logits else loss_fn, data, params=params, mode=mode,
                 dtype=dtype, device=device, output=output, process_group=process_group)
    eig = top_eigenvalues(op, k=1, which="LA", tol=tol, seed=seed)
    tr = trace(op, num_probes=num_probes, seed=seed)
    lam = float(eig.values[0])
    return StabilityRatios(lr=float(lr), lambda_max=lam, trace=tr.estimate, trace_stderr=tr.stderr,
                           lambda_ratio=lr * lam / 2, trace_ratio=lr * tr.estimate / 2,
                           trace_ratio_stderr=lr * tr.stderr / 2,
                           meta={"num_samples": op.num_samples, "num_matvecs": eig.num_matvecs + tr.num_matvecs})


# ---------------------------------------------------------------------------------------------
# Perturbation-based measures
# ---------------------------------------------------------------------------------------------
def _sam_gap(fn: ModelFunction, rho: float, data: Data) -> tuple[float, int]:
    """``L(w + rho g/||g||) - L(w)`` on ``data`` (0 where ``g = 0``) and the evaluations it took."""
    g = fn.gradient(data=data)
    norm = _norm(g)
    if norm == 0:
        return 0.0, 1
    return fn.mean_loss([rho * t / norm for t in g], data=data) - fn.mean_loss(data=data), 3


@analyzer
def sam_sharpness(model: nn.Module, loss_fn: LossFn, data: Data, *, rho: float, m: int | None = None,
                  params: ParamSpec = None, mode: Mode = "eval", subset: int | None = None,
                  normalize_logits: bool = False, dtype: torch.dtype | None = None,
                  device: str | torch.device | None = None, output: OutputFn | None = None,
                  process_group: Any = None) -> Sharpness:
    """First-order SAM sharpness ``L(w + rho g/||g||) - L(w)``; with ``m``, m-sharpness.

    m-sharpness splits the (single-batch) data into consecutive disjoint batches of ``m`` samples
    (an uneven last batch is kept), perturbs each with its own normalised gradient and returns the
    sample-weighted mean of the per-batch sharpness.  A batch with zero gradient has sharpness 0.
    In train mode every evaluation sees the same dropout masks, so ``rho -> 0`` gives 0.
    """
    rho = _check_rho(rho)
    options = dict(params=params, mode=mode, subset=subset, normalize_logits=normalize_logits, dtype=dtype,
                   device=device, output=output)
    fn = _objective(model, loss_fn, data, process_group=process_group, **options)
    base = fn.mean_loss()
    if m is None:
        gap, evaluations = _sam_gap(fn, rho, fn.data)
        return _result("sam", gap, 0.0, fn, base, evaluations + 1, rho=rho, norm="l2", adaptive=False)
    m = _check_count("m", m)
    batches = list(iter_batches(fn.data))
    if len(batches) != 1:
        raise ValueError("m-sharpness needs data as one batch")
    local = _objective(model, loss_fn, data, process_group=None, **options)  # each rank's batches are its own
    total, evaluations = 0.0, 1
    for start in range(0, batch_size(batches[0]), m):
        group = slice_batch(batches[0], slice(start, start + m))
        gap, used = _sam_gap(local, rho, group)
        total += gap * batch_size(group)
        evaluations += used
    total = float(fn.sum_over_ranks(torch.tensor([total], dtype=torch.float64, device=fn.device)).item())
    return _result(f"m_sharpness(m={m})", total / fn.total_samples, 0.0, fn, base,
                   evaluations, rho=rho, norm="l2", adaptive=False)


@analyzer
def adaptive_sharpness(model: nn.Module, loss_fn: LossFn, data: Data, *, rho: float, norm: Norm = "l2",
                       adaptive: bool = True, offset: float = 0.0, steps: int = 20, step_size: float | None = None,
                       params: ParamSpec = None, mode: Mode = "eval", subset: int | None = None,
                       normalize_logits: bool = False, seed: int = 0, dtype: torch.dtype | None = None,
                       device: str | torch.device | None = None, output: OutputFn | None = None,
                       process_group: Any = None) -> Sharpness:
    """Worst-case (adaptive) sharpness by projected gradient ascent on ``u = delta / c``.

    Starts from a random point of the ``rho``-ball (drawn on CPU from ``seed``: a Gaussian
    direction scaled to norm ``rho`` for l2, uniform in the cube for linf), then takes ``steps``
    ascent steps ``u <- P(u + a d)`` with ``d = grad_u / ||grad_u||_2`` (l2) or ``sign(grad_u)``
    (linf), ``grad_u = c * grad L(w + c u)``, and projection ``P`` onto the ball.  The step ``a``
    defaults to ``rho`` (l2: at a quadratic maximum this makes the iteration a shifted power
    iteration, converging like ``((1 + lambda_2 / lambda_1) / 2)^k``) or ``rho / 4`` (linf); returns the largest
    ``L(w + c u) - L(w)`` seen, a lower bound on the true maximum.
    """
    rho = _check_rho(rho)
    steps = _check_count("steps", steps, minimum=0)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    offset = _check_offset(offset)
    if step_size is not None and not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"step_size must be > 0, got {step_size!r}")
    alpha = step_size if step_size is not None else (rho if norm == "l2" else rho / 4)
    fn = _objective(model, loss_fn, data, params=params, mode=mode, subset=subset,
                    normalize_logits=normalize_logits, dtype=dtype, device=device, output=output,
                    process_group=process_group)
    c = _scale(fn, adaptive, offset)
    generator = torch.Generator().manual_seed(seed)
    if norm == "l2":
        u = [torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device) for w in c]
        u = [t * (rho / _norm(u)) for t in u]
    else:
        u = [((torch.rand(w.shape, generator=generator, dtype=w.dtype) * 2 - 1) * rho).to(w.device) for w in c]

    def project(v: list[Tensor]) -> list[Tensor]:
        if norm == "linf":
            return [t.clamp(-rho, rho) for t in v]
        size = _norm(v)
        return v if size <= rho else [t * (rho / size) for t in v]

    base = fn.mean_loss()
    best = fn.mean_loss([ci * ui for ci, ui in zip(c, u)]) - base
    evaluations = 2
    for _ in range(steps):
        grad_u = [ci * gi for ci, gi in zip(c, fn.gradient([ci * ui for ci, ui in zip(c, u)]))]
        evaluations += 1
        if norm == "l2":
            size = _norm(grad_u)
            if size == 0:
                break
            u = project([ui + alpha * gi / size for ui, gi in zip(u, grad_u)])
        else:
            u = project([ui + alpha * gi.sign() for ui, gi in zip(u, grad_u)])
        best = max(best, fn.mean_loss([ci * ui for ci, ui in zip(c, u)]) - base)
        evaluations += 1
    return _result(f"worst_case_{norm}", best, 0.0, fn, base, evaluations, rho=rho, norm=norm, adaptive=adaptive,
                   steps=steps, step_size=alpha, offset=offset)


@analyzer
def average_sharpness(model: nn.Module, loss_fn: LossFn, data: Data, *, rho: float, adaptive: bool = True,
                      offset: float = 0.0, num_draws: int = 100, params: ParamSpec = None, mode: Mode = "eval",
                      subset: int | None = None, normalize_logits: bool = False, seed: int = 0,
                      dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                      output: OutputFn | None = None, process_group: Any = None) -> Sharpness:
    """``E L(w + delta) - L(w)``, ``delta ~ N(0, rho^2 diag(c^2))``, by ``num_draws`` draws (with stderr).

    Draws are made on CPU from ``seed``; ``stderr`` is the sample standard deviation over
    ``sqrt(num_draws)``.
    """
    rho = _check_rho(rho)
    num_draws = _check_count("num_draws", num_draws, minimum=2)
    offset = _check_offset(offset)
    fn = _objective(model, loss_fn, data, params=params, mode=mode, subset=subset,
                    normalize_logits=normalize_logits, dtype=dtype, device=device, output=output,
                    process_group=process_group)
    c = _scale(fn, adaptive, offset)
    generator = torch.Generator().manual_seed(seed)
    base = fn.mean_loss()
    gaps = np.empty(num_draws)
    for i in range(num_draws):
        delta = [rho * ci * torch.randn(ci.shape, generator=generator, dtype=ci.dtype).to(ci.device) for ci in c]
        gaps[i] = fn.mean_loss(delta) - base
    return _result("average", float(gaps.mean()), float(gaps.std(ddof=1) / math.sqrt(num_draws)), fn, base,
                   num_draws + 1, rho=rho, norm="gaussian", adaptive=adaptive, offset=offset)


# ---------------------------------------------------------------------------------------------
# Training monitor
# ---------------------------------------------------------------------------------------------
def sharpness_monitor(loss_fn: LossFn, data: Data, *, every: int = 1, lr: float | None = None,
                      name: str = "sharpness", params: ParamSpec = None, mode: Mode = "eval",
                      tol: float = 1e-4) -> Any:
    """A training monitor: ``lambda_max`` of the loss on ``data`` every ``every`` steps.

    With ``lr`` it also reports ``stability_ratio = lr lambda_max / 2``.  Lanczos starts from a
    seed equal to the step, so runs are reproducible.
    """
    from theorylab.train import Monitor

    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")

    def measure(model: nn.Module, step: int) -> dict[str, float]:
        lam = lambda_max(model, loss_fn, data, params=params, mode=mode, tol=tol, seed=step).value
        return {"lambda_max": lam} if lr is None else {"lambda_max": lam, "stability_ratio": lr * lam / 2}

    return Monitor(name, measure, every=every, mode=mode)
