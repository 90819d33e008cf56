"""The response cache ([cache]): identical requests answered from Redis or memory, in the
client's format, never across keys, never for a request that asks not to be, never filled by
an answer that did not end well. Against real gateways, a real redis-server, the SDKs."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import anthropic
import openai
import orjson
import pytest
from aiohttp import web
from google import genai
from google.genai import types as genai_types

from gateway.cache.stores import MemoryStore
from gateway.config import parse
from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.redis_server import RedisServer
from tests.streams import USAGE, answering, chat_chunk, data, streaming
from wire.config_values import ConfigError

T = TypeVar("T")
CACHE_HEADER = "x-gateway-cache"
MESSAGES = [{"role": "user", "content": "Say hi"}]
MOCK = '[providers.mock]\ntype = "mock"\ndelay = 0\ntokens = 5\n'
KEYS = '[keys.app]\nvalue = "sk-app"\n[keys.other]\nvalue = "sk-other"\n'


def cache_toml(backend: str = "memory", redis_url: str | None = None, **settings: Any) -> str:
    lines = ["[cache]", "enabled = true", f'backend = "{backend}"']
    lines += [f"{key} = {orjson.dumps(value).decode()}" for key, value in settings.items()]
    toml = "\n".join(lines) + "\n[server]\naccess_log = false\n"
    if redis_url is not None:
        toml += f'[state]\nredis_url = "{redis_url}"\ntimeout = 0.3\n'
    return toml


def sdk(url: str, key: str = "x") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


async def chat(
    client: openai.AsyncOpenAI, stream: bool, model: str = "mock/x", **extra: Any
) -> tuple[str, str, str]:
    """The answer's text, its x-gateway-cache and x-gateway-attempts headers."""
    raw = client.chat.completions.with_raw_response
    response = await raw.create(
        model=model, messages=MESSAGES, temperature=0, stream=stream, **extra
    )
    answer = response.parse()
    if stream:
        text, last = "", None
        async for chunk in answer:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            last = chunk
        assert last is not None and last.usage is not None  # usage in the last chunk
        assert last.choices[0].finish_reason == "stop"
    else:
        text = answer.choices[0].message.content or ""
    headers = response.headers
    return text, headers[CACHE_HEADER], headers["x-gateway-attempts"]


# --- hits in the client's format, streamed or not -----------------------------------------


@pytest.mark.parametrize("first_stream", [False, True])
async def test_a_stream_hits_what_a_whole_answer_filled_and_the_other_way_round(
    start_gateway: GatewayFactory, first_stream: bool
) -> None:
    client = sdk(await start_gateway(MOCK + cache_toml()))
    try:
        text, state, attempts = await chat(client, first_stream)
        assert (state, attempts) == ("miss", "1")
        again, state, attempts = await chat(client, not first_stream)
        assert (again, state, attempts) == (text, "hit", "0")
        assert text  # the mock's words, read by the SDK from the cached answer
    finally:
        await client.close()


async def test_a_hit_is_the_first_answer_not_a_new_one(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    """The upstream answers differently each time: a hit gives the stored answer, and the
    upstream is asked once."""
    count = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal count
        count += 1
        pieces = [data(chat_chunk({"content": f"answer {count}"}))]
        pieces += [data(chat_chunk({}, "stop", usage=USAGE)), b"data: [DONE]\n\n"]
        return await streaming(pieces)(request)

    upstream.handler = handler
    url = await start_gateway(provider_toml(upstream.url, api_key="k") + cache_toml())
    client = sdk(url)
    try:
        assert await chat(client, True, "fake/m") == ("answer 1", "miss", "1")
        assert await chat(client, True, "fake/m") == ("answer 1", "hit", "0")
        assert await chat(client, False, "fake/m") == ("answer 1", "hit", "0")
        assert len(upstream.requests) == 1
    finally:
        await client.close()


async def test_different_prompts_and_models_do_not_share(start_gateway: GatewayFactory) -> None:
    client = sdk(await start_gateway(MOCK + cache_toml()))
    try:
        await chat(client, False)
        assert (await chat(client, False, "mock/y"))[1] == "miss"
        other = await client.chat.completions.with_raw_response.create(
            model="mock/x", messages=[{"role": "user", "content": "Other"}], temperature=0
        )
        assert other.headers[CACHE_HEADER] == "miss"
        # `user`, `stream_options` and metadata are not part of the question.
        assert (await chat(client, True, user="u1", stream_options={"include_usage": True}))[
            1
        ] == "hit"
    finally:
        await client.close()


async def test_the_anthropic_route_hits_streamed_and_not(start_gateway: GatewayFactory) -> None:
    url = await start_gateway(MOCK + cache_toml())
    claude = anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)
    ask: dict[str, Any] = {
        "model": "mock/x",
        "max_tokens": 100,
        "messages": MESSAGES,
        "extra_body": {"temperature": 0},  # this SDK has no parameter of its own for it
    }
    try:
        first = await claude.messages.with_raw_response.create(**ask)
        assert first.headers[CACHE_HEADER] == "miss"
        text = (await first.parse()).content[0].text  # type: ignore[union-attr]
        async with claude.messages.stream(**ask) as stream:
            streamed = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        assert streamed == text and final.stop_reason == "end_turn"
        assert final.usage.output_tokens > 0  # the usage in the last events, as stored
        again = await claude.messages.with_raw_response.create(**ask)
        assert again.headers[CACHE_HEADER] == "hit"
        assert (await again.parse()).content[0].text == text  # type: ignore[union-attr]
    finally:
        await claude.close()


