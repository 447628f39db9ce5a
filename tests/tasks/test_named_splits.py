"""Named splits: eegmat's published fixed split and its subject-wise cross-validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurofm.cli import main
from neurofm.errors import ConfigError
from neurofm.tasks.definitions import EEGMAT_FIXED_SPLIT, FixedSplit, get_task


def _members(numbers) -> dict[str, list[str]]:
    return {f"Subject{n:02d}": [f"eegmat/Subject{n:02d}_1", f"eegmat/Subject{n:02d}_2"]
            for n in numbers}


def test_eegmat_fixed_split_is_the_published_one():
    split = get_task("eegmat").using_split("fixed").split
    assert split is EEGMAT_FIXED_SPLIT
    assert split.train == tuple(f"Subject{n:02d}" for n in range(28))
    assert split.val == ("Subject28", "Subject29", "Subject30", "Subject31")
    assert split.test == ("Subject32", "Subject33", "Subject34", "Subject35")
    assert "OpenEEGBench" in split.source and "CBraMod" in split.source
    split.check_known(get_task("eegmat").dataset_subjects(), "eegmat")


def test_fixed_split_with_all_subjects_scores_the_test_subjects():
    (fold,) = EEGMAT_FIXED_SPLIT.folds(_members(range(36)))
    assert fold.scored == "test" and fold.note == ""
    assert fold.scored_groups == EEGMAT_FIXED_SPLIT.test
    assert "eegmat/Subject35_2" in fold.test and "eegmat/Subject28_1" in fold.val


def test_fixed_split_without_its_test_subjects_scores_validation_and_says_so():
    (fold,) = EEGMAT_FIXED_SPLIT.folds(_members(range(32)))
    assert fold.scored == "val" and fold.test == () and fold.groups["test"] == ()
    assert fold.scored_groups == ("Subject28", "Subject29", "Subject30", "Subject31")
    assert "Subject32, Subject33, Subject34, Subject35" in fold.note
    assert "no test score is reported" in fold.note
    # One test subject missing is enough: the others are never scored as "test" alone.
    (partial,) = EEGMAT_FIXED_SPLIT.folds(_members([*range(32), 32, 33, 34]))
    assert partial.scored == "val" and "Subject35" in partial.note


def test_fixed_split_refuses_a_corpus_without_validation_subjects():
    with pytest.raises(ConfigError, match="none of the fixed split's val subjects"):
        EEGMAT_FIXED_SPLIT.folds(_members(range(28)))


def test_cv_has_8_folds_over_32_subjects_and_tests_each_once():
    folds = get_task("eegmat").using_split("cv").split.folds(_members(range(32)))
    assert len(folds) == 8
    tested = [s for fold in folds for s in fold.groups["test"]]
    assert sorted(tested) == sorted(_members(range(32))) and all(
        len(fold.groups["test"]) == len(fold.groups["val"]) == 4 for fold in folds)
    assert get_task("eegmat").evaluation_subjects("cv") == set(
        get_task("eegmat").dataset_subjects())
    assert get_task("eegmat").evaluation_subjects("fixed") == {
        f"Subject{n:02d}" for n in range(28, 36)}


def test_cv_over_fewer_subjects_than_folds_leaves_one_out_and_says_so():
    folds = get_task("eegmat").split.folds(_members(range(5)))
    assert len(folds) == 5 and "only 5 subjects for 8 folds" in folds[0].note


def test_split_file_with_unknown_or_repeated_subjects_is_refused(tmp_path: Path):
    task = get_task("eegmat")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"train": ["Subject00", "Subject99"], "val": ["Subject01"],
                                   "test": [], "source": "mine"}))
    with pytest.raises(ConfigError, match="Subject99 that dataset 'eegmat' does not have"):
        task.using_split(str(unknown))
    repeated = tmp_path / "repeated.json"
    repeated.write_text(json.dumps({"train": ["Subject00"], "val": ["Subject00"], "test": []}))
    with pytest.raises(ConfigError, match=r"Subject00.*both the train and the val"):
        task.using_split(str(repeated))
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"broken.json must hold a JSON object"):
        task.using_split(str(broken))
    with pytest.raises(ConfigError, match=r"no split 'loso'.*cv, fixed"):
        task.using_split("loso")
    good = tmp_path / "mine.json"
    good.write_text(json.dumps({"train": ["Subject00", "Subject01"], "val": ["Subject02"],
                                "test": ["Subject03"], "source": "my lab's split"}))
    chosen = task.using_split(str(good))
    assert isinstance(chosen.split, FixedSplit) and chosen.to_dict()["split"]["source"] == (
        "my lab's split")


def test_evaluate_fixed_split_reports_validation_scores_and_names_the_absent_subjects(
        mirror_dir, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["evaluate", "--task", "eegmat", "--split", "fixed", "--corpus",
                   str(tmp_path / "corpus"), "--out", str(out), "--mirror", str(mirror_dir),
                   "--bootstrap", "50", "--quiet"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "test subjects absent from the corpus: Subject32, Subject33, Subject34, Subject35" in (
        printed)
    assert "split fixed, 1 folds, 4 validation subjects" in printed
    report = (out / "report.md").read_text()
    assert "no test score is reported" in report and "OpenEEGBench" in report
    result = json.loads((out / "bandpower_logreg.json").read_text())
    assert sorted(result["subject_metrics"]) == ["Subject28", "Subject29", "Subject30",
                                                 "Subject31"]
    assert result["config"]["class_weight"] == "balanced"
    assert 0 < result["config"]["thresholds"]["fold0"] < 1


def test_one_folds_exclusion_leaves_out_exactly_its_validation_and_test_subjects(mirror_dir):
    from neurofm.data.pretraining_corpus import evaluation_exclusions

    per_fold = [evaluation_exclusions("eegmat", "cv", k, mirror_dir)["eegmat"] for k in range(8)]
    assert all(len(subjects) == 8 for subjects in per_fold)
    assert set().union(*per_fold) == {f"Subject{n:02d}" for n in range(32)}
    with pytest.raises(ConfigError, match="--fold 8: split 'cv' of task 'eegmat' has 8 fold"):
        evaluation_exclusions("eegmat", "cv", 8, mirror_dir)


def test_a_per_fold_init_names_each_folds_checkpoint():
    from neurofm.tasks.finetune_config import load_finetune_config

    flags = {"task_name": "eegmat", "model": "labram_small", "init": "runs/fold{fold}/model"}
    config = load_finetune_config(flags=flags)
    assert config.init_per_fold and config.for_fold(3).init == "runs/fold3/model"
    for bad in ("runs/{fold}/{fold}/model", "runs/{seed}/fold{fold}"):
        with pytest.raises(ConfigError, match="a per-fold init is a path holding"):
            load_finetune_config(flags={**flags, "init": bad})
