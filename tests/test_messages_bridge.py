"""Anthropic's Messages API over any other provider: the request as chat, chat back as Anthropic.

The stream's output is checked against the anthropic SDK itself: every event validates as its
`RawMessageStreamEvent`, and the SDK's own accumulator (`accumulate_event`, what
`client.messages.stream()` runs) builds from them the Message that `message_from_chat` gives
for the same answer not streamed.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from formats.anthropic.error_shape import anthropic_error_body, anthropic_error_status
from formats.anthropic.from_chat import MessagesFromChat, message_from_chat
from formats.anthropic.probe import PING
from formats.anthropic.request import messages_to_chat
from formats.anthropic.to_chat import MessagesStream
from formats.chat.from_chat import ChatStreamWriter
from formats.chat.request import decode_chat_request
from formats.gemini.to_chat import GeminiStream
from tests.chat_answers import (
    ANSWERS,
    MODEL,
    SIGNATURE,
    TRANSLATING,
    chat_translator,
    run,
    split,
    sse_events,
)
from tests.replay import fixture
from wire.errors import (
    BadRequest,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from wire.operations import Operation
from wire.usage import Usage

_events = TypeAdapter(RawMessageStreamEvent)


def _raw(body: dict[str, Any]) -> dict[str, msgspec.Raw]:
    return {key: msgspec.Raw(orjson.dumps(value)) for key, value in body.items()}


def _chat(body: dict[str, Any]) -> dict[str, Any]:
    translated = messages_to_chat(_raw(body))
    decode_chat_request(translated)  # what every translating provider reads: it must fit
    return {key: msgspec.json.decode(value) for key, value in translated.items()}


def _request(**fields: Any) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hi"}],
        **fields,
    }


# --- the request ---------------------------------------------------------------------------


def _claude_code_request() -> dict[str, Any]:
    """What Claude Code sends: system blocks with cache_control, tools, thinking, images,
    tool results, earlier thinking with its signature."""
    return _request(
        system=[
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "text", "text": "Be brief."},
        ],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
                        "cache_control": {"type": "ephemeral"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Look at it.", "signature": SIGNATURE},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "cat"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a cat"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [
                            {"type": "text", "text": "noon"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/jpeg",
                                    "data": "/9j/",
                                },
                            },
                        ],
                        "is_error": False,
                    },
                    {"type": "text", "text": "Go on."},
                ],
            },
        ],
        tools=[
            {
                "name": "lookup",
                "description": "Search",
                "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "custom", "name": "now", "input_schema": {"type": "object"}, "strict": True},
        ],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        metadata={"user_id": "user-7"},
        stream=True,
        thinking={"type": "enabled", "budget_tokens": 10000},
        service_tier="auto",
        context_management={"edits": []},
    )


def test_claude_code_style_request_becomes_the_equivalent_chat_request() -> None:
    body = _claude_code_request()
    assert _chat(body) == {
        "model": "openai/gpt-4o",
        "messages": [
            {"role": "system", "content": "You are Claude Code.\n\nBe brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me check.",
                "reasoning": "Look at it.",
                "reasoning_signature": SIGNATURE,
                "reasoning_redacted": ["opaque"],
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q":"cat"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "now", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "noon"},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
                    {"type": "text", "text": "Go on."},
                ],
            },
        ],
        "max_tokens": 256,
        "stream": True,
        "stop": ["END"],
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user-7",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                    "description": "Search",
                },
            },
            {
                "type": "function",
                "function": {"name": "now", "parameters": {"type": "object"}, "strict": True},
            },
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning_effort": "medium",
    }


@pytest.mark.parametrize("provider", TRANSLATING, ids=lambda provider: provider.name)
def test_translated_request_is_taken_by_translating_providers(provider: Any) -> None:
    """(Ollama is left out: it fetches no image URLs, a 400 of its own.)"""
    chat = messages_to_chat(_raw({**_claude_code_request(), "max_tokens": 32000}))
    request = provider.build_request(Operation.CHAT, "model", chat, True)
    assert request.body


def test_a_plain_request_stays_plain() -> None:
    assert _chat(_request(system="Be brief.")) == {
        "model": "openai/gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
        "max_tokens": 256,
    }


def test_documents_become_file_and_text_parts() -> None:
    pdf = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}
    content = [
        {"type": "document", "source": pdf, "title": "spec.pdf"},
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
        },
    ]
    messages = _chat(_request(messages=[{"role": "user", "content": content}]))["messages"]
    assert messages[0]["content"] == [
        {
            "type": "file",
            "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
        },
        {"type": "text", "text": "notes"},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "now", "disable_parallel_tool_use": True},
            {
                "tool_choice": {"type": "function", "function": {"name": "now"}},
                "parallel_tool_calls": False,
            },
        ),
    ],
)
def test_tool_choice_mapping(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    tools = [{"name": "now", "input_schema": {"type": "object"}}]
    chat = _chat(_request(tools=tools, tool_choice=choice))
    assert {
        key: chat[key] for key in ("tool_choice", "parallel_tool_calls") if key in chat
    } == expected


@pytest.mark.parametrize(
    ("fields", "effort"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 8192}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 31999}}, "high"),
        ({"thinking": {"type": "disabled"}}, None),
        ({"thinking": {"type": "adaptive"}}, None),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}, "low"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}, "high"),
        # An effort without thinking asks for none (Claude Code's title request).
        ({"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}}, None),
        ({"output_config": {"effort": "max"}}, None),
    ],
)
def test_thinking_becomes_a_reasoning_effort(fields: dict[str, Any], effort: str | None) -> None:
    assert _chat(_request(**fields)).get("reasoning_effort") == effort


def test_structured_output_becomes_a_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    expected = {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    output_config = {"format": {"type": "json_schema", "schema": schema}}
    assert _chat(_request(output_config=output_config))["response_format"] == expected
    output_format = {"type": "json_schema", "schema": schema}
    assert _chat(_request(output_format=output_format))["response_format"] == expected


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"mcp_servers": [{"type": "url", "url": "https://x.test", "name": "x"}]}, "mcp_servers"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        (
            {"messages": [{"role": "user", "content": [{"type": "server_tool_use", "id": "x"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages[0].content[0].source",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}
                ]
            },
            "messages[0].content[0].type",
        ),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": None}, "max_tokens"),
    ],
)
def test_what_chat_cannot_carry_is_a_400_naming_the_parameter(
    fields: dict[str, Any], param: str
) -> None:
    body = _request(**fields)
    if fields.get("max_tokens", 0) is None:
        del body["max_tokens"]
    with pytest.raises(BadRequest) as caught:
        messages_to_chat(_raw(body))
    assert caught.value.param == param
    assert param.split("[")[0].split(".")[0] in caught.value.message


# --- the stream ----------------------------------------------------------------------------


def _normalised(data: bytes) -> list[dict[str, Any]]:
    """The events' payloads, each checked: its `event:` line names its type."""
    payloads = []
    for event in sse_events(data):
        payload = orjson.loads(event.data)
        assert event.event == payload["type"]
        if payload["type"] == "message_start":
            payload["message"]["id"] = "msg_x"
        payloads.append(payload)
    return payloads


