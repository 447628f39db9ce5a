"""Fine-tuning: recipe groups, modes (full, linear, LoRA), init sources, the CLI on eegmat."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.cli import main
from neurofm.data.batching import collate_windows
from neurofm.data.splits import Split
from neurofm.engine.checkpointing import save_checkpoint
from neurofm.engine.config import to_dict
from neurofm.engine.optim import param_groups
from neurofm.engine.trainer import Trainer
from neurofm.errors import ChannelError, ConfigError
from neurofm.loading import load_adapters
from neurofm.models.labram_official import load_labram_checkpoint
from neurofm.models.registry import create_model
from neurofm.models.saved import load_pretrained, save_pretrained
from neurofm.objectives.classification import SupervisedObjective
from neurofm.tasks.backbones import (
    TaskNetwork,
    build_task_network,
    layer_decay_groups,
    save_adapters,
)
from neurofm.tasks.data import TaskWindows
from neurofm.tasks.definitions import get_task
from neurofm.tasks.embed import load_embedding_model
from neurofm.tasks.evaluate import EvaluationResult
from neurofm.tasks.finetune_config import load_finetune_config
from neurofm.tasks.fold_training import FineTunePredictor, TaskWindowDataset

_CHANNELS = ("FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2")
_QUIET = ["run.progress=false", "run.tensorboard=false", "data.batch_size=8"]


def _windows(n: int = 32, seconds: int = 2) -> TaskWindows:
    """Synthetic two-class windows in 100 µV at 200 Hz: class 1 carries a 10 Hz rhythm."""
    rng = np.random.default_rng(0)
    label = np.arange(n) % 2
    t = np.arange(seconds * 200) / 200.0
    signal = rng.normal(0, 0.2, (n, len(_CHANNELS), t.size)) + \
        label[:, None, None] * np.sin(2 * np.pi * 10 * t)
    subject = np.array([f"S{i % 4}" for i in range(n)])
    return TaskWindows(signal.astype(np.float32), label, subject, np.char.add(subject, "_r"),
                       np.arange(n, dtype=float), 200.0, "100uV", _CHANNELS)


def _config(*extra: str, **flags):
    flags = {"task_name": "eegmat", "model": "labram_small", **flags}
    return load_finetune_config(overrides=[*_QUIET, *extra], flags=flags)


def _train(network, windows: TaskWindows, run_dir: Path, config) -> SupervisedObjective:
    objective = SupervisedObjective(network, "binary", 2)
    layer_of, depth = layer_decay_groups(network) if config.optim.layer_decay else (None, None)
    Trainer(objective, config, run_dir, TaskWindowDataset(windows), collate_fn=collate_windows,
            layer_id=layer_of, num_layers=depth).fit()
    return objective


def test_layer_wise_decay_scales_blocks_by_depth_and_keeps_time_embed_at_one():
    config = _config()
    network, _ = build_task_network(config, get_task("eegmat"), 200.0, 400, "100uV")
    layer_of, depth = layer_decay_groups(network)
    assert depth == 2
    scale_of = {}
    for group in param_groups(network, 0.05, layer_of, depth, layer_decay=0.65):
        for name in group["param_names"]:
            scale_of[name.removeprefix("backbone.")] = group["lr_scale"]
    for k in range(depth):
        assert scale_of[f"blocks.{k}.attn.qkv.weight"] == pytest.approx(0.65 ** (depth - k))
    for name in ("cls_token", "pos_embed", "patch_embed.conv1.weight"):
        assert scale_of[name] == pytest.approx(0.65 ** (depth + 1))
    for name in ("time_embed", "fc_norm.weight", "head.weight"):
        assert scale_of[name] == 1.0


def test_linear_probe_trains_the_head_and_leaves_the_backbone_bit_identical(tmp_path):
    config = _config("run.max_steps=3", mode="linear")
    network, _ = build_task_network(config, get_task("eegmat"), 200.0, 400, "100uV")
    before = {k: v.clone() for k, v in network.backbone.state_dict().items()}
    _train(network, _windows(), tmp_path, config)
    # The resolved config saved with the run rebuilds the same job.
    assert to_dict(load_finetune_config(tmp_path / "config.yaml")) == to_dict(config)
    after = network.backbone.state_dict()
    for name, value in before.items():
        if name.startswith("head."):
            assert not torch.equal(value, after[name]), name
        else:
            assert torch.equal(value, after[name]), name


def test_lora_trains_only_adapters_saves_them_apart_and_reloads_to_the_same_outputs(tmp_path):
    base = create_model("labram_small")
    save_pretrained(base, tmp_path / "base", model_name="labram_small")
    config = _config("run.max_steps=4", "optim.warmup_epochs=0", "optim.lr=1e-2",
                     mode="lora", init=str(tmp_path / "base"))
    network, _ = build_task_network(config, get_task("eegmat"), 200.0, 400, "100uV")
    trainable = sorted(n for n, p in network.named_parameters() if p.requires_grad)
    assert trainable and all(".lora_" in n or ".head." in n for n in trainable)
    frozen_before = {n: p.detach().clone() for n, p in network.named_parameters()
                     if not p.requires_grad}
    windows = _windows()
    _train(network, windows, tmp_path / "run", config)
    for name, parameter in network.named_parameters():
        if name in frozen_before:
            assert torch.equal(frozen_before[name], parameter), name
    assert any(not torch.all(p == 0) for n, p in network.named_parameters() if "lora_B" in n)

    adapter = save_adapters(network, tmp_path / "adapter", {
        "init": config.init, "model": "labram_small", "n_outputs": 1})
    adapter_bytes = (adapter / "adapter_model.safetensors").stat().st_size
    assert adapter_bytes < (tmp_path / "base" / "model.safetensors").stat().st_size / 4

    batch = collate_windows([TaskWindowDataset(windows)[i] for i in range(6)])
    network.eval()
    reloaded = TaskNetwork(load_adapters(adapter))
    embedder, _ = load_embedding_model(str(adapter))  # `neurofm embed` takes adapter folders
    with torch.no_grad():
        torch.testing.assert_close(reloaded(batch), network(batch), rtol=0, atol=1e-6)
        torch.testing.assert_close(embedder.features(batch), network.features(batch),
                                   rtol=0, atol=1e-6)


def test_official_checkpoint_initialises_the_backbone_with_exactly_its_weights(golden_dir):
    weights = golden_dir / "weights" / "labram-base.pth"
    task = get_task("eegmat")
    official, _ = build_task_network(_config(model="labram_base", init=f"official:{weights}"),
                                     task, 200.0, 400, "100uV")
    scratch, _ = build_task_network(_config(model="labram_base"), task, 200.0, 400, "100uV")
    reference = load_labram_checkpoint(weights, target="backbone").state_dict()
    tuned = official.backbone.state_dict()
    compared = [k for k in reference if not k.startswith(("head.", "fc_norm."))]
    assert len(compared) > 100
    for key in compared:
        assert torch.equal(tuned[key], reference[key]), key
    assert tuned["head.weight"].shape == (1, 200)  # one logit for a binary task
    assert not torch.equal(scratch.backbone.state_dict()["blocks.0.attn.qkv.weight"],
                           reference["blocks.0.attn.qkv.weight"])


@pytest.mark.parametrize(("registered", "encoder_prefix"), [
    ("neurobert_small", "model."),          # neurofm pretrain --objective fip
    ("labram_small_mem", "model."),         # neurofm pretrain --objective mem (student.*)
])
def test_a_pretraining_checkpoint_initialises_the_backbone_with_its_encoder(
        tmp_path, registered, encoder_prefix):
    encoder = create_model(registered)
    save_checkpoint({"model": {f"{encoder_prefix}{k}": v for k, v in encoder.state_dict().items()},
                     "config": {"model": registered, "model_overrides": {}}}, tmp_path / "best.pt")
    model = registered.removesuffix("_mem")
    config = _config(model=model, init=str(tmp_path / "best.pt"))
    network, info = build_task_network(config, get_task("eegmat"), 200.0, 400, "100uV")
    assert info["source"] == "engine"
    mem = hasattr(encoder, "student")  # its final norm is dropped, as the official script does
    source = encoder.student.state_dict() if mem else encoder.state_dict()
    tuned = network.backbone.state_dict()
    new_parts = ("head.", "fc_norm.", "norm.") if mem else ("head.",)
    shared = [k for k in source if not k.startswith(new_parts)]
    assert shared and all(torch.equal(tuned[k], source[k]) for k in shared)


def test_a_fold_without_a_defined_validation_score_keeps_the_last_weights_and_says_so(tmp_path):
    windows = _windows()
    windows.label[windows.subject == "S1"] = 0  # one class in validation: AUROC undefined
    fold = Split(by="subject", train=("S2_r", "S3_r"), val=("S1_r",), test=("S0_r",),
                 groups={"train": ("S2", "S3"), "val": ("S1",), "test": ("S0",)}, name="fold0")
    config = _config("optim.epochs=2", "optim.warmup_epochs=0")
    (tmp_path / "fold0" / "checkpoints").mkdir(parents=True)
    (tmp_path / "fold0" / "checkpoints" / "best.pt").write_bytes(b"an abandoned run's weights")
    predictor = FineTunePredictor(config, get_task("eegmat"), windows, tmp_path)
    predictions = predictor(0, fold)
    assert set(predictions.subject) == {"S0"} and predictions.y_prob.shape == (8, 2)
    selection = predictor.selection[0]
    assert selection["selected"] == "last" and "validation" in selection["reason"]
    exported = load_pretrained(tmp_path / "fold0" / selection["weights"])
    assert exported.n_outputs == 1  # the fine-tuned backbone with its binary head
    assert not (tmp_path / "fold0" / "checkpoints").exists()


def test_inconsistent_options_are_refused_with_the_option_named(tmp_path):
    with pytest.raises(ConfigError, match="lora"):
        _config(mode="lora", init="scratch")
    with pytest.raises(ConfigError, match="label_smoothing"):
        _config("label_smoothing=0.1")  # eegmat is binary: one logit and BCE
    save_pretrained(create_model("labram_small"), tmp_path / "small")
    config = _config(model="labram_base", init=str(tmp_path / "small"))
    with pytest.raises(ConfigError, match="does not match the architecture"):
        build_task_network(config, get_task("eegmat"), 200.0, 400, "100uV")
    with pytest.raises(ChannelError, match="EMG1"):  # LaBraM never guesses an electrode
        build_task_network(_config(), get_task("eegmat"), 200.0, 400, "100uV", ("EMG1", "EMG2"))


def test_recipe_defaults_follow_the_model_family_size_and_task():
    sleep = load_finetune_config(flags={"task_name": "dreams_sleep", "model": "labram_small"})
    assert sleep.label_smoothing == 0.1 and sleep.optim.layer_decay == 0.65
    assert sleep.drop_path == 0.1 and sleep.run.monitor == "val/score"
    assert load_finetune_config(flags={"task_name": "eegmat"}).label_smoothing == 0.0  # binary
    large = load_finetune_config(flags={"task_name": "eegmat", "model": "labram_large",
                                        "optim.epochs": 10})
    assert large.optim.layer_decay == 0.8 and large.optim.warmup_epochs == pytest.approx(1.0)
    neurobert = load_finetune_config(flags={"task_name": "myo_gestures",
                                            "model": "neurobert_small"})
    assert neurobert.optim.lr == 3e-4 and neurobert.optim.layer_decay is None
    assert neurobert.label_smoothing == 0.0 and neurobert.drop_path == 0.0


class _Outputs(torch.nn.Module):
    """A stand-in network whose outputs are the batch's ``signal``."""

    def forward(self, batch):
        return batch["signal"]


