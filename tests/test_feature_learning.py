"""The patch network, the planted-feature probe and the loss-path ratio against exact references."""
import itertools
import math

import numpy as np
import pytest
import torch

from theorylab.feature_learning import PatchNetwork, loss_path_ratio, planted_feature_alignment
from theorylab.tasks import feature_noise_patches, planted_feature_directions
from theorylab.train import train


def test_patch_network_is_the_signed_sum_of_powered_relus_over_patches_and_filters():
    model = PatchNetwork(4, 6, power=3, init_std=0.7, seed=1).double()
    x = torch.randn(5, 2, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    w = model.filters.weight.detach()
    expected = torch.zeros(5, dtype=torch.float64)
    for i, r, p in itertools.product(range(5), range(6), range(2)):
        sign = 1.0 if r < 3 else -1.0
        expected[i] += sign * max(float(w[r] @ x[i, p]), 0.0) ** 3 / 3
    torch.testing.assert_close(model(x).detach(), expected, rtol=1e-12, atol=1e-12)
    assert model.signs.tolist() == [1.0, 1.0, 1.0, -1.0, -1.0, -1.0]
    for bad, message in (({"width": 3}, "even width"), ({"power": 0}, "power must be"), ({"init_std": 0.0}, "init_std")):
        with pytest.raises(ValueError, match=message):
            PatchNetwork(4, **{"width": 6, **bad})
    with pytest.raises(ValueError, match=r"shape \(N, patches, dim\)"):
        model(x[:, 0])


def _planted_network():
    """Four filters along known directions of R^3: the projections are readable by hand."""
    model = PatchNetwork(3, 4, seed=0).double()
    with torch.no_grad():
        model.filters.weight.copy_(torch.tensor([[2.0, 0.0, 0.0],     # along u, votes +
                                                 [0.0, 3.0, 4.0],     # |w| = 5, part along v, votes +
                                                 [-1.0, 0.0, 0.0],    # against u, votes -: aligned with -u
                                                 [0.0, -2.0, 0.0]], dtype=torch.float64))  # against v, votes -
    return model


def test_planted_feature_alignment_gives_the_signed_projections_and_cosines_by_hand():
    model = _planted_network()
    features = torch.tensor([[1.5, 0.0, 0.0], [0.0, 0.5, 0.0]], dtype=torch.float64)  # u, v
    result = planted_feature_alignment(model, features, signs=model.signs)
    # s_r <w_r, f_k>: rows are neurons, columns (u, v)
    np.testing.assert_allclose(result.projections, [[3.0, 0.0], [0.0, 1.5], [1.5, 0.0], [0.0, 1.0]], atol=1e-15)
    np.testing.assert_allclose(result.cosines, [[1.0, 0.0], [0.0, 0.6], [1.0, 0.0], [0.0, 1.0]], atol=1e-15)
    np.testing.assert_allclose(result.learned, [3.0, 1.5], atol=1e-15)
    np.testing.assert_allclose(result.alignment, [1.0, 1.0], atol=1e-15)
    assert result.layer == "filters.weight"
    unsigned = planted_feature_alignment(model, features)  # every neuron read as voting +
    np.testing.assert_allclose(unsigned.learned, [3.0, 1.5], atol=1e-15)
    np.testing.assert_allclose(unsigned.projections[2:], [[-1.5, 0.0], [0.0, -1.0]], atol=1e-15)


def test_planted_feature_alignment_equals_a_dense_float64_reference_on_a_random_layer():
    model = PatchNetwork(7, 10, init_std=1.0, seed=3)
    features = torch.randn(3, 7, generator=torch.Generator().manual_seed(4))
    signs = torch.where(torch.arange(10) % 3 == 0, -1.0, 1.0)
    result = planted_feature_alignment(model, features, signs=signs)
    w, f, s = (t.detach().double().numpy() for t in (model.filters.weight, features, signs))
    projections = s[:, None] * (w @ f.T)
    cosines = projections / np.outer(np.linalg.norm(w, axis=1), np.linalg.norm(f, axis=1))
    np.testing.assert_allclose(result.projections, projections, rtol=1e-12)
    np.testing.assert_allclose(result.cosines, cosines, rtol=1e-12)
    np.testing.assert_allclose(result.learned, projections.max(0), rtol=1e-12)
    np.testing.assert_allclose(result.alignment, cosines.max(0), rtol=1e-12)


def test_planted_feature_alignment_refuses_bad_features_signs_and_ambiguous_layers():
    model = _planted_network()
    with pytest.raises(ValueError, match=r"shape \(K, dim\)"):
        planted_feature_alignment(model, torch.ones(3))
    with pytest.raises(ValueError, match="zero vector"):
        planted_feature_alignment(model, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="one entry per neuron"):
        planted_feature_alignment(model, torch.ones(1, 3), signs=torch.ones(3))
    with pytest.raises(ValueError, match="exactly one selected weight matrix"):
        planted_feature_alignment(model, torch.ones(1, 5))
    square = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="select it with params"):
        planted_feature_alignment(square, torch.ones(1, 4))
    assert planted_feature_alignment(square, torch.ones(1, 4), params="1.weight").layer == "1.weight"


def test_gradient_descent_recovers_a_planted_feature():
    """Without noise and with the strong feature in every example, the gradient of every filter lies in the span of
    the patches, span(u, v): the filters' components orthogonal to it stay exactly at their initial values, while
    their largest signed projection on u grows more than five times from its initial value (about 2.5 init_std
    ||u||), and the weak feature, ten times weaker, stays behind."""
    features = planted_feature_directions(20, strong_norm=1.0, weak_norm=0.1)
    x, y, _ = feature_noise_patches(64, 20, strong_norm=1.0, weak_norm=0.1, noise_std=0.0, strong_fraction=1.0,
                                    seed=0)
    model = PatchNetwork(20, 8, power=2, init_std=0.1, seed=0)
    initial = model.filters.weight.detach().clone()
    before = planted_feature_alignment(model, features, signs=model.signs)
    train(model, lambda out, t: ((out - t) ** 2).mean(), (x, y), steps=300, lr=0.5)
    after = planted_feature_alignment(model, features, signs=model.signs)
    torch.testing.assert_close(model.filters.weight.detach()[:, 2:], initial[:, 2:], rtol=0, atol=0)
    assert after.learned[0] > 5 * before.learned[0]
    assert after.learned[0] > 10 * after.learned[1]
    assert before.alignment[0] < 0.6 < 0.9 < after.alignment[0]


def test_loss_path_ratio_is_one_for_a_monotone_descent_and_counts_every_rise():
    assert loss_path_ratio([1.0, 0.6, 0.3, 0.1]) == pytest.approx(1.0, rel=1e-15)
    assert loss_path_ratio([1.0, 0.5, 0.8, 0.2]) == pytest.approx((0.5 + 0.3 + 0.6) / 0.8, rel=1e-15)
    assert loss_path_ratio(np.array([0.5, 0.7, 0.5])) == math.inf  # no net descent
    with pytest.raises(ValueError, match="two finite"):
        loss_path_ratio([1.0])
    with pytest.raises(ValueError, match="two finite"):
        loss_path_ratio([1.0, math.nan])
