"""Typed training configs: recipe defaults, then a YAML file, then ``key=value`` overrides.

Every training job is described by one dataclass (:class:`TokenizerTrainConfig`,
:class:`PretrainConfig`, :class:`FinetuneConfig`), built in three layers:

1. the recipe defaults of the task (METHODS.md section 3 for the tokenizer, 4 for masked-EEG
   modelling, 6.4 for FIP, 5 for fine-tuning);
2. an optional YAML file holding any subset of the fields, nested like the dataclass;
3. command-line overrides written as dotted ``key=value`` pairs (``optim.lr=1e-4``,
   ``run.precision=bf16``, ``optim.betas=0.9,0.98``).

Values are coerced to the declared field types, unknown keys and inconsistent options raise
:class:`~neurofm.errors.ConfigError` naming the option, and :func:`save_config` writes the
resolved config (every field, not only the overridden ones) as YAML next to checkpoints and logs.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union

import yaml

from neurofm.atomic import atomic_write_text
from neurofm.errors import ConfigError

Precision = Literal["fp32", "bf16", "fp16"]
# Seeds feed NumPy (32-bit) and torch; ranks and steps are added to them, so they stay 32-bit.
MAX_SEED = 2**32 - 1
Objective = Literal["mem", "fip", "mae-time"]


@dataclass
class OptimConfig:
    """AdamW and its warm-up + cosine learning-rate schedule.

    ``lr`` is the peak learning rate at ``reference_batch_size`` samples per optimizer step; with
    ``lr_batch_scaling="linear"`` both ``lr`` and ``min_lr`` are multiplied by
    ``global_batch / reference_batch_size`` (the official tokenizer recipe), with ``"none"`` they
    are used as given (the official masked-EEG recipe). The schedule rises linearly from 0 over
    ``warmup_epochs`` and follows a cosine down to ``min_lr`` at the last step.
    """

    lr: float = 5e-4
    min_lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.05
    clip_grad_norm: float | None = None
    epochs: int = 50
    warmup_epochs: float = 5.0
    lr_batch_scaling: Literal["none", "linear"] = "none"
    reference_batch_size: int = 256
    layer_decay: float | None = None


@dataclass
class DataConfig:
    """How windows are cut from the corpus and batched.

    ``batch_size`` is per process and per micro-step; one optimizer step sees
    ``batch_size * run.accumulation_steps * world_size`` windows (the global batch).
    ``val_fraction`` of the subjects are held out for validation. ``exclude_recordings`` lists
    recording ids or shell patterns (``"tuab/*"``) never trained on, e.g. the recordings a
    downstream evaluation holds out.
    """

    batch_size: int = 64
    window_seconds: float = 4.0
    stride_seconds: float = 4.0
    val_fraction: float = 0.05
    num_workers: int = 0
    exclude_recordings: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    """Everything about running the loop that does not change the maths of one step.

    ``max_steps`` (when set) replaces ``optim.epochs`` as the length of the run and of the
    schedule. ``checkpoint_every_steps = 0`` checkpoints at the end of each epoch only.
    ``max_bad_steps`` is how many consecutive optimizer steps with a non-finite loss or gradient
    are skipped before the run stops.
    """

    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Precision = "fp32"
    compile: bool = False
    accumulation_steps: int = 1
    max_steps: int | None = None
    log_every_steps: int = 10
    checkpoint_every_steps: int = 0
    keep_last: int = 3
    eval_every_epochs: int = 1
    monitor: str = "val/loss"
    monitor_mode: Literal["min", "max"] = "min"
    max_bad_steps: int = 5
    progress: bool = True
    tensorboard: bool = True
    distributed: Literal["ddp", "fsdp"] = "ddp"


@dataclass
class TrainConfig:
    """Fields every training task shares: the model, optimizer, data and run sections."""

    task: ClassVar[str] = "train"

    model: str = ""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def recipe(cls, chosen: Mapping[str, Any]) -> dict[str, Any]:
        """The recipe defaults beneath the user's values (nested field values), given what the
        user chose in every layer (``chosen``: the merged YAML file, flags and overrides): the
        dataclass defaults, with what the chosen named model changes (``_MODEL_DEFAULTS``)."""
        return model_defaults(cls.task, str(chosen.get("model") or _field_default(cls, "model")))

    def validate(self) -> None:
        """Raise :class:`ConfigError` for any inconsistent option (checked after every load)."""
        o, d, r = self.optim, self.data, self.run
        _require(bool(self.model), "model", "is empty; name a registered model (e.g. labram_base)")
        _require(o.lr > 0, "optim.lr", f"must be positive, got {o.lr}")
        _require(0 <= o.min_lr <= o.lr, "optim.min_lr",
                 f"must lie in [0, optim.lr={o.lr}], got {o.min_lr}")
        _require(all(0.0 <= b < 1.0 for b in o.betas), "optim.betas",
                 f"must both lie in [0, 1), got {o.betas}")
        _require(o.eps > 0, "optim.eps", f"must be positive, got {o.eps}")
        _require(o.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {o.weight_decay}")
        _require(o.clip_grad_norm is None or o.clip_grad_norm > 0, "optim.clip_grad_norm",
                 f"must be positive or null (no clipping), got {o.clip_grad_norm}")
        _require(o.epochs >= 1, "optim.epochs", f"must be >= 1, got {o.epochs}")
        _require(0 <= o.warmup_epochs <= o.epochs, "optim.warmup_epochs",
                 f"must lie in [0, optim.epochs={o.epochs}], got {o.warmup_epochs}")
        _require(o.reference_batch_size >= 1, "optim.reference_batch_size",
                 f"must be >= 1, got {o.reference_batch_size}")
        _require(o.layer_decay is None or 0 < o.layer_decay <= 1, "optim.layer_decay",
                 f"must lie in (0, 1] or be null, got {o.layer_decay}")
        _require(d.batch_size >= 1, "data.batch_size", f"must be >= 1, got {d.batch_size}")
        _require(d.window_seconds > 0, "data.window_seconds", f"must be positive, got {d.window_seconds}")
        _require(d.stride_seconds > 0, "data.stride_seconds", f"must be positive, got {d.stride_seconds}")
        _require(0 <= d.val_fraction < 1, "data.val_fraction", f"must lie in [0, 1), got {d.val_fraction}")
        _require(d.num_workers >= 0, "data.num_workers", f"must be >= 0, got {d.num_workers}")
        _require(0 <= r.seed <= MAX_SEED, "run.seed", f"must lie in [0, {MAX_SEED}], got {r.seed}")
        _require(r.accumulation_steps >= 1, "run.accumulation_steps",
                 f"must be >= 1, got {r.accumulation_steps}")
        _require(r.max_steps is None or r.max_steps >= 1, "run.max_steps",
                 f"must be >= 1 or null, got {r.max_steps}")
        _require(r.log_every_steps >= 1, "run.log_every_steps", f"must be >= 1, got {r.log_every_steps}")
        _require(r.checkpoint_every_steps >= 0, "run.checkpoint_every_steps",
                 f"must be >= 0 (0 = at epoch ends only), got {r.checkpoint_every_steps}")
        _require(r.keep_last >= 1, "run.keep_last", f"must be >= 1, got {r.keep_last}")
        _require(r.eval_every_epochs >= 0, "run.eval_every_epochs",
                 f"must be >= 0 (0 = never), got {r.eval_every_epochs}")
        _require(r.max_bad_steps >= 1, "run.max_bad_steps", f"must be >= 1, got {r.max_bad_steps}")
        _require(not (r.precision == "fp16" and r.device == "cpu"), "run.precision",
                 "fp16 needs a CUDA device; use run.precision=bf16 on the CPU")
        _require(not (r.compile and r.distributed == "fsdp"), "run.compile",
                 "is not supported together with run.distributed=fsdp; drop one of them")


@dataclass
class TokenizerTrainConfig(TrainConfig):
    """VQ-NSP tokenizer training (METHODS.md section 3, official [C] recipe).

    Peak lr 5e-5 and min lr 1e-5 per 128 samples, linearly scaled with the global batch as the
    official code does (1024 samples give 4e-4); AdamW (0.9, 0.99), weight decay 1e-4, no
    gradient clipping, 100 epochs with 10 of warm-up, windows cut with a 1 s stride.

    ``restart_dead_every`` / ``dead_code_fraction`` (neurofm, not in the official recipe): every
    that many steps, codes used less than that fraction of the mean code's usage are re-seeded
    from the batch. Measured on the shared corpus (docs/results.md), this kept all codes in use
    where the same run without restarts drifted towards collapse; 0 turns it off.
    """

    task: ClassVar[str] = "tokenizer"
    #: The objective it trains (:mod:`neurofm.objectives.registry`).
    objective: ClassVar[str] = "vq-nsp"

    model: str = "vqnsp_base"
    restart_dead_every: int = 10
    dead_code_fraction: float = 0.4
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=5e-5, min_lr=1e-5, betas=(0.9, 0.99), eps=1e-8, weight_decay=1e-4,
        clip_grad_norm=None, epochs=100, warmup_epochs=10.0,
        lr_batch_scaling="linear", reference_batch_size=128))
    data: DataConfig = field(default_factory=lambda: DataConfig(
        batch_size=64, window_seconds=4.0, stride_seconds=1.0))

    def validate(self) -> None:
        super().validate()
        _require(self.restart_dead_every >= 0, "restart_dead_every",
                 f"must be >= 0 (0 turns restarts off), got {self.restart_dead_every}")
        _require(0.0 < self.dead_code_fraction < 1.0, "dead_code_fraction",
                 f"must lie in (0, 1), got {self.dead_code_fraction}")


@dataclass
class PretrainConfig(TrainConfig):
    """Self-supervised pretraining: LaBraM masked-EEG modelling (``mem``), Neuro-BERT FIP
    (``fip``) or its time-domain ablation (``mae-time``).

    ``tokenizer`` is the VQ-NSP checkpoint that gives ``mem`` its targets (required for ``mem``,
    refused otherwise). ``symmetric_masking`` applies to ``mem`` only; ``loss_on`` ("masked" or
    "all" patches, METHODS.md 6.4 ablation b) to ``fip`` and ``mae-time`` only; ``fip_spectrum``
    ("polar", the specification, or "cartesian" real and imaginary parts) to ``fip`` only. Recipe
    defaults differ per objective and model; see :func:`pretrain_defaults`.
    """

    task: ClassVar[str] = "pretrain"

    objective: Objective = "mem"
    tokenizer: str | None = None
    mask_ratio: float = 0.5
    symmetric_masking: bool = True
    loss_on: Literal["masked", "all"] = "masked"
    fip_spectrum: Literal["polar", "cartesian"] = "polar"

    @classmethod
    def recipe(cls, chosen: Mapping[str, Any]) -> dict[str, Any]:
        """The chosen objective's recipe (:func:`pretrain_defaults`)."""
        if "objective" not in chosen:
            raise ConfigError("no pretraining objective chosen: pass --objective mem, fip or "
                              "mae-time (or set objective: in the config file)")
        defaults = pretrain_defaults(str(chosen["objective"]))
        model = str(chosen.get("model") or defaults["model"])
        return merge_nested(defaults, model_defaults(cls.task, model))

    def validate(self) -> None:
        super().validate()
        if self.objective == "mem":
            _require(self.tokenizer is not None, "tokenizer",
                     "is required for --objective mem (its targets are the VQ-NSP token ids); "
                     "train one with `neurofm tokenizer train` and pass --tokenizer CKPT")
        else:
            _require(self.tokenizer is None, "tokenizer",
                     f"is only used by --objective mem, not {self.objective}; remove --tokenizer")
            _require(self.symmetric_masking == _OBJECTIVE_DEFAULTS[self.objective]["symmetric_masking"],
                     "symmetric_masking", f"applies to --objective mem only, not {self.objective}")
        if self.objective == "mem":
            _require(self.loss_on == "masked", "loss_on",
                     "applies to --objective fip and mae-time only, not mem")
        if self.objective != "fip":
            _require(self.fip_spectrum == "polar", "fip_spectrum",
                     f"applies to --objective fip only, not {self.objective}")
        _require(0.0 < self.mask_ratio < 1.0, "mask_ratio", f"must lie in (0, 1), got {self.mask_ratio}")


