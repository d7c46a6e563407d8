"""Operator algebra: every composite operator against its dense twin (float64, tight tolerances)."""
import numpy as np
import pytest
import torch
from torch import nn

from theorylab.curvature import DenseOperator, ggn, hessian, identity, restrict, shift, top_eigenvalues, trace
from theorylab.curvature.algebra import ScaledOperator, SumOperator

ATOL = 1e-12


def _case():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (9,), generator=g)
    return model, nn.CrossEntropyLoss(), [(x[:5], y[:5]), (x[5:], y[5:])]


def _probe(size, k=3):
    return torch.randn(size, k, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def test_sum_scale_shift_negation_and_division_match_their_dense_twins():
    model, loss, data = _case()
    h, g = hessian(model, loss, data), ggn(model, loss, data)
    dh, dg = h.to_dense(), g.to_dense()
    eye = torch.eye(h.shape[0], dtype=torch.float64)
    v = _probe(h.shape[0])
    cases = {
        "sum": (h + g, dh + dg),
        "difference": (h - g, dh - dg),
        "scaled": (2.5 * h, 2.5 * dh),
        "right scaled": (h * np.float64(-0.5), -0.5 * dh),
        "tensor scalar": (torch.tensor(3.0) * g, 3 * dg),
        "divided": (h / 4, dh / 4),
        "negated": (-g, -dg),
        "shifted": (shift(h, 0.7), dh - 0.7 * eye),
        "damped": (g + 1e-2 * identity(g), dg + 1e-2 * eye),
        "combination": (0.5 * (h + g) - 2 * h, 0.5 * (dh + dg) - 2 * dh),
    }
    for name, (op, dense) in cases.items():
        torch.testing.assert_close(op @ v, dense @ v, atol=ATOL, rtol=0, msg=name)
        torch.testing.assert_close(op @ v[:, 0], dense @ v[:, 0], atol=ATOL, rtol=0, msg=name)
        torch.testing.assert_close(op.to_dense(), dense, atol=ATOL, rtol=0, msg=name)
        np.testing.assert_allclose(op.to_scipy() @ v.numpy(), (dense @ v).numpy(), atol=ATOL, rtol=0)
    assert isinstance(h + g - h, SumOperator) and len((h + g - h).terms) == 3  # sums stay flat
    assert isinstance(2 * (3 * h), ScaledOperator) and (2 * (3 * h)).scalar == 6.0


def test_estimators_accept_composites_and_a_shift_moves_the_spectrum():
    model, loss, data = _case()
    g = ggn(model, loss, data)
    dense = g.to_dense()
    top = top_eigenvalues(shift(g, 0.3), k=2, tol=1e-10).values
    np.testing.assert_allclose(top, torch.linalg.eigvalsh(dense).flip(0)[:2].numpy() - 0.3, rtol=1e-9, atol=1e-12)
    est = trace(3 * g, num_probes=g.shape[0] * 3, method="hutch++", seed=0)
    assert est.estimate == pytest.approx(3 * float(torch.trace(dense)), rel=1e-9)


@pytest.mark.parametrize("block", ["2", ["0.bias", "2.weight"], "*.bias"])
def test_restriction_to_a_parameter_block_is_the_submatrix_and_the_block_hessian(block):
    model, loss, data = _case()
    h = hessian(model, loss, data)
    sub = restrict(h, block)
    index = sub.indices
    torch.testing.assert_close(sub.to_dense(), h.to_dense()[index][:, index], atol=ATOL, rtol=0)
    torch.testing.assert_close(sub.to_dense(), hessian(model, loss, data, params=block).to_dense(), atol=ATOL, rtol=0)
    assert sub.param_names == hessian(model, loss, data, params=block).param_names


def test_restriction_by_indices_on_a_dense_operator():
    a = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = a + a.T
    sub = restrict(DenseOperator(a), [4, 1, 2])
    torch.testing.assert_close(sub.to_dense(), a[[1, 2, 4]][:, [1, 2, 4]], atol=0, rtol=0)


def test_clear_errors():
    model, loss, data = _case()
    h = hessian(model, loss, data)
    other = DenseOperator(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="different shapes"):
        h + other
    with pytest.raises(ValueError, match="share dtype"):
        h + DenseOperator(torch.eye(h.shape[0], dtype=torch.float32))
    with pytest.raises(TypeError):
        h * "2"
    with pytest.raises(TypeError):
        h + 1.0
    with pytest.raises(ZeroDivisionError):
        h / 0
    with pytest.raises(ValueError, match="matched none"):
        restrict(h, "decoder")
    with pytest.raises(ValueError, match="no parameter names"):
        restrict(other, "0.weight")
    with pytest.raises(ValueError, match="distinct"):
        restrict(other, [0, 0])
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        restrict(other, [5])
    with pytest.raises(ValueError, match="finite"):
        h * float("nan")
