"""Advisory locks on output folders: one writer per corpus or run folder at a time.

A lock is a file in the folder (:data:`LOCK_NAME`) locked with ``fcntl.flock`` and holding its
owner's pid, host, command and start time as JSON. The kernel releases an ``flock`` when its
process dies (even by SIGKILL), so a lock left by a dead process is never "stale": the next run
takes it. A second writer gets :class:`~neurofm.errors.FolderInUseError` naming the folder and
the pid that holds it.

Where ``fcntl`` is missing (Windows), the lock file is created exclusively (``O_EXCL``) and a
file whose pid no longer runs on this host is taken over; a holder on another host, or one whose
liveness cannot be checked, counts as alive, and the error says which file to delete once no
such process runs.

Temp files (``.tmp-*``) a killed writer left are removed only by the folder's lock holder, when
no other holder is alive (:func:`holder_other_than_me` tells).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from neurofm.errors import ConfigError, FolderInUseError

_fcntl: ModuleType | None
try:
    import fcntl as _fcntl
except ImportError:  # Windows
    _fcntl = None

logger = logging.getLogger(__name__)

#: Name of the lock file in a locked folder.
LOCK_NAME = ".neurofm.lock"

_POLL_SECONDS = 0.2
# Without fcntl, a lock file nobody finished writing (its owner died at once) counts as stale
# after this long.
_UNREADABLE_STALE_SECONDS = 60.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: pid, host, command, start time (ISO), and torchrun job id (or "")."""

    pid: int | None
    host: str = ""
    command: str = ""
    started: str = ""
    job: str = ""

    def describe(self) -> str:
        """``pid 123 (neurofm prepare, since 2026-...)``, plus the host when it is another one."""
        who = f"pid {self.pid}" if self.pid is not None else "a process of unknown pid"
        details = [d for d in (self.command, f"since {self.started}" if self.started else "") if d]
        if self.host and self.host != socket.gethostname():
            details.append(f"on host {self.host}")
        return who + (f" ({', '.join(details)})" if details else "")

    def is_me(self) -> bool:
        """True when this process holds the lock."""
        return self.pid == os.getpid() and self.host in ("", socket.gethostname())


def _job_id() -> str:
    """The torchrun job this process belongs to ("" outside torchrun)."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if run_id:
        return run_id
    address, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    return f"{address}:{port}" if address and port else ""


def _my_info(command: str) -> bytes:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "job": _job_id()}
    return (json.dumps(info) + "\n").encode("utf-8")


def _read_holder(path: Path) -> Holder | None:
    """The holder recorded in a lock file; ``Holder(None)`` when it is unreadable or partial."""
    try:
        info = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return Holder(None)
    if not isinstance(info, dict):
        return Holder(None)
    pid = info.get("pid")
    return Holder(pid if isinstance(pid, int) else None, str(info.get("host", "")),
                  str(info.get("command", "")), str(info.get("started", "")),
                  str(info.get("job", "")))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (True when that cannot be told)."""
    if pid <= 0:
        return False
    if os.name == "posix":
        try:
            os.kill(pid, 0)  # signal 0: existence check only
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # someone else's process
        return True
    try:  # os.kill(pid, 0) would terminate the process on Windows
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        return True
    return bool(psutil.pid_exists(pid))


