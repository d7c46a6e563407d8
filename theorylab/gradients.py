"""Gradient statistics: per-example gradients, coherence, diversity, noise scale, SNR, group
cosines and distance from initialisation.

Notation: ``g_i`` the gradient of example ``i``'s loss, ``m`` examples, ``gbar = (1/m) sum_i g_i``.

* **m-coherence** (Chatterjee & Zielinski 2022, "On the generalization mystery in deep learning",
  arXiv:2203.10036): ``alpha_m = ||sum_i g_i||^2 / sum_i ||g_i||^2``: ``m`` for identical gradients, 1 for
  orthogonal ones, below 1 when they cancel.  Its normalised, unbiased form
  ``alpha = (alpha_m - 1) / (m - 1)`` estimates ``E[g . g'] / E[g . g] = |G|^2 / (|G|^2 + tr Sigma)``.
* **Gradient diversity** (Yin et al. 2018, AISTATS): ``sum_i ||g_i||^2 / ||sum_i g_i||^2 = 1 / alpha_m``.
* **Gradient noise scale** (McCandlish, Kaplan, Amodei et al. 2018, "An empirical model of
  large-batch training", arXiv:1812.06162): ``B_simple = tr(Sigma) / |G|^2`` with the unbiased
  two-batch estimates ``|G|^2 ~ (B |G_B|^2 - b |G_b|^2) / (B - b)`` and
  ``tr Sigma ~ (|G_b|^2 - |G_B|^2) / (1/b - 1/B)``, averaged over many pairs before the ratio.
  From per-example gradients (``b = 1``, ``B = m``) the same estimates give, on the same sample,
  exactly ``alpha = 1 / (1 + B_simple)``.
* **Gradient signal-to-noise** per parameter (Liu et al. 2020, ICLR, "Understanding why neural
  networks generalize well through GSNR of parameters"): ``r_j = gbar_j^2 / var_j(g)``
  with the unbiased variance over examples.
* **Distance from initialisation** ``||w_t - w_0||`` (Hoffer, Hubara & Soudry 2017, "Train longer,
  generalize better", NeurIPS: it grows like ``log t``).

Per-example gradients use ``torch.func`` (``vmap`` over ``grad``, through :mod:`theorylab.functional`,
which falls back to a loop over examples for modules vmap cannot batch, such as ``nn.GRU``), in chunks;
the statistics over a data set are streaming sums, so memory is ``O(P)`` plus one chunk.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from theorylab._params import ParamSpec, select_parameters
from theorylab._state import Mode
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.batches import Batch, Data, batch_size, slice_batch
from theorylab.functional import ModelFunction
from theorylab.plotting import MEASURED, PREDICTED, axes_or_new
from theorylab.representations import RankResult, _ranks_from_singular_values
from theorylab.results import Result, result_class

LossFn = Callable[[Tensor, Tensor], Tensor]


# ---------------------------------------------------------------------------------------------
# Per-example gradients
# ---------------------------------------------------------------------------------------------
def _check_chunk(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")


def _stream_per_example(fn: ModelFunction, chunk_size: int) -> Iterator[tuple[list[Tensor], Tensor]]:
    """Yield ``([per-example gradients (n, p_k) of each parameter], targets)`` chunk by chunk."""
    _check_chunk(chunk_size)
    with fn.evaluating():
        for batch in fn.batches():
            for start in range(0, batch_size(batch), chunk_size):
                chunk = slice_batch(batch, slice(start, start + chunk_size))
                yield fn.per_example_gradients(chunk), fn.targets(chunk)


def _function(model: nn.Module, loss_fn: LossFn, data: Data, params: ParamSpec, mode: Mode,
              dtype: torch.dtype | None, device: str | torch.device | None, output: OutputFn | None,
              process_group: Any = None) -> ModelFunction:
    return ModelFunction(model, loss_fn, data, params=params, mode=mode, dtype=dtype, device=device, output=output,
                         process_group=process_group)


@analyzer
def per_example_gradients(model: nn.Module, loss_fn: LossFn, data: Data, *, params: ParamSpec = None,
                          chunk_size: int = 256, mode: Mode = "eval", dtype: torch.dtype | None = None,
                          device: str | torch.device | None = None, output: OutputFn | None = None) -> Tensor:
    """The ``(N, P)`` matrix of per-example gradients ``g_i = grad loss_fn(model(x_i), y_i)``.

    Columns follow the order of :func:`theorylab._params.select_parameters` (each parameter
    flattened).  ``loss_fn`` is the usual batch-mean loss, evaluated on one example at a time.
    Memory is ``N x P``: for statistics over large data use :func:`gradient_statistics`.
    """
    fn = _function(model, loss_fn, data, params, mode, dtype, device, output)
    return torch.cat([torch.cat(g, dim=1) for g, _ in _stream_per_example(fn, chunk_size)])


# ---------------------------------------------------------------------------------------------
# Coherence, diversity, noise scale and SNR from streaming sums
# ---------------------------------------------------------------------------------------------
@result_class
class GradientStatistics(Result):
    """Statistics of the per-example gradients of ``num_examples`` examples (module docstring).

    ``coherence`` is ``alpha_m``; ``normalized_coherence = (alpha_m - 1)/(m - 1)``; ``diversity =
    1/alpha_m``; ``grad_norm_sq`` and ``trace_cov`` are the unbiased estimates of ``|G|^2`` and
    ``tr Sigma`` (``b = 1``, ``B = m``); ``noise_scale = trace_cov / grad_norm_sq`` (can be negative
    or infinite when ``|G|^2`` is not resolved from the sample); ``snr_by_parameter`` is the mean
    GSNR over the entries of each parameter (entries with zero variance left out).
    """

    num_examples: int
    coherence: float
    normalized_coherence: float
    diversity: float
    mean_gradient_norm_sq: float
    mean_example_norm_sq: float
    grad_norm_sq: float
    trace_cov: float
    noise_scale: float
    snr_by_parameter: dict[str, float]

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        names = list(self.snr_by_parameter)
        ax.bar(range(len(names)), [self.snr_by_parameter[n] for n in names], color=MEASURED)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_ylabel("mean GSNR")
        ax.set_title(f"alpha_m = {self.coherence:.3g} over m = {self.num_examples}")
        return ax


class _Sums:
    """Streaming float64 sums over examples, per parameter: ``sum_i g_i`` and ``sum_i g_i^2`` (entrywise).

    ``sum_i ||g_i||^2`` is the total of the entrywise squares, so one pass over each chunk suffices.
    """

    def __init__(self) -> None:
        self.total: list[Tensor] = []
        self.squares: list[Tensor] = []
        self.count = 0

    def add(self, grads: list[Tensor]) -> None:
        """Fold in one chunk of per-example gradients; the chunk is consumed (squared in place)."""
        for k, g in enumerate(grads):
            column_sum = g.sum(0).to(torch.float64)
            column_sq = g.square_().sum(0).to(torch.float64)  # in place: no second chunk-sized buffer
            if not (torch.isfinite(column_sum).all() and torch.isfinite(column_sq).all()):
                raise ValueError("per-example gradients are not finite (NaN or infinite loss or inputs)")
            if k < len(self.total):
                self.total[k] += column_sum
                self.squares[k] += column_sq
            else:
                self.total.append(column_sum)
                self.squares.append(column_sq)
        self.count += len(grads[0]) if grads else 0

    def summed_over_ranks(self, fn: ModelFunction) -> "_Sums":
        """The sums over every rank of ``fn``'s process group (itself without one)."""
        self.total = [fn.sum_over_ranks(t) for t in self.total]
        self.squares = [fn.sum_over_ranks(t) for t in self.squares]
        self.count = int(fn.count_over_ranks(self.count, data=fn.data))
        return self

    @property
    def norms_sq(self) -> float:
        return float(sum(float(sq.sum()) for sq in self.squares))


