"""Data sets and the model zoo."""
import math

import pytest
import torch

from theorylab.data import (batches, class_imbalanced, gaussian_mixture, load_digits, teacher_student,
                            with_label_noise)
from theorylab.models import MLP, DeepLinear, RandomFeatures, SmallCNN


def test_digits_split_is_real_standardised_and_seeded():
    d = load_digits(seed=0)
    assert d.x_train.shape == (1258, 64) and d.x_test.shape == (539, 64) and d.num_classes == 10
    assert torch.allclose(d.x_train.mean(0), torch.zeros(64), atol=1e-5)
    assert torch.equal(load_digits(seed=0).y_train, d.y_train)
    assert not torch.equal(load_digits(seed=1).y_train, d.y_train)
    assert d.subsample(100, seed=3).x_train.shape == (100, 64)


def test_label_noise_corrupts_exactly_the_fraction_with_wrong_labels():
    y = torch.arange(1000) % 10
    noisy = with_label_noise(y, 0.25, 10, seed=0)
    assert int((noisy != y).sum()) == 250  # every corrupted label is incorrect
    assert torch.equal(noisy, with_label_noise(y, 0.25, 10, seed=0))
    with pytest.raises(ValueError, match="fraction"):
        with_label_noise(y, 1.5, 10)
    with pytest.raises(ValueError, match="labels must lie"):
        with_label_noise(y, 0.1, 5)


def test_teacher_student_and_mixture_shapes_and_errors():
    t = teacher_student(num_train=2000, num_test=10, dim=20, noise_std=0.0, seed=0)
    assert t.y_train.shape == (2000, 1) and abs(float(t.y_train.var()) - 1.0) < 0.15
    g = gaussian_mixture(num_train=30, num_test=9, dim=4, num_classes=3)
    assert torch.bincount(torch.cat([g.y_train, g.y_test])).tolist() == [13, 13, 13]
    assert g.x_train.shape == (30, 4) and g.x_test.shape == (9, 4)
    with pytest.raises(ValueError, match="noise_std"):
        teacher_student(num_train=2, num_test=2, dim=2, noise_std=-1)


def test_class_imbalance_and_batches():
    x, y = torch.randn(100, 3), torch.arange(100) % 4
    xi, yi = class_imbalanced(x, y, [20, 10, 5, 1])
    assert torch.bincount(yi).tolist() == [20, 10, 5, 1]
    bs = batches(x, y, 30)
    assert [len(b[1]) for b in bs] == [30, 30, 30, 10]
    with pytest.raises(ValueError, match="cannot keep"):
        class_imbalanced(x, y, [26, 0, 0, 0])


@pytest.mark.parametrize("parametrization", ["sp", "ntk", "mup"])
def test_mlp_parametrizations_have_the_stated_variances(parametrization):
    torch.manual_seed(0)
    n, d = 512, 32
    m = MLP(d, [n, n], 1, parametrization=parametrization, weight_var=1.3 ** 2, seed=0)
    eff = [layer.multiplier * layer.weight for layer in list(m.hidden_layers) + [m.readout]]
    fan_ins = [d, n, n]
    for i, (w, fan_in) in enumerate(zip(eff, fan_ins)):
        var = float(w.detach().var())
        expected = 1.3 ** 2 / fan_in
        if parametrization == "mup" and i == 2:
            expected = 1.0 / n ** 2  # muP readout starts at variance 1/n^2
        assert math.isclose(var, expected, rel_tol=0.1), (i, var, expected)


def test_mup_multipliers_scale_effective_learning_rates():
    """Under SGD the effective step on W_eff = c * w is eta * c^2: eta*n/d, eta, eta/n (TP5 Table 3)."""
    n, d = 256, 16
    m = MLP(d, [n, n], 1, parametrization="mup", seed=0)
    c = [layer.multiplier for layer in list(m.hidden_layers) + [m.readout]]
    assert [round(ci ** 2, 9) for ci in c] == [round(n / d, 9), 1.0, round(1 / n, 9)]
    biases = [layer.bias_multiplier for layer in list(m.hidden_layers) + [m.readout]]
    assert [round(b ** 2, 9) for b in biases] == [n, n, 1.0]  # output bias: eta, not eta * n


def test_models_forward_and_errors():
    x = torch.randn(5, 64)
    assert MLP(64, [8], 3, activation="erf")(x).shape == (5, 3)
    assert MLP(64, [], 3)(x).shape == (5, 3)
    dl = DeepLinear([64, 4, 2], init_scale=0.5, seed=0)
    assert torch.allclose(dl(x), x @ dl.end_to_end().T, atol=1e-5)
    rf = RandomFeatures(64, 40, 2, seed=0)
    assert [n for n, _ in rf.named_parameters()] == ["readout.weight"]
    assert SmallCNN(seed=0)(x).shape == (5, 10)
    with pytest.raises(ValueError, match="activation"):
        MLP(4, [4], 1, activation="swish")
    with pytest.raises(ValueError, match="parametrization"):
        MLP(4, [4], 1, parametrization="abc")
