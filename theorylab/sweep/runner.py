"""Run a function over many configurations on an executor, resumably, losing no finished run.

``sweep(fn, configs, out_dir=...)`` runs ``fn(config)`` for every configuration that has no record
in the store yet (see :mod:`theorylab.sweep.store`).  Each run writes its own record the moment it
finishes, from the process that ran it, so an interrupted sweep (Ctrl-C, a killed process, a node
lost) resumes where it stopped and recomputes nothing that finished.  A run that raises is recorded
as failed with its traceback; the others go on.  A worker process that dies (SIGKILL, out of
memory, a segfault) takes the runs in flight with it: they are retried one at a time, and a run
that kills its worker again when running alone is recorded as failed.  Workers do not outlive a driver that is killed: each finishes the run
it is in (its record is stored and reused on resume) and ends; idle workers end at once.

Reproducibility: before each run the global RNGs (``random``, numpy, torch) are seeded from a hash
of the configuration, and restored afterwards, so a run gives the same result whichever executor
runs it, in whatever order; a seed in the configuration is still the way to control it.  (Threads
of a ``ThreadPoolExecutor`` share one set of global RNGs, so there only the configuration's own
seeds make runs reproducible.)

What invalidates a stored result: the key of a run hashes its configuration, the theorylab version,
the function's qualified name, and the SHA-256 of the function's own source text (``inspect``) or,
when given, the ``version`` string instead.  Editing the function's body (comments included) makes
new keys, so everything is recomputed; edits to helpers the function calls, to data files or to
dependencies do not: bump ``version=`` for those.  Old records stay in the store (``theorylab
sweep status`` lists each sweep with its code version).
"""
from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import os
import pickle
import random
import socket
import sys
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from theorylab.provenance import Stopwatch, __version__, make_meta
from theorylab.results import Result, _encode
from theorylab.devices import threads as cpu_threads
from theorylab.sweep.executors import SerialExecutor, process_pool, running
from theorylab.sweep.progress import Progress
from theorylab.sweep.result import SweepResult, decode_record
from theorylab.sweep.store import CorruptRecord, Store, canonical_json, run_key, sha256_hex, utc_now

ExecutorSpec = Literal["serial", "processes"] | Executor
WORKER_DIED = ("the worker process running this configuration died, twice, the second time running "
               "alone (killed by a signal, out of memory, a crash in native code, or a worker that could "
               "not start: a script must guard its sweep with `if __name__ == '__main__':`); no Python "
               "traceback exists")


def grid(axes: Mapping[str, Iterable[Any]] | None = None, /, **more: Iterable[Any]) -> list[dict[str, Any]]:
    """The cartesian product of the axes, as a list of dicts (the first axis varies slowest).

    ``grid(width=[8, 16], seed=[0, 1])`` -> ``[{"width": 8, "seed": 0}, {"width": 8, "seed": 1},
    {"width": 16, "seed": 0}, {"width": 16, "seed": 1}]``.  Axes whose names are not identifiers go
    in a dict: ``grid({"optimizer.lr": [0.1, 0.01]})``.
    """
    merged = dict(axes or {})
    for name in more:
        if name in merged:
            raise ValueError(f"grid axis {name!r} is given twice")
    merged.update(more)
    if not merged:
        raise ValueError("grid needs at least one axis, e.g. grid(width=[8, 16])")
    values = []
    for name, axis in merged.items():
        if isinstance(axis, (str, bytes, Mapping)) or not isinstance(axis, Iterable):
            raise ValueError(f"grid axis {name!r} must be a list of values, got {axis!r}")
        axis = list(axis)
        if not axis:
            raise ValueError(f"grid axis {name!r} is empty")
        values.append(axis)
    return [dict(zip(merged, combo)) for combo in itertools.product(*values)]


def code_version(fn: Callable[..., Any], version: str | None = None) -> dict[str, str]:
    """What a stored result depends on besides its configuration (see the module docstring)."""
    name = getattr(fn, "__qualname__", type(fn).__qualname__)
    out = {"theorylab": __version__, "function": name}
    if version is not None:
        if not isinstance(version, str) or not version:
            raise ValueError(f"version must be a non-empty string, got {version!r}")
        out["version"] = version
        return out
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        raise ValueError(f"cannot read the source of {name} to version its results; "
                         "pass version='...' (bump it when the code changes)") from None
    out["source_sha256"] = sha256_hex(source)[:16]
    return out


