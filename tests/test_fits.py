"""Scaling-law fits: exact references (noise-free synthetic laws, brute force, scipy NNLS, finite
differences, closed forms) and the Chinchilla replication numbers of REFERENCES.md."""
import numpy as np
import pytest
import sympy as sp
from scipy.optimize import approx_fprime, nnls

from theorylab.datasets import load_chinchilla
from theorylab.fits import (
    FitResult,
    Loss,
    Tolerance,
    annealing_features,
    chinchilla_closed_form,
    fit,
    hoffmann_grid,
    isoflop_analysis,
    multistart_lbfgs,
)
from theorylab.fits.compute_optimal import numerical_optimum
from theorylab.fits.diagnostics import SuspectFitWarning
from theorylab.fits.expressions import parse_expression
from theorylab.fits.forms import broken, chinchilla, expression, kaplan
from theorylab.fits.optimize import Problem, nnls_batched

EPOCH = {"E": 1.8172, "A": 477.8, "B": 2143.4, "alpha": 0.3473, "beta": 0.3672}   # REFERENCES.md, reproduced optimum


@pytest.fixture(scope="module")
def chin():
    return load_chinchilla()


@pytest.fixture(scope="module")
def chin_fit(chin):
    return fit(chin, "chinchilla")


def _grid_nd():
    N, D = np.meshgrid(np.logspace(7, 10, 8), np.logspace(9, 12, 8))
    return N.ravel(), D.ravel()


# --- known-answer recovery on noise-free data (each form) -----------------------------------------
def test_power_law_recovers_parameters():
    x = np.logspace(1, 5, 25)
    y = 0.5 + 3.0 * x ** -0.7
    res = fit({"m": x, "err": y}, "power", x=["m"], y="err")
    assert res.objective < 1e-20
    np.testing.assert_allclose([res["E"], res["A"], res["alpha"]], [0.5, 3.0, 0.7], rtol=1e-7)


def test_chinchilla_recovers_parameters():
    N, D = _grid_nd()
    true = {"E": 1.7, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.28}
    L = true["E"] + true["A"] * N ** -true["alpha"] + true["B"] * D ** -true["beta"]
    res = fit({"N": N, "D": D, "loss": L}, "chinchilla")
    np.testing.assert_allclose([res[k] for k in true], list(true.values()), rtol=1e-6)


def test_kaplan_recovers_parameters():
    N, D = _grid_nd()
    Nc, Dc, aN, aD = 8.8e13, 5.4e13, 0.076, 0.095
    L = ((Nc / N) ** (aN / aD) + Dc / D) ** aD
    res = fit({"N": N, "D": D, "loss": L}, "kaplan", starts=24)
    assert res.method == "lbfgs" and res.num_reached >= 1
    np.testing.assert_allclose([res["N_c"], res["D_c"], res["alpha_N"], res["alpha_D"]], [Nc, Dc, aN, aD], rtol=1e-5)


def test_broken_power_law_recovers_parameters():
    x = np.logspace(0, 6, 60)
    a, b, c0, c1, d1, f1 = 0.05, 2.0, 0.2, 0.5, 1e3, 0.3
    y = a + b * x ** -c0 * (1 + (x / d1) ** (1 / f1)) ** (-c1 * f1)
    res = fit({"x": x, "y": y}, "broken", y="y")
    np.testing.assert_allclose([res[k] for k in ("a", "b", "c0", "c1", "d1", "f1")], [a, b, c0, c1, d1, f1],
                               rtol=1e-5)


def test_annealing_law_recovers_parameters():
    steps = 400
    cosine = 1e-2 * 0.5 * (1 + np.cos(np.pi * np.arange(steps) / steps))
    constant = np.full(steps, 1e-2)
    rows = {"S1": [], "S2": [], "loss": []}
    for lr in (cosine, constant):
        s1, s2 = annealing_features(lr)
        s1, s2 = s1[5::10], s2[5::10]
        rows["S1"] += list(s1)
        rows["S2"] += list(s2)
        rows["loss"] += list(2.0 + 0.8 * s1 ** -0.5 - 0.3 * s2)
    res = fit(rows, "annealing")
    np.testing.assert_allclose([res["L0"], res["A"], res["C"], res["alpha"]], [2.0, 0.8, 0.3, 0.5], rtol=1e-6)