def _statistics_from_sums(sums: _Sums, names: list[str], sizes: list[int], meta: dict[str, Any]) -> GradientStatistics:
    m = sums.count
    if m < 2:
        raise ValueError(f"gradient statistics need at least 2 examples, got {m}")
    total, squares, norms_sq = torch.cat(sums.total), torch.cat(sums.squares), sums.norms_sq
    total_sq = float(total.pow(2).sum())
    if norms_sq == 0:
        raise ValueError("every per-example gradient is zero: coherence is undefined")
    coherence = total_sq / norms_sq
    mean_sq = total_sq / m ** 2
    example_sq = norms_sq / m
    trace_cov = (example_sq - mean_sq) * m / (m - 1)  # (1/(m-1)) sum_i ||g_i - gbar||^2
    grad_sq = mean_sq - trace_cov / m  # = (m |gbar|^2 - |g_i|^2 avg) / (m - 1), the two-batch form
    noise = trace_cov / grad_sq if grad_sq != 0 else math.copysign(math.inf, trace_cov)
    mean = total / m
    var = (squares / m - mean.pow(2)) * m / (m - 1)
    snr: dict[str, float] = {}
    offset = 0
    for name, size in zip(names, sizes):
        v, mu = var[offset:offset + size], mean[offset:offset + size]
        ok = v > 1e-30 * (mu.pow(2) + 1e-300)
        snr[name] = float((mu[ok].pow(2) / v[ok]).mean()) if ok.any() else math.nan
        offset += size
    return GradientStatistics(num_examples=m, coherence=coherence, normalized_coherence=(coherence - 1) / (m - 1),
                              diversity=1.0 / coherence if coherence > 0 else math.inf,
                              mean_gradient_norm_sq=mean_sq, mean_example_norm_sq=example_sq, grad_norm_sq=grad_sq,
                              trace_cov=trace_cov, noise_scale=noise, snr_by_parameter=snr, meta=meta)


