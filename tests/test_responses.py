"""POST /v1/responses: OpenAI's event stream relayed in order; other providers bridged."""

from __future__ import annotations

import aiohttp
import msgspec
import openai
import orjson
import pytest

from gateway.parsing import parse_request
from gateway.sse import Event, SSEDecoder
from providers.base import Operation
from providers.openai import ChunkNormaliser
from providers.responses_bridge import ResponsesFromChat, responses_to_chat
from tests.conftest import FakeUpstream
from tests.replay import fixture, replay
from tests.streams import USAGE, answering, chat_chunk, data, streaming

TEXT_STREAM = fixture("openai/responses_text.sse")
CALL_STREAM = fixture("openai/responses_function_call.sse")


def _events(raw: bytes) -> list[Event]:
    return [item for item in SSEDecoder().feed(raw) if isinstance(item, Event)]


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
    assert seen == [event.event for event in _events(TEXT_STREAM)]
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
        events = _events(await response.read())
    assert events[-1].event == "error"
    error = orjson.loads(events[-1].data)
    assert error["type"] == "error" and error["code"] == "upstream_protocol_error"
    assert [e.event for e in events[:-1]] == [e.event for e in _events(cut)]


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


def test_chat_stream_with_reasoning_and_tool_calls_becomes_responses_events() -> None:
    bridge = ResponsesFromChat(ChunkNormaliser(Operation.CHAT, "p"), "m")
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
    events = _events(raw)
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
