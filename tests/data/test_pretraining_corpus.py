"""The all-EEG pretraining corpus, on a few real recordings of the mirror (copied to a temporary
mirror: the registry refuses symlinks that lead out of a dataset folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from neurofm.cli import main
from neurofm.data.corpus import Corpus
from neurofm.data.pretraining_corpus import (
    REPORT_FILE,
    PretrainingCorpusReport,
    collect_pretraining_sources,
    prepare_pretraining_corpus,
)
from neurofm.errors import ConfigError

# A small mirror: a train and a held-out eegmat subject, one EEGBCI run, the 50 Hz DREAMS
# excerpt (with its PSG, which pretraining leaves out), the EEGLAB sample (labels 'EEG 000'...)
# and three format fixtures (61-ch EEGLAB, numbered-label CNT, ECG-only GDF).
LINKED = {
    "eegmat": ["Subject00_2.edf", "Subject28_2.edf"],
    "eegbci": ["S001R01.edf"],
    "dreams_spindles": [
        "excerpt3.txt", "Hypnogram_excerpt3.txt", "Visual_scoring1_excerpt3.txt",
        "Visual_scoring2_excerpt3.txt", "Automatic_detection_excerpt3.txt", "excerpt3.edf",
    ],
    "eeglab_sample": ["test_raw.set", "test_raw.fdt"],
    "formats": [
        "eeglab/test_raw_chanloc.set", "eeglab/test_raw_chanloc.fdt", "cnt/scan41_short.cnt",
        "gdf/test_1ch.gdf",
    ],
}


@pytest.fixture(scope="module")
def small_mirror(mirror_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    for folder, names in LINKED.items():
        for name in names:
            copy = root / folder / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mirror_dir / folder / name, copy)
    return root


@pytest.fixture(scope="module")
def vocabulary_corpus(
    small_mirror: Path, tmp_path_factory: pytest.TempPathFactory
) -> PretrainingCorpusReport:
    return prepare_pretraining_corpus(
        tmp_path_factory.mktemp("vocabulary"), exclude_subjects={"eegmat": {"Subject28"}},
        exclusion="eegmat test subject", mirror=small_mirror, progress=False,
    )


@pytest.fixture(scope="module")
def all_eeg_corpus(
    small_mirror: Path, tmp_path_factory: pytest.TempPathFactory
) -> PretrainingCorpusReport:
    return prepare_pretraining_corpus(
        tmp_path_factory.mktemp("all_eeg"), exclude_subjects={"eegmat": {"Subject28"}},
        channels="all-eeg", mirror=small_mirror, progress=False,
    )


def test_vocabulary_corpus_holds_every_mappable_eeg_recording_but_the_held_out_subject(
    vocabulary_corpus: PretrainingCorpusReport,
) -> None:
    corpus = Corpus(vocabulary_corpus.preparation.corpus_dir)
    assert set(corpus.ids) == {
        "eegmat/Subject00_2", "eegbci/S001R01", "dreams_spindles/excerpt3",
        "formats/eeglab/test_raw_chanloc",
    }
    assert {e.subject for e in corpus} == {"Subject00", "S001", "excerpt3", None}
    eegbci = corpus["eegbci/S001R01"]
    assert eegbci.n_channels == 64 and eegbci.vocabulary_indices is not None
    assert {"FC5", "CZ", "AFZ", "IZ"} <= set(eegbci.channels)
    assert all(e.sfreq == 200.0 and e.unit == "100uV" for e in corpus)
    # 50 Hz and 128 Hz inputs cannot carry 75 Hz: the low-pass was clamped and recorded.
    dreams = corpus["dreams_spindles/excerpt3"].meta["preprocessing"]
    assert (dreams["h_freq_applied"], dreams["h_freq_clamped"]) == (22.5, True)
    assert corpus["eegmat/Subject00_2"].meta["preprocessing"]["h_freq_applied"] == 75.0


def test_report_lists_what_went_in_and_what_was_left_out_with_reasons(
    vocabulary_corpus: PretrainingCorpusReport,
) -> None:
    report = vocabulary_corpus.to_dict()
    on_disk = json.loads((vocabulary_corpus.preparation.corpus_dir / REPORT_FILE).read_text())
    assert on_disk["exclusion"] == "eegmat test subject" and on_disk["hours"] == report["hours"]
    shares = {share["name"]: share for share in report["datasets"]}
    assert shares["dreams_spindles"]["hours"] == pytest.approx(0.5)
    assert shares["eegmat"]["subjects"] == ["Subject00"]
    assert shares["formats"]["anonymous_recordings"] == 1 and shares["formats"]["failed"] == 1
    left_out = {item["id"]: item["reason"] for item in report["left_out"]}
    assert left_out["eegmat/Subject28_2"] == "excluded subject Subject28"
    assert "repeats excerpt3.txt" in left_out["dreams_spindles/excerpt3_psg"]
    assert "ECG" in left_out["formats/gdf/test_1ch"]
    failed = {item["id"]: item["reason"] for item in report["failed"]}
    assert set(failed) == {"eeglab_sample/test_raw", "formats/cnt/scan41_short"}
    assert all("no channel maps onto the LaBraM vocabulary" in reason for reason in failed.values())
    assert {"dreams_sleep", "graz_mi", "bi2012_p300"} <= set(report["absent_datasets"])
    assert "myo_gestures" not in {share["name"] for share in report["datasets"]}  # EMG
    assert report["excluded_subjects_not_present"] == {}
    summary = vocabulary_corpus.summary()
    assert "eegbci: 1 recordings, 1 subjects" in summary and "excluded subject" in summary


def test_all_eeg_corpus_keeps_eeg_channels_outside_the_vocabulary(
    all_eeg_corpus: PretrainingCorpusReport,
) -> None:
    corpus = Corpus(all_eeg_corpus.preparation.corpus_dir)
    eeglab = corpus["eeglab_sample/test_raw"]
    assert eeglab.n_channels == 32 and eeglab.channels[0] == "EEG 000"
    assert eeglab.vocabulary_indices is None and eeglab.subject is None
    assert corpus["formats/cnt/scan41_short"].n_channels > 100
    assert corpus["eegmat/Subject00_2"].n_channels == 20  # 19 scalp + A2-A1; ECG is not EEG
    assert "eegmat/Subject28_2" not in corpus.ids
    assert len({e.n_channels for e in corpus}) >= 5


def test_neurobert_fip_pretrains_on_the_mixed_all_eeg_corpus(
    all_eeg_corpus: PretrainingCorpusReport, tmp_path: Path
) -> None:
    run_dir = tmp_path / "fip"
    code = main(["pretrain", "--objective", "fip", "--corpus", str(all_eeg_corpus.preparation.corpus_dir),
                 "--out", str(run_dir), "--model", "neurobert_small", "--quiet",
                 "run.max_steps=3", "data.batch_size=4"])
    assert code == 0
    split = json.loads((run_dir / "split.json").read_text())
    assert "eeglab_sample/test_raw" in split["train"]  # no subject id: trains, never validates
    assert "eeglab_sample/test_raw" not in split["val"]


def test_an_excluded_subject_the_dataset_lacks_is_refused(small_mirror: Path) -> None:
    with pytest.raises(ConfigError, match=r"\['Subject99'\] are not subjects of dataset 'eegmat'"):
        collect_pretraining_sources({"eegmat": {"Subject99"}}, mirror=small_mirror)


def test_cv_exclusion_leaves_out_every_subject_and_refuses_a_corpus_that_holds_them(
    small_mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    every_subject = {f"Subject{n:02d}" for n in range(36)}
    task = SimpleNamespace(
        dataset="eegmat",
        evaluation_subjects=lambda split: every_subject if split == "cv" else {"Subject28"},
    )
    monkeypatch.setattr("neurofm.tasks.definitions.get_task", lambda name: task)
    selection = collect_pretraining_sources({"eegmat": every_subject}, datasets=["eegmat"],
                                            mirror=small_mirror)
    assert selection.sources == ()
    assert {item.reason for item in selection.left_out} == {
        "excluded subject Subject00", "excluded subject Subject28"}
    out = tmp_path / "corpus"
    args = ["prepare", "--all-eeg", "--out", str(out), "--mirror", str(small_mirror), "--quiet",
            "--exclude-task", "eegmat", "--split", "fixed"]
    assert main(args) == 0
    assert "validation and test subjects of task eegmat, split fixed" in capsys.readouterr().out
    # The same folder under the cv split would still hold Subject00: refused, naming it.
    assert main([*args[:-1], "cv"]) == 2
    assert "already holds 1 recording(s) this run leaves out (e.g. eegmat/Subject00_2)" in (
        capsys.readouterr().err)


def test_cli_refuses_mixed_or_incomplete_all_eeg_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "--all-eeg", "eegmat", "--out", "unused"]) == 2
    assert "--all-eeg takes no SOURCE" in capsys.readouterr().err
    assert main(["prepare", "--all-eeg", "--exclude-task", "eegmat", "--out", "unused"]) == 2
    assert "--exclude-task and --split go together" in capsys.readouterr().err
    assert main(["prepare", "eegmat", "--split", "fixed", "--out", "unused"]) == 2
    assert "--split: only with --all-eeg" in capsys.readouterr().err
