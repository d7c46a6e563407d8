"""The claims engine: typed checks, verdicts, controls, mutations, evidence files, resume, the report,
a record that only changes when a result does, and the verify command."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from theorylab import claims as cl
from theorylab.claims import checks as ck
from theorylab.claims import engine, report, suite
from theorylab.cli.main import main


# ---------------------------------------------------------------------------------------------
# Checks and verdicts
# ---------------------------------------------------------------------------------------------
def test_numpy_booleans_become_python_booleans():
    check = ck.Check("x", "bound", np.False_, np.float64(0.15), "<= 0.03")
    assert check.passed is False and type(check.measured) is float
    assert ck.Check("x", "bound", np.True_, 1.0, "").passed is True
    with pytest.raises(TypeError, match="bool or None"):
        ck.Check("x", "bound", np.float64(0.0), 1.0, "")
    with pytest.raises(TypeError, match="bool or None"):
        ck.Check("x", "bound", 1, 1.0, "")
    with pytest.raises(ValueError, match="kind"):
        ck.Check("x", "equality", True, 1.0, "")


def test_a_failed_numpy_comparison_refutes():
    """A deviation 15% against a NumPy bound of 3%: the comparison yields numpy.False_, the claim is refuted."""
    failed = ck.bound("max |du|/s", np.float64(0.150), upper=np.float64(0.030))
    assert failed.passed is False
    assert ck.verdict_of([failed, ck.bound("ok", 0.0, upper=1.0)])[0] == "refuted"


def test_verdict_rules():
    ok = ck.tolerance("a", 1.0, 1.0, 0.1, source="estimator error")
    fail = ck.bound("b", 0.0, lower=1.0)
    undecided = ck.undecided("c", kind="effect", predicted="> 0", why="not measured")
    unmet = ck.precondition("regime", False, requirement="reached")
    assert ck.verdict_of([ok]) == ("confirmed", "all 1 checks passed")
    assert ck.verdict_of([ok, undecided])[0] == "inconclusive"
    assert ck.verdict_of([ok, undecided, fail])[0] == "refuted"
    verdict, reason = ck.verdict_of([unmet, fail, ok])  # a precondition not met wins over a failed check
    assert verdict == "inconclusive" and "precondition not met: regime" in reason
    assert ck.verdict_of([ck.precondition("regime", np.True_, requirement="reached"), ok])[0] == "confirmed"
    with pytest.raises(ValueError, match="besides its preconditions"):
        ck.verdict_of([unmet])
    with pytest.raises(ValueError, match="besides its preconditions"):
        ck.verdict_of([])


def test_tolerances_and_slack_need_an_independent_source():
    with pytest.raises(ValueError, match="independent source"):
        ck.tolerance("a", 1.0, 1.0, 0.1, source="")
    with pytest.raises(ValueError, match="independent source"):
        ck.bound("b", 1.0, upper=1.0, slack=0.1)
    with pytest.raises(ValueError, match="not finite"):
        ck.bound("b", float("nan"), upper=1.0)
    assert ck.bound("b", 1.05, upper=1.0, slack=0.1, source="2 s.e.").passed is True
    assert ck.bound("b", 1.2, upper=1.0, slack=0.1, source="2 s.e.").passed is False
    assert ck.tolerance("e", 1.05, 1.0, 0.04, source="s").passed is False


@pytest.mark.parametrize("estimate, stderr, exceed, passed", [
    (0.5, 0.1, 0.0, True),      # [0.3, 0.7] lies above 0: the effect is there
    (0.1, 0.1, 0.0, None),      # [-0.1, 0.3]: neither above 0 nor below the smallest effect: no power
    (0.02, 0.05, 0.0, False),   # [-0.08, 0.12] lies below the smallest predicted effect 0.2: refuted
    (-0.1, 0.02, 0.0, False),   # the opposite sign
    (0.05, 0.01, 0.2, False),   # significant, but the prediction is an effect of at least 0.2
    (0.3, 0.01, 0.2, True),     # [0.28, 0.32] above the stated size
    (0.25, 0.05, 0.2, None),    # [0.15, 0.35] straddles it
])
def test_effect_checks_have_power(estimate, stderr, exceed, passed):
    check = ck.effect("e", estimate, stderr, smallest=0.2, exceed=exceed, source="declared")
    assert check.passed is passed and check.kind == "effect"


def test_paired_standard_errors():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([0.9, 1.9, 2.9])
    mean, se = ck.paired_difference(a, b)
    assert mean == pytest.approx(0.1) and se == pytest.approx(0.0, abs=1e-12)
    assert ck.mean_and_stderr([1.0, 3.0]) == pytest.approx((2.0, 1.0))
    with pytest.raises(ValueError, match="at least 2"):
        ck.mean_and_stderr([1.0])


# ---------------------------------------------------------------------------------------------
# A fake suite: measurement, judgement, control, mutations
# ---------------------------------------------------------------------------------------------
FAKE = textwrap.dedent('''
    import numpy as np
    from theorylab.claims import Judgement, Mutation, claim, bound, precondition, tolerance
    from theorylab.plotting import new_figure

    CALLS = []

    def figure(m, p):
        fig, ax = new_figure()
        ax.plot([0, 1], [0, float(m["x"])])
        return fig

    def half(): return 1.0

    def measure_good(ctx):
        CALLS.append(("good", ctx.control))
        return {"x": 0.0 if ctx.control else 1.0, "seeds": ctx.seeds(3, 5)}

    def judge_good(m, p):
        return Judgement([tolerance("x", m["x"], p.value(), 0.1, source="exact")], "x = 1", f"x = {m['x']}")

    claim("fake.good", title="good", citation="A 2020", statement="x is 1", tolerance="exact", control="x is 0",
          predictions={"value": half}, measure=measure_good, judge=judge_good, figure=figure,
          mutations=[Mutation("x predicted 2", predictions={"value": lambda: 2.0}),
                     Mutation("x measured 3", numbers=lambda m: {**m, "x": 3.0})])

    def measure_bad(ctx):
        return {"x": 2.0}

    claim("fake.bad", title="bad", citation="B 2021", statement="y <= 0", tolerance="exact", control="same",
          predictions={}, measure=measure_bad,
          judge=lambda m, p: Judgement([bound("y", m["x"], upper=0.0)], "y <= 0", "y = 2"), figure=figure,
          mutations=[Mutation("none", numbers=lambda m: m)])

    claim("fake.blind", title="blind", citation="C", statement="z", tolerance="-", control="the same experiment",
          predictions={}, measure=lambda ctx: {"x": 1.0},
          judge=lambda m, p: Judgement([bound("z", m["x"], upper=2.0)], "z <= 2", "z = 1"), figure=figure,
          mutations=[Mutation("none", numbers=lambda m: m)])

    claim("fake.unmet", title="unmet", citation="D", statement="w", tolerance="-", control="-",
          predictions={}, measure=lambda ctx: {"x": 1.0},
          judge=lambda m, p: Judgement([precondition("regime", False, requirement="reached"),
                                        bound("w", m["x"], upper=0.0)], "w", "w"), figure=figure,
          mutations=[Mutation("none", numbers=lambda m: m)])

    def crash(ctx):
        raise RuntimeError("boom")

    claim("fake.crash", title="crash", citation="E", statement="v", tolerance="-", control="-", predictions={},
          measure=crash, judge=judge_good, figure=figure, mutations=[Mutation("none", numbers=lambda m: m)])
''')


@pytest.fixture
def fake_analyses(tmp_path):
    folder = tmp_path / "user_claims"
    folder.mkdir()
    (folder / "fake_claims.py").write_text(FAKE)
    before = dict(cl.load_analyses())  # the shipped claims register once, on first import
    yield folder
    cl.REGISTRY.clear()
    cl.REGISTRY.update(before)
    sys.modules.pop(f"theorylab_user_analyses.{folder.name}.fake_claims", None)


def _fake_module(folder):
    return sys.modules[f"theorylab_user_analyses.{folder.name}.fake_claims"]


def test_claims_run_with_their_control_and_break_under_mutation(fake_analyses):
    registry = cl.load_analyses(fake_analyses)
    good = registry["fake.good"]
    ev = good.run(cl.Context(scale="quick"))
    assert ev.verdict == "confirmed" and ev.control["verdict"] == "refuted"
    assert ev.checks[0]["kind"] == "tolerance" and ev.checks[0]["source"] == "exact"
    assert [c for c in _fake_module(fake_analyses).CALLS] == [("good", False), ("good", True)]
    for mutation in good.mutations:
        assert good.judgement(ev.numbers, mutation).verdict == "refuted"
    with pytest.raises(ValueError, match="unknown predictions"):
        good.judgement(ev.numbers, cl.Mutation("bad", predictions={"nope": lambda: 0}))
    blind = registry["fake.blind"].run(cl.Context(scale="quick"))  # its control is confirmed too
    assert blind.verdict == "inconclusive" and "negative control is confirmed too" in blind.reason
    unmet = registry["fake.unmet"].run(cl.Context(scale="quick"))
    assert unmet.verdict == "inconclusive" and "regime" in unmet.reason
    crash = registry["fake.crash"].run(cl.Context(scale="quick"))
    assert crash.verdict == "error" and "RuntimeError: boom" in crash.notes


def test_claim_registration_is_checked(fake_analyses):
    registry = cl.load_analyses(fake_analyses)
    good = registry["fake.good"]
    with pytest.raises(ValueError, match="at least one mutation"):
        cl.claim("fake.x", title="t", citation="c", statement="s", tolerance="t", control="c", predictions={},
                 measure=good.measure, judge=good.judge, figure=good.figure, mutations=[])
    with pytest.raises(ValueError, match="needs a control"):
        cl.claim("fake.x", title="t", citation="c", statement="s", tolerance="t", control=" ", predictions={},
                 measure=good.measure, judge=good.judge, figure=good.figure, mutations=good.mutations)


def _tracked(out):
    """Every output file but the local evidence cache, as bytes."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and "evidence" not in p.parts}


