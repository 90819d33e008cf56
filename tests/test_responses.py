"""POST /v1/responses: OpenAI's event stream relayed in order; other providers bridged."""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec
import openai
import orjson
import pytest
from aiohttp import web

from formats.chat.to_chat import ChatChunkReader
from formats.responses.from_chat import ResponseEcho, ResponsesFromChat
from formats.responses.request import responses_to_chat
from gateway.config import parse
from gateway.server.parsing import parse_request
from tests.conftest import FakeUpstream, provider_toml
from tests.replay import fixture, replay
from tests.streams import USAGE, answering, chat_chunk, chat_completion, data, parse_sse, streaming
from wire.errors import UpstreamTimeout
from wire.operations import Operation

TEXT_STREAM = fixture("openai/responses_text.sse")
CALL_STREAM = fixture("openai/responses_function_call.sse")


@pytest.mark.parametrize("seed", range(4))
async def test_stream_events_arrive_in_order_and_the_sdk_helper_gets_text_and_usage(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = replay(TEXT_STREAM, seed=seed)
    seen = []
    async with client.responses.stream(model="fake/gpt-4.1", input="Hi") as stream:
        async for event in stream:
            seen.append(event.type)
        final = await stream.get_final_response()
    assert seen == [event.event for event in parse_sse(TEXT_STREAM)]
    assert final.output_text == "Hi there! How can I help?"
    assert final.usage is not None and final.usage.total_tokens == 48
    assert upstream.requests[-1]["path"] == "/v1/responses"


async def test_stream_is_relayed_byte_for_byte_with_no_done(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    upstream.handler = streaming([TEXT_STREAM])
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway_url}/v1/responses",
            json={"model": "fake/gpt-4.1", "input": "Hi", "stream": True},
        ) as response,
    ):
        body = await response.read()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert body == TEXT_STREAM
    assert b"[DONE]" not in body


async def test_function_call_and_reasoning_summary_deltas_pass_through(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = replay(CALL_STREAM, seed=7)
    arguments = ""
    summary = ""
    async with client.responses.stream(model="fake/o4-mini", input="Weather?") as stream:
        async for event in stream:
            if event.type == "response.function_call_arguments.delta":
                arguments += event.delta
            if event.type == "response.reasoning_summary_text.delta":
                summary += event.delta
        final = await stream.get_final_response()
    assert orjson.loads(arguments) == {"location": "Paris, France"}
    assert summary == "**Checking weather**"
    call = final.output[1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 64


async def test_request_fields_pass_through_untouched(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = answering(orjson.loads(fixture("openai/responses_text.json")))
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ]
    answer = await client.responses.create(
        model="fake/org/gpt-4.1",
        input=items,
        previous_response_id="resp_prev",
        store=False,
        reasoning={"effort": "low"},
        tools=[{"type": "web_search_preview"}],
        extra_body={"vendor_field": [1, 2]},
    )
    sent = upstream.last_body
    assert sent["model"] == "org/gpt-4.1"
    assert sent["input"] == items
    assert sent["previous_response_id"] == "resp_prev"
    assert sent["store"] is False
    assert sent["reasoning"] == {"effort": "low"}
    assert sent["tools"] == [{"type": "web_search_preview"}]
    assert sent["vendor_field"] == [1, 2]
    assert "stream_options" not in sent
    assert answer.output_text == "Hi there! How can I help?"


async def test_stream_cut_before_completed_ends_with_an_error_event(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    cut = TEXT_STREAM[: TEXT_STREAM.index(b"event: response.output_text.done")]
    upstream.handler = streaming([cut])
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway_url}/v1/responses", json={"model": "fake/m", "input": "Hi", "stream": True}
        ) as response,
    ):
        events = parse_sse(await response.read())
    assert events[-1].event == "error"
    error = orjson.loads(events[-1].data)
    assert error["type"] == "error" and error["code"] == "upstream_protocol_error"
    assert [e.event for e in events[:-1]] == [e.event for e in parse_sse(cut)]


