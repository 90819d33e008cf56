"""What a provider module declares, and the settings every provider table shares.

A provider module ends with `PROVIDER = ProviderType(...)`: the `type` its tables name, the
config struct those tables become, the adapter class (whose `operations` say what it serves),
and its defaults. OpenAI-compatible hosts known by name are `Preset`s (`providers/presets.py`).
`providers/__init__.py` collects both; gateway.config derives the config union, the known types
and their defaults from them, and a test holds README.md's provider table to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from providers.base import Provider
from wire.operations import Operation


class AdapterClass(Protocol):
    """A provider module's adapter class (`providers.adapter`'s bases): it names what it
    serves, and makes a provider from a table's name and config."""

    operations: frozenset[Operation]

    def __call__(self, name: str, config: Any) -> Provider: ...


class ProviderConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    """The settings of every `[providers.NAME]` table; each type's config subclasses it."""

    # Seconds allowed for connecting, for the response headers, and for any silence between
    # two chunks of a stream. A stream that keeps producing is never cut.
    timeout: float = 30.0
    keepalive: float | None = None  # None: the [server] value
    models: list[str] = []
    # Further attempts at this provider after a retryable failure (see [routing]).
    retries: int = 0

    def problem(self) -> tuple[str, str] | None:
        """(the key, what is wrong with its value), or None: checked once the table converted."""
        if self.timeout <= 0:
            return "timeout", "must be a positive number of seconds"
        if self.keepalive is not None and self.keepalive < 0:
            return "keepalive", "must be 0 (off) or more seconds"
        if self.retries < 0:
            return "retries", "must not be negative"
        return None

    @property
    def type_name(self) -> str:
        """The table's `type` (openai, anthropic, ...), as its config class is tagged."""
        tag = type(self).__struct_config__.tag
        return tag if isinstance(tag, str) else ""


class KeyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One of a provider's `keys`: chosen by weight, rested when the upstream refuses it."""

    value: str  # "env.NAME" or a literal, like api_key
    weight: float = 1.0


class HttpProviderConfig(ProviderConfig, frozen=True):
    """A provider reached over HTTP: where, with which key, and which extra headers."""

    base_url: str = ""  # each type's (or preset's) default is in its declaration
    api_key: str | None = None  # "env.NAME" reads the environment; a plain string is used as is
    keys: list[KeyConfig] = []  # several weighted keys instead of one api_key
    headers: dict[str, str] = {}  # extra headers sent upstream
    # Bring your own key: the provider key the client sent goes upstream instead.
    forward_client_key: bool = False

    def problem(self) -> tuple[str, str] | None:
        found = super().problem()
        if found is not None:
            return found
        for i, key in enumerate(self.keys):
            if key.weight <= 0:
                return f"keys[{i}].weight", "must be positive"
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            return "base_url", "must start with http:// or https://"
        return None


@dataclass(frozen=True)
class ProviderType:
    """A `type` of provider table, as its module declares it."""

    name: str  # what `type = "..."` says; the config struct's tag
    config: type[ProviderConfig]
    adapter: AdapterClass  # (table name, config) -> the provider; its `operations` are served
    upstream: str  # the upstream API in a few words, for README.md
    base_url: str | None = None  # the default base_url
    base_url_required: bool = False  # no default, and the type cannot do without one
    base_url_example: str = ""  # how a required base_url looks, for README.md
    api_key: str | None = None  # the default api_key ("env.NAME")
    notes: str = ""  # what README.md says of its defaults beyond the generated ones
    rank: int = 50  # the order of the types in messages and README.md

    @property
    def operations(self) -> frozenset[Operation]:
        return self.adapter.operations

    @property
    def http(self) -> bool:
        """Reached over HTTP: the table takes base_url, api_key, keys, headers."""
        return issubclass(self.config, HttpProviderConfig)

    def defaults(self) -> dict[str, Any]:
        """The values a table of this type gets for the keys it leaves out."""
        return {
            key: value
            for key, value in (("base_url", self.base_url), ("api_key", self.api_key))
            if value is not None
        }


@dataclass(frozen=True)
class Preset:
    """An OpenAI-compatible host known by name: `[providers.<name>]` alone is a provider."""

    name: str
    base_url: str
    api_key: str | None  # "env.NAME"; None for a local server, which takes no key
    # How it serves /v1/responses: "native", "bridge" (through chat) or "auto" (tried natively,
    # through chat after a 404/405); see providers/openai.py.
    responses: str = "auto"
    type: str = "openai"  # the type whose tables it presets

    def defaults(self) -> dict[str, Any]:
        values: dict[str, Any] = {"base_url": self.base_url, "responses": self.responses}
        if self.api_key is not None:
            values["api_key"] = self.api_key
        return values
