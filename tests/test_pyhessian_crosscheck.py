"""Cross-check with PyHessian 0.1 (Yao et al. 2020) on the same model and batch.

PyHessian's power iteration stops when the relative change of the Rayleigh quotient drops below
``tol``; after that the remaining error of eigenvalue ``i`` is at most about
``tol / (1 - (lambda_{i+1} / lambda_i)^2)`` (the Rayleigh-quotient error shrinks by that squared
ratio per step), which is the tolerance used here.  Its Hutchinson trace is compared through its
own standard error.  PyHessian switches the model to eval mode and leaves ``.grad`` holding a graph:
the fixture restores both.
"""
import numpy as np
import pytest
import torch
from torch import nn

pyhessian = pytest.importorskip("pyhessian")

from theorylab.curvature import hessian, top_eigenvalues, trace  # noqa: E402

# PyHessian computes in float32: its Rayleigh quotients (dot products over P = 99 parameters) carry a
# relative rounding error of about sqrt(P) eps32 ~ 1.2e-6; ours are computed in float64 as the reference
FLOAT32_RTOL = 2e-6
# PyHessian normalises v / (||v|| + 1e-6), so its Rayleigh quotient v^T H v is low by (1 + 1e-6)^-2
NORMALISATION_BIAS = 2e-6


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    model.train()
    with torch.random.fork_rng():
        torch.manual_seed(0)  # PyHessian draws its vectors from the global RNG
        yield model, nn.CrossEntropyLoss(), x, y
    assert not model.training  # PyHessian 0.1 calls model.eval() and leaves it so
    model.train()
    model.zero_grad(set_to_none=True)  # it also leaves .grad holding a graph


def _exact(model, loss, x, y):
    return torch.linalg.eigvalsh(hessian(model, loss, (x, y), dtype=torch.float64).to_dense()).flip(0).numpy()


def test_top_eigenvalue_agrees_within_pyhessian_default_tolerance(setup):
    model, loss, x, y = setup
    exact = _exact(model, loss, x, y)
    ours = top_eigenvalues(hessian(model, loss, (x, y), dtype=torch.float64), k=1, tol=1e-10).values[0]
    assert abs(ours - exact[0]) < 1e-12
    theirs, _ = pyhessian.hessian(model, loss, data=(x, y), cuda=False).eigenvalues()  # maxIter=100, tol=1e-3
    bound = 1e-3 / (1 - (exact[1] / exact[0]) ** 2) + NORMALISATION_BIAS + FLOAT32_RTOL
    assert abs(theirs[0] - ours) / ours < bound


def test_top_two_eigenvalues_agree_at_a_tight_pyhessian_tolerance(setup):
    model, loss, x, y = setup
    exact = _exact(model, loss, x, y)
    ours = top_eigenvalues(hessian(model, loss, (x, y), dtype=torch.float64), k=2, tol=1e-10).values
    theirs, _ = pyhessian.hessian(model, loss, data=(x, y), cuda=False).eigenvalues(top_n=2, maxIter=2000, tol=1e-7)
    for i in range(2):
        bound = 1e-7 / (1 - (exact[i + 1] / exact[i]) ** 2) + NORMALISATION_BIAS + FLOAT32_RTOL
        assert abs(theirs[i] - exact[i]) / exact[i] < bound
        assert abs(ours[i] - exact[i]) / exact[i] < 1e-10


def test_trace_agrees_within_the_standard_errors(setup):
    model, loss, x, y = setup
    exact = float(np.sum(_exact(model, loss, x, y)))
    samples = np.array(pyhessian.hessian(model, loss, data=(x, y), cuda=False).trace(maxIter=200, tol=0.0))
    assert len(samples) == 200
    theirs, their_stderr = samples.mean(), samples.std(ddof=1) / np.sqrt(len(samples))
    ours = trace(hessian(model, loss, (x, y)), num_probes=200, seed=0)
    assert abs(theirs - exact) < 4 * their_stderr and abs(ours.estimate - exact) < 4 * ours.stderr
    assert 0.6 < ours.stderr / their_stderr < 1.6  # the same estimator: the same variance


def test_pyhessian_density_on_torch_2(setup):
    model, loss, x, y = setup
    try:
        eigenvalues, weights = pyhessian.hessian(model, loss, data=(x, y), cuda=False).density(iter=20, n_v=1)
    except RuntimeError as error:
        if "torch.eig" in str(error) or "deprecated" in str(error):
            pytest.skip("PyHessian 0.1 density() calls torch.eig, which torch 2 removed")
        raise
    exact = _exact(model, loss, x, y)
    assert exact[-1] - 1e-4 <= min(eigenvalues[0]) and max(eigenvalues[0]) <= exact[0] + 1e-4
    assert abs(sum(weights[0]) - 1.0) < 1e-4
