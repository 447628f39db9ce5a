"""Malformed model folders are refused by the one loader, naming the file, before any large
allocation (issue 20 items 3, 5 and 9)."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import pytest
import torch

import neurofm
from neurofm.errors import CheckpointError
from neurofm.loading import ADAPTER_SIDECAR
from neurofm.models.saved import save_pretrained

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))


@pytest.fixture
def model_dir(tmp_path) -> Path:
    return save_pretrained(neurofm.create_model("labram_small"), tmp_path / "model",
                           model_name="labram_small")


def _edit_config(model_dir: Path, edit) -> Path:
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(("content", "problem"), [
    ("[" * 100_000 + "]" * 100_000, "nests JSON too deeply"),
    ('["labram"]', "holds a JSON list, not an object"),
    (b"\xff\xfe{}", "is not UTF-8 text"),
    ('{"format": "neurofm-checkpoint"', "is not valid JSON"),
])
def test_a_damaged_config_json_is_one_clear_error(model_dir, content, problem):
    path = model_dir / "config.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CheckpointError, match=problem) as error:
        neurofm.from_pretrained(model_dir)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda c: c["architecture"].update(warp_factor=9), "cannot be built"),
    (lambda c: c["architecture"].update(depth="two"), "cannot be built"),
    (lambda c: c.pop("input_unit"), "field 'input_unit' is missing"),
    (lambda c: c.update(architecture=[1, 2]), "field 'architecture' is missing or has the wrong"),
    (lambda c: c.update(family="transformer-xl"), "unknown model family"),
])
def test_a_config_with_unknown_fields_or_wrong_types_is_refused(model_dir, edit, problem):
    path = _edit_config(model_dir, edit)
    with pytest.raises(CheckpointError, match=problem) as error:
        neurofm.from_pretrained(model_dir)
    assert str(path) in str(error.value)


def test_absurd_sizes_are_refused_before_any_allocation(model_dir):
    # 8192 x 32768 MLPs in 2 blocks would take about 4.5 GB; the safetensors header says otherwise.
    _edit_config(model_dir, lambda c: c["architecture"].update(embed_dim=8192, mlp_dim=32768,
                                                              num_heads=16, conv_channels=8))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the process's high water
    with pytest.raises(CheckpointError, match=r"does not match Labram: .*shape mismatches"):
        neurofm.from_pretrained(model_dir)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 1 << 20  # far below the 4.5 GB the architecture would take


def _lora_folder(tmp_path: Path, model_dir: Path) -> Path:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / ADAPTER_SIDECAR).write_text(json.dumps(
        {"init": str(model_dir), "model": "labram_small", "n_outputs": 1}))
    return adapter


def test_a_lora_folder_with_a_pickled_adapter_is_refused(model_dir, tmp_path):
    adapter = _lora_folder(tmp_path, model_dir)
    torch.save({"lora_A": torch.zeros(1)}, adapter / "adapter_model.bin")
    with pytest.raises(CheckpointError, match="safetensors only"):
        neurofm.from_pretrained(adapter)


def test_a_lora_sidecar_that_is_not_an_object_is_refused(model_dir, tmp_path):
    adapter = _lora_folder(tmp_path, model_dir)
    (adapter / ADAPTER_SIDECAR).write_text('["init"]')
    with pytest.raises(CheckpointError, match="does not describe a neurofm LoRA adapter"):
        neurofm.from_pretrained(adapter)


def test_model_overrides_naming_absurd_sizes_are_refused_before_allocation(tmp_path, capsys):
    from toy_training import write_tiny_eeg_corpus

    from neurofm.cli import main

    corpus = write_tiny_eeg_corpus(tmp_path / "corpus")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code = main(["pretrain", "--objective", "fip", "--model", "neurobert_small", "--quiet",
                 "--corpus", str(corpus), "--out", str(tmp_path / "run"), "run.max_steps=1",
                 "model_overrides.embed_dim=65536", "model_overrides.mlp_dim=262144",
                 "model_overrides.num_heads=1"])
    assert code == 2 and "parameters, more than the limit" in capsys.readouterr().err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1 << 20  # KiB


def test_an_unknown_model_is_refused_before_the_corpus_is_read(tmp_path, capsys):
    from neurofm.cli import main

    code = main(["pretrain", "--objective", "fip", "--model", "nope", "--quiet", "--corpus",
                 str(tmp_path / "no-corpus"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown model 'nope'" in err and "no-corpus" not in err
    assert not (tmp_path / "run" / "split.json").exists()


def test_a_lora_sidecar_whose_base_path_leads_out_of_the_folder_is_refused(model_dir, tmp_path):
    adapter = _lora_folder(tmp_path, model_dir)
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (adapter / ADAPTER_SIDECAR).write_text(json.dumps(
        {"init": "../../../etc/model", "model": "labram_small", "n_outputs": 1}))
    with pytest.raises(CheckpointError, match="relative path leading out of the adapter folder"):
        neurofm.from_pretrained(adapter)
