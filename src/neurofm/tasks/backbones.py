"""Backbones for downstream use: where their weights come from and how a batch goes through them.

A downstream model is a LaBraM (:class:`~neurofm.models.labram.Labram`) or Neuro-BERT
(:class:`~neurofm.models.neurobert.NeuroBert`) backbone with a task head. Its weights come from
one of four sources, named by an *init* string:

- ``"scratch"``: the registered architecture, randomly initialised (the comparison without
  pretraining);
- ``"official:PATH"`` (or any other ``.pth`` file): an official LaBraM checkpoint, read by the
  strict loader :func:`neurofm.models.checkpoints.load_labram_checkpoint` (``student.*`` of
  ``labram-base.pth``; mask token, final norm and heads dropped as the official fine-tuning
  script does);
- a folder: neurofm's own format (``model.safetensors`` + ``config.json``), see
  :func:`neurofm.models.checkpoints.load_pretrained`;
- a training checkpoint of the engine (``run/checkpoints/best.pt`` with its ``.json`` sidecar), from
  ``neurofm pretrain`` (masked-EEG modelling, FIP) or ``neurofm finetune``; the encoder is taken
  from the objective's state and rebuilt from the registered name the run recorded.

:class:`TaskNetwork` feeds the batch dictionary (``signal``, ``channel_index``, ``channel_mask``)
to the backbone, whatever its family, and keeps a frozen backbone in eval mode (linear probing).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from neurofm.channels import vocabulary_indices
from neurofm.engine.checkpointing import checkpoint_meta
from neurofm.errors import CheckpointError, ConfigError
from neurofm.models.checkpoints import (
    backbone_from_masked_model,
    load_labram_checkpoint,
    load_pretrained,
)
from neurofm.models.labram import MAX_PATCHES, PATCH_SIZE, SAMPLING_RATE, Labram
from neurofm.models.labram_pretrain import LabramForMaskedEEG
from neurofm.models.neurobert import NeuroBert
from neurofm.models.registry import create_model

Family = Literal["labram", "neurobert"]
_log = logging.getLogger(__name__)

# METHODS.md §5: these parameters share layer id 0 (the input side) for layer-wise lr decay.
_INPUT_SIDE_MODULES = re.compile(r"(?:^|\.)(patch_embed|channel_embed)\.")
_INPUT_SIDE_TENSORS = re.compile(r"(?:^|\.)(cls_token|pos_embed|mask_token)$")
_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


#: Marks an init string that names an official LaBraM ``.pth`` file.
OFFICIAL_PREFIX = "official:"


def unwrap(model: nn.Module) -> nn.Module:
    """The backbone inside a peft wrapper (``PeftModel``), or ``model`` itself."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def family_of(model: nn.Module) -> Family:
    """``"labram"`` or ``"neurobert"``; :class:`ConfigError` for anything else."""
    base = unwrap(model)
    if isinstance(base, Labram):
        return "labram"
    if isinstance(base, NeuroBert):
        return "neurobert"
    raise ConfigError(f"a {type(base).__name__} is not a fine-tunable backbone; use a LaBraM or "
                      "Neuro-BERT model (neurofm.models.registry.list_models())")


