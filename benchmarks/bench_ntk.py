"""Empirical NTK: theorylab against a plain torch.func Jacobian contraction and nngeometry, side by side.

Three parts, all in one run:

1. **Speed** on an MLP 64 -> 256 -> 224 -> 10 (ReLU, 76,458 parameters) and a CNN (two 3x3
   convolutions on 3 x 16 x 16 images, a linear head; 25,578 parameters), float32, 64 inputs: the
   full kernel (64, 64, 10, 10) and its trace over outputs (64, 64).  Every method is checked
   against the plain torch.func contraction of a float64 copy (an independent implementation)
   before it is timed; times are the best of ``--repeats`` runs.
2. **Exactness** where hook-based tools go wrong: a layer applied twice, two layers holding one
   tied weight, and a weight also read outside its layer; each method against the explicit
   ``J J^T`` of the flattened parameter vector, float64.
3. **Scale**: the trace kernel of ``--scale-inputs`` inputs (default 2,000) on the MLP in a fresh
   process: wall time and peak resident memory, next to the size of the per-example Jacobian a
   single-shot contraction would hold.

Run: ``.venv/bin/python benchmarks/bench_ntk.py [--device cpu|cuda] [--threads N] [--json PATH]``
(nngeometry: ``pip install --no-deps nngeometry``).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from theorylab.kernels import empirical_ntk, empirical_ntk_blocks


# -- models ----------------------------------------------------------------------------------------
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 224), nn.ReLU(), nn.Linear(224, 10))


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(32 * 8 * 8, 10))


def inputs(shape: tuple[int, ...], n: int) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(1))


class SharedLayer(nn.Module):
    """One linear layer applied twice (weight sharing): f(x) = W2 tanh(W1 tanh(W1 x))."""

    def __init__(self):
        super().__init__()
        self.inner, self.out = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.inner(torch.tanh(self.inner(x)))))


class TiedLayers(nn.Module):
    """Two linear layers holding one weight (tied), each applied once."""

    def __init__(self):
        super().__init__()
        self.first, self.second, self.out = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.second.weight = self.first.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.second(torch.tanh(self.first(x)))))


class ReadTwice(nn.Module):
    """A linear layer applied once whose weight is also read by a matrix product outside it."""

    def __init__(self):
        super().__init__()
        self.layer, self.out = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.layer(x)) + x @ self.layer.weight)


# -- the peers -------------------------------------------------------------------------------------
def plain_torch_func(model: nn.Module, x: torch.Tensor, trace: bool = False) -> torch.Tensor:
    """The PyTorch tutorial's Jacobian contraction: vmap(jacrev) then one einsum per parameter."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def single(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(single), (None, 0))(params, x)
    jac = [j.flatten(2) for j in jac.values()]
    return sum(torch.einsum("Naf,Maf->NM" if trace else "Naf,Mbf->NMab", j, j) for j in jac)


def nngeometry_blocks(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """nngeometry's GramMatrix (hooks on each layer), as (N, N, O, O); None where it cannot run."""
    try:
        from nngeometry import GramMatrix
    except ImportError as exc:  # reported, not hidden
        print(f"nngeometry unavailable: {exc}")
        return None
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=len(x))
    try:
        gram = GramMatrix(model, loader, function=lambda *d: model(d[0])).to_torch()  # (O, N, O, N)
    except Exception as exc:  # noqa: BLE001 - a peer's failure is a result
        print(f"  nngeometry failed: {type(exc).__name__}: {str(exc)[:80]}")
        return None
    return gram.permute(1, 3, 0, 2)


