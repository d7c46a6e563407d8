"""Test matrices with a prescribed spectrum (the exact reference for the eigen-estimators)."""
import torch


def symmetric_matrix(eigenvalues, seed=0) -> torch.Tensor:
    """``Q diag(eigenvalues) Q^T`` in float64 with a Haar-random orthogonal ``Q`` (seeded)."""
    eigenvalues = torch.as_tensor(eigenvalues, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
    a = q @ torch.diag(eigenvalues) @ q.T
    return (a + a.T) / 2
