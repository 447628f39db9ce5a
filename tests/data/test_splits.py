"""Subject- and session-wise splits: whole groups per part, deterministic, saved as JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurofm.data.corpus import CorpusEntry
from neurofm.data.splits import Split, group_split, leave_one_group_out
from neurofm.errors import ConfigError


def entry(recording_id: str, subject: str | None, session: str | None = None) -> CorpusEntry:
    return CorpusEntry(
        id=recording_id, key=recording_id, sources=(), channels=("CZ",), channel_types=("eeg",),
        vocabulary_indices=(41,), sfreq=200.0, unit="100uV", n_samples=2000, subject=subject,
        session=session, label=None, annotations=(), has_labels=False, array_sha256="",
        quality=(), meta={}, config_hash="h", neurofm_version="0",
    )


ENTRIES = [entry(f"s{s}_{k}", f"s{s}", str(k)) for s in range(10) for k in (1, 2)]


def subjects_of(ids: tuple[str, ...]) -> set[str]:
    return {rid.split("_")[0] for rid in ids}


def test_subject_split_keeps_each_subject_in_one_part() -> None:
    split = group_split(ENTRIES, "subject", val_fraction=0.2, test_fraction=0.2, seed=0)
    parts = [subjects_of(split.part(p)) for p in ("train", "val", "test")]
    assert [len(p) for p in parts] == [6, 2, 2]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(split.train) + len(split.val) + len(split.test) == len(ENTRIES)
    assert set(split.groups["test"]) == parts[2]


def test_split_is_deterministic_by_seed() -> None:
    assert group_split(ENTRIES, seed=4) == group_split(ENTRIES, seed=4)
    assert group_split(ENTRIES, seed=4).test != group_split(ENTRIES, seed=5).test


def test_explicit_groups_are_honoured() -> None:
    split = group_split(ENTRIES, val_groups=["s1"], test_groups=["s2", "s3"])
    assert split.groups["val"] == ("s1",) and split.groups["test"] == ("s2", "s3")
    assert split.test == ("s2_1", "s2_2", "s3_1", "s3_2")


def test_session_split_separates_sessions_of_a_subject() -> None:
    split = group_split(ENTRIES, "session", val_fraction=0.0, test_fraction=0.25, seed=1)
    assert len(split.groups["test"]) == 5
    assert all("/" in g for g in split.groups["test"])
    assert not set(split.train) & set(split.test)


def test_leave_one_subject_out_holds_out_each_subject_once() -> None:
    folds = leave_one_group_out(ENTRIES, "subject", val_fraction=0.1)
    assert [f.groups["test"] for f in folds] == [(f"s{s}",) for s in range(10)]
    assert all(len(f.groups["val"]) == 1 and len(f.groups["train"]) == 8 for f in folds)


def test_split_round_trips_through_json(tmp_path: Path) -> None:
    split = group_split(ENTRIES, seed=2, name="eegmat-subject")
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == split


def test_recordings_without_subject_cannot_be_split_by_subject() -> None:
    with pytest.raises(ConfigError, match="no subject"):
        group_split([*ENTRIES, entry("anon", None)])


def test_unknown_or_overlapping_explicit_groups_are_refused() -> None:
    with pytest.raises(ConfigError, match="not subjects"):
        group_split(ENTRIES, test_groups=["nobody"])
    with pytest.raises(ConfigError, match="both"):
        group_split(ENTRIES, val_groups=["s1"], test_groups=["s1"])


def test_split_leaving_no_training_group_is_refused() -> None:
    with pytest.raises(ConfigError, match="no training"):
        group_split(ENTRIES[:4], val_fraction=0.5, test_fraction=0.5)
