"""Hub layout: export, push to a local fake Hub, load by id offline; bad Hub folders refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import neurofm
from neurofm import hub
from neurofm.cli import main
from neurofm.errors import CheckpointError, ConfigError
from neurofm.models.saved import save_pretrained

_RECORD = {"format": "neurofm-pretraining-data", "format_version": 1,
           "trained_by": "neurofm pretrain --objective mem", "corpus": "corpus",
           "recipe": {"config_hash": "abc123", "config": {"sfreq": 200.0}},
           "recordings": [{"id": "eegmat/Subject00_1", "dataset": "eegmat", "subject": "Subject00",
                           "part": "train", "array_sha256": "0" * 64, "source_sha256": []}],
           "whole_datasets": {}, "inherited": [], "note": ""}


class LocalHub:
    """``HfApi``'s two upload calls, writing what a download would leave in huggingface_hub's
    cache (``models--org--name/snapshots/<commit>/``, ``refs/main``)."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.created: list[tuple[str, bool]] = []

    def create_repo(self, repo_id: str, repo_type: str, private: bool, exist_ok: bool) -> None:
        self.created.append((repo_id, private))

    def upload_folder(self, repo_id: str, folder_path: str, repo_type: str,
                      commit_message: str) -> str:
        repo = self.cache / f"models--{repo_id.replace('/', '--')}"
        commit = f"{len(self.created):040d}"
        shutil.copytree(folder_path, repo / "snapshots" / commit)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        return f"https://huggingface.co/{repo_id}/commit/{commit}"


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def model_dir(tmp_path) -> Path:
    model = neurofm.create_model("labram_small", n_outputs=2)
    return save_pretrained(model, tmp_path / "model", model_name="labram_small",
                           extra={"trained_by": "neurofm finetune", "step": 40,
                                  "pretraining_data": _RECORD})


def _outputs(model: torch.nn.Module) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    signal = torch.randn(2, 3, 400, generator=generator)
    with torch.no_grad():
        return model(signal, ch_names=["FP1", "CZ", "O2"])


def test_export_writes_config_weights_and_a_model_card(model_dir, tmp_path):
    out = hub.export_model(model_dir, tmp_path / "export", results={"eegmat cv AUROC": "0.61"})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json",
                                                     "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["extra"]["preprocessing"] == {"recipe": {"sfreq": 200.0}, "hash": "abc123"}
    assert config["extra"]["pretraining_data"]["recordings"][0]["subject"] == "Subject00"
    card = (out / "README.md").read_text()
    for text in ("library_name: neurofm", "100uV", "200 Hz", "abc123", "1 recordings of 1 subjects",
                 "eegmat: Open Data Commons", "| eegmat cv AUROC | 0.61 |", "Not for clinical"):
        assert text in card, text
    torch.testing.assert_close(_outputs(neurofm.from_pretrained(out)),
                               _outputs(neurofm.from_pretrained(model_dir)), rtol=0, atol=0)


def test_pushed_model_loads_by_id_offline_with_identical_outputs(model_dir, offline_cache):
    api = LocalHub(offline_cache)
    url = hub.push_to_hub(model_dir, "neurofm-test/labram-small", private=True, api=api)
    assert api.created == [("neurofm-test/labram-small", True)] and "/commit/" in url
    loaded = neurofm.from_pretrained("neurofm-test/labram-small")
    assert loaded.pretrained_info.source == "neurofm-test/labram-small"
    assert loaded.pretrained_info.preprocessing["config_hash"] == "abc123"
    torch.testing.assert_close(_outputs(loaded), _outputs(neurofm.from_pretrained(model_dir)),
                               rtol=0, atol=0)


def test_an_uncached_id_offline_is_one_clear_error(offline_cache):
    with pytest.raises(CheckpointError, match=r"not in the huggingface_hub cache \(HF_HUB_OFFLINE=1\)"):
        neurofm.from_pretrained("neurofm-test/never-pushed")


def _snapshot(cache: Path, repo: str, files: dict[str, bytes]) -> None:
    folder = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / ("1" * 40)
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    (folder.parents[1] / "refs").mkdir()
    (folder.parents[1] / "refs" / "main").write_text("1" * 40)


def test_a_hub_folder_with_only_pickled_weights_is_refused_unread(model_dir, offline_cache,
                                                                   tmp_path):
    marker = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            return (Path.write_text, (marker, "pwned"))

    pickled = tmp_path / "pytorch_model.bin"
    torch.save({"payload": RunsCode()}, pickled)
    _snapshot(offline_cache, "org/pickled", {"config.json": (model_dir / "config.json").read_bytes(),
                                             "README.md": b"# card", "pytorch_model.bin":
                                             pickled.read_bytes()})
    with pytest.raises(CheckpointError, match=r"lacks model\.safetensors.*never pickled weights"):
        neurofm.from_pretrained("org/pickled")
    assert not marker.exists()


def test_a_card_less_hub_folder_is_refused(model_dir, offline_cache):
    _snapshot(offline_cache, "org/no-card", {
        "config.json": (model_dir / "config.json").read_bytes(),
        "model.safetensors": (model_dir / "model.safetensors").read_bytes()})
    with pytest.raises(CheckpointError, match=r"lacks README\.md"):
        neurofm.from_pretrained("org/no-card")


def test_a_hub_folder_with_mismatched_shapes_is_refused(offline_cache, tmp_path):
    small = save_pretrained(neurofm.create_model("labram_small"), tmp_path / "a")
    base = save_pretrained(neurofm.create_model("labram_base"), tmp_path / "b")
    config = json.loads((small / "config.json").read_text())
    del config["weights_sha256"]  # so that the shapes, not the checksum, are what disagree
    _snapshot(offline_cache, "org/mismatch", {"config.json": json.dumps(config).encode(),
                                              "model.safetensors": (base / "model.safetensors")
                                              .read_bytes(), "README.md": b"# card"})
    with pytest.raises(CheckpointError, match=r"does not match Labram: .*shape mismatches"):
        neurofm.from_pretrained("org/mismatch")


def test_a_failed_export_leaves_nothing_and_an_existing_folder_is_refused(model_dir, tmp_path,
                                                                          monkeypatch):
    def broken_card(config, results=None):
        raise RuntimeError("disk full")

    monkeypatch.setattr(hub, "model_card", broken_card)
    with pytest.raises(RuntimeError):
        hub.export_model(model_dir, tmp_path / "exports" / "x")
    assert list((tmp_path / "exports").iterdir()) == []
    monkeypatch.undo()
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="exists"):
        hub.export_model(model_dir, tmp_path / "taken")


def test_export_command_prints_one_line(model_dir, tmp_path, capsys):
    assert main(["export", str(model_dir), "--out", str(tmp_path / "e"),
                 "--results", '{"AUROC": 0.6}']) == 0
    assert "README.md, config.json, model.safetensors" in capsys.readouterr().out
    assert main(["export", str(model_dir), "--out", str(tmp_path / "f"), "--results", "[1]"]) == 2
    assert main(["push", str(model_dir), "not-an-id"]) == 2
