"""Feature learning on planted features: the two-layer patch network of the feature-noise data model, how far a
layer's neurons have learned each planted feature, and how much a training loss oscillates.

* :class:`PatchNetwork`: ``f(x) = (1/m) sum_r s_r sum_p sigma(<w_r, x_p>)`` over the patches ``x_p`` of an
  input, with ``2m`` filters ``w_r`` shared by every patch, fixed output signs ``s_r = +1`` (the first ``m``)
  and ``-1`` (the last ``m``) and ``sigma(z) = max(0, z)^q``: the two-layer convolutional network of the
  feature-learning analyses (Cao, Chen, Belkin & Gu 2022, "Benign overfitting in two-layer convolutional
  neural networks", NeurIPS, Sec. 3, with polynomial ReLU ``q > 1``), used on the feature-noise data of
  :func:`theorylab.tasks.feature_noise_patches` (Lu, Wu, Yang & Zou 2024).
* :func:`planted_feature_alignment`: for a weight matrix ``W`` (rows: neurons ``w_r``) and planted feature
  vectors ``f_k`` (rows of ``features``), the signed projections ``P[r, k] = s_r <w_r, f_k>`` and cosines
  ``C[r, k] = s_r cos(w_r, f_k)``, with ``s_r`` the sign with which neuron ``r`` votes for the positive class.
  ``P`` is the feature-learning coefficient of Cao et al. 2022 (their signal-noise decomposition tracks
  ``<w_{j,r}, j mu>``): a neuron adds ``sigma(<w_r, f_k>)`` to its class's output on a patch ``f_k``, so a
  feature is learned when some neuron's ``P`` has grown well past its size at a small initialisation
  (``~ init_std ||f_k||``).  Per feature, ``learned[k] = max_r P[r, k]`` and ``alignment[k] = max_r C[r, k]``.
* :func:`loss_path_ratio`: the path length of a loss curve over its net descent,
  ``sum_t |l_{t+1} - l_t| / (l_0 - l_T)``: 1 for a monotone descent, large when the loss goes up and down.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from theorylab.analyzer import analyzer
from theorylab.plotting import MEASURED, axes_or_new
from theorylab.representations import weight_matrices
from theorylab.results import Result, result_class


class PatchNetwork(nn.Module):
    """The two-layer patch network of the module docstring: inputs ``(N, patches, dim)``, outputs ``(N,)``.

    ``width`` filters (even: half vote for each class) in ``filters.weight`` (``width x dim``), drawn
    ``N(0, init_std^2)``; ``signs`` (a buffer) holds the fixed output signs ``s_r``.
    """

    def __init__(self, dim: int, width: int, *, power: int = 2, init_std: float = 0.01, seed: int | None = None):
        super().__init__()
        if dim < 1 or width < 2 or width % 2:
            raise ValueError(f"need dim >= 1 and an even width >= 2, got dim={dim}, width={width}")
        if isinstance(power, bool) or not isinstance(power, int) or power < 1:
            raise ValueError(f"power must be an integer >= 1, got {power!r}")
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std}")
        self.power = power
        self.filters = nn.Linear(dim, width, bias=False)
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.filters.weight.copy_(init_std * torch.randn(width, dim, generator=generator))
        self.register_buffer("signs", torch.where(torch.arange(width) < width // 2, 1.0, -1.0))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"inputs must have shape (N, patches, dim), got {tuple(x.shape)}")
        activations = torch.relu(self.filters(x)) ** self.power          # (N, patches, width)
        return activations.sum(1) @ self.signs.to(x.dtype) / (len(self.signs) // 2)

    def extra_repr(self) -> str:
        return f"power={self.power}"


@result_class
class FeatureAlignment(Result):
    """Signed projections and cosines of a layer's neurons on planted features (module docstring)."""

    layer: str
    projections: np.ndarray
    cosines: np.ndarray
    learned: np.ndarray
    alignment: np.ndarray

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        k = np.arange(len(self.learned))
        ax.bar(k, self.learned, color=MEASURED)
        ax.set_xticks(k)
        ax.set(xlabel="planted feature k", ylabel=r"$\max_r\ s_r \langle w_r, f_k\rangle$",
               title=f"features learned by {self.layer}")
        return ax


def _float64(value: Tensor | np.ndarray) -> Tensor:
    """A float64 CPU tensor of a tensor or array (read only: it may share the caller's memory)."""
    return torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float64)


@analyzer
def planted_feature_alignment(model: nn.Module, features: Tensor | np.ndarray, *,
                              params: str | Sequence[str] | None = None,
                              signs: Tensor | np.ndarray | None = None) -> FeatureAlignment:
    """How far the neurons of one weight matrix have learned each planted feature (module docstring).

    ``features`` is ``(K, dim)``; the matrix is the one selected weight matrix (``params``) whose rows have
    ``dim`` entries.  ``signs`` (one per neuron, default +1) orients each neuron towards the class it votes
    for (``PatchNetwork.signs``).
    """
    f = _float64(features)
    if f.dim() != 2 or f.shape[0] < 1:
        raise ValueError(f"features must have shape (K, dim) with K >= 1, got {tuple(f.shape)}")
    if (f.norm(dim=1) == 0).any():
        raise ValueError("a planted feature is the zero vector")
    matrices, _ = weight_matrices(model, params)
    matching = {name: w for name, w in matrices.items() if w.shape[1] == f.shape[1]}
    if len(matching) != 1:
        raise ValueError(f"need exactly one selected weight matrix with rows of {f.shape[1]} entries (the features' "
                         f"dimension), found {sorted(matching) or 'none'}: select it with params")
    (layer, w), = matching.items()
    w = w.detach().cpu().to(torch.float64)
    s = torch.ones(len(w), dtype=torch.float64) if signs is None else _float64(signs).ravel()
    if s.shape != (len(w),):
        raise ValueError(f"signs must have one entry per neuron ({len(w)}), got {tuple(s.shape)}")
    projections = s[:, None] * (w @ f.T)
    cosines = projections / (w.norm(dim=1, keepdim=True).clamp_min(1e-300) * f.norm(dim=1)[None, :])
    return FeatureAlignment(layer=layer, projections=projections.numpy(), cosines=cosines.numpy(),
                            learned=projections.max(0).values.numpy(), alignment=cosines.max(0).values.numpy())


def loss_path_ratio(losses: Sequence[float] | np.ndarray) -> float:
    """``sum_t |l_{t+1} - l_t| / (l_0 - l_T)`` of a loss curve (module docstring); ``inf`` without net descent."""
    values = np.asarray(losses, dtype=np.float64).ravel()
    if values.size < 2 or not np.all(np.isfinite(values)):
        raise ValueError(f"need at least two finite loss values, got {values.size} values")
    descent = values[0] - values[-1]
    return float(np.abs(np.diff(values)).sum() / descent) if descent > 0 else float("inf")
