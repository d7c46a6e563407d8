"""Update geometry against brute-force computations on small models."""
import numpy as np
import pytest
import torch
from torch import nn

from theorylab.gradients import parameter_snapshot
from theorylab.representations import matrix_ranks
from theorylab.updates import layer_gradient_ranks, neuron_update_norms, update_ranks


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def test_update_ranks_of_a_planted_rank_one_update():
    model = _model()
    initial = parameter_snapshot(model)
    with torch.no_grad():
        model[0].weight += torch.outer(torch.arange(1.0, 6.0, dtype=torch.float64), torch.ones(6, dtype=torch.float64))
        model[2].weight += torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ranks = update_ranks(model, initial)
    assert ranks.layers == ["0.weight", "2.weight"] and "0.bias" in ranks.skipped
    assert ranks.stable_rank[0] == pytest.approx(1.0) and ranks.effective_rank[0] == pytest.approx(1.0)
    expected = matrix_ranks(model[2].weight.detach() - initial["2.weight"])
    assert ranks.stable_rank[1] == pytest.approx(expected.stable_rank, rel=1e-12)
    norms = neuron_update_norms(model, initial)
    torch.testing.assert_close(norms["0.weight"], torch.arange(1.0, 6.0, dtype=torch.float64) * 6 ** 0.5)


def test_an_unchanged_layer_is_skipped_not_an_error():
    model = _model()
    initial = parameter_snapshot(model)
    with torch.no_grad():
        model[2].weight += 1.0
    ranks = update_ranks(model, initial)
    assert ranks.layers == ["2.weight"] and "did not change" in ranks.skipped["0.weight"]


def test_gradient_ranks_are_those_of_the_autograd_gradients():
    model = _model()
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(2, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (2,), generator=g)
    nn.functional.cross_entropy(model(x), y).backward()
    ranks = layer_gradient_ranks(model, nn.CrossEntropyLoss(), (x, y))
    for k, layer in enumerate((model[0], model[2])):
        expected = matrix_ranks(layer.weight.grad)
        assert ranks.stable_rank[k] == pytest.approx(expected.stable_rank, rel=1e-10)
    assert np.linalg.matrix_rank(model[0].weight.grad.numpy()) <= 2  # two examples: rank at most 2