def test_expression_form_recovers_parameters():
    x = np.logspace(1, 4, 30)
    y = 1.2 + 5.0 * np.exp(-0.1 * np.log(x) ** 2)
    res = fit({"n": x, "loss": y}, "c + k * exp(-w * log(n)**2)", starts=32)
    np.testing.assert_allclose([res["c"], res["k"], res["w"]], [1.2, 5.0, 0.1], rtol=1e-6)


def test_annealing_features_by_hand():
    s1, s2 = annealing_features([1.0, 1.0, 0.5, 0.25], decay=0.5)
    # drops: 0, 0, 0.5, 0.25 -> m: 0, 0, 0.5, 0.5 * 0.5 + 0.25 = 0.5
    np.testing.assert_allclose(s1, [0, 1, 2, 2.5, 2.75])
    np.testing.assert_allclose(s2, [0, 0, 0, 0.5, 1.0])


# --- optimiser internals against exact references ------------------------------------------------
def test_batched_nnls_matches_scipy():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(50, 30, 3))
    b = rng.normal(size=(50, 30))
    M = np.einsum("gni,gnj->gij", A, A)
    v = np.einsum("gni,gn->gi", A, b)
    got = nnls_batched(M, v)
    want = np.stack([nnls(A[g], b[g])[0] for g in range(50)])
    np.testing.assert_allclose(got, want, atol=1e-10)
    assert np.any(want == 0) and np.any(want > 0)        # both active and free constraints occur


@pytest.mark.parametrize("loss", [Loss("huber", 0.05), Loss("mse", space="raw"), Loss("mse", reduction="mean"),
                                  Loss("mae")])
@pytest.mark.parametrize("make", [lambda: chinchilla(), lambda: kaplan(), lambda: broken("N", 1)])
def test_gradient_matches_finite_differences(loss, make, chin):
    form = make()
    X = {v: chin[v].to_numpy() for v in form.variables}
    problem = Problem(form, X, chin["loss"].to_numpy(), loss)
    rng = np.random.default_rng(1)
    box = form.ranges(X, problem.y)
    for _ in range(3):
        theta = np.array([rng.uniform(*box[p]) for p in form.params]) * 0.5
        value, grad = problem.value_and_grad(theta)
        if not np.isfinite(value):
            continue
        fd = approx_fprime(theta, problem.value, 1e-7 * np.maximum(1, np.abs(theta)))
        np.testing.assert_allclose(grad, fd, rtol=2e-4, atol=1e-6 * max(1.0, abs(value)))


# --- the Chinchilla replication (Besiroglu et al. 2024) ------------------------------------------
def test_chinchilla_reproduces_epoch_optimum(chin_fit):
    assert chin_fit.num_points == 240
    assert chin_fit.objective == pytest.approx(1.01827402e-3, rel=1e-8)
    for k, v in EPOCH.items():
        assert chin_fit[k] == pytest.approx(v, abs=0.5 * 10 ** (np.floor(np.log10(abs(v))) - 3)), k
    a = chin_fit["beta"] / (chin_fit["alpha"] + chin_fit["beta"])
    assert round(a, 3) == 0.514  # Epoch: 0.513 from alpha 0.3478, beta 0.3658


def test_varpro_and_multistart_lbfgs_reach_the_same_optimum(chin, chin_fit):
    ms = fit(chin, "chinchilla", method="lbfgs", starts=hoffmann_grid()[::150])
    assert ms.num_starts == 30 and 1 <= ms.num_reached < 30
    assert ms.objective == pytest.approx(chin_fit.objective, rel=1e-9)
    np.testing.assert_allclose(ms.params, chin_fit.params, rtol=1e-5)


def test_summed_and_mean_huber_differ_only_through_early_stopping(chin, chin_fit):
    n = chin_fit.num_points
    mean_scaled = fit(chin, "chinchilla", reduction="mean")
    assert mean_scaled.objective * n == pytest.approx(chin_fit.objective, rel=1e-9)
    np.testing.assert_allclose(mean_scaled.params, chin_fit.params, rtol=1e-5)
    # scipy's default stopping rule on the mean (objective ~4e-6) stops far from the optimum
    problem = Problem(chinchilla(), {"N": chin.N.to_numpy(), "D": chin.D.to_numpy()}, chin.loss.to_numpy(),
                      Loss(reduction="mean"))
    early = multistart_lbfgs(problem, hoffmann_grid()[::75], Tolerance.scipy_default())
    early_params = chinchilla().to_natural(early.theta)
    assert early.objective * n > 1.05 * chin_fit.objective
    assert abs(early_params[3] - chin_fit["alpha"]) > 0.02 or abs(early_params[4] - chin_fit["beta"]) > 0.02


