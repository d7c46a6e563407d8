"""Curvature at scale on a CPU: GPT-2-style language models of 1M to 91M parameters.

Each model is built with ``transformers`` from a config with random weights (GPT-2 architecture,
eager attention, vocabulary 8192, no dropout), on one batch of 4 x 64 random tokens, mean
next-token cross-entropy, float32.  For each size it measures, each task in a fresh process (so
that peak memory is that of the task alone):

* ``top1``: ``top_eigenvalues(k=1, tol=1e-4)`` with ``memory_budget`` set (thick restarts when
  the basis is capped), and the same without a budget below 90M parameters for comparison;
* ``slq``: ``spectral_density`` with 60 steps x 2 probes, keeping no basis
  (``reorthogonalize="none"``, ghosts reported) at every size, and with full reorthogonalization
  where its basis fits;
* ``hvp``: the time of one Hessian-vector product (cached graph) and of one gradient.

Peak memory is the peak resident set size of the process (``ru_maxrss``), model and data
included; ``basis_bytes`` is what the estimator reports for its stored basis.

Run: ``.venv/bin/python benchmarks/bench_curvature_scale.py [--sizes 1M 10M 30M 90M] [--threads 1]
[--json benchmarks/results/curvature_scale_cpu.json]``.  The default sizes (1M, 10M) take minutes;
all four take about an hour on a busy 2-core machine.  One thread: on a shared 2-core machine more
threads contend and make the small models many times slower.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from theorylab._io import atomic_write_json
from theorylab.curvature import hessian, spectral_density, top_eigenvalues

#: (layers, width, heads) of each size; vocabulary 8192, context 64
SIZES: dict[str, tuple[int, int, int]] = {"1M": (2, 96, 4), "10M": (4, 384, 6), "30M": (8, 512, 8),
                                          "90M": (12, 768, 12)}
BATCH, TOKENS, VOCAB = 4, 64, 8192
GIB = 2**30
#: the basis budget of each task at each size, bytes (None: unbounded)
BUDGET = 4 * GIB


class CausalLM(nn.Module):
    """A GPT-2 language model returning next-token logits flattened to ``(batch * (T - 1), vocab)``."""

    def __init__(self, layers: int, width: int, heads: int):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel
        from transformers.utils import logging

        logging.set_verbosity_error()  # the config's default GPT-2 token ids lie outside a small vocabulary
        config = GPT2Config(vocab_size=VOCAB, n_positions=TOKENS, n_embd=width, n_layer=layers, n_head=heads,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="eager")
        self.lm = GPT2LMHeadModel(config)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids).logits[:, :-1].reshape(-1, VOCAB)


def problem(size: str) -> tuple[nn.Module, nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = CausalLM(*SIZES[size]).eval()
    ids = torch.randint(0, VOCAB, (BATCH, TOKENS), generator=torch.Generator().manual_seed(1))
    return model, nn.CrossEntropyLoss(), (ids, ids[:, 1:].reshape(-1))


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def run_task(size: str, task: str) -> dict[str, Any]:
    """One task on one model, in this process."""
    model, loss, data = problem(size)
    params = sum(p.numel() for p in model.parameters())
    row: dict[str, Any] = {"size": size, "task": task, "parameters": params}
    start = time.perf_counter()
    if task == "hvp":
        op = hessian(model, loss, data)
        row["graph_build_s"] = time.perf_counter() - start
        probe = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(2))
        op @ probe  # warm-up
        t0 = time.perf_counter()
        op @ probe
        row["hvp_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        torch.autograd.grad(loss(model(data[0]), data[1]), list(model.parameters()))
        row["gradient_s"] = time.perf_counter() - t0
    elif task.startswith("top1"):
        budget = None if task == "top1_unbounded" else BUDGET
        result = top_eigenvalues(hessian(model, loss, data), 1, tol=1e-4, memory_budget=budget, seed=0)
        row.update(value=float(result.values[0]), relative_residual=float(result.residuals[0] / abs(result.values[0])),
                   converged=bool(result.converged[0]), matvecs=result.num_matvecs, restarts=result.num_restarts,
                   basis_bytes=result.basis_bytes, budget_bytes=budget)
    elif task.startswith("slq"):
        mode = task.split("_")[1]
        basis_dtype = torch.bfloat16 if task.endswith("bf16") else None
        density = spectral_density(hessian(model, loss, data), num_steps=60, num_probes=2, seed=0,
                                   reorthogonalize=mode, memory_budget=None if mode == "none" else BUDGET,
                                   basis_dtype=basis_dtype)
        row.update(reorthogonalize=mode, basis_dtype=str(basis_dtype), matvecs=density.num_matvecs,
                   ghosts=density.ghosts.tolist(),
                   ritz_range=[density.ritz_min, density.ritz_max], trace_estimate=density.trace_estimate,
                   basis_bytes=density.basis_bytes, reorthogonalized_steps=density.reorthogonalized_steps.tolist())
    else:
        raise ValueError(f"unknown task {task!r}")
    row["seconds"] = time.perf_counter() - start
    row["peak_rss_bytes"] = _peak_rss_bytes()
    return row


def tasks_for(size: str) -> list[str]:
    """SLQ without a basis everywhere; with full reorthogonalization where its 60 float32 vectors
    fit the budget, else partial with a bfloat16 basis where that fits."""
    tasks = ["hvp", "top1"] + (["top1_unbounded"] if size != "90M" else []) + ["slq_none"]
    params = sum(p.numel() for p in CausalLM(*SIZES[size]).parameters())
    if 60 * params * 4 <= BUDGET:
        tasks.append("slq_full")
    elif 60 * params * 2 + params * 4 <= BUDGET:  # bfloat16 rows and one row widened to float32
        tasks.append("slq_partial_bf16")
    return tasks


def _table(rows: list[dict[str, Any]], threads: int) -> str:
    lines = [f"curvature at scale, CPU ({threads} threads, {platform.processor() or platform.machine()}): GPT-2-style "
             f"LM, batch {BATCH} x {TOKENS} tokens, float32, basis budget {BUDGET / GIB:.0f} GiB",
             f"{'size':>5} {'P':>11} {'task':<15} {'time s':>8} {'products':>9} {'peak RSS GiB':>13} "
             f"{'basis GiB':>10}  result"]
    for r in rows:
        if r["task"] == "hvp":
            result = f"HVP {r['hvp_s']:.2f} s = {r['hvp_s'] / r['gradient_s']:.2f} x gradient"
            products, basis = "", ""
        elif r["task"].startswith("top1"):
            result = (f"lambda_max {r['value']:.6g}, residual {r['relative_residual']:.1e}, "
                      f"{'converged' if r['converged'] else 'NOT converged'}, {r['restarts']} restarts")
            products, basis = r["matvecs"], f"{r['basis_bytes'] / GIB:.2f}"
        else:
            result = f"ghosts per probe {r['ghosts']}, Ritz range [{r['ritz_range'][0]:.3g}, {r['ritz_range'][1]:.4g}]"
            products, basis = r["matvecs"], f"{r['basis_bytes'] / GIB:.2f}"
        lines.append(f"{r['size']:>5} {r['parameters']:>11,} {r['task']:<15} {r['seconds']:>8.1f} {products!s:>9} "
                     f"{r['peak_rss_bytes'] / GIB:>13.2f} {basis:>10}  {result}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1M", "10M"], choices=list(SIZES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None,
                        help="write the rows to this JSON file after every task; tasks already there are not rerun")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "TASK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_task(*args.one)))
        return
    rows: list[dict[str, Any]] = []
    if args.json and Path(args.json).exists():  # resume: keep the tasks done with these settings
        saved = json.loads(Path(args.json).read_text())
        if saved.get("threads") == args.threads and saved.get("torch") == torch.__version__:
            rows = saved["rows"]
    for size in args.sizes:
        for task in tasks_for(size):
            if any(r["size"] == size and r["task"] == task for r in rows):
                continue
            out = subprocess.run([sys.executable, __file__, "--one", size, task, "--threads", str(args.threads)],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(_table(rows[-1:], args.threads).splitlines()[-1], flush=True)
            if args.json:
                atomic_write_json(args.json, {"threads": args.threads, "torch": torch.__version__, "rows": rows})
    order = {size: i for i, size in enumerate(SIZES)}
    print(_table(sorted(rows, key=lambda r: order[r["size"]]), args.threads))


if __name__ == "__main__":
    main()
