"""Neural collapse (Papyan, Han & Donoho 2020, "Prevalence of neural collapse during the terminal
phase of deep learning training", PNAS 117(40)), streamed over a data loader.

Notation: features ``h_i`` (dimension ``d``) with labels ``y_i`` in ``{0..C-1}``, ``n_c`` samples in
class ``c``, ``N = sum_c n_c``; class means ``mu_c``, global mean ``mu_G = (1/N) sum_i h_i``, centred
means ``m_c = mu_c - mu_G`` (the columns of ``M``, ``d x C``); classifier ``W`` (``C x d``) with
rows ``w_c`` and bias ``b``.

* **NC1** (within-class variability collapse, Papyan et al.):
  ``NC1 = tr(Sigma_W Sigma_B^+) / C`` with ``Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T``
  and ``Sigma_B = (1/C) sum_c m_c m_c^T`` (rank ``C - 1``; ``^+`` is the pseudo-inverse).  Also
  reported: ``tr(Sigma_W) / tr(Sigma_B)`` (``nc1_trace_ratio``), which needs no pseudo-inverse.
* **NC2** (convergence to a simplex ETF, Papyan et al.):
  equinorm ``std_c ||m_c|| / mean_c ||m_c||`` (population std) of the means and of the rows ``w_c``;
  equiangularity ``std_{c<c'} cos(m_c, m_c')``; maximal-angle deviation
  ``mean_{c<c'} |cos(m_c, m_c') + 1/(C-1)|``; and the distance to a simplex ETF of Zhu et al.
  2021 (NeurIPS, "A geometric analysis of neural collapse with unconstrained features"):
  ``|| G / ||G||_F - (I - 11^T/C) / sqrt(C-1) ||_F`` with ``G = M^T M`` (``W W^T`` for the classifier).
* **NC3** (self-duality, Papyan et al.): ``|| W^T / ||W||_F - M / ||M||_F ||_F^2``.
* **NC4** (nearest class centre, Papyan et al.): the fraction of samples where the
  classifier's decision ``argmax_c (w_c . h + b_c)`` (or the network's output) differs from
  ``argmin_c ||h - mu_c||``.

Every measure is 0 for exactly collapsed features whose means form a simplex ETF around any
global offset.  The statistics are accumulated in two passes over the data with memory
``O(C d)``: pass one gives the class means, pass two the exactly centred within-class scatter
projected on the span of ``M`` (all NC1 needs) and the NC4 disagreements.

Imbalanced classes (Dang, Tran, Osher, Tran-The, Ho & Nguyen 2023, "Neural collapse in deep
linear networks: from balanced to imbalanced data", ICML): see :func:`imbalanced_ufm_geometry`
for the predicted geometry and :func:`class_geometry` for the measured one.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from theorylab._state import Mode
from theorylab.adapters import OutputFn
from theorylab.analyzer import analyzer
from theorylab.batches import Data
from theorylab.plotting import MEASURED, PREDICTED, axes_or_new
from theorylab.provenance import make_meta
from theorylab.representations import LayerSpec, Site, resolve_layers, stream_activations
from theorylab.results import Result, result_class

# one batch as the collapse statistics see it: features (n, d), labels (n,), decisions (n,) or None
_FeatureBatch = tuple[Tensor, Tensor, Tensor | None]


@result_class
class CollapseResult(Result):
    """The neural-collapse measures NC1-NC4 of one feature set (see the module docstring).

    Classifier measures are None when no classifier was given; ``nc4`` is None when there is
    neither a classifier nor a network decision.
    """

    nc1: float
    nc1_trace_ratio: float
    equinorm_means: float
    equiangularity: float
    max_angle_deviation: float
    etf_distance_means: float
    equinorm_classifier: float | None
    etf_distance_classifier: float | None
    nc3: float | None
    nc4: float | None
    num_classes: int
    num_samples: int
    class_counts: np.ndarray
    mean_norms: np.ndarray
    mean_cosines: np.ndarray

    def plot(self, ax: Any = None) -> Any:
        """Bar chart of the measures (log scale): all are 0 at exact collapse."""
        ax = axes_or_new(ax)
        names = ["nc1", "equinorm_means", "equiangularity", "max_angle_deviation", "etf_distance_means",
                 "equinorm_classifier", "etf_distance_classifier", "nc3", "nc4"]
        shown = [(n, getattr(self, n)) for n in names if getattr(self, n) is not None]
        ax.bar(range(len(shown)), [max(v, 1e-16) for _, v in shown], color=MEASURED)
        ax.set_xticks(range(len(shown)), [n for n, _ in shown], rotation=45, ha="right")
        ax.set_yscale("log")
        ax.set_title("neural collapse (0 = collapsed)")
        return ax


@result_class
class LayerCollapse(Result):
    """NC1 (and the ETF distance of the class means) of the features of each layer, in depth order."""

    layers: list[str]
    nc1: np.ndarray
    nc1_trace_ratio: np.ndarray
    etf_distance_means: np.ndarray
    results: dict[str, CollapseResult]

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.semilogy(np.arange(len(self.layers)), self.nc1, "o-", color=MEASURED, label="NC1")
        ax.set_xticks(np.arange(len(self.layers)), self.layers, rotation=30)
        ax.set_xlabel("layer")
        ax.set_ylabel("NC1 = tr(Sw Sb^+)/C")
        return ax


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def _checked_batch(features: Tensor, labels: Tensor, num_classes: int | None, where: str) -> tuple[Tensor, Tensor]:
    if not isinstance(features, Tensor) or not isinstance(labels, Tensor):
        raise ValueError(f"{where}: features and labels must be tensors")
    if features.dim() != 2:
        raise ValueError(f"{where}: features must have shape (samples, dim), got {tuple(features.shape)}")
    if labels.dim() != 1 or len(labels) != len(features):
        raise ValueError(f"{where}: labels must have shape ({len(features)},), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{where}: labels must be integer class indices, got dtype {labels.dtype}")
    if not torch.isfinite(features).all():
        raise ValueError(f"{where}: features contain NaN or infinite values")
    if len(labels) and int(labels.min()) < 0:
        raise ValueError(f"{where}: labels must be >= 0, got {int(labels.min())}")
    if num_classes is not None and len(labels) and int(labels.max()) >= num_classes:
        raise ValueError(f"{where}: label {int(labels.max())} is out of range for num_classes={num_classes}")
    return features.detach().to(torch.float64), labels.detach().long().to(features.device)


def _check_classifier(weight: Tensor | None, bias: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    if weight is None:
        if bias is not None:
            raise ValueError("classifier_bias given without classifier_weight")
        return None, None
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise ValueError("classifier_weight must be a (num_classes, dim) tensor")
    if not torch.isfinite(weight).all():
        raise ValueError("classifier_weight contains NaN or infinite values")
    weight = weight.detach().to(torch.float64)
    if bias is not None:
        if not isinstance(bias, Tensor) or bias.shape != (weight.shape[0],):
            raise ValueError(f"classifier_bias must have shape ({weight.shape[0]},)")
        if not torch.isfinite(bias).all():
            raise ValueError("classifier_bias contains NaN or infinite values")
        bias = bias.detach().to(torch.float64)
    return weight, bias


# ---------------------------------------------------------------------------------------------
# The two-pass accumulation
# ---------------------------------------------------------------------------------------------
class _MeansPass:
    """Pass one: per-class counts and sums (float64).  ``C`` is inferred as max label + 1 if not given."""

    def __init__(self, num_classes: int | None):
        self.num_classes = num_classes
        self.sums: Tensor | None = None
        self.counts: Tensor | None = None

    def add(self, h: Tensor, y: Tensor) -> None:
        h, y = _checked_batch(h, y, self.num_classes, "features")
        size = self.num_classes if self.num_classes is not None else int(y.max()) + 1 if len(y) else 0
        if self.sums is None or self.counts is None:
            self.sums = torch.zeros(size, h.shape[1], dtype=torch.float64, device=h.device)
            self.counts = torch.zeros(size, dtype=torch.float64, device=h.device)
        elif h.shape[1] != self.sums.shape[1]:
            raise ValueError(f"features change dimension between batches ({self.sums.shape[1]} vs {h.shape[1]})")
        if size > self.sums.shape[0]:  # the labels seen so far did not reach this class
            grow = size - self.sums.shape[0]
            self.sums = torch.cat([self.sums, self.sums.new_zeros(grow, self.sums.shape[1])])
            self.counts = torch.cat([self.counts, self.counts.new_zeros(grow)])
        self.sums.index_add_(0, y, h)
        self.counts.index_add_(0, y, torch.ones_like(y, dtype=torch.float64))

    def finish(self) -> tuple[Tensor, Tensor]:
        if self.sums is None or self.counts is None or self.counts.sum() == 0:
            raise ValueError("data is empty: it holds no samples")
        if self.sums.shape[0] < 2:
            raise ValueError("neural collapse needs at least 2 classes; the labels hold only one")
        empty = torch.nonzero(self.counts == 0).flatten().tolist()
        if empty:
            raise ValueError(f"classes {empty} have no samples (num_classes={self.sums.shape[0]}); "
                             "every class in [0, num_classes) must be present")
        return self.sums / self.counts[:, None], self.counts


class _ScatterPass:
    """Pass two: exactly centred within-class statistics and nearest-centre disagreements."""

    def __init__(self, means: Tensor, counts: Tensor, weight: Tensor | None, bias: Tensor | None):
        c, d = means.shape
        if weight is not None and weight.shape != (c, d):
            raise ValueError(f"classifier_weight has shape {tuple(weight.shape)}, expected ({c}, {d}) "
                             f"for {c} classes and {d}-dimensional features")
        self.means, self.counts = means, counts
        self.weight = weight.to(means.device) if weight is not None else None
        self.bias = bias.to(means.device) if bias is not None else None
        n = counts.sum()
        self.centred = means - (counts[:, None] * means).sum(0) / n  # rows m_c, so M = centred.T
        u, s, _ = torch.linalg.svd(self.centred.T, full_matrices=False)  # M = U S V^T
        keep = s > s.max() * max(c, d) * torch.finfo(torch.float64).eps
        if not keep.any():
            raise ValueError("all class means coincide: the between-class covariance is zero, NC1 is undefined")
        self.basis = u[:, keep] / s[keep]  # x^T Sigma_B^+ x = C ||basis^T x||^2 since Sigma_B = M M^T / C
        self.projected = self.within_trace = 0.0
        self.disagree, self.decided = 0, True

    def add(self, h: Tensor, y: Tensor, decision: Tensor | None) -> None:
        h, y = _checked_batch(h, y, self.means.shape[0], "features")
        resid = h - self.means[y]
        self.projected += float((resid @ self.basis).pow(2).sum())
        self.within_trace += float(resid.pow(2).sum())
        if decision is None and self.weight is not None:
            logits = h @ self.weight.T + (self.bias if self.bias is not None else 0.0)
            decision = logits.argmax(dim=1)
        if decision is None:
            self.decided = False
            return
        nearest = torch.cdist(h, self.means).argmin(dim=1)
        self.disagree += int((nearest != decision.to(nearest.device)).sum())

    def finish(self, meta: dict[str, Any]) -> CollapseResult:
        c = self.means.shape[0]
        n = float(self.counts.sum())
        centred, weight = self.centred, self.weight
        norms = centred.norm(dim=1)
        cos = _cosines(centred)
        off = cos[torch.triu(torch.ones(c, c, dtype=torch.bool, device=cos.device), diagonal=1)]
        equinorm_w = etf_w = nc3 = None
        if weight is not None:
            equinorm_w = _std(weight.norm(dim=1)) / float(weight.norm(dim=1).mean())
            etf_w = _etf_distance(weight @ weight.T)
            m = centred.T
            nc3 = float(torch.linalg.norm(weight.T / torch.linalg.norm(weight) - m / torch.linalg.norm(m)) ** 2)
        between_trace = float(centred.pow(2).sum()) / c
        return CollapseResult(
            # tr(Sigma_W Sigma_B^+) / C = (1/N) sum_i ||S^-1 U^T (h_i - mu_{y_i})||^2
            nc1=self.projected / n, nc1_trace_ratio=self.within_trace / n / between_trace,
            equinorm_means=_std(norms) / float(norms.mean()), equiangularity=_std(off),
            max_angle_deviation=float((off + 1.0 / (c - 1)).abs().mean()),
            etf_distance_means=_etf_distance(centred @ centred.T),
            equinorm_classifier=equinorm_w, etf_distance_classifier=etf_w, nc3=nc3,
            nc4=self.disagree / n if self.decided else None, num_classes=c, num_samples=int(n),
            class_counts=self.counts.cpu().numpy().astype(np.int64), mean_norms=norms.cpu().numpy(),
            mean_cosines=cos.cpu().numpy(), meta=meta)


def _std(values: Tensor) -> float:
    return float(values.std(unbiased=False))


def _etf_distance(gram: Tensor) -> float:
    """``|| G/||G||_F - (I - 11^T/C)/sqrt(C-1) ||_F`` (Zhu et al. 2021)."""
    c = gram.shape[0]
    etf = (torch.eye(c, dtype=gram.dtype, device=gram.device) - 1.0 / c) / math.sqrt(c - 1)
    return float(torch.linalg.norm(gram / torch.linalg.norm(gram) - etf))


def _cosines(vectors: Tensor) -> Tensor:
    """Cosine matrix of the rows of ``vectors`` (zero rows give cosine 0)."""
    norms = vectors.norm(dim=1).clamp_min(torch.finfo(vectors.dtype).tiny)
    unit = vectors / norms[:, None]
    return unit @ unit.T


def _collapse(batches: Callable[[], Iterator[_FeatureBatch]], *, num_classes: int | None,
              weight: Tensor | None, bias: Tensor | None, meta: dict[str, Any]) -> CollapseResult:
    """Run both passes over ``batches()`` (called twice) for one feature set."""
    first = _MeansPass(num_classes)
    for h, y, _ in batches():
        first.add(h, y)
    second = _ScatterPass(*first.finish(), weight, bias)
    for h, y, decision in batches():
        second.add(h, y, decision)
    return second.finish(meta)


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------
def neural_collapse(features: Tensor | Iterable[tuple[Tensor, Tensor]], labels: Tensor | None = None, *,
                    classifier_weight: Tensor | None = None, classifier_bias: Tensor | None = None,
                    num_classes: int | None = None) -> CollapseResult:
    """NC1-NC4 of given features (see the module docstring for every definition).

    ``features`` is a ``(N, d)`` tensor with ``labels`` ``(N,)``, or (streaming) a re-iterable of
    ``(features, labels)`` batches with ``labels=None``: the result is the same, the memory
    ``O(C d)``.  ``num_classes`` defaults to the largest label + 1; every class must have samples.
    NC3, the classifier's NC2 and NC4 need ``classifier_weight`` (``C x d``) and optional
    ``classifier_bias``; NC4 compares ``argmax(W h + b)`` with the nearest class mean.
    """
    if num_classes is not None and num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    weight, bias = _check_classifier(classifier_weight, classifier_bias)
    if isinstance(features, Tensor):
        if labels is None:
            raise ValueError("labels are required with a features tensor")
        h, y = _checked_batch(features, labels, num_classes, "features")

        def batches() -> Iterator[_FeatureBatch]:
            yield h, y, None
    else:
        if labels is not None:
            raise ValueError("pass labels inside the (features, labels) batches when streaming")
        if iter(features) is features:  # type: ignore[call-overload]
            raise ValueError("features is a one-shot iterator; pass a list of batches or a DataLoader")

        def batches() -> Iterator[_FeatureBatch]:
            for item in features:
                if not (isinstance(item, (tuple, list)) and len(item) == 2):
                    raise ValueError("each streamed item must be a (features, labels) pair")
                yield item[0], item[1], None
    return _collapse(batches, num_classes=num_classes, weight=weight, bias=bias, meta=make_meta(dtype=torch.float64))


def _classifier_of(model: nn.Module, classifier: LayerSpec | None) -> tuple[Tensor | None, Tensor | None]:
    """The effective weight (``multiplier * W``) and bias (``bias_multiplier * b``) of a classifier module."""
    if classifier is None:
        return None, None
    module = next(iter(resolve_layers(model, classifier).values()))
    weight = getattr(module, "weight", None)
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise ValueError(f"classifier {type(module).__name__} has no 2-D weight")
    scale = float(getattr(module, "multiplier", 1.0))
    bias = getattr(module, "bias", None)
    bias = bias * float(getattr(module, "bias_multiplier", 1.0)) if isinstance(bias, Tensor) else None
    return _check_classifier((scale * weight).detach(), bias.detach() if bias is not None else None)


@analyzer
def model_collapse(model: nn.Module, data: Data, *, layer: LayerSpec | None = None, site: Site = "input",
                   classifier: LayerSpec | None = None, num_classes: int | None = None, mode: Mode = "eval",
                   dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                   output: OutputFn | None = None) -> CollapseResult:
    """NC1-NC4 of the features a model computes, streamed over ``data`` (two forward passes).

    The features are the ``site`` ("input" or "output") of ``layer``, one flattened vector per
    sample; by default the input of ``classifier`` (the penultimate features).  With ``classifier``
    (a module name or module with a 2-D ``weight``) the classifier measures use its weight (times its
    ``multiplier`` if it has one) and NC4 compares the *network's* decision ``argmax(model(x))`` with
    the nearest class mean.  Hooks are removed and the model left as it was.
    """
    if layer is None and classifier is None:
        raise ValueError("name the feature layer, the classifier, or both")
    weight, bias = _classifier_of(model, classifier)
    layers = resolve_layers(model, layer if layer is not None else classifier)  # type: ignore[arg-type]
    (name,) = layers

    def batches() -> Iterator[_FeatureBatch]:
        for acts, y, out in stream_activations(model, data, layers, site=site, mode=mode, dtype=dtype, device=device,
                                               output=output):
            if y is None:
                raise ValueError("neural collapse needs class labels: the batches hold no targets")
            decision = out.argmax(dim=1) if classifier is not None and out.dim() == 2 else None
            yield acts[name], y, decision

    return _collapse(batches, num_classes=num_classes, weight=weight, bias=bias,
                     meta={"dtype": torch.float64, "layer": name, "site": site})


@analyzer
def layerwise_collapse(model: nn.Module, data: Data, *, layers: Sequence[LayerSpec], site: Site = "output",
                       num_classes: int | None = None, mode: Mode = "eval", dtype: torch.dtype | None = None,
                       device: str | torch.device | None = None, output: OutputFn | None = None) -> LayerCollapse:
    """NC1 of the features at each of ``layers`` (NC1 through depth), streamed: two forward passes
    over ``data`` serve every layer, memory ``O(C d)`` per layer."""
    chosen = resolve_layers(model, layers)

    def stream() -> Iterator[tuple[dict[str, Tensor], Tensor]]:
        for acts, y, _ in stream_activations(model, data, chosen, site=site, mode=mode, dtype=dtype, device=device,
                                             output=output):
            if y is None:
                raise ValueError("neural collapse needs class labels: the batches hold no targets")
            yield acts, y

    first = {name: _MeansPass(num_classes) for name in chosen}
    for acts, y in stream():
        for name, h in acts.items():
            first[name].add(h, y)
    second = {name: _ScatterPass(*first[name].finish(), None, None) for name in chosen}
    for acts, y in stream():
        for name, h in acts.items():
            second[name].add(h, y, None)
    results = {name: second[name].finish(make_meta(dtype=torch.float64, layer=name)) for name in chosen}
    names = list(chosen)
    return LayerCollapse(layers=names, nc1=np.array([results[n].nc1 for n in names]),
                         nc1_trace_ratio=np.array([results[n].nc1_trace_ratio for n in names]),
                         etf_distance_means=np.array([results[n].etf_distance_means for n in names]),
                         results=results, meta={"dtype": torch.float64, "site": site})


# ---------------------------------------------------------------------------------------------
# Imbalanced classes: the predicted and the measured geometry
# ---------------------------------------------------------------------------------------------
@result_class
class ClassGeometry(Result):
    """Uncentred class means and classifier rows: norms and cosines (for bias-free geometries).

    ``max_mean_cosine`` / ``max_classifier_cosine`` are the largest ``|cos|`` between two different
    classes (0 for an orthogonal frame); ``classifier_cosines`` close to 1 between minority classes
    is minority collapse (Fang, He, Long & Su 2021, PNAS 118(43)).
    """

    class_counts: np.ndarray
    mean_norms: np.ndarray
    mean_cosines: np.ndarray
    max_mean_cosine: float
    classifier_norms: np.ndarray | None
    classifier_cosines: np.ndarray | None
    max_classifier_cosine: float | None

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.plot(self.class_counts, self.mean_norms, "o", color=MEASURED, label="||mu_k||")
        if self.classifier_norms is not None:
            ax.plot(self.class_counts, self.classifier_norms, "s", color="C1", label="||w_k||")
        ax.set_xlabel("samples in class n_k")
        ax.set_ylabel("norm")
        ax.legend()
        return ax


def _max_off_diagonal(cos: Tensor) -> float:
    c = cos.shape[0]
    mask = ~torch.eye(c, dtype=torch.bool, device=cos.device)
    return float(cos[mask].abs().max())


def class_geometry(features: Tensor | Iterable[tuple[Tensor, Tensor]], labels: Tensor | None = None, *,
                   classifier_weight: Tensor | None = None, num_classes: int | None = None) -> ClassGeometry:
    """Norms and cosines of the *uncentred* class means ``mu_k`` and classifier rows ``w_k``.

    Inputs as for :func:`neural_collapse` (a tensor with labels, or streamed batches).  Bias-free
    models are compared with an orthogonal frame around the origin, hence no centring.
    """
    weight, _ = _check_classifier(classifier_weight, None)
    first = _MeansPass(num_classes)
    if isinstance(features, Tensor):
        if labels is None:
            raise ValueError("labels are required with a features tensor")
        first.add(features, labels)
    else:
        if labels is not None:
            raise ValueError("pass labels inside the (features, labels) batches when streaming")
        for h, y in features:
            first.add(h, y)
    means, counts = first.finish()
    if weight is not None and weight.shape != means.shape:
        raise ValueError(f"classifier_weight has shape {tuple(weight.shape)}, expected {tuple(means.shape)}")
    mean_cos = _cosines(means)
    w_norms = w_cos = w_max = None
    if weight is not None:
        weight = weight.to(means.device)
        w_cos_t = _cosines(weight)
        w_norms, w_cos, w_max = weight.norm(dim=1).cpu().numpy(), w_cos_t.cpu().numpy(), _max_off_diagonal(w_cos_t)
    return ClassGeometry(class_counts=counts.cpu().numpy().astype(np.int64), mean_norms=means.norm(dim=1).cpu().numpy(),
                         mean_cosines=mean_cos.cpu().numpy(), max_mean_cosine=_max_off_diagonal(mean_cos),
                         classifier_norms=w_norms, classifier_cosines=w_cos, max_classifier_cosine=w_max,
                         meta=make_meta(dtype=torch.float64))


@result_class
class UFMGeometry(Result):
    """The predicted global minimiser of the bias-free MSE unconstrained-features model (see
    :func:`imbalanced_ufm_geometry`): ``w_k`` and ``h_k`` orthogonal across classes, with these norms."""

    class_counts: np.ndarray
    lambda_w: float
    lambda_h: float
    classifier_norms: np.ndarray
    feature_norms: np.ndarray
    collapsed: np.ndarray

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        order = np.argsort(self.class_counts)
        ax.plot(self.class_counts[order], self.classifier_norms[order], "-", color=PREDICTED, label="||w_k|| predicted")
        ax.plot(self.class_counts[order], self.feature_norms[order], "--", color=PREDICTED, label="||h_k|| predicted")
        ax.set_xlabel("samples in class n_k")
        ax.legend()
        return ax


def imbalanced_ufm_geometry(class_counts: Sequence[int], *, lambda_w: float, lambda_h: float) -> UFMGeometry:
    """Global minimiser of the bias-free MSE unconstrained-features model with imbalanced classes.

    Model (Dang et al. 2023, ICML, the plain UFM with ``M = 1``):
    ``min_{W,H} (1/2N) ||W H - Y||_F^2 + (lambda_W/2) ||W||_F^2 + (lambda_H/2) ||H||_F^2`` with one
    free feature column per sample and one-hot ``Y``.  At the minimiser features collapse to their
    class means ``h_k``, the ``h_k`` are mutually orthogonal and ``w_k`` is parallel to ``h_k``, with

        ``||w_k||^2 = s_k^2 = max(0, sqrt(n_k lambda_H / lambda_W) - N lambda_H)``,
        ``||h_k|| = s_k / (s_k^2 + N lambda_H) = s_k sqrt(lambda_W / (n_k lambda_H))``.

    Derivation (stated so it can be checked): with orthogonal directions the objective separates
    over classes; for class ``k`` with ``w_k = s u``, ``h_k = t u`` it is
    ``n_k/(2N) (s t - 1)^2 + lambda_W s^2 / 2 + lambda_H n_k t^2 / 2``.  Rescaling ``s -> c s``,
    ``t -> t / c`` balances ``lambda_W s^2 = lambda_H n_k t^2``; with ``p = s t`` the objective is
    ``n_k/(2N) (p - 1)^2 + p sqrt(n_k lambda_W lambda_H)``, minimised at
    ``p = max(0, 1 - N sqrt(lambda_W lambda_H / n_k))``, which gives the norms above.  Classes with
    ``n_k <= N^2 lambda_W lambda_H`` get ``w_k = h_k = 0`` (``collapsed``): the MSE form of minority
    collapse.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or len(counts) < 2:
        raise ValueError("class_counts must list at least 2 class sizes")
    if np.any(counts < 1) or np.any(counts != np.round(counts)):
        raise ValueError(f"class_counts must be positive integers, got {list(class_counts)}")
    for name, value in (("lambda_w", lambda_w), ("lambda_h", lambda_h)):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number > 0, got {value}")
    n = counts.sum()
    s2 = np.maximum(0.0, np.sqrt(counts * lambda_h / lambda_w) - n * lambda_h)
    s = np.sqrt(s2)
    return UFMGeometry(class_counts=counts.astype(np.int64), lambda_w=float(lambda_w), lambda_h=float(lambda_h),
                       classifier_norms=s, feature_norms=s / (s2 + n * lambda_h), collapsed=s2 == 0,
                       meta=make_meta())


# ---------------------------------------------------------------------------------------------
# Monitor for theorylab.train
# ---------------------------------------------------------------------------------------------
def collapse_monitor(data: Data, *, classifier: LayerSpec, layer: LayerSpec | None = None, site: Site = "input",
                     num_classes: int | None = None, name: str = "collapse", every: int = 1):
    """Monitor of NC1, the NC2 measures, NC3 and NC4 of :func:`model_collapse` over ``data``."""
    from theorylab.train import Monitor

    keys = ("nc1", "nc1_trace_ratio", "equinorm_means", "equiangularity", "max_angle_deviation",
            "etf_distance_means", "equinorm_classifier", "etf_distance_classifier", "nc3", "nc4")

    def measure(model: nn.Module, step: int) -> dict[str, float]:
        r = model_collapse(model, data, layer=layer, site=site, classifier=classifier, num_classes=num_classes,
                           mode="keep")
        return {k: float(getattr(r, k)) for k in keys if getattr(r, k) is not None}

    return Monitor(name, measure, every)
