"""Curvature benchmark: theorylab vs PyHessian 0.1, side by side in one run.

Model: MLP 784-256-256-10 (ReLU), one batch of 512 N(0, 1) inputs with random labels, mean
cross-entropy, float32.  Measures

* the time of one Hessian-vector product relative to one gradient (forward + backward);
* top-1 / top-5 eigenvalues (Lanczos, tol 1e-4 on the relative Ritz residual) against a float64
  ground truth (tol 1e-9), and PyHessian's power iteration at its defaults (maxIter=100, tol=1e-3);
* Hutchinson with 100 probes vs PyHessian ``trace(maxIter=100)``;
* SLQ with 100 steps x 5 probes vs PyHessian ``density(iter=100, n_v=5)``;
* the cost of full reorthogonalization over 100 Lanczos steps (run with minus run without) as a
  fraction of the HVP time.

Run: ``.venv/bin/python benchmarks/bench_curvature.py [--device cpu|cuda] [--json PATH]``.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from theorylab.curvature import hessian, lanczos, spectral_density, top_eigenvalues, trace
from theorylab.devices import resolve_device


def _problem(device: torch.device) -> tuple[nn.Module, nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(512, 784, generator=g), torch.randint(0, 10, (512,), generator=g)
    return model.to(device), nn.CrossEntropyLoss(), (x.to(device), y.to(device))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def _min_times(fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int) -> dict[str, float]:
    """Fastest of ``repeats`` timings of each function, interleaved so that all see the same machine load."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn, device)[0])
    return {name: min(values) for name, values in times.items()}


def _fastest(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, Any]:
    runs = [_timed(fn, device) for _ in range(repeats)]
    return min(r[0] for r in runs), runs[-1][1]


class _PyHessianCounter:
    """Counts PyHessian's Hessian-vector products (it calls ``hessian_vector_product`` for each)."""

    def __init__(self) -> None:
        import pyhessian  # noqa: F401  (the package exports a class named like its module)

        self.module, self.count = sys.modules["pyhessian.hessian"], 0
        self.original = self.module.hessian_vector_product

    def __enter__(self) -> "_PyHessianCounter":
        def counted(*args: Any) -> Any:
            self.count += 1
            return self.original(*args)

        self.module.hessian_vector_product = counted
        return self

    def __exit__(self, *exc: object) -> None:
        self.module.hessian_vector_product = self.original


def _pyhessian(model: nn.Module, loss: nn.Module, data: tuple, device: torch.device, method: str,
               **kwargs: Any) -> tuple[float, Any, int]:
    """Time one PyHessian call (construction included) on a copy of the model; returns (seconds, output, HVPs)."""
    import pyhessian

    twin = copy.deepcopy(model)
    torch.manual_seed(0)
    with _PyHessianCounter() as counter:
        seconds, out = _timed(lambda: getattr(pyhessian.hessian(twin, loss, data=data, cuda=device.type == "cuda"),
                                              method)(**kwargs), device)
    return seconds, out, counter.count