def as_backbone(module: nn.Module, source: str) -> nn.Module:
    """The fine-tuning backbone of a loaded network.

    A masked-EEG-modelling network gives its student transformer as a mean-pooling :class:`Labram`
    (mask token and final norm dropped, fc_norm newly initialised, as the official fine-tuning
    script); LaBraM and Neuro-BERT backbones are returned as they are.
    """
    if isinstance(module, (Labram, NeuroBert)):
        return module
    if isinstance(module, LabramForMaskedEEG):
        return backbone_from_masked_model(module).train()
    raise CheckpointError(f"{source} holds a {type(module).__name__}, not a LaBraM or Neuro-BERT "
                          "backbone (a VQ-NSP tokenizer cannot be fine-tuned)")


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str,
                  newly_initialised: tuple[str, ...] = ("head.",)) -> None:
    """Copy ``state`` into ``model``, accounting for every key.

    Keys starting with ``newly_initialised`` may be absent from (or extra in) ``state``; any other
    missing, unexpected or mis-shaped key raises :class:`CheckpointError` naming them all.
    """
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state and not k.startswith(newly_initialised))
    unexpected = sorted(k for k in state
                        if k not in expected and not k.startswith(newly_initialised))
    wrong = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                   for k in state if k in expected and state[k].shape != expected[k].shape
                   and not k.startswith(newly_initialised))
    if missing or unexpected or wrong:
        problems = [f"{label}: {', '.join(keys[:12])}{' ...' if len(keys) > 12 else ''}"
                    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                        ("shape mismatches", wrong)) if keys]
        raise CheckpointError(f"{source} does not match {type(model).__name__}: "
                              f"{'; '.join(problems)}. Check that the checkpoint and the model "
                              "architecture agree.")
    usable = {k: v.to(expected[k].dtype) for k, v in state.items()
              if k in expected and v.shape == expected[k].shape}
    model.load_state_dict(usable, strict=False)


def init_path(init: str) -> tuple[bool, Path]:
    """``(official, path)`` of an init string other than ``"scratch"``: whether it carries the
    ``official:`` prefix, and the path it names (``~`` expanded)."""
    official = init.startswith(OFFICIAL_PREFIX)
    return official, Path(init[len(OFFICIAL_PREFIX):] if official else init).expanduser()


