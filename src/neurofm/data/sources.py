"""`RecordingSource`: one recording to prepare, described without reading it.

The dataset registry and the file-globbing front end both produce sources; corpus preparation
consumes them, possibly in worker processes (so a source and its reader must pickle: the reader
is a module-level function).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurofm.data.recording import Recording


@dataclass(frozen=True)
class RecordingSource:
    """A stable id, the files a recording comes from, and how to read them.

    Attributes:
        id: unique within a corpus, filesystem-safe (e.g. ``"eegmat/Subject00_1"``).
        paths: every file the recording is read from (checksummed into the corpus manifest).
        reader: module-level function ``reader(*paths, **reader_kwargs) -> Recording``.
        reader_kwargs: extra keyword arguments for ``reader``.
        subject, session: identifiers for splits; override what the reader found when set.
        label: a recording-level label (e.g. ``"rest"`` / ``"arithmetic"``), if the task has one.
    """

    id: str
    paths: tuple[Path, ...]
    reader: Callable[..., Recording]
    reader_kwargs: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    session: str | None = None
    label: str | None = None

    def load(self) -> Recording:
        """Read the recording and stamp it with this source's subject and session."""
        recording = self.reader(*self.paths, **self.reader_kwargs)
        changes: dict[str, Any] = {}
        if self.subject is not None:
            changes["subject"] = self.subject
        if self.session is not None:
            changes["session"] = self.session
        return recording.replace(**changes) if changes else recording