# --- bootstrap -----------------------------------------------------------------------------------
def test_bootstrap_intervals_cover_the_truth():
    """90% intervals of alpha on 20 noisy synthetic data sets: coverage and width are sane."""
    x = np.logspace(1, 4, 30)
    true_alpha, covered, estimates, widths = 0.6, 0, [], []
    for rep in range(20):
        rng = np.random.default_rng(100 + rep)
        y = (0.3 + 4.0 * x ** -true_alpha) * np.exp(0.03 * rng.normal(size=x.size))
        res = fit({"x": x, "loss": y}, "power", penalty="mse", grid_size=200, polish=1)
        boot = res.bootstrap(40, seed=rep, level=0.9)
        lo, hi = boot.interval("alpha")
        covered += lo <= true_alpha <= hi
        estimates.append(res["alpha"])
        widths.append(boot.stderr[2])
    # 20 Bernoulli(0.9) trials: P(fewer than 14 covered) < 1%
    assert covered >= 14
    ratio = np.mean(widths) / np.std(estimates, ddof=1)
    assert 0.6 < ratio < 1.7, ratio   # bootstrap SE vs the sampling SD over 20 data sets (+-30%)


def test_bootstrap_is_reproducible_and_independent_of_workers(chin_fit):
    one = chin_fit.bootstrap(16, seed=3)
    two = chin_fit.bootstrap(16, seed=3, workers=2)
    np.testing.assert_array_equal(one.replicates, two.replicates)
    assert one.num_failed == 0 and np.all(one.lower < chin_fit.params) and np.all(chin_fit.params < one.upper)
    band = chin_fit.predict_interval(N=[1e9, 1e12], D=[2e10, 2e13], bootstrap=one)
    replicate_predictions = [chin_fit.law().predict({"N": np.array([1e12]), "D": np.array([2e13])}, p)[0]
                             for p in one.replicates]
    assert band.upper[1] == pytest.approx(np.quantile(replicate_predictions, 0.975), rel=1e-12)
    assert band.lower[1] < band.mean[1] < band.upper[1]


def test_bootstrap_by_runs_needs_groups(chin_fit):
    with pytest.raises(ValueError, match="run-id column"):
        chin_fit.bootstrap(10, by="runs")


# --- compute-optimal allocation ------------------------------------------------------------------
def test_closed_form_matches_brute_force(chin_fit):
    p = chin_fit.parameters
    for C in (1e20, 1e23, 1e26):
        logn = np.linspace(np.log(1e5), np.log(C / 6 / 1e5), 2_000_001)
        N = np.exp(logn)
        L = p["E"] + p["A"] * N ** -p["alpha"] + p["B"] * (C / (6 * N)) ** -p["beta"]
        n_brute = N[np.argmin(L)]
        n_closed, d_closed = chinchilla_closed_form(C, **p)
        assert n_closed == pytest.approx(n_brute, rel=2e-5)   # grid spacing in log N is ~1e-5
        assert d_closed == pytest.approx(C / (6 * n_closed), rel=1e-12)
        same_law = expression("E + A*N**-alpha + B*D**-beta", ["N", "D"])
        values = np.array([p[k] for k in same_law.params])
        assert numerical_optimum(same_law, values, C) == pytest.approx(n_closed, rel=1e-7)


def test_compute_optimal_result_and_intervals(chin_fit):
    opt = chin_fit.compute_optimal([1e21, 1e24])
    assert opt.method == "closed form"
    np.testing.assert_allclose(opt.tokens_per_param, opt.D_opt / opt.N_opt)
    np.testing.assert_allclose(opt.L_opt, chin_fit.predict(N=opt.N_opt, D=opt.D_opt))
    assert np.all(opt.lower["N_opt"] < opt.N_opt) and np.all(opt.N_opt < opt.upper["N_opt"])


# --- predictions, backtests, isoFLOP, round trips ------------------------------------------------
def test_predict_interval_and_round_trip(chin_fit):
    band = chin_fit.predict_interval(N=[1e9, 1e11], D=[2e10, 2e12])
    np.testing.assert_allclose(band.mean, chin_fit.predict(N=[1e9, 1e11], D=[2e10, 2e12]))
    assert np.all(band.lower < band.mean) and np.all(band.mean < band.upper)
    assert band.upper[1] - band.lower[1] > band.upper[0] - band.lower[0]      # wider when extrapolating
    again = FitResult.from_dict(chin_fit.to_dict())
    assert again == chin_fit
    np.testing.assert_allclose(again.predict(N=[1e9], D=[2e10]), chin_fit.predict(N=[1e9], D=[2e10]))


