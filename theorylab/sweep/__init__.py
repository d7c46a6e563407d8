"""Sweeps of many runs (training runs, measurements) on an executor, resumable with nothing lost.

    from theorylab.sweep import sweep, grid
    res = sweep(run_one, grid(width=[8, 16, 32], seed=[0, 1]), out_dir="runs/widths",
                executor="processes", max_workers=2)
    res.table()        # pandas: one row per run, configuration + scalar results + status
    res.failed         # records of runs that raised, with their traceback

Interrupt it at any point and call it again: finished runs are read back, the rest are computed.
See :mod:`theorylab.sweep.runner` (what a run's key depends on, seeding, workers that die) and
:mod:`theorylab.sweep.store` (the files, and why files rather than SQLite).
"""
from theorylab.sweep.executors import SerialExecutor, slurm_executor
from theorylab.sweep.result import SweepResult
from theorylab.sweep.runner import code_version, grid, sweep
from theorylab.sweep.status import StoreStatus, SweepProgress, load_sweep, sweep_status

__all__ = ["sweep", "grid", "SweepResult", "load_sweep", "sweep_status", "StoreStatus", "SweepProgress",
           "code_version", "SerialExecutor", "slurm_executor"]
