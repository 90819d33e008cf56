"""Gemini requests in either proto-JSON spelling: snake_case, camelCase or both mixed give the
same upstream request, to a translated provider and to a Gemini one; the client's own data
(function arguments and results, schema property names) keeps its keys."""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec
import orjson
import pytest

from formats.gemini.fields import GENERATE_CONTENT_REQUEST, camel_case, json_name
from tests.conftest import FakeUpstream, GatewayFactory
from tests.streams import answering, chat_completion
from wire.errors import BadRequest

# Every kind of field at every depth, in camelCase (as the REST docs write it) ...
CAMEL: dict[str, Any] = {
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "contents": [
        {
            "role": "user",
            "parts": [
                {"text": "Weather in Oslo?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Let me look.", "thought": True},
                {
                    "functionCall": {
                        "name": "get_weather",
                        "args": {"city_name": "Oslo", "unit_system": "metric"},
                    },
                    "thoughtSignature": "c2lnbmF0dXJl",
                },
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"temp_c": 21, "wind_speed": {"max_kmh": 9}},
                    }
                }
            ],
        },
    ],
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "parametersJsonSchema": {
                        "type": "OBJECT",
                        "properties": {
                            "city_name": {"type": "STRING"},
                            "unit_system": {"type": "string", "enum": ["metric", "imperial"]},
                        },
                        "required": ["city_name"],
                        "additionalProperties": False,
                    },
                },
                {
                    "name": "get_time",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"time_zone": {"type": "STRING", "maxLength": 64}},
                        "propertyOrdering": ["time_zone"],
                        "required": ["time_zone"],
                    },
                },
            ]
        }
    ],
    "toolConfig": {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    },
    "generationConfig": {
        "maxOutputTokens": 100,
        "stopSequences": ["END"],
        "topP": 0.5,
        "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
    },
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
}

# ... the same request in snake_case, every field renamed, every piece of data as it was ...
SNAKE: dict[str, Any] = {
    "system_instruction": {"parts": [{"text": "Be brief."}]},
    "contents": [
        {
            "role": "user",
            "parts": [
                {"text": "Weather in Oslo?"},
                {"inline_data": {"mime_type": "image/png", "data": "iVBORw0KGgo="}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Let me look.", "thought": True},
                {
                    "function_call": {
                        "name": "get_weather",
                        "args": {"city_name": "Oslo", "unit_system": "metric"},
                    },
                    "thought_signature": "c2lnbmF0dXJl",
                },
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "function_response": {
                        "name": "get_weather",
                        "response": {"temp_c": 21, "wind_speed": {"max_kmh": 9}},
                    }
                }
            ],
        },
    ],
    "tools": [
        {
            "function_declarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "parameters_json_schema": {
                        "type": "OBJECT",
                        "properties": {
                            "city_name": {"type": "STRING"},
                            "unit_system": {"type": "string", "enum": ["metric", "imperial"]},
                        },
                        "required": ["city_name"],
                        "additionalProperties": False,
                    },
                },
                {
                    "name": "get_time",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"time_zone": {"type": "STRING", "max_length": 64}},
                        "property_ordering": ["time_zone"],
                        "required": ["time_zone"],
                    },
                },
            ]
        }
    ],
    "tool_config": {
        "function_calling_config": {"mode": "ANY", "allowed_function_names": ["get_weather"]}
    },
    "generation_config": {
        "max_output_tokens": 100,
        "stop_sequences": ["END"],
        "top_p": 0.5,
        "thinking_config": {"thinking_budget": 2048, "include_thoughts": True},
    },
    "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
}

# ... and mixed as google-genai 3.x mixes them: its converters rename the fields they know,
# the objects below them (a declaration, the thinking config) go as pydantic dumps them.
MIXED: dict[str, Any] = {
    **CAMEL,
    "tools": SNAKE["tools"],
    "generationConfig": {
        **CAMEL["generationConfig"],
        "thinkingConfig": SNAKE["generation_config"]["thinking_config"],
    },
}

GEMINI_ANSWER = {
    "candidates": [
        {"content": {"role": "model", "parts": [{"text": "Sunny."}]}, "finishReason": "STOP"}
    ],
    "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 11},
}


def _toml(upstream: FakeUpstream) -> str:
    base = upstream.url.removesuffix("/v1")
    return (
        f'[providers.compat]\ntype = "openai"\nbase_url = "{base}/v1"\napi_key = "sk-up"\n'
        f'[providers.google]\ntype = "gemini"\nbase_url = "{base}/v1beta"\napi_key = "g-up"\n'
    )


async def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        return response.status, await response.json(content_type=None)


