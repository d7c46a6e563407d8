"""Closed forms of theorylab.theory against simulation and exact references.

Tolerances come from the sample size: Monte-Carlo means are compared within 4 standard errors;
asymptotic (n -> inf) forms against finite simulations within the O(1/n) finite-size correction,
which the exact finite-n reference (inverse-Wishart identities) pins down.
"""
import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate

from theorylab.theory import (excess_product, gd_risk, mp_atom, mp_cdf, mp_density, mp_density_symbolic, mp_edges,
                              mp_stieltjes, optimal_ridge, ridge_risk, ridgeless_risk, ridgeless_risk_finite,
                              ridgeless_risk_symbolic, saxe_learning_time, saxe_mode_strength,
                              saxe_mode_strength_symbolic, spiked_outlier, symmetric_overparam_tail)


# ---------------------------------------------------------------------------------------------
# Marchenko-Pastur
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [0.25, 1.0, 3.0])
def test_mp_density_integrates_to_the_continuous_mass_with_mean_sigma2(gamma):
    low, high = mp_edges(gamma, sigma2=2.0)
    mass, _ = integrate.quad(lambda x: mp_density(x, gamma, sigma2=2.0), low, high, limit=200)
    mean, _ = integrate.quad(lambda x: x * mp_density(x, gamma, sigma2=2.0), low, high, limit=200)
    assert mass + mp_atom(gamma) == pytest.approx(1.0, abs=1e-7)
    assert mean == pytest.approx(2.0, rel=1e-7)  # E lam = sigma2 (the atom contributes 0)


def test_mp_edges_and_cdf_against_quadrature():
    assert mp_edges(0.25, sigma2=2.0) == pytest.approx((2 * 0.25, 2 * 2.25))
    for gamma in (0.3, 1.0, 2.5):
        low, high = mp_edges(gamma)
        xs = np.linspace(low, high, 9)[1:-1]
        ref = [mp_atom(gamma) + integrate.quad(lambda t: mp_density(t, gamma), low, x, limit=200)[0] for x in xs]
        np.testing.assert_allclose(mp_cdf(xs, gamma), ref, atol=1e-7)
        assert mp_cdf(high * 1.01, gamma) == pytest.approx(1.0, abs=1e-9)
        assert mp_cdf(-1.0, gamma) == 0.0


def test_mp_matches_the_eigenvalues_of_a_large_gaussian_matrix():
    rng = np.random.default_rng(0)
    n, p = 1200, 400
    x = rng.standard_normal((n, p))
    eig = np.linalg.eigvalsh(x.T @ x / n)
    # Kolmogorov-Smirnov distance: the eigenvalue ECDF converges at rate ~1/p, far below 0.02
    ks = np.max(np.abs(np.arange(1, p + 1) / p - mp_cdf(np.sort(eig), p / n)))
    assert ks < 0.02
    low, high = mp_edges(p / n)
    assert eig.min() == pytest.approx(low, abs=0.03) and eig.max() == pytest.approx(high, abs=0.05)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("t", [0.1, 1.0])
def test_stieltjes_transform_is_the_mean_of_the_resolvent(gamma, t):
    low, high = mp_edges(gamma)
    ref = integrate.quad(lambda x: mp_density(x, gamma) / (x + t), low, high, limit=200)[0] + mp_atom(gamma) / t
    assert mp_stieltjes(-t, gamma) == pytest.approx(ref, rel=1e-9)


def test_spiked_outlier_matches_simulation_and_sticks_below_threshold():
    rng = np.random.default_rng(1)
    n, p = 2000, 400
    gamma = p / n
    for theta in (2.0, 0.2):  # sqrt(gamma) = 0.447: above and below the BBP transition
        x = rng.standard_normal((n, p))
        x[:, 0] *= math.sqrt(1 + theta)
        top = np.linalg.eigvalsh(x.T @ x / n)[-1]
        # fluctuations: O(n^-1/2) for the outlier, O(n^-2/3) at the edge
        assert top == pytest.approx(spiked_outlier(theta, gamma), rel=0.05)
    assert spiked_outlier(0.2, gamma) == pytest.approx((1 + math.sqrt(gamma)) ** 2)


