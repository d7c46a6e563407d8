"""The stability-limit search against closed forms: GD on a quadratic diverges exactly above 2/lambda_max,
heavy-ball momentum beta above (2 + 2 beta)/lambda_max, and full-batch training of a linear model by MSE
above 1/lambda_max(X^T X / n)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from theorylab.results import Result
from theorylab.stability import StabilityLimit, stability_limit, training_diverges
from theorylab.theory import sgd_mean_square_lr_limit

EIGENVALUES = np.array([3.0, 1.0, 0.25])


def _quadratic_diverges(momentum: float = 0.0, steps: int = 3000):
    """GD (heavy ball) on 0.5 sum_i lam_i x_i^2 from x = 1: diverged if the final loss exceeds the initial one."""
    def diverges(lr: float, seed: int) -> bool:
        x, velocity = np.ones(3), np.zeros(3)
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(steps):
                velocity = momentum * velocity + EIGENVALUES * x
                x = x - lr * velocity
            final = float(0.5 * np.sum(EIGENVALUES * x ** 2))
        return not math.isfinite(final) or final > float(0.5 * EIGENVALUES.sum())
    return diverges


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_quadratic_limit_is_two_plus_two_beta_over_lambda_max(momentum):
    exact = (2 + 2 * momentum) / EIGENVALUES.max()
    res = stability_limit(_quadratic_diverges(momentum), lr_low=1e-3, lr_high=10.0, seeds=[0, 1], rtol=1e-3)
    for low, high in res.brackets:
        assert low <= exact <= high and high / low <= 1 + 1e-3
    assert res.limit == pytest.approx(exact, rel=1e-3)
    assert res.log_stderr == 0.0  # deterministic: both seeds agree


def test_bracket_widens_in_both_directions_and_reports_no_limit_as_nan():
    exact = 2 / EIGENVALUES.max()
    res = stability_limit(_quadratic_diverges(), lr_low=4 * exact, lr_high=8 * exact, seeds=[0], rtol=0.01, expand=4)
    assert res.brackets[0][0] <= exact <= res.brackets[0][1]
    res = stability_limit(_quadratic_diverges(), lr_low=exact / 64, lr_high=exact / 32, seeds=[0], rtol=0.01, expand=4)
    assert res.brackets[0][0] <= exact <= res.brackets[0][1]
    never = stability_limit(lambda lr, seed: False, lr_low=1.0, lr_high=2.0, seeds=[0], max_expansions=2)
    always = stability_limit(lambda lr, seed: True, lr_low=1.0, lr_high=2.0, seeds=[0], max_expansions=2)
    assert math.isnan(never.limits[0]) and math.isnan(always.limits[0])
    assert len(never.evaluations) == 1 + 2 + 1  # low, two expansions of high, the last check


def test_every_run_is_recorded_and_the_result_round_trips():
    res = stability_limit(_quadratic_diverges(), lr_low=0.1, lr_high=1.0, seeds=[3, 4], rtol=0.05)
    assert {s for s, _, _ in res.evaluations} == {3, 4}
    assert all(isinstance(d, bool) for _, _, d in res.evaluations)
    back = Result.from_dict(res.to_dict())
    assert isinstance(back, StabilityLimit) and back == res


def test_training_diverges_finds_the_full_batch_limit_of_least_squares():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = x @ torch.randn(5, 1, generator=g, dtype=torch.float64)
    exact = 1.0 / float(torch.linalg.eigvalsh(x.T @ x / len(x)).max())  # 2 / lambda_max of H = 2 X^T X / n

    def make(seed):
        model = nn.Linear(5, 1, bias=False).double()
        nn.init.zeros_(model.weight)
        return model

    diverges = training_diverges(make, nn.MSELoss(), (x, y), steps=300, optimizer="gd")
    res = stability_limit(diverges, lr_low=0.01, lr_high=10.0, seeds=[0], rtol=0.01)
    low, high = res.brackets[0]
    assert low <= exact <= high


def test_bad_searches_are_refused():
    with pytest.raises(ValueError, match="lr_low < lr_high"):
        stability_limit(lambda lr, s: False, lr_low=1.0, lr_high=0.5)
    with pytest.raises(ValueError, match="rtol"):
        stability_limit(lambda lr, s: False, lr_low=0.1, lr_high=1.0, rtol=0.0)
    with pytest.raises(ValueError, match="at least one seed"):
        stability_limit(lambda lr, s: False, lr_low=0.1, lr_high=1.0, seeds=[])
    with pytest.raises(ValueError, match="factor"):
        training_diverges(lambda s: nn.Linear(1, 1), nn.MSELoss(), (torch.ones(2, 1), torch.ones(2, 1)), steps=5,
                          factor=0.0)


def test_sgd_mean_square_limit_is_where_the_second_moment_stops_contracting():
    """E[(I - eta H_B)^2] = (1 - 4 eta + 4 eta^2 (B + d + 1) / B) I for H_B = (2/B) sum x x^T, x ~ N(0, I_d):
    the second moment by Monte Carlo, and the contraction factor 1 exactly at the closed-form limit."""
    d, b = 3, 2
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200_000, b, d))
    h = 2.0 / b * np.einsum("nbi,nbj->nij", x, x)
    second = np.einsum("nij,njk->ik", h, h) / len(h)
    np.testing.assert_allclose(second, 4.0 / b * (d + b + 1) * np.eye(d), atol=0.15)
    eta = float(sgd_mean_square_lr_limit(b, d))
    assert 1 - 4 * eta + 4 * eta ** 2 * (b + d + 1) / b == pytest.approx(1.0)
    with pytest.raises(ValueError):
        sgd_mean_square_lr_limit(0, d)
