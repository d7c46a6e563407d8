"""Lanczos and top_eigenvalues against dense eigendecompositions (torch.linalg.eigvalsh) in float64."""
import numpy as np
import pytest
import torch
from symmetric_matrices import symmetric_matrix
from torch import nn

from theorylab.curvature import EigenResult, hessian, lanczos, top_eigenvalues
from theorylab.results import Result


def _spectra():
    n = 120
    bulk = np.linspace(-1.0, 1.0, n)
    clustered = np.concatenate([bulk[:-6], [5.0, 5.0 - 1e-3, 5.0 - 2e-3, 4.0, 4.0 - 1e-3, -3.0]])
    degenerate = np.concatenate([bulk[:-7], [3.0, 3.0, 3.0, 2.0, 2.0, -4.0, -4.0]])
    indefinite = np.concatenate([np.linspace(-6.0, 0.5, n // 2), np.linspace(0.6, 5.9, n - n // 2)])
    return {"clustered": clustered, "degenerate": degenerate, "indefinite": indefinite}


def test_decomposition_is_orthonormal_and_tridiagonalises():
    a = symmetric_matrix(np.linspace(-2, 3, 60))
    dec = lanczos(a, num_steps=30, seed=1)
    q = dec.basis
    torch.testing.assert_close(q.T @ q, torch.eye(30, dtype=torch.float64), atol=1e-13, rtol=0)
    t = np.diag(dec.alpha) + np.diag(dec.beta[:-1], 1) + np.diag(dec.beta[:-1], -1)
    np.testing.assert_allclose((q.T @ a @ q).numpy(), t, atol=1e-12)
    assert dec.alpha.dtype == np.float64 and not dec.breakdown and dec.num_matvecs == 30


def test_reorthogonalization_prevents_ghost_eigenvalues_and_the_bare_recurrence_reports_them():
    """One dominant eigenvalue: 100 steps give exactly one Ritz value near it with full or partial
    reorthogonalization; the bare recurrence gives copies, and counts them as ghosts."""
    eigenvalues = np.concatenate([np.linspace(0.0, 1.0, 399), [10.0]])
    a = symmetric_matrix(eigenvalues, seed=2)
    runs = {mode: lanczos(a, num_steps=100, seed=0, reorthogonalize=mode) for mode in ("full", "partial", "none")}

    def near_top(mode):
        theta, _, _ = runs[mode].ritz()
        return int(np.sum(np.abs(theta - 10.0) < 0.1))

    assert near_top("full") == 1 and runs["full"].ghosts() == 0
    assert near_top("partial") == 1 and runs["partial"].ghosts() == 0
    assert near_top("none") >= 2 and runs["none"].ghosts() >= near_top("none") - 1
    assert runs["none"].basis is None and runs["none"].basis_bytes == 0 and runs["none"].num_reorthogonalizations == 0
    # partial reorthogonalization works on far fewer steps than full, and keeps the basis semi-orthogonal
    assert runs["full"].num_reorthogonalizations == 100
    assert 0 < runs["partial"].num_reorthogonalizations < 50
    q = runs["partial"].basis
    assert float((q.T @ q - torch.eye(100, dtype=torch.float64)).abs().max()) < 1e-7  # sqrt(eps) = 1.5e-8, times growth


def test_breakdown_on_an_invariant_krylov_space_gives_exact_ritz_values():
    eigenvalues = np.repeat([-1.0, 0.5, 2.0], 20)  # three distinct values: K_3 is invariant
    dec = lanczos(symmetric_matrix(eigenvalues, seed=3), num_steps=50, seed=0)
    assert dec.breakdown and dec.num_steps == 3
    theta, _, residuals = dec.ritz()
    np.testing.assert_allclose(theta, [-1.0, 0.5, 2.0], atol=1e-12)
    assert np.all(residuals == 0.0)


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
@pytest.mark.parametrize("spectrum", ["clustered", "degenerate", "indefinite"])
def test_top_eigenvalues_match_eigvalsh(spectrum, which):
    eigenvalues = _spectra()[spectrum]
    a = symmetric_matrix(eigenvalues, seed=4)
    k = 5
    result = top_eigenvalues(a, k, which=which, tol=1e-10, return_vectors=True)
    exact = torch.linalg.eigvalsh(a).numpy()
    expected = {"LA": exact[::-1], "SA": exact, "LM": exact[np.argsort(-np.abs(exact), kind="stable")]}[which][:k]
    np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-9 * np.abs(exact).max())
    assert result.converged.all() and result.checked and result.num_matvecs > 0
    vectors = torch.from_numpy(result.vectors)
    torch.testing.assert_close(vectors.T @ vectors, torch.eye(k, dtype=torch.float64), atol=1e-9, rtol=0)
    true_residuals = torch.linalg.vector_norm(a @ vectors - vectors * torch.from_numpy(result.values), dim=0)
    assert np.all(true_residuals.numpy() <= 1e-10 * np.abs(result.values) + 1e-12)


def test_repeated_top_eigenvalue_is_found_with_its_multiplicity():
    eigenvalues = np.concatenate([np.linspace(0, 1, 96), [7.0] * 4])
    result = top_eigenvalues(symmetric_matrix(eigenvalues, seed=5), 5, tol=1e-10)
    np.testing.assert_allclose(result.values, [7.0, 7.0, 7.0, 7.0, 1.0], atol=1e-9)
    assert result.num_runs >= 2


def test_without_the_check_run_one_run_is_made_and_checked_says_so():
    eigenvalues = np.concatenate([np.linspace(0, 1, 96), [2.0] * 4])
    a = symmetric_matrix(eigenvalues, seed=5)
    unchecked = top_eigenvalues(a, 2, tol=1e-10, check=False)
    checked = top_eigenvalues(a, 2, tol=1e-10)
    # here the one run converges to both copies of 2.0 (rounding gives the second direction a start)
    np.testing.assert_allclose(unchecked.values, checked.values, atol=1e-9)
    assert checked.checked and not unchecked.checked
    assert unchecked.num_runs == 1 < checked.num_runs and unchecked.num_matvecs < checked.num_matvecs
    assert top_eigenvalues(a, 1, check=False).checked  # one value: a repeat cannot change it
    with pytest.raises(ValueError, match="check"):
        top_eigenvalues(a, 2, check="no")


def test_all_eigenvalues_when_k_equals_the_dimension():
    a = symmetric_matrix(np.linspace(-1, 2, 12), seed=6)
    result = top_eigenvalues(a, 12, which="SA", tol=1e-10)
    np.testing.assert_allclose(result.values, torch.linalg.eigvalsh(a).numpy(), atol=1e-11)


def test_top_eigenvalue_of_an_mlp_hessian():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (20,), generator=g)
    op = hessian(model, nn.CrossEntropyLoss(), [(x[:7], y[:7]), (x[7:], y[7:])])
    exact = torch.linalg.eigvalsh(op.to_dense()).numpy()
    for which, expected in [("LA", exact[::-1][:3]), ("SA", exact[:3])]:
        before = op.num_matvecs
        result = top_eigenvalues(op, 3, which=which, tol=1e-10)
        np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-9 * np.abs(exact).max())
        assert op.num_matvecs - before == result.num_matvecs
    assert result.meta["num_matvecs"] == result.num_matvecs and result.meta["seed"] == 0


