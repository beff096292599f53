"""Builds the configured providers by ``kind`` and hands them out by name."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import aiohttp
from pydantic import TypeAdapter

from bot.config import ProviderConfig, Settings
from bot.errors import InvalidRequest
from bot.i18n import DEFAULT_LOCALE, _
from bot.images import ImageStore
from bot.providers.base import Capabilities, Provider

#: kind -> "module:Class"; imported lazily so a deployment only loads what it configured.
PROVIDER_CLASSES: dict[str, str] = {
    "local": "bot.providers.local:LocalProvider",
    "leonardo": "bot.providers.leonardo:LeonardoProvider",
    "novita": "bot.providers.novita:NovitaProvider",
    "highway": "bot.providers.highway:HighwayProvider",
    "taskapi": "bot.providers.taskapi:TaskApiProvider",
    "ark": "bot.providers.ark:ArkProvider",
}


def build_provider(
    name: str, config: ProviderConfig, store: ImageStore, session: aiohttp.ClientSession | None = None
) -> Provider:
    """The provider for one config section; a remote one makes its requests on ``session`` when given
    (the process's shared session), else on a session of its own that its ``close`` closes."""
    module_name, class_name = PROVIDER_CLASSES[config.kind].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if config.kind == "local":  # draws offline: no HTTP at all
        local: Provider = cls(name, config, store)
        return local
    provider: Provider = cls(name, config, store, session=session)
    return provider


#: Every kind × model we document, for the README capabilities table (``seedream-bot capabilities --all``).
DOCUMENTED_MODELS: tuple[tuple[str, str], ...] = (
    ("local", "placeholder"),
    ("leonardo", "bytedance/seedream-5.5"),
    ("leonardo", "seedream-5.0-pro"),
    ("leonardo", "bytedance/seedream-5.0-flash"),
    ("leonardo", "seedream-4.5"),
    ("leonardo", "seedream-4.0"),
    ("novita", "seedream-5.0-lite"),
    ("novita", "seedream-4.5"),
    ("novita", "seedream-4.0"),
    ("highway", "seedream-5.0-lite"),
    ("highway", "seedream-4.5"),
    ("highway", "seedream-4.0"),
    ("taskapi", "doubao-seedream-5-0-lite"),
    ("taskapi", "doubao-seedream-4-5"),
    ("ark", "seedream-5-5-261028"),
    ("ark", "seedream-5-0-pro-260628"),
    ("ark", "seedream-5-0-flash-260915"),
    ("ark", "seedream-5-0-260128"),
    ("ark", "seedream-4-5-251128"),
    ("ark", "seedream-4-0-250828"),
)


@dataclass(frozen=True)
class ModelChoice:
    """One model a member can pick: the provider section that serves it and what it offers.

    A provider section serves one model (its ``model`` key), so choosing a model means choosing the
    section: pass ``provider`` wherever a provider name is taken (``JobEngine.enqueue(provider_name=…)``).
    To offer several models of one provider, configure one section per model (they may share a key).
    """

    #: The configured provider name (``[providers.<name>]``), the value a choice stands for.
    provider: str
    #: The model id sent to the provider, e.g. ``seedream-5-5-261028``.
    model: str
    capabilities: Capabilities

    @property
    def label(self) -> str:
        """What a member reads: ``5.5 — best quality, 1K/2K``."""
        return self.capabilities.label

    @property
    def family(self) -> str | None:
        return self.capabilities.family

    @property
    def cost_weight(self) -> int:
        return self.capabilities.cost_weight

    def choice_name(self, limit: int = 100, locale: str = DEFAULT_LOCALE) -> str:
        """``provider: label`` (in ``locale``) cut to ``limit`` characters (Discord's choice names take at most 100)."""
        text = f"{self.provider}: {self.capabilities.label_in(locale)}"
        return text if len(text) <= limit else text[: limit - 1] + "…"


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
    def from_settings(
        cls, settings: Settings, store: ImageStore, session: aiohttp.ClientSession | None = None
    ) -> ProviderRegistry:
        built = {name: build_provider(name, cfg, store, session) for name, cfg in settings.providers.items()}
        return cls(built, settings.generation.default_provider)

    def cost_weight(self, name: str | None = None) -> int:
        """Credits per image of this provider section before the resolution's weight, the one source of it:
        the section's own ``cost_weight`` when set, else its model's (Seedream 5.0 Pro costs two)."""
        provider = self.get(name)
        config = getattr(provider, "config", None)
        if config is not None and "cost_weight" in getattr(config, "model_fields_set", ()):
            return int(config.cost_weight)
        return provider.capabilities.cost_weight

    def get(self, name: str | None = None) -> Provider:
        key = name or self.default
        try:
            return self._providers[key]
        except KeyError:
            names = ", ".join(sorted(self._providers))
            raise InvalidRequest(
                _("There is no provider called {name} here; choose one of {choices}.", name=repr(key), choices=names)
            ) from None

    def __iter__(self) -> Iterator[Provider]:
        return iter(self._providers.values())

    def names(self) -> list[str]:
        return list(self._providers)

    def models(self, allowed: Iterable[str] | None = None) -> list[ModelChoice]:
        """The models on offer, one per provider section in config order (the default first).

        ``allowed`` keeps only those provider names (e.g. what a server permits); unknown names are ignored.
        """
        keep = None if allowed is None else set(allowed)
        names = sorted(self._providers, key=lambda name: name != self.default)  # stable: config order otherwise
        return [
            ModelChoice(name, self._providers[name].capabilities.model, self._providers[name].capabilities)
            for name in names
            if keep is None or name in keep
        ]

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
