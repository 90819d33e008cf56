"""Every client-visible error: OpenAI's shape, the right status, never a traceback or a hang."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.streams import (
    DONE,
    answering,
    chat_chunk,
    data,
    openai_chat_stream,
    parse_sse,
    post_stream,
    streaming,
)

MESSAGES = [{"role": "user", "content": "hi"}]


async def _post(url: str, body: bytes | dict[str, Any], path: str = "/v1/chat/completions"):
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url + path, data=payload, headers={"Content-Type": "application/json"}
        ) as response,
    ):
        return response.status, await response.read()


def _error(raw: bytes) -> dict[str, Any]:
    body = orjson.loads(raw)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


async def test_malformed_json_is_400(gateway_url: str) -> None:
    status, raw = await _post(gateway_url, b'{"model": "fake/m", "messages": [')
    assert status == 400
    error = _error(raw)
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"]


@pytest.mark.parametrize("body", [b"[1, 2]", b"", b'"text"'])
async def test_body_that_is_not_an_object_is_400(gateway_url: str, body: bytes) -> None:
    status, raw = await _post(gateway_url, body)
    assert status == 400
    _error(raw)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"model": "fake/m"}, "messages"),
        ("/v1/chat/completions", {"messages": MESSAGES}, "model"),
        ("/v1/completions", {"model": "fake/m"}, "prompt"),
    ],
)
async def test_missing_field_is_400_naming_it(
    gateway_url: str, path: str, body: dict, param: str
) -> None:
    status, raw = await _post(gateway_url, body, path)
    assert status == 400
    error = _error(raw)
    assert error["param"] == param
    assert error["code"] == "missing_required_parameter"
    assert f"'{param}'" in error["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("model", 42), ("stream", "yes"), ("messages", "hi"), ("max_tokens", "ten"), ("n", 1.5)],
)
async def test_wrongly_typed_field_is_400_naming_it(
    gateway_url: str, upstream: FakeUpstream, field: str, value: Any
) -> None:
    body = {"model": "fake/m", "messages": MESSAGES, field: value}
    status, raw = await _post(gateway_url, body)
    assert status == 400
    error = _error(raw)
    assert error["param"] == field
    assert error["code"] == "invalid_type"
    assert upstream.requests == []  # rejected before the upstream was called


async def test_body_over_the_limit_is_413(start_gateway: GatewayFactory) -> None:
    url = await start_gateway("[server]\nmax_request_bytes = 1000\n[providers.mock]\n")
    big = {"model": "mock/m", "messages": [{"role": "user", "content": "x" * 5000}]}
    status, raw = await _post(url, big)
    assert status == 413
    assert _error(raw)["code"] == "request_too_large"


async def test_unknown_route_is_404_and_wrong_method_is_405(gateway_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{gateway_url}/v1/nothing-here", json={}) as response:
            assert response.status == 404
            assert _error(await response.read())["code"] == "unknown_url"
        async with session.get(f"{gateway_url}/v1/chat/completions") as response:
            assert response.status == 405
            _error(await response.read())


@pytest.mark.parametrize(
    "method, path, shape",
    [
        ("POST", "/v1/messages", "anthropic"),  # malformed JSON: a 400
        ("POST", "/v1/messages/batches", "anthropic"),  # a path of the API it does not serve
        ("POST", "/v1beta/models/mock/m:generateContent", "gemini"),
        ("POST", "/v1/models/mock/m:generateContent", "gemini"),
        ("GET", "/v1/models/nowhere/m", "openai"),  # OpenAI's route, though under Gemini's path
        ("POST", "/v1/chat/completions", "openai"),
        ("POST", "/v2/anything", "openai"),  # no route: OpenAI's
    ],
)
async def test_an_error_comes_in_the_shape_its_route_registered(
    gateway_url: str, method: str, path: str, shape: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, gateway_url + path, data=b"{not json") as response,
    ):
        assert 400 <= response.status < 500
        body = orjson.loads(await response.read())
    if shape == "anthropic":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    elif shape == "gemini":
        assert set(body["error"]) == {"code", "message", "status"}
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("model", ["nowhere/gpt-4o", "gpt-4o", "fake/", "/m"])
async def test_unknown_provider_or_no_prefix_is_400_listing_providers(
    gateway_url: str, model: str
) -> None:
    status, raw = await _post(gateway_url, {"model": model, "messages": MESSAGES})
    assert status == 400
    error = _error(raw)
    assert error["param"] == "model"
    assert "fake" in error["message"] and "mock" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_4xx_is_relayed_with_its_status_and_message(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, stream: bool
) -> None:
    upstream.handler = answering(
        {
            "error": {
                "message": "Rate limit reached for gpt-4o",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        },
        status=429,
    )
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="fake/m", messages=MESSAGES, stream=stream)
    assert caught.value.status_code == 429
    assert "Rate limit reached for gpt-4o" in caught.value.message
    assert caught.value.code == "rate_limit_exceeded"


async def test_upstream_5xx_with_a_plain_text_body_is_relayed(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    upstream.handler = answering(b"model crashed", status=503)
    status, raw = await _post(gateway_url, {"model": "fake/m", "messages": MESSAGES})
    assert status == 503
    assert _error(raw)["message"] == (
        "Provider 'fake' answered HTTP 503 to POST /v1/chat/completions: model crashed"
    )


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"detail":"Not Found"}', "Not Found"),  # vLLM's and FastAPI's
        (
            b"<html><head><title>502 Bad Gateway</title></head><body><h1>502</h1></body></html>",
            "502 Bad Gateway",
        ),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_error_not_in_openais_shape_names_the_provider_and_the_request(
    upstream: FakeUpstream, gateway_url: str, body: bytes, said: str, stream: bool
) -> None:
    upstream.handler = answering(body, status=404)
    request = {"model": "fake/m", "messages": MESSAGES, "stream": stream}
    status, raw = await _post(gateway_url, request)
    assert status == 404
    assert _error(raw)["message"] == (
        f"Provider 'fake' answered HTTP 404 to POST /v1/chat/completions: {said}"
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("stream", [False, True])
async def test_unreachable_upstream_is_502(start_gateway: GatewayFactory, stream: bool) -> None:
    url = await start_gateway(provider_toml(f"http://127.0.0.1:{_closed_port()}/v1"))
    status, raw = await _post(url, {"model": "fake/m", "messages": MESSAGES, "stream": stream})
    assert status == 502
    assert _error(raw)["code"] == "upstream_unreachable"


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_that_never_answers_is_504_after_its_timeout(
    upstream: FakeUpstream, start_gateway: GatewayFactory, stream: bool
) -> None:
    url = await start_gateway(provider_toml(upstream.url, timeout=0.3, keepalive=0))
    upstream.handler = answering(chat_completion_body(), delay=30)
    status, raw = await _post(url, {"model": "fake/m", "messages": MESSAGES, "stream": stream})
    assert status == 504
    error = _error(raw)
    assert error["code"] == "upstream_timeout"
    assert "0.3" in error["message"]


def chat_completion_body() -> dict[str, Any]:
    return {"choices": []}


async def test_unset_env_key_answers_502_naming_the_variable(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_TEST_MISSING_KEY", raising=False)
    url = await start_gateway(
        provider_toml("http://127.0.0.1:9/v1", api_key="env.GATEWAY_TEST_MISSING_KEY")
    )
    status, raw = await _post(url, {"model": "fake/m", "messages": MESSAGES})
    assert status == 502
    assert "GATEWAY_TEST_MISSING_KEY" in _error(raw)["message"]


async def test_env_key_is_read_from_the_environment(
    upstream: FakeUpstream, start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_TEST_KEY", "sk-from-env")
    url = await start_gateway(provider_toml(upstream.url, api_key="env.GATEWAY_TEST_KEY"))
    upstream.handler = answering({"choices": []})
    await _post(url, {"model": "fake/m", "messages": MESSAGES})
    assert upstream.requests[-1]["headers"]["Authorization"] == "Bearer sk-from-env"


# --- failures after the stream has begun: a final SSE error event, which the SDK raises ---


async def _stream_and_collect(client: openai.AsyncOpenAI) -> tuple[str, openai.APIError]:
    stream = await client.chat.completions.create(model="fake/m", messages=MESSAGES, stream=True)
    text = ""
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            text += (chunk.choices and chunk.choices[0].delta.content) or ""
    return text, caught.value


async def test_upstream_reset_mid_stream_ends_with_an_error_event(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = streaming(openai_chat_stream(["a", "b", "c"])[:3], then="reset")
    text, error = await _stream_and_collect(client)
    assert text == "ab"  # what arrived before the failure is delivered, not lost
    # In the user's words, naming the provider: no aiohttp internals, no address.
    assert error.message == "Provider 'fake' closed the connection before the answer was complete."


async def test_upstream_silence_mid_stream_ends_with_a_timeout_event(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(provider_toml(upstream.url, timeout=0.3))
    upstream.handler = streaming(openai_chat_stream(["a", "b"])[:2], then="hang")
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    text, error = await _stream_and_collect(sdk)
    await sdk.close()
    assert text == "a"
    assert isinstance(error.body, dict) and error.body["code"] == "upstream_timeout"


async def test_slow_but_steady_stream_is_never_cut(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    # Gaps of 0.15 s under a 0.4 s timeout, for about 1.2 s in all: longer than the timeout.
    url = await start_gateway(provider_toml(upstream.url, timeout=0.4))
    tokens = [f"t{i} " for i in range(8)]
    upstream.handler = streaming(openai_chat_stream(tokens), delay=0.15)
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    stream = await sdk.chat.completions.create(model="fake/m", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    await sdk.close()
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(tokens)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_malformed_upstream_event_ends_with_an_error_event(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = streaming([data(chat_chunk({"content": "a"})), b"data: {not json\n\n", DONE])
    text, error = await _stream_and_collect(client)
    assert text == "a"
    assert isinstance(error.body, dict) and error.body["code"] == "upstream_protocol_error"


async def test_upstream_error_event_mid_stream_is_relayed(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream_error = {
        "error": {
            "message": "The server had an error",
            "type": "server_error",
            "param": None,
            "code": "overloaded",
        }
    }
    upstream.handler = streaming([data(chat_chunk({"content": "a"})), data(upstream_error)])
    text, error = await _stream_and_collect(client)
    assert text == "a"
    assert error.message == "The server had an error"
    assert isinstance(error.body, dict) and error.body["code"] == "overloaded"


async def test_upstream_closing_before_done_ends_with_an_error_event(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    upstream.handler = streaming([data(chat_chunk({"content": "a"}))])
    status, raw = await post_stream(gateway_url, "fake/m")
    events = parse_sse(raw)
    assert status == 200
    assert orjson.loads(events[0].data)["choices"][0]["delta"]["content"] == "a"
    assert orjson.loads(events[-1].data)["error"]["code"] == "upstream_protocol_error"
    assert all(event.data != "[DONE]" for event in events)


async def test_nothing_follows_an_error_event_even_in_the_same_first_read(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    upstream_error = {"error": {"message": "boom", "type": "server_error", "code": "x"}}
    late = data(chat_chunk({"content": "late"}))
    upstream.handler = streaming([data(upstream_error) + late + DONE])
    status, raw = await post_stream(gateway_url, "fake/m")
    # Before any content the error is still the answer's status, not an event.
    assert status == 502
    body = orjson.loads(raw)
    assert body["error"]["message"] == "boom"
    assert b"late" not in orjson.dumps(body)


async def test_an_error_event_after_content_in_the_same_read_ends_the_stream(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    upstream_error = {"error": {"message": "boom", "type": "server_error", "code": "x"}}
    first = data(chat_chunk({"content": "first"}))
    late = data(chat_chunk({"content": "late"}))
    upstream.handler = streaming([first + data(upstream_error) + late + DONE])
    status, raw = await post_stream(gateway_url, "fake/m")
    assert status == 200
    events = parse_sse(raw)
    assert [orjson.loads(e.data).get("error", {}).get("message") for e in events] == [None, "boom"]


async def test_a_client_slow_to_read_is_not_an_upstream_timeout(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(provider_toml(upstream.url, timeout=0.3))
    token = "y" * 262144
    upstream.handler = streaming(openai_chat_stream([token] * 128))  # 32 MiB: fills the buffers
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/v1/chat/completions",
            json={"model": "fake/m", "messages": MESSAGES, "stream": True},
        ) as response,
    ):
        await response.content.readany()
        await asyncio.sleep(1.0)  # the client stops reading: the gateway's writes wait
        events = parse_sse(await response.read())
    assert events[-1].data == "[DONE]"
    assert all("error" not in e.data[:10] for e in events)


async def test_a_200_that_is_not_json_is_a_502_naming_the_provider(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = answering(b"<html>Bad gateway page</html>")  # text/plain, status 200
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="fake/m", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert "'fake'" in caught.value.message and "JSON" in caught.value.message


async def test_an_empty_model_after_the_provider_says_so(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="mock/", messages=MESSAGES)
    assert "no model after the slash" in caught.value.message


async def test_azure_deployment_dot_segments_are_refused(start_gateway: GatewayFactory) -> None:
    url = await start_gateway(
        '[providers.az]\ntype = "azure"\nbase_url = "http://127.0.0.1:9"\napi_key = "k"\n'
    )
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        for model in ("az/..", "az/."):
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(model=model, messages=MESSAGES)
            assert caught.value.body["param"] == "model"  # type: ignore[index]
