"""gateway.toml -> frozen msgspec structs, with `env.NAME` secrets resolved.

Every problem is a `ConfigError` whose one-line message names the file, the key and what is
wrong, so the CLI can print it and exit 2 instead of showing a traceback.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger("gateway")

ENV_PREFIX = "env."

# Built in, so that a fresh checkout runs with no file and no key.
DEFAULT_TOML = """
[providers.mock]
type = "mock"
"""


class ConfigError(Exception):
    """A bad configuration: the message is one line naming file, key and problem."""


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    # Seconds a streamed request may wait for its first upstream event before the gateway
    # commits the stream and sends SSE comments to keep idle-timeout proxies from cutting it.
    keepalive: float = 15.0
    max_request_bytes: int = 32 * 1024 * 1024
    max_upload_bytes: int = 25 * 1024 * 1024  # audio uploads (transcription, translation)
    # The most an upstream answer the gateway holds whole may weigh (a non-streamed answer,
    # an error body, once inflated); streamed answers are never held.
    max_upstream_bytes: int = 64 * 1024 * 1024
    # Seconds for a request's line and headers, from the connection's first byte (or its
    # opening): nginx's client_header_timeout is 60, Go's ReadHeaderTimeout unset; a client
    # with a working network sends a head in milliseconds.
    header_timeout: float = 10.0
    # A request body must arrive at min_body_rate bytes/s, measured over each body_timeout
    # seconds the gateway waits for it (Kestrel's MinRequestBodyDataRate: 240 bytes/s).
    body_timeout: float = 10.0
    min_body_rate: int = 240
    # Seconds an idle keep-alive connection is kept: above the 60 s of common load balancers
    # (AWS ALB, GCP), so that they, not the gateway, close it first (nginx's default is 75).
    idle_timeout: float = 75.0
    # Client connections served at once; past it a connection is answered 503.
    max_connections: int = 4096
    # Host names accepted in the Host header (DNS rebinding): None picks loopback names only
    # when listening on a loopback address, any name otherwise. "*.example.com" matches
    # subdomains, "*" any host.
    allowed_hosts: list[str] | None = None


class _ProviderBase(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    # Seconds allowed for connecting, for the response headers, and for any silence between
    # two chunks of a stream. A stream that keeps producing is never cut.
    timeout: float = 30.0
    keepalive: float | None = None  # None: the [server] value
    models: list[str] = []


class _HttpProviderBase(_ProviderBase, frozen=True):
    base_url: str = ""  # each type's default is in DEFAULT_BASE_URLS
    api_key: str | None = None  # "env.NAME" reads the environment; a plain string is used as is
    headers: dict[str, str] = {}  # extra headers sent upstream


class OpenAIProviderConfig(_HttpProviderBase, frozen=True, tag="openai"):
    """Any OpenAI-compatible server: OpenAI itself, vLLM, llama.cpp, Groq, ..."""


class AnthropicProviderConfig(_HttpProviderBase, frozen=True, tag="anthropic"):
    anthropic_version: str = "2023-06-01"
    max_tokens: int = 4096  # Anthropic requires max_tokens; used when the request has none


class GeminiProviderConfig(_HttpProviderBase, frozen=True, tag="gemini"):
    pass


class OllamaProviderConfig(_HttpProviderBase, frozen=True, tag="ollama"):
    pass


class AzureProviderConfig(_HttpProviderBase, frozen=True, tag="azure"):
    """Azure OpenAI: base_url is https://<resource>.openai.azure.com; model is the deployment."""

    api_version: str = "2024-10-21"


class CohereProviderConfig(_HttpProviderBase, frozen=True, tag="cohere"):
    pass


class BedrockProviderConfig(_HttpProviderBase, frozen=True, tag="bedrock"):
    """AWS Bedrock (Converse API). Credentials: these keys if set, else the usual AWS chain."""

    region: str = "us-east-1"
    access_key_id: str | None = None  # "env.NAME" or literal, like api_key
    secret_access_key: str | None = None
    session_token: str | None = None


class MockProviderConfig(_ProviderBase, frozen=True, tag="mock"):
    """The built-in provider: no network, no key, a deterministic reply token by token."""

    tokens: int = 10  # tokens per reply unless the request's max_tokens asks for fewer
    delay: float = 0.02  # seconds between two tokens


