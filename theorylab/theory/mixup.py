"""Mixup's optimal predictions on a mixed input.

Mixup (Zhang, Cisse, Dauphin & Lopez-Paz 2018, ICLR) trains on ``x = lam x_a + (1 - lam) x_b`` with the soft
target ``t = lam e_a + (1 - lam) e_b``.  On one mix the loss ``-sum_k t_k log p_k`` (``p = softmax(z)``) equals
``H(t) + KL(t || p)``, minimised by ``p = t``: no probability outside the two classes and the logit margin
``z_a - z_b = log(lam / (1 - lam))``.  In the unconstrained-features model with a simplex-ETF classifier
(Fisher, Meng & Papyan 2024, "Pushing boundaries: mixup's influence on neural collapse", ICLR, Sec. 3) the
margin is carried by the component of the feature along ``w_a - w_b``, the normal of the a|b decision
boundary: a mix sits at signed distance ``log(lam / (1 - lam)) / ||w_a - w_b||`` from that boundary, so the
mixes of weights away from 0 and 1 stay in a narrow channel along it (the weight decay of the model only
shrinks the margin towards 0).
"""
from __future__ import annotations

import numpy as np


def mixup_optimal_margin(lambdas: np.ndarray | float) -> np.ndarray:
    """``log(lam / (1 - lam))``: the logit margin ``z_a - z_b`` that minimises the mixup loss of a mix of
    weight ``lam`` on class ``a`` (``+-inf`` at the unmixed ends ``lam = 1`` and ``0``)."""
    lam = np.asarray(lambdas, dtype=np.float64)
    if np.any((lam < 0) | (lam > 1)) or not np.all(np.isfinite(lam)):
        raise ValueError("mixing weights must lie in [0, 1]")
    with np.errstate(divide="ignore"):
        return np.log(lam) - np.log1p(-lam)
