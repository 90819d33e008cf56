"""The access log of a real `python -m gateway` process: one JSON line per finished request
on its stderr, with what is known about it and nothing secret."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from gateway.observability import access_log
from tests.conftest import FakeUpstream, provider_toml
from tests.processes import GatewayProcess
from tests.streams import answering, chat_completion, openai_chat_stream, streaming

GATEWAY_KEY = "sk-gateway-SECRET-1"
PROVIDER_KEY = "sk-provider-SECRET-2"
CLIENT_PROVIDER_KEY = "sk-client-SECRET-3"
PROMPT = "PROMPT-SECRET-4"
UPSTREAM_MESSAGE = "you said PROMPT-SECRET-4, ERROR-SECRET-5"
SECRETS = (GATEWAY_KEY, PROVIDER_KEY, CLIENT_PROVIDER_KEY, PROMPT, "ERROR-SECRET-5")
MESSAGES = [{"role": "user", "content": PROMPT}]
FIELDS = {
    "cost_usd",
    "cost_source",
    "usage_estimated",
    "time",
    "request_id",
    "method",
    "route",
    "status",
    "model",
    "served",
    "attempts",
    "stream",
    "ttft_ms",
    "duration_ms",
    "input_tokens",
    "output_tokens",
    "key",
    "error_type",
    "error_code",
    "cache",
    "cache_saved_usd",
    "finish_reason",
}


def config(a: FakeUpstream, b: FakeUpstream, extra: str = "") -> str:
    return (
        provider_toml(a.url, "a", api_key=PROVIDER_KEY, timeout=2)
        + provider_toml(b.url, "b", api_key=PROVIDER_KEY, timeout=2)
        + '[models.smart]\ntargets = ["a/m", "b/m"]\n'
        + f'[keys.team]\nvalue = "{GATEWAY_KEY}"\n'
        + extra
    )


def lines_of(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


async def stop(gateway: GatewayProcess) -> str:
    return await asyncio.to_thread(gateway.stop)


async def test_one_line_per_request_with_what_happened_and_nothing_secret(
    upstreams: list[FakeUpstream], tmp_path: Path
) -> None:
    a, b, _ = upstreams
    gateway = GatewayProcess(config(a, b), tmp_path, "--log-level", "warning")
    try:
        # Sent as a client using its own provider key would: x-gateway-key + Authorization.
        headers = {"x-gateway-key": GATEWAY_KEY}
        async with openai.AsyncOpenAI(
            base_url=f"{gateway.url}/v1",
            api_key=CLIENT_PROVIDER_KEY,
            max_retries=0,
            default_headers=headers,
        ) as client:
            a.handler = streaming(openai_chat_stream(["a ", "stream"], "length"), delay=0.01)
            stream = await client.chat.completions.create(
                model="a/m",
                messages=MESSAGES,
                stream=True,
                extra_headers={"x-request-id": "log-stream"},
            )
            assert [chunk async for chunk in stream]

            a.handler = answering({"error": {"message": UPSTREAM_MESSAGE}}, 503)
            b.handler = answering(chat_completion("from b", "content_filter"))
            await client.chat.completions.create(
                model="smart", messages=MESSAGES, extra_headers={"x-request-id": "log-fallback"}
            )

            b.handler = answering({"error": {"message": UPSTREAM_MESSAGE}}, 400)
            with pytest.raises(openai.BadRequestError):
                await client.chat.completions.create(
                    model="b/m", messages=MESSAGES, extra_headers={"x-request-id": "log-error"}
                )
        async with aiohttp.ClientSession() as session:
            unauthorized = {"Authorization": "Bearer sk-wrong", "x-request-id": "log-401"}
            async with session.post(
                f"{gateway.url}/v1/chat/completions",
                json={"messages": MESSAGES},
                headers=unauthorized,
            ) as response:
                assert response.status == 401
            keyed = {
                "Authorization": f"Bearer {GATEWAY_KEY}",
                "x-request-id": "log-400",
                "Content-Type": "application/json",
            }
            async with session.post(
                f"{gateway.url}/v1/chat/completions", data=b'{"model": ', headers=keyed
            ) as response:
                assert response.status == 400
            keyed["x-request-id"] = "log-404"
            async with session.get(f"{gateway.url}/v2/nothing", headers=keyed) as response:
                assert response.status == 404
    finally:
        stderr = await stop(gateway)

    for secret in SECRETS:
        assert secret not in stderr
    lines = {line["request_id"]: line for line in lines_of(stderr)}
    for line in lines.values():
        assert set(line) == FIELDS
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])

    streamed = lines["log-stream"]
    assert streamed | {"time": None, "ttft_ms": None, "duration_ms": None} == {
        "time": None,
        "request_id": "log-stream",
        "method": "POST",
        "route": "/v1/chat/completions",
        "status": 200,
        "model": "a/m",
        "served": "a/m",
        "attempts": 1,
        "stream": True,
        "ttft_ms": None,
        "duration_ms": None,
        "input_tokens": 9,
        "output_tokens": 3,
        "key": "team",
        "error_type": "",
        "error_code": None,
        # a/m: a table of type openai at another address, its model no table knows
        "cost_usd": None,
        "cost_source": "unknown",
        "usage_estimated": False,
        "cache": None,  # no [cache]: not a cached route
        "cache_saved_usd": None,
        "finish_reason": "length",  # as the stream's last chunk said
    }
    # Three gaps of 10 ms after the first content: the line is written after the last byte.
    assert 0 < streamed["ttft_ms"] < streamed["duration_ms"] - 20

    fallback = lines["log-fallback"]
    assert (fallback["model"], fallback["served"], fallback["attempts"]) == ("smart", "b/m", 2)
    assert (fallback["status"], fallback["stream"], fallback["ttft_ms"]) == (200, False, None)
    assert (fallback["input_tokens"], fallback["output_tokens"], fallback["error_type"]) == (
        9,
        3,
        "",
    )
    assert fallback["finish_reason"] == "content_filter"  # as the whole answer said

    failed = lines["log-error"]
    assert (failed["status"], failed["error_type"], failed["served"]) == (400, "400", None)
    assert failed["attempts"] == 1 and failed["key"] == "team"
    assert (failed["cost_usd"], failed["cost_source"]) == (None, None)  # nothing answered
    assert failed["finish_reason"] is None

    refused = lines["log-401"]
    assert (refused["status"], refused["error_type"], refused["key"]) == (401, "401", None)
    assert (refused["model"], refused["stream"], refused["attempts"]) == (None, None, 0)

    unreadable = lines["log-400"]
    assert (unreadable["status"], unreadable["key"], unreadable["model"]) == (400, "team", None)

    missing = lines["log-404"]
    assert (missing["status"], missing["route"], missing["method"]) == (404, "/v2/nothing", "GET")


async def test_the_access_log_can_be_turned_off(
    upstreams: list[FakeUpstream], tmp_path: Path
) -> None:
    a, b, _ = upstreams
    gateway = GatewayProcess(config(a, b, "[server]\naccess_log = false\n"), tmp_path)
    try:
        a.handler = answering(chat_completion("quiet"))
        async with openai.AsyncOpenAI(
            base_url=f"{gateway.url}/v1", api_key=GATEWAY_KEY, max_retries=0
        ) as client:
            answer = await client.chat.completions.create(model="a/m", messages=MESSAGES)
        assert answer.choices[0].message.content == "quiet"
    finally:
        stderr = await stop(gateway)
    assert lines_of(stderr) == []


async def test_lines_appear_while_the_gateway_runs(
    upstreams: list[FakeUpstream], tmp_path: Path
) -> None:
    """Batched, but written within a fraction of a second: `tail -f` shows them."""
    a, b, _ = upstreams
    gateway = GatewayProcess(config(a, b), tmp_path)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{gateway.url}/health", headers={"x-request-id": "live-1"}) as response,
        ):
            assert response.status == 200
        line = await gateway.next_line()
        while not line.startswith("{"):  # warnings come first (none expected, but allowed)
            line = await gateway.next_line()
        assert json.loads(line)["request_id"] == "live-1"
    finally:
        await stop(gateway)


def test_lines_are_written_whole_in_writes_a_pipe_takes_atomically(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each write holds whole lines and at most PIPE_BUF bytes, so the lines of several
    processes sharing one stderr never interleave (a packet socket keeps each write apart)."""
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    monkeypatch.setattr(sys, "stderr", writer.makefile("w"))

    async def log_many() -> None:
        lines = access_log.AccessLog()
        for i in range(100):
            lines.write(
                access_log.line_of(
                    1_700_000_000.5,
                    f"id-{i}",
                    "POST",
                    "/v1/chat/completions",
                    200,
                    None,
                    "team",
                    0.25,
                    "",
                )
            )
        lines.flush()

    asyncio.run(log_many())
    reader.setblocking(False)
    writes = []
    with contextlib.suppress(BlockingIOError):
        while True:
            writes.append(reader.recv(65536))
    reader.close()
    writer.close()
    assert len(writes) > 1
    assert all(len(write) <= access_log.PIPE_BUF and write.endswith(b"\n") for write in writes)
    lines = [json.loads(line) for write in writes for line in write.splitlines()]
    assert [line["request_id"] for line in lines] == [f"id-{i}" for i in range(100)]
    assert lines[0]["time"] == "2023-11-14T22:13:20.500Z"
    assert (lines[0]["duration_ms"], lines[0]["key"], lines[0]["model"]) == (250.0, "team", None)


