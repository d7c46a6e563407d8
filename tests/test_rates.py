"""The rate fitter on synthetic sequences with known rates."""
import numpy as np
import pytest

from theorylab.rates import RateFit, fit_rate


def test_recovers_a_polynomial_rate_and_prefers_it():
    t = np.arange(10, 1000, 10.0)
    fit = fit_rate(t, 3.0 * t ** -2.0)
    assert fit.law == "polynomial" and fit.decisive
    assert fit.exponent == pytest.approx(2.0, abs=1e-10)
    assert fit.polynomial_prefactor == pytest.approx(3.0, rel=1e-8)


def test_recovers_an_exponential_rate_and_prefers_it():
    t = np.arange(1, 400, 4.0)
    fit = fit_rate(t, 0.7 * np.exp(-0.05 * t))
    assert fit.law == "exponential" and fit.decisive
    assert fit.rate == pytest.approx(0.05, abs=1e-12)
    assert fit.exponential_prefactor == pytest.approx(0.7, rel=1e-10)


def test_noisy_rates_fall_within_their_standard_errors():
    """With multiplicative noise the fitted rate is within 4 standard errors for every seed, and the
    standard error shrinks like 1/sqrt(number of points)."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        t = np.linspace(5, 500, 100)
        noisy_pol = 2.0 * t ** -1.5 * np.exp(0.1 * rng.standard_normal(t.size))
        noisy_exp = np.exp(-0.02 * t) * np.exp(0.1 * rng.standard_normal(t.size))
        fp, fe = fit_rate(t, noisy_pol), fit_rate(t, noisy_exp)
        assert fp.law == "polynomial" and fe.law == "exponential"
        assert abs(fp.exponent - 1.5) < 4 * fp.exponent_stderr
        assert abs(fe.rate - 0.02) < 4 * fe.rate_stderr
    rng = np.random.default_rng(0)
    errors = []
    for m in (100, 1600):
        t = np.linspace(5, 500, m)
        errors.append(fit_rate(t, np.exp(-0.02 * t + 0.1 * rng.standard_normal(m))).rate_stderr)
    assert errors[0] / errors[1] == pytest.approx(4.0, rel=0.2)


def test_indecisive_when_the_two_laws_fit_equally():
    # over a short window far from the origin T^-p and exp(-cT) differ by ~1e-5 in log(error),
    # far below a 1e-3 measurement noise: neither law can be preferred
    t = np.linspace(1000, 1010, 6)
    noise = np.exp(1e-3 * np.random.default_rng(0).standard_normal(t.size))
    fit = fit_rate(t, t ** -2.0 * noise)
    assert not fit.decisive
    assert abs(fit.log_likelihood_ratio) < 1.0


def test_round_trip_and_plot(tmp_path):
    t = np.arange(1, 50.0)
    fit = fit_rate(t, t ** -1.0)
    assert RateFit.load(fit.save(tmp_path / "fit.json")) == fit
    ax = fit.plot()
    assert len(ax.lines) == 3
    np.testing.assert_allclose(fit.predict(t), t ** -1.0, rtol=1e-10)


@pytest.mark.parametrize("times,errors,match", [
    ([1, 2, 3], [1, 0.5, 0.3], "at least 4"),
    ([1, 2, 3, 4], [1, 0.5, 0.0, 0.1], "errors must be finite and > 0"),
    ([1, 2, 3, 4], [1, 0.5, np.nan, 0.1], "errors must be finite"),
    ([1, 3, 2, 4], [1, 0.5, 0.3, 0.1], "strictly increasing"),
    ([0, 1, 2, 3], [1, 0.5, 0.3, 0.1], "positive"),
    ([1, 2, 3, 4], [1, 0.5, 0.3], "same length"),
])
def test_bad_input(times, errors, match):
    with pytest.raises(ValueError, match=match):
        fit_rate(np.array(times, dtype=float), np.array(errors, dtype=float))
