"""Sweeps in one process: grids, records and tables, resume, failures, corrupt records, code versions."""
import json
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sweep_workloads import numpy_run
from theorylab.results import Result, result_class
from theorylab.sweep import SweepResult, code_version, grid, load_sweep, slurm_executor, sweep, sweep_status
from theorylab.sweep.store import Store

CALLS = []


def counted(config):
    """numpy_run, counting calls in this process (serial sweeps only)."""
    CALLS.append(json.dumps(config, sort_keys=True))
    return numpy_run(config)


@result_class
class _Fit(Result):
    slope: float
    residuals: np.ndarray
    extra: dict


def fit_run(config):
    x = np.arange(5.0)
    return _Fit(slope=2.0 * config["a"], residuals=x * config["a"], extra={"r2": 1.0}, meta={"seed": 0})


@dataclass(frozen=True)
class WidthConfig:
    width: int
    seed: int = 0


def width_run(config):
    g = torch.Generator().manual_seed(config.seed)
    return {"norm": float(torch.randn(config.width, generator=g).norm()), "global": float(torch.rand(()))}


def not_a_dict(config):
    return [1, 2]


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def _digest(out):
    return {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")}


# -- grid ------------------------------------------------------------------------------------------
def test_grid_is_the_cartesian_product_first_axis_slowest():
    assert grid(width=[8, 16], seed=[0, 1]) == [{"width": 8, "seed": 0}, {"width": 8, "seed": 1},
                                                {"width": 16, "seed": 0}, {"width": 16, "seed": 1}]
    assert grid({"opt.lr": (0.1,)}, seed=range(2)) == [{"opt.lr": 0.1, "seed": 0}, {"opt.lr": 0.1, "seed": 1}]


@pytest.mark.parametrize("kwargs, message", [({}, "at least one axis"), ({"width": []}, "is empty"),
                                             ({"name": "abc"}, "must be a list"), ({"w": 3}, "must be a list")])
def test_grid_rejects_bad_axes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        grid(**kwargs)


# -- records and table -----------------------------------------------------------------------------
def test_records_and_table_in_config_order_with_failures_kept():
    configs = grid(seed=[2, 0, 3], n=[8]) + [{"seed": 1, "n": 8, "fail": True}]
    res = sweep(numpy_run, configs, progress=False)
    assert isinstance(res, SweepResult) and [r["config"] for r in res.records] == configs
    ok = res.records[1]
    x = np.random.default_rng(0).normal(size=(8, 3))
    assert ok["status"] == "ok" and ok["error"] is None
    assert ok["result"]["mean"] == float(x.mean())
    np.testing.assert_array_equal(ok["result"]["curve"], np.cumsum(x[:, 0]))  # arrays come back as arrays
    assert res.records[2]["result"]["diverged"] == float("inf")
    (failed,) = res.failed
    assert failed["status"] == "failed" and failed["result"] is None
    assert "Traceback" in failed["error"] and "FloatingPointError: planted failure for seed 1" in failed["error"]
    table = res.table()
    assert list(table.columns) == ["key", "n", "seed", "fail", "status", "diverged", "global_draw", "mean",
                                   "norm", "error", "wall_time_s"]  # arrays (curve) stay in the records
    assert list(table["status"]) == ["ok", "ok", "ok", "failed"]
    assert table["error"].iloc[3] == "FloatingPointError: planted failure for seed 1"
    assert np.isinf(table["diverged"].iloc[2]) and np.isnan(table["mean"].iloc[3])
    assert table["key"].is_unique and (table["wall_time_s"] >= 0).all()


def test_a_result_object_is_kept_and_its_scalars_become_columns(tmp_path):
    res = sweep(fit_run, grid(a=[1.0, 3.0]), out_dir=tmp_path, progress=False)
    assert isinstance(res.records[1]["result"], _Fit) and res.records[1]["result"].slope == 6.0
    np.testing.assert_array_equal(res.records[1]["result"].residuals, np.arange(5.0) * 3)
    table = res.table()
    assert list(table["slope"]) == [2.0, 6.0] and list(table["extra.r2"]) == [1.0, 1.0]
    assert "meta" not in " ".join(table.columns) and "residuals" not in table.columns
    pd.testing.assert_frame_equal(load_sweep(tmp_path).table(), table)


def test_result_columns_that_clash_with_the_configuration_are_prefixed():
    table = sweep(_echo, [{"seed": 1, "status": "x"}], progress=False).table()
    assert table["seed"].iloc[0] == 1 and table["result.seed"].iloc[0] == 10
    assert table["status"].iloc[0] == "ok" and table["config.status"].iloc[0] == "x"
    assert table["result.status"].iloc[0] == "y"


def _echo(config):
    return {"seed": 10 * config["seed"], "status": "y"}


def test_a_function_that_does_not_return_a_dict_fails_with_a_clear_message():
    (record,) = sweep(not_a_dict, [{"a": 1}], progress=False).failed
    assert "must return a dict of JSON-safe values or a theorylab Result, got list" in record["error"]


def test_dataclass_configs_reach_the_function_as_dataclasses():
    res = sweep(width_run, [WidthConfig(4), WidthConfig(8, seed=1)], progress=False)
    assert [r["config"] for r in res.records] == [{"width": 4, "seed": 0}, {"width": 8, "seed": 1}]
    expected = float(torch.randn(8, generator=torch.Generator().manual_seed(1)).norm())
    assert res.records[1]["result"]["norm"] == expected


# -- reproducibility -------------------------------------------------------------------------------
def test_results_do_not_depend_on_order_or_executor_and_global_rngs_are_restored():
    configs = grid(seed=[0, 1, 2, 3], n=[6])
    torch.manual_seed(123)
    np.random.seed(7)
    random.seed(5)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    serial = sweep(numpy_run, configs, progress=False).table()
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    backwards = sweep(numpy_run, configs[::-1], progress=False).table().iloc[::-1].reset_index(drop=True)
    pd.testing.assert_frame_equal(backwards.drop(columns="wall_time_s"), serial.drop(columns="wall_time_s"))
    assert serial["global_draw"].nunique() == 4  # the global RNG is seeded per configuration
    with ThreadPoolExecutor(2) as pool:  # threads share the global RNGs: only the explicit seeds agree
        threads = sweep(numpy_run, configs, executor=pool, max_workers=2, progress=False).table()
    pd.testing.assert_frame_equal(threads.drop(columns=["wall_time_s", "global_draw"]),
                                  serial.drop(columns=["wall_time_s", "global_draw"]))


def threads_seen(config):
    return {"threads": torch.get_num_threads()}


def test_each_run_uses_the_requested_cpu_threads_and_the_caller_keeps_its_own():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = sweep(threads_seen, [{"a": 1}], progress=False)
        left = sweep(threads_seen, [{"a": 1}], progress=False, threads=None)
        assert one.records[0]["result"]["threads"] == 1 and left.records[0]["result"]["threads"] == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


class _CountingExecutor(ThreadPoolExecutor):
    """A user executor: sweeps use only the concurrent.futures interface."""

    submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        type(self).submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_any_executor_works_and_stays_the_callers_to_shut_down(tmp_path):
    with _CountingExecutor(2) as pool:
        res = sweep(numpy_run, grid(seed=[0, 1, 2], n=[4]), out_dir=tmp_path, executor=pool, progress=False)
        assert _CountingExecutor.submitted == 3 and len(res.records) == 3
        pool.submit(int, "1").result()  # still usable: the sweep did not shut it down


# -- resume ----------------------------------------------------------------------------------------
def test_a_second_call_recomputes_nothing_and_leaves_records_byte_identical(tmp_path):
    configs = grid(seed=[0, 1, 2], n=[4]) + [{"seed": 9, "n": 4, "fail": True}]
    first = sweep(counted, configs, out_dir=tmp_path, progress=False)
    before = _digest(tmp_path)
    assert len(CALLS) == 4 and len(before) == 4
    second = sweep(counted, configs, out_dir=tmp_path, progress=False)
    assert len(CALLS) == 4 and _digest(tmp_path) == before  # the failed run is not retried either
    assert second.meta["reused"] == 4 and second.meta["computed"] == 0
    pd.testing.assert_frame_equal(second.table(), first.table())

    third = sweep(counted, configs, out_dir=tmp_path, progress=False, rerun_failed=True)
    assert CALLS[4:] == [json.dumps(configs[3], sort_keys=True)] and third.meta["computed"] == 1
    replaced = list((tmp_path / "attic").glob("*.replaced.*.json"))
    assert len(replaced) == 1 and replaced[0].read_bytes() == before[replaced[0].name.split(".")[0] + ".json"]


def test_a_grown_grid_computes_only_the_new_configurations(tmp_path):
    sweep(counted, grid(seed=[0, 1], n=[4]), out_dir=tmp_path, progress=False)
    res = sweep(counted, grid(seed=[0, 1, 2, 3], n=[4]), out_dir=tmp_path, progress=False)
    assert len(CALLS) == 4 and res.meta["computed"] == 2 and len(sweep_status(tmp_path).sweeps) == 2


def test_the_code_version_decides_what_is_reused(tmp_path):
    configs = grid(seed=[0], n=[4])
    sweep(counted, configs, out_dir=tmp_path, progress=False, version="v1")
    sweep(counted, configs, out_dir=tmp_path, progress=False, version="v1")
    assert len(CALLS) == 1
    sweep(counted, configs, out_dir=tmp_path, progress=False, version="v2")
    assert len(CALLS) == 2
    sweep(counted, configs, out_dir=tmp_path, progress=False)  # source hash instead of a version
    assert len(CALLS) == 3 and len(list((tmp_path / "runs").glob("*.json"))) == 3
    by_source = code_version(counted)
    assert by_source["function"] == "counted" and len(by_source["source_sha256"]) == 16
    assert code_version(numpy_run)["source_sha256"] != by_source["source_sha256"]
    with pytest.raises(ValueError, match="pass version="):
        code_version(print)


# -- damaged records -------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate", "edit", "empty"])
def test_a_damaged_record_is_reported_set_aside_and_recomputed(tmp_path, damage):
    configs = grid(seed=[0, 1, 2], n=[4])
    first = sweep(counted, configs, out_dir=tmp_path, progress=False)
    victim = tmp_path / "runs" / f"{first.records[1]['key']}.json"
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "edit":  # still valid JSON: only the checksum can tell
        record = json.loads(data)
        record["record"]["result"]["mean"] += 1.0
        victim.write_text(json.dumps(record))
    else:
        victim.write_bytes(b"")
    status = sweep_status(tmp_path)
    assert [name for name, _ in status.corrupt] == [f"runs/{victim.name}"] and "CORRUPT" in status.format()
    with pytest.warns(RuntimeWarning, match="corrupt record"):
        assert len(load_sweep(tmp_path).records) == 2  # never loaded
    CALLS.clear()
    with pytest.warns(RuntimeWarning, match=f"corrupt record .*{victim.name}"):
        second = sweep(counted, configs, out_dir=tmp_path, progress=False)
    assert CALLS == [json.dumps(configs[1], sort_keys=True)] and second.meta["recovered"]
    pd.testing.assert_frame_equal(second.table().drop(columns="wall_time_s"),
                                  first.table().drop(columns="wall_time_s"))
    assert len(list((tmp_path / "attic").glob("*.corrupt.*.json"))) == 1 and not sweep_status(tmp_path).corrupt
    entries, _ = Store.open(tmp_path, create=False).journal_entries()
    assert [e["event"] for e in entries if e["key"] == first.records[1]["key"]] == ["ok", "corrupt", "ok"]


def test_a_record_copied_under_another_key_is_rejected(tmp_path):
    res = sweep(counted, grid(seed=[0, 1], n=[4]), out_dir=tmp_path, progress=False)
    a, b = (tmp_path / "runs" / f"{r['key']}.json" for r in res.records)
    b.write_bytes(a.read_bytes())
    (_, reason), = sweep_status(tmp_path).corrupt
    assert "does not belong" in reason


# -- two sweeps, one directory -----------------------------------------------------------------------
def test_two_sweeps_with_different_grids_keep_their_own_runs(tmp_path):
    a = sweep(counted, grid(seed=[0, 1, 2], n=[4]), out_dir=tmp_path, progress=False)
    b = sweep(counted, grid(seed=[2, 3], n=[4]) + grid(seed=[0], n=[8]), out_dir=tmp_path, progress=False)
    assert len(CALLS) == 5  # seed 2, n 4 is shared and computed once
    assert [r["config"]["seed"] for r in b.records] == [2, 3, 0]
    again = sweep(counted, grid(seed=[0, 1, 2], n=[4]), out_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(again.table(), a.table())
    status = sweep_status(tmp_path)
    assert [(s.total, s.ok) for s in status.sweeps] == [(3, 3), (3, 3)] and status.records == 5
    assert len(load_sweep(tmp_path).records) == 5
    assert [r["config"] for r in load_sweep(tmp_path, sweep_id=b.meta["sweep_id"][:6]).records] == \
        [r["config"] for r in b.records]


# -- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("configs, kwargs, message", [
    ([], {}, "empty"),
    ({"a": 1}, {}, "must be a list"),
    ([{"a": 1}, {"a": 1}], {}, r"configs\[0\] and configs\[1\] are the same"),
    ([{"a": np.int64(1)}], {}, r"configs\[0\] is not JSON-safe"),
    ([{"a": float("nan")}], {}, "not JSON-safe"),
    ([3], {}, "must be a dict or a dataclass"),
    ([{"a": 1}], {"executor": "threads"}, "executor must be"),
    ([{"a": 1}], {"executor": "serial", "max_workers": 2}, "one configuration at a time"),
    ([{"a": 1}], {"executor": "processes", "max_workers": 0}, "max_workers must be"),
    ([{"a": 1}], {"version": ""}, "version must be"),
    ([{"a": 1}], {"progress": "yes"}, "progress must be"),
    ([{"a": 1}], {"threads": 0}, "threads must be"),
])
def test_bad_input_is_a_clear_value_error(configs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sweep(numpy_run, configs, **{"progress": False, **kwargs})


def test_processes_need_a_picklable_function():
    with pytest.raises(ValueError, match="cannot be pickled"):
        sweep(lambda c: {"x": 1}, [{"a": 1}], executor="processes", progress=False)


def test_progress_bar_counts_reused_runs(tmp_path, capsys):
    sweep(numpy_run, grid(seed=[0, 1], n=[4]), out_dir=tmp_path, progress=True)
    sweep(numpy_run, grid(seed=[0, 1, 2], n=[4]), out_dir=tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "2/2" in err and "3/3" in err and "ok=3" in err and "failed=0" in err


# -- Slurm through submitit (optional extra) ---------------------------------------------------------
def test_slurm_executor_explains_a_missing_submitit(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(ImportError, match=r"pip install 'theorylab\[slurm\]'"):
        slurm_executor(tmp_path)


def test_submitit_jobs_give_the_same_table_as_a_serial_sweep(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    configs = [{"seed": 0, "n": 4}, {"seed": 2, "n": 4, "fail": True}]
    executor = slurm_executor(tmp_path / "jobs", cluster="local", poll_interval=0.1, timeout_min=2)
    try:
        res = sweep(numpy_run, configs, out_dir=tmp_path / "store", executor=executor, progress=False)
    finally:
        executor.shutdown()
    assert {r["pid"] for r in res.records}.isdisjoint({os.getpid()})  # each ran in a job process
    assert "planted failure" in res.failed[0]["error"]
    pd.testing.assert_frame_equal(res.table().drop(columns="wall_time_s"),
                                  sweep(numpy_run, configs, progress=False).table().drop(columns="wall_time_s"))
