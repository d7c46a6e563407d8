"""Gradient descent on the logistic loss with large steps is the batch perceptron (Tyurin 2024, "From logistic
regression to the perceptron algorithm: exploring gradient descent with large step sizes", arXiv:2412.08424).

GD on ``f(w) = (1/n) sum_i log(1 + exp(-y_i w.x_i))`` from ``w_0 = 0`` with step ``gamma`` updates
``w_{t+1} = w_t + (gamma/n) sum_i sigma(-y_i w_t.x_i) y_i x_i``.  Since ``w_t`` scales with ``gamma``, as
``gamma -> inf`` the weight ``sigma(-m)`` tends to 1 for a misclassified point (``m < 0``), 0 for a correct one
and 1/2 on the boundary, so ``w_t / gamma`` follows the batch perceptron

    v_{t+1} = v_t + (1/n) sum_i s_i y_i x_i,   s_i = 1 (y_i v_t.x_i < 0), 1/2 (= 0), 0 (> 0),   v_0 = 0,

and the iterations GD needs to classify every point correctly tend to the batch perceptron's.
"""
from __future__ import annotations

import numpy as np


def batch_perceptron(x: np.ndarray, y: np.ndarray, *, max_iterations: int) -> tuple[int, np.ndarray]:
    """``(iterations, v)``: the first ``t`` at which the batch perceptron's ``v_t`` classifies every point
    correctly (``y_i v_t.x_i > 0``), and ``v_t``; ``(max_iterations, v)`` if it never does by then.
    Labels ``y`` are +-1."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or not np.all(np.abs(y) == 1):
        raise ValueError("need x of shape (n, d) and labels y of shape (n,) in {-1, +1}")
    v = np.zeros(x.shape[1])
    for t in range(max_iterations):
        m = y * (x @ v)
        if np.all(m > 0):
            return t, v
        weight = np.where(m < 0, 1.0, np.where(m == 0, 0.5, 0.0))
        v = v + (weight * y) @ x / len(y)
    return max_iterations, v
