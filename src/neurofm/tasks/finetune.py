"""Fine-tuning a backbone on a downstream task, fold by fold, and scoring it like any other system.

One job (:func:`run_finetune`) takes a task, a backbone source (:mod:`neurofm.tasks.backbones`:
scratch, an official LaBraM file, a neurofm checkpoint, a training checkpoint), a mode and
a recipe, and for every seed and fold of the task's subject-wise split:

1. builds the model: the backbone with a new head (one logit for binary tasks, K for multi-class)
   and the recipe's drop path; in ``"linear"`` mode only the head trains (linear probing), in
   ``"lora"`` mode peft's LoRA adapters on every block's ``attn.qkv``, ``attn.proj``, ``mlp.fc1``
   and ``mlp.fc2`` train together with the head, in ``"full"`` mode everything trains;
2. trains it with the engine's :class:`~neurofm.engine.trainer.Trainer` on the fold's training
   recordings, with layer-wise lr decay (METHODS.md §5 layer ids) when ``optim.layer_decay`` is
   set, and with balanced class weights by default (``class_weight``;
   :mod:`neurofm.tasks.imbalance`);
3. keeps the epoch with the best validation score (the task's primary metric: AUROC for binary
   tasks, Cohen's kappa for multi-class ones) on the fold's validation recordings and, for a
   binary task, chooses the decision threshold that maximises balanced accuracy on them
   (``threshold``), stored with the exported weights;
4. predicts the fold's test recordings (its scored part: the validation recordings of a fixed
   split whose test subjects are absent) with those weights and that threshold.

The test predictions of all folds are scored by :func:`neurofm.tasks.evaluate.evaluate_system`,
the same path the classical baselines take, and written as one result per seed; a summary over
seeds (mean ± sample standard deviation) and a report comparing the seeds with the task's
classical baseline on the same folds complete the output::

    OUT/results.json              summary: task, split, resolved config, metrics per seed,
                                  mean ± std over seeds
    OUT/seed<S>/result.json       neurofm evaluation result (folds, predictions, CIs)
    OUT/seed<S>/fold<F>/          config.yaml, metrics.csv, predictions.json, and the selected
                                  weights: model/ (neurofm format, with the head) or, for LoRA,
                                  adapter/ (adapter_model.safetensors + configs)
    OUT/baseline.json             the classical baseline on the same folds
    OUT/report/                   report.md, report.html and the plots
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from neurofm.atomic import atomic_write_json
from neurofm.channels import vocabulary_indices
from neurofm.data.batching import collate_windows
from neurofm.data.splits import Split
from neurofm.engine import distributed as dist_utils
from neurofm.engine.checkpointing import CheckpointManager, checkpoint_meta, load_checkpoint
from neurofm.engine.config import (
    FinetuneConfig,
    config_from_dict,
    load_config,
    merge_nested,
    parse_overrides,
    read_yaml,
    to_dict,
)
from neurofm.engine.distributed import DistributedContext
from neurofm.engine.trainer import Trainer, seed_everything
from neurofm.errors import ChannelError, ConfigError
from neurofm.models.checkpoints import save_pretrained
from neurofm.objectives.classification import SupervisedObjective, head_size, target_kind
from neurofm.tasks.backbones import (
    OFFICIAL_PREFIX,
    TaskNetwork,
    build_backbone,
    check_input,
    family_of,
    init_path,
    layer_id,
    num_layers,
    unwrap,
    with_task_head,
)
from neurofm.tasks.data import TaskWindows
from neurofm.tasks.definitions import Task, get_task
from neurofm.tasks.evaluate import EvaluationResult, Predictions, evaluate_system
from neurofm.tasks.imbalance import (
    CLASS_WEIGHTINGS,
    THRESHOLD_RULES,
    balanced_class_weights,
    choose_threshold,
    decide,
)
from neurofm.tasks.metrics import METRIC_NAMES, classification_metrics
from neurofm.tasks.overlap import guard_overlap

_log = logging.getLogger(__name__)

Mode = Literal["full", "linear", "lora"]
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
ADAPTER_SIDECAR = "neurofm_adapter.json"
PREDICTIONS_FILE = "predictions.json"
#: Stands for the fold's position in a per-fold ``init`` path.
FOLD_PLACEHOLDER = "{fold}"


@dataclass
class LoraSettings:
    """LoRA adapters (peft): rank ``r``, scaling ``alpha / r``, dropout on the adapter input, and
    the Linear layers they wrap (comma-separated name suffixes of the shared transformer block)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: str = "attn.qkv,attn.proj,mlp.fc1,mlp.fc2"

    def targets(self) -> list[str]:
        """The target module suffixes as a list."""
        return [name.strip() for name in self.target_modules.split(",") if name.strip()]


