"""Atomic writes: complete files only, and the permissions the user's umask asks for."""
import os
import stat

import pytest

from theorylab._io import atomic_write_bytes, atomic_write_json, atomic_write_text


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_honour_the_umask(tmp_path, umask, expected):
    before = os.umask(umask)
    try:
        written = [atomic_write_bytes(tmp_path / "a.png", b"x"), atomic_write_text(tmp_path / "REPORT.md", "y"),
                   atomic_write_json(tmp_path / "sub" / "fit.json", {"a": 1})]
    finally:
        os.umask(before)
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_replaces_atomically_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"ok": 1})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"bad": float("nan")})
    assert target.read_text() == '{\n  "ok": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