async def test_a_streams_duration_ends_with_its_last_byte_to_the_client(
    upstreams: list[FakeUpstream], tmp_path: Path
) -> None:
    """After a stream's last event the gateway gives the upstream up to 50 ms to end its body
    (to pool the connection); that wait is no part of the request's duration, which ends when
    the client has every byte: the line's duration is at most what the client measured."""
    a, b, _ = upstreams
    a.handler = streaming(openai_chat_stream(["a", "b"]), then="hang")  # never ends its body
    gateway = GatewayProcess(config(a, b), tmp_path)
    try:
        body = {"model": "a/m", "messages": MESSAGES, "stream": True}
        headers = {"x-gateway-key": GATEWAY_KEY, "x-request-id": "timed-1"}
        async with aiohttp.ClientSession() as session:
            sent = time.perf_counter()
            async with session.post(
                f"{gateway.url}/v1/chat/completions", json=body, headers=headers
            ) as response:
                assert response.status == 200
                assert (await response.read()).endswith(b"data: [DONE]\n\n")
            measured_ms = (time.perf_counter() - sent) * 1000
            # Kept alive, the connection serves this only once the stream's handler returned
            # (a client that hangs up at once cuts the wait short).
            async with session.get(f"{gateway.url}/health") as after:
                assert after.status == 200
    finally:
        stderr = await stop(gateway)
    (line,) = [line for line in lines_of(stderr) if line["request_id"] == "timed-1"]
    assert line["duration_ms"] <= measured_ms