def test_objective_losses_binary_bce_smoothed_cross_entropy_and_regression_mse():
    logits = torch.tensor([[0.0], [2.0], [-1.0]])
    binary = SupervisedObjective(_Outputs(), "binary", 2)
    batch = {"signal": logits, "label": torch.tensor([0, 1, 1])}
    loss, probabilities = binary.evaluate_batch(batch)
    torch.testing.assert_close(loss, torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, 0], torch.tensor([0.0, 1.0, 1.0])))
    torch.testing.assert_close(probabilities[:, 1], torch.sigmoid(logits[:, 0]))
    scores = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    labels = torch.tensor([0, 1])
    multiclass = SupervisedObjective(_Outputs(), "multiclass", 3, label_smoothing=0.1)
    output = multiclass({"signal": scores, "label": labels})
    torch.testing.assert_close(output.loss, torch.nn.functional.cross_entropy(
        scores, labels, label_smoothing=0.1))
    assert float(output.metrics["accuracy"]) == 0.5
    targets = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    regression = SupervisedObjective(_Outputs(), "regression", 2)
    values = torch.tensor([[0.0, -1.0], [2.0, 1.0]])
    output = regression({"signal": values, "label": targets})
    assert float(output.loss) == pytest.approx(((values - targets) ** 2).mean().item())


