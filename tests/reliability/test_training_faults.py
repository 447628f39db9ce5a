"""Training faults: killed runs, non-finite losses, corrupted or crafted checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from toy_training import ToyObjective, ToyWindows, toy_config, write_tiny_eeg_corpus

from neurofm.engine.checkpointing import CheckpointManager, load_checkpoint
from neurofm.engine.metrics_log import read_metrics
from neurofm.engine.trainer import Trainer
from neurofm.errors import CheckpointError, TrainingError


def _trainer(run_dir, config, init_seed=0, **objective_options):
    torch.manual_seed(init_seed)
    return Trainer(ToyObjective(**objective_options), config, run_dir, ToyWindows(64),
                   ToyWindows(16, seed=1))


def test_run_killed_at_a_random_step_resumes_to_the_same_result(tmp_path):
    config = toy_config(run={"checkpoint_every_steps": 3})
    straight = _trainer(tmp_path / "straight", config).fit()
    kill_call = random.Random(2026).randint(2, straight.step - 1)
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "killed", config, crash_at=kill_call).fit()
    resumed = _trainer(tmp_path / "killed", config, init_seed=99).fit(resume=True)
    assert read_metrics(tmp_path / "killed" / "metrics.csv", split="train", name="loss") == \
        read_metrics(tmp_path / "straight" / "metrics.csv", split="train", name="loss")
    a, b = load_checkpoint(straight.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_pretrain_process_killed_with_sigkill_resumes_to_the_same_curve_and_weights(tmp_path):
    corpus = write_tiny_eeg_corpus(tmp_path / "corpus")

    def command(run_dir: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "neurofm", "pretrain", "--objective", "fip", "--corpus",
                str(corpus), "--out", str(run_dir), "--model", "neurobert_small", *extra,
                "run.progress=false", "run.tensorboard=false", "run.log_every_steps=1",
                "data.window_seconds=1", "data.stride_seconds=1", "data.batch_size=4",
                "run.checkpoint_every_steps=2", "run.max_steps=16", "run.keep_last=20"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command(tmp_path / "straight"), env=env, check=True, capture_output=True,
                   timeout=300)
    killed_dir = tmp_path / "killed"
    kill_after = random.Random(7).choice([4, 6, 8, 10])
    process = subprocess.Popen(command(killed_dir), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    sidecar = killed_dir / "checkpoints" / f"step-{kill_after:08d}.json"
    deadline = time.monotonic() + 300
    while not sidecar.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    subprocess.run(command(killed_dir, "--resume"), env=env, check=True, capture_output=True,
                   timeout=300)

    def curve(run_dir: Path) -> list:
        return read_metrics(run_dir / "metrics.csv", split="train", name="loss")

    assert len(curve(killed_dir)) == 16
    assert curve(killed_dir) == curve(tmp_path / "straight")
    final = "checkpoints/step-00000016.pt"
    a, b = load_checkpoint(tmp_path / "straight" / final), load_checkpoint(killed_dir / final)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_nonfinite_loss_step_is_skipped_and_logged(tmp_path):
    trainer = _trainer(tmp_path, toy_config(run={"max_steps": 6}), nan_at={3})
    before = {k: v.clone() for k, v in trainer.module.state_dict().items()}
    result = trainer.fit()
    assert result.step == 6
    assert result.losses[2] != result.losses[2]  # NaN recorded for the skipped step
    skipped = read_metrics(tmp_path / "metrics.csv", split="train", name="skipped_nonfinite")
    assert [step for step, *_ in skipped] == [3]
    after = trainer.module.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_run_stops_after_k_consecutive_bad_steps_with_last_good_checkpoint_intact(tmp_path):
    config = toy_config(run={"checkpoint_every_steps": 2, "max_bad_steps": 3})
    trainer = _trainer(tmp_path, config, nan_at={5, 6, 7, 8, 9})
    with pytest.raises(TrainingError, match=r"3 consecutive steps.*step-00000004.pt"):
        trainer.fit()
    good = CheckpointManager(tmp_path / "checkpoints").periodic()
    assert [p.name for p in good] == ["step-00000002.pt", "step-00000004.pt"]
    state = load_checkpoint(good[-1])
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "drop_sidecar"])
def test_corrupted_or_partial_checkpoint_is_refused_and_the_previous_one_used(tmp_path, damage):
    config = toy_config(run={"checkpoint_every_steps": 4, "keep_last": 3, "max_steps": 12})
    _trainer(tmp_path, config).fit()
    manager = CheckpointManager(tmp_path / "checkpoints")
    newest = manager.periodic()[-1]
    data = newest.read_bytes()
    if damage == "flip_byte":
        newest.write_bytes(data[:200] + bytes([data[200] ^ 0xFF]) + data[201:])
    elif damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])
    else:
        newest.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match=newest.name):
        load_checkpoint(newest)
    state, used = manager.load_latest()
    assert used.name == "step-00000008.pt" and state["step"] == 8
    # The resumed run continues from the previous checkpoint and finishes.
    result = _trainer(tmp_path, config).fit(resume=True)
    assert result.step == 12


class _RunsCode:
    def __reduce__(self):
        return (Path.write_text, (Path("/tmp/neurofm-pwned"), "pwned"))


def test_checkpoint_crafted_to_run_code_is_refused(tmp_path):
    path = tmp_path / "step-00000001.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _RunsCode()}, path)
    # A matching sidecar, as an attacker would ship, so only weights_only stands in the way.
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_suffix(".json").write_text(json.dumps({"sha256": digest}))
    Path("/tmp/neurofm-pwned").unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="holds Python objects other than tensors") as error:
        load_checkpoint(path)
    assert not Path("/tmp/neurofm-pwned").exists()
    assert "weights_only=False" not in str(error.value)  # never advise running the file's code


@pytest.mark.parametrize("sidecar", ['["sha256"]', '"sha256"', "3", "null", '{"sha256": 5}'])
def test_sidecar_that_is_json_but_not_a_checksum_object_falls_back_on_resume(tmp_path, sidecar):
    config = toy_config(run={"checkpoint_every_steps": 4, "keep_last": 3, "max_steps": 12})
    _trainer(tmp_path, config).fit()
    manager = CheckpointManager(tmp_path / "checkpoints")
    newest = manager.periodic()[-1]
    newest.with_suffix(".json").write_text(sidecar)
    with pytest.raises(CheckpointError, match=newest.with_suffix(".json").name):
        load_checkpoint(newest)
    state, used = manager.load_latest()
    assert used.name == "step-00000008.pt" and state["step"] == 8
    assert _trainer(tmp_path, config).fit(resume=True).step == 12
