"""Gemini's generateContent over any other provider: the request as chat, chat back as Gemini.

Every response the bridge writes validates as the google-genai SDK's own
`GenerateContentResponse`, in both framings (`?alt=sse` and the JSON array stream).
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from google.genai import types
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.anthropic.to_chat import MessagesStream
from formats.chat.from_chat import ChatStreamWriter
from formats.chat.request import decode_chat_request
from formats.gemini.error_shape import gemini_error_body
from formats.gemini.from_chat import GeminiFromChat, gemini_response_from_chat
from formats.gemini.request import gemini_to_chat
from tests.chat_answers import (
    ANSWERS,
    MODEL,
    SIGNATURE,
    TRANSLATING,
    ChatAnswer,
    chat_translator,
    run,
    split,
)
from tests.replay import fixture
from wire.errors import (
    BadRequest,
    GatewayError,
    NotFound,
    Unauthorized,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from wire.operations import Operation


def _raw(body: dict[str, Any]) -> dict[str, msgspec.Raw]:
    return {key: msgspec.Raw(orjson.dumps(value)) for key, value in body.items()}


def _chat(body: dict[str, Any], stream: bool = False) -> dict[str, Any]:
    translated = gemini_to_chat(_raw(body), "openai/gpt-4o", stream)
    decode_chat_request(translated)  # what every translating provider reads: it must fit
    return {key: msgspec.json.decode(value) for key, value in translated.items()}


def _user(text: str = "Hi") -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


# --- the request ---------------------------------------------------------------------------


def _sdk_request() -> dict[str, Any]:
    """A request as google-genai sends it: system instruction, media, thoughts with their
    signature, a function call and its response, tools, and every generation setting."""
    return {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Be kind."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "What is this?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
                    {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                    {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0x"}},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/a.jpg"}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Looking at it.", "thought": True},
                    {"text": "Let me look it up."},
                    {
                        "functionCall": {"name": "lookup", "args": {"q": "cat"}},
                        "thoughtSignature": SIGNATURE,
                    },
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "lookup", "response": {"output": "a cat"}}},
                    {"text": "Thanks."},
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "lookup",
                        "description": "Search",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"q": {"type": "STRING"}},
                            "required": ["q"],
                        },
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.8,
            "topK": 40,
            "maxOutputTokens": 512,
            "stopSequences": ["END"],
            "candidateCount": 1,
            "seed": 7,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.2,
            "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": True},
        },
    }


def test_request_becomes_the_equivalent_chat_request() -> None:
    body = _sdk_request()
    assert _chat(body, stream=True) == {
        "model": "openai/gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief.\nBe kind."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {
                        "type": "file",
                        "file": {
                            "filename": "file.pdf",
                            "file_data": "data:application/pdf;base64,JVBERi0x",
                        },
                    },
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me look it up.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q":"cat"}'},
                    }
                ],
                "reasoning": "Looking at it.",
                "reasoning_signature": SIGNATURE,
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"output":"a cat"}'},
            {"role": "user", "content": "Thanks."},
        ],
        "stream": True,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "parameters": {
                        "type": "object",
                        "properties": {"q": {"type": "string"}},
                        "required": ["q"],
                    },
                    "description": "Search",
                },
            }
        ],
        "tool_choice": "auto",
        "temperature": 0.3,
        "top_p": 0.8,
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "max_tokens": 512,
        "stop": ["END"],
        "reasoning_effort": "medium",
    }


@pytest.mark.parametrize("provider", TRANSLATING, ids=lambda provider: provider.name)
def test_translated_request_is_taken_by_translating_providers(provider: Any) -> None:
    """(Audio, PDF and penalties go to Gemini only: the others refuse them with a 400.)"""
    body = _sdk_request()
    if provider.name != "gemini":
        body["contents"][0]["parts"] = body["contents"][0]["parts"][:2]
        for penalty in ("presencePenalty", "frequencyPenalty"):
            del body["generationConfig"][penalty]
    body["generationConfig"]["maxOutputTokens"] = 16000
    chat = gemini_to_chat(_raw(body), "model", True)
    assert provider.build_request(Operation.CHAT, "model", chat, True).body


def test_a_stand_in_for_no_signature_goes_nowhere() -> None:
    # Gemini CLI signs a call that came without a signature with Google's stand-in.
    call = {"functionCall": {"name": "f", "args": {}, "id": "c1"}}
    contents = [
        _user(),
        {
            "role": "model",
            "parts": [{**call, "thoughtSignature": "skip_thought_signature_validator"}],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "f", "id": "c1", "response": {}}}],
        },
    ]
    (assistant,) = [
        m for m in _chat({"contents": contents})["messages"] if m["role"] == "assistant"
    ]
    assert "reasoning_signature" not in assistant and assistant["tool_calls"][0]["id"] == "c1"


def test_function_responses_answer_their_calls_in_order() -> None:
    """Parallel calls of one function without ids: each response takes the next call's id;
    an id the client gave is used as it is."""
    calls = [
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}},
        {"functionCall": {"id": "given-1", "name": "time", "args": {}}},
    ]
    responses = [
        {"functionResponse": {"id": "given-1", "name": "time", "response": {"t": "noon"}}},
        {"functionResponse": {"name": "weather", "response": {"t": 20}}},
        {"functionResponse": {"name": "weather", "response": {"t": 5}}},
    ]
    contents = [_user(), {"role": "model", "parts": calls}, {"role": "user", "parts": responses}]
    messages = _chat({"contents": contents})["messages"]
    assert [call["id"] for call in messages[1]["tool_calls"]] == ["call_1", "call_2", "given-1"]
    assert [(m["tool_call_id"], m["content"]) for m in messages[2:]] == [
        ("given-1", '{"t":"noon"}'),
        ("call_1", '{"t":20}'),
        ("call_2", '{"t":5}'),
    ]


def test_gemini_schema_becomes_json_schema() -> None:
    parameters = {
        "type": "OBJECT",
        "properties": {
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "minItems": "1"},
            "note": {"type": "STRING", "nullable": True, "maxLength": 20},
            "kind": {"type": "STRING", "enum": ["a", "b"], "format": "enum"},
            "either": {"anyOf": [{"type": "INTEGER"}, {"type": "BOOLEAN"}]},
        },
        "propertyOrdering": ["tags", "note"],
        "required": ["tags"],
    }
    tools = [{"functionDeclarations": [{"name": "f", "parameters": parameters}]}]
    assert _chat({"contents": [_user()], "tools": tools})["tools"][0]["function"]["parameters"] == {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "note": {"type": ["string", "null"], "maxLength": 20},
            "kind": {"type": "string", "enum": ["a", "b"], "format": "enum"},
            "either": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
        },
        "required": ["tags"],
    }


def test_parameters_json_schema_goes_as_it_is_and_no_parameters_is_an_empty_object() -> None:
    schema = {
        "type": "object",
        "properties": {"x": {"type": "number"}},
        "additionalProperties": False,
    }
    declarations = [
        {"name": "f", "parametersJsonSchema": schema},
        {"name": "g"},
    ]
    tools = _chat({"contents": [_user()], "tools": [{"functionDeclarations": declarations}]})[
        "tools"
    ]
    assert [tool["function"]["parameters"] for tool in tools] == [
        schema,
        {"type": "object", "properties": {}},
    ]


# Gemini CLI's routing call, as captured: JSON schema with Gemini's upper-case type names.
CLI_ROUTING_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "complexity_reasoning": {
            "type": "STRING",
            "description": "Brief explanation for the score.",
        },
        "complexity_score": {"type": "INTEGER", "description": "Complexity score from 1-100."},
    },
    "required": ["complexity_reasoning", "complexity_score"],
}


def test_gemini_type_names_in_a_json_schema_are_lower_cased_at_every_depth() -> None:
    # A property may be called "type"; enum values and defaults are data, never renamed.
    schema = {
        "type": "OBJECT",
        "properties": {
            "type": {"type": "STRING", "enum": ["OBJECT", "STRING"], "default": "STRING"},
            "tags": {"type": "ARRAY", "items": {"type": "String"}},
            "when": {"anyOf": [{"type": "NUMBER"}, {"type": "NULL"}]},
            "extra": {"type": ["OBJECT", "NULL"], "additionalProperties": {"type": "BOOLEAN"}},
            "item": {"$ref": "#/$defs/Item"},
        },
        "$defs": {"Item": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}},
    }
    declarations = [{"name": "f", "parametersJsonSchema": schema}]
    config = {"responseMimeType": "application/json", "responseJsonSchema": CLI_ROUTING_SCHEMA}
    chat = _chat(
        {
            "contents": [_user()],
            "tools": [{"functionDeclarations": declarations}],
            "generationConfig": config,
        }
    )
    assert chat["tools"][0]["function"]["parameters"] == {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["OBJECT", "STRING"], "default": "STRING"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "when": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "extra": {"type": ["object", "null"], "additionalProperties": {"type": "boolean"}},
            "item": {"$ref": "#/$defs/Item"},
        },
        "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
    schema = chat["response_format"]["json_schema"]["schema"]
    assert schema["type"] == "object"
    assert {p["type"] for p in schema["properties"].values()} == {"string", "integer"}
    assert schema["required"] == CLI_ROUTING_SCHEMA["required"]


@pytest.mark.parametrize(
    ("config", "choice", "names"),
    [
        ({"mode": "AUTO"}, "auto", ["f", "g", "h"]),
        ({"mode": "VALIDATED"}, "auto", ["f", "g", "h"]),
        ({"mode": "NONE"}, "none", ["f", "g", "h"]),
        ({"mode": "ANY"}, "required", ["f", "g", "h"]),
        (
            {"mode": "ANY", "allowedFunctionNames": ["g"]},
            {"type": "function", "function": {"name": "g"}},
            ["f", "g", "h"],
        ),
        ({"mode": "ANY", "allowedFunctionNames": ["f", "h"]}, "required", ["f", "h"]),
    ],
)
def test_function_calling_config_becomes_tool_choice(
    config: dict[str, Any], choice: Any, names: list[str]
) -> None:
    body = {
        "contents": [_user()],
        "tools": [{"functionDeclarations": [{"name": "f"}, {"name": "g"}, {"name": "h"}]}],
        "toolConfig": {"functionCallingConfig": config},
    }
    chat = _chat(body)
    assert chat["tool_choice"] == choice
    assert [tool["function"]["name"] for tool in chat["tools"]] == names


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"responseMimeType": "application/json"}, {"type": "json_object"}),
        (
            {
                "responseMimeType": "application/json",
                "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}},
            },
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "response",
                    "schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
                },
            },
        ),
        (
            {"responseMimeType": "application/json", "responseJsonSchema": {"type": "array"}},
            {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": {"type": "array"}},
            },
        ),
        ({"responseMimeType": "text/plain"}, None),
    ],
)
def test_json_output_becomes_a_response_format(config: dict[str, Any], expected: Any) -> None:
    chat = _chat({"contents": [_user()], "generationConfig": config})
    assert chat.get("response_format") == expected


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"thinkingBudget": 0}, None),
        ({"thinkingBudget": -1}, None),
        ({"thinkingBudget": 1024}, "low"),
        ({"thinkingBudget": 8192}, "medium"),
        ({"thinkingBudget": 24576}, "high"),
        # Gemini CLI's, on every call: asked for thinking.
        ({"thinkingLevel": "HIGH", "includeThoughts": True}, "high"),
        ({"thinkingLevel": "low"}, "low"),
        # Google's "no thinking for most queries" and the unset level ask for none.
        ({"thinkingLevel": "MINIMAL"}, None),
        ({"thinkingLevel": "THINKING_LEVEL_UNSPECIFIED"}, None),
        ({"includeThoughts": True}, None),
    ],
)
def test_thinking_config_becomes_a_reasoning_effort(
    thinking: dict[str, Any], effort: str | None
) -> None:
    chat = _chat({"contents": [_user()], "generationConfig": {"thinkingConfig": thinking}})
    assert chat.get("reasoning_effort") == effort


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"contents": [_user()], "tools": [{"googleSearch": {}}]}, "tools[0].googleSearch"),
        ({"contents": [_user()], "cachedContent": "cachedContents/x"}, "cachedContent"),
        (
            {"contents": [_user()], "generationConfig": {"candidateCount": 2}},
            "generationConfig.candidateCount",
        ),
        (
            {"contents": [_user()], "generationConfig": {"responseModalities": ["AUDIO"]}},
            "generationConfig.responseModalities",
        ),
        (
            {"contents": [_user()], "generationConfig": {"responseMimeType": "text/x.enum"}},
            "generationConfig.responseMimeType",
        ),
        (
            {"contents": [_user()], "generationConfig": {"speechConfig": {}}},
            "generationConfig.speechConfig",
        ),
        (
            {
                "contents": [_user()],
                "generationConfig": {"thinkingConfig": {"thinkingLevel": "LOTS"}},
            },
            "generationConfig.thinkingConfig.thinkingLevel",
        ),
        (
            {"contents": [{"role": "model", "parts": [{"executableCode": {"code": "1"}}]}]},
            "contents[0].parts[0]",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}
                ]
            },
            "contents[0].parts[0].functionResponse.name",
        ),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "contents[0].role"),
        (
            {
                "contents": [
                    {
                        "role": "user",
                        "parts": [
                            {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://b/f"}}
                        ],
                    }
                ]
            },
            "contents[0].parts[0].fileData",
        ),
        ({"contents": [{"role": "user", "parts": [{"text": 3}]}]}, "contents[0].parts[0].text"),
        ({"systemInstruction": {"parts": []}}, "contents"),
    ],
)
def test_what_chat_cannot_carry_is_a_400_naming_the_parameter(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        gemini_to_chat(_raw(body), "m", False)
    assert caught.value.param == param


# --- the stream ----------------------------------------------------------------------------


def _responses(data: bytes, sse: bool) -> list[dict[str, Any]]:
    """The responses a stream holds, its framing checked byte for byte on the way: SSE data
    events ended by CRLF CRLF, or `[`, the objects joined by `,\r\n`, and `]`."""
    if sse:
        *events, rest = data.split(b"\r\n\r\n")
        assert rest == b""
        assert all(e.startswith(b"data: {") and b"\n" not in e for e in events)
        elements = [event.removeprefix(b"data: ") for event in events]
    else:
        assert data.startswith(b"[") and data.endswith(b"]")
        elements = data[1:-1].split(b",\r\n")
    payloads = [orjson.loads(element) for element in elements]
    for payload in payloads:
        if "error" not in payload:  # the SDK's own type for each response
            types.GenerateContentResponse.model_validate(payload)
    return payloads


def _summary(responses: list[dict[str, Any]]) -> dict[str, Any]:
    """What a client makes of the responses: texts, thoughts, calls, the end and its usage."""
    parts = [
        part for response in responses for part in response["candidates"][0]["content"]["parts"]
    ]
    last = responses[-1]
    return {
        "text": "".join(p.get("text", "") for p in parts if not p.get("thought")),
        "thoughts": "".join(p["text"] for p in parts if p.get("thought")),
        "signatures": [p["thoughtSignature"] for p in parts if "thoughtSignature" in p],
        "calls": [p["functionCall"] for p in parts if "functionCall" in p],
        "finish": last["candidates"][0]["finishReason"],
        "usage": last.get("usageMetadata"),
        "model": {response["modelVersion"] for response in responses},
        "ids": len({response["responseId"] for response in responses}),
    }


@pytest.mark.parametrize("sse", [True, False], ids=["sse", "array"])
@pytest.mark.parametrize("name", list(ANSWERS))
def test_stream_and_whole_answer_agree(name: str, sse: bool) -> None:
    answer = ANSWERS[name]
    bridge = chat_translator(GeminiFromChat("openai/requested", sse))
    streamed = _summary(_responses(run(bridge, [answer.stream()]), sse))
    whole = orjson.loads(gemini_response_from_chat(answer.completion()))
    types.GenerateContentResponse.model_validate(whole)
    assert streamed == _summary([whole])
    assert streamed["text"] == "".join(answer.text)
    assert [call["args"] for call in streamed["calls"]] == answer.arguments
    assert streamed["model"] == {MODEL}
    assert bridge.finished and bridge.failure is None and bridge.usage == answer.usage


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(list(ANSWERS)),
    sse=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=40),
)
def test_any_split_of_the_chat_stream_gives_the_same_responses(
    name: str, sse: bool, cuts: list[int]
) -> None:
    stream = ANSWERS[name].stream()
    whole = _responses(run(chat_translator(GeminiFromChat("m", sse)), [stream]), sse)
    pieces = _responses(run(chat_translator(GeminiFromChat("m", sse)), split(stream, cuts)), sse)
    for response in (*whole, *pieces):
        response["responseId"] = "x"
    assert pieces == whole


def test_usage_metadata_counts_thoughts_apart() -> None:
    out = run(chat_translator(GeminiFromChat("m", True)), [ANSWERS["thinking"].stream()])
    assert _responses(out, True)[-1]["usageMetadata"] == {
        "promptTokenCount": 30,
        "candidatesTokenCount": 8,
        "totalTokenCount": 50,
        "thoughtsTokenCount": 12,
        "cachedContentTokenCount": 10,
    }


@pytest.mark.parametrize(
    ("name", "finish"),
    [("text", "STOP"), ("tools", "STOP"), ("length", "MAX_TOKENS"), ("filtered", "SAFETY")],
)
def test_finish_reason_becomes_gemini_s(name: str, finish: str) -> None:
    out = run(chat_translator(GeminiFromChat("m", True)), [ANSWERS[name].stream()])
    assert _responses(out, True)[-1]["candidates"][0]["finishReason"] == finish


def test_function_calls_go_out_whole_with_the_signature_on_the_first() -> None:
    answer = ChatAnswer(
        reasoning=["Two lookups."],
        signature=SIGNATURE,
        calls=[("call_1", "f", ['{"a"', ": 1}"]), ("call_2", "g", ['{"b": 2}'])],
        finish="tool_calls",
    )
    responses = _responses(
        run(chat_translator(GeminiFromChat("m", False)), [answer.stream()]), False
    )
    assert responses[-1]["candidates"][0]["content"]["parts"] == [
        {
            "functionCall": {"id": "call_1", "name": "f", "args": {"a": 1}},
            "thoughtSignature": SIGNATURE,
        },
        {"functionCall": {"id": "call_2", "name": "g", "args": {"b": 2}}},
    ]
    whole = orjson.loads(gemini_response_from_chat(answer.completion()))
    assert (
        whole["candidates"][0]["content"]["parts"][1:]
        == responses[-1]["candidates"][0]["content"]["parts"]
    )


def test_arguments_that_are_not_an_object_are_a_malformed_function_call() -> None:
    answer = ChatAnswer(calls=[("call_1", "f", ['{"a": '])], finish="tool_calls")
    for sse in (True, False):
        out = run(chat_translator(GeminiFromChat("m", sse)), [answer.stream()])
        assert _summary(_responses(out, sse))["finish"] == "MALFORMED_FUNCTION_CALL"
        assert _summary(_responses(out, sse))["calls"] == []
    whole = orjson.loads(gemini_response_from_chat(answer.completion()))
    assert whole["candidates"][0]["finishReason"] == "MALFORMED_FUNCTION_CALL"


def test_anthropic_tool_use_through_chat_becomes_function_calls() -> None:
    out = run(
        MessagesStream("claude", "m", GeminiFromChat("m", True)),
        [fixture("anthropic/tool_use_stream.sse")],
    )
    summary = _summary(_responses(out, True))
    assert summary["calls"] == [
        {
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "args": {"location": "San Francisco, CA", "unit": "fahrenheit"},
        }
    ]


@pytest.mark.parametrize("sse", [True, False], ids=["sse", "array"])
def test_upstream_error_event_becomes_gemini_s_error_object(sse: bool) -> None:
    writer = ChatStreamWriter(MODEL)
    stream = writer.content("Hel") + writer.error(UpstreamError("Slow down", status=429))
    bridge = chat_translator(GeminiFromChat("m", sse))
    responses = _responses(run(bridge, [stream]), sse)
    assert responses[-1]["error"]["message"] == "Slow down"
    assert set(responses[-1]["error"]) == {"code", "message", "status"}
    assert bridge.finished and bridge.failure is not None


@pytest.mark.parametrize("sse", [True, False], ids=["sse", "array"])
def test_relay_failure_becomes_an_error_object(sse: bool) -> None:
    bridge = chat_translator(GeminiFromChat("m", sse))
    head = bridge.feed(ChatStreamWriter(MODEL).content("Hi"))
    responses = _responses(head + bridge.error_event(UpstreamTimeout("No answer.")), sse)
    assert responses[-1] == {
        "error": {"code": 504, "message": "No answer.", "status": "DEADLINE_EXCEEDED"}
    }
    assert isinstance(bridge.failure, UpstreamTimeout)


def test_an_error_before_any_response_is_still_a_whole_array() -> None:
    bridge = chat_translator(GeminiFromChat("m", False))
    out = bridge.error_event(UpstreamUnreachable("down"))
    assert orjson.loads(out) == [
        {"error": {"code": 502, "message": "down", "status": "UNAVAILABLE"}}
    ]


def test_keepalive_comments_pass_in_sse_only() -> None:
    assert chat_translator(GeminiFromChat("m", True)).feed(b": keepalive\n\n") == b": keepalive\n\n"
    assert chat_translator(GeminiFromChat("m", False)).feed(b": keepalive\n\n") == b""


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (BadRequest("bad"), 400, "INVALID_ARGUMENT"),
        (Unauthorized("who"), 401, "UNAUTHENTICATED"),
        (UpstreamError("no", status=403), 403, "PERMISSION_DENIED"),
        (NotFound("where"), 404, "NOT_FOUND"),
        (UpstreamError("quota", status=429, type="RESOURCE_EXHAUSTED"), 429, "RESOURCE_EXHAUSTED"),
        (UpstreamError("slow", status=429), 429, "RESOURCE_EXHAUSTED"),
        (UpstreamError("odd", status=400, type="FAILED_PRECONDITION"), 400, "FAILED_PRECONDITION"),
        (GatewayError("oops"), 500, "INTERNAL"),
        (UpstreamUnreachable("down"), 502, "UNAVAILABLE"),
        (UpstreamError("busy", status=503, type="overloaded_error"), 503, "UNAVAILABLE"),
        (UpstreamTimeout("late"), 504, "DEADLINE_EXCEEDED"),
        (UpstreamError("teapot", status=418), 418, "INVALID_ARGUMENT"),
    ],
)
def test_every_gateway_error_has_gemini_s_shape(
    error: GatewayError, code: int, status: str
) -> None:
    assert orjson.loads(gemini_error_body(error)) == {
        "error": {"code": code, "message": error.message, "status": status}
    }


def test_the_url_s_model_and_method_name_the_chat_request() -> None:
    body = {"contents": [_user()], "model": "models/ignored"}
    assert _chat(body) == {
        "model": "openai/gpt-4o",
        "messages": [{"role": "user", "content": "Hi"}],
    }
    assert _chat(body, stream=True)["stream"] is True
