"""Where the double-descent peak sits.

* Model-wise, for deep networks (Nakkiran, Kaplun, Bansal, Yang, Barak & Sutskever 2019, "Deep
  double descent: where bigger models and more data hurt", the effective-model-complexity
  hypothesis): the test error peaks where the model first fits its (noisy) training set, the
  *interpolation threshold*.
* For random-features regression (Belkin, Hsu, Ma & Mandal 2019, "Reconciling modern machine
  learning practice and the bias-variance trade-off", PNAS; Mei & Montanari 2019): the peak sits at
  ``N = n`` features, where the feature Gram matrix becomes square and its smallest singular value
  vanishes; Liu & Flanigan 2023 ("Understanding the role of optimization in double descent") show
  it needs an optimiser that reaches low training loss there.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def interpolation_threshold(sizes: Sequence[float], train_errors: Sequence[float], *, tol: float) -> float:
    """The smallest model size whose training error is at most ``tol`` (NaN if none fits)."""
    sizes, errors = np.asarray(sizes, dtype=np.float64), np.asarray(train_errors, dtype=np.float64)
    if sizes.shape != errors.shape or sizes.size == 0:
        raise ValueError("sizes and train_errors must be non-empty and of equal length")
    order = np.argsort(sizes)
    fits = np.nonzero(errors[order] <= tol)[0]
    return float(sizes[order][fits[0]]) if fits.size else float("nan")


def random_features_peak(num_samples: int) -> float:
    """``N = n``: the number of random features at which the test error of least squares peaks."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    return float(num_samples)