@analyzer
def gradient_statistics(model: nn.Module, loss_fn: LossFn, data: Data, *, params: ParamSpec = None,
                        chunk_size: int = 256, mode: Mode = "eval", dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, output: OutputFn | None = None,
                        process_group: Any = None) -> GradientStatistics:
    """m-coherence, diversity, ``B_simple`` and GSNR over all examples of ``data`` with O(P) memory.

    Per-example gradients are computed ``chunk_size`` at a time and folded into running sums
    (``sum g``, ``sum g^2`` entrywise and ``sum ||g||^2``), then discarded; with ``process_group``
    the sums of every rank's shard are added, so each rank gets the statistics of all examples.
    """
    fn = _function(model, loss_fn, data, params, mode, dtype, device, output, process_group)
    sums = _Sums()
    for g, _ in _stream_per_example(fn, chunk_size):
        sums.add(g)
    sums.summed_over_ranks(fn)
    return _statistics_from_sums(sums, fn.names, [math.prod(s) for s in fn.shapes],
                                 {"dtype": torch.float64, "num_gradients": sums.count})


def coherence(gradients: Tensor) -> float:
    """``alpha_m = ||sum_i g_i||^2 / sum_i ||g_i||^2`` of the rows of an ``(m, P)`` gradient matrix."""
    if not isinstance(gradients, Tensor) or gradients.dim() != 2 or len(gradients) < 1:
        raise ValueError("gradients must be an (m, P) tensor with m >= 1")
    if not torch.isfinite(gradients).all():
        raise ValueError("gradients contain NaN or infinite values")
    g = gradients.to(torch.float64)
    denominator = float(g.pow(2).sum())
    if denominator == 0:
        raise ValueError("every gradient is zero: coherence is undefined")
    return float(g.sum(0).pow(2).sum()) / denominator


@analyzer
def per_parameter_snr(model: nn.Module, loss_fn: LossFn, data: Data, *, params: ParamSpec = None,
                      chunk_size: int = 256, mode: Mode = "eval", dtype: torch.dtype | None = None,
                      device: str | torch.device | None = None, output: OutputFn | None = None,
                      process_group: Any = None) -> dict[str, Tensor]:
    """GSNR ``gbar_j^2 / var_j`` of every parameter entry, shaped like the parameters (inf where var = 0)."""
    fn = _function(model, loss_fn, data, params, mode, dtype, device, output, process_group)
    sums = _Sums()
    for g, _ in _stream_per_example(fn, chunk_size):
        sums.add(g)
    sums.summed_over_ranks(fn)
    if sums.count < 2:
        raise ValueError(f"GSNR needs at least 2 examples, got {sums.count}")
    m = sums.count
    mean = torch.cat(sums.total) / m
    var = ((torch.cat(sums.squares) / m - mean.pow(2)) * m / (m - 1)).clamp_min(0)
    ratio = mean.pow(2) / var
    return dict(zip(fn.names, fn.split(ratio)))


