"""One way to load a model: :func:`from_pretrained`.

A *source* is one of

- a neurofm checkpoint folder (``model.safetensors`` + ``config.json``, written by every
  ``neurofm pretrain``, ``tokenizer train`` and ``finetune`` run as ``model/``);
- an adapter folder (``adapter/`` of a ``finetune --mode lora|dora|adalora|ia3|oft`` run:
  peft's adapter files and ``neurofm_adapter.json``, which names the base weights);
- an official LaBraM ``.pth`` file (``labram-base.pth``, ``vqnsp.pth``, a fine-tuned file), also
  written ``official:PATH``;
- a training checkpoint of the engine (``run/checkpoints/best.pt`` with its ``.json`` sidecar);
- a Hugging Face Hub id (``org/name``, ``org/name@revision``) of a ``neurofm export`` folder,
  resolved through ``huggingface_hub``'s cache when no local path of that name exists
  (:mod:`neurofm.hub`).

Every path reads safetensors, JSON or weights-only pickles; nothing a file holds runs as code.
The loaded model carries :class:`PretrainedInfo` as ``model.pretrained_info``: where it came from,
its registered name, the input it takes and, when recorded, the preprocessing recipe and the
pretraining record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neurofm.errors import CheckpointError, ConfigError
from neurofm.hub import is_hub_id, resolve_hub_id
from neurofm.models.backbone import (
    Backbone,
    as_backbone,
    build_for_state,
    load_state_strict,
)
from neurofm.models.labram import INPUT_UNIT, SAMPLING_RATE
from neurofm.models.registry import create_checked_model, create_model

#: Marks a source that names an official LaBraM ``.pth`` file.
OFFICIAL_PREFIX = "official:"
#: The file that makes a folder a neurofm adapter folder.
ADAPTER_SIDECAR = "neurofm_adapter.json"
_ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class PretrainedInfo:
    """Where a loaded model came from and what it expects.

    ``kind`` is ``"neurofm"``, ``"adapters"``, ``"official"`` or ``"engine"``; ``model`` the
    registered name (None when the file does not record one); ``sfreq``/``input_unit`` the input
    the network takes (None when unknown); ``preprocessing`` the recipe of the corpus it was
    trained on and ``pretraining`` its pretraining record (None when not recorded).
    """

    source: str
    kind: str
    path: str
    model: str | None
    sfreq: float | None = None
    input_unit: str | None = None
    preprocessing: dict[str, Any] | None = None
    pretraining: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def from_pretrained(source: str | Path, *, backbone: bool = False, n_outputs: int | None = None,
                    input_unit: str | None = None, sfreq: float | None = None,
                    convert: bool = False) -> nn.Module:
    """The model a source holds (see the module docstring), in eval mode.

    Args:
        source: a checkpoint folder, an adapter folder, an official ``.pth`` file
            (optionally ``official:PATH``) or an engine training checkpoint.
        backbone: return the fine-tunable backbone: a masked-modelling network's student as the
            official fine-tuning script builds it (mask token and final norm dropped, fc_norm new).
        n_outputs: with ``backbone``, a head of this size (a head of another size is replaced by
            a freshly initialised one; 0 removes it).
        input_unit, sfreq, convert: declare what will be fed to a neurofm checkpoint folder; see
            :func:`neurofm.models.saved.load_pretrained`.

    Raises :class:`CheckpointError` naming the file when the source is missing, damaged, unsafe or
    does not match its architecture.
    """
    model, info = load_source(str(source), backbone=backbone, n_outputs=n_outputs,
                              input_unit=input_unit, sfreq=sfreq, convert=convert)
    # nn.Module types its attributes as tensors or modules; this one is plain data.
    setattr(model, "pretrained_info", info)  # noqa: B010
    return model


def load_source(source: str, *, backbone: bool = False, n_outputs: int | None = None,
                input_unit: str | None = None, sfreq: float | None = None,
                convert: bool = False) -> tuple[nn.Module, PretrainedInfo]:
    """:func:`from_pretrained` without attaching the info: ``(model, info)``."""
    from neurofm.models.labram_official import load_labram_checkpoint
    from neurofm.models.saved import load_pretrained, read_saved_config

    official, path = init_path(source)
    if not path.exists() and not official and is_hub_id(source):
        path = resolve_hub_id(source)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a neurofm checkpoint "
                              "folder, an adapter folder, an official LaBraM .pth file "
                              "(official:PATH), a training checkpoint (.pt with its .json) or a "
                              "Hub id (org/name)")
    if path.is_dir() and official:
        raise ConfigError(f"official:{path} is a folder; official:PATH names an official LaBraM "
                          ".pth file")
    if path.is_dir() and (path / ADAPTER_SIDECAR).is_file():
        network, description = _load_adapters(path)
        return network, PretrainedInfo(source, "adapters", str(path),
                                       description.get("model"))
    if path.is_dir():
        config = read_saved_config(path)
        model = load_pretrained(path, input_unit=input_unit, sfreq=sfreq, convert=convert)
        record = (config.get("extra") or {}).get("pretraining_data")
        info = PretrainedInfo(source, "neurofm", str(path), config.get("model"),
                              float(config["sfreq"]), str(config["input_unit"]),
                              record.get("recipe") if isinstance(record, dict) else None,
                              record if isinstance(record, dict) else None)
    elif not official and is_engine_checkpoint(path):
        model, name = _encoder_from_engine_checkpoint(path)
        spec = model.input_spec
        info = PretrainedInfo(source, "engine", str(path), name, spec.sfreq, spec.input_unit)
    else:
        model = load_labram_checkpoint(path, target="backbone" if backbone else "auto",
                                       n_outputs=n_outputs if backbone else None)
        info = PretrainedInfo(source, "official", str(path), None, SAMPLING_RATE, INPUT_UNIT)
    if backbone:
        model = _with_head(as_backbone(model, str(path)), n_outputs)
    return model.eval(), info


def _with_head(model: Backbone, n_outputs: int | None) -> Backbone:
    if n_outputs is not None and n_outputs != model.n_outputs:
        model.reset_head(n_outputs)
    return model


def init_path(init: str) -> tuple[bool, Path]:
    """``(official, path)`` of a source string: whether it carries the ``official:`` prefix, and
    the path it names (``~`` expanded)."""
    official = init.startswith(OFFICIAL_PREFIX)
    return official, Path(init[len(OFFICIAL_PREFIX):] if official else init).expanduser()


def is_engine_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a training checkpoint of the engine: a file whose sidecar records its
    sha256."""
    from neurofm.engine.checkpointing import checkpoint_meta

    if not path.is_file():
        return False
    try:
        return "sha256" in checkpoint_meta(path)
    except CheckpointError:
        return False


