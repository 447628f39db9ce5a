"""The network a fine-tuning job trains: a backbone with a task head, over the batch dictionary.

The backbone comes from :func:`neurofm.loading.build_backbone` (``"scratch"``, an official LaBraM
file, a neurofm checkpoint, a training checkpoint) and is used only through the
:class:`~neurofm.models.backbone.Backbone` interface, whatever its family. The mode says what
trains: everything (``"full"``), the head (``"linear"``: linear probing; ``"ridge"``: the head is
fitted in closed form instead, :mod:`neurofm.tasks.probe`), or peft adapters with the head on the
backbone's :attr:`~neurofm.models.backbone.Backbone.lora_target_modules`: LoRA (``"lora"``),
DoRA (``"dora"``: LoRA with a learned magnitude per output), AdaLoRA (``"adalora"``: SVD-form
LoRA whose ranks are reallocated by importance while training), IA3 (``"ia3"``: learned scales,
on the inputs of the :attr:`~neurofm.models.backbone.Backbone.feedforward_modules`) and OFT
(``"oft"``: block-diagonal orthogonal rotations of the layer inputs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    from peft import PeftConfig

    from neurofm.engine.trainer import Trainer
    from neurofm.tasks.definitions import Task
    from neurofm.tasks.finetune_config import (
        AdaLoraSettings,
        FinetuneJobConfig,
        IA3Settings,
        LoraSettings,
        Mode,
        OFTSettings,
    )

    AdapterSettings = LoraSettings | AdaLoraSettings | IA3Settings | OFTSettings

#: The config section that holds each peft mode's settings.
ADAPTER_SECTIONS = {"lora": "lora", "dora": "lora", "adalora": "adalora", "ia3": "ia3",
                    "oft": "oft"}


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

    def penalty(self) -> torch.Tensor | None:
        """What the mode adds to the training loss (None: nothing): AdaLoRA's orthogonality
        penalty, ``orth_reg_weight`` times the mean over its ``lora_A`` and ``lora_B`` matrices
        ``P`` of ``||P P^T - I||_F`` (``P^T P`` for ``lora_B``), as peft's ``AdaLoraModel.forward``
        adds it to a loss it can see."""
        tuner = _adalora_tuner(self.backbone)
        if tuner is None:
            return None
        adapter = tuner.trainable_adapter_name
        weight = tuner.peft_config[adapter].orth_reg_weight
        terms = []
        for name, parameter in tuner.model.named_parameters():
            if ("lora_A" in name or "lora_B" in name) and adapter in name:
                cov = parameter @ parameter.T if "lora_A" in name else parameter.T @ parameter
                eye = torch.eye(*cov.shape, dtype=cov.dtype, device=cov.device)
                terms.append(torch.linalg.matrix_norm(cov - eye))
        return weight * torch.stack(terms).mean() if terms and weight else None


def layer_decay_groups(network: nn.Module) -> tuple[Callable[[str], int], int]:
    """The engine's layer-wise lr decay hook for ``network`` (a :class:`TaskNetwork` or a
    backbone): ``(layer_id(name), L)``."""
    base = network.base if isinstance(network, TaskNetwork) else unwrap(network)
    if not isinstance(base, Backbone):
        raise ConfigError(f"layer-wise lr decay needs a backbone, not a {type(base).__name__}")
    return base.layer_id, base.num_layers


def apply_mode(backbone: Backbone, mode: Mode, settings: AdapterSettings | None = None
               ) -> nn.Module:
    """Set what trains: everything (``full``), the head (``linear``, and ``ridge``, whose head is
    fitted rather than trained), or a peft mode's adapters and the head (returns peft's
    ``PeftModel`` wrapping ``backbone``; ``settings`` of that mode, its defaults when None; the
    target modules default to the backbone's own)."""
    if mode == "full":
        for parameter in backbone.parameters():
            parameter.requires_grad_(True)
        return backbone
    if mode in ("linear", "ridge"):
        for name, parameter in backbone.named_parameters():
            parameter.requires_grad_(name.startswith("head."))
        return backbone
    if mode not in ADAPTER_SECTIONS:
        raise ConfigError(f"unknown mode {mode!r}; use full, linear, ridge or one of "
                          f"{', '.join(ADAPTER_SECTIONS)}")
    from peft import get_peft_model

    section = ADAPTER_SECTIONS[mode]
    build, named = _peft_config(backbone, mode, settings)
    try:
        return get_peft_model(backbone, build())
    except ValueError as error:
        raise ConfigError(f"config option {section}.{named}: {error}") from None


