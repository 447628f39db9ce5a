"""The interface every model family implements, so that tasks, the engine and the CLI never ask
which family a model belongs to.

Two roles:

- :class:`SavedModel`: a network that neurofm's checkpoint format can describe and rebuild (every
  registered family: backbones, the masked-modelling network, the tokenizer). It names its
  ``family``, describes itself as JSON (:meth:`SavedModel.saved_config`) and is rebuilt from that
  (:meth:`SavedModel.from_saved_config`); :func:`neurofm.models.registry.register_family` makes it
  loadable by name. A pretraining network that holds a fine-tunable backbone gives it with
  ``as_backbone()``.
- :class:`Backbone`: a fine-tunable encoder. It takes the batch dictionary (``signal [B, C, T]``,
  ``channel_index [B, C]``, ``channel_mask [B, C]``) and gives per-patch and pooled features and
  head outputs; it states its input (:class:`InputSpec`), checks windows against it, rebuilds itself
  with a new head, names its LoRA target modules and its layer ids for layer-wise lr decay.

A new family is one module in :mod:`neurofm.models` that subclasses :class:`Backbone`, registers
its family and its named sizes, and lists itself in ``neurofm.models.registry``'s family modules.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from neurofm.errors import CheckpointError

#: The Linear layers of the shared transformer block (:class:`neurofm.models.blocks.Block`) that
#: LoRA adapts by default.
BLOCK_LORA_TARGETS: tuple[str, ...] = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
#: The block's feedforward output layer, whose input (the MLP's hidden activation) IA3 scales.
BLOCK_FEEDFORWARD_MODULES: tuple[str, ...] = ("mlp.fc2",)

# METHODS.md §5: these parameters share layer id 0 (the input side) for layer-wise lr decay.
_INPUT_SIDE_MODULES = re.compile(r"(?:^|\.)(patch_embed|channel_embed)\.")
_INPUT_SIDE_TENSORS = re.compile(r"(?:^|\.)(cls_token|pos_embed|mask_token)$")
_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")

_B = TypeVar("_B", bound="Backbone")
_M = TypeVar("_M", bound=nn.Module)


@dataclass(frozen=True)
class InputSpec:
    """What a backbone takes: ``sfreq`` Hz, ``patch_size`` samples per patch, signal in
    ``input_unit`` (``"100uV"``, ``"uV"``, ``"device"``...)."""

    sfreq: float
    patch_size: int
    input_unit: str


class SavedModel(ABC):
    """A network neurofm's checkpoint format describes and rebuilds (see the module docstring)."""

    #: The family name recorded in ``config.json`` (``"labram"``, ``"neurobert"``...).
    family: ClassVar[str]

    @abstractmethod
    def saved_config(self) -> dict[str, Any]:
        """What ``config.json`` records to rebuild this network: ``architecture`` (the config as
        JSON), ``sfreq``, ``patch_size``, ``input_unit`` and any family field (head size...)."""

    @classmethod
    @abstractmethod
    def from_saved_config(cls, config: Mapping[str, Any]) -> nn.Module:
        """Rebuild (randomly initialised) from :meth:`saved_config`'s fields."""


