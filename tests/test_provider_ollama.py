"""The ollama provider: Ollama's NDJSON replayed in random splits, read by the OpenAI SDK.

Fixtures are in tests/fixtures/ollama/ (README.md there names the doc each one follows).
"""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from formats.chat.from_chat import ChatStreamWriter
from providers.ollama import MAX_LINE_BYTES, OllamaStream
from tests.conftest import Connect, FakeUpstream
from tests.replay import fixture, replay
from tests.sdk import refused, reply_readers
from tests.streams import parse_sse

MODEL = "ollama/llama3.2"
MESSAGES = [{"role": "user", "content": "Hello"}]
NDJSON = "application/x-ndjson"
SEEDS = range(4)
TEXT = "Bonjour! Héllo, 世界 🎉"
TIMES = "\u00d7"  # the multiplication sign the thinking fixture uses, two bytes in UTF-8
TOOL_CALLS = [
    ("get_temperature", {"city": "New York"}),
    ("get_conditions", {"city": "New York", "detail": ["wind", 2]}),
]


def ollama_toml(base: str) -> str:
    return (
        f'[providers.ollama]\nbase_url = "{base}"\ntimeout = 2\n'
        f'[providers.keyed]\ntype = "ollama"\nbase_url = "{base}"\napi_key = "ollama-key"\n'
    )


@pytest.fixture
async def client(upstream: FakeUpstream, connect: Connect) -> openai.AsyncOpenAI:
    return await connect(ollama_toml(upstream.url.removesuffix("/v1")))


read_stream, read_whole = reply_readers({"model": MODEL, "messages": MESSAGES})


def ndjson(*lines: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


# --- streams, replayed in random splits ---------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
async def test_text_stream_reads_as_openai_chunks(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = replay(
        fixture("ollama/text_stream.ndjson"), seed=seed, content_type=NDJSON, max_piece=16
    )
    answer = await read_stream(client)
    assert answer.text == TEXT
    assert answer.finish == "stop"
    assert answer.usage == {"prompt_tokens": 11, "completion_tokens": 18, "total_tokens": 29}
    assert answer.model == "llama3.2"
    assert answer.calls == [] and answer.reasoning == ""


@pytest.mark.parametrize("seed", SEEDS)
async def test_tool_stream_gives_whole_calls_with_ids(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = replay(fixture("ollama/tool_stream.ndjson"), seed=seed, content_type=NDJSON)
    answer = await read_stream(client, model="ollama/qwen3")
    assert answer.calls == TOOL_CALLS
    assert all(id.startswith("call_") for id in answer.ids) and len(set(answer.ids)) == 2
    assert answer.finish == "tool_calls"
    assert answer.usage == {"prompt_tokens": 122, "completion_tokens": 33, "total_tokens": 155}
    assert answer.text == ""


@pytest.mark.parametrize("seed", SEEDS)
async def test_thinking_stream_gives_reasoning_then_content(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = replay(
        fixture("ollama/thinking_stream.ndjson"), seed=seed, content_type=NDJSON
    )
    answer = await read_stream(client, model="ollama/qwen3", reasoning_effort="high")
    assert answer.reasoning == f"Okay, the user asks: 17 {TIMES} 23 = 391."
    assert answer.text == f"17 {TIMES} 23 = **391**."
    assert answer.finish == "stop"
    assert answer.usage == {"prompt_tokens": 18, "completion_tokens": 96, "total_tokens": 114}
    assert upstream.last_body["think"] == "high"


async def test_done_reason_length_is_finish_length(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = replay(
        ndjson(
            {"model": "llama3.2", "message": {"role": "assistant", "content": "Hi"}, "done": False},
            {"model": "llama3.2", "done": True, "done_reason": "length", "eval_count": 1},
        ),
        content_type=NDJSON,
    )
    answer = await read_stream(client, max_tokens=1)
    assert (answer.text, answer.finish) == ("Hi", "length")
    assert upstream.last_body["options"] == {"num_predict": 1}


# --- the request ---------------------------------------------------------------------------


async def test_request_is_translated_to_api_chat(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = replay(fixture("ollama/text_stream.ndjson"), content_type=NDJSON)
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    tool = {
        "name": "get_temperature",
        "description": "Get the current temperature for a city",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {"city": {"type": "string", "description": "The name of the city"}},
        },
    }
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Answer in French."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "reasoning": "I should call the tool.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_temperature", "arguments": '{"city": "New York"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "22°C"},
    ]
    await read_stream(
        client,
        messages=messages,
        tools=[{"type": "function", "function": tool}],
        tool_choice="auto",
        temperature=0.2,
        top_p=0.8,
        max_completion_tokens=64,
        stop=["\n\n", "user:"],
        seed=42,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
        reasoning_effort="none",
    )
    sent = upstream.requests[-1]
    assert sent["path"] == "/api/chat"
    assert "Authorization" not in sent["headers"]  # no key configured: a local server
    assert sent["body"] == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "What is in this picture?", "images": ["iVBORw0KGgo="]},
            {
                "role": "assistant",
                "content": "",
                "thinking": "I should call the tool.",
                "tool_calls": [
                    {"function": {"name": "get_temperature", "arguments": {"city": "New York"}}}
                ],
            },
            {"role": "tool", "content": "22°C", "tool_name": "get_temperature"},
        ],
        "stream": True,
        "options": {
            "temperature": 0.2,
            "top_p": 0.8,
            "num_predict": 64,
            "stop": ["\n\n", "user:"],
            "seed": 42,
        },
        "tools": [{"type": "function", "function": tool}],
        "format": schema,
        "think": False,
    }


async def test_a_configured_key_is_sent_as_bearer(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = replay(fixture("ollama/answer.json"), content_type="application/json")
    await read_whole(client, model="keyed/llama3.2", response_format={"type": "json_object"})
    sent = upstream.requests[-1]
    assert sent["headers"]["Authorization"] == "Bearer ollama-key"
    assert sent["body"] == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "Hello"}],
        "stream": False,
        "format": "json",
    }