@dataclass
class FinetuneConfig(TrainConfig):
    """Supervised fine-tuning of a pretrained backbone (METHODS.md section 5, Base recipe).

    AdamW (0.9, 0.999), weight decay 0.05, peak lr 5e-4 down to 1e-6, 50 epochs with 5 of
    warm-up, layer-wise lr decay 0.65, gradient clipping off; selection by the validation score.
    """

    task: ClassVar[str] = "finetune"

    model: str = "labram_base"
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=5e-4, min_lr=1e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05,
        clip_grad_norm=None, epochs=50, warmup_epochs=5.0, layer_decay=0.65))
    label_smoothing: float = 0.1

    def validate(self) -> None:
        super().validate()
        _require(0.0 <= self.label_smoothing < 1.0, "label_smoothing",
                 f"must lie in [0, 1), got {self.label_smoothing}")


# Per-objective recipe values that differ from the PretrainConfig field defaults.
_OBJECTIVE_DEFAULTS: dict[str, dict[str, Any]] = {
    # METHODS.md section 4: batch 64 per GPU, lr 5e-4 not batch-scaled, 50 epochs, 5 warm-up.
    "mem": {
        "model": "labram_base_mem",
        "symmetric_masking": True,
        "optim": {"lr": 5e-4, "min_lr": 1e-5, "betas": (0.9, 0.98), "eps": 1e-8,
                  "weight_decay": 0.05, "clip_grad_norm": 3.0, "epochs": 50,
                  "warmup_epochs": 5.0, "lr_batch_scaling": "none"},
        "data": {"batch_size": 64, "window_seconds": 4.0, "stride_seconds": 4.0},
    },
    # METHODS.md section 6.4: lr 1e-3 at batch 256 linearly scaled, 5% warm-up of 100 epochs.
    "fip": {
        "model": "neurobert_base",
        "symmetric_masking": False,
        "optim": {"lr": 1e-3, "min_lr": 1e-5, "betas": (0.9, 0.999), "eps": 1e-8,
                  "weight_decay": 0.01, "clip_grad_norm": 1.0, "epochs": 100,
                  "warmup_epochs": 5.0, "lr_batch_scaling": "linear",
                  "reference_batch_size": 256},
        "data": {"batch_size": 64, "window_seconds": 4.0, "stride_seconds": 4.0},
    },
}
_OBJECTIVE_DEFAULTS["mae-time"] = _OBJECTIVE_DEFAULTS["fip"]