@pytest.mark.parametrize("model", ["compat/gpt-4o", "google/gemini-2.5-flash"])
async def test_every_spelling_gives_the_same_upstream_request(
    upstream: FakeUpstream, start_gateway: GatewayFactory, model: str
) -> None:
    gateway = await start_gateway(_toml(upstream))
    translated = model.startswith("compat/")
    upstream.handler = answering(chat_completion("Sunny.") if translated else GEMINI_ANSWER)
    sent = []
    for body in (CAMEL, SNAKE, MIXED):
        status, answer = await _post(f"{gateway}/v1beta/models/{model}:generateContent", body)
        assert status == 200, answer
        assert answer["candidates"][0]["content"]["parts"][0]["text"] == "Sunny."
        sent.append(upstream.last_body)
    assert sent[0] == sent[1] == sent[2]
    if not translated:  # to Gemini: the request as the camelCase client sent it
        assert sent[0] == CAMEL
        return
    chat = sent[0]
    weather, time = (tool["function"] for tool in chat["tools"])
    assert weather["parameters"]["properties"] == {
        "city_name": {"type": "string"},
        "unit_system": {"type": "string", "enum": ["metric", "imperial"]},
    }
    assert time["parameters"]["properties"] == {"time_zone": {"type": "string", "maxLength": 64}}
    call = chat["messages"][2]["tool_calls"][0]
    assert orjson.loads(call["function"]["arguments"]) == {
        "city_name": "Oslo",
        "unit_system": "metric",
    }
    assert orjson.loads(chat["messages"][3]["content"]) == {
        "temp_c": 21,
        "wind_speed": {"max_kmh": 9},
    }
    assert chat["messages"][2]["reasoning_signature"] == "c2lnbmF0dXJl"
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (chat["max_tokens"], chat["stop"], chat["top_p"]) == (100, ["END"], 0.5)
    assert chat["reasoning_effort"] == "low"


async def test_a_field_in_both_spellings_is_a_400_naming_it(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    gateway = await start_gateway(_toml(upstream))
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "generationConfig": {"maxOutputTokens": 5, "max_output_tokens": 6},
    }
    for model in ("compat/gpt-4o", "google/gemini-2.5-flash"):
        status, answer = await _post(f"{gateway}/v1beta/models/{model}:generateContent", body)
        assert status == 400
        assert answer["error"]["status"] == "INVALID_ARGUMENT"
        message = answer["error"]["message"]
        assert "generationConfig.maxOutputTokens" in message and "max_output_tokens" in message
    assert upstream.requests == []


def _raw(body: dict[str, Any]) -> dict[str, msgspec.Raw]:
    return {key: msgspec.Raw(orjson.dumps(value)) for key, value in body.items()}


def _decoded(body: dict[str, msgspec.Raw]) -> dict[str, Any]:
    return {key: orjson.loads(bytes(value)) for key, value in body.items()}


def test_snake_case_fields_become_camel_case_and_data_keeps_its_keys() -> None:
    assert _decoded(camel_case(_raw(SNAKE), GENERATE_CONTENT_REQUEST)) == CAMEL
    assert _decoded(camel_case(_raw(MIXED), GENERATE_CONTENT_REQUEST)) == CAMEL


def test_a_value_with_no_snake_case_key_is_passed_on_as_it_came() -> None:
    body = _raw({**CAMEL, "contents": [{"role": "user", "parts": [{"text": "a_b: c"}]}]})
    renamed = camel_case(body, GENERATE_CONTENT_REQUEST)
    assert renamed["contents"] is body["contents"]  # not decoded, not re-encoded
    # Data keys that look like snake_case cost a decode; nothing renamed, the bytes go on.
    body = _raw(CAMEL)
    renamed = camel_case(body, GENERATE_CONTENT_REQUEST)
    assert all(renamed[key] is body[key] for key in body)


def test_an_unknown_field_is_renamed_and_its_value_kept() -> None:
    body = {"contents": [], "future_field": {"some_key": 1}, "labels": {"team_name": "x"}}
    renamed = _decoded(camel_case(_raw(body), GENERATE_CONTENT_REQUEST))
    assert renamed == {"contents": [], "futureField": {"some_key": 1}, "labels": {"team_name": "x"}}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("max_output_tokens", "maxOutputTokens"),
        ("maxOutputTokens", "maxOutputTokens"),
        ("top_k", "topK"),
        ("text", "text"),
        ("$ref", "$ref"),
        ("Odd_Name", "Odd_Name"),
    ],
)
def test_json_name_of_a_proto_field(name: str, expected: str) -> None:
    assert json_name(name) == expected


def test_both_spellings_deep_in_a_schema_are_refused() -> None:
    body = {
        "contents": [],
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "f", "parameters": {"type": "STRING", "maxLength": 1, "max_length": 2}}
                ]
            }
        ],
    }
    with pytest.raises(BadRequest) as caught:
        camel_case(_raw(body), GENERATE_CONTENT_REQUEST)
    assert caught.value.param == "tools[0].functionDeclarations[0].parameters.maxLength"
