"""Per-example gradients and m-coherence: theorylab's streaming statistics against a naive loop.

One MLP, 1,024 examples; three ways to get the m-coherence ``|sum g_i|^2 / sum |g_i|^2``:

* ``loop``: one backward pass per example, running sums (O(P) memory, N backward passes);
* ``vmap (all N x P)``: :func:`theorylab.gradients.per_example_gradients` materialises every gradient;
* ``streaming``: :func:`theorylab.gradients.gradient_statistics`, per-example gradients ``chunk`` at a
  time folded into running sums (O(P + chunk P) memory); run again on 4 N examples (the data
  repeated four times) to show that its memory does not grow with N.

Times exclude a one-off warm-up on 2 examples (torch.func builds its batching rules on its first
call in a process; that cost is printed in its own column).  Each method runs in a fresh subprocess
so its peak memory (resident set size ``ru_maxrss`` on CPU, ``torch.cuda.max_memory_allocated``
with ``--device cuda``, above the state after building the model and data) is its own.  Run:
``.venv/bin/python benchmarks/bench_gradients.py [--examples 1024] [--width 256] [--threads 1]``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

METHODS = ("loop", "vmap", "streaming", "streaming_4n")
LABELS = {"loop": "naive loop of backward passes", "vmap": "vmap, all N x P gradients",
          "streaming": "streaming (theorylab)", "streaming_4n": "streaming, 4 N examples"}


def _peak_mb(device: str) -> float:
    """Peak memory so far: resident set size on CPU, allocated memory on CUDA."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _coherence(method: str, model, ce, x, y, chunk: int) -> float:
    import torch

    from theorylab.gradients import coherence, gradient_statistics, per_example_gradients

    if method == "loop":
        params = sum(p.numel() for p in model.parameters())
        total, norms = torch.zeros(params, dtype=torch.float64, device=x.device), 0.0
        for i in range(len(y)):
            model.zero_grad(set_to_none=True)
            ce(model(x[i:i + 1]), y[i:i + 1]).backward()
            flat = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
            total += flat
            norms += float(flat.pow(2).sum())
        model.zero_grad(set_to_none=True)
        return float(total.pow(2).sum()) / norms
    if method == "vmap":
        return coherence(per_example_gradients(model, ce, (x, y), chunk_size=len(y)))
    return gradient_statistics(model, ce, (x, y), chunk_size=chunk).coherence


def _child(method: str, examples: int, width: int, chunk: int, threads: int, repeats: int, device: str) -> dict:
    import torch
    from torch import nn

    from theorylab.gradients import per_example_gradients
    from theorylab.models import MLP

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(examples, 64, generator=g).to(device)
    y = torch.randint(0, 10, (examples,), generator=g).to(device)
    if method == "streaming_4n":  # the data four times: alpha_m times 4, memory must not grow
        x, y = x.repeat(4, 1), y.repeat(4)
    model = MLP(64, [width, width], 10, seed=0).to(device)
    ce = nn.CrossEntropyLoss()
    params = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    if method == "loop":  # warm up autograd once, then start from a clean state
        ce(model(x[:2]), y[:2]).backward()
        model.zero_grad(set_to_none=True)
    else:  # torch.func builds its batching rules on the first call in a process
        per_example_gradients(model, ce, (x[:2], y[:2]))
    warm_up = time.perf_counter() - start
    baseline = _peak_mb(device)
    seconds = []
    for _ in range(repeats):  # the minimum over repeats is the least disturbed by other load on the machine
        start = time.perf_counter()
        value = _coherence(method, model, ce, x, y, chunk)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    if method == "streaming_4n":
        value /= len(y) / examples  # four copies of each gradient multiply alpha_m by 4
    return {"method": method, "seconds": min(seconds), "warm_up": warm_up, "peak_mb": _peak_mb(device) - baseline,
            "coherence": value,
            "params": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (peak memory: RSS on CPU, allocated on CUDA)")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.examples, args.width, args.chunk, args.threads, args.repeats,
                                args.device)))
        return
    rows = []
    for method in METHODS:  # the speed-up column of the 4 N row compares with the loop over N examples
        out = subprocess.run([sys.executable, __file__, "--child", method, "--examples", str(args.examples),
                              "--width", str(args.width), "--chunk", str(args.chunk), "--threads", str(args.threads),
                              "--repeats", str(args.repeats), "--device", args.device],
                             capture_output=True, text=True)
        if out.returncode:  # e.g. out of memory: reported as such, the other methods still run
            lines = (out.stderr or out.stdout).strip().splitlines()
            rows.append({"method": method, "error": lines[-1][:100] if lines else f"exit code {out.returncode}"})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    loop = rows[0]
    params, n = loop["params"], args.examples
    print(f"m-coherence of {n} per-example gradients, MLP 64-{args.width}-{args.width}-10 (P = {params:,}), "
          f"float32, {args.device}, {args.threads} thread(s), streaming chunk {args.chunk}, best of {args.repeats}")
    print(f"one N x P float32 gradient matrix is {n * params * 4 / 2 ** 20:.0f} MB; one gradient (P) is "
          f"{params * 4 / 2 ** 20:.2f} MB")
    print(f"{'method':32s} {'time [s]':>9s} {'speed-up':>9s} {'peak mem [MB]':>14s} {'mem / loop':>10s} "
          f"{'coherence':>12s} {'first call [s]':>15s}")
    for r in rows:
        if "error" in r:
            print(f"{LABELS[r['method']]:32s} failed: {r['error']}")
            continue
        print(f"{LABELS[r['method']]:32s} {r['seconds']:9.3f} {loop['seconds'] / r['seconds']:8.1f}x "
              f"{r['peak_mb']:14.1f} {r['peak_mb'] / max(loop['peak_mb'], 1e-9):9.2f}x {r['coherence']:12.6f} "
              f"{r['warm_up']:15.2f}")
    spread = max(abs(r["coherence"] / loop["coherence"] - 1) for r in rows if "error" not in r)
    print(f"largest relative difference between the coherences: {spread:.1e}")


if __name__ == "__main__":
    main()
