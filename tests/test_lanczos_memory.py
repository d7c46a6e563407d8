"""Krylov methods within a memory budget: a basis stored in a lower precision or on another device,
thick restarts when the budget caps the steps, and reorthogonalization choices for SLQ, each
checked against dense eigendecompositions in float64."""
import importlib

import numpy as np
import pytest
import torch
from symmetric_matrices import symmetric_matrix
from torch import nn

from theorylab.curvature import hessian, lanczos, spectral_density, top_eigenvalues
from theorylab.curvature.basis import KrylovBasis, resolve_budget
from theorylab.progress import progress

UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def _spectrum(size=400):
    """A bulk in [0, 1], a clustered top (2.0, 2.01) and a repeated eigenvalue below it (1.5 twice)."""
    return np.concatenate([np.linspace(0.0, 1.0, size - 5), [1.5, 1.5, 2.0, 2.01, 3.0]])


def _row_bytes(size, dtype):
    return size * torch.empty((), dtype=dtype).element_size()


@pytest.mark.parametrize("k, rows", [(4, 20), (4, 12), (2, 6)])
@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_a_budget_that_caps_the_steps_forces_thick_restarts_with_the_same_eigenvalues(which, k, rows):
    eigenvalues = _spectrum()
    if which == "SA":
        eigenvalues = -eigenvalues
    a = symmetric_matrix(eigenvalues, seed=1)
    budget = rows * _row_bytes(400, torch.float64)
    free = top_eigenvalues(a, k, which=which, tol=1e-10)
    capped = top_eigenvalues(a, k, which=which, tol=1e-10, memory_budget=budget)
    exact = torch.linalg.eigvalsh(a).numpy()
    expected = {"LA": exact[::-1], "SA": exact, "LM": exact[np.argsort(-np.abs(exact), kind="stable")]}[which][:k]
    np.testing.assert_allclose(capped.values, expected, rtol=0, atol=1e-9 * np.abs(exact).max())
    np.testing.assert_allclose(capped.values, free.values, rtol=0, atol=1e-9 * np.abs(exact).max())
    assert capped.converged.all() and capped.checked  # with k = 4, the repeated 1.5 was found twice
    assert capped.num_restarts > 0 and free.num_restarts == 0
    assert capped.basis_bytes <= budget < free.basis_bytes


def test_restarted_ritz_vectors_are_eigenvectors():
    a = symmetric_matrix(_spectrum(), seed=2)
    result = top_eigenvalues(a, 3, tol=1e-10, memory_budget=9 * _row_bytes(400, torch.float64), return_vectors=True)
    vectors = torch.from_numpy(result.vectors)
    residuals = torch.linalg.vector_norm(a @ vectors - vectors * torch.from_numpy(result.values), dim=0)
    assert result.num_restarts > 0 and float(residuals.max()) < 1e-9
    torch.testing.assert_close(vectors.T @ vectors, torch.eye(3, dtype=torch.float64), atol=1e-10, rtol=0)


