"""The worked example of docs/concepts.md runs as written, on four eegmat subjects."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_concepts_example_runs(mirror_dir, tmp_path, monkeypatch, capsys):
    page = (DOCS / "concepts.md").read_text(encoding="utf-8")
    code = re.search(r"<!-- concepts-example -->\n```python\n(.*?)```", page, re.S).group(1)
    (tmp_path / "eegmat").mkdir()
    for subject in range(4):
        for part in (1, 2):
            name = f"Subject{subject:02d}_{part}.edf"
            # Copied (outside the project): a dataset folder refuses symlinks leading out of it.
            shutil.copy(mirror_dir / "eegmat" / name, tmp_path / "eegmat" / name)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/concepts.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "500.0 uV 21"
    assert printed[-1] == "Labram neurofm 1"
