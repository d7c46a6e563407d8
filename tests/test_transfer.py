"""Hessian alignment of two domains, the transfer measure and its Hessian-alignment bound against exact references:
dense float64 Hessians and gradients, a brute-force grid over the ball, and a quadratic loss on which the bound of
Hemati et al. 2023 is attained exactly."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from theorylab.tasks import shifted_images
from theorylab.theory import hessian_alignment_bound
from theorylab.transfer import head_hessian_alignment, transfer_measure


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 5), nn.Tanh())
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(self.body(x))


def _domains():
    g = torch.Generator().manual_seed(0)
    x_a, x_b = torch.randn(40, 4, generator=g, dtype=torch.float64), 1.5 * torch.randn(30, 4, generator=g,
                                                                                    dtype=torch.float64) + 0.5
    return (x_a, torch.randint(0, 3, (40,), generator=g)), (x_b, torch.randint(0, 3, (30,), generator=g))


def _dense_head(model, data):
    """Loss, gradient and Hessian of the mean cross-entropy in the head's (weight, bias), flattened, by autograd."""
    x, y = data
    features = model.body(x).detach()
    w0, b0 = model.head.weight.detach(), model.head.bias.detach()

    def loss(theta):
        w, b = theta[:w0.numel()].reshape(w0.shape), theta[w0.numel():]
        return nn.functional.cross_entropy(features @ w.T + b, y)

    theta = torch.cat([w0.ravel(), b0])
    return (float(loss(theta)), torch.autograd.functional.jacobian(loss, theta),
            torch.autograd.functional.hessian(loss, theta))


def test_head_hessian_alignment_equals_the_dense_float64_hessians_and_gradients():
    torch.manual_seed(0)
    model = Net().double()
    a, b = _domains()
    result = head_hessian_alignment(model, nn.CrossEntropyLoss(), a, b, params="head", tol=1e-10)
    (loss_a, g_a, h_a), (loss_b, g_b, h_b) = _dense_head(model, a), _dense_head(model, b)
    difference = torch.linalg.eigvalsh(h_a - h_b)
    assert result.hessian_gap == pytest.approx(float(difference.abs().max()), rel=1e-8)
    assert result.gradient_gap == pytest.approx(float((g_a - g_b).norm()), rel=1e-10)
    assert result.top_eigenvalue_a == pytest.approx(float(torch.linalg.eigvalsh(h_a)[-1]), rel=1e-8)
    assert result.top_eigenvalue_b == pytest.approx(float(torch.linalg.eigvalsh(h_b)[-1]), rel=1e-8)
    assert result.gradient_norm_a == pytest.approx(float(g_a.norm()), rel=1e-10)
    assert result.gradient_norm_b == pytest.approx(float(g_b.norm()), rel=1e-10)
    assert (result.loss_a, result.loss_b) == pytest.approx((loss_a, loss_b), rel=1e-12)
    assert result.num_params == 18
    # a domain against itself: nothing to misalign
    same = head_hessian_alignment(model, nn.CrossEntropyLoss(), a, a, params="head")
    assert same.hessian_gap == pytest.approx(0.0, abs=1e-12) and same.gradient_gap == 0.0
    with pytest.raises(ValueError, match="tol must be"):
        head_hessian_alignment(model, nn.CrossEntropyLoss(), a, b, tol=0.0)


def _logistic_domains():
    """Two 2-D logistic-regression domains with different inputs and labelling rules."""
    g = torch.Generator().manual_seed(3)
    x_s = torch.randn(30, 2, generator=g, dtype=torch.float64)
    y_s = (x_s[:, 0] + 0.3 * torch.randn(30, generator=g, dtype=torch.float64) > 0).double()
    x_t = torch.randn(25, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.5], dtype=torch.float64)
    y_t = (x_t[:, 0] - x_t[:, 1] > 0.5).double()
    return (x_s, y_s), (x_t, y_t)


def _logistic_loss(out, y):
    return nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y)


