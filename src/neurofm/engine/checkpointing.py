"""Training checkpoints: atomic, checksummed, last-K rotation, safe loading, RNG capture.

A checkpoint is two files in ``<run>/checkpoints/``:

- ``step-00001200.pt``: ``torch.save`` of a dict of tensors and plain Python values (model,
  optimizer, scheduler and scaler state dicts, RNG states, data position, step, epoch, and any
  extra state); written atomically (temp file, fsync, rename);
- ``step-00001200.json``: its SHA-256, size, step, epoch and metrics, written atomically *after*
  the ``.pt`` file, so a checkpoint without its sidecar is one whose writer was killed.

A save killed midway leaves a ``.tmp-step-*`` file; :class:`CheckpointManager` removes such
leftovers when it starts, unless another live process holds the run folder's lock
(:mod:`neurofm.locks`), whose save may be in flight.

Loading verifies the sidecar and the checksum, then calls ``torch.load(weights_only=True)``, which
cannot run code from the file. A missing, partial or corrupted checkpoint raises
:class:`~neurofm.errors.CheckpointError`; :meth:`CheckpointManager.load_latest` then falls back
to the previous one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofm.atomic import atomic_path, atomic_write_json
from neurofm.errors import CheckpointError
from neurofm.locks import holder_other_than_me, remove_stale_temporaries

logger = logging.getLogger(__name__)

_STEP_FILE = re.compile(r"^step-(\d{8,})\.pt$")
BEST_NAME = "best"


class CheckpointManager:
    """Periodic checkpoints with last-K rotation, plus one ``best`` checkpoint, in ``directory``.

    Args:
        directory: where checkpoints live (created on the first save).
        keep_last: how many periodic checkpoints to keep; older ones are deleted after a save.
        enabled: False on ranks other than 0 (saves are then no-ops; loading still works).

    An enabled manager deletes the temp files of killed saves in ``directory`` when it starts,
    unless the nearest lock up the tree (the run folder's) is held by another live process.
    """

    def __init__(self, directory: str | Path, keep_last: int = 3, enabled: bool = True) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.enabled = enabled
        if enabled:
            self.remove_stale_temporaries()

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the ``.tmp-*`` files killed saves left here; return them.

        Does nothing while another live process holds the run folder's lock: the temp file may
        then be its save in progress.
        """
        holder = holder_other_than_me(self.directory)
        if holder is not None:
            logger.info("not removing temp files in %s: the run folder is in use by %s",
                        self.directory, holder.describe())
            return []
        return remove_stale_temporaries(self.directory)

    def save(self, state: dict[str, Any], step: int, epoch: int,
             metrics: dict[str, float] | None = None, best: bool = False) -> Path | None:
        """Write ``state`` as the periodic checkpoint of ``step`` (or as ``best``); returns its path.

        The periodic set is pruned to the ``keep_last`` newest afterwards.
        """
        if not self.enabled:
            return None
        name = BEST_NAME if best else f"step-{step:08d}"
        path = self.directory / f"{name}.pt"
        save_checkpoint(state, path, meta={"step": step, "epoch": epoch,
                                           "metrics": dict(metrics or {})})
        if not best:
            self._prune()
        return path

    def periodic(self) -> list[Path]:
        """Periodic checkpoint files (with or without a valid sidecar), oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir()
                 if (m := _STEP_FILE.match(p.name))]
        return [p for _, p in sorted(found)]

    def best_path(self) -> Path:
        """Where the best checkpoint is (or would be) written."""
        return self.directory / f"{BEST_NAME}.pt"

    def load_latest(self, map_location: str | torch.device = "cpu",
                    validate: Callable[[dict[str, Any], Path], None] | None = None,
                    ) -> tuple[dict[str, Any], Path]:
        """Load the newest periodic checkpoint that passes verification (and ``validate``, which
        raises :class:`CheckpointError` for a state it refuses).

        A corrupted, partial or refused one is reported (logged with the reason) and skipped in
        favour of the previous one. Raises :class:`CheckpointError` when none is usable.
        """
        candidates = self.periodic()
        if not candidates:
            raise CheckpointError(f"no checkpoint to resume from in {self.directory}; "
                                  "start the run without --resume")
        problems = []
        for path in reversed(candidates):
            try:
                state = load_checkpoint(path, map_location=map_location)
                if validate is not None:
                    validate(state, path)
                return state, path
            except CheckpointError as error:
                logger.warning("%s; falling back to the previous checkpoint", error)
                problems.append(str(error))
        raise CheckpointError(f"no usable checkpoint in {self.directory}: " + "; ".join(problems))

    def _prune(self) -> None:
        for path in self.periodic()[:-self.keep_last]:
            path.with_suffix(".json").unlink(missing_ok=True)
            path.unlink(missing_ok=True)


def save_checkpoint(state: dict[str, Any], path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Atomically write ``state`` to ``path`` and its checksum sidecar ``path.with_suffix('.json')``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        digest, size = _sha256(tmp)
    atomic_write_json(path.with_suffix(".json"),
                      {"file": path.name, "sha256": digest, "bytes": size, **(meta or {})})


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Verify and load a checkpoint written by :func:`save_checkpoint` (never runs code).

    Raises :class:`CheckpointError` if the file or its sidecar is missing, the checksum does not
    match (corrupted or partially written), or the content is not a plain tensor dictionary.
    """
    path = Path(path)
    sidecar = path.with_suffix(".json")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not sidecar.is_file():
        raise CheckpointError(f"checkpoint {path} has no {sidecar.name}: it was not completely "
                              "written (the run was probably killed while saving)")
    expected = checkpoint_meta(path).get("sha256")
    if not isinstance(expected, str):
        raise CheckpointError(f"checkpoint sidecar {sidecar} has no sha256 text; the checkpoint "
                              "cannot be verified")
    digest, _ = _sha256(path)
    if digest != expected:
        raise CheckpointError(f"checkpoint {path} is corrupted: its SHA-256 does not match "
                              f"{sidecar.name}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message advises weights_only=False, which would run the file's code: not here.
        refused = str(error).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} holds Python objects other than tensors "
                              f"({refused}); neurofm never unpickles them. Only checkpoints "
                              "written by neurofm's engine load here") from None
    except Exception as error:  # torch raises several types for truncated files
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely: {error}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a state dictionary")
    return state


def checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The sidecar metadata (step, epoch, metrics, sha256) of a checkpoint.

    Raises :class:`CheckpointError` when the sidecar is unreadable or not a JSON object.
    """
    sidecar = Path(path).with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise CheckpointError(f"checkpoint sidecar {sidecar} is unreadable ({error})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint sidecar {sidecar} holds a JSON {type(meta).__name__}, "
                              "not an object; the checkpoint cannot be verified")
    return meta


def capture_rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch (CPU and CUDA) RNG states, as weights-only-loadable values."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states captured by :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state({
        "bit_generator": numpy_state["bit_generator"],
        "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
        "has_gauss": numpy_state["has_gauss"], "gauss": numpy_state["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
