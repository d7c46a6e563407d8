"""Cross-check with curvlinops 3 (Dangel et al.) on the same model, loss and batches, in float64.

Every shared operator agrees to rounding (1e-12 relative to the largest entry): the Hessian, the GGN, the
exact Fisher (curvlinops' GGN), the empirical Fisher and K-FAC (exact "type-2" and empirical, expand and
reduce, weight and bias in one Kronecker block) on a network with a convolution (weight sharing over
pixels) and linear layers.  One convention differs and is checked as such: for ``nn.MSELoss`` (a mean over
the ``k`` outputs too) curvlinops' empirical Fisher sums the squared gradients of the ``N k`` loss terms,
``k`` times ours, whose ``g_i`` is the gradient of example ``i``'s loss ``loss_fn(f(x_i), y_i)``.
"""
import pytest
import torch
from torch import nn

curvlinops = pytest.importorskip("curvlinops")

from theorylab.curvature import empirical_fisher, fisher, ggn, hessian, kfac  # noqa: E402

RTOL = 1e-12


def _case(loss_name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(48, 5), nn.Tanh(),
                          nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(11, 2, 4, 4, generator=g, dtype=torch.float64)
    if loss_name == "ce":
        loss, y = nn.CrossEntropyLoss(), torch.randint(0, 3, (11,), generator=g)
    else:
        loss, y = nn.MSELoss(), torch.randn(11, 3, generator=g, dtype=torch.float64)
    return model, loss, [(x[:5], y[:5]), (x[5:], y[5:])]


def _assert_same(ours, theirs, scale=1.0):
    dense = ours.to_dense()
    reference = theirs @ torch.eye(dense.shape[0], dtype=torch.float64)
    torch.testing.assert_close(scale * dense, reference, atol=RTOL * float(reference.abs().max()), rtol=0)


@pytest.mark.parametrize("loss_name", ["ce", "mse"])
def test_hessian_ggn_fisher_and_empirical_fisher_agree_with_curvlinops(loss_name):
    model, loss, data = _case(loss_name)
    params = list(model.parameters())
    _assert_same(hessian(model, loss, data), curvlinops.HessianLinearOperator(model, loss, params, data))
    theirs_ggn = curvlinops.GGNLinearOperator(model, loss, params, data)
    _assert_same(ggn(model, loss, data), theirs_ggn)
    _assert_same(fisher(model, loss, data), theirs_ggn)
    outputs = 1 if loss_name == "ce" else 3  # curvlinops' per-loss-term convention for the MSE (module docstring)
    _assert_same(empirical_fisher(model, loss, data), curvlinops.EFLinearOperator(model, loss, params, data),
                 scale=outputs)


@pytest.mark.parametrize("sharing", ["expand", "reduce"])
@pytest.mark.parametrize("loss_name", ["ce", "mse"])
def test_kfac_agrees_with_curvlinops(loss_name, sharing):
    model, loss, data = _case(loss_name)
    params = list(model.parameters())
    for ours, theirs, scale in [("exact", "type-2", 1), ("empirical", "empirical", 1 if loss_name == "ce" else 3)]:
        reference = curvlinops.KFACLinearOperator(model, loss, params, data, fisher_type=theirs, kfac_approx=sharing,
                                                  separate_weight_and_bias=False)
        _assert_same(kfac(model, loss, data, fisher_type=ours, weight_sharing=sharing), reference, scale=scale)
