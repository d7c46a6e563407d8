"""Neural-collapse metrics against exact references: a simplex ETF gives 0, perturbations break the
expected measures, a dense numpy reference agrees, streaming equals in-memory."""
import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

from theorylab.collapse import (class_geometry, collapse_monitor, imbalanced_ufm_geometry, layerwise_collapse,
                                model_collapse, neural_collapse)
from theorylab.data import batches
from theorylab.models import MLP
from theorylab.train import train


def _etf(c, d, seed=0):
    """Simplex ETF (d x C): sqrt(C/(C-1)) P (I - 11^T/C) with P having orthonormal columns."""
    g = torch.Generator().manual_seed(seed)
    p, _ = torch.linalg.qr(torch.randn(d, c, generator=g, dtype=torch.float64))
    return (c / (c - 1)) ** 0.5 * p @ (torch.eye(c, dtype=torch.float64) - 1.0 / c)


def _collapsed(c=4, d=7, per_class=5, offset_scale=0.0, seed=0):
    m = _etf(c, d, seed)
    y = torch.arange(c).repeat_interleave(per_class)
    offset = offset_scale * torch.randn(d, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return m.T[y] + offset, y, m, offset


def _reference(h, y, w=None, b=None):
    """Dense numpy reference of every measure, written from the definitions."""
    h, y = h.numpy(), y.numpy()
    c = y.max() + 1
    mu = np.stack([h[y == k].mean(0) for k in range(c)])
    mg = h.mean(0)
    m = mu - mg
    sw = sum(np.outer(h[i] - mu[y[i]], h[i] - mu[y[i]]) for i in range(len(y))) / len(y)
    sb = sum(np.outer(m[k], m[k]) for k in range(c)) / c
    out = {"nc1": np.trace(sw @ np.linalg.pinv(sb, hermitian=True)) / c,
           "nc1_trace_ratio": np.trace(sw) / np.trace(sb)}
    norms = np.linalg.norm(m, axis=1)
    out["equinorm_means"] = norms.std() / norms.mean()
    cos = [m[i] @ m[j] / norms[i] / norms[j] for i in range(c) for j in range(i + 1, c)]
    out["equiangularity"] = np.std(cos)
    out["max_angle_deviation"] = np.mean(np.abs(np.array(cos) + 1 / (c - 1)))
    etf = (np.eye(c) - 1 / c) / np.sqrt(c - 1)
    gram = m @ m.T
    out["etf_distance_means"] = np.linalg.norm(gram / np.linalg.norm(gram) - etf)
    if w is not None:
        w = w.numpy()
        wn = np.linalg.norm(w, axis=1)
        out["equinorm_classifier"] = wn.std() / wn.mean()
        ww = w @ w.T
        out["etf_distance_classifier"] = np.linalg.norm(ww / np.linalg.norm(ww) - etf)
        out["nc3"] = np.linalg.norm(w.T / np.linalg.norm(w) - m.T / np.linalg.norm(m)) ** 2
        logits = h @ w.T + (0 if b is None else b.numpy())
        nearest = np.argmin(((h[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
        out["nc4"] = np.mean(np.argmax(logits, 1) != nearest)
    return out


MEASURES = ["nc1", "nc1_trace_ratio", "equinorm_means", "equiangularity", "max_angle_deviation",
            "etf_distance_means", "equinorm_classifier", "etf_distance_classifier", "nc3", "nc4"]


@pytest.mark.parametrize("offset_scale", [0.0, 5.0])
def test_exact_simplex_etf_gives_zero_for_every_measure(offset_scale):
    h, y, m, offset = _collapsed(offset_scale=offset_scale)
    w = 3.0 * m.T  # classifier rows proportional to the centred means (self-duality)
    b = -w @ offset  # the bias cancels the global offset
    r = neural_collapse(h, y, classifier_weight=w, classifier_bias=b)
    for name in MEASURES:
        assert abs(getattr(r, name)) < 1e-10, (name, getattr(r, name))
    assert r.num_classes == 4 and r.num_samples == 20 and list(r.class_counts) == [5] * 4


def test_perturbations_break_the_expected_measures():
    h, y, m, offset = _collapsed(offset_scale=2.0)
    w = m.T.clone()
    # scaling one class mean away from the centre breaks equinorm but not within-class collapse
    h_scaled = h.clone()
    h_scaled[y == 0] = offset + 2.0 * m[:, 0]
    r = neural_collapse(h_scaled, y)
    assert r.nc1 < 1e-10 and r.equinorm_means > 0.1 and r.etf_distance_means > 0.05
    # rotating the classifier keeps W W^T (an ETF) but destroys self-duality
    q, _ = torch.linalg.qr(torch.randn(7, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    r = neural_collapse(h, y, classifier_weight=w @ q, classifier_bias=-(w @ q) @ offset)
    assert r.etf_distance_classifier < 1e-10 and r.equinorm_classifier < 1e-10 and r.nc3 > 0.1
    # a bias that makes class 0 win everywhere: the decision disagrees with the nearest centre on 3/4
    b = -w @ offset
    b[0] += 100.0
    assert neural_collapse(h, y, classifier_weight=w, classifier_bias=b).nc4 == pytest.approx(0.75, abs=0)
    # within-class noise raises NC1 from 0
    noisy = h + 0.1 * torch.randn(h.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert neural_collapse(noisy, y).nc1 > 1e-3


def test_measures_match_a_dense_reference_on_random_features():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (60,), generator=g)
    y[:5] = torch.arange(5)
    h = torch.randn(60, 8, generator=g, dtype=torch.float64) + 2 * torch.randn(5, 8, generator=g, dtype=torch.float64)[y]
    w, b = torch.randn(5, 8, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    r = neural_collapse(h, y, classifier_weight=w, classifier_bias=b)
    ref = _reference(h, y, w, b)
    for name in MEASURES:
        assert getattr(r, name) == pytest.approx(ref[name], rel=1e-10, abs=1e-12), name


def test_low_dimensional_features_use_the_pseudo_inverse():
    """d < C - 1: Sigma_B has rank d, the pseudo-inverse is taken on that span."""
    g = torch.Generator().manual_seed(1)
    y = torch.arange(6).repeat(10)
    h = torch.randn(60, 3, generator=g, dtype=torch.float64) + 3 * torch.randn(6, 3, generator=g, dtype=torch.float64)[y]
    assert neural_collapse(h, y).nc1 == pytest.approx(_reference(h, y)["nc1"], rel=1e-10)


def test_streaming_over_uneven_batches_equals_in_memory():
    g = torch.Generator().manual_seed(2)
    y = torch.randint(0, 3, (53,), generator=g)
    y[:3] = torch.tensor([2, 1, 0])
    h = torch.randn(53, 4, generator=g, dtype=torch.float64) + 1e3  # a large offset tests the exact centring
    w = torch.randn(3, 4, generator=g, dtype=torch.float64)
    full = neural_collapse(h, y, classifier_weight=w)
    streamed = neural_collapse(batches(h, y, 7), classifier_weight=w)
    for name in MEASURES:
        assert getattr(streamed, name) == pytest.approx(getattr(full, name), rel=1e-9, abs=1e-14), name


def test_streaming_discovers_classes_batch_by_batch():
    """Without num_classes, the class count grows as later batches bring higher labels."""
    g = torch.Generator().manual_seed(5)
    y = torch.arange(4).repeat_interleave(6)  # sorted: the first batch holds class 0 only
    h = torch.randn(24, 5, generator=g, dtype=torch.float64) + 3 * torch.randn(4, 5, generator=g, dtype=torch.float64)[y]
    streamed = neural_collapse(batches(h, y, 5))
    assert streamed.num_classes == 4 and list(streamed.class_counts) == [6] * 4
    assert streamed.nc1 == pytest.approx(_reference(h, y)["nc1"], rel=1e-10)


def test_bad_input_gives_clear_errors():
    h, y, m, _ = _collapsed()
    with pytest.raises(ValueError, match="at least 2 classes"):
        neural_collapse(h, torch.zeros_like(y))
    with pytest.raises(ValueError, match="out of range"):
        neural_collapse(h, y, num_classes=3)
    with pytest.raises(ValueError, match=">= 0"):
        neural_collapse(h, y - 1)
    bad = h.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        neural_collapse(bad, y)
    with pytest.raises(ValueError, match="no samples"):
        neural_collapse(h, y, num_classes=6)
    with pytest.raises(ValueError, match="classifier_weight has shape"):
        neural_collapse(h, y, classifier_weight=m)
    with pytest.raises(ValueError, match="integer"):
        neural_collapse(h, y.double())
    with pytest.raises(ValueError, match="coincide"):
        neural_collapse(torch.ones(6, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2]))


def _trained_mlp():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(90, 6, generator=g, dtype=torch.float64)
    y = torch.arange(3).repeat(30)
    x = x + 2.0 * torch.eye(3, 6, dtype=torch.float64)[y]
    model = MLP(6, [16, 12], 3, seed=0).double()
    train(model, nn.CrossEntropyLoss(), (x, y), steps=30, lr=0.2)
    return model, x, y


def test_model_collapse_uses_hooks_and_leaves_the_model_untouched():
    model, x, y = _trained_mlp()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    r = model_collapse(model, batches(x, y, 16), classifier="readout")
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with torch.no_grad():
        feats, logits = model.features(x), model(x)
    ref = _reference(feats, y, model.readout.weight.detach())
    for name in ["nc1", "equinorm_means", "etf_distance_means", "equinorm_classifier", "nc3"]:
        assert getattr(r, name) == pytest.approx(ref[name], rel=1e-9), name
    means = torch.stack([feats[y == k].mean(0) for k in range(3)])
    nearest = torch.cdist(feats, means).argmin(1)
    assert r.nc4 == pytest.approx(float((nearest != logits.argmax(1)).double().mean()), abs=0)


def test_layerwise_collapse_matches_each_layer():
    model, x, y = _trained_mlp()
    r = layerwise_collapse(model, batches(x, y, 32), layers=["hidden_layers.0", "hidden_layers.1"])
    with torch.no_grad():
        pre0 = model.hidden_layers[0](x)
        pre1 = model.hidden_layers[1](torch.relu(pre0))
    for i, h in enumerate([pre0, pre1]):
        assert r.nc1[i] == pytest.approx(_reference(h, y)["nc1"], rel=1e-9)


def test_collapse_monitor_records_the_measures():
    model, x, y = _trained_mlp()
    res = train(model, nn.CrossEntropyLoss(), (x, y), steps=4, lr=0.1,
                monitors=[collapse_monitor((x, y), classifier="readout", every=2)])
    assert list(res.monitor_steps["collapse.nc1"]) == [0, 2, 4]
    assert set(k.split(".")[1] for k in res.monitors) >= {"nc1", "nc3", "nc4", "etf_distance_means"}


def _ufm_objective(params, counts, d, lambda_w, lambda_h):
    k, n = len(counts), sum(counts)
    w = params[: k * d].reshape(k, d)
    h = params[k * d:].reshape(d, n)
    y = np.repeat(np.eye(k), counts, axis=1)
    r = w @ h - y
    value = 0.5 / n * (r ** 2).sum() + 0.5 * lambda_w * (w ** 2).sum() + 0.5 * lambda_h * (h ** 2).sum()
    grad_w = r @ h.T / n + lambda_w * w
    grad_h = w.T @ r / n + lambda_h * h
    return value, np.concatenate([grad_w.ravel(), grad_h.ravel()])


@pytest.mark.parametrize("lambdas", [(1e-2, 1e-2), (3e-3, 2e-2), (0.1, 0.15)])
def test_imbalanced_ufm_prediction_matches_a_brute_force_minimiser(lambdas):
    """Minimise the bias-free MSE UFM numerically from several starts; the best minimiser has the
    predicted norms (the last case puts the smallest class below the collapse threshold)."""
    lambda_w, lambda_h = lambdas
    counts, d = [8, 4, 2], 4
    best = None
    for seed in range(3):
        x0 = np.random.default_rng(seed).normal(size=len(counts) * d + d * sum(counts))
        res = scipy.optimize.minimize(_ufm_objective, x0, args=(counts, d, lambda_w, lambda_h), jac=True,
                                      method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 20000})
        if best is None or res.fun < best.fun:
            best = res
    k, n = len(counts), sum(counts)
    w = best.x[: k * d].reshape(k, d)
    h = best.x[k * d:].reshape(d, n)
    y = torch.as_tensor(np.repeat(np.arange(k), counts))
    measured = class_geometry(torch.as_tensor(h.T), y, classifier_weight=torch.as_tensor(w))
    predicted = imbalanced_ufm_geometry(counts, lambda_w=lambda_w, lambda_h=lambda_h)
    np.testing.assert_allclose(measured.classifier_norms, predicted.classifier_norms, atol=1e-4)
    np.testing.assert_allclose(measured.mean_norms, predicted.feature_norms, atol=1e-4)
    alive = ~predicted.collapsed
    if alive.sum() > 1:
        cos = measured.mean_cosines[np.ix_(alive, alive)]
        assert np.max(np.abs(cos - np.eye(alive.sum()))) < 1e-4


def test_imbalanced_ufm_geometry_closed_form_values_and_errors():
    r = imbalanced_ufm_geometry([100, 25], lambda_w=1e-3, lambda_h=1e-3)
    # s_k^2 = sqrt(n_k) - N lambda_H = 10 - 0.125 and 5 - 0.125; ||h_k|| = s_k / sqrt(n_k)
    np.testing.assert_allclose(r.classifier_norms ** 2, [9.875, 4.875], rtol=1e-14)
    np.testing.assert_allclose(r.feature_norms, np.sqrt([9.875, 4.875]) / [10, 5], rtol=1e-14)
    with pytest.raises(ValueError, match="lambda_w"):
        imbalanced_ufm_geometry([3, 2], lambda_w=0.0, lambda_h=1.0)
    with pytest.raises(ValueError, match="at least 2"):
        imbalanced_ufm_geometry([3], lambda_w=1.0, lambda_h=1.0)


def test_results_round_trip_through_json(tmp_path):
    h, y, m, offset = _collapsed(offset_scale=1.0)
    r = neural_collapse(h, y, classifier_weight=m.T, classifier_bias=-m.T @ offset)
    assert type(r).load(r.save(tmp_path / "r.json")) == r
    model, x, labels = _trained_mlp()
    depth = layerwise_collapse(model, (x, labels), layers=["hidden_layers.0", "readout"])
    assert type(depth).load(depth.save(tmp_path / "d.json")) == depth
    geometry = class_geometry(h, y, classifier_weight=m.T)
    assert type(geometry).load(geometry.save(tmp_path / "g.json")) == geometry


def test_classifier_multipliers_are_applied_once():
    """muP layers compute multiplier * W h + bias_multiplier * b: the effective classifier is used."""
    from theorylab.collapse import _classifier_of

    model = MLP(6, [16], 3, parametrization="mup", bias_var=1.0, seed=0).double()
    weight, bias = _classifier_of(model, "readout")
    h = torch.randn(5, 16, dtype=torch.float64)
    torch.testing.assert_close(h @ weight.T + bias, model.readout(h), rtol=1e-12, atol=1e-12)
