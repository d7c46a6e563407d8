"""Learning-rate schedules against their closed forms, the refinement of Defazio et al. 2023, and their
last-iterate bound (whose minimiser over all schedules is the linear decay)."""
import numpy as np
import pytest
import scipy.optimize

from theorylab.results import Result
from theorylab.schedules import (NAMES, Schedule, cosine, linear, make_schedule, refined_schedule, running_median,
                                 step_decay, with_warmup, wsd)
from theorylab.theory import last_iterate_bound


def test_closed_forms():
    t = np.arange(10.0)
    np.testing.assert_array_equal(make_schedule("constant", 10).values, np.ones(10))
    np.testing.assert_allclose(cosine(10).values, 0.5 * (1 + np.cos(np.pi * t / 10)), rtol=0, atol=1e-15)
    np.testing.assert_allclose(cosine(10, final=0.1).values, 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * t / 10)))
    np.testing.assert_allclose(linear(10).values, 1 - t / 10)
    np.testing.assert_array_equal(step_decay(10, milestones=(0.3, 0.6), factor=0.5).values,
                                  [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25])
    np.testing.assert_allclose(wsd(10, decay_fraction=0.2).values, [1] * 8 + [1.0, 0.5])
    np.testing.assert_allclose(with_warmup(linear(10), 4).values, np.minimum(1, (t + 1) / 4) * (1 - t / 10))
    assert set(NAMES) == {"constant", "step", "cosine", "linear", "wsd"}


def test_a_schedule_is_a_function_of_the_step_and_round_trips():
    s = linear(4)
    assert [s(0), s(3), s(100)] == [1.0, 0.25, 0.25]
    assert Result.from_dict(s.to_dict()) == s and len(s) == 4


def test_refined_schedule_of_constant_norms_is_linear_decay_to_zero():
    np.testing.assert_allclose(refined_schedule(np.full(11, 3.0)).values, (10 - np.arange(11)) / 10)


def test_refined_schedule_warms_up_when_norms_fall_early_and_anneals_fast_when_they_rise_late():
    t = np.arange(200)
    early = refined_schedule(1 + 9 * np.exp(-t / 10)).values
    assert early[0] < 0.1 and 5 < int(np.argmax(early)) < 100  # warm-up
    late = refined_schedule(np.where(t < 150, 1.0, 5.0)).values
    # norms rising late put most of the remaining sum at the end: the schedule stays high, then drops fast
    lin = linear(200).values
    assert late[140] > 0.85 > 2 * lin[140] and late[160] < 0.2 * lin[160] and late[-1] == 0.0


def test_running_median_is_causal():
    np.testing.assert_array_equal(running_median(np.array([5.0, 1.0, 3.0, 100.0]), 3), [5.0, 3.0, 3.0, 3.0])


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_schedule("exponential", 10)
    with pytest.raises(ValueError, match="steps must be"):
        linear(0)
    with pytest.raises(ValueError, match="milestones must increase"):
        step_decay(10, milestones=(0.6, 0.3))
    with pytest.raises(ValueError, match="warmup_steps"):
        with_warmup(linear(5), 6)
    with pytest.raises(ValueError, match="> 0"):
        refined_schedule([1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=">= 0"):
        Schedule("bad", np.array([1.0, -1.0]))


def test_last_iterate_bound_of_a_constant_step_by_hand():
    # T = 2, eta = (a, a), D = G = 1: (1 + 2a^2)/(4a) + 1/2 * a/a * (2a^2)/(2a) = (1 + 2a^2)/(4a) + a/2
    a = 0.3
    assert last_iterate_bound([a, a]) == pytest.approx((1 + 2 * a ** 2) / (4 * a) + a / 2)


def test_linear_decay_minimises_the_last_iterate_bound():
    """Defazio et al. 2023: with constant gradient norms, the best schedule for the bound is the linear decay;
    minimised over all T step sizes it comes out a straight line reaching zero at about T (the last step,
    which the bound barely sees, aside)."""
    steps = 30
    res = scipy.optimize.minimize(lambda z: last_iterate_bound(np.exp(z)), np.full(steps, np.log(0.1)),
                                  method="L-BFGS-B", options={"maxiter": 5000})
    best = np.exp(res.x)
    shape, t = best[:-1] / best[0], np.arange(steps - 1)
    slope, intercept = np.polyfit(t, shape, 1)
    assert np.max(np.abs(shape - (intercept + slope * t))) < 0.02
    assert steps - 1 < -intercept / slope < steps + 3
    scales = np.geomspace(0.02, 1.0, 400)
    best_linear = min(last_iterate_bound(c * linear(steps).values) for c in scales)
    best_cosine = min(last_iterate_bound(c * cosine(steps).values) for c in scales)
    best_constant = min(last_iterate_bound(np.full(steps, c)) for c in scales)
    assert res.fun <= best_linear <= 1.1 * res.fun
    assert best_linear < best_cosine < best_constant
