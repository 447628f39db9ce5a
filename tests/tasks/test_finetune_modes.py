"""Fine-tuning modes beyond full and linear: peft's LoRA, DoRA, AdaLoRA, IA3 and OFT adapters and
the closed-form ridge probe; what each trains, saves and reloads, and what each fold costs."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from test_finetune import _QUIET
from test_finetune import _windows as _two_class_subjects_windows

import neurofm
from neurofm.cli import main
from neurofm.data.batching import collate_windows
from neurofm.data.splits import Split
from neurofm.engine.trainer import Trainer
from neurofm.errors import CheckpointError, ConfigError
from neurofm.models.registry import create_model
from neurofm.models.saved import save_pretrained
from neurofm.tasks.backbones import (
    TaskNetwork,
    attach_to_trainer,
    build_task_network,
    layer_decay_groups,
    parameter_counts,
    save_adapters,
)
from neurofm.tasks.data import TaskWindows
from neurofm.tasks.definitions import get_task
from neurofm.tasks.finetune import run_finetune
from neurofm.tasks.finetune_config import AdaLoraSettings, Mode, load_finetune_config
from neurofm.tasks.fold_training import (
    RIDGE_FILE,
    FineTunePredictor,
    PenalisedObjective,
    TaskWindowDataset,
    pooled_features,
)
from neurofm.tasks.probe import RidgeProbe, fit_ridge_probe

#: What the trainable parameters of each peft mode are called (besides the head's copy).
_ADAPTER_PARAMETERS = {"lora": ("lora_A", "lora_B"),
                       "dora": ("lora_A", "lora_B", "lora_magnitude_vector"),
                       "adalora": ("lora_A", "lora_B", "lora_E"),
                       "ia3": ("ia3_l",), "oft": ("oft_R",)}
_FOLD = Split(by="subject", train=("S2_r", "S3_r"), val=("S1_r",), test=("S0_r",),
              groups={"train": ("S2", "S3"), "val": ("S1",), "test": ("S0",)}, name="fold0")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("base") / "model"
    save_pretrained(create_model("labram_small"), folder, model_name="labram_small")
    return folder


def _windows(n: int = 32) -> TaskWindows:
    """test_finetune's synthetic windows, with both classes in every subject (so that each
    fold's validation score is defined)."""
    windows = _two_class_subjects_windows(n)
    subject = np.array([f"S{(i // 2) % 4}" for i in range(n)])
    return TaskWindows(windows.signal, windows.label, subject, np.char.add(subject, "_r"),
                       windows.onset, windows.sfreq, windows.unit, windows.channels)


def _config(*extra: str, **flags):
    flags = {"task_name": "eegmat", "model": "labram_small", **flags}
    return load_finetune_config(overrides=[*_QUIET, *extra], flags=flags)


def _batch(windows, n: int = 6) -> dict:
    return collate_windows([TaskWindowDataset(windows)[i] for i in range(n)])