async def test_the_responses_route_hits_streamed_and_not(start_gateway: GatewayFactory) -> None:
    client = sdk(await start_gateway(MOCK + cache_toml()))
    try:
        async with client.responses.stream(model="mock/x", input="Hi", temperature=0) as stream:
            async for _ in stream:
                pass
            first = await stream.get_final_response()
        raw = await client.responses.with_raw_response.create(
            model="mock/x", input="Hi", temperature=0
        )
        assert raw.headers[CACHE_HEADER] == "hit"
        whole = raw.parse()
        assert whole.output_text == first.output_text and whole.output_text
        assert whole.usage is not None and whole.usage.output_tokens == first.usage.output_tokens  # type: ignore[union-attr]
        async with client.responses.stream(model="mock/x", input="Hi", temperature=0) as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            final = await stream.get_final_response()
        assert "".join(deltas) == first.output_text and final.status == "completed"
    finally:
        await client.close()


async def test_the_gemini_route_hits_as_sse_and_as_its_json_array(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(MOCK + cache_toml())
    gemini = genai.Client(api_key="x", http_options=genai_types.HttpOptions(base_url=url))
    config = genai_types.GenerateContentConfig(temperature=0)
    first = await gemini.aio.models.generate_content(model="mock/x", contents="Hi", config=config)
    assert first.sdk_http_response is not None and first.sdk_http_response.headers is not None
    assert first.sdk_http_response.headers[CACHE_HEADER] == "miss"
    chunks = [
        chunk
        async for chunk in await gemini.aio.models.generate_content_stream(
            model="mock/x", contents="Hi", config=config
        )
    ]  # SSE (?alt=sse): the SDK's way
    assert "".join(chunk.text or "" for chunk in chunks) == first.text and first.text
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == "STOP"
    assert chunks[-1].usage_metadata is not None
    assert chunks[0].sdk_http_response is not None and chunks[0].sdk_http_response.headers
    assert chunks[0].sdk_http_response.headers[CACHE_HEADER] == "hit"
    # The same question as the SDK put it, answered as Gemini's JSON array (no ?alt=sse).
    body = {
        "contents": [{"parts": [{"text": "Hi"}], "role": "user"}],
        "generationConfig": {"temperature": 0.0},
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1beta/models/mock/x:streamGenerateContent", json=body) as response,
    ):
        assert response.headers[CACHE_HEADER] == "hit"
        array = orjson.loads(await response.read())
    parts = [part for item in array for part in item["candidates"][0]["content"]["parts"]]
    text = "".join(part["text"] for part in parts)
    assert text == first.text
    # Filled by a JSON array stream, hit by a whole answer.
    body["contents"][0]["parts"][0]["text"] = "Bye"  # type: ignore[index]
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1beta/models/mock/x:streamGenerateContent", json=body) as response,
    ):
        assert response.headers[CACHE_HEADER] == "miss"
        await response.read()
    bye = await gemini.aio.models.generate_content(model="mock/x", contents="Bye", config=config)
    assert bye.sdk_http_response is not None and bye.sdk_http_response.headers is not None
    assert bye.sdk_http_response.headers[CACHE_HEADER] == "hit" and bye.text