def _accumulate(data: bytes, validate: bool = True) -> Message:
    """The Message the anthropic SDK's stream helper builds from these bytes (each event
    validated as the SDK's own type, unless `validate` is False: the docs' examples, which
    our fixtures copy, leave some fields out)."""
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for event in sse_events(data):
        if event.event == "ping":  # the SDK skips it too
            continue
        parsed = _events.validate_json(event.data) if validate else orjson.loads(event.data)
        snapshot = accumulate_event(event=parsed, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return snapshot


def _without_id(message: Message) -> dict[str, Any]:
    data = message.model_dump(exclude_none=True)
    del data["id"]
    return data


@pytest.mark.parametrize("name", list(ANSWERS))
def test_stream_and_whole_answer_give_the_same_message(name: str) -> None:
    answer = ANSWERS[name]
    bridge = chat_translator(MessagesFromChat("openai/requested"))
    streamed = _accumulate(run(bridge, [answer.stream()]))
    whole = Message.model_validate_json(message_from_chat(answer.completion()))
    assert _without_id(streamed) == _without_id(whole)
    assert bridge.finished and bridge.failure is None
    assert bridge.usage == answer.usage
    assert whole.model == MODEL


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(list(ANSWERS)),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=40),
)
def test_any_split_of_the_chat_stream_gives_the_same_events(name: str, cuts: list[int]) -> None:
    stream = ANSWERS[name].stream()
    whole = run(chat_translator(MessagesFromChat("m")), [stream])
    pieces = run(chat_translator(MessagesFromChat("m")), split(stream, cuts))
    assert _normalised(pieces) == _normalised(whole)


