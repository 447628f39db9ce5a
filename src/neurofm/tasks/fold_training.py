"""Training one fold of a fine-tuning job and predicting its scored windows.

:class:`FineTunePredictor` is the fold predictor :func:`neurofm.tasks.evaluate.evaluate_system`
calls: it builds the task network (:func:`neurofm.tasks.backbones.build_task_network`), trains it
with the engine's :class:`~neurofm.engine.trainer.Trainer` on the fold's training recordings
(balanced class weights by default, layer-wise lr decay when set) and keeps the epoch with the
best validation score, or in ``ridge`` mode fits its head in closed form on the frozen features
(:mod:`neurofm.tasks.probe`); it then chooses a binary decision threshold on the validation
windows, predicts the fold's scored recordings, exports the selected weights and records what the
fold cost (trainable parameters, peak memory, seconds).
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from neurofm.engine.config import save_config
from neurofm.engine.distributed import DistributedContext
from neurofm.engine.trainer import Trainer, seed_everything
from neurofm.errors import ChannelError, ConfigError
from neurofm.objectives.base import ObjectiveOutput
from neurofm.objectives.classification import SupervisedObjective, target_kind
from neurofm.tasks.backbones import (
    TaskNetwork,
    absolute_init,
    attach_to_trainer,
    build_task_network,
    layer_decay_groups,
    parameter_counts,
    save_adapters,
    save_model,
)
from neurofm.tasks.data import TaskWindows
from neurofm.tasks.definitions import Task
from neurofm.tasks.evaluate import Predictions
from neurofm.tasks.finetune_config import ADAPTER_MODES, FinetuneJobConfig
from neurofm.tasks.imbalance import balanced_class_weights, choose_threshold, decide
from neurofm.tasks.metrics import classification_metrics
from neurofm.tasks.probe import RidgeProbe, fit_ridge_probe

ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
PREDICTIONS_FILE = "predictions.json"
#: The fitted record of a ``ridge`` fold, next to its ``model/``.
RIDGE_FILE = "ridge_probe.json"


def window_channel_index(windows: TaskWindows) -> np.ndarray:
    """Per channel of the task's windows, its LaBraM vocabulary index ``[C]``; montage positions
    ``0..C-1`` when the channels are not EEG names (EMG), which only Neuro-BERT takes (LaBraM
    refuses such windows in its :meth:`~neurofm.models.backbone.Backbone.check_input`)."""
    try:
        return np.asarray(vocabulary_indices(windows.channels), dtype=np.int64)
    except ChannelError:
        return np.arange(len(windows.channels), dtype=np.int64)


class TaskWindowDataset(Dataset):
    """A task's in-memory windows as items of :func:`neurofm.data.batching.collate_windows`.

    Item ``i``: ``signal`` float32 ``[C, T]`` (the corpus unit), ``channel_index`` long ``[C]``,
    ``label`` long, ``index`` ``i``, ``sfreq``, ``recording_id`` and ``subject``.

    With ``context`` (``[N, K]`` rows of each window's neighbours, -1 for none:
    :meth:`~neurofm.tasks.data.TaskWindows.context_rows`), item ``i`` is window ``i`` with its
    neighbours: ``signal [K, C, T]`` (zeros where there is none) and ``context_mask`` bool
    ``[K]``; ``label`` and the rest stay window ``i``'s. Batch them with :attr:`collate`.
    """

    def __init__(self, windows: TaskWindows, context: np.ndarray | None = None) -> None:
        if context is not None and context.shape[0] != len(windows):
            raise ConfigError(f"context rows for {context.shape[0]} windows, but there are "
                              f"{len(windows)}")
        self.windows = windows
        self.context = context
        self.channel_index = torch.from_numpy(window_channel_index(windows))
        #: What batches this dataset's items.
        self.collate = collate_windows if context is None else collate_context_windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        windows = self.windows
        if self.context is None:
            signal = np.ascontiguousarray(windows.signal[index])
            extra = {}
        else:
            rows = self.context[index]
            signal = np.zeros((len(rows), *windows.signal.shape[1:]), dtype=np.float32)
            signal[rows >= 0] = windows.signal[rows[rows >= 0]]
            extra = {"context_mask": torch.from_numpy(rows >= 0)}
        return {
            "signal": torch.from_numpy(signal),
            **extra,
            "channel_index": self.channel_index,
            "label": torch.tensor(int(windows.label[index]), dtype=torch.long),
            "index": int(index),
            "sfreq": windows.sfreq,
            "recording_id": str(windows.recording[index]),
            "subject": str(windows.subject[index]),
        }


def collate_context_windows(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`TaskWindowDataset` items with context: what
    :func:`~neurofm.data.batching.collate_windows` gives for the centre windows, with ``signal``
    float32 ``[B, K, C, T]`` and ``context_mask`` bool ``[B, K]`` (a task's windows share their
    channels, so ``channel_index`` and ``channel_mask`` ``[B, C]`` hold for every position)."""
    half = items[0]["signal"].shape[0] // 2
    batch = collate_windows([{**item, "signal": item["signal"][half]} for item in items])
    batch["signal"] = torch.stack([item["signal"] for item in items])
    batch["context_mask"] = torch.stack([item["context_mask"] for item in items])
    return batch


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
            device: torch.device, precision: str = "fp32",
            collate: Callable[[list[dict[str, Any]]], dict[str, Any]] = collate_windows
            ) -> np.ndarray:
    """Class probabilities ``[N, K]`` of every window of ``dataset``, in order (eval mode);
    ``collate`` batches its items (:attr:`TaskWindowDataset.collate`)."""
    objective.eval()
    return _map_batches(lambda batch: objective.predictions(objective.outputs(batch)), dataset,
                        batch_size, device, precision, objective.n_classes, collate)