NATIVE_RESPONSE = {
    "id": "resp_upstream1",
    "object": "response",
    "created_at": 1700000000,
    "status": "completed",
    "model": "m",
    "output": [
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "native answer", "annotations": []}],
        }
    ],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "usage": {
        "input_tokens": 3,
        "output_tokens": 2,
        "total_tokens": 5,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    },
}


async def test_a_response_the_provider_may_store_is_not_cached_one_it_may_not_is(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    """To a provider with its own Responses API, a hit's id would be one it never stored
    (a later previous_response_id naming it would fail): cached only with store: false."""
    upstream.handler = answering(NATIVE_RESPONSE)
    client = sdk(await start_gateway(provider_toml(upstream.url, api_key="k") + cache_toml()))
    try:
        states = []
        for store in (None, None, False, False):
            raw = await client.responses.with_raw_response.create(
                model="fake/m",
                input="Hi",
                temperature=0,
                **({} if store is None else {"store": store}),
            )
            states.append(raw.headers[CACHE_HEADER])
            assert raw.parse().output_text == "native answer"
        assert states == ["bypass", "bypass", "miss", "hit"]
        assert len(upstream.requests) == 3
    finally:
        await client.close()


# --- never by accident ---------------------------------------------------------------------


async def test_different_keys_do_not_share_unless_shared(start_gateway: GatewayFactory) -> None:
    url = await start_gateway(MOCK + KEYS + cache_toml())
    app, other = sdk(url, "sk-app"), sdk(url, "sk-other")
    shared_url = await start_gateway(MOCK + KEYS + cache_toml(shared=True))
    app_shared, other_shared = sdk(shared_url, "sk-app"), sdk(shared_url, "sk-other")
    try:
        assert (await chat(app, False))[1] == "miss"
        assert (await chat(app, False))[1] == "hit"
        assert (await chat(other, False))[1] == "miss"
        assert (await chat(app_shared, False))[1] == "miss"
        assert (await chat(other_shared, False))[1] == "hit"
    finally:
        for client in (app, other, app_shared, other_shared):
            await client.close()


async def test_no_cache_bypasses_and_refreshes_no_store_keeps_out(
    start_gateway: GatewayFactory,
) -> None:
    client = sdk(await start_gateway(MOCK + cache_toml()))
    try:
        no_store = {"extra_headers": {"Cache-Control": "no-store"}}
        assert (await chat(client, False, **no_store))[1] == "miss"
        assert (await chat(client, False, **no_store))[1] == "miss"  # never stored
        no_cache = {"extra_headers": {"Cache-Control": "no-cache"}}
        assert (await chat(client, True, **no_cache))[1:] == ("bypass", "1")
        assert (await chat(client, False))[1] == "hit"  # the bypass filled it
        assert (await chat(client, False, **no_cache))[1:] == ("bypass", "1")
    finally:
        await client.close()


async def test_sampled_requests_are_cached_only_when_configured(
    start_gateway: GatewayFactory,
) -> None:
    strict = sdk(await start_gateway(MOCK + cache_toml()))
    sampled = sdk(await start_gateway(MOCK + cache_toml(sampled=True)))
    try:
        for _ in range(2):
            raw = await strict.chat.completions.with_raw_response.create(
                model="mock/x", messages=MESSAGES
            )  # no temperature: the API's default, 1
            assert raw.headers[CACHE_HEADER] == "bypass"
        states = []
        for _ in range(2):
            raw = await sampled.chat.completions.with_raw_response.create(
                model="mock/x", messages=MESSAGES, temperature=0.7
            )
            states.append(raw.headers[CACHE_HEADER])
        assert states == ["miss", "hit"]
    finally:
        await strict.close()
        await sampled.close()


async def test_keys_and_models_opt_in_and_out(start_gateway: GatewayFactory) -> None:
    keys = KEYS.replace('value = "sk-other"', 'value = "sk-other"\ncache = false')
    url = await start_gateway(MOCK + keys + cache_toml(skip_models=["mock/skipped*"]))
    app, other = sdk(url, "sk-app"), sdk(url, "sk-other")
    opt_in = keys.replace('value = "sk-app"', 'value = "sk-app"\ncache = true')
    only_url = await start_gateway(MOCK + opt_in + cache_toml(all_keys=False, models=["mock"]))
    app_only, other_only = sdk(only_url, "sk-app"), sdk(only_url, "sk-other")
    try:
        assert (await chat(other, False))[1] == "bypass"
        assert (await chat(other, False))[1] == "bypass"
        assert (await chat(app, False, "mock/skipped-1"))[1] == "bypass"
        assert [(await chat(app_only, False))[1] for _ in range(2)] == ["miss", "hit"]
        assert (await chat(other_only, False))[1] == "bypass"
    finally:
        for client in (app, other, app_only, other_only):
            await client.close()


async def test_a_cut_stream_is_not_cached(start_gateway: GatewayFactory) -> None:
    client = sdk(await start_gateway(MOCK + cache_toml()))
    try:
        for _ in range(2):
            with pytest.raises(openai.APIError):
                await chat(client, True, "mock/cut-after-2")
        raw = await client.chat.completions.with_raw_response.create(
            model="mock/cut-after-2", messages=MESSAGES, temperature=0
        )  # not streamed, the mock fails it: a 502, never a hit
        raise AssertionError(f"answered {raw.http_response.status_code}")
    except openai.APIStatusError as error:
        assert error.status_code == 502
        assert error.response.headers[CACHE_HEADER] == "miss"
    finally:
        await client.close()


async def test_an_answer_past_max_entry_bytes_is_not_kept(start_gateway: GatewayFactory) -> None:
    client = sdk(await start_gateway(MOCK + cache_toml(max_entry_bytes=200)))
    try:
        assert [(await chat(client, stream))[1] for stream in (True, True, False, False)] == [
            "miss"
        ] * 4
    finally:
        await client.close()


# --- Redis -----------------------------------------------------------------------------------


async def test_two_instances_share_hits_through_redis(
    redis_url: str, start_gateway: GatewayFactory
) -> None:
    toml = MOCK + KEYS + cache_toml("redis", redis_url)
    one, two = sdk(await start_gateway(toml), "sk-app"), sdk(await start_gateway(toml), "sk-app")
    try:
        text, state, _ = await chat(one, True)
        assert state == "miss"
        # The fill went out in the background, after the last byte: polled for, not slept.
        found = await _poll(lambda: chat(two, False), lambda got: got[1] == "hit")
        assert found[0] == text and found[2] == "0"
        assert (await chat(one, True))[:2] == (text, "hit")
    finally:
        await one.close()
        await two.close()


async def test_the_ttl_expires(redis_url: str, start_gateway: GatewayFactory) -> None:
    client = sdk(await start_gateway(MOCK + cache_toml("redis", redis_url, ttl=0.5)))
    try:
        assert (await chat(client, False))[1] == "miss"
        await _poll(lambda: chat(client, False), lambda got: got[1] == "hit")
        # Once expired, a miss (which fills it again).
        await _poll(lambda: chat(client, False, extra_headers={"Cache-Control": "no-store"}),
                    lambda got: got[1] == "miss")  # fmt: skip
    finally:
        await client.close()


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
async def test_redis_down_skips_the_cache_without_an_error_or_a_wait(
    start_gateway: GatewayFactory, fault: str
) -> None:
    server = RedisServer()
    server.start()
    assert server.process is not None
    client = sdk(await start_gateway(MOCK + cache_toml("redis", server.url)))
    try:
        await chat(client, False)
        await _poll(lambda: chat(client, False), lambda got: got[1] == "hit")
        if fault == "stopped":
            server.stop()  # connections refused
        else:
            server.process.send_signal(signal.SIGSTOP)  # connected, never answering
        for stream in (False, True, False):
            # Bounded by [state] timeout (0.3 s) for the lookup, not hung: wait_for's 10 s
            # is only the test's guard.
            text, state, attempts = await asyncio.wait_for(chat(client, stream), 10)
            assert (state, attempts) == ("miss", "1") and text
    finally:
        server.process.send_signal(signal.SIGCONT)
        await client.close()
        server.close()


# --- the memory backend --------------------------------------------------------------------


async def test_the_memory_backend_stays_under_its_byte_bound_with_10000_entries() -> None:
    bound = 1024 * 1024
    store = MemoryStore(bound, ttl=60)
    answer = b"x" * 900
    for number in range(10_000):
        store.put(f"v1:{number:064d}", answer)
        assert store.bytes <= bound
    kept = len(store)
    assert 0 < kept < 10_000
    # What the entries really take, measured: within the bound the store counts.
    real = sum(
        sys.getsizeof(key) + sys.getsizeof(value[0]) + sys.getsizeof(value)
        for key, value in store._entries.items()
    )
    assert real <= bound
    # Least recently used out first: the newest are kept, the oldest gone.
    assert await store.first([f"v1:{9_999:064d}"]) is not None
    assert await store.first([f"v1:{0:064d}"]) is None


async def test_the_memory_backend_forgets_an_expired_entry() -> None:
    now = [0.0]
    store = MemoryStore(1024 * 1024, ttl=10, clock=lambda: now[0])
    store.put("k", b"answer")
    assert await store.first(["other", "k"]) == (1, b"answer")
    now[0] = 10.0
    assert await store.first(["k"]) is None and store.bytes == 0


# --- what it reports -----------------------------------------------------------------------


async def test_a_hit_is_counted_in_metrics_and_charges_no_tokens(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(
        MOCK + KEYS.replace("[keys.other]", "tpm = 1000\n[keys.other]") + cache_toml()
    )
    client = sdk(url, "sk-app")
    try:
        await chat(client, False)
        for _ in range(3):
            assert (await chat(client, True))[1] == "hit"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/metrics") as response:
                metrics = await response.text()
            async with session.post(
                f"{url}/v1/chat/completions",
                json={"model": "mock/x", "messages": MESSAGES, "temperature": 0},
                headers={"Authorization": "Bearer sk-app"},
            ) as response:
                remaining = response.headers.get("x-ratelimit-remaining-tokens")
        assert 'gateway_cache_requests_total{result="hit"} 3.0' in metrics
        assert 'gateway_cache_requests_total{result="miss"} 1.0' in metrics
        # Only the miss's tokens were charged (the mock's usage: some input, 5 output).
        assert remaining is not None and int(remaining) > 1000 - 30
    finally:
        await client.close()


async def test_the_console_and_the_access_log_say_hit_and_the_cost_saved(
    start_gateway: GatewayFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    priced = '[prices.mock]\ninput = 1.0\noutput = 2.0\n[admin]\nkey = "sk-admin"\n'
    url = await start_gateway(MOCK + priced + cache_toml().replace("false", "true"))
    client = sdk(url)
    try:
        await chat(client, False, extra_headers={"x-request-id": "cache-miss"})
        await chat(client, True, extra_headers={"x-request-id": "cache-hit"})
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{url}/console/api/requests", headers={"Authorization": "Bearer sk-admin"}
            ) as response,
        ):
            ring = (await response.json())["data"]
    finally:
        await client.close()
    hit, miss = ring
    assert (hit["cache"], miss["cache"]) == ("hit", "miss")
    assert hit["cache_saved_usd"] > 0 and miss["cache_saved_usd"] is None
    assert hit["input_tokens"] is None  # no provider tokens used
    assert hit["cost_usd"] == 0 and miss["cost_usd"] > 0  # a hit spends nothing

    lines: list[dict[str, Any]] = []

    async def read_log() -> int:
        err = capfd.readouterr().err
        lines.extend(orjson.loads(line) for line in err.splitlines() if line.startswith("{"))
        return sum(line.get("request_id", "").startswith("cache-") for line in lines)

    await _poll(read_log, lambda logged: logged == 2)  # written in batches, soon after
    by_id = {line["request_id"]: line for line in lines if "request_id" in line}
    assert by_id["cache-hit"]["cache"] == "hit" and by_id["cache-hit"]["attempts"] == 0
    assert by_id["cache-hit"]["cache_saved_usd"] == hit["cache_saved_usd"]
    assert by_id["cache-miss"]["cache"] == "miss"
    assert (by_id["cache-hit"]["cost_usd"], by_id["cache-hit"]["cost_source"]) == (0, "cache")
    assert by_id["cache-miss"]["cost_source"] == "override"


async def _poll(
    ask: Callable[[], Awaitable[T]], done: Callable[[T], bool], within: float = 5.0
) -> T:
    deadline = time.monotonic() + within
    while True:
        got = await ask()
        if done(got) or time.monotonic() > deadline:
            assert done(got), got
            return got
        await asyncio.sleep(0.05)


def test_a_redis_backend_without_redis_and_a_bad_ttl_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r'cache\.backend: "redis" needs \[state\] redis_url'):
        parse(cache_toml("redis"), "test.toml")
    with pytest.raises(ConfigError, match=r"cache\.ttl: must be a positive number"):
        parse(cache_toml(ttl=0), "test.toml")
    with pytest.raises(ConfigError, match=r"cache\.backend: .*"):
        parse(cache_toml("disk"), "test.toml")