@dataclass
class FinetuneJobConfig(FinetuneConfig):
    """A fine-tuning job: the engine's :class:`FinetuneConfig` plus what to tune on and how.

    Attributes:
        task_name: the downstream task (:data:`neurofm.tasks.definitions.TASKS`).
        split: the task's split (``"cv"``, ``"fixed"``, a split JSON file); empty: its default.
        init: ``"scratch"``, ``"official:PATH"``, a neurofm checkpoint folder or a training
            checkpoint (see :mod:`neurofm.tasks.backbones`). A path holding ``{fold}`` names one
            checkpoint per fold (``{fold}`` becomes the fold's position, 0, 1...): under
            cross-validation, each fold's pretraining may then leave out just that fold's
            validation and test subjects.
        mode: ``"full"`` fine-tuning, ``"linear"`` probing (frozen backbone) or ``"lora"``.
        drop_path: stochastic-depth rate of the last block (linearly spaced from 0 over depth).
        lora: the adapters (``mode="lora"`` only).
        class_weight: ``"balanced"`` (each class the same total loss weight, from the fold's
            training labels) or ``"none"``.
        threshold: binary tasks: ``"validation"`` (the threshold that maximises balanced accuracy
            on the validation windows) or ``"argmax"`` (0.5).
    """

    task_name: str = ""
    split: str = ""
    init: str = "scratch"
    mode: Mode = "full"
    drop_path: float = 0.1
    lora: LoraSettings = field(default_factory=LoraSettings)
    class_weight: str = "balanced"
    threshold: str = "validation"

    def get_task(self) -> Task:
        """The task with the configured split."""
        return get_task(self.task_name).using_split(self.split or None)

    @property
    def init_per_fold(self) -> bool:
        """Whether ``init`` names one checkpoint per fold (holds ``{fold}``)."""
        return FOLD_PLACEHOLDER in self.init

    def for_fold(self, index: int) -> FinetuneJobConfig:
        """This config with ``{fold}`` in ``init`` replaced by ``index``."""
        if not self.init_per_fold:
            return self
        return dataclasses.replace(self, init=self.init.replace(FOLD_PLACEHOLDER, str(index)))

    def validate(self) -> None:
        super().validate()
        if not self.task_name:
            raise ConfigError("config option task_name is empty; name a task (--task eegmat, "
                              "dreams_sleep...)")
        task = self.get_task()
        if self.class_weight not in CLASS_WEIGHTINGS:
            raise ConfigError(f"config option class_weight must be one of {CLASS_WEIGHTINGS}, "
                              f"got {self.class_weight!r}")
        if self.threshold not in THRESHOLD_RULES:
            raise ConfigError(f"config option threshold must be one of {THRESHOLD_RULES}, got "
                              f"{self.threshold!r}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(f"config option drop_path must lie in [0, 1), got {self.drop_path}")
        if self.label_smoothing and task.n_classes == 2:
            raise ConfigError(f"config option label_smoothing={self.label_smoothing}: task "
                              f"{task.name!r} is binary (one logit, BCE), which has no label "
                              "smoothing; set label_smoothing=0")
        if self.init_per_fold and (self.init == "scratch" or self.init.count(FOLD_PLACEHOLDER) > 1
                                   or "{" in self.init.replace(FOLD_PLACEHOLDER, "")):
            raise ConfigError(f"--init {self.init!r}: a per-fold init is a path holding "
                              f"{FOLD_PLACEHOLDER} once (e.g. runs/fold{FOLD_PLACEHOLDER}/model)")
        if self.mode == "lora" and self.init == "scratch":
            raise ConfigError("--mode lora adapts pretrained weights, but with --init scratch the "
                              "frozen base would be random; use --mode full for a from-scratch "
                              "comparison")
        if self.mode == "lora":
            lora = self.lora
            if lora.r < 1 or lora.alpha <= 0 or not 0.0 <= lora.dropout < 1.0 or not lora.targets():
                raise ConfigError(f"config option lora needs r >= 1, alpha > 0, dropout in [0, 1) "
                                  f"and at least one target module; got {lora}")


def finetune_recipe(model: str) -> dict[str, Any]:
    """Recipe defaults for a registered model name, as nested config values.

    The engine's fine-tuning defaults for the model (METHODS.md §5: AdamW, lr 5e-4, layer-wise
    decay 0.65 for Base; Large and Huge 30 epochs with 3 of warm-up and decay 0.8), then what a
    fine-tuning job adds: drop path (LaBraM 0.1, Huge 0.2) and, for Neuro-BERT (§6.4), lr 3e-4,
    40 epochs (2 of warm-up), plain cross-entropy, no layer decay or drop path. For all: model
    selection by the validation score (``val/score``, maximised) and one periodic checkpoint kept
    per fold.
    """
    if not model.startswith(("labram_", "neurobert_")):
        raise ConfigError(f"no fine-tuning recipe for model {model!r}; use a labram_* or "
                          "neurobert_* model")
    engine = to_dict(load_config(FinetuneConfig, base={"model": model}))
    recipe = merge_nested(to_dict(FinetuneJobConfig()), engine)
    recipe = merge_nested(recipe, {"run": {"monitor": "val/score", "monitor_mode": "max",
                                           "keep_last": 1}})
    if model.startswith("labram_"):
        return merge_nested(recipe, {"drop_path": 0.2 if model == "labram_huge" else 0.1})
    return merge_nested(recipe, {
        "drop_path": 0.0, "label_smoothing": 0.0,
        "optim": {"lr": 3e-4, "min_lr": 1e-6, "epochs": 40, "warmup_epochs": 2.0,
                  "layer_decay": None},
    })


def load_finetune_config(yaml_path: str | Path | None = None, overrides: Sequence[str] = (),
                         flags: Mapping[str, Any] | None = None) -> FinetuneJobConfig:
    """Build the job config: model recipe, then a YAML file, then ``flags``, then ``key=value``.

    ``flags`` holds values of dedicated command-line options (``task_name``, ``init``, ``mode``,
    ``model``, ``optim.epochs``...; None values are ignored). When the number of epochs is set but
    the warm-up is not, the warm-up keeps the recipe's fraction of the run. Binary tasks get no
    label smoothing (one logit and BCE, METHODS.md §5).
    """
    user: dict[str, Any] = {}
    if yaml_path is not None:
        user = read_yaml(yaml_path)
        saved_task = user.pop("task", FinetuneJobConfig.task)  # a config.yaml a run saved
        if saved_task != FinetuneJobConfig.task:
            raise ConfigError(f"config file {yaml_path} holds a {saved_task!r} config, not a "
                              "fine-tuning one")
    user = merge_nested(user, _nested({k: v for k, v in (flags or {}).items() if v is not None}))
    user = merge_nested(user, parse_overrides(overrides))
    recipe = finetune_recipe(str(user.get("model") or FinetuneJobConfig.model))
    task_name = user.get("task_name")
    if task_name and get_task(str(task_name)).n_classes == 2:
        recipe["label_smoothing"] = 0.0
    optim = user.get("optim", {})
    if "epochs" in optim and "warmup_epochs" not in optim:
        fraction = recipe["optim"]["warmup_epochs"] / recipe["optim"]["epochs"]
        optim["warmup_epochs"] = fraction * float(optim["epochs"])
    config = config_from_dict(FinetuneJobConfig, merge_nested(recipe, user))
    config.validate()
    return config


def _nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


# --------------------------------------------------------------------------- data


def window_channel_index(windows: TaskWindows) -> np.ndarray:
    """Per channel of the task's windows, its LaBraM vocabulary index ``[C]``; montage positions
    ``0..C-1`` when the channels are not EEG names (EMG), which only Neuro-BERT takes (LaBraM
    refuses such windows in :func:`neurofm.tasks.backbones.check_input`)."""
    try:
        return np.asarray(vocabulary_indices(windows.channels), dtype=np.int64)
    except ChannelError:
        return np.arange(len(windows.channels), dtype=np.int64)


class TaskWindowDataset(Dataset):
    """A task's in-memory windows as items of :func:`neurofm.data.batching.collate_windows`.

    Item ``i``: ``signal`` float32 ``[C, T]`` (the corpus unit), ``channel_index`` long ``[C]``,
    ``label`` long, ``index`` ``i``, ``sfreq``, ``recording_id`` and ``subject``.
    """

    def __init__(self, windows: TaskWindows) -> None:
        self.windows = windows
        self.channel_index = torch.from_numpy(window_channel_index(windows))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        windows = self.windows
        return {
            "signal": torch.from_numpy(np.ascontiguousarray(windows.signal[index])),
            "channel_index": self.channel_index,
            "label": torch.tensor(int(windows.label[index]), dtype=torch.long),
            "index": int(index),
            "sfreq": windows.sfreq,
            "recording_id": str(windows.recording[index]),
            "subject": str(windows.subject[index]),
        }


# --------------------------------------------------------------------------- model


def layer_decay_groups(network: nn.Module) -> tuple[Any, int]:
    """The engine's layer-wise lr decay hook for ``network``: ``(layer_id(name), L)``."""
    depth = num_layers(network.backbone if isinstance(network, TaskNetwork) else network)
    return (lambda name: layer_id(name, depth)), depth


def apply_mode(backbone: nn.Module, mode: Mode, lora: LoraSettings | None = None) -> nn.Module:
    """Set what trains: everything (``full``), the head (``linear``), or LoRA adapters and the
    head (``lora``, returns peft's ``PeftModel`` wrapping ``backbone``)."""
    if mode == "full":
        for parameter in backbone.parameters():
            parameter.requires_grad_(True)
        return backbone
    if mode == "linear":
        for name, parameter in backbone.named_parameters():
            parameter.requires_grad_(name.startswith("head."))
        return backbone
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        settings = lora or LoraSettings()
        config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                            target_modules=settings.targets(), modules_to_save=["head"])
        try:
            return get_peft_model(backbone, config)
        except ValueError as error:
            raise ConfigError(f"config option lora.target_modules={settings.target_modules!r}: "
                              f"{error}") from None
    raise ConfigError(f"unknown mode {mode!r}; use full, linear or lora")


