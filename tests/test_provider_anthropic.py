"""The anthropic provider: Messages API requests out, OpenAI chunks and answers back.

Anthropic's documented wire bytes (tests/fixtures/anthropic/, see the README there) are replayed
by a real fake upstream in random byte splits, and read by the official OpenAI SDK through the
real gateway; the translator is also fed bytes directly (sans-IO) for the split properties.
"""

from __future__ import annotations

from typing import Any

import msgspec
import openai
import orjson
import pytest

from formats.anthropic.to_chat import MessagesStream
from formats.chat.from_chat import ChatStreamWriter
from formats.chat.request import decode_chat_request
from providers.anthropic import messages_body
from tests.conftest import Connect, FakeUpstream, GatewayFactory
from tests.replay import fixture, replay
from tests.sdk import Reading, read_chunks, read_whole, stream_chunks
from tests.streams import answering, parse_sse
from wire.errors import BadRequest

SEEDS = [0, 1, 2, 3, 4]
MODEL = "claude/claude-opus-4-1-20250805"
HI = [{"role": "user", "content": "Hello"}]
WEATHER = {"location": "San Francisco, CA", "unit": "fahrenheit"}


def claude_toml(upstream_url: str, **settings: Any) -> str:
    lines = ["[providers.claude]", 'type = "anthropic"', f'base_url = "{upstream_url}"']
    settings = {"api_key": "test-key", "timeout": 2, **settings}
    lines += [f"{key} = {_toml_value(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    return orjson.dumps(value).decode()


@pytest.fixture
async def sdk(upstream: FakeUpstream, connect: Connect) -> Any:
    return await connect(claude_toml(upstream.url, headers={"anthropic-beta": "test-beta"}))


async def stream_answer(client: Any, **request: Any) -> Reading:
    """Concatenate a stream the way a client does, checking the gateway's chunk promises."""
    chunks = await stream_chunks(client, **{"model": MODEL, "messages": HI, **request})
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        assert (chunk.usage is not None or chunk.choices[0].finish_reason is not None) <= last
    return read_chunks(chunks)


async def whole_answer(client: Any, **request: Any) -> Reading:
    return await read_whole(client, **{"model": MODEL, "messages": HI, **request})


# --- streams, replayed in random splits and read by the SDK ---


@pytest.mark.parametrize("seed", SEEDS)
async def test_text_stream_reads_as_openai_chunks(upstream: FakeUpstream, sdk: Any, seed: int):
    upstream.handler = replay(fixture("anthropic/text_stream.sse"), seed=seed)
    answer = await stream_answer(sdk)
    assert answer.content == "Hello!"
    assert answer.finish_reason == "stop"
    # input_tokens from message_start, output_tokens from message_delta (cumulative: 15, not 16)
    assert answer.usage == {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40}
    assert answer.ids == {"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"}
    assert answer.models == {"claude-opus-4-1-20250805"}  # as message_start reports it


@pytest.mark.parametrize("seed", SEEDS)
async def test_tool_use_stream_gives_complete_tool_calls(
    upstream: FakeUpstream, sdk: Any, seed: int
):
    upstream.handler = replay(fixture("anthropic/tool_use_stream.sse"), seed=seed, max_piece=20)
    answer = await stream_answer(sdk)
    assert answer.content == "Okay, let's check the weather for San Francisco, CA:"
    assert answer.tool_calls == [
        {"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "arguments": WEATHER}
    ]
    assert answer.finish_reason == "tool_calls"
    assert answer.usage == {"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561}


@pytest.mark.parametrize("seed", SEEDS)
async def test_thinking_stream_gives_reasoning_and_signature(
    upstream: FakeUpstream, sdk: Any, seed: int
):
    upstream.handler = replay(fixture("anthropic/thinking_stream.sse"), seed=seed)
    answer = await stream_answer(sdk)
    assert answer.reasoning.startswith("Let me solve this step by step:\n\n1. First break down")
    assert answer.reasoning.endswith("\n6. 10,800 + 1,350 + 81 = 12,231")
    assert answer.reasoning_signature == "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."
    assert answer.content == "27 * 453 = 12,231"
    assert answer.finish_reason == "stop"
    assert answer.usage is None  # the docs' example reports none; we invent none


@pytest.mark.parametrize("seed", SEEDS)
async def test_cached_prompt_tokens_count_in_prompt_tokens(
    upstream: FakeUpstream, sdk: Any, seed: int
):
    upstream.handler = replay(fixture("anthropic/cached_stream.sse"), seed=seed)
    answer = await stream_answer(sdk)
    assert answer.content == "Hello!"
    assert answer.finish_reason == "length"  # max_tokens
    assert answer.usage == {
        "prompt_tokens": 21 + 1800 + 188,
        "completion_tokens": 510,
        "total_tokens": 21 + 1800 + 188 + 510,
        "prompt_tokens_details": {"cached_tokens": 1800, "cache_creation_tokens": 188},
    }


@pytest.mark.parametrize("seed", SEEDS)
async def test_midstream_error_event_raises_in_the_sdk(upstream: FakeUpstream, sdk: Any, seed: int):
    upstream.handler = replay(fixture("anthropic/midstream_error.sse"), seed=seed)
    text = ""
    with pytest.raises(openai.APIError) as caught:
        async for chunk in await sdk.chat.completions.create(model=MODEL, messages=HI, stream=True):
            text += chunk.choices[0].delta.content or ""
    assert text == "Hello"
    assert caught.value.message == "Overloaded"
    assert caught.value.body == {
        "message": "Overloaded",
        "type": "overloaded_error",
        "param": None,
        "code": "overloaded_error",
    }


@pytest.mark.parametrize("seed", SEEDS)
async def test_stream_cut_before_message_stop_is_an_error(
    upstream: FakeUpstream, sdk: Any, seed: int
):
    raw = fixture("anthropic/text_stream.sse")
    upstream.handler = replay(raw[: raw.index(b"event: message_delta")], seed=seed)
    with pytest.raises(openai.APIError) as caught:
        async for _ in await sdk.chat.completions.create(model=MODEL, messages=HI, stream=True):
            pass
    assert "closed the stream before it finished" in caught.value.message


# --- whole answers ---


async def test_non_streamed_answer(upstream: FakeUpstream, sdk: Any):
    upstream.handler = replay(fixture("anthropic/message.json"), content_type="application/json")
    answer = await whole_answer(sdk)
    assert answer.content == "Hello!"
    assert answer.finish_reason == "stop"
    assert answer.usage == {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}
    assert answer.ids == {"msg_01XFDUDYJgAACzvnptvVoYEL"}
    assert answer.models == {"claude-opus-4-20250514"}
    assert "stream" not in upstream.last_body


async def test_non_streamed_thinking_answer_agrees_with_the_stream(
    upstream: FakeUpstream, sdk: Any
):
    upstream.handler = replay(fixture("anthropic/thinking_stream.sse"))
    streamed = await stream_answer(sdk)
    upstream.handler = replay(
        fixture("anthropic/thinking_message.json"), content_type="application/json"
    )
    whole = await whole_answer(sdk)
    for field in ("content", "reasoning", "reasoning_signature", "finish_reason", "ids"):
        assert getattr(whole, field) == getattr(streamed, field), field
    assert whole.usage == {
        "prompt_tokens": 14 + 2048,
        "completion_tokens": 312,
        "total_tokens": 14 + 2048 + 312,
        "prompt_tokens_details": {"cached_tokens": 2048, "cache_creation_tokens": 0},
    }


# --- the request Anthropic receives ---

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"  # a PNG header, base64
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
            },
        },
    },
    {"type": "function", "function": {"name": "now"}},
]
CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in these, and the weather?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
        ],
    },
    {
        "role": "assistant",
        "content": "Let me look.",
        "reasoning": "The user wants two things.",
        "reasoning_signature": "sig-1",
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
            },
            {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": ""}},
        ],
    },
    {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C, sunny"},
    {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "noon"}]},
    {"role": "user", "content": "Thanks. Now summarise."},
]