def test_finetune_command_on_real_eegmat_writes_results_with_split_metrics_and_report(
        mirror_dir, tmp_path):
    # Six subjects, one per fold; copied, because the registry refuses symlinks.
    subset = tmp_path / "eegmat"
    subset.mkdir()
    for number in range(6):
        for part in (1, 2):
            name = f"Subject{number:02d}_{part}.edf"
            shutil.copyfile(mirror_dir / "eegmat" / name, subset / name)
    common = ["finetune", "--task", "eegmat", "--init", "scratch", "--model", "labram_small",
              "--corpus", str(tmp_path / "corpora"), "--dataset-dir", str(subset), "--epochs", "1",
              "--max-folds", "1", "--bootstrap", "20", "--quiet", "data.batch_size=32"]
    out = tmp_path / "run"
    assert main([*common, "--out", str(out)]) == 0
    summary = json.loads((out / "results.json").read_text())
    fold = summary["folds"][0]
    assert set(fold["groups"]) == {"train", "val", "test"}
    assert not set(fold["groups"]["test"]) & set(fold["groups"]["train"])
    assert summary["config"]["task_name"] == "eegmat" and summary["mode"] == "full"
    assert 0.0 <= summary["over_seeds"]["auroc"]["mean"] <= 1.0
    selection = summary["selection"]["0"]["fold0"]
    assert selection["selected"] in ("best", "last")
    assert (out / "seed0" / "fold0" / selection["weights"] / "model.safetensors").is_file()
    result = EvaluationResult.load(out / "seed0" / "result.json")
    assert set(result.predictions.subject) == set(fold["groups"]["test"])
    assert len(result.predictions.y_true) > 0
    report = (out / "report" / "report.md").read_text()
    assert "labram_small scratch full seed 0" in report and "bandpower_logreg" in report
    assert main([*common, "--out", str(out)]) == 2  # refuses to overwrite a finished run
    probe = tmp_path / "probe"
    assert main([*common, "--out", str(probe), "--mode", "linear", "--no-baseline", "--compare",
                 str(out / "seed0" / "result.json")]) == 0
    both = (probe / "report" / "report.md").read_text()
    assert "labram_small scratch linear seed 0" in both
    assert "labram_small scratch full seed 0" in both
