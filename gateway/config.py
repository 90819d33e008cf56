"""gateway.toml -> frozen msgspec structs, with `env.NAME` secrets resolved.

Every problem is a `ConfigError` whose one-line message names the file, the key and what is
wrong, so the CLI can print it and exit 2 instead of showing a traceback.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, Union

import msgspec

from providers import known_presets, provider_types
from providers.declaration import ProviderConfig, ProviderType
from wire.config_values import ConfigError, resolve_key

log = logging.getLogger("gateway")

# The default for [server] max_held_bytes: eight answers at the default max_upstream_bytes.
MAX_HELD_BYTES = 512 * 1024 * 1024

# Built in, so that a fresh checkout runs with no file and no key.
DEFAULT_TOML = """
[providers.mock]
type = "mock"
"""


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    # Seconds a streamed request may wait for its first upstream event before the gateway
    # commits the stream and sends SSE comments to keep idle-timeout proxies from cutting it.
    keepalive: float = 15.0
    max_request_bytes: int = 32 * 1024 * 1024
    max_upload_bytes: int = 25 * 1024 * 1024  # audio uploads (transcription, translation)
    # The provider for a model named without one (Claude Code sends "claude-sonnet-4-5").
    default_provider: str | None = None
    # Browser origins that may call the gateway ("https://app.example"; "*": any). None: off.
    cors_origins: list[str] = []
    # Worker processes sharing the port: a number, or "auto" (one per core).
    workers: int | str = 1
    # Seconds requests in flight may run on after SIGTERM before they are ended.
    drain_timeout: float = 30.0
    # The most an upstream answer the gateway holds whole may weigh (a non-streamed answer,
    # an error body, once inflated); streamed answers are never held.
    max_upstream_bytes: int = 64 * 1024 * 1024
    # The most every answer held whole at once may weigh together (gateway.engine.held); past it a
    # request is answered 503. None: 512 MiB, or max_upstream_bytes if that is more.
    max_held_bytes: int | None = None
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
    # Client connections served at once; past it a connection is answered 503. None: sized
    # from the open-file limit (gateway.server.fdlimit.connection_cap), 4,096 at most.
    max_connections: int | None = None
    # Host names accepted in the Host header (DNS rebinding): None picks loopback names only
    # when listening on a loopback address, any name otherwise. "*.example.com" matches
    # subdomains, "*" any host.
    allowed_hosts: list[str] | None = None
    access_log: bool = True  # one JSON line per finished request on stderr
    # The client for upstream requests: "lean" (gateway.engine.transport.http1: aiohttp's where
    # it does not go) or "aiohttp" (aiohttp's for every request).
    upstream_client: Literal["lean", "aiohttp"] = "lean"

    @property
    def held_bytes_limit(self) -> int:
        if self.max_held_bytes is not None:
            return self.max_held_bytes
        return max(MAX_HELD_BYTES, self.max_upstream_bytes)


class AliasTarget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One target of a `[models.NAME]` alias: a `provider/model`, its weight and its tier."""

    model: str
    weight: float = 1.0  # same priority: a weighted random order
    priority: int = 0  # lower first; a tier is tried only after every earlier one failed