async def test_request_translation(upstream: FakeUpstream, sdk: Any):
    upstream.handler = replay(fixture("anthropic/message.json"), content_type="application/json")
    await sdk.chat.completions.create(
        model=MODEL,
        messages=CONVERSATION,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        stop=["END"],
        temperature=0.5,
        top_p=0.9,
        user="user-42",
        seed=7,
    )
    request = upstream.requests[-1]
    assert request["path"] == "/v1/messages"
    headers = {key.lower(): value for key, value in request["headers"].items()}
    assert headers["x-api-key"] == "test-key"
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert headers["anthropic-beta"] == "test-beta"  # the provider's `headers`
    assert "authorization" not in headers
    assert request["body"] == {
        "model": "claude-opus-4-1-20250805",
        "max_tokens": 4096,  # the provider's default: Anthropic requires one
        "system": "You are terse.\n\nAnswer in English.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these, and the weather?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/a.jpg"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "thinking",
                        "thinking": "The user wants two things.",
                        "signature": "sig-1",
                    },
                    {"type": "text", "text": "Let me look."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    },
                    {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
                ],
            },
            {  # both tool results and the next user message: one user turn
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C, sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "noon"}],
                    },
                    {"type": "text", "text": "Thanks. Now summarise."},
                ],
            },
        ],
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "top_p": 0.9,
        "metadata": {"user_id": "user-42"},
        "tools": [
            {
                "name": "get_weather",
                "input_schema": TOOLS[0]["function"]["parameters"],
                "description": "Get the current weather in a given location",
            },
            {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    }


async def test_streamed_request_asks_for_a_stream_with_the_client_limit(
    upstream: FakeUpstream, sdk: Any
):
    upstream.handler = replay(fixture("anthropic/text_stream.sse"))
    await stream_answer(sdk, max_completion_tokens=300, stop="\n\n")
    body = upstream.last_body
    assert body["stream"] is True
    assert body["max_tokens"] == 300
    assert body["stop_sequences"] == ["\n\n"]
    assert "stream_options" not in body and "max_completion_tokens" not in body


async def test_provider_max_tokens_and_version_come_from_config(
    upstream: FakeUpstream, start_gateway: GatewayFactory
):
    url = await start_gateway(
        claude_toml(upstream.url + "/", max_tokens=777, anthropic_version="2099-01-01")
    )
    upstream.handler = replay(fixture("anthropic/message.json"), content_type="application/json")
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        await client.chat.completions.create(model=MODEL, messages=HI)
    assert upstream.requests[-1]["path"] == "/v1/messages"
    assert upstream.requests[-1]["headers"]["anthropic-version"] == "2099-01-01"
    assert upstream.last_body["max_tokens"] == 777


def _body(**request: Any) -> dict[str, Any]:
    raw = {key: msgspec.Raw(orjson.dumps(value)) for key, value in request.items()}
    raw.setdefault("model", msgspec.Raw(b'"m"'))
    raw.setdefault("messages", msgspec.Raw(orjson.dumps(HI)))
    return messages_body(decode_chat_request(raw), "m", False, 4096)


TOOL = [TOOLS[1]]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "now"}}, None, {"type": "tool", "name": "now"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),  # nothing to parallelise
        ("auto", True, {"type": "auto"}),
    ],
)
def test_tool_choice_mapping(choice: Any, parallel: Any, expected: Any):
    request: dict[str, Any] = {"tools": TOOL}
    if choice is not None:
        request["tool_choice"] = choice
    if parallel is not None:
        request["parallel_tool_calls"] = parallel
    assert _body(**request).get("tool_choice") == expected


