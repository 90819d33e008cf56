"""Gemini's clients as users run them: google-genai's automatic function calling and litellm's
`gemini/` route through a translated provider, countTokens, model ids in the path as
`@ai-sdk/google` puts them, and Gemini thought signatures through a whole tool loop."""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from aiohttp import web
from google import genai
from google.genai import types as genai_types

from tests.conftest import FakeUpstream, GatewayFactory
from tests.streams import DONE, chat_chunk, chat_completion, data

# litellm fetches its model price list from the network at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm

ANSWER = "It is 21 degrees in Oslo."
SIGNATURE = "Cr0BAXLI2nzSaW9tZS1zaWduYXR1cmU="


def _toml(upstream: FakeUpstream) -> str:
    base = upstream.url.removesuffix("/v1")
    return (
        '[providers.mock]\ntype = "mock"\ndelay = 0\n'
        f'[providers.compat]\ntype = "openai"\nbase_url = "{base}/v1"\napi_key = "sk-up"\n'
        f'[providers.google]\ntype = "gemini"\nbase_url = "{base}/v1beta"\napi_key = "g-up"\n'
    )


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: GatewayFactory) -> str:
    return await start_gateway(_toml(upstream))


def _genai(url: str, api_version: str | None = None) -> genai.Client:
    options = genai_types.HttpOptions(base_url=url, timeout=10_000, api_version=api_version)
    return genai.Client(api_key="unused", http_options=options)


