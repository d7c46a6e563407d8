"""Mixup batches, the mixup loss, its optimal margin and the geometry of mixed inputs against exact references."""
import math

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

from theorylab.mixup import mixup_batch, mixup_geometry, soft_cross_entropy
from theorylab.models import MLP
from theorylab.theory import mixup_optimal_margin


class Planted(nn.Module):
    """Features = the input itself, then a planted linear classifier ``W h + b``."""

    def __init__(self, weight, bias):
        super().__init__()
        self.body = nn.Identity()
        self.head = nn.Linear(weight.shape[1], weight.shape[0]).double()
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)

    def forward(self, x):
        return self.head(self.body(x))


def _reference(h_of, z_of, x_a, x_b, ya, yb, lambdas, weight):
    """Every field by brute force: loops over pairs and weights, float64 numpy."""
    x_a, x_b, weight = (np.asarray(t, dtype=np.float64) for t in (x_a, x_b, weight))
    clean = np.concatenate([x_a, x_b])
    labels = np.concatenate([ya, yb])
    classes = sorted(set(labels.tolist()))
    means = {k: np.mean([h_of(clean[i]) for i in range(len(clean)) if labels[i] == k], axis=0) for k in classes}
    centre = np.mean([means[k] for k in classes], axis=0)
    dists = [np.sum((means[j] - means[k]) ** 2) for j in classes for k in classes if j != k]
    scale = math.sqrt(np.mean(dists))
    w_centred = weight - weight.mean(0)
    out = {key: np.full((len(x_a), len(lambdas)), np.nan) for key in
           ("margins", "pair_mass", "target_kl", "position", "offset", "spread", "cosines")}
    for i in range(len(x_a)):
        a, b = int(ya[i]), int(yb[i])
        for j, lam in enumerate(lambdas):
            h = h_of(lam * x_a[i] + (1 - lam) * x_b[i])
            z = z_of(h)
            p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            t = np.zeros_like(p)
            t[a] += lam
            t[b] += 1 - lam
            out["target_kl"][i, j] = sum(t[k] * math.log(t[k] / p[k]) for k in range(len(p)) if t[k] > 0)
            u = h - centre
            out["cosines"][i, j] = u @ w_centred[a] / (np.linalg.norm(u) * np.linalg.norm(w_centred[a]))
            if a == b:
                out["pair_mass"][i, j] = p[a]
                out["spread"][i, j] = np.linalg.norm(h - means[a]) / scale
                continue
            out["margins"][i, j] = z[a] - z[b]
            out["pair_mass"][i, j] = p[a] + p[b]
            seg = means[a] - means[b]
            t_pos = (h - means[b]) @ seg / (seg @ seg)
            out["position"][i, j] = t_pos
            out["offset"][i, j] = np.linalg.norm(h - means[b] - t_pos * seg) / np.linalg.norm(seg)
    return out


def _compare(result, expected):
    for key, field in (("margins", result.margins), ("pair_mass", result.pair_mass), ("target_kl", result.target_kl),
                       ("position", result.position), ("offset", result.offset), ("spread", result.spread),
                       ("cosines", result.classifier_cosines)):
        np.testing.assert_allclose(field, expected[key], rtol=1e-10, atol=1e-12, err_msg=key)


def test_mixup_geometry_of_a_planted_linear_model_equals_the_brute_force_reference():
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    model = Planted(weight, bias)
    x_a = torch.randn(5, 4, generator=g, dtype=torch.float64)
    x_b = torch.randn(5, 4, generator=g, dtype=torch.float64)
    ya, yb = np.array([0, 1, 2, 0, 1]), np.array([1, 2, 0, 0, 1])
    lambdas = np.linspace(0, 1, 6)
    result = mixup_geometry(model, x_a, x_b, lambdas, labels_a=ya, labels_b=yb, classifier="head")
    w, b = weight.numpy(), bias.numpy()
    expected = _reference(lambda v: v, lambda h: w @ h + b, x_a, x_b, ya, yb, lambdas, w)
    _compare(result, expected)
    # the margin of an affine model is affine in lam: the interpolated crossing is exact, m(0) / (m(0) - m(1))
    for i in range(3):
        m0, m1 = expected["margins"][i, 0], expected["margins"][i, -1]
        want = m0 / (m0 - m1) if m0 * m1 < 0 else math.nan
        np.testing.assert_allclose(result.crossings[i], want, rtol=1e-12)
    assert np.isnan(result.crossings[3:]).all()  # same-class pairs
    np.testing.assert_allclose(result.class_means[2], x_a[2].numpy() * 0.5 + x_b[1].numpy() * 0.5, rtol=1e-12)
    assert result.layer == "head" and result.cross.tolist() == [True, True, True, False, False]


