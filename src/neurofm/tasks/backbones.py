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

With a sequence context (``context.epochs`` K > 1, :class:`EpochContext`) each prediction sees the
backbone's pooled features of K windows of one recording centred on the window it scores: the
batch then holds ``signal [B, K, C, T]`` and ``context_mask [B, K]``, the backbone embeds the B*K
windows in one call and a small transformer over the K feature vectors gives the head its input.
A fine-tuned folder records the context and keeps its weights beside the backbone's
(:data:`CONTEXT_WEIGHTS`); :func:`load_task_network` rebuilds the whole network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from neurofm.atomic import atomic_path, atomic_write_json
from neurofm.errors import CheckpointError, ConfigError
from neurofm.loading import (
    ADAPTER_SIDECAR,
    OFFICIAL_PREFIX,
    build_backbone,
    from_pretrained,
    init_path,
)
from neurofm.models.backbone import Backbone, load_state_strict, unwrap
from neurofm.models.saved import read_saved_config, save_pretrained, sha256_of
from neurofm.objectives.classification import head_size, target_kind

if TYPE_CHECKING:
    from peft import PeftConfig

    from neurofm.engine.trainer import Trainer
    from neurofm.tasks.definitions import Task
    from neurofm.tasks.finetune_config import (
        AdaLoraSettings,
        ContextSettings,
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
#: The sequence context's weights in a fine-tuned ``model/`` or ``adapter/`` folder.
CONTEXT_WEIGHTS = "context.safetensors"


class EpochContext(nn.Module):
    """The sequence head: K pooled feature vectors ``[B, K, D]`` of neighbouring windows (a
    mask ``[B, K]`` says which exist) -> the centre window's head input ``[B, D]``.

    The features are projected to ``settings.width`` (0: D), given a learned position embedding
    and passed through a pre-norm transformer encoder (masked positions are never attended to);
    the centre output, normalised and projected back to D, is added to the centre window's own
    features. The back projection starts at zero, so an untrained context leaves the backbone's
    prediction of the window alone unchanged.
    """

    def __init__(self, dim: int, settings: ContextSettings) -> None:
        super().__init__()
        width = settings.width or dim
        if width % settings.heads:
            raise ConfigError(f"config option context.heads={settings.heads} does not divide the "
                              f"context width {width} (the backbone's width when context.width "
                              "is 0); set context.heads or context.width")
        self.settings = settings
        self.epochs = settings.epochs
        self.project = nn.Linear(dim, width)
        # Not "pos_embed": the layer-wise lr decay would count that as the backbone's input side.
        self.position = nn.Parameter(torch.zeros(settings.epochs, width))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(width, settings.heads, 2 * width, settings.dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, settings.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        centre = self.epochs // 2
        hidden = self.encoder(self.project(features) + self.position,
                              src_key_padding_mask=~mask)
        return features[:, centre] + self.out(self.norm(hidden[:, centre]))


class TaskNetwork(nn.Module):
    """Backbone (with its task head) over the batch dictionary.

    ``forward(batch) -> [B, n_outputs]`` head outputs; :meth:`features` gives the pooled features
    ``[B, D]``. The batch holds ``signal [B, C, T]`` (float32, the corpus unit),
    ``channel_index [B, C]`` (LaBraM vocabulary indices) and optionally ``channel_mask [B, C]``;
    each backbone takes what it needs of it.

    With ``frozen_backbone`` (linear probing) everything but the head stays in eval mode while
    training, so dropout and drop path do not perturb the frozen features.

    With ``context`` (:class:`EpochContext`, K windows), the batch holds ``signal [B, K, C, T]``
    and ``context_mask [B, K]`` (``channel_index`` and ``channel_mask`` stay ``[B, C]``), as
    :func:`neurofm.tasks.fold_training.collate_context_windows` batches them; the existing
    windows are embedded in one backbone call and the context's output goes to the head. The
    context trains in every mode.
    """

    def __init__(self, backbone: nn.Module, frozen_backbone: bool = False,
                 context: EpochContext | None = None) -> None:
        super().__init__()
        base = unwrap(backbone)
        if not isinstance(base, Backbone):
            raise ConfigError(f"a {type(base).__name__} is not a fine-tunable backbone; use a "
                              "registered backbone (neurofm.models.registry.list_models())")
        self.backbone = backbone
        self.family = base.family
        self.frozen_backbone = frozen_backbone
        self.context = context

    @property
    def context_epochs(self) -> int:
        """K, the windows each prediction sees (1: the window alone)."""
        return self.context.epochs if self.context is not None else 1

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
        if self.context is None:
            return self.base.classify(batch)
        return self.base.head(self.features(batch))

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """Pooled features ``[B, D]`` (the head's input; with a context, its output)."""
        if self.context is None:
            return self.base.features(batch)
        signal, mask = batch["signal"], batch.get("context_mask")
        if mask is None or signal.ndim != 4 or tuple(mask.shape) != (*signal.shape[:2],) \
                or signal.shape[1] != self.context.epochs:
            raise ConfigError(
                f"this network sees a context of {self.context.epochs} windows: its batches need "
                f"signal [B, {self.context.epochs}, C, T] and context_mask [B, "
                f"{self.context.epochs}] (neurofm.tasks.fold_training.TaskWindowDataset with "
                f"context rows), got signal {tuple(signal.shape)}")
        # Only the windows that exist are embedded: B*K at most, in one backbone call.
        flat = {key: value[:, None].expand(-1, mask.shape[1], *value.shape[1:])[mask]
                for key, value in batch.items()
                if key in ("channel_index", "channel_mask") and isinstance(value, torch.Tensor)}
        embedded = self.base.features({**flat, "signal": signal[mask]})
        features = embedded.new_zeros((*mask.shape, embedded.shape[-1]))
        features[mask] = embedded
        return self.context(features, mask)

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
    the mode's trainable parameters and, with ``context.epochs`` > 1, a new sequence context
    (:class:`EpochContext`, trainable). Returns it with the init description.
    """
    backbone, info = build_backbone(config.init, config.model, config.model_overrides)
    n_outputs = head_size(target_kind(task.n_classes), task.n_classes)
    backbone = backbone.with_head(n_outputs, config.drop_path)
    backbone.check_input(sfreq, n_times, unit, f"task {task.name!r}", channels)
    info = {**info, "family": backbone.family,
            "architecture": backbone.saved_config()["architecture"]}
    context = (EpochContext(backbone.embed_dim, config.context) if config.context.epochs > 1
               else None)
    section = ADAPTER_SECTIONS.get(config.mode)
    wrapped = apply_mode(backbone, config.mode, getattr(config, section) if section else None)
    return TaskNetwork(wrapped, frozen_backbone=config.mode in ("linear", "ridge"),
                       context=context), info


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
    model, head size, the sequence context), which :func:`neurofm.from_pretrained` reads back;
    a sequence context's weights go to :data:`CONTEXT_WEIGHTS` (:func:`load_task_network`
    rebuilds the whole network).

    AdaLoRA adapters are written at their initial rank with the ranks its budget removed as zeros
    (peft would otherwise cut them to the rank pattern of the run's last step, which need not be
    that of the selected epoch), so that they reload to exactly the network that was scored.
    """
    directory = Path(directory)
    with _unpruned(network.backbone):
        network.backbone.save_pretrained(str(directory))
    atomic_write_json(directory / ADAPTER_SIDECAR,
                      {**description, "context": _save_context(network, directory)})
    return directory


def save_model(network: TaskNetwork, directory: str | Path, model_name: str | None,
               description: Mapping[str, Any]) -> Path:
    """Write the backbone with its head as a neurofm checkpoint folder
    (:func:`~neurofm.models.saved.save_pretrained`, ``description`` and the sequence context
    under ``extra``) and a sequence context's weights as :data:`CONTEXT_WEIGHTS`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    context = _save_context(network, directory)
    return save_pretrained(unwrap(network.backbone), directory, model_name=model_name,
                           extra={**description, "context": context})


def _save_context(network: TaskNetwork, directory: Path) -> dict[str, Any]:
    """Write the context's weights (if any) into ``directory``; what a folder records of it:
    ``epochs`` (1: none) and, with a context, its settings, weights file and their SHA-256."""
    (directory / CONTEXT_WEIGHTS).unlink(missing_ok=True)
    context = network.context
    if context is None:
        return {"epochs": 1}
    tensors = {k: v.detach().contiguous().cpu() for k, v in context.state_dict().items()}
    with atomic_path(directory / CONTEXT_WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
        digest = sha256_of(tmp)
    return {**dataclasses.asdict(context.settings), "weights": CONTEXT_WEIGHTS, "sha256": digest}


def load_task_network(directory: str | Path) -> TaskNetwork:
    """The fine-tuned network a ``finetune`` run exported (its ``model/`` or ``adapter/`` folder),
    in eval mode: the backbone with its head (adapters included) and, when the folder records a
    sequence context, that context with its weights, checked against their SHA-256.

    ``neurofm.from_pretrained`` of such a folder gives the backbone alone, which scores single
    windows; this gives the network that was scored. :class:`CheckpointError` naming the file
    for a context record or weights that do not fit.
    """
    from neurofm.tasks.finetune_config import ContextSettings

    directory = Path(directory)
    model = from_pretrained(directory)
    sidecar = directory / ADAPTER_SIDECAR
    if sidecar.is_file():  # from_pretrained has read and checked it
        description = json.loads(sidecar.read_text(encoding="utf-8"))
    else:
        sidecar = directory / "config.json"
        description = read_saved_config(directory).get("extra") or {}
    record = description.get("context", {"epochs": 1})
    network = TaskNetwork(model)
    try:
        settings = ContextSettings(**{k: v for k, v in record.items()
                                      if k not in ("weights", "sha256")})
        settings.check()
        context = (EpochContext(network.base.embed_dim, settings) if settings.epochs > 1
                   else None)
    except (TypeError, AttributeError, ConfigError) as error:
        raise CheckpointError(f"{sidecar}: its context record {record!r} is not usable "
                              f"({error}); the folder is damaged") from None
    if context is None:
        return network.eval()
    weights = directory / CONTEXT_WEIGHTS
    if not weights.is_file() or sha256_of(weights) != record.get("sha256"):
        raise CheckpointError(f"{weights} is missing or does not match the SHA-256 in {sidecar}: "
                              "the sequence context's weights are lost or were replaced")
    network.context = context
    try:
        state = load_file(str(weights))
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"cannot read {weights}: {error}") from None
    load_state_strict(network.context, state, str(weights))
    return network.eval()


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
