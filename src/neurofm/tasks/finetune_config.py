"""The configuration of a fine-tuning job: what to tune on, from which weights, how, and the
recipe defaults per model family (METHODS.md §5 for LaBraM, §6.4 for Neuro-BERT)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from neurofm.engine.config import (
    FinetuneConfig,
    load_config,
    merge_nested,
    to_dict,
)
from neurofm.errors import ConfigError
from neurofm.models.registry import backbone_class
from neurofm.tasks.definitions import Task, get_task
from neurofm.tasks.imbalance import CLASS_WEIGHTINGS, THRESHOLD_RULES

Mode = Literal["full", "linear", "lora"]
#: Stands for the fold's position in a per-fold ``init`` path.
FOLD_PLACEHOLDER = "{fold}"


@dataclass
class LoraSettings:
    """LoRA adapters (peft): rank ``r``, scaling ``alpha / r``, dropout on the adapter input, and
    the Linear layers they wrap (comma-separated name suffixes; empty: the backbone's own
    :attr:`~neurofm.models.backbone.Backbone.lora_target_modules`)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: str = ""

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

    @classmethod
    def recipe(cls, chosen: Mapping[str, Any]) -> dict[str, Any]:
        """The model's recipe (:func:`finetune_recipe`); binary tasks get no label smoothing (one
        logit and BCE, METHODS.md §5); when the number of epochs is set but the warm-up is not,
        the warm-up keeps the recipe's fraction of the run."""
        recipe = finetune_recipe(str(chosen.get("model") or cls.model))
        task_name = chosen.get("task_name")
        if task_name and get_task(str(task_name)).n_classes == 2:
            recipe["label_smoothing"] = 0.0
        optim = chosen.get("optim", {})
        if "epochs" in optim and "warmup_epochs" not in optim:
            fraction = recipe["optim"]["warmup_epochs"] / recipe["optim"]["epochs"]
            recipe["optim"]["warmup_epochs"] = fraction * float(optim["epochs"])
        return recipe

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
            if lora.r < 1 or lora.alpha <= 0 or not 0.0 <= lora.dropout < 1.0:
                raise ConfigError(f"config option lora needs r >= 1, alpha > 0 and dropout in "
                                  f"[0, 1); got {lora}")


#: What one named size changes on top of its family's fine-tuning recipe.
_MODEL_RECIPES: dict[str, dict[str, Any]] = {"labram_huge": {"drop_path": 0.2}}


def finetune_recipe(model: str) -> dict[str, Any]:
    """Recipe defaults for a registered model name, as nested config values.

    The engine's fine-tuning defaults for the model (METHODS.md §5: AdamW, lr 5e-4, layer-wise
    decay 0.65 for Base; Large and Huge 30 epochs with 3 of warm-up and decay 0.8), then its
    family's recipe (:attr:`~neurofm.models.backbone.Backbone.finetune_recipe`: LaBraM drop path
    0.1; Neuro-BERT §6.4 lr 3e-4, 40 epochs with 2 of warm-up, plain cross-entropy, no layer decay
    or drop path), then what the named size changes (Huge: drop path 0.2). For all: model
    selection by the validation score (``val/score``, maximised) and one periodic checkpoint kept
    per fold.
    """
    family = backbone_class(model)
    if family is None:
        raise ConfigError(f"no fine-tuning recipe for model {model!r}: it holds no fine-tunable "
                          "backbone (a tokenizer?); use a backbone such as labram_base or "
                          "neurobert_small")
    engine = to_dict(load_config(FinetuneConfig, base={"model": model}))
    recipe = merge_nested(to_dict(FinetuneJobConfig()), engine)
    recipe = merge_nested(recipe, {"run": {"monitor": "val/score", "monitor_mode": "max",
                                           "keep_last": 1}})
    recipe = merge_nested(recipe, family.finetune_recipe)
    return merge_nested(recipe, _MODEL_RECIPES.get(model, {}))


def load_finetune_config(yaml_path: str | Path | None = None, overrides: Sequence[str] = (),
                         flags: Mapping[str, Any] | None = None) -> FinetuneJobConfig:
    """The job config from the one loader, :func:`neurofm.engine.config.load_config`: the model's
    recipe (:meth:`FinetuneJobConfig.recipe`), then a YAML file, then ``flags`` (values of
    dedicated command-line options: ``task_name``, ``init``, ``mode``, ``model``,
    ``optim.epochs``...; None values are ignored), then ``key=value`` overrides."""
    return load_config(FinetuneJobConfig, yaml_path, overrides, flags)
