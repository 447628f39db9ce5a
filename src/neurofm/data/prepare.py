"""Corpus preparation: sources -> read -> preprocess -> corpus store, in parallel and in shards.

Every source runs independently (in a worker process when ``workers > 1``): it is checksummed,
skipped when the corpus already holds it from the same bytes under the same config, otherwise read,
preprocessed and written atomically. A bad recording becomes a ``failed`` line in the report (or
stops the run under ``strict``); a write error (disk full, permission) stops the run with the
committed corpus intact. ``shard=(i, N)`` keeps the sources whose id hashes to ``i`` modulo ``N``,
so N independent jobs fill one corpus.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import multiprocessing
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from tqdm import tqdm

from neurofm.data.corpus import MANIFEST_DIR, RECORDINGS_DIR, CorpusWriter, SourceFile
from neurofm.data.preprocess import PreprocessConfig, preprocess
from neurofm.data.readers import SUPPORTED_EXTENSIONS, read_recording
from neurofm.data.sources import RecordingSource
from neurofm.errors import ConfigError, CorpusError, FolderInUseError, NeurofmError, RecordingError
from neurofm.locks import LOCK_NAME, FolderLock, lock_holder, remove_stale_temporaries

PREPARED, SKIPPED, FAILED = "prepared", "skipped", "failed"


@dataclass(frozen=True)
class SourceOutcome:
    """What preparation did with one source: ``prepared``, ``skipped`` (already done) or ``failed``."""

    id: str
    status: str
    message: str = ""
    hours: float = 0.0
    paths: tuple[str, ...] = ()


@dataclass
class PreparationReport:
    """Per-source outcomes of one ``prepare_corpus`` run, in source order, and their totals."""

    corpus_dir: Path
    config_hash: str
    outcomes: list[SourceOutcome] = field(default_factory=list)
    shard: tuple[int, int] | None = None

    def _with(self, status: str) -> list[SourceOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def prepared(self) -> list[SourceOutcome]:
        return self._with(PREPARED)

    @property
    def skipped(self) -> list[SourceOutcome]:
        return self._with(SKIPPED)

    @property
    def failed(self) -> list[SourceOutcome]:
        return self._with(FAILED)

    @property
    def hours(self) -> float:
        """Hours of signal now in the corpus from this run's sources (prepared + skipped)."""
        return sum(o.hours for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "corpus_dir": str(self.corpus_dir),
            "config_hash": self.config_hash,
            "shard": list(self.shard) if self.shard else None,
            "prepared": len(self.prepared),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "hours": self.hours,
            "outcomes": [vars(o) | {"paths": list(o.paths)} for o in self.outcomes],
        }

    def summary(self) -> str:
        """A short text report: totals, then one line per failed source."""
        shard = f" (shard {self.shard[0]}/{self.shard[1]})" if self.shard else ""
        totals = (
            f"corpus {self.corpus_dir}{shard}: {len(self.prepared)} prepared, "
            f"{len(self.skipped)} already done, {len(self.failed)} failed; "
            f"{self.hours:.3f} h of signal"
        )
        lines = [totals]
        lines += [f"  failed {o.id}: {_one_line(o.message)}" for o in self.failed]
        return "\n".join(lines)


def _one_line(message: str) -> str:
    """A multi-line message (e.g. with a channel table) as its first and last line."""
    lines = [line for line in message.splitlines() if line.strip()]
    return message if len(lines) <= 2 else f"{lines[0]} [...] {lines[-1]}"


def shard_sources(sources: Sequence[RecordingSource], shard: tuple[int, int]) -> list[RecordingSource]:
    """The sources shard ``i`` of ``N`` owns: those whose id's sha256 is ``i`` modulo ``N``.

    Depends only on each id, so jobs given the same sources in any order agree on the split.
    """
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count} is invalid: use i/N with 0 <= i < N")
    return [
        s
        for s in sources
        if int.from_bytes(hashlib.sha256(s.id.encode("utf-8")).digest()[:8], "big") % count == index
    ]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/N"`` (0-based ``i``) into ``(i, N)``."""
    try:
        index_text, count_text = text.split("/")
        shard = int(index_text), int(count_text)
    except ValueError:
        raise ConfigError(f"--shard {text!r} is not of the form i/N (e.g. 0/4)") from None
    if shard[1] < 1 or not 0 <= shard[0] < shard[1]:
        raise ConfigError(f"--shard {text!r}: need 0 <= i < N (shards are numbered from 0)")
    return shard


