"""No answer free: a stream cut by the client, by the upstream's silence past its timeout, by a
broken upstream, or by the drain is charged for what it relayed (the gateway's estimate, marked
so in the access log) to the key's token budget, tpm and max_spend, and in /metrics, as a whole
stream is charged its upstream's usage. Real gateway processes (their access log is their
stderr), a real fake upstream, and for the drain a real redis-server, so that the charge
outlives the process."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import FakeUpstream, provider_toml
from tests.processes import GatewayProcess
from tests.scrape import scrape
from tests.streams import DONE, anthropic_stream, chat_chunk, data, streaming

# gpt-4o-mini in genai-prices' table: USD per million tokens.
INPUT_RATE, OUTPUT_RATE = Decimal("0.15"), Decimal("0.6")
MESSAGES = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]
TOKENS = [f"t{n:02d} " for n in range(40)]  # each the same size: the events are too
USAGE = {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105}


@pytest.fixture
def gateways() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for process in started:
        process.stop()


def toml(upstream: FakeUpstream, extra: str = "") -> str:
    return (
        provider_toml(upstream.url, "openai", api_key="sk-upstream", timeout=1)
        + '[keys.k]\nvalue = "sk-k"\nbudget = 1000000\nmax_spend = 1.0\n'
        + '[admin]\nkey = "sk-admin"\n[metrics]\ncache_seconds = 0\n'
        + extra
    )


def tokens(count: int, usage: dict[str, int] | None = None) -> list[bytes]:
    """An OpenAI stream of `count` content chunks; its usage and [DONE] only when `usage`."""
    events = [data(chat_chunk({"role": "assistant", "content": ""}))]
    events += [data(chat_chunk({"content": token})) for token in TOKENS[:count]]
    if usage is not None:
        events += [data(chat_chunk({}, "stop")), data(chat_chunk(choices=[], usage=usage)), DONE]
    return events


def cost(line: dict[str, Any]) -> Decimal:
    """What a line's tokens cost at gpt-4o-mini's price (the test's own arithmetic)."""
    return (line["input_tokens"] * INPUT_RATE + line["output_tokens"] * OUTPUT_RATE) / 1_000_000


async def stream(
    url: str,
    request_id: str,
    read: int | None = None,
    started: asyncio.Event | None = None,
    model: str = "openai/gpt-4o-mini",
) -> int:
    """POST a streamed chat; read `read` content chunks and hang up (None: read to the end;
    `started` is set at the first). The content chunks read."""
    headers = {"Authorization": "Bearer sk-k", "x-request-id": request_id}
    body = {"model": model, "messages": MESSAGES, "stream": True}
    seen = 0
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{url}/v1/chat/completions", json=body, headers=headers)
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"data: {") and b'"content":"t' in line:
                seen += 1
                if started is not None:
                    started.set()
                if seen == read:
                    response.close()  # the client hangs up mid-stream
                    return seen
        response.release()
    return seen


async def line_of(gateway: GatewayProcess, request_id: str) -> dict[str, Any]:
    while True:
        text = await gateway.next_line(timeout=10)
        if text.startswith("{"):
            line: dict[str, Any] = json.loads(text, parse_float=Decimal)
            if line["request_id"] == request_id:
                return line


async def usage(url: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/v1/keys/usage", headers={"Authorization": "Bearer sk-admin"}) as r,
    ):
        assert r.status == 200
        report: dict[str, Any] = (await r.json())["data"][0]
        return report


def nanos(usd: Decimal | float) -> int:
    return round(Decimal(str(usd)) * 1_000_000_000)


