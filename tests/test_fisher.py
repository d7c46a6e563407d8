"""Fisher operators against dense float64 references: exact Fisher = GGN (softmax CE, MSE), the
Monte-Carlo Fisher converges to it at M^{-1/2}, and the empirical Fisher is (1/N) sum g_i g_i^T."""
import numpy as np
import pytest
import torch
from torch import nn

from theorylab.curvature import (EmpiricalFisherOperator, PerExampleEmpiricalFisherOperator, empirical_fisher,
                                 fisher, ggn)

ATOL = 1e-12
_LOSSES = {"ce": nn.CrossEntropyLoss(), "mse": nn.MSELoss()}


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def _data(loss: str, n: int = 11, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g) if loss == "ce" else torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x, y


def _uneven(x, y):
    return [(x[:4], y[:4]), (x[4:9], y[4:9]), (x[9:], y[9:])]


def _flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _per_example_gradients(model, loss_fn, x, y):
    rows = []
    for i in range(len(x)):
        model.zero_grad()
        loss_fn(model(x[i:i + 1]), y[i:i + 1]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows)


def _explicit_fisher(model, loss, x):
    """(1/N) sum_i E_y[g_i g_i^T] by enumerating labels (categorical) or the closed form J^T (2/k) J (Gaussian)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = _flat_params(model)

    def outputs(theta, xi):
        pieces = [t.view(s) for t, s in zip(theta.split([s.numel() for s in shapes]), shapes)]
        return torch.func.functional_call(model, dict(zip(names, pieces)), (xi.unsqueeze(0),)).reshape(-1)

    total = torch.zeros(len(flat), len(flat), dtype=torch.float64)
    for xi in x:
        jac = torch.func.jacrev(outputs)(flat, xi)  # (C, P)
        f = outputs(flat, xi)
        if loss == "ce":
            p = torch.softmax(f, 0)
            for c in range(len(p)):  # E_y over the three labels of g g^T, g = J^T (p - e_y)
                g = jac.T @ (p - torch.nn.functional.one_hot(torch.tensor(c), len(p)).double())
                total += p[c] * torch.outer(g, g)
        else:
            total += jac.T @ jac * 2 / len(f)
    return total / len(x)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_exact_fisher_equals_ggn_and_the_label_expectation(loss):
    model, (x, y) = _mlp(), _data(loss)
    reference = _explicit_fisher(model, loss, x)
    for data in [(x, y), _uneven(x, y)]:
        dense = fisher(model, _LOSSES[loss], data).to_dense()
        torch.testing.assert_close(dense, reference, atol=ATOL, rtol=0)
        torch.testing.assert_close(dense, ggn(model, _LOSSES[loss], data).to_dense(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_monte_carlo_fisher_is_fixed_and_converges_at_the_square_root_rate(loss):
    model, (x, y) = _mlp(), _data(loss)
    exact = fisher(model, _LOSSES[loss], (x, y)).to_dense()
    op = fisher(model, _LOSSES[loss], _uneven(x, y), num_draws=4, seed=7)
    first = op.to_dense()
    torch.testing.assert_close(op.to_dense(), first, atol=0, rtol=0)  # the same labels in every pass
    torch.testing.assert_close(first, first.T, atol=ATOL, rtol=0)
    assert torch.linalg.eigvalsh(first)[0] > -1e-12
    samples = [4, 16, 64, 256]
    errors = []
    for m in samples:  # relative Frobenius error, averaged over 6 seeds
        errs = [float((fisher(model, _LOSSES[loss], (x, y), num_draws=m, seed=s).to_dense() - exact).norm()
                      / exact.norm()) for s in range(6)]
        errors.append(np.mean(errs))
    slope = np.polyfit(np.log(samples), np.log(errors), 1)[0]
    assert -0.65 < slope < -0.35, (errors, slope)
    assert errors[-1] < 0.15


def test_monte_carlo_fisher_differs_between_seeds_and_matches_within_one_batch_and_a_loader():
    model, (x, y) = _mlp(), _data("ce")
    a = fisher(model, nn.CrossEntropyLoss(), (x, y), num_draws=2, seed=0).to_dense()
    b = fisher(model, nn.CrossEntropyLoss(), (x, y), num_draws=2, seed=1).to_dense()
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_empirical_fisher_is_the_mean_outer_product_of_per_example_gradients(loss):
    model, (x, y) = _mlp(), _data(loss)
    g = _per_example_gradients(model, _LOSSES[loss], x, y)
    reference = g.T @ g / len(x)
    module = _LOSSES[loss]
    function = lambda out, target: module(out, target)  # noqa: E731  (not a known module: per-example gradients)
    for loss_fn, kind in [(module, EmpiricalFisherOperator), (function, PerExampleEmpiricalFisherOperator)]:
        for data, chunk in [((x, y), None), (_uneven(x, y), 2)]:
            op = empirical_fisher(model, loss_fn, data, chunk_size=chunk)
            assert type(op) is kind
            torch.testing.assert_close(op.to_dense(), reference, atol=ATOL, rtol=0)


def test_empirical_fisher_differs_from_the_fisher_away_from_the_optimum():
    model, (x, y) = _mlp(), _data("ce")
    emp = empirical_fisher(model, nn.CrossEntropyLoss(), (x, y)).to_dense()
    exact = fisher(model, nn.CrossEntropyLoss(), (x, y)).to_dense()
    assert float((emp - exact).norm() / exact.norm()) > 0.1


def test_parameter_blocks_and_train_mode_dropout():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.5), nn.Linear(6, 3)).double()
    x, y = _data("ce")
    full = fisher(model, nn.CrossEntropyLoss(), (x, y), mode="train")
    block = fisher(model, nn.CrossEntropyLoss(), (x, y), mode="train", params="3")
    index = torch.arange(full.shape[0] - block.shape[0], full.shape[0])
    torch.testing.assert_close(block.to_dense(), full.to_dense()[index][:, index], atol=ATOL, rtol=0)
    torch.testing.assert_close(full.to_dense(), ggn(model, nn.CrossEntropyLoss(), (x, y), mode="train").to_dense(),
                               atol=ATOL, rtol=0)


def test_clear_errors():
    model, (x, y) = _mlp(), _data("ce")
    with pytest.raises(ValueError, match="which likelihood"):
        fisher(model, lambda o, t: (o ** 2).mean(), (x, y))
    with pytest.raises(ValueError, match="label smoothing"):
        fisher(model, nn.CrossEntropyLoss(label_smoothing=0.1), (x, y))
    with pytest.raises(ValueError, match="num_draws must be a positive integer"):
        fisher(model, nn.CrossEntropyLoss(), (x, y), num_draws=0)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        fisher(model, nn.CrossEntropyLoss(), (x, y), likelihood="poisson")
    with pytest.raises(ValueError, match="chunk_size"):
        empirical_fisher(model, nn.CrossEntropyLoss(), (x, y), chunk_size=0)
    with pytest.raises(ValueError, match="ignore_index"):
        empirical_fisher(model, nn.CrossEntropyLoss(), (x, torch.where(y == 0, -100, y)))
    bn = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).double()
    with pytest.raises(ValueError, match="BatchNorm in train mode"):
        empirical_fisher(bn, nn.CrossEntropyLoss(), (x, y), mode="train")
