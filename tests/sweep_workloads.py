"""Sweep functions for the sweep tests (importable by spawned worker processes), and a driver script.

Every call is logged to the file named by ``$SWEEP_CALLS_LOG`` (one line: configuration and pid),
so tests can count how often each configuration was computed and find the worker running it.

    python tests/sweep_workloads.py OUT_DIR EXECUTOR MAX_WORKERS SEED [SEED ...]

runs ``numpy_run`` over ``grid(seed=SEEDS, n=[32])`` with ``sleep=0.15`` into OUT_DIR.
"""
import json
import os
import signal
import sys
import time

import numpy as np


def log_call(config):
    path = os.environ.get("SWEEP_CALLS_LOG")
    if path:
        line = json.dumps({"config": config, "pid": os.getpid()}, sort_keys=True) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def read_calls(path):
    """The logged calls, as (canonical configuration JSON, pid) pairs."""
    if not os.path.exists(path):
        return []
    entries = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    return [(json.dumps(e["config"], sort_keys=True), e["pid"]) for e in entries]


def numpy_run(config):
    """A deterministic little computation that takes ``sleep`` seconds; uses the global RNG too."""
    log_call(config)
    time.sleep(config.get("sleep", 0.0))
    rng = np.random.default_rng(config["seed"])
    x = rng.normal(size=(config["n"], 3))
    if config.get("fail"):
        raise FloatingPointError(f"planted failure for seed {config['seed']}")
    if config.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)
    return {"mean": float(x.mean()), "norm": float(np.linalg.norm(x)), "curve": np.cumsum(x[:, 0]),
            "global_draw": float(np.random.standard_normal()), "diverged": float("inf") if config["seed"] == 3 else 0.0}


def main(argv):
    from theorylab.sweep import grid, sweep

    # Ctrl-C raises KeyboardInterrupt as in a terminal, even when started from a background job
    signal.signal(signal.SIGINT, signal.default_int_handler)

    out_dir, executor, max_workers, *seeds = argv
    configs = grid(seed=[int(s) for s in seeds], n=[32], sleep=[0.15])
    sweep(numpy_run, configs, out_dir=out_dir, executor=executor, max_workers=int(max_workers), progress=False)
    print("sweep finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
