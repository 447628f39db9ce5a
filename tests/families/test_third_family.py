"""A new model family is one module plus one registry entry: a tiny third family, defined in
tests/families/tiny_family.py, is pretrained, loaded, fine-tuned, evaluated and embedded through
neurofm's own entry points, with no neurofm module changed for it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_training import write_tiny_eeg_corpus

import neurofm
from neurofm.cli import main
from neurofm.data.splits import Split
from neurofm.models import registry
from neurofm.models.registry import list_backbones, register_family_module
from neurofm.tasks.data import TaskWindows
from neurofm.tasks.embed import embed_corpus
from neurofm.tasks.finetune import run_finetune
from neurofm.tasks.finetune_config import load_finetune_config

_QUIET = ["run.progress=false", "run.tensorboard=false", "data.batch_size=8"]


@pytest.fixture(scope="module", autouse=True)
def tiny_family():
    """The family registered for this module's tests only (the registry is process-wide, and
    other tests list every registered model)."""
    registry.list_models()  # neurofm's own families imported (and registered) first
    saved = (dict(registry._BUILDERS), dict(registry._FAMILIES), list(registry.FAMILY_MODULES))
    register_family_module("tiny_family")  # the one registry entry
    sys.modules.pop("tiny_family", None)
    module = importlib.import_module("tiny_family")
    yield module
    registry._BUILDERS.clear()
    registry._BUILDERS.update(saved[0])
    registry._FAMILIES.clear()
    registry._FAMILIES.update(saved[1])
    registry.FAMILY_MODULES[:] = saved[2]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, tiny_family) -> Path:
    """A tiny_patchnet pretrained for three steps with the time-domain masked objective."""
    root = tmp_path_factory.mktemp("third_family")
    corpus = write_tiny_eeg_corpus(root / "corpus")
    run_dir = root / "run"
    code = main(["pretrain", "--objective", "mae-time", "--model", "tiny_patchnet", "--quiet",
                 "--corpus", str(corpus), "--out", str(run_dir), *_QUIET,
                 "data.window_seconds=2", "data.stride_seconds=2", "optim.warmup_epochs=0",
                 "optim.lr_batch_scaling=none", "run.max_steps=3"])
    assert code == 0
    return run_dir


def _windows(n: int = 32) -> TaskWindows:
    rng = np.random.default_rng(0)
    label = (np.arange(n) // 4) % 2  # every subject has both classes
    t = np.arange(400) / 200.0
    signal = rng.normal(0, 0.2, (n, 4, t.size)) + label[:, None, None] * np.sin(2 * np.pi * 10 * t)
    subject = np.array([f"S{i % 4}" for i in range(n)])
    return TaskWindows(signal.astype(np.float32), label, subject, np.char.add(subject, "_r"),
                       np.arange(n, dtype=float), 200.0, "100uV", ("C3", "C4", "P3", "P4"))


def test_the_pretrained_third_family_loads_with_its_record(pretrained, tiny_family):
    model = neurofm.from_pretrained(pretrained / "model")
    assert isinstance(model, tiny_family.TinyPatchNet) and not model.training
    info = model.pretrained_info
    assert info.kind == "neurofm" and info.model == "tiny_patchnet"
    assert info.sfreq == 200.0 and info.input_unit == "100uV"
    assert {r["subject"] for r in info.pretraining["recordings"]} == {"s0", "s1", "s2"}


def test_the_third_family_fine_tunes_evaluates_and_embeds(pretrained, tmp_path, tiny_family):
    config = load_finetune_config(
        overrides=[*_QUIET, "optim.epochs=2", "optim.warmup_epochs=0"],
        flags={"task_name": "eegmat", "model": "tiny_patchnet", "init": str(pretrained / "model")})
    assert config.drop_path == 0.0 and config.optim.layer_decay is None  # its family's recipe
    assert "tiny_patchnet" in list_backbones() and "labram_small_mem" not in list_backbones()
    fold = Split(by="subject", train=("S2_r", "S3_r"), val=("S1_r",), test=("S0_r",),
                 groups={"train": ("S2", "S3"), "val": ("S1",), "test": ("S0",)}, name="fold0")
    outcome = run_finetune(config, _windows(), [fold], tmp_path / "ft", progress=False,
                           n_resamples=10, allow_overlap=True)
    result = outcome.results[0]
    assert result.predictions.y_prob.shape == (8, 2)
    assert np.isfinite(result.pooled["auroc"])
    assert result.config["init"]["family"] == "tiny"
    exported = neurofm.from_pretrained(tmp_path / "ft" / "seed0" / "fold0" / "model")
    assert isinstance(exported, tiny_family.TinyPatchNet) and exported.n_outputs == 1

    embeddings = embed_corpus(str(pretrained / "model"), pretrained.parent / "corpus" / next(
        p.name for p in (pretrained.parent / "corpus").iterdir() if p.is_dir()),
        window_seconds=2.0)
    assert embeddings.features.shape[1] == 16 and np.isfinite(embeddings.features).all()
    with torch.no_grad():
        batch = {"signal": torch.from_numpy(_windows().signal[:2])}
        assert exported.patch_features(batch).shape == (2, 8, 16)
