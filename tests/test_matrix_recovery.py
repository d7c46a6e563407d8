"""The recovery algorithms against exact references: autograd sub-gradients, exact least squares, CG's finite
termination."""
import numpy as np
import pytest
import torch

from theorylab.matrix_recovery import _solve_rows, alternating_minimization, subgradient_recovery


def _problem(seed=0, d=5, m=30):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, d, d))
    a = (a + a.transpose(0, 2, 1)) / 2
    f = rng.standard_normal((d, 2))
    target = f @ f.T
    return a, np.einsum("mij,ij->m", a, target), target


@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_one_step_is_a_step_along_the_autograd_subgradient(loss):
    a, y, target = _problem()
    d = target.shape[0]
    u0 = 0.5 * np.random.default_rng(7).standard_normal((d, 3)) / np.sqrt(d)
    error = subgradient_recovery(a, y, target, rank=3, init_scale=0.5, lr=0.1, decay=0.9, steps=1, loss=loss, seed=7)
    u = torch.tensor(u0, requires_grad=True)
    r = torch.einsum("mij,ij->m", torch.tensor(a), u @ u.T) - torch.tensor(y)
    value = r.abs().mean() if loss == "l1" else 0.5 * (r ** 2).mean()
    value.backward()
    stepped = (u - 0.1 * u.grad).detach().numpy()
    assert error[0] == pytest.approx(np.linalg.norm(stepped @ stepped.T - target) / np.linalg.norm(target), rel=1e-12)


def test_fully_observed_low_rank_matrix_is_completed_in_one_round():
    rng = np.random.default_rng(1)
    target = rng.standard_normal((12, 3)) @ rng.standard_normal((3, 10))
    errors = alternating_minimization(target, np.ones_like(target, dtype=bool), rank=3, iterations=2)
    assert errors[0] < 1e-12


def test_row_solves_exact_and_by_conjugate_gradients():
    rng = np.random.default_rng(2)
    fixed, values = rng.standard_normal((9, 3)), rng.standard_normal((6, 9))
    mask = rng.random((6, 9)) < 0.7
    mask[:, :3] = True
    exact = np.array([np.linalg.lstsq(fixed[mask[i]], values[i, mask[i]], rcond=None)[0] for i in range(6)])
    np.testing.assert_allclose(_solve_rows(fixed, values, mask, np.zeros((6, 3)), None), exact, rtol=1e-10)
    # CG terminates in at most r = 3 steps on an r x r system
    np.testing.assert_allclose(_solve_rows(fixed, values, mask, np.zeros((6, 3)), 3), exact, rtol=1e-8, atol=1e-10)
    one = _solve_rows(fixed, values, mask, np.zeros((6, 3)), 1)
    assert np.linalg.norm(one - exact) > 1e-3  # one step is only approximate


def test_bad_inputs_are_refused():
    a, y, target = _problem()
    with pytest.raises(ValueError, match="loss"):
        subgradient_recovery(a, y, target, rank=2, init_scale=0.1, lr=0.1, decay=0.9, steps=1, loss="huber")
    with pytest.raises(ValueError, match="init_scale"):
        subgradient_recovery(a, y, target, rank=2, init_scale=0.0, lr=0.1, decay=0.9, steps=1)
    with pytest.raises(ValueError, match="observed entry"):
        alternating_minimization(np.ones((3, 3)), np.eye(3, dtype=bool) & False, rank=1, iterations=1)
