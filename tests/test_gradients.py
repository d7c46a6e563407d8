"""Gradient statistics against single-example backward passes and closed forms."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from theorylab.data import batches
from theorylab.gradients import (coherence, coherence_monitor, distance_from_init, distance_monitor,
                                 gradient_noise_scale, gradient_ranks, gradient_statistics, group_gradient_cosines,
                                 parameter_snapshot, per_example_gradients, per_parameter_snr)
from theorylab.models import MLP
from theorylab.train import train


def _classification(n=37, d=5, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=g)
    model = MLP(d, [8, 6], c, activation="tanh", bias_var=0.01, seed=seed).double()
    return model, x, y


def _loop_gradients(model, loss_fn, x, y):
    rows = []
    for i in range(len(y)):
        model.zero_grad(set_to_none=True)
        loss_fn(model(x[i:i + 1]), y[i:i + 1]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


@pytest.mark.parametrize("chunk_size", [1, 5, 256])
def test_per_example_gradients_match_single_example_backward(chunk_size):
    model, x, y = _classification()
    ce = nn.CrossEntropyLoss()
    g = per_example_gradients(model, ce, batches(x, y, 10), chunk_size=chunk_size)
    torch.testing.assert_close(g, _loop_gradients(model, ce, x, y), rtol=1e-12, atol=1e-13)


def test_coherence_of_identical_and_orthogonal_gradients():
    v = torch.randn(1, 9, dtype=torch.float64)
    assert coherence(v.repeat(6, 1)) == pytest.approx(6.0, rel=1e-14)
    assert coherence(torch.eye(5, dtype=torch.float64) * torch.arange(1.0, 6.0)[:, None]) == pytest.approx(1.0, rel=1e-14)
    assert coherence(torch.cat([v, -v])) == 0.0
    # through a model: w = 0, y_i = 1, x_i = e_i gives g_i = -2 e_i (orthogonal); equal x_i gives equal g_i
    model = nn.Linear(4, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    mse = nn.MSELoss()
    ones = torch.ones(4, 1, dtype=torch.float64)
    assert gradient_statistics(model, mse, (torch.eye(4, dtype=torch.float64), ones)).coherence == pytest.approx(1.0, rel=1e-14)
    same = torch.ones(4, 4, dtype=torch.float64)
    stats = gradient_statistics(model, mse, (same, ones))
    assert stats.coherence == pytest.approx(4.0, rel=1e-14) and stats.diversity == pytest.approx(0.25, rel=1e-14)


def test_streaming_statistics_equal_dense_per_example_statistics():
    model, x, y = _classification(n=41)
    ce = nn.CrossEntropyLoss()
    g = _loop_gradients(model, ce, x, y).numpy()
    m = len(g)
    gbar = g.mean(0)
    s = gradient_statistics(model, ce, batches(x, y, 9), chunk_size=4)
    assert s.num_examples == m
    assert s.coherence == pytest.approx(np.sum(g.sum(0) ** 2) / np.sum(g ** 2), rel=1e-11)
    assert s.mean_gradient_norm_sq == pytest.approx(gbar @ gbar, rel=1e-11)
    trace_cov = np.sum((g - gbar) ** 2) / (m - 1)
    assert s.trace_cov == pytest.approx(trace_cov, rel=1e-11)
    assert s.grad_norm_sq == pytest.approx(gbar @ gbar - trace_cov / m, rel=1e-10)
    gsnr = gbar ** 2 / g.var(0, ddof=1)
    snr = per_parameter_snr(model, ce, (x, y))
    np.testing.assert_allclose(torch.cat([t.reshape(-1) for t in snr.values()]).numpy(), gsnr, rtol=1e-9)
    offset = 0
    for name, p in model.named_parameters():
        assert s.snr_by_parameter[name] == pytest.approx(gsnr[offset:offset + p.numel()].mean(), rel=1e-9)
        offset += p.numel()


def test_normalized_coherence_equals_one_over_one_plus_noise_scale_on_the_same_sample():
    for seed in range(3):
        model, x, y = _classification(n=20 + 7 * seed, seed=seed)
        s = gradient_statistics(model, nn.CrossEntropyLoss(), (x, y))
        assert s.normalized_coherence == pytest.approx(1.0 / (1.0 + s.noise_scale), rel=1e-10)


def test_two_batch_noise_scale_converges_to_the_population_value():
    """Sampling with replacement makes both two-batch estimates unbiased for the data distribution:
    |G|^2 = |mean g|^2 and tr Sigma = (1/N) sum |g_i - mean g|^2 from all N per-example gradients."""
    model, x, y = _classification(n=64, seed=1)
    ce = nn.CrossEntropyLoss()
    g = _loop_gradients(model, ce, x, y).numpy()
    gbar = g.mean(0)
    g2_true, tr_true = gbar @ gbar, np.sum((g - gbar) ** 2) / len(g)
    errors = []
    for pairs in (25, 225):
        r = gradient_noise_scale(model, ce, (x, y), small_batch=2, big_batch=8, num_pairs=pairs, seed=3)
        se_g2 = r.pair_grad_norm_sq.std(ddof=1) / math.sqrt(pairs)
        se_tr = r.pair_trace_cov.std(ddof=1) / math.sqrt(pairs)
        assert abs(r.grad_norm_sq - g2_true) < 4 * se_g2
        assert abs(r.trace_cov - tr_true) < 4 * se_tr
        assert abs(r.b_simple - tr_true / g2_true) < 4 * r.b_simple_stderr
        errors.append(r.b_simple_stderr)
    assert errors[1] < errors[0] / 2  # standard error shrinks like 1/sqrt(pairs): ratio 3 expected


def test_noise_scale_without_replacement_over_the_whole_data_equals_per_example_statistics():
    model, x, y = _classification(n=24)
    ce = nn.CrossEntropyLoss()
    r = gradient_noise_scale(model, ce, (x, y), small_batch=1, big_batch=24, num_pairs=1, replacement=False)
    s = gradient_statistics(model, ce, (x, y))
    assert r.grad_norm_sq == pytest.approx(s.grad_norm_sq, rel=1e-10)
    assert r.trace_cov == pytest.approx(s.trace_cov, rel=1e-10)
    assert r.b_simple == pytest.approx(s.noise_scale, rel=1e-10)


def test_group_cosines_match_mean_gradients_of_each_group():
    model, x, y = _classification(n=30)
    ce = nn.CrossEntropyLoss()
    g = _loop_gradients(model, ce, x, y)
    r = group_gradient_cosines(model, ce, batches(x, y, 7))
    means = torch.stack([g[y == k].mean(0) for k in range(3)])
    unit = means / means.norm(dim=1, keepdim=True)
    np.testing.assert_allclose(r.cosines, (unit @ unit.T).numpy(), rtol=1e-10, atol=1e-12)
    domains = torch.arange(30) % 2
    r = group_gradient_cosines(model, ce, (x, y), groups=domains)
    a, b = g[domains == 0].mean(0), g[domains == 1].mean(0)
    assert r.cosines[0, 1] == pytest.approx(float(a @ b / a.norm() / b.norm()), rel=1e-10)
    with pytest.raises(ValueError, match="groups has"):
        group_gradient_cosines(model, ce, (x, y), groups=domains[:10])


def test_gradient_ranks_equal_the_singular_values_of_the_gradient_matrix():
    model, x, y = _classification(n=12)
    ce = nn.CrossEntropyLoss()
    sigma = torch.linalg.svdvals(_loop_gradients(model, ce, x, y)).numpy()
    r = gradient_ranks(model, ce, (x, y))
    p = sigma / sigma.sum()
    assert r.effective_rank == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-8)
    assert r.stable_rank == pytest.approx((sigma ** 2).sum() / sigma[0] ** 2, rel=1e-8)


def test_analyzers_leave_the_model_untouched():
    model, x, y = _classification()
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    ce = nn.CrossEntropyLoss()
    gradient_statistics(model, ce, (x, y))
    gradient_noise_scale(model, ce, (x, y), small_batch=2, big_batch=4, num_pairs=3)
    group_gradient_cosines(model, ce, (x, y))
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())


def test_distance_from_init_and_its_monitor():
    model, x, y = _classification()
    snapshot = parameter_snapshot(model)
    w0 = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    res = train(model, nn.CrossEntropyLoss(), (x, y), steps=5, lr=0.1,
                monitors=[distance_monitor(model, every=5), coherence_monitor(nn.CrossEntropyLoss(), (x, y), every=5)])
    w5 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert distance_from_init(model, snapshot) == pytest.approx(float((w5 - w0).norm()), rel=1e-12)
    assert res.monitors["distance_from_init"][0] == 0.0
    assert res.monitors["distance_from_init"][-1] == pytest.approx(float((w5 - w0).norm()), rel=1e-12)
    assert res.monitors["gradients.coherence"].shape == (2,)


def test_bad_input_gives_clear_errors():
    model, x, y = _classification()
    ce = nn.CrossEntropyLoss()
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        gradient_statistics(model, ce, (bad, y))
    with pytest.raises(ValueError, match="chunk_size"):
        gradient_statistics(model, ce, (x, y), chunk_size=0)
    with pytest.raises(ValueError, match="small_batch < big_batch"):
        gradient_noise_scale(model, ce, (x, y), small_batch=4, big_batch=4)
    with pytest.raises(ValueError, match="multiple"):
        gradient_noise_scale(model, ce, (x, y), small_batch=3, big_batch=4)
    with pytest.raises(ValueError, match="at least 2 examples"):
        gradient_statistics(model, ce, (x[:1], y[:1]))
    with pytest.raises(ValueError, match=r"\(m, P\)"):
        coherence(torch.ones(3))


def test_results_round_trip_and_are_deterministic_given_a_seed(tmp_path):
    model, x, y = _classification()
    ce = nn.CrossEntropyLoss()
    a = gradient_noise_scale(model, ce, (x, y), small_batch=2, big_batch=8, num_pairs=5, seed=7)
    b = gradient_noise_scale(model, ce, (x, y), small_batch=2, big_batch=8, num_pairs=5, seed=7)
    assert a.b_simple == b.b_simple and np.array_equal(a.pair_trace_cov, b.pair_trace_cov)
    for r in (a, gradient_statistics(model, ce, (x, y)), group_gradient_cosines(model, ce, (x, y))):
        assert type(r).load(r.save(tmp_path / "r.json")) == r