@dataclass(frozen=True)
class Task:
    """One run, as sent to a worker: the function, its configuration, and where to store the record."""

    fn: Callable[[Any], Any]
    config: Any  # what fn receives: the caller's dict or dataclass
    config_dict: dict[str, Any]  # its JSON form, hashed into the key
    key: str
    code_version: dict[str, str]
    root: str | None
    threads: int | None


def run_task(task: Task) -> dict[str, Any]:
    """Run one configuration (in whatever process the executor chose) and store its record.

    Returns the record as stored (if another process stored this run first, that record).
    """
    with running():  # a worker whose driver died finishes and stores this run, then ends
        store = Store.open(task.root, create=True) if task.root is not None else None
        existing = _read_valid(store, task.key)
        if existing is not None:  # stored meanwhile by a concurrent sweep, or before a worker died
            return existing
        with _seeded(config_seed(task.config_dict)), cpu_threads(task.threads), Stopwatch() as watch:
            try:
                result, error = _encode_result(task.fn(task.config)), None
            except Exception:  # noqa: BLE001 -- a failing run is recorded, the sweep goes on
                result, error = None, traceback.format_exc()
        record = _as_stored(_record(task, "failed" if error else "ok", result, error, watch.seconds))
        return store.create(record) if store is not None else record


def config_seed(config: dict[str, Any]) -> int:
    """A 32-bit seed from the configuration's canonical JSON."""
    return int(sha256_hex(canonical_json(config))[:8], 16)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the global RNGs (random, numpy, torch CPU and CUDA) and restore their states afterwards."""
    import torch

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def _encode_result(value: Any) -> dict[str, Any]:
    if isinstance(value, Result):
        return value.to_dict()
    if not isinstance(value, Mapping):
        raise TypeError(f"a sweep function must return a dict of JSON-safe values or a theorylab Result, "
                        f"got {type(value).__name__}")
    encoded = _encode(dict(value))
    canonical_json(encoded)  # fails here, inside the run, if anything is left that JSON cannot hold
    return encoded


def _record(task: Task, status: str, result: dict[str, Any] | None, error: str | None,
            wall_time_s: float | None) -> dict[str, Any]:
    return {"key": task.key, "config": task.config_dict, "code_version": task.code_version, "status": status,
            "result": result, "error": error,
            "wall_time_s": None if wall_time_s is None else round(wall_time_s, 6),
            "finished_utc": utc_now(), "host": socket.gethostname(), "pid": os.getpid()}


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------
def sweep(fn: Callable[[Any], Any], configs: Sequence[Any], *, out_dir: str | os.PathLike | None = None,
          executor: ExecutorSpec = "serial", max_workers: int | None = None, progress: bool | None = None,
          rerun_failed: bool = False, version: str | None = None, threads: int | None = 1) -> SweepResult:
    """Run ``fn(config)`` for every configuration; return the records in the order of ``configs``.

    ``fn`` takes one configuration (a dict, or a dataclass instance) and returns a dict of JSON-safe
    values (numbers, strings, lists, numpy arrays, nested dicts) or a theorylab Result.  With
    ``out_dir`` every finished run is stored there at once and reused by later calls (resume);
    with ``out_dir=None`` the sweep is kept in memory only.  ``executor``: ``"serial"`` (in this
    process), ``"processes"`` (``max_workers`` spawned processes, default one per CPU), or any
    ``concurrent.futures.Executor`` (``max_workers`` then bounds the runs in flight; default all).
    For processes ``fn`` must be importable: defined at module level in a ``.py`` file.  Failed
    runs are kept as failed on later calls unless ``rerun_failed``.  ``version`` replaces the hash
    of ``fn``'s source in the code version.  ``threads``: the CPU threads each run uses (torch and
    BLAS), the same under every executor so that results agree to the last bit; None leaves the
    thread count alone (faster for one big model run serially, but its numbers then differ in the
    last bits from a run in a one-thread worker).  ``progress`` shows a bar of the runs (None: the
    automatic choice of :func:`theorylab.progress.progress_enabled`).
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}")
    if progress is not None and not isinstance(progress, bool):
        raise ValueError(f"progress must be True, False or None, got {progress!r}")
    if not isinstance(rerun_failed, bool):
        raise ValueError(f"rerun_failed must be True or False, got {rerun_failed!r}")
    workers = _check_executor(executor, max_workers)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    version_of_code = code_version(fn, version)
    objects, dicts = _normalise(configs)
    keys = [run_key(d, version_of_code) for d in dicts]
    _check_unique(keys, dicts)
    store = Store.open(out_dir, create=True) if out_dir is not None else None
    sweep_id = sha256_hex(canonical_json({"code": version_of_code, "keys": keys}))[:12]

    with Stopwatch() as watch:
        done: dict[str, dict[str, Any]] = {}
        recovered: list[str] = []
        if store is not None:
            module = getattr(fn, "__module__", None) or "?"
            store.write_manifest({"sweep_id": sweep_id, "function": f"{module}.{version_of_code['function']}",
                                  "code_version": version_of_code, "created_utc": utc_now(), "keys": keys,
                                  "configs": dicts})
            done, recovered = _stored_runs(store, keys, rerun_failed)
        tasks = [Task(fn, obj, d, key, version_of_code, None if store is None else str(store.root), threads)
                 for obj, d, key in zip(objects, dicts, keys) if key not in done]
        if executor == "processes" and tasks:
            _check_picklable(fn, tasks[0])
        statuses = [r["status"] for r in done.values()]
        bar = Progress(len(keys), ok=statuses.count("ok"), failed=statuses.count("failed"), enabled=progress)

        def finish(record: dict[str, Any]) -> None:
            done[record["key"]] = record
            bar.update(record["status"])

        try:
            restarts = _run(tasks, executor, workers, store, finish)
        finally:
            bar.close()
    records = [decode_record(done[key]) for key in keys]
    meta = make_meta(sweep_id=sweep_id, code_version=version_of_code,
                     executor=executor if isinstance(executor, str) else type(executor).__name__,
                     max_workers=workers, threads=threads, computed=len(tasks), reused=len(keys) - len(tasks),
                     recovered=recovered, worker_restarts=restarts, wall_time_s=round(watch.seconds, 3))
    return SweepResult(records=records, out_dir=None if store is None else str(store.root), meta=meta)


