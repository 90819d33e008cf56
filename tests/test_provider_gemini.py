"""The gemini provider: Gemini's wire bytes replayed in random splits, read by the OpenAI SDK.

Fixtures are in tests/fixtures/gemini/ (README.md there names the doc each one follows).
"""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from formats.chat.from_chat import ChatStreamWriter
from formats.gemini.error_shape import gemini_error
from formats.gemini.schema_cut import gemini_schema
from formats.gemini.to_chat import GeminiStream
from providers.gemini import GeminiProvider, GeminiProviderConfig
from tests.conftest import Connect, FakeUpstream, Handler
from tests.replay import fixture, replay
from tests.sdk import refused, reply_readers
from wire.errors import BadRequest, UpstreamError
from wire.operations import Operation

MODEL = "gemini/gemini-2.5-flash"
PATH = "/v1beta/models/gemini-2.5-flash"
MESSAGES = [{"role": "user", "content": "Hello"}]
SEEDS = range(4)
TEXT = "Bonjour! Héllo, 世界 🎉 How can I help?"
TOOL_SIGNATURE = (
    "CikBcsjafFK168IbtVtoxVV0Tsn8O+eU45rzJahzwuKGmMbdMdfpmNpgBwplAXLI2nyA/pIFcnZwFm+7WFmLyMd8R4DXwsj"
    "qaeAAfCKo5G1xIkbAlJp8VevnIWRZ9SyMmiiqmY6linicJ5dg3rVLHM9wwSQ8FEvAxgO3Ave1rRlh/SaJJFga1B9dMG3/"
    "N47GFqw=="
)
TOOL_CALLS = [
    ("get_weather", {"city": "Paris", "unit": "celsius", "days": [1, 2]}),
    ("get_time", {"timezone": "Europe/Paris"}),
]
TOOL_USAGE = {
    "prompt_tokens": 83,
    "completion_tokens": 135,  # 31 candidates + 104 thoughts
    "total_tokens": 218,
    "completion_tokens_details": {"reasoning_tokens": 104},
}


def gemini_toml(base: str) -> str:
    return (
        f'[providers.gemini]\ntype = "gemini"\nbase_url = "{base}"\napi_key = "test-key"\n'
        "timeout = 2\n"
    )


@pytest.fixture
async def client(upstream: FakeUpstream, connect: Connect) -> openai.AsyncOpenAI:
    return await connect(gemini_toml(upstream.url.removesuffix("/v1") + "/v1beta"))


read_stream, read_whole = reply_readers({"model": MODEL, "messages": MESSAGES})


