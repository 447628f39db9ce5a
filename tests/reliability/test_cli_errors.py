"""User errors end in one `neurofm CMD: error: ...` line and exit status 2, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from toy_training import write_tiny_eeg_corpus

from neurofm.cli import main
from neurofm.data.splits import Split
from neurofm.errors import ConfigError
from neurofm.tasks.data import TaskWindows
from neurofm.tasks.definitions import get_task
from neurofm.tasks.finetune_config import load_finetune_config
from neurofm.tasks.fold_training import FineTunePredictor


def pretrain(corpus: Path, out: Path, *overrides: str) -> list[str]:
    return ["pretrain", "--objective", "fip", "--model", "neurobert_small", "--quiet", "--corpus",
            str(corpus), "--out", str(out), "run.tensorboard=false", "data.batch_size=4",
            "run.max_steps=1", "data.window_seconds=1", "data.stride_seconds=1", *overrides]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_eeg_corpus(tmp_path_factory.mktemp("corpus"), seconds=8, subjects=2)


def _one_line_error(capsys, command: str, needle: str) -> None:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    # argparse prints its usage first; the error itself is the last line, and the only other one.
    assert len([line for line in err.splitlines() if "error:" in line]) == 1
    assert f"neurofm {command}: error:" in err and needle in err


def test_pretrain_out_an_existing_file(corpus, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main(pretrain(corpus, tmp_path / "afile")) == 2
    _one_line_error(capsys, "pretrain", "is an existing file")


def test_prepare_out_an_existing_file_is_an_os_error_on_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    source = tmp_path / "rec.edf"
    source.write_bytes(b"0")
    assert main(["prepare", str(source), "--out", str(tmp_path / "afile")]) == 2
    _one_line_error(capsys, "prepare", str(tmp_path / "afile"))


@pytest.mark.parametrize("shard", ["5/2", "0/0", "x/2"])
def test_prepare_bad_shard(tmp_path, capsys, shard):
    with pytest.raises(SystemExit) as exit_:
        main(["prepare", str(tmp_path), "--out", str(tmp_path / "out"), "--shard", shard])
    assert exit_.value.code == 2
    _one_line_error(capsys, "prepare", "argument --shard")


def test_prepare_file_without_extension(tmp_path, capsys):
    source = tmp_path / "Subject00"
    source.write_bytes(b"0" * 256)
    assert main(["prepare", str(source), "--out", str(tmp_path / "out")]) == 2
    _one_line_error(capsys, "prepare", f"file {source} has no recording extension")


@pytest.mark.parametrize(("override", "option"), [
    ("data.window_seconds=inf", "data.window_seconds"), ("run.seed=-1", "run.seed"),
    ("run.seed=1e30", "run.seed"), ("model_overrides.depth=-1", "depth=-1"),
    ("model_overrides.embed_dim=0", "embed_dim=0"), ("model_overrides.depth=x", "depth='x'"),
])
def test_pretrain_bad_numbers(corpus, tmp_path, capsys, override, option):
    assert main(pretrain(corpus, tmp_path / "run", override)) == 2
    _one_line_error(capsys, "pretrain", option)


@pytest.mark.parametrize("flag", ["--window-seconds", "--stride-seconds"])
@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_embed_bad_seconds(corpus, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_:
        main(["embed", "ckpt", "--corpus", str(corpus), "--out", str(tmp_path / "e.npy"), flag, value])
    assert exit_.value.code == 2
    _one_line_error(capsys, "embed", f"argument {flag}: '{value}' must be a finite number > 0")


@pytest.mark.parametrize("damage", ["truncated", "list", "no_predictions"])
def test_finetune_resume_with_a_damaged_predictions_file(tmp_path, damage):
    fold_dir = tmp_path / "fold0"
    fold_dir.mkdir()
    text = {"truncated": '{"selection": {"epoch": 1}, "predictions": {"y_tr',
            "list": "[1, 2]", "no_predictions": '{"selection": {}}'}[damage]
    (fold_dir / "predictions.json").write_text(text)
    windows = TaskWindows(np.zeros((4, 2, 400), np.float32), np.arange(4) % 2,
                          np.array(["S0", "S0", "S1", "S1"]), np.array(["r0", "r0", "r1", "r1"]),
                          np.arange(4, dtype=float), 200.0, "100uV", ("C3", "C4"))
    config = load_finetune_config(overrides=["run.progress=false", "run.device=cpu"],
                                  flags={"task_name": "eegmat", "model": "labram_small"})
    predictor = FineTunePredictor(config, get_task("eegmat"), windows, tmp_path, resume=True)
    with pytest.raises(ConfigError, match=r"fold0/predictions\.json is damaged.*delete it"):
        predictor(0, Split(by="recording", train=("r0",), val=(), test=("r1",), groups={},
                           name="fold0"))
