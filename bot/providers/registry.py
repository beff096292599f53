"""Builds the configured providers by ``kind`` and hands them out by name."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

from pydantic import TypeAdapter

from bot.config import ProviderConfig, Settings
from bot.errors import InvalidRequest
from bot.images import ImageStore
from bot.providers.base import Provider

#: kind -> "module:Class"; imported lazily so a deployment only loads what it configured.
PROVIDER_CLASSES: dict[str, str] = {
    "local": "bot.providers.local:LocalProvider",
    "leonardo": "bot.providers.leonardo:LeonardoProvider",
    "novita": "bot.providers.novita:NovitaProvider",
    "highway": "bot.providers.highway:HighwayProvider",
    "taskapi": "bot.providers.taskapi:TaskApiProvider",
    "ark": "bot.providers.ark:ArkProvider",
}


def build_provider(name: str, config: ProviderConfig, store: ImageStore) -> Provider:
    module_name, class_name = PROVIDER_CLASSES[config.kind].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    provider: Provider = cls(name, config, store)
    return provider


#: Every kind × model we document, for the README capabilities table.
DOCUMENTED_MODELS: tuple[tuple[str, str], ...] = (
    ("local", "placeholder"),
    ("leonardo", "seedream-4.5"),
    ("leonardo", "seedream-4.0"),
    ("novita", "seedream-4.5"),
    ("novita", "seedream-4.0"),
    ("highway", "seedream-4.5"),
    ("highway", "seedream-4.0"),
    ("taskapi", "doubao-seedream-4-5"),
    ("ark", "seedream-4-5-251128"),
    ("ark", "seedream-4-0-250828"),
)


def documented_providers(store: ImageStore) -> list[Provider]:
    """One provider per documented kind × model, with default settings (no key needed: nothing is called)."""
    adapter: TypeAdapter[ProviderConfig] = TypeAdapter(ProviderConfig)
    return [
        build_provider(kind, adapter.validate_python({"kind": kind, "model": model}), store)
        for kind, model in DOCUMENTED_MODELS
    ]


class ProviderRegistry:
    """The providers of one running bot (or CLI call), by configured name."""

    def __init__(self, providers: dict[str, Provider], default: str) -> None:
        self._providers = providers
        self.default = default

    @classmethod
    def from_settings(cls, settings: Settings, store: ImageStore) -> ProviderRegistry:
        built = {name: build_provider(name, cfg, store) for name, cfg in settings.providers.items()}
        return cls(built, settings.generation.default_provider)

    def get(self, name: str | None = None) -> Provider:
        key = name or self.default
        try:
            return self._providers[key]
        except KeyError:
            names = ", ".join(sorted(self._providers))
            raise InvalidRequest(f"There is no provider called {key!r} here; choose one of {names}.") from None

    def __iter__(self) -> Iterator[Provider]:
        return iter(self._providers.values())

    def names(self) -> list[str]:
        return list(self._providers)

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