def _losses(data, thetas, weight_decay):
    """The regularised mean logistic loss at each row of ``thetas`` (float64 numpy)."""
    x, y = (t.numpy() for t in data)
    logits = x @ thetas.T                                            # (n, points)
    return np.mean(np.logaddexp(0.0, logits) - y[:, None] * logits, axis=0) + weight_decay / 2 * (thetas ** 2).sum(1)


def _brute_force(f, centre, radius, points=(301, 721), refine=201):
    """``(max, argmax)`` of ``f`` (rows of points -> values) over the disc: a polar grid, then a fine square grid
    of half-width two coarse spacings around the best coarse point, clipped to the disc."""
    r = np.linspace(0.0, radius, points[0])
    angle = np.linspace(0.0, 2 * np.pi, points[1], endpoint=False)
    coarse = centre + (r[:, None, None] * np.stack([np.cos(angle), np.sin(angle)], -1)[None]).reshape(-1, 2)
    best = coarse[np.argmax(f(coarse))]
    width = 2 * max(radius / (points[0] - 1), radius * 2 * np.pi / points[1])
    axis = np.linspace(-width, width, refine)
    fine = best + np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    offsets = fine - centre
    norms = np.linalg.norm(offsets, axis=1, keepdims=True)
    fine = centre + offsets * np.minimum(1.0, radius / np.maximum(norms, 1e-300))   # onto the disc
    values = f(fine)
    return float(values.max()), fine[np.argmax(values)]


@pytest.mark.parametrize("radius, weight_decay", [(0.5, 0.0), (2.0, 0.1)])
def test_transfer_measure_equals_a_brute_force_grid_over_the_ball(radius, weight_decay):
    source, target = _logistic_domains()
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.8, -0.3]], dtype=torch.float64))
    result = transfer_measure(model, _logistic_loss, source, target, radius=radius, weight_decay=weight_decay,
                              tol=1e-9, steps=2000)
    centre = model.weight.detach().numpy().ravel()
    source_min = -_brute_force(lambda t: -_losses(source, t, weight_decay), centre, radius)[0]
    target_min = -_brute_force(lambda t: -_losses(target, t, weight_decay), centre, radius)[0]
    sup_gap, _ = _brute_force(lambda t: _losses(target, t, weight_decay) - _losses(source, t, weight_decay), centre,
                              radius)
    # the grid's values are upper bounds of the infima and a lower bound of the supremum (fine spacing ~ 1e-4 radius)
    assert result.source_min == pytest.approx(source_min, abs=1e-8) and result.source_min <= source_min + 1e-12
    assert result.target_min == pytest.approx(target_min, abs=1e-8) and result.target_min <= target_min + 1e-12
    assert result.sup_gap == pytest.approx(sup_gap, abs=1e-8) and result.sup_gap >= sup_gap - 1e-12
    assert result.value == pytest.approx(sup_gap - (target_min - source_min), abs=3e-8)
    assert result.source_center == pytest.approx(float(_losses(source, centre[None], weight_decay)[0]), rel=1e-12)
    assert result.target_center == pytest.approx(float(_losses(target, centre[None], weight_decay)[0]), rel=1e-12)
    assert result.sup_distance <= radius * (1 + 1e-12)
    assert result.value >= -1e-12  # theta = argmin L_S in the ball makes the bracket >= 0


def test_transfer_measure_of_a_domain_with_itself_is_zero_and_bad_options_are_refused():
    source, _ = _logistic_domains()
    model = nn.Linear(2, 1, bias=False).double()
    result = transfer_measure(model, _logistic_loss, source, source, radius=1.0)
    assert result.value == pytest.approx(0.0, abs=1e-12) and result.sup_gap == pytest.approx(0.0, abs=1e-12)
    for bad, message in (({"radius": 0.0}, "radius must be"), ({"radius": 1.0, "weight_decay": -1.0}, "weight_decay"),
                         ({"radius": 1.0, "steps": 0}, "steps must be"), ({"radius": 1.0, "restarts": -1}, "restarts"),
                         ({"radius": 1.0, "tol": 1.0}, "tol must be")):
        with pytest.raises(ValueError, match=message):
            transfer_measure(model, _logistic_loss, source, source, **bad)


