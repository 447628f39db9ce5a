"""Recordings in, a preprocessed corpus and batches of windows out."""

from neurofm.data.recording import Annotation, Recording

__all__ = ["Annotation", "Recording"]
