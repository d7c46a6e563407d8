"""Benchmark of theorylab.sweep: 16 short training runs on 2 local processes vs serial, and the
cost of the results store per run.

    .venv/bin/python benchmarks/bench_sweep.py [--runs 16] [--steps 300] [--workers 2]

Each run trains ``MLP(64, [width], 10)`` with full-batch gradient descent on the digits data
(``theorylab.train.train``) and returns its final train loss and test accuracy.  Printed:

* wall time serial vs ``executor="processes"`` with ``--workers`` (both with the default of one CPU
  thread per run), the speed-up, and whether the two tables are identical to the last bit;
* the store's overhead per run: a sweep of a function that does nothing, with and without
  ``out_dir`` (record written + fsync'ed + journal line), and reading every record back (resume),
  set against the mean wall time of one training run.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from torch import nn

from theorylab.data import load_digits
from theorylab.models import MLP
from theorylab.sweep import grid, sweep
from theorylab.train import accuracy, train


def train_digits(config: dict) -> dict:
    """One training run: MLP of the given width, full-batch GD, fixed seeds from the configuration."""
    data = load_digits(seed=0)
    model = MLP(64, [config["width"]], 10, seed=config["seed"])
    history = train(model, nn.CrossEntropyLoss(), data.train, steps=config["steps"], lr=config["lr"],
                    seed=config["seed"])
    return {"final_loss": float(history.loss[-1]), "test_accuracy": accuracy(model, data.test)}


def nothing(config: dict) -> dict:
    return {"i": config["i"]}


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store-runs", type=int, default=200)
    args = parser.parse_args()
    widths = [32, 64, 128, 256]
    configs = grid(width=widths, seed=list(range(args.runs // len(widths))), steps=[args.steps], lr=[0.5])
    print(f"{len(configs)} runs of MLP(64, [width], 10) x {args.steps} GD steps on digits; "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, one thread per run; load average "
          f"{os.getloadavg()[0]:.1f}")

    serial, t_serial = _timed(sweep, train_digits, configs, progress=False)
    parallel, t_parallel = _timed(sweep, train_digits, configs, executor="processes", max_workers=args.workers,
                                  progress=False)
    same = serial.table().drop(columns="wall_time_s").equals(parallel.table().drop(columns="wall_time_s"))
    run_time = float(serial.table()["wall_time_s"].mean())
    print(f"serial:             {t_serial:6.2f} s  ({run_time:.3f} s per run)")
    print(f"processes x {args.workers}:      {t_parallel:6.2f} s  speed-up {t_serial / t_parallel:.2f}x "
          f"(includes starting the workers); tables identical: {same}")
    print(f"mean test accuracy {serial.table()['test_accuracy'].mean():.3f}")

    small = grid(i=list(range(args.store_runs)))
    with tempfile.TemporaryDirectory() as tmp:
        _, t_memory = _timed(sweep, nothing, small, progress=False)
        _, t_store = _timed(sweep, nothing, small, out_dir=tmp, progress=False)
        resumed, t_resume = _timed(sweep, nothing, small, out_dir=tmp, progress=False)
        assert resumed.meta["computed"] == 0
    per_write = (t_store - t_memory) / len(small)
    per_read = t_resume / len(small)
    print(f"store, {len(small)} empty runs: in memory {t_memory:.3f} s, with out_dir {t_store:.3f} s, "
          f"resume (read + verify all) {t_resume:.3f} s")
    print(f"store overhead per run: write {1e3 * per_write:.2f} ms, read {1e3 * per_read:.2f} ms "
          f"= {100 * per_write / run_time:.2f} % / {100 * per_read / run_time:.2f} % of one training run")


if __name__ == "__main__":
    main()
