"""GET /metrics after real requests: the OpenTelemetry GenAI histograms, attempts, in-flight
requests, cooldowns, bounded labels, and the page itself: rendered off the event loop, cached
for `cache_seconds`, small (per model and per key: counters, not histograms, unless asked).

Requests go through the official OpenAI SDK to the real gateway in front of fake upstreams
on 127.0.0.1; /metrics is read and parsed as Prometheus parses it.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.config import parse
from gateway.observability.export import MetricsPage
from gateway.observability.labels import OTHER, ModelNames
from gateway.observability.metrics import (
    DURATION_BUCKETS,
    TOKEN_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
    observe_all,
)
from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.processes import GatewayProcess
from tests.scrape import Scrape, scrape
from tests.streams import answering, chat_completion, openai_chat_stream, streaming
from wire.config_values import ConfigError

MESSAGES = [{"role": "user", "content": "hi"}]
TTFT = "gen_ai_server_time_to_first_token_seconds"
TPOT = "gen_ai_server_time_per_output_token_seconds"
DURATION = "gen_ai_server_request_duration_seconds"
TOKENS = "gen_ai_client_token_usage"
ATTEMPTS = "gateway_attempts_total"
IN_FLIGHT = "gateway_requests_in_flight"
REQUESTS = "gateway_requests_total"
TOKENS_TOTAL = "gateway_tokens_total"
# Tests that read values scrape again at once: each scrape renders a fresh page.
FRESH = "[metrics]\ncache_seconds = 0\n"


def two_providers(a: FakeUpstream, b: FakeUpstream, **a_settings: object) -> str:
    return (
        provider_toml(a.url, "a", **({"api_key": "sk-a", "timeout": 2} | a_settings))
        + provider_toml(b.url, "b", api_key="sk-b", timeout=2)
        + '[models.smart]\ntargets = ["a/m", "b/m"]\n'
    )


@pytest.fixture
async def gateway(upstreams: list[FakeUpstream], start_gateway: GatewayFactory) -> str:
    return await start_gateway(two_providers(*upstreams[:2]) + FRESH)


def sdk(url: str, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


async def stream_text(client: openai.AsyncOpenAI, model: str) -> str:
    stream = await client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


def histogram_count(scraped: Scrape, name: str, **labels: str) -> float:
    return scraped.value(f"{name}_count", **labels)


async def test_streamed_and_whole_answers_fill_the_genai_histograms(
    gateway: str, upstreams: list[FakeUpstream]
) -> None:
    a, *_ = upstreams
    a.handler = streaming(openai_chat_stream(["one ", "two ", "three"]), delay=0.02)
    async with sdk(gateway) as client:
        assert await stream_text(client, "a/m") == "one two three"
        a.handler = answering(chat_completion("whole"))
        answer = await client.chat.completions.create(model="a/m", messages=MESSAGES)
    assert answer.choices[0].message.content == "whole"

    scraped = await scrape(gateway)
    ok = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "a"}
    asked = {**ok, "gen_ai_request_model": "a/m", "gateway_key": ""}
    # TTFT and time per token: the streamed request only.
    assert histogram_count(scraped, TTFT, **ok) == 1
    assert histogram_count(scraped, TPOT, **ok) == 1
    ttft = scraped.value(f"{TTFT}_sum", **ok)
    # Two gaps of 20 ms between three tokens: (duration - TTFT) / (3 - 1) is about 20 ms.
    tpot = scraped.value(f"{TPOT}_sum", **ok)
    assert 0.015 <= tpot <= 0.2
    # Duration: both requests, no error.
    assert histogram_count(scraped, DURATION, error_type="", **ok) == 2
    duration = scraped.value(f"{DURATION}_sum", **ok)
    assert 0 < ttft < duration
    # Tokens, from each answer's usage.
    assert histogram_count(scraped, TOKENS, gen_ai_token_type="input", **ok) == 2
    assert scraped.value(f"{TOKENS}_sum", gen_ai_token_type="input", **ok) == 2 * 9
    assert scraped.value(f"{TOKENS}_sum", gen_ai_token_type="output", **ok) == 2 * 3
    # Per model as asked and per key: counters.
    assert scraped.value(REQUESTS, error_type="", **asked) == 2
    assert scraped.value(TOKENS_TOTAL, gen_ai_token_type="input", **asked) == 2 * 9
    assert scraped.value(TOKENS_TOTAL, gen_ai_token_type="output", **asked) == 2 * 3
    assert scraped.value(ATTEMPTS, gen_ai_provider_name="a", outcome="ok", error_type="") == 2
    assert scraped.value(IN_FLIGHT) == 0
    assert scraped.value("gateway_responses_total", route="/v1/chat/completions", status="200") == 2


async def test_histograms_use_the_opentelemetry_buckets(
    gateway: str, upstreams: list[FakeUpstream]
) -> None:
    a, *_ = upstreams
    a.handler = streaming(openai_chat_stream(["x", "y"]))
    async with sdk(gateway) as client:
        await stream_text(client, "a/m")
    scraped = await scrape(gateway)
    opentelemetry = {
        TTFT: [
            0.001,
            0.005,
            0.01,
            0.02,
            0.04,
            0.06,
            0.08,
            0.1,
            0.25,
            0.5,
            0.75,
            1,
            2.5,
            5,
            7.5,
            10,
        ],
        TPOT: [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5],
        DURATION: [0.01 * 2**i for i in range(14)],  # 0.01 ... 81.92
        TOKENS: [4**i for i in range(14)],  # 1 ... 67108864
    }
    for name, buckets in opentelemetry.items():
        found = sorted(
            {float(s.labels["le"]) for s in scraped.matching(f"{name}_bucket")} - {float("inf")}
        )
        assert found == pytest.approx(buckets), name
    assert list(TTFT_BUCKETS) == opentelemetry[TTFT]
    assert DURATION_BUCKETS[-1] == pytest.approx(81.92) and TOKEN_BUCKETS[-1] == 67108864
    assert list(TPOT_BUCKETS) == opentelemetry[TPOT]


async def test_a_fallback_through_an_alias_counts_the_failed_attempt_and_the_server(
    gateway: str, upstreams: list[FakeUpstream]
) -> None:
    a, b, _ = upstreams
    a.handler = answering({"error": {"message": "busy", "type": "server_error"}}, status=503)
    b.handler = streaming(openai_chat_stream(["from b"]))
    async with sdk(gateway) as client:
        assert await stream_text(client, "smart") == "from b"
        b.handler = answering(chat_completion("whole from b"))
        answer = await client.chat.completions.create(model="smart", messages=MESSAGES)
    assert answer.choices[0].message.content == "whole from b"

    scraped = await scrape(gateway)
    assert scraped.value(ATTEMPTS, gen_ai_provider_name="a", outcome="failed_over") == 2
    assert scraped.value(ATTEMPTS, gen_ai_provider_name="a", error_type="503") == 2
    assert scraped.value(ATTEMPTS, gen_ai_provider_name="b", outcome="ok") == 2
    served_by_b = {"gen_ai_provider_name": "b", "gen_ai_request_model": "smart"}
    assert scraped.value(REQUESTS, error_type="", **served_by_b) == 2
    assert histogram_count(scraped, DURATION, error_type="", gen_ai_provider_name="b") == 2
    assert histogram_count(scraped, TTFT, gen_ai_provider_name="b") == 1
    assert histogram_count(scraped, DURATION, gen_ai_provider_name="a") == 0


async def test_an_upstream_error_is_counted_by_its_status(
    gateway: str, upstreams: list[FakeUpstream]
) -> None:
    a, b, _ = upstreams
    a.handler = answering({"error": {"message": "overloaded", "type": "server_error"}}, 503)
    b.handler = answering({"error": {"message": "bad", "type": "invalid_request_error"}}, 400)
    async with sdk(gateway) as client:
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="a/m", messages=MESSAGES, stream=True)
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="b/m", messages=MESSAGES)

    scraped = await scrape(gateway)
    assert histogram_count(scraped, DURATION, gen_ai_provider_name="a", error_type="503") == 1
    assert histogram_count(scraped, DURATION, gen_ai_provider_name="b", error_type="400") == 1
    assert scraped.value(ATTEMPTS, gen_ai_provider_name="a", outcome="error") == 1
    assert scraped.value(ATTEMPTS, gen_ai_provider_name="b", outcome="error") == 1
    assert histogram_count(scraped, TTFT) == 0  # no content was ever sent
    assert scraped.label_values(f"{DURATION}_count", "error_type") == {"400", "503"}
    assert scraped.value("gateway_responses_total", status="503") == 1
    assert scraped.value("gateway_responses_total", status="400") == 1


async def test_requests_in_flight_while_a_stream_runs(
    gateway: str, upstreams: list[FakeUpstream]
) -> None:
    a, *_ = upstreams
    slow = streaming(openai_chat_stream(["slow"]), delay=0.2)  # about 1 s
    begun = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        begun.set()  # the stream has begun: the upstream has its request
        return await slow(request)

    a.handler = handler
    async with sdk(gateway) as client:
        running = asyncio.create_task(stream_text(client, "a/m"))
        await asyncio.wait_for(begun.wait(), 10)
        during = await scrape(gateway)
        assert await running == "slow"
    assert during.value(IN_FLIGHT) == 1
    assert (await scrape(gateway)).value(IN_FLIGHT) == 0


async def test_a_client_that_leaves_mid_stream_is_counted_as_cancelled(
    gateway: str, upstreams: list[FakeUpstream]
) -> None:
    a, *_ = upstreams
    a.handler = streaming(openai_chat_stream(["first", "never"])[:2], then="hang")
    body = {"model": "a/m", "messages": MESSAGES, "stream": True}
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{gateway}/v1/chat/completions", json=body)
        await response.content.readline()  # the first content is out
        response.close()
    await asyncio.wait_for(a.closed_by_peer.wait(), 5)
    for _ in range(50):
        scraped = await scrape(gateway)
        if histogram_count(scraped, DURATION):
            break
        await asyncio.sleep(0.02)
    assert histogram_count(scraped, DURATION, error_type="cancelled") == 1
    assert histogram_count(scraped, TTFT) == 1
    assert scraped.value(IN_FLIGHT) == 0


async def test_gateway_key_label_and_a_request_refused_before_any_attempt(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    a, b, _ = upstreams
    url = await start_gateway(
        two_providers(a, b) + '[keys.team]\nvalue = "sk-team-secret"\nrpm = 1\n' + FRESH
    )
    a.handler = answering(chat_completion("ok"))
    async with sdk(url, "sk-team-secret") as client:
        await client.chat.completions.create(model="a/m", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="a/m", messages=MESSAGES)
    scraped = await scrape(url)
    team = {"gateway_key": "team", "gen_ai_request_model": "a/m"}
    assert scraped.value(REQUESTS, gen_ai_provider_name="a", error_type="", **team) == 1
    # Refused by the key's rpm: no provider was tried.
    assert scraped.value(REQUESTS, gen_ai_provider_name="", error_type="429", **team) == 1
    assert histogram_count(scraped, DURATION, gen_ai_provider_name="", error_type="429") == 1
    assert scraped.value(TOKENS_TOTAL, gateway_key="team", gen_ai_token_type="input") == 9
    assert scraped.label_values(REQUESTS, "gateway_key") == {"team"}
    assert scraped.label_values(f"{DURATION}_count", "gateway_key") == set()  # not asked for
    assert "sk-team-secret" not in scraped.text


async def test_model_labels_are_bounded_to_configured_names(
    gateway: str, upstreams: list[FakeUpstream]
) -> None:
    a, *_ = upstreams
    a.handler = answering(chat_completion("ok"))
    async with sdk(gateway) as client:
        await client.chat.completions.create(model="smart", messages=MESSAGES)
        await client.chat.completions.create(model="a/any-model", messages=MESSAGES)
    models = (await scrape(gateway)).label_values(REQUESTS, "gen_ai_request_model")
    assert models == {"smart", "a/any-model"}

    config = parse(
        '[providers.a]\ntype = "openai"\nbase_url = "http://x/v1"\nmodels = ["listed"]\n'
        '[models.smart]\ntargets = ["a/m"]\n',
        "test.toml",
    )
    names = ModelNames(config, free=2)
    assert [names(m) for m in ("smart", "a/m", "a/listed")] == ["smart", "a/m", "a/listed"]
    assert [names(m) for m in ("a/one", "a/two", "a/three", "a/one")] == [
        "a/one",
        "a/two",
        OTHER,  # past the room for names the config does not list
        "a/one",
    ]
    assert names("nope/x") == OTHER  # not a configured provider
    assert names("a/" + "x" * 200) == OTHER
    assert names("no-slash") == OTHER
    # With a default provider a bare name (Claude Code's) is one of its models.
    defaulted = ModelNames(
        parse(
            '[server]\ndefault_provider = "a"\n[providers.a]\ntype = "openai"\n'
            'base_url = "http://x/v1"\nmodels = ["listed"]\n',
            "test.toml",
        )
    )
    assert [defaulted(m) for m in ("listed", "claude-x", "x" * 200)] == [
        "listed",
        "claude-x",
        OTHER,
    ]


async def test_cooldowns_gauge_counts_resting_keys_and_targets(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory
) -> None:
    a, b, _ = upstreams
    url = await start_gateway(two_providers(a, b) + "[routing]\nfailures_to_rest = 1\n" + FRESH)
    before = await scrape(url)
    assert before.value("gateway_cooldowns", gen_ai_provider_name="a", kind="key") == 0
    a.handler = answering(
        {"error": {"message": "slow down", "type": "rate_limit_error"}},
        429,
    )
    b.handler = answering(chat_completion("from b"))
    async with sdk(url) as client:
        answer = await client.chat.completions.create(model="smart", messages=MESSAGES)
    assert answer.choices[0].message.content == "from b"
    scraped = await scrape(url)
    assert scraped.value("gateway_cooldowns", gen_ai_provider_name="a", kind="key") == 1
    assert scraped.value("gateway_cooldowns", gen_ai_provider_name="a", kind="target") == 1
    assert scraped.value("gateway_cooldowns", gen_ai_provider_name="b") == 0


async def test_metrics_can_be_turned_off(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(
        provider_toml(upstream.url, api_key="sk", timeout=2) + "[metrics]\nenabled = false\n"
    )
    upstream.handler = answering(chat_completion("still served"))
    async with sdk(url) as client:
        answer = await client.chat.completions.create(model="fake/m", messages=MESSAGES)
    assert answer.choices[0].message.content == "still served"
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        assert response.status == 404
        assert response.headers["x-gateway-request-id"]


async def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(gateway: str) -> None:
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{gateway}/metrics", headers=headers) as response,
    ):
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).endswith("# EOF\n")


def test_two_processes_sharing_a_multiprocess_dir_report_the_sum(tmp_path: Path) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    toml = "[providers.mock]\ndelay = 0\ntokens = 3\n"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    first = GatewayProcess(toml, tmp_path / "a", env=env)
    second = GatewayProcess(toml, tmp_path / "b", env=env)
    try:
        for gateway in (first, second, second):
            answer = openai.OpenAI(
                base_url=f"{gateway.url}/v1", api_key="x", max_retries=0
            ).chat.completions.create(model="mock/x", messages=MESSAGES)
            assert answer.choices[0].message.content
        # The scraped process folds its own observations first; the other's come within
        # its fold interval.
        deadline = time.monotonic() + 5
        while True:
            scraped = Scrape(_get(f"{first.url}/metrics"))
            if histogram_count(scraped, DURATION) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        first.stop()
        second.stop()
    mock = {"gen_ai_provider_name": "mock", "error_type": ""}
    assert histogram_count(scraped, DURATION, **mock) == 3
    assert scraped.value(f"{TOKENS}_sum", gen_ai_token_type="output") == 9
    assert scraped.value(ATTEMPTS, outcome="ok") == 3


def test_use_multiprocess_switches_a_fresh_process_to_shared_files(tmp_path: Path) -> None:
    """What a gateway that starts its own workers calls before building its app."""
    script = textwrap.dedent(
        f"""
        import asyncio
        import os
        from prometheus_client import CollectorRegistry
        from gateway.observability.export import use_multiprocess
        use_multiprocess({str(tmp_path / "metrics")!r})
        from gateway.config import parse
        from gateway.observability.metrics import GatewayMetrics
        metrics = GatewayMetrics(parse("[providers.mock]", "t"), CollectorRegistry())

        async def respond():
            metrics.responded("/v1/chat/completions", 200)
            metrics.fold()

        asyncio.run(respond())
        print(sorted(os.listdir({str(tmp_path / "metrics")!r})))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
    )
    assert done.returncode == 0, done.stderr
    assert "counter_" in done.stdout  # the counter's value lives in a shared file


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _one_by_one(value: float, exemplar: object = None) -> None:
    raise AssertionError("observe_all observed values one by one")


