"""Reliability of sweeps under real failures: SIGKILL of the sweep or of a worker, concurrent sweeps.

Each test compares with an uninterrupted in-memory serial sweep of the same configurations (the
wall time, which no two runs share, is the only column left out), and checks the store directly:
finished records byte-identical, one record and one "ok" journal entry per run, no recomputation.
"""
import collections
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from sweep_workloads import numpy_run, read_calls
from theorylab.sweep import code_version, grid, sweep, sweep_status
from theorylab.sweep.runner import WORKER_DIED
from theorylab.sweep.store import run_key

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "sweep_workloads.py"


def _configs(seeds):
    return grid(seed=list(seeds), n=[32], sleep=[0.15])


def _reference(configs):
    return sweep(numpy_run, configs, progress=False).table().drop(columns="wall_time_s")


def _snapshot(out):
    return {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")}


def _ok_events(out):
    lines = (out / "index.jsonl").read_text().splitlines()
    return collections.Counter(json.loads(line)["key"] for line in lines if json.loads(line)["event"] == "ok")


def _wait_for(predicate, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep process ended early:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the sweep")
        time.sleep(0.01)


@pytest.fixture
def calls_log(tmp_path, monkeypatch):
    path = tmp_path / "calls.log"
    monkeypatch.setenv("SWEEP_CALLS_LOG", str(path))
    return path


@pytest.mark.parametrize("sig, executor", [(signal.SIGKILL, "processes"), (signal.SIGINT, "serial")],
                         ids=["SIGKILL-processes", "Ctrl-C-serial"])
def test_a_sweep_killed_at_a_random_moment_resumes_losing_and_repeating_nothing(tmp_path, calls_log, sig, executor):
    seeds, out = range(10), tmp_path / "store"
    configs = _configs(seeds)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(out), executor, "1" if executor == "serial" else "2",
                             *map(str, seeds)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    rng = random.Random()
    target, delay = rng.randint(2, 7), rng.uniform(0.0, 0.15)  # a random moment inside the sweep
    try:
        _wait_for(lambda: len(list((out / "runs").glob("*.json"))) >= target, 60, proc)
        time.sleep(delay)
    finally:
        # the driver and its workers: SIGKILL allows no clean-up; SIGINT is Ctrl-C in a terminal
        os.killpg(proc.pid, sig)
        output, _ = proc.communicate(timeout=60)
    before = _snapshot(out)
    moment = f"{sig.name} after {target} records + {delay:.3f} s, {len(before)} records on disk"
    assert proc.returncode != 0 and "sweep finished" not in output, moment
    assert 2 <= len(before) < len(seeds), moment

    resumed = sweep(numpy_run, configs, out_dir=out, progress=False)

    after = _snapshot(out)
    assert all(after[name] == data for name, data in before.items()), moment  # byte-identical
    assert len(after) == len(seeds) and set(after) == {f"{r['key']}.json" for r in resumed.records}
    assert resumed.meta["reused"] == len(before) and resumed.meta["computed"] == len(seeds) - len(before)
    assert max(_ok_events(out).values()) == 1, moment  # each run stored once
    calls = collections.Counter(c for c, _ in read_calls(calls_log))
    for record in resumed.records:
        count = calls[json.dumps(record["config"], sort_keys=True)]
        assert count == 1 if f"{record['key']}.json" in before else count >= 1, moment
    pd.testing.assert_frame_equal(resumed.table().drop(columns="wall_time_s"), _reference(configs))


def test_sigkill_of_one_worker_is_survived_without_losing_or_repeating_runs(tmp_path, calls_log):
    seeds, out = range(8), tmp_path / "store"
    configs = _configs(seeds)
    target = random.Random().randint(1, 5)
    killed, before = [], {}
    version = code_version(numpy_run)
    key_of = {json.dumps(c, sort_keys=True): run_key(c, version) for c in configs}

    def kill_a_worker():
        _wait_for(lambda: len(list((out / "runs").glob("*.json"))) >= target, 60)
        stored = {p.stem for p in (out / "runs").glob("*.json")}
        running = [pid for c, pid in read_calls(calls_log) if key_of[c] not in stored]
        pid = running[-1] if running else read_calls(calls_log)[-1][1]
        before.update(_snapshot(out))
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    res = sweep(numpy_run, configs, out_dir=out, executor="processes", max_workers=2, progress=False)
    killer.join()

    assert killed and res.meta["worker_restarts"] >= 1
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)  # the worker really is gone
    after = _snapshot(out)
    assert all(after[name] == data for name, data in before.items())
    assert len(after) == len(seeds) and max(_ok_events(out).values()) == 1
    assert all(r["status"] == "ok" for r in res.records)
    pd.testing.assert_frame_equal(res.table().drop(columns="wall_time_s"), _reference(configs))


def test_a_run_that_kills_its_worker_is_recorded_as_failed_and_the_others_finish(tmp_path, calls_log):
    configs = grid(seed=[0, 1], n=[16]) + [{"seed": 5, "n": 16, "die": True}] + grid(seed=[2, 4], n=[16])
    res = sweep(numpy_run, configs, out_dir=tmp_path, executor="processes", max_workers=1, progress=False)
    (failed,) = res.failed
    assert failed["config"]["die"] and failed["error"] == WORKER_DIED and res.meta["worker_restarts"] == 2
    survivors = [0, 1, 3, 4]
    assert [res.records[i]["status"] for i in survivors] == ["ok"] * 4
    pd.testing.assert_frame_equal(
        res.table().iloc[survivors].reset_index(drop=True).drop(columns=["wall_time_s", "die", "error"]),
        _reference([configs[i] for i in survivors]).drop(columns="error"))
    dies = [c for c, _ in read_calls(calls_log) if '"die": true' in c]
    assert len(dies) == 2  # a worker died running it; it died again running alone: the culprit
    again = sweep(numpy_run, configs, out_dir=tmp_path, executor="processes", max_workers=1, progress=False)
    assert again.meta["computed"] == 0 and again.failed[0]["error"] == WORKER_DIED


def test_two_concurrent_sweeps_with_different_grids_share_a_directory(tmp_path, calls_log):
    out = tmp_path / "store"
    seeds_a, seeds_b = list(range(0, 8)), list(range(4, 12))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), str(out), "serial", "1", *map(str, seeds)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for seeds in (seeds_a, seeds_b)]
    for proc in procs:
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output

    status = sweep_status(out)
    assert sorted((s.total, s.ok, s.pending) for s in status.sweeps) == [(8, 8, 0), (8, 8, 0)]
    assert status.records == 12 and not status.corrupt
    assert len(_ok_events(out)) == 12 and max(_ok_events(out).values()) == 1  # no record replaced
    for seeds in (seeds_a, seeds_b):
        configs = _configs(seeds)
        res = sweep(numpy_run, configs, out_dir=out, progress=False)
        assert res.meta["computed"] == 0
        pd.testing.assert_frame_equal(res.table().drop(columns="wall_time_s"), _reference(configs))


def _alive(pid):
    """Whether process ``pid`` runs (a zombie waiting for its new parent to reap it counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _children(pid):
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers in /proc")
def test_workers_end_when_only_the_driver_is_killed(tmp_path, calls_log):
    seeds, out = range(40), tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(out), "processes", "2", *map(str, seeds)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: len({pid for _, pid in read_calls(calls_log)}) == 2, 120, proc)  # both workers busy
        children = _children(proc.pid)  # the two workers and multiprocessing's resource tracker
    finally:
        proc.kill()  # SIGKILL of the driver only: no clean-up, the workers are not signalled
        proc.communicate(timeout=60)
    workers = {pid for _, pid in read_calls(calls_log)}
    assert workers <= children and proc.pid not in workers
    _wait_for(lambda: not any(_alive(pid) for pid in children), 30)
    # a worker that was in the middle of a run finished it and stored it before ending: nothing lost
    started = {c for c, _ in read_calls(calls_log)}
    stored = {json.dumps(json.loads(p.read_text())["record"]["config"], sort_keys=True)
              for p in (out / "runs").glob("*.json")}
    assert started == stored and len(stored) < len(seeds)