def lock_holder(path: str | os.PathLike) -> Holder | None:
    """The live holder of the lock file ``path`` (this process included), or ``None`` if free."""
    path = Path(path)
    if _fcntl is None:
        holder = _read_holder(path)
        return holder if holder is not None and _fallback_alive(path, holder) else None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path) or Holder(None)
        _fcntl.flock(fd, _fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _fallback_alive(path: Path, holder: Holder) -> bool:
    """Without fcntl: whether the process a lock file names still holds it."""
    if holder.pid is None:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return False
        return age < _UNREADABLE_STALE_SECONDS
    if holder.host and holder.host != socket.gethostname():
        return True
    return pid_alive(holder.pid)


def holder_other_than_me(folder: str | os.PathLike, name: str = LOCK_NAME) -> Holder | None:
    """The live holder of the nearest lock (``folder/name`` or in a parent folder) when it is
    another process; ``None`` when the nearest lock is free or held by this process, or when no
    folder up the tree has a lock file."""
    folder = Path(folder).absolute()
    for candidate in (folder, *folder.parents):
        path = candidate / name
        if path.exists():
            holder = lock_holder(path)
            return None if holder is None or holder.is_me() else holder
    return None


class FolderLock:
    """An exclusive advisory lock on the file ``path`` (see the module docstring).

    Use :meth:`acquire` / :meth:`release`, or as a context manager (which acquires without
    waiting). Not re-entrant: a second :class:`FolderLock` on the same file, in this process or
    another, is refused while the first is held.
    """

    def __init__(self, path: str | os.PathLike, command: str) -> None:
        self.path = Path(path)
        self.command = command
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: float | None = 0.0) -> FolderLock:
        """Take the lock, waiting up to ``wait`` seconds (``None``: as long as it takes).

        Raises:
            FolderInUseError: another live process holds it (after ``wait``).
        """
        if self.held:
            raise RuntimeError(f"{self.path} is already locked by this FolderLock")
        deadline = None if wait is None else time.monotonic() + wait
        announced = False
        while True:
            holder = self._try_acquire()
            if holder is None:
                return self
            # This process never releases a lock it holds while it waits here: do not wait.
            if holder.is_me() or (deadline is not None and time.monotonic() >= deadline):
                raise self._in_use(holder)
            if not announced:
                logger.warning("%s is in use by %s; waiting for it to finish", self.path.parent,
                               holder.describe())
                announced = True
            time.sleep(_POLL_SECONDS)

    def _in_use(self, holder: Holder) -> FolderInUseError:
        advice = "wait for it to finish or stop it"
        if _fcntl is None:
            advice += f"; if no such process runs any more, delete {self.path}"
        return FolderInUseError(f"{self.path.parent} is in use by {holder.describe()}: another "
                                f"neurofm run writes into it; {advice}, or choose another folder")

    def _try_acquire(self) -> Holder | None:
        """Take the lock and return ``None``, or return who holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if _fcntl is None:
            return self._try_acquire_exclusive_create()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return _read_holder(self.path) or Holder(None)
        # The previous holder may have unlinked the file between our open and our flock: then
        # we hold a lock on a file nobody else will open; start again on the current one.
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return self._try_acquire()
        os.ftruncate(fd, 0)
        os.write(fd, _my_info(self.command))
        self._fd = fd
        return None

    def _try_acquire_exclusive_create(self) -> Holder | None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read_holder(self.path)
            if holder is not None and _fallback_alive(self.path, holder):
                return holder
            logger.warning("removing the stale lock %s of %s, which no longer runs", self.path,
                           holder.describe() if holder else "a process")
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return self._try_acquire_exclusive_create()
        os.write(fd, _my_info(self.command))
        os.fsync(fd)
        self._fd = fd
        return None

    def release(self) -> None:
        """Release the lock and remove its file (a no-op when not held)."""
        if self._fd is None:
            return
        # Unlink while still holding it: a process blocked on the old file then sees that it
        # is gone and retries on a fresh one.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, command: str, *, name: str = LOCK_NAME,
                wait: float | None = 0.0) -> Iterator[FolderLock]:
    """Create ``folder`` if needed and hold its lock for the ``with`` block.

    A folder this call created and that is still empty afterwards is removed again, so a run
    refused before writing anything leaves nothing behind.

    Raises:
        ConfigError: ``folder`` is an existing file.
        FolderInUseError: another live process holds the folder's lock.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} is an existing file, not a folder; choose a folder "
                          "path (it is created)")
    created = not folder.exists()
    lock = FolderLock(folder / name, command)
    lock.acquire(wait)
    try:
        yield lock
    finally:
        lock.release()
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty


@contextlib.contextmanager
def run_folder_lock(folder: str | os.PathLike, command: str) -> Iterator[FolderLock]:
    """The lock of a training command's ``--out`` folder, for the whole run.

    Under ``torchrun`` each rank holds its own lock file (rank 0 the folder's :data:`LOCK_NAME`),
    so a second job into the same folder is refused on every rank; the other ranks also refuse
    to start when rank 0's lock belongs to another job.
    """
    rank = int(os.environ.get("RANK", "0"))
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    name = f"{LOCK_NAME}.rank-{rank}" if distributed and rank > 0 else LOCK_NAME
    with folder_lock(folder, f"neurofm {command}", name=name) as lock:
        if name != LOCK_NAME:
            main = lock_holder(Path(folder) / LOCK_NAME)
            if main is not None and main.job != _job_id():
                raise lock._in_use(main)
        yield lock


def remove_stale_temporaries(folder: str | os.PathLike, pattern: str = ".tmp-*") -> list[Path]:
    """Delete the temp files matching ``pattern`` in ``folder`` (not recursive); return them.

    Call only while holding the folder's lock with no other live holder: the files are then
    leftovers of killed writers.
    """
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in sorted(folder.glob(pattern)):
        if path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    if removed:
        logger.info("removed %d temp file(s) a killed run left in %s", len(removed), folder)
    return removed


__all__ = ["LOCK_NAME", "FolderLock", "Holder", "folder_lock", "holder_other_than_me",
           "lock_holder", "pid_alive", "remove_stale_temporaries", "run_folder_lock"]
