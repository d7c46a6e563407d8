"""Progress bars: one switch, scoped overrides, silent under tests and CI."""
import pytest

from theorylab import progress as pg


def test_off_under_pytest_and_ci_unless_asked(monkeypatch):
    monkeypatch.delenv("THEORYLAB_PROGRESS", raising=False)
    assert pg.progress_enabled() is False  # PYTEST_CURRENT_TEST is set
    assert pg.progress_enabled(True) is True
    monkeypatch.setenv("THEORYLAB_PROGRESS", "1")
    assert pg.progress_enabled() is True
    monkeypatch.setenv("THEORYLAB_PROGRESS", "0")
    assert pg.progress_enabled() is False


def test_scoped_switch_restores_the_automatic_choice(monkeypatch):
    monkeypatch.delenv("THEORYLAB_PROGRESS", raising=False)
    with pg.progress(True):
        assert pg.progress_enabled() is True
        with pg.progress(False):
            assert pg.progress_enabled() is False
        assert pg.progress_enabled() is True
    assert pg.progress_enabled() is False
    with pytest.raises(ValueError, match="True or False"):
        with pg.progress("yes"):  # type: ignore[arg-type]
            pass


def test_silent_bar_has_the_bar_methods(capsys):
    with pg.bar(10, desc="x", enabled=False) as b:
        b.update(3)
        b.set_postfix_str("residual 1e-3")
    assert b.n == 3
    assert capsys.readouterr().err == ""


def test_visible_bar_writes_to_stderr(capsys):
    with pg.bar(2, desc="lanczos", enabled=True) as b:
        b.update(2)
    assert "lanczos" in capsys.readouterr().err