def build_task_network(config: FinetuneJobConfig, task: Task, sfreq: float, n_times: int,
                       unit: str, channels: Sequence[str] | None = None
                       ) -> tuple[TaskNetwork, dict[str, Any]]:
    """The network to fine-tune for ``task`` on windows of ``n_times`` samples at ``sfreq`` Hz in
    ``unit`` with ``channels``: backbone from ``config.init``, a new head, the recipe's drop path,
    and the mode's trainable parameters. Returns it with the init description.
    """
    backbone, info = build_backbone(config.init, config.model, config.model_overrides)
    n_outputs = head_size(target_kind(task.n_classes), task.n_classes)
    backbone = with_task_head(backbone, n_outputs, config.drop_path)
    check_input(backbone, sfreq, n_times, unit, f"task {task.name!r}", channels)
    info = {**info, "family": family_of(backbone),
            "architecture": unwrap(backbone).config.to_dict()}
    wrapped = apply_mode(backbone, config.mode, config.lora)
    return TaskNetwork(wrapped, frozen_backbone=config.mode == "linear"), info


def absolute_init(init: str) -> str:
    """``init`` with its path made absolute (``"scratch"`` unchanged), so that a record of it
    stays valid from any working directory."""
    if init == "scratch":
        return init
    official, path = init_path(init)
    return (OFFICIAL_PREFIX if official else "") + str(path.resolve())


