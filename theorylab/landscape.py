"""The loss landscape: slices around a solution, and the straight path between two solutions.

* :func:`loss_surface` evaluates ``L(theta_0 + sum_i c_i d_i)`` on a 1-D or 2-D grid of coefficients
  ``c`` along directions ``d_i``: random Gaussian directions rescaled filter by filter to the norms of
  the weights they perturb ("filter normalisation", Li, Xu, Taylor, Studer & Goldstein 2018,
  "Visualizing the loss landscape of neural nets", Sec. 4: for each filter -- a row of a linear
  layer's weight, an output channel of a convolution -- ``d_f <- d_f ||w_f|| / ||d_f||``; biases and
  other one-dimensional parameters get 0), per-layer normalisation, the top eigenvectors of the
  Hessian (unit norm), or directions you give.  Over the measured surface it draws the quadratic model
  of the loss at ``theta_0``,

      q(c) = L(theta_0) + sum_i c_i g.d_i + (1/2) sum_ij c_i c_j d_i^T H d_j,

  from the gradient ``g`` and Hessian-vector products (exact, no finite differences): along a unit
  eigenvector of ``H`` its curvature is the eigenvalue.
* :func:`linear_interpolation` evaluates ``L((1 - a) theta_A + a theta_B)`` for ``a`` in ``[0, 1]``
  (floating buffers such as BatchNorm statistics are interpolated with the parameters) and the
  **loss barrier** ``max_a [L(theta_a) - ((1 - a) L(theta_A) + a L(theta_B))]`` (Frankle, Dziugaite,
  Roy & Carbin 2020, "Linear mode connectivity and the lottery ticket hypothesis"; in this form
  Entezari, Sedghi, Saukh & Neyshabur 2022).  Two solutions are linearly mode connected when the
  barrier is about 0.  Pass an error rate as ``loss_fn`` for the error barrier.  Aligning the hidden
  units first (:func:`theorylab.alignment.weight_matching`) removes the barrier that comes from
  permutation symmetry alone (Ainsworth, Hayase & Srinivasa 2023).

Points are evaluated in a single pass over the data, ``points_per_pass`` at a time with
``torch.func.vmap`` over parameter sets (a loop where vmap cannot batch the model, with a one-line
warning), so memory is ``points_per_pass`` times (parameters + one batch's activations); every number
is the sample-weighted mean over the data (summed over the ranks of ``process_group``), with the
model left exactly as it was.  In train mode every point sees the same dropout masks.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import vmap

from theorylab._params import ParamSpec, select_parameters
from theorylab._state import Mode
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.batches import Batch, Data
from theorylab.functional import LossFn, ModelFunction
from theorylab.plotting import MEASURED, PREDICTED, axes_or_new
from theorylab.results import Result, result_class

Normalization = Literal["filter", "layer", "none"]
NORMALIZATIONS: tuple[str, ...] = ("filter", "layer", "none")
DirectionKind = Literal["filter", "layer", "hessian"]
DIRECTION_KINDS: tuple[str, ...] = ("filter", "layer", "hessian")
#: bytes of parameter sets held at once when ``points_per_pass`` is not given
POINT_MEMORY = 256 * 2 ** 20


# -- directions -----------------------------------------------------------------------------------
def random_direction(model: nn.Module, *, seed: int = 0, params: ParamSpec = None,
                     normalization: Normalization = "filter") -> dict[str, Tensor]:
    """A random direction over the selected parameters, ``{name: tensor}`` (float64, CPU).

    Entries are N(0, 1), drawn on the CPU from ``seed``.  ``"filter"``: each filter (slice along the
    first axis) of a parameter with two or more dimensions is rescaled to the norm of the same
    filter of the weights, and one-dimensional parameters (biases, normalisation scales) are 0
    (Li et al. 2018); ``"layer"``: each parameter tensor is rescaled to the norm of the weights;
    ``"none"``: plain Gaussian entries.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    generator = torch.Generator().manual_seed(int(seed))
    direction = {}
    for name, p in select_parameters(model, params).items():
        w = p.detach().to(device="cpu", dtype=torch.float64)
        d = torch.randn(w.shape, generator=generator, dtype=torch.float64)
        if normalization == "filter":
            if w.dim() <= 1:
                d = torch.zeros_like(w)
            else:
                filters, weights = d.reshape(len(d), -1), w.reshape(len(w), -1)
                scale = weights.norm(dim=1, keepdim=True) / filters.norm(dim=1, keepdim=True).clamp_min(1e-300)
                d = (filters * scale).reshape(w.shape)
        elif normalization == "layer":
            d = d * (w.norm() / d.norm().clamp_min(1e-300))
        direction[name] = d
    return direction


