"""Mutual information between a layer's representation, the inputs and the labels (the information plane).

A network maps inputs ``X`` to a layer's representation ``T = h(X)``; Shwartz-Ziv & Tishby 2017
("Opening the black box of deep neural networks via information", arXiv:1703.00810) follow every layer
in the plane ``(I(X; T), I(T; Y))`` during training.  ``X`` is uniform over the ``N`` distinct inputs of
the data, so a deterministic ``T`` has ``I(X; T) = H(T)``, infinite for continuous ``T``: every estimate
needs a coarse-graining, and what it measures depends on it (Saxe et al. 2018, "On the information
bottleneck theory of deep learning", ICLR, Sec. 2).  Two are provided, each with its known bias:

* **binning** (Shwartz-Ziv & Tishby 2017): every unit's activity is cut into ``bins`` equal bins over a
  stated ``value_range`` (for tanh ``(-1, 1)``; None: the observed ``[min, max]`` of the layer at that
  moment, as Saxe et al. do for ReLU).  Then ``I(X; T) = H(T_b)`` and ``I(T; Y) = H(T_b) - H(T_b | Y)``
  (plug-in entropies of the binned codes, in bits).  The plug-in mutual information of two discrete
  variables is biased *upwards* by about ``(m_a - 1)(m_b - 1) / (2 N ln 2)`` bits for ``m`` occupied
  values (Miller 1955; Paninski 2003, "Estimation of entropy and mutual information", Neural Comput.
  15, Sec. 4), and binning a continuous pair loses information (data processing: ``I(A_b; B_b) <= I(A; B)``).
* **KDE bounds** (Kolchinsky & Tracey 2017, "Estimating mixture entropy with pairwise distances",
  Entropy 19(7), Eq. 10 and 12; used by Saxe et al. 2018 with noise ``sigma^2 = 0.1``): ``T = h(X) + Z``
  with ``Z ~ N(0, sigma^2 I)`` is a mixture of ``N`` Gaussians, and with ``D_ij = |h_i - h_j|^2 / (2 sigma^2)``

      -(1/N) sum_i log (1/N) sum_j exp(-D_ij / 4)  <=  I(X; T)  <=  -(1/N) sum_i log (1/N) sum_j exp(-D_ij)

  (Bhattacharyya lower bound, Kullback-Leibler upper bound; in bits after dividing by ``ln 2``).
  ``I(T; Y) = H(T) - sum_y p_y H(T | Y = y)`` uses the same pairwise estimate of each entropy.
  For ``h ~ N(0, s^2 I_d)`` and ``r = s^2 / sigma^2``, as ``N`` grows the two bounds tend to
  ``(d/2) [ln(1 + r/4) + r / (4 + r)]`` and ``(d/2) [ln(1 + r) + r / (1 + r)]`` nats, around the exact
  ``(d/2) ln(1 + r)`` (the tests check all three).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from theorylab._state import Mode
from theorylab.analyzer import analyzer
from theorylab.batches import Data, iter_batches, parts
from theorylab.plotting import MEASURED, axes_or_new
from theorylab.representations import LayerSpec, layer_activations
from theorylab.results import Result, result_class

Estimator = Literal["binning", "kde"]
LN2 = math.log(2.0)


def _rows(name: str, value: Tensor | np.ndarray) -> np.ndarray:
    arr = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
    arr = arr.reshape(len(arr), -1) if arr.ndim != 1 else arr[:, None]
    if len(arr) < 2:
        raise ValueError(f"{name} needs at least 2 samples, got {len(arr)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _codes(rows: np.ndarray) -> np.ndarray:
    """One integer per distinct row (for plug-in entropies of discrete vectors)."""
    return np.unique(rows, axis=0, return_inverse=True)[1].ravel()


def plugin_entropy(codes: np.ndarray) -> float:
    """``H = -sum_v p_v log2 p_v`` of the empirical distribution of ``codes`` (one value per sample), in bits."""
    _, counts = np.unique(np.asarray(codes), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def discrete_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in ``I(A; B) = H(A) + H(B) - H(A, B)`` in bits of two discrete samples (rows are values)."""
    a, b = _rows("a", a), _rows("b", b)
    if len(a) != len(b):
        raise ValueError(f"a and b must have one value per sample, got {len(a)} and {len(b)}")
    ca, cb = _codes(a), _codes(b)
    return plugin_entropy(ca) + plugin_entropy(cb) - plugin_entropy(_codes(np.stack([ca, cb], 1)))


