"""Cohere v2 chat behind the gateway: Cohere's wire bytes in, the OpenAI SDK's objects out."""

from __future__ import annotations

import itertools
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.cohere import CohereProvider, CohereStream
from tests.conftest import FakeUpstream, GatewayFactory
from tests.replay import fixture, replay
from tests.sdk import Answer, collect_stream, from_completion
from tests.streams import parse_sse
from wire.operations import Operation

SEEDS = [0, 1, 2, 3, 4]
MESSAGES = [{"role": "user", "content": "What is Coca-Cola?"}]
TEXT = "Coca-Cola is a carbonated soft drink — 日本でも 🥤."
TOOL_PLAN = "I will look up the weather in Toronto and Madrid."
TOOL_CALLS = [
    {"id": "get_weather_1byjy32y4hvq", "name": "get_weather", "arguments": {"location": "Toronto"}},
    {"id": "get_weather_8ut9w3zs4ngr", "name": "get_weather", "arguments": {"location": "Madrid"}},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}


def _toml(upstream: FakeUpstream, **settings: str) -> str:
    lines = ["[providers.co]", 'type = "cohere"', f'base_url = "{upstream.url}"']
    lines += [f'{key} = "{value}"' for key, value in {"api_key": "co-key", **settings}.items()]
    return "\n".join(lines) + "\ntimeout = 5\n"


@pytest.fixture
async def sdk(upstream: FakeUpstream, start_gateway: GatewayFactory) -> Any:
    url = await start_gateway(_toml(upstream))
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    yield client
    await client.close()


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


# --- streams, replayed in random splits ----------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
async def test_text_stream_in_random_splits(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = replay(fixture("cohere/text_stream.sse"), seed=seed)
    answer = await collect_stream(sdk, "co/command-a-03-2025", messages=MESSAGES)
    assert answer == Answer(text=TEXT, finish_reason="stop", usage=_usage(186, 14))


@pytest.mark.parametrize("seed", SEEDS)
async def test_tool_stream_in_random_splits(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = replay(fixture("cohere/tool_stream.sse"), seed=seed)
    answer = await collect_stream(
        sdk, "co/command-a-03-2025", messages=MESSAGES, tools=[WEATHER_TOOL]
    )
    assert answer == Answer(
        reasoning=TOOL_PLAN,
        tool_calls=TOOL_CALLS,
        finish_reason="tool_calls",
        usage=_usage(1260, 60),
    )


@pytest.mark.parametrize("seed", SEEDS)
async def test_thinking_stream_in_random_splits(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = replay(fixture("cohere/thinking_stream.sse"), seed=seed)
    answer = await collect_stream(sdk, "co/command-a-reasoning-08-2025", messages=MESSAGES)
    assert answer == Answer(
        text="2 + 2 = 4",
        reasoning="The user asks for 2+2. That is 4.",
        finish_reason="stop",
        usage=_usage(1002, 19),
    )


@pytest.mark.parametrize(
    ("stream_file", "answer_file"),
    [("text_stream.sse", "chat_response.json"), ("tool_stream.sse", "tool_response.json")],
)
async def test_non_streamed_answer_agrees_with_the_stream(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, stream_file: str, answer_file: str
) -> None:
    upstream.handler = replay(fixture(f"cohere/{stream_file}"), seed=7)
    streamed = await collect_stream(sdk, "co/m", messages=MESSAGES, tools=[WEATHER_TOOL])
    upstream.handler = replay(fixture(f"cohere/{answer_file}"), content_type="application/json")
    completion = await sdk.chat.completions.create(
        model="co/m", messages=MESSAGES, tools=[WEATHER_TOOL]
    )
    assert completion.object == "chat.completion" and completion.model == "m"
    assert from_completion(completion) == streamed


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=40))
def test_translator_gives_the_same_chunks_for_any_split(cuts: list[int]) -> None:
    raw = fixture("cohere/tool_stream.sse")
    points = sorted({0, len(raw), *(cut % (len(raw) + 1) for cut in cuts)})

    def run(pieces: list[bytes]) -> list[Any]:
        translator = CohereStream("m")
        out = b"".join(translator.feed(piece) for piece in pieces) + translator.end()
        assert translator.finished
        events = parse_sse(out)
        assert events[-1].data == "[DONE]"
        chunks = [orjson.loads(event.data) for event in events[:-1]]
        return [(c["choices"], c["usage"]) for c in chunks]

    whole = run([raw])
    assert run([raw[a:b] for a, b in itertools.pairwise(points)]) == whole
    assert whole[-1][0][0]["finish_reason"] == "tool_calls"


# --- the request Cohere receives -----------------------------------------------------------


async def test_request_is_translated_to_cohere_v2_chat(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.handler = replay(fixture("cohere/chat_response.json"), content_type="application/json")
    await sdk.chat.completions.create(
        model="co/command-a-vision-07-2025",
        messages=[
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather where this was taken?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "reasoning": TOOL_PLAN,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Toronto"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "-3 C, snow"},
        ],
        tools=[WEATHER_TOOL],
        tool_choice="required",
        stop=["\n\n"],
        max_tokens=300,
        temperature=0.2,
        top_p=0.9,
        seed=7,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}},
        },
    )
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/chat"
    assert sent["headers"]["Authorization"] == "Bearer co-key"
    assert sent["body"] == {
        "model": "command-a-vision-07-2025",
        "stream": False,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather where this was taken?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                ],
            },
            {
                "role": "assistant",
                "tool_plan": TOOL_PLAN,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Toronto"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "-3 C, snow"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "REQUIRED",
        "stop_sequences": ["\n\n"],
        "max_tokens": 300,
        "temperature": 0.2,
        "p": 0.9,
        "seed": 7,
        "response_format": {"type": "json_object", "json_schema": {"type": "object"}},
    }


