"""Executors for sweeps: anything with the ``concurrent.futures.Executor`` interface.

* ``"serial"``: :class:`SerialExecutor`, runs each configuration in the calling process when it is
  submitted (Ctrl-C interrupts it there and then).
* ``"processes"``: a ``ProcessPoolExecutor`` with the ``spawn`` start method (forking a process that
  has started torch's thread pools is unsafe).
* any ``concurrent.futures.Executor`` instance, e.g. :func:`slurm_executor` (submitit, optional) or
  a ``ThreadPoolExecutor``.

Each run sets its own CPU thread count (:class:`theorylab.devices.threads`, one thread by default),
whatever executor runs it: ``n`` workers then use ``n`` cores instead of fighting over them, and a
run gives bit-for-bit the same numbers in the calling process, in a worker, or on a cluster node
(the thread count changes the order of floating-point reductions).
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any


class SerialExecutor(Executor):
    """Runs each submitted call at once, in the calling thread; returns a finished Future.

    An exception of the call is stored in the Future; KeyboardInterrupt and SystemExit propagate.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 -- handed to the caller through the Future
            future.set_exception(exc)
        return future


def process_pool(max_workers: int) -> ProcessPoolExecutor:
    """A process pool that starts its workers with ``spawn`` (fork is unsafe once torch runs threads);
    its workers end when the process that started them dies (see :func:`exit_with_parent`)."""
    return ProcessPoolExecutor(max_workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=exit_with_parent)


# ---------------------------------------------------------------------------------------------
# Workers that do not outlive their driver
# ---------------------------------------------------------------------------------------------
_worker_lock = threading.Lock()
_runs_in_progress = 0
_orphaned = False


def exit_with_parent() -> None:
    """In a worker process: end the process when its parent (the sweep's driver) dies.

    A pool's idle workers wait for work on a queue that they hold open themselves, so when the
    driver is killed (SIGKILL, out of memory) they would wait forever.  A daemon thread waits on the
    parent's sentinel (readable once the parent is gone) and then ends an idle worker at once; a
    worker in the middle of a run finishes it, stores its record -- nothing is lost, a resumed
    sweep reuses it -- and then ends (:func:`running`).
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    threading.Thread(target=_exit_when_gone, args=(parent.sentinel,), name="theorylab-parent-watch",
                     daemon=True).start()


def _exit_when_gone(sentinel: int) -> None:
    global _orphaned
    multiprocessing.connection.wait([sentinel])
    with _worker_lock:
        _orphaned = True
        if _runs_in_progress == 0:
            os._exit(0)


@contextmanager
def running() -> Iterator[None]:
    """Mark a run in progress in this process; an orphaned worker ends when its last run is stored."""
    global _runs_in_progress
    with _worker_lock:
        if _orphaned:
            os._exit(0)
        _runs_in_progress += 1
    try:
        yield
    finally:
        with _worker_lock:
            _runs_in_progress -= 1
            if _orphaned and _runs_in_progress == 0:
                os._exit(0)


class _SubmititExecutor(Executor):
    """A ``concurrent.futures.Executor`` over a submitit executor: one Slurm job per call.

    One thread polls the jobs every ``poll_interval`` seconds and completes their Futures.
    """

    def __init__(self, executor: Any, poll_interval: float):
        self._executor = executor
        self._poll_interval = poll_interval
        self._jobs: dict[Any, Future] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._poller = threading.Thread(target=self._poll, name="submitit-poller", daemon=True)
        self._poller.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._closed:
            raise RuntimeError("cannot submit to an executor that was shut down")
        future: Future = Future()
        job = self._executor.submit(fn, *args, **kwargs)
        with self._lock:
            self._jobs[job] = future
        return future

    def _poll(self) -> None:
        while True:
            with self._lock:
                jobs = list(self._jobs.items())
                if self._closed and not jobs:
                    return
            for job, future in jobs:
                if not job.done():
                    continue
                try:
                    future.set_result(job.result())
                except Exception as exc:  # noqa: BLE001 -- job failures go to the caller
                    future.set_exception(exc)
                with self._lock:
                    del self._jobs[job]
            time.sleep(self._poll_interval)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            if cancel_futures:
                for job, future in self._jobs.items():
                    job.cancel(check=False)
                    future.cancel()
                self._jobs.clear()
        if wait:
            self._poller.join()


def slurm_executor(folder: str | os.PathLike, *, poll_interval: float = 5.0, **parameters: Any) -> Executor:
    """An executor that runs each configuration as a Slurm job through submitit (optional extra).

    ``folder`` holds submitit's logs and pickles (it must be on a file system the nodes share, as
    must the sweep's ``out_dir``); ``parameters`` go to ``submitit.AutoExecutor.update_parameters``,
    e.g. ``timeout_min=60, slurm_partition="gpu", gpus_per_node=1, cpus_per_task=4``; pass
    ``cluster="local"`` to run the jobs as local processes (useful to try a set-up).
    """
    try:
        import submitit
    except ImportError:
        raise ImportError("slurm_executor needs submitit: pip install 'theorylab[slurm]'") from None
    if not poll_interval > 0:
        raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
    cluster = parameters.pop("cluster", None)
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    if parameters:
        executor.update_parameters(**parameters)
    return _SubmititExecutor(executor, poll_interval)
