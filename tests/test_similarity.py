"""CKA against its closed-form properties and the definitions of HSIC (Kornblith et al. 2019; Song et al. 2012)."""
import itertools

import numpy as np
import pytest
import torch

from theorylab.similarity import cka, direction_alignment, gram, hsic


def _data(n=40, p=12, q=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64)
    return x, x @ torch.randn(p, q, generator=g, dtype=torch.float64) + 0.5 * torch.randn(n, q, generator=g,
                                                                                          dtype=torch.float64)


def _orthogonal(p, seed):
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_transforms_and_isotropic_scaling(kernel, debiased):
    x, y = _data()
    reference = cka(x, y, kernel=kernel, debiased=debiased)
    moved = cka(3.7 * x @ _orthogonal(12, 1), 0.2 * y @ _orthogonal(7, 2), kernel=kernel, debiased=debiased)
    assert moved == pytest.approx(reference, rel=1e-10)
    assert cka(x, 5.0 * x @ _orthogonal(12, 3), kernel=kernel, debiased=debiased) == pytest.approx(1.0, rel=1e-10)


def test_not_invariant_to_an_invertible_linear_map():
    x, y = _data()
    stretch = torch.diag(torch.logspace(-2, 2, 12, dtype=torch.float64))
    assert abs(cka(x @ stretch, y) - cka(x, y)) > 0.05


def test_linear_cka_equals_the_feature_space_formula():
    x, y = _data()
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = torch.linalg.norm(yc.T @ xc) ** 2 / (torch.linalg.norm(xc.T @ xc) * torch.linalg.norm(yc.T @ yc))
    assert cka(x, y) == pytest.approx(float(expected), rel=1e-12)


def test_plug_in_hsic_is_the_trace_formula():
    x, y = _data(n=9)
    k, l = gram(x), gram(y, kernel="rbf")
    h = torch.eye(9, dtype=torch.float64) - 1 / 9
    assert hsic(k, l) == pytest.approx(float(torch.trace(k @ h @ l @ h)) / 64, rel=1e-12)


def test_unbiased_hsic_is_the_u_statistic_over_four_distinct_examples():
    """Song et al. 2012, Theorem 2: HSIC_1 = (1/(n)_4) sum over distinct (i, j, q, r) of h(i, j, q, r)."""
    x, y = _data(n=7)
    k, l = gram(x, kernel="rbf", sigma=1.3), gram(y)
    n, total, count = 7, 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += float(k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q])
        count += 1
    assert hsic(k, l, debiased=True) == pytest.approx(total / count, rel=1e-10)


def test_debiased_cka_of_independent_representations_is_near_zero_where_the_plug_in_is_not():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(50, 400, generator=g, dtype=torch.float64), torch.randn(50, 400, generator=g,
                                                                               dtype=torch.float64)
    assert cka(x, y) > 0.7  # the plug-in bias of wide, unrelated representations at n = 50
    values = [cka(torch.randn(50, 400, generator=g, dtype=torch.float64),
                  torch.randn(50, 400, generator=g, dtype=torch.float64), debiased=True) for _ in range(20)]
    assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(20) + 1e-3


def test_bad_input_is_named():
    x, y = _data()
    with pytest.raises(ValueError, match="same examples"):
        cka(x, y[:-1])
    with pytest.raises(ValueError, match="kernel must be one of"):
        cka(x, y, kernel="cosine")
    with pytest.raises(ValueError, match="constant"):
        cka(torch.ones(5, 3), y[:5])
    with pytest.raises(ValueError, match="NaN"):
        cka(x * float("nan"), y)


def test_direction_alignment_is_the_largest_absolute_cosine():
    directions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    vectors = torch.tensor([[-3.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    got = direction_alignment(vectors, directions)
    torch.testing.assert_close(got, torch.tensor([1.0, 2 ** -0.5, 0.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="zero vector"):
        direction_alignment(vectors, torch.zeros(1, 3))