def recording(handler: Handler, queries: list[str]) -> Handler:
    """The fake upstream records the path only: keep the query string too."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        queries.append(request.query_string)
        return await handler(request)

    return wrapped


# --- streams, replayed in random splits ---------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
async def test_text_stream_reads_as_openai_chunks(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = replay(fixture("gemini/text_stream.sse"), seed=seed, max_piece=24)
    answer = await read_stream(client)
    assert answer.text == TEXT
    assert answer.finish == "stop"
    assert answer.usage == {"prompt_tokens": 8, "completion_tokens": 12, "total_tokens": 20}
    assert answer.model == "gemini-2.5-flash"  # modelVersion
    assert answer.calls == [] and answer.reasoning == ""


@pytest.mark.parametrize("seed", SEEDS)
async def test_tool_stream_gives_whole_calls_with_ids(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = replay(fixture("gemini/tool_stream.sse"), seed=seed)
    answer = await read_stream(client)
    assert answer.text == "Let me check both."
    assert answer.calls == TOOL_CALLS
    assert all(id.startswith("call_") for id in answer.ids) and len(set(answer.ids)) == 2
    assert answer.finish == "tool_calls"
    assert answer.usage == TOOL_USAGE
    assert answer.signature == TOOL_SIGNATURE


@pytest.mark.parametrize("seed", SEEDS)
async def test_thinking_stream_gives_reasoning_and_its_signature(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = replay(fixture("gemini/thinking_stream.sse"), seed=seed)
    answer = await read_stream(client, reasoning_effort="low")
    assert answer.reasoning == (
        '**Counting the letters**\n\nI\'m spelling out "strawberry" and marking each r.'
        "**Verifying the count**\n\nst-r-awbe-r-r-y: three."
    )
    assert answer.text == 'There are **three** r\'s in "strawberry".'
    assert answer.signature.startswith("EpcDCpQDAXLI2nw") and answer.signature.endswith("Sw==")
    assert answer.finish == "stop"
    assert answer.model == "gemini-2.5-pro"
    assert answer.usage == {
        "prompt_tokens": 1034,
        "completion_tokens": 326,  # 14 candidates + 312 thoughts
        "total_tokens": 1360,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 312},
    }


async def test_blocked_prompt_ends_with_content_filter(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = replay(fixture("gemini/blocked_stream.sse"))
    answer = await read_stream(client)
    assert answer.text == ""
    assert answer.finish == "content_filter"
    assert answer.usage == {"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7}


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [("MAX_TOKENS", "length"), ("RECITATION", "content_filter"), ("OTHER", "stop")],
)
async def test_finish_reasons_map_to_openai(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, finish_reason: str, expected: str
) -> None:
    event = {
        "candidates": [
            {"content": {"parts": [{"text": "Hi"}], "role": "model"}, "finishReason": finish_reason}
        ],
        "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 1},
    }
    upstream.handler = replay(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
    answer = await read_stream(client)
    assert (answer.text, answer.finish) == ("Hi", expected)


# --- the request ---------------------------------------------------------------------------


async def test_request_is_translated_to_generate_content(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    queries: list[str] = []
    upstream.handler = recording(replay(fixture("gemini/text_stream.sse")), queries)
    weather_schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    answer_schema = {"type": "object", "properties": {"answer": {"type": ["string", "null"]}}}
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me look.",
            "reasoning_signature": "c2ln",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {"id": "call_b", "type": "function", "function": {"name": "now", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_b", "content": "10:00"},
        {"role": "user", "content": "Thanks"},
    ]
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather now",
                "parameters": weather_schema,
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}},
    ]
    await read_stream(
        client,
        messages=messages,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stop="END",
        max_completion_tokens=100,
        temperature=0.5,
        top_p=0.9,
        seed=7,
        n=1,
        reasoning_effort="medium",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": answer_schema, "strict": True},
        },
    )
    sent = upstream.requests[-1]
    assert sent["path"] == f"{PATH}:streamGenerateContent"
    assert queries == ["alt=sse"]
    assert sent["headers"]["x-goog-api-key"] == "test-key"
    assert "Authorization" not in sent["headers"]
    assert sent["body"] == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "What is in these?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                    {
                        "fileData": {
                            "mimeType": "image/webp",
                            "fileUri": "https://example.com/cat.webp",
                        }
                    },
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Let me look."},
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "c2ln",
                    },
                    {"functionCall": {"name": "now", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "now", "response": {"content": "10:00"}}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather now",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                        },
                    },
                    {"name": "now"},  # an OBJECT with no properties is a 400 at Gemini
                ]
            }
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
        },
        "generationConfig": {
            "temperature": 0.5,
            "topP": 0.9,
            "maxOutputTokens": 100,
            "stopSequences": ["END"],
            "seed": 7,
            "candidateCount": 1,
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "object",
                "properties": {"answer": {"type": "string", "nullable": True}},
            },
            "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": True},
        },
    }


async def test_non_streamed_request_uses_generate_content(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    queries: list[str] = []
    upstream.handler = recording(
        replay(fixture("gemini/answer.json"), content_type="application/json"), queries
    )
    answer = await read_whole(client, max_tokens=5)
    assert answer.text == TEXT
    sent = upstream.requests[-1]
    assert sent["path"] == f"{PATH}:generateContent"
    assert queries == [""]
    assert sent["body"] == {
        "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
        "generationConfig": {"maxOutputTokens": 5},
    }


@pytest.mark.parametrize(
    ("tool_choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "f"}},
            {"mode": "ANY", "allowedFunctionNames": ["f"]},
        ),
    ],
)
async def test_tool_choice_maps_to_function_calling_config(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, tool_choice: Any, config: Any
) -> None:
    upstream.handler = replay(fixture("gemini/answer.json"), content_type="application/json")
    tools: Any = [{"type": "function", "function": {"name": "f"}}]
    await read_whole(client, tools=tools, tool_choice=tool_choice)
    assert upstream.last_body["toolConfig"] == {"functionCallingConfig": config}


@pytest.mark.parametrize(
    ("effort", "thinking"),
    [
        ("none", {"thinkingBudget": 0}),
        ("minimal", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("high", {"thinkingBudget": 24576, "includeThoughts": True}),
    ],
)
async def test_reasoning_effort_maps_to_thinking_config(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, effort: Any, thinking: Any
) -> None:
    upstream.handler = replay(fixture("gemini/answer.json"), content_type="application/json")
    await read_whole(client, reasoning_effort=effort)
    assert upstream.last_body["generationConfig"] == {"thinkingConfig": thinking}


def test_schema_is_cut_to_the_openapi_subset_gemini_takes() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}}},
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "where": {"$ref": "#/$defs/Point", "description": "a point"},
            "kind": {"const": "pin"},
            "tags": {"type": "array", "items": {"type": ["string", "integer"]}},
            "note": {"anyOf": [{"type": "string", "maxLength": 9}, {"type": "null"}]},
            "shape": {"oneOf": [{"type": "string"}, {"type": "number"}]},
        },
    }
    assert gemini_schema(schema, "p") == {
        "type": "object",
        "properties": {
            "where": {
                "type": "object",
                "properties": {"x": {"type": "number"}},
                "description": "a point",
            },
            "kind": {"enum": ["pin"]},
            "tags": {
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            },
            "note": {"nullable": True, "type": "string", "maxLength": 9},
            "shape": {"anyOf": [{"type": "string"}, {"type": "number"}]},
        },
    }


def test_a_recursive_schema_is_a_400_not_a_hang() -> None:
    schema = {"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}}}
    with pytest.raises(BadRequest) as caught:
        gemini_schema({**schema, "$ref": "#/$defs/N"}, "tools[0].function.parameters")
    assert caught.value.param == "tools[0].function.parameters"


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {"messages": [{"role": "tool", "tool_call_id": "call_x", "content": "1"}]},
            "messages[0].tool_call_id",
        ),
    ],
)
async def test_what_gemini_cannot_take_is_a_400_naming_the_param(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, request_fields: Any, param: str
) -> None:
    await refused(
        client, upstream, param, model=MODEL, messages=MESSAGES, extra_body=request_fields
    )


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_error_keeps_status_message_and_rpc_status(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, stream: bool
) -> None:
    upstream.handler = replay(
        fixture("gemini/error_429.json"), status=429, content_type="application/json"
    )
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=stream)
    assert caught.value.status_code == 429
    assert caught.value.body["message"].startswith("You exceeded your current quota")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == caught.value.body["code"] == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize(
    ("status", "rpc"),
    [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
    ],
)
def test_error_statuses_are_relayed_with_the_rpc_status(status: int, rpc: str) -> None:
    body = {"error": {"code": status, "message": f"it failed: {rpc}", "status": rpc}}
    error = gemini_error(status, orjson.dumps(body), "gemini")
    assert (error.status, error.message, error.type, error.code) == (
        status,
        f"it failed: {rpc}",
        rpc,
        rpc,
    )


@pytest.mark.parametrize(
    ("rpc", "status"), [("RESOURCE_EXHAUSTED", 429), ("INTERNAL", 500), ("UNAVAILABLE", 503)]
)
def test_an_error_inside_an_answer_takes_its_status_from_the_rpc_status(
    rpc: str, status: int
) -> None:
    provider = GeminiProvider("gemini", GeminiProviderConfig(base_url="http://x", api_key="k"))
    event = {"error": {"code": status, "message": "no", "status": rpc}}
    with pytest.raises(UpstreamError) as caught:
        provider.translate_response(Operation.CHAT, "m", orjson.dumps(event))
    assert (caught.value.status, caught.value.code, caught.value.message) == (status, rpc, "no")


def test_an_error_body_that_is_not_googles_keeps_its_text() -> None:
    error = gemini_error(502, b"<html>Bad Gateway</html>", "gemini")
    assert (error.status, error.message, error.type) == (
        502,
        "<html>Bad Gateway</html>",
        "upstream_error",
    )


@pytest.mark.parametrize("seed", SEEDS)
async def test_midstream_error_raises_api_error(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = replay(fixture("gemini/midstream_error.sse"), seed=seed)
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text = ""
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "Bonjour! H"
    assert caught.value.message == "The model is overloaded. Please try again later."
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "UNAVAILABLE"


@pytest.mark.parametrize(
    ("cut", "says"),
    [(30, "in the middle of an event"), (0, "before it finished (no finishReason)")],
)
async def test_a_stream_cut_before_its_finish_ends_with_an_error_event(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, cut: int, says: str
) -> None:
    raw = fixture("gemini/text_stream.sse")
    upstream.handler = replay(raw[: raw.rindex(b"data: ") + cut], seed=3)
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text = ""
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "Bonjour! Héllo, 世界"
    assert says in caught.value.message
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "upstream_protocol_error"


# --- the translator alone, bytes in and bytes out ------------------------------------------


def test_nothing_after_the_finish_is_sent() -> None:
    translator = GeminiStream("gemini", ChatStreamWriter("m"))
    raw = fixture("gemini/text_stream.sse")
    out = translator.feed(raw + raw)
    assert translator.finished
    assert out.count(b"[DONE]") == 1
    assert translator.end() == b""


def test_a_whole_answer_without_finish_reason_still_ends_with_its_usage() -> None:
    provider = GeminiProvider("gemini", GeminiProviderConfig(base_url="http://x", api_key="k"))
    body = {
        "candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
    }
    answer = orjson.loads(provider.translate_response(Operation.CHAT, "m", orjson.dumps(body)))
    assert answer["choices"][0]["message"]["content"] == "Hi"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
