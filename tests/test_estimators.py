"""Diagonal, Frobenius norm and CG inverse products against dense float64 references; the stochastic
estimators converge at the m^{-1/2} rate with calibrated standard errors (fixed seeds)."""
import numpy as np
import pytest
import torch
from torch import nn

from theorylab.curvature import DenseOperator, diagonal, frobenius_norm, ggn, hessian, kfac, solve
from theorylab.results import Result

from symmetric_matrices import symmetric_matrix

ATOL = 1e-12


def _model_case():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(13, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (13,), generator=g)
    return model, nn.CrossEntropyLoss(), [(x[:6], y[:6]), (x[6:], y[6:])]


def test_exact_diagonal_of_a_hessian_a_dense_matrix_and_kfac():
    model, loss, data = _model_case()
    h = hessian(model, loss, data)
    dense = h.to_dense()
    result = diagonal(h)
    np.testing.assert_allclose(result.values, torch.diagonal(dense).numpy(), atol=ATOL, rtol=0)
    assert result.num_matvecs == h.shape[0] and not result.stderr.any()
    split = result.per_parameter()
    assert list(split) == h.param_names and split["0.weight"].shape == (5, 4)
    a = symmetric_matrix(np.linspace(-1, 2, 7))
    np.testing.assert_allclose(diagonal(a).values, torch.diagonal(a).numpy(), atol=0, rtol=0)
    k = kfac(model, loss, data)
    free = diagonal(k)
    assert free.num_matvecs == 0
    np.testing.assert_allclose(free.values, torch.diagonal(k.to_dense()).numpy(), atol=ATOL, rtol=0)
    assert Result.from_dict(result.to_dict()) == result


def test_hutchinson_diagonal_converges_at_the_square_root_rate_with_calibrated_errors():
    model, loss, data = _model_case()
    g = DenseOperator(ggn(model, loss, data).to_dense())  # the estimator's rate, not the products, is under test
    exact = torch.diagonal(g.matrix).numpy()
    budgets = [16, 64, 256, 1024]
    errors, z_scores = [], []
    for m in budgets:
        runs = [diagonal(g, method="hutchinson", num_probes=m, seed=s) for s in range(5)]
        errors.append(np.mean([np.linalg.norm(r.values - exact) for r in runs]))
        z_scores += [((r.values - exact) / r.stderr) for r in runs]
    slope = np.polyfit(np.log(budgets), np.log(errors), 1)[0]
    assert -0.6 < slope < -0.4, (errors, slope)
    z = np.concatenate(z_scores)
    assert 0.75 < np.mean(z ** 2) < 1.35  # standard errors are calibrated: z ~ N(0, 1)
    same = diagonal(g, method="hutchinson", num_probes=8, seed=3)
    assert np.array_equal(same.values, diagonal(g, method="hutchinson", num_probes=8, seed=3).values)


def test_frobenius_norm_exact_and_estimated():
    a = symmetric_matrix(np.linspace(-2, 3, 40), seed=1)
    exact = float(torch.linalg.matrix_norm(a))
    result = frobenius_norm(a, method="exact")
    assert result.estimate == pytest.approx(exact, rel=1e-12) and result.stderr == 0
    model, loss, data = _model_case()
    h = hessian(model, loss, data)
    assert frobenius_norm(h, method="exact").estimate == pytest.approx(float(torch.linalg.matrix_norm(h.to_dense())),
                                                                       rel=1e-12)
    budgets = [16, 64, 256, 1024]
    errors = []
    for m in budgets:
        runs = [frobenius_norm(a, num_probes=m, seed=s) for s in range(6)]
        errors.append(np.mean([abs(r.squared - exact ** 2) for r in runs]))
    slope = np.polyfit(np.log(budgets), np.log(errors), 1)[0]
    assert -0.7 < slope < -0.3, (errors, slope)
    big = frobenius_norm(a, num_probes=1024, seed=0)
    assert abs(big.estimate - exact) < 4 * big.stderr


