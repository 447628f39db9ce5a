"""The LaBraM backbone: configurations, shapes, channel handling and padding invariance."""

from __future__ import annotations

import pytest
import torch

from neurofm.errors import ChannelError
from neurofm.models.labram import LABRAM_CONFIGS, Labram, TemporalEncoder
from neurofm.models.labram_pretrain import LabramForMaskedEEG
from neurofm.models.registry import create_model, list_models

TEN_TWENTY = ["FP1", "FP2", "F7", "F3", "FZ", "F4", "F8", "T3", "C3", "CZ", "C4", "T4", "T5", "P3",
              "PZ", "P4", "T6", "O1", "O2"]


@pytest.mark.parametrize(("name", "encoder", "with_mem_head"), [
    ("labram_base", 5_819_936, 7_466_728),
    ("labram_large", 46_258_720, 49_544_112),
    ("labram_huge", 369_235_712, 375_798_304),
])
def test_parameter_counts_match_the_methods_table(name: str, encoder: int, with_mem_head: int) -> None:
    with torch.device("meta"):
        backbone = create_model(name)
        mem = create_model(f"{name}_mem")
    assert sum(p.numel() for p in backbone.parameters()) == encoder
    assert sum(p.numel() for p in mem.parameters()) == with_mem_head


def test_registry_lists_every_size() -> None:
    for name in ("labram_base", "labram_large", "labram_huge", "labram_small", "labram_base_mem",
                 "vqnsp_base", "vqnsp_small"):
        assert name in list_models()


@pytest.mark.parametrize("seconds", [1, 2, 5, 16])
def test_output_shapes_for_windows_of_1_to_16_seconds(seconds: int) -> None:
    model = create_model("labram_small", n_outputs=3, ch_names=TEN_TWENTY[:4]).eval()
    x = torch.randn(2, 4, 200 * seconds)
    assert model(x).shape == (2, 3)
    assert model.forward_features(x).shape == (2, 100)
    assert model.forward_features(x, return_all_tokens=True).shape == (2, 1 + 4 * seconds, 100)
    assert model.forward_features(x.reshape(2, 4, seconds, 200), return_patch_tokens=True).shape == (
        2, 4 * seconds, 100)


def test_windows_longer_than_16_seconds_are_refused() -> None:
    model = create_model("labram_small", ch_names=TEN_TWENTY[:2])
    with pytest.raises(ValueError, match="at most 16 s"):
        model(torch.randn(1, 2, 200 * 17))


def test_partial_patches_are_refused() -> None:
    model = create_model("labram_small", ch_names=TEN_TWENTY[:2])
    with pytest.raises(ValueError, match="whole number"):
        model(torch.randn(1, 2, 450))


def test_unknown_channel_name_raises_naming_it() -> None:
    with pytest.raises(ChannelError, match="XYZ"):
        Labram(ch_names=["FP1", "XYZ"], config=LABRAM_CONFIGS["small"])


def test_channel_names_and_indices_and_chs_info_agree() -> None:
    model = Labram(n_outputs=2, chs_info=[{"ch_name": "EEG Fp1-REF"}, {"ch_name": "Cz"}],
                   config=LABRAM_CONFIGS["small"]).eval()
    x = torch.randn(3, 2, 400)
    by_default = model(x)
    by_names = model(x, ch_names=["FP1", "CZ"])
    by_index = model(x, channel_index=torch.tensor([0, 41]))
    torch.testing.assert_close(by_default, by_names)
    torch.testing.assert_close(by_default, by_index)


def test_reset_head_replaces_the_output_size() -> None:
    model = create_model("labram_small", n_outputs=4, ch_names=TEN_TWENTY[:3])
    model.reset_head(2)
    assert model(torch.randn(1, 3, 200)).shape == (1, 2)
    model.reset_head(0)
    assert model(torch.randn(1, 3, 200)).shape == (1, 100)


def test_return_features_gives_the_pooled_embedding() -> None:
    model = create_model("labram_small", n_outputs=4, ch_names=TEN_TWENTY[:3], return_features=True)
    assert model(torch.randn(2, 3, 400)).shape == (2, 100)


def _padded_pair(model: torch.nn.Module, seconds: int = 3):
    """Outputs for samples run alone and the same samples padded into one batch."""
    torch.manual_seed(1)
    short = torch.randn(1, 3, 200 * seconds)
    long = torch.randn(1, 5, 200 * seconds)
    index_short = torch.tensor([[0, 2, 41]])
    index_long = torch.tensor([[3, 7, 15, 41, 80]])
    batch = torch.zeros(2, 5, 200 * seconds)
    batch[0, :3] = short[0]
    batch[0, 3:] = 50.0  # padding content must not matter
    batch[1] = long[0]
    index = torch.stack((torch.cat((index_short[0], torch.tensor([0, 0]))), index_long[0]))
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    return short, long, index_short, index_long, batch, index, mask


def test_padded_channels_change_nothing_in_real_outputs() -> None:
    model = create_model("labram_small", n_outputs=3).eval()
    short, long, index_short, index_long, batch, index, mask = _padded_pair(model)
    with torch.no_grad():
        alone = torch.cat((model(short, channel_index=index_short), model(long, channel_index=index_long)))
        padded = model(batch, channel_index=index, channel_mask=mask)
        tokens_alone = model.forward_features(short, channel_index=index_short, return_patch_tokens=True)
        tokens_padded = model.forward_features(batch, channel_index=index, channel_mask=mask,
                                               return_patch_tokens=True)
    torch.testing.assert_close(padded, alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tokens_padded[0, :9], tokens_alone[0], rtol=1e-4, atol=1e-5)


def test_temporal_encoder_groupnorm_ignores_padded_patches() -> None:
    encoder = TemporalEncoder(8)
    real = torch.randn(1, 6, 200)
    padded = torch.cat((real, 100 * torch.randn(1, 4, 200)), dim=1)
    valid = torch.tensor([[True] * 6 + [False] * 4])
    torch.testing.assert_close(encoder(padded, valid)[:, :6], encoder(real), rtol=1e-4, atol=1e-5)
    # The official pooling (no mask) would have mixed the padding into the statistics.
    assert not torch.allclose(encoder(padded)[:, :6], encoder(real), atol=1e-3)


def test_masked_modelling_student_is_padding_invariant() -> None:
    model = LabramForMaskedEEG(LABRAM_CONFIGS["small"], vocab_size=32).eval()
    short, _, index_short, _, batch, index, mask = _padded_pair(model)
    masked_short = torch.zeros(1, 9, dtype=torch.bool)
    masked_short[0, ::2] = True
    masked = torch.zeros(2, 15, dtype=torch.bool)
    masked[0, :9] = masked_short[0]
    with torch.no_grad():
        alone = model(short, index_short, masked_short)
        padded = model(batch, index, masked, mask)
    torch.testing.assert_close(padded[0, :9], alone[0], rtol=1e-4, atol=1e-5)
