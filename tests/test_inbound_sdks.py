"""The Anthropic and google-genai SDKs talking to the gateway in their own formats.

Served by the mock, by an OpenAI-compatible fake upstream (translated both ways) and by an
Anthropic fake upstream (passed through), its bytes cut at random places; the streamed text
equals the non-streamed, tool calls arrive intact, errors come in each API's shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from google import genai
from google.genai import types as genai_types

from tests.conftest import FakeUpstream, GatewayFactory
from tests.key_usage import spent_beyond
from tests.replay import fixture, replay
from tests.streams import (
    answering,
    chat_chunk,
    chat_completion,
    data,
    openai_chat_stream,
    streaming,
)

TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}

BETAS = "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"


def gateway_toml(upstream_url: str) -> str:
    return (
        '[providers.mock]\ntype = "mock"\ndelay = 0\ntokens = 6\n'
        f'[providers.compat]\ntype = "openai"\nbase_url = "{upstream_url}"\napi_key = "sk-up"\n'
        f'[providers.claude]\ntype = "anthropic"\nbase_url = "{upstream_url}"\n'
        'api_key = "sk-ant-up"\n'
        '[models."claude-sonnet-5"]\ntargets = ["mock/claude"]\n'
    )


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: GatewayFactory) -> str:
    return await start_gateway(gateway_toml(upstream.url))


@pytest.fixture
async def claude(gateway: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=gateway, api_key="unused", max_retries=0)
    yield client
    await client.close()


def gemini_client(url: str) -> genai.Client:
    return genai.Client(
        api_key="unused", http_options=genai_types.HttpOptions(base_url=url, timeout=10_000)
    )


# --- Anthropic SDK ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mock/any", "claude-sonnet-5"])
async def test_anthropic_sdk_stream_equals_create_through_the_mock(
    claude: anthropic.AsyncAnthropic, model: str
) -> None:
    messages: Any = [{"role": "user", "content": "Hi"}]
    async with claude.messages.stream(model=model, max_tokens=100, messages=messages) as stream:
        text = "".join([t async for t in stream.text_stream])
        streamed = await stream.get_final_message()
    whole = await claude.messages.create(model=model, max_tokens=100, messages=messages)
    assert streamed.content[0].type == whole.content[0].type == "text"
    assert text == streamed.content[0].text == whole.content[0].text  # type: ignore[union-attr]
    assert text.startswith("This is a mock reply")
    assert whole.stop_reason == streamed.stop_reason == "end_turn"
    assert whole.usage.output_tokens == streamed.usage.output_tokens == 6


@pytest.mark.parametrize("seed", range(3))
async def test_anthropic_sdk_through_an_openai_compatible_upstream_in_random_splits(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic, seed: int
) -> None:
    tokens = ["Hel", "lo, ", "wor", "ld ✓"]
    upstream.handler = replay(b"".join(openai_chat_stream(tokens)), seed=seed)
    async with claude.messages.stream(
        model="compat/gpt", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        streamed = await stream.get_final_message()
    upstream.handler = answering(chat_completion("".join(tokens)))
    whole = await claude.messages.create(
        model="compat/gpt", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    )
    assert streamed.content[0].text == whole.content[0].text == "Hello, world ✓"  # type: ignore[union-attr]
    sent = upstream.last_body
    assert sent["model"] == "gpt" and sent["messages"] == [{"role": "user", "content": "Hi"}]


async def test_anthropic_sdk_tool_calls_arrive_intact_from_an_openai_upstream(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    call = {"index": 0, "id": "call_1", "type": "function"}
    upstream.handler = streaming(
        [
            data(chat_chunk({"role": "assistant", "content": None})),
            data(
                chat_chunk(
                    {"tool_calls": [{**call, "function": {"name": "get_weather", "arguments": ""}}]}
                )
            ),
            data(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]})),
            data(
                chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Oslo"}'}}]})
            ),
            data(chat_chunk({}, "tool_calls")),
            b"data: [DONE]\n\n",
        ]
    )
    async with claude.messages.stream(
        model="compat/gpt",
        max_tokens=50,
        tools=[TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    ) as stream:
        message = await stream.get_final_message()
    tool_use = [block for block in message.content if block.type == "tool_use"]
    assert len(tool_use) == 1 and tool_use[0].name == "get_weather"
    assert tool_use[0].input == {"city": "Oslo"} and tool_use[0].id == "call_1"
    assert message.stop_reason == "tool_use"
    assert upstream.last_body["tools"][0]["function"]["parameters"] == TOOL["input_schema"]


@pytest.mark.parametrize("seed", range(3))
async def test_anthropic_sdk_to_an_anthropic_upstream_is_passed_through_byte_for_byte(
    upstream: FakeUpstream, gateway: str, claude: anthropic.AsyncAnthropic, seed: int
) -> None:
    raw = fixture("anthropic/tool_use_stream.sse")
    upstream.handler = replay(raw, seed=seed)
    async with claude.messages.stream(
        model="claude/claude-sonnet-5",
        max_tokens=1024,
        tools=[TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather?"}],
    ) as stream:
        message = await stream.get_final_message()
    assert any(block.type == "tool_use" for block in message.content)
    upstream.handler = replay(raw, seed=seed)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway}/v1/messages",
            json={
                "model": "claude/claude-sonnet-5",
                "max_tokens": 1024,
                "stream": True,
                "messages": [{"role": "user", "content": "Weather?"}],
            },
        ) as response,
    ):
        assert await response.read() == raw  # the upstream's very bytes


async def test_a_claude_code_style_request_reaches_anthropic_unchanged(
    upstream: FakeUpstream, gateway: str
) -> None:
    upstream.handler = replay(fixture("anthropic/thinking_stream.sse"))
    body: dict[str, Any] = {
        "model": "claude/claude-sonnet-5",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
        ],
        "tools": [{**TOOL, "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Fix the bug", "cache_control": {"type": "ephemeral"}}
                ],
            }
        ],
        "metadata": {"user_id": "user_abc"},
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway}/v1/messages",
            data=orjson.dumps(body),
            headers={
                "content-type": "application/json",
                "anthropic-version": "2023-06-01",
                "anthropic-beta": BETAS,
                "x-api-key": "client-key",
            },
        ) as response,
    ):
        assert response.status == 200
        await response.read()
    received = upstream.requests[-1]
    assert received["path"] == "/v1/messages"
    assert received["body"] == {**body, "model": "claude-sonnet-5"}  # all but the model
    assert received["headers"]["anthropic-beta"] == BETAS
    assert received["headers"]["x-api-key"] == "sk-ant-up"  # the provider's key, not the client's


async def test_anthropic_errors_come_in_anthropics_shape(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.create(
            model="nowhere/x", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": caught.value.body["error"]["message"],
        },  # type: ignore[index]
    }
    upstream.handler = answering({"error": {"message": "busy", "type": "server_error"}}, status=503)
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        await claude.messages.create(
            model="compat/gpt", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
        )
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


async def test_count_tokens_passes_through_to_anthropic_and_is_estimated_elsewhere(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    upstream.handler = answering({"input_tokens": 42})
    counted = await claude.messages.count_tokens(
        model="claude/claude-sonnet-5", messages=[{"role": "user", "content": "Hi"}]
    )
    assert counted.input_tokens == 42
    assert upstream.requests[-1]["path"] == "/v1/messages/count_tokens"
    estimated = await claude.messages.count_tokens(
        model="compat/gpt", messages=[{"role": "user", "content": "Hi"}]
    )
    assert estimated.input_tokens > 0
    assert len(upstream.requests) == 1  # no model was called for the estimate


async def test_a_model_without_provider_uses_default_provider(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(
        f'[server]\ndefault_provider = "claude"\n[providers.claude]\ntype = "anthropic"\n'
        f'base_url = "{upstream.url}"\napi_key = "k"\n'
    )
    upstream.handler = answering(orjson.loads(fixture("anthropic/message.json")))
    async with anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0) as client:
        message = await client.messages.create(
            model="claude-sonnet-5",
            max_tokens=10,
            messages=[{"role": "user", "content": "Hi"}],
        )
    assert message.content
    assert upstream.last_body["model"] == "claude-sonnet-5"


# --- google-genai SDK ------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mock/gemini", "mock%2Fgemini"])
async def test_genai_sdk_stream_equals_generate_content_through_the_mock(
    gateway: str, model: str
) -> None:
    client = gemini_client(gateway)
    whole = await client.aio.models.generate_content(model=model, contents="Hi")
    pieces = [
        chunk.text or ""
        async for chunk in await client.aio.models.generate_content_stream(
            model=model, contents="Hi"
        )
    ]
    assert whole.text is not None and whole.text.startswith("This is a mock reply")
    assert "".join(pieces) == whole.text
    assert whole.usage_metadata is not None and whole.usage_metadata.candidates_token_count == 6


@pytest.mark.parametrize("seed", range(2))
async def test_genai_sdk_through_an_openai_compatible_upstream_with_a_function_call(
    upstream: FakeUpstream, gateway: str, seed: int
) -> None:
    call = {"index": 0, "id": "call_9", "type": "function"}
    stream = [
        data(chat_chunk({"role": "assistant", "content": "Checking. "})),
        data(
            chat_chunk(
                {
                    "tool_calls": [
                        {**call, "function": {"name": "get_weather", "arguments": '{"city":'}}
                    ]
                }
            )
        ),
        data(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]})),
        data(chat_chunk({}, "tool_calls")),
        b"data: [DONE]\n\n",
    ]
    upstream.handler = replay(b"".join(stream), seed=seed)
    client = gemini_client(gateway)
    tools = [
        genai_types.Tool(
            function_declarations=[
                genai_types.FunctionDeclaration(
                    name="get_weather",
                    parameters_json_schema=TOOL["input_schema"],
                )
            ]
        )
    ]
    config = genai_types.GenerateContentConfig(tools=tools)
    chunks = [
        chunk
        async for chunk in await client.aio.models.generate_content_stream(
            model="compat/gpt", contents="Weather in Oslo?", config=config
        )
    ]
    calls = [call for chunk in chunks for call in (chunk.function_calls or [])]
    assert [(c.name, c.args) for c in calls] == [("get_weather", {"city": "Oslo"})]
    assert "".join(chunk.text or "" for chunk in chunks if chunk.candidates).startswith("Checking")


async def test_genai_sdk_errors_come_in_geminis_shape(gateway: str) -> None:
    client = gemini_client(gateway)
    with pytest.raises(genai.errors.ClientError) as caught:
        await client.aio.models.generate_content(model="nowhere/x", contents="Hi")
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"


async def test_the_json_array_stream_without_alt_sse(gateway: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway}/v1beta/models/mock/gemini:streamGenerateContent",
            json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
        ) as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/json"
        items = orjson.loads(await response.read())
    assert isinstance(items, list) and items
    text = "".join(
        part.get("text", "") for item in items for part in item["candidates"][0]["content"]["parts"]
    )
    assert text.startswith("This is a mock reply")


async def test_anthropic_sdk_key_header_is_accepted_as_a_gateway_key(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(
        '[providers.mock]\ntype = "mock"\ndelay = 0\n[keys.app]\nvalue = "sk-app"\n'
    )
    async with anthropic.AsyncAnthropic(base_url=url, api_key="sk-app", max_retries=0) as client:
        message = await client.messages.create(
            model="mock/x", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
        )
        assert message.content
    async with anthropic.AsyncAnthropic(base_url=url, api_key="wrong", max_retries=0) as client:
        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(
                model="mock/x", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
            )
    client = genai.Client(
        api_key="sk-app", http_options=genai_types.HttpOptions(base_url=url, timeout=10_000)
    )
    answer = await client.aio.models.generate_content(model="mock/x", contents="Hi")
    assert answer.text


async def test_whole_answers_in_each_format_are_charged_their_tokens(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(
        '[providers.mock]\ntype = "mock"\ndelay = 0\n[keys.app]\nvalue = "sk-app"\n'
        'budget = 1000000\n[admin]\nkey = "sk-admin"\n'
    )
    spent = [0]

    async def charged() -> int:
        now = int(await spent_beyond(url, spent[0]))  # settled after the answer
        added, spent[0] = now - spent[0], now
        return added

    async with anthropic.AsyncAnthropic(base_url=url, api_key="sk-app", max_retries=0) as client:
        await client.messages.create(
            model="mock/x", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
        )
    assert await charged() > 0
    client = genai.Client(
        api_key="sk-app", http_options=genai_types.HttpOptions(base_url=url, timeout=10_000)
    )
    await client.aio.models.generate_content(model="mock/x", contents="Hi")
    assert await charged() > 0