ProviderConfig = (
    OpenAIProviderConfig
    | AnthropicProviderConfig
    | GeminiProviderConfig
    | OllamaProviderConfig
    | AzureProviderConfig
    | CohereProviderConfig
    | BedrockProviderConfig
    | MockProviderConfig
)
KNOWN_TYPES: tuple[str, ...] = (
    "openai",
    "anthropic",
    "gemini",
    "ollama",
    "azure",
    "cohere",
    "bedrock",
    "mock",
)

# type -> (default base_url, default api_key). A table that leaves them out gets these.
TYPE_DEFAULTS: dict[str, tuple[str | None, str | None]] = {
    "anthropic": ("https://api.anthropic.com/v1", "env.ANTHROPIC_API_KEY"),
    "gemini": ("https://generativelanguage.googleapis.com/v1beta", "env.GEMINI_API_KEY"),
    "ollama": ("http://127.0.0.1:11434", None),
    "azure": (None, "env.AZURE_OPENAI_API_KEY"),
    "cohere": ("https://api.cohere.com/v2", "env.COHERE_API_KEY"),
    "bedrock": (None, None),
}

# OpenAI-compatible hosts known by name: `[providers.groq]` with nothing else works.
PRESETS: dict[str, tuple[str, str | None]] = {
    "openai": ("https://api.openai.com/v1", "env.OPENAI_API_KEY"),
    "groq": ("https://api.groq.com/openai/v1", "env.GROQ_API_KEY"),
    "mistral": ("https://api.mistral.ai/v1", "env.MISTRAL_API_KEY"),
    "deepseek": ("https://api.deepseek.com/v1", "env.DEEPSEEK_API_KEY"),
    "openrouter": ("https://openrouter.ai/api/v1", "env.OPENROUTER_API_KEY"),
    "together": ("https://api.together.xyz/v1", "env.TOGETHER_API_KEY"),
    "fireworks": ("https://api.fireworks.ai/inference/v1", "env.FIREWORKS_API_KEY"),
    "xai": ("https://api.x.ai/v1", "env.XAI_API_KEY"),
    "perplexity": ("https://api.perplexity.ai", "env.PERPLEXITY_API_KEY"),
    "cerebras": ("https://api.cerebras.ai/v1", "env.CEREBRAS_API_KEY"),
    # Local servers: no key unless one is configured.
    "vllm": ("http://127.0.0.1:8000/v1", None),
    "lmstudio": ("http://127.0.0.1:1234/v1", None),
    "llamacpp": ("http://127.0.0.1:8080/v1", None),
}


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    server: ServerConfig = ServerConfig()
    providers: dict[str, ProviderConfig] = {}
    source: str = "<built-in default>"  # where it was read from, for messages


class ResolvedKey(msgspec.Struct, frozen=True):
    """An api_key after `env.NAME` resolution: the value, or the variable that is missing."""

    value: str | None
    missing_env: str | None = None


def resolve_key(raw: str | None) -> ResolvedKey:
    if raw is None:
        return ResolvedKey(None)
    if raw.startswith(ENV_PREFIX):
        name = raw[len(ENV_PREFIX) :]
        value = os.environ.get(name)
        return ResolvedKey(value) if value else ResolvedKey(None, missing_env=name)
    return ResolvedKey(raw)


def load(path: str | Path | None) -> Config:
    """Read the config file at `path`; `None` means the built-in default (the mock provider)."""
    if path is None:
        return parse(DEFAULT_TOML, "<built-in default>")
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from None
    return parse(text, source)


def parse(text: str, source: str) -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    providers = raw.get("providers", {})
    if not isinstance(providers, dict):
        raise ConfigError(f"{source}: providers: expected a table of [providers.NAME] tables")
    converted: dict[str, ProviderConfig] = {}
    for name, table in providers.items():
        _check_provider_table(source, name, table)
        converted[name] = _convert(table, ProviderConfig, source, f"providers.{name}")
    rest = {key: value for key, value in raw.items() if key != "providers"}
    config = _convert({**rest, "source": source}, Config, source, "")
    config = msgspec.structs.replace(config, providers=converted)
    _check_values(config)
    return config


def _convert(value: Any, kind: Any, source: str, prefix: str) -> Any:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, prefix)}") from None


