"""Atomic writes leave files with the mode a plain open() would give, not mkstemp's private 0600."""

from __future__ import annotations

import neurofm.atomic as atomic


def test_atomically_written_files_follow_the_umask(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_UMASK", 0o022)
    atomic.atomic_write_text(tmp_path / "report.md", "# shared with the group\n")
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o644