def _is_recording_file(path: Path) -> bool:
    """A file :func:`read_recording` reads, except a BrainVision ``.eeg`` data file (its ``.vhdr``
    header is the recording; a Nihon Kohden ``.eeg`` has no ``.vhdr`` beside it)."""
    name = path.name.lower()
    if not path.is_file() or not name.endswith(SUPPORTED_EXTENSIONS):
        return False
    return not (name.endswith(".eeg") and path.with_suffix(".vhdr").exists())


def _recording_stem(path: Path) -> Path:
    """``path`` without its recording extension (``a/b.fif.gz`` -> ``a/b``)."""
    extension = next(e for e in SUPPORTED_EXTENSIONS if path.name.lower().endswith(e))
    return path.with_name(path.name[: -len(extension)])


def _file_source(path: Path, recording_id: str) -> RecordingSource:
    return RecordingSource(id=recording_id, paths=(path,), reader=read_recording)


def _registered_dataset_sources(name: str) -> list[RecordingSource] | None:
    """Sources of the registered dataset ``name``, or ``None`` when no such dataset exists."""
    try:
        from neurofm.datasets.registry import get_dataset
    except ImportError:
        return None
    try:
        dataset = get_dataset(name)
    except (KeyError, NeurofmError):
        return None
    return list(dataset.sources())


def resolve_source_argument(argument: str | os.PathLike) -> list[RecordingSource]:
    """The sources one command-line SOURCE names: a file, a folder (searched recursively), a glob,
    or a registered dataset name.

    File-based sources get the id of the path relative to the folder (or the file stem), without
    the suffix, and are read with :func:`neurofm.data.readers.read_recording`.
    """
    text = str(argument)
    path = Path(text)
    if path.is_file():
        if not path.name.lower().endswith(SUPPORTED_EXTENSIONS):
            raise ConfigError(
                f"file {path} has no recording extension ({', '.join(SUPPORTED_EXTENSIONS)}); "
                "rename it with its format's extension so the right reader is used"
            )
        return [_file_source(path, _recording_stem(path).name)]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if _is_recording_file(p))
        if not files:
            raise ConfigError(
                f"folder {path} holds no recording files ({', '.join(SUPPORTED_EXTENSIONS)})"
            )
        return [_file_source(p, _recording_stem(p.relative_to(path)).as_posix()) for p in files]
    if glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if _is_recording_file(Path(p)))
        if not files:
            raise ConfigError(f"pattern {text!r} matches no recording files")
        return [_file_source(p, _recording_stem(p).name) for p in files]
    registered = _registered_dataset_sources(text)
    if registered is not None:
        return registered
    raise ConfigError(f"source {text!r} is not a file, folder, glob pattern or registered dataset name")


def resolve_sources(arguments: Iterable[str | os.PathLike | RecordingSource]) -> list[RecordingSource]:
    """Sources for a mix of :class:`RecordingSource` objects and command-line SOURCE arguments.

    Raises :class:`ConfigError` when two sources share an id (they would overwrite each other).
    """
    sources: list[RecordingSource] = []
    for argument in arguments:
        if isinstance(argument, RecordingSource):
            sources.append(argument)
        else:
            sources.extend(resolve_source_argument(argument))
    seen: dict[str, RecordingSource] = {}
    for source in sources:
        if source.id in seen:
            first = ", ".join(map(str, seen[source.id].paths))
            second = ", ".join(map(str, source.paths))
            raise ConfigError(
                f"two sources share the recording id {source.id!r} ({first} and {second}); "
                "prepare them into separate corpora or give them distinct ids"
            )
        seen[source.id] = source
    return sources


