"""The preprocessed corpus store: per-recording ``.npy`` arrays plus a per-recording manifest.

Layout (documented in ``docs/corpus-format.md``)::

    OUT/<config_hash>/corpus.json              preprocessing config, its hash, format version
    OUT/<config_hash>/recordings/<key>.npy     float32 [C, T] signal, memory-mappable
    OUT/<config_hash>/recordings/<key>.labels.npy   optional int32 [T] per-sample labels
    OUT/<config_hash>/manifest/<key>.json      one entry per recording, written last

One folder per preprocessing config, so a changed config makes a new corpus and never mixes into
an old one. A recording counts as present only once its manifest entry exists; the arrays are
renamed into place (fsynced) before the entry is committed, so a killed run leaves at most an
array without an entry, which the next ``neurofm prepare`` redoes. One entry file per recording
lets independent shard jobs fill the same corpus without clobbering each other.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neurofm import __version__
from neurofm.atomic import atomic_path, atomic_write_json
from neurofm.channels import LABRAM_VOCABULARY, normalize_channel_name
from neurofm.data.recording import Annotation, Recording
from neurofm.errors import CorpusError

if TYPE_CHECKING:
    from neurofm.data.preprocess import PreprocessConfig

FORMAT_NAME = "neurofm-corpus"
FORMAT_VERSION = 1
CORPUS_FILE = "corpus.json"
RECORDINGS_DIR = "recordings"
MANIFEST_DIR = "manifest"

_REPAIR_HINT = (
    "run `neurofm prepare` again with the same sources and options: it re-prepares exactly the "
    "affected recordings"
)
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_VOCABULARY_INDEX = {name: i for i, name in enumerate(LABRAM_VOCABULARY)}


def recording_key(recording_id: str) -> str:
    """The filesystem-safe file stem for a recording id (readable part + 8 hex of its hash).

    The hash suffix keeps keys unique even when two ids differ only in characters that the
    readable part replaces (``a/b`` and ``a_b``).
    """
    readable = _UNSAFE_CHARS.sub("_", recording_id).strip("._") or "recording"
    digest = hashlib.sha256(recording_id.encode("utf-8")).hexdigest()[:8]
    return f"{readable[:80]}-{digest}"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class SourceFile:
    """A file a recording was read from, with its size in bytes and sha256."""

    path: str
    sha256: str
    size: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> SourceFile:
        """Checksum ``path`` (absolute path recorded)."""
        resolved = Path(path).resolve()
        return cls(str(resolved), file_sha256(resolved), resolved.stat().st_size)


@dataclass(frozen=True)
class CorpusEntry:
    """One recording of a corpus, as its manifest entry describes it.

    ``n_samples`` samples of ``len(channels)`` channels at ``sfreq`` Hz in ``unit``; the array is
    ``recordings/<key>.npy`` (float32 ``[C, T]``). ``vocabulary_indices`` holds each channel's
    LaBraM vocabulary index when every channel maps onto the vocabulary, else ``None`` (EMG).
    """

    id: str
    key: str
    sources: tuple[SourceFile, ...]
    channels: tuple[str, ...]
    channel_types: tuple[str, ...]
    vocabulary_indices: tuple[int, ...] | None
    sfreq: float
    unit: str
    n_samples: int
    subject: str | None
    session: str | None
    label: str | None
    annotations: tuple[Annotation, ...]
    has_labels: bool
    array_sha256: str
    quality: tuple[str, ...]
    meta: Mapping[str, Any]
    config_hash: str
    neurofm_version: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.sfreq

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def array_name(self) -> str:
        return f"{self.key}.npy"

    @property
    def labels_name(self) -> str | None:
        return f"{self.key}.labels.npy" if self.has_labels else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, including the checksum that detects hand edits."""
        body = _entry_body(self)
        return {**body, "checksum": _checksum(body)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: Path) -> CorpusEntry:
        """Parse and verify an entry read from ``where``; a hand edit fails its checksum."""
        data = dict(data)
        stored = data.pop("checksum", None)
        if stored != _checksum(data):
            raise CorpusError(
                f"manifest entry {where} does not match its checksum (edited by hand or damaged); "
                f"delete it and {_REPAIR_HINT}"
            )
        try:
            return cls(
                id=str(data["id"]),
                key=str(data["key"]),
                sources=tuple(SourceFile(**s) for s in data["sources"]),
                channels=tuple(data["channels"]),
                channel_types=tuple(data["channel_types"]),
                vocabulary_indices=(
                    None if data["vocabulary_indices"] is None else tuple(data["vocabulary_indices"])
                ),
                sfreq=float(data["sfreq"]),
                unit=str(data["unit"]),
                n_samples=int(data["n_samples"]),
                subject=data["subject"],
                session=data["session"],
                label=data["label"],
                annotations=tuple(Annotation(**a) for a in data["annotations"]),
                has_labels=bool(data["has_labels"]),
                array_sha256=str(data["array_sha256"]),
                quality=tuple(data["quality"]),
                meta=data["meta"],
                config_hash=str(data["config_hash"]),
                neurofm_version=str(data["neurofm_version"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CorpusError(
                f"manifest entry {where} is malformed ({type(error).__name__}: {error}); "
                f"delete it and {_REPAIR_HINT}"
            ) from error


def _entry_body(entry: CorpusEntry) -> dict[str, Any]:
    body = asdict(entry)
    body["duration"] = entry.duration
    return body


def _checksum(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _json_safe(value: Any) -> Any:
    """``value`` with everything JSON cannot hold turned into strings (for ``Recording.meta``)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _vocabulary_indices(recording: Recording) -> tuple[int, ...] | None:
    if any(t != "eeg" for t in recording.ch_types):
        return None
    names = [normalize_channel_name(name) for name in recording.ch_names]
    if any(name is None for name in names):
        return None
    return tuple(_VOCABULARY_INDEX[name] for name in names)  # type: ignore[index]


def _read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of an ``.npy`` file, without reading its data."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        if fortran:
            raise ValueError("Fortran-ordered array")
        return shape, dtype, handle.tell()


def _check_array(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Raise :class:`CorpusError` unless ``path`` holds a complete array of ``shape``/``dtype``."""
    if not path.is_file():
        raise CorpusError(f"corpus array {path} is missing; {_REPAIR_HINT}")
    try:
        found_shape, found_dtype, offset = _read_npy_header(path)
    except (OSError, ValueError) as error:
        raise CorpusError(f"corpus array {path} is unreadable ({error}); {_REPAIR_HINT}") from error
    if tuple(found_shape) != tuple(shape) or found_dtype != dtype:
        raise CorpusError(
            f"corpus array {path} holds {found_dtype} {tuple(found_shape)} but the manifest says "
            f"{dtype} {tuple(shape)}; {_REPAIR_HINT}"
        )
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        raise CorpusError(
            f"corpus array {path} is {size} bytes, expected {expected} (truncated or damaged); "
            f"{_REPAIR_HINT}"
        )


def _content_mismatch(path: Path) -> str:
    return (f"corpus array {path} does not match the sha256 in its manifest entry (its bytes were "
            f"overwritten or damaged); {_REPAIR_HINT}")


def _load_entry(path: Path) -> CorpusEntry:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorpusError(
            f"manifest entry {path} is unreadable ({error}); delete it and {_REPAIR_HINT}"
        ) from error
    if not isinstance(data, dict):
        raise CorpusError(f"manifest entry {path} is not a JSON object; delete it and {_REPAIR_HINT}")
    return CorpusEntry.from_dict(data, path)


def find_corpus_dir(path: str | os.PathLike) -> Path:
    """The corpus folder at ``path``: the folder itself, or its one ``<config_hash>`` subfolder.

    Raises :class:`CorpusError` when there is none, or several (the message lists their hashes).
    """
    path = Path(path)
    if (path / CORPUS_FILE).is_file():
        return path
    if not path.is_dir():
        raise CorpusError(f"no corpus at {path}: the folder does not exist; run `neurofm prepare`")
    found = sorted(d for d in path.iterdir() if (d / CORPUS_FILE).is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise CorpusError(
            f"no corpus at {path}: neither it nor a subfolder holds {CORPUS_FILE}; "
            "run `neurofm prepare SOURCE --out DIR` first"
        )
    names = ", ".join(str(d) for d in found)
    raise CorpusError(
        f"{path} holds {len(found)} corpora (one per preprocessing config): {names}; pass one of them"
    )


def _read_corpus_file(folder: Path) -> dict[str, Any]:
    path = folder / CORPUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorpusError(f"corpus file {path} is unreadable ({error}); {_REPAIR_HINT}") from error
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise CorpusError(f"{path} is not a neurofm corpus file (no format {FORMAT_NAME!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise CorpusError(
            f"{path} has corpus format version {data.get('format_version')}, this neurofm reads "
            f"version {FORMAT_VERSION}; prepare the corpus again with this version"
        )
    if not isinstance(data.get("config"), dict) or not isinstance(data.get("config_hash"), str):
        raise CorpusError(f"corpus file {path} lacks its preprocessing config; {_REPAIR_HINT}")
    return data


@dataclass(frozen=True)
class CorpusIssue:
    """A problem found while opening a corpus: which file, and what is wrong."""

    path: Path
    message: str


class Corpus:
    """A prepared corpus, opened for reading.

    Opening reads the small manifest entries (not the signals) and checks that every entry's
    arrays exist with the shape it states; any damage raises :class:`CorpusError` naming the file.
    Array contents are checked against their sha256 by :meth:`verify`, or on a recording's first
    :meth:`signal` read. Signals are returned as read-only memory maps, so nothing scales with
    corpus size in memory.

    Args:
        path: the corpus folder (``OUT/<config_hash>``) or ``OUT`` when it holds one corpus.
        allow_incomplete: open what is complete and list the damage in :attr:`issues` instead of
            raising (used by ``neurofm info``).
    """

    def __init__(self, path: str | os.PathLike, *, allow_incomplete: bool = False) -> None:
        self.path = find_corpus_dir(path)
        info = _read_corpus_file(self.path)
        self.config: dict[str, Any] = info["config"]
        self.config_hash: str = info["config_hash"]
        self.neurofm_version: str = str(info.get("neurofm_version", "unknown"))
        self.issues: list[CorpusIssue] = []
        entries: dict[str, CorpusEntry] = {}
        for entry_path in sorted((self.path / MANIFEST_DIR).glob("*.json")):
            try:
                entry = self._checked_entry(entry_path)
            except CorpusError as error:
                self.issues.append(CorpusIssue(entry_path, str(error)))
                continue
            entries[entry.id] = entry
        committed = {e.array_name for e in entries.values()} | {
            e.labels_name for e in entries.values() if e.labels_name
        }
        damaged_keys = {issue.path.stem for issue in self.issues}
        for array_path in sorted((self.path / RECORDINGS_DIR).glob("*.npy")):
            key = array_path.name.removesuffix(".npy").removesuffix(".labels")
            if array_path.name not in committed and key not in damaged_keys:
                self.issues.append(
                    CorpusIssue(
                        array_path,
                        f"corpus array {array_path} has no manifest entry (its entry was deleted, "
                        f"or a preparation run was interrupted); {_REPAIR_HINT}",
                    )
                )
        if self.issues and not allow_incomplete:
            shown = "\n  ".join(issue.message for issue in self.issues[:5])
            more = f"\n  ... and {len(self.issues) - 5} more" if len(self.issues) > 5 else ""
            raise CorpusError(
                f"corpus {self.path} is damaged or incomplete ({len(self.issues)} problem(s)):\n"
                f"  {shown}{more}"
            )
        self._entries = dict(sorted(entries.items()))
        # Recordings whose array matched its sha256 (kept when a DataLoader copies the corpus).
        self._verified: set[str] = set()

    def _checked_entry(self, entry_path: Path) -> CorpusEntry:
        entry = _load_entry(entry_path)
        if entry_path.stem != entry.key or entry.key != recording_key(entry.id):
            raise CorpusError(
                f"manifest entry {entry_path} names recording {entry.id!r} whose file key is "
                f"{recording_key(entry.id)!r}; delete it and {_REPAIR_HINT}"
            )
        if entry.config_hash != self.config_hash:
            raise CorpusError(
                f"manifest entry {entry_path} was prepared with config {entry.config_hash}, "
                f"not this corpus's {self.config_hash}; delete it and {_REPAIR_HINT}"
            )
        recordings = self.path / RECORDINGS_DIR
        _check_array(recordings / entry.array_name, (entry.n_channels, entry.n_samples), np.dtype("<f4"))
        if entry.labels_name:
            _check_array(recordings / entry.labels_name, (entry.n_samples,), np.dtype("<i4"))
        return entry

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[CorpusEntry]:
        return iter(self._entries.values())

    def __contains__(self, recording_id: object) -> bool:
        return recording_id in self._entries

    def __getitem__(self, recording_id: str) -> CorpusEntry:
        try:
            return self._entries[recording_id]
        except KeyError:
            raise CorpusError(f"recording {recording_id!r} is not in corpus {self.path}") from None

    @property
    def ids(self) -> list[str]:
        """Recording ids, sorted."""
        return list(self._entries)

    @property
    def entries(self) -> list[CorpusEntry]:
        return list(self._entries.values())

    def signal_path(self, recording_id: str) -> Path:
        return self.path / RECORDINGS_DIR / self[recording_id].array_name

    def signal(self, recording_id: str) -> np.ndarray:
        """The recording's float32 ``[C, T]`` signal as a read-only memory map, in the entry's unit.

        The first time a recording is read through this corpus object, its array is checked
        against the manifest's sha256 (unless :meth:`verify` already did); a mismatch raises
        :class:`CorpusError` naming the file.
        """
        if recording_id not in self._verified:
            problems = self.verify([recording_id])
            if problems:
                raise CorpusError(problems[0].message)
        return np.load(self.signal_path(recording_id), mmap_mode="r")

    def labels(self, recording_id: str) -> np.ndarray | None:
        """Per-sample int32 labels ``[T]`` (memory map; ``-1`` = unlabelled), or ``None``."""
        entry = self[recording_id]
        if entry.labels_name is None:
            return None
        return np.load(self.path / RECORDINGS_DIR / entry.labels_name, mmap_mode="r")

    def load_recording(self, recording_id: str) -> Recording:
        """The prepared recording as a :class:`Recording` (signal copied into memory)."""
        entry = self[recording_id]
        labels = self.labels(recording_id)
        return Recording(
            signal=np.array(self.signal(recording_id)),
            ch_names=list(entry.channels),
            ch_types=list(entry.channel_types),
            sfreq=entry.sfreq,
            unit=entry.unit,
            annotations=list(entry.annotations),
            source=Path(entry.sources[0].path) if entry.sources else None,
            subject=entry.subject,
            session=entry.session,
            labels=None if labels is None else np.array(labels),
            meta=dict(entry.meta),
        )

    def verify(self, recording_ids: Sequence[str] | None = None) -> list[CorpusIssue]:
        """Recompute the signal arrays' sha256 (of ``recording_ids``, default all) against the
        manifest; return the mismatches. Hashing reads every byte (about 0.1 s per 100 MB cached, on
        two cores); arrays that pass are not hashed again by :meth:`signal`.
        """
        problems = []
        for recording_id in self.ids if recording_ids is None else recording_ids:
            entry = self[recording_id]
            path = self.signal_path(entry.id)
            if file_sha256(path) == entry.array_sha256:
                self._verified.add(entry.id)
            else:
                problems.append(CorpusIssue(path, _content_mismatch(path)))
        return problems

    def summary(self) -> dict[str, Any]:
        """Hours, recordings, channels, subjects, labels and config hash, for ``neurofm info``."""
        entries = self.entries
        channel_counts: dict[str, int] = {}
        for entry in entries:
            for name in entry.channels:
                channel_counts[name] = channel_counts.get(name, 0) + 1
        labels: dict[str, int] = {}
        for entry in entries:
            if entry.label is not None:
                labels[entry.label] = labels.get(entry.label, 0) + 1
        annotation_counts: dict[str, int] = {}
        for entry in entries:
            for annotation in entry.annotations:
                annotation_counts[annotation.description] = (
                    annotation_counts.get(annotation.description, 0) + 1
                )
        return {
            "path": str(self.path),
            "config_hash": self.config_hash,
            "config": self.config,
            "neurofm_version": self.neurofm_version,
            "recordings": len(entries),
            "hours": sum(e.duration for e in entries) / 3600.0,
            "subjects": sorted({e.subject for e in entries if e.subject is not None}),
            "sessions": len({(e.subject, e.session) for e in entries if e.session is not None}),
            "sfreq": sorted({e.sfreq for e in entries}),
            "units": sorted({e.unit for e in entries}),
            "channel_counts": dict(sorted(channel_counts.items())),
            "n_channels": sorted({e.n_channels for e in entries}),
            "recording_labels": dict(sorted(labels.items())),
            "annotation_counts": dict(sorted(annotation_counts.items())),
            "per_sample_labels": sum(e.has_labels for e in entries),
            "quality_notes": sum(len(e.quality) for e in entries),
            "issues": [issue.message for issue in self.issues],
        }


class CorpusWriter:
    """Adds recordings to the corpus of one preprocessing config under ``root``.

    Creates ``root/<config.hash()>/`` on first use; refuses a folder whose ``corpus.json`` holds a
    different config. Each :meth:`write` renames the arrays into place (fsynced) and only then
    commits the manifest entry, so a recording is either complete or absent.
    """

    def __init__(self, root: str | os.PathLike, config: PreprocessConfig) -> None:
        self.config_dict = config.to_dict()
        self.config_hash = config.hash()
        self.path = Path(root) / self.config_hash
        info = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "config": self.config_dict,
            "config_hash": self.config_hash,
            "neurofm_version": __version__,
        }
        corpus_file = self.path / CORPUS_FILE
        if corpus_file.is_file():
            existing = _read_corpus_file(self.path)
            if existing["config_hash"] != self.config_hash or existing["config"] != self.config_dict:
                raise CorpusError(
                    f"{corpus_file} describes a different preprocessing config than this run's "
                    f"(hash {self.config_hash}); use another --out folder or the matching config"
                )
        else:
            # Shards may race here; they write identical bytes, so the last rename wins harmlessly.
            atomic_write_json(corpus_file, info)
        (self.path / RECORDINGS_DIR).mkdir(exist_ok=True)
        (self.path / MANIFEST_DIR).mkdir(exist_ok=True)

    def entry_path(self, recording_id: str) -> Path:
        return self.path / MANIFEST_DIR / f"{recording_key(recording_id)}.json"

    def finished_entry(self, recording_id: str, sources: Sequence[SourceFile]) -> CorpusEntry | None:
        """The committed entry of ``recording_id`` if it is complete and from the same source bytes.

        Returns ``None`` (re-prepare) when there is no entry, the entry is damaged, its arrays are
        missing or short, its signal array does not match its sha256, or a source file's checksum
        changed.
        """
        path = self.entry_path(recording_id)
        if not path.is_file():
            return None
        try:
            entry = _load_entry(path)
            recordings = self.path / RECORDINGS_DIR
            _check_array(
                recordings / entry.array_name, (entry.n_channels, entry.n_samples), np.dtype("<f4")
            )
            if entry.labels_name:
                _check_array(recordings / entry.labels_name, (entry.n_samples,), np.dtype("<i4"))
        except CorpusError:
            return None
        if file_sha256(recordings / entry.array_name) != entry.array_sha256:
            return None
        same_sources = [(s.sha256, s.size) for s in entry.sources] == [
            (s.sha256, s.size) for s in sources
        ]
        if entry.id != recording_id or entry.config_hash != self.config_hash or not same_sources:
            return None
        return entry

    def write(
        self,
        recording_id: str,
        recording: Recording,
        sources: Sequence[SourceFile],
        label: str | None = None,
    ) -> CorpusEntry:
        """Store a preprocessed recording and commit its manifest entry; return the entry.

        ``recording.signal`` is stored as float32 ``[C, T]`` in ``recording.unit``; per-sample
        labels, when present, as int32 ``[T]``. An ``OSError`` (disk full, permission) propagates
        after the temporary files are removed, leaving the committed corpus untouched.
        """
        key = recording_key(recording_id)
        recordings = self.path / RECORDINGS_DIR
        self._remove_stale_temporaries(key)
        entry_file = self.entry_path(recording_id)
        # Withdraw an outdated entry first, so it never points at arrays being replaced.
        entry_file.unlink(missing_ok=True)
        signal = np.ascontiguousarray(recording.signal, dtype="<f4")
        with atomic_path(recordings / f"{key}.npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, signal, allow_pickle=False)
        labels_file = recordings / f"{key}.labels.npy"
        if recording.labels is not None:
            labels = np.ascontiguousarray(recording.labels, dtype="<i4")
            with atomic_path(labels_file) as tmp, open(tmp, "wb") as handle:
                np.save(handle, labels, allow_pickle=False)
        else:
            labels_file.unlink(missing_ok=True)
        meta = _json_safe(recording.meta)
        # Readers and preprocessing record every drop, cut and clamp as a line in "warnings".
        quality = meta.get("warnings", [])
        entry = CorpusEntry(
            id=recording_id,
            key=key,
            sources=tuple(sources),
            channels=tuple(recording.ch_names),
            channel_types=tuple(recording.ch_types),
            vocabulary_indices=_vocabulary_indices(recording),
            sfreq=float(recording.sfreq),
            unit=recording.unit,
            n_samples=recording.n_samples,
            subject=recording.subject,
            session=recording.session,
            label=label,
            annotations=tuple(
                Annotation(float(a.onset), float(a.duration), str(a.description))
                for a in recording.annotations
            ),
            has_labels=recording.labels is not None,
            array_sha256=file_sha256(recordings / f"{key}.npy"),
            quality=tuple(str(q) for q in (quality if isinstance(quality, list) else [quality])),
            meta=meta,
            config_hash=self.config_hash,
            neurofm_version=__version__,
        )
        try:
            atomic_write_json(entry_file, entry.to_dict())
        except OSError:
            # Without its entry the arrays are unreachable; remove them so the corpus stays clean.
            for name in (entry.array_name, entry.labels_name):
                if name:
                    (recordings / name).unlink(missing_ok=True)
            raise
        return entry

    def _remove_stale_temporaries(self, key: str) -> None:
        """Delete temp files a killed run left for this recording (only this recording's)."""
        targets = (
            self.path / RECORDINGS_DIR / f"{key}.npy",
            self.path / RECORDINGS_DIR / f"{key}.labels.npy",
            self.path / MANIFEST_DIR / f"{key}.json",
        )
        for target in targets:
            for stale in target.parent.glob(f".tmp-{target.name}.*"):
                stale.unlink(missing_ok=True)


__all__ = [
    "Corpus",
    "CorpusEntry",
    "CorpusIssue",
    "CorpusWriter",
    "SourceFile",
    "file_sha256",
    "find_corpus_dir",
    "recording_key",
]