# -- evaluating many points -----------------------------------------------------------------------
class _FlatState:
    """Named tensors (parameters, floating buffers) as one flat vector, and batches of such vectors back."""

    def __init__(self, tensors: dict[str, Tensor]):
        self.names = list(tensors)
        self.shapes = [t.shape for t in tensors.values()]
        self.sizes = [math.prod(s) for s in self.shapes]

    def flatten(self, tensors: dict[str, Tensor], dtype: torch.dtype, device: torch.device) -> Tensor:
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise ValueError(f"missing tensors for {missing[:5]}")
        for n, s in zip(self.names, self.shapes):
            if tuple(tensors[n].shape) != tuple(s):
                raise ValueError(f"{n!r} has shape {tuple(tensors[n].shape)}, expected {tuple(s)}")
        return torch.cat([tensors[n].detach().to(device=device, dtype=dtype).reshape(-1) for n in self.names])

    def unflatten(self, rows: Tensor) -> dict[str, Tensor]:
        """``(k, P)`` -> ``{name: (k, *shape)}``."""
        pieces = rows.split(self.sizes, dim=1)
        return {n: piece.reshape(len(rows), *s) for n, piece, s in zip(self.names, pieces, self.shapes)}


def evaluate_points(fn: ModelFunction, state: _FlatState, points: Callable[[int, int], Tensor], count: int,
                    points_per_pass: int | None) -> np.ndarray:
    """The mean loss over ``fn``'s data at ``count`` points; ``points(start, stop)`` gives their flat states.

    One pass over the data; ``points_per_pass`` points per vmapped evaluation (default: as many as
    fit in :data:`POINT_MEMORY`).  Falls back to one point at a time where vmap cannot batch the
    model (a one-line warning).
    """
    itemsize = torch.empty((), dtype=fn.dtype).element_size()
    chunk = points_per_pass or max(1, min(count, POINT_MEMORY // max(1, sum(state.sizes) * itemsize)))
    batched = [True]

    def vmapped(states: dict[str, Tensor], batch: Batch) -> Tensor:
        return vmap(lambda s: fn.batch_loss(s, batch), randomness="same")(states)

    def looped(states: dict[str, Tensor], batch: Batch, rng: Any) -> Tensor:
        values = []
        for i in range(len(next(iter(states.values())))):
            fn.restore_rng(rng)
            values.append(fn.batch_loss({n: t[i] for n, t in states.items()}, batch))
        return torch.stack(values)

    def per_batch(batch: Batch) -> Tensor:
        rng = fn.rng_state()  # every point sees the dropout masks of the same draw
        losses = []
        for start in range(0, count, chunk):
            fn.restore_rng(rng)
            states = state.unflatten(points(start, min(start + chunk, count)))
            if batched[0]:
                try:
                    losses.append(vmapped(states, batch))
                    continue
                except (RuntimeError, NotImplementedError, ValueError) as exc:
                    if start > 0:
                        raise
                    warnings.warn(f"torch.func.vmap cannot batch {type(fn.model).__name__} over parameter sets "
                                  f"({str(exc).splitlines()[0][:120]}); points are evaluated one at a time",
                                  RuntimeWarning, stacklevel=4)
                    batched[0] = False
            losses.append(looped(states, batch, rng))
        return torch.cat(losses).to(torch.float64)

    with torch.no_grad(), fn.evaluating(second_order=True):  # math attention: vmap has no fused-kernel rule
        return fn.data_mean(per_batch).cpu().numpy()


# -- loss surfaces --------------------------------------------------------------------------------
@result_class
class LossSurface(Result):
    """The loss on a grid of coefficients along one or two directions, and its quadratic model.

    ``coordinates``: one array per direction; ``losses``: shape ``(n,)`` or ``(n, m)`` (first axis
    along the first direction); ``center_loss`` the loss at ``theta_0``; ``gradient[i] = g.d_i``;
    ``curvature[i, j] = d_i^T H d_j``; ``direction_norms[i] = ||d_i||``; ``eigenvalues`` the Hessian
    eigenvalues of the directions (``directions="hessian"``), else None.
    """

    coordinates: list[np.ndarray]
    losses: np.ndarray
    center_loss: float
    gradient: np.ndarray
    curvature: np.ndarray
    directions: str
    direction_norms: np.ndarray
    eigenvalues: np.ndarray | None
    num_evaluations: int

    def quadratic_model(self) -> np.ndarray:
        """``q(c)`` on the grid (same shape as ``losses``)."""
        grids = np.meshgrid(*self.coordinates, indexing="ij")
        c = np.stack([g.reshape(-1) for g in grids], axis=1)  # (points, r)
        q = self.center_loss + c @ self.gradient + 0.5 * np.einsum("pi,ij,pj->p", c, self.curvature, c)
        return q.reshape(self.losses.shape)

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        quadratic = self.quadratic_model()
        if len(self.coordinates) == 1:
            ax.plot(self.coordinates[0], self.losses, "o-", color=MEASURED, markersize=3, label="measured loss")
            ax.plot(self.coordinates[0], quadratic, "--", color=PREDICTED, label="quadratic model (Hessian)")
            ax.set(xlabel="coefficient along d_1", ylabel="loss")
            ax.legend()
        else:
            x, y = self.coordinates
            filled = ax.contourf(x, y, self.losses.T, levels=20, cmap="viridis")
            ax.figure.colorbar(filled, ax=ax, label="measured loss")
            lines = ax.contour(x, y, quadratic.T, levels=filled.levels, colors=PREDICTED, linewidths=0.7)
            ax.clabel(lines, fontsize=6)
            ax.plot([0], [0], "k+")
            ax.set(xlabel="coefficient along d_1", ylabel="coefficient along d_2")
        ax.set_title(f"loss surface ({self.directions} directions; lines: quadratic model)")
        return ax


def _grid(span: Any, num_points: int, count: int) -> list[np.ndarray]:
    spans = [span] * count if len(np.shape(span)) == 1 else list(span)
    if len(spans) != count or any(len(s) != 2 or not s[0] < s[1] for s in spans):
        raise ValueError(f"span must be (low, high) with low < high, or one such pair per direction; got {span!r}")
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 2:
        raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}")
    return [np.linspace(float(lo), float(hi), num_points) for lo, hi in spans]


def _check_points_per_pass(points_per_pass: Any) -> None:
    if points_per_pass is not None and (isinstance(points_per_pass, bool) or not isinstance(points_per_pass, int)
                                        or points_per_pass < 1):
        raise ValueError(f"points_per_pass must be a positive integer or None, got {points_per_pass!r}")


@analyzer
def loss_surface(model: nn.Module, loss_fn: LossFn, data: Data, *,
                 directions: DirectionKind | Sequence[dict[str, Tensor]] = "filter", num_directions: int = 2,
                 span: tuple[float, float] | Sequence[tuple[float, float]] = (-1.0, 1.0), num_points: int = 21,
                 seed: int = 0, points_per_pass: int | None = None, params: ParamSpec = None, mode: Mode = "eval",
                 dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                 process_group: Any = None, output: OutputFn | None = None) -> LossSurface:
    """The loss on a 1-D or 2-D grid around the model's parameters, with the Hessian's quadratic model.

    ``directions``: "filter" or "layer" (random, normalised; see :func:`random_direction`, seeds
    ``seed``, ``seed + 1``), "hessian" (top eigenvectors of the Hessian, unit norm, by Lanczos), or a
    list of ``{name: tensor}`` directions over the selected parameters; ``num_directions`` (1 or 2)
    applies to the named kinds.  ``span``: the coefficient range (one pair, or one per direction),
    ``num_points`` per axis (odd includes ``0``).  Other options as in
    :func:`theorylab.curvature.hessian`; the module docstring has the details.
    """
    from theorylab.curvature import hessian, top_eigenvalues

    _check_points_per_pass(points_per_pass)
    fn = ModelFunction(model, loss_fn, data, params=params, mode=mode, dtype=dtype, device=device,
                       process_group=process_group, output=output)
    state = _FlatState({n: p for n, p in fn.params.items()})
    center = state.flatten(fn.params, fn.dtype, fn.device)
    H = hessian(model, loss_fn, data, params=params, mode=mode, dtype=dtype, device=device,
                process_group=process_group, output=output)
    eigenvalues = None
    if isinstance(directions, str):
        if directions not in DIRECTION_KINDS:
            raise ValueError(f"directions must be one of {DIRECTION_KINDS} or a list of direction dicts, "
                             f"got {directions!r}")
        if num_directions not in (1, 2):
            raise ValueError(f"num_directions must be 1 or 2, got {num_directions!r}")
        kind = directions
        if kind == "hessian":
            top = top_eigenvalues(H, k=num_directions, which="LA", tol=1e-8, seed=seed, return_vectors=True)
            eigenvalues = top.values
            flat = torch.as_tensor(top.vectors.T, dtype=fn.dtype, device=fn.device)
        else:
            flat = torch.stack([state.flatten(random_direction(model, seed=seed + i, params=params,
                                                               normalization=kind), fn.dtype, fn.device)
                                for i in range(num_directions)])
    else:
        kind = "given"
        given = list(directions)
        if len(given) not in (1, 2) or not all(isinstance(d, dict) for d in given):
            raise ValueError("directions must be 'filter', 'layer', 'hessian' or a list of one or two dicts "
                             "{parameter name: tensor}")
        flat = torch.stack([state.flatten(d, fn.dtype, fn.device) for d in given])
    if not bool((flat.norm(dim=1) > 0).all()):
        raise ValueError("a direction is zero over the selected parameters")
    grids = _grid(span, num_points, len(flat))
    mesh = np.stack([g.reshape(-1) for g in np.meshgrid(*grids, indexing="ij")], axis=1)
    coefficients = torch.as_tensor(mesh, dtype=fn.dtype, device=fn.device)

    def points(start: int, stop: int) -> Tensor:
        return center + coefficients[start:stop] @ flat

    losses = evaluate_points(fn, state, points, len(mesh), points_per_pass)
    gradient = torch.cat([g.reshape(-1) for g in fn.gradient()])
    products = H @ flat.T.contiguous()  # (P, r)
    curvature = (flat.to(torch.float64) @ products.to(torch.float64)).cpu().numpy()
    return LossSurface(coordinates=grids, losses=losses.reshape([len(g) for g in grids]),
                       center_loss=fn.mean_loss(), gradient=(flat @ gradient).to(torch.float64).cpu().numpy(),
                       curvature=(curvature + curvature.T) / 2, directions=kind,
                       direction_norms=flat.norm(dim=1).to(torch.float64).cpu().numpy(), eigenvalues=eigenvalues,
                       num_evaluations=len(mesh), meta={"num_matvecs": H.num_matvecs})


# -- interpolation between two solutions ---------------------------------------------------------
@result_class
class Interpolation(Result):
    """The loss along ``(1 - a) theta_A + a theta_B`` and its barrier.

    ``barrier = max_a [L(a) - ((1 - a) L(0) + a L(1))]`` at ``barrier_alpha``; ``endpoint_losses``
    are ``(L(0), L(1))``.
    """

    alphas: np.ndarray
    losses: np.ndarray
    endpoint_losses: tuple[float, float]
    barrier: float
    barrier_alpha: float

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.plot(self.alphas, self.losses, "o-", color=MEASURED, markersize=3, label="loss along the line")
        ax.plot([0, 1], list(self.endpoint_losses), "--", color="0.5", label="linear in the endpoints")
        i = int(np.argmin(np.abs(self.alphas - self.barrier_alpha)))
        base = (1 - self.barrier_alpha) * self.endpoint_losses[0] + self.barrier_alpha * self.endpoint_losses[1]
        ax.annotate("", xy=(self.barrier_alpha, self.losses[i]), xytext=(self.barrier_alpha, base),
                    arrowprops=dict(arrowstyle="<->", color=PREDICTED))
        ax.set(xlabel="alpha (0: model A, 1: model B)", ylabel="loss",
               title=f"linear interpolation: barrier {self.barrier:.4g}")
        ax.legend()
        return ax


def interpolation_state(model: nn.Module) -> dict[str, Tensor]:
    """What a straight path moves: every parameter and every floating buffer, by name."""
    named = {n: p for n, p in model.named_parameters()}
    named.update({n: b for n, b in model.named_buffers() if b.is_floating_point()})
    return named


@analyzer
def linear_interpolation(model: nn.Module, other: nn.Module, loss_fn: LossFn, data: Data, *, num_points: int = 25,
                         points_per_pass: int | None = None, mode: Mode = "eval", dtype: torch.dtype | None = None,
                         device: str | torch.device | None = None, process_group: Any = None,
                         output: OutputFn | None = None) -> Interpolation:
    """The loss on the straight line from ``model`` (alpha 0) to ``other`` (alpha 1), and the barrier.

    ``other`` must have the same parameter and buffer names and shapes (it is only read).
    ``num_points >= 2`` evenly spaced values of alpha, endpoints included.  See the module docstring.
    """
    if not isinstance(other, nn.Module):
        raise ValueError(f"other must be a torch.nn.Module, got {type(other).__name__}")
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 2:
        raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}")
    _check_points_per_pass(points_per_pass)
    fn = ModelFunction(model, loss_fn, data, mode=mode, dtype=dtype, device=device, process_group=process_group,
                       output=output, variables=False)
    ours, theirs = interpolation_state(model), interpolation_state(other)
    if set(ours) != set(theirs):
        raise ValueError(f"the two models differ in their tensors: only in model {sorted(set(ours) - set(theirs))[:5]}, "
                         f"only in other {sorted(set(theirs) - set(ours))[:5]}")
    state = _FlatState(ours)
    start, end = state.flatten(ours, fn.dtype, fn.device), state.flatten(theirs, fn.dtype, fn.device)
    alphas = np.linspace(0.0, 1.0, num_points)
    weights = torch.as_tensor(alphas, dtype=fn.dtype, device=fn.device)

    def points(lo: int, hi: int) -> Tensor:
        a = weights[lo:hi, None]
        return (1 - a) * start + a * end

    losses = evaluate_points(fn, state, points, num_points, points_per_pass)
    excess = losses - ((1 - alphas) * losses[0] + alphas * losses[-1])
    i = int(np.argmax(excess))
    return Interpolation(alphas=alphas, losses=losses, endpoint_losses=(float(losses[0]), float(losses[-1])),
                         barrier=float(excess[i]), barrier_alpha=float(alphas[i]))
