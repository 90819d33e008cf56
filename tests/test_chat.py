"""Chat and text completions through the gateway, read by the official OpenAI SDK."""

from __future__ import annotations

import aiohttp
import openai
import orjson

from tests.conftest import FakeUpstream
from tests.streams import (
    DONE,
    MODEL,
    USAGE,
    answering,
    chat_chunk,
    chat_completion,
    completion_chunk,
    data,
    inline_finish_stream,
    openai_chat_stream,
    parse_sse,
    streaming,
)

TOKENS = ["Hel", "lo", " wor", "ld", " ✓"]
MESSAGES = [{"role": "user", "content": "Say hello"}]


async def test_stream_concatenation_equals_non_streamed_text(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = streaming(openai_chat_stream(TOKENS))
    stream = await client.chat.completions.create(
        model="fake/gpt-4o-mini", messages=MESSAGES, stream=True
    )
    streamed = "".join(
        [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    )

    upstream.handler = answering(chat_completion("".join(TOKENS)))
    whole = await client.chat.completions.create(model="fake/gpt-4o-mini", messages=MESSAGES)

    assert streamed == whole.choices[0].message.content == "Hello world ✓"
    assert whole.model == MODEL  # the upstream's model name, as it says it
    assert whole.usage is not None and whole.usage.total_tokens == USAGE["total_tokens"]


async def test_upstream_gets_model_after_first_slash_and_body_untouched(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = answering(chat_completion("ok"))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    await client.chat.completions.create(
        model="fake/org/model:v1",
        messages=MESSAGES,
        tools=tools,
        seed=7,
        response_format={"type": "json_object"},
        extra_body={"vendor_field": {"nested": [1, 2.5, None]}},
    )
    sent = upstream.last_body
    assert sent["model"] == "org/model:v1"
    assert sent["tools"] == tools
    assert sent["seed"] == 7
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["vendor_field"] == {"nested": [1, 2.5, None]}
    assert sent["messages"] == MESSAGES
    headers = upstream.requests[-1]["headers"]
    assert headers["Authorization"] == "Bearer sk-upstream"  # the provider's key, not the client's


async def test_streamed_request_asks_upstream_for_usage_keeping_other_options(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = streaming(openai_chat_stream(TOKENS))
    stream = await client.chat.completions.create(
        model="fake/m",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": False, "include_obfuscation": False},
    )
    async for _ in stream:
        pass
    assert upstream.last_body["stream_options"] == {
        "include_usage": True,
        "include_obfuscation": False,
    }


async def test_tool_call_deltas_pass_through_intact(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    arguments = '{"city": "Paris", "unit": "celsius"}'
    pieces = [arguments[i : i + 7] for i in range(0, len(arguments), 7)]
    call = {"index": 0, "id": "call_abc", "type": "function"}
    events = [
        data(
            chat_chunk(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{**call, "function": {"name": "get_weather", "arguments": ""}}],
                }
            )
        )
    ]
    events += [
        data(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        for piece in pieces
    ]
    events += [data(chat_chunk({}, "tool_calls")), data(chat_chunk(choices=[], usage=USAGE)), DONE]
    upstream.handler = streaming(events)

    stream = await client.chat.completions.create(model="fake/m", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]

    collected = ""
    names = []
    for chunk in chunks[:-1]:
        for tool_call in chunk.choices[0].delta.tool_calls or []:
            assert tool_call.index == 0
            if tool_call.id:
                assert tool_call.id == "call_abc"
            if tool_call.function and tool_call.function.name:
                names.append(tool_call.function.name)
            collected += (tool_call.function and tool_call.function.arguments) or ""
    assert names == ["get_weather"]
    assert orjson.loads(collected) == {"city": "Paris", "unit": "celsius"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def _raw_stream(gateway_url: str, body: dict) -> tuple[int, str, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway_url}/v1/chat/completions", json=body) as response,
    ):
        return response.status, response.headers["Content-Type"], await response.read()


def _assert_normalised(events: list, finish: str = "stop") -> list[dict]:
    """Content before the last chunk; finish_reason and usage only in the last; then [DONE]."""
    assert events[-1].data == "[DONE]"
    chunks = [orjson.loads(event.data) for event in events[:-1]]
    *body, last = chunks
    for chunk in body:
        assert chunk.get("usage") is None
        assert all(choice["finish_reason"] is None for choice in chunk["choices"])
    assert [choice["finish_reason"] for choice in last["choices"]] == [finish]
    assert last["usage"] == USAGE
    assert last["choices"][0]["delta"] == {}
    return chunks


async def test_openai_shaped_stream_ends_with_one_chunk_holding_finish_and_usage(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    upstream.handler = streaming(openai_chat_stream(TOKENS))
    status, content_type, raw = await _raw_stream(
        gateway_url, {"model": "fake/m", "messages": MESSAGES, "stream": True}
    )
    assert status == 200 and content_type.startswith("text/event-stream")
    chunks = _assert_normalised(parse_sse(raw))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "".join(TOKENS)
    assert chunks[-1]["model"] == MODEL and chunks[-1]["id"] == "chatcmpl-123"


async def test_inline_finish_and_usage_are_split_from_the_last_token(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    upstream.handler = streaming(inline_finish_stream(TOKENS, finish="length"))
    _, _, raw = await _raw_stream(
        gateway_url, {"model": "fake/m", "messages": MESSAGES, "stream": True}
    )
    chunks = _assert_normalised(parse_sse(raw), finish="length")
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "".join(TOKENS)  # the last token is kept, not lost with the finish chunk


async def test_usage_on_every_chunk_is_reported_once_at_the_end(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    partial = {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
    events = [data(chat_chunk({"content": token}, usage=partial)) for token in TOKENS]
    events += [data(chat_chunk({}, "stop", usage=USAGE)), DONE]
    upstream.handler = streaming(events)
    _, _, raw = await _raw_stream(
        gateway_url, {"model": "fake/m", "messages": MESSAGES, "stream": True}
    )
    _assert_normalised(parse_sse(raw))


async def test_two_choices_finish_together_in_the_last_chunk(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    def choice(index: int, delta: dict, finish: str | None = None) -> dict:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    events = [
        data(chat_chunk(choices=[choice(0, {"content": "A"})])),
        data(chat_chunk(choices=[choice(1, {"content": "B"})])),
        data(chat_chunk(choices=[choice(0, {}, "stop")])),
        data(chat_chunk(choices=[choice(1, {"content": "b"}, "length")])),
        data(chat_chunk(choices=[], usage=USAGE)),
        DONE,
    ]
    upstream.handler = streaming(events)
    _, _, raw = await _raw_stream(
        gateway_url, {"model": "fake/m", "messages": MESSAGES, "stream": True, "n": 2}
    )
    events_out = parse_sse(raw)
    chunks = [orjson.loads(e.data) for e in events_out[:-1]]
    last = chunks[-1]
    assert [(c["index"], c["finish_reason"]) for c in last["choices"]] == [
        (0, "stop"),
        (1, "length"),
    ]
    assert last["usage"] == USAGE
    texts = {0: "", 1: ""}
    for chunk in chunks[:-1]:
        for c in chunk["choices"]:
            assert c["finish_reason"] is None
            texts[c["index"]] += c["delta"].get("content") or ""
    assert texts == {0: "A", 1: "Bb"}


async def test_text_completions_stream_and_not(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    events = [data(completion_chunk(token)) for token in TOKENS]
    events += [
        data(completion_chunk("", "stop")),
        data({**completion_chunk(""), "choices": [], "usage": USAGE}),
        DONE,
    ]
    upstream.handler = streaming(events)
    stream = await client.completions.create(
        model="fake/gpt-3.5-turbo-instruct", prompt="Say", stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks[:-1]) == "".join(TOKENS)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 12
    assert upstream.requests[-1]["path"] == "/v1/completions"

    upstream.handler = answering({**completion_chunk("".join(TOKENS), "stop"), "usage": USAGE})
    whole = await client.completions.create(model="fake/gpt-3.5-turbo-instruct", prompt="Say")
    assert whole.choices[0].text == "".join(TOKENS)


async def test_mock_provider_streams_the_same_text_it_answers_whole(
    client: openai.AsyncOpenAI,
) -> None:
    stream = await client.chat.completions.create(
        model="mock/anything", messages=MESSAGES, stream=True, max_tokens=7
    )
    chunks = [chunk async for chunk in stream]
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    whole = await client.chat.completions.create(
        model="mock/anything", messages=MESSAGES, max_tokens=7
    )
    assert streamed == whole.choices[0].message.content
    assert len(streamed.split(" ")) == 7
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


async def test_mock_provider_text_completions(client: openai.AsyncOpenAI) -> None:
    stream = await client.completions.create(model="mock/x", prompt="hi", stream=True)
    streamed = "".join([c.choices[0].text async for c in stream if c.choices])
    whole = await client.completions.create(model="mock/x", prompt="hi")
    assert streamed == whole.choices[0].text != ""


async def test_models_lists_configured_providers_and_health_answers(gateway_url: str) -> None:
    sdk = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="x", max_retries=0)
    models = [model.id async for model in sdk.models.list()]
    assert "mock/mock-model" in models
    await sdk.close()
    async with aiohttp.ClientSession() as session, session.get(f"{gateway_url}/health") as r:
        assert r.status == 200
        assert (await r.json())["status"] == "ok"


async def test_upstream_connection_is_reused_after_paced_streams(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    # The end of each body arrives in a packet after [DONE]: the gateway waits for it, so the
    # connection goes back to the pool instead of costing a new TCP handshake per stream.
    upstream.handler = streaming(openai_chat_stream(["a", "b", "c"]), delay=0.005, end_delay=0.01)
    for _ in range(5):
        stream = await client.chat.completions.create(
            model="fake/m", messages=MESSAGES, stream=True
        )
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert len({request["peer"] for request in upstream.requests}) == 1


async def test_the_upstreams_request_id_is_relayed_streamed_and_not(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    async def stream_with_id(request):
        response = aiohttp.web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "x-request-id": "req_stream"}
        )
        await response.prepare(request)
        for piece in openai_chat_stream(["a"]):
            await response.write(piece)
        return response

    async def answer_with_id(request):
        return aiohttp.web.json_response(chat_completion("a"), headers={"request-id": "req_1"})

    upstream.handler = stream_with_id
    stream = await client.chat.completions.create(model="fake/m", messages=MESSAGES, stream=True)
    assert stream.response.headers["x-request-id"] == "req_stream"
    async for _ in stream:
        pass
    upstream.handler = answer_with_id
    whole = await client.chat.completions.create(model="fake/m", messages=MESSAGES)
    assert whole._request_id == "req_1"  # Anthropic's spelling, relayed as x-request-id