def tool_loop(arguments: dict[str, Any]) -> Any:
    """An OpenAI-compatible upstream that calls the first tool offered with `arguments`, then,
    given the tool's result, answers with it: the loop a model runs with a client's tool."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        last = body["messages"][-1]
        if last["role"] == "tool":
            delta: dict[str, Any] = {
                "role": "assistant",
                "content": f"Tool said: {last['content']}",
            }
            finish = "stop"
        else:
            function = {"name": body["tools"][0]["function"]["name"]}
            call = {"index": 0, "id": "call_7", "type": "function", "function": function}
            call["function"]["arguments"] = orjson.dumps(arguments).decode()
            delta = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        if not body.get("stream"):
            answer = chat_completion("", finish)
            message = {key: value for key, value in delta.items()}
            for call in message.get("tool_calls", []):
                call.pop("index")
            answer["choices"][0]["message"] = message
            return web.json_response(answer)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(data(chat_chunk(delta)) + data(chat_chunk({}, finish)) + DONE)
        return response

    return handler


# --- google-genai: automatic function calling ------------------------------------------------


async def test_genai_automatic_function_calling_through_a_translated_provider(
    upstream: FakeUpstream, gateway: str
) -> None:
    called: list[tuple[str, int]] = []

    def get_weather(city: str, days: int = 1) -> dict[str, Any]:
        """The weather in a city."""
        called.append((city, days))
        return {"city": city, "temp_c": 21}

    upstream.handler = tool_loop({"city": "Oslo", "days": 2})
    chat = _genai(gateway).aio.chats.create(
        model="compat/gpt-4o", config=genai_types.GenerateContentConfig(tools=[get_weather])
    )
    answer = await chat.send_message("Weather in Oslo?")
    assert called == [("Oslo", 2)]
    assert answer.text == 'Tool said: {"result":{"city":"Oslo","temp_c":21}}'
    # The SDK sends the function's schema as `parameters_json_schema`: it reached the upstream.
    first, second = (request["body"] for request in upstream.requests)
    assert first["tools"][0]["function"]["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "default": 1}},
        "required": ["city"],
    }
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool"]
    assert second["messages"][2]["tool_call_id"] == "call_7"


async def test_genai_automatic_function_calling_streamed(
    upstream: FakeUpstream, gateway: str
) -> None:
    called: list[str] = []

    def get_weather(city: str) -> dict[str, Any]:
        """The weather in a city."""
        called.append(city)
        return {"temp_c": 21}

    upstream.handler = tool_loop({"city": "Oslo"})
    chat = _genai(gateway).aio.chats.create(
        model="compat/gpt-4o", config=genai_types.GenerateContentConfig(tools=[get_weather])
    )
    text = "".join(
        [chunk.text or "" async for chunk in await chat.send_message_stream("Weather in Oslo?")]
    )
    assert called == ["Oslo"]
    assert text == 'Tool said: {"result":{"temp_c":21}}'


# --- litellm's gemini/ route -----------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.mark.parametrize("stream", [False, True])
async def test_litellm_gemini_route_with_tools_through_a_translated_provider(
    upstream: FakeUpstream, gateway: str, stream: bool
) -> None:
    upstream.handler = tool_loop({"city": "Oslo"})
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Oslo?"}]
    options = {"api_base": f"{gateway}/v1beta", "api_key": "unused", "tools": [WEATHER_TOOL]}
    model = "gemini/compat/gpt-4o"
    if stream:
        chunks = [
            chunk
            async for chunk in await litellm.acompletion(
                model=model, messages=messages, stream=True, **options
            )
        ]
        message = litellm.stream_chunk_builder(chunks, messages=messages).choices[0].message
    else:
        message = (
            (await litellm.acompletion(model=model, messages=messages, **options))
            .choices[0]
            .message
        )
    # litellm sends `function_declarations`: the upstream got the tool, schema and all.
    assert upstream.last_body["tools"] == [WEATHER_TOOL]
    assert [(c.function.name, orjson.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("get_weather", {"city": "Oslo"})
    ]
    messages += [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "21 degrees"},
    ]
    answer = await litellm.acompletion(model=model, messages=messages, **options)
    # litellm wraps a text result as Gemini wants an object; it goes on as that JSON.
    assert answer.choices[0].message.content == 'Tool said: {"content":"21 degrees"}'


# --- countTokens -------------------------------------------------------------------------------


async def test_count_tokens_passes_through_to_a_gemini_provider(
    upstream: FakeUpstream, gateway: str
) -> None:
    upstream.handler = _answer({"totalTokens": 31, "promptTokensDetails": []})
    result = await _genai(gateway).aio.models.count_tokens(
        model="google/gemini-2.5-flash", contents="How many tokens is this?"
    )
    assert result.total_tokens == 31
    (request,) = upstream.requests
    assert request["path"] == "/v1beta/models/gemini-2.5-flash:countTokens"
    assert request["headers"]["x-goog-api-key"] == "g-up"
    assert request["body"] == {
        "contents": [{"parts": [{"text": "How many tokens is this?"}], "role": "user"}]
    }
    # A whole generateContentRequest names the upstream's model, as Google requires.
    body = {"generateContentRequest": {"model": "models/google/x", "contents": []}}
    status, headers, _ = await _post(f"{gateway}/v1beta/models/google/gemini-2.5-flash", body)
    assert status == 200 and "x-gateway-token-count" not in headers
    assert upstream.last_body["generateContentRequest"]["model"] == "models/gemini-2.5-flash"


async def _post(target: str, body: Any, method: str = "countTokens") -> tuple[int, Any, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{target}:{method}", json=body) as response,
    ):
        return response.status, response.headers, await response.json(content_type=None)


def _answer(body: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body)

    return handler


@pytest.mark.parametrize("model", ["mock/any", "compat/gpt-4o"])
async def test_count_tokens_elsewhere_is_an_estimate_marked_as_one(
    upstream: FakeUpstream, gateway: str, model: str
) -> None:
    short = await _genai(gateway).aio.models.count_tokens(model=model, contents="Hello, world!")
    assert short.total_tokens is not None and 4 <= short.total_tokens < 20
    prose = "The gateway relays each chunk as it arrives. " * 40
    contents = [{"role": "user", "parts": [{"text": prose}]}]
    status, headers, counted = await _post(
        f"{gateway}/v1beta/models/{model}", {"contents": contents}
    )
    assert status == 200 and headers["x-gateway-token-count"] == "estimate"
    assert len(prose) / 6 < counted["totalTokens"] < len(prose) / 3
    # A whole request counts its system instruction and tools too (snake_case as well).
    tools = [{"function_declarations": [{"name": "get_weather", "parameters": {"type": "OBJECT"}}]}]
    inner = {
        "contents": contents,
        "tools": tools,
        "system_instruction": {"parts": [{"text": "Hi"}]},
    }
    status, _, whole = await _post(
        f"{gateway}/v1beta/models/{model}", {"generate_content_request": inner}
    )
    assert status == 200 and whole["totalTokens"] > counted["totalTokens"]
    assert upstream.requests == []  # never a model call


async def test_count_tokens_of_a_malformed_body_is_a_400_in_gemini_s_shape(gateway: str) -> None:
    status, _, answer = await _post(f"{gateway}/v1beta/models/mock/any", {"contents": "Hi"})
    assert status == 400 and answer["error"]["status"] == "INVALID_ARGUMENT"
    assert "contents" in answer["error"]["message"]


# --- model ids in the path ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1beta/mock/any:generateContent",  # @ai-sdk/google, a model id with a slash
        "/v1beta/models/mock/any:generateContent",
        "/v1alpha/mock/any:generateContent",
        "/v1/models/mock/any:generateContent",
    ],
)
async def test_the_model_may_be_named_in_the_path_with_or_without_models(
    gateway: str, path: str
) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    async with aiohttp.ClientSession() as session, session.post(gateway + path, json=body) as r:
        assert r.status == 200
        answer = await r.json()
    assert answer["candidates"][0]["content"]["parts"][0]["text"].startswith("This is a mock")


async def test_genai_sdk_on_v1alpha(gateway: str) -> None:
    answer = await _genai(gateway, "v1alpha").aio.models.generate_content(
        model="mock/any", contents="Hi"
    )
    assert answer.text is not None and answer.text.startswith("This is a mock")


async def test_an_unknown_method_is_a_404_in_gemini_s_shape(gateway: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway}/v1beta/mock/any:embedEverything", json={}) as response,
    ):
        assert response.status == 404
        assert (await response.json())["error"]["status"] == "NOT_FOUND"


# --- thought signatures through a tool loop --------------------------------------------------


def gemini_tool_loop(requests: list[dict[str, Any]]) -> Any:
    """A Gemini upstream that thinks, signs and calls get_weather, then answers: the tool
    loop of a thinking model (ai.google.dev/gemini-api/docs/thought-signatures)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        requests.append(body)
        if len(requests) == 1:
            parts: list[dict[str, Any]] = [
                {"text": "The user wants Oslo's weather.", "thought": True},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                    "thoughtSignature": SIGNATURE,
                },
            ]
        else:
            parts = [{"text": ANSWER}]
        response = {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5},
        }
        if "streamGenerateContent" not in request.path:
            return web.json_response(response)
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        await stream.write(b"data: " + orjson.dumps(response) + b"\r\n\r\n")
        return stream

    return handler


