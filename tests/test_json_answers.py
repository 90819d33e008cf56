"""`response_format` through the translations that take JSON their own way: Anthropic, Bedrock.

Each fake upstream answers as the model would for what the gateway asked: the JSON as text when
the request carries the API's structured output (`output_config.format`, Converse's
`outputConfig.textFormat`), a call of the answer's tool (`json_answer`) when it offers that
tool, with its input split across deltas. The client is the OpenAI SDK's own structured-output
helpers (`chat.completions.parse`, `.stream`), which parse the answer into a pydantic model:
they fail unless the answer is that JSON, as text, with `finish_reason: "stop"`.
"""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pydantic
import pytest
from aiohttp import web
from anthropic.lib._parse._transform import transform_schema

from formats.json_answer import JSON_TOOL, strict_schema
from providers.model_families import claude_version
from tests.bedrock_frames import event
from tests.conftest import Connect, FakeUpstream
from tests.streams import weather_tool

EVENTSTREAM = "application/vnd.amazon.eventstream"
ASK = [{"role": "user", "content": "Title for: the gateway answers JSON."}]
ANSWER = {"title": "JSON through any door", "words": 4, "tags": ["json"]}


class Title(pydantic.BaseModel):
    title: str
    words: int = pydantic.Field(ge=1, description="How many words.")
    tags: list[str]


def _toml(upstream: FakeUpstream) -> str:
    base = upstream.url.removesuffix("/v1")
    return (
        f'[providers.claude]\ntype = "anthropic"\nbase_url = "{upstream.url}"\n'
        'api_key = "k"\ntimeout = 5\n'
        f'[providers.br]\ntype = "bedrock"\nbase_url = "{base}"\nregion = "us-west-2"\n'
        'access_key_id = "AKIDEXAMPLE"\nsecret_access_key = "secret"\ntimeout = 5\n'
    )


@pytest.fixture
async def sdk(upstream: FakeUpstream, connect: Connect) -> openai.AsyncOpenAI:
    upstream.handler = model_upstream()
    return await connect(_toml(upstream))


# --- the fake model --------------------------------------------------------------------------


def model_upstream(call: tuple[str, dict[str, Any]] | None = None) -> Any:
    """Anthropic's Messages API or Bedrock's Converse, answering `ANSWER` as the request asks
    for it (or calling `call`, a tool of the request's, when given)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if request.path.endswith("/messages"):
            names = [tool["name"] for tool in body.get("tools", [])]
            tool = call or ((JSON_TOOL, ANSWER) if JSON_TOOL in names else None)
            if body.get("stream"):
                return web.Response(body=_anthropic_stream(tool), content_type="text/event-stream")
            return web.json_response(_anthropic_message(tool))
        names = [tool["toolSpec"]["name"] for tool in body.get("toolConfig", {}).get("tools", [])]
        tool = call or ((JSON_TOOL, ANSWER) if JSON_TOOL in names else None)
        if request.path.endswith("/converse-stream"):
            return web.Response(body=_converse_stream(tool), content_type=EVENTSTREAM)
        return web.json_response(_converse_answer(tool))

    return handler


def _anthropic_message(tool: tuple[str, dict[str, Any]] | None) -> dict[str, Any]:
    if tool is None:
        content = [{"type": "text", "text": orjson.dumps(ANSWER).decode()}]
    else:
        content = [{"type": "tool_use", "id": "toolu_1", "name": tool[0], "input": tool[1]}]
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": content,
        "stop_reason": "tool_use" if tool else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 12},
    }


def _anthropic_stream(tool: tuple[str, dict[str, Any]] | None) -> bytes:
    """As Anthropic streams it: a tool's input in three `input_json_delta` pieces."""
    start = {**_anthropic_message(tool), "content": [], "stop_reason": None}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    if tool is None:
        text = orjson.dumps(ANSWER).decode()
        opened: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [
            {"type": "text_delta", "text": text[:7]},
            {"type": "text_delta", "text": text[7:]},
        ]
    else:
        given = orjson.dumps(tool[1]).decode()
        opened = {"type": "tool_use", "id": "toolu_1", "name": tool[0], "input": {}}
        pieces = [given[:5], given[5:17], given[17:]]
        deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
    events.append({"type": "content_block_start", "index": 0, "content_block": opened})
    events += [{"type": "content_block_delta", "index": 0, "delta": d} for d in deltas]
    events.append({"type": "content_block_stop", "index": 0})
    stop = "tool_use" if tool else "end_turn"
    events.append(
        {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 12}}
    )
    events.append({"type": "message_stop"})
    return b"".join(
        f"event: {e['type']}\ndata: ".encode() + orjson.dumps(e) + b"\n\n" for e in events
    )


