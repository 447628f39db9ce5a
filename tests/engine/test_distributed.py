"""Data-parallel training with two CPU processes (Gloo): DDP and FSDP against one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from toy_training import ToyObjective, ToyWindows, toy_config

from neurofm.engine import distributed
from neurofm.engine.checkpointing import load_checkpoint
from neurofm.engine.metrics_log import read_metrics
from neurofm.engine.trainer import Trainer

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


def _torchrun(run_dir: Path, strategy: str, nproc: int = 2, batch_size: int = 4, *extra: str,
              expect_failure: bool = False) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", str(WORKER), str(run_dir), strategy, str(batch_size),
               *extra]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240,
                          check=False)
    assert (done.returncode != 0) == expect_failure, done.stdout[-3000:] + done.stderr[-3000:]


def _single_process(run_dir: Path, batch_size: int = 8) -> dict[str, torch.Tensor]:
    config = toy_config(data={"batch_size": batch_size}, run={"max_steps": 6})
    torch.manual_seed(0)
    trainer = Trainer(ToyObjective(dropout=0.0), config, run_dir, ToyWindows(64),
                      ToyWindows(4, seed=1), ctx=distributed.DistributedContext())
    trainer.fit()
    return trainer.module.state_dict()


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if name == "calls_seen":  # counts forwards on this rank: half the batches each
            continue
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_ddp_two_processes_match_each_other_and_one_process_with_same_global_batch(tmp_path):
    _torchrun(tmp_path / "ddp", "ddp")
    rank0 = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ddp" / "rank1.pt", weights_only=True)
    for name in rank0:
        if name != "calls_seen":
            assert torch.equal(rank0[name], rank1[name]), name
    _assert_same_weights(rank0, _single_process(tmp_path / "single"))
    # Only rank 0 wrote logs and checkpoints, once each.
    checkpoint = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "step-00000006.pt")
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2
    assert (tmp_path / "ddp" / "metrics.csv").read_text().count("\n6,") >= 1
    # Validation over all windows, although only rank 0 had a validation batch.
    val_ddp = read_metrics(tmp_path / "ddp" / "metrics.csv", split="val", name="loss")
    val_single = read_metrics(tmp_path / "single" / "metrics.csv", split="val", name="loss")
    assert [step for step, *_ in val_ddp] == [step for step, *_ in val_single]
    assert [v for *_, v in val_ddp] == pytest.approx([v for *_, v in val_single], rel=1e-5)


def test_fsdp_two_processes_match_one_process(tmp_path):
    _torchrun(tmp_path / "fsdp", "fsdp")
    full = torch.load(tmp_path / "fsdp" / "rank0.pt", weights_only=True)
    _assert_same_weights(full, _single_process(tmp_path / "single"))
    checkpoint = load_checkpoint(tmp_path / "fsdp" / "checkpoints" / "step-00000006.pt")
    _assert_same_weights(checkpoint["model"], full)


def test_single_process_context_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = distributed.init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.backend) == (0, 1, True, None)
    module = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(module, ctx) is module


def test_killed_ddp_run_resumes_to_the_same_weights_with_per_rank_random_streams(tmp_path):
    # Dropout draws from each rank's own generator, so only restoring every rank's RNG state
    # reproduces the uninterrupted run.
    _torchrun(tmp_path / "straight", "ddp", 2, 4, "0.2", "0", "0")
    _torchrun(tmp_path / "killed", "ddp", 2, 4, "0.2", "5", "0", expect_failure=True)
    _torchrun(tmp_path / "killed", "ddp", 2, 4, "0.2", "0", "1")
    straight = torch.load(tmp_path / "straight" / "rank0.pt", weights_only=True)
    for rank in (0, 1):
        resumed = torch.load(tmp_path / "killed" / f"rank{rank}.pt", weights_only=True)
        for name in straight:
            if name != "calls_seen":
                assert torch.equal(resumed[name], straight[name]), (rank, name)
    assert read_metrics(tmp_path / "killed" / "metrics.csv", split="train", name="loss") == \
        read_metrics(tmp_path / "straight" / "metrics.csv", split="train", name="loss")