def test_tool_choice_without_tools_is_not_sent():
    body = _body(tool_choice="auto", parallel_tool_calls=False)
    assert "tools" not in body and "tool_choice" not in body


@pytest.mark.parametrize(
    ("request_fields", "max_tokens", "budget"),
    [
        ({"reasoning_effort": "low"}, 4096 + 2048, 2048),
        ({"reasoning_effort": "medium"}, 4096 + 8192, 8192),
        ({"reasoning_effort": "high", "max_tokens": 20000}, 20000, 16384),
        ({"reasoning_effort": "high", "max_completion_tokens": 3000}, 3000, 2999),
        ({"reasoning_effort": "minimal", "max_tokens": 1025}, 1025, 1024),
        ({"reasoning_effort": "none"}, 4096, None),
        ({}, 4096, None),
    ],
)
def test_reasoning_effort_maps_to_a_thinking_budget(
    request_fields: dict[str, Any], max_tokens: int, budget: int | None
):
    body = _body(**request_fields)
    assert body["max_tokens"] == max_tokens
    thinking = {"type": "enabled", "budget_tokens": budget} if budget else None
    assert body.get("thinking") == thinking


def test_reasoning_without_a_signature_is_not_sent_as_thinking():
    turn = {"role": "assistant", "content": "Hi", "reasoning": "unsigned"}
    body = _body(messages=[*HI, turn])
    assert body["messages"][1]["content"] == [{"type": "text", "text": "Hi"}]


