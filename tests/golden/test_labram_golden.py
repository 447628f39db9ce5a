"""Fidelity to the official LaBraM code: its weights files load strictly and its outputs reproduce.

Every path, shape and tolerance comes from ``shared/golden/labram/manifest.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurofm.channels import LABRAM_VOCABULARY
from neurofm.models.labram_official import (
    detect_layout,
    is_dropped_official_key,
    load_labram_checkpoint,
    read_official_state_dict,
)
from neurofm.models.vqnsp import fourier_targets
from neurofm.objectives.mem import MaskedEEGModelling


@pytest.fixture(scope="module")
def manifest(golden_dir: Path) -> dict:
    return json.loads((golden_dir / "manifest.json").read_text())


def _case(golden_dir: Path, manifest: dict, name: str) -> tuple[dict, dict[str, np.ndarray]]:
    case = manifest["cases"][name]
    arrays = {key: np.load(golden_dir / entry["file"]) for key, entry in case["files"].items()}
    return case, arrays


def _channel_index(arrays: dict[str, np.ndarray]) -> torch.Tensor:
    # input_chans = [0] + [vocabulary index + 1 ...]; neurofm takes the vocabulary indices.
    chans = torch.from_numpy(arrays["input_chans"])
    assert int(chans[0]) == 0
    batch = arrays["input"].shape[0]
    return (chans[1:] - 1).unsqueeze(0).expand(batch, -1)


def _close(actual: torch.Tensor, expected: np.ndarray, tolerance: float) -> None:
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=0, atol=tolerance)


def test_vocabulary_matches_the_official_order(manifest: dict) -> None:
    assert list(LABRAM_VOCABULARY) == manifest["channel_vocabulary"]


@pytest.mark.parametrize("weights_name", ["labram-base.pth", "vqnsp.pth",
                                          "labram-base-finetuned-4class.pth"])
def test_every_weights_file_loads_strictly(golden_dir: Path, manifest: dict, weights_name: str) -> None:
    entry = manifest["weights"][weights_name]
    path = golden_dir / entry["path"]
    model = load_labram_checkpoint(path)
    state = read_official_state_dict(path)
    layout = detect_layout(state)
    dropped = sum(v.numel() for k, v in state.items() if is_dropped_official_key(k, layout))
    # Every value of the file is either in the model or one of the documented dropped keys.
    assert sum(v.numel() for v in state.values()) == entry["parameters"]
    assert sum(t.numel() for t in model.state_dict().values()) + dropped == entry["parameters"]


def test_finetune_backbone_is_built_from_the_mem_checkpoint(golden_dir: Path, manifest: dict) -> None:
    backbone = load_labram_checkpoint(golden_dir / manifest["weights"]["labram-base.pth"]["path"],
                                      target="backbone", n_outputs=4)
    finetuned = load_labram_checkpoint(
        golden_dir / manifest["weights"]["labram-base-finetuned-4class.pth"]["path"])
    shared = [k for k in finetuned.state_dict() if not k.startswith(("fc_norm.", "head."))]
    for key in shared:
        torch.testing.assert_close(backbone.state_dict()[key], finetuned.state_dict()[key], rtol=0, atol=0)


@pytest.fixture(scope="module")
def finetuned_model(golden_dir: Path, manifest: dict):
    return load_labram_checkpoint(golden_dir / manifest["weights"]["labram-base-finetuned-4class.pth"]["path"])


@pytest.mark.parametrize("case_name", ["finetune_base_19ch_10s", "finetune_base_23ch_4s",
                                       "finetune_base_62ch_2s"])
def test_finetune_case_reproduces_official_outputs(golden_dir: Path, manifest: dict, finetuned_model,
                                                    case_name: str) -> None:
    case, arrays = _case(golden_dir, manifest, case_name)
    tolerance = manifest["tolerance"]["float_outputs_abs"]
    x = torch.from_numpy(arrays["input"])
    with torch.no_grad():
        features = finetuned_model.forward_features(x, channel_index=_channel_index(arrays))
        logits = finetuned_model(x, ch_names=case["channels"])
        tokens = finetuned_model.forward_features(x, ch_names=case["channels"], return_all_tokens=True)
    _close(features, arrays["features"], tolerance)
    _close(logits, arrays["logits"], tolerance)
    _close(tokens, arrays["all_tokens_fc_norm"], tolerance)


@pytest.fixture(scope="module")
def tokenizer(golden_dir: Path, manifest: dict):
    return load_labram_checkpoint(golden_dir / manifest["weights"]["vqnsp.pth"]["path"])


def test_vqnsp_case_reproduces_official_outputs(golden_dir: Path, manifest: dict, tokenizer) -> None:
    _, arrays = _case(golden_dir, manifest, "vqnsp_19ch_4s")
    tolerance = manifest["tolerance"]["float_outputs_abs"]
    x = torch.from_numpy(arrays["input"])
    with torch.no_grad():
        out = tokenizer(x, _channel_index(arrays))
        amplitude, phase = fourier_targets(x)
    np.testing.assert_array_equal(out.token_ids.numpy(), arrays["token_ids"])
    _close(out.features, arrays["encoder_patch_features"], tolerance)
    _close(out.projected, arrays["pre_quant_embeddings"], tolerance)
    _close(out.quantized, arrays["quantized"], tolerance)
    _close(out.amplitude, arrays["rec_amplitude"], tolerance)
    _close(out.phase, arrays["rec_phase"], tolerance)
    _close(amplitude, arrays["target_amplitude"], tolerance)
    _close(phase, arrays["target_phase"], tolerance)
    rec_amplitude = F.mse_loss(out.amplitude, amplitude)
    rec_phase = F.mse_loss(out.phase, phase)
    losses = torch.stack([out.quant_loss, rec_amplitude, rec_phase,
                          out.quant_loss + rec_amplitude + rec_phase])
    _close(losses, arrays["losses"], manifest["tolerance"]["loss_abs"])


@pytest.fixture(scope="module")
def mem_model(golden_dir: Path, manifest: dict):
    return load_labram_checkpoint(golden_dir / manifest["weights"]["labram-base.pth"]["path"])


def test_mem_case_reproduces_official_outputs(golden_dir: Path, manifest: dict, mem_model,
                                              tokenizer) -> None:
    _, arrays = _case(golden_dir, manifest, "mem_base_19ch_4s")
    tolerance = manifest["tolerance"]["float_outputs_abs"]
    x = torch.from_numpy(arrays["input"])
    index = _channel_index(arrays)
    mask = torch.from_numpy(arrays["mask"])
    with torch.no_grad():
        targets = tokenizer.get_codebook_indices(x, index)
        hidden = mem_model(x, index, mask)
        hidden_sym = mem_model(x, index, ~mask)
        logits = mem_model.lm_head(hidden[mask])
        logits_sym = mem_model.lm_head(hidden_sym[~mask])
    np.testing.assert_array_equal(targets.numpy(), arrays["target_tokens"])
    _close(logits, arrays["logits_masked"], tolerance)
    _close(logits_sym, arrays["logits_masked_sym"], tolerance)
    np.testing.assert_array_equal(logits.argmax(1).numpy(), arrays["argmax_masked"])
    np.testing.assert_array_equal(logits_sym.argmax(1).numpy(), arrays["argmax_masked_sym"])
    loss = F.cross_entropy(logits, targets[mask]) + F.cross_entropy(logits_sym, targets[~mask])
    _close(loss.reshape(1), arrays["loss"], manifest["tolerance"]["loss_abs"])


@pytest.mark.parametrize("batched", [True, False])
def test_mem_objective_reproduces_official_loss(golden_dir: Path, manifest: dict, mem_model, tokenizer,
                                                batched: bool) -> None:
    _, arrays = _case(golden_dir, manifest, "mem_base_19ch_4s")
    x = torch.from_numpy(arrays["input"])
    batch = {"signal": x.reshape(x.shape[0], x.shape[1], -1), "channel_index": _channel_index(arrays),
             "channel_mask": torch.ones(x.shape[:2], dtype=torch.bool),
             "token_mask": torch.from_numpy(arrays["mask"])}
    objective = MaskedEEGModelling(mem_model, tokenizer, batched_symmetric=batched).eval()
    with torch.no_grad():
        out = objective(batch)
    _close(out.loss.reshape(1), arrays["loss"], manifest["tolerance"]["loss_abs"])


def test_labram_from_pretrained_builds_a_finetuning_backbone(golden_dir: Path, manifest: dict) -> None:
    from neurofm.models.labram import Labram

    path = golden_dir / manifest["weights"]["labram-base.pth"]["path"]
    model = Labram.from_pretrained(path, n_outputs=2, ch_names=["FP1", "CZ"])
    assert model.head.out_features == 2 and model.ch_names == ["FP1", "CZ"]
    assert model(torch.randn(1, 2, 400)).shape == (1, 2)
