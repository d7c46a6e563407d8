"""Synthetic tasks of the papers the claims test, each with its generating rule known exactly.

* :func:`binary_patterns`: all ``2^bits`` binary inputs with a balanced label from a fixed random
  quadratic rule (the setting of Shwartz-Ziv & Tishby 2017: every input equally likely, ``I(X; Y) = 1`` bit).
* :func:`spiked_gaussian_classes` and :func:`gaussian_classes`: two Gaussian classes whose shared covariance
  has a spike, so that a diagonal model is misspecified (Ng & Jordan 2001).
* :func:`modular_arithmetic`: all pairs ``(a, b)`` of residues mod ``p`` with label ``a o b mod p``
  (Power et al. 2022, "Grokking: generalization beyond overfitting on small algorithmic datasets").

* :func:`block_digits`: the digits beside a fixed null pattern (Shah et al. 2021's BlockMNIST).
* :func:`xor_clusters`: four Gaussian clusters with XOR labels and label noise (Xu et al. 2024).
* :func:`feature_noise_patches`: patch inputs with a weak feature in every example, a strong feature in a
  fraction of them and a noise patch (the feature-noise data model of Lu, Wu, Yang & Zou 2024); the planted
  directions are :func:`planted_feature_directions`.
* :func:`shifted_images`: images moved sideways by a (fractional) number of columns, the empty columns
  filled with zeros: domains of graded shift for transfer between domains (shifted digits).

Generators return a :class:`theorylab.data.DataSplit` (or tensors, where stated) and are deterministic given
``seed``.
"""
from __future__ import annotations

from typing import Literal

import torch

from theorylab.data import DataSplit

Operation = Literal["add", "subtract", "multiply"]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


def binary_patterns(*, bits: int = 12, train_fraction: float = 0.85, seed: int = 0,
                    dtype: torch.dtype = torch.float32) -> DataSplit:
    """Every input ``s in {-1, +1}^bits``, label ``1[w.s + s^T A s / bits > median]`` for a random ``w ~ N(0, I)``
    and ``A ~ N(0, 1)`` entries drawn from ``seed``: balanced classes, a rule no single bit decides.

    The train split holds ``train_fraction`` of the inputs at random, the test split the rest.
    """
    _check_positive(bits=bits)
    if bits > 20:
        raise ValueError(f"bits must be <= 20 (2^bits inputs are enumerated), got {bits}")
    _check_fraction("train_fraction", train_fraction)
    g = torch.Generator().manual_seed(seed)
    codes = torch.arange(2 ** bits)
    s = ((codes[:, None] >> torch.arange(bits)) & 1).to(torch.float64) * 2 - 1
    w = torch.randn(bits, generator=g, dtype=torch.float64)
    a = torch.randn(bits, bits, generator=g, dtype=torch.float64)
    score = s @ w + ((s @ a) * s).sum(1) / bits
    y = (score > score.median()).long()
    perm = torch.randperm(len(y), generator=g)
    n_train = int(round(train_fraction * len(y)))
    train, test = perm[:n_train], perm[n_train:]
    return DataSplit(s[train].to(dtype), y[train], s[test].to(dtype), y[test], 2)


def modular_arithmetic(p: int, *, operation: Operation = "add", train_fraction: float = 0.3,
                       seed: int = 0) -> DataSplit:
    """All ``p^2`` pairs ``(a, b)``, label ``(a + b) mod p`` (or ``a - b``, ``a b``), split at random.

    Inputs are the integer pairs, shape ``(N, 2)`` (``torch.long``), for an embedding or
    :func:`one_hot_pairs`; ``num_classes = p``.
    """
    _check_positive(p=p)
    if p < 2:
        raise ValueError(f"p must be >= 2, got {p}")
    if operation not in ("add", "subtract", "multiply"):
        raise ValueError(f"operation must be 'add', 'subtract' or 'multiply', got {operation!r}")
    _check_fraction("train_fraction", train_fraction)
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    y = {"add": a + b, "subtract": a - b, "multiply": a * b}[operation] % p
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    n_train = int(round(train_fraction * p * p))
    x = torch.stack([a, b], 1)
    train, test = perm[:n_train], perm[n_train:]
    return DataSplit(x[train], y[train], x[test], y[test], p)