async def test_tool_choice_none_leaves_the_tools_out(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = replay(fixture("ollama/answer.json"), content_type="application/json")
    tools: Any = [{"type": "function", "function": {"name": "f"}}]
    await read_whole(client, tools=tools, tool_choice="none")
    assert "tools" not in upstream.last_body


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({"n": 3}, "n"),
        (
            {"tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f"}}]},
            "tool_choice",
        ),
        ({"reasoning_effort": "max"}, "reasoning_effort"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
    ],
)
async def test_what_ollama_cannot_take_is_a_400_naming_the_param(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, request_fields: Any, param: str
) -> None:
    await refused(
        client, upstream, param, model=MODEL, messages=MESSAGES, extra_body=request_fields
    )


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
async def test_midstream_error_line_raises_api_error(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, seed: int
) -> None:
    upstream.handler = replay(
        fixture("ollama/midstream_error.ndjson"), seed=seed, content_type=NDJSON
    )
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text = ""
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == " Yes."
    assert caught.value.message == "an error was encountered while running the model"


@pytest.mark.parametrize(
    ("cut", "says"), [(25, "in the middle of a line"), (0, 'before it finished (no "done" line)')]
)
async def test_a_stream_cut_before_done_ends_with_an_error_event(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, cut: int, says: str
) -> None:
    raw = fixture("ollama/text_stream.ndjson")
    last_line = raw.rindex(b"\n", 0, len(raw) - 1) + 1
    upstream.handler = replay(raw[: last_line + cut], seed=2, content_type=NDJSON)
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text = ""
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == TEXT
    assert says in caught.value.message
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "upstream_protocol_error"


# --- the translator alone, bytes in and bytes out ------------------------------------------


def _translate(pieces: list[bytes]) -> bytes:
    translator = OllamaStream("ollama", ChatStreamWriter("m", id="chatcmpl-1", created=1))
    out = b"".join(translator.feed(piece) for piece in pieces)
    return out + translator.end()


def test_a_last_line_without_its_line_feed_still_finishes() -> None:
    raw = fixture("ollama/text_stream.ndjson").rstrip(b"\n")
    events = parse_sse(_translate([raw]))
    assert events[-1].data == "[DONE]"


def test_nothing_after_done_is_sent() -> None:
    translator = OllamaStream("ollama", ChatStreamWriter("m"))
    raw = fixture("ollama/text_stream.ndjson")
    out = translator.feed(raw + raw)
    assert translator.finished and out.count(b"[DONE]") == 1
    assert translator.end() == b""


def test_an_endless_line_is_cut_off_with_an_error() -> None:
    translator = OllamaStream("ollama", ChatStreamWriter("m"))
    out = translator.feed(b'{"message": {"content": "' + b"x" * (MAX_LINE_BYTES + 1))
    assert translator.finished
    assert orjson.loads(parse_sse(out)[-1].data)["error"]["code"] == "upstream_protocol_error"
