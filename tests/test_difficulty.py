"""Difficulty scores against their definitions on a tiny model (Paul et al. 2021; Toneva et al. 2019)."""
import numpy as np
import pytest
import torch
from torch import nn

from theorylab.difficulty import correct_predictions, el2n_scores, forgetting_events, grand_scores, hardest


def _case():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (9,), generator=g)
    return model, x, y


def test_el2n_is_the_norm_of_the_softmax_error():
    model, x, y = _case()
    p = torch.softmax(model(x), 1).detach()
    expected = torch.stack([torch.linalg.norm(p[i] - torch.eye(3, dtype=torch.float64)[y[i]]) for i in range(9)])
    torch.testing.assert_close(el2n_scores(model, [(x[:4], y[:4]), (x[4:], y[4:])]), expected, rtol=1e-12, atol=0)


def test_grand_is_the_norm_of_each_examples_gradient():
    model, x, y = _case()
    expected = []
    for i in range(9):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        expected.append(torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters())))
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(grand_scores(model, nn.CrossEntropyLoss(), (x, y), chunk_size=4),
                               torch.stack(expected), rtol=1e-10, atol=0)


def test_correct_predictions_and_forgetting_events():
    model, x, y = _case()
    assert torch.equal(correct_predictions(model, (x, y)), model(x).argmax(1) == y)
    history = np.array([[1, 0, 0, 1],
                        [0, 0, 1, 1],
                        [1, 0, 0, 1],
                        [0, 0, 1, 1]], dtype=bool)
    # example 0 forgotten twice, 1 never learned (counts as forgotten at every presentation), 2 once, 3 never
    assert forgetting_events(history).tolist() == [2, 4, 1, 0]
    with pytest.raises(ValueError, match="presentations, examples"):
        forgetting_events(np.ones(3, dtype=bool))


def test_hardest_keeps_the_highest_scores():
    assert hardest(np.array([0.1, 0.9, 0.5, 0.7]), 0.5).tolist() == [1, 3]
    with pytest.raises(ValueError, match="keep must be"):
        hardest(np.ones(3), 0.0)
