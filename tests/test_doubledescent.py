"""The double-descent runner and its experiments."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from theorylab.doubledescent import (DoubleDescentResult, double_descent, gd_least_squares, linear_gd_run,
                                     linear_regression_run, mlp_digits_run, random_features_digits_run,
                                     random_features_run)
from theorylab.theory import ridgeless_risk, ridgeless_risk_finite


def test_sample_wise_sweep_follows_the_exact_finite_n_risk_and_peaks_at_n_equals_p():
    p, ns, seeds = 40, [20, 30, 36, 44, 50, 60, 120], range(60)
    res = double_descent(linear_regression_run, axis="sample_size", values=ns,
                         base={"model_size": p, "noise": 0.25}, seeds=seeds,
                         theory=lambda n: ridgeless_risk(p / n, noise=0.25))
    assert res.per_seed.shape == (60, len(ns)) and np.all(res.values == np.sort(ns))
    exact = np.array([ridgeless_risk_finite(n, p, noise=0.25) for n in res.values])
    se = res.std / math.sqrt(len(seeds))
    assert np.all(np.abs(res.mean - exact) < 4 * se)  # Monte-Carlo error only: the reference is exact at finite n
    assert res.peak_at in (36, 44) and res.rise > 1.0
    assert res.theory.size == res.theory_values.size == 400


def test_peak_and_rise_are_computed_from_the_running_minimum():
    res = double_descent(_table, axis="model_size", values=[1, 2, 3, 4, 5], seeds=[0, 1])
    # mean curve 5, 2, 4, 1, 1.5: largest rise above the best smaller model is 4 / 2 at value 3
    assert res.peak_at == 3 and res.peak_height == pytest.approx(4.0) and res.rise == pytest.approx(1.0)
    np.testing.assert_allclose(res.std, [0.0, 0.0, math.sqrt(2), 0.0, 0.0])


def _table(config):
    curve = {1: 5.0, 2: 2.0, 3: 4.0, 4: 1.0, 5: 1.5}
    return {"test_error": curve[config["model_size"]] + (config["model_size"] == 3) * (2 * config["seed"] - 1)}


def test_train_time_axis_passes_all_steps_to_one_run():
    res = double_descent(linear_gd_run, axis="train_time", values=[0, 10, 100],
                         base={"model_size": 30, "sample_size": 60, "lr": 0.1, "noise": 0.1}, seeds=[0, 1])
    assert res.per_seed.shape == (2, 3)
    assert res.per_seed[0, 0] == pytest.approx(1.0)  # step 0 from w = 0: the whole signal r^2 = 1


def test_gd_least_squares_equals_explicit_iteration_and_the_training_loop():
    rng = np.random.default_rng(0)
    f, y = rng.standard_normal((30, 50)), rng.standard_normal(30)
    w0 = rng.standard_normal(50)
    lr, steps = 0.01, [0, 7, 50]
    w, iterates = w0.copy(), []
    for k in range(51):
        if k in steps:
            iterates.append(w.copy())
        w = w - lr * f.T @ (f @ w - y) / 30
    np.testing.assert_allclose(gd_least_squares(f, y, lr=lr, steps=steps, init=w0), iterates, rtol=1e-9, atol=1e-11)
    # the library's training loop on a linear readout (MSE loss = 2 x our loss, so half the step)
    from theorylab.train import train

    model = nn.Linear(50, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    train(model, nn.MSELoss(), (torch.as_tensor(f), torch.as_tensor(y)[:, None]), steps=50, lr=lr / 2)
    np.testing.assert_allclose(model.weight.detach().numpy()[0], gd_least_squares(f, y, lr=lr, steps=[50])[0],
                               rtol=1e-8, atol=1e-10)


def test_random_features_peak_and_optimisation():
    base = {"sample_size": 60, "dim": 20, "noise": 0.25, "num_test": 300}
    exact = [random_features_run({**base, "model_size": 60, "steps": None, "seed": s}) for s in range(3)]
    short = [random_features_run({**base, "model_size": 60, "steps": 30, "seed": s}) for s in range(3)]
    wide = [random_features_run({**base, "model_size": 600, "steps": None, "seed": s}) for s in range(3)]
    # at N = n the minimum-norm solution interpolates through a tiny singular value: huge error
    assert all(r["train_error"] < 1e-12 for r in exact)
    assert np.mean([r["test_error"] for r in exact]) > 5 * np.mean([r["test_error"] for r in wide])
    assert np.mean([r["test_error"] for r in short]) < np.mean([r["test_error"] for r in exact])
    assert min(r["condition_number"] for r in exact) > 1e3


def test_stacked_mlps_equal_networks_trained_alone_by_the_training_loop():
    from theorylab.data import load_digits, with_label_noise
    from theorylab.models import MLP
    from theorylab.metrics import accuracy
    from theorylab.train import train

    cfg = {"model_size": 12, "sample_size": 120, "label_noise": 0.2, "steps": 40, "lr": 0.01, "seed": 3,
           "loss": "mse", "members": 3}
    stacked = mlp_digits_run(cfg)
    split = load_digits(seed=0).subsample(120, seed=3)
    errors = []
    for i in range(3):
        seed = 3 + 10007 * i
        labels = with_label_noise(split.y_train, 0.2, 10, seed=seed)
        net = MLP(64, [12], 10, seed=seed)
        train(net, lambda out, y: ((out - nn.functional.one_hot(y, 10).float()) ** 2).sum(1).mean(),
              (split.x_train, labels), steps=40, lr=0.01, optimizer="adam")
        errors.append(1.0 - accuracy(net, split.test))
    assert stacked["test_error"] == pytest.approx(np.mean(errors), abs=1e-12)
    assert stacked["test_error_sd"] == pytest.approx(np.std(errors, ddof=1), abs=1e-12)
    assert stacked["num_params"] == 64 * 12 + 12 + 12 * 10 + 10
    assert mlp_digits_run(cfg) == stacked


def test_random_features_digits_interpolates_past_n():
    out = random_features_digits_run({"model_size": 300, "sample_size": 100, "label_noise": 0.2, "seed": 0})
    assert out["train_error"] == 0.0 and 0.0 <= out["test_error"] <= 1.0


def test_result_round_trip_and_plot(tmp_path):
    res = double_descent(linear_regression_run, axis="model_size", values=[5, 10], base={"sample_size": 20},
                         seeds=[0], theory=lambda p: ridgeless_risk(p / 20))
    assert DoubleDescentResult.load(res.save(tmp_path / "r.json")) == res
    ax = res.plot()
    assert len(ax.lines) >= 2


@pytest.mark.parametrize("kwargs,match", [
    ({"values": []}, "empty"),
    ({"values": [1, 1]}, "distinct"),
    ({"values": [1, 2], "seeds": []}, "seeds"),
    ({"values": [1, 2], "axis": "width"}, "axis"),
    ({"values": [1, 2], "base": {"model_size": 3}}, "base"),
    ({"values": [1, 2], "theory": lambda x: x[:3]}, "theory"),
])
def test_bad_sweeps(kwargs, match):
    kwargs = {"axis": "model_size", **kwargs}
    with pytest.raises(ValueError, match=match):
        double_descent(linear_regression_run, base=kwargs.pop("base", {"sample_size": 10}), **kwargs)


def test_bad_experiment_configs_fail_clearly():
    with pytest.raises(ValueError, match="noise"):
        linear_regression_run({"model_size": 5, "sample_size": 10, "noise": -1.0, "seed": 0})
    with pytest.raises(RuntimeError, match="runs failed"):
        double_descent(linear_regression_run, axis="model_size", values=[5], base={"sample_size": 10, "noise": -1.0})
    with pytest.raises(ValueError, match="returned no"):
        double_descent(linear_regression_run, axis="model_size", values=[5], base={"sample_size": 10}, metric="loss")
    with pytest.raises(ValueError, match="lr"):
        gd_least_squares(np.ones((3, 2)), np.ones(3), lr=0.0, steps=[1])


def test_builtin_experiments_refuse_keys_they_do_not_read():
    with pytest.raises(ValueError, match=r"random_features_run does not read the config keys \['n_test'\]"):
        random_features_run({"model_size": 10, "sample_size": 20, "dim": 5, "n_test": 100, "seed": 0})
    with pytest.raises(ValueError, match=r"\['ridg'\]"):
        linear_regression_run({"model_size": 5, "sample_size": 10, "ridg": 0.1, "seed": 0})
