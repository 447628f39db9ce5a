"""neurofm's own checkpoint format: a folder with ``model.safetensors`` and ``config.json``.

``config.json`` records the format and its version, the model family
(:class:`~neurofm.models.backbone.SavedModel`), the registry name, the architecture, the channel
vocabulary, the input the network takes (``sfreq``, ``patch_size``, ``input_unit``), the
weights' SHA-256 and, under ``extra``, what the writer adds (the preprocessing recipe, the
pretraining record, the fine-tuning task...).

Loading never unpickles (safetensors and JSON only) and trusts nothing in the folder: the JSON is
bounded in size, the family must be registered, the architecture must build, and the network is
first built on the meta device and compared with the shapes in the safetensors header, so a config
naming absurd sizes is refused before any memory is allocated. Every failure is a
:class:`~neurofm.errors.CheckpointError` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from neurofm.atomic import atomic_path, atomic_write_json
from neurofm.channels import LABRAM_VOCABULARY
from neurofm.errors import CheckpointError, ConfigError
from neurofm.models.backbone import SavedModel, build_for_state, load_state_strict
from neurofm.models.input_conversion import InputConversion
from neurofm.models.registry import family_class

FORMAT_NAME = "neurofm-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: A config.json is a few kilobytes; anything far larger is not one.
MAX_CONFIG_BYTES = 4 << 20


def save_pretrained(model: nn.Module, directory: str | Path, model_name: str | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` as ``directory/model.safetensors`` + ``directory/config.json`` (atomically).

    The config records the model family, its registry name (when given), what the family
    describes of itself (:meth:`~neurofm.models.backbone.SavedModel.saved_config`: architecture,
    input rate, patch length and unit, head size...), the channel vocabulary and the weights'
    SHA-256. ``extra`` adds fields (for example the preprocessing recipe).
    """
    if not isinstance(model, SavedModel):
        raise CheckpointError(f"save_pretrained does not know how to describe a {type(model).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "family": model.family,
        "model": model_name,
        "architecture": None,
        "channel_vocabulary": list(LABRAM_VOCABULARY),
    }
    config.update(model.saved_config())
    if extra:
        config["extra"] = dict(extra)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT_NAME})
        config["weights_sha256"] = sha256_of(tmp)
    atomic_write_json(directory / CONFIG_FILE, config)
    return directory


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_saved_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint folder, checked to be a bounded JSON object of this
    format; :class:`CheckpointError` naming the file otherwise."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{directory} is not a neurofm checkpoint: it needs {CONFIG_FILE} and "
                              f"{WEIGHTS_FILE}")
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{config_path} is {config_path.stat().st_size} bytes, far larger than "
                              "any neurofm config; the checkpoint is damaged or not neurofm's")
    try:
        config = json.loads(config_path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{config_path} is not UTF-8 text ({error.reason} at byte "
                              f"{error.start}); the checkpoint is damaged") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{config_path} is not valid JSON ({error}); the checkpoint is damaged") from None
    except RecursionError:
        raise CheckpointError(f"{config_path} nests JSON too deeply to be a neurofm config; the "
                              "checkpoint is damaged") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path} holds a JSON {type(config).__name__}, not an object; "
                              "the checkpoint is damaged")
    if config.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{config_path} is not a {FORMAT_NAME} config")
    if config.get("channel_vocabulary") != list(LABRAM_VOCABULARY):
        raise CheckpointError(f"{config_path} was saved with another channel vocabulary; its spatial "
                              "embedding rows would address the wrong electrodes")
    for field, kind in (("architecture", dict), ("input_unit", str), ("sfreq", (int, float))):
        if not isinstance(config.get(field), kind) or isinstance(config.get(field), bool):
            raise CheckpointError(f"{config_path}: field {field!r} is missing or has the wrong type "
                                  f"({config.get(field)!r}); the checkpoint is damaged")
    return config


def load_pretrained(
    directory: str | Path,
    input_unit: str | None = None,
    sfreq: float | None = None,
    convert: bool = False,
) -> nn.Module:
    """Load a neurofm checkpoint folder written by :func:`save_pretrained`, in eval mode.

    ``input_unit`` / ``sfreq`` declare what the caller will feed. Anything other than what the
    checkpoint records is refused with a :class:`CheckpointError`, unless ``convert=True``: then
    the model is wrapped in an :class:`~neurofm.models.input_conversion.InputConversion` that
    rescales the unit and resamples the rate on the fly.
    """
    directory = Path(directory)
    config = read_saved_config(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    expected_sha = config.get("weights_sha256")
    if expected_sha and sha256_of(weights_path) != expected_sha:
        raise CheckpointError(f"{weights_path} does not match the SHA-256 in {config_path}: the "
                              "weights are corrupted or were replaced")
    family = family_class(str(config.get("family")))
    if family is None:
        raise CheckpointError(f"{config_path}: unknown model family {config.get('family')!r}")
    model = build_for_state(lambda: _build(family, config, config_path), _header_shapes(weights_path),
                            str(weights_path))
    try:
        state = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"cannot read {weights_path}: {error}") from None
    load_state_strict(model, state, str(weights_path))
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


def _build(family: type[SavedModel], config: Mapping[str, Any], config_path: Path) -> nn.Module:
    try:
        return family.from_saved_config(config)
    except (TypeError, ValueError, KeyError, ConfigError) as error:
        raise CheckpointError(f"{config_path}: the {config.get('family')} architecture it records "
                              f"cannot be built ({type(error).__name__}: {error}); the checkpoint "
                              "is damaged or from another version of neurofm") from None


def _header_shapes(weights_path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors file's header (no tensor data is read)."""
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118 (not iterable)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {weights_path}: {error}") from None
