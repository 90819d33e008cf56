"""Provider adapters, found by the `type` a `[providers.NAME]` table names.

Each provider is one module that declares itself (`PROVIDER = ProviderType(...)`, see
`providers.declaration`); `providers/presets.py` declares the OpenAI-compatible hosts known by
name (`PRESETS`). The registry walks this package once for those declarations, so adding a
provider is adding its module. A module's optional dependency (botocore for bedrock) is
imported only when one of its providers is built.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from providers.base import Provider
from providers.declaration import Preset, ProviderConfig, ProviderType


@functools.cache
def _declarations() -> tuple[tuple[ProviderType, ...], tuple[Preset, ...]]:
    types: list[ProviderType] = []
    presets: list[Preset] = []
    for module in pkgutil.iter_modules(__path__):
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        declared = getattr(loaded, "PROVIDER", None)
        if isinstance(declared, ProviderType):
            types.append(declared)
        presets += [p for p in getattr(loaded, "PRESETS", ()) if isinstance(p, Preset)]
    types.sort(key=lambda declared: (declared.rank, declared.name))
    return tuple(types), tuple(presets)


def provider_types() -> dict[str, ProviderType]:
    """Every provider type by its name, in their rank's order."""
    return {declared.name: declared for declared in _declarations()[0]}


def known_presets() -> dict[str, Preset]:
    """The OpenAI-compatible hosts known by name."""
    return {preset.name: preset for preset in _declarations()[1]}


def build_provider(name: str, config: ProviderConfig) -> Provider:
    """The adapter for the table `name`, configured by `config`."""
    kind = str(type(config).__struct_config__.tag)
    return provider_types()[kind].adapter(name, config)