def pooled_features(network: TaskNetwork, dataset: Dataset, batch_size: int,
                    device: torch.device, precision: str = "fp32") -> np.ndarray:
    """The pooled features ``[N, D]`` of every window of ``dataset``, in order (eval mode)."""
    network.eval()
    return _map_batches(network.features, dataset, batch_size, device, precision,
                        network.base.embed_dim, collate_windows)


def _map_batches(function: Callable[[dict[str, Any]], torch.Tensor], dataset: Dataset,
                 batch_size: int, device: torch.device, precision: str, width: int,
                 collate: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> np.ndarray:
    parts = []
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    with torch.no_grad(), autocast:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            parts.append(function(_to_device(collate(items), device)).float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, width))


class PenalisedObjective(SupervisedObjective):
    """:class:`SupervisedObjective` whose training loss adds the network's
    :meth:`~neurofm.tasks.backbones.TaskNetwork.penalty` (AdaLoRA's orthogonality term, logged as
    ``penalty``); validation losses and predictions are the plain objective's."""

    network: TaskNetwork

    def forward(self, batch: dict[str, Any]) -> ObjectiveOutput:
        output = super().forward(batch)
        penalty = self.network.penalty()
        if penalty is None:
            return output
        return ObjectiveOutput(loss=output.loss + penalty,
                               metrics={**output.metrics, "penalty": penalty.detach()})


