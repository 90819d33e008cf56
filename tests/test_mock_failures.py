"""The mock fails on demand, chosen by the model name (`mock/status-503`, `mock/error-first`,
`mock/cut-after-3`), for every operation it serves, streamed or not, through the gateway and
the official SDK."""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec
import openai
import orjson
import pytest

from gateway.config import parse
from gateway.engine.transport.upstream_errors import client_timeout
from providers.mock import REPLY, MockProvider, MockProviderConfig, reply_tokens
from providers.mock.failures import CutAfter, ErrorFirst, Status, parse_failure
from providers.mock.media import speech_wav
from tests.streams import parse_sse, post_stream
from wire.operations import Operation

# The SDK marks translations deprecated; the route still serves clients that call it.
pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")

WAV = speech_wav("Hello there")
MESSAGES = [{"role": "user", "content": "Hi"}]

OPERATIONS = [
    "chat",
    "chat-stream",
    "completions",
    "completions-stream",
    "responses",
    "responses-stream",
    "embeddings",
    "speech",
    "speech-sse",
    "transcription",
    "transcription-stream",
    "translation",
]


async def call(client: openai.AsyncOpenAI, operation: str, model: str) -> Any:
    """One request of `operation` for `model`, read to its end, as a client reads it."""
    if operation == "chat":
        return await client.chat.completions.create(model=model, messages=MESSAGES)
    if operation == "chat-stream":
        stream = await client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
        return [chunk async for chunk in stream]
    if operation == "completions":
        return await client.completions.create(model=model, prompt="Hi")
    if operation == "completions-stream":
        stream = await client.completions.create(model=model, prompt="Hi", stream=True)
        return [chunk async for chunk in stream]
    if operation == "responses":
        return await client.responses.create(model=model, input="Hi")
    if operation == "responses-stream":
        async with client.responses.stream(model=model, input="Hi") as stream:
            return [event async for event in stream]
    if operation == "embeddings":
        return await client.embeddings.create(model=model, input="Hi")
    if operation == "speech":
        return (await client.audio.speech.create(model=model, voice="alloy", input="Hi")).content
    if operation == "speech-sse":
        async with client.audio.speech.with_streaming_response.create(
            model=model, voice="alloy", input="Hi", stream_format="sse"
        ) as response:
            return await response.read()
    if operation == "transcription":
        return await client.audio.transcriptions.create(model=model, file=("a.wav", WAV))
    if operation == "transcription-stream":
        stream = await client.audio.transcriptions.create(
            model=model, file=("a.wav", WAV), stream=True
        )
        return [event async for event in stream]
    assert operation == "translation"
    return await client.audio.translations.create(model=model, file=("a.wav", WAV))


