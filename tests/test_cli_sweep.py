"""``theorylab sweep status`` and ``theorylab sweep collect``, through the command-line entry point."""
import pandas as pd
import pytest

from sweep_workloads import numpy_run
from theorylab.cli.main import main
from theorylab.sweep import grid, sweep


@pytest.fixture
def store(tmp_path):
    out = tmp_path / "store"
    configs = grid(seed=[0, 1, 2], n=[4]) + [{"seed": 5, "n": 4, "fail": True}]
    res = sweep(numpy_run, configs, out_dir=out, progress=False)
    sweep(numpy_run, grid(seed=[7], n=[4]), out_dir=out, progress=False)
    return out, res


def test_status_counts_runs_per_sweep(store, capsys):
    out, res = store
    assert main(["sweep", "status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "5 record files, 2 sweep(s)" in text
    assert "4/4 done: 3 ok, 1 failed, 0 pending" in text and "1/1 done: 1 ok" in text
    assert res.meta["sweep_id"] in text and "sweep_workloads.numpy_run" in text


def test_status_reports_a_corrupt_record_with_exit_code_1(store, capsys):
    out, res = store
    victim = out / "runs" / f"{res.records[0]['key']}.json"
    victim.write_bytes(victim.read_bytes()[:100])
    assert main(["sweep", "status", str(out)]) == 1
    text = capsys.readouterr().out
    assert f"CORRUPT runs/{victim.name}: not valid JSON" in text and "1 corrupt" in text


def test_collect_writes_the_table(store, tmp_path):
    out, res = store
    target = tmp_path / "tables" / "all.csv"
    assert main(["sweep", "collect", str(out), "--to", str(target), "--sweep", res.meta["sweep_id"]]) == 0
    assert target.read_text() == res.table().to_csv(index=False)  # the table, every digit
    assert main(["sweep", "collect", str(out), "--to", str(target), "--status", "failed"]) == 0
    assert list(pd.read_csv(target)["seed"]) == [5]
    assert main(["sweep", "collect", str(out), "--to", str(target)]) == 0
    assert len(pd.read_csv(target)) == 5  # both sweeps


@pytest.mark.parametrize("argv, message", [
    (["sweep", "collect", "{out}", "--to", "t.xlsx"], "must end in .csv or .parquet"),
    (["sweep", "collect", "{out}", "--to", "t.csv", "--sweep", "zzz"], "matches 0 sweeps"),
    (["sweep", "status", "{missing}"], "no sweep results in"),
])
def test_bad_input_ends_with_exit_code_2(store, tmp_path, capsys, argv, message):
    out, _ = store
    argv = [a.format(out=out, missing=tmp_path / "missing") for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
