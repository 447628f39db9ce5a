"""Subject-wise and session-wise splits of a corpus, saved with results as JSON.

A split assigns whole groups (subjects, or subject+session pairs) to train/val/test, never single
windows, so no subject's data leaks across parts. Splitting by recording is only for corpora
with no subject ids (self-supervised validation), where nothing better is known. A split is
deterministic given its seed and lists the recording ids of each part, so a result file can carry
the exact split it was computed on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.atomic import atomic_write_json
from neurofm.data.corpus import Corpus, CorpusEntry
from neurofm.errors import ConfigError

GROUPINGS = ("subject", "session", "recording")
PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Recording ids and groups of each part.

    ``by`` is ``"subject"``, ``"session"`` (a group is then ``"<subject>/<session>"``) or
    ``"recording"`` (a group is a recording id); ``seed``
    is the seed that drew it (``None`` for explicit lists). ``scored`` is the part whose scores
    a result reports: ``"test"``, or ``"val"`` for a published split whose test subjects are
    absent (``note`` then says so, and which subjects are missing).
    """

    by: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]
    seed: int | None = None
    name: str = ""
    scored: str = "test"
    note: str = ""

    def __post_init__(self) -> None:
        if self.scored not in ("test", "val"):
            raise ConfigError(f"split {self.name!r}: scored part must be test or val, got "
                              f"{self.scored!r}")

    @property
    def scored_recordings(self) -> tuple[str, ...]:
        """Recording ids of the part a result scores (normally ``test``)."""
        return self.part(self.scored)

    @property
    def scored_label(self) -> str:
        """``"test"`` or ``"validation"``: what the scores are measured on, in words."""
        return "validation" if self.scored == "val" else "test"

    @property
    def scored_groups(self) -> tuple[str, ...]:
        """Groups (subjects) of the part a result scores."""
        return tuple(self.groups.get(self.scored, ()))

    def part(self, name: str) -> tuple[str, ...]:
        """Recording ids of ``"train"``, ``"val"`` or ``"test"``."""
        if name not in PARTS:
            raise ConfigError(f"split part {name!r} is not one of {PARTS}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "by": self.by,
            "seed": self.seed,
            "scored": self.scored,
            "note": self.note,
            "groups": {part: list(self.groups.get(part, ())) for part in PARTS},
            **{part: list(getattr(self, part)) for part in PARTS},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Split:
        try:
            return cls(
                by=data["by"],
                train=tuple(data["train"]),
                val=tuple(data["val"]),
                test=tuple(data["test"]),
                groups={part: tuple(data["groups"][part]) for part in PARTS},
                seed=data.get("seed"),
                name=data.get("name", ""),
                scored=data.get("scored", "test"),
                note=data.get("note", ""),
            )
        except (KeyError, TypeError) as error:
            raise ConfigError(f"not a split description ({type(error).__name__}: {error})") from error

    def save(self, path: str | os.PathLike) -> None:
        """Write the split as JSON (atomically)."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Split:
        """Read a split written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"cannot read split file {path}: {error}") from error
        try:
            return cls.from_dict(data)
        except ConfigError as error:
            raise ConfigError(f"split file {path}: {error}") from error

    def check(self, corpus: Corpus) -> None:
        """Raise :class:`ConfigError` if a recording of the split is not in ``corpus``."""
        missing = [rid for part in PARTS for rid in getattr(self, part) if rid not in corpus]
        if missing:
            raise ConfigError(
                f"split {self.name or '(unnamed)'} names {len(missing)} recording(s) absent from "
                f"corpus {corpus.path} (e.g. {missing[0]!r}); it was made for another corpus"
            )


def group_of(entry: CorpusEntry, by: str) -> str:
    """The group ``entry`` belongs to under ``by`` (``"subject"``, ``"session"`` or
    ``"recording"``, each recording its own group: for corpora without subject ids only)."""
    if by not in GROUPINGS:
        raise ConfigError(f"split by {by!r}: use one of {GROUPINGS}")
    if by == "recording":
        return entry.id
    if entry.subject is None:
        raise ConfigError(
            f"recording {entry.id!r} has no subject, so it cannot be split {by}-wise; give the "
            "sources a subject (RecordingSource.subject) and prepare again"
        )
    if by == "subject":
        return entry.subject
    if entry.session is None:
        raise ConfigError(f"recording {entry.id!r} has no session, so it cannot be split session-wise")
    return f"{entry.subject}/{entry.session}"