async def test_upstream_error_answer_keeps_status_and_message(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = answering(
        {
            "error": {
                "message": "Previous response not found",
                "type": "invalid_request_error",
                "param": "previous_response_id",
                "code": "previous_response_not_found",
            }
        },
        status=404,
    )
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(model="fake/m", input="Hi", previous_response_id="x")
    assert "Previous response not found" in caught.value.message


# --- providers without a Responses API: bridged through chat ---


async def test_mock_provider_answers_responses_streamed_and_not(client: openai.AsyncOpenAI) -> None:
    async with client.responses.stream(model="mock/m", input="Hi") as stream:
        deltas = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
        final = await stream.get_final_response()
    whole = await client.responses.create(model="mock/m", input="Hi")
    assert "".join(deltas) == final.output_text == whole.output_text != ""
    assert final.usage is not None and whole.usage is not None
    assert final.usage.output_tokens == whole.usage.output_tokens == 10
    assert final.status == "completed"


def test_responses_request_becomes_the_equivalent_chat_request() -> None:
    body = parse_request(
        orjson.dumps(
            {
                "model": "p/m",
                "instructions": "Be brief.",
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "Look"},
                            {"type": "input_image", "image_url": "data:image/png;base64,AA=="},
                        ],
                    },
                    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                    {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c1", "output": "one"},
                ],
                "max_output_tokens": 50,
                "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
                "tool_choice": {"type": "function", "name": "f"},
                "text": {"format": {"type": "json_schema", "name": "x", "schema": {}}},
                "reasoning": {"effort": "high"},
            }
        ),
        Operation.RESPONSES,
    ).body
    chat = {key: msgspec.json.decode(value) for key, value in responses_to_chat(body, "p").items()}
    assert chat["messages"][0] == {"role": "system", "content": "Be brief."}
    assert chat["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AA=="},
    }
    assert [c["id"] for c in chat["messages"][2]["tool_calls"]] == ["c1", "c2"]
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "one"}
    assert chat["max_tokens"] == 50
    assert chat["tools"][0]["function"]["name"] == "f"
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["response_format"]["type"] == "json_schema"
    assert chat["reasoning_effort"] == "high"


