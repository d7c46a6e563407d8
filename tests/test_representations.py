"""Representation measures against closed forms and dense references."""
import math

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

from theorylab.data import batches
from theorylab.representations import (activation_ranks, dormant_ratio, fit_power_law,
                                       layer_activations, matrix_ranks, weight_eigenvalues, weight_ranks,
                                       weight_spectrum)
from theorylab.monitors import monitor
from theorylab.train import train


def test_effective_and_stable_rank_known_answers():
    r = matrix_ranks(torch.diag(torch.tensor([2.0, 2.0, 2.0, 0.0])))
    assert r.effective_rank == pytest.approx(3.0, rel=1e-14) and r.stable_rank == pytest.approx(3.0, rel=1e-14)
    u = torch.randn(6, 1, dtype=torch.float64)
    r = matrix_ranks(u @ torch.randn(1, 4, dtype=torch.float64))
    assert r.effective_rank == pytest.approx(1.0, abs=1e-7) and r.stable_rank == pytest.approx(1.0, rel=1e-12)
    r = matrix_ranks(torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)))
    p = np.array([0.75, 0.25])
    assert r.effective_rank == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-14)
    assert r.stable_rank == pytest.approx(10 / 9, rel=1e-14)
    with pytest.raises(ValueError, match="NaN"):
        matrix_ranks(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="zero"):
        matrix_ranks(torch.zeros(3, 3))


def _net(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    x = torch.randn(45, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (45,))
    return net, x, y


@pytest.mark.parametrize("center", [False, True])
def test_streamed_activation_ranks_equal_ranks_of_the_activation_matrix(center):
    net, x, y = _net()
    r = activation_ranks(net, batches(x, y, 8), layers=["1", "3"], center=center)
    acts = layer_activations(net, (x, y), layers=["1", "3"])
    torch.testing.assert_close(acts["1"], torch.relu(net[0](x)).detach())
    for i, name in enumerate(["1", "3"]):
        a = acts[name] - (acts[name].mean(0) if center else 0)
        ref = matrix_ranks(a)
        assert r.effective_rank[i] == pytest.approx(ref.effective_rank, rel=1e-7)
        assert r.stable_rank[i] == pytest.approx(ref.stable_rank, rel=1e-9)


def test_dormant_ratio_counts_dead_units_and_follows_the_score_definition():
    net, x, y = _net()
    with torch.no_grad():
        net[0].bias[:3] = -1e3  # three units that never fire
    r = dormant_ratio(net, batches(x, y, 10), layers=["1"], tau=0.0)
    assert r.dormant_fraction[0] == pytest.approx(3 / 12, abs=0) and r.num_neurons[0] == 12
    h = torch.relu(net[0](x)).detach().abs().mean(0)
    scores = (h / h.mean()).numpy()
    np.testing.assert_allclose(r.scores["1"], scores, rtol=1e-12)
    tau = float(np.sort(scores)[6:8].mean())  # between the 7th and 8th smallest score
    assert dormant_ratio(net, (x, y), layers=[net[1]], tau=tau).dormant_fraction[0] == pytest.approx(7 / 12, abs=0)
    with pytest.raises(ValueError, match="tau"):
        dormant_ratio(net, (x, y), layers="1", tau=-1)
    with pytest.raises(ValueError, match="no submodule"):
        dormant_ratio(net, (x, y), layers="nope")


def test_dormant_ratio_of_conv_channels_and_the_monitor():
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2)).double()
    with torch.no_grad():
        conv[0].bias[1] = -1e3
    x = torch.randn(10, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 2, (10,))
    assert dormant_ratio(conv, (x, y), layers="1").dormant_fraction[0] == pytest.approx(0.25, abs=0)
    res = train(conv, nn.CrossEntropyLoss(), (x, y), steps=2, lr=0.01,
                monitors=[monitor(dormant_ratio, (x, y), layers="1")])
    assert res.monitors["dormant_ratio"].series("overall")[0] == pytest.approx(0.25, abs=0)


def test_hooks_are_removed_even_when_the_forward_fails():
    net, x, y = _net()
    with pytest.raises(RuntimeError):
        layer_activations(net, (x[:, :3], y), layers="1")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_power_law_mle_maximises_the_likelihood():
    rng = np.random.default_rng(0)
    x = (1 - rng.random(500)) ** (-1 / 1.5)  # Pareto, alpha = 2.5, xmin = 1
    fit = fit_power_law(x, xmin=1.0)
    tail = x[x >= 1.0]

    def negative_log_likelihood(a):
        return -(len(tail) * np.log((a - 1) / 1.0) - a * np.log(tail / 1.0).sum())

    brute = scipy.optimize.minimize_scalar(negative_log_likelihood, bounds=(1.01, 10), method="bounded",
                                           options={"xatol": 1e-10})
    assert fit.alpha == pytest.approx(brute.x, rel=1e-7)


@pytest.mark.parametrize("alpha", [2.0, 3.5])
def test_power_law_fit_finds_the_tail_and_recovers_the_exponent(alpha):
    rng = np.random.default_rng(int(alpha * 10))
    body = rng.uniform(0.0, 1.0, 1000)  # a non-power-law body below the tail's xmin = 1
    tail = (1 - rng.random(4000)) ** (-1 / (alpha - 1))
    fit = fit_power_law(np.concatenate([body, tail]))
    assert abs(fit.alpha - alpha) < 4 * fit.alpha_stderr
    assert 0.95 <= fit.xmin <= 1.5


def test_power_law_mle_error_shrinks_like_one_over_sqrt_n():
    """RMS error over 40 replicates at known xmin: (alpha - 1)/sqrt(n) asymptotically (Clauset et al. 2009)."""
    alpha, rms = 2.5, []
    for n in (200, 3200):
        rng = np.random.default_rng(n)
        estimates = [fit_power_law((1 - rng.random(n)) ** (-1 / (alpha - 1)), xmin=1.0).alpha for _ in range(40)]
        rms.append(math.sqrt(np.mean((np.array(estimates) - alpha) ** 2)))
    assert rms[1] < rms[0] / 2.5  # ratio 4 expected
    assert rms[1] == pytest.approx((alpha - 1) / math.sqrt(3200), rel=0.35)  # 40 replicates: ~11% noise in an RMS


def test_weight_spectrum_eigenvalues_and_errors():
    w = torch.randn(30, 12, dtype=torch.float64)
    np.testing.assert_allclose(weight_eigenvalues(w), np.sort(torch.linalg.eigvalsh(w.T @ w / 30).numpy()), rtol=1e-10)
    np.testing.assert_allclose(weight_eigenvalues(w.T), weight_eigenvalues(w), rtol=1e-10)
    net, _, _ = _net()
    spec = weight_spectrum(net, params="*.weight", min_tail=3)
    assert spec.layers == ["0.weight", "2.weight", "4.weight"] and np.all(spec.alpha > 1)
    ranks = weight_ranks(net)
    assert ranks.effective_rank[0] == pytest.approx(matrix_ranks(net[0].weight.detach()).effective_rank, rel=1e-12)
    with pytest.raises(ValueError, match="positive values"):
        fit_power_law(np.ones(5))
    with pytest.raises(ValueError, match="NaN"):
        fit_power_law(np.array([1.0, np.nan] * 10))


def test_results_round_trip_and_leave_the_model_untouched(tmp_path):
    net, x, y = _net()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    results = [dormant_ratio(net, (x, y), layers=["1", "3"]), activation_ranks(net, (x, y), layers="1"),
               weight_spectrum(net, min_tail=3), weight_ranks(net)]
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    for r in results:
        assert type(r).load(r.save(tmp_path / "r.json")) == r
