"""The synthetic tasks produce exactly the data their rules describe."""
import numpy as np
import pytest
import torch

from theorylab.tasks import (binary_patterns, block_digits, digit_block_mask, gaussian_classes, spiked_gaussian_classes,
                             xor_clusters)
from theorylab.theory import logistic_asymptotic_error, naive_bayes_asymptotic_error


def test_binary_patterns_enumerate_every_input_with_balanced_labels():
    split = binary_patterns(bits=6, train_fraction=0.75, seed=2)
    x = torch.cat([split.x_train, split.x_test])
    y = torch.cat([split.y_train, split.y_test])
    assert len(torch.unique(x, dim=0)) == 64 and set(x.unique().tolist()) == {-1.0, 1.0}
    assert int(y.sum()) == 32 and len(split.y_train) == 48
    with pytest.raises(ValueError, match="bits must be <= 20"):
        binary_patterns(bits=21)


def test_spiked_classes_have_a_bayes_error_independent_of_the_dimension_and_misspecify_naive_bayes():
    errors = [(logistic_asymptotic_error(*(t.numpy() for t in spiked_gaussian_classes(d))),
               naive_bayes_asymptotic_error(*(t.numpy() for t in spiked_gaussian_classes(d)))) for d in (4, 64, 1024)]
    assert np.allclose([e[0] for e in errors], errors[0][0], rtol=1e-12)
    assert all(nb > lr + 0.01 for lr, nb in errors)
    mean, cov = spiked_gaussian_classes(8, specified=True)
    assert logistic_asymptotic_error(mean.numpy(), cov.numpy()) == pytest.approx(
        naive_bayes_asymptotic_error(mean.numpy(), cov.numpy()), rel=1e-12)


def test_gaussian_classes_have_the_stated_means_and_covariance():
    mean, cov = spiked_gaussian_classes(4)
    x, y = gaussian_classes(40000, mean, cov, seed=0)
    signs = (2 * y - 1)[:, None].double()
    assert torch.allclose((x * signs).mean(0), mean, atol=0.03)
    centred = x - signs * mean
    assert torch.allclose(centred.T @ centred / len(x), cov, atol=0.06)


def test_block_digits_stack_the_digit_and_the_fixed_null_pattern():
    split = block_digits(seed=1)
    x = torch.cat([split.x_train, split.x_test])
    mask = digit_block_mask(x)
    assert x.shape == (1797, 128) and mask.sum(1).eq(64).all()
    null = x[~mask].reshape(-1, 64)
    assert torch.equal(null, null[:1].expand_as(null))  # one pattern for every example
    assert 0.4 < float(mask[:, 0].float().mean()) < 0.6  # the digit on top about half of the time


def test_xor_clusters_have_xor_labels_and_the_stated_label_noise():
    x, noisy, clean = xor_clusters(20000, 5, signal=3.0, noise_rate=0.1, seed=0)
    along = torch.where(x[:, 0].abs() > x[:, 1].abs(), 1.0, -1.0)  # the nearer axis decides the clean label
    assert float((along == clean).float().mean()) > 0.95
    assert float((noisy != clean).float().mean()) == pytest.approx(0.1, abs=0.01)
    assert float(clean.mean()) == pytest.approx(0.0, abs=0.03)
