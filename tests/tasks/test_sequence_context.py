"""Sequence context for fine-tuned models (``context.epochs``): neighbours of the same recording,
one prediction per window, both families through the Backbone interface, save and reload, and a
fine-tune on the real DREAMS excerpts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurofm.cli import main
from neurofm.errors import CheckpointError, ConfigError
from neurofm.hub import export_model
from neurofm.models.registry import create_model
from neurofm.models.saved import save_pretrained
from neurofm.objectives.classification import SupervisedObjective
from neurofm.tasks.backbones import (
    CONTEXT_WEIGHTS,
    build_task_network,
    layer_decay_groups,
    load_task_network,
    save_adapters,
    save_model,
)
from neurofm.tasks.data import TaskWindows, load_task_windows
from neurofm.tasks.definitions import get_task
from neurofm.tasks.evaluate import EvaluationResult
from neurofm.tasks.finetune_config import load_finetune_config
from neurofm.tasks.fold_training import TaskWindowDataset, predict

_SLEEP = "dreams_sleep_staging"
# A tiny Neuro-BERT for 2-s windows (the sleep task's 30-s windows in the last test).
_TINY_NEUROBERT = ["model_overrides.depth=1", "model_overrides.embed_dim=32",
                   "model_overrides.num_heads=2", "model_overrides.mlp_dim=64",
                   "context.width=16", "context.heads=2"]
_QUIET = ["run.progress=false", "run.tensorboard=false"]


def _windows(seconds: float = 2.0, channels: tuple[str, ...] = ("CZ",)) -> TaskWindows:
    """Two recordings, their windows interleaved and out of order; recording b lacks the window
    at 3 strides (a dropped epoch). Made-up noise, 5 classes."""
    onsets = {"a": [0, 1, 2, 3, 4], "b": [0, 1, 2, 4, 5, 6]}
    rows = [(rec, k) for rec in onsets for k in onsets[rec]]
    order = np.random.default_rng(1).permutation(len(rows))
    rows = [rows[i] for i in order]
    rng = np.random.default_rng(0)
    n_times = int(seconds * 200)
    signal = rng.normal(0, 0.3, (len(rows), len(channels), n_times)).astype(np.float32)
    recording = np.array([rec for rec, _ in rows])
    return TaskWindows(signal, np.arange(len(rows)) % 5, np.char.add("S", recording), recording,
                       np.array([k * seconds for _, k in rows], dtype=float), 200.0, "100uV",
                       channels)


def _config(*extra: str, model: str = "neurobert_small", **flags):
    return load_finetune_config(overrides=[*_QUIET, *extra],
                                flags={"task_name": _SLEEP, "model": model, **flags})


def test_neighbours_come_from_the_same_recording_one_stride_apart_and_gaps_are_masked():
    windows = _windows()
    rows = windows.context_rows(5, 2.0)

    assert rows.shape == (len(windows), 5)
    assert np.array_equal(rows[:, 2], np.arange(len(windows)))
    for i, neighbours in enumerate(rows):
        for column, j in enumerate(neighbours):
            offset = column - 2
            wanted = windows.onset[i] + offset * 2.0
            exists = np.any((windows.recording == windows.recording[i])
                            & (windows.onset == wanted))
            assert (j >= 0) == exists, (i, offset)
            if j >= 0:
                assert windows.recording[j] == windows.recording[i]
                assert windows.onset[j] == wanted
    # Recording b's window at 2 strides finds none at 3 strides (dropped), but the one at 4.
    at = {(r, o): i for i, (r, o) in enumerate(zip(windows.recording, windows.onset))}
    assert list(rows[at[("b", 4.0)]]) == [at[("b", 0.0)], at[("b", 2.0)], at[("b", 4.0)], -1,
                                          at[("b", 8.0)]]
    assert list(rows[at[("a", 0.0)]][:2]) == [-1, -1]

    dataset = TaskWindowDataset(windows, rows)
    batch = dataset.collate([dataset[i] for i in range(len(windows))])
    assert batch["signal"].shape == (len(windows), 5, 1, 400)
    assert torch.equal(batch["context_mask"], torch.from_numpy(rows >= 0))
    for i, neighbours in enumerate(rows):
        for column, j in enumerate(neighbours):
            expected = windows.signal[j] if j >= 0 else np.zeros_like(windows.signal[0])
            assert np.array_equal(batch["signal"][i, column].numpy(), expected)
    assert batch["label"].tolist() == windows.label.tolist()
    assert batch["recording_id"] == windows.recording.tolist()


def test_context_sizes_and_strides_that_do_not_fit_are_refused():
    windows = _windows()
    for epochs in (0, 2, 4):
        with pytest.raises(ConfigError, match="odd number"):
            windows.context_rows(epochs, 2.0)
    with pytest.raises(ConfigError, match="whole number of samples"):
        windows.context_rows(3, 0.0001)
    for value in ("0", "2", "4", "-3"):
        with pytest.raises(ConfigError, match=r"context\.epochs must be an odd number"):
            _config(f"context.epochs={value}")
    with pytest.raises(ConfigError, match="must be an integer"):
        _config("context.epochs=2.5")
    with pytest.raises(ConfigError, match="a width divisible by heads"):
        _config("context.epochs=3", "context.width=10", "context.heads=4")
    # The default width is the backbone's (32 here), which the heads must divide.
    with pytest.raises(ConfigError, match=r"context\.heads=3 does not divide the context width 32"):
        build_task_network(_config("context.epochs=3", "context.heads=3", *_TINY_NEUROBERT[:4]),
                           get_task(_SLEEP), 200.0, 400, "100uV", ("CZ",))
    with pytest.raises(ConfigError, match="--mode ridge"):
        _config("context.epochs=3", mode="ridge", init="some/model")
    with pytest.raises(ConfigError, match="one window per event"):
        _config("context.epochs=3", task_name="bi2012_p300", model="labram_small")
    assert _config().context.epochs == 1  # off by default


@pytest.mark.parametrize(("model", "channels", "extra"), [
    ("neurobert_small", ("CZ",), _TINY_NEUROBERT),
    ("labram_small", ("C3", "C4", "CZ"), []),
])
def test_one_prediction_per_window_from_its_neighbours_for_either_family(model, channels, extra):
    windows = _windows(channels=channels)
    config = _config("context.epochs=3", *extra, model=model)
    network, _ = build_task_network(config, get_task(_SLEEP), 200.0, 400, "100uV", channels)
    plain, _ = build_task_network(_config(*extra, model=model), get_task(_SLEEP), 200.0, 400,
                                  "100uV", channels)
    plain.load_state_dict({k: v for k, v in network.state_dict().items()
                           if not k.startswith("context.")})
    dataset = TaskWindowDataset(windows, windows.context_rows(3, 2.0))
    batch = dataset.collate([dataset[i] for i in range(len(windows))])
    single = TaskWindowDataset(windows)
    alone = single.collate([single[i] for i in range(len(windows))])
    network.eval()
    plain.eval()
    with torch.no_grad():
        # The back projection starts at zero: an untrained context changes nothing.
        torch.testing.assert_close(network(batch), plain(alone), rtol=0, atol=1e-5)
        network.context.out.weight.normal_(0.0, 1.0)
        outputs = network(batch)
        assert outputs.shape == (len(windows), 5)
        # A window's prediction moves with its neighbour, never with another recording's window.
        a0, a1 = (int(np.flatnonzero((windows.recording == "a") & (windows.onset == t))[0])
                  for t in (0.0, 2.0))
        windows.signal[a0] += np.random.default_rng(2).normal(0, 0.3, windows.signal[a0].shape)
        moved = dataset.collate([dataset[i] for i in range(len(windows))])
        changed = (network(moved) - outputs).abs().amax(dim=1) > 1e-6
        assert set(np.flatnonzero(changed.numpy())) == {a0, a1}
        with pytest.raises(ConfigError, match="context of 3 windows"):
            network(alone)
    # The context trains at the head's rate under layer-wise lr decay, not the input side's.
    layer_of, depth = layer_decay_groups(network)
    assert {layer_of(f"network.{n}") for n, _ in network.named_parameters()
            if n.startswith("context.")} == {depth + 1}


def test_saved_context_models_and_adapters_reload_to_the_same_predictions(tmp_path):
    windows = _windows(channels=("C3", "C4", "CZ"))
    dataset = TaskWindowDataset(windows, windows.context_rows(3, 2.0))
    batch = dataset.collate([dataset[i] for i in range(len(windows))])
    save_pretrained(create_model("labram_small"), tmp_path / "base", model_name="labram_small")
    for mode, init in (("full", "scratch"), ("linear", "scratch"), ("lora", str(tmp_path / "base"))):
        network, _ = build_task_network(_config("context.epochs=3", model="labram_small",
                                                mode=mode, init=init),
                                        get_task(_SLEEP), 200.0, 400, "100uV", windows.channels)
        assert all(p.requires_grad for p in network.context.parameters()), mode
        with torch.no_grad():
            network.context.out.weight.normal_(0.0, 1.0)
        description = {"init": init, "model": "labram_small", "n_outputs": 5}
        folder = tmp_path / mode
        if mode == "lora":
            save_adapters(network, folder, description)
            record = json.loads((folder / "neurofm_adapter.json").read_text())["context"]
        else:
            save_model(network, folder, "labram_small", description)
            record = json.loads((folder / "config.json").read_text())["extra"]["context"]
        assert record["epochs"] == 3 and record["width"] == 0  # the backbone's width, 100
        assert record["weights"] == CONTEXT_WEIGHTS
        reloaded = load_task_network(folder)
        assert reloaded.context_epochs == 3 and not reloaded.training
        network.eval()
        exported = load_task_network(export_model(folder, tmp_path / f"export_{mode}"))
        assert (tmp_path / f"export_{mode}" / CONTEXT_WEIGHTS).is_file()
        with torch.no_grad():
            torch.testing.assert_close(reloaded(batch), network(batch), rtol=0, atol=1e-6)
            # A Hub export (LoRA merged into the base) keeps the context and its predictions.
            torch.testing.assert_close(exported(batch), network(batch), rtol=0, atol=1e-5)
    # Without a context, a folder records epochs 1 and reloads without one.
    plain, _ = build_task_network(_config(model="labram_small"), get_task(_SLEEP), 200.0, 400,
                                  "100uV", windows.channels)
    save_model(plain, tmp_path / "plain", "labram_small", {"task": _SLEEP})
    assert load_task_network(tmp_path / "plain").context is None
    assert not (tmp_path / "plain" / CONTEXT_WEIGHTS).exists()
    # Replaced context weights are refused.
    (tmp_path / "full" / CONTEXT_WEIGHTS).write_bytes(
        (tmp_path / "linear" / CONTEXT_WEIGHTS).read_bytes())
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        load_task_network(tmp_path / "full")


def test_finetune_with_context_on_real_dreams_reloads_to_its_predictions(mirror_dir, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("NEUROFM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["finetune", "--task", _SLEEP, "--init", "scratch", "--model", "neurobert_small",
                 "--corpus", str(tmp_path / "corpora"), "--mirror", str(mirror_dir),
                 "--epochs", "1", "--max-folds", "1", "--bootstrap", "20", "--quiet",
                 "--no-baseline", "--out", str(out), "context.epochs=5", "data.batch_size=16",
                 *_TINY_NEUROBERT]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["config"]["context"]["epochs"] == 5
    assert summary["system"] == "neurobert_small scratch full context 5"
    result = EvaluationResult.load(out / "seed0" / "result.json")
    test_excerpts = set(summary["folds"][0]["groups"]["test"])

    task = get_task(_SLEEP)
    corpus = next((tmp_path / "corpora").iterdir())
    windows = load_task_windows(task, corpus)
    test = np.flatnonzero(np.isin(windows.subject, sorted(test_excerpts)))
    # One prediction per 30-s epoch of the test excerpt, in window order.
    assert len(result.predictions.y_true) == test.size > 0
    assert np.array_equal(result.predictions.onset, windows.onset[test])

    network = load_task_network(out / "seed0" / "fold0" / "model")
    assert network.context_epochs == 5
    dataset = TaskWindowDataset(windows, windows.context_rows(5, 30.0))
    objective = SupervisedObjective(network, "multiclass", task.n_classes)
    reloaded = predict(objective, torch.utils.data.Subset(dataset, test.tolist()), 16,
                       torch.device("cpu"), collate=dataset.collate)
    np.testing.assert_allclose(reloaded, result.predictions.y_prob, rtol=0, atol=2e-6)