def test_float32_operator_reaches_its_precision():
    a = symmetric_matrix(np.concatenate([np.linspace(0, 1, 200), [3.0, 2.0]]), seed=7)
    result = top_eigenvalues(a.float(), 2, tol=1e-5)
    np.testing.assert_allclose(result.values, [3.0, 2.0], rtol=1e-5)


def test_result_round_trip_and_plot():
    result = top_eigenvalues(symmetric_matrix(np.linspace(0, 1, 30)), 3, tol=1e-8, return_vectors=True)
    back = Result.from_dict(result.to_dict())
    assert isinstance(back, EigenResult) and back == result
    assert result.plot() is not None
    assert top_eigenvalues(symmetric_matrix(np.linspace(0, 1, 30)), 2).vectors is None


def test_deterministic_given_the_seed():
    a = symmetric_matrix(np.linspace(0, 1, 80), seed=8)
    first, second = top_eigenvalues(a, 3, seed=3), top_eigenvalues(a, 3, seed=3)
    assert np.array_equal(first.values, second.values) and first.num_matvecs == second.num_matvecs


def test_bad_input_gets_clear_errors():
    a = symmetric_matrix(np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="larger than the dimension"):
        top_eigenvalues(a, 11)
    with pytest.raises(ValueError, match="which"):
        top_eigenvalues(a, 1, which="BE")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        top_eigenvalues(a, 0)
    with pytest.raises(ValueError, match="tol"):
        top_eigenvalues(a, 1, tol=0.0)
    with pytest.raises(ValueError, match="not symmetric"):
        top_eigenvalues(torch.triu(torch.ones(4, 4)), 1)
    with pytest.raises(ValueError, match="square"):
        top_eigenvalues(np.ones((3, 2)), 1)
    with pytest.raises(ValueError, match="num_steps"):
        lanczos(a, num_steps=0)


@pytest.mark.parametrize("dtype, bound", [(torch.float64, 1e-13), (torch.float32, 1e-5)])
def test_basis_stays_orthonormal_to_working_precision(dtype, bound):
    """Clustered top pair and a spectrum spread over 9 decades: the hard case for Gram-Schmidt."""
    a = symmetric_matrix(np.concatenate([np.logspace(-8, 0, 400), [10.0, 10.0001]]), seed=1).to(dtype)
    basis = lanczos(a, num_steps=150, seed=0).basis.double()
    assert float((basis.T @ basis - torch.eye(basis.shape[1], dtype=torch.float64)).abs().max()) < bound
