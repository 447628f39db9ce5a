"""Named model configurations (``labram_base``, ``vqnsp_base``, ``neurobert_small``...) and the
model families that neurofm's checkpoint format can rebuild.

A builder is registered under a name with :func:`register_model`; :func:`create_model` builds it,
with keyword overrides of its config. A family class (:class:`~neurofm.models.backbone.SavedModel`)
is registered with :func:`register_family`; :func:`family_class` finds it by the name a
``config.json`` records. Checkpoints record the family, the registered name and the resolved
config, so a model is rebuilt exactly from its file.

A new family is one module that registers both, listed in :data:`FAMILY_MODULES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from torch import nn

from neurofm.errors import ConfigError

if TYPE_CHECKING:
    from neurofm.models.backbone import Backbone, SavedModel

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_FAMILIES: dict[str, type[SavedModel]] = {}
_S = TypeVar("_S", bound="type[SavedModel]")


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder(**overrides) -> nn.Module`` under ``name``."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorate


def register_family(cls: _S) -> _S:
    """Class decorator: make ``cls`` (a :class:`~neurofm.models.backbone.SavedModel`) loadable
    from checkpoints that record its ``family``."""
    if cls.family in _FAMILIES and _FAMILIES[cls.family] is not cls:
        raise ValueError(f"model family {cls.family!r} is registered twice")
    _FAMILIES[cls.family] = cls
    return cls


def family_class(family: str) -> type[SavedModel] | None:
    """The registered class of ``family``, or None when no family of that name exists."""
    _import_model_families()
    return _FAMILIES.get(family)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the model registered under ``name``, with config fields overridden by keyword."""
    _import_model_families()
    if name not in _BUILDERS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _BUILDERS[name](**overrides)


#: The most parameters a model built from a name and overrides may have (LaBraM-Huge has 369 M);
#: raise it with the environment variable ``NEUROFM_MAX_PARAMETERS``.
DEFAULT_MAX_PARAMETERS = 2_000_000_000


def create_checked_model(name: str, **overrides: Any) -> nn.Module:
    """:func:`create_model`, once the model is known (built on the meta device, allocating
    nothing) to have at most ``NEUROFM_MAX_PARAMETERS`` parameters: overrides naming absurd sizes
    (``model_overrides.embed_dim=100000``) fail with a :class:`ConfigError` before any memory is
    taken."""
    import os

    import torch

    raw = os.environ.get("NEUROFM_MAX_PARAMETERS", str(DEFAULT_MAX_PARAMETERS))
    try:
        limit = int(float(raw))
    except ValueError:
        raise ConfigError(f"NEUROFM_MAX_PARAMETERS={raw!r} is not a number of parameters") from None
    with torch.device("meta"):
        count = sum(p.numel() for p in create_model(name, **overrides).parameters())
    if count > limit:
        raise ConfigError(f"model {name!r} with model_overrides {overrides} has {count:,} "
                          f"parameters, more than the limit of {limit:,}; check the sizes, or raise "
                          "NEUROFM_MAX_PARAMETERS if you mean it")
    return create_model(name, **overrides)


def backbone_class(name: str) -> type[Backbone] | None:
    """The :class:`~neurofm.models.backbone.Backbone` class that model ``name`` fine-tunes as (a
    pretraining network's backbone), or None when it holds none (a tokenizer). The model is built
    on the meta device, so nothing is allocated."""
    import torch

    from neurofm.errors import CheckpointError
    from neurofm.models.backbone import as_backbone

    with torch.device("meta"):
        try:
            return type(as_backbone(create_model(name), name))
        except CheckpointError:
            return None


def check_sizes(config: object, names: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless each named field of ``config`` is a positive integer
    (run from model configs' ``__post_init__``, before any tensor is allocated)."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{type(config).__name__}.{name}={value!r}: must be a positive "
                              "integer; fix model_overrides or the model's config.json")


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _import_model_families()
    return sorted(_BUILDERS)


def register_family_module(module: str) -> None:
    """Add a module (dotted name) whose import registers a family and its named models, e.g. a
    family defined outside neurofm."""
    if module not in FAMILY_MODULES:
        FAMILY_MODULES.append(module)


def registered_by(name: str) -> str:
    """The module whose builder registered model ``name`` (``neurofm.models.labram``, or a
    family defined outside neurofm)."""
    _import_model_families()
    if name not in _BUILDERS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _BUILDERS[name].__module__


def list_backbones() -> list[str]:
    """Names of the registered models that build a fine-tunable
    :class:`~neurofm.models.backbone.Backbone`, sorted (read from each builder's return type, so
    nothing is built)."""
    import typing

    from neurofm.models.backbone import Backbone

    _import_model_families()
    names = []
    for name, builder in _BUILDERS.items():
        built = typing.get_type_hints(builder).get("return")
        if isinstance(built, type) and issubclass(built, Backbone):
            names.append(name)
    return sorted(names)


def _import_model_families() -> None:
    # Importing a family module runs its @register_model decorators.
    import importlib

    for module in FAMILY_MODULES:
        importlib.import_module(module)


#: Model family modules whose import registers their families and named configs.
FAMILY_MODULES: list[str] = [
    "neurofm.models.labram",
    "neurofm.models.labram_pretrain",
    "neurofm.models.vqnsp",
    "neurofm.models.neurobert",
]