def _prepare_one(source: RecordingSource, root: str, config: PreprocessConfig) -> SourceOutcome:
    """Prepare one source into the corpus (runs in a worker process; must stay module-level)."""
    paths = tuple(str(p) for p in source.paths)
    try:
        checksums = [SourceFile.of(p) for p in source.paths]
    except OSError as error:
        return SourceOutcome(source.id, FAILED, f"cannot read source file: {error}", paths=paths)
    writer = CorpusWriter(root, config)
    done = writer.finished_entry(source.id, checksums)
    if done is not None:
        return SourceOutcome(source.id, SKIPPED, "already prepared", done.duration / 3600.0, paths)
    try:
        recording = preprocess(source.load(), config)
    except NeurofmError as error:
        return SourceOutcome(source.id, FAILED, str(error), paths=paths)
    except MemoryError:
        message = (
            f"{', '.join(paths)}: not enough memory to read and preprocess it; run `neurofm "
            "prepare` again with fewer --workers or on a machine with more memory"
        )
        return SourceOutcome(source.id, FAILED, message, paths=paths)
    except Exception as error:  # a reader choking on a damaged file is bad input
        message = f"{', '.join(paths)}: unreadable ({type(error).__name__}: {error})"
        return SourceOutcome(source.id, FAILED, message, paths=paths)
    try:
        entry = writer.write(source.id, recording, checksums, label=source.label)
    except OSError as error:
        raise CorpusError(
            f"cannot write recording {source.id!r} into {writer.path}: {error.strerror or error} "
            f"({error.filename or writer.path}); recordings already in the corpus are intact; "
            "free disk space or fix permissions, then run `neurofm prepare` again to resume"
        ) from error
    return SourceOutcome(source.id, PREPARED, "", entry.duration / 3600.0, paths)


def prepare_corpus(
    sources: Sequence[RecordingSource | str | os.PathLike],
    out_dir: str | os.PathLike,
    config: PreprocessConfig | None = None,
    *,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    strict: bool = False,
    progress: bool = True,
    start_method: str | None = None,
    lock_wait: float | None = None,
) -> PreparationReport:
    """Prepare ``sources`` into the corpus ``out_dir/<config.hash()>`` and report per source.

    Args:
        sources: :class:`RecordingSource` objects, or files, folders, globs, dataset names.
        out_dir: parent folder; the corpus is its ``<config hash>`` subfolder.
        config: preprocessing; default :meth:`PreprocessConfig.labram`.
        workers: processes (``1`` runs in this process).
        shard: ``(i, N)`` to prepare only shard ``i`` of ``N`` (see :func:`shard_sources`).
        strict: stop at the first bad recording with :class:`RecordingError` instead of skipping.
        progress: show a tqdm bar.
        start_method: ``multiprocessing`` start method of the workers (default: the platform's;
            everything a worker receives pickles, so ``"spawn"`` works too).
        lock_wait: seconds to wait while another run prepares into the same corpus (``None``:
            until it ends, then this run finds its recordings done; ``neurofm prepare`` uses 0).

    Raises:
        RecordingError: under ``strict``, for the first source that failed.
        CorpusError: when writing fails (disk full, permission); the corpus stays consistent.
        FolderInUseError: another live run prepares the corpus (after ``lock_wait``), the same
            shard, or shards of another ``N``.
    """
    config = config if config is not None else PreprocessConfig.labram()
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    resolved = resolve_sources(sources)
    if shard is not None:
        resolved = shard_sources(resolved, shard)
    writer = CorpusWriter(out_dir, config)
    with corpus_lock(writer.path, shard, lock_wait):
        return _prepare_locked(resolved, out_dir, writer, config, workers, shard, strict, progress,
                               start_method)