def one_hot_pairs(pairs: torch.Tensor, p: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(N, 2)`` residue pairs as ``(N, 2p)`` concatenated one-hot vectors."""
    if pairs.dim() != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape (N, 2), got {tuple(pairs.shape)}")
    return torch.nn.functional.one_hot(pairs, p).reshape(len(pairs), 2 * p).to(dtype)


def spiked_gaussian_classes(dim: int, *, separation: float = 2.0, spike: float = 3.0,
                            specified: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, cov)`` of two classes ``N(+-mean, cov)`` whose signal is spread over all ``dim`` features.

    ``cov = I + spike u u^T`` with ``u = 1/sqrt(dim)``, ``mean = separation (u + v) / sqrt(2)`` with ``v`` the
    alternating ``+-1/sqrt(dim)`` (orthogonal to ``u``): the Bayes error does not depend on ``dim``, and a
    diagonal-covariance model (naive Bayes) is misspecified.  ``specified=True`` drops the spike (``cov = I``).
    """
    _check_positive(dim=dim)
    if dim % 2:
        raise ValueError(f"dim must be even (v alternates in sign), got {dim}")
    u = torch.full((dim,), dim ** -0.5, dtype=torch.float64)
    v = u * (-1.0) ** torch.arange(dim)
    cov = torch.eye(dim, dtype=torch.float64) + (0.0 if specified else spike) * torch.outer(u, u)
    return separation * (u + v) / 2 ** 0.5, cov


def gaussian_classes(n_per_class: int, mean: torch.Tensor, cov: torch.Tensor, *,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_per_class`` samples of each class ``y = +-1`` (labels 1 and 0) from ``N(+-mean, cov)``."""
    _check_positive(n_per_class=n_per_class)
    g = torch.Generator().manual_seed(seed)
    factor = torch.linalg.cholesky(cov.to(torch.float64))
    z = torch.randn(2 * n_per_class, len(mean), generator=g, dtype=torch.float64) @ factor.T
    y = torch.arange(2 * n_per_class) % 2
    return z + (2 * y[:, None] - 1) * mean.to(torch.float64), y


def block_digits(*, test_fraction: float = 0.3, seed: int = 0, dtype: torch.dtype = torch.float32) -> DataSplit:
    """The digits as two-block images (Shah et al. 2021's BlockMNIST on the 8x8 digits): each ``16 x 8`` image
    stacks the digit (pixels scaled to ``[0, 1]``) and a fixed class-independent null pattern (a square
    outline), the digit on top or at the bottom at random.  Inputs are flattened (128 values); the signal
    block's position is :func:`digit_block_mask` of the inputs.
    """
    from sklearn.datasets import load_digits as _sk_digits

    _check_fraction("test_fraction", test_fraction)
    bunch = _sk_digits()
    digits = torch.as_tensor(bunch.data, dtype=torch.float64).reshape(-1, 8, 8) / 16.0
    null = torch.zeros(8, 8, dtype=torch.float64)
    null[1, 1:7] = null[6, 1:7] = null[1:7, 1] = null[1:7, 6] = 1.0
    g = torch.Generator().manual_seed(seed)
    top = torch.rand(len(digits), generator=g) < 0.5
    images = torch.where(top[:, None, None], torch.cat([digits, null.expand_as(digits)], 1),
                         torch.cat([null.expand_as(digits), digits], 1))
    x, y = images.reshape(len(digits), -1).to(dtype), torch.as_tensor(bunch.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=g)
    n_test = int(round(test_fraction * len(y)))
    test, train = perm[:n_test], perm[n_test:]
    return DataSplit(x[train], y[train], x[test], y[test], 10)


def digit_block_mask(inputs: torch.Tensor) -> torch.Tensor:
    """``(N, 128)`` booleans: which pixels of each :func:`block_digits` input belong to the digit, not the null
    pattern (the block that is not the fixed outline)."""
    images = inputs.reshape(len(inputs), 16, 8)
    null = torch.zeros(8, 8, dtype=inputs.dtype)
    null[1, 1:7] = null[6, 1:7] = null[1:7, 1] = null[1:7, 6] = 1.0
    top_is_null = (images[:, :8] == null).all(dim=(1, 2)) & ~(images[:, 8:] == null).all(dim=(1, 2))
    mask = torch.zeros(len(inputs), 16, 8, dtype=torch.bool)
    mask[top_is_null, 8:] = True
    mask[~top_is_null, :8] = True
    return mask.reshape(len(inputs), -1)


def xor_clusters(n: int, dim: int, *, signal: float, noise_rate: float = 0.0, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """XOR cluster data (Xu, Wang, Frei, Vardi & Hu 2024): ``x = c + xi`` with the cluster mean ``c`` one of
    ``+-signal e_1`` (label +1) and ``+-signal e_2`` (label -1), equally likely, ``xi ~ N(0, I_dim)``; a
    ``noise_rate`` fraction of the labels is flipped at random.  Returns ``(x, noisy labels, clean labels)``,
    labels in ``{-1, +1}``.
    """
    _check_positive(n=n, dim=dim)
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (two orthogonal cluster directions), got {dim}")
    if not 0.0 <= noise_rate < 0.5:
        raise ValueError(f"noise_rate must be in [0, 0.5), got {noise_rate}")
    g = torch.Generator().manual_seed(seed)
    cluster = torch.randint(0, 4, (n,), generator=g)
    means = torch.zeros(4, dim, dtype=torch.float64)
    means[0, 0], means[1, 0], means[2, 1], means[3, 1] = signal, -signal, signal, -signal
    clean = torch.where(cluster < 2, 1.0, -1.0).to(torch.float64)
    x = means[cluster] + torch.randn(n, dim, generator=g, dtype=torch.float64)
    flipped = torch.rand(n, generator=g) < noise_rate
    return x.to(dtype), torch.where(flipped, -clean, clean).to(dtype), clean.to(dtype)


def planted_feature_directions(dim: int, *, strong_norm: float, weak_norm: float,
                               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(2, dim)``: the strong feature ``u = strong_norm e_1`` and the weak feature ``v = weak_norm e_2`` of
    :func:`feature_noise_patches` (rows in that order)."""
    _check_positive(dim=dim)
    if dim < 3:
        raise ValueError(f"dim must be >= 3 (two feature directions and room for noise), got {dim}")
    if not 0 < weak_norm < strong_norm:
        raise ValueError(f"need 0 < weak_norm < strong_norm, got weak_norm={weak_norm}, strong_norm={strong_norm}")
    features = torch.zeros(2, dim, dtype=dtype)
    features[0, 0], features[1, 1] = strong_norm, weak_norm
    return features


def feature_noise_patches(n: int, dim: int, *, strong_norm: float, weak_norm: float, noise_std: float,
                          strong_fraction: float, seed: int = 0, dtype: torch.dtype = torch.float32
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The feature-noise data model (Lu, Wu, Yang & Zou 2024, "Benign oscillation of stochastic gradient descent
    with large learning rates", ICLR): ``n`` inputs of three patches of ``dim`` values,

    * patch 0, the weak feature ``y v`` (small norm), in every example;
    * patch 1, the strong feature ``y u`` (larger norm) in a ``strong_fraction`` of the examples, else zeros;
    * patch 2, noise ``xi ~ N(0, noise_std^2 (I - e_1 e_1^T - e_2 e_2^T))``, orthogonal to both features;

    with ``u, v`` of :func:`planted_feature_directions` and labels ``y = +-1`` equally likely.  With
    ``strong_fraction=0`` every example has only the weak feature (and noise): the test data on which a network
    that learned only the strong feature fails.  Returns ``(x (n, 3, dim), y (n,), has_strong (n,) bool)``.
    """
    _check_positive(n=n)
    features = planted_feature_directions(dim, strong_norm=strong_norm, weak_norm=weak_norm, dtype=torch.float64)
    if not 0.0 <= strong_fraction <= 1.0:
        raise ValueError(f"strong_fraction must be in [0, 1], got {strong_fraction}")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    g = torch.Generator().manual_seed(seed)
    y = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0).to(torch.float64)
    has_strong = torch.rand(n, generator=g) < strong_fraction
    noise = noise_std * torch.randn(n, dim, generator=g, dtype=torch.float64)
    noise[:, :2] = 0.0  # orthogonal to u = e_1 and v = e_2
    weak = y[:, None] * features[1]
    strong = torch.where(has_strong[:, None], y[:, None] * features[0], torch.zeros(dim, dtype=torch.float64))
    return torch.stack([weak, strong, noise], dim=1).to(dtype), y.to(dtype), has_strong


def shifted_images(images: torch.Tensor, columns: float, *, side: int = 8) -> torch.Tensor:
    """Flattened ``side x side`` images moved right by ``columns`` (>= 0, fractional allowed).

    A whole shift ``k`` moves every row ``k`` pixels right and fills the first ``k`` columns with zeros; a
    fractional shift ``k + f`` interpolates linearly, ``(1 - f) shift_k + f shift_{k+1}``.  ``images`` is
    ``(N, side * side)`` (the digits are 8 x 8 with background 0); the result has the same shape and dtype.
    """
    if images.dim() != 2 or images.shape[1] != side * side:
        raise ValueError(f"images must have shape (N, {side * side}), got {tuple(images.shape)}")
    if not 0 <= columns < side:
        raise ValueError(f"columns must be in [0, {side}), got {columns!r}")
    grid = images.reshape(-1, side, side)

    def whole(k: int) -> torch.Tensor:
        moved = torch.zeros_like(grid)
        moved[:, :, k:] = grid[:, :, :side - k]
        return moved

    k = int(columns)
    fraction = float(columns) - k
    moved = whole(k) if fraction == 0 else (1 - fraction) * whole(k) + fraction * whole(k + 1)
    return moved.reshape(-1, side * side)
