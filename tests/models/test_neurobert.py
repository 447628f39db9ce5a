"""Neuro-BERT encoder: shapes, padding, masking, pooling and its rebuildable config."""

from __future__ import annotations

import json

import pytest
import torch

from neurofm.errors import ConfigError
from neurofm.models.blocks import Block
from neurofm.models.neurobert import (
    NeuroBert,
    NeuroBertConfig,
    neurobert_base,
    neurobert_small,
    sincos_time_embedding,
    zscore_per_channel,
)


def test_base_config_matches_the_paper_scale_and_worked_shapes() -> None:
    model = neurobert_base().eval()
    config = model.config
    assert (config.depth, config.embed_dim, config.num_heads, config.mlp_dim, config.drop) == (
        4, 128, 4, 512, 0.1
    )
    encoder = sum(p.numel() for name, p in model.named_parameters()
                  if not name.startswith(("channel_embed", "fc_norm", "head")))
    assert 0.75e6 < encoder < 0.85e6  # the ~0.8 M reported for the paper's encoder
    signal = torch.randn(8, 19, 2000)
    patches = model.patchify(signal)
    assert patches.shape == (8, 19, 10, 200)
    assert model.forward_encoder(patches).shape == (8, 190, 128)
    assert model(signal).shape == (8, 128)


def test_encoder_is_built_from_the_shared_block_with_neurobert_options() -> None:
    model = neurobert_small()
    assert all(type(block) is Block for block in model.blocks)
    block = model.blocks[0]
    assert block.attn.q_bias is not None  # qkv bias
    assert isinstance(block.attn.q_norm, torch.nn.Identity)  # no QK-norm
    assert block.gamma_1 is None  # no layer scale
    assert isinstance(block.mlp.act, torch.nn.GELU)


def test_patchify_zscores_each_channel_and_drops_the_remainder() -> None:
    model = neurobert_small(patch_len=50)
    signal = 3.0 + 40.0 * torch.randn(2, 3, 230)
    patches = model.patchify(signal)
    assert patches.shape == (2, 3, 4, 50)
    flat = patches.reshape(2, 3, -1)
    torch.testing.assert_close(flat.mean(-1), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(-1, unbiased=False), torch.ones(2, 3), atol=1e-4, rtol=0)


def test_output_does_not_depend_on_the_amplitude_unit() -> None:
    model = neurobert_small().eval()
    signal = torch.randn(2, 3, 400)
    torch.testing.assert_close(model(signal), model(100.0 * signal + 3.0), atol=1e-4, rtol=1e-4)


def test_time_positions_are_fixed_sinusoids_for_any_window_length() -> None:
    table = sincos_time_embedding(6, 8)
    positions = torch.arange(6, dtype=torch.float32)
    torch.testing.assert_close(table[:, 0], torch.sin(positions))
    torch.testing.assert_close(table[:, 1], torch.cos(positions))
    torch.testing.assert_close(table[:, 6], torch.sin(positions / 10000 ** (6 / 8)))
    model = neurobert_small(n_times=400).eval()
    assert "time_table" not in model.state_dict()
    assert model.forward_encoder(model.patchify(torch.randn(1, 2, 1000))).shape == (1, 10, 32)


def test_flat_channel_zscores_to_zeros_not_nan() -> None:
    assert torch.equal(zscore_per_channel(torch.full((1, 1, 10), 5.0)), torch.zeros(1, 1, 10))


