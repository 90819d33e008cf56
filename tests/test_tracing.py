"""Tracing: spans exported over OTLP/HTTP to a real collector (an aiohttp server decoding the
protobuf with `opentelemetry-proto`), the gateway's exporter batching every 50 ms.

A streamed request with a retry and a fallback is one trace under the client's `traceparent`:
the request's server span, and one client span per attempt, each attempt's `traceparent` sent
to its upstream. With tracing off nothing is exported (nor is OpenTelemetry imported). A dead
collector fails no request: its failures are one warning and a count in /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from gateway.config import parse
from gateway.observability.trace_export import CountedBatchProcessor, CountedExporter
from gateway.server.log_throttle import Throttled
from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.processes import GatewayProcess
from tests.scrape import scrape
from tests.streams import (
    answering,
    anthropic_stream,
    chat_completion,
    data,
    openai_chat_stream,
    streaming,
)
from wire.config_values import ConfigError

MESSAGES = [{"role": "user", "content": "hi"}]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
CLIENT_TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
DROPPED = "gateway_trace_spans_dropped_total"


class Collector:
    """An OTLP/HTTP trace receiver: every span it was sent, with its resource's attributes."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Span]] = []
        self.posts = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        export = ExportTraceServiceRequest.FromString(await request.read())
        self.posts += 1
        for resource_spans in export.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend((resource, span) for span in scope_spans.spans)
        self._arrived.set()
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    async def wait_for(self, count: int, within: float = 20.0) -> list[Span]:
        """The spans once at least `count` arrived (the exporter batches every 50 ms)."""
        async with asyncio.timeout(within):
            while len(self.spans) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return [span for _, span in self.spans]


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: value_of(pair.value) for pair in pairs}


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value") or "string_value"
    if kind == "array_value":
        return [value_of(item) for item in value.array_value.values]
    return getattr(value, kind)


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    receiver = Collector()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture(autouse=True)
def quick_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch span processor sends every 50 ms (the standard variable; default 5 s)."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    for name in [name for name in os.environ if name.startswith("OTEL_") and "BSP" not in name]:
        monkeypatch.delenv(name)


def retry_then_fallback(a: FakeUpstream, b: FakeUpstream, tracing: str) -> str:
    """Model `smart`: a/m (retried once), then b/m."""
    return (
        provider_toml(a.url, "a", api_key="sk-a", timeout=2, retries=1)
        + provider_toml(b.url, "b", api_key="sk-b", timeout=2)
        + '[models.smart]\ntargets = ["a/m", "b/m"]\n'
        + "[routing]\nbackoff_start = 0.01\nbackoff_max = 0.01\n"
        + tracing
    )


def sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


async def stream_text(client: openai.AsyncOpenAI, model: str, **extra: Any) -> str:
    stream = await client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, **extra
    )
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


