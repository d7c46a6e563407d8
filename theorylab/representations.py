"""Representation measures: activations of any layer, dormant neurons, effective and stable rank,
and the empirical spectral density of weight matrices with a heavy-tail power-law fit.

* :func:`layer_activations` streams the activations of chosen layers over a data loader with
  forward hooks that are removed afterwards (the model is left exactly as it was).
* Dormant neurons (Sokar, Agarwal, Castro & Evci 2023, "The dormant neuron phenomenon in deep
  reinforcement learning", ICML): neuron ``i`` of a layer has score
  ``s_i = E_x|h_i(x)| / ((1/n) sum_k E_x|h_k(x)|)`` and is tau-dormant if ``s_i <= tau``.
* Effective rank (Roy & Vetterli 2007, "The effective rank: a measure of effective
  dimensionality", EUSIPCO): ``erank(A) = exp(-sum_i p_i log p_i)`` with ``p_i = sigma_i / sum_j sigma_j``;
  it is ``r`` for a matrix with ``r`` equal non-zero singular values and 1 for rank one.
  Stable rank (Rudelson & Vershynin 2007): ``srank(A) = ||A||_F^2 / ||A||_2^2 = sum sigma_i^2 / sigma_1^2``.
* Weight spectra (Martin & Mahoney 2021, "Implicit self-regularization in deep neural networks",
  JMLR 22(165)): the eigenvalues of ``X = W^T W / N`` for ``W`` of shape ``N x M`` (``N >= M`` after
  transposing); their tail is fitted by a power law ``rho(lambda) ~ lambda^-alpha`` with the
  maximum-likelihood estimator of Clauset, Shalizi & Newman 2009 (SIAM Review 51),
  ``alpha = 1 + n / sum_i log(lambda_i / lambda_min)``, standard error ``(alpha - 1) / sqrt(n)``,
  with ``lambda_min`` chosen to minimise the Kolmogorov-Smirnov distance, as they recommend.
  The Marchenko-Pastur bulk is in :mod:`theorylab.spectra`, not here.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from theorylab._params import select_parameters
from theorylab._state import Mode
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.batches import Data, parts
from theorylab.functional import ModelFunction
from theorylab.plotting import MEASURED, PREDICTED, axes_or_new
from theorylab.provenance import make_meta
from theorylab.results import Result, result_class

Site = Literal["input", "output"]
Layout = Literal["auto", "flat", "channels_last", "channels_first"]
LayerSpec = str | nn.Module
SITES: tuple[str, ...] = ("input", "output")
LAYOUTS: tuple[str, ...] = ("auto", "flat", "channels_last", "channels_first")


# ---------------------------------------------------------------------------------------------
# Activations of any layer, streamed with forward hooks
# ---------------------------------------------------------------------------------------------
def resolve_layers(model: nn.Module, layers: LayerSpec | Sequence[LayerSpec]) -> dict[str, nn.Module]:
    """Map each requested layer (a submodule name or a submodule of ``model``) to ``name -> module``."""
    items = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
    if not items:
        raise ValueError("layers is empty: name at least one layer")
    named = dict(model.named_modules())
    names = {id(m): n for n, m in named.items()}
    out: dict[str, nn.Module] = {}
    for item in items:
        if isinstance(item, str):
            if item not in named:
                raise ValueError(f"model has no submodule {item!r}; submodules are {[n for n in named if n]}")
            out[item] = named[item]
        elif isinstance(item, nn.Module):
            if id(item) not in names:
                raise ValueError(f"{type(item).__name__} is not a submodule of the model")
            out[names[id(item)] or "<model>"] = item
        else:
            raise ValueError(f"layers must be names or modules, got {type(item).__name__}")
    return out


def _as_tensor(value: Any, name: str) -> Tensor:
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    if not isinstance(value, Tensor):
        raise ValueError(f"layer {name!r} produced a {type(value).__name__}, not a tensor")
    return value


@contextmanager
def _hooks(layers: dict[str, nn.Module], site: Site, store: dict[str, Tensor]) -> Iterator[None]:
    """Register hooks writing each layer's input or output into ``store``; always removed on exit."""
    handles = []
    try:
        for name, module in layers.items():
            if site == "output":
                def hook(mod, inputs, output, name=name):
                    store[name] = _as_tensor(output, name).detach()
                handles.append(module.register_forward_hook(hook))
            else:
                def pre_hook(mod, inputs, name=name):
                    store[name] = _as_tensor(inputs, name).detach()
                handles.append(module.register_forward_pre_hook(pre_hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


_CHANNELS_FIRST_1D = (nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d, nn.InstanceNorm1d, nn.MaxPool1d,
                      nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)


def layout_of(activation: Tensor, module: nn.Module, layout: Layout) -> str:
    """The layout ``"auto"`` stands for: ``(B, d)`` flat; ``(B, T, d)`` tokens (channels last), except
    after 1-D convolutions, norms and pools, which are ``(B, C, L)``; ``(B, C, H, W, ...)`` channels first."""
    if layout != "auto":
        return layout
    if activation.dim() <= 2:
        return "flat"
    if activation.dim() == 3 and not isinstance(module, _CHANNELS_FIRST_1D):
        return "channels_last"
    return "channels_first"


def as_rows(activation: Tensor, layout: str) -> Tensor:
    """The activation as a ``(rows, features)`` matrix: per sample (flat), or per position (channels)."""
    if activation.dim() <= 1:
        return activation.reshape(-1, 1)
    if layout == "flat":
        return activation.flatten(1)
    if layout == "channels_last":
        return activation.reshape(-1, activation.shape[-1])
    return activation.movedim(1, -1).reshape(-1, activation.shape[1])


def stream_activations(model: nn.Module, data: Data, layers: dict[str, nn.Module], *, site: Site = "output",
                       mode: Mode = "eval", layout: Layout = "flat", dtype: torch.dtype | None = None,
                       device: str | torch.device | None = None, output: OutputFn | None = None,
                       function: ModelFunction | None = None,
                       ) -> Iterator[tuple[dict[str, Tensor], Tensor | None, Tensor]]:
    """Yield ``(activations by layer, targets, model outputs)`` batch by batch (no gradients).

    Each activation is a ``(rows, features)`` matrix per ``layout`` (:func:`layout_of`, :func:`as_rows`):
    ``"flat"`` one row per sample (every feature of a sample in one row), ``"channels_last"`` one row per
    token, ``"channels_first"`` one row per position with channels as features, ``"auto"`` chosen per
    layer.  The model is evaluated through :class:`theorylab.functional.ModelFunction` (``mode``,
    ``dtype``, ``device``, or a ``function`` the caller built); the hooks are removed whatever happens.
    """
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}, got {site!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    fn = function or ModelFunction(model, None, data, mode=mode, dtype=dtype, device=device, output=output,
                                   variables=False)
    store: dict[str, Tensor] = {}
    with fn.evaluating(), _hooks(layers, site, store), torch.no_grad():
        for batch in fn.batches():
            store.clear()
            outputs = fn.outputs({}, batch)
            missing = [n for n in layers if n not in store]
            if missing:
                raise ValueError(f"layers {missing} were not called in the forward pass")
            acts = {n: as_rows(store[n], layout_of(store[n], layers[n], layout)) for n in layers}
            yield acts, parts(batch).targets, outputs


@analyzer
def layer_activations(model: nn.Module, data: Data, *, layers: LayerSpec | Sequence[LayerSpec],
                      site: Site = "output", mode: Mode = "eval", layout: Layout = "flat",
                      dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                      output: OutputFn | None = None) -> dict[str, Tensor]:
    """Activations ``(rows, features)`` of each layer over all of ``data`` (in memory; small data only).

    ``site="output"`` takes what the layer returns, ``"input"`` what it receives (the input of a
    classifier is the penultimate feature vector); ``layout`` as in :func:`stream_activations`.
    Use the streaming analyzers for large data.
    """
    chosen = resolve_layers(model, layers)
    collected: dict[str, list[Tensor]] = {n: [] for n in chosen}
    for acts, _, _ in stream_activations(model, data, chosen, site=site, mode=mode, layout=layout, dtype=dtype,
                                         device=device, output=output):
        for n, a in acts.items():
            collected[n].append(a.cpu())
    return {n: torch.cat(p) for n, p in collected.items()}


# ---------------------------------------------------------------------------------------------
# Effective rank and stable rank
# ---------------------------------------------------------------------------------------------
def _check_matrix(matrix: Tensor, name: str = "matrix") -> Tensor:
    if not isinstance(matrix, Tensor):
        matrix = torch.as_tensor(np.asarray(matrix))
    if matrix.dim() != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(matrix.shape)}")
    if matrix.numel() == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(matrix).all():
        raise ValueError(f"{name} has NaN or infinite entries")
    return matrix.detach().to(torch.float64)


def _ranks_from_singular_values(sigma: np.ndarray) -> tuple[float, float]:
    total = sigma.sum()
    if total <= 0:
        raise ValueError("the matrix is zero: its effective and stable rank are undefined")
    p = sigma[sigma > 0] / total
    effective = float(np.exp(-(p * np.log(p)).sum()))
    stable = float((sigma ** 2).sum() / sigma[0] ** 2)
    return effective, stable


@result_class
class RankResult(Result):
    """Effective rank (Roy & Vetterli 2007) and stable rank of a matrix, with its singular values."""

    effective_rank: float
    stable_rank: float
    singular_values: np.ndarray
    shape: tuple[int, ...]

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.semilogy(np.arange(1, len(self.singular_values) + 1), self.singular_values, ".-", color=MEASURED)
        ax.set_xlabel("index i")
        ax.set_ylabel("singular value")
        ax.set_title(f"erank {self.effective_rank:.3g}, srank {self.stable_rank:.3g}")
        return ax


def matrix_ranks(matrix: Tensor) -> RankResult:
    """Effective rank ``exp(H(sigma / sum sigma))`` and stable rank ``sum sigma^2 / sigma_1^2`` (float64)."""
    a = _check_matrix(matrix)
    sigma = torch.linalg.svdvals(a).cpu().numpy()
    effective, stable = _ranks_from_singular_values(sigma)
    return RankResult(effective_rank=effective, stable_rank=stable, singular_values=sigma,
                      shape=tuple(a.shape), meta=make_meta(dtype=torch.float64))


@result_class
class LayerRanks(Result):
    """Effective and stable rank of each layer's activations, weights or per-example gradients."""

    kind: str
    layers: list[str]
    effective_rank: np.ndarray
    stable_rank: np.ndarray
    dimension: np.ndarray
    skipped: dict[str, str] = field(default_factory=dict)

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        x = np.arange(len(self.layers))
        ax.plot(x, self.effective_rank, "o-", color=MEASURED, label="effective rank")
        ax.plot(x, self.stable_rank, "s--", color="C1", label="stable rank")
        ax.plot(x, self.dimension, ":", color="grey", label="dimension")
        ax.set_xticks(x, self.layers, rotation=30)
        ax.set_ylabel(f"rank of {self.kind}")
        ax.legend()
        return ax


class _StreamedGram:
    """The spectrum of a streamed ``(rows, d)`` matrix ``A`` from its smaller Gram, ``A A^T`` or ``A^T A``.

    Rows are kept while there are fewer than ``d`` of them (then ``A A^T``, ``rows x rows``, has the
    same non-zero eigenvalues); once they outnumber the features, ``A^T A`` (``d x d``) is
    accumulated instead.  Memory is ``min(rows, d) x d``.  With ``center`` the column means are
    removed exactly at the end (``A^T A - N m m^T``, or ``H A A^T H`` with ``H = I - 11^T / N``).
    """

    def __init__(self) -> None:
        self.rows: list[Tensor] = []
        self.gram: Tensor | None = None
        self.sums: Tensor | None = None
        self.count = 0

    def add(self, a: Tensor) -> None:
        a = a.to(torch.float64)
        self.sums = a.sum(0) if self.sums is None else self.sums + a.sum(0)
        self.count += len(a)
        if self.gram is not None:
            self.gram += a.T @ a
            return
        self.rows.append(a)
        if self.count > a.shape[1]:  # more rows than features: switch to the d x d Gram
            stacked = torch.cat(self.rows)
            self.gram, self.rows = stacked.T @ stacked, []

    def eigenvalues(self, center: bool) -> tuple[np.ndarray, int]:
        """Eigenvalues of the Gram (descending, >= 0) and the feature dimension."""
        assert self.sums is not None
        n, d = self.count, len(self.sums)
        if self.gram is not None:
            gram = self.gram - (torch.outer(self.sums, self.sums) / n if center else 0)
        else:
            a = torch.cat(self.rows)
            if center:
                a = a - self.sums / n
            gram = a @ a.T
        return torch.linalg.eigvalsh(gram).flip(0).clamp_min(0).cpu().numpy(), d


@analyzer
def activation_ranks(model: nn.Module, data: Data, *, layers: LayerSpec | Sequence[LayerSpec],
                     site: Site = "output", center: bool = False, mode: Mode = "eval", layout: Layout = "auto",
                     dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                     output: OutputFn | None = None) -> LayerRanks:
    """Ranks of the activation matrix ``A`` (rows x features) of each layer, streamed.

    Rows are samples, or tokens/positions for sequence and convolutional activations (``layout``,
    :func:`stream_activations`; default ``"auto"``).  The singular values of ``A`` are the square roots
    of the eigenvalues of its smaller Gram, accumulated batch by batch in float64 (memory
    ``min(rows, features) x features``; the data never has to fit in memory).  With ``center`` the
    feature means are removed first (ranks of the covariance instead of the second moment).
    """
    chosen = resolve_layers(model, layers)
    grams = {name: _StreamedGram() for name in chosen}
    for acts, _, _ in stream_activations(model, data, chosen, site=site, mode=mode, layout=layout, dtype=dtype,
                                         device=device, output=output):
        for name, a in acts.items():
            if not torch.isfinite(a).all():
                raise ValueError(f"activations of layer {name!r} are not finite")
            grams[name].add(a)
    eff, stab, dims = [], [], []
    for name in chosen:
        eig, d = grams[name].eigenvalues(center)
        e, s = _ranks_from_singular_values(np.sqrt(eig))
        eff.append(e), stab.append(s), dims.append(d)
    return LayerRanks(kind="activations", layers=list(chosen), effective_rank=np.array(eff),
                      stable_rank=np.array(stab), dimension=np.array(dims),
                      meta={"num_rows": {n: g.count for n, g in grams.items()}})


def weight_matrices(model: nn.Module, params: str | Sequence[str] | None = None
                    ) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The selected parameters that are matrices, as ``(out, in)`` (convolution kernels flattened to
    ``out x (in * kernel)``, leading singleton axes dropped: a ``(1, T, d)`` position embedding is
    ``T x d``), and the others with the reason they are left out (a bias, a norm scale, a ``(1, 1, d)``
    class token: a vector is not a matrix)."""
    matrices, skipped = {}, {}
    for name, p in select_parameters(model, params).items():
        w = p.detach()
        while w.dim() > 2 and w.shape[0] == 1:  # (1, T, d) position embeddings are T x d matrices
            w = w[0]
        if w.dim() < 2 or min(w.flatten(1).shape) < 2:
            skipped[name] = f"shape {tuple(p.shape)} is not a matrix"
        else:
            matrices[name] = w.flatten(1)
    if not matrices:
        raise ValueError(f"no weight matrices among the selected parameters: {skipped}")
    return matrices, skipped


@analyzer
def weight_ranks(model: nn.Module, *, params: str | Sequence[str] | None = None) -> LayerRanks:
    """Ranks of every weight matrix of ``model`` (:func:`weight_matrices`; the others are listed in
    ``skipped``)."""
    matrices, skipped = weight_matrices(model, params)
    eff, stab, dims = [], [], []
    for m in matrices.values():
        r = matrix_ranks(m)
        eff.append(r.effective_rank), stab.append(r.stable_rank), dims.append(min(r.shape))
    return LayerRanks(kind="weights", layers=list(matrices), effective_rank=np.array(eff), stable_rank=np.array(stab),
                      dimension=np.array(dims), skipped=skipped, meta={"dtype": torch.float64})


# ---------------------------------------------------------------------------------------------
# Dormant neurons
# ---------------------------------------------------------------------------------------------
@result_class
class DormantResult(Result):
    """Fraction of tau-dormant neurons per layer and overall (Sokar et al. 2023)."""

    tau: float
    layers: list[str]
    dormant_fraction: np.ndarray
    num_neurons: np.ndarray
    overall: float
    scores: dict[str, np.ndarray]

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.bar(np.arange(len(self.layers)), self.dormant_fraction, color=MEASURED)
        ax.set_xticks(np.arange(len(self.layers)), self.layers, rotation=30)
        ax.set_ylabel(f"dormant fraction (tau={self.tau:g})")
        return ax


@analyzer
def dormant_ratio(model: nn.Module, data: Data, *, layers: LayerSpec | Sequence[LayerSpec], tau: float = 0.0,
                  site: Site = "output", mode: Mode = "eval", layout: Layout = "auto",
                  dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                  output: OutputFn | None = None, process_group: Any = None) -> DormantResult:
    """Neuron scores ``s_i = E|h_i| / mean_k E|h_k|`` over ``data`` and the tau-dormant fractions.

    A neuron is a feature of the layer: the last dimension of a ``(B, d)`` or ``(B, T, d)`` activation
    (the expectation runs over samples and tokens), a channel of a convolutional ``(B, C, ...)``
    activation (``|h|`` averaged over positions, as Sokar et al. do); ``layout`` overrides the
    choice (:func:`stream_activations`).  ``tau = 0`` counts exactly dead units.  A layer whose
    activations are all zero has every neuron dormant.
    """
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not (tau >= 0 and math.isfinite(tau)):
        raise ValueError(f"tau must be a finite number >= 0, got {tau!r}")
    chosen = resolve_layers(model, layers)
    fn = ModelFunction(model, None, data, mode=mode, dtype=dtype, device=device, output=output, variables=False,
                       process_group=process_group)
    sums: dict[str, Tensor] = {}
    rows: dict[str, int] = {}
    for acts, _, _ in stream_activations(model, data, chosen, site=site, layout=layout, function=fn):
        for name, a in acts.items():
            sums[name] = sums.get(name, 0) + a.to(torch.float64).abs().sum(0)
            rows[name] = rows.get(name, 0) + len(a)
    scores, fractions, sizes = {}, [], []
    for name in chosen:  # with a process group, the sums of every rank's shard
        rows[name] = int(fn.count_over_ranks(rows[name], data=data))
        mean_abs = (fn.sum_over_ranks(sums[name]) / rows[name]).cpu().numpy()
        avg = mean_abs.mean()
        s = mean_abs / avg if avg > 0 else np.zeros_like(mean_abs)
        scores[name] = s
        fractions.append(float(np.mean(s <= tau)))
        sizes.append(len(s))
    sizes_arr, frac_arr = np.array(sizes), np.array(fractions)
    return DormantResult(tau=float(tau), layers=list(chosen), dormant_fraction=frac_arr, num_neurons=sizes_arr,
                         overall=float((frac_arr * sizes_arr).sum() / sizes_arr.sum()), scores=scores,
                         meta={"num_rows": rows})


# ---------------------------------------------------------------------------------------------
# Empirical spectral density of weights and the heavy-tail power-law exponent
# ---------------------------------------------------------------------------------------------
def weight_eigenvalues(weight: Tensor) -> np.ndarray:
    """Eigenvalues of ``X = W^T W / N`` (``W`` is ``N x M`` with ``N >= M`` after transposing), ascending."""
    w = _check_matrix(weight.flatten(1) if isinstance(weight, Tensor) and weight.dim() > 2 else weight, "weight")
    if w.shape[0] < w.shape[1]:
        w = w.T
    return np.sort(torch.linalg.svdvals(w).cpu().numpy() ** 2 / w.shape[0])


@result_class
class PowerLawFit(Result):
    """Power-law tail ``p(x) ~ x^-alpha`` for ``x >= xmin`` (Clauset, Shalizi & Newman 2009)."""

    alpha: float
    alpha_stderr: float
    xmin: float
    ks_distance: float
    num_tail: int
    num_total: int
    values: np.ndarray

    def plot(self, ax: Any = None) -> Any:
        """Empirical complementary CDF of the tail with the fitted power law over it (log-log)."""
        ax = axes_or_new(ax)
        tail = np.sort(self.values[self.values >= self.xmin])
        ccdf = 1.0 - np.arange(len(tail)) / len(tail)
        ax.loglog(tail, ccdf, ".", color=MEASURED, label="eigenvalues (tail)")
        ax.loglog(tail, (tail / self.xmin) ** (1 - self.alpha), color=PREDICTED, label=f"alpha = {self.alpha:.2f}")
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("P(X >= x)")
        ax.legend()
        return ax


def _alpha_mle(tail: np.ndarray, xmin: float) -> float:
    return 1.0 + len(tail) / float(np.log(tail / xmin).sum())


def _ks(tail: np.ndarray, xmin: float, alpha: float) -> float:
    """Kolmogorov-Smirnov distance between the tail's empirical CDF and the fitted power law."""
    tail = np.sort(tail)
    model_cdf = 1.0 - (tail / xmin) ** (1.0 - alpha)
    n = len(tail)
    upper = np.arange(1, n + 1) / n
    lower = np.arange(0, n) / n
    return float(max(np.max(np.abs(upper - model_cdf)), np.max(np.abs(lower - model_cdf))))


def fit_power_law(values: np.ndarray | Tensor, *, xmin: float | None = None, min_tail: int = 10) -> PowerLawFit:
    """Maximum-likelihood power-law exponent of the tail of ``values`` (continuous data, CSN 2009).

    With ``xmin=None`` every candidate ``xmin`` (each distinct value leaving at least ``min_tail``
    points in the tail) is tried and the one with the smallest Kolmogorov-Smirnov distance kept.
    """
    x = np.asarray(values.detach().cpu().numpy() if isinstance(values, Tensor) else values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(x)):
        raise ValueError("values contain NaN or infinite entries")
    x = x[x > 0]
    if min_tail < 2:
        raise ValueError(f"min_tail must be >= 2, got {min_tail}")
    if len(x) < min_tail:
        raise ValueError(f"need at least {min_tail} positive values to fit a power law, got {len(x)}")
    x = np.sort(x)
    if xmin is None:
        candidates = np.unique(x[: len(x) - min_tail + 1])
        best = None
        for c in candidates:
            tail = x[x >= c]
            if len(tail) < min_tail or np.all(tail == c):
                continue
            a = _alpha_mle(tail, c)
            d = _ks(tail, c, a)
            if best is None or d < best[0]:
                best = (d, c)
        if best is None:
            raise ValueError("no candidate xmin leaves a tail with distinct values")
        xmin = float(best[1])
    elif not (xmin > 0 and math.isfinite(xmin)):
        raise ValueError(f"xmin must be a finite number > 0, got {xmin}")
    tail = x[x >= xmin]
    if len(tail) < min_tail or np.all(tail == xmin):
        raise ValueError(f"xmin={xmin} leaves {len(tail)} values in the tail (need {min_tail}, not all equal)")
    alpha = _alpha_mle(tail, xmin)
    return PowerLawFit(alpha=alpha, alpha_stderr=(alpha - 1.0) / math.sqrt(len(tail)), xmin=float(xmin),
                       ks_distance=_ks(tail, xmin, alpha), num_tail=len(tail), num_total=len(x), values=x,
                       meta=make_meta(dtype=torch.float64))


@result_class
class WeightSpectrum(Result):
    """Empirical spectral density of ``W^T W / N`` for each weight matrix, with a power-law tail fit."""

    layers: list[str]
    eigenvalues: dict[str, np.ndarray]
    fits: dict[str, PowerLawFit]
    alpha: np.ndarray
    skipped: dict[str, str] = field(default_factory=dict)

    def plot(self, ax: Any = None) -> Any:
        """Histogram (log-log density) of the eigenvalues of each layer."""
        ax = axes_or_new(ax)
        for i, name in enumerate(self.layers):
            ev = self.eigenvalues[name]
            ev = ev[ev > 0]
            bins = np.logspace(np.log10(ev.min()), np.log10(ev.max()), 30)
            ax.hist(ev, bins=bins, density=True, histtype="step", color=f"C{i % 10}",
                    label=f"{name}: alpha={self.alpha[i]:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("eigenvalue of W^T W / N")
        ax.legend()
        return ax


@analyzer
def weight_spectrum(model: nn.Module, *, params: str | Sequence[str] | None = None,
                    min_tail: int = 10) -> WeightSpectrum:
    """The ESD and power-law alpha of each weight matrix of ``model`` (:func:`weight_matrices`;
    parameters that are not matrices are listed in ``skipped`` with the reason)."""
    matrices, skipped = weight_matrices(model, params)
    eigs, fits = {}, {}
    for name, m in matrices.items():
        eigs[name] = weight_eigenvalues(m)
        fits[name] = fit_power_law(eigs[name], min_tail=min(min_tail, len(eigs[name])))
    return WeightSpectrum(layers=list(matrices), eigenvalues=eigs, fits=fits,
                          alpha=np.array([fits[n].alpha for n in matrices]), skipped=skipped,
                          meta={"dtype": torch.float64})


# ---------------------------------------------------------------------------------------------
# Monitors for theorylab.train
# ---------------------------------------------------------------------------------------------
def dormant_monitor(data: Data, *, layers: LayerSpec | Sequence[LayerSpec], tau: float = 0.0, site: Site = "output",
                    name: str = "dormant", every: int = 1):
    """Monitor of the tau-dormant fraction of each layer and overall."""
    from theorylab.train import Monitor

    def measure(model: nn.Module, step: int) -> dict[str, float]:
        r = dormant_ratio(model, data, layers=layers, tau=tau, site=site, mode="keep")
        return {"overall": r.overall, **{n: float(f) for n, f in zip(r.layers, r.dormant_fraction)}}

    return Monitor(name, measure, every)


def rank_monitor(data: Data, *, layers: LayerSpec | Sequence[LayerSpec], site: Site = "output",
                 name: str = "activation_rank", every: int = 1):
    """Monitor of the effective and stable rank of each layer's activations."""
    from theorylab.train import Monitor

    def measure(model: nn.Module, step: int) -> dict[str, float]:
        r = activation_ranks(model, data, layers=layers, site=site, mode="keep")
        out = {f"{n}.effective": float(e) for n, e in zip(r.layers, r.effective_rank)}
        out.update({f"{n}.stable": float(s) for n, s in zip(r.layers, r.stable_rank)})
        return out

    return Monitor(name, measure, every)


def weight_alpha_monitor(*, params: str | Sequence[str] | None = None, name: str = "weight_alpha", every: int = 1):
    """Monitor of the power-law exponent alpha of each weight matrix's spectrum."""
    from theorylab.train import Monitor

    def measure(model: nn.Module, step: int) -> dict[str, float]:
        r = weight_spectrum(model, params=params)
        return {n: float(a) for n, a in zip(r.layers, r.alpha)}

    return Monitor(name, measure, every)
