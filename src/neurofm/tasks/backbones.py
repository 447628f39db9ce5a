"""The network a fine-tuning job trains: a backbone with a task head, over the batch dictionary.

The backbone comes from :func:`neurofm.loading.build_backbone` (``"scratch"``, an official LaBraM
file, a neurofm checkpoint, a training checkpoint) and is used only through the
:class:`~neurofm.models.backbone.Backbone` interface, whatever its family. The mode says what
trains: everything (``"full"``), the head (``"linear"``: linear probing), or peft's LoRA adapters
on the backbone's :attr:`~neurofm.models.backbone.Backbone.lora_target_modules` with the head
(``"lora"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from neurofm.atomic import atomic_write_json
from neurofm.errors import ConfigError
from neurofm.loading import ADAPTER_SIDECAR, OFFICIAL_PREFIX, build_backbone, init_path
from neurofm.models.backbone import Backbone, unwrap
from neurofm.objectives.classification import head_size, target_kind

if TYPE_CHECKING:
    from neurofm.tasks.definitions import Task
    from neurofm.tasks.finetune_config import FinetuneJobConfig, LoraSettings, Mode


class TaskNetwork(nn.Module):
    """Backbone (with its task head) over the batch dictionary.

    ``forward(batch) -> [B, n_outputs]`` head outputs; :meth:`features` gives the pooled features
    ``[B, D]``. The batch holds ``signal [B, C, T]`` (float32, the corpus unit),
    ``channel_index [B, C]`` (LaBraM vocabulary indices) and optionally ``channel_mask [B, C]``;
    each backbone takes what it needs of it.

    With ``frozen_backbone`` (linear probing) everything but the head stays in eval mode while
    training, so dropout and drop path do not perturb the frozen features.
    """

    def __init__(self, backbone: nn.Module, frozen_backbone: bool = False) -> None:
        super().__init__()
        base = unwrap(backbone)
        if not isinstance(base, Backbone):
            raise ConfigError(f"a {type(base).__name__} is not a fine-tunable backbone; use a "
                              "registered backbone (neurofm.models.registry.list_models())")
        self.backbone = backbone
        self.family = base.family
        self.frozen_backbone = frozen_backbone

    @property
    def base(self) -> Backbone:
        """The backbone itself (inside any peft wrapper; its modules carry the adapters)."""
        base = unwrap(self.backbone)
        assert isinstance(base, Backbone)  # checked in __init__
        return base

    def train(self, mode: bool = True) -> TaskNetwork:
        super().train(mode)
        if self.frozen_backbone:
            base = self.base
            base.eval()
            base.head.train(mode)
        return self

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.base.classify(batch)

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """Pooled features ``[B, D]`` (the head's input)."""
        return self.base.features(batch)


def layer_decay_groups(network: nn.Module) -> tuple[Callable[[str], int], int]:
    """The engine's layer-wise lr decay hook for ``network`` (a :class:`TaskNetwork` or a
    backbone): ``(layer_id(name), L)``."""
    base = network.base if isinstance(network, TaskNetwork) else unwrap(network)
    if not isinstance(base, Backbone):
        raise ConfigError(f"layer-wise lr decay needs a backbone, not a {type(base).__name__}")
    return base.layer_id, base.num_layers


def apply_mode(backbone: Backbone, mode: Mode, lora: LoraSettings | None = None) -> nn.Module:
    """Set what trains: everything (``full``), the head (``linear``), or LoRA adapters and the
    head (``lora``, returns peft's ``PeftModel`` wrapping ``backbone``; the target modules default
    to the backbone's own)."""
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

        from neurofm.tasks.finetune_config import LoraSettings

        settings = lora or LoraSettings()
        targets = settings.targets() or list(backbone.lora_target_modules)
        config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                            target_modules=targets, modules_to_save=["head"])
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
    backbone = backbone.with_head(n_outputs, config.drop_path)
    backbone.check_input(sfreq, n_times, unit, f"task {task.name!r}", channels)
    info = {**info, "family": backbone.family,
            "architecture": backbone.saved_config()["architecture"]}
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
    ``adapter_config.json``) plus ``neurofm_adapter.json`` (base init, model, head size), which
    :func:`neurofm.from_pretrained` reads back."""
    directory = Path(directory)
    network.backbone.save_pretrained(str(directory))
    atomic_write_json(directory / ADAPTER_SIDECAR, dict(description))
    return directory