async def test_a_streamed_retry_and_fallback_is_one_trace_under_the_clients_traceparent(
    upstreams: list[FakeUpstream], start_gateway: GatewayFactory, collector: Collector
) -> None:
    a, b, _ = upstreams
    a.handler = answering({"error": {"message": "busy", "type": "server_error"}}, status=503)
    b.handler = streaming(openai_chat_stream(["from", " b"]))
    tracing = f'[tracing]\nenabled = true\nendpoint = "{collector.url}"\nservice_name = "gw"\n'
    priced = '[prices."b/m"]\ninput = 1.0\noutput = 2.0\n'  # USD per million tokens
    url = await start_gateway(retry_then_fallback(a, b, tracing + priced))
    headers = {"traceparent": CLIENT_TRACEPARENT, "tracestate": "vendor=x", "x-request-id": "r-1"}
    async with sdk(url) as client:
        assert await stream_text(client, "smart", extra_headers=headers) == "from b"

    spans = await collector.wait_for(4)
    assert len(spans) == 4
    assert {span.trace_id.hex() for span in spans} == {TRACE_ID}
    [server] = [span for span in spans if span.kind == Span.SPAN_KIND_SERVER]
    assert server.parent_span_id.hex() == CLIENT_SPAN
    assert server.trace_state == "vendor=x"
    assert server.name == "chat smart"
    seen = attributes(server.attributes)
    assert seen["gateway.request_id"] == "r-1"
    assert seen["gateway.outcome"] == "ok" and seen["gateway.attempts"] == 3
    assert seen["gen_ai.request.model"] == "smart"
    assert seen["gen_ai.response.model"] == "m"
    assert seen["gen_ai.usage.input_tokens"] == 9 and seen["gen_ai.usage.output_tokens"] == 3
    assert seen["gateway.cost_usd"] == pytest.approx((9 * 1.0 + 3 * 2.0) / 1e6)  # the record's

    attempts = sorted(
        (span for span in spans if span.kind == Span.SPAN_KIND_CLIENT),
        key=lambda span: attributes(span.attributes)["gateway.attempt"],
    )
    assert [span.parent_span_id for span in attempts] == [server.span_id] * 3
    assert [span.name for span in attempts] == ["chat m"] * 3
    facts = [attributes(span.attributes) for span in attempts]
    assert [fact["gateway.outcome"] for fact in facts] == ["retried", "failed_over", "ok"]
    assert [fact["gateway.target"] for fact in facts] == ["a/m", "a/m", "b/m"]
    assert [fact["gen_ai.provider.name"] for fact in facts] == ["openai"] * 3
    assert [fact.get("error.type") for fact in facts] == ["503", "503", None]
    assert [span.status.code for span in attempts][:2] == [2, 2]  # STATUS_CODE_ERROR
    served = facts[2]
    assert served["gen_ai.operation.name"] == "chat" and served["gen_ai.request.model"] == "m"
    assert served["gen_ai.usage.input_tokens"] == 9 and served["gen_ai.usage.output_tokens"] == 3
    assert [event.name for event in attempts[2].events] == ["gen_ai.first_token"]
    assert attempts[2].start_time_unix_nano >= attempts[1].end_time_unix_nano
    assert server.start_time_unix_nano <= attempts[0].start_time_unix_nano
    assert server.end_time_unix_nano >= attempts[2].end_time_unix_nano

    # Each upstream was sent the traceparent of its own attempt's span.
    sent = [r["headers"].get("traceparent") for r in a.requests + b.requests]
    assert sent == [f"00-{TRACE_ID}-{span.span_id.hex()}-01" for span in attempts]
    resource, _ = collector.spans[0]
    assert resource["service.name"] == "gw"
    assert resource["process.pid"] == os.getpid()
    assert resource["service.instance.id"].endswith(f":{os.getpid()}")


async def test_the_standard_variables_name_the_collector_and_a_new_trace_starts_without_one(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    upstream.handler = answering(chat_completion("whole"))
    url = await start_gateway(
        provider_toml(upstream.url, api_key="sk", timeout=2)
        + '[keys.team]\nvalue = "gk-1"\n[tracing]\nenabled = true\n'
    )
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="gk-1", max_retries=0) as client:
        answer = await client.chat.completions.create(model="fake/m", messages=MESSAGES)
    assert answer.choices[0].message.content == "whole"

    spans = await collector.wait_for(2)
    server, attempt = sorted(spans, key=lambda span: span.kind != Span.SPAN_KIND_SERVER)
    assert server.kind == Span.SPAN_KIND_SERVER and server.parent_span_id == b""
    assert attempt.parent_span_id == server.span_id and attempt.trace_id == server.trace_id
    assert attributes(server.attributes)["gateway.key"] == "team"
    assert attributes(attempt.attributes)["gen_ai.usage.output_tokens"] == 3
    trace, span = server.trace_id.hex(), attempt.span_id.hex()
    sent = upstream.requests[0]["headers"]["traceparent"]
    assert sent[:-2] == f"00-{trace}-{span}-" and int(sent[-2:], 16) & 1  # sampled
    assert collector.spans[0][0]["service.name"] == "from-env"


