"""Max-margin separators and margins against closed forms and brute force."""
import math

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

from theorylab.implicit_bias import (Margins, is_separable, margin_statistics, max_margin, normalized_margin,
                                     output_margins)
from theorylab.results import Result


def test_symmetric_square_has_the_axis_as_max_margin_direction():
    x = np.array([[2.0, 1.0], [2.0, -1.0], [-2.0, 1.0], [-2.0, -1.0]])
    res = max_margin(x, [1, 1, -1, -1])
    np.testing.assert_allclose(res.direction, [1.0, 0.0], atol=1e-9)
    assert res.margin == pytest.approx(2.0, rel=1e-9)
    assert sorted(res.support.tolist()) == [0, 1, 2, 3]
    np.testing.assert_allclose(res.svm_weights, [0.5, 0.0], atol=1e-9)


def test_two_dimensional_max_margin_matches_a_brute_force_scan_of_directions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2))
    y = np.sign(x @ np.array([0.6, -0.8]) + 1e-12)
    keep = np.abs(x @ np.array([0.6, -0.8])) > 0.2
    x, y = x[keep], y[keep]
    angles = np.linspace(-math.pi, math.pi, 400_001)
    dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    worst = (y[:, None] * (x @ dirs.T)).min(axis=0)
    best = int(np.argmax(worst))
    res = max_margin(x, y)
    # the scan's grid (1.6e-5 rad) can only fall short of the optimum; the solver must reach it
    assert worst[best] - 1e-12 <= res.margin <= worst[best] * (1 + 1e-4)
    assert math.acos(min(1.0, float(res.direction @ dirs[best]))) < 1e-4


def test_max_margin_equals_the_primal_quadratic_programme():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 5))
    y = np.where(x @ rng.standard_normal(5) > 0, 1.0, -1.0)
    primal = scipy.optimize.minimize(lambda w: 0.5 * w @ w, np.ones(5), jac=lambda w: w, method="SLSQP",
                                     constraints=[{"type": "ineq", "fun": lambda w: y * (x @ w) - 1,
                                                   "jac": lambda w: y[:, None] * x}], options={"ftol": 1e-14,
                                                                                               "maxiter": 1000})
    res = max_margin(x, y)
    np.testing.assert_allclose(res.svm_weights, primal.x, rtol=1e-5, atol=1e-7)
    assert np.min(y * (x @ res.svm_weights)) == pytest.approx(1.0, abs=1e-6)


def test_non_separable_data_is_refused_and_detected():
    x = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert not is_separable(x, [1, 1])
    assert is_separable(x, [1, 0])
    with pytest.raises(ValueError, match="not linearly separable"):
        max_margin(x, [1, 1])
    with pytest.raises(ValueError, match="binary labels"):
        max_margin(x, [1, 2])


def test_margin_statistics_of_a_linear_predictor():
    x = np.array([[2.0, 1.0], [-1.0, 3.0]])
    y = np.array([1.0, -1.0])
    w = np.array([3.0, -4.0])
    res = margin_statistics(w, x, y, reference=[1.0, 0.0])
    np.testing.assert_allclose(res.margins, [2.0, 15.0])
    assert res.normalized_margin == pytest.approx(2.0 / 5.0)
    assert res.angle == pytest.approx(math.acos(3.0 / 5.0))
    assert Result.from_dict(res.to_dict()) == res
    with pytest.raises(ValueError, match="zero"):
        margin_statistics([0.0, 0.0], x, y)


def test_output_margins_one_output_and_several():
    out = torch.tensor([[0.5], [-2.0]])
    torch.testing.assert_close(output_margins(out, torch.tensor([1, 0])), torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(output_margins(out, torch.tensor([1.0, -1.0])), torch.tensor([0.5, 2.0]))
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 1.0, 4.0]])
    torch.testing.assert_close(output_margins(logits, torch.tensor([0, 1])), torch.tensor([0.5, -3.0]))


def test_normalized_margin_of_a_linear_model_equals_margin_statistics():
    x = torch.tensor([[2.0, 1.0], [-1.0, 3.0], [0.5, -2.0]], dtype=torch.float64)
    y = torch.tensor([1, 0, 1])
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, -4.0]]))
    res = normalized_margin(model, [(x[:2], y[:2]), (x[2:], y[2:])], reference=torch.tensor([1.0, 0.0]))
    ref = margin_statistics([3.0, -4.0], x.numpy(), y.numpy(), reference=[1.0, 0.0])
    np.testing.assert_allclose(res.margins, ref.margins)
    assert res.normalized_margin == pytest.approx(ref.normalized_margin)
    assert res.angle == pytest.approx(ref.angle)


def test_normalized_margin_of_a_two_layer_linear_network_uses_the_squared_norm():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False)).double()
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
    y = torch.tensor([1.0, -1.0])
    res = normalized_margin(model, (x, y), homogeneity=2.0)
    with torch.no_grad():
        q = y * model(x)[:, 0]
        norm2 = sum(float((p ** 2).sum()) for p in model.parameters())
    assert isinstance(res, Margins)
    assert res.normalized_margin == pytest.approx(float(q.min()) / norm2)
    with pytest.raises(ValueError, match="homogeneity"):
        normalized_margin(model, (x, y), homogeneity=0.0)


def test_batch_perceptron_on_a_one_step_problem_and_its_limit_of_logistic_gd():
    from theorylab.analyses.large_step_logistic import logistic_gd
    from theorylab.theory import batch_perceptron

    x = np.array([[1.0, 0.2], [1.0, -0.1], [-1.0, 0.3]])
    y = np.array([1.0, 1.0, -1.0])
    iterations, v = batch_perceptron(x, y, max_iterations=10)
    assert iterations == 1  # v_1 = (1/2n) sum y_i x_i already separates
    np.testing.assert_allclose(v, (y @ x) / 6)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 4))
    y = np.where(x @ np.array([1.0, -1.0, 0.5, 0.0]) > 0, 1.0, -1.0)
    limit, v = batch_perceptron(x, y, max_iterations=1000)
    steps, w, _ = logistic_gd(x, y, 1e8, max_iterations=1000)
    assert steps == limit
    np.testing.assert_allclose(w / 1e8, v, rtol=1e-9, atol=1e-12)
