"""Probes for networks trained on algorithmic tasks (grokking): softmax collapse, alignment of the gradient
with the logit-scaling direction, and Fourier features.

* **Softmax collapse** (Prieto, Barsbey, Mediano & Birdal 2025, "Grokking at the edge of numerical
  stability", ICLR, Sec. 3): once the correct logit exceeds the others by more than about
  ``ln(1/eps)`` (17 in float32, 37 in float64), the floating-point softmax rounds the correct class to
  probability 1 and the sample's cross-entropy to exactly 0, and its gradient vanishes.
  :func:`softmax_collapse_fraction` is the fraction of samples whose cross-entropy, computed in
  ``dtype`` (default: the model's), is exactly zero.
* **Logit-scaling alignment** (same paper, Sec. 4, "naive loss minimization"): past 100% training accuracy
  the loss can be lowered by scaling the logits up without changing any prediction.  For a positively
  homogeneous network (bias-free ReLU layers, ``f(c theta) = c^L f(theta)``) that direction is the
  parameter vector itself, so :func:`logit_scaling_cosine` is ``cos(-grad L(theta), theta)`` over the
  selected parameters: near 1 when the gradient only scales the logits.
* **Fourier features** (Nanda, Chan, Lieberum, Smith & Steinhardt 2023, "Progress measures for grokking
  via mechanistic interpretability", ICLR, Sec. 4): a network that has learned modular addition
  embeds each residue ``a`` by ``cos(2 pi k a / p)``, ``sin(2 pi k a / p)`` for a few key frequencies
  ``k``; in a two-layer MLP each hidden unit picks one frequency, different units different ones
  (Gromov 2023, "Grokking modular arithmetic", arXiv:2301.02679).  :func:`fourier_spectrum` gives the
  power of an embedding matrix ``(features, p)`` at each frequency ``k = 1 .. p // 2`` (``k`` and
  ``p - k`` together, the constant left out), the fraction of the power in the ``top`` strongest
  frequencies (about ``top / (p // 2)`` for random embeddings, 1 for a planted solution with at most
  ``top`` frequencies), and the per-feature concentration: the share of each feature's power at its
  own strongest frequency, averaged with the features' powers as weights (about ``H_m / m`` for
  ``m = p // 2`` frequencies and random features, ``H_m`` the harmonic number; 1 when every feature has
  one frequency).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from theorylab._params import ParamSpec
from theorylab._state import Mode
from theorylab.adapters import OutputFn, check_classification
from theorylab.analyzer import analyzer
from theorylab.batches import Data
from theorylab.functional import ModelFunction
from theorylab.plotting import MEASURED, axes_or_new
from theorylab.results import Result, result_class

LossFn = Callable[[Tensor, Tensor], Tensor]


@analyzer
def softmax_collapse_fraction(model: nn.Module, data: Data, *, mode: Mode = "eval", dtype: torch.dtype | None = None,
                              device: str | torch.device | None = None, output: OutputFn | None = None) -> float:
    """Fraction of the samples of ``data`` whose cross-entropy is exactly 0 in ``dtype`` (module docstring)."""
    fn = ModelFunction(model, None, data, mode=mode, dtype=dtype, device=device, output=output, variables=False)
    collapsed, total = 0, 0
    with torch.no_grad(), fn.evaluating():
        for batch in fn.batches():
            logits, labels = fn.outputs({}, batch), fn.targets(batch)
            check_classification(logits, labels, "softmax collapse")
            losses = nn.functional.cross_entropy(logits, labels.long(), reduction="none")
            collapsed += int((losses == 0).sum())
            total += len(labels)
    return collapsed / total


@analyzer
def logit_scaling_cosine(model: nn.Module, loss_fn: LossFn, data: Data, *, params: ParamSpec = None,
                         mode: Mode = "eval", dtype: torch.dtype | None = None,
                         device: str | torch.device | None = None, output: OutputFn | None = None) -> float:
    """``cos(-grad L(theta), theta)`` over the selected parameters (module docstring); 0 where the gradient is 0."""
    fn = ModelFunction(model, loss_fn, data, params=params, mode=mode, dtype=dtype, device=device, output=output)
    gradient = fn.join(fn.gradient()).to(torch.float64)
    theta = fn.join([p.detach() for p in fn.params.values()]).to(torch.float64)
    scale = float(gradient.norm() * theta.norm())
    return 0.0 if scale == 0 else float(-(gradient @ theta)) / scale


@result_class
class FourierSpectrum(Result):
    """Power of an embedding at each frequency ``k = 1 .. p // 2``, the share of the ``top`` strongest, and the
    per-feature concentration (module docstring)."""

    modulus: int
    power: np.ndarray
    top: int
    top_fraction: float
    key_frequencies: list[int]
    feature_concentration: float

    def plot(self, ax: Any = None) -> Any:
        ax = axes_or_new(ax)
        ax.bar(np.arange(1, len(self.power) + 1), self.power / self.power.sum(), color=MEASURED)
        ax.set(xlabel="frequency k", ylabel="share of the power",
               title=f"top {self.top}: {self.top_fraction:.2f} of the power (k = {self.key_frequencies})")
        return ax


def fourier_spectrum(embedding: Tensor | np.ndarray, *, top: int = 5) -> FourierSpectrum:
    """The Fourier spectrum over residues of an ``(features, p)`` embedding (module docstring).

    Each row is centred over the residues first (the constant ``k = 0`` carries no frequency).
    """
    e = embedding.detach().cpu().numpy() if isinstance(embedding, Tensor) else np.asarray(embedding)
    if e.ndim != 2 or e.shape[1] < 3:
        raise ValueError(f"embedding must have shape (features, p) with p >= 3 residues, got {e.shape}")
    p = e.shape[1]
    half = p // 2
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= half:
        raise ValueError(f"top must be an integer in [1, {half}], got {top!r}")
    spectrum = np.abs(np.fft.fft(e - e.mean(1, keepdims=True), axis=1)) ** 2
    per_feature = spectrum[:, 1:half + 1]
    mirror = spectrum[:, p - half:][:, ::-1]  # frequencies p - k, k = 1 .. half
    if p % 2:
        per_feature = per_feature + mirror
    else:  # k = p/2 is its own mirror
        per_feature = np.concatenate([per_feature[:, :-1] + mirror[:, :-1], per_feature[:, -1:]], axis=1)
    power = per_feature.sum(0)
    if power.sum() == 0:
        raise ValueError("the embedding is constant over the residues: it has no Fourier power")
    order = np.argsort(power)[::-1][:top]
    return FourierSpectrum(modulus=p, power=power, top=top, top_fraction=float(power[order].sum() / power.sum()),
                           key_frequencies=sorted(int(k) + 1 for k in order),
                           feature_concentration=float(per_feature.max(1).sum() / power.sum()))


class Square(nn.Module):
    """The activation ``h -> h^2``."""

    def forward(self, h: Tensor) -> Tensor:
        return h * h


def modular_network(p: int, width: int, *, seed: int = 0) -> nn.Sequential:
    """The two-layer network ``W2 (W1 x)^2`` on two concatenated one-hot residues, without biases (Gromov 2023,
    "Grokking modular arithmetic"): it can represent modular addition exactly with Fourier features."""
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2 * p, width, bias=False), Square(), nn.Linear(width, p, bias=False))
    torch.set_rng_state(generator_state)
    return model


def random_concentration(p: int) -> float:
    """The per-feature concentration of random Gaussian features: ``H_m / m`` for ``m = p // 2`` frequencies (the
    expected largest share of ``m`` exponential powers), the level a trained embedding is compared with."""
    m = p // 2
    return sum(1.0 / j for j in range(1, m + 1)) / m


def planted_fourier_embedding(p: int, frequencies: list[int], *, features: int = 8, seed: int = 0) -> np.ndarray:
    """A ``(features, p)`` embedding built from ``cos`` and ``sin`` of ``2 pi k a / p`` at ``frequencies`` only,
    mixed by a random matrix (the form Nanda et al. 2023 find): for probes to be checked against."""
    a = np.arange(p)
    basis = np.concatenate([[np.cos(2 * math.pi * k * a / p), np.sin(2 * math.pi * k * a / p)] for k in frequencies])
    return np.random.default_rng(seed).standard_normal((features, len(basis))) @ basis
