"""The pretraining record: a tiny FIP run on real eegmat recordings writes what it trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurofm.cli import main
from neurofm.data.corpus import Corpus
from neurofm.engine.config import PretrainConfig, load_config
from neurofm.engine.jobs import WindowSplit, pretraining_record_of
from neurofm.engine.pretraining_data import (
    CONFIG_KEY,
    RECORD_FILE,
    PretrainingRecord,
    read_record_file,
    record_of_model_dir,
    record_of_run,
    record_of_run_checkpoint,
)
from neurofm.models.registry import create_model
from neurofm.models.saved import save_pretrained

FAST = ["run.progress=false", "run.tensorboard=false", "data.window_seconds=2",
        "data.stride_seconds=2", "data.batch_size=8", "optim.lr_batch_scaling=none",
        "optim.warmup_epochs=0", "run.max_steps=2", "run.checkpoint_every_steps=2"]


@pytest.fixture(scope="module")
def eegmat_corpus(eegmat_arithmetic) -> Corpus:
    """The arithmetic recordings of eegmat Subject00-02, prepared for the task."""
    return eegmat_arithmetic[1]


def test_a_fip_run_records_its_training_and_validation_recordings(eegmat_corpus, tmp_path):
    run = tmp_path / "fip"
    assert main(["pretrain", "--objective", "fip", "--corpus", str(eegmat_corpus.path),
                 "--out", str(run), "--model", "neurobert_small", *FAST,
                 "data.val_fraction=0.3"]) == 0
    split = json.loads((run / "split.json").read_text())
    record = read_record_file(run / RECORD_FILE)
    assert record.trained_by == "neurofm pretrain --objective fip"
    assert record.corpus == str(eegmat_corpus.path)
    assert record.recipe["config_hash"] == eegmat_corpus.config_hash
    parts = {r.id: r.part for r in record.recordings}
    assert parts == {**dict.fromkeys(split["train"], "train"), **dict.fromkeys(split["val"], "val")}
    assert split["val"] and len(parts) == 3
    for recording in record.recordings:
        entry = eegmat_corpus[recording.id]
        assert recording.dataset == "eegmat" and recording.subject == entry.subject
        assert recording.array_sha256 == entry.array_sha256
        assert recording.source_sha256 == tuple(s.sha256 for s in entry.sources)
    # Ids and hashes only: compact enough to sit in config.json.
    assert (run / RECORD_FILE).stat().st_size < 4096
    # The exported model and every training checkpoint lead to the same record.
    assert record_of_model_dir(run / "model") == PretrainingRecord.from_dict(
        json.loads((run / "model" / "config.json").read_text())["extra"][CONFIG_KEY],
        str(run / "model" / "config.json"))
    assert record_of_model_dir(run / "model").recordings == record.recordings
    step = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    assert record_of_run_checkpoint(step).recordings == record.recordings


def test_excluded_recordings_are_not_in_the_record(eegmat_corpus, tmp_path):
    run = tmp_path / "fip"
    assert main(["pretrain", "--objective", "fip", "--corpus", str(eegmat_corpus.path),
                 "--out", str(run), "--model", "neurobert_small", *FAST, "run.max_steps=1",
                 "data.exclude_recordings=eegmat/Subject02_*"]) == 0
    subjects = {r.subject for r in read_record_file(run / RECORD_FILE).recordings}
    assert subjects == {"Subject00", "Subject01"}


def test_a_mem_record_carries_its_tokenizers_record(eegmat_corpus, tmp_path):
    tokenizer_record = record_of_run(eegmat_corpus, ["eegmat/Subject02_2"], [],
                                     "neurofm tokenizer")
    tokenizer = save_pretrained(create_model("vqnsp_small", n_codes=64), tmp_path / "tok",
                                extra={CONFIG_KEY: tokenizer_record.to_dict()})
    config = load_config(PretrainConfig, base={"objective": "mem", "tokenizer": str(tokenizer),
                                               "model": "labram_small_mem"})
    data = WindowSplit(eegmat_corpus, 2.0, 2.0, 0.0, 0, exclude=["eegmat/Subject02_*"])
    record = pretraining_record_of(config, data)
    assert {r.subject for r in record.recordings} == {"Subject00", "Subject01"}
    assert record.inherited[0].role == "tokenizer"
    assert {r.subject for r in record.all_recordings()} == {"Subject00", "Subject01", "Subject02"}
    assert record.unrecorded() == []
    # Round trip through JSON keeps the tokenizer's record.
    again = PretrainingRecord.from_dict(json.loads(json.dumps(record.to_dict())), "x")
    assert list(again.all_recordings()) == list(record.all_recordings())


def test_a_tokenizer_without_a_record_is_named_as_unknown(eegmat_corpus, tmp_path, caplog):
    tokenizer = save_pretrained(create_model("vqnsp_small", n_codes=64), tmp_path / "old-tok")
    config = load_config(PretrainConfig, base={"objective": "mem", "tokenizer": str(tokenizer),
                                               "model": "labram_small_mem"})
    record = pretraining_record_of(config, WindowSplit(eegmat_corpus, 2.0, 2.0, 0.0, 0))
    assert record.unrecorded() == [f"tokenizer {Path(tokenizer).resolve()}"]
    assert "has no pretraining record" in caplog.text
