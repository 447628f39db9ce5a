"""The official LaBraM checkpoint layouts, translated into neurofm's networks (the one place
where the official key names are mapped).

Official files (``torch.save({'model': state_dict})``) are read with ``torch.load(weights_only=True)``,
which refuses any pickle that would construct arbitrary objects, so loading never runs foreign code.
Loading is strict: every key of the file is either mapped onto the model or dropped for a
documented reason (:data:`DROPPED_OFFICIAL_KEYS`), every model key must be filled, and a mismatch
raises a :class:`~neurofm.errors.CheckpointError` naming the missing and unexpected keys.

Three official layouts are recognised:

* ``mem`` (``labram-base.pth``): ``student.*``, ``lm_head.*``, ``projection_head.*``, ``logit_scale``
  → :class:`~neurofm.models.labram_pretrain.LabramForMaskedEEG`, or with ``target="backbone"``
  the fine-tuning backbone :class:`~neurofm.models.labram.Labram` as the official fine-tuning
  script builds it (``student.*`` only; fc_norm and head newly initialised).
* ``vqnsp`` (``vqnsp.pth``): ``encoder.*``, ``decoder.*``, ``quantize.*``, ``*_task_layer*``
  → :class:`~neurofm.models.vqnsp.VQNSP`.
* ``finetuned``: the fine-tuning network's keys at top level (``blocks.*``, ``fc_norm.*``, ``head.*``)
  → :class:`~neurofm.models.labram.Labram` with its head.
"""

from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from neurofm.errors import CheckpointError
from neurofm.models.backbone import load_state_strict
from neurofm.models.labram import Labram, LabramConfig
from neurofm.models.labram_pretrain import LabramForMaskedEEG
from neurofm.models.vqnsp import VQNSP, VQNSPConfig

#: Keys of the official files that neurofm drops on purpose, and why.
DROPPED_OFFICIAL_KEYS: dict[str, str] = {
    "logit_scale": "a stray scalar in labram-base.pth that no official network uses",
    "projection_head.*": "labram-base.pth's projection head, unused by the masked-modelling loss",
    "student.lm_head.*": "the student's own head; the masked-modelling wrapper predicts with the "
                         "top-level lm_head",
    "quantize.embedding.cluster_size": "EmbeddingEMA bookkeeping that the normalised EMA update "
                                       "never reads (usage statistics are quantize.cluster_size)",
    "quantize.embedding.embed_avg": "EmbeddingEMA bookkeeping that the normalised EMA update never reads",
    # Only when a masked-modelling checkpoint initialises a fine-tuning backbone:
    "student.mask_token / student.norm.* (backbone)": "unused in mean-pooling fine-tuning, as in the "
                                                       "official run_class_finetuning.py",
}

#: Official → neurofm renames of the VQ-NSP layout (prefix match, first match wins).
_VQNSP_RENAMES: tuple[tuple[str, str], ...] = (
    ("encode_task_layer.", "code_projection."),
    ("decode_task_layer_angle.", "phase_head."),
    ("decode_task_layer.", "amplitude_head."),
    ("quantize.embedding.weight", "quantizer.codebook"),
    ("quantize.embedding.initted", "quantizer.initialized"),
    ("quantize.cluster_size", "quantizer.usage"),
)

# Heads per width where no QK-norm weight reveals the head dimension (METHODS.md §2 table).
_HEADS_BY_WIDTH = {100: 4, 200: 10, 400: 16, 800: 16}
_LAYER_SCALE_BY_WIDTH = {200: 0.1, 400: 1e-5, 800: 1e-6}

Layout = Literal["mem", "vqnsp", "finetuned"]


def read_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official ``.pth`` file, read without executing any code.

    Accepts ``{'model': sd}``, ``{'state_dict': sd}`` or a bare state dict. A file whose pickle
    needs anything beyond tensors, containers and ``argparse.Namespace`` (the official engines
    save their arguments) is refused with a :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refused to load {path}: it contains Python objects other than tensors, which could run "
            f"code when unpickled ({str(error).splitlines()[0]}). Only load checkpoints you trust; "
            "convert them to safetensors with a trusted tool.") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}. The file is truncated, "
                              "corrupted or not a PyTorch checkpoint.") from None
    state = payload
    if isinstance(payload, Mapping):
        for key in ("model", "state_dict", "module"):
            if key in payload and isinstance(payload[key], Mapping):
                state = payload[key]
                break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors (top-level keys: "
                              f"{sorted(payload) if isinstance(payload, Mapping) else type(payload).__name__})")
    return dict(state)


def detect_layout(state: Mapping[str, torch.Tensor]) -> Layout:
    """Which official layout a state dict has (see the module docstring)."""
    if any(k.startswith("student.") for k in state):
        return "mem"
    if any(k.startswith("encoder.") for k in state) and any(k.startswith("quantize.") for k in state):
        return "vqnsp"
    if "cls_token" in state and "pos_embed" in state:
        return "finetuned"
    raise CheckpointError("unrecognised checkpoint layout: expected the official LaBraM layouts "
                          "(student.* / encoder.*+quantize.* / cls_token+blocks.*), got keys "
                          f"{sorted(state)[:8]}...")


# --------------------------------------------------------------------------- architecture from shapes

