"""The mini-batch gradient variance of upsampling and upweighting against brute-force enumeration."""
import itertools

import pytest
import torch
from torch import nn

from theorylab.gradients import per_example_gradients
from theorylab.sampling import sampling_gradient_variance


def _case():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    weights = torch.tensor([1.0, 3.0, 1.0, 2.0, 0.5], dtype=torch.float64)
    return model, nn.CrossEntropyLoss(), (x, y), weights


@pytest.mark.parametrize("scheme", ["upsample", "upweight"])
def test_variance_of_two_draws_equals_enumeration_of_all_pairs(scheme):
    model, ce, data, w = _case()
    grads = per_example_gradients(model, ce, data).double()
    n, p = len(w), w / w.sum()
    full = p @ grads
    variance = 0.0
    for i, j in itertools.product(range(n), repeat=2):
        if scheme == "upsample":
            prob, estimate = p[i] * p[j], (grads[i] + grads[j]) / 2
        else:
            prob, estimate = 1.0 / n ** 2, n * (p[i] * grads[i] + p[j] * grads[j]) / 2
        variance += float(prob * ((estimate - full) ** 2).sum())
    res = sampling_gradient_variance(model, ce, [(data[0][:2], data[1][:2]), (data[0][2:], data[1][2:])], weights=w,
                                     scheme=scheme, batch_size=2, chunk_size=2)
    assert res.variance == pytest.approx(variance, rel=1e-10)


def test_both_schemes_estimate_the_gradient_of_the_weighted_loss():
    model, ce, (x, y), w = _case()
    loss = (nn.functional.cross_entropy(model(x), y, reduction="none") * w).sum() / w.sum()
    full = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, list(model.parameters()))])
    res = sampling_gradient_variance(model, ce, (x, y), weights=w, scheme="upsample")
    assert res.mean_gradient_norm2 == pytest.approx(float(full @ full), rel=1e-10)


def test_equal_weights_make_the_schemes_identical_and_bad_inputs_are_refused():
    model, ce, data, _ = _case()
    ones = torch.ones(5)
    a = sampling_gradient_variance(model, ce, data, weights=ones, scheme="upsample")
    b = sampling_gradient_variance(model, ce, data, weights=ones, scheme="upweight")
    assert a.variance == pytest.approx(b.variance, rel=1e-12)
    with pytest.raises(ValueError, match="scheme"):
        sampling_gradient_variance(model, ce, data, weights=ones, scheme="reweight")
    with pytest.raises(ValueError, match="entries"):
        sampling_gradient_variance(model, ce, data, weights=torch.ones(4), scheme="upsample")
    with pytest.raises(ValueError, match="weights must be"):
        sampling_gradient_variance(model, ce, data, weights=-ones, scheme="upsample")