class ModelAlias(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[models.NAME]`: clients ask for NAME, the gateway tries `targets`."""

    targets: list[AliasTarget]
    retries: int | None = None  # None: each target's provider's `retries`


class RoutingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Every attempt of one request, retries and fallbacks together: nothing can loop.
    max_attempts: int = 5
    # Seconds a refused key (401/403, or 429 without Retry-After) or a failing target rests.
    cooldown: float = 60.0
    # Consecutive failures after which a target (provider/model) rests for `cooldown`.
    failures_to_rest: int = 3
    # Retry backoff: backoff_start * 2^n seconds, at most backoff_max, with +-20 % jitter.
    backoff_start: float = 0.5
    backoff_max: float = 5.0
    # An upstream's Retry-After is waited for up to this many seconds; a longer one moves
    # the request to the next candidate instead of waiting.
    max_retry_after: float = 10.0


# Budget periods: "1h", "1d", "30d" (a number and h or d).
# USD: spend is counted in nano-dollars in 64-bit integers (Redis' INCRBY), 9.2e9 USD at most.
MAX_SPEND = 1e9
_PERIOD_UNITS = {"h": 3600, "d": 86400}


class GatewayKeyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[keys.NAME]`: a key a client sends to use the gateway, with what it may do."""

    value: str  # "env.NAME" (or a literal): what the client sends
    models: list[str] = msgspec.field(
        default_factory=lambda: ["*"]
    )  # glob patterns over provider/model or alias names
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute (input + output, from the answers' usage)
    budget: int | None = None  # tokens per budget_period
    budget_period: str = "1d"
    max_parallel: int | None = None  # requests in flight at once
    # USD per budget_period: each request's worst case is reserved before the upstream is
    # called and settled to its real cost after the last byte (gateway.policy.pricing).
    max_spend: float | None = None
    # The response cache for this key ([cache]): None follows `[cache] all_keys`; false opts
    # the key out, true opts it in.
    cache: bool | None = None

    @property
    def budget_seconds(self) -> int:
        return period_seconds(self.budget_period) or 86400


def period_seconds(period: str) -> int | None:
    """ "30d" -> 2592000; None when it is not a number of hours or days."""
    number, unit = period[:-1], period[-1:]
    if unit not in _PERIOD_UNITS or not number.isdigit() or int(number) <= 0:
        return None
    return int(number) * _PERIOD_UNITS[unit]


class StateConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where limits, in-flight counts and cooldowns live: this process, or a shared Redis."""

    redis_url: str | None = None  # e.g. "redis://127.0.0.1:6379/0"; None: in process
    on_redis_error: str = "open"  # "open": serve without limits, warn; "closed": answer 503
    timeout: float = 0.25  # seconds for one Redis round trip before on_redis_error applies
    prefix: str = "gateway:"  # of every Redis key the gateway writes
    # Seconds a request's in-flight mark outlives the last renewal by its process (each
    # renews its own every third of this): a dead process's requests free their max_parallel
    # slots within it.
    in_flight_lease: float = 10.0


class CacheConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[cache]`: identical requests answered from a stored answer (gateway.cache)."""

    enabled: bool = False
    ttl: float = 3600.0  # seconds an answer is kept
    backend: Literal["memory", "redis"] = "memory"  # "redis": the [state] Redis, shared
    max_bytes: int = 256 * 1024 * 1024  # the memory backend's bound, per process (LRU)
    max_entry_bytes: int = 1024 * 1024  # a longer answer is not kept
    # Also cache requests that sample: temperature > 0, or unset (every API's default is 1).
    sampled: bool = False
    shared: bool = False  # one cache for every gateway key; false: each key its own
    all_keys: bool = True  # false: only keys with `cache = true`
    models: list[str] = []  # only these (glob over provider/model, provider, alias); []: all
    skip_models: list[str] = []  # never these


class PriceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[prices.NAME]`: USD per million tokens for a provider, a `provider/model` or an alias,
    over genai-prices' table (self-hosted and custom models; 0 for free local ones)."""

    input: float
    output: float
    cache_read: float | None = None  # cached input read; None: at the input rate
    cache_write: float | None = None  # input written to the cache; None: at the input rate


class PricingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[pricing]`: how requests are priced and reserved (gateway.policy.pricing)."""

    # Output tokens reserved for a request that names no max_tokens (nor max_completion_tokens,
    # max_output_tokens, maxOutputTokens) on a key with max_spend.
    default_max_tokens: int = 4096
    # The price of a model neither genai-prices nor [prices] knows. None: a key with max_spend
    # is refused such a model (403 price_unknown); a key without one is served, its cost unknown.
    unknown: PriceConfig | None = None
    # Refresh genai-prices' table in the background (a thread, every update_interval seconds)
    # from update_url; off: the snapshot the installed package ships, never fetched.
    update: bool = False
    update_interval: float = 3600.0
    update_url: str = (
        "https://raw.githubusercontent.com/pydantic/genai-prices/refs/heads/main/prices/"
        "new_data/v2/data.json"
    )


class AdminConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: str | None = None  # "env.NAME": what GET /v1/keys/usage wants as its Bearer key


# Labels the histograms may carry besides operation and provider ([metrics] histogram_labels).
HISTOGRAM_LABEL_CHOICES = ("gen_ai_request_model", "gateway_key")


class MetricsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True  # GET /metrics; false: nothing is measured and /metrics is a 404
    # Labels added to the histograms (TTFT, time per token, duration, token usage): each
    # multiplies their series, ~18 lines apiece. Counters carry model and key regardless.
    histogram_labels: list[str] = []
    # Seconds a rendered /metrics page is served again: scrapes within it share one render.
    cache_seconds: float = 1.0
    # "env.NAME" (or a literal): /metrics then wants `Authorization: Bearer <it>` (Prometheus'
    # `authorization` scrape setting); None: open, as probes are.
    key: str | None = None


MAX_CONSOLE_RECENT = 100_000  # a ring entry weighs ~0.5 KiB (python -m bench.console)


class ConsoleConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[console]`: the page at GET /console (gateway.console), behind the `[admin] key`."""

    enabled: bool | None = None  # None: on when an [admin] key is set
    recent: int = 1000  # finished requests kept in memory for the Live view (per process)

    def on(self, admin_key: str | None) -> bool:
        return bool(admin_key) and self.enabled is not False


class TracingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[tracing]`: OpenTelemetry spans over OTLP/HTTP (gateway.observability.tracing), with
    the `gateway[otel]` extra. Unset values fall back to the standard OTEL_* variables."""

    enabled: bool = False
    # The collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT ("/v1/traces" is added). None:
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT, http://localhost:4318.
    endpoint: str | None = None
    service_name: str | None = None  # None: OTEL_SERVICE_NAME, else "gateway"
    # Share of new traces kept (a client's sampled traceparent is always followed). None: the
    # sampler OTEL_TRACES_SAMPLER names, else every trace.
    sample_ratio: float | None = None
    # Sent with every export (a vendor's API key: "env.NAME"). Empty: OTEL_EXPORTER_OTLP_HEADERS.
    headers: dict[str, str] = {}
    # Prompts and completions on spans: not supported; spans carry none (the default).
    capture_content: bool = False
    warn_interval: float = 60.0  # seconds between two warnings of a collector that fails


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    server: ServerConfig = ServerConfig()
    providers: dict[str, ProviderConfig] = {}
    models: dict[str, ModelAlias] = {}
    routing: RoutingConfig = RoutingConfig()
    keys: dict[str, GatewayKeyConfig] = {}
    state: StateConfig = StateConfig()
    admin: AdminConfig = AdminConfig()
    metrics: MetricsConfig = MetricsConfig()
    console: ConsoleConfig = ConsoleConfig()
    tracing: TracingConfig = TracingConfig()
    prices: dict[str, PriceConfig] = {}
    pricing: PricingConfig = PricingConfig()
    cache: CacheConfig = CacheConfig()
    source: str = "<built-in default>"  # where it was read from, for messages


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
    union = _provider_union()
    for name, table in providers.items():
        _check_provider_table(source, name, table)
        converted[name] = _convert(table, union, source, f"providers.{name}")
    models = raw.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"{source}: models: expected a table of [models.NAME] tables")
    raw["models"] = {name: _alias_table(source, name, table) for name, table in models.items()}
    prices = raw.get("prices", {})
    if not isinstance(prices, dict):
        raise ConfigError(f'{source}: prices: expected a table of [prices."NAME"] tables')
    # Each on its own, so that an error names the table ("prices.mock.input: ...").
    priced = {
        name: _convert(table, PriceConfig, source, f"prices.{name}")
        for name, table in prices.items()
    }
    rest = {key: value for key, value in raw.items() if key not in ("providers", "prices")}
    config: Config = _convert({**rest, "source": source}, Config, source, "")
    config = msgspec.structs.replace(config, providers=converted, prices=priced)
    _check_values(config)
    return config