def _transformer_config(state: Mapping[str, torch.Tensor], prefix: str) -> LabramConfig:
    dim = state[f"{prefix}cls_token"].shape[-1]
    depth = len({int(m.group(1)) for k in state
                 if (m := re.match(rf"{re.escape(prefix)}blocks\.(\d+)\.", k))})
    q_norm = state.get(f"{prefix}blocks.0.attn.q_norm.weight")
    heads = dim // q_norm.shape[0] if q_norm is not None else _HEADS_BY_WIDTH.get(dim)
    if heads is None:
        raise CheckpointError(f"cannot tell the number of attention heads of a width-{dim} "
                              "transformer without QK-norm weights")
    has_scale = f"{prefix}blocks.0.gamma_1" in state
    conv = state.get(f"{prefix}patch_embed.conv1.weight")
    return LabramConfig(
        embed_dim=dim,
        conv_channels=conv.shape[0] if conv is not None else LabramConfig().conv_channels,
        depth=depth,
        num_heads=heads,
        mlp_dim=state[f"{prefix}blocks.0.mlp.fc1.weight"].shape[0],
        qkv_bias=f"{prefix}blocks.0.attn.q_bias" in state,
        qk_norm=q_norm is not None,
        init_values=_LAYER_SCALE_BY_WIDTH.get(dim, 0.1) if has_scale else 0.0,
        use_mean_pooling=f"{prefix}fc_norm.weight" in state,
    )


# --------------------------------------------------------------------------- official → neurofm

def _strict(model: nn.Module, state: dict[str, torch.Tensor], source: str,
            newly_initialised: tuple[str, ...] = ()) -> None:
    load_state_strict(model, state, source, newly_initialised,
                      hint="Check that the file is a LaBraM checkpoint of this architecture.")


def is_dropped_official_key(key: str, layout: Layout) -> bool:
    """Whether ``key`` of an official file of ``layout`` is dropped on purpose
    (:data:`DROPPED_OFFICIAL_KEYS` says why)."""
    if layout == "mem":
        return key == "logit_scale" or key.startswith(("projection_head.", "student.lm_head."))
    if layout == "vqnsp":
        return key in ("quantize.embedding.cluster_size", "quantize.embedding.embed_avg")
    return False


def _map_vqnsp_key(key: str) -> str:
    for old, new in _VQNSP_RENAMES:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def load_labram_checkpoint(
    path: str | Path,
    target: Literal["auto", "backbone"] = "auto",
    n_outputs: int | None = None,
) -> nn.Module:
    """Build the network an official LaBraM checkpoint holds and load it strictly.

    Args:
        path: ``labram-base.pth``, ``vqnsp.pth`` or a fine-tuned checkpoint.
        target: ``"auto"`` returns the network the file holds (masked-modelling network,
            tokenizer, or fine-tuned backbone with head). ``"backbone"`` returns a
            :class:`Labram` for fine-tuning: from a masked-modelling file its ``student.*``
            weights (mask token, final norm and heads dropped, as the official fine-tuning script
            does; fc_norm and head newly initialised), from a fine-tuned file everything but a head
            whose size differs from ``n_outputs``.
        n_outputs: head size for ``target="backbone"`` (0 or None: no head).

    Returns the model in eval mode. Raises :class:`CheckpointError` for unsafe, unreadable or
    mismatching files, naming every missing and unexpected key.
    """
    state = read_official_state_dict(path)
    layout = detect_layout(state)
    source = f"checkpoint {path} ({layout} layout)"
    kept = {k: v for k, v in state.items() if not is_dropped_official_key(k, layout)}
    if layout == "vqnsp":
        if target == "backbone":
            raise CheckpointError(f"{path} is a VQ-NSP tokenizer, not a LaBraM backbone")
        mapped = {_map_vqnsp_key(k): v for k, v in kept.items()}
        if "quantizer.initialized" in mapped:
            mapped["quantizer.initialized"] = mapped["quantizer.initialized"].reshape(()).bool()
        codebook = mapped.get("quantizer.codebook")
        if codebook is None:
            raise CheckpointError(f"{source} has no codebook (quantize.embedding.weight)")
        vq_config = VQNSPConfig(
            encoder=replace(_transformer_config(mapped, "encoder."), use_mean_pooling=True),
            decoder_depth=_transformer_config(mapped, "decoder.").depth,
            code_dim=codebook.shape[1], n_codes=codebook.shape[0], kmeans_init=False)
        model: nn.Module = VQNSP(vq_config)
        _strict(model, mapped, source)
        return model.eval()
    if layout == "mem":
        config = _transformer_config(kept, "student.")
        if target == "backbone":
            backbone = {k[len("student."):]: v for k, v in kept.items()
                        if k.startswith("student.") and k not in ("student.mask_token",)
                        and not k.startswith("student.norm.")}
            model = Labram(n_outputs=n_outputs or 0, config=replace(config, use_mean_pooling=True))
            _strict(model, backbone, source, newly_initialised=("fc_norm.", "head."))
            return model.eval()
        mapped = {("mask_token" if k == "student.mask_token" else k): v for k, v in kept.items()}
        model = LabramForMaskedEEG(config, vocab_size=mapped["lm_head.weight"].shape[0])
        _strict(model, mapped, source)
        return model.eval()
    config = _transformer_config(kept, "")
    file_outputs = kept["head.weight"].shape[0] if "head.weight" in kept else 0
    if target == "backbone" and n_outputs is not None and n_outputs != file_outputs:
        # A head of another size is dropped and re-initialised, as the official script does.
        kept = {k: v for k, v in kept.items() if not k.startswith("head.")}
        model = Labram(n_outputs=n_outputs, config=config)
        _strict(model, kept, source, newly_initialised=("head.",))
        return model.eval()
    model = Labram(n_outputs=file_outputs, config=config)
    _strict(model, kept, source)
    return model.eval()
