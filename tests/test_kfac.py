"""K-FAC against dense float64 references: exact Fisher blocks for one sample, the Kronecker identity
of linear layers under the squared error, the expand/reduce conventions for weight sharing (tokens and
convolutions), Monte-Carlo and empirical variants, and the exact diagonal."""
import numpy as np
import pytest
import torch
from torch import nn

from theorylab.curvature import empirical_fisher, fisher, ggn, kfac
from theorylab.models import MLP

ATOL = 1e-12


def _data(n, d, classes=None, out=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = (torch.randint(0, classes, (n,), generator=g) if classes else
         torch.randn(n, out, generator=g, dtype=torch.float64))
    return x, y


def _block_diagonal(dense, sizes):
    out = torch.zeros_like(dense)
    start = 0
    for size in sizes:
        out[start:start + size, start:start + size] = dense[start:start + size, start:start + size]
        start += size
    return out


def _layer_sizes(model):
    sizes = []
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            sizes.append(sum(p.numel() for p in m.parameters(recurse=False)))
    return sizes


@pytest.mark.parametrize("loss", [nn.CrossEntropyLoss(), nn.MSELoss()])
def test_one_sample_gives_the_exact_fisher_blocks_of_every_layer(loss):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = _data(1, 4, classes=3 if isinstance(loss, nn.CrossEntropyLoss) else None)
    exact = fisher(model, loss, (x, y)).to_dense()
    torch.testing.assert_close(kfac(model, loss, (x, y)).to_dense(), _block_diagonal(exact, _layer_sizes(model)),
                               atol=ATOL, rtol=0)
    single = nn.Linear(4, 3).double()  # a single linear layer: K-FAC is the whole Fisher
    torch.testing.assert_close(kfac(single, loss, (x, y)).to_dense(), fisher(single, loss, (x, y)).to_dense(),
                               atol=ATOL, rtol=0)
    emp = empirical_fisher(model, loss, (x, y)).to_dense()
    torch.testing.assert_close(kfac(model, loss, (x, y), fisher_type="empirical").to_dense(),
                               _block_diagonal(emp, _layer_sizes(model)), atol=ATOL, rtol=0)


def test_linear_layer_under_squared_error_is_exact_for_many_samples_and_batches():
    """G = (2/k) I for every sample, so G (x) A = (2/k) I (x) X^T X / N is the GGN (a Kronecker identity)."""
    model = nn.Linear(4, 3).double()
    x, y = _data(11, 4)
    data = [(x[:4], y[:4]), (x[4:], y[4:])]
    op = kfac(model, nn.MSELoss(), data)
    torch.testing.assert_close(op.to_dense(), ggn(model, nn.MSELoss(), data).to_dense(), atol=ATOL, rtol=0)
    layer = op.layers[0]
    xa = torch.cat([x, torch.ones(11, 1, dtype=torch.float64)], 1)
    torch.testing.assert_close(layer.A, xa.T @ xa / 11, atol=ATOL, rtol=0)
    torch.testing.assert_close(layer.G, torch.eye(3, dtype=torch.float64) * 2 / 3, atol=ATOL, rtol=0)


def test_factors_are_the_mean_of_the_kronecker_terms_for_many_samples():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = _data(7, 4, classes=3)
    op = kfac(model, nn.CrossEntropyLoss(), [(x[:3], y[:3]), (x[3:], y[3:])])
    # per-sample exact Fisher blocks are delta_i-terms (x) a_i a_i^T: average the two factors separately
    hidden = torch.tanh(model[0](x)).detach()
    a2 = torch.cat([hidden, torch.ones(7, 1, dtype=torch.float64)], 1)
    torch.testing.assert_close(op.layers[1].A, a2.T @ a2 / 7, atol=ATOL, rtol=0)
    p = torch.softmax(model(x), 1).detach()
    expected_g = sum(torch.diag(pi) - torch.outer(pi, pi) for pi in p) / 7  # delta = S columns at the logits
    torch.testing.assert_close(op.layers[1].G, expected_g, atol=ATOL, rtol=0)
    # and the operator is not the exact Fisher block (K-FAC is an approximation for N > 1)
    exact = fisher(model, nn.CrossEntropyLoss(), (x, y)).to_dense()
    assert (op.to_dense() - _block_diagonal(exact, _layer_sizes(model))).abs().max() > 1e-4


class _TokenLinear(nn.Module):
    """A linear layer applied to every token of (N, R, d): per-token outputs, or their mean over tokens."""

    def __init__(self, pool: bool):
        super().__init__()
        self.pool = pool
        self.linear = nn.Linear(4, 3)

    def forward(self, x):
        out = self.linear(x)
        return out.mean(1) if self.pool else out


class _ConvNet(nn.Module):
    def __init__(self, pool: bool):
        super().__init__()
        self.pool = pool
        self.conv = nn.Conv2d(2, 3, 3, stride=1, padding=1)

    def forward(self, x):
        out = self.conv(x)
        return out.mean((2, 3)) if self.pool else out


@pytest.mark.parametrize("net", ["tokens", "conv"])
def test_expand_is_exact_for_per_position_losses_and_reduce_for_pooled_outputs(net):
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(0)
    for pool, exact_sharing, other in [(False, "expand", "reduce"), (True, "reduce", "expand")]:
        model = (_TokenLinear(pool) if net == "tokens" else _ConvNet(pool)).double()
        x = (torch.randn(6, 5, 4, generator=g, dtype=torch.float64) if net == "tokens"
             else torch.randn(6, 2, 4, 4, generator=g, dtype=torch.float64))
        with torch.no_grad():
            y = torch.randn(model(x).shape, generator=g, dtype=torch.float64)
        data = [(x[:2], y[:2]), (x[2:], y[2:])]
        reference = ggn(model, nn.MSELoss(), data).to_dense()
        torch.testing.assert_close(kfac(model, nn.MSELoss(), data, weight_sharing=exact_sharing).to_dense(),
                                   reference, atol=ATOL, rtol=0)
        assert (kfac(model, nn.MSELoss(), data, weight_sharing=other).to_dense() - reference).abs().max() > 1e-3


def test_convolution_with_one_output_position_and_one_sample_is_the_exact_fisher():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Tanh(), nn.Linear(4, 3)).double()  # 3x3 -> 1x1
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, 2, 3, 3, generator=g, dtype=torch.float64), torch.tensor([2])
    exact = fisher(model, nn.CrossEntropyLoss(), (x, y)).to_dense()
    for sharing in ["expand", "reduce"]:
        torch.testing.assert_close(kfac(model, nn.CrossEntropyLoss(), (x, y), weight_sharing=sharing).to_dense(),
                                   _block_diagonal(exact, _layer_sizes(model)), atol=ATOL, rtol=0)


