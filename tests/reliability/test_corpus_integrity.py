"""Content integrity: array bytes overwritten in place (same size) are caught before use.

`neurofm info` reports the file, `neurofm prepare` re-creates it from its source, training
refuses to start, and any read through :class:`Corpus` refuses the damaged array.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import neurofm.data.corpus as corpus_module
from neurofm.cli import main
from neurofm.data.corpus import Corpus
from neurofm.data.prepare import prepare_corpus
from neurofm.data.windows import WindowDataset
from neurofm.errors import CorpusError

SUBJECTS = ("Subject02_2", "Subject03_2", "Subject04_2")


@pytest.fixture
def sources(mirror_dir: Path) -> list[Path]:
    return [mirror_dir / "eegmat" / f"{name}.edf" for name in SUBJECTS]


@pytest.fixture
def prepared(sources: list[Path], tmp_path: Path) -> Path:
    return prepare_corpus(sources, tmp_path / "out", progress=False).corpus_dir


def overwrite_samples(corpus_dir: Path, recording_id: str) -> tuple[Path, bytes]:
    """Overwrite 64 bytes in the middle of a recording's array (same size, valid header);
    returns the array's path and its original bytes."""
    path = corpus_dir / "recordings" / f"{corpus_module.recording_key(recording_id)}.npy"
    before = path.read_bytes()
    middle = len(before) // 2
    path.write_bytes(before[:middle] + np.full(16, 1e3, "<f4").tobytes() + before[middle + 64:])
    assert path.stat().st_size == len(before)
    return path, before


def test_info_reports_an_overwritten_array_and_exits_1(prepared: Path, capsys) -> None:
    path, _ = overwrite_samples(prepared, SUBJECTS[1])
    assert main(["info", str(prepared)]) == 1
    out = capsys.readouterr().out
    assert "PROBLEMS      1" in out and f"{path} does not match the sha256" in out
    assert "neurofm prepare" in out
    assert main(["info", str(prepared), "--no-verify"]) == 0


def test_prepare_recreates_an_overwritten_array_instead_of_calling_it_done(
    prepared: Path, sources: list[Path]
) -> None:
    path, before = overwrite_samples(prepared, SUBJECTS[0])
    report = prepare_corpus(sources, prepared.parent, progress=False)
    assert [o.status for o in report.outcomes] == ["prepared", "skipped", "skipped"]
    assert path.read_bytes() == before
    assert Corpus(prepared).verify() == []


def test_reading_an_overwritten_array_through_the_corpus_is_refused(prepared: Path) -> None:
    path, _ = overwrite_samples(prepared, SUBJECTS[2])
    corpus = Corpus(prepared)
    corpus.signal(SUBJECTS[0])  # the intact ones read fine
    with pytest.raises(CorpusError, match=f"{path} does not match the sha256.*neurofm prepare"):
        corpus.signal(SUBJECTS[2])
    windows = WindowDataset(corpus, 4.0)
    with pytest.raises(CorpusError, match=str(path)):
        windows[len(windows) - 1]
    problems = corpus.verify()
    assert [p.path for p in problems] == [path]


def test_pretrain_on_an_overwritten_corpus_stops_before_training(
    prepared: Path, tmp_path: Path, capsys
) -> None:
    path, _ = overwrite_samples(prepared, SUBJECTS[1])
    out = tmp_path / "run"
    code = main(["pretrain", "--objective", "fip", "--model", "neurobert_small", "--corpus",
                 str(prepared), "--out", str(out), "--quiet", "run.tensorboard=false",
                 "data.batch_size=4", "run.max_steps=2"])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("neurofm pretrain: error: corpus") and "nothing was trained" in error
    assert f"{path} does not match the sha256" in error and "neurofm prepare" in error
    assert not (out / "checkpoints").exists() and not (out / "model").exists()