def _encoder_from_engine_checkpoint(path: Path) -> tuple[Backbone, str]:
    """The trained encoder of an engine checkpoint, rebuilt from the model name its run recorded:
    a backbone (head dropped) or a masked-modelling network's backbone."""
    from neurofm.engine.checkpointing import load_checkpoint

    state = load_checkpoint(path)
    config = state.get("config") or {}
    name = config.get("model")
    if not name:
        raise CheckpointError(f"{path} records no model name in its config; it was not written by "
                              "the neurofm training engine")
    weights: dict[str, torch.Tensor] = state["model"]
    if any(".base_model.model." in k for k in weights):
        raise CheckpointError(f"{path} is an adapter fine-tuning checkpoint; load the adapter/ folder "
                              "its run exported instead")
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
    shapes = {k: tuple(v.shape) for k, v in encoder.items()}
    module = build_for_state(lambda: create_model(name, **overrides), shapes, str(path),
                             newly_initialised=("head.",))
    if not isinstance(module, Backbone):  # a pretraining network: all of it was trained
        load_state_strict(module, encoder, str(path))
        return as_backbone(module, str(path)).train(), name
    module.reset_head(0)
    load_state_strict(module, encoder, str(path), newly_initialised=("head.",))
    return module, name


def load_backbone(init: str) -> tuple[Backbone, dict[str, Any]]:
    """The fine-tunable backbone a source names, without a task head, in eval mode, and
    ``{"init", "source", "path", "model"}`` describing it for results.

    ``"scratch"`` is not a source of weights; see :func:`build_backbone`.
    """
    if init == "scratch":
        raise ConfigError("'scratch' names no weights to load; pass a checkpoint (a neurofm "
                          "folder, a training checkpoint .pt, or official:PATH)")
    model, info = load_source(init, backbone=True, n_outputs=0)
    if info.kind == "adapters":
        raise ConfigError(f"{init} is an adapter folder; fine-tune from its base weights "
                          "(the init its neurofm_adapter.json records) instead")
    assert isinstance(model, Backbone)  # load_source(backbone=True) returns one
    return model, {"init": init, "source": info.kind, "path": info.path, "model": info.model}