def _check_executor(executor: Any, max_workers: Any) -> int | None:
    if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int)
                                    or max_workers < 1):
        raise ValueError(f"max_workers must be a positive integer or None, got {max_workers!r}")
    if isinstance(executor, Executor):
        return max_workers
    if executor == "serial":
        if max_workers not in (None, 1):
            raise ValueError("executor='serial' runs one configuration at a time; "
                             "use executor='processes' for max_workers > 1")
        return 1
    if executor == "processes":
        return max_workers or os.cpu_count() or 1
    raise ValueError(f"executor must be 'serial', 'processes' or a concurrent.futures.Executor, got {executor!r}")


def _normalise(configs: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """The configurations as given (for ``fn``) and as canonical JSON dicts (for keys and records)."""
    if isinstance(configs, (Mapping, str, bytes)) or not isinstance(configs, Iterable):
        raise ValueError("configs must be a list of configurations (dicts or dataclass instances), "
                         "e.g. grid(width=[8, 16])")
    objects = list(configs)
    if not objects:
        raise ValueError("configs is empty: there is nothing to run")
    dicts = []
    for i, config in enumerate(objects):
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            as_dict = dataclasses.asdict(config)
        elif isinstance(config, Mapping):
            as_dict = dict(config)
        else:
            raise ValueError(f"configs[{i}] must be a dict or a dataclass instance, got {type(config).__name__}")
        if not all(isinstance(k, str) for k in as_dict):
            raise ValueError(f"configs[{i}] has a key that is not a string: {list(as_dict)}")
        try:
            text = canonical_json(as_dict)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"configs[{i}] is not JSON-safe ({exc}); use numbers, strings, booleans, "
                             "None, lists and dicts (int(x) / float(x) for numpy scalars)") from None
        dicts.append(json.loads(text))  # tuples become lists: the stored config is the hashed one
    return objects, dicts


def _check_unique(keys: list[str], dicts: list[dict[str, Any]]) -> None:
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key in first:
            raise ValueError(f"configs[{first[key]}] and configs[{i}] are the same configuration {dicts[i]}; "
                             "give repeats a distinct seed")
        first[key] = i


def _check_picklable(fn: Callable[..., Any], task: Task) -> None:
    main = sys.modules.get("__main__")
    if getattr(fn, "__module__", None) == "__main__" and not getattr(main, "__file__", None):
        raise ValueError(f"{task.code_version['function']} is defined in an interactive session, which worker "
                         "processes cannot import: put it in a .py module and import it")
    try:
        pickle.dumps(task)
    except Exception as exc:  # noqa: BLE001 -- any pickling failure gets the same advice
        raise ValueError(f"executor='processes' sends fn and each configuration to other processes, but they "
                         f"cannot be pickled ({exc}); define fn (and any config dataclass) at module level") from None