def _convert(value: Any, kind: Any, source: str, prefix: str) -> Any:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, prefix)}") from None


def _provider_union() -> Any:
    """Every provider type's config struct, one tagged union: `type` picks the struct."""
    configs = tuple(declared.config for declared in provider_types().values())
    return Union[configs]  # noqa: UP007 - built from the declarations at run time


def _check_provider_table(source: str, name: str, table: Any) -> None:
    where = f"{source}: providers.{name}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    if not name or "/" in name:
        raise ConfigError(f"{where}: a provider name must be non-empty and contain no '/'")
    types = provider_types()
    preset = known_presets().get(name)
    # `type` defaults to the table's name when that names a known adapter or preset.
    default_type = preset.type if preset else name if name in types else None
    kind = table.setdefault("type", default_type)
    known = ", ".join(types)
    if kind is None:
        raise ConfigError(f"{where}.type: required (one of: {known})")
    declared: ProviderType | None = types.get(kind) if isinstance(kind, str) else None
    if declared is None:
        raise ConfigError(f"{where}.type: unknown provider type {kind!r} (one of: {known})")
    if not declared.http:
        return
    # A preset applies to its own type only: `[providers.groq] type = "anthropic"` is Anthropic.
    defaults = preset.defaults() if preset and preset.type == kind else declared.defaults()
    if "base_url" not in table and "base_url" not in defaults and declared.base_url_required:
        raise ConfigError(f"{where}.base_url: required for a provider of type {kind!r}")
    if "keys" in table:
        defaults.pop("api_key", None)
    for key, value in defaults.items():
        table.setdefault(key, value)
    if "keys" in table and "api_key" in table:
        raise ConfigError(f"{where}: set either api_key or keys, not both")