def _check_provider_table(source: str, name: str, table: Any) -> None:
    where = f"{source}: providers.{name}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    if not name or "/" in name:
        raise ConfigError(f"{where}: a provider name must be non-empty and contain no '/'")
    # `type` defaults to the table's name when that names a known adapter or preset.
    default_type = "openai" if name in PRESETS else name if name in KNOWN_TYPES else None
    kind = table.setdefault("type", default_type)
    if kind is None:
        raise ConfigError(f"{where}.type: required (one of: {', '.join(KNOWN_TYPES)})")
    if kind not in KNOWN_TYPES:
        raise ConfigError(
            f"{where}.type: unknown provider type {kind!r} (one of: {', '.join(KNOWN_TYPES)})"
        )
    if kind == "openai" and name in PRESETS:
        base_url, api_key = PRESETS[name]
    else:
        base_url, api_key = TYPE_DEFAULTS.get(kind, (None, None))
    if kind != "mock":
        if "base_url" not in table and base_url is None and kind != "bedrock":
            raise ConfigError(f"{where}.base_url: required for a provider of type {kind!r}")
        if base_url is not None:
            table.setdefault("base_url", base_url)
        if api_key is not None:
            table.setdefault("api_key", api_key)


def _describe(exc: msgspec.ValidationError, prefix: str) -> str:
    """Turn msgspec's "... - at `$.timeout`" into "providers.x.timeout: ..."."""
    what, sep, where = str(exc).rpartition(" - at `$")
    if not sep:
        what, where = str(exc), ""
    where = where.rstrip("`")
    unknown = _UNKNOWN_FIELD.fullmatch(what)
    if unknown:  # a typo: name the key itself, as every other error does
        where, what = f"{where}.{unknown[1]}", "unknown key"
    key = f"{prefix}{where}".lstrip(".")
    return f"{key}: {what}" if key else what


_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(.*)`")


def _check_values(config: Config) -> None:
    source = config.source
    server = config.server
    if not 0 <= server.port <= 65535:
        raise ConfigError(f"{source}: server.port: must be between 0 and 65535")
    if server.keepalive < 0:
        raise ConfigError(f"{source}: server.keepalive: must be 0 (off) or more seconds")
    if server.max_request_bytes <= 0:
        raise ConfigError(f"{source}: server.max_request_bytes: must be positive")
    for key in ("max_upload_bytes", "max_upstream_bytes", "max_connections", "min_body_rate"):
        if getattr(server, key) <= 0:
            raise ConfigError(f"{source}: server.{key}: must be positive")
    for key in ("header_timeout", "body_timeout", "idle_timeout"):
        if getattr(server, key) <= 0:
            raise ConfigError(f"{source}: server.{key}: must be a positive number of seconds")
    for host in server.allowed_hosts or ():
        if not _is_host_pattern(host):
            raise ConfigError(
                f"{source}: server.allowed_hosts: {host!r} is not a host name "
                "('name', '*.domain' or '*', without a port)"
            )
    for name, provider in config.providers.items():
        where = f"{source}: providers.{name}"
        if provider.timeout <= 0:
            raise ConfigError(f"{where}.timeout: must be a positive number of seconds")
        if provider.keepalive is not None and provider.keepalive < 0:
            raise ConfigError(f"{where}.keepalive: must be 0 (off) or more seconds")
        if isinstance(provider, _HttpProviderBase) and provider.base_url:
            if not provider.base_url.startswith(("http://", "https://")):
                raise ConfigError(f"{where}.base_url: must start with http:// or https://")
        elif isinstance(provider, MockProviderConfig) and (
            provider.tokens < 0 or provider.delay < 0
        ):
            raise ConfigError(f"{where}: tokens and delay must not be negative")


def _is_host_pattern(host: str) -> bool:
    if host == "*":
        return True
    name = host.removeprefix("*.")
    if name.startswith("[") and name.endswith("]"):  # an IPv6 address
        name = name[1:-1].replace(":", "")
    return bool(name) and not any(char in name for char in "*/: \t")


def warn_missing_keys(config: Config) -> list[str]:
    """Log (and return) a warning for each provider whose `env.NAME` key is unset, and one
    when no provider is configured at all."""
    warnings = []
    if not config.providers:
        warnings.append(
            f"{config.source}: no provider is configured; every request will be answered 400 "
            "(add a [providers.NAME] table, see README.md)"
        )
    for name, provider in config.providers.items():
        key = resolve_key(getattr(provider, "api_key", None))
        if key.missing_env:
            warnings.append(
                f"provider {name!r}: environment variable {key.missing_env} is not set; "
                "its requests will be answered with 401"
            )
    for warning in warnings:
        log.warning(warning)
    return warnings