# ---------------------------------------------------------------------------------------------
# The two-batch noise-scale estimator
# ---------------------------------------------------------------------------------------------
@result_class
class NoiseScale(Result):
    """``B_simple = tr Sigma / |G|^2`` from ``num_pairs`` two-batch estimates (McCandlish et al. 2018).

    ``grad_norm_sq`` and ``trace_cov`` are averages of the per-pair unbiased estimates (kept in
    ``pair_grad_norm_sq`` / ``pair_trace_cov``); ``b_simple`` is their ratio and ``b_simple_stderr``
    its delta-method standard error over pairs.
    """

    b_simple: float
    b_simple_stderr: float
    grad_norm_sq: float
    trace_cov: float
    small_batch: int
    big_batch: int
    num_pairs: int
    pair_grad_norm_sq: np.ndarray
    pair_trace_cov: np.ndarray

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        pairs = np.arange(1, self.num_pairs + 1)
        running = np.cumsum(self.pair_trace_cov) / np.maximum(np.cumsum(self.pair_grad_norm_sq), 1e-300)
        ax.plot(pairs, running, color=MEASURED, label="running B_simple")
        ax.axhline(self.b_simple, color=PREDICTED, ls="--", label=f"B_simple = {self.b_simple:.3g}")
        ax.set_xlabel("pairs averaged")
        ax.legend()
        return ax


