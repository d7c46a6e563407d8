"""Input gradients and PGD against closed forms on linear models (Madry et al. 2018; Shah et al. 2021)."""
import pytest
import torch
from torch import nn

from theorylab.attribution import attribution_share, input_gradients, pgd_perturbation


def _linear():
    torch.manual_seed(0)
    model = nn.Linear(6, 3).double()
    g = torch.Generator().manual_seed(1)
    return model, torch.randn(7, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (7,), generator=g)


def test_input_gradients_of_softmax_regression_are_the_error_times_the_weights():
    model, x, y = _linear()
    p = torch.softmax(model(x), 1).detach()
    expected = (p - nn.functional.one_hot(y, 3).double()) @ model.weight.detach()
    got = input_gradients(model, nn.CrossEntropyLoss(), [(x[:3], y[:3]), (x[3:], y[3:])])
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_attribution_share_of_a_region():
    grads = torch.tensor([[1.0, -3.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    region = torch.tensor([True, True, False, False])
    assert attribution_share(grads, region).tolist() == [0.5, 0.0]
    per_example = torch.tensor([[True, False, False, False], [False, False, False, True]])
    assert attribution_share(grads, per_example).tolist() == [0.125, 0.0]


def test_pgd_finds_the_closed_form_worst_case_of_a_linear_binary_classifier():
    """Logistic loss of w.x + b with label y = +-1: the worst l-inf perturbation is -y epsilon sign(w)."""
    torch.manual_seed(0)
    model = nn.Linear(5, 1).double()
    x = torch.randn(8, 5, dtype=torch.float64)
    y = torch.tensor([1.0, -1.0] * 4, dtype=torch.float64)
    loss = lambda out, t: nn.functional.softplus(-t * out.squeeze(1)).mean()  # noqa: E731
    delta = pgd_perturbation(model, loss, x, y, epsilon=0.3, steps=3)
    expected = -y[:, None] * 0.3 * model.weight.detach().sign()
    torch.testing.assert_close(delta, expected, rtol=0, atol=1e-15)
    assert not any(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="epsilon"):
        pgd_perturbation(model, loss, x, y, epsilon=-1.0, steps=1)