def save_lora_adapters(network: TaskNetwork, directory: str | Path, description: Mapping[str, Any]
                       ) -> Path:
    """Write the LoRA adapters and the head (peft's ``adapter_model.safetensors`` and
    ``adapter_config.json``) plus ``neurofm_adapter.json`` (base init, model, head size)."""
    directory = Path(directory)
    network.backbone.save_pretrained(str(directory))
    atomic_write_json(directory / ADAPTER_SIDECAR, dict(description))
    return directory


def load_lora_model(adapter_dir: str | Path, init: str | None = None) -> TaskNetwork:
    """Rebuild a LoRA-fine-tuned network: its base weights (``init``, by default the one recorded
    at training) with the adapters and head of ``adapter_dir``, in eval mode."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    sidecar = adapter_dir / ADAPTER_SIDECAR
    if not sidecar.is_file():
        raise ConfigError(f"{adapter_dir} has no {ADAPTER_SIDECAR}; it is not a neurofm LoRA "
                          "adapter folder (written by `neurofm finetune --mode lora`)")
    description = json.loads(sidecar.read_text(encoding="utf-8"))
    backbone, _ = build_backbone(init or description["init"], description["model"],
                                 description.get("model_overrides"))
    backbone = with_task_head(backbone, int(description["n_outputs"]), 0.0)
    wrapped = PeftModel.from_pretrained(backbone, str(adapter_dir))
    return TaskNetwork(wrapped).eval()


# --------------------------------------------------------------------------- training one fold


class ValidationScore:
    """The engine's validation hook for a supervised objective: loss, every classification metric
    (:func:`neurofm.tasks.metrics.classification_metrics`) over all validation windows of all
    ranks, and ``score``, the task's primary metric (what model selection maximises)."""

    def __init__(self, primary_metric: str) -> None:
        self.primary_metric = primary_metric

    def __call__(self, objective: nn.Module, batches, ctx: DistributedContext) -> dict[str, float]:
        labels, probabilities, loss_sum = [], [], 0.0
        for batch in batches:
            batch = _to_device(batch, ctx.device)
            loss, predicted = objective.evaluate_batch(batch)
            labels.append(batch["label"].cpu().numpy())
            probabilities.append(predicted.float().cpu().numpy())
            loss_sum += float(loss) * len(labels[-1])
        gathered = dist_utils.all_gather_objects((labels, probabilities, loss_sum), ctx)
        y_true = np.concatenate([y for part in gathered for y in part[0]] or [np.zeros(0)])
        if y_true.size == 0:
            return {}
        y_prob = np.concatenate([p for part in gathered for p in part[1]])
        scores = classification_metrics(y_true.astype(np.int64), y_prob)
        scores["loss"] = sum(part[2] for part in gathered) / y_true.size
        scores["score"] = scores[self.primary_metric]
        return scores


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def predict(objective: SupervisedObjective, dataset: Dataset, batch_size: int,
            device: torch.device, precision: str = "fp32") -> np.ndarray:
    """Class probabilities ``[N, K]`` of every window of ``dataset``, in order (eval mode)."""
    objective.eval()
    parts = []
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    with torch.no_grad(), autocast:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            batch = _to_device(collate_windows(items), device)
            parts.append(objective.predictions(objective.outputs(batch)).float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, objective.n_classes))


