"""Sharpness measures on a quadratic loss, where every answer is known in closed form.

Model f(x) = w.x (no bias) with the mean squared error: L(w) = mean_i (w.x_i - y_i)^2 has gradient
g = 2 X^T (X w - y) / N and constant Hessian H = 2 X^T X / N, so L(w + d) - L(w) = g.d + d^T H d / 2.
"""
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from theorylab.results import Result
from theorylab.sharpness import (Sharpness, StabilityRatios, adaptive_sharpness, average_sharpness, lambda_max,
                                 sam_sharpness, sharpness_monitor, stability_ratios)
from theorylab.train import train

P, N = 5, 24


def quadratic(at_minimum: bool):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, P, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.5, 1.0, 0.7, 0.3], dtype=torch.float64)
    model = nn.Linear(P, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.8, -1.2, 0.5, 2.0, -0.3]], dtype=torch.float64))
    y = x @ model.weight.detach().T
    if not at_minimum:
        y = y + torch.randn(N, 1, generator=g, dtype=torch.float64)
    w = model.weight.detach().ravel()
    grad = 2 * x.T @ (x @ w - y.ravel()) / N
    hess = 2 * x.T @ x / N
    return model, (x, y), w, grad, hess


def test_lambda_max_and_stability_ratios():
    model, data, _, _, hess = quadratic(False)
    eig = torch.linalg.eigvalsh(hess)
    result = lambda_max(model, nn.MSELoss(), data, tol=1e-10)
    assert isinstance(result, Sharpness)
    assert result.value == pytest.approx(float(eig[-1]), rel=1e-9)
    assert Result.from_dict(result.to_dict()) == result
    ratios = stability_ratios(model, nn.MSELoss(), data, lr=0.1, num_probes=400, seed=1)
    assert isinstance(ratios, StabilityRatios)
    assert ratios.lambda_ratio == pytest.approx(0.1 * float(eig[-1]) / 2, rel=1e-9)
    exact_ratio = 0.1 * float(torch.trace(hess)) / 2
    assert abs(ratios.trace_ratio - exact_ratio) <= 4 * ratios.trace_ratio_stderr
    assert ratios.trace_ratio_stderr < 0.1 * exact_ratio
    assert Result.from_dict(ratios.to_dict()) == ratios


def test_sam_sharpness_first_order_closed_form():
    model, data, _, grad, hess = quadratic(False)
    rho = 0.05
    unit = grad / grad.norm()
    expected = rho * float(grad.norm()) + 0.5 * rho ** 2 * float(unit @ hess @ unit)
    result = sam_sharpness(model, nn.MSELoss(), data, rho=rho)
    assert result.value == pytest.approx(expected, rel=1e-12)
    assert result.loss == pytest.approx(float(nn.MSELoss()(model(data[0]).detach(), data[1])), rel=1e-12)


def test_m_sharpness_averages_per_batch_closed_forms():
    model, (x, y), w, _, _ = quadratic(False)
    rho, m = 0.1, 7  # 24 = 7 + 7 + 7 + 3: the uneven last batch counts by its size
    total = 0.0
    for i in range(0, N, m):
        xb, yb = x[i:i + m], y[i:i + m].ravel()
        gb = 2 * xb.T @ (xb @ w - yb) / len(yb)
        hb = 2 * xb.T @ xb / len(yb)
        ub = gb / gb.norm()
        total += (rho * float(gb.norm()) + 0.5 * rho ** 2 * float(ub @ hb @ ub)) * len(yb)
    result = sam_sharpness(model, nn.MSELoss(), (x, y), rho=rho, m=m)
    assert result.value == pytest.approx(total / N, rel=1e-12)
    assert result.measure == "m_sharpness(m=7)"


@pytest.mark.parametrize("adaptive", [False, True])
def test_worst_case_l2_at_a_minimum_is_top_eigenvalue(adaptive):
    """At a minimum, max_{||u|| <= rho} (c u)^T H (c u) / 2 = rho^2 lambda_max(C H C) / 2."""
    model, data, w, _, hess = quadratic(True)
    c = w.abs() if adaptive else torch.ones(P, dtype=torch.float64)
    expected = 0.5 * 0.1 ** 2 * float(torch.linalg.eigvalsh(c[:, None] * hess * c[None, :])[-1])
    result = adaptive_sharpness(model, nn.MSELoss(), data, rho=0.1, norm="l2", adaptive=adaptive, steps=100)
    assert result.value <= expected * (1 + 1e-12)        # a lower bound on the maximum ...
    assert result.value >= expected * (1 - 1e-6)         # ... that projected ascent reaches


@pytest.mark.parametrize("adaptive", [False, True])
def test_worst_case_linf_equals_brute_force_over_vertices(adaptive):
    """A convex function on a cube is maximised at a vertex: enumerate all 2^P of them."""
    model, data, w, grad, hess = quadratic(False)
    rho = 0.05
    c = w.abs() if adaptive else torch.ones(P, dtype=torch.float64)
    best = max(float(grad @ d + 0.5 * d @ hess @ d) for signs in itertools.product([-1.0, 1.0], repeat=P)
               for d in [rho * c * torch.tensor(signs, dtype=torch.float64)])
    result = adaptive_sharpness(model, nn.MSELoss(), data, rho=rho, norm="linf", adaptive=adaptive, steps=20)
    assert result.value == pytest.approx(best, rel=1e-10)