def build_backbone(init: str, model_name: str | None, model_overrides: dict[str, Any] | None = None
                   ) -> tuple[Backbone, dict[str, Any]]:
    """The backbone to fine-tune: random (``init="scratch"``) or loaded from ``init``.

    With a checkpoint, ``model_name`` (optional) must name the same architecture, otherwise a
    :class:`ConfigError` says how they differ; without one, the registered ``model_name`` is built
    with ``model_overrides`` from the current random state.
    """
    if init == "scratch":
        if not model_name:
            raise ConfigError("fine-tuning from scratch needs a model name (--model labram_base, "
                              "neurobert_small...)")
        backbone = as_backbone(create_checked_model(model_name, **dict(model_overrides or {})),
                               model_name)
        return backbone, {"init": "scratch", "source": "scratch", "path": None, "model": model_name}
    backbone, info = load_backbone(init)
    if model_name:
        with torch.device("meta"):
            reference = as_backbone(create_model(model_name, **dict(model_overrides or {})),
                                    model_name)
        ours, theirs = _shapes(backbone), _shapes(reference)
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


def _load_adapters(adapter_dir: Path, init: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A peft-adapted backbone (LoRA, DoRA, AdaLoRA, IA3 or OFT, as ``adapter_config.json`` says):
    its base weights (``init``, by default the one the sidecar records; a relative path is taken
    from the adapter folder and must stay inside it) with the adapters and head of
    ``adapter_dir`` (peft's ``PeftModel``, eval mode), and the sidecar's description."""
    from peft import PeftModel

    sidecar = adapter_dir / ADAPTER_SIDECAR
    try:
        description = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise CheckpointError(f"{sidecar} is unreadable ({error}); the adapter folder is "
                              "damaged") from None
    if not isinstance(description, dict) or not all(
            key in description for key in ("init", "model", "n_outputs")):
        raise CheckpointError(f"{sidecar} does not describe a neurofm LoRA adapter (or another "
                              "peft adapter: it needs 'init', 'model' and 'n_outputs')")
    if not (adapter_dir / _ADAPTER_WEIGHTS).is_file():
        raise CheckpointError(f"{adapter_dir} has no {_ADAPTER_WEIGHTS}; neurofm loads adapters "
                              "from safetensors only (a pickled adapter_model.bin could run code)")
    config_file = adapter_dir / _ADAPTER_CONFIG
    try:
        peft_type = json.loads(config_file.read_text(encoding="utf-8")).get("peft_type")
    except (OSError, ValueError, RecursionError, AttributeError) as error:
        raise CheckpointError(f"{config_file} is missing or unreadable ({error}); the adapter "
                              "folder is damaged") from None
    if peft_type not in _ADAPTER_TYPES:
        raise CheckpointError(f"{config_file} names peft_type {peft_type!r}; neurofm loads "
                              f"{', '.join(_ADAPTER_TYPES)} adapters")
    base = init or str(description["init"])
    official, path = init_path(base)
    if not path.is_absolute():
        inside = (adapter_dir / path).resolve()
        if init is None and not inside.is_relative_to(adapter_dir.resolve()):
            # neurofm records absolute paths; a relative one leading out is not its own.
            raise CheckpointError(f"{sidecar} names the base weights {base!r}, a relative path "
                                  "leading out of the adapter folder; pass the base explicitly "
                                  "(neurofm.loading.load_adapters(folder, init=...))")
        base = (OFFICIAL_PREFIX if official else "") + str(inside)
    backbone, _ = build_backbone(base, str(description["model"]),
                                 description.get("model_overrides"))
    with_head = backbone.with_head(int(description["n_outputs"]), 0.0)
    return PeftModel.from_pretrained(with_head, str(adapter_dir)).eval(), description


#: peft's adapter config file, and the peft types ``neurofm finetune`` writes.
_ADAPTER_CONFIG = "adapter_config.json"
_ADAPTER_TYPES = ("LORA", "ADALORA", "IA3", "OFT")


def load_adapters(adapter_dir: str | Path, init: str | None = None) -> nn.Module:
    """Rebuild a peft-adapted backbone from its adapter folder (see :func:`from_pretrained`);
    ``init`` replaces the base weights the folder records."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / ADAPTER_SIDECAR).is_file():
        raise ConfigError(f"{adapter_dir} has no {ADAPTER_SIDECAR}; it is not a neurofm adapter "
                          "folder (written by `neurofm finetune --mode lora`, dora, adalora, ia3 "
                          "or oft)")
    return _load_adapters(adapter_dir, init)[0]


__all__ = ["ADAPTER_SIDECAR", "OFFICIAL_PREFIX", "PretrainedInfo", "build_backbone",
           "from_pretrained", "init_path", "is_engine_checkpoint", "load_adapters", "load_backbone",
           "load_source"]