def test_the_bound_is_attained_by_a_quadratic_loss_whose_gradient_gap_lies_along_the_hessian_gap():
    """MSE of a linear model is exactly quadratic: with the source at its minimum theta* = 0, ``H_T - H_S = c e1
    e1^T`` and ``g_T - g_S`` along ``e1``, the supremum of ``L_T - L_S`` over the ball is reached at ``delta e1``
    and the transfer measure equals the bound."""
    root2, s, u = math.sqrt(2.0), 2.0, -0.4
    source = (torch.tensor([[root2, 0.0], [-root2, 0.0], [0.0, root2], [0.0, -root2]], dtype=torch.float64),
              torch.zeros(4, dtype=torch.float64))
    target = (torch.tensor([[s, 0.0], [-s, 0.0], [0.0, root2], [0.0, -root2]], dtype=torch.float64),
              torch.tensor([u, -u, 0.0, 0.0], dtype=torch.float64))
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.zero_()
    mse = lambda out, y: ((out.squeeze(-1) - y) ** 2).mean()  # noqa: E731
    aligned = head_hessian_alignment(model, mse, source, target, tol=1e-12)
    # H_D = 2 E[x x^T]: H_S = 2 I, H_T = diag(s^2, 2); g_T = -2 E[x y] = -s u e1, g_S = 0
    assert aligned.hessian_gap == pytest.approx(s ** 2 - 2, rel=1e-10)
    assert aligned.gradient_gap == pytest.approx(abs(s * u), rel=1e-12)
    radius = 0.3
    measured = transfer_measure(model, mse, source, target, radius=radius, tol=1e-10, steps=5000)
    assert measured.source_center - measured.source_min == pytest.approx(0.0, abs=1e-14)
    predicted = hessian_alignment_bound(radius, aligned.hessian_gap, aligned.gradient_gap,
                                        measured.target_center - measured.target_min,
                                        measured.source_center - measured.source_min)
    assert measured.value == pytest.approx(predicted, rel=1e-8)
    assert measured.sup_distance == pytest.approx(radius, rel=1e-12)


def test_the_bound_is_its_formula_and_refuses_bad_input():
    assert hessian_alignment_bound(2.0, 3.0, 0.5, 0.25, 0.05) == pytest.approx(0.25 - 0.05 + 2 * 0.5 + 2 * 3.0)
    for bad in ({"radius": -1.0}, {"hessian_gap": math.nan}, {"gradient_gap": -0.1}, {"target_excess": math.inf}):
        with pytest.raises(ValueError, match="must be"):
            hessian_alignment_bound(**{"radius": 1.0, "hessian_gap": 1.0, "gradient_gap": 1.0, "target_excess": 0.0,
                                       **bad})


def test_shifted_images_move_the_columns_and_interpolate_fractional_shifts():
    image = torch.arange(1.0, 17.0, dtype=torch.float64).reshape(1, 16)          # a 4 x 4 image
    grid = image.reshape(4, 4)
    once = shifted_images(image, 1, side=4).reshape(4, 4)
    torch.testing.assert_close(once[:, 1:], grid[:, :3])
    assert once[:, 0].abs().sum() == 0
    torch.testing.assert_close(shifted_images(image, 0, side=4), image)
    half = shifted_images(image, 1.5, side=4)
    torch.testing.assert_close(half, 0.5 * shifted_images(image, 1, side=4) + 0.5 * shifted_images(image, 2, side=4))
    with pytest.raises(ValueError, match="images must have shape"):
        shifted_images(image, 1)
    with pytest.raises(ValueError, match="columns must be in"):
        shifted_images(image, 4, side=4)