def test_backtest_on_exact_law_extrapolates_exactly():
    N, D = _grid_nd()
    L = 1.7 + 400 * N ** -0.34 + 1500 * D ** -0.28
    res = fit({"N": N, "D": D, "C": 6 * N * D, "loss": L}, "chinchilla")
    bt = res.backtest(quantile=0.6)
    assert bt.on == "C" and bt.num_train + bt.num_test == len(N)
    assert bt.max_abs_rel_error < 1e-7
    with pytest.raises(ValueError, match="more fitting rows"):
        res.backtest(split=float(np.min(6 * N * D)))


def _isoflop_runs(shift):
    """Exact Chinchilla law on 9 budgets, 9 sizes per budget spanning +-0.5 decades around
    ``N* 10^shift(i)`` for budget i."""
    E, A, B, alpha, beta = 1.7, 400.0, 1500.0, 0.34, 0.28
    Ns, Cs = [], []
    for i, C in enumerate(np.logspace(19, 23, 9)):
        n_star, _ = chinchilla_closed_form(C, E, A, B, alpha, beta)
        Ns += list(n_star * 10 ** shift(i) * np.logspace(-0.5, 0.5, 9))
        Cs += [C] * 9
    Ns, Cs = np.array(Ns), np.array(Cs)
    return Ns, Cs, E + A * Ns ** -alpha + B * (Cs / (6 * Ns)) ** -beta, beta / (alpha + beta)


def test_isoflop_exponent_and_its_sampling_bias():
    N, C, L, a_true = _isoflop_runs(lambda i: 0.0)
    with pytest.warns(UserWarning, match="biased"):
        iso = isoflop_analysis(N, C, L)
    assert len(iso.budgets) == 9
    truth = chinchilla_closed_form(iso.budgets, 1.7, 400.0, 1500.0, 0.34, 0.28)[0]
    # the parabola misplaces each vertex (the profile is not a parabola; ~1% for +-0.5 decades) ...
    assert np.all(np.abs(iso.N_opt / truth - 1) < 0.015)
    # ... by the same factor at every budget when the grids are centred, so the exponent is exact
    assert iso.a == pytest.approx(a_true, abs=1e-9)
    # off-centre sampling that drifts with the budget (-0.4 .. +0.4 decades) biases the exponent
    N, C, L, _ = _isoflop_runs(lambda i: -0.4 + 0.1 * i)
    with pytest.warns(UserWarning, match="biased"):
        drifting = isoflop_analysis(N, C, L)
    assert abs(drifting.a - a_true) > 1e-3


# --- input validation ----------------------------------------------------------------------------
@pytest.mark.parametrize("table, match", [
    ({"N": [1e8, 1e9, 1e10, 2e10, 3e10, 4e10], "loss": [3, 2.5, 2.2, 2.1, 2.05, 2.0]}, "missing column"),
    ({"N": [1e8, 1e9, -1e10, 2e10, 3e10, 4e10], "D": [1e9] * 6, "loss": [3, 2.5, 2.2, 2.1, 2.05, 2]},
     "non-positive"),
    ({"N": [1e8, 1e9, 1e10, 2e10, 3e10, 4e10], "D": [1e9, 2e9, np.nan, 3e9, 4e9, 5e9],
      "loss": [3, 2.5, 2.2, 2.1, 2.05, 2]}, "non-finite"),
    ({"N": [1e8, 1e9, 1e10], "D": [1e9, 2e9, 3e9], "loss": [3, 2.5, 2.2]}, "too few points"),
    ({"N": [1e8, 1e9, 1e10, 1e10, 3e10, 4e10], "D": [1e9, 2e9, 3e9, 3e9, 4e9, 5e9],
      "loss": [3, 2.5, 2.2, 2.2, 2.05, 2]}, "duplicate rows"),
])
def test_bad_input_is_a_clear_value_error(table, match):
    with pytest.raises(ValueError, match=match):
        fit(table, "chinchilla")