def test_cg_matches_a_dense_solve_and_reports_the_true_residual():
    model, loss, data = _model_case()
    g = ggn(model, loss, data)
    dense = g.to_dense()
    b = torch.randn(g.shape[0], generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for damping in [1e-3, 0.1]:
        result = solve(g, b, damping=damping, tol=1e-12)
        expected = torch.linalg.solve(dense + damping * torch.eye(len(b), dtype=torch.float64), b)
        assert result.converged and result.status == "converged"
        np.testing.assert_allclose(result.solution, expected.numpy(), rtol=0,
                                   atol=1e-9 * float(expected.abs().max()))
        assert result.relative_residual <= 1e-11
        assert result.num_matvecs == result.iterations + 1
        loose = solve(g, b, damping=damping, tol=1e-5)  # a residual well above rounding, checked densely
        true = float((b - (dense + damping * torch.eye(len(b), dtype=torch.float64)) @ torch.from_numpy(
            loose.solution)).norm())
        assert loose.residual_norm == pytest.approx(true, rel=1e-6)
        assert loose.residual_norm <= 1e-5 * float(b.norm()) and loose.iterations < result.iterations
    as_dict = solve(g, g.unflatten(b), damping=0.1, tol=1e-12)
    np.testing.assert_allclose(as_dict.solution, solve(g, b, damping=0.1, tol=1e-12).solution, atol=0, rtol=0)
    warm = solve(g, b, damping=0.1, tol=1e-12, x0=torch.from_numpy(as_dict.solution))
    assert warm.iterations <= 1 and warm.converged
    assert Result.from_dict(as_dict.to_dict()) == as_dict


def test_kfac_inverse_is_exact_and_preconditions_cg():
    model, loss, data = _model_case()
    k = kfac(model, loss, data)
    eye = torch.eye(k.shape[0], dtype=torch.float64)
    inverse = k.inverse(1e-2)
    torch.testing.assert_close(inverse.to_dense(), torch.linalg.inv(k.to_dense() + 1e-2 * eye), atol=1e-9, rtol=1e-9)
    b = torch.randn(k.shape[0], generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    exact = solve(k, b, damping=1e-2, tol=1e-10, preconditioner=inverse)  # the exact inverse: one step
    assert exact.converged and exact.iterations == 1
    with pytest.raises(ValueError, match="damping must be a positive number"):
        k.inverse(0.0)
    with pytest.raises(ValueError, match="preconditioner must be"):
        solve(k, b, preconditioner=DenseOperator(torch.eye(3, dtype=torch.float64)))
    # inputs on scales 0.03 .. 30: an ill-conditioned GGN whose input side K-FAC captures
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    with torch.no_grad():
        model[0].weight.mul_(0.1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 6, generator=g, dtype=torch.float64) * torch.logspace(-1.5, 1.5, 6, dtype=torch.float64)
    data = (x, torch.randint(0, 3, (64,), generator=g))
    G = ggn(model, nn.CrossEntropyLoss(), data)
    b = torch.randn(G.shape[0], generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    plain = solve(G, b, damping=1e-4, tol=1e-8)
    preconditioned = solve(G, b, damping=1e-4, tol=1e-8,
                           preconditioner=kfac(model, nn.CrossEntropyLoss(), data).inverse(1e-4))
    assert plain.converged and preconditioned.converged
    assert preconditioned.iterations < 0.8 * plain.iterations, (preconditioned.iterations, plain.iterations)
    np.testing.assert_allclose(preconditioned.solution, plain.solution, rtol=0,
                               atol=1e-5 * np.abs(plain.solution).max())


def test_cg_reports_negative_curvature_max_iter_and_a_zero_right_hand_side():
    indefinite = symmetric_matrix([-1.0, 0.5, 1.0, 2.0, 3.0], seed=2)
    b = torch.ones(5, dtype=torch.float64)
    result = solve(indefinite, b)
    assert result.status == "negative_curvature" and not result.converged
    ok = solve(indefinite, b, damping=1.5, tol=1e-12)  # the shifted matrix is positive definite
    np.testing.assert_allclose(ok.solution, torch.linalg.solve(indefinite + 1.5 * torch.eye(5, dtype=torch.float64),
                                                               b).numpy(), atol=1e-10, rtol=0)
    hard = symmetric_matrix(np.logspace(-4, 0, 30), seed=3)
    capped = solve(hard, torch.ones(30, dtype=torch.float64), max_iter=3)
    assert capped.status == "max_iter" and capped.iterations == 3 and capped.relative_residual > 1e-6
    zero = solve(hard, torch.zeros(30, dtype=torch.float64))
    assert zero.status == "zero_rhs" and zero.converged and not zero.solution.any()


def test_clear_errors():
    a = DenseOperator(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="method must be one of"):
        diagonal(a, method="diag++")
    with pytest.raises(ValueError, match="num_probes must be an integer >= 2"):
        diagonal(a, method="hutchinson", num_probes=1)
    with pytest.raises(ValueError, match="num_probes"):
        frobenius_norm(a, num_probes=0)
    with pytest.raises(ValueError, match="damping must be"):
        solve(a, torch.ones(3, dtype=torch.float64), damping=-1.0)
    with pytest.raises(ValueError, match="length 3"):
        solve(a, torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite"):
        solve(a, torch.tensor([1.0, float("nan"), 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="no parameter names"):
        solve(a, {"w": torch.ones(3)})
    with pytest.raises(ValueError, match="per_parameter|parameter names"):
        diagonal(a).per_parameter()