class FineTunePredictor:
    """Fold predictor for :func:`neurofm.tasks.evaluate.evaluate_system` that fine-tunes.

    ``predictor(index, fold)`` trains a fresh network on the fold's training recordings (seeded by
    ``config.run.seed``), selects the best validation epoch and the decision threshold, predicts
    the fold's scored recordings and returns :class:`Predictions`. With ``resume``, a fold whose
    predictions were saved is reused and an interrupted fold continues from its last checkpoint.
    ``selection[index]`` records the chosen epoch and its validation score.
    """

    def __init__(self, config: FinetuneJobConfig, task: Task, windows: TaskWindows,
                 out_dir: str | Path, ctx: DistributedContext | None = None,
                 resume: bool = False) -> None:
        self.config = config
        self.task = task
        self.windows = windows
        self.dataset = TaskWindowDataset(windows)
        self.out_dir = Path(out_dir)
        self.ctx = ctx if ctx is not None else dist_utils.init_distributed(config.run.device)
        self.resume = resume
        self.selection: dict[int, dict[str, Any]] = {}
        self.init_info: dict[str, Any] = {}

    def __call__(self, index: int, fold: Split) -> Predictions:
        run_dir = self.out_dir / f"fold{index}"
        saved = run_dir / PREDICTIONS_FILE
        if self.resume and saved.is_file():
            try:
                data = json.loads(saved.read_text(encoding="utf-8"))
                selection, predictions = data["selection"], Predictions.from_dict(data["predictions"])
            except (ValueError, KeyError, TypeError, AttributeError) as error:  # truncated, edited
                raise ConfigError(f"{saved} is damaged ({type(error).__name__}: {error}); delete it "
                                  "and run again with --resume: that fold is then evaluated again "
                                  "from its checkpoints") from None
            self.selection[index] = selection
            self.init_info = data.get("init", self.init_info)
            return predictions
        windows = self.windows
        train, val, test = (np.flatnonzero(np.isin(windows.recording, part))
                            for part in (fold.train, fold.val, fold.scored_recordings))
        if train.size == 0 or test.size == 0:
            raise ConfigError(f"fold {index} ({fold.name}) has {train.size} training and "
                              f"{test.size} {fold.scored} windows; every fold needs both")
        config = self.config.for_fold(index)
        seed_everything(config.run.seed)
        network, self.init_info = build_task_network(
            config, self.task, windows.sfreq, windows.signal.shape[-1], windows.unit,
            windows.channels)
        kind = target_kind(self.task.n_classes)
        weights = (torch.as_tensor(balanced_class_weights(windows.label[train],
                                                          self.task.n_classes))
                   if config.class_weight == "balanced" else None)
        objective = SupervisedObjective(network, kind, self.task.n_classes,
                                        config.label_smoothing if kind == "multiclass" else 0.0,
                                        class_weight=weights)
        layer_of, depth = layer_decay_groups(network) if config.optim.layer_decay else (None, None)
        trainer = Trainer(
            objective, config, run_dir,
            train_data=Subset(self.dataset, train.tolist()),
            val_data=Subset(self.dataset, val.tolist()) if val.size else None,
            collate_fn=collate_windows,
            evaluate=ValidationScore(self.task.primary_metric),
            layer_id=layer_of, num_layers=depth, ctx=self.ctx,
        )
        resume = self.resume and bool(CheckpointManager(run_dir / "checkpoints").periodic())
        if not resume and self.ctx.is_main:
            # A fresh fold must not pick up the best.pt of an earlier, abandoned run.
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        dist_utils.barrier(self.ctx)
        result = trainer.fit(resume=resume)
        selection = self._select(objective, result.best_checkpoint, result.step)
        selection["threshold"] = self._threshold(objective, val)
        probabilities = self._predict(objective, test)
        predictions = Predictions(
            y_true=windows.label[test], y_prob=probabilities, fold=np.full(test.size, index),
            subject=windows.subject[test], recording=windows.recording[test],
            onset=windows.onset[test], y_pred=decide(probabilities, selection["threshold"]))
        self.selection[index] = selection
        if self.ctx.is_main:
            selection["weights"] = self._export(config, network, objective.n_outputs, fold,
                                                run_dir, selection["threshold"])
            atomic_write_json(saved, {"selection": selection, "init": self.init_info,
                                      "predictions": predictions.to_dict()})
            # The fold is finished and its selected weights exported; the training checkpoints
            # (optimizer state included) only served selection and resuming.
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        return predictions

    def _predict(self, objective: SupervisedObjective, rows: np.ndarray) -> np.ndarray:
        config = self.config
        return predict(objective, Subset(self.dataset, rows.tolist()), config.data.batch_size,
                       self.ctx.device, config.run.precision)

    def _threshold(self, objective: SupervisedObjective, val: np.ndarray) -> float | None:
        """The binary decision threshold (None: argmax), chosen on the validation windows."""
        if self.task.n_classes != 2 or self.config.threshold == "argmax":
            return None
        if val.size == 0:
            return 0.5
        return choose_threshold(self.windows.label[val], self._predict(objective, val)[:, 1])

    def _export(self, config: FinetuneJobConfig, network: TaskNetwork, n_outputs: int,
                fold: Split, run_dir: Path, threshold: float | None) -> str:
        """Write the selected weights: ``model/`` (neurofm format, backbone with its head) or, for
        LoRA, ``adapter/`` (adapters and head only). Returns the folder name."""
        description = {"init": absolute_init(config.init), "model": config.model,
                       "model_overrides": dict(config.model_overrides), "mode": config.mode,
                       "n_outputs": n_outputs, "task": self.task.name,
                       "class_names": list(self.task.class_names), "fold": fold.name,
                       "seed": config.run.seed, "decision_threshold": threshold,
                       "class_weight": config.class_weight}
        if config.mode == "lora":
            save_lora_adapters(network, run_dir / ADAPTER_DIR, description)
            return ADAPTER_DIR
        save_pretrained(unwrap(network.backbone), run_dir / MODEL_DIR, model_name=config.model,
                        extra=description)
        return MODEL_DIR

    def _select(self, objective: SupervisedObjective, best: Path | None, step: int
                ) -> dict[str, Any]:
        if best is None or not Path(best).is_file():
            # No finite validation score (e.g. one class in the validation subjects): the last
            # weights are used, and the result says so.
            return {"selected": "last", "step": step, "reason": "no finite validation score"}
        state = load_checkpoint(best, map_location=self.ctx.device)
        objective.load_state_dict(state["model"])
        meta = checkpoint_meta(best)
        metrics = meta.get("metrics", {})
        return {"selected": "best", "step": meta.get("step"), "epoch": meta.get("epoch"),
                "val_score": metrics.get("score"), "val_metrics": metrics}


