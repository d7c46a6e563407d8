"""Hutchinson and Hutch++ trace estimates: exact cases, 1/sqrt(m) convergence, calibrated errors."""
import numpy as np
import pytest
import torch
from symmetric_matrices import symmetric_matrix
from torch import nn

from theorylab.curvature import TraceEstimate, hessian, trace
from theorylab.results import Result


def _rms_errors(a, budgets, method, seeds=range(60)):
    exact = float(torch.trace(a))
    return np.array([np.sqrt(np.mean([(trace(a, num_probes=m, method=method, seed=s).estimate - exact) ** 2
                                      for s in seeds])) for m in budgets])


def _slope(budgets, errors):
    return np.polyfit(np.log(budgets), np.log(errors), 1)[0]


def test_hutchinson_converges_at_the_inverse_square_root_rate_on_an_indefinitesymmetric_matrix():
    a = symmetric_matrix(np.linspace(-3.0, 1.0, 50), seed=1)  # negative trace
    budgets = np.array([6, 24, 96, 384])
    errors = _rms_errors(a, budgets, "hutchinson", range(200))
    # Var(z^T A z) = 2 sum_{i != j} A_ij^2 for Rademacher z: the RMS error is sqrt(that / m) exactly
    offdiag = a - torch.diag(torch.diag(a))
    predicted = np.sqrt(2 * float((offdiag**2).sum()) / budgets)
    np.testing.assert_allclose(errors, predicted, rtol=0.3)  # 200 seeds: the RMS is known to ~ +-8%
    assert -0.6 < _slope(budgets, errors) < -0.4


def test_stderr_is_calibrated():
    a = symmetric_matrix(np.linspace(-1.0, 2.0, 40), seed=2)
    exact = float(torch.trace(a))
    z = np.array([(r.estimate - exact) / r.stderr
                  for r in (trace(a, num_probes=50, seed=s) for s in range(200))])
    assert 0.85 < np.mean(np.abs(z) < 2) <= 1.0  # about 95% within two standard errors
    assert 0.8 < np.std(z) < 1.25


def test_hutch_plus_plus_beats_hutchinson_on_a_low_rank_dominatedsymmetric_matrix():
    a = symmetric_matrix(1.0 / np.arange(1, 101) ** 2, seed=3)  # eigenvalues i^-2: a few dominate
    budgets = np.array([12, 48, 192])
    plain, plus = _rms_errors(a, budgets, "hutchinson", range(30)), _rms_errors(a, budgets, "hutch++", range(30))
    assert np.all(plus < plain / 3)
    assert _slope(budgets, plus) < -0.9  # Meyer et al. 2021: O(1/m) or better when the spectrum decays
    assert -0.65 < _slope(budgets, plain) < -0.35


def test_hutch_plus_plus_is_exact_when_the_sketch_spans_the_range():
    eigenvalues = np.zeros(60)
    eigenvalues[:4] = [5.0, -2.0, 1.0, 0.5]  # rank 4 < sketch size 5
    a = symmetric_matrix(eigenvalues, seed=4)
    result = trace(a, num_probes=15, method="hutch++", seed=0)
    assert abs(result.estimate - 4.5) < 1e-12 and abs(result.sketch_trace - 4.5) < 1e-12
    assert result.num_matvecs == 15 and len(result.samples) == 5


def test_hutch_plus_plus_on_an_mlp_hessian_is_exact_with_a_full_sketch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(15, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (15,), generator=g)
    op = hessian(model, nn.CrossEntropyLoss(), [(x[:8], y[:8]), (x[8:], y[8:])])
    exact = float(torch.trace(op.to_dense()))
    size = op.shape[0]
    result = trace(op, num_probes=3 * size, method="hutch++")  # Q spans R^P: the residual is zero
    assert abs(result.estimate - exact) < 1e-12 * max(1.0, abs(exact))
    plain = trace(op, num_probes=200, seed=1)
    assert plain.num_matvecs == 200 and abs(plain.estimate - exact) < 4 * plain.stderr


def test_result_round_trip_plot_and_bad_input():
    a = symmetric_matrix(np.linspace(0, 1, 20))
    result = trace(a, num_probes=9, method="hutch++", seed=3)
    assert isinstance(Result.from_dict(result.to_dict()), TraceEstimate)
    assert Result.from_dict(result.to_dict()) == result and result.plot() is not None
    assert result.meta["seed"] == 3 and result.meta["num_matvecs"] == 9
    assert trace(a, num_probes=7, seed=5).estimate == trace(a, num_probes=7, seed=5).estimate
    with pytest.raises(ValueError, match="method"):
        trace(a, method="girard")
    with pytest.raises(ValueError, match="num_probes"):
        trace(a, num_probes=1)
    with pytest.raises(ValueError, match="num_probes"):
        trace(a, num_probes=5, method="hutch++")
    with pytest.raises(ValueError, match="not symmetric"):
        trace(torch.triu(torch.ones(3, 3)))