class Backbone(nn.Module, SavedModel):
    """A fine-tunable encoder with a task head (see the module docstring).

    Subclasses set ``family``, build ``blocks`` (their transformer blocks, for the layer ids) and
    ``head`` (the task head) and implement the abstract methods.
    """

    #: Whether the backbone places channels by their LaBraM vocabulary index (the batch's
    #: ``channel_index``), so that every channel needs an electrode name of the vocabulary.
    uses_channel_vocabulary: ClassVar[bool] = False
    #: The Linear layers LoRA adapts (name suffixes; peft's ``target_modules``).
    lora_target_modules: ClassVar[tuple[str, ...]] = BLOCK_LORA_TARGETS
    #: Which of the adapted layers are feedforward layers (IA3 scales their input rather than
    #: their output; a subset of :attr:`lora_target_modules`).
    feedforward_modules: ClassVar[tuple[str, ...]] = BLOCK_FEEDFORWARD_MODULES
    #: What a fine-tuning job sets for this family on top of the engine's defaults (nested
    #: config values, see :func:`neurofm.tasks.finetune_config.finetune_recipe`).
    finetune_recipe: ClassVar[dict[str, Any]] = {}
    #: The transformer blocks (their index gives the layer ids).
    blocks: nn.ModuleList

    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """D, the width of the features."""

    @property
    @abstractmethod
    def n_outputs(self) -> int:
        """The size of the task head (0: none)."""

    @property
    @abstractmethod
    def input_spec(self) -> InputSpec:
        """The sampling rate, patch length and unit this backbone takes."""

    @abstractmethod
    def features(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Pooled features ``[B, D]`` of a batch dictionary (the head's input)."""

    @abstractmethod
    def patch_features(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Per-patch features ``[B, L, D]`` after the final norm, L tokens in the family's order
        (channel-major for LaBraM and channel-mode Neuro-BERT)."""

    @abstractmethod
    def classify(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Head outputs ``[B, n_outputs]`` of a batch dictionary."""

    @abstractmethod
    def reset_head(self, n_outputs: int) -> None:
        """Replace the head by a freshly initialised one of ``n_outputs`` (0 removes it)."""

    @abstractmethod
    def with_head(self: _B, n_outputs: int, drop_path: float) -> _B:
        """A copy with a new head of ``n_outputs`` (initialised as the family does) and
        stochastic depth ``drop_path``, every other weight copied over."""

    @abstractmethod
    def check_input(self, sfreq: float, n_times: int, unit: str, where: str,
                    channels: Sequence[str] | None = None) -> None:
        """Raise :class:`~neurofm.errors.ConfigError` naming ``where`` unless windows of
        ``n_times`` samples at ``sfreq`` Hz in ``unit`` with ``channels`` suit this backbone; a
        backbone that records its window length and unit updates them."""

    def as_backbone(self) -> Backbone:
        """Itself (a pretraining network gives its fine-tunable backbone instead)."""
        return self

    @property
    def num_layers(self) -> int:
        """L, the number of transformer blocks (for layer-wise lr decay)."""
        return len(self.blocks)

    def layer_id(self, name: str) -> int:
        """Layer id of parameter ``name`` for layer-wise lr decay (see :func:`layer_id`)."""
        return layer_id(name, self.num_layers)


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


def unwrap(model: nn.Module) -> nn.Module:
    """The backbone inside a peft wrapper (``PeftModel``), or ``model`` itself."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def as_backbone(model: nn.Module, source: str) -> Backbone:
    """The fine-tunable backbone of ``model`` (a backbone, or a pretraining network holding one);
    :class:`CheckpointError` naming ``source`` for anything else (a tokenizer)."""
    base = unwrap(model)
    give = getattr(base, "as_backbone", None)
    backbone = give() if callable(give) else None
    if not isinstance(backbone, Backbone):
        raise CheckpointError(f"{source} holds a {type(base).__name__}, which is not a fine-tunable "
                              "backbone (a VQ-NSP tokenizer cannot be fine-tuned); pass a "
                              "backbone or a pretraining run's model/ folder")
    return backbone


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                      newly_initialised: tuple[str, ...] = (),
                      hint: str = "Check that the checkpoint and the model architecture agree."
                      ) -> None:
    """Copy ``state`` into ``model``, accounting for every key.

    Keys starting with ``newly_initialised`` may be absent from (or extra in) ``state`` and are
    left as the model initialised them; any other missing, unexpected or mis-shaped key raises a
    :class:`CheckpointError` naming them all, followed by ``hint``. Values are cast to the
    model's dtypes.
    """
    expected = model.state_dict()
    _raise_on_mismatch(model, {k: tuple(v.shape) for k, v in state.items()}, source,
                       newly_initialised, hint)
    usable = {k: v.to(expected[k].dtype) for k, v in state.items()
              if k in expected and v.shape == expected[k].shape}
    model.load_state_dict(usable, strict=False)


def build_for_state(build: Callable[[], _M], shapes: Mapping[str, Sequence[int]], source: str,
                    newly_initialised: tuple[str, ...] = (),
                    hint: str = "Check that the checkpoint and the model architecture agree.") -> _M:
    """``build()``, once its parameter shapes are known to match ``shapes`` (a checkpoint's
    tensor shapes, as :func:`load_state_strict` checks them).

    The network is first built on the meta device, which allocates nothing, so a config that
    names absurd sizes fails here with a :class:`CheckpointError` before any memory is taken.
    """
    with torch.device("meta"):
        skeleton = build()
    _raise_on_mismatch(skeleton, {k: tuple(v) for k, v in shapes.items()}, source,
                       newly_initialised, hint)
    return build()


def _raise_on_mismatch(model: nn.Module, shapes: Mapping[str, tuple[int, ...]], source: str,
                       newly_initialised: tuple[str, ...], hint: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(k for k in expected if k not in shapes and not k.startswith(newly_initialised))
    unexpected = sorted(k for k in shapes
                        if k not in expected and not k.startswith(newly_initialised))
    wrong = sorted(f"{k}: file {shapes[k]} vs model {expected[k]}"
                   for k in shapes if k in expected and shapes[k] != expected[k]
                   and not k.startswith(newly_initialised))
    if missing or unexpected or wrong:
        problems = [f"{label}: {', '.join(keys[:12])}{' ...' if len(keys) > 12 else ''}"
                    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                        ("shape mismatches", wrong)) if keys]
        raise CheckpointError(f"{source} does not match {type(model).__name__}: "
                              f"{'; '.join(problems)}. {hint}")