# --------------------------------------------------------------------------- the job


@dataclass
class FinetuneOutcome:
    """What :func:`run_finetune` produced: one result per seed, the baseline, the summary file and
    the report."""

    results: list[EvaluationResult]
    baseline: EvaluationResult | None
    summary_path: Path
    report_markdown: Path | None


def system_name(config: FinetuneJobConfig) -> str:
    """The default name of a fine-tuned system in reports, e.g. ``"labram_base official full"``."""
    source = "scratch" if config.init == "scratch" else (
        "official" if config.init.startswith("official:") or config.init.endswith(".pth")
        else "pretrained")
    return f"{config.model} {source} {config.mode}"


def summarize_seeds(results: Sequence[EvaluationResult]) -> dict[str, dict[str, Any]]:
    """Per metric: the pooled test value of each seed, their mean and sample std (ddof 1)."""
    summary = {}
    for name in METRIC_NAMES:
        values = [float(r.pooled[name]) for r in results]
        finite = [v for v in values if math.isfinite(v)]
        summary[name] = {
            "values": values,
            "mean": float(np.mean(finite)) if finite else float("nan"),
            "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan"),
            "n": len(finite),
        }
    return summary


def run_finetune(
    config: FinetuneJobConfig,
    windows: TaskWindows,
    folds: Sequence[Split],
    out_dir: str | Path,
    *,
    seeds: Sequence[int] = (0,),
    max_folds: int | None = None,
    system: str | None = None,
    baseline: bool = True,
    resume: bool = False,
    n_resamples: int = 1000,
    progress: bool = True,
    corpus: str | None = None,
    compare: Sequence[EvaluationResult] = (),
    allow_overlap: bool = False,
) -> FinetuneOutcome:
    """Fine-tune on every (first ``max_folds``) fold for every seed; score, summarise, report.

    Args:
        config: the resolved job config (its ``run.seed`` is replaced by each of ``seeds``).
        windows: the task's windows (:func:`neurofm.tasks.data.load_task_windows`).
        folds: the task's folds (:func:`neurofm.tasks.data.task_folds`).
        out_dir: output folder (layout in the module docstring).
        system: the system's name in reports (default :func:`system_name`).
        baseline: also run the task's classical baseline on the same folds for the report.
        resume: reuse finished folds and continue interrupted ones.
        n_resamples: bootstrap resamples over subjects for the confidence intervals.
        corpus: where the windows came from, recorded in the results.
        compare: results of other systems on the task (e.g. the from-scratch run) for the report.
        allow_overlap: fine-tune and score even when ``config.init`` was pretrained on a
            validation or test subject of ``folds`` (:mod:`neurofm.tasks.overlap`; otherwise
            :class:`~neurofm.errors.OverlapError` before anything is trained or written); the
            report says so.
    """
    from neurofm.tasks.baselines import evaluate_baseline
    from neurofm.tasks.reports import write_report

    task = config.get_task()
    out_dir = Path(out_dir)
    if not seeds:
        raise ConfigError("no seeds given; pass at least one (--seeds 0 1 2 3 4)")
    ctx = dist_utils.init_distributed(config.run.device)
    name = system or system_name(config)
    used_folds = list(folds)[: max_folds or len(folds)]
    overlap = _guard(config, task, used_folds, corpus, allow_overlap)
    results: list[EvaluationResult] = []
    selections: dict[int, dict[int, dict[str, Any]]] = {}
    init_info: dict[str, Any] = {}
    for seed in seeds:
        seed_config = dataclasses.replace(config,
                                          run=dataclasses.replace(config.run, seed=int(seed)))
        seed_dir = out_dir / f"seed{seed}"
        predictor = FineTunePredictor(seed_config, task, windows, seed_dir, ctx=ctx, resume=resume)
        result = evaluate_system(
            task, f"{name} seed {seed}", predictor, folds,
            {"finetune": to_dict(seed_config), "corpus": corpus, "data": windows.describe()},
            max_folds=max_folds, progress=progress, n_resamples=n_resamples, seed=0,
            history_csv="fold0/metrics.csv",
        )
        # Compact here (the report prints it); results.json keeps every validation metric.
        result.config["selection"] = {
            f"fold{i}": {k: v for k, v in s.items()
                         if k in ("selected", "epoch", "val_score", "threshold")}
            for i, s in sorted(predictor.selection.items())}
        result.config["init"] = predictor.init_info
        result.config["overlap"] = overlap
        init_info = predictor.init_info
        selections[int(seed)] = predictor.selection
        if ctx.is_main:
            result.save(seed_dir / "result.json")
        result.history_csv = str(seed_dir / "fold0" / "metrics.csv")
        results.append(result)

    baseline_result = None
    if baseline and ctx.is_main:
        baseline_result = evaluate_baseline(
            task, windows, folds, corpus=corpus, max_folds=max_folds, progress=progress,
            n_resamples=n_resamples, class_weight=config.class_weight, threshold=config.threshold)
        baseline_result.save(out_dir / "baseline.json")

    summary = {
        "format": "neurofm-finetune-summary",
        "task": task.to_dict(),
        "system": name,
        "init": init_info,
        "mode": config.mode,
        "seeds": [int(s) for s in seeds],
        "folds": [fold.to_dict() for fold in results[0].folds],
        "config": to_dict(config),
        "corpus": corpus,
        "data": windows.describe(),
        "selection": {str(s): {f"fold{i}": v for i, v in sorted(sel.items())}
                      for s, sel in selections.items()},
        "per_seed": {str(s): {"result": f"seed{s}/result.json", "pooled": r.pooled}
                     for s, r in zip(seeds, results)},
        "over_seeds": summarize_seeds(results),
        "baseline": None if baseline_result is None else {
            "system": baseline_result.system, "result": "baseline.json",
            "pooled": baseline_result.pooled},
        "primary_metric": task.primary_metric,
        "overlap": overlap,
    }
    summary_path = out_dir / "results.json"
    report_path = None
    if ctx.is_main:
        atomic_write_json(summary_path, _finite_or_none(summary))
        systems = [*results, *compare, *([baseline_result] if baseline_result is not None else [])]
        report = write_report(systems, out_dir / "report",
                              title=f"neurofm fine-tuning: {task.name}, {name}")
        report_path = report.markdown
    return FinetuneOutcome(results, baseline_result, summary_path, report_path)


def _guard(config: FinetuneJobConfig, task: Task, folds: Sequence[Split], corpus: str | None,
           allow_overlap: bool) -> dict[str, Any]:
    """The overlap guard on every fold's init (one call for a single init), as the results record
    it; raises :class:`~neurofm.errors.OverlapError` before anything is trained."""
    if not config.init_per_fold:
        return guard_overlap(config.init, task.dataset, folds, corpus,
                             allow_overlap=allow_overlap).to_dict()
    checks = [guard_overlap(config.for_fold(i).init, task.dataset, [fold], corpus,
                            allow_overlap=allow_overlap).to_dict() for i, fold in enumerate(folds)]
    return {"checkpoint": config.init, "applied": all(c["applied"] for c in checks),
            "allowed": allow_overlap, "overlaps": [o for c in checks for o in c["overlaps"]],
            "report": [f"fold {i}: {line}" for i, c in enumerate(checks) for line in c["report"]],
            "per_fold": checks}


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value