def _converse_answer(tool: tuple[str, dict[str, Any]] | None) -> dict[str, Any]:
    if tool is None:
        content: list[dict[str, Any]] = [{"text": orjson.dumps(ANSWER).decode()}]
    else:
        content = [{"toolUse": {"toolUseId": "tooluse_1", "name": tool[0], "input": tool[1]}}]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": "tool_use" if tool else "end_turn",
        "usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42},
    }


def _converse_stream(tool: tuple[str, dict[str, Any]] | None) -> bytes:
    """ConverseStream's frames (API_runtime_ConverseStreamOutput): a tool's input in pieces."""
    frames = [event("messageStart", {"role": "assistant"})]
    if tool is None:
        text = orjson.dumps(ANSWER).decode()
        frames += [
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
            for piece in (text[:9], text[9:])
        ]
    else:
        start = {"toolUse": {"toolUseId": "tooluse_1", "name": tool[0]}}
        frames.append(event("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
        given = orjson.dumps(tool[1]).decode()
        frames += [
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": p}}})
            for p in (given[:4], given[4:20], given[20:])
        ]
    frames.append(event("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(event("messageStop", {"stopReason": "tool_use" if tool else "end_turn"}))
    usage = {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42}
    frames.append(event("metadata", {"usage": usage, "metrics": {"latencyMs": 5}}))
    return b"".join(frames)


async def parsed(sdk: openai.AsyncOpenAI, model: str, stream: bool, **request: Any) -> Any:
    """The SDK's parsed answer (streamed: its stream helper's final completion)."""
    if stream:
        async with sdk.chat.completions.stream(
            model=model, messages=ASK, response_format=Title, **request
        ) as events:
            completion = await events.get_final_completion()
    else:
        completion = await sdk.chat.completions.parse(
            model=model, messages=ASK, response_format=Title, **request
        )
    [choice] = completion.choices
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    return choice.message.parsed


def _sent_schema(sdk_request: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema the OpenAI SDK sends for `Title`."""
    schema: dict[str, Any] = sdk_request["response_format"]["json_schema"]["schema"]
    return schema


STREAMED = pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])


# --- Anthropic ---------------------------------------------------------------------------------


@STREAMED
async def test_a_claude_with_structured_outputs_gets_output_config_format(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, stream: bool
) -> None:
    assert await parsed(sdk, "claude/claude-sonnet-4-5-20250929", stream) == Title(**ANSWER)
    sent = upstream.last_body
    assert "tools" not in sent and "tool_choice" not in sent
    schema = sent["output_config"]["format"]["schema"]
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    # As Anthropic's SDK writes it: objects closed, `minimum` (not enforced) told.
    assert schema["additionalProperties"] is False
    assert schema["properties"]["words"] == {
        "type": "integer",
        "description": "How many words.\n\n{minimum: 1}",
        "title": "Words",
    }


@STREAMED
@pytest.mark.parametrize("model", ["claude-sonnet-4-20250514", "claude-3-7-sonnet-20250219"])
async def test_an_older_claude_answers_through_the_json_tool_given_back_as_text(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, stream: bool, model: str
) -> None:
    assert await parsed(sdk, f"claude/{model}", stream) == Title(**ANSWER)
    sent = upstream.last_body
    assert "output_config" not in sent
    [tool] = sent["tools"]
    assert tool["name"] == JSON_TOOL and tool["description"]
    assert tool["input_schema"]["properties"].keys() == {"title", "words", "tags"}
    assert tool["input_schema"]["properties"]["words"]["minimum"] == 1  # the schema as sent
    assert sent["tool_choice"] == {"type": "tool", "name": JSON_TOOL}


@STREAMED
async def test_json_object_goes_through_the_tool_as_any_object(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, stream: bool
) -> None:
    request = {
        "model": "claude/claude-opus-4-5",
        "messages": ASK,
        "response_format": {"type": "json_object"},
    }
    if stream:
        text = ""
        async for chunk in await sdk.chat.completions.create(**request, stream=True):
            for choice in chunk.choices:
                text += choice.delta.content or ""
                assert not choice.delta.tool_calls
                finish = choice.finish_reason or None
    else:
        answer = await sdk.chat.completions.create(**request)
        text, finish = answer.choices[0].message.content or "", answer.choices[0].finish_reason
    assert orjson.loads(text) == ANSWER and finish == "stop"
    [tool] = upstream.last_body["tools"]
    assert (tool["name"], tool["input_schema"]) == (JSON_TOOL, {"type": "object"})


@STREAMED
async def test_with_the_clients_own_tools_one_of_them_or_the_answer_is_called(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, stream: bool
) -> None:
    upstream.handler = model_upstream(call=("get_weather", {"city": "Paris"}))
    request: dict[str, Any] = {
        "model": "claude/claude-sonnet-4-20250514",
        "messages": ASK,
        "tools": [weather_tool("city")],
        "response_format": {"type": "json_object"},
    }
    if stream:
        calls = []
        async for chunk in await sdk.chat.completions.create(**request, stream=True):
            for choice in chunk.choices:
                calls += [
                    call.function.name
                    for call in choice.delta.tool_calls or ()
                    if call.function and call.function.name
                ]
                finish = choice.finish_reason or None
    else:
        answer = await sdk.chat.completions.create(**request)
        finish = answer.choices[0].finish_reason
        calls = [call.function.name for call in answer.choices[0].message.tool_calls or ()]
    assert (calls, finish) == (["get_weather"], "tool_calls")
    sent = upstream.last_body
    assert [tool["name"] for tool in sent["tools"]] == ["get_weather", JSON_TOOL]
    assert sent["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize(
    "model", ["claude/claude-sonnet-4-20250514", "br/anthropic.claude-3-7-sonnet-20250219-v1:0"]
)
async def test_the_answers_tool_is_forced_even_when_thinking_is_asked_for(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, model: str
) -> None:
    """Claude forces a tool only without thinking; the JSON the client parses comes first,
    so the effort (a preference) goes without thinking, and the limit without its budget."""
    answer = await parsed(sdk, model, False, reasoning_effort="low", max_completion_tokens=900)
    assert answer == Title(**ANSWER)
    sent = upstream.last_body
    if model.startswith("claude/"):
        assert "thinking" not in sent and sent["max_tokens"] == 900
        assert sent["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    else:
        assert "additionalModelRequestFields" not in sent
        assert sent["inferenceConfig"]["maxTokens"] == 900
        assert sent["toolConfig"]["toolChoice"] == {"tool": {"name": JSON_TOOL}}
    # Where the answer is the model's own structured output, thinking goes with it.
    await parsed(sdk, "claude/claude-sonnet-4-5", False, reasoning_effort="low")
    assert upstream.last_body["thinking"] == {"type": "enabled", "budget_tokens": 2048}


async def test_a_schema_claude_cannot_enforce_goes_through_the_tool(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    """An open map (`additionalProperties` a schema) would be closed by structured outputs."""
    schema = {
        "type": "object",
        "properties": {"counts": {"type": "object", "additionalProperties": {"type": "integer"}}},
    }
    upstream.handler = model_upstream()
    await sdk.chat.completions.create(
        model="claude/claude-opus-4-6",
        messages=ASK,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    sent = upstream.last_body
    assert "output_config" not in sent
    assert sent["tools"][0]["input_schema"] == schema


@pytest.mark.parametrize("model", ["claude/claude-sonnet-4-20250514", "br/anthropic.claude-v2"])
async def test_a_client_tool_named_as_the_answers_tool_is_refused(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, model: str
) -> None:
    tool = {"type": "function", "function": {"name": JSON_TOOL, "parameters": {}}}
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model=model, messages=ASK, tools=[tool])
    assert caught.value.param == "tools[0].function.name"
    assert upstream.requests == []


# --- Bedrock -----------------------------------------------------------------------------------


@STREAMED
async def test_bedrock_claude_with_structured_outputs_gets_output_config_text_format(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, stream: bool
) -> None:
    model = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert await parsed(sdk, f"br/{model}", stream) == Title(**ANSWER)
    sent = upstream.last_body
    assert "toolConfig" not in sent
    text_format = sent["outputConfig"]["textFormat"]
    assert text_format["type"] == "json_schema"
    definition = text_format["structure"]["jsonSchema"]
    assert definition["name"] == "Title"
    schema = orjson.loads(definition["schema"])  # Converse takes the schema as a JSON string
    assert schema["additionalProperties"] is False
    assert "minimum" not in schema["properties"]["words"]  # Claude's subset, as for Anthropic


@STREAMED
async def test_bedrock_open_weight_models_get_the_schema_as_it_is(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, stream: bool
) -> None:
    assert await parsed(sdk, "br/qwen.qwen3-32b-v1:0", stream) == Title(**ANSWER)
    definition = upstream.last_body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    assert orjson.loads(definition["schema"])["properties"]["words"]["minimum"] == 1


@STREAMED
@pytest.mark.parametrize(
    "model", ["anthropic.claude-3-5-sonnet-20240620-v1:0", "us.amazon.nova-pro-v1:0"]
)
async def test_bedrock_models_without_it_answer_through_the_json_tool(
    upstream: FakeUpstream, sdk: openai.AsyncOpenAI, stream: bool, model: str
) -> None:
    assert await parsed(sdk, f"br/{model}", stream) == Title(**ANSWER)
    sent = upstream.last_body
    assert "outputConfig" not in sent
    [tool] = sent["toolConfig"]["tools"]
    assert tool["toolSpec"]["name"] == JSON_TOOL
    assert tool["toolSpec"]["inputSchema"]["json"]["properties"]["words"]["minimum"] == 1
    assert sent["toolConfig"]["toolChoice"] == {"tool": {"name": JSON_TOOL}}


# --- the schema Claude's structured outputs take, and model names ------------------------------


class Inner(pydantic.BaseModel):
    when: str = pydantic.Field(json_schema_extra={"format": "date-time"})
    kind: str = pydantic.Field(json_schema_extra={"enum": ["a", "b"]})


class Middle(pydantic.BaseModel):
    inner: Inner  # definitions referring to definitions, without a cycle


class Outer(pydantic.BaseModel):
    """An outer thing."""

    middle: Middle
    inner: Inner
    either: int | str
    items: list[Inner] = pydantic.Field(min_length=1, max_length=3)
    note: str | None = pydantic.Field(default=None, pattern="^n")


@pytest.mark.parametrize("model", [Title, Inner, Outer])
def test_the_strict_schema_is_what_anthropics_sdk_sends(model: type[pydantic.BaseModel]) -> None:
    schema = model.model_json_schema()
    assert strict_schema(schema) == transform_schema(schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"any": {}}},  # a value of any type
        {"type": "object", "additionalProperties": {"type": "string"}},  # an open map
        {"type": "object", "additionalProperties": True},
        {"type": "object", "properties": {"x": {"type": ["string", "null"]}}},
        {  # a recursive definition
            "type": "object",
            "properties": {"node": {"$ref": "#/$defs/Node"}},
            "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
        },
        {  # definitions in a cycle
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/A"}},
            "$defs": {
                "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
                "B": {"type": "array", "items": {"$ref": "#/$defs/A"}},
            },
        },
        {"type": "object", "properties": {"self": {"$ref": "#"}}},  # the root itself
    ],
)
def test_a_schema_outside_claudes_subset_is_not_taken(schema: dict[str, Any]) -> None:
    assert strict_schema(schema) is None


@pytest.mark.parametrize(
    ("model", "version"),
    [
        ("claude-opus-4-5", (4, 5)),
        ("claude-sonnet-4-5-20250929", (4, 5)),
        ("claude-sonnet-4-20250514", (4, 0)),
        ("claude-opus-4-1-20250805", (4, 1)),
        ("claude-3-7-sonnet-20250219", (3, 7)),
        ("claude-3-opus-20240229", (3, 0)),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", (4, 5)),
        ("global.anthropic.claude-opus-4-8-v1", (4, 8)),
        ("claude-haiku-4-5@20251001", (4, 5)),
        ("claude-opus-5", (5, 0)),
        ("claude-2.1", (2, 1)),
        ("gpt-4o", None),
        ("anthropic.claude-v2", None),
    ],
)
def test_a_claude_models_version_is_read_from_its_name(
    model: str, version: tuple[int, int] | None
) -> None:
    assert claude_version(model) == version
