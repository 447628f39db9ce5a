"""Self-supervised objectives by name: how the engine builds one from its config.

Each objective module registers an :class:`ObjectiveSpec` with :func:`register_objective`; the
engine (:mod:`neurofm.engine.jobs`) looks the spec up by the config's ``objective`` and knows none
of them. A spec builds ``(objective, network)`` (the module the trainer optimises, and the
network the job exports), says whether it takes LaBraM's input (100 µV at 200 Hz, channels named
in the vocabulary) and names the models whose training data its targets come from (a
tokenizer), for the pretraining record.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from neurofm.errors import ConfigError

if TYPE_CHECKING:
    from neurofm.engine.config import TrainConfig
    from neurofm.engine.distributed import DistributedContext

_T = TypeVar("_T")


@dataclass(frozen=True)
class BuildContext:
    """What a builder may need beyond the config: the window length in samples, the run folder
    (for caches), the process group and the autocast dtype (None: fp32)."""

    window_samples: int
    run_dir: Path
    ctx: DistributedContext
    autocast_dtype: torch.dtype | None


@dataclass(frozen=True)
class ObjectiveSpec:
    """A registered objective: ``build(config, context) -> (objective, network)``;
    ``labram_input``: whether the corpus must be in 100 µV at 200 Hz with vocabulary channels;
    ``parents(config)``: ``(role, path)`` of the models whose data the targets come from."""

    name: str
    build: Callable[[Any, BuildContext], tuple[nn.Module, nn.Module]]
    labram_input: bool = False
    parents: Callable[[Any], list[tuple[str, str]]] = field(default=lambda config: [])


_OBJECTIVES: dict[str, ObjectiveSpec] = {}

#: Modules whose import registers objectives.
OBJECTIVE_MODULES: list[str] = [
    "neurofm.objectives.vq",
    "neurofm.objectives.mem",
    "neurofm.objectives.fip",
    "neurofm.objectives.mae_time",
]


def register_objective(spec: ObjectiveSpec) -> ObjectiveSpec:
    """Make ``spec`` buildable by its name."""
    if spec.name in _OBJECTIVES and _OBJECTIVES[spec.name] is not spec:
        raise ValueError(f"objective {spec.name!r} is registered twice")
    _OBJECTIVES[spec.name] = spec
    return spec


def get_objective(name: str) -> ObjectiveSpec:
    """The spec registered under ``name``; :class:`ConfigError` listing the known ones."""
    for module in OBJECTIVE_MODULES:
        importlib.import_module(module)
    if name not in _OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; known: {', '.join(sorted(_OBJECTIVES))}")
    return _OBJECTIVES[name]


def objective_name(config: TrainConfig) -> str:
    """The objective a training config trains (``config.objective``)."""
    name = getattr(config, "objective", None)
    if not isinstance(name, str):
        raise ConfigError(f"a {type(config).__name__} trains no self-supervised objective")
    return name


def build_model(config: TrainConfig, expected: type[_T], where: str, **defaults: Any) -> _T:
    """The registered ``config.model`` built with ``defaults`` under ``config.model_overrides``,
    checked to be an ``expected`` (what the objective trains); :class:`ConfigError` otherwise."""
    from neurofm.models.registry import create_checked_model

    overrides = {**defaults, **config.model_overrides}
    try:
        model = create_checked_model(config.model, **overrides)
    except TypeError as error:
        raise ConfigError(f"model {config.model!r} does not take the options {sorted(overrides)} "
                          f"({error}); check --model and model_overrides for {where}") from None
    if not isinstance(model, expected):
        raise ConfigError(f"model {config.model!r} builds a {type(model).__name__}; {where} needs "
                          f"a {expected.__name__} model")
    return model