def test_window_norm_keeps_relative_channel_amplitudes() -> None:
    model = neurobert_small(input_norm="window")
    base = torch.randn(2, 1, 400)
    signal = torch.cat([base, 3.0 * base + 7.0], dim=1)  # channel 1: 3x louder, offset
    patches = model.patchify(signal)
    torch.testing.assert_close(patches[:, 1], 3.0 * patches[:, 0], atol=1e-5, rtol=1e-5)
    # One scale per window: unit mean power over the window's channels, each channel centred.
    torch.testing.assert_close(patches.pow(2).mean(dim=(1, 2, 3)), torch.ones(2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(patches.mean(dim=(2, 3)), torch.zeros(2, 2), atol=1e-5, rtol=1e-5)
    # Per-channel z-scoring (the default) erases exactly that ratio.
    default = neurobert_small().patchify(signal)
    torch.testing.assert_close(default[:, 1], default[:, 0], atol=1e-5, rtol=1e-5)


def test_window_norm_statistics_ignore_padded_channels() -> None:
    model = neurobert_small(input_norm="window").eval()
    real = torch.randn(1, 3, 600)
    padded = torch.cat([real, 1e3 * torch.randn(1, 2, 600)], dim=1)
    mask = torch.tensor([[True, True, True, False, False]])
    torch.testing.assert_close(model.patchify(padded, mask)[:, :3], model.patchify(real))
    assert not model.patchify(padded, mask)[:, 3:].any()


def test_input_norm_none_passes_the_signal_through_and_unknown_is_refused() -> None:
    signal = torch.randn(1, 2, 400, dtype=torch.float64) * 50
    patches = neurobert_small(input_norm="none").patchify(signal)
    assert patches.dtype == torch.float32
    torch.testing.assert_close(patches.reshape(1, 2, 400), signal.float())
    with pytest.raises(ConfigError, match="input_norm='robust'"):
        neurobert_small(input_norm="robust")


def test_padded_channels_do_not_change_real_tokens_or_pooled_features() -> None:
    model = neurobert_small().eval()
    real = torch.randn(1, 3, 600)
    padded = torch.cat([real, 100.0 * torch.randn(1, 2, 600)], dim=1)
    mask = torch.tensor([[True, True, True, False, False]])
    hidden_real = model.forward_encoder(model.patchify(real))
    hidden_padded = model.forward_encoder(model.patchify(padded, mask), channel_mask=mask)
    torch.testing.assert_close(hidden_padded[:, : 3 * 3], hidden_real, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(padded, mask), model(real), atol=1e-5, rtol=1e-5)


def test_masked_patch_content_is_invisible_to_the_encoder() -> None:
    model = neurobert_small().eval()
    patches = torch.randn(1, 2, 2, 200)
    token_mask = torch.tensor([[True, False, False, True]])  # channel-major: (0,0) and (1,1)
    changed = patches.clone()
    changed[0, 0, 0] = torch.randn(200)
    changed[0, 1, 1] = torch.randn(200)
    torch.testing.assert_close(model.forward_encoder(changed, token_mask=token_mask),
                               model.forward_encoder(patches, token_mask=token_mask))
    assert not torch.allclose(model.forward_encoder(changed), model.forward_encoder(patches))


def test_mask_token_gets_positions_added_after_it() -> None:
    model = neurobert_small().eval()
    everything = torch.ones(1, 4, dtype=torch.bool)
    hidden = model.forward_encoder(torch.randn(1, 2, 2, 200), token_mask=everything)
    # Every token is the same mask token; only the time and channel embeddings tell them apart.
    assert not torch.allclose(hidden[0, 0], hidden[0, 1])
    assert not torch.allclose(hidden[0, 0], hidden[0, 2])


def test_channel_embedding_distinguishes_channels_and_follows_channel_position() -> None:
    model = neurobert_small().eval()
    signal = torch.randn(1, 1, 400).expand(1, 2, 400).contiguous()
    hidden = model.forward_encoder(model.patchify(signal))
    assert not torch.allclose(hidden[:, :2], hidden[:, 2:])  # same signal, different channel
    swapped = model.forward_encoder(model.patchify(signal), channel_position=torch.tensor([1, 0]))
    torch.testing.assert_close(swapped[:, :2], hidden[:, 2:], atol=1e-5, rtol=1e-5)


def test_single_channel_model_has_no_channel_embedding() -> None:
    assert neurobert_small(n_chans=1).channel_embed is None
    assert neurobert_small(n_chans=19).channel_embed is not None
    assert neurobert_small(n_chans=1)(torch.randn(2, 1, 400)).shape == (2, 32)
    with pytest.raises(ConfigError, match="cannot tell 3 channels apart"):
        neurobert_small(n_chans=1)(torch.randn(2, 3, 400))


def test_mixed_patch_mode_gives_one_token_per_time_step() -> None:
    model = neurobert_small(n_chans=8, patch_mode="mixed", patch_len=40).eval()
    patches = model.patchify(torch.randn(2, 8, 400))
    assert isinstance(model.patch_embed, torch.nn.Conv1d)
    assert model.forward_encoder(patches).shape == (2, 10, model.config.embed_dim)
    assert model.channel_embed is None and model.head_channels == 8
    with pytest.raises(ConfigError, match="n_chans=8"):
        model.patchify(torch.randn(2, 7, 400))


def test_classification_head_and_reset_head() -> None:
    model = neurobert_small(n_chans=8, n_outputs=5)
    assert model(torch.randn(3, 8, 400)).shape == (3, 5)
    model.reset_head(8)
    assert model.config.n_outputs == 8
    assert model(torch.randn(3, 8, 400)).shape == (3, 8)


def test_config_round_trips_through_json_with_checkpoint_fields() -> None:
    model = neurobert_small(patch_len=100, sfreq=100.0, input_unit="device", n_chans=8)
    fields = json.loads(json.dumps(model.config.to_dict()))
    assert (fields["input_unit"], fields["sfreq"], fields["patch_len"]) == ("device", 100.0, 100)
    rebuilt = NeuroBert.from_config(fields)
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    signal = torch.randn(2, 8, 300)
    torch.testing.assert_close(rebuilt.eval()(signal), model.eval()(signal))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"patch_len": 201}, "even"),
        ({"patch_mode": "mixed"}, "set n_chans"),
        ({"patch_mode": "conv"}, "patch_mode"),
        ({"embed_dim": 30, "num_heads": 4}, "divisible"),
        ({"n_chans": 300}, "max_channels"),
    ],
)
def test_invalid_config_raises_config_error(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NeuroBertConfig(**fields)


def test_window_shorter_than_a_patch_is_rejected_with_the_lengths() -> None:
    with pytest.raises(ConfigError, match="150 samples is shorter than one patch"):
        neurobert_small().patchify(torch.randn(1, 2, 150))


def test_sample_without_real_channel_is_rejected() -> None:
    with pytest.raises(ConfigError, match="no real channel"):
        neurobert_small()(torch.randn(2, 2, 400), torch.tensor([[True, False], [False, False]]))


def test_registry_builds_named_configs_with_overrides() -> None:
    from neurofm.models.registry import create_model, list_models

    assert {"neurobert_small", "neurobert_base"} <= set(list_models())
    model = create_model("neurobert_base", n_chans=8, n_outputs=8, sfreq=200.0)
    assert isinstance(model, NeuroBert)
    assert (model.config.n_outputs, model.config.embed_dim) == (8, 128)
