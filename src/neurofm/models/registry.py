"""Named model configurations (``labram_base``, ``vqnsp_base``, ``neurobert_small``...).

A builder is registered under a name with :func:`register_model`; :func:`create_model` builds it,
with keyword overrides of its config. Checkpoints record the name and the resolved config, so a
model is rebuilt exactly from its file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from neurofm.errors import ConfigError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder(**overrides) -> nn.Module`` under ``name``."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorate


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the model registered under ``name``, with config fields overridden by keyword."""
    _import_model_families()
    if name not in _BUILDERS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _BUILDERS[name](**overrides)


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


def _import_model_families() -> None:
    # Importing a family module runs its @register_model decorators.
    import importlib

    for module in _FAMILY_MODULES:
        importlib.import_module(module)


# Model family modules whose import registers their named configs.
_FAMILY_MODULES: tuple[str, ...] = (
    "neurofm.models.labram",
    "neurofm.models.labram_pretrain",
    "neurofm.models.vqnsp",
    "neurofm.models.neurobert",
)
