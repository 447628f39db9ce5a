"""Checkpoint safety and strictness, and neurofm's own safetensors format."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from neurofm.errors import CheckpointError
from neurofm.loading import from_pretrained
from neurofm.models.input_conversion import InputConversion
from neurofm.models.labram import LABRAM_CONFIGS, Labram
from neurofm.models.labram_official import load_labram_checkpoint
from neurofm.models.labram_pretrain import LabramForMaskedEEG
from neurofm.models.registry import create_model
from neurofm.models.saved import load_pretrained, save_pretrained


class _RunsCode:
    """Unpickling this object would create a file: the classic malicious-checkpoint payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"cls_token": torch.zeros(1)}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_labram_checkpoint(path)
    assert not marker.exists()


def test_truncated_checkpoint_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "cut.pth"
    torch.save({"model": Labram(config=LABRAM_CONFIGS["small"]).state_dict()}, path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"cut.pth"):
        load_labram_checkpoint(path)


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    state = Labram(n_outputs=2, config=LABRAM_CONFIGS["small"]).state_dict()
    del state["blocks.1.mlp.fc2.bias"]
    state["blocks.0.attn.rel_pos_bias"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError) as error:
        load_labram_checkpoint(path)
    assert "missing keys: blocks.1.mlp.fc2.bias" in str(error.value)
    assert "unexpected keys: blocks.0.attn.rel_pos_bias" in str(error.value)


def test_official_layout_round_trip_of_a_finetuned_network(tmp_path: Path) -> None:
    model = Labram(n_outputs=3, config=LABRAM_CONFIGS["small"]).eval()
    path = tmp_path / "finetuned.pth"
    torch.save({"model": model.state_dict()}, path)
    loaded = load_labram_checkpoint(path)
    x = torch.randn(2, 4, 400)
    index = torch.tensor([0, 5, 9, 41])
    torch.testing.assert_close(loaded(x, channel_index=index), model(x, channel_index=index))
    # A head of another size is dropped and re-initialised for fine-tuning.
    assert load_labram_checkpoint(path, target="backbone", n_outputs=7).head.out_features == 7


@pytest.mark.parametrize("model_factory", [
    lambda: Labram(n_outputs=2, ch_names=["FP1", "CZ", "O2"], config=LABRAM_CONFIGS["small"]),
    lambda: LabramForMaskedEEG(LABRAM_CONFIGS["small"], vocab_size=16),
    lambda: create_model("vqnsp_small", n_codes=32),
])
def test_neurofm_checkpoint_round_trip_reproduces_the_model(tmp_path: Path, model_factory) -> None:
    model = model_factory().eval()
    save_pretrained(model, tmp_path / "ckpt", model_name="test")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["sfreq"] == 200 and config["patch_size"] == 200 and config["input_unit"] == "100uV"
    assert len(config["channel_vocabulary"]) == 128
    loaded = from_pretrained(tmp_path / "ckpt")
    assert type(loaded) is type(model)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


def test_input_in_another_unit_is_refused_unless_converted(tmp_path: Path) -> None:
    model = Labram(n_outputs=2, ch_names=["FP1", "CZ"], config=LABRAM_CONFIGS["small"]).eval()
    save_pretrained(model, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="uV at 200 Hz"):
        load_pretrained(tmp_path / "ckpt", input_unit="uV")
    converted = load_pretrained(tmp_path / "ckpt", input_unit="uV", convert=True)
    assert isinstance(converted, InputConversion)
    microvolts = 30 * torch.randn(2, 2, 400)
    torch.testing.assert_close(converted(microvolts), model(microvolts / 100))


def test_input_at_another_rate_is_refused_unless_resampled(tmp_path: Path) -> None:
    model = Labram(n_outputs=2, ch_names=["FP1", "CZ"], config=LABRAM_CONFIGS["small"]).eval()
    save_pretrained(model, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="250 Hz"):
        load_pretrained(tmp_path / "ckpt", sfreq=250)
    converted = load_pretrained(tmp_path / "ckpt", sfreq=250, convert=True)
    t = torch.arange(500) / 250.0
    slow = torch.sin(2 * torch.pi * 3 * t).repeat(1, 2, 1)  # 3 Hz: well inside both bands
    t200 = torch.arange(400) / 200.0
    expected = model(torch.sin(2 * torch.pi * 3 * t200).repeat(1, 2, 1))
    torch.testing.assert_close(converted(slow), expected, rtol=1e-3, atol=1e-4)


def test_corrupted_weights_fail_the_checksum(tmp_path: Path) -> None:
    model = Labram(config=LABRAM_CONFIGS["small"])
    save_pretrained(model, tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_pretrained(tmp_path / "ckpt")


def test_backbone_from_a_neurofm_pretraining_checkpoint(tmp_path: Path) -> None:
    mem = LabramForMaskedEEG(LABRAM_CONFIGS["small"], vocab_size=16)
    save_pretrained(mem, tmp_path / "pretrained")
    backbone = Labram.from_pretrained(tmp_path / "pretrained", n_outputs=3, ch_names=["FP1", "CZ"])
    assert backbone.head.out_features == 3
    torch.testing.assert_close(backbone.state_dict()["blocks.1.attn.qkv.weight"],
                               mem.state_dict()["student.blocks.1.attn.qkv.weight"])


def test_official_training_checkpoint_with_saved_arguments_loads(tmp_path: Path) -> None:
    import argparse

    model = Labram(n_outputs=2, config=LABRAM_CONFIGS["small"])
    path = tmp_path / "checkpoint-best.pth"
    # The official engines save their argparse arguments and the epoch beside the weights.
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(lr=5e-4, batch_size=64),
                "epoch": 3}, path)
    loaded = load_labram_checkpoint(path)
    torch.testing.assert_close(loaded.state_dict()["head.weight"], model.state_dict()["head.weight"])
