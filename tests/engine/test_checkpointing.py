"""Checkpoint files: atomic + checksummed writes, last-K rotation, safe loading, RNG capture."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from neurofm.engine.checkpointing import (
    CheckpointManager,
    capture_rng_state,
    checkpoint_meta,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from neurofm.errors import CheckpointError


def _state(value: float) -> dict:
    return {"model": {"w": torch.full((3,), value)}, "step": int(value), "python": (1, (2, 3), None)}


def test_save_writes_checkpoint_and_checksum_sidecar(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    path = manager.save(_state(1.0), step=1, epoch=0, metrics={"loss": 0.5})
    meta = checkpoint_meta(path)
    assert meta["step"] == 1 and meta["metrics"] == {"loss": 0.5} and len(meta["sha256"]) == 64
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert not list(tmp_path.glob(".tmp-*"))


def test_only_the_last_k_periodic_checkpoints_are_kept(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (1, 2, 3, 4):
        manager.save(_state(step), step=step, epoch=0)
    manager.save(_state(9), step=4, epoch=0, best=True)
    assert [p.name for p in manager.periodic()] == ["step-00000003.pt", "step-00000004.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.json", "best.pt", "step-00000003.json", "step-00000003.pt",
        "step-00000004.json", "step-00000004.pt"]


def test_disabled_manager_on_other_ranks_writes_nothing(tmp_path):
    assert CheckpointManager(tmp_path, enabled=False).save(_state(1), step=1, epoch=0) is None
    assert not any(tmp_path.iterdir())


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "step-00000001.pt")
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        CheckpointManager(tmp_path).load_latest()
