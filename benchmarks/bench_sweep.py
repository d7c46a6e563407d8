"""Benchmark of theorylab.sweep: 16 short training runs on 2 local processes vs serial, and the
cost of the results store per run.

    .venv/bin/python benchmarks/bench_sweep.py [--runs 16] [--steps 1000] [--workers 2]

Each run trains ``MLP(64, [width], 10)`` with full-batch gradient descent on the digits data
(``theorylab.train.train``) and returns its final train loss and test accuracy.  Printed:

* wall time serial vs ``executor="processes"`` with ``--workers`` (both with the default of one CPU
  thread per run), serial with torch's own thread count (``threads=None``) for comparison, the
  speed-ups, and whether the serial and process tables are identical to the last bit;
* the results store's cost per run: writing a record (checksum, fsync, hard link, journal line)
  and reading it back with its checksum verified (resume), against one training run.
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
from theorylab.sweep.store import Store, run_key
from theorylab.metrics import accuracy
from theorylab.train import train


def train_digits(config: dict) -> dict:
    """One training run: MLP of the given width, full-batch GD, fixed seeds from the configuration."""
    data = load_digits(seed=0)
    model = MLP(64, [config["width"]], 10, seed=config["seed"])
    history = train(model, nn.CrossEntropyLoss(), data.train, steps=config["steps"], lr=config["lr"],
                    seed=config["seed"])
    return {"final_loss": float(history.loss[-1]), "test_accuracy": accuracy(model, data.test)}


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def store_overhead(record: dict, count: int) -> tuple[float, float]:
    """Seconds per record to write (checksum, fsync, link, journal) and to read back (verify)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(tmp, create=True)
        records = []
        for i in range(count):
            config = {**record["config"], "copy": i}
            records.append({**record, "config": config, "key": run_key(config, record["code_version"])})
        _, t_write = _timed(lambda: [store.create(r) for r in records])
        _, t_read = _timed(lambda: [store.read(r["key"]) for r in records])
    return t_write / count, t_read / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store-records", type=int, default=200)
    args = parser.parse_args()
    widths = [32, 64, 128, 256]
    configs = grid(width=widths, seed=list(range(args.runs // len(widths))), steps=[args.steps], lr=[0.5])
    print(f"{len(configs)} runs of MLP(64, [width], 10) x {args.steps} GD steps on digits; "
          f"{len(os.sched_getaffinity(0))} usable CPUs, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")

    train_digits({**configs[0], "steps": 1})  # warm this process up, as the workers warm up in their first run
    serial, t_serial = _timed(sweep, train_digits, configs, progress=False)
    _, t_default = _timed(sweep, train_digits, configs, progress=False, threads=None)
    parallel, t_parallel = _timed(sweep, train_digits, configs, executor="processes", max_workers=args.workers,
                                  progress=False)
    same = serial.table().drop(columns="wall_time_s").equals(parallel.table().drop(columns="wall_time_s"))
    run_time = float(serial.table()["wall_time_s"].mean())
    busy = float(parallel.table()["wall_time_s"].sum()) / args.workers
    print(f"serial, 1 thread per run (default): {t_serial:7.2f} s  ({run_time:.3f} s per run)")
    print(f"serial, torch's own thread count:   {t_default:7.2f} s  (threads=None)")
    print(f"processes x {args.workers}, 1 thread each:      {t_parallel:7.2f} s  speed-up {t_serial / t_parallel:.2f}x "
          f"over serial, {t_default / t_parallel:.2f}x over threads=None")
    print(f"  of which starting the workers (spawn, import torch) ~ {t_parallel - busy:.1f} s; "
          f"runs in workers {busy:.1f} s per worker (first run of each includes torch's warm-up)")
    print(f"  tables of serial and processes identical to the last bit: {same}; "
          f"mean test accuracy {serial.table()['test_accuracy'].mean():.3f}")

    write, read = store_overhead(serial.records[0], args.store_records)
    print(f"results store per run: write {1e3 * write:.2f} ms (checksum, fsync, hard link, journal), "
          f"read + verify {1e3 * read:.3f} ms = {100 * write / run_time:.3f} % / {100 * read / run_time:.4f} % "
          "of one training run")


if __name__ == "__main__":
    main()