def test_verify_writes_evidence_report_and_resumes(fake_analyses, tmp_path):
    registry = cl.load_analyses(fake_analyses)
    chosen = cl.select(["fake.good", "fake.bad", "fake.unmet", "fake.crash"], registry)
    out = tmp_path / "out"
    lines = []
    evidence = {e.claim_id: e for e in cl.verify(chosen, scale="quick", out_dir=out, progress=lines.append)}
    assert {k: e.verdict for k, e in evidence.items()} == {
        "fake.good": "confirmed", "fake.bad": "refuted", "fake.unmet": "inconclusive", "fake.crash": "error"}
    assert any("running" in line for line in lines) and any("left" in line for line in lines)
    for suffix in ("png", "pdf", "json"):
        assert (out / f"fake.good.{suffix}").exists()
    text = (out / "REPORT.md").read_text()
    assert "| `fake.bad` bad | B 2021 | y <= 0 | y = 2 | **refuted** | not run | refuted |" in text
    assert "Negative control (x is 0): **refuted**" in text
    assert "precondition not met: regime" in text
    results = json.loads((out / "results.json").read_text())
    assert results["meta"] == {"theorylab_version": results["meta"]["theorylab_version"], "scale": "quick"}
    assert len(results["evidence"]) == 4

    module = _fake_module(fake_analyses)
    module.CALLS.clear()
    again = cl.verify(chosen, scale="quick", out_dir=out, progress=None)
    assert module.CALLS == []  # finished claims are reused ...
    assert [e.verdict for e in again] == ["confirmed", "refuted", "inconclusive", "error"]
    (out / "evidence" / "fake.good.json").write_text('{"type": "Evid')  # ... a damaged record is recomputed
    cl.verify(chosen[:1], scale="quick", out_dir=out, progress=None)
    assert module.CALLS == [("good", False), ("good", True)]
    cl.verify(chosen[:1], scale="full", out_dir=out, progress=None)  # another scale is never reused
    assert len(module.CALLS) == 4