# Type and code as OpenAI answers them for each status.
OPENAI_ERRORS = {
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("request_forbidden", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    503: ("service_unavailable_error", "server_is_overloaded"),
}


@pytest.mark.parametrize("status", sorted(OPENAI_ERRORS))
@pytest.mark.parametrize("operation", OPERATIONS)
async def test_status_model_answers_that_status_with_openais_error_for_every_operation(
    client: openai.AsyncOpenAI, operation: str, status: int
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await call(client, operation, f"mock/status-{status}")
    error = caught.value.body
    assert isinstance(error, dict)
    assert "mock/status-" in error["message"]
    if status in (401, 403):  # the upstream refused the gateway's key: not the client's fault
        assert caught.value.status_code == 502
        assert (error["type"], error["code"]) == ("upstream_error", "provider_auth_failed")
        return
    assert caught.value.status_code == status
    assert (error["type"], error["code"]) == OPENAI_ERRORS[status]
    assert error["param"] is None


@pytest.mark.parametrize("status", [400, 409, 422, 500, 502, 504, 529])
async def test_any_error_status_can_be_asked_for(client: openai.AsyncOpenAI, status: int) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await call(client, "chat", f"mock/status-{status}")
    assert caught.value.status_code == status
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    assert set(error) == {"message", "type", "param", "code"}


async def test_a_429_carries_retry_after_one_second_and_other_statuses_none() -> None:
    """What the relay gets from the mock: a 429's headers say when to try again."""
    config = parse('[providers.mock]\ntype = "mock"\n', "t.toml").providers["mock"]
    assert isinstance(config, MockProviderConfig)
    provider = MockProvider("mock", config)
    for status, retry_after in ((429, "1"), (503, None)):
        body = {
            "model": msgspec.Raw(b'"x"'),
            "messages": msgspec.Raw(orjson.dumps(MESSAGES)),
        }
        request = provider.build_request(Operation.CHAT, f"status-{status}", body, False)
        upstream = await provider.send(request, client_timeout(1))
        assert upstream.status == status
        assert upstream.headers.get("Retry-After") == retry_after


async def test_the_gateways_429_from_the_mock_carries_its_retry_after(
    client: openai.AsyncOpenAI,
) -> None:
    """The README's promise: the mock's `Retry-After: 1` reaches the client. Its headers are
    a plain dict (`Retry-After`), and the gateway's lookup was for `retry-after` only: the
    gateway's own wait ignored it too."""
    with pytest.raises(openai.RateLimitError) as caught:
        await call(client, "chat", "mock/status-429")
    assert caught.value.response.headers.get("retry-after") == "1"


# --- error-first ------------------------------------------------------------------------------


async def test_error_first_stream_fails_before_content_so_the_client_gets_its_status(
    gateway_url: str, client: openai.AsyncOpenAI
) -> None:
    # The mock sends a 200 stream whose first event is an error; the gateway commits nothing
    # before the first content, so the client sees a failed request, not a failed stream.
    status, raw = await post_stream(gateway_url, "mock/error-first")
    body = orjson.loads(raw)
    assert status == 502
    error = body["error"]
    assert error["type"] == "service_unavailable_error" and "overloaded" in error["message"]

    seen: list[Any] = []
    with pytest.raises(openai.APIError, match="overloaded"):
        async for chunk in await client.chat.completions.create(
            model="mock/error-first", messages=MESSAGES, stream=True
        ):
            seen.append(chunk)
    assert seen == []


@pytest.mark.parametrize("operation", ["chat", "completions", "responses", "embeddings", "speech"])
async def test_error_first_without_a_stream_is_a_503(
    client: openai.AsyncOpenAI, operation: str
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await call(client, operation, "mock/error-first")
    assert caught.value.status_code == 503


async def test_error_first_fails_transcript_and_responses_streams_before_content(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.APIError, match="overloaded"):
        await call(client, "transcription-stream", "mock/error-first")
    with pytest.raises(openai.APIStatusError, match="overloaded"):
        await call(client, "responses-stream", "mock/error-first")


# --- cut-after-n ------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0, 1, 3, 12])
async def test_cut_after_n_streams_n_tokens_then_the_connection_breaks(
    client: openai.AsyncOpenAI, cut: int
) -> None:
    text = ""
    with pytest.raises(openai.APIError) as caught:
        async for chunk in await client.chat.completions.create(
            model=f"mock/cut-after-{cut}", messages=MESSAGES, stream=True
        ):
            assert chunk.choices[0].finish_reason is None  # it never finishes
            text += chunk.choices[0].delta.content or ""
    assert text == "".join(reply_tokens(cut))
    assert caught.value.code == "upstream_unreachable"
    assert "closed the connection" in caught.value.message


async def test_cut_after_n_breaks_completions_transcripts_speech_and_responses_streams(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.APIError, match="closed the connection"):
        await call(client, "completions-stream", "mock/cut-after-2")
    deltas: list[str] = []
    with pytest.raises(openai.APIError, match="closed the connection"):
        async for event in await client.audio.transcriptions.create(
            model="mock/cut-after-2", file=("a.wav", WAV), stream=True
        ):
            deltas.append(event.delta)
    assert "".join(deltas) == "The quick"
    raw = await call(client, "speech-sse", "mock/cut-after-1")
    events = [orjson.loads(e.data) for e in parse_sse(raw)]
    assert [e.get("type") for e in events] == ["speech.audio.delta", None]
    assert events[-1]["error"]["code"] == "upstream_unreachable"
    responses = await call(client, "responses-stream", "mock/cut-after-3")
    text = "".join(e.delta for e in responses if e.type == "response.output_text.delta")
    assert text == "This is a"
    assert responses[-1].type == "error" and responses[-1].code == "upstream_unreachable"


async def test_cut_after_n_of_raw_audio_cuts_the_body_short(gateway_url: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway_url}/v1/audio/speech",
            json={"model": "mock/cut-after-1", "voice": "alloy", "input": "Hello " * 50},
        ) as response,
    ):
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


@pytest.mark.parametrize(
    "operation", ["chat", "completions", "responses", "embeddings", "transcription", "translation"]
)
async def test_cut_after_n_without_a_stream_is_a_502(
    client: openai.AsyncOpenAI, operation: str
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await call(client, operation, "mock/cut-after-3")
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unreachable"


# --- names --------------------------------------------------------------------------------------


def test_failure_names_parse_and_others_are_ordinary_models() -> None:
    assert parse_failure("status-503") == Status(503)
    assert parse_failure("status-429") == Status(429)
    assert parse_failure("error-first") == ErrorFirst()
    assert parse_failure("cut-after-0") == CutAfter(0)
    assert parse_failure("cut-after-9999") == CutAfter(9999)
    for name in (
        "any-name",
        "status-200",
        "status-302",
        "status-5031",
        "status-",
        "Status-503",
        "error-first-x",
        "cut-after-",
        "cut-after-x",
        "cut-after-10000",
        "gpt-4o/status-503",
    ):
        assert parse_failure(name) is None, name


@pytest.mark.parametrize("model", ["mock/status-200", "mock/cut-after-x", "mock/error-firsts"])
async def test_other_names_answer_the_ordinary_reply(
    client: openai.AsyncOpenAI, model: str
) -> None:
    answer = await client.chat.completions.create(model=model, messages=MESSAGES)
    assert answer.choices[0].message.content == REPLY