def bin_activity(t: Tensor | np.ndarray, *, bins: int, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Every entry of ``t`` (samples x units) replaced by the index of its bin among ``bins`` equal bins over
    ``value_range`` (None: the observed ``[min, max]``); values outside the range go to the end bins."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    t = _rows("t", t)
    low, high = (float(t.min()), float(t.max())) if value_range is None else map(float, value_range)
    if not high >= low:
        raise ValueError(f"value_range must be (low, high) with high >= low, got {value_range}")
    if high == low:
        return np.zeros(t.shape, dtype=np.int64)
    return np.clip(np.floor((t - low) / (high - low) * bins), 0, bins - 1).astype(np.int64)


def binned_information(t: Tensor | np.ndarray, labels: Tensor | np.ndarray, *, bins: int = 30,
                       value_range: tuple[float, float] | None = None) -> tuple[float, float]:
    """``(I(X; T), I(T; Y))`` in bits for a deterministic ``T`` of ``N`` distinct inputs, by binning."""
    codes = _codes(bin_activity(t, bins=bins, value_range=value_range))
    y = _rows("labels", labels)
    if len(y) != len(codes):
        raise ValueError(f"labels must have one row per sample, got {len(y)} for {len(codes)} samples")
    return plugin_entropy(codes), discrete_mutual_information(codes, y)


def _pairwise_log_mean(h: np.ndarray, scale: float) -> np.ndarray:
    """``log (1/N) sum_j exp(-|h_i - h_j|^2 / scale)`` for every ``i`` (stable log-sum-exp)."""
    x = torch.as_tensor(h, dtype=torch.float64)
    sq = (x.pow(2).sum(1)[:, None] + x.pow(2).sum(1)[None, :] - 2 * x @ x.T).clamp_min(0)
    return (torch.logsumexp(-sq / scale, dim=1) - math.log(len(x))).numpy()


def kde_information(t: Tensor | np.ndarray, labels: Tensor | np.ndarray | None = None, *, noise_var: float = 0.1,
                    bound: Literal["upper", "lower"] = "upper") -> tuple[float, float | None]:
    """``(I(X; T), I(T; Y))`` in bits of ``T = h(X) + N(0, noise_var I)`` by the pairwise-distance bounds.

    ``bound="upper"``: the Kullback-Leibler bound (Saxe et al. 2018's estimator); ``"lower"``: the
    Bhattacharyya bound.  ``I(T; Y)`` is None without ``labels``.  See the module docstring.
    """
    if not noise_var > 0:
        raise ValueError(f"noise_var must be > 0, got {noise_var}")
    if bound not in ("upper", "lower"):
        raise ValueError(f"bound must be 'upper' or 'lower', got {bound!r}")
    h = _rows("t", t)
    scale = 2 * noise_var * (1.0 if bound == "upper" else 4.0)
    info_x = float(-_pairwise_log_mean(h, scale).mean()) / LN2
    if labels is None:
        return info_x, None
    codes = _codes(_rows("labels", labels))
    if len(codes) != len(h):
        raise ValueError(f"labels must have one row per sample, got {len(codes)} for {len(h)} samples")
    conditional = sum((codes == c).mean() * float(-_pairwise_log_mean(h[codes == c], scale).mean())
                      for c in np.unique(codes)) / LN2
    return info_x, info_x - conditional


@result_class
class InformationPlane(Result):
    """``I(X; T)`` and ``I(T; Y)`` (bits) of each layer; ``entropy_x = log2 N`` and ``entropy_y = H(Y)`` are their
    ceilings."""

    layers: list[str]
    info_x: list[float]
    info_y: list[float]
    estimator: str
    entropy_x: float
    entropy_y: float

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.plot(self.info_x, self.info_y, "o-", color=MEASURED)
        for name, ix, iy in zip(self.layers, self.info_x, self.info_y):
            ax.annotate(name, (ix, iy), fontsize=7)
        ax.set(xlabel="I(X; T) (bits)", ylabel="I(T; Y) (bits)", title=f"information plane ({self.estimator})")
        return ax


@analyzer
def information_plane(model: nn.Module, data: Data, *, layers: LayerSpec | Sequence[LayerSpec],
                      estimator: Estimator = "binning", bins: int = 30,
                      value_range: tuple[float, float] | None = None, noise_var: float = 0.1, mode: Mode = "eval",
                      dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> InformationPlane:
    """The information plane of ``layers`` over ``data`` (each input one equally likely value of ``X``;
    class labels as ``Y``), by ``"binning"`` (``bins``, ``value_range``) or the ``"kde"`` upper bound
    (``noise_var``).  All activations are held in memory: small data sets only.  See the module docstring."""
    if estimator not in ("binning", "kde"):
        raise ValueError(f"estimator must be 'binning' or 'kde', got {estimator!r}")
    acts = layer_activations(model, data, layers=layers, mode=mode, dtype=dtype, device=device)
    labels = torch.cat([parts(b).targets.reshape(-1).cpu() for b in iter_batches(data)]).numpy()
    values = [binned_information(a, labels, bins=bins, value_range=value_range) if estimator == "binning"
              else kde_information(a, labels, noise_var=noise_var) for a in acts.values()]
    return InformationPlane(layers=list(acts), info_x=[v[0] for v in values], info_y=[float(v[1]) for v in values],
                            estimator=estimator, entropy_x=math.log2(len(labels)),
                            entropy_y=plugin_entropy(labels))