def test_mixes_of_the_class_means_themselves_lie_on_the_segment_at_their_weight():
    """One example per class: its feature is the class mean, so a mix sits at position lam, offset 0."""
    model = Planted(torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    means = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    lambdas = np.array([0.0, 0.25, 0.5, 1.0])
    result = mixup_geometry(model, means[[0, 1]], means[[1, 2]], lambdas, labels_a=[0, 1], labels_b=[1, 2],
                            classifier="head")
    np.testing.assert_allclose(result.position, np.tile(lambdas, (2, 1)), atol=1e-15)
    np.testing.assert_allclose(result.offset, 0.0, atol=1e-15)
    # z = h: the margin between classes 0 and 1 is 3 lam - 2 (1 - lam), zero at lam = 2/5
    np.testing.assert_allclose(result.margins[0], 5 * lambdas - 2, atol=1e-15)
    assert result.crossings[0] == pytest.approx(0.4, abs=1e-15)


def test_mixup_geometry_of_an_mlp_reads_the_penultimate_features():
    model = MLP(5, [7, 6], 4, seed=1).double()
    g = torch.Generator().manual_seed(2)
    x_a, x_b = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    ya, yb = np.array([0, 1, 2, 3, 0, 2]), np.array([1, 1, 3, 0, 2, 2])
    lambdas = np.linspace(0, 1, 5)
    result = mixup_geometry(model, x_a, x_b, lambdas, labels_a=ya, labels_b=yb, classifier="readout")
    w = model.readout.weight.detach().numpy()
    with torch.no_grad():
        h_of = lambda v: model.features(torch.as_tensor(v)[None]).numpy()[0]  # noqa: E731
        z_of = lambda h: model.readout(torch.as_tensor(h)[None]).numpy()[0]  # noqa: E731
        expected = _reference(h_of, z_of, x_a.numpy(), x_b.numpy(), ya, yb, lambdas, w)
    _compare(result, expected)


def test_mixup_geometry_rejects_what_cannot_be_mixed():
    model = MLP(3, [4], 2, seed=0)
    x = torch.randn(2, 3)
    common = dict(labels_a=[0, 1], labels_b=[1, 0], classifier="readout")
    with pytest.raises(ValueError, match="real-valued inputs"):
        mixup_geometry(model, torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long), [0, 1], **common)
    with pytest.raises(ValueError, match="one shape"):
        mixup_geometry(model, x, x[:1], [0, 1], **common)
    with pytest.raises(ValueError, match="increasing weights in"):
        mixup_geometry(model, x, x, [0.5, 0.2], **common)
    with pytest.raises(ValueError, match="labels_a must hold"):
        mixup_geometry(model, x, x, [0, 1], labels_a=[0], labels_b=[1, 0], classifier="readout")
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        mixup_geometry(model, x, x, [0, 1], labels_a=[0, 2], labels_b=[1, 0], classifier="readout")
    with pytest.raises(ValueError, match="name the feature layer"):
        mixup_geometry(model, x, x, [0, 1], labels_a=[0, 1], labels_b=[1, 0])


def test_mixup_batch_mixes_inputs_and_one_hot_targets_with_the_same_weight():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 2, 3, generator=g), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    x_mix, targets, lam, partner = mixup_batch(x, y, 4, alpha=0.4, generator=torch.Generator().manual_seed(1))
    assert sorted(partner.tolist()) == list(range(8))
    for i in range(8):
        j, w = int(partner[i]), float(lam[i])
        torch.testing.assert_close(x_mix[i], (w * x[i] + (1 - w) * x[j]).float(), rtol=1e-6, atol=1e-6)
        expected = torch.zeros(4, dtype=torch.float64)
        expected[y[i]] += w
        expected[y[j]] += 1 - w
        torch.testing.assert_close(targets[i].double(), expected, rtol=1e-6, atol=1e-7)
    again = mixup_batch(x, y, 4, alpha=0.4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again[2], lam) and torch.equal(again[3], partner)
    for bad, message in (({"alpha": 0.0}, "alpha must be"), ({"num_classes": 3}, r"labels must lie in 0\.\.2")):
        with pytest.raises(ValueError, match=message):
            mixup_batch(x, y, **{"num_classes": 4, **bad})
    with pytest.raises(ValueError, match="token ids cannot be mixed"):
        mixup_batch(y[:, None], y, 4)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_mixup_weights_follow_beta_alpha_alpha(alpha):
    """Mean 1/2 and variance 1/(4(2 alpha + 1)) of Beta(alpha, alpha), to 5 standard errors of 20,000 draws."""
    x, y = torch.zeros(20_000, 1), torch.zeros(20_000, dtype=torch.long)
    lam = mixup_batch(x, y, 1, alpha=alpha, generator=torch.Generator().manual_seed(3))[2].numpy()
    var = 1 / (4 * (2 * alpha + 1))
    assert abs(lam.mean() - 0.5) < 5 * math.sqrt(var / lam.size)
    assert abs(lam.var() - var) < 5 * math.sqrt(2 * var**2 / lam.size) * 1.5  # Beta kurtosis below Gaussian's x1.5


def test_soft_cross_entropy_is_torch_cross_entropy_with_probability_targets():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(6, 5, generator=g, dtype=torch.float64)
    targets = torch.softmax(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=1)
    torch.testing.assert_close(soft_cross_entropy(logits, targets), nn.functional.cross_entropy(logits, targets),
                               rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="differ in shape"):
        soft_cross_entropy(logits, targets[:, :4])


def test_the_optimal_margin_minimises_the_two_class_mixup_loss():
    for lam in (0.1, 0.3, 0.5, 0.8):
        loss = lambda m: -lam * (-np.logaddexp(0, -m[0])) - (1 - lam) * (-np.logaddexp(0, m[0]))  # noqa: E731
        best = scipy.optimize.minimize(loss, [0.0], tol=1e-12).x[0]
        assert mixup_optimal_margin(lam) == pytest.approx(best, abs=1e-6)
        assert mixup_optimal_margin(lam) == pytest.approx(math.log(lam / (1 - lam)), rel=1e-15, abs=1e-15)
    assert mixup_optimal_margin(1.0) == math.inf and mixup_optimal_margin(0.0) == -math.inf
    with pytest.raises(ValueError, match="lie in"):
        mixup_optimal_margin(1.5)
