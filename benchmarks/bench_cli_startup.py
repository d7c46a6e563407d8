"""Benchmark: start-up time of the ``theorylab`` command (``--version``, ``--help``, each command's help).

Run: ``.venv/bin/python benchmarks/bench_cli_startup.py [--repeat 7]``

Each line runs the installed console script ``repeat`` times and reports the median wall time,
side by side with the floor -- a bare ``python -c pass`` of the same interpreter -- and with what
every command paid before the command line imported lazily: the modules behind all commands
(claims with torch, the fitting library with scipy, sympy and matplotlib, the sweeps).
Target (issue 12): under 1 s for ``--help`` and ``--version``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = str(Path(sys.executable).with_name("theorylab"))
CASES = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "eager imports (before)": [sys.executable, "-c", "import theorylab.claims, theorylab.fits.fitting, theorylab.sweep"],
    "theorylab --version": [SCRIPT, "--version"],
    "theorylab --help": [SCRIPT, "--help"],
    "theorylab fit --help": [SCRIPT, "fit", "--help"],
    "theorylab sweep --help": [SCRIPT, "sweep", "--help"],
    "theorylab verify --help": [SCRIPT, "verify", "--help"],
}


def median_seconds(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"CPU cores visible: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; "
          f"median of {args.repeat} runs (after one warm-up run each)")
    floor = None
    for name, cmd in CASES.items():
        median_seconds(cmd, 1)  # warm the file cache
        seconds = median_seconds(cmd, args.repeat)
        floor = floor or seconds
        print(f"{name:30s} {seconds:6.2f} s   {seconds / floor:5.1f}x the floor", flush=True)


if __name__ == "__main__":
    main()