# Per (task, model) values on top of the task's recipe: what a named size changes.
_MODEL_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    # Huge does not fit one device's memory with a full optimizer state: shard it.
    ("pretrain", "labram_huge_mem"): {"run": {"distributed": "fsdp"}},
    # METHODS.md section 5: Large and Huge fine-tune 30 epochs, 3 of warm-up, lr decay 0.8.
    ("finetune", "labram_large"): {"optim": {"epochs": 30, "warmup_epochs": 3.0, "layer_decay": 0.8}},
    ("finetune", "labram_huge"): {"optim": {"epochs": 30, "warmup_epochs": 3.0, "layer_decay": 0.8},
                                  "run": {"distributed": "fsdp"}},
}


def model_defaults(task: str, model: str) -> dict[str, Any]:
    """What the named ``model`` changes in the recipe of ``task`` (nested field values)."""
    return dict(_MODEL_DEFAULTS.get((task, model), {}))


def pretrain_defaults(objective: str) -> dict[str, Any]:
    """The recipe defaults of one pretraining objective, as a nested dict of field values."""
    if objective not in _OBJECTIVE_DEFAULTS:
        raise ConfigError(f"unknown objective {objective!r}; choose one of "
                          f"{', '.join(sorted(_OBJECTIVE_DEFAULTS))}")
    return merge_nested({"objective": objective}, _OBJECTIVE_DEFAULTS[objective])