@pytest.mark.parametrize("buckets", [TTFT_BUCKETS, TPOT_BUCKETS, DURATION_BUCKETS, TOKEN_BUCKETS])
def test_observing_many_at_once_equals_observing_each(buckets: tuple[float, ...]) -> None:
    chance = random.Random(13)
    values = [0.0, *buckets, *(b * 1.0001 for b in buckets), 1e12]  # on and past each bound
    values += [chance.uniform(0, buckets[-1] * 1.5) for _ in range(500)]
    exposed = []
    for many in (False, True):
        registry = CollectorRegistry()
        series = Histogram("h", "h", ["x"], buckets=buckets, registry=registry).labels("x")
        if many:
            # The batch adds to the buckets and the sum itself: were it to fall back to one
            # observation per value (prometheus-client's internals moved), this fails.
            series.observe = _one_by_one  # type: ignore[method-assign]
            observe_all(series, values)
        else:
            for value in values:
                series.observe(value)
        text = generate_latest(registry).decode()
        exposed.append([line for line in text.splitlines() if "_created" not in line])
    assert exposed[0] == exposed[1]


# --- the page: small, rendered off the event loop, cached ---


async def _ask_many_models(url: str, count: int) -> None:
    async with sdk(url) as client:
        for i in range(count):
            await client.chat.completions.create(model=f"mock/m-{i}", messages=MESSAGES)
            await stream_text(client, f"mock/m-{i}")