def test_consecutive_same_role_messages_are_merged():
    body = _body(messages=[*HI, {"role": "user", "content": "again"}])
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "again"}],
        }
    ]


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({"reasoning_effort": "high", "max_tokens": 1024}, "max_tokens"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"tool_choice": "sometimes", "tools": TOOL}, "tool_choice"),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "f.png"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "t", "function": {"name": "now", "arguments": "[1]"}}
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_requests_anthropic_cannot_take_are_400_naming_the_parameter(
    request_fields: dict[str, Any], param: str
):
    with pytest.raises(BadRequest) as caught:
        _body(**request_fields)
    assert caught.value.param == param


async def test_defaults_that_ask_for_nothing_are_accepted(upstream: FakeUpstream, sdk: Any):
    upstream.handler = replay(fixture("anthropic/message.json"), content_type="application/json")
    await sdk.chat.completions.create(
        model=MODEL,
        messages=HI,
        n=1,
        logprobs=False,
        frequency_penalty=0,
        response_format={"type": "text"},
    )
    assert upstream.last_body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]}
    ]


# --- errors ---


async def test_error_body_keeps_status_message_and_type(upstream: FakeUpstream, sdk: Any):
    upstream.handler = replay(
        fixture("anthropic/error.json"), status=404, content_type="application/json"
    )
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.chat.completions.create(model=MODEL, messages=HI)
    assert caught.value.status_code == 404
    assert caught.value.body == {
        "message": "The requested resource could not be found.",
        "type": "not_found_error",
        "param": None,
        "code": "not_found_error",
    }