def test_a_restarted_top_eigenvalue_of_an_mlp_hessian_matches_the_dense_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 4)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 6, generator=g, dtype=torch.float64), torch.randint(0, 4, (40,), generator=g)
    op = hessian(model, nn.CrossEntropyLoss(), (x, y))
    exact = torch.linalg.eigvalsh(op.to_dense()).numpy()[::-1]
    result = top_eigenvalues(op, 2, tol=1e-10, memory_budget=6 * _row_bytes(op.shape[0], torch.float64))
    np.testing.assert_allclose(result.values, exact[:2], rtol=0, atol=1e-9 * exact[0])
    assert result.num_restarts > 0 and result.num_matvecs == op.num_matvecs - op.shape[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_a_basis_stored_in_lower_precision_gives_the_eigenvalues_within_the_storage_precision(dtype):
    a = symmetric_matrix(_spectrum(), seed=3)
    u, norm = UNIT_ROUNDOFF[dtype], 3.0
    exact = torch.linalg.eigvalsh(a).numpy()[::-1][:4]
    budget = 20 * _row_bytes(400, dtype)  # rows and one row widened to float64 for the projections
    for budget in (None, budget):  # unbounded, and restarted
        result = top_eigenvalues(a, 4, tol=1e-10, basis_dtype=dtype, memory_budget=budget, return_vectors=True)
        # eigenvalues: well within u ||H|| (rounded rows perturb Rayleigh quotients little)
        np.testing.assert_allclose(result.values, exact, rtol=0, atol=u * norm)
        # Ritz vectors: within a small multiple of u, the rounding of the stored rows
        vectors = torch.from_numpy(result.vectors)
        residuals = torch.linalg.vector_norm(a @ vectors - vectors * torch.from_numpy(result.values), dim=0)
        assert float(residuals.max()) < 30 * u * norm
        assert result.checked and (budget is None or result.num_restarts > 0)
    assert result.basis_bytes <= budget


def test_a_float32_basis_for_a_float64_operator_keeps_the_tridiagonal_in_float64():
    a = symmetric_matrix(np.linspace(-1.0, 2.0, 300), seed=4)
    full = lanczos(a, num_steps=40, seed=1)
    stored = lanczos(a, num_steps=40, seed=1, basis_dtype=torch.float32)
    assert stored.basis.dtype == torch.float32 and stored.alpha.dtype == np.float64
    # the recurrence runs on float64 vectors: T differs only by the effect of the rounded basis
    # on reorthogonalization (orthogonality kept to about u = 6e-8)
    np.testing.assert_allclose(stored.alpha, full.alpha, atol=1e-6)
    np.testing.assert_allclose(stored.beta, full.beta, atol=1e-6)
    q = stored.basis.double()
    assert float((q.T @ q - torch.eye(40, dtype=torch.float64)).abs().max()) < 1e-6
    assert stored.basis_bytes < full.basis_bytes


def test_the_basis_is_allocated_once_at_the_size_the_run_needs():
    a = symmetric_matrix(np.linspace(0.0, 1.0, 100), seed=5)
    decomposition = lanczos(a, num_steps=30, seed=0)
    assert decomposition.basis_bytes == 30 * _row_bytes(100, torch.float64)
    assert decomposition.basis.shape == (100, 30)
    density = spectral_density(a, num_steps=20, num_probes=3)
    assert density.basis_bytes == 20 * _row_bytes(100, torch.float64)  # one basis for all probes


def test_slq_partial_reorthogonalization_matches_full_and_none_reports_its_ghosts():
    eigenvalues = np.concatenate([np.linspace(0.0, 1.0, 590), np.linspace(4.0, 6.0, 10)])
    a = symmetric_matrix(eigenvalues, seed=6)
    runs = {mode: spectral_density(a, num_steps=80, num_probes=3, seed=2, reorthogonalize=mode)
            for mode in ("full", "partial", "none")}
    full, partial, none = runs["full"], runs["partial"], runs["none"]
    np.testing.assert_allclose(partial.nodes, full.nodes, rtol=0, atol=1e-8)
    np.testing.assert_allclose(partial.weights, full.weights, rtol=0, atol=1e-8)
    assert np.all(full.ghosts == 0) and np.all(partial.ghosts == 0)
    assert np.all(full.reorthogonalized_steps == 80)
    assert np.all(partial.reorthogonalized_steps < 40)  # the point of partial reorthogonalization
    assert np.all(none.ghosts > 0) and none.basis_bytes == 0 and np.all(none.reorthogonalized_steps == 0)
    # the ghosts split the weight of converged eigenvalues: the density stays close to the full one
    grid = np.linspace(-0.5, 6.5, 400)
    sigma = 0.1
    gap = np.max(np.abs(none.density(grid, sigma) - full.density(grid, sigma))) / np.max(full.density(grid, sigma))
    assert gap < 0.05
    assert none.trace_estimate == pytest.approx(full.trace_estimate, rel=1e-9)  # the same probes, v^T A v


def test_lanczos_without_reorthogonalization_keeps_no_basis_and_ignores_the_budget():
    a = symmetric_matrix(np.linspace(0.0, 1.0, 200), seed=7)
    bare = lanczos(a, num_steps=50, reorthogonalize="none", memory_budget=1)
    assert bare.basis is None and bare.basis_bytes == 0 and bare.num_steps == 50


def test_budget_errors_name_the_remedies():
    a = symmetric_matrix(np.linspace(0.0, 1.0, 50), seed=8)
    with pytest.raises(ValueError, match="holds 2 in torch.float64.*basis_dtype.*reorthogonalize='none'"):
        lanczos(a, num_steps=10, memory_budget=2 * _row_bytes(50, torch.float64))
    with pytest.raises(ValueError, match="spectral_density with num_steps=10"):
        spectral_density(a, num_steps=10, memory_budget=100)
    with pytest.raises(ValueError, match=r"top_eigenvalues\(k=3\) needs at least 5"):
        top_eigenvalues(a, 3, memory_budget=4 * _row_bytes(50, torch.float64))
    for bad in (0, -5, 1.5, "lots", True):
        with pytest.raises(ValueError, match="memory_budget must be"):
            top_eigenvalues(a, 1, memory_budget=bad)
    with pytest.raises(ValueError, match="basis_dtype"):
        lanczos(a, num_steps=3, basis_dtype=torch.int32)
    with pytest.raises(ValueError, match="basis_device"):
        lanczos(a, num_steps=3, basis_device="meta")
    with pytest.raises(ValueError, match="reorthogonalize"):
        spectral_density(a, reorthogonalize="selective")
    with pytest.raises(ValueError, match="max_restarts"):
        top_eigenvalues(a, 1, max_restarts=-1)


def test_auto_budget_is_a_share_of_the_free_memory():
    budget = resolve_budget("auto", torch.device("cpu"))
    assert budget > 0
    a = symmetric_matrix(np.linspace(0.0, 1.0, 40), seed=9)
    assert top_eigenvalues(a, 2, memory_budget="auto").num_restarts == 0  # 40 rows of 40 fit
    basis = KrylovBasis(100, 30, compute_dtype=torch.float64, compute_device=torch.device("cpu"),
                        storage_dtype=torch.float16, storage_device=torch.device("cpu"), budget=5_000)
    # float16 rows of 200 bytes, and a staging buffer of one row widened to float64 (800 bytes)
    assert basis.capacity == (5_000 - 800) // 200 and basis.nbytes == 800  # rows allocated when first stored
    basis.store(0, torch.ones(100, dtype=torch.float64))
    assert basis.nbytes == 5_000


def test_a_segmented_basis_grows_with_the_rows_stored_without_moving_them():
    basis = KrylovBasis(50, 10, compute_dtype=torch.float64, compute_device=torch.device("cpu"),
                        storage_dtype=torch.float64, storage_device=torch.device("cpu"), segment_rows=4)
    rows = torch.linalg.qr(torch.randn(50, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))[0].T
    for i in range(6):
        basis.store(i, rows[i])
    assert basis.nbytes == 2 * 4 * 50 * 8  # two segments of four rows
    first = basis.view(0, 4)
    basis.store(6, rows[6])
    assert basis.view(0, 4).data_ptr() == first.data_ptr()  # earlier rows are not moved
    torch.testing.assert_close(basis.read(0, 7), rows[:7])  # across segments
    w = torch.randn(50, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected = rows[:7].T @ (rows[:7] @ w)
    coefficients = basis.project(w_copy := w.clone(), 0, 7)
    torch.testing.assert_close(coefficients, rows[:7] @ w)
    torch.testing.assert_close(w_copy, w - expected)
    s = torch.linalg.qr(torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))[0]
    basis.transform(0, 7, s)  # Ritz-like combinations into the first rows, across segments, in place
    torch.testing.assert_close(basis.read(0, 3), s.T @ rows[:7])
    with pytest.raises(IndexError, match="capacity"):
        basis.store(10, rows[0])


def test_top_eigenvalues_allocates_the_basis_as_its_rows_fill(monkeypatch):
    basis_module = importlib.import_module("theorylab.curvature.basis")
    lanczos_module = importlib.import_module("theorylab.curvature.lanczos")
    monkeypatch.setattr(lanczos_module, "SEGMENT_BYTES", 1)  # rows bigger than a segment: one row each
    a = symmetric_matrix(np.concatenate([np.linspace(0.0, 1.0, 395), [2.0, 3.0, 4.0, 5.0, 6.0]]), seed=13)
    result = top_eigenvalues(a, 1, tol=1e-8)
    assert result.basis_bytes == (result.num_matvecs + 1) * _row_bytes(400, torch.float64) < 50 * 3200
    with pytest.raises(ValueError, match="segment_rows"):
        basis_module.KrylovBasis(10, 5, compute_dtype=torch.float64, compute_device=torch.device("cpu"),
                                 storage_dtype=torch.float64, storage_device=torch.device("cpu"), segment_rows=0)


def test_out_of_restarts_returns_the_unconverged_pairs_as_they_are():
    eigenvalues = np.concatenate([np.linspace(0.0, 1.0, 395), 1.0 + 1e-4 * np.arange(1, 6)])
    a = symmetric_matrix(eigenvalues, seed=10)
    result = top_eigenvalues(a, 1, tol=1e-12, memory_budget=4 * _row_bytes(400, torch.float64), max_restarts=2)
    assert result.num_restarts == 2 and not result.converged[0] and not result.checked
    # the residual bound still holds: some eigenvalue lies within the residual of the value
    assert np.min(np.abs(eigenvalues - result.values[0])) <= result.residuals[0]
    assert result.residuals[0] > 1e-12 * abs(result.values[0])


class _Recorder:
    """A stand-in progress bar recording what it is told."""

    def __init__(self, total=None, *, desc="", unit="it", enabled=None):
        self.total, self.desc, self.n, self.postfix = total, desc, 0, []
        _Recorder.made.append(self)

    def update(self, n=1):
        self.n += n

    def set_postfix_str(self, text="", refresh=True):
        self.postfix.append(text)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def test_progress_bars_count_products_and_show_the_residual_and_the_probe(monkeypatch, capsys):
    lanczos_module = importlib.import_module("theorylab.curvature.lanczos")
    spectrum_module = importlib.import_module("theorylab.curvature.spectrum")

    _Recorder.made = []
    monkeypatch.setattr(lanczos_module, "bar", _Recorder)
    monkeypatch.setattr(spectrum_module, "bar", _Recorder)
    a = symmetric_matrix(np.linspace(0.0, 1.0, 60), seed=11)
    result = top_eigenvalues(a, 2, tol=1e-8)
    density = spectral_density(a, num_steps=5, num_probes=2)
    eig_bar, slq_bar = _Recorder.made
    assert eig_bar.desc == "top eigenvalues" and eig_bar.n == result.num_matvecs
    assert "residual" in eig_bar.postfix[-1] and "tol 1e-08" in eig_bar.postfix[-1]
    assert slq_bar.total == slq_bar.n == density.num_matvecs == 10 and slq_bar.postfix[-1] == "probe 2/2"
    monkeypatch.undo()
    with progress(True):  # the real bar writes to standard error
        top_eigenvalues(a, 1)
    assert "top eigenvalues" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_a_basis_on_the_host_for_an_operator_on_the_gpu(dtype):
    a = symmetric_matrix(_spectrum(), seed=12)
    on_cpu = top_eigenvalues(a, 3, tol=1e-10)
    offloaded = top_eigenvalues(a.cuda(), 3, tol=1e-10, basis_device="cpu", basis_dtype=dtype,
                                memory_budget=12 * _row_bytes(400, dtype))
    np.testing.assert_allclose(offloaded.values, on_cpu.values, rtol=0, atol=UNIT_ROUNDOFF[dtype] * 3.0)
    assert offloaded.num_restarts > 0
    density = spectral_density(a.cuda(), num_steps=40, num_probes=2, basis_device="cpu", reorthogonalize="partial")
    reference = spectral_density(a, num_steps=40, num_probes=2, reorthogonalize="partial")
    np.testing.assert_allclose(density.nodes, reference.nodes, atol=1e-8)
