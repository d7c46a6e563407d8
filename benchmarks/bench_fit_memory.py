"""Benchmark: ``theorylab fit`` on tables of 10^4 .. 10^6 rows -- peak memory and wall time.

Run: ``.venv/bin/python benchmarks/bench_fit_memory.py [--rows 1e4 1e5 1e6] [--limit-gb 8]``

Each size is a synthetic Chinchilla table (``L = E + A N^-alpha + B D^-beta`` with 1% log-normal
noise, N and D log-uniform, seed 0) written as CSV and fitted by the installed console script,
``theorylab fit data.csv --form chinchilla``, in its own process: the time is the command's wall
time (start-up, reading, fitting, writing ``fit.json``, the report and the figures) and the memory is
the process's peak resident set size (``ru_maxrss`` from ``wait4``).  The child runs under an
address-space limit (``--limit-gb``) so that a run that would need tens of gigabytes fails with a
MemoryError instead of taking the machine down.  The fit itself runs with one BLAS thread
(``theorylab.fits`` limits it); the command is started with ``OMP_NUM_THREADS=1``.

Target (issue 12): 1,000,000 rows within 2 GB and under 60 s.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

TRUE = {"E": 1.8, "A": 480.0, "B": 2100.0, "alpha": 0.35, "beta": 0.37}


def synthetic_table(rows: int, seed: int = 0) -> pd.DataFrame:
    """A Chinchilla-law table with 1% multiplicative noise."""
    rng = np.random.default_rng(seed)
    N = 10 ** rng.uniform(7, 10.5, rows)
    D = 10 ** rng.uniform(9, 12, rows)
    law = TRUE["E"] + TRUE["A"] * N ** -TRUE["alpha"] + TRUE["B"] * D ** -TRUE["beta"]
    return pd.DataFrame({"N": N, "D": D, "loss": law * np.exp(0.01 * rng.standard_normal(rows))})


def run_fit(csv: Path, out: Path, limit_gb: float) -> tuple[int, float, float, str]:
    """Run the console script on ``csv``: (exit code, seconds, peak RSS in GB, last line of stderr)."""
    script = Path(sys.executable).with_name("theorylab")
    limit = int(limit_gb * 2**30)

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "THEORYLAB_PROGRESS": "0"}
    start = time.perf_counter()
    proc = subprocess.Popen([str(script), "fit", str(csv), "--form", "chinchilla", "--out", str(out),
                             "--format", "json"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=limit_memory, env=env)
    stderr = proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return code, seconds, usage.ru_maxrss / 2**20, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, nargs="+", default=[1e4, 1e5, 1e6])
    parser.add_argument("--limit-gb", type=float, default=8.0, help="address-space limit of each fit process")
    args = parser.parse_args()
    print(f"CPU cores visible: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; "
          f"fit process: OMP_NUM_THREADS=1, address space limited to {args.limit_gb:g} GB")
    print(f"\n{'rows':>10s} {'exit':>5s} {'wall time':>10s} {'peak RSS':>10s}  note")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in (int(r) for r in args.rows):
            csv = Path(tmp) / f"runs_{rows}.csv"
            synthetic_table(rows).to_csv(csv, index=False)
            code, seconds, peak, last = run_fit(csv, Path(tmp) / f"out_{rows}", args.limit_gb)
            note = "" if code == 0 else last[:90]
            print(f"{rows:>10,d} {code:>5d} {seconds:>9.1f}s {peak:>8.2f} GB  {note}", flush=True)


if __name__ == "__main__":
    main()
