"""The classifiers that infinitely wide and deep networks implement (Radhakrishnan, Belkin & Uhler 2023, "Wide
and deep neural networks achieve consistency for classification", PNAS 120(14)).

The NTK predictor of an infinitely wide network trained to interpolate, as its depth grows, tends to one of
three classifiers depending on the activation (their Thm. 1-3): the **majority vote** (every input gets the
class most frequent in the training set; for ReLU, whose normalised deep NTK tends to a constant off the
diagonal), the **1-nearest-neighbour** rule (for activations whose deep NTK decays off the diagonal faster
the less similar the inputs, e.g. erf), or a singular-kernel classifier in between.  Inputs on the sphere:
nearest means the largest cosine similarity.
"""
from __future__ import annotations

import numpy as np


def majority_vote(y_train: np.ndarray, num_test: int, num_classes: int) -> np.ndarray:
    """The majority-vote classifier: the most frequent training class (the smallest index on ties), for every input."""
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=num_classes)
    return np.full(num_test, int(np.argmax(counts)), dtype=np.int64)


def nearest_neighbour(x_test: np.ndarray, x_train: np.ndarray, y_train: np.ndarray) -> np.ndarray:
    """The 1-nearest-neighbour classifier by cosine similarity (the nearest point on the sphere)."""
    a = np.asarray(x_test, dtype=np.float64)
    b = np.asarray(x_train, dtype=np.float64)
    similarity = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    return np.asarray(y_train)[np.argmax(similarity, axis=1)]
