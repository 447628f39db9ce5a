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

Mode = Literal["full", "linear", "lora", "dora", "adalora", "ia3", "oft", "ridge"]
#: The modes that train peft adapters (saved as an ``adapter/`` folder).
ADAPTER_MODES: tuple[str, ...] = ("lora", "dora", "adalora", "ia3", "oft")
#: Stands for the fold's position in a per-fold ``init`` path.
FOLD_PLACEHOLDER = "{fold}"


def _module_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@dataclass
class AdapterTargets:
    """The Linear layers a peft mode adapts: comma-separated name suffixes in ``target_modules``;
    empty: the backbone's own :attr:`~neurofm.models.backbone.Backbone.lora_target_modules`."""

    target_modules: str = ""

    def targets(self) -> list[str]:
        """The target module suffixes as a list (empty: the backbone's own)."""
        return _module_list(self.target_modules)


@dataclass
class LoraSettings(AdapterTargets):
    """LoRA adapters (peft; also DoRA's, ``mode="dora"``): rank ``r``, scaling ``alpha / r``,
    dropout on the adapter input, and the Linear layers they wrap (comma-separated name suffixes;
    empty: the backbone's own :attr:`~neurofm.models.backbone.Backbone.lora_target_modules`)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0

    def check(self, section: str = "lora") -> None:
        """:class:`ConfigError` naming ``section`` unless the values are usable."""
        if self.r < 1 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"config option {section} needs r >= 1, alpha > 0 and dropout in "
                              f"[0, 1); got {self}")


@dataclass
class AdaLoraSettings(AdapterTargets):
    """AdaLoRA (peft's ``AdaLoraConfig``): SVD-form adapters that start at rank ``init_r`` and
    whose total rank budget shrinks to ``target_r`` per layer on average, by importance.

    The schedule is in fractions of the fold's optimizer steps: the first ``initial_fraction``
    keeps the full budget (peft's ``tinit``), the budget then falls until the last
    ``final_fraction`` (``tfinal``), which trains the ranks it left; it is reallocated every
    ``delta_t`` steps. ``orth_reg_weight`` weighs the orthogonality penalty on the singular
    vectors, added to the training loss.
    """

    init_r: int = 12
    target_r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    initial_fraction: float = 0.1
    final_fraction: float = 0.2
    delta_t: int = 1
    orth_reg_weight: float = 0.5

    def check(self) -> None:
        """:class:`ConfigError` naming the option unless the values are usable."""
        if not 1 <= self.target_r <= self.init_r:
            raise ConfigError(f"config option adalora needs 1 <= target_r <= init_r; got "
                              f"target_r={self.target_r}, init_r={self.init_r}")
        if self.alpha <= 0 or not 0.0 <= self.dropout < 1.0 or self.delta_t < 1:
            raise ConfigError(f"config option adalora needs alpha > 0, dropout in [0, 1) and "
                              f"delta_t >= 1; got {self}")
        if (min(self.initial_fraction, self.final_fraction) < 0
                or self.initial_fraction + self.final_fraction >= 1.0):
            raise ConfigError("config options adalora.initial_fraction and adalora.final_fraction "
                              "must be >= 0 and leave part of the run for the budget phase (sum "
                              f"< 1); got {self.initial_fraction} and {self.final_fraction}")
        if self.orth_reg_weight < 0:
            raise ConfigError(f"config option adalora.orth_reg_weight must be >= 0, got "
                              f"{self.orth_reg_weight}")

    def schedule(self, total_steps: int) -> tuple[int, int]:
        """peft's ``(tinit, tfinal)`` in steps for a run of ``total_steps``; :class:`ConfigError`
        when the run is too short to leave a budget phase."""
        tinit = round(self.initial_fraction * total_steps)
        tfinal = round(self.final_fraction * total_steps)
        if tinit >= total_steps - tfinal:
            raise ConfigError(f"--mode adalora: a run of {total_steps} optimizer steps leaves no "
                              f"budget phase between {tinit} initial and {tfinal} final steps; "
                              "train longer (--epochs, run.max_steps) or lower "
                              "adalora.initial_fraction / adalora.final_fraction")
        return tinit, tfinal


@dataclass
class IA3Settings(AdapterTargets):
    """IA3 (peft's ``IA3Config``): learned scales of the outputs of ``target_modules`` and of the
    inputs of ``feedforward_modules`` (a subset of them); empty: the backbone's own
    :attr:`~neurofm.models.backbone.Backbone.lora_target_modules` and
    :attr:`~neurofm.models.backbone.Backbone.feedforward_modules`."""

    feedforward_modules: str = ""

    def feedforward(self) -> list[str]:
        return _module_list(self.feedforward_modules)


@dataclass
class OFTSettings(AdapterTargets):
    """OFT (peft's ``OFTConfig``): a block-diagonal orthogonal rotation of each target layer's
    input, blocks of ``block_size`` (peft moves it to the nearest divisor of a layer's input width,
    with a warning), blocks dropped to the identity with probability ``dropout`` while training;
    ``target_modules`` as for LoRA."""

    block_size: int = 32
    dropout: float = 0.0

    def check(self) -> None:
        if self.block_size < 1 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"config option oft needs block_size >= 1 and dropout in [0, 1); "
                              f"got {self}")


@dataclass
class RidgeSettings:
    """The ``ridge`` probe: an L2-penalised (ridge) logistic regression (scikit-learn) on the
    frozen backbone's standardised pooled features, one fit per inverse penalty ``C`` of
    ``c_grid``; the ``C`` whose validation windows score best on the task's primary metric is
    kept (ties: the smaller ``C``; no defined validation score: ``C = 1``)."""

    c_grid: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0])
    max_iter: int = 2000

    def check(self) -> None:
        if not self.c_grid or any(c <= 0 for c in self.c_grid) or self.max_iter < 1:
            raise ConfigError(f"config option ridge needs a non-empty c_grid of values > 0 and "
                              f"max_iter >= 1; got {self}")


@dataclass
class ContextSettings:
    """Sequence context (:class:`neurofm.tasks.backbones.EpochContext`): each window is classified
    from the backbone's pooled features of itself and its neighbours, ``epochs`` windows of the
    same recording centred on it (odd; 1: no context, the window alone). The neighbours are the
    windows one stride apart; where there is none (a recording's edge, a window the labelling
    dropped) the position is masked. The head is a small transformer encoder over the ``epochs``
    feature vectors (projected to ``width``, 0: the backbone's own width D; a learned position
    embedding, ``layers`` layers of ``heads`` heads, ``dropout``); its centre output, projected
    back and added to the centre window's own features, goes to the backbone's head."""

    epochs: int = 1
    width: int = 0
    layers: int = 1
    heads: int = 4
    dropout: float = 0.1

    def check(self) -> None:
        """:class:`ConfigError` naming the option unless the values are usable."""
        if self.epochs < 1 or self.epochs % 2 == 0:
            raise ConfigError(f"config option context.epochs must be an odd number >= 1 (the "
                              f"window and as many neighbours on either side; 1: no context), "
                              f"got {self.epochs!r}")
        if self.width < 0 or self.layers < 1 or self.heads < 1 or self.width % self.heads:
            raise ConfigError(f"config option context needs width >= 0 (0: the backbone's), "
                              f"layers and heads >= 1, and a width divisible by heads; got "
                              f"width={self.width}, layers={self.layers}, heads={self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"config option context.dropout must lie in [0, 1), got "
                              f"{self.dropout}")


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
        mode: ``"full"`` fine-tuning, ``"linear"`` probing (frozen backbone), peft adapters
            with the head (``"lora"``, ``"dora"``, ``"adalora"``, ``"ia3"``, ``"oft"``) or the
            closed-form ``"ridge"`` probe (no gradient training).
        drop_path: stochastic-depth rate of the last block (linearly spaced from 0 over depth).
        lora: the LoRA adapters (``mode="lora"`` and ``"dora"``).
        adalora, ia3, oft, ridge: the settings of those modes.
        context: the sequence context (``context.epochs``: windows of the same recording
            around each one that its prediction sees; 1, the default, is none).
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
    adalora: AdaLoraSettings = field(default_factory=AdaLoraSettings)
    ia3: IA3Settings = field(default_factory=IA3Settings)
    oft: OFTSettings = field(default_factory=OFTSettings)
    ridge: RidgeSettings = field(default_factory=RidgeSettings)
    context: ContextSettings = field(default_factory=ContextSettings)
    class_weight: str = "balanced"
    threshold: str = "validation"

    @classmethod
    def recipe(cls, chosen: Mapping[str, Any]) -> dict[str, Any]:
        """The model's recipe (:func:`finetune_recipe`); binary tasks get no label smoothing (one
        logit and BCE, METHODS.md §5); when the number of epochs is set but the warm-up is not,
        the warm-up keeps the recipe's fraction of the run. IA3 gets no weight decay: its scales
        start at 1, and AdamW's decoupled decay would pull them towards 0."""
        recipe = finetune_recipe(str(chosen.get("model") or cls.model))
        task_name = chosen.get("task_name")
        if task_name and get_task(str(task_name)).n_classes == 2:
            recipe["label_smoothing"] = 0.0
        optim = chosen.get("optim", {})
        if "epochs" in optim and "warmup_epochs" not in optim:
            fraction = recipe["optim"]["warmup_epochs"] / recipe["optim"]["epochs"]
            recipe["optim"]["warmup_epochs"] = fraction * float(optim["epochs"])
        if chosen.get("mode") == "ia3":
            recipe["optim"]["weight_decay"] = 0.0
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
        if self.mode in (*ADAPTER_MODES, "ridge") and self.init == "scratch":
            raise ConfigError(f"--mode {self.mode} adapts pretrained weights, but with --init "
                              "scratch the frozen base would be random; use --mode full for a "
                              "from-scratch comparison")
        checks = {"lora": self.lora.check, "dora": lambda: self.lora.check("lora (dora)"),
                  "adalora": self.adalora.check, "oft": self.oft.check, "ridge": self.ridge.check}
        if self.mode in checks:
            checks[self.mode]()
        self.context.check()
        if self.context.epochs > 1 and self.mode == "ridge":
            raise ConfigError(f"context.epochs={self.context.epochs} trains a sequence head, but "
                              "--mode ridge fits the head in closed form on single windows; use "
                              "--mode linear (frozen backbone, the sequence head and head train) "
                              "or context.epochs=1")
        if self.context.epochs > 1 and task.window.event_offset_seconds is not None:
            raise ConfigError(f"context.epochs={self.context.epochs}: task {task.name!r} cuts one "
                              "window per event, which has no neighbouring windows; sequence "
                              "context needs windows that tile the recording")

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
