"""Closed forms of the optimisation predictions against their special cases and brute force."""
import pytest

from theorylab.theory import (deep_mode_learning_time, max_lr_batch_exponent, saxe_learning_time,
                              saxe_mode_strength)


def test_two_layer_learning_time_is_saxes_closed_form():
    for s, u0, uf in ((3.0, 0.01, 2.9), (1.5, 0.2, 1.0)):
        assert deep_mode_learning_time(s, depth=2, u0=u0, uf=uf, tau=7.0) == pytest.approx(
            saxe_learning_time(s, u0=u0, uf=uf, tau=7.0), rel=1e-9)


def test_deep_learning_time_matches_a_fine_euler_integration_of_the_ode():
    s, depth, u0, uf = 2.0, 6, 0.3, 1.8
    u, t, dt = u0, 0.0, 1e-5
    while u < uf:
        u += dt * depth * u ** (2 - 2 / depth) * (s - u)
        t += dt
    assert deep_mode_learning_time(s, depth=depth, u0=u0, uf=uf) == pytest.approx(t, rel=1e-3)


def test_learning_time_towards_a_smaller_singular_value_and_bad_inputs():
    assert deep_mode_learning_time(0.5, depth=3, u0=1.0, uf=0.6) > 0
    with pytest.raises(ValueError, match="between"):
        deep_mode_learning_time(2.0, depth=3, u0=1.0, uf=2.5)
    # the two-layer trajectory reaches uf at the predicted time
    t = saxe_learning_time(2.0, u0=0.1, uf=1.5)
    assert float(saxe_mode_strength(t, 2.0, u0=0.1)) == pytest.approx(1.5)


def test_batch_size_exponents():
    assert max_lr_batch_exponent("sgd") == 1.0 and max_lr_batch_exponent("adam") == 0.5
    with pytest.raises(ValueError, match="optimizer"):
        max_lr_batch_exponent("lion")