def test_monte_carlo_kfac_converges_to_exact_kfac():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = _data(9, 4, classes=3)
    exact = kfac(model, nn.CrossEntropyLoss(), (x, y)).to_dense()
    errors = []
    for m in [4, 64, 1024]:
        errs = [float((kfac(model, nn.CrossEntropyLoss(), (x, y), fisher_type="mc", num_draws=m,
                            seed=s).to_dense() - exact).norm() / exact.norm()) for s in range(4)]
        errors.append(np.mean(errs))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05, errors
    slope = np.polyfit(np.log([4, 64, 1024]), np.log(errors), 1)[0]
    assert -0.65 < slope < -0.35, slope


def test_parameter_selection_scaled_linear_and_exact_diagonal():
    model = MLP(4, [5], 3, parametrization="ntk", seed=0).double()
    x, y = _data(1, 4, classes=3)
    loss = nn.CrossEntropyLoss()
    exact = fisher(model, loss, (x, y)).to_dense()
    torch.testing.assert_close(kfac(model, loss, (x, y)).to_dense(), _block_diagonal(exact, [25, 18]), atol=ATOL,
                               rtol=0)
    for params in ["readout.weight", "readout.bias", "hidden_layers.0"]:
        block = kfac(model, loss, (x, y), params=params)
        reference = fisher(model, loss, (x, y), params=params).to_dense()
        torch.testing.assert_close(block.to_dense(), reference, atol=ATOL, rtol=0)
    x, y = _data(8, 4, classes=3)
    op = kfac(model, loss, (x, y))
    torch.testing.assert_close(op.exact_diagonal(), torch.diagonal(op.to_dense()), atol=ATOL, rtol=0)


def test_clear_errors():
    x, y = _data(4, 4, classes=3)
    norm = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)).double()
    with pytest.raises(ValueError, match="K-FAC covers nn.Linear and nn.Conv2d layers only"):
        kfac(norm, nn.CrossEntropyLoss(), (x, y))
    assert kfac(norm, nn.CrossEntropyLoss(), (x, y), params="0").shape == (15, 15)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 4)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            return self.head(self.layer(self.layer(x)))

    with pytest.raises(ValueError, match="ran 2 times"):
        kfac(Twice().double(), nn.CrossEntropyLoss(), (x, y))
    grouped = nn.Sequential(nn.Conv2d(2, 2, 1, groups=2), nn.Flatten()).double()
    with pytest.raises(ValueError, match="groups=1"):
        kfac(grouped, nn.MSELoss(), (torch.randn(2, 2, 1, 1, dtype=torch.float64), torch.randn(2, 2,
                                                                                                  dtype=torch.float64)))
    with pytest.raises(ValueError, match="empirical K-FAC needs per-sample output gradients"):
        kfac(norm, lambda out, target: nn.functional.cross_entropy(out, target), (x, y), params="0",
             fisher_type="empirical")
    with pytest.raises(ValueError, match="fisher_type must be one of"):
        kfac(norm, nn.CrossEntropyLoss(), (x, y), fisher_type="type-2", params="0")
    with pytest.raises(ValueError, match="weight_sharing must be one of"):
        kfac(norm, nn.CrossEntropyLoss(), (x, y), weight_sharing="mean", params="0")