def test_events_come_in_anthropics_order() -> None:
    out = run(chat_translator(MessagesFromChat("m")), [ANSWERS["tools"].stream()])
    kinds = [
        (p["type"], p.get("index"), (p.get("content_block") or p.get("delta") or {}).get("type"))
        for p in _normalised(out)
    ]
    assert kinds == [
        ("message_start", None, None),
        ("content_block_start", 0, "text"),
        ("content_block_delta", 0, "text_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "tool_use"),
        ("content_block_delta", 1, "input_json_delta"),
        ("content_block_delta", 1, "input_json_delta"),
        ("content_block_delta", 1, "input_json_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("content_block_start", 3, "tool_use"),
        ("content_block_stop", 3, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]


def test_message_start_and_delta_carry_anthropics_usage() -> None:
    out = _normalised(run(chat_translator(MessagesFromChat("m")), [ANSWERS["thinking"].stream()]))
    assert out[0]["message"]["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert out[0]["message"]["model"] == MODEL
    assert out[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 20,  # 30 prompt tokens, 10 of them read from the cache
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 10,
            "output_tokens": 20,
        },
    }


@pytest.mark.parametrize(
    ("name", "stop"),
    [
        ("text", "end_turn"),
        ("tools", "tool_use"),
        ("length", "max_tokens"),
        ("filtered", "refusal"),
    ],
)
def test_finish_reason_becomes_the_stop_reason(name: str, stop: str) -> None:
    out = run(chat_translator(MessagesFromChat("m")), [ANSWERS[name].stream()])
    assert _accumulate(out).stop_reason == stop


def test_signature_without_thinking_gets_a_thinking_block_of_its_own() -> None:
    writer = ChatStreamWriter(MODEL)
    stream = (
        writer.tool_call(0, "call_1", "f", '{"a": 1}')
        + writer.reasoning_signature(SIGNATURE)
        + writer.finish("tool_calls", None)
    )
    message = _accumulate(run(chat_translator(MessagesFromChat("m")), [stream]))
    assert [block.type for block in message.content] == ["tool_use", "thinking"]
    assert message.content[1].signature == SIGNATURE  # type: ignore[union-attr]


def test_upstream_error_event_becomes_anthropics_error_event() -> None:
    writer = ChatStreamWriter(MODEL)
    stream = writer.content("Hel") + writer.error(UpstreamError("Too many", status=429))
    bridge = chat_translator(MessagesFromChat("m"))
    out = _normalised(run(bridge, [stream]))
    assert out[-1] == {"type": "error", "error": {"type": "api_error", "message": "Too many"}}
    ErrorResponse.model_validate(out[-1])
    assert bridge.finished
    assert isinstance(bridge.failure, GatewayError)
    assert bridge.failure.message == "Too many"


def test_inner_translators_failure_keeps_its_status() -> None:
    """Anthropic's overloaded_error, read by the Anthropic provider's translator (as in a
    fallback through chat), comes out as overloaded_error again."""
    bridge = MessagesStream("claude", "m", MessagesFromChat("m"))
    out = _normalised(run(bridge, [fixture("anthropic/midstream_error.sse")]))
    assert out[-1]["error"]["type"] == "overloaded_error"
    assert bridge.failure is not None and anthropic_error_status(bridge.failure) == 529


def test_relay_failure_becomes_an_error_event() -> None:
    bridge = chat_translator(MessagesFromChat("m"))
    head = bridge.feed(ChatStreamWriter(MODEL).content("Hi"))
    out = bridge.error_event(UpstreamTimeout("No answer in 30 s."))
    assert _normalised(head + out)[-1] == {
        "type": "error",
        "error": {"type": "timeout_error", "message": "No answer in 30 s."},
    }
    assert bridge.finished and isinstance(bridge.failure, UpstreamTimeout)


def test_stream_cut_before_its_end_is_an_error() -> None:
    stream = ChatStreamWriter(MODEL).content("Hi")
    bridge = chat_translator(MessagesFromChat("m"))
    out = _normalised(run(bridge, [stream]))
    assert out[-1]["type"] == "error"
    assert bridge.failure is not None
    assert (bridge.failure.status, bridge.failure.code) == (502, "upstream_protocol_error")


def test_anthropic_stream_through_chat_gives_back_the_same_message() -> None:
    """Anthropic's own stream, translated to chat by the Anthropic provider and back by the
    bridge, accumulates to the Message Anthropic sent (ids and usage split aside)."""
    for name in ("tool_use_stream", "cached_stream", "text_stream"):
        raw = fixture(f"anthropic/{name}.sse")
        direct = _accumulate(raw, validate=False)
        bridged = _accumulate(run(MessagesStream("claude", "m", MessagesFromChat("m")), [raw]))
        assert [b.model_dump() for b in bridged.content] == [b.model_dump() for b in direct.content]
        assert bridged.stop_reason == direct.stop_reason


def test_anthropic_thinking_through_chat_keeps_thinking_and_signature() -> None:
    raw = fixture("anthropic/thinking_stream.sse")
    deltas = [orjson.loads(event.data).get("delta", {}) for event in sse_events(raw)]
    thinking = "".join(delta["thinking"] for delta in deltas if "thinking" in delta)
    signature = next(delta["signature"] for delta in deltas if "signature" in delta)
    message = _accumulate(run(MessagesStream("claude", "m", MessagesFromChat("m")), [raw]))
    assert [block.model_dump() for block in message.content] == [
        {"type": "thinking", "thinking": thinking, "signature": signature},
        {"type": "text", "text": "27 * 453 = 12,231", "citations": None},
    ]


def test_gemini_whole_function_calls_become_tool_use_blocks() -> None:
    raw = fixture("gemini/tool_stream.sse")
    message = _accumulate(run(GeminiStream("gemini", MessagesFromChat("gemini-2.5-flash")), [raw]))
    calls = [block for block in message.content if block.type == "tool_use"]
    assert calls and all(isinstance(call.input, dict) and call.input for call in calls)
    assert message.stop_reason == "tool_use"


def test_keepalive_comments_pass_through() -> None:
    bridge = chat_translator(MessagesFromChat("m"))
    assert bridge.feed(b": keepalive\n\n") == b": keepalive\n\n"


# --- the whole answer and errors -----------------------------------------------------------


def test_whole_answer_is_a_message_the_sdk_reads() -> None:
    answer = ANSWERS["thinking"]
    message = Message.model_validate_json(message_from_chat(answer.completion()))
    assert message.id.startswith("msg_")
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.usage.input_tokens == 20 and message.usage.cache_read_input_tokens == 10


def test_tool_arguments_that_are_not_an_object_become_an_empty_input() -> None:
    completion = orjson.loads(ANSWERS["tools"].completion())
    completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = '{"cut'
    message = Message.model_validate_json(message_from_chat(orjson.dumps(completion)))
    assert message.content[1].input == {}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        (BadRequest("bad"), "invalid_request_error", 400),
        (Unauthorized("who"), "authentication_error", 401),
        (NotFound("where"), "not_found_error", 404),
        (PayloadTooLarge("big"), "request_too_large", 413),
        (UpstreamError("slow down", status=429), "rate_limit_error", 429),
        (UpstreamError("busy", status=503, type="overloaded_error"), "overloaded_error", 529),
        (UpstreamError("busy", status=503), "overloaded_error", 529),
        (UpstreamError("no", status=403, type="permission_error"), "permission_error", 403),
        (UpstreamError("conflict", status=409), "invalid_request_error", 409),
        (UpstreamUnreachable("down"), "api_error", 502),
        (UpstreamTimeout("late"), "timeout_error", 504),
        (GatewayError("oops"), "api_error", 500),
    ],
)
def test_every_gateway_error_has_anthropics_shape(
    error: GatewayError, kind: str, status: int
) -> None:
    body = orjson.loads(anthropic_error_body(error))
    assert body == {"type": "error", "error": {"type": kind, "message": error.message}}
    if kind != "request_too_large":  # in the docs' list, not in the SDK's union: Cloudflare
        ErrorResponse.model_validate(body)  # answers it before the API does
    assert anthropic_error_status(error) == status


def test_usage_of_the_chunk_is_exposed() -> None:
    bridge = chat_translator(MessagesFromChat("m"))
    writer = ChatStreamWriter(MODEL)
    run(bridge, [writer.content("x") + writer.finish("stop", Usage(7, 1))])
    assert bridge.usage == Usage(7, 1)


def test_ping_is_an_event_the_sdk_skips() -> None:
    (event,) = sse_events(PING)
    assert event.event == "ping" and orjson.loads(event.data) == {"type": "ping"}
