"""Getting dataset files onto local disk safely: where to look, how to download, how to verify.

Three rules hold for every file the registry hands out:

1. A file is used only after its SHA-256 matches an expected value (published by the source,
   given by the user, or recorded on first use when the user asked for that explicitly).
2. A download or extraction goes to a temporary file beside its target and is renamed into place
   only after the checksum matched, so a failed, truncated or tampered download never appears
   under the final name.
3. A relative path from a catalogue entry or an archive can never address anything outside the
   dataset folder (no ``..``, no absolute paths, no symlinks leading out).

The network is used only by :func:`download_file`, and never when ``NEUROFM_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import stat
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import ClassVar

from tqdm import tqdm

from neurofm.atomic import atomic_path, atomic_write_json, atomic_write_text
from neurofm.errors import DatasetError

MIRROR_ENV = "NEUROFM_MIRROR"
CACHE_ENV = "NEUROFM_CACHE"
OFFLINE_ENV = "NEUROFM_OFFLINE"

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RemoteArchive:
    """An archive published by a dataset's source, from which catalogue files are extracted.

    Attributes:
        name: the archive's file name (``"BCICIV_2a_gdf.zip"``), also its name in the cache.
        url: where the source publishes it.
        sha256: its expected checksum, or ``None`` where the source publishes none.
    """

    name: str
    url: str
    sha256: str | None = None

    @property
    def kind(self) -> str:
        """``"zip"`` (unpacked by neurofm) or the suffix of a format it leaves to the user."""
        return PurePosixPath(self.name).suffix.lower().lstrip(".")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it lives locally, where it comes from, what it must hash to.

    Attributes:
        path: POSIX path relative to the dataset folder (``"right_hand/12345-1/0.txt"``).
        url: direct download address, or ``None`` for a file that only ships inside ``archive``.
        sha256: expected checksum, or ``None`` where the source publishes none.
        archive: name of the :class:`RemoteArchive` that contains the file, if any.
        member: the file's path inside that archive.
    """

    path: str
    url: str | None = None
    sha256: str | None = None
    archive: str | None = None
    member: str | None = None


def mirror_root(mirror: str | os.PathLike | None = None) -> Path | None:
    """The local mirror folder: ``mirror`` if given, else ``$NEUROFM_MIRROR``, else ``None``."""
    chosen = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    return Path(chosen).expanduser() if chosen else None


def cache_root(cache: str | os.PathLike | None = None) -> Path:
    """Where downloads go: ``cache`` if given, else ``$NEUROFM_CACHE``, else ``~/.cache/neurofm``."""
    chosen = cache if cache is not None else os.environ.get(CACHE_ENV)
    return Path(chosen).expanduser() if chosen else Path.home() / ".cache" / "neurofm"


