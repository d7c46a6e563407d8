"""The synthetic tasks produce exactly the data their rules describe."""
import numpy as np
import pytest
import torch

from theorylab.tasks import (binary_patterns, block_digits, digit_block_mask, feature_noise_patches, gaussian_classes,
                             planted_feature_directions, spiked_gaussian_classes, xor_clusters)
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


def test_feature_noise_patches_plant_the_weak_feature_everywhere_and_the_strong_one_in_a_fraction():
    x, y, has_strong = feature_noise_patches(4000, 12, strong_norm=1.0, weak_norm=0.3, noise_std=0.5,
                                             strong_fraction=0.8, seed=3, dtype=torch.float64)
    u, v = planted_feature_directions(12, strong_norm=1.0, weak_norm=0.3, dtype=torch.float64)
    assert x.shape == (4000, 3, 12) and set(y.tolist()) == {-1.0, 1.0}
    torch.testing.assert_close(x[:, 0], y[:, None] * v, rtol=0, atol=0)
    torch.testing.assert_close(x[:, 1], torch.where(has_strong[:, None], y[:, None] * u, 0.0), rtol=0, atol=0)
    assert float((x[:, 2] @ u).abs().max()) == 0.0 and float((x[:, 2] @ v).abs().max()) == 0.0
    # binomial standard errors: sqrt(0.8 * 0.2 / 4000) = 0.0063 and sqrt(0.25 / 4000) = 0.0079; 4 of them
    assert abs(float(has_strong.double().mean()) - 0.8) < 4 * 0.0063
    assert abs(float((y > 0).double().mean()) - 0.5) < 4 * 0.0079
    # the noise variance over the 10 free coordinates: relative standard error sqrt(2 / 40000) = 0.0071
    assert abs(float(x[:, 2, 2:].var()) / 0.25 - 1.0) < 4 * 0.0071
    with pytest.raises(ValueError, match="strong_fraction"):
        feature_noise_patches(10, 12, strong_norm=1.0, weak_norm=0.3, noise_std=0.5, strong_fraction=1.5)
    with pytest.raises(ValueError, match="weak_norm < strong_norm"):
        planted_feature_directions(12, strong_norm=0.3, weak_norm=1.0)
