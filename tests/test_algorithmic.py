"""Softmax collapse, logit-scaling alignment and the Fourier probe against exact references."""
import numpy as np
import pytest
import torch
from torch import nn

from theorylab.algorithmic import (fourier_spectrum, logit_scaling_cosine, modular_network, planted_fourier_embedding,
                                   random_concentration, softmax_collapse_fraction)
from theorylab.tasks import modular_arithmetic, one_hot_pairs


def test_softmax_collapse_is_float32_rounding_of_large_margins():
    model = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))
    margins = torch.tensor([5.0, 25.0, 25.0, 60.0])  # e^-25 is below float32's eps, not float64's; e^-60 below both
    x = torch.zeros(4, 3)
    x[:, 0] = margins
    y = torch.zeros(4, dtype=torch.long)
    assert softmax_collapse_fraction(model, (x, y)) == 0.75
    assert softmax_collapse_fraction(model, (x, y), dtype=torch.float64) == 0.25


def test_logit_scaling_cosine_uses_the_homogeneity_of_a_bias_free_relu_network():
    """For f(c theta) = c^2 f(theta), grad L . theta = (2/N) sum_i dl/df_i . f_i (Euler's theorem)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7, bias=False), nn.ReLU(), nn.Linear(7, 3, bias=False)).double()
    x, y = torch.randn(11, 5, dtype=torch.float64), torch.randint(0, 3, (11,))
    out = model(x).detach().requires_grad_(True)
    nn.functional.cross_entropy(out, y).backward()
    euler = float(2 * (out.grad * out.detach()).sum())
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])
    gradient = torch.cat([g.flatten() for g in grads])
    assert float(gradient @ theta) == pytest.approx(euler, rel=1e-10)
    expected = -euler / float(gradient.norm() * theta.norm())
    assert logit_scaling_cosine(model, nn.CrossEntropyLoss(), (x, y)) == pytest.approx(expected, rel=1e-10)


def test_a_planted_fourier_embedding_is_found_and_a_random_one_is_spread():
    planted = fourier_spectrum(planted_fourier_embedding(23, [3, 7], features=16), top=2)
    assert planted.top_fraction == pytest.approx(1.0, abs=1e-12) and planted.key_frequencies == [3, 7]
    even = fourier_spectrum(planted_fourier_embedding(24, [12, 5]), top=2)
    assert even.key_frequencies == [5, 12] and even.top_fraction == pytest.approx(1.0, abs=1e-12)
    single = fourier_spectrum(np.stack([planted_fourier_embedding(23, [k], features=1, seed=k)[0] for k in
                                        (1, 4, 4, 9)]), top=2)
    assert single.feature_concentration == pytest.approx(1.0, abs=1e-12) and single.top_fraction < 1
    rng = np.random.default_rng(0)
    concentration = np.mean([fourier_spectrum(rng.standard_normal((64, 23)), top=2).feature_concentration
                             for _ in range(20)])
    assert concentration == pytest.approx(random_concentration(23), rel=0.15)  # E[max share] ~ H_m / m
    fractions = [fourier_spectrum(rng.standard_normal((64, 23)), top=2).top_fraction for _ in range(20)]
    assert 2 / 11 < np.mean(fractions) < 2.5 * 2 / 11  # top 2 of 11 frequencies: above 2/11, the share of equal powers
    with pytest.raises(ValueError, match="constant over the residues"):
        fourier_spectrum(np.ones((3, 7)), top=2)


def test_modular_arithmetic_data():
    split = modular_arithmetic(7, train_fraction=0.5, seed=1)
    x = torch.cat([split.x_train, split.x_test])
    y = torch.cat([split.y_train, split.y_test])
    assert len(y) == 49 and len(split.y_train) == 24 and split.num_classes == 7
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % 7)
    assert sorted(map(tuple, x.tolist())) == [(a, b) for a in range(7) for b in range(7)]
    assert one_hot_pairs(x[:2], 7).sum(1).tolist() == [2.0, 2.0]
    with pytest.raises(ValueError, match="operation must be"):
        modular_arithmetic(7, operation="divide")


def test_the_modular_network_computes_its_formula_and_keeps_the_global_generator():
    state = torch.get_rng_state()
    model = modular_network(5, 4, seed=3).double()
    assert torch.equal(state, torch.get_rng_state())
    x = one_hot_pairs(torch.tensor([[1, 2], [4, 0]]), 5, dtype=torch.float64)
    w1, w2 = model[0].weight, model[2].weight
    torch.testing.assert_close(model(x), ((x @ w1.T) ** 2) @ w2.T, rtol=1e-12, atol=0)
