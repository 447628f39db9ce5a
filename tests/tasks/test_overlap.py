"""The overlap guard on real eegmat recordings: refuse, allow, warn, catch a renamed file, and
find the record from every init fine-tuning accepts."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from neurofm.cli import main
from neurofm.data.corpus import Corpus
from neurofm.data.prepare import prepare_corpus
from neurofm.data.splits import Split, group_split
from neurofm.datasets.registry import get_dataset
from neurofm.engine.checkpointing import save_checkpoint
from neurofm.engine.pretraining_data import (
    PretrainedRecording,
    PretrainingRecord,
    record_of_run,
)
from neurofm.errors import OverlapError
from neurofm.models.registry import create_model
from neurofm.models.saved import save_pretrained
from neurofm.tasks.definitions import get_task
from neurofm.tasks.overlap import (
    check_overlap,
    evaluation_subjects,
    guard_overlap,
    pretraining_record,
)

FAST = ["run.progress=false", "run.tensorboard=false", "data.window_seconds=2",
        "data.stride_seconds=2", "data.batch_size=8", "optim.lr_batch_scaling=none",
        "optim.warmup_epochs=0", "run.max_steps=1", "run.checkpoint_every_steps=1"]


@pytest.fixture(scope="module")
def pretrained(eegmat_arithmetic, tmp_path_factory) -> Path:
    """A one-step FIP run on Subject00 and Subject01 (Subject02 excluded)."""
    run = tmp_path_factory.mktemp("fip")
    assert main(["pretrain", "--objective", "fip", "--corpus", str(eegmat_arithmetic[1].path),
                 "--out", str(run), "--model", "neurobert_small", *FAST,
                 "data.exclude_recordings=eegmat/Subject02_*"]) == 0
    return run


def _fold(corpus: Corpus, val: list[str], test: list[str]) -> Split:
    return group_split(corpus, val_groups=val, test_groups=test, name="fold0")


def test_a_fold_testing_on_a_pretraining_subject_is_refused_naming_it(eegmat_arithmetic, pretrained):
    corpus = eegmat_arithmetic[1]
    model = str(pretrained / "model")
    with pytest.raises(OverlapError) as caught:
        guard_overlap(model, "eegmat", [_fold(corpus, ["Subject02"], ["Subject01"])], corpus)
    message = str(caught.value)
    assert "test subject Subject01" in message and "eegmat/Subject01_2" in message
    assert model in message and "--allow-overlap" in message
    assert "Subject02" not in message  # excluded from pretraining, so not an overlap


def test_allow_overlap_lets_it_through_and_the_report_says_what_overlapped(eegmat_arithmetic, pretrained):
    corpus = eegmat_arithmetic[1]
    check = guard_overlap(str(pretrained / "model"), "eegmat",
                          [_fold(corpus, ["Subject00"], ["Subject01"])], corpus,
                          allow_overlap=True)
    assert check.applied and check.allowed
    assert [(o.partition, o.subject) for o in check.overlaps] == [("val", "Subject00"),
                                                                   ("test", "Subject01")]
    report = "\n".join(check.report_lines())
    assert "--allow-overlap" in report and "Subject00" in report and "Subject01" in report
    assert json.loads(json.dumps(check.to_dict()))["overlaps"][1]["subject"] == "Subject01"


def test_a_fold_on_unseen_subjects_passes(eegmat_arithmetic, pretrained):
    corpus = eegmat_arithmetic[1]
    check = guard_overlap(str(pretrained / "model"), "eegmat",
                          [_fold(corpus, [], ["Subject02"])], corpus)
    assert check.applied and not check.overlaps
    assert "2 recording(s) of 2 subject(s): eegmat (2)" in check.report_lines()[0]
    assert "No validation or test subject" in check.report_lines()[1]


def test_a_checkpoint_without_a_record_warns_and_the_report_says_the_guard_was_not_applied(
        eegmat_arithmetic, tmp_path, caplog):
    corpus = eegmat_arithmetic[1]
    old = save_pretrained(create_model("neurobert_small"), tmp_path / "old")
    with caplog.at_level(logging.WARNING):
        check = guard_overlap(str(old), "eegmat", [_fold(corpus, [], ["Subject01"])], corpus)
    assert not check.applied
    assert "has no pretraining record" in caplog.text
    assert check.report_lines()[0].startswith(
        f"Overlap guard not applied: {old} has no pretraining record")


def test_the_same_source_file_under_another_id_is_caught(eegmat_arithmetic, tmp_path):
    folder, corpus = eegmat_arithmetic
    # Subject02's file prepared into another corpus, under another id and subject, with another
    # recipe (so the arrays differ and only the source file's hash matches).
    source = next(s for s in get_dataset("eegmat").sources(folder) if s.subject == "Subject02")
    renamed = dataclasses.replace(source, id="elsewhere/rec7", subject="P7")
    recipe = dataclasses.replace(get_task("eegmat").preprocess_config(), h_freq=40.0)
    report = prepare_corpus([renamed], tmp_path / "other", recipe, progress=False)
    other = Corpus(report.corpus_dir)
    record = record_of_run(other, ["elsewhere/rec7"], [], "neurofm pretrain")
    assert record.recordings[0].array_sha256 != corpus["eegmat/Subject02_2"].array_sha256
    evaluation = evaluation_subjects([_fold(corpus, [], ["Subject02"])], corpus)
    with pytest.raises(OverlapError, match=r"Subject02 .same file content under another id: "
                                           "elsewhere/rec7"):
        check_overlap(record, "other", "eegmat", evaluation.subjects, evaluation.hashes)
    # Without the hashes only ids are compared, and the renamed copy goes unnoticed.
    assert not check_overlap(record, "other", "eegmat", evaluation.subjects).overlaps


def test_without_the_corpus_subjects_come_from_the_folds_and_ids_are_compared(eegmat_arithmetic,
                                                                             pretrained):
    corpus = eegmat_arithmetic[1]
    fold = _fold(corpus, ["Subject02"], ["Subject01"])
    assert evaluation_subjects([fold]).subjects == {"val": ("Subject02",), "test": ("Subject01",)}
    with pytest.raises(OverlapError, match="test subject Subject01"):
        guard_overlap(str(pretrained / "model"), "eegmat", [fold], None)


def test_a_file_shared_by_several_recordings_identifies_none():
    shared = [PretrainedRecording(f"x/r{i}", "x", f"P{i}", "train", f"array{i}",
                                  ("montage", f"file{i}")) for i in range(2)]
    record = PretrainingRecord("neurofm pretrain", recordings=tuple(shared))
    check = check_overlap(record, "ckpt", "eegmat", {"test": ["Subject05"]},
                          {"Subject05": ["montage", "own"]})
    assert not check.overlaps


def test_the_record_is_found_from_every_init_fine_tuning_accepts(pretrained, tmp_path):
    expected = pretraining_record(str(pretrained / "model")).recordings
    assert {r.subject for r in expected} == {"Subject00", "Subject01"}
    step = sorted((pretrained / "checkpoints").glob("step-*.pt"))[-1]
    assert pretraining_record(str(step)).recordings == expected
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "neurofm_adapter.json").write_text(json.dumps({"init": str(pretrained / "model")}))
    assert pretraining_record(str(adapter)).recordings == expected
    # A fully fine-tuned model folder names the init it was fine-tuned from.
    tuned = save_pretrained(create_model("neurobert_small"), tmp_path / "tuned",
                            extra={"init": str(step), "task": "eegmat"})
    assert pretraining_record(str(tuned)).recordings == expected
    # So does a fine-tuning run's training checkpoint, through the run's config.yaml.
    fold = tmp_path / "fold0"
    save_checkpoint({"model": {}}, fold / "checkpoints" / "best.pt")
    (fold / "config.yaml").write_text(f"task: finetune\ninit: {adapter}\n")
    assert pretraining_record(str(fold / "checkpoints" / "best.pt")).recordings == expected
    scratch = pretraining_record("scratch")
    assert scratch is not None and not list(scratch.all_recordings())


def test_official_labram_counts_eegbci_as_seen_and_eegmat_as_not(tmp_path):
    checkpoint = tmp_path / "labram-base.pth"
    checkpoint.write_bytes(b"not read")
    record = pretraining_record(f"official:{checkpoint}")
    check = check_overlap(record, f"official:{checkpoint}", "eegmat", {"test": ["Subject32"]})
    assert not check.overlaps and "no eegmat" in check.report_lines()[0]
    with pytest.raises(OverlapError, match=r"test subject S001 .whole dataset: EEGMMI"):
        check_overlap(record, f"official:{checkpoint}", "eegbci", {"test": ["S001"]})


def test_finetune_command_refuses_an_overlapping_checkpoint_before_writing_anything(
        eegmat_arithmetic, pretrained, tmp_path, capsys):
    folder, _ = eegmat_arithmetic
    out = tmp_path / "run"
    status = main(["finetune", "--task", "eegmat", "--init", str(pretrained / "model"),
                   "--model", "neurobert_small", "--dataset-dir", str(folder), "--corpus",
                   str(folder / "corpora"), "--out", str(out), "--epochs", "1", "--quiet"])
    assert status == 2
    error = capsys.readouterr().err
    assert "Subject00" in error and "Subject01" in error and "--allow-overlap" in error
    assert not (out / "results.json").exists()
