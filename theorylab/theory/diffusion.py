"""Ultra-slow diffusion of the weights under SGD (Hoffer, Hubara & Soudry 2017, "Train longer,
generalize better: closing the generalization gap in large batch training of neural networks",
NeurIPS, Sec. 3).

Modelling SGD at a constant step as a random walk on a random potential, whose distance from the
start grows only logarithmically (Marinari et al. 1983), Hoffer et al. predict and observe
``||w_t - w_0|| ~ a + b log t``; a walk on a flat potential (free diffusion) would grow as ``t^(1/2)``.
In the family ``a + b t^p`` the logarithm is the limit ``p -> 0`` (``(t^p - 1)/p -> log t``).
"""
from __future__ import annotations

import numpy as np


def ultra_slow_distance(t: np.ndarray, *, a: float, b: float) -> np.ndarray:
    """``a + b log t``: the predicted distance from initialisation after ``t`` steps."""
    t = np.asarray(t, dtype=np.float64)
    if np.any(t <= 0):
        raise ValueError("t must be > 0")
    return a + b * np.log(t)


def diffusion_exponent() -> float:
    """``0``: the exponent ``p`` of ``a + b t^p`` that the logarithmic law corresponds to."""
    return 0.0


def free_diffusion_exponent() -> float:
    """``1/2``: the exponent of a random walk on a flat potential (the alternative to ultra-slow diffusion)."""
    return 0.5