def test_symbolic_forms_agree_with_numeric():
    lam, gamma, sigma2 = sp.symbols("lambda gamma sigma2", positive=True)
    value = float(mp_density_symbolic().subs({lam: 1.1, gamma: 0.5, sigma2: 1.3}))
    assert value == pytest.approx(float(mp_density(1.1, 0.5, sigma2=1.3)), rel=1e-12)
    g, r2, s2 = sp.symbols("gamma r2 sigma2", positive=True)
    for gv in (0.4, 2.5):
        sym = float(ridgeless_risk_symbolic().subs({g: gv, r2: 1.0, s2: 0.3}))
        assert sym == pytest.approx(float(ridgeless_risk(gv, signal=1.0, noise=0.3)), rel=1e-12)
    t, s, u0, tau = sp.symbols("t s u_0 tau", positive=True)
    sym = float(saxe_mode_strength_symbolic().subs({t: 3.0, s: 2.0, u0: 0.01, tau: 5.0}))
    assert sym == pytest.approx(float(saxe_mode_strength(3.0, 2.0, u0=0.01, tau=5.0)), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Linear regression
# ---------------------------------------------------------------------------------------------
def test_ridgeless_risk_reference_numbers():
    # REFERENCES.md: r2 = 1, sigma2 = 0.25: gamma 0.5 -> 0.25, 0.9 -> 2.25, 2 -> 0.75
    np.testing.assert_allclose(ridgeless_risk([0.5, 0.9, 2.0], signal=1.0, noise=0.25), [0.25, 2.25, 0.75])
    assert ridgeless_risk(1.0, noise=0.25) == np.inf


def _min_norm_risks(n, p, noise, seeds):
    rng = np.random.default_rng(n * 1000 + p)
    out = []
    for _ in range(seeds):
        x = rng.standard_normal((n, p))
        beta = rng.standard_normal(p)
        beta /= np.linalg.norm(beta)
        y = x @ beta + math.sqrt(noise) * rng.standard_normal(n)
        out.append(np.sum((np.linalg.lstsq(x, y, rcond=None)[0] - beta) ** 2))
    return np.array(out)


@pytest.mark.parametrize("n,p", [(200, 60), (60, 200), (100, 150)])
def test_ridgeless_risk_matches_simulation(n, p):
    risks = _min_norm_risks(n, p, 0.25, 300)
    mean, se = risks.mean(), risks.std(ddof=1) / math.sqrt(len(risks))
    exact = ridgeless_risk_finite(n, p, noise=0.25)  # finite-n expectation: agreement within 4 standard errors
    assert abs(mean - exact) < 4 * se
    # the finite-n expectation converges to the asymptotic form: O(1/n), so 10x larger is >5x closer
    limit = float(ridgeless_risk(p / n, noise=0.25))
    assert abs(ridgeless_risk_finite(10 * n, 10 * p, noise=0.25) - limit) < abs(exact - limit) / 5


@pytest.mark.parametrize("gamma,ridge", [(0.5, 0.1), (1.0, 0.2), (2.0, 0.5)])
def test_ridge_risk_matches_simulation(gamma, ridge):
    n = 400
    p = int(gamma * n)
    rng = np.random.default_rng(7)
    risks = []
    for _ in range(40):
        x = rng.standard_normal((n, p))
        beta = rng.standard_normal(p)
        beta /= np.linalg.norm(beta)
        y = x @ beta + 0.5 * rng.standard_normal(n)
        b = np.linalg.solve(x.T @ x / n + ridge * np.eye(p), x.T @ y / n)
        risks.append(np.sum((b - beta) ** 2))
    risks = np.array(risks)
    # Monte-Carlo error (4 se) plus an O(1/n) finite-size bias of at most 3% of the risk at n = 400
    tol = 4 * risks.std(ddof=1) / math.sqrt(len(risks)) + 0.03 * risks.mean()
    assert abs(risks.mean() - ridge_risk(gamma, ridge, noise=0.25)) < tol


def test_optimal_ridge_minimises_the_ridge_risk_and_removes_the_peak():
    from scipy.optimize import minimize_scalar

    for gamma in (0.5, 1.0, 2.0):
        best = minimize_scalar(lambda lam: ridge_risk(gamma, lam, noise=0.25), bounds=(1e-4, 10), method="bounded")
        assert best.x == pytest.approx(optimal_ridge(gamma, noise=0.25), rel=1e-3)
    risks = [ridge_risk(g, optimal_ridge(g, noise=0.25), noise=0.25) for g in np.linspace(0.1, 4, 40)]
    assert np.all(np.diff(risks) > 0)  # monotone in gamma: no double descent


def test_gd_risk_limits_and_simulation():
    # k -> inf from zero init: the ridgeless risk; k = 0: r2 + init
    for gamma in (0.5, 2.0):
        assert gd_risk(10 ** 7, gamma, lr=0.1, noise=0.25)[()] == pytest.approx(float(ridgeless_risk(gamma, noise=0.25)), rel=1e-6)
    assert gd_risk(0, 2.0, lr=0.1, init_norm2=0.5)[()] == pytest.approx(1.5)
    from theorylab.doubledescent import linear_gd_run

    steps = [5, 20, 80]
    runs = np.array([linear_gd_run({"model_size": 300, "sample_size": 400, "noise": 0.25, "init_norm2": 0.5,
                                    "lr": 0.2, "train_time": steps, "seed": s})["test_error"] for s in range(30)])
    se = runs.std(axis=0, ddof=1) / math.sqrt(len(runs))
    pred = gd_risk(steps, 0.75, lr=0.2, noise=0.25, init_norm2=0.5)
    # 4 standard errors plus a 3% finite-n (n = 400) allowance
    assert np.all(np.abs(runs.mean(axis=0) - pred) < 4 * se + 0.03 * pred)


# ---------------------------------------------------------------------------------------------
# Deep linear networks and matrix sensing
# ---------------------------------------------------------------------------------------------
def test_saxe_solution_solves_its_ode_and_learning_time_inverts_it():
    s, u0, tau = 3.0, 1e-3, 2.0
    sol = integrate.solve_ivp(lambda t, u: 2 * u * (s - u) / tau, (0, 5), [u0], t_eval=np.linspace(0, 5, 50),
                              rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(saxe_mode_strength(sol.t, s, u0=u0, tau=tau), sol.y[0], rtol=1e-6, atol=1e-9)
    t_half = saxe_learning_time(s, u0=u0, uf=s / 2, tau=tau)
    assert saxe_mode_strength(t_half, s, u0=u0, tau=tau) == pytest.approx(s / 2, rel=1e-12)
    # learning time ~ tau/s: halving s doubles the time up to the log factor
    assert saxe_learning_time(1.5, u0=u0, uf=0.75, tau=tau) / t_half == pytest.approx(
        2 * math.log(0.75 * (1.5 - u0) / (u0 * 0.75)) / math.log(1.5 * (3 - u0) / (u0 * 1.5)), rel=1e-12)


def test_excess_product_solves_its_ode():
    lr = 0.1
    for delta, p0 in ((0.0, 0.5), (0.3, 0.5), (2.0, 0.01)):
        sol = integrate.solve_ivp(lambda t, p: -lr * p * np.sqrt(delta ** 2 + 4 * p ** 2), (0, 200), [p0],
                                  t_eval=np.linspace(0, 200, 40), rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(excess_product(sol.t, lr=lr, p0=p0, imbalance=delta), sol.y[0], rtol=1e-6, atol=1e-12)


def test_symmetric_tail_is_the_limit_of_gradient_descent_on_factorisation():
    # GD on (1/4)|X X^T - M*|_F^2 with d = 6, r = 2, k = 4: two excess directions
    rng = np.random.default_rng(0)
    d, r, k, lr = 6, 2, 4, 0.05
    u = np.linalg.qr(rng.standard_normal((d, r)))[0]
    target = u @ np.diag([2.0, 1.0]) @ u.T
    x = 0.1 * rng.standard_normal((d, k))
    T = 40000
    for _ in range(T):
        x = x - lr * (x @ x.T - target) @ x
    err = np.sum((x @ x.T - target) ** 2)
    # asymptotic: error * T^2 -> (k - r) / (4 lr^2); the correction decays like 1/(lr z0 T) (~1e-2 here)
    assert err == pytest.approx(float(symmetric_overparam_tail(T, lr=lr, excess_rank=k - r)), rel=0.05)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,match", [
    (lambda: ridgeless_risk(0.0), "gamma"),
    (lambda: ridgeless_risk(-1.0), "gamma"),
    (lambda: ridgeless_risk(0.5, noise=-0.1), "noise"),
    (lambda: ridgeless_risk([]), "empty"),
    (lambda: ridge_risk(0.5, 0.0), "ridge"),
    (lambda: gd_risk(10, 1.0, lr=5.0), "lr"),
    (lambda: mp_edges(0.0), "gamma"),
    (lambda: mp_density(1.0, 0.5, sigma2=-1), "sigma2"),
    (lambda: mp_stieltjes(0.5, 0.5), "z must"),
    (lambda: spiked_outlier(-1.0, 0.5), "theta"),
    (lambda: saxe_mode_strength(1.0, 1.0, u0=2.0), "u0"),
    (lambda: saxe_learning_time(1.0, u0=0.1, uf=1.5), "uf"),
    (lambda: excess_product(1.0, lr=0.1, p0=-1.0), "p0"),
    (lambda: symmetric_overparam_tail(10, lr=0.1, excess_rank=0), "excess_rank"),
    (lambda: optimal_ridge(0.5, noise=0.0), "noise"),
])
def test_bad_input_gives_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
