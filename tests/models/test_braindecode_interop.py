"""braindecode interop: the key mapping (always) and equal outputs (when braindecode imports)."""

from __future__ import annotations

import pytest
import torch

from neurofm.models.braindecode_interop import (
    braindecode_key,
    from_braindecode_state_dict,
    neurofm_key,
    to_braindecode_state_dict,
)
from neurofm.models.labram import LABRAM_CONFIGS, Labram

# Key names of braindecode.models.Labram (braindecode/models/labram.py, braindecode/modules MLP).
BRAINDECODE_NAMES = {
    "pos_embed": "position_embedding",
    "time_embed": "temporal_embedding",
    "patch_embed.conv1.weight": "patch_embed.temporal_conv.conv1.weight",
    "patch_embed.norm3.bias": "patch_embed.temporal_conv.norm3.bias",
    "blocks.3.mlp.fc1.weight": "blocks.3.mlp.0.weight",
    "blocks.3.mlp.fc2.bias": "blocks.3.mlp.2.bias",
    "blocks.0.attn.q_norm.weight": "blocks.0.attn.q_norm.weight",
    "blocks.11.gamma_2": "blocks.11.gamma_2",
    "head.weight": "final_layer.weight",
    "fc_norm.bias": "fc_norm.bias",
    "cls_token": "cls_token",
}


@pytest.mark.parametrize(("ours", "theirs"), sorted(BRAINDECODE_NAMES.items()))
def test_key_mapping_matches_braindecode_names(ours: str, theirs: str) -> None:
    assert braindecode_key(ours) == theirs
    assert neurofm_key(theirs) == ours


def test_state_dict_round_trip_keeps_every_weight() -> None:
    model = Labram(n_outputs=3, config=LABRAM_CONFIGS["small"])
    exported = to_braindecode_state_dict(model, n_patches=4)
    assert exported["temporal_embedding"].shape[1] == 5
    back = from_braindecode_state_dict(exported)
    assert set(back) == set(model.state_dict())
    for key, value in model.state_dict().items():
        if key == "time_embed":
            torch.testing.assert_close(back[key][:, :5], value[:, :5])
        else:
            torch.testing.assert_close(back[key], value)


def test_braindecode_labram_gives_the_same_outputs() -> None:
    try:
        from braindecode.models import Labram as BraindecodeLabram  # noqa: F401
    except Exception as error:  # torchaudio fails to load beside the CPU torch on this install
        pytest.skip(f"braindecode cannot be imported here: {error}")
    from neurofm.models.braindecode_interop import export_to_braindecode, import_from_braindecode

    names = ["FP1", "CZ", "O2", "T3"]
    model = Labram(n_outputs=2, ch_names=names, config=LABRAM_CONFIGS["base"]).eval()
    x = torch.randn(2, 4, 800)
    bd_model = export_to_braindecode(model, n_times=800)
    with torch.no_grad():
        torch.testing.assert_close(bd_model(x), model(x), rtol=1e-4, atol=1e-5)
        back = import_from_braindecode(bd_model)
        torch.testing.assert_close(back(x), model(x), rtol=1e-5, atol=1e-6)