def _prepare_locked(resolved: list[RecordingSource], out_dir: str | os.PathLike,
                    writer: CorpusWriter, config: PreprocessConfig, workers: int,
                    shard: tuple[int, int] | None, strict: bool, progress: bool,
                    start_method: str | None) -> PreparationReport:
    report = PreparationReport(writer.path, writer.config_hash, shard=shard)
    bar = tqdm(total=len(resolved), desc="prepare", unit="rec", disable=not progress)
    outcomes: dict[str, SourceOutcome] = {}

    def record(outcome: SourceOutcome) -> None:
        outcomes[outcome.id] = outcome
        bar.update(1)
        bar.set_postfix(failed=sum(o.status == FAILED for o in outcomes.values()), refresh=False)
        if strict and outcome.status == FAILED:
            raise RecordingError(
                f"stopped (--strict) at recording {outcome.id!r}: {outcome.message}; "
                "recordings prepared so far are kept"
            )

    try:
        if workers == 1 or len(resolved) <= 1:
            for source in resolved:
                record(_prepare_one(source, str(out_dir), config))
        else:
            context = multiprocessing.get_context(start_method)
            _prepare_in_processes(resolved, str(out_dir), config, workers, context, record)
    finally:
        bar.close()
    report.outcomes = [outcomes[s.id] for s in resolved]
    return report


_SHARD_LOCK = re.compile(re.escape(LOCK_NAME) + r"\.shard-(\d+)-of-(\d+)$")


@contextlib.contextmanager
def corpus_lock(corpus_path: Path, shard: tuple[int, int] | None,
                wait: float | None = 0.0) -> Iterator[None]:
    """Hold the corpus folder for one preparation run, and remove killed runs' temp files.

    An unsharded run holds the corpus lock (:data:`~neurofm.locks.LOCK_NAME`) throughout and is
    refused while shard runs are alive. Shard ``i/N`` holds its own ``.shard-i-of-N`` lock, so
    shards of one ``N`` run side by side (they own disjoint recordings), while the same shard
    twice, or shards of another ``N`` (their recordings overlap), are refused. Temp files left
    in the corpus are deleted only by a run that finds no other holder alive, under the corpus
    lock, which shard runs take while they register.
    """
    main = FolderLock(corpus_path / LOCK_NAME, "neurofm prepare"
                      + (f" --shard {shard[0]}/{shard[1]}" if shard else ""))
    main.acquire(wait)
    own: FolderLock | None = None
    try:
        shard_holders = []
        for path in sorted(corpus_path.glob(f"{LOCK_NAME}.shard-*")):
            match = _SHARD_LOCK.match(path.name)
            holder = lock_holder(path) if match else None
            if match and holder is not None:
                shard_holders.append(((int(match.group(1)), int(match.group(2))), holder))
        for (index, count), holder in shard_holders:
            if shard is None or count != shard[1] or index == shard[0]:
                what = "this corpus" if shard is None or count != shard[1] else "this shard"
                raise FolderInUseError(
                    f"{corpus_path} is in use by {holder.describe()}, preparing shard "
                    f"{index}/{count} of it, which overlaps {what}; wait for it to finish or stop "
                    "it (shards of one corpus must share the same N)")
        if shard is not None:
            own = FolderLock(corpus_path / f"{LOCK_NAME}.shard-{shard[0]}-of-{shard[1]}",
                             main.command)
            own.acquire(0.0)
        if not shard_holders:
            for folder in (corpus_path, corpus_path / RECORDINGS_DIR, corpus_path / MANIFEST_DIR):
                remove_stale_temporaries(folder)
    except BaseException:
        main.release()
        raise
    if own is not None:
        main.release()  # other shards may now register
    try:
        yield
    finally:
        (own or main).release()


def _prepare_in_processes(
    sources: list[RecordingSource],
    root: str,
    config: PreprocessConfig,
    workers: int,
    context: BaseContext,
    record: Callable[[SourceOutcome], None],
) -> None:
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = {pool.submit(_prepare_one, s, root, config) for s in sources}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    record(future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


__all__ = [
    "PreparationReport",
    "SourceOutcome",
    "corpus_lock",
    "parse_shard",
    "prepare_corpus",
    "resolve_source_argument",
    "resolve_sources",
    "shard_sources",
]