def peak_memory(device: torch.device) -> dict[str, Any]:
    """The fold's peak memory: on CUDA ``torch.cuda.max_memory_allocated`` since the fold started
    (tensors only; the caching allocator may hold more), otherwise the process's peak resident
    set size so far (``resource.getrusage(RUSAGE_SELF).ru_maxrss``: every earlier fold, the
    windows and the interpreter included)."""
    if device.type == "cuda":
        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)),
                "peak_memory_measure": "torch.cuda.max_memory_allocated (this fold)"}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_memory_bytes": int(rss if sys.platform == "darwin" else rss * 1024),
            "peak_memory_measure": "ru_maxrss (process peak RSS so far)"}


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
        epochs = config.context.epochs
        self.dataset = TaskWindowDataset(windows, windows.context_rows(
            epochs, task.window.stride_seconds or task.window.seconds) if epochs > 1 else None)
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
        started = time.perf_counter()
        if self.ctx.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.ctx.device)
        network, self.init_info = build_task_network(
            config, self.task, windows.sfreq, windows.signal.shape[-1], windows.unit,
            windows.channels)
        kind = target_kind(self.task.n_classes)
        weights = (torch.as_tensor(balanced_class_weights(windows.label[train],
                                                          self.task.n_classes))
                   if config.class_weight == "balanced" else None)
        objective = PenalisedObjective(network, kind, self.task.n_classes,
                                       config.label_smoothing if kind == "multiclass" else 0.0,
                                       class_weight=weights)
        probe = None
        if config.mode == "ridge":
            objective.to(self.ctx.device)
            probe = self._fit_probe(config, network, fold, train, val)
            selection = {"selected": probe.selected, "C": probe.C,
                         "val_score": probe.val_scores.get(repr(probe.C)), "epoch": None}
            if self.ctx.is_main:
                save_config(config, run_dir / "config.yaml")
        else:
            selection = self._train(config, network, objective, run_dir, train, val)
        selection["threshold"] = self._threshold(objective, val)
        probabilities = self._predict(objective, test)
        selection["cost"] = {**{f"{k}_parameters": v for k, v in parameter_counts(network).items()},
                             "fit_seconds": time.perf_counter() - started,
                             **peak_memory(self.ctx.device)}
        predictions = Predictions(
            y_true=windows.label[test], y_prob=probabilities, fold=np.full(test.size, index),
            subject=windows.subject[test], recording=windows.recording[test],
            onset=windows.onset[test], y_pred=decide(probabilities, selection["threshold"]))
        self.selection[index] = selection
        if self.ctx.is_main:
            selection["weights"] = self._export(config, network, objective.n_outputs, fold,
                                                run_dir, selection["threshold"])
            if probe is not None:
                atomic_write_json(run_dir / RIDGE_FILE, {**probe.to_dict(),
                                                         "init": absolute_init(config.init),
                                                         "model": config.model,
                                                         "weights": MODEL_DIR})
            atomic_write_json(saved, {"selection": selection, "init": self.init_info,
                                      "predictions": predictions.to_dict()})
            # The fold is finished and its selected weights exported; the training checkpoints
            # (optimizer state included) only served selection and resuming.
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        return predictions

    def _train(self, config: FinetuneJobConfig, network: TaskNetwork,
               objective: SupervisedObjective, run_dir: Path, train: np.ndarray, val: np.ndarray
               ) -> dict[str, Any]:
        """Train with the engine's Trainer and load the selected epoch; its selection record."""
        layer_of, depth = layer_decay_groups(network) if config.optim.layer_decay else (None, None)
        trainer = Trainer(
            objective, config, run_dir,
            train_data=Subset(self.dataset, train.tolist()),
            val_data=Subset(self.dataset, val.tolist()) if val.size else None,
            collate_fn=self.dataset.collate,
            evaluate=ValidationScore(self.task.primary_metric),
            layer_id=layer_of, num_layers=depth, ctx=self.ctx,
        )
        attach_to_trainer(network, trainer, config)
        resume = self.resume and bool(CheckpointManager(run_dir / "checkpoints").periodic())
        if not resume and self.ctx.is_main:
            # A fresh fold must not pick up the best.pt of an earlier, abandoned run.
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        dist_utils.barrier(self.ctx)
        result = trainer.fit(resume=resume)
        selection = self._select(objective, result.best_checkpoint, result.step)
        selection["epochs"] = result.epoch
        return selection

    def _fit_probe(self, config: FinetuneJobConfig, network: TaskNetwork, fold: Split,
                   train: np.ndarray, val: np.ndarray) -> RidgeProbe:
        """Fit the ``ridge`` probe on the frozen features and make it the network's head."""
        def features(rows: np.ndarray) -> np.ndarray:
            return pooled_features(network, Subset(self.dataset, rows.tolist()),
                                   config.data.batch_size, self.ctx.device, config.run.precision)

        labels = self.windows.label
        probe = fit_ridge_probe(features(train), labels[train], features(val), labels[val],
                                self.task.n_classes, self.task.primary_metric,
                                config.ridge.c_grid, config.class_weight == "balanced",
                                config.ridge.max_iter, where=f"fold {fold.name}")
        head = network.base.head
        if not isinstance(head, nn.Linear):
            raise ConfigError(f"--mode ridge needs a Linear task head; {network.family} has a "
                              f"{type(head).__name__}")
        weight, bias = probe.head(head.out_features)
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
            head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
        return probe

    def _predict(self, objective: SupervisedObjective, rows: np.ndarray) -> np.ndarray:
        config = self.config
        return predict(objective, Subset(self.dataset, rows.tolist()), config.data.batch_size,
                       self.ctx.device, config.run.precision, self.dataset.collate)

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
        a peft mode, ``adapter/`` (adapters and head only), with the sequence context if any
        (:func:`~neurofm.tasks.backbones.load_task_network` reloads either). Returns the folder
        name."""
        description = {"init": absolute_init(config.init), "model": config.model,
                       "model_overrides": dict(config.model_overrides), "mode": config.mode,
                       "n_outputs": n_outputs, "task": self.task.name,
                       "class_names": list(self.task.class_names), "fold": fold.name,
                       "seed": config.run.seed, "decision_threshold": threshold,
                       "class_weight": config.class_weight}
        if config.mode in ADAPTER_MODES:
            save_adapters(network, run_dir / ADAPTER_DIR, description)
            return ADAPTER_DIR
        save_model(network, run_dir / MODEL_DIR, config.model, description)
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