def _signed_call(request: dict[str, Any]) -> dict[str, Any]:
    """The model turn's function call part the next request sends back."""
    (model_turn,) = [c for c in request["contents"] if c["role"] == "model"]
    (call,) = [p for p in model_turn["parts"] if "functionCall" in p]
    return call


@pytest.mark.parametrize("stream", [False, True])
async def test_signature_survives_a_tool_loop_of_an_openai_client(
    upstream: FakeUpstream, gateway: str, stream: bool
) -> None:
    requests: list[dict[str, Any]] = []
    upstream.handler = gemini_tool_loop(requests)
    tools: Any = [WEATHER_TOOL]
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0) as sdk:
        request = {"model": "google/gemini-3-pro", "messages": messages, "tools": tools}
        if stream:
            chunks = [c async for c in await sdk.chat.completions.create(stream=True, **request)]
            extra = [c.choices[0].delta.model_extra or {} for c in chunks if c.choices]
            signature = "".join(e.get("reasoning_signature") or "" for e in extra)
            call = next(
                c.choices[0].delta.tool_calls[0]
                for c in chunks
                if c.choices and c.choices[0].delta.tool_calls
            )
            assistant = {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {
                            "name": call.function.name,
                            "arguments": call.function.arguments,
                        },
                    }
                ],
                "reasoning_signature": signature,
            }
        else:
            message = (await sdk.chat.completions.create(**request)).choices[0].message
            assistant = message.model_dump(exclude_none=True)
        tool_call_id = assistant["tool_calls"][0]["id"]
        messages += [assistant, {"role": "tool", "tool_call_id": tool_call_id, "content": "21"}]
        answer = await sdk.chat.completions.create(**{**request, "messages": messages})
    assert answer.choices[0].message.content == ANSWER
    assert _signed_call(requests[1]) == {
        "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
        "thoughtSignature": SIGNATURE,
    }


async def test_signature_survives_a_tool_loop_of_an_anthropic_client(
    upstream: FakeUpstream, gateway: str
) -> None:
    requests: list[dict[str, Any]] = []
    upstream.handler = gemini_tool_loop(requests)
    tool: Any = {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
    }
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    async with anthropic.AsyncAnthropic(base_url=gateway, api_key="x", max_retries=0) as claude:
        request: Any = {
            "model": "google/gemini-3-pro",
            "max_tokens": 4096,
            "tools": [tool],
            "thinking": {"type": "enabled", "budget_tokens": 2048},
        }
        async with claude.messages.stream(messages=messages, **request) as stream:
            first = await stream.get_final_message()
        thinking = [block for block in first.content if block.type == "thinking"]
        assert [block.signature for block in thinking] == [SIGNATURE]  # type: ignore[union-attr]
        use = next(block for block in first.content if block.type == "tool_use")
        messages += [
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "21"}],  # type: ignore[union-attr]
            },
        ]
        answer = await claude.messages.create(messages=messages, **request)
    assert answer.content[-1].text == ANSWER  # type: ignore[union-attr]
    assert _signed_call(requests[1])["thoughtSignature"] == SIGNATURE


@pytest.mark.parametrize("stream", [False, True])
async def test_signature_survives_a_tool_loop_of_a_responses_client(
    upstream: FakeUpstream, gateway: str, stream: bool
) -> None:
    requests: list[dict[str, Any]] = []
    upstream.handler = gemini_tool_loop(requests)
    tool: Any = {"type": "function", **WEATHER_TOOL["function"]}  # type: ignore[dict-item]
    request: Any = {"model": "google/gemini-3-pro", "tools": [tool], "reasoning": {"effort": "low"}}
    items: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0) as sdk:
        if stream:
            async with sdk.responses.stream(input=items, **request) as events:
                first = await events.get_final_response()
        else:
            first = await sdk.responses.create(input=items, **request)
        reasoning = [item for item in first.output if item.type == "reasoning"]
        assert [item.encrypted_content for item in reasoning] == [SIGNATURE]
        call = next(item for item in first.output if item.type == "function_call")
        items += [item.model_dump(exclude_none=True) for item in first.output]
        items.append({"type": "function_call_output", "call_id": call.call_id, "output": "21"})
        answer = await sdk.responses.create(input=items, **request)
    assert answer.output_text == ANSWER
    assert _signed_call(requests[1])["thoughtSignature"] == SIGNATURE