def _alias_table(source: str, name: str, table: Any) -> Any:
    """`targets` may be a plain list of "provider/model": tried in that order (one per tier)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: models.{name}: expected a table with `targets`")
    targets = table.get("targets")
    if isinstance(targets, list):
        table = dict(table)
        table["targets"] = [
            {"model": target, "priority": i} if isinstance(target, str) else target
            for i, target in enumerate(targets)
        ]
    return table


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
        value = getattr(server, key)
        if value is not None and value <= 0:  # max_connections None: sized at start
            raise ConfigError(f"{source}: server.{key}: must be positive")
    if server.max_held_bytes is not None and server.max_held_bytes < server.max_upstream_bytes:
        raise ConfigError(
            f"{source}: server.max_held_bytes: must be at least server.max_upstream_bytes "
            f"({server.max_upstream_bytes}), or an answer at that limit could never be held"
        )
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
        problem = provider.problem()
        if problem is not None:
            key, what = problem
            raise ConfigError(f"{source}: providers.{name}{'.' if key else ''}{key}: {what}")
    _check_routing(config)
    _check_keys(config)
    _check_metrics(config)
    if worker_count(server.workers) is None:
        raise ConfigError(f'{source}: server.workers: a positive number or "auto"')
    if server.drain_timeout < 0:
        raise ConfigError(f"{source}: server.drain_timeout: must not be negative")
    _check_console(config)
    _check_tracing(config)
    _check_prices(config)
    _check_cache(config)
    default = server.default_provider
    if default is not None and default not in config.providers:
        raise ConfigError(
            f"{source}: server.default_provider: no provider {default!r} is configured "
            f"(configured: {', '.join(sorted(config.providers)) or 'none'})"
        )


def _check_routing(config: Config) -> None:
    source = config.source
    routing = config.routing
    if routing.max_attempts < 1:
        raise ConfigError(f"{source}: routing.max_attempts: must be at least 1")
    for key in ("cooldown", "backoff_start", "backoff_max", "max_retry_after"):
        if getattr(routing, key) < 0:
            raise ConfigError(f"{source}: routing.{key}: must not be negative")
    if routing.failures_to_rest < 1:
        raise ConfigError(f"{source}: routing.failures_to_rest: must be at least 1")
    for name, alias in config.models.items():
        where = f"{source}: models.{name}"
        if not name:
            raise ConfigError(f"{where}: an alias name must not be empty")
        if not alias.targets:
            raise ConfigError(f"{where}.targets: list at least one provider/model")
        if alias.retries is not None and alias.retries < 0:
            raise ConfigError(f"{where}.retries: must not be negative")
        for i, target in enumerate(alias.targets):
            provider, sep, model = target.model.partition("/")
            if not sep or not model:
                raise ConfigError(f"{where}.targets[{i}]: {target.model!r} is not 'provider/model'")
            if provider not in config.providers:
                raise ConfigError(
                    f"{where}.targets[{i}]: no provider {provider!r} is configured "
                    f"(configured: {', '.join(sorted(config.providers)) or 'none'})"
                )
            if target.weight <= 0:
                raise ConfigError(f"{where}.targets[{i}].weight: must be positive")


def _check_metrics(config: Config) -> None:
    source = config.source
    metrics = config.metrics
    for label in metrics.histogram_labels:
        if label not in HISTOGRAM_LABEL_CHOICES:
            raise ConfigError(
                f"{source}: metrics.histogram_labels: {label!r} is not one of "
                f"{', '.join(HISTOGRAM_LABEL_CHOICES)}"
            )
    if metrics.cache_seconds < 0:
        raise ConfigError(f"{source}: metrics.cache_seconds: must not be negative")


def _check_keys(config: Config) -> None:
    source = config.source
    for name, key in config.keys.items():
        where = f"{source}: keys.{name}"
        for limit in ("rpm", "tpm", "budget", "max_parallel", "max_spend"):
            value = getattr(key, limit)
            if value is not None and not 0 < value < math.inf:  # also NaN
                raise ConfigError(f"{where}.{limit}: must be a positive number")
        if key.max_spend is not None and key.max_spend > MAX_SPEND:
            raise ConfigError(f"{where}.max_spend: at most {MAX_SPEND:,.0f} (USD)")
        if period_seconds(key.budget_period) is None:
            raise ConfigError(
                f"{where}.budget_period: {key.budget_period!r} is not a number of hours or "
                'days ("1h", "1d", "30d")'
            )
        if not key.value:
            raise ConfigError(f"{where}.value: required")
    state = config.state
    if state.on_redis_error not in ("open", "closed"):
        raise ConfigError(f'{source}: state.on_redis_error: "open" or "closed"')
    if state.timeout <= 0:
        raise ConfigError(f"{source}: state.timeout: must be a positive number of seconds")
    if state.in_flight_lease < max(1.0, 3 * state.timeout):
        raise ConfigError(
            f"{source}: state.in_flight_lease: must be at least 1 second and 3 x state.timeout "
            "(a lease outlives two failed renewals)"
        )
    if state.redis_url is not None and not state.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise ConfigError(
            f"{source}: state.redis_url: must start with redis://, rediss:// or unix://"
        )


def _check_prices(config: Config) -> None:
    source, pricing = config.source, config.pricing
    for name, price in config.prices.items():
        where = f"{source}: prices.{name}"
        provider, sep, model = name.partition("/")
        if name in config.models:
            pass  # an alias: whatever serves it
        elif provider not in config.providers or (sep and not model):
            raise ConfigError(
                f"{where}: {name!r} is no configured provider, provider/model or alias "
                f"(providers: {', '.join(sorted(config.providers)) or 'none'})"
            )
        _check_price(where, price)
    if pricing.unknown is not None:
        _check_price(f"{source}: pricing.unknown", pricing.unknown)
    if pricing.default_max_tokens < 1:
        raise ConfigError(f"{source}: pricing.default_max_tokens: must be at least 1")
    if pricing.update_interval < 60:
        raise ConfigError(f"{source}: pricing.update_interval: at least 60 seconds")
    if not pricing.update_url.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: pricing.update_url: must start with http:// or https://")


def _check_price(where: str, price: PriceConfig) -> None:
    for rate in ("input", "output", "cache_read", "cache_write"):
        value = getattr(price, rate)
        if value is not None and not 0 <= value < 1e6:  # also NaN
            raise ConfigError(f"{where}.{rate}: USD per million tokens, 0 or more")


def _check_console(config: Config) -> None:
    source, console = config.source, config.console
    if console.enabled and not config.admin.key:
        raise ConfigError(
            f"{source}: console.enabled: the console wants an [admin] key (set [admin] key)"
        )
    if not 1 <= console.recent <= MAX_CONSOLE_RECENT:
        raise ConfigError(f"{source}: console.recent: between 1 and {MAX_CONSOLE_RECENT:,}")


def _check_tracing(config: Config) -> None:
    source, tracing = config.source, config.tracing
    ratio = tracing.sample_ratio
    if ratio is not None and not 0 <= ratio <= 1:  # also NaN
        raise ConfigError(f"{source}: tracing.sample_ratio: between 0 and 1")
    endpoint = tracing.endpoint
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: tracing.endpoint: must start with http:// or https://")
    if tracing.capture_content:
        raise ConfigError(
            f"{source}: tracing.capture_content: not supported; spans never carry prompts or "
            "completions"
        )
    if not tracing.warn_interval > 0:
        raise ConfigError(f"{source}: tracing.warn_interval: a positive number of seconds")


def _is_host_pattern(host: str) -> bool:
    if host == "*":
        return True
    name = host.removeprefix("*.")
    if name.startswith("[") and name.endswith("]"):  # an IPv6 address
        name = name[1:-1].replace(":", "")
    return bool(name) and not any(char in name for char in "*/: \t")


def worker_count(workers: int | str) -> int | None:
    """How many worker processes `workers` asks for ("auto": one per core); None if invalid."""
    if workers == "auto":
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )
    if isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1:
        return workers
    return None


def shared_state_problem(config: Config, workers: int) -> str | None:
    """Why `workers` processes cannot run this config: limits that each process would allow
    in full, with no shared state to hold them."""
    if workers <= 1 or config.state.redis_url is not None:
        return None
    limited = [
        name
        for name, key in config.keys.items()
        if any(
            v is not None for v in (key.rpm, key.tpm, key.budget, key.max_parallel, key.max_spend)
        )
    ]
    if not limited:
        return None
    return (
        f"{config.source}: {workers} workers would each allow the whole limit of "
        f"keys.{limited[0]}: set [state] redis_url so that they share the limits"
    )


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
        raw_keys = [key.value for key in getattr(provider, "keys", ())] or [
            getattr(provider, "api_key", None)
        ]
        for raw in raw_keys:
            key = resolve_key(raw)
            if key.missing_env:
                warnings.append(
                    f"provider {name!r}: environment variable {key.missing_env} is not set; "
                    "its requests will fail (502) until it is"
                )
    for name, gateway_key in config.keys.items():
        resolved = resolve_key(gateway_key.value)
        if resolved.missing_env:
            warnings.append(
                f"gateway key {name!r}: environment variable {resolved.missing_env} is not set; "
                "no client can use this key until it is"
            )
    if config.metrics.key is not None:
        resolved = resolve_key(config.metrics.key)
        if resolved.missing_env:
            warnings.append(
                f"metrics.key: environment variable {resolved.missing_env} is not set; "
                "every scrape of /metrics is answered 401 until it is"
            )
    for warning in warnings:
        log.warning(warning)
    return warnings


def _check_cache(config: Config) -> None:
    cache = config.cache
    where = f"{config.source}: cache"
    if not cache.enabled:
        return
    if cache.ttl <= 0:
        raise ConfigError(f"{where}.ttl: must be a positive number of seconds")
    for key in ("max_bytes", "max_entry_bytes"):
        if getattr(cache, key) <= 0:
            raise ConfigError(f"{where}.{key}: must be positive")
    if cache.backend == "redis" and config.state.redis_url is None:
        raise ConfigError(f'{where}.backend: "redis" needs [state] redis_url')
