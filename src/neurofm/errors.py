"""Exceptions neurofm raises for problems the user can act on.

Each message names the file or option at fault and says what to do. The CLI prints them without
a traceback and exits with status 2.
"""

from __future__ import annotations


class NeurofmError(Exception):
    """Base class: a problem with the user's input, configuration or files."""


class ChannelError(NeurofmError):
    """A channel label cannot be mapped, or channel sets disagree."""


class RecordingError(NeurofmError):
    """A recording cannot be read or fails a quality check."""


class ConfigError(NeurofmError):
    """Inconsistent or invalid options."""


class CheckpointError(NeurofmError):
    """A checkpoint is missing, corrupted, unsafe, or does not match the model."""


class DatasetError(NeurofmError):
    """A registry dataset is unavailable, or a download fails its checksum."""


class CorpusError(NeurofmError):
    """A corpus on disk is missing, damaged or inconsistent with its manifest."""


class TrainingError(NeurofmError):
    """A training run cannot go on (e.g. the loss stayed non-finite); checkpoints stay intact."""


class OverlapError(ConfigError):
    """A checkpoint was pretrained on subjects the task validates or tests on (the overlap guard,
    :mod:`neurofm.tasks.overlap`); ``--allow-overlap`` lets the run go on, reported."""


class FolderInUseError(NeurofmError):
    """An output folder is locked by another live neurofm process (:mod:`neurofm.locks`)."""