def _peft_config(backbone: Backbone, mode: str, settings: AdapterSettings | None
                 ) -> tuple[Callable[[], PeftConfig], str]:
    """What builds peft's config for ``mode`` (peft checks its values as it builds it), and the
    options that name its modules (for errors)."""
    from peft import AdaLoraConfig, IA3Config, LoraConfig, OFTConfig

    from neurofm.tasks.finetune_config import (
        AdaLoraSettings,
        IA3Settings,
        LoraSettings,
        OFTSettings,
    )

    default = list(backbone.lora_target_modules)
    common: dict[str, Any] = {"modules_to_save": ["head"]}
    if mode in ("lora", "dora"):
        lora = settings if isinstance(settings, LoraSettings) else LoraSettings()
        return lambda: LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=lora.targets() or default, use_dora=mode == "dora", **common
        ), f"target_modules={lora.target_modules!r}"
    if mode == "adalora":
        ada = settings if isinstance(settings, AdaLoraSettings) else AdaLoraSettings()
        # The run's length is known once its trainer exists (attach_to_trainer sets it).
        return lambda: AdaLoraConfig(
            init_r=ada.init_r, target_r=ada.target_r, lora_alpha=ada.alpha,
            lora_dropout=ada.dropout, deltaT=ada.delta_t, orth_reg_weight=ada.orth_reg_weight,
            total_step=1, target_modules=ada.targets() or default, **common
        ), f"target_modules={ada.target_modules!r}"
    if mode == "ia3":
        ia3 = settings if isinstance(settings, IA3Settings) else IA3Settings()
        return lambda: IA3Config(
            target_modules=ia3.targets() or default,
            feedforward_modules=ia3.feedforward() or list(backbone.feedforward_modules), **common
        ), (f"target_modules={ia3.target_modules!r} / feedforward_modules="
            f"{ia3.feedforward_modules!r}")
    oft = settings if isinstance(settings, OFTSettings) else OFTSettings()
    return lambda: OFTConfig(
        r=0, oft_block_size=oft.block_size, module_dropout=oft.dropout,
        target_modules=oft.targets() or default, **common
    ), f"target_modules={oft.target_modules!r}"


def _adalora_tuner(model: nn.Module) -> Any:
    """peft's ``AdaLoraModel`` inside ``model`` (a ``PeftModel``), or None."""
    tuner = getattr(model, "base_model", None)
    return tuner if type(tuner).__name__ == "AdaLoraModel" else None


def attach_to_trainer(network: TaskNetwork, trainer: Trainer, config: FinetuneJobConfig) -> None:
    """What a mode needs from the trainer that will run it, before it runs.

    AdaLoRA: its budget schedule gets the run's optimizer step count (``trainer.total_steps``,
    with ``adalora.initial_fraction`` and ``final_fraction`` of it as peft's ``tinit`` and
    ``tfinal``), and its ``update_and_allocate(step)`` (importance scores from the gradients, then
    the budget mask) runs after every optimizer update and before the gradients are cleared, as
    peft requires: a step hook on the trainer's torch optimizer, so the engine knows nothing of
    peft. A step the trainer skips (non-finite loss) updates nothing and calls nothing. The
    importance averages are not in the engine's checkpoints: a resumed AdaLoRA fold restarts them.
    Other modes: nothing.
    """
    tuner = _adalora_tuner(network.backbone)
    if tuner is None:
        return
    tinit, tfinal = config.adalora.schedule(trainer.total_steps)
    peft_config = tuner.peft_config[tuner.trainable_adapter_name]
    peft_config.total_step, peft_config.tinit, peft_config.tfinal = (trainer.total_steps, tinit,
                                                                     tfinal)

    def allocate(*_: Any) -> None:
        # trainer.step counts the updates before this one: peft's 0-based global step.
        tuner.update_and_allocate(trainer.step)

    trainer.optimizer.register_step_post_hook(allocate)


def parameter_counts(network: nn.Module) -> dict[str, int]:
    """``trainable`` (``requires_grad``) and ``total`` parameter counts of ``network``."""
    parameters = list(network.parameters())
    return {"trainable": sum(p.numel() for p in parameters if p.requires_grad),
            "total": sum(p.numel() for p in parameters)}


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
    section = ADAPTER_SECTIONS.get(config.mode)
    wrapped = apply_mode(backbone, config.mode, getattr(config, section) if section else None)
    return TaskNetwork(wrapped, frozen_backbone=config.mode in ("linear", "ridge")), info


def absolute_init(init: str) -> str:
    """``init`` with its path made absolute (``"scratch"`` unchanged), so that a record of it
    stays valid from any working directory."""
    if init == "scratch":
        return init
    official, path = init_path(init)
    return (OFFICIAL_PREFIX if official else "") + str(path.resolve())


def save_adapters(network: TaskNetwork, directory: str | Path, description: Mapping[str, Any]
                  ) -> Path:
    """Write a peft mode's adapters and the head (peft's ``adapter_model.safetensors`` and
    ``adapter_config.json``, which names the peft type) plus ``neurofm_adapter.json`` (base init,
    model, head size), which :func:`neurofm.from_pretrained` reads back.

    AdaLoRA adapters are written at their initial rank with the ranks its budget removed as zeros
    (peft would otherwise cut them to the rank pattern of the run's last step, which need not be
    that of the selected epoch), so that they reload to exactly the network that was scored.
    """
    directory = Path(directory)
    with _unpruned(network.backbone):
        network.backbone.save_pretrained(str(directory))
    atomic_write_json(directory / ADAPTER_SIDECAR, dict(description))
    return directory


@contextlib.contextmanager
def _unpruned(model: nn.Module) -> Iterator[None]:
    tuner = _adalora_tuner(model)
    if tuner is None:
        yield
        return
    peft_config = tuner.peft_config[tuner.trainable_adapter_name]
    pattern, peft_config.rank_pattern = peft_config.rank_pattern, None
    try:
        yield
    finally:
        peft_config.rank_pattern = pattern