async def test_streams_cut_by_the_client_a_timeout_or_the_upstream_are_charged_what_they_relayed(
    upstream: FakeUpstream, tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    gateway = GatewayProcess(toml(upstream), tmp_path)
    gateways.append(gateway)

    upstream.handler = streaming(tokens(5, USAGE))
    assert await stream(gateway.url, "whole") == 5
    whole = await line_of(gateway, "whole")
    assert (whole["input_tokens"], whole["output_tokens"]) == (100, 5)  # the upstream's
    assert whole["usage_estimated"] is False
    assert whole["cost_usd"] == cost(whole) and whole["cost_source"] == "table"

    # 40 tokens 50 ms apart, the usage only at the end: the client leaves after 3.
    upstream.handler = streaming(tokens(40, USAGE), delay=0.05)
    assert await stream(gateway.url, "cut", read=3) == 3
    cut = await line_of(gateway, "cut")
    assert cut["error_type"] == "cancelled" and cut["usage_estimated"] is True
    assert cut["input_tokens"] > 0  # the request's input, estimated
    # What the gateway wrote before it saw the client gone: the 3 read, a few more at most.
    assert 3 <= cut["output_tokens"] < 40
    assert cut["cost_usd"] == cost(cut) > 0 and cut["cost_source"] == "table"

    # 3 tokens, then the upstream falls silent past its 1 s timeout: the stream's error event.
    upstream.handler = streaming(tokens(3), then="hang")
    assert await stream(gateway.url, "idle") == 3
    idle = await line_of(gateway, "idle")
    assert idle["error_code"] == "upstream_timeout" and idle["usage_estimated"] is True
    assert idle["output_tokens"] == 3  # three events relayed: three tokens
    assert idle["input_tokens"] == cut["input_tokens"]  # the same request body
    assert idle["cost_usd"] == cost(idle)

    # 3 tokens, then the upstream's connection breaks: the stream's error event.
    upstream.handler = streaming(tokens(3), then="reset")
    assert await stream(gateway.url, "broken") == 3
    broken = await line_of(gateway, "broken")
    assert broken["error_type"] == "502" and broken["usage_estimated"] is True
    assert broken["output_tokens"] == 3 and broken["cost_usd"] == cost(broken)

    lines = (whole, cut, idle, broken)
    report = await usage(gateway.url)
    assert report["budget_spent"] == sum(
        line["input_tokens"] + line["output_tokens"] for line in lines
    )
    assert nanos(report["spend_usd"]) == sum(nanos(line["cost_usd"]) for line in lines)
    assert report["spend_by_model"] == {"openai/gpt-4o-mini": report["spend_usd"]}
    assert report["unpriced_requests"] == 0

    metrics = await scrape(gateway.url)
    for kind in ("input", "output"):
        counted = metrics.value("gateway_tokens_total", gateway_key="k", gen_ai_token_type=kind)
        assert counted == sum(line[f"{kind}_tokens"] for line in lines)
    spent = metrics.value("gateway_spend_usd_total", gateway_key="k", gen_ai_provider_name="openai")
    assert spent == pytest.approx(float(sum(cost(line) for line in lines)))


async def test_a_stream_cut_by_the_drain_is_charged_what_it_relayed(
    upstream: FakeUpstream, redis_url: str, tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    shared = f'[state]\nredis_url = "{redis_url}"\n'
    draining = GatewayProcess(toml(upstream, shared + "[server]\ndrain_timeout = 0.5\n"), tmp_path)
    gateways.append(draining)
    upstream.handler = streaming(tokens(40, USAGE), delay=0.05)
    started = asyncio.Event()
    reading = asyncio.create_task(stream(draining.url, "drained", started=started))
    await asyncio.wait_for(started.wait(), 10)  # content flows: the drain begins
    draining.process.send_signal(signal.SIGTERM)
    read = await reading
    assert 0 < read < 40
    line = await line_of(draining, "drained")
    assert line["error_code"] == "gateway_shutting_down" and line["usage_estimated"] is True
    assert read <= line["output_tokens"] < 40
    assert line["cost_usd"] == cost(line) > 0
    assert draining.process.wait(20) == 0

    # The charge outlived the process: another instance on the same Redis sees it.
    other = GatewayProcess(toml(upstream, shared), tmp_path / "other")
    gateways.append(other)
    report = await usage(other.url)
    assert report["budget_spent"] == line["input_tokens"] + line["output_tokens"]
    assert nanos(report["spend_usd"]) == nanos(line["cost_usd"])


def gemini_response(text: str, prompt: int, candidates: int) -> bytes:
    """One streamed GenerateContentResponse, with its usageMetadata as of that response."""
    content = {"role": "model", "parts": [{"text": text}]}
    meta = {"promptTokenCount": prompt, "candidatesTokenCount": candidates}
    return data({"candidates": [{"content": content, "index": 0}], "usageMetadata": meta})


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
async def test_a_cut_stream_keeps_the_counts_its_upstream_reported_before_the_cut(
    upstream: FakeUpstream, tmp_path: Path, gateways: list[GatewayProcess], provider: str
) -> None:
    """3 tokens, then the upstream falls silent past its timeout. Anthropic told the input in
    message_start: that is charged, the output estimated. Gemini counted both in each
    response: its latest counts are charged, nothing estimated."""
    if provider == "anthropic":
        pieces = anthropic_stream(TOKENS[:3], input_tokens=777)[:5]  # no message_delta
    else:
        pieces = [gemini_response(token, 555, n) for n, token in enumerate(TOKENS[:3], 2)]
    upstream.handler = streaming(pieces, then="hang")
    gateway = GatewayProcess(
        provider_toml(upstream.url, "p", type=provider, api_key="sk-upstream", timeout=1)
        + '[keys.k]\nvalue = "sk-k"\n',
        tmp_path,
    )
    gateways.append(gateway)
    assert await stream(gateway.url, "cut", model="p/m") == 3
    cut = await line_of(gateway, "cut")
    assert cut["error_code"] == "upstream_timeout"
    if provider == "anthropic":
        assert (cut["input_tokens"], cut["output_tokens"]) == (777, 3)  # 3 events relayed
        assert cut["usage_estimated"] is True  # the output's
    else:
        assert (cut["input_tokens"], cut["output_tokens"]) == (555, 4)  # the latest response's
        assert cut["usage_estimated"] is False