async def test_nothing_is_exported_or_propagated_with_tracing_off(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    upstream.handler = streaming(openai_chat_stream(["hi"]))
    url = await start_gateway(provider_toml(upstream.url, api_key="sk", timeout=2))
    async with sdk(url) as client:
        headers = {"traceparent": CLIENT_TRACEPARENT}
        assert await stream_text(client, "fake/m", extra_headers=headers) == "hi"
    await asyncio.sleep(0.5)  # ten export periods
    assert collector.posts == 0
    assert "traceparent" not in upstream.requests[0]["headers"]


def test_opentelemetry_is_not_imported_with_tracing_off() -> None:
    code = textwrap.dedent(
        """
        import sys
        from gateway.app import create_app
        from gateway.config import parse
        create_app(parse('[providers.mock]\\n', 't.toml'))
        assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'
        create_app(parse('[providers.mock]\\n[tracing]\\nenabled = true\\n', 't.toml'))
        assert 'opentelemetry.sdk.trace' in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_a_dead_collector_fails_no_request_and_is_one_warning_and_a_count(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as unused:  # a port nothing listens on: connections are refused
        unused.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{unused.getsockname()[1]}"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    upstream.handler = streaming(openai_chat_stream(["a", "b"]))
    url = await start_gateway(
        provider_toml(upstream.url, api_key="sk", timeout=2)
        + f'[metrics]\ncache_seconds = 0\n[tracing]\nenabled = true\nendpoint = "{dead}"\n'
    )
    caplog.set_level(logging.WARNING, logger="gateway")

    async def failed_spans(more_than: float) -> float:
        async with asyncio.timeout(30):
            while True:
                dropped = (await scrape(url)).value(DROPPED, reason="export_failed")
                if dropped > more_than:
                    return dropped
                await asyncio.sleep(0.05)

    dropped = 0.0
    async with sdk(url) as client:
        for _ in range(2):  # two batches, at least: two failed exports
            texts = await asyncio.gather(*(stream_text(client, "fake/m") for _ in range(5)))
            assert texts == ["ab"] * 5
            dropped = await failed_spans(dropped)
    assert dropped >= 4  # two spans a request
    warnings = [r for r in caplog.records if r.getMessage().startswith("tracing:")]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "did not take" in warnings[0].getMessage()


async def test_a_trace_not_sampled_exports_nothing_but_a_clients_sampled_one_is_followed(
    upstream: FakeUpstream, start_gateway: GatewayFactory, collector: Collector
) -> None:
    upstream.handler = streaming(openai_chat_stream(["hi"]))
    url = await start_gateway(
        provider_toml(upstream.url, api_key="sk", timeout=2)
        + f'[tracing]\nenabled = true\nendpoint = "{collector.url}"\nsample_ratio = 0\n'
    )
    async with sdk(url) as client:
        assert await stream_text(client, "fake/m") == "hi"
        unsampled = upstream.requests[0]["headers"]["traceparent"]
        assert unsampled.startswith("00-") and int(unsampled[-2:], 16) & 1 == 0
        headers = {"traceparent": CLIENT_TRACEPARENT}
        assert await stream_text(client, "fake/m", extra_headers=headers) == "hi"
    spans = await collector.wait_for(2)
    await asyncio.sleep(0.3)  # six export periods: the first request's spans would be here
    assert len(spans) == len(collector.spans) == 2
    assert {span.trace_id.hex() for span in spans} == {TRACE_ID}


def anthropic_message(stop_reason: str) -> dict[str, Any]:
    """A whole Anthropic Message."""
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(
    ("kind", "said", "reason"),
    [
        ("openai", "stop", "stop"),
        ("openai", "length", "length"),
        ("openai", "tool_calls", "tool_calls"),
        ("anthropic", "end_turn", "stop"),
        ("anthropic", "max_tokens", "length"),
    ],
)
async def test_the_answers_spans_say_why_it_ended(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    collector: Collector,
    kind: str,
    said: str,
    reason: str,
    stream: bool,
) -> None:
    if kind == "openai":
        pieces, whole = openai_chat_stream(["a", "b"], said), chat_completion("ab", said)
    else:
        pieces, whole = anthropic_stream(["a", "b"], said), anthropic_message(said)
    upstream.handler = streaming(pieces) if stream else answering(whole)
    url = await start_gateway(
        provider_toml(upstream.url, "p", type=kind, api_key="sk", timeout=5)
        + f'[tracing]\nenabled = true\nendpoint = "{collector.url}"\n'
    )
    async with sdk(url) as client:
        answer = await client.chat.completions.create(model="p/m", messages=MESSAGES, stream=stream)
        if stream:
            finishes = [c.choices[0].finish_reason async for c in answer if c.choices]
            assert finishes[-1] == reason
        else:
            assert answer.choices[0].finish_reason == reason
    spans = await collector.wait_for(2)
    server, attempt = sorted(spans, key=lambda span: span.kind != Span.SPAN_KIND_SERVER)
    assert attributes(server.attributes)["gen_ai.response.finish_reasons"] == [reason]
    assert attributes(attempt.attributes)["gen_ai.response.finish_reasons"] == [reason]


def gemini_finishing(reason: str) -> bytes:
    content = {"role": "model", "parts": [{"text": "a"}]}
    candidate = {"content": content, "index": 0, "finishReason": reason}
    meta = {"promptTokenCount": 3, "candidatesTokenCount": 1}
    return data({"candidates": [candidate], "usageMetadata": meta})


@pytest.mark.parametrize(
    ("kind", "path", "body", "pieces"),
    [
        (
            "anthropic",
            "/v1/messages",
            {"model": "p/m", "max_tokens": 5, "messages": MESSAGES, "stream": True},
            anthropic_stream(["a"], "max_tokens"),
        ),
        (
            "gemini",
            "/v1beta/models/p/m:streamGenerateContent?alt=sse",
            {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
            [gemini_finishing("MAX_TOKENS")],
        ),
    ],
)
async def test_a_relayed_streams_spans_say_why_it_ended_in_openais_words(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    collector: Collector,
    kind: str,
    path: str,
    body: dict[str, Any],
    pieces: list[bytes],
) -> None:
    """The client speaks the upstream's API: its stream is relayed, its end read as it passes."""
    upstream.handler = streaming(pieces)
    url = await start_gateway(
        provider_toml(upstream.url, "p", type=kind, api_key="sk", timeout=5)
        + f'[tracing]\nenabled = true\nendpoint = "{collector.url}"\n'
    )
    async with aiohttp.ClientSession() as session, session.post(url + path, json=body) as r:
        assert r.status == 200
        assert b"a" in await r.read()
    spans = await collector.wait_for(2)
    for span in spans:
        assert attributes(span.attributes)["gen_ai.response.finish_reasons"] == ["length"]


async def test_a_client_leaving_mid_stream_ends_its_attempt_span_as_cancelled(
    upstream: FakeUpstream, start_gateway: GatewayFactory, collector: Collector
) -> None:
    upstream.handler = streaming(openai_chat_stream(["a", "b"]), then="hang")
    url = await start_gateway(
        provider_toml(upstream.url, api_key="sk", timeout=30)
        + f'[tracing]\nenabled = true\nendpoint = "{collector.url}"\n'
    )
    async with sdk(url) as client:
        stream = await client.chat.completions.create(
            model="fake/m", messages=MESSAGES, stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        await stream.close()
    spans = await collector.wait_for(2)
    server, attempt = sorted(spans, key=lambda span: span.kind != Span.SPAN_KIND_SERVER)
    assert attempt.parent_span_id == server.span_id
    assert attributes(attempt.attributes)["error.type"] == "cancelled"
    assert attributes(server.attributes)["error.type"] == "cancelled"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("sample_ratio = 1.5", "tracing.sample_ratio: between 0 and 1"),
        ('endpoint = "collector:4318"', "tracing.endpoint: must start with http"),
        ("capture_content = true", "tracing.capture_content: not supported"),
        ("warn_interval = 0", "tracing.warn_interval: a positive number"),
        ("sampling = 1", "tracing.sampling: unknown key"),
    ],
)
def test_a_bad_tracing_setting_is_a_config_error_naming_it(setting: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(f"[providers.mock]\n[tracing]\nenabled = true\n{setting}\n", "t.toml")
    assert message in str(caught.value)


def test_spans_a_full_queue_drops_are_counted_and_told_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SDK's processor, its queue of 2 full while its exporter is stuck: each span past
    it pushes one out, and is counted."""
    stuck, started = threading.Event(), threading.Event()

    class Stuck(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            started.set()
            stuck.wait(10)
            return SpanExportResult.SUCCESS

    dropped: list[tuple[str, int]] = []
    warn = Throttled(logging.getLogger("test"), 60)
    counted = CountedExporter(Stuck(), lambda reason, n: dropped.append((reason, n)), warn)
    batch = BatchSpanProcessor(counted, max_queue_size=2, max_export_batch_size=1)
    provider = TracerProvider()
    provider.add_span_processor(
        CountedBatchProcessor(batch, lambda reason, n: dropped.append((reason, n)), warn)
    )
    tracer = provider.get_tracer("test")
    tracer.start_span("first").end()  # taken by the exporter, which then hangs
    assert started.wait(10)
    for name in ("a", "b", "c", "d", "e"):  # a and b fill the queue; c, d, e each drop one
        tracer.start_span(name).end()
    assert dropped == [("queue_full", 1)] * 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "test"]
    assert len(warnings) == 1 and "export queue is full" in warnings[0]
    stuck.set()
    provider.shutdown()


async def test_each_worker_exports_its_spans_its_resource_naming_it(
    tmp_path: Path, collector: Collector
) -> None:
    toml = f'[providers.mock]\ndelay = 0\n[tracing]\nenabled = true\nendpoint = "{collector.url}"\n'
    gateway = GatewayProcess(toml, tmp_path, "--workers", "2")
    try:
        body = {"model": "mock/x", "messages": MESSAGES, "stream": True}
        pids: set[int] = set()
        fresh = aiohttp.TCPConnector(force_close=True)  # each request on a new connection
        async with aiohttp.ClientSession(connector=fresh) as session:
            for _ in range(100):  # until both workers served one
                async with session.post(f"{gateway.url}/v1/chat/completions", json=body) as answer:
                    assert answer.status == 200
                    await answer.read()
                await collector.wait_for(len(collector.spans) + 2)
                pids = {resource["process.pid"] for resource, _ in collector.spans}
                if len(pids) == 2:
                    break
    finally:
        gateway.stop()
    assert len(pids) == 2 and gateway.process.pid not in pids  # the workers, not the supervisor
    instances = {resource["service.instance.id"] for resource, _ in collector.spans}
    assert instances == {f"{socket.gethostname()}:{pid}" for pid in pids}


async def test_a_request_its_limits_refuse_is_a_server_span_with_its_error_and_no_attempt(
    upstream: FakeUpstream, start_gateway: GatewayFactory, collector: Collector
) -> None:
    upstream.handler = answering(chat_completion("whole"))
    url = await start_gateway(
        provider_toml(upstream.url, api_key="sk", timeout=2)
        + '[keys.team]\nvalue = "gk-1"\nrpm = 1\n'
        + f'[tracing]\nenabled = true\nendpoint = "{collector.url}"\n'
    )
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="gk-1", max_retries=0) as client:
        await client.chat.completions.create(model="fake/m", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="fake/m", messages=MESSAGES)
    spans = await collector.wait_for(3)
    await asyncio.sleep(0.2)
    assert len(collector.spans) == 3  # the answered request's two, the refused one's server span
    refused = [span for span in spans if attributes(span.attributes).get("error.type") == "429"]
    assert len(refused) == 1 and refused[0].kind == Span.SPAN_KIND_SERVER
    facts = attributes(refused[0].attributes)
    assert facts["gateway.attempts"] == 0 and facts["gateway.outcome"] == "error"
    assert facts["http.response.status_code"] == 429 and facts["gateway.key"] == "team"