def test_an_unchanged_rerun_rewrites_no_recorded_file(fake_analyses, tmp_path):
    """A fresh clone has no evidence cache: recomputing unchanged claims must reproduce the record byte for byte
    (provenance, timings and figures are kept from the recorded run when the numbers are the same)."""
    chosen = cl.select(["fake.good", "fake.bad"], cl.load_analyses(fake_analyses))
    out = tmp_path / "out"
    cl.verify(chosen, scale="quick", out_dir=out, progress=None)
    before = _tracked(out)
    for path in (out / "evidence").glob("*.json"):
        path.unlink()
    cl.verify(chosen, scale="quick", out_dir=out, progress=None)
    assert _tracked(out) == before
    module = _fake_module(fake_analyses)
    module.CALLS.clear()


def test_an_error_never_replaces_good_evidence(fake_analyses, tmp_path, monkeypatch):
    registry = cl.load_analyses(fake_analyses)
    good = registry["fake.good"]
    out = tmp_path / "out"
    cl.verify([good], scale="quick", out_dir=out, progress=None)
    stored = (out / "evidence" / "fake.good.json").read_bytes()

    def broken(ctx):
        raise RuntimeError("device lost")

    registry["fake.good"] = engine.Claim(**{**good.__dict__, "measure": broken})
    (ev,) = cl.verify([registry["fake.good"]], scale="quick", out_dir=out, force=True, progress=None)
    assert ev.verdict == "error"
    assert (out / "evidence" / "fake.good.json").read_bytes() == stored
    assert (out / "evidence" / "fake.good.error.json").exists()
    text = (out / "REPORT.md").read_text()
    assert "**quick: confirmed**" in text and "raised an error" in text


