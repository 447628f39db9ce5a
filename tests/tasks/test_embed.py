"""Embeddings: per-window features of real eegmat recordings, in order, rows described."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurofm.cli import main
from neurofm.data.batching import collate_windows
from neurofm.data.prepare import prepare_corpus
from neurofm.data.preprocess import PreprocessConfig
from neurofm.data.windows import WindowDataset
from neurofm.engine.checkpointing import save_checkpoint
from neurofm.models.registry import create_model
from neurofm.models.saved import save_pretrained
from neurofm.tasks.backbones import TaskNetwork
from neurofm.tasks.embed import embed_corpus

_ARITHMETIC = "eegmat/Subject00_2.edf"  # 60 s of 19-channel EEG


def test_embed_command_writes_npy_json_and_parquet_rows_for_a_real_eegmat_file(mirror_dir,
                                                                               tmp_path):
    save_pretrained(create_model("labram_small"), tmp_path / "ckpt", model_name="labram_small")
    out = tmp_path / "features.parquet"
    code = main(["embed", "--checkpoint", str(tmp_path / "ckpt"), str(mirror_dir / _ARITHMETIC),
                 "--out", str(out), "--window-seconds", "4", "--quiet"])
    assert code == 0
    features = np.load(tmp_path / "features.npy")
    assert features.shape == (15, 100) and features.dtype == np.float32  # 60 s / 4 s, D = 100
    assert np.isfinite(features).all() and features.std(axis=0).max() > 0
    sidecar = json.loads((tmp_path / "features.json").read_text())
    assert sidecar["rows"]["window"] == list(range(15))
    assert sidecar["rows"]["start_seconds"] == [4.0 * k for k in range(15)]
    assert sidecar["window_seconds"] == 4.0 and sidecar["family"] == "labram"
    pyarrow = pytest.importorskip("pyarrow.parquet")
    table = pyarrow.read_table(out).to_pydict()
    assert table["start_seconds"] == sidecar["rows"]["start_seconds"]
    np.testing.assert_array_equal(np.asarray(table["f099"], dtype=np.float32), features[:, 99])


def test_a_neurobert_training_checkpoint_embeds_a_corpus_in_window_order(mirror_dir, tmp_path):
    report = prepare_corpus([str(mirror_dir / _ARITHMETIC)], tmp_path / "corpora",
                            PreprocessConfig.labram(), progress=False)
    encoder = create_model("neurobert_small")
    # What `neurofm pretrain --objective fip` leaves: the objective's state under "model.".
    save_checkpoint({"model": {f"model.{k}": v for k, v in encoder.state_dict().items()},
                     "config": {"model": "neurobert_small", "model_overrides": {}}},
                    tmp_path / "best.pt")
    embeddings = embed_corpus(str(tmp_path / "best.pt"), report.corpus_dir, window_seconds=10.0,
                              stride_seconds=5.0, batch_size=4, device="cpu")
    assert embeddings.features.shape == (11, 32)  # (60 - 10) / 5 + 1 windows, D = 32
    assert embeddings.info["family"] == "neurobert"
    windows = WindowDataset(report.corpus_dir, 10.0, 5.0)
    with torch.no_grad():
        direct = TaskNetwork(encoder.eval()).features(collate_windows([windows[7]]))
    np.testing.assert_allclose(embeddings.features[7], direct[0].numpy(), rtol=0, atol=1e-5)
    assert embeddings.start_seconds[7] == 35.0


def test_embed_needs_exactly_one_of_a_recording_and_a_corpus(tmp_path, capsys):
    code = main(["embed", "--checkpoint", "scratch", "--out", str(tmp_path / "f.npy")])
    assert code == 2
    assert "exactly one" in capsys.readouterr().err