@pytest.mark.parametrize("mode", ["lora", "dora", "adalora", "ia3", "oft"])
def test_a_peft_mode_trains_only_its_adapters_and_reloads_to_the_same_outputs(
        tmp_path, base_dir, mode):
    config = _config("run.max_steps=6", "optim.warmup_epochs=0", "optim.lr=1e-2",
                     "run.log_every_steps=1", mode=mode, init=str(base_dir))
    network, _ = build_task_network(config, get_task("eegmat"), 200.0, 400, "100uV")
    trainable = sorted(n for n, p in network.named_parameters() if p.requires_grad)
    markers = _ADAPTER_PARAMETERS[mode]
    assert any(m in n for n in trainable for m in markers)
    assert all(any(m in n for m in markers) or ".head." in n for n in trainable), trainable
    counts = parameter_counts(network)
    assert 0 < counts["trainable"] < counts["total"] / 5
    frozen = {n: p.detach().clone() for n, p in network.named_parameters() if not p.requires_grad}
    windows = _windows()
    objective = PenalisedObjective(network, "binary", 2)
    layer_of, depth = layer_decay_groups(network)
    trainer = Trainer(objective, config, tmp_path / "run", TaskWindowDataset(windows),
                      collate_fn=collate_windows, layer_id=layer_of, num_layers=depth)
    attach_to_trainer(network, trainer, config)
    result = trainer.fit()
    for name, parameter in network.named_parameters():
        if name in frozen:
            assert torch.equal(frozen[name], parameter), name
    moved = [n for n, p in network.named_parameters() if p.requires_grad and "head" not in n]
    assert moved  # the adapters, not only the head, took part

    if mode == "adalora":
        # The hook ran: peft's budget masked some singular values and recorded a rank pattern,
        # and the orthogonality penalty entered the training loss.
        tuner = network.backbone.base_model
        assert tuner.peft_config["default"].total_step == 6
        assert tuner.peft_config["default"].rank_pattern is not None
        values = [p for n, p in network.named_parameters() if "lora_E" in n]
        assert any(bool((v == 0).any()) for v in values)
        assert result.last_metrics["penalty"] > 0

    adapter = save_adapters(network, tmp_path / "adapter",
                            {"init": str(base_dir), "model": "labram_small", "n_outputs": 1})
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == (
        {"dora": "LORA"}.get(mode, mode.upper()))
    assert (adapter / "adapter_model.safetensors").stat().st_size < (
        (base_dir / "model.safetensors").stat().st_size / 2)
    batch = _batch(windows)
    network.eval()
    reloaded = neurofm.from_pretrained(adapter)
    assert not any(p.requires_grad for p in reloaded.parameters())
    with torch.no_grad():
        expected = network(batch)
        torch.testing.assert_close(TaskNetwork(reloaded)(batch), expected, rtol=0, atol=1e-6)
    # The adapters changed the outputs of the base network.
    with torch.no_grad():
        plain = neurofm.from_pretrained(base_dir, backbone=True, n_outputs=1)
        assert float((plain.features(batch) - network.features(batch)).abs().max()) > 1e-5


def test_adalora_through_a_fold_selects_exports_reloads_and_records_its_cost(tmp_path, base_dir):
    windows = _windows()
    config = _config("run.max_steps=6", "optim.warmup_epochs=0", "optim.lr=1e-2",
                     "adalora.init_r=4", "adalora.target_r=2", mode="adalora",
                     init=str(base_dir))
    predictor = FineTunePredictor(config, get_task("eegmat"), windows, tmp_path)
    predictions = predictor(0, _FOLD)
    selection = predictor.selection[0]
    assert selection["weights"] == "adapter" and selection["epochs"] == 3
    cost = selection["cost"]
    assert 0 < cost["trainable_parameters"] < cost["total_parameters"]
    assert cost["peak_memory_bytes"] > 2**20 and "ru_maxrss" in cost["peak_memory_measure"]
    assert cost["fit_seconds"] > 0
    # The exported adapters give exactly the probabilities the fold was scored with.
    model = TaskNetwork(neurofm.from_pretrained(tmp_path / "fold0" / "adapter"))
    test = np.flatnonzero(windows.subject == "S0")
    batch = collate_windows([TaskWindowDataset(windows)[i] for i in test])
    with torch.no_grad():
        positive = torch.sigmoid(model(batch)[:, 0]).numpy()
    np.testing.assert_allclose(positive, predictions.y_prob[:, 1], rtol=0, atol=1e-6)


def test_adalora_schedule_needs_a_budget_phase_and_bounded_settings():
    assert AdaLoraSettings().schedule(100) == (10, 20)
    with pytest.raises(ConfigError, match="no budget phase"):
        AdaLoraSettings(initial_fraction=0.5, final_fraction=0.4).schedule(2)
    with pytest.raises(ConfigError, match="target_r <= init_r"):
        _config("adalora.target_r=16", mode="adalora", init="ckpt")
    with pytest.raises(ConfigError, match="initial_fraction"):
        _config("adalora.initial_fraction=0.6", "adalora.final_fraction=0.4", mode="adalora",
                init="ckpt")
    with pytest.raises(ConfigError, match="oft needs block_size"):
        _config("oft.block_size=0", mode="oft", init="ckpt")
    with pytest.raises(ConfigError, match=r"lora \(dora\) needs r >= 1"):
        _config("lora.r=0", mode="dora", init="ckpt")
    with pytest.raises(ConfigError, match="c_grid"):
        _config("ridge.c_grid=[1.0,-2.0]", mode="ridge", init="ckpt")
    for mode in ("ia3", "oft", "ridge", "adalora", "dora"):
        with pytest.raises(ConfigError, match=f"--mode {mode} adapts pretrained weights"):
            _config(mode=mode, init="scratch")