def test_chat_stream_with_reasoning_and_tool_calls_becomes_responsesparse_sse() -> None:
    bridge = ChatChunkReader("p", ResponsesFromChat("m", ResponseEcho()))
    stream = [
        data(chat_chunk({"role": "assistant", "reasoning": "think"})),
        data(chat_chunk({"reasoning_signature": "sig"})),
        data(chat_chunk({"content": "Let me check."})),
        data(
            chat_chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""},
                        }
                    ]
                }
            )
        ),
        data(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]})),
        data(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})),
        data(chat_chunk({}, "tool_calls", usage=USAGE)),
        b"data: [DONE]\n\n",
    ]
    raw = b"".join(bridge.feed(piece) for piece in stream) + bridge.end()
    events = parse_sse(raw)
    kinds = [event.event for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert all(orjson.loads(e.data)["type"] == e.event for e in events)
    assert [orjson.loads(e.data)["sequence_number"] for e in events] == list(range(len(events)))
    final = orjson.loads(events[-1].data)["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][0]["encrypted_content"] == "sig"
    assert final["output"][1]["content"][0]["text"] == "Let me check."
    assert final["output"][2]["arguments"] == '{"a":1}'
    assert final["output"][2]["call_id"] == "call_1"
    assert final["usage"]["input_tokens"] == USAGE["prompt_tokens"]
    assert final["usage"]["total_tokens"] == USAGE["total_tokens"]


def test_previous_response_id_is_refused_for_a_bridged_provider() -> None:
    body = parse_request(
        orjson.dumps({"model": "p/m", "input": "Hi", "previous_response_id": "resp_1"}),
        Operation.RESPONSES,
    ).body
    with pytest.raises(Exception, match="previous_response_id"):
        responses_to_chat(body, "p")


@pytest.mark.parametrize(
    ("kind", "fixture_path", "path"),
    [
        ("anthropic", "anthropic/text_stream.sse", "/messages"),
        ("gemini", "gemini/text_stream.sse", None),
    ],
)
async def test_responses_stream_helper_works_against_translated_providers(
    upstream: FakeUpstream, start_gateway, kind: str, fixture_path: str, path: str | None
) -> None:
    url = await start_gateway(
        f'[providers.p]\ntype = "{kind}"\nbase_url = "{upstream.url}"\napi_key = "k"\n'
    )
    raw = fixture(fixture_path)
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    upstream.handler = replay(raw, seed=3)
    chat = await sdk.chat.completions.create(
        model="p/m", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    chunks = [chunk async for chunk in chat]
    chat_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    upstream.handler = replay(raw, seed=4)
    async with sdk.responses.stream(model="p/m", input="Hi") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    await sdk.close()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert final.output_text == chat_text != ""
    assert final.usage is not None and chunks[-1].usage is not None
    assert final.usage.input_tokens == chunks[-1].usage.prompt_tokens
    assert final.usage.output_tokens == chunks[-1].usage.completion_tokens
    if path:
        assert upstream.requests[-1]["path"].endswith(path)


# --- the bridged Response object: the request echoed, a truncated answer incomplete ---

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    "strict": True,
}
SETTINGS: dict[str, Any] = {
    "instructions": "Be brief.",
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "function", "name": "get_weather"},
    "temperature": 0.2,
    "top_p": 0.9,
    "max_output_tokens": 500,
    "metadata": {"user": "u-1", "trace": "t-9"},
    "parallel_tool_calls": False,
    "text": {"format": {"type": "json_object"}},
}
DEFAULTS: dict[str, Any] = {
    "instructions": None,
    "tools": [],
    "tool_choice": "auto",
    "temperature": 1.0,
    "top_p": 1.0,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "text": {"format": {"type": "text"}},
}


def _echoed(response: Any) -> dict[str, Any]:
    dumped = response.model_dump(mode="json", exclude_none=False)
    echoed = {name: dumped[name] for name in DEFAULTS}
    echoed["text"] = {k: v for k, v in echoed["text"].items() if v is not None}  # SDK-added
    echoed["tools"] = [
        {key: value for key, value in tool.items() if key in WEATHER_TOOL}
        for tool in echoed["tools"]
    ]
    return echoed


@pytest.mark.parametrize(("request_fields", "echo"), [(SETTINGS, SETTINGS), ({}, DEFAULTS)])
async def test_bridged_response_echoes_the_request_or_openais_defaults_streamed_and_not(
    client: openai.AsyncOpenAI, request_fields: dict[str, Any], echo: dict[str, Any]
) -> None:
    whole = await client.responses.create(model="mock/m", input="Weather?", **request_fields)
    async with client.responses.stream(
        model="mock/m", input="Weather?", **request_fields
    ) as stream:
        created = [event async for event in stream if event.type == "response.created"]
        final = await stream.get_final_response()
    assert _echoed(whole) == _echoed(final) == _echoed(created[0].response) == echo
    assert whole.status == final.status == "completed"


async def test_bridged_tool_call_through_the_mock_is_a_function_call_item(
    client: openai.AsyncOpenAI,
) -> None:
    whole = await client.responses.create(model="mock/m", input="Weather?", tools=[WEATHER_TOOL])
    async with client.responses.stream(
        model="mock/m", input="Weather?", tools=[WEATHER_TOOL]
    ) as stream:
        arguments = "".join(
            [e.delta async for e in stream if e.type == "response.function_call_arguments.delta"]
        )
        final = await stream.get_final_response()
    for response in (whole, final):
        [call] = response.output
        assert call.type == "function_call" and call.name == "get_weather"
        assert call.status == "completed"
        assert orjson.loads(call.arguments) == {"city": "mock", "unit": "celsius"}
    assert arguments == final.output[0].arguments


def _assert_incomplete(response: Any, text: str) -> None:
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.max_output_tokens == 3
    [message] = response.output
    assert (message.type, message.status) == ("message", "incomplete")
    assert response.output_text == text


async def test_truncated_answer_is_incomplete_and_so_is_its_message_item(
    client: openai.AsyncOpenAI,
) -> None:
    whole = await client.responses.create(model="mock/m", input="Hi", max_output_tokens=3)
    _assert_incomplete(whole, "This is a")
    async with client.responses.stream(model="mock/m", input="Hi", max_output_tokens=3) as stream:
        events = [event async for event in stream]
    assert events[-1].type == "response.incomplete"
    [done] = [e for e in events if e.type == "response.output_item.done"]
    assert done.item.status == "incomplete"
    _assert_incomplete(events[-1].response, "This is a")


async def test_truncated_answer_from_a_chat_only_upstream_is_incomplete(
    upstream: FakeUpstream, start_gateway
) -> None:
    """Through a real upstream that has no Responses API (Ollama's chat), streamed and not."""
    url = await start_gateway(
        f'[providers.ollama]\nbase_url = "{upstream.url.removesuffix("/v1")}"\n'
    )
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    lines = [
        {"model": "llama3.2", "message": {"role": "assistant", "content": "Hi"}, "done": False},
        {"model": "llama3.2", "message": {"role": "assistant", "content": " th"}, "done": False},
        {"model": "llama3.2", "done": True, "done_reason": "length", "eval_count": 3},
    ]
    upstream.handler = replay(
        b"".join(orjson.dumps(line) + b"\n" for line in lines),
        content_type="application/x-ndjson",
    )
    async with sdk.responses.stream(model="ollama/llama3.2", input="Hi", max_output_tokens=3) as s:
        events = [event async for event in s]
    assert events[-1].type == "response.incomplete"
    _assert_incomplete(events[-1].response, "Hi th")
    upstream.handler = answering(
        {
            "model": "llama3.2",
            "message": {"role": "assistant", "content": "Hi th"},
            "done": True,
            "done_reason": "length",
            "eval_count": 3,
        }
    )
    whole = await sdk.responses.create(model="ollama/llama3.2", input="Hi", max_output_tokens=3)
    await sdk.close()
    _assert_incomplete(whole, "Hi th")
    assert upstream.last_body["options"] == {"num_predict": 3}


async def test_a_wrongly_typed_echoed_field_is_a_400_naming_it(gateway_url: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway_url}/v1/responses",
            json={"model": "mock/m", "input": "Hi", "parallel_tool_calls": "yes"},
        ) as response,
    ):
        error = (await response.json())["error"]
    assert response.status == 400
    assert (error["param"], error["code"]) == ("parallel_tool_calls", "invalid_type")


