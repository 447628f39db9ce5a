"""End to end: `neurofm tokenizer train` and `neurofm pretrain` on a tiny corpus written here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from toy_training import write_tiny_eeg_corpus

from neurofm.cli import main
from neurofm.engine.metrics_log import read_metrics
from neurofm.loading import load_backbone
from neurofm.models.labram import Labram

FAST = ["run.progress=false", "run.tensorboard=false", "run.log_every_steps=1",
        "data.window_seconds=2", "data.stride_seconds=2", "data.batch_size=8",
        "optim.lr_batch_scaling=none", "optim.warmup_epochs=0"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Three subjects, 24 s each of 6-channel EEG-like rhythms in 100 uV at 200 Hz."""
    return write_tiny_eeg_corpus(tmp_path_factory.mktemp("corpus"))


def _train_losses(run_dir: Path) -> list[float]:
    return [value for *_, value in read_metrics(run_dir / "metrics.csv", split="train", name="loss")]


def _falling(losses: list[float]) -> bool:
    k = max(2, len(losses) // 4)
    return all(math.isfinite(v) for v in losses) and np.mean(losses[-k:]) < np.mean(losses[:k])


def test_pretrain_fip_loss_is_finite_and_falls(corpus, tmp_path):
    run_dir = tmp_path / "fip"
    code = main(["pretrain", "--objective", "fip", "--corpus", str(corpus), "--out", str(run_dir),
                 "--model", "neurobert_small", *FAST, "optim.lr=3e-3", "run.max_steps=16"])
    assert code == 0
    losses = _train_losses(run_dir)
    assert len(losses) == 16 and _falling(losses)
    assert (run_dir / "config.yaml").read_text().startswith("task: pretrain")
    assert read_metrics(run_dir / "metrics.csv", split="val", name="loss")


def test_tokenizer_then_mem_pretraining_end_to_end(corpus, tmp_path, capsys):
    tokenizer_run = tmp_path / "tok"
    assert main(["tokenizer", "train", "--corpus", str(corpus), "--out", str(tokenizer_run),
                 "--model", "vqnsp_small", *FAST, "optim.lr=1e-3", "run.max_steps=6",
                 "model_overrides.n_codes=64"]) == 0
    assert all(math.isfinite(v) for v in _train_losses(tokenizer_run))
    used = read_metrics(tokenizer_run / "metrics.csv", split="train", name="codebook_used_fraction")
    assert used and used[-1][3] > 0
    assert (tokenizer_run / "model" / "model.safetensors").is_file()
    assert "% of the codebook in use" in capsys.readouterr().out

    mem_run = tmp_path / "mem"
    assert main(["pretrain", "--objective", "mem", "--tokenizer", str(tokenizer_run / "model"),
                 "--corpus", str(corpus), "--out", str(mem_run), "--model", "labram_small_mem",
                 *FAST, "optim.lr=1e-3", "run.max_steps=8"]) == 0
    losses = _train_losses(mem_run)
    assert len(losses) == 8 and _falling(losses)
    # The export names the step its weights come from: the best validation step, not the last.
    exported = json.loads((mem_run / "model" / "config.json").read_text())["extra"]
    best = json.loads((mem_run / "checkpoints" / "best.json").read_text())
    assert exported["weights"].startswith("best") and exported["step"] == best["step"]
    # A periodic checkpoint of the 64-code run gives its backbone without restating the codebook size.
    backbone, info = load_backbone(str(mem_run / "checkpoints" / "step-00000008.pt"))
    assert isinstance(backbone, Labram) and info["source"] == "engine"


def test_excluded_recordings_are_never_trained_or_validated_on(corpus, tmp_path):
    run_dir = tmp_path / "fip"
    assert main(["pretrain", "--objective", "fip", "--corpus", str(corpus), "--out", str(run_dir),
                 "--model", "neurobert_small", *FAST, "run.max_steps=2",
                 "data.exclude_recordings=rec2"]) == 0
    split = json.loads((run_dir / "split.json").read_text())
    assert split["excluded"] == ["rec2"]
    assert "rec2" not in split["train"] + split["val"]
    assert main(["pretrain", "--objective", "fip", "--corpus", str(corpus), "--out",
                 str(tmp_path / "typo"), "data.exclude_recordings=[tuab/*]"]) == 2


def test_resume_continues_a_finished_cli_run_with_more_steps(corpus, tmp_path):
    run_dir = tmp_path / "fip"
    args = ["pretrain", "--objective", "fip", "--corpus", str(corpus), "--out", str(run_dir),
            "--model", "neurobert_small", *FAST]
    assert main([*args, "run.max_steps=4"]) == 0
    # A fresh run into a folder with checkpoints is refused rather than overwriting them.
    assert main([*args, "run.max_steps=4"]) == 2
    assert main([*args[:1], "--resume", *args[1:], "run.max_steps=6"]) == 0
    assert len(_train_losses(run_dir)) == 6


def test_help_and_inconsistent_options(capsys, corpus, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--help"])
    assert exit_info.value.code == 0
    assert "--objective" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["tokenizer", "train", "--help"])
    assert "--corpus" in capsys.readouterr().out

    out = str(tmp_path / "x")
    assert main(["pretrain", "--objective", "mem", "--corpus", str(corpus), "--out", out]) == 2
    assert "tokenizer is required" in capsys.readouterr().err
    assert main(["pretrain", "--objective", "fip", "--tokenizer", "t", "--corpus", str(corpus),
                 "--out", out]) == 2
    assert "only used by --objective mem" in capsys.readouterr().err
    assert main(["pretrain", "--objective", "fip", "--model", "labram_small_mem",
                 "--corpus", str(corpus), "--out", out, "run.max_steps=1"]) == 2
    assert "model 'labram_small_mem' does not take the options" in capsys.readouterr().err
    assert main(["pretrain", "--objective", "fip", "--corpus", str(corpus), "--out", out,
                 "optim.lr=fast"]) == 2
    assert "optim.lr must be a number" in capsys.readouterr().err
