"""``theorylab fit``: a CSV round trip, other input formats, and every bad-input case exits with 2."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from theorylab.cli.main import main
from theorylab.datasets import load_chinchilla
from theorylab.fits import fit


@pytest.fixture(scope="module")
def chin_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "chinchilla.csv"
    load_chinchilla().to_csv(path, index=False)
    return path


def test_csv_round_trip_writes_json_markdown_and_figures(chin_csv, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["fit", str(chin_csv), "--bootstrap", "8", "--backtest", "0.8", "--out", str(out),
                 "--format", "json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "fit.json").read_text())
    direct = fit(load_chinchilla(), "chinchilla")
    assert saved["fit"]["objective"] == pytest.approx(direct.objective, rel=1e-12)
    assert printed["params"]["alpha"] == pytest.approx(direct["alpha"], rel=1e-12)
    assert saved["choices"]["penalty"] == "huber" and saved["choices"]["delta"] == 1e-3
    assert saved["bootstrap"]["num_resamples"] == 8 and "backtest" in saved and "compute_optimal" in saved
    assert "alpha" in (out / "report.md").read_text()
    for name in ("fitted_vs_observed", "contours", "bootstrap", "backtest"):
        assert (out / f"{name}.png").stat().st_size > 1000


def test_jsonl_from_stdin_and_derived_tokens(tmp_path, capsys, monkeypatch):
    table = load_chinchilla()[["N", "C", "loss"]]
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(table.to_json(orient="records", lines=True)))
    assert main(["fit", "-", "--out", str(tmp_path), "--format", "json"]) == 0
    saved = json.loads((tmp_path / "fit.json").read_text())
    assert saved["notes"] == ["D computed as C / (6 N)"]
    assert saved["fit"]["objective"] == pytest.approx(1.01827402e-3, rel=1e-8)


def test_power_form_with_column_mapping(tmp_path, capsys):
    x = np.logspace(1, 4, 20)
    path = tmp_path / "curve.csv"
    path.write_text("samples,err\n" + "\n".join(f"{a},{0.1 + 2 * a ** -0.5}" for a in x))
    assert main(["fit", str(path), "--form", "power", "--x", "samples", "--y", "err", "--out",
                 str(tmp_path / "o"), "--format", "json"]) == 0
    params = json.loads(capsys.readouterr().out)["params"]
    assert params["alpha"] == pytest.approx(0.5, rel=1e-7)
    assert (tmp_path / "o" / "learning_curve.png").exists()


def _write(tmp_path, text, name="bad.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


GOOD = "N,D,loss\n" + "\n".join(f"{n},{d},{1.7 + 400 * n ** -0.34 + 1500 * d ** -0.28}"
                                 for n, d in [(1e8, 1e9), (1e9, 1e10), (1e10, 1e11), (2e8, 3e10), (3e9, 2e9),
                                              (5e9, 5e10), (7e8, 8e9)])


@pytest.mark.parametrize("case, args, text, match", [
    ("missing column", [], GOOD.replace("loss", "score"), "missing column"),
    ("non-positive", [], GOOD.replace("1000000000.0,", "-1000000000.0,", 1), "non-positive"),
    ("non-finite", [], GOOD.replace("1000000000.0,", "nan,", 1), "non-finite"),
    ("not numeric", [], GOOD.replace("1000000000.0,", "abc,", 1), "not numeric"),
    ("too few points", [], "\n".join(GOOD.splitlines()[:4]), "too few points"),
    ("duplicate rows", [], GOOD + "\n" + GOOD.splitlines()[1], "duplicate rows"),
    ("bad expression", ["--form", "E + A * N **"], GOOD, "does not parse"),
    ("unsafe expression", ["--form", "__import__('os').getcwd()"], GOOD, "unknown function"),
    ("unknown function", ["--form", "E + A * foo(N)"], GOOD, "unknown function"),
    ("bad backtest", ["--backtest", "1.5"], GOOD, "quantile"),
    ("empty file", [], "", "empty"),
])
def test_bad_input_exits_2_with_one_line(case, args, text, match, tmp_path, capsys):
    code = main(["fit", _write(tmp_path, text), "--out", str(tmp_path / "o")] + args)
    err = capsys.readouterr().err.strip()
    assert code == 2, case
    assert len(err.splitlines()) == 1 and err.startswith("theorylab fit: error:") and match in err, err
    assert "Traceback" not in err


def test_missing_file_and_parquet_without_pyarrow(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nope.csv")]) == 2
    assert "no such data file" in capsys.readouterr().err
    pytest.importorskip("pandas")
    try:
        import pyarrow  # noqa: F401
        pytest.skip("pyarrow is installed")
    except ImportError:
        pass
    assert main(["fit", _write(tmp_path, "x", "runs.parquet")]) == 2
    assert "pip install 'theorylab[parquet]'" in capsys.readouterr().err


def test_console_script_reports_bad_input(tmp_path):
    script = Path(sys.executable).parent / "theorylab"
    proc = subprocess.run([str(script), "fit", _write(tmp_path, GOOD.replace("loss", "score")), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "missing column" in proc.stderr


def test_annealing_table_with_runs(tmp_path, capsys):
    from theorylab.fits import annealing_features

    rows = ["run,step,lr,loss"]
    steps = 300
    for run, lr in (("cos", 0.01 * 0.5 * (1 + np.cos(np.pi * np.arange(steps) / steps))),
                    ("wsd", 0.01 * np.where(np.arange(steps) < 240, 1.0, (steps - np.arange(steps)) / 60))):
        s1, s2 = annealing_features(lr)
        for step in range(steps):
            loss = 2.0 + 0.8 * s1[step] ** -0.5 - 0.3 * s2[step] if step else 9.0
            rows.append(f"{run},{step},{lr[step]},{loss}")
    path = tmp_path / "curves.csv"
    path.write_text("\n".join(rows))
    assert main(["fit", str(path), "--form", "annealing", "--group", "run", "--out", str(tmp_path / "o"),
                 "--format", "json"]) == 0
    params = json.loads(capsys.readouterr().out)["params"]
    np.testing.assert_allclose([params[k] for k in ("L0", "A", "C", "alpha")], [2.0, 0.8, 0.3, 0.5], rtol=1e-6)
    gap = path.read_text().replace("\ncos,5,", "\ncos,5x,")
    path.write_text("\n".join(line for line in gap.splitlines() if ",5x," not in line))
    assert main(["fit", str(path), "--form", "annealing", "--group", "run", "--out", str(tmp_path / "o")]) == 2
    assert "every step" in capsys.readouterr().err