ConfigT = TypeVar("ConfigT", bound=TrainConfig)


def load_config(
    cls: type[ConfigT],
    yaml_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> ConfigT:
    """Build and validate a ``cls`` config from defaults, a YAML file and dotted overrides.

    ``base`` holds values set by dedicated command-line flags (``--objective``, ``--model``,
    ``--tokenizer``, dotted keys such as ``optim.epochs`` allowed; None values ignored); they sit
    above the YAML file and below the ``key=value`` overrides. The bottom layer is the config's
    :meth:`TrainConfig.recipe` (a :class:`PretrainConfig`: its objective's, the objective being
    taken from whichever layer sets it last); a named model may add its own defaults on top of the
    recipe (``labram_huge_mem`` shards with FSDP; ``labram_large`` fine-tunes 30 epochs).
    """
    layers: list[dict[str, Any]] = []
    if yaml_path is not None:
        document = read_yaml(yaml_path)
        # A config saved by save_config names its task; it must be this one.
        task = document.pop("task", cls.task)
        if task != cls.task:
            raise ConfigError(f"config file {yaml_path} holds a {task!r} config, not a {cls.task!r} one")
        layers.append(document)
    if base:
        layers.append(nested({key: value for key, value in base.items() if value is not None}))
    layers.append(parse_overrides(overrides))
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = merge_nested(merged, layer)
    defaults = cls.recipe(merged)
    config = config_from_dict(cls, merge_nested(defaults, merged))
    config.validate()
    return config


def nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"optim.epochs": 3, "model": "x"}`` as ``{"optim": {"epochs": 3}, "model": "x"}``."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config YAML file: a mapping of (possibly nested) field values."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of options, "
                          f"found a {type(data).__name__}")
    return data


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["optim.lr=1e-4", "run.seed=3"]`` into ``{"optim": {"lr": "1e-4"}, ...}``.

    Values are parsed as YAML scalars or lists (``[0.9, 0.98]``, ``null``, ``true``); type
    coercion to the field type happens later, in :func:`config_from_dict`.
    """
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value "
                              "(e.g. optim.lr=1e-4)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {part!r}")
            node = child
        node[parts[-1]] = value
    return tree


def config_from_dict(cls: type[Any], data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested mapping, coercing each value to its field type.

    Missing fields keep their defaults; an unknown key raises :class:`ConfigError` with the
    closest valid name.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [key for key in data if key not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"; did you mean {prefix}{close[0]}?" if close else f"; valid keys: {', '.join(fields)}"
        raise ConfigError(f"unknown config option '{prefix}{key}'{hint}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config option {prefix}{name} must be a mapping of "
                                  f"{hint.__name__} fields, got {value!r}")
            factory = fields[name].default_factory
            assert factory is not dataclasses.MISSING  # nested configs have a default factory
            default = factory()
            values[name] = config_from_dict(hint, merge_nested(to_dict(default), dict(value)),
                                            prefix=f"{prefix}{name}.")
        else:
            values[name] = _coerce(value, hint, f"{prefix}{name}")
    return cls(**values)


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts, lists and scalars (YAML- and JSON-safe)."""
    return _plain(dataclasses.asdict(config))


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config atomically as YAML (``task`` first, then every field)."""
    document = {"task": config.task, **to_dict(config)}
    atomic_write_text(path, yaml.safe_dump(document, sort_keys=False))


def load_saved_config(cls: type[ConfigT], path: str | Path) -> ConfigT:
    """Read back a config written by :func:`save_config` (its ``task`` must match ``cls``)."""
    return load_config(cls, path)


def _field_default(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _require(condition: bool, option: str, problem: str) -> None:
    if not condition:
        raise ConfigError(f"config option {option} {problem}")


def merge_nested(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``, recursing into nested mappings (config layering)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_nested(out[key], value)
        else:
            out[key] = value
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Coerce ``value`` to type ``hint`` (scalars, Optional, Literal, tuple, dict)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if type(None) in args and (
                value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, name)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"config option {name} cannot be {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config option {name} must be one of "
                              f"{', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [part for part in value.strip("()[] ").split(",") if part.strip()]
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"config option {name} needs {len(args)} values "
                              f"(e.g. {name}=0.9,0.999), got {value!r}")
        return tuple(_coerce(v, a, name) for v, a in zip(value, args))
    if origin is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.strip("[] ").split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config option {name} must be a list, got {value!r}")
        return [_coerce(v, args[0], name) for v in value]
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config option {name} must be a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"config option {name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"config option {name} must be an integer, got {value!r}")
        try:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float) and number.is_integer():
                return int(number)
            if isinstance(number, int):
                return number
        except ValueError:
            pass
        raise ConfigError(f"config option {name} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"config option {name} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"config option {name} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"config option {name} must be a finite number, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config option {name} must be text, got {value!r}")
        return str(value)
    raise TypeError(f"config field {name} has an unsupported type {hint!r}")
