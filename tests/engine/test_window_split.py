"""Pretraining's train/validation split: subject-wise, with recordings lacking a subject id."""

from __future__ import annotations

import logging

from toy_training import write_tiny_eeg_corpus

from neurofm.data.corpus import Corpus
from neurofm.engine.jobs import WindowSplit


def _split(corpus_dir, val_fraction: float = 0.3) -> WindowSplit:
    return WindowSplit(Corpus(corpus_dir), window_seconds=2, stride_seconds=2,
                       val_fraction=val_fraction, seed=0)


def test_recordings_without_a_subject_train_but_never_validate(tmp_path, caplog):
    corpus = write_tiny_eeg_corpus(tmp_path, seconds=8, subjects=4, anonymous=2)
    with caplog.at_level(logging.WARNING, logger="neurofm.engine.jobs"):
        split = _split(corpus)
    assert {"rec4", "rec5"} <= set(split.train_ids)
    assert split.val_ids and not {"rec4", "rec5"} & set(split.val_ids)
    assert sorted(split.train_ids + split.val_ids) == [f"rec{i}" for i in range(6)]
    assert "2 recording(s) without a subject id" in caplog.text


def test_a_corpus_without_subject_ids_validates_on_whole_recordings(tmp_path, caplog):
    corpus = write_tiny_eeg_corpus(tmp_path, seconds=8, subjects=0, anonymous=4)
    with caplog.at_level(logging.WARNING, logger="neurofm.engine.jobs"):
        split = _split(corpus)
    assert len(split.val_ids) == 1 and len(split.train_ids) == 3
    assert not set(split.val_ids) & set(split.train_ids)
    assert "may share subjects with training" in caplog.text
    assert _split(corpus, val_fraction=0).val is None
