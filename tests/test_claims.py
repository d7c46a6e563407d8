"""The claims framework: verdicts, evidence files, resume, the report and the verify command."""
import json
import sys
import textwrap

import pytest

from theorylab import claims as cl
from theorylab.cli.main import main

FAKE = textwrap.dedent('''
    from theorylab.claims import claim, Outcome, check_close, check_at_most, check_undecided
    from theorylab.plotting import new_figure

    CALLS = []

    def _fig():
        fig, ax = new_figure()
        ax.plot([0, 1], [0, 1])
        return fig

    @claim("fake.good", title="good", citation="A 2020", statement="x is 1", tolerance="exact")
    def good(ctx):
        CALLS.append("good")
        return Outcome([check_close("x", ctx.pick(1.0, 1.0), 1.0, atol=1e-9)], _fig(), "x = 1", "x = 1",
                       numbers={"x": 1.0})

    @claim("fake.bad", title="bad", citation="B 2021", statement="y <= 0", tolerance="exact")
    def bad(ctx):
        return Outcome([check_at_most("y", 2.0, 0.0)], _fig(), "y <= 0", "y = 2")

    @claim("fake.unsure", title="unsure", citation="C", statement="z", tolerance="-")
    def unsure(ctx):
        return Outcome([check_close("x", 1.0, 1.0, atol=0.1), check_undecided("z", None, "z > 0", "not reached")],
                       None, "z > 0", "n/a")

    @claim("fake.crash", title="crash", citation="D", statement="w", tolerance="-")
    def crash(ctx):
        raise RuntimeError("boom")
''')


@pytest.fixture
def fake_analyses(tmp_path):
    folder = tmp_path / "analyses"
    folder.mkdir()
    (folder / "fake_claims.py").write_text(FAKE)
    before = dict(cl.REGISTRY)
    yield folder
    cl.REGISTRY.clear()
    cl.REGISTRY.update(before)
    sys.modules.pop("theorylab_analyses.fake_claims", None)


def test_verdict_rules():
    ok = cl.check_close("a", 1.0, 1.0, rtol=0.1)
    fail = cl.check_at_least("b", 0.0, 1.0)
    undecided = cl.check_undecided("c", None, "?", "why")
    assert cl.verdict_of([ok]) == "confirmed"
    assert cl.verdict_of([ok, undecided]) == "inconclusive"
    assert cl.verdict_of([ok, undecided, fail]) == "refuted"
    with pytest.raises(ValueError, match="at least one check"):
        cl.verdict_of([])
    with pytest.raises(ValueError, match="not finite"):
        cl.check_between("d", float("nan"), 0, 1)
    assert cl.check_close("e", 1.05, 1.0, rtol=0.04).passed is False
    assert cl.check_close("e", 1.03, 1.0, rtol=0.04).passed is True


def test_verify_writes_evidence_figures_report_and_resumes(fake_analyses, tmp_path):
    registry = cl.load_analyses(fake_analyses)
    chosen = cl.select(["fake.good", "fake.bad", "fake.unsure", "fake.crash"], registry)
    out = tmp_path / "out"
    evidence = {e.claim_id: e for e in cl.verify(chosen, scale="quick", out_dir=out, progress=None)}
    assert {k: e.verdict for k, e in evidence.items()} == {
        "fake.good": "confirmed", "fake.bad": "refuted", "fake.unsure": "inconclusive", "fake.crash": "error"}
    assert "RuntimeError: boom" in evidence["fake.crash"].notes
    assert (out / "fake.good.png").exists() and (out / "fake.good.pdf").exists() and (out / "fake.good.json").exists()
    report = (out / "REPORT.md").read_text()
    assert "| `fake.bad` bad | B 2021 | y <= 0 | y = 2 | **refuted** |" in report
    results = json.loads((out / "results.json").read_text())
    assert len(results["evidence"]) == 4 and results["meta"]["theorylab_version"]

    module = sys.modules["theorylab_analyses.fake_claims"]
    module.CALLS.clear()
    again = cl.verify(chosen, scale="quick", out_dir=out, progress=None)
    assert module.CALLS == []  # finished claims are reused ...
    assert [e.verdict for e in again] == ["confirmed", "refuted", "inconclusive", "error"]
    (out / "evidence" / "fake.good.json").write_text('{"type": "Evid')  # ... a damaged record is recomputed
    cl.verify(chosen[:1], scale="quick", out_dir=out, progress=None)
    assert module.CALLS == ["good"]
    cl.verify(chosen[:1], scale="full", out_dir=out, progress=None)  # another scale is never reused
    assert module.CALLS == ["good", "good"]


def test_select_rejects_unknown_ids(fake_analyses):
    registry = cl.load_analyses(fake_analyses)
    with pytest.raises(ValueError, match="unknown claim id"):
        cl.select(["fake.nope"], registry)


def test_verify_command_exit_codes(fake_analyses, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["verify", "--analyses", str(fake_analyses), "--only", "fake.good", "fake.bad",
                 "--out", str(out), "--device", "cpu"]) == 0
    assert (out / "REPORT.md").exists()
    assert main(["verify", "--analyses", str(fake_analyses), "--only", "fake.crash", "--out", str(out),
                 "--device", "cpu"]) == 1
    assert main(["verify", "--analyses", str(fake_analyses), "--only", "fake.nope", "--out", str(out)]) == 2
    assert "unknown claim id" in capsys.readouterr().err
    assert main(["verify", "--analyses", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert main(["verify", "--analyses", str(fake_analyses), "--list"]) == 0
    assert "fake.good" in capsys.readouterr().out