def test_ia3_recipe_has_no_weight_decay_and_a_bad_module_name_is_refused(base_dir):
    assert _config(mode="ia3", init="ckpt").optim.weight_decay == 0.0
    assert _config(mode="lora", init="ckpt").optim.weight_decay == 0.05
    assert _config("optim.weight_decay=0.01", mode="ia3", init="ckpt").optim.weight_decay == 0.01
    config = _config("ia3.feedforward_modules=mlp.fc1", "ia3.target_modules=attn.qkv",
                     mode="ia3", init=str(base_dir))
    with pytest.raises(ConfigError, match=r"ia3\.target_modules"):
        build_task_network(config, get_task("eegmat"), 200.0, 400, "100uV")


def test_ridge_fits_the_head_in_closed_form_exports_a_model_and_reloads(tmp_path, base_dir):
    windows = _windows()
    config = _config(mode="ridge", init=str(base_dir))
    predictor = FineTunePredictor(config, get_task("eegmat"), windows, tmp_path)
    predictions = predictor(0, _FOLD)
    selection = predictor.selection[0]
    assert selection["C"] in config.ridge.c_grid and selection["selected"] == "validation"
    assert selection["weights"] == "model" and 0.0 <= selection["threshold"] <= 1.0
    assert selection["cost"]["trainable_parameters"] == 100 + 1  # the head: D weights + bias
    record = json.loads((tmp_path / "fold0" / RIDGE_FILE).read_text())
    assert record["format"] == "neurofm-ridge-probe" and record["init"] == str(base_dir)
    assert set(record["val_scores"]) == {repr(c) for c in config.ridge.c_grid}
    assert (tmp_path / "fold0" / "config.yaml").is_file()

    model = neurofm.from_pretrained(tmp_path / "fold0" / "model")
    base = neurofm.from_pretrained(base_dir)
    exported, original = model.state_dict(), base.state_dict()
    assert all(torch.equal(exported[k], v) for k, v in original.items()
               if not k.startswith("head."))  # the backbone was never touched
    test = np.flatnonzero(windows.subject == "S0")
    dataset = torch.utils.data.Subset(TaskWindowDataset(windows), test.tolist())
    with torch.no_grad():
        logits = model.classify(collate_windows([dataset[i] for i in range(len(dataset))]))
    np.testing.assert_allclose(torch.sigmoid(logits[:, 0]).numpy(), predictions.y_prob[:, 1],
                               rtol=0, atol=1e-6)
    # The record alone reproduces the head from the frozen features.
    probe = RidgeProbe(**{k: v for k, v in record.items()
                          if k not in ("format", "init", "model", "weights")})
    network = TaskNetwork(model)
    features = pooled_features(network, dataset, 8, torch.device("cpu"))
    recomputed = probe.logits(features)
    np.testing.assert_allclose(recomputed[:, 1] - recomputed[:, 0], logits[:, 0].numpy(),
                               rtol=0, atol=1e-4)


def test_ridge_on_a_multi_class_task_gives_k_logits_and_nothing_to_absent_classes(
        tmp_path, base_dir):
    windows = _windows(48)
    windows.label[:] = np.arange(48) % 3  # dreams_sleep has five stages; two never occur
    task = get_task("dreams_sleep")
    config = _config(mode="ridge", init=str(base_dir), task_name="dreams_sleep")
    predictor = FineTunePredictor(config, task, windows, tmp_path)
    predictions = predictor(0, _FOLD)
    assert predictions.y_prob.shape == (12, 5) and predictor.selection[0]["threshold"] is None
    assert predictions.y_prob[:, 3:].max() < 1e-9
    model = neurofm.from_pretrained(tmp_path / "fold0" / "model")
    test = np.flatnonzero(windows.subject == "S0")
    with torch.no_grad():
        logits = model.classify(collate_windows([TaskWindowDataset(windows)[i] for i in test]))
    np.testing.assert_allclose(logits.softmax(1).numpy(), predictions.y_prob, rtol=0, atol=1e-6)