def is_engine_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a training checkpoint of the engine: a file whose sidecar records its
    sha256."""
    if not path.is_file():
        return False
    try:
        return "sha256" in checkpoint_meta(path)
    except CheckpointError:
        return False


def _backbone_from_engine_checkpoint(path: Path) -> tuple[nn.Module, str | None]:
    from neurofm.engine.checkpointing import load_checkpoint

    state = load_checkpoint(path)
    config = state.get("config") or {}
    name = config.get("model")
    if not name:
        raise CheckpointError(f"{path} records no model name in its config; it was not written by "
                              "the neurofm training engine")
    weights: dict[str, torch.Tensor] = state["model"]
    if any(".base_model.model." in k for k in weights):
        raise CheckpointError(f"{path} is a LoRA fine-tuning checkpoint; load its base model with "
                              "the saved adapters (neurofm.tasks.finetune.load_lora_model)")
    for prefix in ("network.backbone.", "model."):  # fine-tuning objective, pretraining objectives
        encoder = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        if encoder:
            break
    else:
        raise CheckpointError(f"{path} holds no encoder weights (no 'model.*' or "
                              "'network.backbone.*' keys)")
    overrides = dict(config.get("model_overrides") or {})
    if "lm_head.weight" in encoder:  # a MEM student predicts its tokenizer's codes, however many
        overrides.setdefault("vocab_size", encoder["lm_head.weight"].shape[0])
    module = create_model(name, **overrides)
    if isinstance(module, LabramForMaskedEEG):
        load_matching(module, encoder, str(path), newly_initialised=())
        return as_backbone(module, str(path)), name
    backbone = as_backbone(module, str(path))
    if isinstance(backbone, NeuroBert) and backbone.config.n_outputs:
        backbone.reset_head(0)
    load_matching(backbone, encoder, str(path))
    return backbone, name


def load_backbone(init: str) -> tuple[nn.Module, dict[str, Any]]:
    """The backbone an init string names (see the module docstring), and a description of it.

    ``"scratch"`` is not a source of weights; use :func:`build_backbone`. Returns the backbone
    (without a task head, in eval mode) and ``{"init", "source", "model"}`` for results.
    """
    if init == "scratch":
        raise ConfigError("'scratch' names no weights to load; pass a checkpoint (a neurofm "
                          "folder, a training checkpoint .pt, or official:PATH)")
    official, path = init_path(init)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a neurofm checkpoint "
                              "folder, an official LaBraM .pth file (official:PATH), a training "
                              "checkpoint (.pt with its .json), or 'scratch'")
    name: str | None = None
    if path.is_dir():
        if official:
            raise ConfigError(f"official:{path} is a folder; official:PATH names an official "
                              "LaBraM .pth file")
        module = load_pretrained(path)
        name = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model")
        kind = "neurofm"
        backbone = as_backbone(module, str(path))
    elif not official and is_engine_checkpoint(path):
        backbone, name = _backbone_from_engine_checkpoint(path)
        kind = "engine"
    else:
        backbone = load_labram_checkpoint(path, target="backbone", n_outputs=0)
        kind = "official"
    return backbone.eval(), {"init": init, "source": kind, "path": str(path), "model": name}


def build_backbone(init: str, model_name: str | None, model_overrides: dict[str, Any] | None = None
                   ) -> tuple[nn.Module, dict[str, Any]]:
    """The backbone to fine-tune: random (``init="scratch"``) or loaded from ``init``.

    With a checkpoint, ``model_name`` (optional) must name the same architecture, otherwise a
    :class:`ConfigError` says how they differ; without one, the registered ``model_name`` is built
    with ``model_overrides`` from the current random state.
    """
    if init == "scratch":
        if not model_name:
            raise ConfigError("fine-tuning from scratch needs a model name (--model labram_base, "
                              "neurobert_small...)")
        backbone = as_backbone(create_model(model_name, **dict(model_overrides or {})), model_name)
        family_of(backbone)
        return backbone, {"init": "scratch", "source": "scratch", "path": None, "model": model_name}
    backbone, info = load_backbone(init)
    if model_name:
        reference = as_backbone(create_model(model_name, **dict(model_overrides or {})), model_name)
        ours = _shapes(backbone)
        theirs = _shapes(reference)
        if ours != theirs:
            differing = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            raise ConfigError(
                f"--model {model_name} does not match the architecture of {init} (they differ in "
                f"{', '.join(differing[:6])}{' ...' if len(differing) > 6 else ''}); leave --model "
                "out to use the checkpoint's architecture, or name the matching model")
        info["model"] = model_name
    return backbone, info


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.startswith(("head.", "fc_norm."))}


def with_task_head(backbone: nn.Module, n_outputs: int, drop_path: float) -> nn.Module:
    """A copy of ``backbone`` with a new head of ``n_outputs`` and stochastic depth ``drop_path``.

    Drop-path rates are fixed at construction (linearly spaced over depth), so the network is
    rebuilt with the rate and every non-head weight copied over; the head is initialised as its
    family does (LaBraM: std 0.02 scaled by 0.001).
    """
    if not 0.0 <= drop_path < 1.0:
        raise ConfigError(f"drop_path must lie in [0, 1), got {drop_path}")
    state = {k: v for k, v in backbone.state_dict().items() if not k.startswith("head.")}
    if isinstance(backbone, Labram):
        rebuilt: nn.Module = Labram(n_outputs=n_outputs, ch_names=backbone.ch_names,
                                    config=replace(backbone.config, drop_path=drop_path))
    elif isinstance(backbone, NeuroBert):
        rebuilt = NeuroBert.from_config(replace(backbone.config, n_outputs=n_outputs,
                                                drop_path=drop_path))
    else:
        family_of(backbone)  # raises with the supported families
        raise AssertionError("unreachable")
    load_matching(rebuilt, state, "the backbone", newly_initialised=("head.",))
    return rebuilt


def check_input(backbone: nn.Module, sfreq: float, n_times: int, unit: str, where: str,
                channels: Sequence[str] | None = None) -> nn.Module:
    """Check that windows of ``n_times`` samples at ``sfreq`` Hz in ``unit`` suit ``backbone``.

    LaBraM needs 200 Hz, 1 to 16 whole seconds and channels named in its vocabulary (the
    :class:`~neurofm.errors.ChannelError` names the first that is not; a unit other than 100 µV is
    only warned about); Neuro-BERT needs its patch rate and at least one patch, and records the
    window length and unit. Returns the backbone (a Neuro-BERT config updated to the windows).
    """
    if isinstance(backbone, Labram):
        if channels is not None:
            vocabulary_indices(channels)  # LaBraM's spatial rows need real electrode names
        if float(sfreq) != SAMPLING_RATE:
            raise ConfigError(f"{where}: LaBraM takes {SAMPLING_RATE:g} Hz input, the windows "
                              f"are at {sfreq:g} Hz; prepare the corpus with the LaBraM recipe")
        if n_times % PATCH_SIZE or not 1 <= n_times // PATCH_SIZE <= MAX_PATCHES:
            raise ConfigError(f"{where}: LaBraM takes windows of 1 to {MAX_PATCHES} whole seconds, "
                              f"got {n_times} samples ({n_times / sfreq:g} s)")
        if unit != "100uV":
            _log.warning("%s: LaBraM was trained on EEG in 100 uV, these windows are in %s",
                         where, unit)
        return backbone
    if isinstance(backbone, NeuroBert):
        config = backbone.config
        if abs(config.sfreq - float(sfreq)) > 1e-6 * config.sfreq:
            raise ConfigError(f"{where}: this Neuro-BERT was built for {config.sfreq:g} Hz, the "
                              f"windows are at {sfreq:g} Hz; its {config.patch_len}-sample patches "
                              "would cover another duration. Resample, or train from scratch")
        if n_times < config.patch_len:
            raise ConfigError(f"{where}: windows of {n_times} samples are shorter than one "
                              f"{config.patch_len}-sample patch")
        backbone.config = replace(config, n_times=int(n_times), input_unit=unit)
        return backbone
    family_of(backbone)
    raise AssertionError("unreachable")


def layer_id(name: str, num_layers: int) -> int:
    """Layer id of a parameter for layer-wise lr decay (METHODS.md §5), by its name.

    0 for the input side (``patch_embed.*``, ``channel_embed.*``, ``cls_token``, ``pos_embed``,
    ``mask_token``), ``k + 1`` for ``blocks.k.*``, ``num_layers + 1`` for everything else
    (``time_embed``, norms, ``fc_norm``, ``head``). Prefixes (``network.backbone.``, peft's
    ``base_model.model.``) are ignored.
    """
    block = _BLOCK.search(name)
    if block:
        return int(block.group(1)) + 1
    if _INPUT_SIDE_MODULES.search(name) or _INPUT_SIDE_TENSORS.search(name):
        return 0
    return num_layers + 1


def num_layers(backbone: nn.Module) -> int:
    """The number of transformer blocks (L in the layer-wise decay)."""
    return len(unwrap(backbone).blocks)


class TaskNetwork(nn.Module):
    """Backbone (with its task head) over the batch dictionary.

    ``forward(batch) -> [B, n_outputs]`` head outputs; :meth:`features` gives the pooled features
    ``[B, D]``. The batch holds ``signal [B, C, T]`` (float32, the corpus unit),
    ``channel_index [B, C]`` (LaBraM vocabulary indices) and optionally ``channel_mask [B, C]``.
    Neuro-BERT tells channels apart by their montage position, as in its pretraining, so it does
    not use ``channel_index``.

    With ``frozen_backbone`` (linear probing) everything but the head stays in eval mode while
    training, so dropout and drop path do not perturb the frozen features.
    """

    def __init__(self, backbone: nn.Module, frozen_backbone: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.family = family_of(backbone)
        self.frozen_backbone = frozen_backbone

    def train(self, mode: bool = True) -> TaskNetwork:
        super().train(mode)
        if self.frozen_backbone:
            base = unwrap(self.backbone)
            base.eval()
            base.head.train(mode)
        return self

    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        signal = batch["signal"]
        mask = batch.get("channel_mask")
        if self.family == "labram":
            return signal, {"channel_index": batch["channel_index"], "channel_mask": mask}
        return signal, {"channel_mask": mask}

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        signal, kwargs = self._inputs(batch)
        # The backbone's own modules carry any adapters (peft injects them in place).
        base = unwrap(self.backbone)
        if self.family == "labram":
            return base(signal, return_features=False, **kwargs)
        return base(signal, **kwargs)

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """Pooled features ``[B, D]`` (the head's input)."""
        signal, kwargs = self._inputs(batch)
        return unwrap(self.backbone).forward_features(signal, **kwargs)