def test_bad_options_are_rejected(chin):
    for kwargs, match in [({"penalty": "l2"}, "penalty must be"), ({"method": "newton"}, "method must be"),
                          ({"reduction": "median"}, "reduction"), ({"delta": -1.0}, "delta")]:
        with pytest.raises(ValueError, match=match):
            fit(chin, "chinchilla", **kwargs)
    with pytest.raises(ValueError, match="no linear coefficients"):
        fit(chin, "kaplan", method="varpro")


# --- expressions: parsed without eval ------------------------------------------------------------
def test_expression_parses_to_the_intended_law():
    expr, params = parse_expression("L = E + A * N^-alpha + B/D**beta", variables=("N", "D"))
    E, A, B, N, D, al, be = sp.symbols("E A B N D alpha beta", real=True)
    assert params == ("A", "B", "E", "alpha", "beta")
    assert sp.simplify(expr - (E + A * N ** -al + B / D ** be)) == 0


@pytest.mark.parametrize("text, match", [
    ("__import__('os').system('true')", "function|not allowed"),
    ("E + A * N.__class__", "attribute access"),
    ("E + A * foo(N)", "unknown function"),
    ("E + A * N[0]", "not allowed"),
    ("(lambda: 1)() + N", "unknown function"),
    ("E + A * N if N else 0", "not allowed"),
    ("E + A * N **", "does not parse"),
    ("E + A * M**-alpha", "does not appear"),
    ("exp(N, 2) + E", "exactly one"),
    ("2 * N", "no parameters"),
])
def test_expression_rejects_unsafe_or_bad_input(text, match):
    with pytest.raises(ValueError, match=match):
        parse_expression(text, variables=("N",))


def test_expression_rejects_unknown_names_when_parameters_are_declared():
    with pytest.raises(ValueError, match="unknown name"):
        parse_expression("E + A * N**-alpha + Z", variables=("N",), parameters=("E", "A", "alpha"))


# --- large tables: bounded memory, the same optimum ----------------------------------------------
def test_profile_in_chunks_equals_the_whole_grid(chin, monkeypatch):
    from theorylab.fits import optimize

    form = chinchilla()
    problem = Problem(form, {"N": chin.N.to_numpy(), "D": chin.D.to_numpy()}, chin.loss.to_numpy(), Loss())
    grid = optimize.nonlinear_natural(form, optimize.exponent_grid(problem, 400, 0))
    whole = optimize.profile(problem, grid)
    monkeypatch.setattr(optimize, "PROFILE_BYTES", 1)  # one grid point per chunk
    chunked = optimize.profile(problem, grid)
    np.testing.assert_array_equal(whole[1], chunked[1])
    np.testing.assert_allclose(whole[0], chunked[0], rtol=1e-12)


def test_search_on_a_subset_then_all_rows_reaches_the_full_optimum(monkeypatch):
    from theorylab.fits import fitting

    rng = np.random.default_rng(0)
    N, D = 10 ** rng.uniform(7, 10, 3000), 10 ** rng.uniform(9, 12, 3000)
    L = (1.8 + 480 * N ** -0.35 + 2100 * D ** -0.37) * np.exp(0.01 * rng.standard_normal(3000))
    full = fit({"N": N, "D": D, "loss": L}, "chinchilla")
    monkeypatch.setattr(fitting, "SEARCH_ROWS", 200)
    searched = fit({"N": N, "D": D, "loss": L}, "chinchilla")
    assert "starts run on 200 of 3,000 rows" in searched.meta["optimizer_message"]
    assert searched.objective == pytest.approx(full.objective, rel=1e-9)
    np.testing.assert_allclose(searched.params, full.params, rtol=1e-5)


# --- starting values, bounds, reparametrisation, suspect fits -------------------------------------
def _kaplan_curve(noise=0.005):
    """Kaplan et al. 2020's L(N) = (N_c / N)^0.076 with N_c = 8.8e13, on N = 1e5 .. 1.6e9."""
    N = np.logspace(5, 9.2, 40)
    return {"N": N, "loss": (8.8e13 / N) ** 0.076 * np.exp(noise * np.random.default_rng(0).standard_normal(40))}