def _stored_runs(store: Store, keys: list[str], rerun_failed: bool) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Records already stored for ``keys``; corrupt ones are moved aside and reported."""
    done, recovered = {}, []
    for key in keys:
        try:
            record = store.read(key)
        except CorruptRecord as exc:
            warnings.warn(f"sweep: corrupt record {exc.path} ({exc.reason}); moved to attic/, recomputing",
                          RuntimeWarning, stacklevel=3)
            store.set_aside(key, "corrupt", exc.reason)
            recovered.append(f"{key}: {exc.reason}")
            continue
        if record is not None and record["status"] == "failed" and rerun_failed:
            store.set_aside(key, "replaced", "rerun_failed=True")
            continue
        if record is not None:
            done[key] = record
    return done, recovered


def _run(tasks: list[Task], spec: ExecutorSpec, workers: int | None, store: Store | None,
         finish: Callable[[dict[str, Any]], None]) -> int:
    """Submit the tasks, at most ``workers`` in flight, hand each record to ``finish``; return the
    number of times the process pool was replaced.

    When a worker of our process pool dies, the pool is replaced and the runs it took down become
    suspects, retried one at a time: a suspect whose worker dies again while it runs alone is
    recorded as failed (:data:`WORKER_DIED`), so one run that kills its worker cannot stop the sweep.
    """
    if not tasks:
        return 0
    restartable = spec == "processes"
    if spec == "serial":
        executor: Executor = SerialExecutor()
    elif restartable:
        workers = min(workers or 1, len(tasks))
        executor = process_pool(workers)
    else:
        executor = spec  # type: ignore[assignment]
    window = workers or len(tasks)
    pending, inflight = deque(tasks), {}
    suspects: set[str] = set()
    restarts = 0
    try:
        while pending or inflight:
            while pending and len(inflight) < (1 if suspects else window):
                task = pending.popleft()
                inflight[executor.submit(run_task, task)] = task
            finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            lost: list[Task] = []
            for future in finished:
                task = inflight.pop(future)
                record = _outcome(future, task, store, restartable)
                if record is None:
                    lost.append(task)
                    continue
                suspects.discard(task.key)
                finish(record)
            if lost:
                lost += inflight.values()  # a broken pool fails every run in flight
                inflight.clear()
                executor.shutdown(wait=True)
                executor = process_pool(workers or 1)
                restarts += 1
                alone = len(lost) == 1 and lost[0].key in suspects
                for task in reversed(lost):
                    stored = _read_valid(store, task.key)
                    if stored is not None or alone:
                        suspects.discard(task.key)
                        finish(stored if stored is not None else _store_failure(task, WORKER_DIED, store))
                    else:
                        suspects.add(task.key)
                        pending.appendleft(task)
    except BaseException:
        if spec == "serial" or restartable:
            executor.shutdown(wait=False, cancel_futures=True)
        raise
    if spec == "serial" or restartable:
        executor.shutdown(wait=False)  # every run is back; idle workers exit on their own
    return restarts


def _outcome(future: Future, task: Task, store: Store | None, restartable: bool) -> dict[str, Any] | None:
    """The record of a finished future; None when our process pool broke (a worker died).

    ``run_task`` records the exceptions of ``fn`` itself, so an exception here comes from the
    executor (a job killed by the scheduler, an unpicklable configuration ...): recorded as failed.
    """
    try:
        return future.result()
    except BrokenProcessPool:
        if restartable:
            return None
        raise RuntimeError("the executor's worker processes died; finished runs are saved, "
                           "run the sweep again to resume") from None
    except Exception:  # noqa: BLE001 -- recorded, the sweep goes on
        return _store_failure(task, "the executor failed to run this configuration:\n" + traceback.format_exc(),
                              store)


def _store_failure(task: Task, error: str, store: Store | None) -> dict[str, Any]:
    record = _as_stored(_record(task, "failed", None, error, None))
    return store.create(record) if store is not None else record


def _as_stored(record: dict[str, Any]) -> dict[str, Any]:
    """The record as a store would give it back (keys sorted), so memory and disk sweeps agree."""
    return json.loads(canonical_json(record))


def _read_valid(store: Store | None, key: str) -> dict[str, Any] | None:
    if store is None:
        return None
    try:
        return store.read(key)
    except CorruptRecord:
        return None  # recomputed; Store.create moves the damaged file aside
