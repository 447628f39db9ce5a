"""braindecode interop: the key mapping, and braindecode's own ``Labram`` computing what neurofm's
LaBraM computes, with the weights moved either way."""

from __future__ import annotations

import sys
import types
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from safetensors.torch import load_file, save_file

from neurofm.errors import CheckpointError, ConfigError
from neurofm.models.braindecode_interop import (
    BRAINDECODE_VERSION,
    braindecode_config,
    braindecode_key,
    export_to_braindecode,
    from_braindecode_state_dict,
    import_from_braindecode,
    neurofm_key,
    to_braindecode_state_dict,
)
from neurofm.models.labram import LABRAM_CONFIGS, Labram, LabramConfig

REPO_ROOT = Path(__file__).resolve().parents[2]

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
# The 19 electrodes of the 10-20 montage as eegmat's EDF files name them (Fp1, T3, ...): mixed
# case, legacy temporal names; both models look them up case-insensitively in the same vocabulary.
TEN_TWENTY = ["Fp1", "Fp2", "F3", "F4", "F7", "F8", "T3", "T4", "C3", "C4", "T5", "T6", "P3", "P4",
              "O1", "O2", "Fz", "Cz", "Pz"]
# A layout with the other switches flipped: cls-token pooling, q/v biases, no q/k norm, no layer scale.
VARIANT = replace(LABRAM_CONFIGS["small"], use_mean_pooling=False, qkv_bias=True, qk_norm=False,
                  init_values=0.0)
CONFIGS = {"base": LABRAM_CONFIGS["base"], "variant": VARIANT}
CASES = [("base", 200), ("base", 800), ("base", 3200), ("variant", 800)]
# Every test compares outputs of order 1 to this absolute and relative tolerance.
TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


@pytest.mark.parametrize(("ours", "theirs"), sorted(BRAINDECODE_NAMES.items()))
def test_key_mapping_matches_braindecode_names(ours: str, theirs: str) -> None:
    assert braindecode_key(ours) == theirs
    assert neurofm_key(theirs) == ours


def test_state_dict_round_trip_keeps_every_weight() -> None:
    torch.manual_seed(0)
    model = Labram(n_outputs=3, config=LABRAM_CONFIGS["small"])
    exported = model.to_braindecode_state_dict(n_times=800)
    assert exported["temporal_embedding"].shape[1] == 5
    back = from_braindecode_state_dict(exported)
    assert set(back) == set(model.state_dict())
    for key, value in model.state_dict().items():
        if key == "time_embed":
            torch.testing.assert_close(back[key][:, :5], value[:, :5], rtol=0, atol=0)
            assert not back[key][:, 5:].any()
        else:
            torch.testing.assert_close(back[key], value, rtol=0, atol=0)


def test_bad_sizes_are_refused_with_what_to_do() -> None:
    torch.manual_seed(0)
    model = Labram(config=LABRAM_CONFIGS["small"])
    with pytest.raises(ConfigError, match="multiple of 200"):
        to_braindecode_state_dict(model, n_times=300)
    with pytest.raises(ConfigError, match="1 to 16 s"):
        to_braindecode_state_dict(model, n_times=3400)
    state = to_braindecode_state_dict(model, n_times=3200)
    state["temporal_embedding"] = torch.zeros(1, 21, 100)  # a braindecode model for 20-s windows
    with pytest.raises(CheckpointError, match="20 patches"):
        from_braindecode_state_dict(state)
    no_norms = to_braindecode_state_dict(Labram(config=VARIANT), n_times=800)
    with pytest.raises(ConfigError, match="pass num_heads"):
        braindecode_config(no_norms)
    assert braindecode_config(no_norms, num_heads=4) == VARIANT
    state = to_braindecode_state_dict(model, n_times=800)
    state["blocks.1.mlp.0.weight"] = torch.zeros(300, 100)
    with pytest.raises(CheckpointError, match=r"blocks\.1\.mlp\.fc1\.weight"):
        Labram.from_braindecode_state_dict(state)


def test_config_is_read_back_from_the_shapes() -> None:
    for config in LABRAM_CONFIGS.values():
        with torch.device("meta"):
            state = to_braindecode_state_dict(Labram(config=config), n_times=400)
        assert braindecode_config(state) == replace(config, init_values=0.1)


