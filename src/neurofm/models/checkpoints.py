"""Checkpoints in: the official LaBraM layouts; checkpoints in and out: neurofm's own format.

Official files (``torch.save({'model': state_dict})``) are read with ``torch.load(weights_only=True)``,
which refuses any pickle that would construct arbitrary objects, so loading never runs foreign code.
This module is the one place where the official key layout is translated. Loading is strict:
every key of the file is either mapped onto the model or dropped for a documented reason
(:data:`DROPPED_OFFICIAL_KEYS`), every model key must be filled, and a mismatch raises a
:class:`~neurofm.errors.CheckpointError` naming the missing and unexpected keys.

Three official layouts are recognised:

* ``mem`` (``labram-base.pth``): ``student.*``, ``lm_head.*``, ``projection_head.*``, ``logit_scale``
  → :class:`~neurofm.models.labram_pretrain.LabramForMaskedEEG`, or with ``target="backbone"``
  the fine-tuning backbone :class:`~neurofm.models.labram.Labram` as the official fine-tuning
  script builds it (``student.*`` only; fc_norm and head newly initialised).
* ``vqnsp`` (``vqnsp.pth``): ``encoder.*``, ``decoder.*``, ``quantize.*``, ``*_task_layer*``
  → :class:`~neurofm.models.vqnsp.VQNSP`.
* ``finetuned``: the fine-tuning network's keys at top level (``blocks.*``, ``fc_norm.*``, ``head.*``)
  → :class:`~neurofm.models.labram.Labram` with its head.

neurofm's format is a folder with ``model.safetensors`` and ``config.json`` recording the model
family and architecture, the channel vocabulary, ``sfreq`` 200, ``patch_size`` 200 and
``input_unit`` "100uV". :func:`load_pretrained` refuses input declared in another unit or rate
unless ``convert=True``, in which case the model is wrapped in an :class:`InputConversion`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from neurofm.atomic import atomic_path, atomic_write_json
from neurofm.channels import LABRAM_VOCABULARY
from neurofm.errors import CheckpointError
from neurofm.models.labram import (
    INPUT_UNIT,
    PATCH_SIZE,
    SAMPLING_RATE,
    Labram,
    LabramConfig,
)
from neurofm.models.labram_pretrain import LabramForMaskedEEG
from neurofm.models.neurobert import NeuroBert
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

#: Multiply a signal in this unit by the factor to get the model's 100 µV units.
UNIT_TO_MODEL: dict[str, float] = {"uV": 0.01, "100uV": 1.0, "mV": 10.0, "V": 1e4}

FORMAT_NAME = "neurofm-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

Layout = Literal["mem", "vqnsp", "finetuned"]


# --------------------------------------------------------------------------- safe reading

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

def _strict_load(model: nn.Module, state: dict[str, torch.Tensor], source: str,
                 newly_initialised: tuple[str, ...] = ()) -> None:
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state and not k.startswith(newly_initialised))
    unexpected = sorted(k for k in state if k not in expected)
    wrong_shape = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                         for k in state if k in expected and state[k].shape != expected[k].shape)
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        if wrong_shape:
            parts.append(f"shape mismatches: {'; '.join(wrong_shape)}")
        raise CheckpointError(f"{source} does not match {type(model).__name__}: {'. '.join(parts)}. "
                              "Check that the file is a LaBraM checkpoint of this architecture.")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)


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
        _strict_load(model, mapped, source)
        return model.eval()
    if layout == "mem":
        config = _transformer_config(kept, "student.")
        if target == "backbone":
            backbone = {k[len("student."):]: v for k, v in kept.items()
                        if k.startswith("student.") and k not in ("student.mask_token",)
                        and not k.startswith("student.norm.")}
            model = Labram(n_outputs=n_outputs or 0, config=replace(config, use_mean_pooling=True))
            _strict_load(model, backbone, source, newly_initialised=("fc_norm.", "head."))
            return model.eval()
        mapped = {("mask_token" if k == "student.mask_token" else k): v for k, v in kept.items()}
        model = LabramForMaskedEEG(config, vocab_size=mapped["lm_head.weight"].shape[0])
        _strict_load(model, mapped, source)
        return model.eval()
    config = _transformer_config(kept, "")
    file_outputs = kept["head.weight"].shape[0] if "head.weight" in kept else 0
    if target == "backbone" and n_outputs is not None and n_outputs != file_outputs:
        # A head of another size is dropped and re-initialised, as the official script does.
        kept = {k: v for k, v in kept.items() if not k.startswith("head.")}
        model = Labram(n_outputs=n_outputs, config=config)
        _strict_load(model, kept, source, newly_initialised=("head.",))
        return model.eval()
    model = Labram(n_outputs=file_outputs, config=config)
    _strict_load(model, kept, source)
    return model.eval()


def backbone_from_masked_model(mem_model: LabramForMaskedEEG, n_outputs: int = 0) -> Labram:
    """A fine-tuning :class:`Labram` from a (neurofm-trained) masked-modelling network: the student's
    weights without its final norm; fc_norm and head newly initialised, as the official fine-tuning
    script does with ``labram-base.pth``."""
    state = {k: v for k, v in mem_model.student.state_dict().items() if not k.startswith("norm.")}
    model = Labram(n_outputs=n_outputs, config=replace(mem_model.config, use_mean_pooling=True))
    _strict_load(model, state, "the masked-modelling network's student",
                 newly_initialised=("fc_norm.", "head."))
    return model.eval()


# --------------------------------------------------------------------------- neurofm's own format

def _family(model: nn.Module) -> str:
    if isinstance(model, Labram):
        return "labram"
    if isinstance(model, LabramForMaskedEEG):
        return "labram_mem"
    if isinstance(model, VQNSP):
        return "vqnsp"
    if isinstance(model, NeuroBert):
        return "neurobert"
    raise CheckpointError(f"save_pretrained does not know how to describe a {type(model).__name__}")


def save_pretrained(model: nn.Module, directory: str | Path, model_name: str | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` as ``directory/model.safetensors`` + ``directory/config.json`` (atomically).

    The config records the model family, its registry name (when given), the architecture, the
    head size and default channel names (backbones), the channel vocabulary, ``sfreq`` 200,
    ``patch_size`` 200, ``input_unit`` "100uV" (a Neuro-BERT: its own rate, patch length and
    unit) and the weights' SHA-256. ``extra`` adds fields
    (for example the preprocessing recipe).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    family = _family(model)
    config: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "family": family,
        "model": model_name,
        # _family checked the class, each of which has a config with to_dict().
        "architecture": cast("Labram | LabramForMaskedEEG | VQNSP | NeuroBert",
                             model).config.to_dict(),
        "channel_vocabulary": list(LABRAM_VOCABULARY),
        "sfreq": SAMPLING_RATE,
        "patch_size": PATCH_SIZE,
        "input_unit": INPUT_UNIT,
    }
    if isinstance(model, Labram):
        config.update(n_outputs=model.n_outputs, ch_names=model.ch_names)
    if isinstance(model, LabramForMaskedEEG):
        config.update(vocab_size=model.vocab_size)
    if isinstance(model, NeuroBert):
        # Neuro-BERT states its own rate, patch length and input unit in its config.
        config.update(sfreq=model.config.sfreq, patch_size=model.config.patch_len,
                      input_unit=model.config.input_unit)
    if extra:
        config["extra"] = dict(extra)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT_NAME})
        config["weights_sha256"] = _sha256(tmp)
    atomic_write_json(directory / CONFIG_FILE, config)
    return directory


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _build_from_config(config: Mapping[str, Any], source: str) -> nn.Module:
    family = config.get("family")
    architecture = config.get("architecture", {})
    if family == "labram":
        return Labram(n_outputs=config.get("n_outputs", 0), ch_names=config.get("ch_names"),
                      config=LabramConfig(**architecture))
    if family == "labram_mem":
        return LabramForMaskedEEG(LabramConfig(**architecture), vocab_size=config["vocab_size"])
    if family == "vqnsp":
        return VQNSP(VQNSPConfig.from_dict(architecture))
    if family == "neurobert":
        return NeuroBert.from_config(architecture)
    raise CheckpointError(f"{source}: unknown model family {family!r}")


def load_pretrained(
    directory: str | Path,
    input_unit: str | None = None,
    sfreq: float | None = None,
    convert: bool = False,
) -> nn.Module:
    """Load a neurofm checkpoint folder written by :func:`save_pretrained`, in eval mode.

    ``input_unit`` / ``sfreq`` declare what the caller will feed. Anything other than the
    checkpoint's ``100uV`` at 200 Hz is refused with a :class:`CheckpointError`, unless
    ``convert=True``: then the model is wrapped in an :class:`InputConversion` that rescales the
    unit and resamples the rate on the fly.
    """
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{directory} is not a neurofm checkpoint: it needs {CONFIG_FILE} and "
                              f"{WEIGHTS_FILE}")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{config_path} is not valid JSON ({error}); the checkpoint is damaged") from error
    if config.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{config_path} is not a {FORMAT_NAME} config")
    if config.get("channel_vocabulary") != list(LABRAM_VOCABULARY):
        raise CheckpointError(f"{config_path} was saved with another channel vocabulary; its spatial "
                              "embedding rows would address the wrong electrodes")
    expected_sha = config.get("weights_sha256")
    if expected_sha and _sha256(weights_path) != expected_sha:
        raise CheckpointError(f"{weights_path} does not match the SHA-256 in {config_path}: the "
                              "weights are corrupted or were replaced")
    model = _build_from_config(config, str(config_path))
    try:
        state = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"cannot read {weights_path}: {error}") from None
    _strict_load(model, state, str(weights_path))
    model.eval()
    model_unit, model_rate = config["input_unit"], float(config["sfreq"])
    unit = input_unit or model_unit
    rate = float(sfreq) if sfreq is not None else model_rate
    if unit == model_unit and rate == model_rate:
        return model
    if not convert:
        raise CheckpointError(
            f"{directory} expects input in {model_unit} at {model_rate:g} Hz, but input was declared "
            f"in {unit} at {rate:g} Hz. Preprocess the data to {model_unit} at {model_rate:g} Hz, or "
            "pass convert=True to rescale and resample on the fly.")
    return InputConversion(model, unit, rate)


def from_pretrained(source: str | Path, **kwargs: Any) -> nn.Module:
    """Load a neurofm checkpoint folder (:func:`load_pretrained`) or an official LaBraM ``.pth``
    file (:func:`load_labram_checkpoint`), passing ``kwargs`` on."""
    source = Path(source)
    if source.is_dir():
        return load_pretrained(source, **kwargs)
    return load_labram_checkpoint(source, **kwargs)


class InputConversion(nn.Module):
    """Feeds a model input given in another unit and/or sampling rate.

    ``forward(x [B, C, T], *args, **kwargs)``: multiplies by the unit factor
    (:data:`UNIT_TO_MODEL`), resamples the last axis from ``sfreq`` to 200 Hz by Fourier
    interpolation (T·200/sfreq must be a whole number of 200-sample patches), then calls the model.
    """

    def __init__(self, model: nn.Module, input_unit: str, sfreq: float) -> None:
        super().__init__()
        if input_unit not in UNIT_TO_MODEL:
            raise CheckpointError(f"cannot convert input declared in {input_unit!r} to {INPUT_UNIT}: "
                                  f"known physical units are {', '.join(UNIT_TO_MODEL)}")
        if sfreq <= 0:
            raise CheckpointError(f"sampling rate must be positive, got {sfreq}")
        self.model = model
        self.input_unit = input_unit
        self.sfreq = float(sfreq)
        self.scale = UNIT_TO_MODEL[input_unit]

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        x = x * self.scale
        if self.sfreq != SAMPLING_RATE:
            x = resample_fourier(x, self.sfreq, SAMPLING_RATE)
        return self.model(x, *args, **kwargs)


def resample_fourier(x: torch.Tensor, sfreq: float, target: float) -> torch.Tensor:
    """Resample the last axis of ``x`` from ``sfreq`` to ``target`` Hz by zero-padding or truncating
    its spectrum (band-limited interpolation, as ``scipy.signal.resample``)."""
    length = x.shape[-1]
    new_length = length * target / sfreq
    if abs(new_length - round(new_length)) > 1e-6:
        raise CheckpointError(f"{length} samples at {sfreq:g} Hz is not a whole number of samples at "
                              f"{target:g} Hz; crop the window to a whole number of seconds")
    new_length = int(round(new_length))
    spectrum = torch.fft.rfft(x.float(), dim=-1)
    bins = new_length // 2 + 1
    if bins <= spectrum.shape[-1]:
        spectrum = spectrum[..., :bins]
    else:
        spectrum = F.pad(spectrum, (0, bins - spectrum.shape[-1]))
    return torch.fft.irfft(spectrum, n=new_length, dim=-1) * (new_length / length)
