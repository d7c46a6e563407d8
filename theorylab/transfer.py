"""Transfer between two domains through a classifier head: how well the domains' head Hessians and gradients
align, and the transfer measure of the head's neighbourhood.

Notation: ``theta`` the selected parameters (typically a classifier head on fixed features), ``L_D(theta)`` the
mean loss over the data of domain ``D``, ``g_D = grad L_D(theta)`` and ``H_D = grad^2 L_D(theta)`` at the model's
current parameters ``theta_0``.

* :func:`head_hessian_alignment`: the spectral norm ``||H_a - H_b||_2`` of the difference of two domains'
  Hessians (the largest eigenvalue in magnitude of the symmetric difference, by Lanczos on the operator
  ``H_a - H_b``), the gradient gap ``||g_a - g_b||_2``, each domain's top Hessian eigenvalue, gradient norm and
  loss.  These are the quantities of Hemati, Zhang, Estiri & Chen 2023 ("Understanding Hessian alignment for
  domain generalization", ICCV), who bound the transfer measure through them.
* :func:`transfer_measure`: the transfer measure of Zhang, Zhao, Yu & Poupart 2021 ("Quantifying and improving
  transferability in domain generalization", NeurIPS) over the ball ``Gamma = {theta : ||theta - theta_0|| <=
  radius}`` around the current parameters (the neighbourhood of a learned head, as in their estimator),

      ``T_Gamma(S || T) = sup_{theta in Gamma} [L_T(theta) - L_T*] - [L_S(theta) - L_S*]``,
      ``L_D* = inf_{theta in Gamma} L_D(theta)``,

  with ``L_D`` the mean loss plus ``weight_decay / 2 ||theta||^2`` (the same for both domains, so it cancels in
  ``L_T - L_S`` but not in the infima).  The infima are found by projected gradient descent from ``theta_0``
  (the global infima when ``L_D`` is convex in ``theta``, as for a linear head under cross-entropy); the
  supremum of ``L_T - L_S``, which need not be concave, by projected gradient ascent from ``theta_0``, from the
  boundary point along ``grad (L_T - L_S)(theta_0)`` and from ``restarts`` random boundary points, keeping the
  largest value (a lower bound on the supremum, exact in the tests on problems small enough for a grid).
  Every descent or ascent uses backtracking (Armijo on the projected step) and stops when a step moves less
  than ``tol * radius``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from theorylab._params import ParamSpec
from theorylab._state import Mode
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.batches import Data
from theorylab.functional import LossFn, ModelFunction
from theorylab.results import Result, result_class


@result_class
class HessianAlignment(Result):
    """Hessian and gradient alignment of two domains at the current parameters (module docstring)."""

    hessian_gap: float
    gradient_gap: float
    top_eigenvalue_a: float
    top_eigenvalue_b: float
    gradient_norm_a: float
    gradient_norm_b: float
    loss_a: float
    loss_b: float
    num_params: int


@result_class
class TransferMeasure(Result):
    """The transfer measure of a ball of parameters from a source to a target domain (module docstring).

    ``value = sup_gap - (target_min - source_min)``; ``sup_gap = max (L_T - L_S)`` over the ball, reached at
    distance ``sup_distance`` from the centre; ``*_center`` are the regularised losses at the centre and
    ``*_gradient_norm`` the norms of their gradients there (0 at a minimiser of ``L_D``).
    """

    value: float
    sup_gap: float
    source_min: float
    target_min: float
    source_center: float
    target_center: float
    source_gradient_norm: float
    target_gradient_norm: float
    sup_distance: float
    radius: float
    weight_decay: float
    num_evaluations: int


def _flat_norm(tensors: list[Tensor]) -> float:
    return math.sqrt(sum(float((t.double() ** 2).sum()) for t in tensors))


def _top(op: Any, which: str, tol: float, seed: int) -> float:
    from theorylab.curvature import top_eigenvalues

    return float(top_eigenvalues(op, k=1, which=which, tol=tol, seed=seed).values[0])


@analyzer
def head_hessian_alignment(model: nn.Module, loss_fn: LossFn, data_a: Data, data_b: Data, *,
                           params: ParamSpec = None, mode: Mode = "eval", tol: float = 1e-8, seed: int = 0,
                           dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                           output: OutputFn | None = None) -> HessianAlignment:
    """``||H_a - H_b||_2``, ``||g_a - g_b||_2`` and each domain's top eigenvalue, gradient norm and loss.

    The eigenvalues are Lanczos estimates with Ritz residual ``<= tol |lambda|``: "LM" on the difference (its
    spectral norm is the absolute value), "LA" on each Hessian.
    """
    from theorylab.curvature import hessian

    if not (tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    options = dict(params=params, mode=mode, dtype=dtype, device=device, output=output)
    h_a, h_b = (hessian(model, loss_fn, data, **options) for data in (data_a, data_b))
    fn_a, fn_b = h_a.function, h_b.function
    (loss_a, g_a), (loss_b, g_b) = fn_a.loss_and_gradient(), fn_b.loss_and_gradient()
    return HessianAlignment(
        hessian_gap=abs(_top(h_a - h_b, "LM", tol, seed)), gradient_gap=_flat_norm([a - b for a, b in zip(g_a, g_b)]),
        top_eigenvalue_a=_top(h_a, "LA", tol, seed), top_eigenvalue_b=_top(h_b, "LA", tol, seed),
        gradient_norm_a=_flat_norm(g_a), gradient_norm_b=_flat_norm(g_b), loss_a=loss_a, loss_b=loss_b,
        num_params=fn_a.size,
        meta={"num_samples_a": int(fn_a.total_samples), "num_samples_b": int(fn_b.total_samples)})


class _Ball:
    """A smooth objective of the offset ``delta`` from the centre, on the ball ``||delta|| <= radius``."""

    def __init__(self, radius: float, tol: float, steps: int):
        self.radius, self.tol, self.steps, self.evaluations = radius, tol, steps, 0

    def project(self, delta: list[Tensor]) -> list[Tensor]:
        size = _flat_norm(delta)
        return delta if size <= self.radius else [d * (self.radius / size) for d in delta]

    def descend(self, value_and_gradient: Callable[[list[Tensor]], tuple[float, list[Tensor]]],
                start: list[Tensor]) -> tuple[float, list[Tensor]]:
        """Projected gradient descent with backtracking from ``start``: ``(min value, its offset)``."""
        delta = self.project(start)
        value, grad = value_and_gradient(delta)
        self.evaluations += 1
        step = self.radius / max(_flat_norm(grad), 1e-300)
        for _ in range(self.steps):
            while True:
                trial = self.project([d - step * g for d, g in zip(delta, grad)])
                moved = [t - d for t, d in zip(trial, delta)]
                trial_value, trial_grad = value_and_gradient(trial)
                self.evaluations += 1
                # Armijo on the projected step: f(trial) <= f + <g, moved> + ||moved||^2 / (2 step)
                size = _flat_norm(moved)
                model_value = value + sum(float((g * m).sum()) for g, m in zip(grad, moved)) + size ** 2 / (2 * step)
                if trial_value <= model_value + 1e-12 * abs(value) or size <= 1e-3 * self.tol * self.radius:
                    break
                step /= 2
            if trial_value > value:  # no decrease left at the smallest step: converged
                break
            delta, value, grad, step = trial, trial_value, trial_grad, step * 2
            if size <= self.tol * self.radius:
                break
        return value, delta


@analyzer
def transfer_measure(model: nn.Module, loss_fn: LossFn, source: Data, target: Data, *, radius: float,
                     weight_decay: float = 0.0, params: ParamSpec = None, mode: Mode = "eval", steps: int = 200,
                     restarts: int = 2, tol: float = 1e-6, seed: int = 0, dtype: torch.dtype | None = None,
                     device: str | torch.device | None = None, output: OutputFn | None = None) -> TransferMeasure:
    """The transfer measure ``T_Gamma(source || target)`` over the ``radius``-ball around the current parameters.

    See the module docstring for the definition and the search; ``steps`` bounds each descent or ascent,
    ``restarts`` random boundary starts (drawn on CPU from ``seed``) join the two fixed ones.
    """
    if not (radius > 0 and math.isfinite(radius)):
        raise ValueError(f"radius must be a finite number > 0, got {radius!r}")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    for name, value, least in (("steps", steps, 1), ("restarts", restarts, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if not (0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    fn, _ = (ModelFunction(model, loss_fn, data, params=params, mode=mode, dtype=dtype, device=device, output=output)
             for data in (source, target))  # the second checks that the target data is usable
    centre = [p.detach() for p in fn.params.values()]

    def regularised(data: Data) -> Callable[[list[Tensor]], tuple[float, list[Tensor]]]:
        def value_and_gradient(delta: list[Tensor]) -> tuple[float, list[Tensor]]:
            """The regularised loss and its gradient at ``centre + delta``, from one pass over ``data``."""
            loss, gradient = fn.loss_and_gradient(delta, data)
            theta = [c + d for c, d in zip(centre, delta)]
            penalty = weight_decay / 2 * _flat_norm(theta) ** 2
            return loss + penalty, [g + weight_decay * t for g, t in zip(gradient, theta)]
        return value_and_gradient

    source_fn, target_fn = regularised(source), regularised(target)

    def negative_gap(delta: list[Tensor]) -> tuple[float, list[Tensor]]:
        (vs, gs), (vt, gt) = source_fn(delta), target_fn(delta)
        return vs - vt, [a - b for a, b in zip(gs, gt)]

    ball = _Ball(float(radius), float(tol), steps)
    zero = [torch.zeros_like(c) for c in centre]
    (source_center, source_gradient), (target_center, target_gradient) = source_fn(zero), target_fn(zero)
    source_min, _ = ball.descend(source_fn, zero)
    target_min, _ = ball.descend(target_fn, zero)
    ascent = [t - s for s, t in zip(source_gradient, target_gradient)]   # grad (L_T - L_S) at the centre
    starts = [zero, [a * (radius / max(_flat_norm(ascent), 1e-300)) for a in ascent]]
    generator = torch.Generator().manual_seed(seed)
    for _ in range(restarts):
        draw = [torch.randn(c.shape, generator=generator, dtype=torch.float64).to(c) for c in centre]
        starts.append([d * (radius / _flat_norm(draw)) for d in draw])
    best, best_delta = -math.inf, zero
    for start in starts:
        value, delta = ball.descend(negative_gap, start)
        if -value > best:
            best, best_delta = -value, delta
    return TransferMeasure(value=best - (target_min - source_min), sup_gap=best, source_min=source_min,
                           target_min=target_min, source_center=source_center, target_center=target_center,
                           source_gradient_norm=_flat_norm(source_gradient),
                           target_gradient_norm=_flat_norm(target_gradient), sup_distance=_flat_norm(best_delta),
                           radius=float(radius), weight_decay=float(weight_decay),
                           num_evaluations=ball.evaluations + 2, meta={"starts": len(starts)})