def test_scale_parameter_form_finds_kaplans_optimum():
    """``(Nc/N)**alpha`` once converged to Nc ~ 7e-4, alpha < 0; its scale is now fitted in log coordinates."""
    data = _kaplan_curve()
    assert expression("(Nc/N)**alpha", ["N"]).positive == {"Nc"}
    scale = fit(data, "(Nc/N)**alpha")
    coefficient = fit(data, "A*N**-alpha")
    assert scale["alpha"] == pytest.approx(0.076, abs=1e-3) and scale["Nc"] == pytest.approx(8.8e13, rel=0.1)
    assert scale["alpha"] == pytest.approx(coefficient["alpha"], rel=1e-7)         # the same law, reparametrised
    assert scale["Nc"] ** scale["alpha"] == pytest.approx(coefficient["A"], rel=1e-6)
    assert scale.objective == pytest.approx(coefficient.objective, rel=1e-7)
    assert scale.warnings == () and coefficient.warnings == ()


def test_starting_values_and_bounds():
    data = _kaplan_curve()
    started = fit(data, "(Nc/N)**alpha", method="lbfgs", starts=1, init={"Nc": 1e12, "alpha": 0.2})
    assert started.num_starts == 2 and started["alpha"] == pytest.approx(0.076, abs=1e-3)
    assert started.choices["init"] == {"Nc": 1e12, "alpha": 0.2}
    with pytest.warns(SuspectFitWarning, match="alpha = 0.1 is at its lower bound 0.1"):
        bounded = fit(data, "(Nc/N)**alpha", bounds={"alpha": (0.1, None)})
    assert bounded["alpha"] == pytest.approx(0.1, rel=1e-9)
    again = FitResult.from_dict(bounded.to_dict())
    assert again.warnings == bounded.warnings and again.choices["bounds"] == {"alpha": [0.1, None]}
    # an expression's parameter with a positive lower bound is fitted in log coordinates
    chin_like = fit(data, "E + A*N**-alpha", bounds={"E": (1e-3, 10)})
    assert chin_like.law().positive == {"E"} and 1e-3 <= chin_like["E"] <= 10
    # variable projection keeps bounds too, and takes starting values
    N, D = _grid_nd()
    L = 1.7 + 400 * N ** -0.34 + 1500 * D ** -0.28
    with pytest.warns(SuspectFitWarning, match="E = 1.5 is at its upper bound"):
        varpro = fit({"N": N, "D": D, "loss": L}, "chinchilla", init={"alpha": 0.3, "beta": 0.3},
                     bounds={"E": (0, 1.5)})
    assert varpro["E"] == pytest.approx(1.5, rel=1e-9) and varpro.num_starts == 5


@pytest.mark.parametrize("kwargs, match", [
    ({"init": {"Z": 1.0}}, "init name 'Z' is not a parameter"),
    ({"init": {"Nc": -1.0}}, "must be finite and > 0"),
    ({"bounds": {"alpha": (1.0, 0.5)}}, "low < high"),
    ({"bounds": {"Nc": (-5, 1e20)}}, "positive"),
    ({"bounds": {"beta": (0, 1)}}, "bounds name 'beta' is not a parameter"),
    ({"init": {"alpha": 2.0}, "bounds": {"alpha": (0, 1)}}, "outside its bounds"),
])
def test_bad_starting_values_and_bounds(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(_kaplan_curve(), "(Nc/N)**alpha", **kwargs)


def test_suspect_fits_are_flagged():
    data = _kaplan_curve()
    with pytest.warns(SuspectFitWarning) as caught:
        wrong_way = fit(data, "(Nc/N)**alpha", bounds={"alpha": (-1, -0.01)})
    assert any("the fitted law rises with N at 100% of the rows, but loss falls with N" in w for w in wrong_way.warnings)
    assert "suspect fit" in str(caught[0].message)
    # the product A*B is all the data can see
    with pytest.warns(SuspectFitWarning, match="do not identify the parameters"):
        product = fit(data, "A*B*N**-alpha")
    assert np.all(np.isnan(product.stderr))
    # two power laws can swap labels: the starts find both optima
    N = data["N"]
    two = {"N": N, "loss": (3 * N ** -0.1 + 50 * N ** -0.5) * np.exp(0.002 * np.random.default_rng(1).normal(size=40))}
    with pytest.warns(SuspectFitWarning, match="another start reached a different optimum"):
        fit(two, "A*N**-a + B*N**-b", bounds={"A": (0, None), "B": (0, None)})
    # the built-in laws are meant to fall with N and D
    with pytest.warns(SuspectFitWarning, match="rises with x .* meant to fall with x"):
        fit({"x": N, "loss": 2 + 0.01 * N ** 0.2}, "power", bounds={"alpha": (-1, 1)})
