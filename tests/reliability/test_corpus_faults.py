"""Corpus-level faults: damaged manifests and arrays, disk full, permissions, killed runs.

Each case checks the message names the file, the documented behaviour, and that nothing already
committed is damaged (and that `neurofm prepare` again repairs what was damaged).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import neurofm.data.corpus as corpus_module
from neurofm.data.corpus import Corpus
from neurofm.data.prepare import prepare_corpus
from neurofm.errors import CorpusError

SUBJECTS = ("Subject02_2", "Subject03_2", "Subject04_2")


@pytest.fixture
def sources(mirror_dir: Path) -> list[Path]:
    return [mirror_dir / "eegmat" / f"{name}.edf" for name in SUBJECTS]


@pytest.fixture
def prepared(sources: list[Path], tmp_path: Path) -> Path:
    return prepare_corpus(sources, tmp_path / "out", progress=False).corpus_dir


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def entry_file(corpus_dir: Path, recording_id: str) -> Path:
    return corpus_dir / "manifest" / f"{corpus_module.recording_key(recording_id)}.json"


def array_file(corpus_dir: Path, recording_id: str) -> Path:
    return corpus_dir / "recordings" / f"{corpus_module.recording_key(recording_id)}.npy"


def test_hand_edited_manifest_entry_is_detected_and_repaired(
    prepared: Path, sources: list[Path]
) -> None:
    path = entry_file(prepared, SUBJECTS[1])
    data = json.loads(path.read_text())
    data["n_samples"] -= 200
    path.write_text(json.dumps(data))
    with pytest.raises(CorpusError, match=f"{path}.*checksum.*neurofm prepare"):
        Corpus(prepared)
    report = prepare_corpus(sources, prepared.parent, progress=False)
    assert [o.status for o in report.outcomes] == ["skipped", "prepared", "skipped"]
    assert Corpus(prepared)[SUBJECTS[1]].n_samples == 62 * 200


def test_truncated_manifest_entry_is_detected(prepared: Path) -> None:
    path = entry_file(prepared, SUBJECTS[0])
    path.write_text(path.read_text()[:40])
    with pytest.raises(CorpusError, match=f"{path}.*unreadable"):
        Corpus(prepared)


def test_partly_deleted_manifest_is_detected_and_repaired(prepared: Path, sources: list[Path]) -> None:
    entry_file(prepared, SUBJECTS[2]).unlink()
    with pytest.raises(CorpusError, match=f"{array_file(prepared, SUBJECTS[2])}.*no manifest entry"):
        Corpus(prepared)
    incomplete = Corpus(prepared, allow_incomplete=True)
    assert incomplete.ids == list(SUBJECTS[:2]) and len(incomplete.issues) == 1
    prepare_corpus(sources, prepared.parent, progress=False)
    assert Corpus(prepared).ids == list(SUBJECTS)


@pytest.mark.parametrize("damage", ["missing", "short"])
def test_missing_or_short_array_is_detected_and_repaired(
    prepared: Path, sources: list[Path], damage: str
) -> None:
    path = array_file(prepared, SUBJECTS[0])
    before = path.read_bytes()
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(before[: len(before) // 2])
    expected = "is missing" if damage == "missing" else "truncated"
    with pytest.raises(CorpusError, match=f"{path}.*{expected}"):
        Corpus(prepared)
    report = prepare_corpus(sources, prepared.parent, progress=False)
    assert [o.status for o in report.outcomes] == ["prepared", "skipped", "skipped"]
    assert path.read_bytes() == before


def test_disk_full_stops_with_a_clear_message_and_keeps_the_corpus(
    sources: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    corpus_dir = prepare_corpus(sources[:1], out, progress=False).corpus_dir
    before = snapshot(corpus_dir)
    real_save = np.save

    def full_disk(file, array, **kwargs):
        real_save(file, array[:, :10], **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(corpus_module.np, "save", full_disk)
    with pytest.raises(CorpusError, match=r"No space left on device.*intact.*neurofm prepare"):
        prepare_corpus(sources, out, progress=False)
    assert snapshot(corpus_dir) == before
    monkeypatch.undo()
    report = prepare_corpus(sources, out, progress=False)
    assert [o.status for o in report.outcomes] == ["skipped", "prepared", "prepared"]


def test_permission_error_on_commit_leaves_no_trace(
    sources: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    corpus_dir = prepare_corpus(sources[:1], out, progress=False).corpus_dir
    before = snapshot(corpus_dir)

    def refuse(target, obj):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(target))

    monkeypatch.setattr(corpus_module, "atomic_write_json", refuse)
    with pytest.raises(CorpusError, match=r"Permission denied.*fix permissions"):
        prepare_corpus(sources, out, progress=False)
    assert snapshot(corpus_dir) == before
    assert Corpus(corpus_dir).ids == [SUBJECTS[0]]


def test_other_configs_corpus_is_never_touched(prepared: Path, sources: list[Path]) -> None:
    from neurofm.data.preprocess import PreprocessConfig

    before = snapshot(prepared)
    report = prepare_corpus(sources[:1], prepared.parent, PreprocessConfig.labram(60.0), progress=False)
    assert report.corpus_dir != prepared
    assert snapshot(prepared) == before


def test_corrupt_recording_among_good_ones_leaves_the_corpus_consistent(
    prepared: Path, sources: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.edf"
    broken.write_bytes(sources[0].read_bytes()[:5000])
    before = snapshot(prepared)
    report = prepare_corpus([*sources, broken], prepared.parent, progress=False)
    assert report.failed[0].id == "broken" and "broken.edf" in report.failed[0].message
    assert snapshot(prepared) == before
    assert Corpus(prepared).ids == list(SUBJECTS)


KILLER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import neurofm.data.corpus as corpus_module
    from neurofm.data.prepare import prepare_corpus

    where, out, *sources = sys.argv[1:]
    calls = {"save": 0, "entry": 0}
    real_save, real_commit = np.save, corpus_module.atomic_write_json

    def save(file, array, **kwargs):
        calls["save"] += 1
        if where == "mid-array" and calls["save"] == 2:
            file.write(b"\\x93NUMPY half an array")
            file.flush()
            os._exit(9)
        real_save(file, array, **kwargs)

    def commit(target, obj):
        calls["entry"] += os.path.basename(os.path.dirname(target)) == "manifest"
        if where == "before-entry" and calls["entry"] == 2:
            os._exit(9)
        real_commit(target, obj)

    corpus_module.np.save = save
    corpus_module.atomic_write_json = commit
    prepare_corpus(sources, out, progress=False)
    """
)


@pytest.mark.parametrize("where", ["mid-array", "before-entry"])
def test_killed_preparation_resumes_to_the_same_bytes(
    sources: list[Path], tmp_path: Path, where: str
) -> None:
    clean = prepare_corpus(sources, tmp_path / "clean", progress=False).corpus_dir
    out = tmp_path / "killed"
    run = subprocess.run(
        [sys.executable, "-c", KILLER, where, str(out), *map(str, sources)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 9, run.stderr.decode()
    killed_dir = out / clean.name
    # The recording cut short never looks complete.
    survivors = Corpus(killed_dir, allow_incomplete=True)
    assert survivors.ids == [SUBJECTS[0]]
    report = prepare_corpus(sources, out, progress=False)
    assert [o.status for o in report.outcomes] == ["skipped", "prepared", "prepared"]
    assert snapshot(killed_dir) == snapshot(clean)