def test_the_bridge_reports_the_error_it_sent_as_its_failure() -> None:
    cut = ChatChunkReader("p", ResponsesFromChat("m", ResponseEcho()))
    assert cut.failure is None
    cut.feed(data(chat_chunk({"role": "assistant", "content": "Hi"})))
    assert cut.failure is None
    events = parse_sse(cut.end())
    assert cut.failure is not None and cut.failure.code == "upstream_protocol_error"
    assert orjson.loads(events[-1].data)["message"] == cut.failure.message

    reported = ChatChunkReader("p", ResponsesFromChat("m", ResponseEcho()))
    error = {"message": "Overloaded", "type": "server_error", "param": None, "code": "busy"}
    events = parse_sse(reported.feed(data({"error": error})))
    assert reported.finished and reported.failure is not None
    assert (reported.failure.message, reported.failure.code) == ("Overloaded", "busy")
    assert orjson.loads(events[-1].data)["code"] == "busy"

    timed_out = ChatChunkReader("p", ResponsesFromChat("m", ResponseEcho()))
    failure = UpstreamTimeout("Provider 'p' sent nothing for 2 seconds.")
    timed_out.error_event(failure)
    assert timed_out.failure is failure


# --- responses = "native" | "bridge" | "auto" ---


def _no_responses_api(chat_text: str):
    """An OpenAI-compatible server with chat but no /responses (llama.cpp, older vLLM)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/responses"):
            return web.Response(status=404, text="Not Found")
        return await answering(chat_completion(chat_text))(request)

    return handler


async def test_auto_falls_back_to_chat_on_404_and_remembers_it(
    upstream: FakeUpstream, start_gateway
) -> None:
    url = await start_gateway(provider_toml(upstream.url, name="local"))  # type openai: "auto"
    upstream.handler = _no_responses_api("through chat")
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        first = await client.responses.create(model="local/m", input="Hi")
        second = await client.responses.create(model="local/m", input="Hi")
    assert first.output_text == second.output_text == "through chat"
    paths = [r["path"] for r in upstream.requests]
    # Native once, then chat; the second request goes straight to chat.
    assert paths == ["/v1/responses", "/v1/chat/completions", "/v1/chat/completions"]


async def test_auto_answers_the_bridges_own_error_when_chat_cannot_take_the_request(
    upstream: FakeUpstream, start_gateway
) -> None:
    """The native attempt's 404 only says the upstream has no Responses API; when the chat
    bridge then refuses the request (a 400 naming the field), that is the client's answer."""
    url = await start_gateway(provider_toml(upstream.url, name="local"))  # type openai: "auto"
    upstream.handler = _no_responses_api("never")
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as caught:
                await client.responses.create(
                    model="local/m", input="Hi", previous_response_id="resp_1", stream=stream
                )
            assert caught.value.param == "previous_response_id"
    assert [r["path"] for r in upstream.requests] == ["/v1/responses", "/v1/responses"]


async def test_bridge_mode_never_asks_for_responses(upstream: FakeUpstream, start_gateway) -> None:
    url = await start_gateway(
        f'[providers.mistral]\nbase_url = "{upstream.url}"\napi_key = "k"\n'  # preset: bridge
    )
    upstream.handler = answering(chat_completion("bridged"))
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        answer = await client.responses.create(model="mistral/m", input="Hi")
    assert answer.output_text == "bridged"
    assert [r["path"] for r in upstream.requests] == ["/v1/chat/completions"]


async def test_native_mode_names_the_provider_when_the_upstream_has_no_responses(
    upstream: FakeUpstream, start_gateway
) -> None:
    url = await start_gateway(provider_toml(upstream.url, name="local", responses="native"))
    upstream.handler = _no_responses_api("never")
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.responses.create(model="local/m", input="Hi")
    assert "'local'" in caught.value.message and 'responses = "bridge"' in caught.value.message
    assert [r["path"] for r in upstream.requests] == ["/v1/responses"]


def test_each_preset_has_its_documented_responses_mode() -> None:
    config = parse(
        "".join(f"[providers.{name}]\n" for name in ("openai", "groq", "mistral", "vllm")),
        "t.toml",
    )
    modes = {name: p.responses for name, p in config.providers.items()}
    assert modes == {"openai": "native", "groq": "native", "mistral": "bridge", "vllm": "auto"}
