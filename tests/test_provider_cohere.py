"""Cohere v2 chat behind the gateway: Cohere's wire bytes in, the OpenAI SDK's objects out."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from formats.chat.from_chat import ChatStreamWriter
from providers.cohere import CohereProvider, CohereStream
from tests.conftest import Connect, FakeUpstream, provider_toml
from tests.replay import fixture, replay
from tests.sdk import Answer, collect_stream
from tests.streams import weather_tool
from wire.operations import Operation

SEEDS = [0, 1, 2, 3, 4]
MESSAGES = [{"role": "user", "content": "What is Coca-Cola?"}]
TEXT = "Coca-Cola is a carbonated soft drink — 日本でも 🥤."
TOOL_PLAN = "I will look up the weather in Toronto and Madrid."
TOOL_CALLS = [
    {"id": "get_weather_1byjy32y4hvq", "name": "get_weather", "arguments": {"location": "Toronto"}},
    {"id": "get_weather_8ut9w3zs4ngr", "name": "get_weather", "arguments": {"location": "Madrid"}},
]
WEATHER_TOOL = weather_tool("location")


def _toml(upstream: FakeUpstream, **settings: str) -> str:
    return provider_toml(upstream.url, "co", type="cohere", api_key="co-key", timeout=5, **settings)


@pytest.fixture
async def sdk(upstream: FakeUpstream, connect: Connect) -> Any:
    return await connect(_toml(upstream))


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


# --- errors --------------------------------------------------------------------------------


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


def test_translator_repr_names_its_state() -> None:
    translator = CohereStream("co", ChatStreamWriter("m"))
    assert repr(translator) == "<CohereStream finished=False tool_calls=0>"


def test_cohere_serves_chat_only() -> None:
    assert CohereProvider.operations == frozenset({Operation.CHAT})