def test_report_puts_the_other_scale_beside_and_flags_disagreement(fake_analyses, tmp_path):
    registry = cl.load_analyses(fake_analyses)
    good = registry["fake.good"]
    full = tmp_path / "figures" / "full"
    cl.verify([good], scale="full", out_dir=full, progress=None)
    results = json.loads((full / "results.json").read_text())
    results["evidence"][0]["verdict"] = "refuted"
    (full / "results.json").write_text(json.dumps(results))
    quick = tmp_path / "figures"
    cl.verify([good], scale="quick", out_dir=quick, compare_with=full, progress=None)
    text = (quick / "REPORT.md").read_text()
    assert "refuted (**disagrees**)" in text
    assert "full: **refuted**" in text and "**disagrees with quick**" in text and "commit" in text


def test_devices_are_checked_before_anything_runs():
    assert cl.check_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="not supported"):
        cl.check_device(torch.device("mps"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            cl.check_device(torch.device("cuda"))


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------
def test_verify_command(fake_analyses, tmp_path, capsys, monkeypatch):
    out = tmp_path / "cli"
    args = ["verify", "--analyses", str(fake_analyses), "--device", "cpu", "--out", str(out)]
    assert main(args + ["--only", "fake.good", "fake.bad"]) == 0
    assert (out / "REPORT.md").exists()
    assert main(args + ["--only", "fake.crash"]) == 1
    assert main(args + ["--only", "fake.nope"]) == 2
    assert "unknown claim id" in capsys.readouterr().err
    assert main(["verify", "--analyses", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert main(["verify", "--analyses", str(fake_analyses), "--list"]) == 0
    listed = capsys.readouterr().out
    assert "fake.good" in listed and "cohen2021.edge_of_stability" in listed  # shipped claims and the user's

    before = (out / "evidence" / "fake.good.json").read_bytes()
    assert main(["verify", "--analyses", str(fake_analyses), "--only", "fake.good", "--out", str(out),
                 "--device", "mps", "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "mps" in err and "not supported" in err
    assert (out / "evidence" / "fake.good.json").read_bytes() == before  # nothing ran, nothing was replaced

    monkeypatch.chdir(tmp_path)  # the default full-scale folder holds recorded results: refuse to replace them
    (tmp_path / "figures" / "full").mkdir(parents=True)
    (tmp_path / "figures" / "full" / "results.json").write_text('{"evidence": []}')
    assert main(["verify", "--analyses", str(fake_analyses), "--only", "fake.good", "--scale", "full",
                 "--device", "cpu"]) == 2
    assert "--out DIR" in capsys.readouterr().err
    assert main(["verify", "--analyses", str(fake_analyses), "--only", "fake.good", "--scale", "full",
                 "--device", "cpu", "--force"]) == 0


def test_claims_ship_with_the_package(tmp_path):
    """`theorylab verify --list` works outside a checkout: the claims are a subpackage of theorylab."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-m", "theorylab.cli.main", "verify", "--list"], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") >= 21 and "xiong2024.matrix_sensing_rates" in result.stdout


def test_report_cells_escape_markdown():
    assert report._md("a|b\nc") == "a\\|b c"
    assert suite.same_content({"x": 1.0, "meta": {"t": 1}}, {"x": 1.0 + 1e-12, "meta": {"t": 2}})
    assert not suite.same_content({"x": 1.0}, {"x": 1.1})