async def test_histograms_are_per_provider_and_counters_per_model_and_key(
    start_gateway: GatewayFactory,
) -> None:
    """30 models asked: one series per histogram, not 30 (a series is ~18 lines); the counters
    carry the model, and no `_created` line doubles them."""
    url = await start_gateway("[providers.mock]\ndelay = 0\ntokens = 3\n")
    await _ask_many_models(url, 30)
    scraped = await scrape(url)
    for name in (TTFT, TPOT, DURATION, TOKENS):
        series = {tuple(sorted(s.labels.items())) for s in scraped.matching(f"{name}_count")}
        assert len(series) == (2 if name == TOKENS else 1), (name, series)  # input, output
        labels = set(scraped.matching(f"{name}_count")[0].labels)
        assert {"gen_ai_request_model", "gateway_key"}.isdisjoint(labels), (name, labels)
    assert len(scraped.label_values(REQUESTS, "gen_ai_request_model")) == 30
    assert scraped.value(REQUESTS, gen_ai_request_model="mock/m-7", error_type="") == 2
    assert scraped.value(TOKENS_TOTAL, gen_ai_request_model="mock/m-7") > 0
    assert "_created" not in scraped.text


async def test_histogram_labels_add_the_model_and_the_key_to_the_histograms(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(
        "[providers.mock]\ndelay = 0\ntokens = 3\n"
        '[metrics]\nhistogram_labels = ["gen_ai_request_model", "gateway_key"]\n'
    )
    await _ask_many_models(url, 3)
    scraped = await scrape(url)
    for name in (TTFT, TPOT, DURATION, TOKENS):
        models = scraped.label_values(f"{name}_count", "gen_ai_request_model")
        assert models == {"mock/m-0", "mock/m-1", "mock/m-2"}, name
        assert scraped.label_values(f"{name}_count", "gateway_key") == {""}, name
    assert histogram_count(scraped, TTFT, gen_ai_request_model="mock/m-1") == 1


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("histogram_labels = ['model']", "t.toml: metrics.histogram_labels: 'model' is not one"),
        ("cache_seconds = -1", "t.toml: metrics.cache_seconds: must not be negative"),
    ],
)
def test_metrics_options_are_checked(toml: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(f"[metrics]\n{toml}\n", "t.toml")
    assert str(caught.value).startswith(expected)


class _SlowCollector(Collector):
    """A collector that notes the thread it runs in, and waits for the test's word."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        self.threads.append(threading.get_ident())
        self.started.set()
        self.release.wait(10)  # on the event loop, this would stop it: the test would see
        gauge = GaugeMetricFamily("renders", "Collections so far.")
        gauge.add_metric((), len(self.threads))
        yield gauge


async def _serve_page(page: MetricsPage) -> tuple[web.AppRunner, str]:
    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="pong")

    app = web.Application()
    app.router.add_get("/metrics", page.handle)
    app.router.add_get("/ping", ping)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.mark.parametrize("cache_seconds", [0.0, 600.0])
async def test_the_page_is_rendered_in_a_thread_and_shared_by_concurrent_scrapes(
    cache_seconds: float,
) -> None:
    registry = CollectorRegistry()
    collector = _SlowCollector()
    registry.register(collector)
    folds: list[int] = []
    page = MetricsPage(
        registry, before=lambda: folds.append(threading.get_ident()), cache_seconds=cache_seconds
    )
    runner, url = await _serve_page(page)
    loop_thread = threading.get_ident()
    try:
        async with aiohttp.ClientSession() as session:

            async def get(path: str) -> str:
                async with session.get(url + path) as response:
                    assert response.status == 200
                    return await response.text()

            scrapes = [asyncio.create_task(get("/metrics")) for _ in range(5)]
            await asyncio.get_running_loop().run_in_executor(None, collector.started.wait, 10)
            # The render waits in its thread: the loop still answers.
            assert await get("/ping") == "pong"
            collector.release.set()
            pages = await asyncio.gather(*scrapes)
            again = await get("/metrics")
    finally:
        await runner.cleanup()
        await page.close()
    assert collector.threads[0] != loop_thread
    assert folds[0] == loop_thread  # pending observations are folded on the loop, first
    assert all("renders 1.0" in text for text in pages)  # five scrapes, one render
    if cache_seconds:
        assert again == pages[0] and page.renders == 1  # within cache_seconds: served again
    else:
        assert "renders 2.0" in again and page.renders == 2
