"""A save killed midway leaves a temp file in checkpoints/; the next CheckpointManager removes it,
unless another live process holds the run folder (its save may be in flight)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from test_locks import HeldLock

from neurofm.engine.checkpointing import CheckpointManager
from neurofm.locks import LOCK_NAME, FolderLock

KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys
    import torch
    from neurofm.engine import checkpointing

    def save_then_die(state, path):
        with open(path, "wb") as handle:
            handle.write(b"half a checkpoint")
            handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    checkpointing.torch.save = save_then_die
    manager = checkpointing.CheckpointManager(sys.argv[1])
    manager.save({"w": torch.zeros(3)}, step=int(sys.argv[2]), epoch=0)
""")


def killed_save(directory: Path, step: int) -> None:
    process = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(directory), str(step)],
                             check=False)
    assert process.returncode == -signal.SIGKILL


def temps(directory: Path) -> list[Path]:
    return sorted(directory.glob(".tmp-*"))


def test_temp_file_of_a_killed_save_is_removed_by_the_next_manager(tmp_path):
    checkpoints = tmp_path / "run" / "checkpoints"
    manager = CheckpointManager(checkpoints)
    manager.save({"w": torch.ones(3)}, step=1, epoch=0)
    killed_save(checkpoints, step=2)
    (left,) = temps(checkpoints)
    assert left.name.startswith(".tmp-step-00000002.pt.")

    resumed = CheckpointManager(checkpoints)
    assert temps(checkpoints) == []
    state, path = resumed.load_latest()
    assert path.name == "step-00000001.pt" and torch.equal(state["w"], torch.ones(3))


def test_temp_file_is_kept_while_another_process_holds_the_run(tmp_path):
    run = tmp_path / "run"
    checkpoints = run / "checkpoints"
    killed_save(checkpoints, step=5)
    with HeldLock(run / LOCK_NAME):
        CheckpointManager(checkpoints)
        assert len(temps(checkpoints)) == 1
    CheckpointManager(checkpoints)  # the holder is gone
    assert temps(checkpoints) == []


def test_temp_file_is_removed_under_this_process_own_run_lock(tmp_path):
    # The CLI holds RUN's lock and the trainer's manager starts inside it.
    run = tmp_path / "run"
    checkpoints = run / "checkpoints"
    killed_save(checkpoints, step=3)
    with FolderLock(run / LOCK_NAME, "neurofm pretrain"):
        CheckpointManager(checkpoints)
    assert temps(checkpoints) == []


def test_disabled_manager_of_another_rank_removes_nothing(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    killed_save(checkpoints, step=4)
    CheckpointManager(checkpoints, enabled=False)
    assert len(temps(checkpoints)) == 1