@pytest.mark.parametrize(
    ("status", "error_type", "expected_status"),
    [
        (400, "invalid_request_error", 400),
        (413, "request_too_large", 413),
        (429, "rate_limit_error", 429),
        (500, "api_error", 500),
        (529, "overloaded_error", 503),  # 503: the status clients know to retry
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_error_statuses(
    upstream: FakeUpstream,
    sdk: Any,
    status: int,
    error_type: str,
    expected_status: int,
    stream: bool,
):
    body = {"type": "error", "error": {"type": error_type, "message": f"it was {error_type}"}}
    upstream.handler = answering(body, status=status)
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(model=MODEL, messages=HI, stream=stream)
    assert caught.value.status_code == expected_status
    assert caught.value.body["message"] == f"it was {error_type}"
    assert caught.value.body["type"] == error_type
    assert caught.value.body["code"] == error_type


@pytest.mark.parametrize(
    ("status", "error_type"), [(401, "authentication_error"), (403, "permission_error")]
)
@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_refusing_the_gateways_key_is_a_502_naming_the_provider(
    upstream: FakeUpstream, sdk: Any, status: int, error_type: str, stream: bool
):
    body = {"type": "error", "error": {"type": error_type, "message": f"it was {error_type}"}}
    upstream.handler = answering(body, status=status)
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk.chat.completions.create(model=MODEL, messages=HI, stream=stream)
    # The client's 401 means its gateway key; the gateway's own key is not the client's fault.
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "provider_auth_failed"
    assert f"({status}): it was {error_type}" in caught.value.body["message"]


async def test_529_without_anthropic_body_is_still_503(upstream: FakeUpstream, sdk: Any):
    upstream.handler = answering(b"upstream overloaded", status=529)
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk.chat.completions.create(model=MODEL, messages=HI)
    assert caught.value.status_code == 503
    assert "upstream overloaded" in caught.value.message


async def test_env_key_is_sent_as_x_api_key(
    upstream: FakeUpstream, start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ANTHROPIC_KEY_FOR_TESTS", "sk-ant-from-env")
    url = await start_gateway(claude_toml(upstream.url, api_key="env.ANTHROPIC_KEY_FOR_TESTS"))
    upstream.handler = replay(fixture("anthropic/message.json"), content_type="application/json")
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        await client.chat.completions.create(model=MODEL, messages=HI)
    assert upstream.requests[-1]["headers"]["x-api-key"] == "sk-ant-from-env"


# --- the translator alone: bytes in, chunks out ---


def _translate(pieces: list[bytes], model: str = "asked-model") -> list[dict[str, Any] | str]:
    translator = MessagesStream("claude", model, ChatStreamWriter(model))
    out = b"".join(translator.feed(piece) for piece in pieces) + translator.end()
    events: list[dict[str, Any] | str] = []
    for event in parse_sse(out):
        if event.data == "[DONE]":
            events.append("[DONE]")
            continue
        chunk = orjson.loads(event.data)
        chunk.pop("created", None)  # a clock reading
        events.append(chunk)
    return events


def test_crlf_stream_gives_the_same_chunks():
    raw = fixture("anthropic/tool_use_stream.sse")
    assert _translate([raw.replace(b"\n", b"\r\n")]) == _translate([raw])


def _sse(kind: str, payload: dict[str, Any], named: bool = True) -> bytes:
    head = f"event: {kind}\n".encode() if named else b""
    return head + b"data: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"


START = _sse("message_start", {"message": {"id": "msg_1", "model": "claude-x", "usage": {}}})
STOP = _sse("message_delta", {"delta": {"stop_reason": "tool_use"}}) + _sse("message_stop", {})


def test_tool_calls_are_numbered_in_order_whatever_the_block_index():
    def tool(index: int, id: str, arguments: list[str]) -> bytes:
        block = {"type": "tool_use", "id": id, "name": f"fn_{id}", "input": {}}
        out = _sse("content_block_start", {"index": index, "content_block": block})
        for fragment in arguments:
            delta = {"type": "input_json_delta", "partial_json": fragment}
            out += _sse("content_block_delta", {"index": index, "delta": delta})
        return out + _sse("content_block_stop", {"index": index})

    text = {"type": "text", "text": "Hi"}
    stream = (
        START
        + _sse("content_block_start", {"index": 0, "content_block": text})
        + _sse("content_block_stop", {"index": 0})
        + tool(1, "a", ["", '{"x":', " 1}"])
        + tool(2, "b", [""])  # no parameters: no JSON at all
        + STOP
    )
    chunks = [c for c in _translate([stream]) if isinstance(c, dict)]
    calls = [call for c in chunks for call in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [(c["index"], c.get("id"), c["function"].get("arguments")) for c in calls] == [
        (0, "a", ""),
        (0, None, '{"x":'),
        (0, None, " 1}"),
        (1, "b", ""),
        (1, None, "{}"),
    ]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert {c["id"] for c in chunks} == {"msg_1"} and {c["model"] for c in chunks} == {"claude-x"}


def test_unknown_events_and_pings_are_ignored_and_unnamed_events_still_count():
    text = {"type": "text", "text": ""}
    stream = (
        START
        + _sse("ping", {})
        + _sse("content_block_start", {"index": 0, "content_block": text}, named=False)
        + _sse("brand_new_event", {"anything": [1, 2]})
        + _sse("content_block_delta", {"index": 0, "delta": {"type": "citations_delta"}})
        + _sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "ok"}})
        + _sse("content_block_stop", {"index": 0}, named=False)
        + STOP
    )
    events = _translate([stream])
    assert events[-1] == "[DONE]"
    assert [c["choices"][0]["delta"].get("content") for c in events[:-1]] == ["ok", None]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons(stop_reason: str, finish_reason: str):
    stream = (
        START
        + _sse("message_delta", {"delta": {"stop_reason": stop_reason}, "usage": {}})
        + _sse("message_stop", {})
    )
    last = _translate([stream])[-2]
    assert isinstance(last, dict)
    assert last["choices"][0]["finish_reason"] == finish_reason


def test_malformed_event_is_an_error_event_and_ends_the_stream():
    events = _translate([START + b"event: message_delta\ndata: {not json\n\n" + STOP])
    assert len(events) == 1 and isinstance(events[0], dict)
    assert events[0]["error"]["code"] == "upstream_protocol_error"
    assert "malformed message_delta" in events[0]["error"]["message"]


def test_error_before_message_start_uses_the_asked_model():
    translator = MessagesStream("claude", "asked-model", ChatStreamWriter("asked-model"))
    error = {"error": {"type": "api_error", "message": "boom"}}
    out = translator.feed(_sse("error", error))
    assert translator.finished
    assert orjson.loads(parse_sse(out)[0].data)["error"]["type"] == "api_error"
    assert translator.feed(START) == b"" and translator.end() == b""
    assert "finished=True" in repr(translator)