def test_average_sharpness_converges_to_half_rho_squared_weighted_trace():
    model, data, w, _, hess = quadratic(False)
    rho = 0.1
    expected = 0.5 * rho ** 2 * float((w ** 2 * torch.diagonal(hess)).sum())   # c = |w|
    small = average_sharpness(model, nn.MSELoss(), data, rho=rho, num_draws=100, seed=0)
    large = average_sharpness(model, nn.MSELoss(), data, rho=rho, num_draws=6400, seed=1)
    for r in (small, large):
        assert abs(r.value - expected) <= 4 * r.stderr
    assert 6.0 <= small.stderr / large.stderr <= 10.0                       # 1/sqrt(n): ratio 8
    assert large.stderr < 0.05 * expected                                   # the test has power


def test_logit_normalization_makes_cross_entropy_sharpness_scale_invariant():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randint(0, 4, (16,), generator=g)
    torch.manual_seed(0)
    base = nn.Linear(3, 4).double()
    scaled = nn.Sequential(base, nn.Identity())

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = base

        def forward(self, t):
            return 10.0 * self.inner(t)

    ce = nn.CrossEntropyLoss()
    a = sam_sharpness(scaled, ce, (x, y), rho=0.05, normalize_logits=True).value
    b = sam_sharpness(Scaled(), ce, (x, y), rho=0.05, normalize_logits=True).value
    assert a == pytest.approx(b, rel=1e-10)
    assert sam_sharpness(Scaled(), ce, (x, y), rho=0.05).value != pytest.approx(
        sam_sharpness(scaled, ce, (x, y), rho=0.05).value, rel=0.1)


def test_declared_subset_and_mode_and_no_side_effects():
    model = nn.Sequential(nn.Linear(P, 8), nn.Dropout(0.5), nn.Tanh(), nn.Linear(8, 1)).double()
    _, data, _, _, _ = quadratic(False)
    model.train()
    nn.MSELoss()(model(data[0]), data[1]).backward()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    full = average_sharpness(model, nn.MSELoss(), data, rho=0.1, num_draws=10)
    first = average_sharpness(model, nn.MSELoss(), (data[0][:10], data[1][:10]), rho=0.1, num_draws=10)
    sub = average_sharpness(model, nn.MSELoss(), data, rho=0.1, num_draws=10, subset=10)
    assert sub.value == pytest.approx(first.value, rel=1e-12) and sub.num_samples == 10
    assert full.num_samples == N and full.mode == "eval"
    adaptive_sharpness(model, nn.MSELoss(), data, rho=0.1, steps=3)
    sam_sharpness(model, nn.MSELoss(), data, rho=0.1)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert torch.equal(torch.get_rng_state(), rng)


def test_bad_input_is_rejected_clearly():
    model, data, _, _, _ = quadratic(False)
    mse = nn.MSELoss()
    for rho in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="rho"):
            sam_sharpness(model, mse, data, rho=rho)
    with pytest.raises(ValueError, match="rho"):
        average_sharpness(model, mse, data, rho=0)
    with pytest.raises(ValueError, match="params is an empty list"):
        adaptive_sharpness(model, mse, data, rho=0.1, params=[])
    with pytest.raises(ValueError, match="no parameters"):
        sam_sharpness(nn.Sequential(nn.Identity()), mse, data, rho=0.1)
    with pytest.raises(ValueError, match="norm"):
        adaptive_sharpness(model, mse, data, rho=0.1, norm="l1")
    with pytest.raises(ValueError, match="mode"):
        sam_sharpness(model, mse, data, rho=0.1, mode="inference")
    with pytest.raises(ValueError, match="subset"):
        sam_sharpness(model, mse, data, rho=0.1, subset=N + 1)
    with pytest.raises(ValueError, match="m must be"):
        sam_sharpness(model, mse, data, rho=0.1, m=0)
    with pytest.raises(ValueError, match="lr"):
        stability_ratios(model, mse, data, lr=0.0)


def test_sharpness_monitor_records_lambda_max_and_ratio():
    model, data, _, _, hess = quadratic(False)
    run = train(model, nn.MSELoss(), data, steps=4, lr=0.05,
                monitors=[sharpness_monitor(nn.MSELoss(), data, every=2, lr=0.05, tol=1e-10)])
    top = float(torch.linalg.eigvalsh(hess)[-1])          # the Hessian of a quadratic never changes
    np.testing.assert_allclose(run.monitors["sharpness.lambda_max"], top, rtol=1e-8)
    np.testing.assert_allclose(run.monitors["sharpness.stability_ratio"], 0.05 * top / 2, rtol=1e-8)


def test_train_mode_sharpness_sees_one_dropout_mask_so_it_vanishes_as_rho_goes_to_zero():
    """L(w + delta) and L(w) are evaluated with the same dropout masks, so at rho -> 0 the gap is the
    first-order term of one fixed function, at most rho ||c g|| (different masks would add ~1e-2)."""
    from theorylab.functional import ModelFunction

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(P, 16), nn.Dropout(0.5), nn.Tanh(), nn.Linear(16, 1)).double()
    _, data, _, _, _ = quadratic(False)
    rho = 1e-7
    fn = ModelFunction(model, nn.MSELoss(), data, mode="train")  # the masks every analyzer below sees
    g = fn.gradient()
    g_norm = math.sqrt(sum(float(t.pow(2).sum()) for t in g))
    cg_norm = math.sqrt(sum(float((t * w.detach().abs()).pow(2).sum()) for t, w in zip(g, model.parameters())))
    sam = sam_sharpness(model, nn.MSELoss(), data, rho=rho, mode="train").value
    assert sam == pytest.approx(rho * g_norm, rel=1e-4)
    assert abs(average_sharpness(model, nn.MSELoss(), data, rho=rho, mode="train", num_draws=5).value) < rho * cg_norm
    assert 0 < adaptive_sharpness(model, nn.MSELoss(), data, rho=rho, mode="train", steps=3).value <= rho * cg_norm * 1.0001
