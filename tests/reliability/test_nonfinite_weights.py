"""Finite or fail: a non-finite update stops the run, nothing non-finite is saved or resumed."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from toy_training import ToyObjective, ToyWindows, toy_config, write_tiny_eeg_corpus

from neurofm.cli import main
from neurofm.engine.checkpointing import CheckpointManager, load_checkpoint, save_checkpoint
from neurofm.engine.config import PretrainConfig, load_config
from neurofm.engine.trainer import Trainer, all_finite
from neurofm.errors import ConfigError, TrainingError


def _trainer(run_dir: Path, config) -> Trainer:
    torch.manual_seed(0)
    return Trainer(ToyObjective(), config, run_dir, ToyWindows(64), ToyWindows(16, seed=1))


def _finite(state: dict) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


# lr=1e300 and weight_decay=1e300 are finite (they pass validation) but overflow float32 weights.
@pytest.mark.parametrize("optim", [{"lr": 1e300, "min_lr": 0.0, "warmup_epochs": 0.0},
                                   {"weight_decay": 1e300, "warmup_epochs": 0.0}],
                         ids=["huge-lr", "huge-weight-decay"])
def test_update_that_makes_weights_nonfinite_stops_the_run_at_that_step_saving_nothing(tmp_path, optim):
    config = toy_config(optim=optim, run={"checkpoint_every_steps": 1, "max_steps": 4})
    with pytest.raises(TrainingError, match=r"step 1: .*NaN/Inf.*optim\.lr=.*optim\.weight_decay="):
        _trainer(tmp_path, config).fit()
    assert CheckpointManager(tmp_path / "checkpoints").periodic() == []
    assert not (tmp_path / "checkpoints" / "best.pt").exists()


def test_nonfinite_update_names_a_finite_checkpoint_as_the_last_good_one(tmp_path):
    config = toy_config(run={"checkpoint_every_steps": 2, "max_steps": 12, "keep_last": 10})
    trainer = _trainer(tmp_path, config)

    def poison_fifth_update(optimizer, args, kwargs):
        if trainer.step == 4:  # the update of step 5 (self.step counts finished steps)
            with torch.no_grad():
                trainer.module.head.weight.fill_(float("inf"))

    trainer.optimizer.register_step_post_hook(poison_fifth_update)
    with pytest.raises(TrainingError, match=r"step 5: .*the last good checkpoint is .*step-00000004\.pt"):
        trainer.fit()
    saved = CheckpointManager(tmp_path / "checkpoints").periodic()
    assert [p.name for p in saved] == ["step-00000002.pt", "step-00000004.pt"]
    assert all(_finite(load_checkpoint(p)["model"]) for p in saved)


def test_resume_skips_a_checkpoint_with_nonfinite_weights(tmp_path, caplog):
    config = toy_config(run={"checkpoint_every_steps": 2, "max_steps": 8, "keep_last": 10})
    _trainer(tmp_path, config).fit()
    manager = CheckpointManager(tmp_path / "checkpoints")
    newest = manager.periodic()[-1]
    state = load_checkpoint(newest)
    state["model"]["head.weight"].fill_(float("nan"))
    save_checkpoint(state, newest, meta={"step": state["step"], "epoch": 0, "metrics": {}})
    with caplog.at_level(logging.INFO, logger="neurofm.engine"):
        result = _trainer(tmp_path, config).fit(resume=True)
    assert f"{newest} holds NaN/Inf model weights" in caplog.text
    assert "step-00000006.pt at step 6" in caplog.text
    assert result.step == 8 and _finite(load_checkpoint(result.last_checkpoint)["model"])


@pytest.mark.parametrize("override", [
    "optim.lr=inf", "optim.lr=nan", "optim.weight_decay=inf", "optim.min_lr=-inf",
    "optim.clip_grad_norm=inf", "optim.betas=0.9,nan", "data.window_seconds=inf",
    "data.stride_seconds=nan", "mask_ratio=nan", "run.seed=-1", "run.seed=1e30",
])
def test_nonfinite_or_out_of_range_numbers_are_refused_by_config_validation(override):
    option = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"config option {re.escape(option)} must"):
        load_config(PretrainConfig, overrides=[override], base={"objective": "fip"})


@pytest.mark.parametrize("lr", ["inf", "1e300"])
def test_pretrain_with_an_absurd_lr_exits_2_and_exports_no_model(tmp_path, capsys, lr):
    corpus = write_tiny_eeg_corpus(tmp_path / "corpus", seconds=8, subjects=2)
    out = tmp_path / "run"
    code = main(["pretrain", "--objective", "fip", "--model", "neurobert_small", "--corpus",
                 str(corpus), "--out", str(out), "--quiet", "run.tensorboard=false",
                 "data.window_seconds=1", "data.stride_seconds=1", "data.batch_size=4",
                 "run.max_steps=3", "run.checkpoint_every_steps=1", f"optim.lr={lr}",
                 "optim.min_lr=0"])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("neurofm pretrain: error:") and "optim.lr" in error
    assert not (out / "model").exists()
    assert CheckpointManager(out / "checkpoints").periodic() == []


def test_finiteness_check_is_exact_for_huge_finite_weights():
    huge = torch.full((4, 4), 1e30)  # its 2-norm overflows float32, its elements do not
    assert all_finite([huge, torch.zeros(3, dtype=torch.long)])
    assert not all_finite([huge, torch.tensor([0.0, float("nan")])])