def test_the_ridge_probe_equals_scikit_learn_and_covers_classes_absent_from_training():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 5)) * [1.0, 3.0, 0.5, 2.0, 1.0] + [0.0, 5.0, -1.0, 0.0, 2.0]
    y = np.arange(90) % 3
    x[:, 0] += y
    probe = fit_ridge_probe(x[:60], y[:60], x[60:], y[60:], n_classes=4, metric="cohen_kappa",
                            c_grid=[0.01, 1.0], balanced=True)
    reference = LogisticRegression(C=probe.C, max_iter=2000, class_weight="balanced").fit(
        StandardScaler().fit(x[:60]).transform(x[:60]), y[:60])
    probabilities = probe.probabilities(x[60:])
    expected = reference.predict_proba(StandardScaler().fit(x[:60]).transform(x[60:]))
    np.testing.assert_allclose(probabilities[:, :3], expected, atol=1e-9)
    assert probabilities[:, 3].max() < 1e-12  # class 3: never in the training windows
    weight, bias = probe.head(4)
    assert weight.shape == (4, 5) and bias.shape == (4,)
    with pytest.raises(ConfigError, match="cannot fill a head"):
        probe.head(1)
    # Binary: one logit whose sigmoid is scikit-learn's probability of class 1.
    binary = fit_ridge_probe(x[:60], y[:60] % 2, x[60:], y[60:] % 2, n_classes=2,
                             metric="auroc", c_grid=[0.1], balanced=False)
    weight, bias = binary.head(1)
    positive = 1 / (1 + np.exp(-(x[60:] @ weight[0] + bias[0])))
    np.testing.assert_allclose(positive, binary.probabilities(x[60:])[:, 1], atol=1e-12)
    # No validation windows: the default C, and the record says so.
    fallback = fit_ridge_probe(x[:60], y[:60], x[:0], y[:0], 3, "cohen_kappa", [0.01, 10.0], True)
    assert fallback.C == 1.0 and fallback.selected == "default"
    assert set(fallback.val_scores.values()) == {None}
    with pytest.raises(ConfigError, match="hold one class"):
        fit_ridge_probe(x[:10], np.zeros(10), x[:4], y[:4], 2, "auroc", [1.0], True)


def test_results_and_report_state_each_modes_parameters_and_peak_memory(tmp_path, base_dir):
    windows = _windows()
    config = _config(mode="ridge", init=str(base_dir))
    outcome = run_finetune(config, windows, [_FOLD], tmp_path / "run", baseline=False,
                           n_resamples=20, progress=False)
    summary = json.loads(outcome.summary_path.read_text())
    cost = summary["cost"]["0"]
    assert cost["trainable_parameters"] == 101 and cost["total_parameters"] > 10_000
    assert cost["peak_memory_bytes"] > 0 and cost["epochs_per_fold"] is None
    assert summary["selection"]["0"]["fold0"]["cost"]["fit_seconds"] > 0
    report = outcome.report_markdown.read_text()
    assert "## Cost" in report and "ru_maxrss" in report and "| ridge |" in report
    assert "metrics CSV" not in report  # ridge has no learning curves to look for


def test_the_cli_offers_every_mode_and_refuses_others(capsys):
    import argparse

    from neurofm.cli import finetune as finetune_cli

    parser = argparse.ArgumentParser()
    finetune_cli.register(parser.add_subparsers())
    action = next(a for a in parser._subparsers._group_actions[0].choices["finetune"]._actions
                  if a.dest == "mode")
    assert tuple(action.choices) == typing.get_args(Mode) == (
        "full", "linear", "lora", "dora", "adalora", "ia3", "oft", "ridge")
    with pytest.raises(SystemExit) as exit_code:
        main(["finetune", "--task", "eegmat", "--init", "x", "--model", "labram_small",
              "--out", "unused", "--mode", "prompt"])
    assert exit_code.value.code == 2
    assert "invalid choice: 'prompt'" in capsys.readouterr().err


def test_adapter_folders_of_an_unknown_peft_type_or_without_a_config_are_refused(
        tmp_path, base_dir):
    config = _config("run.max_steps=1", mode="ia3", init=str(base_dir))
    network, _ = build_task_network(config, get_task("eegmat"), 200.0, 400, "100uV")
    adapter = save_adapters(network, tmp_path / "adapter",
                            {"init": str(base_dir), "model": "labram_small", "n_outputs": 1})
    settings = adapter / "adapter_config.json"
    document = json.loads(settings.read_text())
    settings.write_text(json.dumps({**document, "peft_type": "PROMPT_TUNING"}))
    with pytest.raises(CheckpointError, match="PROMPT_TUNING"):
        neurofm.from_pretrained(adapter)
    settings.unlink()
    with pytest.raises(CheckpointError, match=r"adapter_config\.json is missing"):
        neurofm.from_pretrained(adapter)
