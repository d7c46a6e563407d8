"""The command line's promise, checked on the installed console script (a real process, as a user
runs it): bad input ends with one line on stderr, exit code 2, no traceback and no output files;
a closed pipe ends quietly; Ctrl-C says truthfully what was kept.  Inputs that only look unusual
(semicolons, tabs, gzip, UTF-16, decimal commas, column names in another case) are read."""
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from theorylab.cli.main import COMMANDS, build_parser, main
from theorylab.datasets import load_chinchilla

SCRIPT = Path(sys.executable).with_name("theorylab")
ROWS = [(1e8, 1e9), (1e9, 1e10), (1e10, 1e11), (2e8, 3e10), (3e9, 2e9), (5e9, 5e10), (7e8, 8e9), (4e8, 6e10)]
GOOD = "N,D,loss\n" + "\n".join(f"{n:g},{d:g},{1.7 + 400 * n ** -0.34 + 1500 * d ** -0.28!r}" for n, d in ROWS) + "\n"


def run_script(*args, stdin=None, timeout=180):
    env = {**os.environ, "THEORYLAB_PROGRESS": "0"}
    return subprocess.run([str(SCRIPT), *map(str, args)], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def xlsx_bytes(tmp_path):
    with zipfile.ZipFile(tmp_path / "book.zip", "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
    return (tmp_path / "book.zip").read_bytes()


# (case, file name, file content or a function of tmp_path, extra arguments, expected words)
BAD_INPUTS = [
    ("unknown form", "runs.csv", GOOD, ["--form", "chinchila"], "unknown form 'chinchila' (did you mean chinchilla?)"),
    ("missing column", "runs.csv", GOOD.replace("loss", "score"), [], "missing column"),
    ("constant loss", "runs.csv", "N,D,loss\n" + "".join(f"{n:g},{d:g},2.5\n" for n, d in ROWS), [],
     "same value 2.5 in every row"),
    ("renamed Excel workbook", "runs.csv", xlsx_bytes, [], "Excel .xlsx workbook"),
    ("old Excel workbook", "runs.csv", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, [], "Excel 97-2003"),
    ("not UTF-8", "runs.csv", GOOD.encode().replace(b"loss", b"l\xf6ss"), [], "not UTF-8 or UTF-16 text"),
    ("broken gzip", "runs.csv.gz", b"\x1f\x8b\x08\x00garbage", [], "cannot be decompressed"),
    ("empty file", "runs.csv", "", [], "is empty"),
    ("bad expression", "runs.csv", GOOD, ["--form", "E + A * N **"], "does not parse"),
    ("unknown parameter in bounds", "runs.csv", GOOD, ["--bounds", "gamma=0:1"], "'gamma' is not a parameter"),
    ("malformed init", "runs.csv", GOOD, ["--init", "alpha"], "expected NAME=NUMBER"),
    ("malformed bounds", "runs.csv", GOOD, ["--bounds", "alpha=0-1"], "expected NAME=LOW:HIGH"),
    ("unknown option", "runs.csv", GOOD, ["--frm", "power"], "unrecognized arguments"),
]


@pytest.mark.parametrize("case, name, content, extra, words", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_one_line_exit_2_no_output(case, name, content, extra, words, tmp_path):
    data = write(tmp_path, name, content(tmp_path) if callable(content) else content)
    out = tmp_path / "out"
    proc = run_script("fit", data, "--out", out, *extra)
    assert proc.returncode == 2, (case, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("theorylab fit: error:") and words in proc.stderr, proc.stderr
    assert proc.stdout == "" and not out.exists()


def test_paths_that_are_not_data_files(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    out = tmp_path / "out"
    for data, words in [(folder, "is a folder, not a data file"), (tmp_path / "nope.csv", "no such data file")]:
        proc = run_script("fit", data, "--out", out)
        assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    data = write(tmp_path, "runs.csv", GOOD)
    data.chmod(0)
    proc = run_script("fit", data, "--out", tmp_path / "out")
    assert proc.returncode == 2 and "Permission denied" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_out_that_is_a_file(tmp_path):
    data = write(tmp_path, "runs.csv", GOOD)
    taken = write(tmp_path, "taken", "keep me")
    proc = run_script("fit", data, "--out", taken)
    assert proc.returncode == 2 and "--out" in proc.stderr and "is a file" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and taken.read_text() == "keep me"


def test_unknown_command_and_missing_sweep_folder(tmp_path):
    proc = run_script("fitt", "x.csv")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "invalid choice" in proc.stderr
    proc = run_script("sweep", "status", tmp_path / "nothing")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "no sweep results" in proc.stderr


def test_stdout_closed_early_ends_quietly(tmp_path):
    data = write(tmp_path, "runs.csv", GOOD)
    for args in (["verify", "--list"], ["fit", data, "--out", tmp_path / "out"]):
        proc = subprocess.Popen([str(SCRIPT), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "THEORYLAB_PROGRESS": "0"})
        first = proc.stdout.readline()
        proc.stdout.close()  # as `| head -1` does
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=180)
        assert first.strip() and err == "", err
        assert code in (0, 141), code  # 0 when every line fitted in the pipe before it closed


def test_ctrl_c_during_a_fit_writes_nothing_and_says_so(tmp_path):
    data = tmp_path / "chinchilla.csv"
    load_chinchilla().to_csv(data, index=False)
    out = tmp_path / "out"
    proc = subprocess.Popen([str(SCRIPT), "fit", str(data), "--bootstrap", "100000", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "THEORYLAB_PROGRESS": "1"})
    err = bytearray()

    def read_stderr():
        while chunk := os.read(proc.stderr.fileno(), 4096):
            err.extend(chunk)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while b"bootstrap" not in err and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)  # the bootstrap's progress bar shows the fit is done and the bootstrap running
    assert b"bootstrap" in err, err.decode(errors="replace")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    reader.join(timeout=10)
    text = err.decode(errors="replace")
    last = text.replace("\r", "\n").strip().splitlines()[-1]
    assert last == "theorylab fit: interrupted; nothing was written (outputs are written only when the fit completes)"
    assert "Traceback" not in text and not out.exists()


# --- inputs that are fine, however they look -------------------------------------------------------
def _fit_params(path, out, *extra):
    assert main(["fit", str(path), "--out", str(out), "--format", "json", *extra]) == 0
    return json.loads((out / "fit.json").read_text())["fit"]["params"]


def test_separators_encodings_compression_and_column_names(tmp_path, capsys):
    reference = _fit_params(write(tmp_path, "plain.csv", GOOD), tmp_path / "o0")
    semicolon_decimal_comma = GOOD.replace(",", ";").replace(".", ",")
    variants = {
        "semicolon.csv": semicolon_decimal_comma.encode(),
        "tabs.tsv": GOOD.replace(",", "\t").encode(),
        "runs.csv.gz": gzip.compress(GOOD.encode()),
        "utf16.csv": GOOD.encode("utf-16"),
        "bom.csv": b"\xef\xbb\xbf" + GOOD.encode(),
        "no_suffix": GOOD.encode(),
        "cases.csv": GOOD.replace("N,D,loss", " n , d ,Loss ").encode(),
    }
    for i, (name, content) in enumerate(variants.items(), 1):
        params = _fit_params(write(tmp_path, name, content), tmp_path / f"o{i}")
        np.testing.assert_allclose(params["__ndarray__"], reference["__ndarray__"], rtol=1e-9, err_msg=name)


def test_a_reused_out_folder_keeps_no_stale_figures(tmp_path, capsys):
    data = tmp_path / "chinchilla.csv"
    load_chinchilla().to_csv(data, index=False)
    out = tmp_path / "out"
    assert main(["fit", str(data), "--bootstrap", "4", "--out", str(out)]) == 0
    assert (out / "bootstrap.png").exists()
    (out / "my_notes.txt").write_text("mine")
    assert main(["fit", str(data), "--out", str(out)]) == 0
    assert not (out / "bootstrap.png").exists() and not (out / "bootstrap.json").exists()
    assert (out / "my_notes.txt").read_text() == "mine" and (out / "contours.png").exists()
    assert "bootstrap" not in json.loads((out / "fit.json").read_text())


def test_suspect_fit_warnings_reach_stderr_and_the_report(tmp_path, capsys):
    N = np.logspace(5, 9.2, 40)
    rows = "\n".join(f"{float(n)!r},{float((8.8e13 / n) ** 0.076)!r}" for n in N)
    data = write(tmp_path, "kaplan.csv", "N,loss\n" + rows)
    assert main(["fit", str(data), "--form", "(Nc/N)**alpha", "--bounds", "alpha=0.1:", "--out",
                 str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "theorylab fit: warning: alpha = 0.1 is at its lower bound 0.1" in err
    assert "alpha = 0.1 is at its lower bound" in (tmp_path / "o" / "report.md").read_text()


def test_listed_summaries_match_the_commands():
    """main.py lists the commands without importing them; the summaries must say what the modules say."""
    for name in COMMANDS:
        parser = build_parser(name)
        sub = next(a for a in parser._actions if a.dest == "command")
        listed = {c.dest: c.help for c in sub._choices_actions}
        assert listed[name] == COMMANDS[name][1]


def test_help_and_version_start_without_the_numerical_libraries():
    code = ("import sys; from theorylab.cli.main import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'scipy', 'matplotlib', 'sympy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
