"""A Neuro-BERT round-trips through neurofm's checkpoint folder (what `pretrain --objective fip` exports)."""

from __future__ import annotations

import json

import torch

from neurofm.models.registry import create_model
from neurofm.models.saved import load_pretrained, save_pretrained


def test_neurobert_saves_and_loads_with_its_own_rate_patch_and_unit(tmp_path):
    model = create_model("neurobert_small", n_times=400).eval()
    save_pretrained(model, tmp_path / "model", model_name="neurobert_small")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["family"] == "neurobert" and config["patch_size"] == model.config.patch_len
    assert config["sfreq"] == model.config.sfreq and config["input_unit"] == model.config.input_unit
    loaded = load_pretrained(tmp_path / "model")
    assert loaded.config == model.config
    x = torch.randn(2, 3, 400)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
