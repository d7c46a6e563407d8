"""Similarity of two representations of the same examples: centred kernel alignment (CKA).

``X`` (n x p1) and ``Y`` (n x p2) are two representations of the same ``n`` examples (rows), e.g. the
activations of a layer in two networks, or of one network at two times.  With Gram matrices
``K = k(X)``, ``L = l(Y)`` and the centring matrix ``H = I - 11^T/n``, the Hilbert-Schmidt
independence criterion is ``HSIC(K, L) = tr(K H L H) / (n - 1)^2`` (Gretton et al. 2005) and

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

(Kornblith, Norouzi, Lee & Hinton 2019, "Similarity of neural network representations revisited",
ICML, Eq. 3-4).  With the linear kernel ``K = X X^T`` it is
``||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)`` (columns centred), invariant to orthogonal
transforms and isotropic scaling of either representation but not to arbitrary invertible linear
maps (their Sec. 2-3).  The RBF kernel ``exp(-|x - x'|^2 / (2 sigma^2))`` uses ``sigma`` = a fraction of
the median pairwise distance, so it keeps both invariances.

The plug-in HSIC is biased (by ``O(1/n)``), which makes CKA of unrelated high-dimensional
representations far from 0 at small ``n``.  ``debiased=True`` uses the unbiased HSIC estimator of
Song, Smola, Gretton, Bedo & Borgwardt 2012 ("Feature selection via dependence maximization", JMLR 13,
Eq. 5), as Nguyen, Raghu & Kornblith 2021 ("Do wide and deep networks learn the same things?", ICLR)
do for CKA: with ``K~``, ``L~`` the Gram matrices with zeroed diagonals,

    HSIC_1 = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2)) - 2 1^T K~ L~ 1 / (n-2)] / (n (n-3)).
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

Kernel = Literal["linear", "rbf"]
KERNELS: tuple[str, ...] = ("linear", "rbf")


def _matrix(name: str, value: Tensor | np.ndarray) -> Tensor:
    t = value.detach().cpu() if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    if t.dim() < 2 or t.shape[0] < 2:
        raise ValueError(f"{name} must have shape (n, features) with n >= 2 examples, got {tuple(t.shape)}")
    t = t.reshape(t.shape[0], -1).to(torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def gram(x: Tensor | np.ndarray, *, kernel: Kernel = "linear", sigma: float = 0.8) -> Tensor:
    """The ``(n, n)`` Gram matrix of the rows of ``x``: ``x x^T``, or the RBF kernel with bandwidth
    ``sigma`` times the median distance between distinct rows."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    x = _matrix("x", x)
    if kernel == "linear":
        return x @ x.T
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (a fraction of the median distance), got {sigma}")
    sq = (x.pow(2).sum(1)[:, None] + x.pow(2).sum(1)[None, :] - 2 * x @ x.T).clamp_min(0)
    off = sq[~torch.eye(len(x), dtype=torch.bool)]
    median = float(off.sqrt().median()) if off.numel() else 0.0
    if median == 0:
        raise ValueError("every row of x is the same: the RBF bandwidth (median distance) is 0")
    return torch.exp(-sq / (2 * (sigma * median) ** 2))


def hsic(k: Tensor, l: Tensor, *, debiased: bool = False) -> float:
    """``HSIC(K, L)`` of two ``(n, n)`` Gram matrices: plug-in ``tr(KHLH)/(n-1)^2``, or unbiased (module docstring)."""
    n = k.shape[0]
    if k.shape != (n, n) or l.shape != (n, n):
        raise ValueError(f"Gram matrices must be square and of one size, got {tuple(k.shape)} and {tuple(l.shape)}")
    if not debiased:
        kc = k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()
        return float((kc * l).sum()) / (n - 1) ** 2
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs n >= 4 examples, got {n}")
    k, l = k.clone(), l.clone()
    k.fill_diagonal_(0)
    l.fill_diagonal_(0)
    ones_k, ones_l = k.sum(1), l.sum(1)
    value = (k * l).sum() + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2)) - 2 * (ones_k @ ones_l) / (n - 2)
    return float(value) / (n * (n - 3))


def cka(x: Tensor | np.ndarray, y: Tensor | np.ndarray, *, kernel: Kernel = "linear", sigma: float = 0.8,
        debiased: bool = False) -> float:
    """Centred kernel alignment of two representations of the same examples (module docstring).

    1 for representations equal up to an orthogonal transform and an isotropic scaling; near 0 for
    unrelated ones (exactly 0 in expectation with ``debiased=True``, which can then be slightly negative).
    """
    x, y = _matrix("x", x), _matrix("y", y)
    if len(x) != len(y):
        raise ValueError(f"x and y must represent the same examples, got {len(x)} and {len(y)} rows")
    k, l = gram(x, kernel=kernel, sigma=sigma), gram(y, kernel=kernel, sigma=sigma)
    kl, kk, ll = (hsic(a, b, debiased=debiased) for a, b in ((k, l), (k, k), (l, l)))
    if kk <= 0 or ll <= 0:
        raise ValueError("a representation is constant over the examples (zero HSIC with itself): CKA is undefined")
    return kl / math.sqrt(kk * ll)


def direction_alignment(vectors: Tensor | np.ndarray, directions: Tensor | np.ndarray) -> Tensor:
    """``(n,)``: for each row of ``vectors``, ``max_k |cos(v, d_k)|`` over the rows ``d_k`` of ``directions``.

    E.g. how much each first-layer neuron of a network points along a planted feature or a cluster mean
    (Xu et al. 2024 follow the neurons' alignment with the XOR cluster means).  A zero vector scores 0.
    """
    v, d = (torch.as_tensor(np.asarray(t.detach().cpu() if isinstance(t, Tensor) else t), dtype=torch.float64)
            for t in (vectors, directions))
    if v.dim() != 2 or d.dim() != 2 or v.shape[1] != d.shape[1]:
        raise ValueError(f"vectors and directions must be matrices with rows of one dimension, got {tuple(v.shape)} "
                         f"and {tuple(d.shape)}")
    if (d.norm(dim=1) == 0).any():
        raise ValueError("a direction is the zero vector")
    cos = (v @ d.T) / (v.norm(dim=1, keepdim=True).clamp_min(1e-300) * d.norm(dim=1)[None, :])
    return cos.abs().max(1).values
