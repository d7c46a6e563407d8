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
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from theorylab._params import ParamSpec, select_parameters
from theorylab._state import MODES, Mode, preserved
from theorylab.batches import Data, batch_size, count_samples, iter_batches, move_batch
from theorylab.plotting import axes_or_new
from theorylab.provenance import Stopwatch, make_meta
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


def _subset(data: Data, subset: int | None) -> Data:
    """The first ``subset`` samples of one batch (or ``data`` itself for None)."""
    if subset is None:
        count_samples(data)
        return data
    subset = _check_count("subset", subset)
    batches = list(iter_batches(data))
    if len(batches) != 1:
        raise ValueError("subset needs data as one (inputs, targets) batch")
    x, y = batches[0]
    if subset > batch_size(batches[0]):
        raise ValueError(f"subset={subset} exceeds the {batch_size(batches[0])} samples of data")
    x = tuple(t[:subset] for t in x) if isinstance(x, (tuple, list)) else x[:subset]
    return x, y[:subset]


def _normalized(loss_fn: LossFn) -> LossFn:
    def loss(outputs: Tensor, targets: Tensor) -> Tensor:
        return loss_fn(outputs / outputs.norm(dim=-1, keepdim=True).clamp_min(1e-12), targets)

    return loss


class _Objective:
    """``L(w + delta)`` and its gradient on fixed data, evaluated functionally (the model is not written)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Data, params: ParamSpec,
                 normalize_logits: bool):
        self.model = model
        self.loss_fn = _normalized(loss_fn) if normalize_logits else loss_fn
        selected = select_parameters(model, params)
        self.names = list(selected)
        self.w = [p.detach().clone() for p in selected.values()]
        self.fixed = {n: p.detach() for n, p in model.named_parameters() if n not in selected}
        self.fixed.update(dict(model.named_buffers()))
        device = self.w[0].device
        self.batches = [move_batch(b, device) for b in iter_batches(data)]
        self.n = sum(batch_size(b) for b in self.batches)
        self.evaluations = 0

    def _batch_loss(self, theta: list[Tensor], batch) -> Tensor:
        params = {**self.fixed, **dict(zip(self.names, theta))}
        x, y = batch
        out = functional_call(self.model, params, (x,) if isinstance(x, Tensor) else tuple(x))
        loss = self.loss_fn(out, y)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar (the batch mean), got shape {tuple(loss.shape)}")
        return loss

    def loss(self, delta: list[Tensor] | None = None, batches: Sequence | None = None) -> float:
        batches = self.batches if batches is None else batches
        theta = self.w if delta is None else [w + d for w, d in zip(self.w, delta)]
        self.evaluations += 1
        with torch.no_grad():
            total = sum(float(self._batch_loss(theta, b)) * batch_size(b) for b in batches)
        return total / sum(batch_size(b) for b in batches)

    def gradient(self, delta: list[Tensor] | None = None, batches: Sequence | None = None) -> list[Tensor]:
        batches = self.batches if batches is None else batches
        theta = [w.clone() if delta is None else w + d for w, d in zip(self.w, delta or self.w)]
        theta = [t.detach().requires_grad_(True) for t in theta]
        n = sum(batch_size(b) for b in batches)
        grads = [torch.zeros_like(w) for w in self.w]
        self.evaluations += 1
        with torch.enable_grad():
            for b in batches:
                g = torch.autograd.grad(self._batch_loss(theta, b) * (batch_size(b) / n), theta)
                grads = [a + c for a, c in zip(grads, g)]
        return grads

    def scale(self, adaptive: bool, offset: float) -> list[Tensor]:
        """``c = |w| + offset`` (adaptive) or ``c = 1``."""
        return [w.abs() + offset if adaptive else torch.ones_like(w) for w in self.w]


def _norm(tensors: list[Tensor]) -> float:
    return math.sqrt(sum(float((t.double() ** 2).sum()) for t in tensors))


def _prepare(model, loss_fn, data, params, mode, subset, normalize_logits) -> tuple[_Objective, Data]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    data = _subset(data, subset)
    return _Objective(model, loss_fn, data, params, normalize_logits), data


def _result(measure: str, value: float, stderr: float, obj: _Objective, base_loss: float, *, rho, norm,
            adaptive, mode, watch: Stopwatch, seed: int | None = None, **extra: Any) -> Sharpness:
    return Sharpness(measure=measure, value=float(value), stderr=float(stderr), loss=float(base_loss), rho=rho,
                     norm=norm, adaptive=adaptive, mode=mode, num_samples=obj.n,
                     num_evaluations=obj.evaluations,
                     meta=make_meta(seed=seed, dtype=obj.w[0].dtype, device=obj.w[0].device,
                                    wall_time_s=round(watch.seconds, 4), **extra))


# ---------------------------------------------------------------------------------------------
# Curvature-based measures
# ---------------------------------------------------------------------------------------------
def lambda_max(model: nn.Module, loss_fn: LossFn, data: Data, *, params: ParamSpec = None, mode: Mode = "eval",
               subset: int | None = None, normalize_logits: bool = False, tol: float = 1e-6,
               seed: int = 0) -> Sharpness:
    """Top eigenvalue of the Hessian of the mean loss (Lanczos, Ritz residual <= ``tol |lambda|``)."""
    from theorylab.curvature import hessian, top_eigenvalues

    with Stopwatch() as watch:
        obj, data = _prepare(model, loss_fn, data, params, mode, subset, normalize_logits)
        with preserved(model, mode=mode):
            base = obj.loss()
            op = hessian(model, obj.loss_fn, data, params=params, mode=mode)
            eig = top_eigenvalues(op, k=1, which="LA", tol=tol, seed=seed)
    obj.evaluations += eig.num_matvecs
    return _result("lambda_max", float(eig.values[0]), 0.0, obj, base, rho=None, norm=None, adaptive=False,
                   mode=mode, watch=watch, seed=seed, num_matvecs=eig.num_matvecs,
                   residual=float(eig.residuals[0]))


def stability_ratios(model: nn.Module, loss_fn: LossFn, data: Data, *, lr: float, params: ParamSpec = None,
                     mode: Mode = "eval", subset: int | None = None, normalize_logits: bool = False,
                     tol: float = 1e-6, num_probes: int = 100, seed: int = 0) -> StabilityRatios:
    """``lr lambda_max / 2`` and ``lr tr(H) / 2`` with ``tr(H)`` by Hutchinson (``num_probes`` probes)."""
    from theorylab.curvature import hessian, top_eigenvalues, trace

    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    with Stopwatch() as watch:
        obj, data = _prepare(model, loss_fn, data, params, mode, subset, normalize_logits)
        with preserved(model, mode=mode):
            op = hessian(model, obj.loss_fn, data, params=params, mode=mode)
            eig = top_eigenvalues(op, k=1, which="LA", tol=tol, seed=seed)
            tr = trace(op, num_probes=num_probes, seed=seed)
    lam = float(eig.values[0])
    return StabilityRatios(lr=float(lr), lambda_max=lam, trace=tr.estimate, trace_stderr=tr.stderr,
                           lambda_ratio=lr * lam / 2, trace_ratio=lr * tr.estimate / 2,
                           trace_ratio_stderr=lr * tr.stderr / 2,
                           meta=make_meta(seed=seed, mode=mode, num_samples=obj.n,
                                          num_matvecs=eig.num_matvecs + tr.num_matvecs,
                                          wall_time_s=round(watch.seconds, 4)))


# ---------------------------------------------------------------------------------------------
# Perturbation-based measures
# ---------------------------------------------------------------------------------------------
def sam_sharpness(model: nn.Module, loss_fn: LossFn, data: Data, *, rho: float, m: int | None = None,
                  params: ParamSpec = None, mode: Mode = "eval", subset: int | None = None,
                  normalize_logits: bool = False) -> Sharpness:
    """First-order SAM sharpness ``L(w + rho g/||g||) - L(w)``; with ``m``, m-sharpness.

    m-sharpness splits the (single-batch) data into consecutive disjoint batches of ``m`` samples
    (an uneven last batch is kept), perturbs each with its own normalised gradient and returns the
    sample-weighted mean of the per-batch sharpness.  A batch with zero gradient has sharpness 0.
    """
    rho = _check_rho(rho)
    with Stopwatch() as watch:
        obj, _ = _prepare(model, loss_fn, data, params, mode, subset, normalize_logits)
        if m is None:
            groups = [obj.batches]
        else:
            m = _check_count("m", m)
            if len(obj.batches) != 1:
                raise ValueError("m-sharpness needs data as one (inputs, targets) batch")
            x, y = obj.batches[0]
            groups = [[(x[i:i + m], y[i:i + m])] for i in range(0, len(y), m)]
        with preserved(model, mode=mode):
            base = obj.loss()
            total = 0.0
            for group in groups:
                g = obj.gradient(batches=group)
                norm = _norm(g)
                if norm == 0:
                    continue
                delta = [rho * t / norm for t in g]
                size = sum(batch_size(b) for b in group)
                total += (obj.loss(delta, group) - obj.loss(None, group)) * size
    return _result("sam" if m is None else f"m_sharpness(m={m})", total / obj.n, 0.0, obj, base, rho=rho,
                   norm="l2", adaptive=False, mode=mode, watch=watch)


def adaptive_sharpness(model: nn.Module, loss_fn: LossFn, data: Data, *, rho: float, norm: Norm = "l2",
                       adaptive: bool = True, offset: float = 0.0, steps: int = 20, step_size: float | None = None,
                       params: ParamSpec = None, mode: Mode = "eval", subset: int | None = None,
                       normalize_logits: bool = False, seed: int = 0) -> Sharpness:
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
    if not (offset >= 0 and math.isfinite(offset)):
        raise ValueError(f"offset must be >= 0, got {offset!r}")
    if step_size is not None and not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"step_size must be > 0, got {step_size!r}")
    alpha = step_size if step_size is not None else (rho if norm == "l2" else rho / 4)
    with Stopwatch() as watch:
        obj, _ = _prepare(model, loss_fn, data, params, mode, subset, normalize_logits)
        c = obj.scale(adaptive, offset)
        generator = torch.Generator().manual_seed(seed)
        if norm == "l2":
            u = [torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device) for w in obj.w]
            u = [t * (rho / _norm(u)) for t in u]
        else:
            u = [((torch.rand(w.shape, generator=generator, dtype=w.dtype) * 2 - 1) * rho).to(w.device) for w in obj.w]

        def project(v: list[Tensor]) -> list[Tensor]:
            if norm == "linf":
                return [t.clamp(-rho, rho) for t in v]
            size = _norm(v)
            return v if size <= rho else [t * (rho / size) for t in v]

        with preserved(model, mode=mode):
            base = obj.loss()
            best = obj.loss([ci * ui for ci, ui in zip(c, u)]) - base
            for _ in range(steps):
                grad_u = [ci * gi for ci, gi in zip(c, obj.gradient([ci * ui for ci, ui in zip(c, u)]))]
                if norm == "l2":
                    size = _norm(grad_u)
                    if size == 0:
                        break
                    u = project([ui + alpha * gi / size for ui, gi in zip(u, grad_u)])
                else:
                    u = project([ui + alpha * gi.sign() for ui, gi in zip(u, grad_u)])
                best = max(best, obj.loss([ci * ui for ci, ui in zip(c, u)]) - base)
    return _result(f"worst_case_{norm}", best, 0.0, obj, base, rho=rho, norm=norm, adaptive=adaptive, mode=mode,
                   watch=watch, seed=seed, steps=steps, step_size=alpha, offset=offset)


def average_sharpness(model: nn.Module, loss_fn: LossFn, data: Data, *, rho: float, adaptive: bool = True,
                      offset: float = 0.0, num_samples: int = 100, params: ParamSpec = None, mode: Mode = "eval",
                      subset: int | None = None, normalize_logits: bool = False, seed: int = 0) -> Sharpness:
    """``E L(w + delta) - L(w)``, ``delta ~ N(0, rho^2 diag(c^2))``, by ``num_samples`` draws (with stderr).

    Draws are made on CPU from ``seed``; ``stderr`` is the sample standard deviation over
    ``sqrt(num_samples)``.
    """
    rho = _check_rho(rho)
    num_samples = _check_count("num_samples", num_samples, minimum=2)
    if not (offset >= 0 and math.isfinite(offset)):
        raise ValueError(f"offset must be >= 0, got {offset!r}")
    with Stopwatch() as watch:
        obj, _ = _prepare(model, loss_fn, data, params, mode, subset, normalize_logits)
        c = obj.scale(adaptive, offset)
        generator = torch.Generator().manual_seed(seed)
        with preserved(model, mode=mode):
            base = obj.loss()
            gaps = np.empty(num_samples)
            for i in range(num_samples):
                delta = [rho * ci * torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
                         for ci, w in zip(c, obj.w)]
                gaps[i] = obj.loss(delta) - base
    return _result("average", float(gaps.mean()), float(gaps.std(ddof=1) / math.sqrt(num_samples)), obj, base,
                   rho=rho, norm="gaussian", adaptive=adaptive, mode=mode, watch=watch, seed=seed, offset=offset)


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