def run(device: torch.device) -> dict[str, Any]:
    model, loss, data = _problem(device)
    x, y = data
    params = [p for p in model.parameters()]
    rows: dict[str, Any] = {"device": str(device), "parameters": sum(p.numel() for p in params)}
    probe = torch.randn(rows["parameters"], generator=torch.Generator().manual_seed(2)).to(device)

    # -- HVP vs gradient ----------------------------------------------------------------------
    def gradient() -> Any:
        return torch.autograd.grad(loss(model(x), y), params)

    op = hessian(model, loss, data)
    forward_op = hessian(model, loss, data, backend="forward_over_reverse")
    t = _min_times({"gradient": gradient, "hvp": lambda: op @ probe,
                    "hvp_built": lambda: hessian(model, loss, data) @ probe,
                    "hvp_forward": lambda: forward_op @ probe}, device, 15)
    t_hvp = t["hvp"]
    rows["hvp"] = {"gradient_s": t["gradient"], "hvp_s": t_hvp, "hvp_ratio": t_hvp / t["gradient"],
                   "hvp_with_graph_build_ratio": t["hvp_built"] / t["gradient"],
                   "forward_over_reverse_ratio": t["hvp_forward"] / t["gradient"]}

    # -- top eigenvalues -------------------------------------------------------------------------
    truth = top_eigenvalues(hessian(model, loss, data, dtype=torch.float64), 5, tol=1e-9, seed=1).values
    rows["ground_truth_top5"] = truth.tolist()
    for k in (1, 5):
        t_ours, ours = _fastest(lambda: top_eigenvalues(hessian(model, loss, data), k, tol=1e-4, seed=0), device, 3)
        t_theirs, (theirs, _), hvps = min((_pyhessian(model, loss, data, device, "eigenvalues", top_n=k)
                                           for _ in range(3)), key=lambda r: r[0])
        theirs = np.sort(np.array(theirs))[::-1]
        rows[f"top{k}"] = {
            "ours_s": t_ours, "ours_matvecs": ours.num_matvecs,
            "ours_max_rel_error": float(np.max(np.abs(ours.values - truth[:k]) / np.abs(truth[:k]))),
            "pyhessian_s": t_theirs, "pyhessian_hvps": hvps,
            "pyhessian_max_rel_error": float(np.max(np.abs(theirs - truth[:k]) / np.abs(truth[:k]))),
            "time_ratio": t_ours / t_theirs,
        }

    # -- trace ---------------------------------------------------------------------------------
    t_ours, estimate = _timed(lambda: trace(hessian(model, loss, data), num_probes=100, seed=0), device)
    t_theirs, samples, hvps = _pyhessian(model, loss, data, device, "trace", maxIter=100)
    rows["trace"] = {"ours_s": t_ours, "ours": estimate.estimate, "ours_stderr": estimate.stderr,
                     "ours_probes": estimate.num_matvecs, "pyhessian_s": t_theirs, "pyhessian": float(np.mean(samples)),
                     "pyhessian_stderr": (float(np.std(samples, ddof=1) / np.sqrt(len(samples)))
                                          if len(samples) > 1 else None),
                     "pyhessian_probes": hvps, "time_ratio": t_ours / t_theirs}

    # -- SLQ -----------------------------------------------------------------------------------
    t_ours, density = _timed(lambda: spectral_density(hessian(model, loss, data), num_steps=100, num_probes=5), device)
    try:
        t_theirs, _, hvps = _pyhessian(model, loss, data, device, "density", iter=100, n_v=5)
        theirs_note = f"{t_theirs:.2f} s, {hvps} HVPs"
    except RuntimeError as error:
        t_theirs, theirs_note = None, f"crashed: {str(error).splitlines()[0][:80]}"
    rows["slq"] = {"ours_s": t_ours, "ours_matvecs": density.num_matvecs, "ours_trace": density.trace_estimate,
                   "ritz_range": [density.ritz_min, density.ritz_max], "pyhessian": theirs_note,
                   "time_ratio": t_ours / t_theirs if t_theirs else None}

    # -- reorthogonalization overhead ----------------------------------------------------------
    # 100 Lanczos steps with and without full reorthogonalization (the difference is its cost)
    t_runs = _min_times({"with": lambda: lanczos(op, num_steps=100, seed=0),
                         "without": lambda: lanczos(op, num_steps=100, seed=0, reorthogonalize=False)}, device, 3)
    t_reorth = max(t_runs["with"] - t_runs["without"], 0.0)
    rows["reorthogonalization"] = {"lanczos_100_steps_s": t_runs["with"], "without_reorth_s": t_runs["without"],
                                   "hvp_100_s": 100 * t_hvp, "overhead_fraction_of_hvp_time": t_reorth / (100 * t_hvp)}
    return rows


def _table(rows: dict[str, Any]) -> str:
    h, t1, t5, tr, slq, ro = (rows[k] for k in ("hvp", "top1", "top5", "trace", "slq", "reorthogonalization"))
    lines = [
        f"curvature benchmark on {rows['device']}: MLP 784-256-256-10, batch 512, CE, float32, "
        f"P = {rows['parameters']}",
        f"{'measurement':<44}{'theorylab':>22}{'PyHessian 0.1':>24}{'ratio':>9}",
        f"{'HVP / gradient (cached graph; target <=1.8)':<44}{h['hvp_ratio']:>22.2f}{'':>24}{'':>9}",
        f"{'  HVP incl. graph build / gradient':<44}{h['hvp_with_graph_build_ratio']:>22.2f}{'':>24}{'':>9}",
        f"{'  forward-over-reverse HVP / gradient':<44}{h['forward_over_reverse_ratio']:>22.2f}{'':>24}{'':>9}",
    ]
    for name, r in (("top-1", t1), ("top-5", t5)):
        ours = f"{r['ours_s']:.2f}s {r['ours_matvecs']}mv {r['ours_max_rel_error']:.1e}"
        theirs = f"{r['pyhessian_s']:.2f}s {r['pyhessian_hvps']}mv {r['pyhessian_max_rel_error']:.1e}"
        label = name + " eigenvalues (time, HVPs, max rel err)"
        lines.append(f"{label:<44}{ours:>22}{theirs:>24}{r['time_ratio']:>9.2f}")
    their_err = f"{tr['pyhessian_stderr']:.3g}" if tr["pyhessian_stderr"] is not None else "n/a"
    ours = f"{tr['ours_s']:.2f}s {tr['ours']:.4g}+-{tr['ours_stderr']:.3g}"
    theirs = f"{tr['pyhessian_s']:.2f}s {tr['pyhessian']:.4g}+-{their_err} ({tr['pyhessian_probes']}p)"
    lines.append(f"{'trace, Hutchinson 100 probes':<44}{ours:>22}{theirs:>24}{tr['time_ratio']:>9.2f}")
    ratio = f"{slq['time_ratio']:.2f}" if slq["time_ratio"] else "-"
    lines.append(f"{'SLQ 100 steps x 5 probes':<44}{slq['ours_s']:>21.2f}s{slq['pyhessian'][:24]:>24}{ratio:>9}")
    lines.append(f"{'reorthogonalization / HVP time, 100 steps':<44}{ro['overhead_fraction_of_hvp_time']:>22.1%}")
    truth = np.array2string(np.array(rows["ground_truth_top5"]), precision=6)
    lines.append(f"ground truth top-5 (float64, tol 1e-9): {truth}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    rows = run(resolve_device(args.device))
    print(_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
