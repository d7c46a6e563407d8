"""Benchmark: PyTorch's default threading against one thread on small problems.

Run: ``.venv/bin/python benchmarks/bench_threads.py [--skip-notebook]``

Two workloads, each run in a fresh process twice -- with the default thread count (torch's and the
BLAS libraries', which is what a user gets) and inside ``theorylab.threads(1)``:

* the README tour (digits MLP trained 400 GD steps, Hessian top-5 eigenvalues by Lanczos, Hutch++
  trace with 90 probes, SLQ density), timed inside the process, imports excluded;
* the ``hessian_spectrum`` notebook executed by nbclient (kernel start included), with a first cell
  ``theorylab.threads(1)`` added for the one-thread run.

The thread counts and the machine's load are printed; results on a busy shared machine depend on
what else runs.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOUR = """
import time, torch
from torch import nn
import theorylab as tl
from theorylab.data import load_digits
from theorylab.models import MLP
from theorylab.train import train

def tour():
    digits = load_digits()
    model = MLP(64, [64, 64], 10, activation="tanh", seed=0)
    train(model, nn.CrossEntropyLoss(), digits.train, steps=400, lr=0.5, optimizer="gd")
    H = tl.hessian(model, nn.CrossEntropyLoss(), digits.train)
    tl.top_eigenvalues(H, k=5, which="LA", tol=1e-6)
    tl.trace(H, num_probes=90, method="hutch++", seed=0)
    tl.spectral_density(H, num_steps=80, num_probes=5)

start = time.perf_counter()
with tl.threads(THREADS):
    print("torch threads", torch.get_num_threads())
    tour()
print(f"seconds {time.perf_counter() - start:.2f}")
"""


def run_tour(threads: int | None) -> tuple[float, str]:
    code = TOUR.replace("THREADS", repr(threads))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = dict(line.rsplit(" ", 1) for line in out.strip().splitlines())
    return float(lines["seconds"]), lines["torch threads"]


def run_notebook(one_thread: bool) -> float:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "hessian_spectrum.ipynb", as_version=4)
    if one_thread:
        nb.cells.insert(0, nbformat.v4.new_code_cell("import theorylab\ntheorylab.threads(1)"))
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-notebook", action="store_true")
    args = parser.parse_args()
    print(f"CPU cores visible: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    default, threads = run_tour(None)
    one, _ = run_tour(1)
    print(f"README tour         default ({threads} torch threads) {default:7.1f} s   one thread {one:6.1f} s   "
          f"ratio {default / one:5.1f}x", flush=True)
    if not args.skip_notebook:
        default = run_notebook(False)
        one = run_notebook(True)
        print(f"hessian_spectrum    default                  {default:7.1f} s   one thread {one:6.1f} s   "
              f"ratio {default / one:5.1f}x")


if __name__ == "__main__":
    main()
