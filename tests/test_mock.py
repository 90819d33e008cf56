"""The mock is a fair stand-in for an OpenAI server: non-streamed answers take as long as the
streamed ones, tool calls, JSON output and `n` choices, each streamed and not, the two agreeing,
all read through the official SDK."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

import openai
import orjson
import pydantic
import pytest

from providers.mock import REPLY
from tests.conftest import GatewayFactory
from tests.sdk import Reply, read_stream, read_whole, stream_chunks
from tests.test_mock_schema import WEATHER, violations

MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "The weather", "parameters": WEATHER},
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "format": "uuid"}},
            "required": ["zone"],
        },
    },
}


async def _sdk(start_gateway: GatewayFactory, toml: str) -> AsyncIterator[openai.AsyncOpenAI]:
    url = await start_gateway(toml)
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    yield sdk
    await sdk.close()


@pytest.fixture
async def slow_client(start_gateway: GatewayFactory) -> AsyncIterator[openai.AsyncOpenAI]:
    """The mock at 10 tokens, 0.05 s apart."""
    async for sdk in _sdk(start_gateway, '[providers.mock]\ntype = "mock"\ndelay = 0.05\n'):
        yield sdk


async def test_non_streamed_answer_comes_after_tokens_times_delay_like_the_stream(
    slow_client: openai.AsyncOpenAI,
) -> None:
    started = time.monotonic()
    whole = await slow_client.chat.completions.create(model="mock/m", messages=MESSAGES)
    whole_seconds = time.monotonic() - started
    started = time.monotonic()
    chunks = await stream_chunks(slow_client, model="mock/m", messages=MESSAGES)
    stream_seconds = time.monotonic() - started
    assert whole.choices[0].message.content == REPLY
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 10
    # At least the paced time; the bound above only tells it from no pacing at all, wide
    # enough for a loaded machine.
    assert 10 * 0.05 <= whole_seconds < 10 * 0.05 + 10
    assert 9 * 0.05 <= stream_seconds < 9 * 0.05 + 10


# --- tool calls --------------------------------------------------------------------------------


async def test_tool_call_streamed_as_openai_does_and_the_whole_answer_agrees(
    client: openai.AsyncOpenAI,
) -> None:
    request: dict[str, Any] = {"model": "mock/m", "messages": MESSAGES, "tools": [WEATHER_TOOL]}
    chunks = await stream_chunks(client, **request)
    calls = [
        call
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or ()
    ]
    first, *rest = calls
    # First the call's index, id, type and name with empty arguments, then argument fragments.
    assert (first.index, first.type, first.function.name, first.function.arguments) == (
        0,
        "function",
        "get_weather",
        "",
    )
    assert first.id
    assert len(rest) > 1
    assert all(c.id is None and c.function.name is None and c.function.arguments for c in rest)

    streamed = Reply.of(await read_stream(client, **request))
    whole = Reply.of(await read_whole(client, **request))
    assert streamed.ids != whole.ids  # a new call id per answer
    streamed.ids = whole.ids = []
    assert streamed == whole
    assert whole.finish == "tool_calls"
    assert whole.text == ""
    [(name, arguments)] = whole.calls
    assert name == "get_weather"
    assert violations(WEATHER, arguments) == []
    assert whole.usage is not None and whole.usage["completion_tokens"] == len(rest)


async def test_tool_choice_picks_the_named_tool_or_none(client: openai.AsyncOpenAI) -> None:
    tools: list[Any] = [WEATHER_TOOL, TIME_TOOL]
    named = await read_whole(
        client,
        model="mock/m",
        messages=MESSAGES,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert [call["name"] for call in named.tool_calls] == ["get_time"]
    assert named.tool_calls[0]["arguments"] == {"zone": "00000000-0000-4000-8000-000000000000"}
    required = await read_stream(
        client, model="mock/m", messages=MESSAGES, tools=tools, tool_choice="required"
    )
    assert [call["name"] for call in required.tool_calls] == ["get_weather"]
    none = await read_stream(
        client, model="mock/m", messages=MESSAGES, tools=tools, tool_choice="none"
    )
    assert (none.tool_calls, none.content, none.finish_reason) == ([], REPLY, "stop")


async def test_an_agent_loop_ends_once_the_tool_has_answered(client: openai.AsyncOpenAI) -> None:
    messages: list[Any] = list(MESSAGES)
    for _turn in range(3):
        answer = await client.chat.completions.create(
            model="mock/m", messages=messages, tools=[WEATHER_TOOL]
        )
        message = answer.choices[0].message
        if not message.tool_calls:
            break
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == REPLY
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "nope"),
        ({"tools": None, "tool_choice": "required"}, "only allowed when 'tools'"),
    ],
)
async def test_a_tool_choice_openai_would_refuse_is_a_400(
    client: openai.AsyncOpenAI, extra: dict[str, Any], words: str
) -> None:
    request: dict[str, Any] = {"tools": [WEATHER_TOOL], **extra}
    if request["tools"] is None:
        del request["tools"]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="mock/m", messages=MESSAGES, **request)
    assert caught.value.param == "tool_choice"
    assert words in caught.value.message


async def test_a_tool_choice_of_the_wrong_shape_is_a_400_not_a_crash(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="mock/m", messages=MESSAGES, tools=[WEATHER_TOOL], extra_body={"tool_choice": 5}
        )
    assert caught.value.type == "invalid_request_error"
    assert "tool_choice" in caught.value.message


class Unit(StrEnum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


class Forecast(pydantic.BaseModel):
    city: str
    unit: Unit
    days: list[int]
    note: str | None


class Plan(pydantic.BaseModel):
    title: str
    forecasts: list[Forecast]
    confident: bool


async def test_pydantic_tools_and_structured_output_parse_through_the_sdk_helpers(
    client: openai.AsyncOpenAI,
) -> None:
    """The SDK sends strict JSON schemas made from pydantic models and validates what comes
    back against the models: streamed and not."""
    tool = openai.pydantic_function_tool(Forecast)
    called = await client.chat.completions.parse(model="mock/m", messages=MESSAGES, tools=[tool])
    [call] = called.choices[0].message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, Forecast)

    whole = await client.chat.completions.parse(
        model="mock/m", messages=MESSAGES, response_format=Plan
    )
    parsed = whole.choices[0].message.parsed
    assert isinstance(parsed, Plan) and parsed.forecasts
    async with client.chat.completions.stream(
        model="mock/m", messages=MESSAGES, response_format=Plan
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.parsed == parsed
    assert final.choices[0].finish_reason == whole.choices[0].finish_reason == "stop"


async def test_json_object_answers_a_json_object_streamed_and_not(
    client: openai.AsyncOpenAI,
) -> None:
    request: dict[str, Any] = {
        "model": "mock/m",
        "messages": MESSAGES,
        "response_format": {"type": "json_object"},
    }
    streamed = await read_stream(client, **request)
    whole = await read_whole(client, **request)
    assert streamed.content == whole.content
    assert isinstance(orjson.loads(whole.content or ""), dict)
    assert streamed.usage == whole.usage


async def test_a_token_limit_cuts_a_json_answer_short_with_length(
    client: openai.AsyncOpenAI,
) -> None:
    whole = await read_whole(
        client,
        model="mock/m",
        messages=MESSAGES,
        response_format={"type": "json_object"},
        max_tokens=2,
    )
    assert whole.finish_reason == "length"
    assert whole.usage is not None and whole.usage["completion_tokens"] == 2
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(whole.content or "")


# --- n choices ---------------------------------------------------------------------------------


async def test_n_choices_streamed_by_index_and_whole_agree_and_usage_counts_them_all(
    client: openai.AsyncOpenAI,
) -> None:
    chunks = await stream_chunks(client, model="mock/m", messages=MESSAGES, n=3)
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in chunks:
        assert len(chunk.choices) <= 1 or chunk is chunks[-1]  # one choice a chunk, but the last
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    order = [c.choices[0].index for c in chunks if c.choices and c.choices[0].delta.content]
    assert order[:6] == [0, 1, 2, 0, 1, 2]  # interleaved, as the choices are generated

    whole = await client.chat.completions.create(model="mock/m", messages=MESSAGES, n=3)
    assert {choice.index: choice.message.content for choice in whole.choices} == texts
    assert texts == {0: REPLY, 1: REPLY, 2: REPLY}
    assert finishes == {0: "stop", 1: "stop", 2: "stop"}
    assert chunks[-1].usage == whole.usage
    assert whole.usage is not None and whole.usage.completion_tokens == 30


async def test_n_choices_of_tool_calls_and_of_legacy_completions(
    client: openai.AsyncOpenAI,
) -> None:
    answer = await client.chat.completions.create(
        model="mock/m", messages=MESSAGES, tools=[WEATHER_TOOL], n=2
    )
    calls = [choice.message.tool_calls or [] for choice in answer.choices]
    assert [len(c) for c in calls] == [1, 1]
    assert calls[0][0].id != calls[1][0].id
    assert calls[0][0].function.arguments == calls[1][0].function.arguments

    texts: dict[int, str] = {}
    async for chunk in await client.completions.create(
        model="mock/m", prompt="Hi", n=2, stream=True
    ):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    whole = await client.completions.create(model="mock/m", prompt="Hi", n=2)
    assert texts == {choice.index: choice.text for choice in whole.choices} == {0: REPLY, 1: REPLY}


@pytest.mark.parametrize(("n", "words"), [(0, "below minimum"), (129, "above maximum")])
async def test_n_out_of_openais_bounds_is_a_400(
    client: openai.AsyncOpenAI, n: int, words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="mock/m", messages=MESSAGES, n=n)
    assert caught.value.param == "n"
    assert words in caught.value.message


# --- token limits, checked as OpenAI checks them ----------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("field", "value"), [("max_tokens", -5), ("max_tokens", 0), ("max_completion_tokens", 0)]
)
async def test_a_chat_token_limit_below_one_is_openais_400(
    client: openai.AsyncOpenAI, field: str, value: int, stream: bool
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="mock/m", messages=MESSAGES, stream=stream, **{field: value}
        )
    assert caught.value.body == {
        "message": f"Invalid '{field}': integer below minimum value. "
        f"Expected a value >= 1, but got {value} instead.",
        "type": "invalid_request_error",
        "param": field,
        "code": "integer_below_min_value",
    }


async def test_legacy_completions_allow_zero_tokens_but_not_fewer(
    client: openai.AsyncOpenAI,
) -> None:
    empty = await client.completions.create(model="mock/m", prompt="Hi", max_tokens=0)
    assert (empty.choices[0].text, empty.choices[0].finish_reason) == ("", "length")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.completions.create(model="mock/m", prompt="Hi", max_tokens=-1)
    assert caught.value.param == "max_tokens"
    assert "Expected a value >= 0, but got -1 instead." in caught.value.message
    one = await client.chat.completions.create(model="mock/m", messages=MESSAGES, max_tokens=1)
    assert one.choices[0].message.content == "This"