async def test_streamed_request_asks_for_sse(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.handler = replay(fixture("cohere/text_stream.sse"))
    await collect_stream(sdk, "co/m", messages=MESSAGES, max_completion_tokens=50)
    sent = upstream.requests[-1]
    assert sent["body"]["stream"] is True and sent["body"]["max_tokens"] == 50
    assert sent["headers"]["Accept"] == "text/event-stream"


async def test_named_tool_choice_offers_only_that_tool_and_requires_a_call(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    other = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    upstream.handler = replay(fixture("cohere/tool_response.json"), content_type="application/json")
    await sdk.chat.completions.create(
        model="co/m",
        messages=MESSAGES,
        tools=[other, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    body = upstream.last_body
    assert body["tools"] == [WEATHER_TOOL] and body["tool_choice"] == "REQUIRED"


async def test_unsupported_parameter_is_400_naming_it(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model="co/m", messages=MESSAGES, n=2)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "n"
    assert upstream.requests == []


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_error_answer_keeps_status_and_message(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, stream: bool
) -> None:
    upstream.handler = replay(
        fixture("cohere/error_429.json"), status=429, content_type="application/json"
    )
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.chat.completions.create(model="co/m", messages=MESSAGES, stream=stream)
    error = caught.value
    assert error.status_code == 429
    assert isinstance(error.body, dict) and error.body["type"] == "upstream_error"
    assert error.body["message"].startswith("You are using a Trial key")


async def test_error_finish_mid_stream_raises_in_the_sdk(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.handler = replay(fixture("cohere/error_stream.sse"), seed=3)
    text = ""
    stream = await sdk.chat.completions.create(model="co/m", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            text += (chunk.choices and chunk.choices[0].delta.content) or ""
    assert text == "Partial answer"
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "generation_error"


async def test_stream_cut_before_message_end_ends_with_an_error_event(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    raw = fixture("cohere/text_stream.sse")
    upstream.handler = replay(raw[: raw.index(b"event: message-end")], seed=1)
    url = await start_gateway(_toml(upstream))
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/v1/chat/completions",
            json={"model": "co/m", "messages": MESSAGES, "stream": True},
        ) as response,
    ):
        events = parse_sse(await response.read())
    assert response.status == 200
    assert orjson.loads(events[0].data)["choices"][0]["delta"]["content"] == "Coca"
    assert orjson.loads(events[-1].data)["error"]["code"] == "upstream_protocol_error"
    assert all(event.data != "[DONE]" for event in events)


async def test_missing_env_key_is_a_502_naming_the_variable(
    upstream: FakeUpstream, start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COHERE_TEST_MISSING_KEY", raising=False)
    url = await start_gateway(_toml(upstream, api_key="env.COHERE_TEST_MISSING_KEY"))
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="co/m", messages=MESSAGES)
    assert "COHERE_TEST_MISSING_KEY" in caught.value.message
    assert upstream.requests == []


def test_translator_repr_names_its_state() -> None:
    assert repr(CohereStream("m")) == "<CohereStream finished=False tool_calls=0>"


def test_cohere_serves_chat_only() -> None:
    assert CohereProvider.operations == frozenset({Operation.CHAT})


def test_malformed_event_is_a_protocol_error_event() -> None:
    translator = CohereStream("m")
    events = parse_sse(translator.feed(b"event: content-delta\ndata: {not json\n\n"))
    assert translator.finished
    assert orjson.loads(events[-1].data)["error"]["code"] == "upstream_protocol_error"


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    translator = CohereStream("m")
    out = translator.feed(data) + translator.end()
    assert translator.finished and out  # always ends, with [DONE] or an error event