def network_allowed() -> bool:
    """False when ``NEUROFM_OFFLINE`` is set to a true value (``1``, ``true``, ``yes``)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in {"1", "true", "yes", "on"}


def check_relative_path(relative: str, *, what: str) -> PurePosixPath:
    """Validate a POSIX path that must stay inside some folder; return it parsed.

    Refuses empty paths, absolute paths, Windows drive or backslash forms, NUL bytes, and any
    ``.`` or ``..`` component. ``what`` names the path's origin for the error message.
    """
    problem = None
    if not relative or "\x00" in relative or "\\" in relative:
        problem = "is empty or contains a backslash or NUL byte"
    elif relative.startswith("/") or (len(relative) > 1 and relative[1] == ":"):
        problem = "is absolute"
    elif any(part in {"", ".", ".."} for part in relative.split("/")):
        problem = "contains an empty, '.' or '..' component"
    if problem:
        raise DatasetError(
            f"{what}: path {relative!r} {problem}; dataset paths must be plain relative paths "
            "inside the dataset folder. Refusing it (nothing was written); check the catalogue "
            "entry or archive you are using."
        )
    return PurePosixPath(relative)


def safe_join(root: Path, relative: str, *, what: str) -> Path:
    """``root / relative``, refusing any path that would resolve outside ``root``.

    Besides the lexical checks of :func:`check_relative_path`, the resolved result must lie under
    the resolved ``root``, which catches symlinked folders or files that point elsewhere.
    """
    parsed = check_relative_path(relative, what=what)
    candidate = root.joinpath(*parsed.parts)
    resolved_root = root.resolve()
    resolved = candidate.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise DatasetError(
            f"{what}: {candidate} resolves to {resolved}, outside {resolved_root} (a symlink "
            "leads out of the dataset folder). Refusing it; remove the symlink."
        )
    return candidate


class ChecksumCache:
    """SHA-256 of local files, remembered by (path, size, mtime) so repeated checks are fast.

    Results live in memory for the process and in ``store`` (a JSON file in the download cache)
    across processes. A changed size or modification time forces a fresh hash.
    """

    _memory: ClassVar[dict[tuple[str, int, int], str]] = {}

    def __init__(self, store: Path | None) -> None:
        self.store = store
        self._persisted: dict[str, list] = {}
        self._changed = False
        if store is not None and store.is_file():
            try:
                loaded = json.loads(store.read_text(encoding="utf-8"))
                self._persisted = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                # A damaged cache only costs a re-hash; it is rewritten on save().
                self._persisted = {}

    def sha256(self, path: Path) -> str:
        """Hex SHA-256 of the file at ``path`` (hashed at most once per size+mtime)."""
        info = path.stat()
        key = (str(path.resolve()), info.st_size, info.st_mtime_ns)
        digest = self._memory.get(key)
        if digest is None:
            record = self._persisted.get(key[0])
            if isinstance(record, list) and record[:2] == [key[1], key[2]] and len(record) == 3:
                digest = str(record[2])
            else:
                digest = hash_file(path)
                self._persisted[key[0]] = [key[1], key[2], digest]
                self._changed = True
            self._memory[key] = digest
        return digest

    def save(self) -> None:
        """Write new results to the store (atomically); a read-only cache folder is not an error."""
        if self.store is None or not self._changed:
            return
        try:
            atomic_write_json(self.store, self._persisted)
            self._changed = False
        except OSError:
            pass  # the cache is an optimisation; failing to persist it must not fail the caller


def hash_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str,
    target: Path,
    expected_sha256: str | None,
    *,
    label: str,
    progress: bool = True,
) -> str:
    """Download ``url`` to ``target`` atomically, verifying the checksum before the rename.

    ``expected_sha256=None`` means the caller decided to trust the file on first use; the digest
    seen is returned either way so the caller can record it. On any failure (offline mode, HTTP
    error, truncated body, checksum mismatch) :class:`DatasetError` names ``label``, the URL and
    what to do, and nothing is left under ``target``.
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in {"http", "https"}:
        raise DatasetError(f"{label}: refusing to download from {url!r}: only http(s) URLs are allowed")
    if not network_allowed():
        raise DatasetError(
            f"{label}: not available locally and {OFFLINE_ENV}=1 forbids network access, so it "
            f"cannot be downloaded from {url}. Unset {OFFLINE_ENV} to download it, or put a copy "
            f"in the local mirror ({MIRROR_ENV}=DIR, at DIR/{label})."
        )
    digest = hashlib.sha256()
    try:
        with atomic_path(target) as tmp:
            request = urllib.request.Request(url, headers={"User-Agent": "neurofm"})
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
                declared = response.headers.get("Content-Length")
                total = int(declared) if declared and declared.isdigit() else None
                received = 0
                with open(tmp, "wb") as out, tqdm(
                    total=total, unit="B", unit_scale=True, desc=label, disable=not progress or None
                ) as bar:
                    while chunk := response.read(_CHUNK_BYTES):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
            if total is not None and received != total:
                raise DatasetError(
                    f"{label}: download from {url} stopped after {received} of {total} bytes; "
                    "nothing was kept. Retry; if it keeps failing, download the file by hand and "
                    "put it in the local mirror."
                )
            actual = digest.hexdigest()
            if expected_sha256 is not None and actual != expected_sha256:
                raise DatasetError(
                    f"{label}: checksum mismatch for the file downloaded from {url}: expected "
                    f"sha256 {expected_sha256}, got {actual}. The download was discarded "
                    "(nothing was written under its final name). Retry once; if it persists the "
                    "source changed or the transfer is being tampered with: compare with the "
                    "dataset's homepage before trusting any copy."
                )
    except urllib.error.HTTPError as error:
        raise DatasetError(
            f"{label}: download from {url} failed with HTTP {error.code} {error.reason}; nothing "
            "was kept. If the site needs a login or licence agreement, download the file in a "
            "browser and put it in the local mirror (or the archives folder named in "
            "docs/datasets.md), then run the command again."
        ) from error
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise DatasetError(
            f"{label}: download from {url} failed ({error}); nothing was kept. Check the network "
            "connection and retry, or put a copy in the local mirror."
        ) from error
    return digest.hexdigest()


def extract_zip_member(
    archive: Path,
    member: str,
    target: Path,
    expected_sha256: str | None,
    *,
    label: str,
) -> str:
    """Copy one member of a ZIP archive to ``target`` atomically; return its SHA-256.

    The member name is validated like any catalogue path and symlink members are refused, so an
    archive cannot place anything outside the dataset folder. A checksum mismatch (when
    ``expected_sha256`` is given) leaves nothing under ``target``.
    """
    check_relative_path(member, what=f"{label} (member of {archive.name})")
    try:
        with zipfile.ZipFile(archive) as bundle:
            try:
                info = bundle.getinfo(member)
            except KeyError:
                raise DatasetError(
                    f"{label}: {archive} has no member {member!r}; the archive is not the "
                    "expected release. Delete it and fetch again, or check the catalogue entry."
                ) from None
            if stat.S_ISLNK(info.external_attr >> 16) or info.is_dir():
                raise DatasetError(
                    f"{label}: member {member!r} of {archive} is a symlink or folder, not a "
                    "regular file; refusing to extract it."
                )
            digest = hashlib.sha256()
            with atomic_path(target) as tmp:
                with bundle.open(info) as source, open(tmp, "wb") as out:
                    while chunk := source.read(_CHUNK_BYTES):
                        out.write(chunk)
                        digest.update(chunk)
                actual = digest.hexdigest()
                if expected_sha256 is not None and actual != expected_sha256:
                    raise DatasetError(
                        f"{label}: member {member!r} of {archive} has sha256 {actual}, expected "
                        f"{expected_sha256}; nothing was extracted. Delete the archive and fetch "
                        "again."
                    )
    except zipfile.BadZipFile as error:
        raise DatasetError(
            f"{label}: {archive} is not a readable ZIP archive ({error}); delete it and fetch again."
        ) from error
    return digest.hexdigest()


def read_sha256sums(path: Path) -> dict[str, str]:
    """Parse a ``sha256sum``-style file (``<hex>  <relative path>`` per line) into a dict."""
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DatasetError(
                f"{path}, line {number}: expected '<64 hex digits>  <path>', got {line!r}"
            )
        sums[parts[1].strip().lstrip("*")] = digest
    return sums


def write_sha256sums(path: Path, sums: dict[str, str]) -> None:
    """Write ``sums`` as a ``sha256sum``-style file, sorted by path, atomically."""
    lines = [f"{digest}  {name}" for name, digest in sorted(sums.items())]
    atomic_write_text(path, "\n".join(lines) + "\n")