# --- braindecode's own model -------------------------------------------------------------------

class _TorchaudioUnavailable:
    """Every torchaudio name while braindecode imports: calling or instantiating it (or a subclass,
    as braindecode's EMG models define) fails, so a model that used torchaudio would fail here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("torchaudio is a stub in this test; braindecode's Labram must not use it")


def _stub_attribute(name: str) -> type[_TorchaudioUnavailable]:
    if name.startswith("__"):  # __path__, __spec__, ...: the import system's questions
        raise AttributeError(name)
    return _TorchaudioUnavailable


def _torchaudio_stub() -> dict[str, types.ModuleType]:
    modules = {name: types.ModuleType(name)
               for name in ("torchaudio", "torchaudio.functional", "torchaudio.transforms")}
    for module in modules.values():
        module.__getattr__ = _stub_attribute  # PEP 562: the module's missing names
    modules["torchaudio"].functional = modules["torchaudio.functional"]
    modules["torchaudio"].transforms = modules["torchaudio.transforms"]
    return modules


@pytest.fixture(scope="module")
def braindecode_labram() -> type:
    """braindecode's real ``Labram`` class.

    braindecode imports torchaudio at import time: braindecode.modules.filter, brainmodule,
    eegsimpleconv, emg2qwerty and meta_neuromotor use it, braindecode/models/labram.py (einops,
    braindecode.modules.MLP and DropPath) does not. torchaudio is not installed here: the wheels on
    the package index (2.11.1 the newest) link torch's CUDA libraries and fail to load beside the
    CPU torch 2.13.0 (``OSError: Could not load this library: .../_torchaudio.so``), which would
    also break ``import peft`` through transformers. So the dev install adds braindecode without
    dependencies (.ci/run), and for this import only torchaudio is a stub whose every name fails
    when used; sys.modules is restored afterwards.
    """
    stubs = _torchaudio_stub()
    with pytest.MonkeyPatch.context() as patch:
        for name, module in stubs.items():
            patch.setitem(sys.modules, name, module)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # import-time notices of braindecode's dependencies
            import braindecode
            from braindecode.models import Labram as BraindecodeLabram
    assert all(sys.modules.get(name) is not module for name, module in stubs.items())
    assert braindecode.__version__ == BRAINDECODE_VERSION
    assert BraindecodeLabram.__module__ == "braindecode.models.labram"
    return BraindecodeLabram


def _perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``module`` with N(0, 0.05) added to every parameter: the initialisation's small head and layer
    scale would otherwise leave outputs near zero, where any two models agree."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return module.eval()


def _labram(config: LabramConfig, seed: int, n_outputs: int = 3) -> Labram:
    """A neurofm LaBraM on the 10-20 names, seeded and perturbed as :func:`_perturbed`."""
    torch.manual_seed(seed)
    model = Labram(n_outputs=n_outputs, ch_names=TEN_TWENTY, config=config)
    return cast("Labram", _perturbed(model, seed))


def _signal(n_times: int, seed: int) -> torch.Tensor:
    """Two windows of the 10-20 montage in 100 µV units, ``n_times`` samples at 200 Hz."""
    return torch.randn(2, len(TEN_TWENTY), n_times, generator=torch.Generator().manual_seed(seed))


def _assert_same_outputs(ours: Labram, theirs: Any, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(theirs(x, ch_names=TEN_TWENTY), ours(x), **TOLERANCE)
        tokens = ours.forward_features(x, return_all_tokens=True)
        features = theirs(x, ch_names=TEN_TWENTY, return_features=True)
        torch.testing.assert_close(features["cls_token"], tokens[:, 0], **TOLERANCE)
        torch.testing.assert_close(features["features"], tokens[:, 1:], **TOLERANCE)


@pytest.mark.parametrize(("size", "n_times"), CASES)
def test_neurofm_weights_in_braindecode_give_the_same_outputs(
        braindecode_labram: type, size: str, n_times: int) -> None:
    model = _labram(CONFIGS[size], seed=1)
    bd_model = export_to_braindecode(model, n_times=n_times)
    assert type(bd_model) is braindecode_labram and bd_model.n_times == n_times
    _assert_same_outputs(model, bd_model, _signal(n_times, seed=2))


@pytest.mark.parametrize(("size", "n_times"), CASES)
def test_braindecode_weights_in_neurofm_give_the_same_outputs(
        braindecode_labram: type, size: str, n_times: int) -> None:
    config = CONFIGS[size]
    torch.manual_seed(3)  # braindecode's own initialisation
    bd_model = _perturbed(braindecode_labram(
        n_times=n_times, n_outputs=3, n_chans=len(TEN_TWENTY), sfreq=200.0,
        embed_dim=config.embed_dim, conv_out_channels=config.conv_channels,
        num_layers=config.depth, num_heads=config.num_heads,
        mlp_ratio=config.mlp_dim / config.embed_dim, qkv_bias=config.qkv_bias,
        qk_norm=torch.nn.LayerNorm if config.qk_norm else None, init_values=config.init_values,
        use_mean_pooling=config.use_mean_pooling), seed=4)
    x = _signal(n_times, seed=5)
    num_heads = None if config.qk_norm else config.num_heads
    from_state = Labram.from_braindecode_state_dict(bd_model.state_dict(), num_heads=num_heads,
                                                    ch_names=TEN_TWENTY)
    assert from_state.config == replace(config, init_values=0.1 if config.init_values else 0.0)
    _assert_same_outputs(from_state, bd_model, x)
    imported = import_from_braindecode(bd_model)  # chs_info unset: names are passed per call
    assert imported.ch_names is None
    with torch.no_grad():
        torch.testing.assert_close(imported(x, ch_names=TEN_TWENTY), from_state(x), rtol=0, atol=0)


def test_weights_go_there_and_back_unchanged(braindecode_labram: type) -> None:
    model = _labram(LABRAM_CONFIGS["small"], seed=6, n_outputs=2)
    back = import_from_braindecode(export_to_braindecode(model, n_times=1600))
    assert back.ch_names == TEN_TWENTY and back.config == model.config
    ours, returned = model.state_dict(), back.state_dict()
    for key, value in ours.items():
        expected = value[:, :9] if key == "time_embed" else value
        got = returned[key][:, :9] if key == "time_embed" else returned[key]
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_weights_move_as_a_safetensors_file(braindecode_labram: type, tmp_path: Path) -> None:
    """The path of docs/braindecode.md for two environments: save here, load in braindecode."""
    model = _labram(LabramConfig(), seed=7, n_outputs=2)
    save_file(model.to_braindecode_state_dict(n_times=800), tmp_path / "labram-4s.safetensors")
    bd_model = braindecode_labram(n_times=800, n_outputs=2, n_chans=len(TEN_TWENTY), sfreq=200.0,
                                  use_mean_pooling=True)
    bd_model.load_state_dict(load_file(tmp_path / "labram-4s.safetensors"), strict=True)
    x = _signal(800, seed=8)
    with torch.no_grad():
        torch.testing.assert_close(bd_model.eval()(x, ch_names=TEN_TWENTY), model(x), **TOLERANCE)
    save_file(bd_model.state_dict(), tmp_path / "from-braindecode.safetensors")
    back = Labram.from_braindecode_state_dict(load_file(tmp_path / "from-braindecode.safetensors"),
                                              ch_names=TEN_TWENTY)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), **TOLERANCE)


def test_a_braindecode_model_past_16_seconds_is_refused(braindecode_labram: type) -> None:
    torch.manual_seed(0)
    bd_model = braindecode_labram(n_times=4000, n_outputs=2, n_chans=2, sfreq=200.0)
    with pytest.raises(CheckpointError, match="20 patches"):
        import_from_braindecode(bd_model)


def test_ci_installs_the_tested_braindecode_release() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f'pip install --no-deps "braindecode=={BRAINDECODE_VERSION}"' in ci
    docs = (REPO_ROOT / "docs" / "braindecode.md").read_text(encoding="utf-8")
    assert f"braindecode {BRAINDECODE_VERSION}" in docs


def test_default_labram_config_matches_braindecode_defaults(braindecode_labram: type) -> None:
    """braindecode's defaults are LaBraM-Base: the same network as neurofm's ``labram_base``."""
    torch.manual_seed(0)
    bd_model = braindecode_labram(n_times=800, n_outputs=2, n_chans=128, sfreq=200.0,
                                  use_mean_pooling=True)
    assert braindecode_config(bd_model.state_dict()) == LabramConfig()
