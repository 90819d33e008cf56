"""The gateway as the bench runs it: one configuration per target name.

`gateway` is the gateway as a user runs it by default (metrics and access log on); with
`--features`, also a gateway key with limits on every request and the model named through a
one-target alias (every per-request feature on). The other variants each price one feature
against `gateway-plain` (everything off) in the same run; `gateway-spend` is the `--features`
gateway with a `max_spend` on its key (every request reserved, priced and settled in money), to
be run beside `gateway --features`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

BENCH_KEY = "bench-gateway-key"
BENCH_ALIAS = "bench-alias"


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    about: str
    observed: bool = True  # metrics and the access log
    key: str | None = None  # a gateway key with limits, its state "local" or in "redis"
    alias: bool = False  # the model named through a one-target alias
    workers: int = 1
    pinned: bool = True  # on the target CPU (a variant with workers takes every CPU)
    upstream_client: str = "lean"  # [server] upstream_client: "lean" or "aiohttp"
    spend: bool = False  # the key has a max_spend: each request reserved and priced in money
    # The response cache: "hit" (memory; every request after the first is a hit), "miss"
    # (memory; every entry expired at once: each request looked up, relayed, kept, filled),
    # "redis" (hits from the [state] Redis).
    cache: str | None = None
    trace_ratio: float | None = None  # [tracing] on, at this sample_ratio (spans to the upstream)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("gateway", "metrics and access log on (the default)"),
        Variant("gateway-plain", "metrics and access log off", observed=False),
        Variant(
            "gateway-keys", "a gateway key with limits on every request, in process", key="local"
        ),
        Variant(
            "gateway-redis", "a gateway key with limits on every request, in Redis", key="redis"
        ),
        Variant("gateway-w1", "--workers 1, on every CPU", pinned=False),
        Variant("gateway-w2", "--workers 2, on every CPU", workers=2, pinned=False),
        Variant(
            "gateway-aiohttp",
            "aiohttp's upstream client for every request, else as `gateway`",
            upstream_client="aiohttp",
        ),
        Variant("gateway-cache", "the response cache in memory: every request a hit", cache="hit"),
        Variant(
            "gateway-cache-miss",
            "the response cache in memory, entries expired at once: every request a miss",
            cache="miss",
        ),
        Variant(
            "gateway-cache-redis", "the response cache in Redis: every request a hit", cache="redis"
        ),
        Variant("gateway-trace", "`gateway` with tracing on, every trace kept", trace_ratio=1.0),
        Variant(
            "gateway-trace-1pct", "`gateway` with tracing on, 1 % of traces kept", trace_ratio=0.01
        ),
    )
}
# Every feature on and a max_spend on the key: beside `gateway --features`, the cost of pricing.
SPEND_FEATURES = Variant(
    "gateway-spend",
    "every feature on, and a max_spend on the key: each request reserved, priced, settled",
    key="local",
    alias=True,
    spend=True,
)
VARIANTS[SPEND_FEATURES.name] = SPEND_FEATURES
# --features: `gateway` with every per-request feature on (and `gateway-aiohttp` too, so
# that the two upstream clients are compared as configured alike).
ALL_FEATURES = replace(
    VARIANTS["gateway"],
    about="every feature on: key and limits, metrics, access log, an alias",
    key="local",
    alias=True,
)
AIOHTTP_ALL_FEATURES = replace(
    ALL_FEATURES,
    name="gateway-aiohttp",
    about="every feature on, with aiohttp's upstream client for every request",
    upstream_client="aiohttp",
)


def config_text(variant: Variant, redis_url: str | None, upstream: str = "") -> str:
    """The [server]/[metrics]/[keys]/[state]/[tracing] part of a variant's gateway.toml;
    `upstream`: the mock upstream's URL, the tracing variants' OTLP collector."""
    observed = "true" if variant.observed else "false"
    text = f"access_log = {observed}\n"
    if variant.upstream_client != "lean":
        text += f'upstream_client = "{variant.upstream_client}"\n'
    text += f"\n[metrics]\nenabled = {observed}\n"
    if variant.key is not None:
        # Limits far above what the bench sends: checked and counted on every request,
        # never reached.
        text += (
            f'\n[keys.bench]\nvalue = "{BENCH_KEY}"\nrpm = 1000000000\ntpm = 1000000000000\n'
            "budget = 1000000000000000\nmax_parallel = 1000000\n"
        )
    if variant.spend:
        # A cap never reached; the bench's models priced as gpt-4o-mini is (its upstream is on
        # loopback: no table knows it), every one of them.
        text = text.replace(
            "max_parallel = 1000000\n", "max_parallel = 1000000\nmax_spend = 1000000\n"
        )
        text += "\n[pricing]\nunknown = { input = 0.15, output = 0.6, cache_read = 0.075 }\n"
    if variant.key == "redis" or variant.cache == "redis":
        assert redis_url is not None
        text += f'\n[state]\nredis_url = "{redis_url}"\n'
    if variant.cache is not None:
        # The bench's requests name no temperature (the API's default, 1): cached anyway.
        backend = "redis" if variant.cache == "redis" else "memory"
        ttl = 1e-9 if variant.cache == "miss" else 3600
        text += f'\n[cache]\nenabled = true\nbackend = "{backend}"\nttl = {ttl}\nsampled = true\n'
    if variant.trace_ratio is not None:
        text += (
            f'\n[tracing]\nenabled = true\nendpoint = "{upstream}"\n'
            f"sample_ratio = {variant.trace_ratio}\n"
        )
    return text


def alias_table(provider: str) -> str:
    return f'\n[models.{BENCH_ALIAS}]\ntargets = ["{provider}/mock-model"]\n'