@analyzer
def gradient_noise_scale(model: nn.Module, loss_fn: LossFn, data: Batch, *, small_batch: int, big_batch: int,
                         num_pairs: int = 20, replacement: bool = True, params: ParamSpec = None,
                         seed: int = 0, mode: Mode = "eval", dtype: torch.dtype | None = None,
                         device: str | torch.device | None = None, output: OutputFn | None = None) -> NoiseScale:
    """The simple noise scale from pairs of batch sizes ``b = small_batch < B = big_batch``.

    Each pair draws ``B`` examples of ``data`` (one batch; i.i.d. with ``replacement``, which makes
    the estimates unbiased for the data's own distribution), splits them into ``B/b`` small
    batches, and forms ``|G_B|^2`` and the average ``|G_b|^2`` of the small batches.  Indices come
    from a CPU generator seeded by ``seed``.
    """
    if not (isinstance(small_batch, int) and isinstance(big_batch, int) and 1 <= small_batch < big_batch):
        raise ValueError(f"need integers 1 <= small_batch < big_batch, got {small_batch}, {big_batch}")
    if big_batch % small_batch:
        raise ValueError(f"big_batch ({big_batch}) must be a multiple of small_batch ({small_batch})")
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or num_pairs < 1:
        raise ValueError(f"num_pairs must be an integer >= 1, got {num_pairs!r}")
    fn = _function(model, loss_fn, data, params, mode, dtype, device, output)
    if not fn.single_batch:
        raise ValueError("gradient_noise_scale samples from one batch; concatenate the data")
    (everything,) = fn.batches()
    n = batch_size(everything)
    if not replacement and big_batch > n:
        raise ValueError(f"big_batch={big_batch} exceeds the {n} examples (sampling without replacement)")
    generator = torch.Generator().manual_seed(seed)
    g2_pairs, tr_pairs = [], []
    with fn.evaluating():
        for _ in range(num_pairs):
            idx = (torch.randint(n, (big_batch,), generator=generator) if replacement
                   else torch.randperm(n, generator=generator)[:big_batch]).to(fn.device)
            small = torch.cat(fn.group_gradients(slice_batch(everything, idx), small_batch), dim=1)
            small = small.to(torch.float64)  # (k, P): the gradient of each small batch
            big_sq = float(small.mean(0).pow(2).sum())  # G_B is the mean of its small batches
            small_sq = float(small.pow(2).sum(1).mean())
            g2_pairs.append((big_batch * big_sq - small_batch * small_sq) / (big_batch - small_batch))
            tr_pairs.append((small_sq - big_sq) / (1.0 / small_batch - 1.0 / big_batch))
    g2, tr = np.array(g2_pairs), np.array(tr_pairs)
    if not (np.all(np.isfinite(g2)) and np.all(np.isfinite(tr))):
        raise ValueError("batch gradients are not finite")
    g2_mean, tr_mean = float(g2.mean()), float(tr.mean())
    b = tr_mean / g2_mean if g2_mean != 0 else math.copysign(math.inf, tr_mean)
    stderr = (float(np.std(tr - b * g2, ddof=1) / math.sqrt(num_pairs) / abs(g2_mean))
              if num_pairs > 1 and math.isfinite(b) else math.nan)
    return NoiseScale(b_simple=b, b_simple_stderr=stderr, grad_norm_sq=g2_mean, trace_cov=tr_mean,
                      small_batch=small_batch, big_batch=big_batch, num_pairs=num_pairs, pair_grad_norm_sq=g2,
                      pair_trace_cov=tr, meta={"dtype": torch.float64,
                                               "num_gradients": num_pairs * (big_batch // small_batch)})


# ---------------------------------------------------------------------------------------------
# Cosines between the gradients of groups of examples
# ---------------------------------------------------------------------------------------------
@result_class
class GroupCosines(Result):
    """Cosines between the mean gradients of groups of examples (classes, domains)."""

    groups: np.ndarray
    counts: np.ndarray
    norms: np.ndarray
    cosines: np.ndarray

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        image = ax.imshow(self.cosines, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(self.groups)), self.groups)
        ax.set_yticks(range(len(self.groups)), self.groups)
        ax.figure.colorbar(image, ax=ax, label="cosine of mean gradients")
        ax.grid(False)
        return ax


@analyzer
def group_gradient_cosines(model: nn.Module, loss_fn: LossFn, data: Data, *, groups: Tensor | None = None,
                           params: ParamSpec = None, chunk_size: int = 256, mode: Mode = "eval",
                           dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                           output: OutputFn | None = None) -> GroupCosines:
    """Cosine matrix of ``G_k = mean_{i in group k} g_i`` (memory: groups x P).

    ``groups`` holds one integer group id per example in the order ``data`` yields them (default:
    the targets, i.e. the classes).  Groups with no examples are left out.
    """
    fn = _function(model, loss_fn, data, params, mode, dtype, device, output)
    sums: dict[int, Tensor] = {}
    counts: dict[int, int] = {}
    offset = 0
    for pieces, y in _stream_per_example(fn, chunk_size):
        g = torch.cat(pieces, dim=1)
        if groups is None:
            ids = y
        else:
            ids = groups[offset:offset + len(g)]
            if len(ids) != len(g):
                raise ValueError(f"groups has {len(groups)} entries but data has more examples")
        if ids.dtype.is_floating_point or ids.dim() != 1:
            raise ValueError("group ids must be a 1-D integer tensor (class labels or domain ids)")
        offset += len(g)
        g = g.to(torch.float64)
        for k in torch.unique(ids).tolist():
            mask = (ids == k).to(g.device)
            sums[k] = sums.get(k, 0) + g[mask].sum(0)
            counts[k] = counts.get(k, 0) + int(mask.sum())
    if groups is not None and offset != len(groups):
        raise ValueError(f"groups has {len(groups)} entries but data has {offset} examples")
    if len(sums) < 2:
        raise ValueError("need at least 2 groups to compare gradients")
    keys = sorted(sums)
    means = torch.stack([sums[k] / counts[k] for k in keys])
    norms = means.norm(dim=1)
    unit = means / norms.clamp_min(1e-300)[:, None]
    return GroupCosines(groups=np.array(keys), counts=np.array([counts[k] for k in keys]),
                        norms=norms.cpu().numpy(), cosines=(unit @ unit.T).cpu().numpy(),
                        meta={"dtype": torch.float64, "num_gradients": offset})


# ---------------------------------------------------------------------------------------------
# Ranks of gradients, distance from initialisation
# ---------------------------------------------------------------------------------------------
@analyzer
def gradient_ranks(model: nn.Module, loss_fn: LossFn, data: Data, *, params: ParamSpec = None,
                   chunk_size: int = 256, mode: Mode = "eval", dtype: torch.dtype | None = None,
                   device: str | torch.device | None = None, output: OutputFn | None = None) -> RankResult:
    """Effective and stable rank of the ``(N, P)`` per-example gradient matrix (via its N x N Gram)."""
    g = per_example_gradients(model, loss_fn, data, params=params, chunk_size=chunk_size, mode=mode, dtype=dtype,
                              device=device, output=output).to(torch.float64)
    if not torch.isfinite(g).all():
        raise ValueError("per-example gradients are not finite")
    eig = torch.linalg.eigvalsh(g @ g.T).flip(0).clamp_min(0).cpu().numpy()
    sigma = np.sqrt(eig)
    effective, stable = _ranks_from_singular_values(sigma)
    return RankResult(effective_rank=effective, stable_rank=stable, singular_values=sigma, shape=tuple(g.shape),
                      meta={"dtype": torch.float64})


@analyzer
def parameter_snapshot(model: nn.Module, *, params: ParamSpec = None) -> dict[str, Tensor]:
    """Independent copies (``clone``, not ``detach``) of the selected parameters."""
    return {n: p.detach().clone() for n, p in select_parameters(model, params).items()}


@analyzer
def distance_from_init(model: nn.Module, initial: dict[str, Tensor]) -> float:
    """``||w - w_0||_2`` over the parameters named in ``initial`` (from :func:`parameter_snapshot`)."""
    current = dict(model.named_parameters())
    missing = [n for n in initial if n not in current]
    if missing:
        raise ValueError(f"the model has no parameters {missing}")
    total = 0.0
    for name, w0 in initial.items():
        w = current[name].detach()
        if w.shape != w0.shape:
            raise ValueError(f"parameter {name!r} has shape {tuple(w.shape)}, the snapshot {tuple(w0.shape)}")
        total += float((w.to(torch.float64) - w0.to(device=w.device, dtype=torch.float64)).pow(2).sum())
    return math.sqrt(total)


# ---------------------------------------------------------------------------------------------
# Monitors for theorylab.train
# ---------------------------------------------------------------------------------------------
def coherence_monitor(loss_fn: LossFn, data: Data, *, name: str = "gradients", every: int = 1,
                      params: ParamSpec = None, chunk_size: int = 256):
    """Monitor of ``coherence``, ``normalized_coherence``, ``noise_scale`` and ``diversity`` over ``data``."""
    from theorylab.train import Monitor

    def measure(model: nn.Module, step: int) -> dict[str, float]:
        s = gradient_statistics(model, loss_fn, data, params=params, chunk_size=chunk_size, mode="keep")
        return {"coherence": s.coherence, "normalized_coherence": s.normalized_coherence,
                "noise_scale": s.noise_scale, "diversity": s.diversity}

    return Monitor(name, measure, every)


def noise_scale_monitor(loss_fn: LossFn, data: Batch, *, small_batch: int, big_batch: int, num_pairs: int = 20,
                        name: str = "b_simple", every: int = 1, seed: int = 0):
    """Monitor of the two-batch ``B_simple`` (and its standard error)."""
    from theorylab.train import Monitor

    def measure(model: nn.Module, step: int) -> dict[str, float]:
        r = gradient_noise_scale(model, loss_fn, data, small_batch=small_batch, big_batch=big_batch,
                                 num_pairs=num_pairs, seed=seed + step, mode="keep")
        return {"value": r.b_simple, "stderr": r.b_simple_stderr}

    return Monitor(name, measure, every)


def distance_monitor(model: nn.Module, *, name: str = "distance_from_init", every: int = 1, params: ParamSpec = None):
    """Monitor of ``||w_t - w_0||``; the snapshot ``w_0`` is taken now, when the monitor is made."""
    from theorylab.train import Monitor

    initial = parameter_snapshot(model, params=params)
    return Monitor(name, lambda m, step: distance_from_init(m, initial), every)
