"""Provenance: the commit recorded is theorylab's own, never that of a repository around an install."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import theorylab
from theorylab.provenance import is_theorylab_checkout

PACKAGE = Path(theorylab.__file__).resolve().parent


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def commit_seen_from(site: Path) -> str:
    code = f"import sys; sys.path.insert(0, {str(site)!r}); from theorylab.provenance import git_commit; print(git_commit())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=site).stdout.strip()


@pytest.fixture
def user_project(tmp_path):
    """A user's git repository with theorylab installed in its .venv."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    project = tmp_path / "project"
    site = project / ".venv" / "lib" / "site-packages"
    shutil.copytree(PACKAGE, site / "theorylab", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "analysis.py").write_text("print('mine')\n")
    git(project, "init", "-q")
    git(project, "-c", "user.name=u", "-c", "user.email=u@x", "add", "analysis.py")
    git(project, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "user work")
    return project, site


def test_an_installed_theorylab_reports_no_commit_of_the_enclosing_repository(user_project):
    project, site = user_project
    assert commit_seen_from(site) == "None"


def test_a_theorylab_checkout_reports_its_commit(user_project):
    project, site = user_project
    (site / "pyproject.toml").write_text('[project]\nname = "theorylab"\nversion = "0.1.0"\n')
    assert commit_seen_from(site).startswith(git(project, "rev-parse", "HEAD"))


def test_only_theorylabs_own_pyproject_counts(tmp_path):
    assert not is_theorylab_checkout(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    assert not is_theorylab_checkout(tmp_path)
    (tmp_path / "pyproject.toml").write_text("not [ toml")
    assert not is_theorylab_checkout(tmp_path)
    assert is_theorylab_checkout(PACKAGE.parent)
