"""Empirical NTK: theorylab against a plain torch.func Jacobian contraction and nngeometry, side by side.

Problem: an MLP 64 -> 256 -> 224 -> 10 (ReLU, 76,458 parameters, float32) on 64 inputs; the full
kernel (64, 64, 10, 10).  Every method is checked against theorylab's kernel before it is timed;
times are the best of ``--repeats`` runs.  Then the peak memory of theorylab on 2,000 inputs
(trace kernel, blocks of 64) is measured in a fresh process and compared with the size of the
per-example Jacobian a single-shot contraction needs.

Run: ``.venv/bin/python benchmarks/bench_ntk.py`` (nngeometry: ``pip install --no-deps nngeometry``).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from theorylab.kernels import empirical_ntk


def model_and_inputs(n: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """Built from ``nn.Linear`` layers, the only kind nngeometry's hooks understand."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 224), nn.ReLU(), nn.Linear(224, 10))
    return model, torch.randn(n, 64, generator=torch.Generator().manual_seed(1))


def plain_torch_func(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The PyTorch tutorial's Jacobian contraction: vmap(jacrev) then one einsum per parameter."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def single(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(single), (None, 0))(params, x)
    jac = [j.flatten(2) for j in jac.values()]
    return sum(torch.einsum("Naf,Mbf->NMab", j, j) for j in jac)


def nngeometry_gram(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    try:
        from nngeometry import GramMatrix
    except ImportError as exc:  # reported, not hidden
        print(f"nngeometry unavailable: {exc}")
        return None
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=len(x))
    gram = GramMatrix(model, loader, function=lambda *d: model(d[0])).to_torch()  # (O, N, O, N)
    return gram.permute(1, 3, 0, 2)


class SharedLayer(nn.Module):
    """One linear layer applied twice (weight sharing): f(x) = W2 tanh(W1 tanh(W1 x))."""

    def __init__(self):
        super().__init__()
        self.inner, self.out = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.inner(torch.tanh(self.inner(x)))))


def weight_sharing_errors() -> None:
    """Relative error of each method against the explicit Jacobian product on a weight-shared model."""
    torch.manual_seed(0)
    model = SharedLayer().double()
    x = torch.randn(6, 4, dtype=torch.float64)
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    shapes = [(n, p.shape) for n, p in model.named_parameters()]

    def f(vec):
        params, i = {}, 0
        for name, shape in shapes:
            params[name] = vec[i:i + shape.numel()].view(shape)
            i += shape.numel()
        return functional_call(model, params, (x,))

    jac = torch.autograd.functional.jacobian(f, flat)
    explicit = torch.einsum("aip,bjp->abij", jac, jac)
    print("\nweight sharing (a layer applied twice), max relative error against explicit J J^T:")
    for name, kernel in [("theorylab jacobian", empirical_ntk(model, x, reduce="none")),
                         ("theorylab ntk_vp", empirical_ntk(model, x, reduce="none", method="ntk_vp")),
                         ("nngeometry GramMatrix", nngeometry_gram(model, x))]:
        if kernel is not None:
            print(f"  {name:32s} {float((kernel - explicit).abs().max() / explicit.abs().max()):.1e}")


def best_time(fn, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def memory_child(n: int, block: int) -> None:
    model, x = model_and_inputs(n)
    start = time.perf_counter()
    k = empirical_ntk(model, x, reduce="mean", block_size=block)
    print(f"{time.perf_counter() - start:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} "
          f"{float(k.diagonal().mean()):.6g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-inputs", type=int, default=2000)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        memory_child(args.child, 64)
        return
    model, x = model_and_inputs(64)
    print(f"MLP with {sum(p.numel() for p in model.parameters()):,} parameters, {len(x)} inputs, 10 outputs, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    reference = empirical_ntk(model, x, reduce="none")
    rows = []
    for name, fn in [("theorylab jacobian", lambda: empirical_ntk(model, x, reduce="none")),
                     ("theorylab ntk_vp", lambda: empirical_ntk(model, x, reduce="none", method="ntk_vp")),
                     ("theorylab jacobian (trace only)", lambda: empirical_ntk(model, x, reduce="sum")),
                     ("plain torch.func contraction", lambda: plain_torch_func(model, x)),
                     ("nngeometry GramMatrix", lambda: nngeometry_gram(model, x))]:
        seconds, out = best_time(fn, args.repeats)
        if out is None:
            continue
        target = reference.diagonal(dim1=2, dim2=3).sum(-1) if out.dim() == 2 else reference
        err = float((out - target).abs().max() / target.abs().max())
        rows.append((name, seconds, err))
    base = next(s for n, s, _ in rows if n == "theorylab jacobian")
    print(f"{'method':34s} {'seconds':>8s} {'x theorylab':>12s} {'max rel. diff':>14s}")
    for name, seconds, err in rows:
        print(f"{name:34s} {seconds:8.3f} {seconds / base:12.2f} {err:14.1e}")
    weight_sharing_errors()

    n = args.memory_inputs
    out = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True, check=True)
    seconds, peak_mb, _ = out.stdout.split()
    jac_mb = n * 10 * 76458 * 4 / 2 ** 20
    print(f"\n{n} inputs, trace kernel, blocks of 64: {float(seconds):.1f} s, peak RSS {float(peak_mb):.0f} MiB "
          f"(a single-shot per-example Jacobian alone would be {jac_mb:,.0f} MiB)")


if __name__ == "__main__":
    main()
