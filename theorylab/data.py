"""Embedded data sets that need no download, and the usual corruptions of them.

* :func:`load_digits`: 1,797 real 8x8 handwritten digits shipped with scikit-learn (Alpaydin &
  Kaynak 1998, UCI), 64 features, 10 classes.
* :func:`teacher_student`: regression targets from a random teacher (linear or a ReLU MLP).
* :func:`gaussian_mixture`: classes as isotropic Gaussians around random means.
* :func:`with_label_noise` (Nakkiran et al. 2019: a fixed uniformly random *incorrect* label) and
  :func:`class_imbalanced` (subsample classes to given counts).

Users with their own data (or torchvision data sets) pass ``(inputs, targets)`` tensors or a
DataLoader to the analyzers directly; :class:`DataSplit` is only a convenience.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from theorylab.batches import move_tensor


@dataclass(frozen=True)
class DataSplit:
    """Train and test tensors.  ``num_classes`` is None for regression."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int | None = None

    @property
    def train(self) -> tuple[Tensor, Tensor]:
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple[Tensor, Tensor]:
        return self.x_test, self.y_test

    def subsample(self, num_train: int, *, seed: int = 0) -> "DataSplit":
        """The same split with a random subset of ``num_train`` training samples (test set unchanged)."""
        if not 0 < num_train <= len(self.y_train):
            raise ValueError(f"num_train must be in [1, {len(self.y_train)}], got {num_train}")
        idx = torch.randperm(len(self.y_train), generator=torch.Generator().manual_seed(seed))[:num_train]
        return DataSplit(self.x_train[idx], self.y_train[idx], self.x_test, self.y_test, self.num_classes)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "DataSplit":
        """Move to ``device``; floating tensors are cast to ``dtype`` when given."""
        tensors = (self.x_train, self.y_train, self.x_test, self.y_test)
        return DataSplit(*(move_tensor(t, device, dtype) for t in tensors), self.num_classes)


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(len(y))
    num_test = int(round(test_fraction * len(y)))
    test, train = perm[:num_test], perm[num_test:]
    return x[train], y[train], x[test], y[test]


def load_digits(*, test_fraction: float = 0.3, seed: int = 0, standardize: bool = True,
                dtype: torch.dtype = torch.float32) -> DataSplit:
    """The scikit-learn digits (1,797 real 8x8 images, 10 classes), split at random into train/test.

    With ``standardize`` each pixel is centred and scaled by the *training* mean and std (pixels
    constant on the training set are left centred).
    """
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    x, y = bunch.data.astype(np.float64), bunch.target.astype(np.int64)
    x_tr, y_tr, x_te, y_te = _split(x, y, test_fraction, seed)
    if standardize:
        mean, std = x_tr.mean(0), x_tr.std(0)
        std[std == 0] = 1.0
        x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    return DataSplit(t(x_tr), torch.as_tensor(y_tr), t(x_te), torch.as_tensor(y_te), 10)


def teacher_student(*, num_train: int, num_test: int, dim: int, noise_std: float = 0.0,
                    teacher: Literal["linear", "relu_mlp"] = "linear", hidden: int = 32, seed: int = 0,
                    dtype: torch.dtype = torch.float32) -> DataSplit:
    """Inputs ``x ~ N(0, I_dim)``; targets ``y = f*(x) + noise_std * eps`` of shape ``(n, 1)``.

    ``linear``: ``f*(x) = w.x`` with ``w`` uniform on the unit sphere (so ``Var f* = |w|^2 = 1``:
    signal ``r^2 = 1`` in the notation of Hastie et al. 2019);
    ``relu_mlp``: a random two-layer ReLU network with ``hidden`` units, scaled to unit variance.
    The test targets are noisy too (the risk then includes ``noise_std**2``).
    """
    for name, value in (("num_train", num_train), ("num_test", num_test), ("dim", dim)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    if teacher not in ("linear", "relu_mlp"):
        raise ValueError(f"teacher must be 'linear' or 'relu_mlp', got {teacher!r}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_train + num_test, dim, generator=g, dtype=torch.float64)
    if teacher == "linear":
        w = torch.randn(dim, 1, generator=g, dtype=torch.float64)
        f = x @ (w / w.norm())
    else:
        w1 = torch.randn(dim, hidden, generator=g, dtype=torch.float64) / dim ** 0.5
        w2 = torch.randn(hidden, 1, generator=g, dtype=torch.float64)
        f = torch.relu(x @ w1) @ w2
        f = (f - f.mean()) / f.std()
    y = f + noise_std * torch.randn(f.shape, generator=g, dtype=torch.float64)
    x, y = x.to(dtype), y.to(dtype)
    return DataSplit(x[:num_train], y[:num_train], x[num_train:], y[num_train:], None)


def gaussian_mixture(*, num_train: int, num_test: int, dim: int, num_classes: int, separation: float = 3.0,
                     seed: int = 0, dtype: torch.dtype = torch.float32) -> DataSplit:
    """Balanced classes ``x ~ N(mu_c, I)`` with means ``mu_c ~ separation * N(0, I/dim)``."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    g = torch.Generator().manual_seed(seed)
    means = separation * torch.randn(num_classes, dim, generator=g, dtype=torch.float64) / dim ** 0.5
    n = num_train + num_test
    y = torch.arange(n) % num_classes
    y = y[torch.randperm(n, generator=g)]
    x = means[y] + torch.randn(n, dim, generator=g, dtype=torch.float64)
    return DataSplit(x[:num_train].to(dtype), y[:num_train], x[num_train:].to(dtype), y[num_train:], num_classes)


def with_label_noise(y: Tensor, fraction: float, num_classes: int, *, seed: int = 0) -> Tensor:
    """Replace the labels of a random ``fraction`` of samples by a uniformly random *incorrect* label.

    Nakkiran et al. 2019 ("Deep double descent"): the noise is drawn once and fixed; every
    corrupted sample is guaranteed to be wrong.  Returns a new tensor.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if num_classes < 2:
        raise ValueError("label noise needs at least 2 classes")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    g = torch.Generator().manual_seed(seed)
    n_noisy = int(round(fraction * len(y)))
    idx = torch.randperm(len(y), generator=g)[:n_noisy]
    shift = torch.randint(1, num_classes, (n_noisy,), generator=g)
    noisy = y.clone()
    noisy[idx] = (y[idx] + shift) % num_classes
    return noisy


def class_imbalanced(x: Tensor, y: Tensor, counts: Sequence[int], *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Keep ``counts[c]`` random samples of each class ``c`` (e.g. a long-tailed training set)."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c, count in enumerate(counts):
        members = torch.nonzero(y == c).flatten()
        if count < 0 or count > len(members):
            raise ValueError(f"class {c} has {len(members)} samples, cannot keep {count}")
        keep.append(members[torch.randperm(len(members), generator=g)[:count]])
    idx = torch.cat(keep)
    return x[idx], y[idx]


def batches(x: Tensor, y: Tensor, batch_size: int, *, shuffle: bool = False,
            seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """Split ``(x, y)`` into batches of ``batch_size`` (the last one may be smaller)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(x) != len(y):
        raise ValueError(f"x and y have different lengths ({len(x)} vs {len(y)})")
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(len(y))
    return [(x[idx[i:i + batch_size]], y[idx[i:i + batch_size]]) for i in range(0, len(y), batch_size)]
