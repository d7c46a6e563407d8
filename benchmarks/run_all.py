"""Run every benchmark of this folder in turn (each prints its own table of ratios).

Usage: ``python benchmarks/run_all.py [--device cpu|cuda]``; the device is passed to the benchmarks
that take one.  Each runs in its own process so that their timings do not disturb each other.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

TAKES_DEVICE = {"bench_curvature.py", "bench_gradients.py", "bench_ntk.py"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    failures = 0
    for script in sorted(Path(__file__).parent.glob("bench_*.py")):
        extra = ["--device", args.device] if script.name in TAKES_DEVICE else []
        print(f"\n=== {script.name} {' '.join(extra)}", flush=True)
        failures += subprocess.run([sys.executable, str(script), *extra]).returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
