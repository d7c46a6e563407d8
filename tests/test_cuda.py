"""CUDA agrees with the CPU (skipped where no GPU is present; run on a GPU machine).

The same model, data and seed on both devices, in float64: operator products, Lanczos, Hutch++
(probes are drawn on the CPU, so the estimates are the same numbers up to rounding), SLQ, and
training.
"""
import pytest
import torch
from torch import nn

from theorylab import hessian, ggn, spectral_density, top_eigenvalues, trace, train
from theorylab.models import MLP

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _problem(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 20, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (300,), generator=g)
    model = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.Tanh(), nn.Linear(32, 5)).double()
    torch.manual_seed(0)
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    return model.to(device), (x.to(device), y.to(device))


@pytest.mark.parametrize("make", [hessian, ggn])
def test_operator_products_match(make):
    cpu_model, cpu_data = _problem("cpu")
    gpu_model, gpu_data = _problem("cuda")
    v = torch.randn(sum(p.numel() for p in cpu_model.parameters()), 3, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1))
    on_cpu = make(cpu_model, nn.CrossEntropyLoss(), cpu_data) @ v
    on_gpu = make(gpu_model, nn.CrossEntropyLoss(), gpu_data) @ v.cuda()
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-10, atol=1e-12)


def test_estimators_match():
    cpu_model, cpu_data = _problem("cpu")
    gpu_model, gpu_data = _problem("cuda")
    h_cpu = hessian(cpu_model, nn.CrossEntropyLoss(), cpu_data)
    h_gpu = hessian(gpu_model, nn.CrossEntropyLoss(), gpu_data)
    top_cpu, top_gpu = top_eigenvalues(h_cpu, k=3, seed=0), top_eigenvalues(h_gpu, k=3, seed=0)
    torch.testing.assert_close(torch.as_tensor(top_gpu.values), torch.as_tensor(top_cpu.values), rtol=1e-8, atol=1e-10)
    tr_cpu = trace(h_cpu, num_probes=30, method="hutch++", seed=0)
    tr_gpu = trace(h_gpu, num_probes=30, method="hutch++", seed=0)
    assert abs(tr_cpu.estimate - tr_gpu.estimate) <= 1e-8 * abs(tr_cpu.estimate)
    d_cpu = spectral_density(h_cpu, num_steps=30, num_probes=2, seed=0)
    d_gpu = spectral_density(h_gpu, num_steps=30, num_probes=2, seed=0)
    assert abs(d_cpu.trace_estimate - d_gpu.trace_estimate) <= 1e-6 * abs(d_cpu.trace_estimate)


def test_training_matches():
    results = []
    for device in ("cpu", "cuda"):
        model = MLP(20, [32], 5, seed=0).double().to(device)
        _, data = _problem(device)
        results.append(train(model, nn.CrossEntropyLoss(), data, steps=50, lr=0.1).loss)
    torch.testing.assert_close(torch.as_tensor(results[1]), torch.as_tensor(results[0]), rtol=1e-9, atol=1e-12)