def explicit_blocks(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``J J^T`` from the dense Jacobian of the flattened (deduplicated) parameter vector, (N, N, O, O)."""
    named = dict(model.named_parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in named.values()])

    def f(vec):
        params, i = {}, 0
        for name, p in named.items():
            params[name] = vec[i:i + p.numel()].view(p.shape)
            i += p.numel()
        return functional_call(model, params, (x,))

    jac = torch.autograd.functional.jacobian(f, flat)
    return torch.einsum("aip,bjp->abij", jac, jac)


# -- measurements ----------------------------------------------------------------------------------
def best_time(fn: Callable[[], torch.Tensor | None], repeats: int, device: torch.device) -> tuple[float, torch.Tensor | None]:
    best, out = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    value = torch.as_tensor(value).double().cpu()
    return float((value - reference).abs().max() / reference.abs().max())


def speed(name: str, model: nn.Module, x: torch.Tensor, repeats: int, device: torch.device) -> list[dict]:
    """Time every method on one model; each is checked against a float64 torch.func contraction first."""
    model, x = model.to(device), x.to(device)
    reference = plain_torch_func(model.double(), x.double()).cpu()
    model.float()
    reference_trace = reference.diagonal(dim1=2, dim2=3).sum(-1)
    methods: list[tuple[str, str, Callable[[], object]]] = [
        ("blocks", "theorylab auto", lambda: empirical_ntk_blocks(model, x).blocks),
        ("blocks", "theorylab jacobian", lambda: empirical_ntk_blocks(model, x, method="jacobian").blocks),
        ("blocks", "plain torch.func contraction", lambda: plain_torch_func(model, x)),
        ("blocks", "nngeometry GramMatrix", lambda: nngeometry_blocks(model, x)),
        ("trace", "theorylab auto", lambda: empirical_ntk(model, x, reduction="sum").kernel),
        ("trace", "theorylab jacobian", lambda: empirical_ntk(model, x, reduction="sum", method="jacobian").kernel),
        ("trace", "plain torch.func contraction", lambda: plain_torch_func(model, x, trace=True)),
    ]
    if name == "MLP":  # NTK-vector products: exact but slow; once is enough to see it
        methods.insert(2, ("blocks", "theorylab ntk_vp", lambda: empirical_ntk_blocks(model, x, method="ntk_vp").blocks))
    rows = []
    for kernel, method, fn in methods:
        seconds, out = best_time(fn, 1 if "ntk_vp" in method else repeats, device)
        if out is None:
            continue
        error = relative_error(out, reference if kernel == "blocks" else reference_trace)
        rows.append({"model": name, "kernel": kernel, "method": method, "seconds": seconds, "max_rel_error": error})
    for kernel in ("blocks", "trace"):
        base = next(r["seconds"] for r in rows if r["kernel"] == kernel and r["method"] == "theorylab auto")
        for r in rows:
            if r["kernel"] == kernel:
                r["x_theorylab_auto"] = r["seconds"] / base
    return rows


def exactness() -> list[dict]:
    """Relative error of each method against the explicit J J^T on models with reused parameters."""
    rows = []
    for model_cls in (SharedLayer, TiedLayers, ReadTwice):
        torch.manual_seed(0)
        model = model_cls().double()
        x = torch.randn(6, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        explicit = explicit_blocks(model, x)
        auto = empirical_ntk_blocks(model, x)
        for method, kernel in [("theorylab auto", torch.from_numpy(auto.blocks)),
                               ("theorylab jacobian", torch.from_numpy(empirical_ntk_blocks(model, x, method="jacobian").blocks)),
                               ("nngeometry GramMatrix", nngeometry_blocks(model, x))]:
            error = None if kernel is None else relative_error(kernel, explicit)
            rows.append({"model": model_cls.__name__, "method": method, "max_rel_error": error})
        rows.append({"model": model_cls.__name__, "method": "theorylab auto paths", "paths": auto.meta["paths"]})
    return rows


def scale_child(n: int, threads: int) -> None:
    torch.set_num_threads(threads)
    model, x = mlp(), inputs((64,), n)
    start = time.perf_counter()
    result = empirical_ntk(model, x, reduction="mean")
    seconds = time.perf_counter() - start
    print(json.dumps({"inputs": n, "seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "block_size": result.meta["block_size"], "features_cached": result.meta["features_cached"],
                      "threads": threads}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared: 1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scale-inputs", type=int, default=2000)
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        scale_child(args.child, args.threads)
        return
    from theorylab.devices import resolve_device

    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, float32, 64 inputs, 10 outputs")
    rows = speed("MLP", mlp(), inputs((64,), 64), args.repeats, device) + speed("CNN", cnn(), inputs((3, 16, 16), 64),
                                                                                args.repeats, device)
    print(f"\n{'model':5s} {'kernel':7s} {'method':30s} {'seconds':>9s} {'x auto':>8s} {'max rel. diff':>14s}")
    for r in rows:
        print(f"{r['model']:5s} {r['kernel']:7s} {r['method']:30s} {r['seconds']:9.4f} {r['x_theorylab_auto']:8.2f} "
              f"{r['max_rel_error']:14.1e}")

    exact = exactness()
    print("\nreused parameters, float64, max relative error against the explicit J J^T:")
    for r in exact:
        if "paths" in r:
            print(f"  {r['model']:12s} paths: {r['paths']}")
        else:
            error = "fails" if r["max_rel_error"] is None else f"{r['max_rel_error']:.1e}"
            print(f"  {r['model']:12s} {r['method']:24s} {error}")

    child = subprocess.run([sys.executable, __file__, "--child", str(args.scale_inputs), "--threads", str(args.threads)],
                           capture_output=True, text=True, check=True)
    scale = json.loads(child.stdout.strip().splitlines()[-1])
    scale["single_shot_jacobian_mib"] = args.scale_inputs * 10 * 76458 * 4 / 2 ** 20
    print(f"\n{scale['inputs']} inputs on the MLP, trace kernel, {scale['threads']} thread(s): {scale['seconds']:.1f} s, "
          f"peak RSS {scale['peak_rss_mib']:.0f} MiB (blocks of {scale['block_size']}, features cached: "
          f"{scale['features_cached']}; a single-shot per-example Jacobian alone would be "
          f"{scale['single_shot_jacobian_mib']:,.0f} MiB)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "threads": args.threads, "torch": torch.__version__, "speed": rows,
                       "exactness": exact, "scale": scale}, f, indent=2)


if __name__ == "__main__":
    main()