def _groups(entries: Iterable[CorpusEntry], by: str) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for entry in entries:
        members.setdefault(group_of(entry, by), []).append(entry.id)
    return dict(sorted(members.items()))


def _entries(corpus: Corpus | Sequence[CorpusEntry]) -> list[CorpusEntry]:
    return list(corpus.entries if isinstance(corpus, Corpus) else corpus)


def _assemble(
    members: dict[str, list[str]], parts: dict[str, list[str]], by: str, seed: int | None, name: str
) -> Split:
    ids = {part: tuple(sorted(rid for g in parts[part] for rid in members[g])) for part in PARTS}
    groups = {part: tuple(sorted(parts[part])) for part in PARTS}
    return Split(by, ids["train"], ids["val"], ids["test"], groups, seed, name)


def group_split(
    corpus: Corpus | Sequence[CorpusEntry],
    by: str = "subject",
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    val_groups: Sequence[str] | None = None,
    test_groups: Sequence[str] | None = None,
    seed: int = 0,
    name: str = "",
) -> Split:
    """Split whole groups into train/val/test, by fractions of groups or explicit group lists.

    Explicit ``val_groups``/``test_groups`` take precedence over the fraction for that part; the
    remaining groups are shuffled with ``seed`` and the fractions (of all groups, rounded, at least
    one group when the fraction is positive) taken for the parts without a list.
    """
    members = _groups(_entries(corpus), by)
    names = list(members)
    explicit = {"val": list(val_groups or []), "test": list(test_groups or [])}
    for part, chosen in explicit.items():
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            raise ConfigError(f"{part} groups {unknown} are not {by}s of the corpus; known: {names}")
    if set(explicit["val"]) & set(explicit["test"]):
        raise ConfigError(f"groups {sorted(set(explicit['val']) & set(explicit['test']))} are in both val and test")
    for fraction in (val_fraction, test_fraction):
        if not 0 <= fraction < 1:
            raise ConfigError(f"split fractions must be in [0, 1), got {fraction}")
    taken = set(explicit["val"]) | set(explicit["test"])
    rng = np.random.default_rng(seed)
    remaining = [names[i] for i in rng.permutation(len(names)) if names[i] not in taken]
    parts: dict[str, list[str]] = {"val": explicit["val"], "test": explicit["test"]}
    for part, fraction, given in (
        ("test", test_fraction, test_groups),
        ("val", val_fraction, val_groups),
    ):
        if given is None and fraction > 0:
            count = max(1, round(fraction * len(names)))
            parts[part], remaining = remaining[:count], remaining[count:]
    parts["train"] = remaining
    if not remaining:
        raise ConfigError(
            f"split by {by} leaves no training group ({len(names)} group(s) in all); lower the "
            "fractions or name fewer val/test groups"
        )
    return _assemble(members, parts, by, seed, name)


def leave_one_group_out(
    corpus: Corpus | Sequence[CorpusEntry],
    by: str = "subject",
    *,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> list[Split]:
    """One split per group: that group is the test part, the rest train (and val, when asked).

    With ``val_fraction > 0``, that fraction of the other groups (at least one) is drawn with
    ``seed`` as validation in each fold.
    """
    members = _groups(_entries(corpus), by)
    if len(members) < 2:
        raise ConfigError(f"leave-one-{by}-out needs at least 2 {by}s, the corpus has {len(members)}")
    folds: list[Split] = []
    for held_out in members:
        rest = [g for g in members if g != held_out]
        rng = np.random.default_rng([seed, len(folds)])
        rest = [rest[i] for i in rng.permutation(len(rest))]
        n_val = max(1, round(val_fraction * len(members))) if val_fraction > 0 else 0
        if n_val >= len(rest):
            raise ConfigError(f"val_fraction {val_fraction} leaves no training {by}")
        parts = {"test": [held_out], "val": rest[:n_val], "train": rest[n_val:]}
        folds.append(_assemble(members, parts, by, seed, f"leave-out-{held_out}"))
    return folds


__all__ = ["GROUPINGS", "Split", "group_of", "group_split", "leave_one_group_out"]
